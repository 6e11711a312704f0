/**
 * KV cache formats: how keys and values are stored between decode steps, and the CPU twin of
 * what `kernels/rope.wgsl` writes and `kernels/attention.wgsl` reads.
 *
 * - `f16`: two f16 per u32 word, `[maxSeq, numKvHeads, headDim]`.
 * - `int8`: one scale per token, per head, per group of 32 along `headDim` (absmax / 127, stored
 *   as f16); codes in -127..127, four per word. 8.5 bits per value, as llama.cpp's Q8_0 cache.
 * - `int4`: per group of 32 an f16 scale and an f16 offset (the group's minimum); codes 0..15,
 *   value = offset + scale · code, eight per word. 5 bits per value, as Q4_1. With an offset
 *   rather than a symmetric code: a group of keys is rarely centred on zero (a key's channels
 *   carry a bias that RoPE turns but does not remove), and an offset uses all 16 levels on the
 *   group's actual range where a symmetric code spends half of them on the side the group does
 *   not reach.
 * - `int8` and `int4` turn each group of 32 keys by an orthonormal Hadamard matrix before
 *   quantizing (the attention turns the query the same way, so scores are unchanged): a key's
 *   outlier channels are spread over the group instead of setting its scale alone. `int8-plain`
 *   and `int4-plain` skip the turn, to measure what it buys.
 *
 * Quantized layout, per layer and per K or V tensor: the codes `[maxSeq, numKvHeads, headDim]`
 * packed into words, then from word {@linkcode KvCacheLayout.scaleWord} the scales
 * `[maxSeq, numKvHeads, headDim / 32]` (int8: f16, two per word; int4: one word of (scale,
 * offset) f16 each). Int8 codes sit in byte `b` of word `w` for element `4w + b`; int4 element
 * `8w + b` (b < 4) in the low nibble of byte `b`, element `8w + 4 + b` in its high nibble.
 *
 * @module
 */

import { f16BitsToF32, f32ToF16Bits } from "../gpu/f16.ts";

/** The storage formats of the KV cache. */
export const KV_CACHE_FORMATS = ["f16", "int8", "int4", "int8-plain", "int4-plain"] as const;

/** One of {@linkcode KV_CACHE_FORMATS}. */
export type KvCacheFormat = typeof KV_CACHE_FORMATS[number];

/** Values per quantization group along the head dimension. */
export const KV_GROUP = 32;

/** What a KV cache format stores. */
export interface KvCacheInfo {
  /** Bits of one code (16 for f16). */
  codeBits: 16 | 8 | 4;
  /** Whether keys are turned by a Hadamard matrix per group of 32 before quantizing. */
  rotateKeys: boolean;
  /** Bits per cached value, scales included. */
  bitsPerValue: number;
  /** Short description. */
  label: string;
}

/**
 * Facts about each KV cache format.
 *
 * @example
 * ```ts
 * import { KV_CACHE_INFO } from "./kv_cache.ts";
 * KV_CACHE_INFO.int4.bitsPerValue; // 5
 * ```
 */
export const KV_CACHE_INFO: Readonly<Record<KvCacheFormat, KvCacheInfo>> = {
  f16: { codeBits: 16, rotateKeys: false, bitsPerValue: 16, label: "f16" },
  int8: { codeBits: 8, rotateKeys: true, bitsPerValue: 8.5, label: "int8, keys turned" },
  int4: { codeBits: 4, rotateKeys: true, bitsPerValue: 5, label: "int4+offset, keys turned" },
  "int8-plain": { codeBits: 8, rotateKeys: false, bitsPerValue: 8.5, label: "int8" },
  "int4-plain": { codeBits: 4, rotateKeys: false, bitsPerValue: 5, label: "int4+offset" },
};

/**
 * Checks a format name (for command-line and option parsing).
 *
 * @example
 * ```ts
 * import { parseKvCacheFormat } from "./kv_cache.ts";
 * parseKvCacheFormat("int8"); // "int8"
 * ```
 */
