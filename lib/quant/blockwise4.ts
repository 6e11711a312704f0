/**
 * Blockwise 4-bit quantization, the machinery bitsandbytes' `quantize_4bit` shares between its
 * data types (here NF4, FP4 and INT4 differ only in their 16-entry table and encoder).
 *
 * The row-major weight `W[N, K]` is flattened and cut into blocks of `blocksize` consecutive
 * values (a power of two in 32..4096; `N * K` must be a multiple of it). A block may span
 * several rows when `blocksize > K`, as in bitsandbytes: kernels find the block of element
 * `(n, k)` as `(n * K + k) / blocksize`. Each value is normalised by its block's absmax,
 * `x * (1 / absmax)` in f32 (bitsandbytes multiplies by the reciprocal), encoded to a 4-bit
 * code, and decoded as `table[code] * absmax` in f32.
 *
 * Packed layout:
 * - `codes` (`Uint32Array`, `N * K / 8` words): two codes per byte, flat element `2j` in the
 *   HIGH nibble of byte `j`, bytes four per `u32` little-endian (byte 0 = bits 0-7). Element
 *   `e` is in word `e >> 3` at bit `8 * ((e >> 1) & 3) + (e % 2 == 0 ? 4 : 0)`.
 * - `absmax` (`Float32Array`, `N * K / blocksize`): the f32 absmax of each block.
 *
 * Bits per parameter: `4 + 32 / blocksize`.
 *
 * @module
 */

import { nibbleAt, packNibbles } from "./pack.ts";
import { checkActivations, checkMatrix, checkMultiple } from "./shape.ts";

/**
 * Options of the blockwise 4-bit quantizers.
 *
 * @example
 * ```ts
 * import type { BlockwiseOptions } from "./blockwise4.ts";
 * const options: BlockwiseOptions = { blocksize: 128 };
 * ```
 */
export interface BlockwiseOptions {
  /** Values per absmax block: a power of two in 32..4096. Default 64. */
  blocksize?: number;
}

/**
 * Codes and block absmax of a blockwise 4-bit tensor.
 *
 * @example
 * ```ts
 * import { type Blockwise4bit, quantizeBlockwise4bit } from "./blockwise4.ts";
 * const q: Blockwise4bit = quantizeBlockwise4bit(
 *   "int4", new Float32Array(32).fill(1), 1, 32, 32, (v) => Math.round(v * 7) + 8);
 * ```
 */
export interface Blockwise4bit {
  /** 4-bit codes, element `2j` in the high nibble of byte `j`, bytes little-endian in `u32`. */
  codes: Uint32Array;
  /** f32 absmax per block of `blocksize` flat elements. */
  absmax: Float32Array;
}

/**
 * Throws unless `blocksize` is a power of two in 32..4096 that divides `N * K`.
 *
 * @example
 * ```ts
 * import { checkBlocksize } from "./blockwise4.ts";
 * checkBlocksize("nf4", 64, 64, 64); // ok
 * ```
 */
export function checkBlocksize(format: string, n: number, k: number, blocksize: number): void {
  if (
    !Number.isInteger(blocksize) || blocksize < 32 || blocksize > 4096 ||
    (blocksize & (blocksize - 1)) !== 0
  ) {
    throw new Error(`${format}: blocksize ${blocksize} must be a power of two in 32..4096`);
  }
  checkMultiple(
    format,
    "N * K",
    n * k,
    blocksize,
    `blocks of ${blocksize} values`,
    `W [N=${n}, K=${k}]`,
  );
}

/**
 * Quantizes `W[N, K]` blockwise with `encode` mapping a value normalised to [-1, 1] to its
 * 4-bit code.
 *
 * @example
 * ```ts
 * import { quantizeBlockwise4bit } from "./blockwise4.ts";
 * const encode = (v: number) => Math.round(v * 7) + 8;
 * quantizeBlockwise4bit("int4", new Float32Array(32).fill(2), 1, 32, 32, encode).absmax;
 * // Float32Array [2]
 * ```
 */
