/**
 * FP4 as bitsandbytes' `quantize_4bit(quant_type="fp4")`: blockwise absmax (default blocksize
 * 64) and a 4-bit float with 1 sign, 2 exponent and 1 mantissa bit. It is NOT the OCP MX E2M1
 * grid (0, 0.5, 1, 1.5, 2, 3, 4, 6): bitsandbytes uses exponent bias 3 and a subnormal of
 * 0.0625, giving the magnitudes {0, 0.0625, 2, 3, 4, 6, 8, 12} / 12, and orders the codes by
 * bit pattern, not by value. We follow bitsandbytes' table and its `dQuantizeFP4` thresholds
 * (on |x|; the sign bit `0b1000` is set for x < 0).
 *
 * | code & 7 | 0 | 1       | 2    | 3  | 4   | 5   | 6    | 7    |
 * |----------|---|---------|------|----|-----|-----|------|------|
 * | × 12     | 0 | 0.0625  | 8    | 12 | 4   | 6   | 2    | 3    |
 *
 * Packed layout (`Fp4Weight`), as NF4 (see `blockwise4.ts`): `codes` (`Uint32Array`) two per
 * byte, flat element `2j` in the HIGH nibble, bytes little-endian in each `u32`; `absmax`
 * (`Float32Array`) one per block. Value = `FP4_TABLE[code] * absmax[block]`.
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

const MAGNITUDES = [0, 5.208333333e-3, 0.66666667, 1, 0.33333333, 0.5, 0.16666667, 0.25];

/**
 * FP4 values in code order (bit 3 = sign), normalised to max 1, as f32 — bitsandbytes'
 * `dDequantizeFP4Tree` constants.
 *
 * @example
 * ```ts
 * import { FP4_TABLE } from "./fp4.ts";
 * FP4_TABLE[0b0011]; // 1
 * FP4_TABLE[0b1101]; // -0.5
 * ```
 */
export const FP4_TABLE: Float32Array = Float32Array.from(
  { length: 16 },
  (_, c) => (c & 8 ? -1 : 1) * MAGNITUDES[c & 7],
);

// bitsandbytes' dQuantizeFP4 thresholds, as f32 (midpoints of the sorted magnitudes).
const P_0_1 = Math.fround(0.00260417);
const P_1_6 = Math.fround(0.0859375);
const P_6_7 = Math.fround(0.20833333);
const P_7_4 = Math.fround(0.29166667);
const P_4_5 = Math.fround(0.4166667);
const P_5_2 = Math.fround(0.583333);
const P_2_3 = Math.fround(0.8333333);

/**
 * Encodes a value normalised to [-1, 1] to its FP4 code, with bitsandbytes' decision tree.
 *
 * @example
 * ```ts
 * import { encodeFp4 } from "./fp4.ts";
 * encodeFp4(0.5); // 0b0101
 * encodeFp4(-1); // 0b1011
 * ```
 */
export function encodeFp4(x: number): number {
  const sign = x < 0 ? 8 : 0;
  const a = Math.abs(x);
  let code: number;
  if (a > P_7_4) {
    if (a > P_5_2) code = a > P_2_3 ? 0b011 : 0b010;
    else code = a > P_4_5 ? 0b101 : 0b100;
  } else if (a > P_1_6) code = a > P_6_7 ? 0b111 : 0b110;
  else code = a > P_0_1 ? 0b001 : 0b000;
  return code + sign;
}

/**
 * A weight matrix `W[N, K]` in bitsandbytes FP4.
 *
 * @example
 * ```ts
 * import { type Fp4Weight, quantizeFp4 } from "./fp4.ts";
 * const w: Fp4Weight = quantizeFp4(new Float32Array(64).fill(1), 1, 64);
 * ```
 */
export interface Fp4Weight extends Blockwise4bit {
  /** Format tag. */
  format: "fp4";
  /** Rows: output features. */
  n: number;
  /** Columns: input features. */
  k: number;
  /** Values per absmax block. */
  blocksize: number;
}

/**
 * Quantizes `W[N, K]` to FP4 (default blocksize 64).
 *
 * @example
 * ```ts
 * import { quantizeFp4 } from "./fp4.ts";
 * quantizeFp4(new Float32Array(64).fill(-2), 1, 64).absmax; // Float32Array [2]
 * ```
 */
export function quantizeFp4(
  w: Float32Array,
  n: number,
  k: number,
  options: BlockwiseOptions = {},
): Fp4Weight {
  const blocksize = options.blocksize ?? 64;
  return {
    format: "fp4",
    n,
    k,
    blocksize,
    ...quantizeBlockwise4bit("fp4", w, n, k, blocksize, encodeFp4),
  };
}

/**
 * Reconstructs `FP4_TABLE[code] * absmax[block]`.
 *
 * @example
 * ```ts
 * import { dequantizeFp4, quantizeFp4 } from "./fp4.ts";
 * dequantizeFp4(quantizeFp4(new Float32Array(64).fill(-2), 1, 64))[0]; // -2
 * ```
 */
export function dequantizeFp4(w: Fp4Weight): Float32Array {
  return dequantizeBlockwise4bit(w.codes, w.absmax, w.n * w.k, w.blocksize, FP4_TABLE);
}

/**
 * CPU twin of the fused FP4 matmul `Y[M, N] = X[M, K] · Wᵀ` (see `blockwise4.ts`).
 *
 * @example
 * ```ts
 * import { matmulFp4, quantizeFp4 } from "./fp4.ts";
 * const w = quantizeFp4(new Float32Array(64).fill(1), 1, 64);
 * matmulFp4(new Float32Array(64).fill(1), 1, w); // Float32Array [64]
 * ```
 */
export function matmulFp4(x: Float32Array, m: number, w: Fp4Weight): Float32Array {
  return matmulBlockwise4bit("fp4", x, m, w.n, w.k, w, w.blocksize, FP4_TABLE);
}
