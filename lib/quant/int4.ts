/**
 * INT4, symmetric blockwise absmax: `q = round(7 · x / absmax)` (half to even) in [-7, 7],
 * stored as the nibble `q + 8` (1..15; 0 is never written), decoded as
 * `(nibble - 8) / 7 * absmax`. Offset-binary rather than two's complement so that all three
 * 4-bit formats decode through a 16-entry table (`INT4_TABLE`), and a kernel may equally use
 * `f32(i32(nibble) - 8)`.
 *
 * Packed layout (`Int4Weight`), as NF4 (see `blockwise4.ts`): `codes` (`Uint32Array`) two per
 * byte, flat element `2j` in the HIGH nibble, bytes little-endian in each `u32`; `absmax`
 * (`Float32Array`) one per block (default blocksize 64).
 *
 * Bits per parameter: `4 + 32 / blocksize`.
 *
 * @module
 */

import {
  type Blockwise4bit,
  type BlockwiseOptions,
  dequantizeBlockwise4bit,
  matmulBlockwise4bit,
  quantizeBlockwise4bit,
} from "./blockwise4.ts";
import { roundHalfEven } from "./pack.ts";

/**
 * INT4 values by nibble: `(nibble - 8) / 7` as f32 (nibble 0, never written, decodes to -8/7).
 *
 * @example
 * ```ts
 * import { INT4_TABLE } from "./int4.ts";
 * INT4_TABLE[15]; // 1
 * INT4_TABLE[8]; // 0
 * ```
 */
export const INT4_TABLE: Float32Array = Float32Array.from({ length: 16 }, (_, c) => (c - 8) / 7);

/**
 * Encodes a value normalised to [-1, 1] to its nibble `round(7x) + 8`.
 *
 * @example
 * ```ts
 * import { encodeInt4 } from "./int4.ts";
 * encodeInt4(1); // 15
 * encodeInt4(-0.5); // 4 (-3.5 rounds to even: -4)
 * ```
 */
export function encodeInt4(x: number): number {
  const q = roundHalfEven(Math.fround(x * 7));
  return (q > 7 ? 7 : q < -7 ? -7 : q) + 8;
}

/**
 * A weight matrix `W[N, K]` in blockwise INT4.
 *
 * @example
 * ```ts
 * import { type Int4Weight, quantizeInt4 } from "./int4.ts";
 * const w: Int4Weight = quantizeInt4(new Float32Array(64).fill(1), 1, 64);
 * ```
 */
export interface Int4Weight extends Blockwise4bit {
  /** Format tag. */
  format: "int4";
  /** Rows: output features. */
  n: number;
  /** Columns: input features. */
  k: number;
  /** Values per absmax block. */
  blocksize: number;
}

/**
 * Quantizes `W[N, K]` to blockwise INT4 (default blocksize 64).
 *
 * @example
 * ```ts
 * import { quantizeInt4 } from "./int4.ts";
 * quantizeInt4(new Float32Array(64).fill(3), 1, 64).absmax; // Float32Array [3]
 * ```
 */
export function quantizeInt4(
  w: Float32Array,
  n: number,
  k: number,
  options: BlockwiseOptions = {},
): Int4Weight {
  const blocksize = options.blocksize ?? 64;
  return {
    format: "int4",
    n,
    k,
    blocksize,
    ...quantizeBlockwise4bit("int4", w, n, k, blocksize, encodeInt4),
  };
}

/**
 * Reconstructs `INT4_TABLE[nibble] * absmax[block]`.
 *
 * @example
 * ```ts
 * import { dequantizeInt4, quantizeInt4 } from "./int4.ts";
 * dequantizeInt4(quantizeInt4(new Float32Array(64).fill(3), 1, 64))[0]; // 3
 * ```
 */
export function dequantizeInt4(w: Int4Weight): Float32Array {
  return dequantizeBlockwise4bit(w.codes, w.absmax, w.n * w.k, w.blocksize, INT4_TABLE);
}

/**
 * CPU twin of the fused INT4 matmul `Y[M, N] = X[M, K] · Wᵀ` (see `blockwise4.ts`).
 *
 * @example
 * ```ts
 * import { matmulInt4, quantizeInt4 } from "./int4.ts";
 * const w = quantizeInt4(new Float32Array(64).fill(1), 1, 64);
 * matmulInt4(new Float32Array(64).fill(1), 1, w); // Float32Array [64]
 * ```
 */
export function matmulInt4(x: Float32Array, m: number, w: Int4Weight): Float32Array {
  return matmulBlockwise4bit("int4", x, m, w.n, w.k, w, w.blocksize, INT4_TABLE);
}
