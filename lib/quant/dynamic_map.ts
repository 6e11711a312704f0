/**
 * bitsandbytes' 8-bit dynamic data type (`create_dynamic_map`, Dettmers 2015) and its
 * blockwise quantizer (`quantize_blockwise`), which QLoRA's double quantization applies to the
 * NF4 block absmax values.
 *
 * The signed map (the default) has 256 sorted values: 127 negative, 0, 127 positive and 1.0.
 * For exponent `e = 0..6`, `2^e` values `10^(e-6) · m` where `m` are the midpoints of
 * `linspace(0.1, 1, 2^e + 1)`, and their negatives. We compute it in f32 step by step as
 * PyTorch does; individual entries may differ from bitsandbytes' tensor in the last bit
 * (PyTorch's vectorised `linspace` rounding), which moves no code by more than that.
 *
 * Encoding picks the nearest map value (ties to the lower index). bitsandbytes' CUDA kernel
 * finds it with a 7-step binary search that is nearest up to float rounding at midpoints.
 *
 * @module
 */

import { checkMultiple } from "./shape.ts";

function linspaceF32(start: number, end: number, steps: number): number[] {
  const s = Math.fround(start);
  const e = Math.fround(end);
  const step = Math.fround((e - s) / (steps - 1));
  const half = Math.floor(steps / 2);
  return Array.from(
    { length: steps },
    (_, i) =>
      i < half
        ? Math.fround(s + Math.fround(step * i))
        : Math.fround(e - Math.fround(step * (steps - i - 1))),
  );
}

function midpointsF32(b: number[]): number[] {
  return b.slice(1).map((v, i) => Math.fround(Math.fround(b[i] + v) / 2));
}

/**
 * Builds the dynamic quantization map, as bitsandbytes'
 * `create_dynamic_map(signed, max_exponent_bits, total_bits)`: sorted, padded with zeros to
 * 256 entries.
 *
 * @example
 * ```ts
 * import { createDynamicMap } from "./dynamic_map.ts";
 * const map = createDynamicMap();
 * map.length; // 256
 * map[127]; // 0
 * map[255]; // 1
 * ```
 */
export function createDynamicMap(signed = true, maxExponentBits = 7, totalBits = 8): Float32Array {
  const data: number[] = [];
  const nonSignBits = totalBits - 1; // bitsandbytes reserves one bit either way
  const additional = 2 ** (nonSignBits - maxExponentBits) - 1;
  const push = (scale: number, means: number[]): void => {
    const f = Math.fround(scale);
    for (const m of means) data.push(Math.fround(f * m));
    if (signed) { for (const m of means) data.push(Math.fround(-f * m)); }
  };
  for (let i = 0; i < maxExponentBits; i++) {
    const items = signed
      ? 2 ** (i + nonSignBits - maxExponentBits) + 1
      : 2 ** (i + nonSignBits - maxExponentBits + 1) + 1;
    push(10 ** (-(maxExponentBits - 1) + i), midpointsF32(linspaceF32(0.1, 1, items)));
  }
  if (additional > 0) {
    push(
      10 ** (-(maxExponentBits - 1) + maxExponentBits - 1),
      midpointsF32(linspaceF32(0.1, 1, additional + 1)),
    );
  }
  data.push(0, 1);
  if (data.length !== 2 ** totalBits) {
    throw new Error(`createDynamicMap: got ${data.length} values, expected ${2 ** totalBits}`);
  }
  while (data.length < 256) data.push(0);
  return Float32Array.from(data.sort((a, b) => a - b));
}

/**
 * The signed 8-bit dynamic map, shared by every double-quantized tensor (1 KiB per model).
 *
 * @example
 * ```ts
 * import { DYNAMIC_MAP_SIGNED } from "./dynamic_map.ts";
 * DYNAMIC_MAP_SIGNED[0]; // ≈ -0.99297
 * ```
 */
export const DYNAMIC_MAP_SIGNED: Float32Array = createDynamicMap(true, 7, 8);

