/**
 * NF4 with double quantization (QLoRA's "DQ", bitsandbytes' `compress_statistics=True`): the
 * NF4 codes as in `nf4.ts`, but the f32 block absmax values are themselves quantized. Their
 * mean (`offset`) is subtracted, and the centred values are quantized blockwise (nested blocks
 * of 256) to 8 bits with the signed dynamic map of `dynamic_map.ts`. A block's absmax is then
 * `DYNAMIC_MAP_SIGNED[qabsmax[b]] * absmax2[floor(b / 256)] + offset` (f32).
 *
 * Packed layout (`Nf4DqWeight`):
 * - `codes` (`Uint32Array`, `N * K / 8` words): NF4 codes, flat element `2j` in the HIGH
 *   nibble of byte `j`, bytes little-endian in each `u32` (exactly as NF4).
 * - `qabsmax` (`Uint32Array`, `ceil(B / 4)` words for `B = N * K / blocksize` blocks): one
 *   8-bit map index per block, four per `u32`, block `4i` in the lowest byte.
 * - `absmax2` (`Float32Array`, `ceil(B / 256)`): f32 absmax per nested block.
 * - `offset` (`Float32Array`, length 1): the mean of the block absmax values.
 *
 * Bits per parameter: `4 + 8 / blocksize + 32 / (256 · blocksize)` = 4.127 at blocksize 64,
 * plus 32 bits per tensor for `offset` (and rounding up of the last words). The 256-entry map
 * (1 KiB) is one constant shared by every tensor of a model and is not counted per tensor.
 *
 * @module
 */

import { encodeNf4, NF4_BLOCKSIZE, NF4_TABLE } from "./nf4.ts";
import { type BlockwiseOptions, matmulBlockwise4bit, quantizeBlockwise4bit } from "./blockwise4.ts";
import { DYNAMIC_MAP_SIGNED, quantizeBlockwise8bit } from "./dynamic_map.ts";
import { byteAt, nibbleAt, packBytes } from "./pack.ts";

/** Nested blocksize of the double quantization, as bitsandbytes' `quantize_4bit`. */
export const NESTED_BLOCKSIZE = 256;

/**
 * A weight matrix `W[N, K]` in NF4 with double-quantized block absmax.
 *
 * @example
 * ```ts
 * import { type Nf4DqWeight, quantizeNf4Dq } from "./nf4_dq.ts";
 * const w: Nf4DqWeight = quantizeNf4Dq(new Float32Array(128).fill(1), 2, 64);
 * ```
 */
export interface Nf4DqWeight {
  /** Format tag. */
  format: "nf4-dq";
  /** Rows: output features. */
  n: number;
  /** Columns: input features. */
  k: number;
  /** Values per NF4 block. */
  blocksize: number;
  /** Block absmax values per nested block (256). */
  nestedBlocksize: number;
  /** NF4 codes, element `2j` in the high nibble of byte `j`, bytes little-endian in `u32`. */
  codes: Uint32Array;
  /** 8-bit dynamic-map codes of the centred block absmax, four per `u32`, block `4i` lowest. */
  qabsmax: Uint32Array;
  /** f32 absmax per nested block. */
  absmax2: Float32Array;
  /** `[offset]`: the mean block absmax, added back after decoding. */
  offset: Float32Array;
  /**
   * The 256-entry map `qabsmax` indexes, when not {@linkcode DYNAMIC_MAP_SIGNED}: a
   * bitsandbytes checkpoint stores its own (`nested_quant_map`), which may differ from ours in
   * the last bit of some entries.
   */
  map?: Float32Array;
}

/**
 * Quantizes `W[N, K]` to NF4 with double quantization (default blocksize 64).
 *
 * @example
 * ```ts
 * import { quantizeNf4Dq } from "./nf4_dq.ts";
 * quantizeNf4Dq(new Float32Array(128).fill(1), 2, 64).offset; // Float32Array [1]
 * ```
 */
export function quantizeNf4Dq(
  w: Float32Array,
  n: number,
  k: number,
  options: BlockwiseOptions = {},
): Nf4DqWeight {
  const blocksize = options.blocksize ?? NF4_BLOCKSIZE;
  const q = quantizeBlockwise4bit("nf4-dq", w, n, k, blocksize, encodeNf4);
  let sum = 0;
  for (const a of q.absmax) sum += a;
  const offset = Math.fround(sum / q.absmax.length);
  const centred = q.absmax.map((a) => a - offset);
  const nested = quantizeBlockwise8bit(centred, NESTED_BLOCKSIZE, DYNAMIC_MAP_SIGNED);
  return {
    format: "nf4-dq",
    n,
    k,
    blocksize,
    nestedBlocksize: NESTED_BLOCKSIZE,
    codes: q.codes,
    qabsmax: packBytes(nested.codes),
    absmax2: nested.absmax,
    offset: new Float32Array([offset]),
  };
}

/**
 * Decodes the block absmax values: `map[q] * absmax2[b / 256] + offset`, in f32.
 *
 * @example
 * ```ts
 * import { dequantizeNf4DqAbsmax, quantizeNf4Dq } from "./nf4_dq.ts";
 * dequantizeNf4DqAbsmax(quantizeNf4Dq(new Float32Array(128).fill(1), 2, 64)); // [1, 1]
 * ```
 */
export function dequantizeNf4DqAbsmax(w: Nf4DqWeight): Float32Array {
  const blocks = (w.n * w.k) / w.blocksize;
  const out = new Float32Array(blocks);
  const map = w.map ?? DYNAMIC_MAP_SIGNED;
  for (let b = 0; b < blocks; b++) {
    const scaled = Math.fround(
      map[byteAt(w.qabsmax, b)] * w.absmax2[Math.floor(b / w.nestedBlocksize)],
    );
    out[b] = Math.fround(scaled + w.offset[0]);
  }
  return out;
}

/**
 * Reconstructs `NF4_TABLE[code] * absmax[block]` with the decoded block absmax.
 *
 * @example
 * ```ts
 * import { dequantizeNf4Dq, quantizeNf4Dq } from "./nf4_dq.ts";
 * dequantizeNf4Dq(quantizeNf4Dq(new Float32Array(128).fill(1), 2, 64))[0]; // 1
 * ```
 */
export function dequantizeNf4Dq(w: Nf4DqWeight): Float32Array {
  const absmax = dequantizeNf4DqAbsmax(w);
  const out = new Float32Array(w.n * w.k);
  for (let e = 0; e < out.length; e++) {
    out[e] = Math.fround(NF4_TABLE[nibbleAt(w.codes, e)] * absmax[Math.floor(e / w.blocksize)]);
  }
  return out;
}

/**
 * CPU twin of the fused NF4-DQ matmul `Y[M, N] = X[M, K] · Wᵀ`: decode each block absmax as
 * above, then the NF4 blockwise product of `blockwise4.ts`.
 *
 * @example
 * ```ts
 * import { matmulNf4Dq, quantizeNf4Dq } from "./nf4_dq.ts";
 * const w = quantizeNf4Dq(new Float32Array(128).fill(1), 2, 64);
 * matmulNf4Dq(new Float32Array(64).fill(1), 1, w); // Float32Array [64, 64]
 * ```
 */
export function matmulNf4Dq(x: Float32Array, m: number, w: Nf4DqWeight): Float32Array {
  const q = { codes: w.codes, absmax: dequantizeNf4DqAbsmax(w) };
  return matmulBlockwise4bit("nf4-dq", x, m, w.n, w.k, q, w.blocksize, NF4_TABLE);
}