export function quantizeBlockwise4bit(
  format: string,
  w: Float32Array,
  n: number,
  k: number,
  blocksize: number,
  encode: (normalized: number) => number,
): Blockwise4bit {
  checkMatrix(format, "weight W [N, K]", w, n, k);
  checkBlocksize(format, n, k, blocksize);
  const blocks = (n * k) / blocksize;
  const absmax = new Float32Array(blocks);
  const codes = new Uint8Array(n * k);
  for (let b = 0; b < blocks; b++) {
    const start = b * blocksize;
    let m = 0;
    for (let i = start; i < start + blocksize; i++) m = Math.max(m, Math.abs(w[i]));
    absmax[b] = m;
    const inv = m > 0 ? Math.fround(1 / m) : 0; // all-zero block: every value encodes 0
    for (let i = start; i < start + blocksize; i++) codes[i] = encode(Math.fround(w[i] * inv));
  }
  return { codes: packNibbles(codes), absmax };
}

/**
 * Decodes `table[code] * absmax[block]` (f32) for every element.
 *
 * @example
 * ```ts
 * import { dequantizeBlockwise4bit, quantizeBlockwise4bit } from "./blockwise4.ts";
 * const table = Float32Array.from({ length: 16 }, (_, i) => (i - 8) / 7);
 * const q = quantizeBlockwise4bit("int4", new Float32Array(32).fill(2), 1, 32, 32,
 *   (v) => Math.round(v * 7) + 8);
 * dequantizeBlockwise4bit(q.codes, q.absmax, 32, 32, table)[0]; // 2
 * ```
 */
export function dequantizeBlockwise4bit(
  codes: Uint32Array,
  absmax: Float32Array,
  count: number,
  blocksize: number,
  table: Float32Array,
): Float32Array {
  const out = new Float32Array(count);
  for (let e = 0; e < count; e++) {
    out[e] = Math.fround(table[nibbleAt(codes, e)] * absmax[Math.floor(e / blocksize)]);
  }
  return out;
}

/**
 * CPU twin of a fused blockwise 4-bit matmul, `Y[M, N] = X[M, K] · Wᵀ`: for each output, the
 * run of `k` that shares one block is summed as `Σ x · table[code]`, then scaled by that block's
 * absmax once — the factoring a kernel uses to save multiplies. Accumulates in f64 and rounds
 * each output to f32.
 *
 * @example
 * ```ts
 * import { matmulBlockwise4bit, quantizeBlockwise4bit } from "./blockwise4.ts";
 * const table = Float32Array.from({ length: 16 }, (_, i) => (i - 8) / 7);
 * const q = quantizeBlockwise4bit("int4", new Float32Array(32).fill(2), 1, 32, 32,
 *   (v) => Math.round(v * 7) + 8);
 * matmulBlockwise4bit("int4", new Float32Array(32).fill(1), 1, 1, 32, q, 32, table); // [64]
 * ```
 */
export function matmulBlockwise4bit(
  format: string,
  x: Float32Array,
  m: number,
  n: number,
  k: number,
  q: Blockwise4bit,
  blocksize: number,
  table: Float32Array,
): Float32Array {
  checkActivations(format, x, m, k);
  const y = new Float32Array(m * n);
  const row = new Float64Array(k);
  for (let r = 0; r < n; r++) {
    // Decode row r's codes once (table values only), then reuse them for every token.
    const base = r * k;
    for (let c = 0; c < k; c++) row[c] = table[nibbleAt(q.codes, base + c)];
    for (let i = 0; i < m; i++) {
      const xo = i * k;
      let acc = 0;
      let c = 0;
      while (c < k) {
        const block = Math.floor((base + c) / blocksize);
        const end = Math.min(k, (block + 1) * blocksize - base);
        let partial = 0;
        for (; c < end; c++) partial += x[xo + c] * row[c];
        acc += partial * q.absmax[block];
      }
      y[i * n + r] = acc;
    }
  }
  return y;
}