/**
 * Index of the value of a sorted `code` table nearest to `x` (ties to the lower index).
 *
 * @example
 * ```ts
 * import { DYNAMIC_MAP_SIGNED, encodeNearest } from "./dynamic_map.ts";
 * encodeNearest(DYNAMIC_MAP_SIGNED, 1); // 255
 * encodeNearest(DYNAMIC_MAP_SIGNED, 0); // 127
 * ```
 */
export function encodeNearest(code: Float32Array, x: number): number {
  let lo = 0;
  let hi = code.length - 1;
  if (x <= code[lo]) return lo;
  if (x >= code[hi]) return hi;
  while (hi - lo > 1) { // invariant: code[lo] < x < code[hi]
    const mid = (lo + hi) >> 1;
    if (code[mid] <= x) lo = mid;
    else hi = mid;
  }
  return x - code[lo] <= code[hi] - x ? lo : hi;
}

/**
 * 8-bit codes and per-block absmax of a blockwise-quantized vector.
 *
 * @example
 * ```ts
 * import { type Blockwise8bit, quantizeBlockwise8bit } from "./dynamic_map.ts";
 * const q: Blockwise8bit = quantizeBlockwise8bit(new Float32Array([0.5, -1]), 256);
 * ```
 */
export interface Blockwise8bit {
  /** One code per value: an index into the map. */
  codes: Uint8Array;
  /** f32 absmax per block; the last block may be partial. */
  absmax: Float32Array;
}

/**
 * Quantizes a vector blockwise with an 8-bit map, as bitsandbytes' `quantize_blockwise`:
 * each value is normalised by its block's absmax (`x * (1 / absmax)` in f32) and encoded to
 * the nearest map value. The last block may be shorter than `blocksize`.
 *
 * @example
 * ```ts
 * import { quantizeBlockwise8bit } from "./dynamic_map.ts";
 * quantizeBlockwise8bit(new Float32Array([0.5, -1]), 256).absmax; // Float32Array [1]
 * ```
 */
export function quantizeBlockwise8bit(
  values: Float32Array,
  blocksize: number,
  code: Float32Array = DYNAMIC_MAP_SIGNED,
): Blockwise8bit {
  checkMultiple(
    "quantize_blockwise",
    "blocksize",
    blocksize,
    1,
    "a positive integer",
    `blocksize ${blocksize}`,
  );
  const blocks = Math.ceil(values.length / blocksize);
  const absmax = new Float32Array(blocks);
  const codes = new Uint8Array(values.length);
  for (let b = 0; b < blocks; b++) {
    const start = b * blocksize;
    const end = Math.min(values.length, start + blocksize);
    let m = 0;
    for (let i = start; i < end; i++) m = Math.max(m, Math.abs(values[i]));
    absmax[b] = m;
    const inv = m > 0 ? Math.fround(1 / m) : 0;
    for (let i = start; i < end; i++) codes[i] = encodeNearest(code, Math.fround(values[i] * inv));
  }
  return { codes, absmax };
}

/**
 * Decodes `code[q] * absmax[block]` (f32), as bitsandbytes' `dequantize_blockwise`.
 *
 * @example
 * ```ts
 * import { dequantizeBlockwise8bit, quantizeBlockwise8bit } from "./dynamic_map.ts";
 * const q = quantizeBlockwise8bit(new Float32Array([0.5, -1]), 256);
 * dequantizeBlockwise8bit(q.codes, q.absmax, 256)[1]; // ≈ -0.993 (the map's most negative value)
 * ```
 */
export function dequantizeBlockwise8bit(
  codes: ArrayLike<number>,
  absmax: Float32Array,
  blocksize: number,
  code: Float32Array = DYNAMIC_MAP_SIGNED,
): Float32Array {
  const out = new Float32Array(codes.length);
  for (let i = 0; i < codes.length; i++) {
    out[i] = Math.fround(code[codes[i]] * absmax[Math.floor(i / blocksize)]);
  }
  return out;
}
