/**
 * INT8 with one absmax for the whole tensor: the simplest 8-bit scheme, and the one a single
 * outlier ruins (every other value loses resolution to it).
 *
 * Packed layout (`Int8AbsmaxWeight`):
 * - `codes` (`Uint32Array`, `N * K / 4` words): row-major `W[N, K]` as int8, four per `u32`,
 *   flat element `4i` in the lowest byte, two's complement. `K` must be a multiple of 4.
 * - `absmax` (`Float32Array`, length 1): max |W|; the scale is `absmax / 127`, so
 *   `W ≈ code * absmax / 127`.
 *
 * We store the absmax rather than `absmax / 127` so that every int8 format shares one product
 * kernel: `y = acc * (sx * sw) / 127²` with int32 `acc`.
 *
 * The product also quantizes the activations per tensor: one absmax over all of `X[M, K]`.
 *
 * Bits per parameter: `8 + 32 / (N * K)`.
 *
 * @module
 */

import { packInt8, unpackInt8 } from "./pack.ts";
import { checkActivations, checkMatrix, checkMultiple } from "./shape.ts";
import {
  absmaxOf,
  int8Code,
  int8Dequant,
  int8Gemm,
  int8MmDequant,
  int8Scale,
} from "./int8_codes.ts";

/**
 * A weight matrix `W[N, K]` quantized to int8 with one absmax.
 *
 * @example
 * ```ts
 * import { type Int8AbsmaxWeight, quantizeInt8Absmax } from "./int8_absmax.ts";
 * const w: Int8AbsmaxWeight = quantizeInt8Absmax(new Float32Array([1, -2, 0.5, 0]), 1, 4);
 * ```
 */
export interface Int8AbsmaxWeight {
  /** Format tag. */
  format: "int8-absmax";
  /** Rows: output features. */
  n: number;
  /** Columns: input features (multiple of 4). */
  k: number;
  /** int8 codes, four per `u32`, element `4i` in the lowest byte. */
  codes: Uint32Array;
  /** `[absmax]` of the whole tensor. */
  absmax: Float32Array;
}

/**
 * Quantizes `W[N, K]` with one absmax for the whole tensor.
 *
 * @example
 * ```ts
 * import { quantizeInt8Absmax } from "./int8_absmax.ts";
 * quantizeInt8Absmax(new Float32Array([1, -2, 0.5, 0]), 1, 4).absmax[0]; // 2
 * ```
 */
export function quantizeInt8Absmax(w: Float32Array, n: number, k: number): Int8AbsmaxWeight {
  checkMatrix("int8-absmax", "weight W [N, K]", w, n, k);
  checkMultiple(
    "int8-absmax",
    "K (in_features)",
    k,
    4,
    "four int8 codes per u32",
    `W [N=${n}, K=${k}]`,
  );
  const absmax = absmaxOf(w, 0, w.length);
  return {
    format: "int8-absmax",
    n,
    k,
    codes: packInt8(quantizeWithAbsmax(w, absmax)),
    absmax: new Float32Array([absmax]),
  };
}

/**
 * Reconstructs `W ≈ code * absmax / 127`.
 *
 * @example
 * ```ts
 * import { dequantizeInt8Absmax, quantizeInt8Absmax } from "./int8_absmax.ts";
 * dequantizeInt8Absmax(quantizeInt8Absmax(new Float32Array([1, -2, 0.5, 0]), 1, 4))[1]; // -2
 * ```
 */
export function dequantizeInt8Absmax(w: Int8AbsmaxWeight): Float32Array {
  const codes = unpackInt8(w.codes);
  const out = new Float32Array(codes.length);
  for (let i = 0; i < codes.length; i++) out[i] = int8Dequant(codes[i], w.absmax[0]);
  return out;
}

/**
 * CPU twin of the per-tensor int8 product: `X` is quantized with its own single absmax, the
 * codes are multiplied with int32 accumulation, and the result is rescaled by
 * `(absmax_X * absmax_W) / 127²`.
 *
 * @example
 * ```ts
 * import { matmulInt8Absmax, quantizeInt8Absmax } from "./int8_absmax.ts";
 * const w = quantizeInt8Absmax(new Float32Array([1, 0, 0, 0]), 1, 4);
 * matmulInt8Absmax(new Float32Array([2, 0, 0, 0]), 1, w); // Float32Array [2]
 * ```
 */
export function matmulInt8Absmax(x: Float32Array, m: number, w: Int8AbsmaxWeight): Float32Array {
  checkActivations("int8-absmax", x, m, w.k);
  const sx = absmaxOf(x, 0, x.length);
  const acc = int8Gemm(quantizeWithAbsmax(x, sx), m, unpackInt8(w.codes), w.n, w.k);
  return int8MmDequant(
    acc,
    m,
    w.n,
    new Float32Array(m).fill(sx),
    new Float32Array(w.n).fill(w.absmax[0]),
  );
}

function quantizeWithAbsmax(values: Float32Array, absmax: number): Int8Array {
  const scale = int8Scale(absmax);
  const codes = new Int8Array(values.length);
  for (let i = 0; i < values.length; i++) codes[i] = int8Code(values[i], scale);
  return codes;
}
