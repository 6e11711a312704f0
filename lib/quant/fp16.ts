/**
 * FP16, the baseline format: 16 bits per parameter and nothing else.
 *
 * Packed layout (`Fp16Weight.data`, `Uint32Array`, `N * K / 2` words): the row-major weight
 * `W[N, K]` as f16 bit patterns, two per `u32`, flat element `2i` in the low 16 bits of word
 * `i` (WGSL: `unpack2x16float(data[i]).x`). `K` must be even so that every row starts on a
 * word boundary.
 *
 * @module
 */

import { f16BitsToF32, f32ToF16Array, packF16Pairs } from "../gpu/f16.ts";
import { checkActivations, checkMatrix, checkMultiple } from "./shape.ts";

/**
 * A weight matrix `W[N, K]` stored as packed f16 pairs.
 *
 * @example
 * ```ts
 * import { type Fp16Weight, quantizeFp16 } from "./fp16.ts";
 * const w: Fp16Weight = quantizeFp16(new Float32Array([1, 2, 3, 4]), 2, 2);
 * ```
 */
export interface Fp16Weight {
  /** Format tag. */
  format: "fp16";
  /** Rows: output features. */
  n: number;
  /** Columns: input features. */
  k: number;
  /** f16 pairs, flat element `2i` in the low half of word `i`. */
  data: Uint32Array;
}

/**
 * Rounds `W[N, K]` to f16 and packs it.
 *
 * @example
 * ```ts
 * import { quantizeFp16 } from "./fp16.ts";
 * quantizeFp16(new Float32Array([1, 2]), 1, 2).data[0]; // 0x40003c00
 * ```
 */
export function quantizeFp16(w: Float32Array, n: number, k: number): Fp16Weight {
  checkMatrix("fp16", "weight W [N, K]", w, n, k);
  checkMultiple(
    "fp16",
    "K (in_features)",
    k,
    2,
    "two f16 per u32, rows word-aligned",
    `W [N=${n}, K=${k}]`,
  );
  return { format: "fp16", n, k, data: packF16Pairs(f32ToF16Array(w)) };
}

/**
 * Unpacks the f16 values to f32 (exact).
 *
 * @example
 * ```ts
 * import { dequantizeFp16, quantizeFp16 } from "./fp16.ts";
 * dequantizeFp16(quantizeFp16(new Float32Array([0.1, 2]), 1, 2))[0]; // 0.0999755859375
 * ```
 */
export function dequantizeFp16(w: Fp16Weight): Float32Array {
  const out = new Float32Array(w.n * w.k);
  for (let i = 0; i < out.length; i++) {
    out[i] = f16BitsToF32((w.data[i >> 1] >>> (16 * (i & 1))) & 0xffff);
  }
  return out;
}

/**
 * CPU twin of the FP16 matmul kernel: `Y[M, N] = X[M, K] · Wᵀ` with the f16 weights widened to
 * f32 and the activations used as given (round them to f16 first for an all-FP16 product).
 * Accumulates in f64 and rounds each output to f32.
 *
 * @example
 * ```ts
 * import { matmulFp16, quantizeFp16 } from "./fp16.ts";
 * const w = quantizeFp16(new Float32Array([1, 2, 3, 4]), 2, 2);
 * matmulFp16(new Float32Array([1, 1]), 1, w); // Float32Array [3, 7]
 * ```
 */
export function matmulFp16(x: Float32Array, m: number, w: Fp16Weight): Float32Array {
  checkActivations("fp16", x, m, w.k);
  return matmulF32(x, m, dequantizeFp16(w), w.n, w.k);
}

/**
 * Plain `Y[M, N] = X[M, K] · W[N, K]ᵀ` in f64, rounded to f32: the "dequantize then multiply"
 * reference every format's twin is compared with.
 *
 * @example
 * ```ts
 * import { matmulF32 } from "./fp16.ts";
 * matmulF32(new Float32Array([1, 2]), 1, new Float32Array([3, 4]), 1, 2); // Float32Array [11]
 * ```
 */
export function matmulF32(
  x: Float32Array,
  m: number,
  w: Float32Array,
  n: number,
  k: number,
): Float32Array {
  checkActivations("matmul", x, m, k);
  checkMatrix("matmul", "weight W [N, K]", w, n, k);
  const y = new Float32Array(m * n);
  for (let i = 0; i < m; i++) {
    const xo = i * k;
    for (let j = 0; j < n; j++) {
      const wo = j * k;
      let acc = 0;
      for (let t = 0; t < k; t++) acc += x[xo + t] * w[wo + t];
      y[i * n + j] = acc;
    }
  }
  return y;
}
