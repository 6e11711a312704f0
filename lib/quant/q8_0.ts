/**
 * Q8_0 as llama.cpp/ggml: int8 codes in groups of 32 consecutive values along `K`, one f16
 * scale `d = absmax / 127` per group, `q = roundf(x / d)` (half away from zero, computed with
 * the f32 `d` as llama.cpp's `quantize_row_q8_0_ref`), decoded as `q * f16(d)`.
 *
 * llama.cpp stores an array of 34-byte `block_q8_0 { ggml_half d; int8_t qs[32]; }` (AoS). We
 * store the same bits as two arrays (SoA), so that codes are `u32`-aligned for a kernel:
 * - `codes` (`Uint32Array`, `N * K / 4` words): row-major int8, four per `u32`, flat element
 *   `4i` in the lowest byte, two's complement (as every int8 format here). Group `g` is words
 *   `[8g, 8g + 8)`.
 * - `scales` (`Uint32Array`, `ceil(N * K / 64)` words): f16 bits of `d`, two per `u32`, group
 *   `2i` in the low half of word `i` (`unpack2x16float(scales[g / 2])[g % 2]`). Group `g`
 *   covers flat elements `[32g, 32g + 32)`; `K` must be a multiple of 32.
 *
 * Bits per parameter: `8 + 16 / 32` = 8.5 (plus 16 bits of padding when the group count is
 * odd).
 *
 * @module
 */

import { f16BitsToF32, f32ToF16Bits, packF16Pairs } from "../gpu/f16.ts";
import { packInt8, roundHalfAway, unpackInt8 } from "./pack.ts";
import { checkActivations, checkMatrix, checkMultiple } from "./shape.ts";

/** Values per Q8_0 group (ggml's `QK8_0`). */
export const QK8_0 = 32;

/**
 * A weight matrix `W[N, K]` in Q8_0 (SoA).
 *
 * @example
 * ```ts
 * import { type Q8_0Weight, quantizeQ8_0 } from "./q8_0.ts";
 * const w: Q8_0Weight = quantizeQ8_0(new Float32Array(32).fill(1), 1, 32);
 * ```
 */
export interface Q8_0Weight {
  /** Format tag. */
  format: "q8_0";
  /** Rows: output features. */
  n: number;
  /** Columns: input features (multiple of 32). */
  k: number;
  /** int8 codes, four per `u32`, element `4i` in the lowest byte. */
  codes: Uint32Array;
  /** f16 scale bits per group of 32, two per `u32`, group `2i` in the low half. */
  scales: Uint32Array;
}

/**
 * Quantizes `W[N, K]` to Q8_0.
 *
 * @example
 * ```ts
 * import { quantizeQ8_0 } from "./q8_0.ts";
 * quantizeQ8_0(new Float32Array(32).fill(127), 1, 32).scales[0]; // 0x3c00 (d = 1)
 * ```
 */
export function quantizeQ8_0(w: Float32Array, n: number, k: number): Q8_0Weight {
  checkMatrix("q8_0", "weight W [N, K]", w, n, k);
  checkMultiple("q8_0", "K (in_features)", k, QK8_0, "groups of 32 along K", `W [N=${n}, K=${k}]`);
  const groups = (n * k) / QK8_0;
  const codes = new Int8Array(n * k);
  const scales = new Uint16Array(groups);
  for (let g = 0; g < groups; g++) {
    const start = g * QK8_0;
    let amax = 0;
    for (let i = start; i < start + QK8_0; i++) amax = Math.max(amax, Math.abs(w[i]));
    const d = Math.fround(amax / 127);
    const id = d > 0 ? Math.fround(1 / d) : 0;
    scales[g] = f32ToF16Bits(d);
    for (let i = start; i < start + QK8_0; i++) {
      codes[i] = Math.max(-127, Math.min(127, roundHalfAway(Math.fround(w[i] * id))));
    }
  }
  return { format: "q8_0", n, k, codes: packInt8(codes), scales: packF16Pairs(scales) };
}

/**
 * The f16 scale of group `g`, as f32.
 *
 * @example
 * ```ts
 * import { q8_0Scale, quantizeQ8_0 } from "./q8_0.ts";
 * q8_0Scale(quantizeQ8_0(new Float32Array(32).fill(127), 1, 32), 0); // 1
 * ```
 */
export function q8_0Scale(w: Q8_0Weight, g: number): number {
  return f16BitsToF32((w.scales[g >> 1] >>> (16 * (g & 1))) & 0xffff);
}

/**
 * Reconstructs `q * d` with the f16 `d` of each group.
 *
 * @example
 * ```ts
 * import { dequantizeQ8_0, quantizeQ8_0 } from "./q8_0.ts";
 * dequantizeQ8_0(quantizeQ8_0(new Float32Array(32).fill(127), 1, 32))[0]; // 127
 * ```
 */
export function dequantizeQ8_0(w: Q8_0Weight): Float32Array {
  const codes = unpackInt8(w.codes);
  const out = new Float32Array(codes.length);
  for (let i = 0; i < codes.length; i++) out[i] = Math.fround(codes[i] * q8_0Scale(w, i >> 5));
  return out;
}

/**
 * CPU twin of the fused Q8_0 matmul with f32 activations, `Y[M, N] = X[M, K] · Wᵀ`: per group
 * `Σ x · q`, scaled once by the group's `d`. (llama.cpp's CPU path also quantizes the
 * activations to Q8_0 and takes integer dot products; WebGPU kernels, ours included, keep the
 * activations in floating point.) Accumulates in f64, rounds outputs to f32.
 *
 * @example
 * ```ts
 * import { matmulQ8_0, quantizeQ8_0 } from "./q8_0.ts";
 * const w = quantizeQ8_0(new Float32Array(32).fill(1), 1, 32);
 * matmulQ8_0(new Float32Array(32).fill(2), 1, w); // Float32Array [64]
 * ```
 */
export function matmulQ8_0(x: Float32Array, m: number, w: Q8_0Weight): Float32Array {
  const { n, k } = w;
  checkActivations("q8_0", x, m, k);
  const codes = unpackInt8(w.codes);
  const y = new Float32Array(m * n);
  for (let i = 0; i < m; i++) {
    for (let r = 0; r < n; r++) {
      let acc = 0;
      for (let c = 0; c < k; c += QK8_0) {
        const e = r * k + c;
        let partial = 0;
        for (let t = 0; t < QK8_0; t++) partial += x[i * k + c + t] * codes[e + t];
        acc += partial * q8_0Scale(w, e >> 5);
      }
      y[i * n + r] = acc;
    }
  }
  return y;
}