export function parseKvCacheFormat(name: string): KvCacheFormat {
  if (!(KV_CACHE_FORMATS as readonly string[]).includes(name)) {
    throw new RangeError(
      `unknown KV cache format "${name}" (known: ${KV_CACHE_FORMATS.join(", ")})`,
    );
  }
  return name as KvCacheFormat;
}

/** Where things are in one cache tensor (K or V of one layer). */
export interface KvCacheLayout {
  /** Bytes of the tensor. */
  bytes: number;
  /** Word index where the scales begin (0 for f16, which has none). */
  scaleWord: number;
  /** Words of codes per (position, head). */
  codeWordsPerHead: number;
}

/**
 * The layout of one cache tensor holding `maxSeq` positions. Throws when the head width does
 * not suit the format (int8 needs `headDim % 64 == 0`, so that one thread writes both f16 scales
 * of a word; int4 `headDim % 32 == 0`).
 *
 * @example
 * ```ts
 * import { kvCacheLayout } from "./kv_cache.ts";
 * kvCacheLayout("int8", 4096, 32, 128).bytes; // 4096·32·(128 + 8) = 17,825,792
 * ```
 */
export function kvCacheLayout(
  format: KvCacheFormat,
  maxSeq: number,
  numKvHeads: number,
  headDim: number,
): KvCacheLayout {
  const { codeBits } = KV_CACHE_INFO[format];
  const values = maxSeq * numKvHeads * headDim;
  if (codeBits === 16) {
    return { bytes: values * 2, scaleWord: 0, codeWordsPerHead: headDim / 2 };
  }
  const need = codeBits === 8 ? 2 * KV_GROUP : KV_GROUP;
  if (headDim % need) {
    throw new RangeError(
      `KV cache ${format}: head_dim ${headDim} is not a multiple of ${need}; use --kv-cache f16`,
    );
  }
  const codeWords = (values * codeBits) / 32;
  const groups = values / KV_GROUP;
  const scaleWords = codeBits === 8 ? groups / 2 : groups;
  return {
    // padded to 16 bytes: the attention reads keys and their scales as vec4<u32>
    bytes: Math.ceil((codeWords + scaleWords) / 4) * 16,
    scaleWord: codeWords,
    codeWordsPerHead: (headDim * codeBits) / 32,
  };
}

/**
 * Turns `x[offset .. offset + 32)` in place by the orthonormal 32×32 Hadamard matrix (Sylvester
 * order, scaled by 1/√32). The matrix is symmetric and its own inverse.
 *
 * @example
 * ```ts
 * import { hadamard32 } from "./kv_cache.ts";
 * const x = new Float32Array(32);
 * x[0] = 1;
 * hadamard32(x); // every entry 1/√32
 * ```
 */
export function hadamard32(x: Float32Array | Float64Array, offset = 0): void {
  for (let h = 1; h < KV_GROUP; h <<= 1) {
    for (let i = 0; i < KV_GROUP; i++) {
      if (i & h) continue;
      const a = x[offset + i];
      const b = x[offset + i + h];
      x[offset + i] = a + b;
      x[offset + i + h] = a - b;
    }
  }
  const s = Math.fround(1 / Math.sqrt(KV_GROUP)); // the kernels' f32 constant
  for (let i = 0; i < KV_GROUP; i++) x[offset + i] = Math.fround(x[offset + i] * s);
}

/**
 * A copy of `x` (any rows of a head width that is a multiple of 32) with every group of 32 turned
 * by {@linkcode hadamard32} when `format` turns keys, as RoPE leaves the queries for the
 * attention over such a cache; otherwise `x` itself.
 *
 * @example
 * ```ts
 * import { turnedQueries } from "./kv_cache.ts";
 * turnedQueries(new Float32Array(32).fill(1), "int8")[0]; // √32
 * ```
 */
