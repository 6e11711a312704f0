/**
 * NF4, 4-bit NormalFloat (QLoRA, Dettmers et al., 2023), as bitsandbytes'
 * `quantize_4bit(quant_type="nf4")`: blockwise absmax (default blocksize 64) and the 16 NF4
 * values, each code chosen as the nearest value by the midpoint thresholds of bitsandbytes'
 * `dQuantizeNF4` (a value exactly on a midpoint takes the lower code).
 *
 * Packed layout (`Nf4Weight`), shared with FP4 and INT4 (see `blockwise4.ts`):
 * - `codes` (`Uint32Array`, `N * K / 8` words): two codes per byte, flat element `2j` in the
 *   HIGH nibble, bytes four per `u32` little-endian (byte 0 = bits 0-7).
 * - `absmax` (`Float32Array`, `N * K / blocksize`): f32 absmax per block of the flattened
 *   row-major `W`. Value = `NF4_TABLE[code] * absmax[block]`.
 *
 * Bits per parameter: `4 + 32 / blocksize` = 4.5 at blocksize 64. The 16-entry table is a
 * constant shared by every tensor and is not counted.
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

/**
 * The NF4 values in code order, exactly bitsandbytes' `get_4bit_type("nf4")` (as f32).
 *
 * @example
 * ```ts
 * import { NF4_TABLE } from "./nf4.ts";
 * NF4_TABLE[7]; // 0 (code 0b0111)
 * ```
 */
export const NF4_TABLE: Float32Array = new Float32Array([
  -1.0,
  -0.6961928009986877,
  -0.5250730514526367,
  -0.39491748809814453,
  -0.28444138169288635,
  -0.18477343022823334,
  -0.09105003625154495,
  0.0,
  0.07958029955625534,
  0.16093020141124725,
  0.24611230194568634,
  0.33791524171829224,
  0.44070982933044434,
  0.5626170039176941,
  0.7229568362236023,
  1.0,
]);

/**
 * The 15 decision thresholds between consecutive NF4 values: their midpoints, computed in f64
 * and rounded to f32, as the constants of bitsandbytes' `dQuantizeNF4` tree.
 *
 * @example
 * ```ts
 * import { NF4_PIVOTS } from "./nf4.ts";
 * NF4_PIVOTS[7]; // ≈ 0.0397901498 (between 0 and 0.0795802996)
 * ```
 */
export const NF4_PIVOTS: Float32Array = Float32Array.from(
  { length: 15 },
  (_, i) => (NF4_TABLE[i] + NF4_TABLE[i + 1]) / 2,
);

/** Default NF4 blocksize, as bitsandbytes' `quantize_4bit`. */
export const NF4_BLOCKSIZE = 64;

/**
 * Encodes a value normalised to [-1, 1]: the number of thresholds it strictly exceeds, which
 * is the nearest NF4 value's code (ties to the lower code).
 *
 * @example
 * ```ts
 * import { encodeNf4 } from "./nf4.ts";
 * encodeNf4(0.7); // 14 (0.7229568362236023)
 * encodeNf4(-1); // 0
 * ```
 */
export function encodeNf4(x: number): number {
  let code = 0;
  for (let i = 0; i < 15; i++) if (x > NF4_PIVOTS[i]) code = i + 1;
  return code;
}

/**
 * A weight matrix `W[N, K]` in NF4.
 *
 * @example
 * ```ts
 * import { type Nf4Weight, quantizeNf4 } from "./nf4.ts";
 * const w: Nf4Weight = quantizeNf4(new Float32Array(64).fill(1), 1, 64);
 * ```
 */
export interface Nf4Weight extends Blockwise4bit {
  /** Format tag. */
  format: "nf4";
  /** Rows: output features. */
  n: number;
  /** Columns: input features. */
  k: number;
  /** Values per absmax block. */
  blocksize: number;
}

/**
 * Quantizes `W[N, K]` to NF4.
 *
 * @example
 * ```ts
 * import { quantizeNf4 } from "./nf4.ts";
 * quantizeNf4(new Float32Array(128).fill(0.5), 2, 64).absmax; // Float32Array [0.5, 0.5]
 * ```
 */
export function quantizeNf4(
  w: Float32Array,
  n: number,
  k: number,
  options: BlockwiseOptions = {},
): Nf4Weight {
  const blocksize = options.blocksize ?? NF4_BLOCKSIZE;
  const q = quantizeBlockwise4bit("nf4", w, n, k, blocksize, encodeNf4);
  return { format: "nf4", n, k, blocksize, ...q };
}

/**
 * Reconstructs `NF4_TABLE[code] * absmax[block]`.
 *
 * @example
 * ```ts
 * import { dequantizeNf4, quantizeNf4 } from "./nf4.ts";
 * dequantizeNf4(quantizeNf4(new Float32Array(64).fill(0.5), 1, 64))[0]; // 0.5
 * ```
 */
export function dequantizeNf4(w: Nf4Weight): Float32Array {
  return dequantizeBlockwise4bit(w.codes, w.absmax, w.n * w.k, w.blocksize, NF4_TABLE);
}

/**
 * CPU twin of the fused NF4 matmul `Y[M, N] = X[M, K] · Wᵀ` (per-block partial sums scaled
 * by the block absmax; see `blockwise4.ts`).
 *
 * @example
 * ```ts
 * import { matmulNf4, quantizeNf4 } from "./nf4.ts";
 * const w = quantizeNf4(new Float32Array(64).fill(0.5), 1, 64);
 * matmulNf4(new Float32Array(64).fill(1), 1, w); // Float32Array [32]
 * ```
 */
export function matmulNf4(x: Float32Array, m: number, w: Nf4Weight): Float32Array {
  return matmulBlockwise4bit("nf4", x, m, w.n, w.k, w, w.blocksize, NF4_TABLE);
}