export function turnedQueries(x: Float32Array, format: KvCacheFormat): Float32Array {
  if (!KV_CACHE_INFO[format].rotateKeys) return x;
  const out = new Float32Array(x);
  for (let o = 0; o < out.length; o += KV_GROUP) hadamard32(out, o);
  return out;
}

/** Round half to even, as WGSL's `round`. */
function roundEven(x: number): number {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

const f16 = (x: number): number => f16BitsToF32(f32ToF16Bits(x));

/** One group quantized: codes and the f16-rounded scale and offset. */
interface QuantGroup {
  codes: Int32Array;
  scale: number;
  offset: number;
}

/** The kernels' quantization of one group of 32 (f32 arithmetic, f16 scale and offset). */
function quantizeGroup(x: Float32Array, codeBits: 8 | 4): QuantGroup {
  const codes = new Int32Array(KV_GROUP);
  if (codeBits === 8) {
    let amax = 0;
    for (const v of x) amax = Math.max(amax, Math.abs(v));
    const scale = f16(Math.fround(amax / 127));
    const inv = scale > 0 ? Math.fround(1 / scale) : 0;
    for (let i = 0; i < KV_GROUP; i++) {
      codes[i] = Math.max(-127, Math.min(127, roundEven(Math.fround(x[i] * inv))));
    }
    return { codes, scale, offset: 0 };
  }
  let lo = Infinity;
  let hi = -Infinity;
  for (const v of x) {
    lo = Math.min(lo, v);
    hi = Math.max(hi, v);
  }
  const scale = f16(Math.fround(Math.fround(hi - lo) / 15));
  const offset = f16(lo);
  const inv = scale > 0 ? Math.fround(1 / scale) : 0;
  for (let i = 0; i < KV_GROUP; i++) {
    const c = roundEven(Math.fround(Math.fround(x[i] - offset) * inv));
    codes[i] = Math.max(0, Math.min(15, c));
  }
  return { codes, scale, offset };
}

/**
 * What the cache gives back for `x` `[n, headDim]` (any number of rows of one head width)
 * stored in `format`: f16 rounding, or quantization and dequantization per group of 32 — in the
 * original basis (a turned key is turned back, as the attention's turned query makes it act).
 *
 * @example
 * ```ts
 * import { kvRoundTrip } from "./kv_cache.ts";
 * const x = Float32Array.from({ length: 32 }, (_, i) => i / 31);
 * kvRoundTrip(x, 32, "int8", false); // x within 1/254
 * ```
 */
export function kvRoundTrip(
  x: Float32Array,
  headDim: number,
  format: KvCacheFormat,
  isKey: boolean,
): Float32Array {
  const { codeBits, rotateKeys } = KV_CACHE_INFO[format];
  if (codeBits === 16) return x.map(f16);
  if (headDim % KV_GROUP) throw new RangeError(`kvRoundTrip: head_dim ${headDim} % 32 != 0`);
  const out = new Float32Array(x.length);
  const g = new Float32Array(KV_GROUP);
  const turn = isKey && rotateKeys;
  for (let o = 0; o < x.length; o += KV_GROUP) {
    g.set(x.subarray(o, o + KV_GROUP));
    if (turn) hadamard32(g);
    const q = quantizeGroup(g, codeBits);
    for (let i = 0; i < KV_GROUP; i++) g[i] = Math.fround(q.offset + q.scale * q.codes[i]);
    if (turn) hadamard32(g);
    out.set(g, o);
  }
  return out;
}

/**
 * Encodes rows `[n, headDim]` as the kernels store them: the code words and the scale words of
 * those rows (for comparing a cache read back from the GPU with the twin).
 *
 * @example
 * ```ts
 * import { encodeKvRows } from "./kv_cache.ts";
 * encodeKvRows(new Float32Array(64), 64, "int8", false).codes.length; // 16
 * ```
 */
export function encodeKvRows(
  x: Float32Array,
  headDim: number,
  format: KvCacheFormat,
  isKey: boolean,
): { codes: Uint32Array; scales: Uint32Array } {
  const { codeBits, rotateKeys } = KV_CACHE_INFO[format];
  if (codeBits === 16) throw new RangeError("encodeKvRows: f16 has no codes");
  const groups = x.length / KV_GROUP;
  const codes = new Uint32Array((x.length * codeBits) / 32);
  const scaleBits = new Uint16Array(codeBits === 8 ? groups : 2 * groups);
  const g = new Float32Array(KV_GROUP);
  for (let gi = 0; gi < groups; gi++) {
    g.set(x.subarray(gi * KV_GROUP, (gi + 1) * KV_GROUP));
    if (isKey && rotateKeys && headDim % KV_GROUP === 0) hadamard32(g);
    const q = quantizeGroup(g, codeBits);
    if (codeBits === 8) {
      scaleBits[gi] = f32ToF16Bits(q.scale);
      for (let i = 0; i < KV_GROUP; i++) {
        const e = gi * KV_GROUP + i;
        codes[e >> 2] |= (q.codes[i] & 0xff) << (8 * (e & 3));
      }
    } else {
      scaleBits[2 * gi] = f32ToF16Bits(q.scale);
      scaleBits[2 * gi + 1] = f32ToF16Bits(q.offset);
      for (let i = 0; i < KV_GROUP; i++) {
        const e = gi * KV_GROUP + i;
        const n = e & 7;
        codes[e >> 3] |= q.codes[i] << (n < 4 ? 8 * n : 8 * (n - 4) + 4);
      }
    }
  }
  for (let i = 0; i < codes.length; i++) codes[i] >>>= 0;
  return { codes, scales: new Uint32Array(scaleBits.buffer) };
}

/**
 * Decodes positions `[0, positions)` of a cache tensor read back as words into f32
 * `[positions, numKvHeads, headDim]`, in the stored basis (keys of a turning format stay turned;
 * pass `unturnKeys` to turn them back).
 *
 * @example
 * ```ts ignore
 * const keys = decodeKvCache(await gpu.readU32(cacheK), "int8", pos, 2, 64, maxSeq, true);
 * ```
 */
export function decodeKvCache(
  words: Uint32Array,
  format: KvCacheFormat,
  positions: number,
  numKvHeads: number,
  headDim: number,
  maxSeq: number,
  unturnKeys = false,
): Float32Array {
  const n = positions * numKvHeads * headDim;
  const out = new Float32Array(n);
  const { codeBits, rotateKeys } = KV_CACHE_INFO[format];
  if (codeBits === 16) {
    for (let e = 0; e < n; e++) {
      out[e] = f16BitsToF32((words[e >> 1] >>> (16 * (e & 1))) & 0xffff);
    }
    return out;
  }
  const { scaleWord } = kvCacheLayout(format, maxSeq, numKvHeads, headDim);
  const half = (i: number) =>
    f16BitsToF32((words[scaleWord + (i >> 1)] >>> (16 * (i & 1))) & 0xffff);
  for (let e = 0; e < n; e++) {
    const gi = Math.floor(e / KV_GROUP);
    if (codeBits === 8) {
      const c = ((words[e >> 2] >>> (8 * (e & 3))) << 24) >> 24;
      out[e] = Math.fround(half(gi) * c);
    } else {
      const k = e & 7;
      const c = (words[e >> 3] >>> (k < 4 ? 8 * k : 8 * (k - 4) + 4)) & 15;
      out[e] = Math.fround(half(2 * gi + 1) + half(2 * gi) * c);
    }
  }
  if (unturnKeys && rotateKeys) {
    for (let o = 0; o < n; o += KV_GROUP) hadamard32(out, o);
  }
  return out;
}
