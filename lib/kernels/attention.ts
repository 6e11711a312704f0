/**
 * Causal grouped-query attention over an FP16 KV cache (`kernels/attention.wgsl`) and its CPU
 * twin.
 *
 * The cache of one layer is two tensors, K and V, each `[maxSeq, numKvHeads, headDim]` as f16
 * pairs ({@linkcode kvCacheBytes} bytes each). {@linkcode Attention.writeKv} stores new
 * positions, {@linkcode Attention.attend} reads them, with an online softmax, so any sequence
 * length that fits the cache works in bounded workgroup memory.
 *
 * With few queries (decode: one row, `numHeads` workgroups) a long context is split over
 * ranges of `splitKeys` positions, attended in parallel and merged ("flash decoding"); the
 * partial results go through a small scratch tensor the instance owns
 * ({@linkcode attentionScratchBytes}), allocated when `maxSeq` is given.
 *
 * @module
 */

import { type Binding, type CommandBatch, grid, params } from "../gpu/batch.ts";
import type { Gpu } from "../gpu/device.ts";
import { f16BitsToF32, f32ToF16Bits } from "../gpu/f16.ts";
import { type GpuStart, latestStart, requireBytes } from "./chunks.ts";
import { KV_CACHE_INFO, type KvCacheFormat, kvCacheLayout, kvRoundTrip } from "./kv_cache.ts";

/** Head layout shared by the kernels and the twin. */
export interface AttentionShape {
  /** Query heads. */
  numHeads: number;
  /** Key/value heads; divides `numHeads`. */
  numKvHeads: number;
  /** Head width; even. */
  headDim: number;
}

/**
 * Bytes of one cache tensor (K or V) of one layer: `maxSeq · numKvHeads · headDim` values in
 * `format` (f16 by default; see `kv_cache.ts` for the quantized ones), scales included.
 *
 * @example
 * ```ts
 * import { kvCacheBytes } from "./attention.ts";
 * kvCacheBytes(4096, 8, 128); // 8 MiB
 * kvCacheBytes(4096, 8, 128, "int4"); // 2.5 MiB
 * ```
 */
export function kvCacheBytes(
  maxSeq: number,
  numKvHeads: number,
  headDim: number,
  format: KvCacheFormat = "f16",
): number {
  return kvCacheLayout(format, maxSeq, numKvHeads, headDim).bytes;
}

/**
 * Reference attention. `k` and `v` hold every position so far, `[startPos + rows, numKvHeads,
 * headDim]` in f32, and go through the cache's `format` first (f16 rounding by default, or the
 * quantized formats' round trip, {@linkcode kvRoundTrip}). Query row `r` of
 * `q` `[rows, numHeads, headDim]` is position `startPos + r` and attends to positions
 * `0 ..= startPos + r` with scale `1/sqrt(headDim)` (with `window` > 0, only the last `window`
 * of them); softmax in f64.
 *
 * @example
 * ```ts
 * import { cpuAttention } from "./attention.ts";
 * const shape = { numHeads: 1, numKvHeads: 1, headDim: 2 };
 * cpuAttention(new Float32Array([1, 0]), new Float32Array([1, 0]), new Float32Array([2, 3]), 1, 0, shape);
 * // one position: the output is its value, [2, 3]
 * ```
 */
export function cpuAttention(
  q: Float32Array,
  k: Float32Array,
  v: Float32Array,
  rows: number,
  startPos: number,
  shape: AttentionShape,
  window = 0,
  format: KvCacheFormat = "f16",
): Float32Array {
  const { numHeads, numKvHeads, headDim } = shape;
  const group = numHeads / numKvHeads;
  const kh = format === "f16"
    ? k.map((x) => f16BitsToF32(f32ToF16Bits(x)))
    : kvRoundTrip(k, headDim, format, true);
  const vh = format === "f16"
    ? v.map((x) => f16BitsToF32(f32ToF16Bits(x)))
    : kvRoundTrip(v, headDim, format, false);
  const scale = 1 / Math.sqrt(headDim);
  const out = new Float32Array(rows * numHeads * headDim);
  const scores = new Float64Array(startPos + rows);
  for (let r = 0; r < rows; r++) {
    const len = startPos + r + 1;
    const first = window > 0 ? Math.max(0, len - window) : 0;
    for (let h = 0; h < numHeads; h++) {
      const qo = (r * numHeads + h) * headDim;
      const kvh = Math.floor(h / group);
      let max = -Infinity;
      for (let j = first; j < len; j++) {
        const ko = (j * numKvHeads + kvh) * headDim;
        let s = 0;
        for (let d = 0; d < headDim; d++) s += q[qo + d] * kh[ko + d];
        scores[j] = s * scale;
        max = Math.max(max, scores[j]);
      }
      let sum = 0;
      for (let j = first; j < len; j++) sum += scores[j] = Math.exp(scores[j] - max);
      for (let d = 0; d < headDim; d++) {
        let acc = 0;
        for (let j = first; j < len; j++) {
          acc += scores[j] * vh[(j * numKvHeads + kvh) * headDim + d];
        }
        out[qo + d] = acc / sum;
      }
    }
  }
  return out;
}

/**
 * Positions per split range at least (the default of `AttentionOptions.splitKeys`): 128, one
 * block of the GPU's workgroup, for every cache format. Measured on the H200 (BENCHMARKS.md,
 * "Decode attention from 136 to 2,048 positions"): an f16 cache's attention from 384 to 2,048
 * positions takes 11-28% less time than with 256 (then two to eight ranges a head), at 4k 1%
 * more; the quantized caches took 128 before.
 *
 * @example
 * ```ts
 * import { defaultSplitKeys } from "./attention.ts";
 * defaultSplitKeys("f16"); // 128
 * defaultSplitKeys("int4"); // 128
 * ```
 */
export function defaultSplitKeys(_format: KvCacheFormat = "f16"): number {
  return 128;
}

/**
 * The longest context attended unsplit (the default of `AttentionOptions.unsplitPositions`):
 * 256 positions over an f16 cache, 128 over a quantized one, where each began to split before
 * the ranges shortened. A split costs a merge dispatch per layer, and int8-vectorwise decode,
 * whose CPU encode is close to its GPU time, ran 5-7% slower with it at 129-136 positions
 * (BENCHMARKS.md, same section).
 *
 * @example
 * ```ts
 * import { defaultUnsplitPositions } from "./attention.ts";
 * defaultUnsplitPositions("f16"); // 256
 * defaultUnsplitPositions("int8"); // 128
 * ```
 */
export function defaultUnsplitPositions(format: KvCacheFormat = "f16"): number {
  return KV_CACHE_INFO[format].codeBits === 16 ? 256 : 128;
}

/** Options for {@linkcode createAttention}. */
export interface AttentionOptions extends AttentionShape {
  /**
   * Longest sequence that will be attended: the positions the cache tensors hold. Given, the
   * instance allocates the scratch for split (flash-decoding) attention up to this length;
   * without it every call runs unsplit. Required for a quantized cache (where its scales begin
   * depends on it).
   */
  maxSeq?: number;
  /** The cache's storage format (default `"f16"`). */
  kvCache?: KvCacheFormat;
  /**
   * Positions per split range at least, a multiple of the workgroup size (default:
   * {@linkcode defaultSplitKeys} of the format). Longer
   * contexts take longer ranges, so that a call runs about `splitWorkgroups` workgroups.
   */
  splitKeys?: number;
  /**
   * Workgroups a split call aims at (default 1024: a few per multiprocessor of a large GPU):
   * ranges grow past `splitKeys` when the context would need more. 0: always `splitKeys`.
   */
  splitWorkgroups?: number;
  /**
   * Attend contexts of at most this many positions unsplit (default: `splitKeys` where given,
   * else {@linkcode defaultUnsplitPositions} of the format).
   */
  unsplitPositions?: number;
  /** Split only when rows · numHeads is below this (default 256): enough workgroups otherwise. */
  splitBelowItems?: number;
  /**
   * Threads per workgroup = keys per block (default 128; 64 on a software adapter), a power of
   * two; head_dim ≤ 8 × this (2 × this when head_dim is not a multiple of 8).
   */
  workgroupSize?: number;
  /**
   * Turn int8/int4 codes into floats with integer operations and an exact f32 subtraction
   * rather than integer-to-float conversions (default false: the results are identical, and on
   * the H200 the conversions measured as fast for int8 and faster for int4, see BENCHMARKS.md).
   */
  fastConvert?: boolean;
  /**
   * Elements of a key each thread dots with the query: 16 (default) or 32 (fewer threads per key,
   * more registers). Head widths that are not a multiple of it take 8 (f16) or 2.
   */
  keyElements?: 16 | 32;
  /**
   * Elements of a value each thread sums (quantized caches): 8 (default) or 16 (one 16-byte load
   * of int8 codes, 8 bytes of int4; fewer loads per key, more registers). f16 caches take 8.
   */
  valueElements?: 8 | 16;
}

/**
 * Bytes of the split-attention scratch for sequences up to `maxSeq`: partial (max, sum,
 * output) per (row, head, range) for up to `splitBelowItems - 1` (row, head) pairs.
 *
 * @example
 * ```ts
 * import { attentionScratchBytes } from "./attention.ts";
 * attentionScratchBytes({ numHeads: 32, numKvHeads: 8, headDim: 128 }, 4096); // 4,243,200
 * ```
 */
export function attentionScratchBytes(
  shape: AttentionShape,
  maxSeq: number,
  splitKeys = defaultSplitKeys(),
  splitBelowItems = 256,
  unsplitPositions = defaultUnsplitPositions(),
): number {
  const splits = Math.ceil(maxSeq / splitKeys);
  // nothing to split: createAttention allocates no scratch
  if (splits <= 1 || maxSeq <= unsplitPositions) return 0;
  return (splitBelowItems - 1) * splits * (shape.headDim + 2) * 4;
}

/**
 * The longest context a one-row step takes RoPE folded into the attention
 * ({@linkcode Attention.foldsRopeAt}). Measured on an H200, Llama-2-7B shape, GPU ms per step,
 * two dispatches → one: at 128 positions 3.3–4.0% faster with every cache format, at 4,096 f16
 * 3.2% and int8 1.2% faster but int4 0.6% slower, at 16,384 3–7% slower (most likely because the
 * folded kernel binds the cache writable, to store the new position, which slows its loads of
 * the older ones); BENCHMARKS.md, "RoPE folded into the attention", has the runs.
 */
export const FOLD_ROPE_MAX_POSITIONS = 4096;

/** Attention kernels for one head layout; see {@linkcode createAttention}. */
export interface Attention extends Readonly<AttentionShape> {
  /** Bytes of the scratch this instance owns (0 without `maxSeq`). */
  readonly scratchBytes: number;
  /** The cache's storage format. */
  readonly kvCache: KvCacheFormat;
  /**
   * Records the conversion of `k`, `v` `[rows, numKvHeads, headDim]` (f32) to f16 into cache
   * positions `startPos .. startPos + rows - 1`. An f16 cache only (quantized caches are
   * written by RoPE, `RopeQk.encodeToCache`).
   */
  writeKv(
    batch: CommandBatch,
    k: Binding,
    v: Binding,
    cacheK: Binding,
    cacheV: Binding,
    startPos: number,
    rows: number,
  ): void;
  /**
   * Records causal attention of `q` `[rows, numHeads, headDim]` (positions `startPos ..`) over
   * cache positions `0 .. startPos + rows - 1`, into `out` (same shape as `q`). Write the
   * rows' own keys first. With `window` > 0 a query sees only the last `window` positions up
   * to its own (sliding-window attention).
   * Over a cache whose format turns keys (`KV_CACHE_INFO[f].rotateKeys`), `q` must be turned
   * the same way, as `RopeQk.encodeToCache` leaves it.
   * With `at`, the rows start at `startPos` plus the u32 in `at.base`, read on the GPU; the
   * split is planned for the longest context `at.bound` allows (ranges past a row's length are
   * empty).
   */
  attend(
    batch: CommandBatch,
    q: Binding,
    cacheK: Binding,
    cacheV: Binding,
    out: Binding,
    startPos: number,
    rows: number,
    window?: number,
    at?: GpuStart,
  ): void;
  /**
   * Whether {@linkcode Attention.attendNew} serves this layout: head_dim a multiple of 8 (of 64
   * for an int8 cache, whose scale words hold two groups).
   */
  readonly foldsRope: boolean;
  /**
   * Whether a one-row step at `startPos` (plus `at.base`, up to `at.bound`) is better served by
   * {@linkcode Attention.attendNew} than by RoPE into the cache and {@linkcode Attention.attend}:
   * where it folds at all and the step sees at most {@linkcode FOLD_ROPE_MAX_POSITIONS}
   * positions (past that the folded kernel's writable cache bindings slow its loads more than the
   * dispatch saves).
   *
   * @example
   * ```ts ignore
   * attn.foldsRopeAt(127); // true where foldsRope: a short context
   * ```
   */
  foldsRopeAt(startPos: number, at?: GpuStart): boolean;
  /**
   * One decode step (one query row at position `startPos`, plus `at.base` with `at`) with RoPE
   * and the cache write folded in: `q` `[numHeads, headDim]`, `k` and `v` `[numKvHeads,
   * headDim]` as the q/k/v products left them, before RoPE (`invFreq`: RoPE's frequencies). The
   * rotated key and the value are stored at that position of the cache (the words
   * `RopeQk.encodeToCache` would store, bit for bit), and `out` gets what it followed by
   * {@linkcode Attention.attend} would give, up to the order of the softmax sums (the new
   * position first), in one dispatch fewer. `q`, `k` and `v` are left as they are. Only where
   * `foldsRope`.
   *
   * @example
   * ```ts ignore
   * if (attn.foldsRope) attn.attendNew(batch, q, k, v, invFreq, cacheK, cacheV, out, pos);
   * ```
   */
  attendNew(
    batch: CommandBatch,
    q: Binding,
    k: Binding,
    v: Binding,
    invFreq: Binding,
    cacheK: Binding,
    cacheV: Binding,
    out: Binding,
    startPos: number,
    window?: number,
    at?: GpuStart,
  ): void;
  /** Frees the scratch. */
  destroy(): void;
}

/**
 * Compiles the attention kernels for a head layout.
 *
 * @example
 * ```ts ignore
 * const attn = await createAttention(gpu, { numHeads: 32, numKvHeads: 8, headDim: 128, maxSeq: 4096 });
 * attn.writeKv(batch, k, v, cacheK, cacheV, pos, rows);
 * attn.attend(batch, q, cacheK, cacheV, out, pos, rows);
 * ```
 */
export async function createAttention(gpu: Gpu, opts: AttentionOptions): Promise<Attention> {
  const { numHeads, numKvHeads, headDim } = opts;
  // 128 on GPUs (several key lanes per head); 64 on a software adapter, whose workgroup barriers
  // cost in proportion to the threads (llvmpipe runs them as coroutines).
  const wg = opts.workgroupSize ?? (gpu.isSoftware ? 64 : 128);
  const kvCache = opts.kvCache ?? "f16";
  const splitKeys = Math.ceil((opts.splitKeys ?? defaultSplitKeys(kvCache)) / wg) * wg;
  const splitBelow = opts.splitBelowItems ?? 256;
  // Each thread of a value lane takes 8 elements of the head (2 when head_dim is not a multiple
  // of 8): the workgroup must hold one lane.
  const maxHeadDim = (headDim % 8 ? 2 : 8) * wg;
  if (headDim % 2 || numHeads % numKvHeads || headDim > maxHeadDim) {
    throw new RangeError(
      `attention: need an even head_dim ≤ ${maxHeadDim} and num_kv_heads dividing num_heads, ` +
        `got ${numHeads}/${numKvHeads} heads of ${headDim}`,
    );
  }
  if (wg < 1 || wg & (wg - 1)) {
    throw new RangeError(`attention: workgroup size ${wg} is not a power of two`);
  }
  const info = KV_CACHE_INFO[kvCache];
  if (info.codeBits !== 16 && !opts.maxSeq) {
    throw new RangeError(`attention: a ${kvCache} KV cache needs maxSeq (the cache's positions)`);
  }
  const keyElements = opts.keyElements ?? 16;
  const layout = kvCacheLayout(kvCache, opts.maxSeq ?? 0, numKvHeads, headDim); // checks headDim
  const constants = { HEAD_DIM: headDim, ATT_WG: wg };
  // Keys and values load 16 bytes at a time when a head is whole groups of eight f16; a thread
  // takes 32 elements of a key (a quantized cache's group) when the head is whole groups of 32.
  const defines = [
    ...(headDim % 8 === 0 ? ["HD8"] : []),
    ...(headDim % 32 === 0 && keyElements === 32 ? ["K32"] : []),
    ...(headDim % 16 === 0 && keyElements === 16 ? ["K16"] : []),
    ...(info.codeBits === 8 ? ["KVQ", "KV8"] : info.codeBits === 4 ? ["KVQ", "KV4"] : []),
    ...(opts.fastConvert ? ["FASTCVT"] : []),
    ...(info.codeBits !== 16 && headDim % 32 === 0 && opts.valueElements === 16 ? ["V16"] : []),
  ];
  // RoPE and the cache write folded into a decode step's attention (FUSE_NEW): heads of whole
  // 16-byte words, and for int8 whole scale words (two groups of 32 a word).
  const foldsRope = headDim % 8 === 0 && (info.codeBits !== 8 || headDim % 64 === 0);
  const fused = [...defines, "FUSE_NEW", ...(info.rotateKeys ? ["KROT"] : [])];
  const [write, attend, split, combine, attendNew, splitNew] = await Promise.all([
    gpu.kernel({ file: "attention", entry: "write_kv", constants: { HEAD_DIM: headDim } }),
    gpu.kernel({ file: "attention", entry: "attend", defines, constants }),
    gpu.kernel({ file: "attention", entry: "attend_split", defines, constants }),
    gpu.kernel({ file: "attention", entry: "attend_combine", constants }),
    foldsRope
      ? gpu.kernel({ file: "attention", entry: "attend", defines: fused, constants })
      : null,
    foldsRope
      ? gpu.kernel({ file: "attention", entry: "attend_split", defines: fused, constants })
      : null,
  ]);
  // (a caller who sets the ranges splits past one range, as before)
  const unsplit = opts.unsplitPositions ??
    (opts.splitKeys !== undefined ? splitKeys : defaultUnsplitPositions(kvCache));
  const maxSplits = opts.maxSeq ? Math.ceil(opts.maxSeq / splitKeys) : 0;
  const scratchBytes = opts.maxSeq
    ? attentionScratchBytes(opts, opts.maxSeq, splitKeys, splitBelow, unsplit)
    : 0;
  const scratch = scratchBytes > 0
    ? gpu.tensor({ label: "attention partials", category: "scratch", byteSize: scratchBytes })
    : null;
  const kvRowBytes = numKvHeads * headDim * 2;
  // A quantized cache is checked whole: its scales sit past the last position's codes.
  const cacheBytes = (positions: number) =>
    info.codeBits === 16 ? positions * kvRowBytes : layout.bytes;
  const splitTarget = opts.splitWorkgroups ?? 1024;
  // Positions per range for `len` positions and `items` (row, head) pairs: the whole blocks
  // nearest to an even share of splitTarget workgroups. (Rounding up doubled the ranges one
  // position past a multiple: 129 positions a share became two blocks, half the workgroups.)
  const rangeKeys = (len: number, items: number) =>
    splitTarget > 0
      ? Math.max(splitKeys, Math.round(len / Math.ceil(splitTarget / items) / wg) * wg)
      : splitKeys;
  const base = (rows: number, startPos: number, splits = 1, window = 0, range = splitKeys) =>
    params().u32(rows).u32(startPos).u32(numHeads).u32(numKvHeads).f32(1 / Math.sqrt(headDim))
      .u32(splits).u32(range).u32(window).u32(layout.scaleWord).build();
  // attend and attendNew: one call's split plan and dispatches. `news` (attendNew): the new
  // key, value and RoPE's frequencies, bound after the position word.
  const dispatchAttend = (
    batch: CommandBatch,
    [q, cacheK, cacheV]: Binding[],
    out: Binding,
    startPos: number,
    rows: number,
    window: number,
    at: GpuStart | undefined,
    folded: boolean,
    news: Binding[] = [],
  ) => {
    requireBytes(q, rows * numHeads * headDim * 4, "attention q");
    requireBytes(out, rows * numHeads * headDim * 4, "attention out");
    // the longest context the rows can see: what the grid is planned for
    const len = latestStart(startPos, at) + rows;
    if (opts.maxSeq && len > opts.maxSeq) {
      throw new RangeError(
        `attention: positions up to ${len} exceed the cache (${opts.maxSeq})`,
      );
    }
    requireBytes(cacheK, cacheBytes(len), "attention cacheK");
    requireBytes(cacheV, cacheBytes(len), "attention cacheV");
    if (at) requireBytes(at.base, 4, "attention start position");
    const pos = at?.base ?? batch.gpu.zeros();
    const items = rows * numHeads;
    const range = rangeKeys(len, items);
    const splits = Math.ceil(len / range);
    if (scratch && splits > 1 && splits <= maxSplits && items < splitBelow && len > unsplit) {
      const p = base(rows, startPos, splits, window, range);
      batch.dispatch(
        folded ? splitNew! : split,
        [q, cacheK, cacheV, scratch, pos, ...news],
        grid(items * splits),
        p,
      );
      batch.dispatch(combine, [scratch, out], grid(items), p);
    } else {
      const p = base(rows, startPos, 1, window);
      batch.dispatch(
        folded ? attendNew! : attend,
        [q, cacheK, cacheV, out, pos, ...news],
        grid(items),
        p,
      );
    }
  };
  return {
    numHeads,
    numKvHeads,
    headDim,
    kvCache,
    scratchBytes: scratch?.byteSize ?? 0,
    writeKv(batch, k, v, cacheK, cacheV, startPos, rows) {
      if (info.codeBits !== 16) {
        throw new Error(`attention.writeKv: f16 caches only (this one is ${kvCache})`);
      }
      requireBytes(k, rows * numKvHeads * headDim * 4, "attention k");
      requireBytes(v, rows * numKvHeads * headDim * 4, "attention v");
      requireBytes(cacheK, (startPos + rows) * kvRowBytes, "attention cacheK (too short?)");
      requireBytes(cacheV, (startPos + rows) * kvRowBytes, "attention cacheV (too short?)");
      const groups = grid(Math.ceil((rows * numKvHeads * headDim) / 2 / 256));
      batch.dispatch(write, [k, v, cacheK, cacheV], groups, base(rows, startPos));
    },
    foldsRope,
    foldsRopeAt(startPos, at) {
      return foldsRope && latestStart(startPos, at) + 1 <= FOLD_ROPE_MAX_POSITIONS;
    },
    attend(batch, q, cacheK, cacheV, out, startPos, rows, window = 0, at) {
      dispatchAttend(batch, [q, cacheK, cacheV], out, startPos, rows, window, at, false);
    },
    attendNew(batch, q, k, v, invFreq, cacheK, cacheV, out, startPos, window = 0, at) {
      if (!foldsRope) {
        throw new Error(
          `attention.attendNew: needs head_dim a multiple of 8 (of 64 for an int8 cache); ` +
            `this one: ${kvCache}, head_dim ${headDim}`,
        );
      }
      requireBytes(k, numKvHeads * headDim * 4, "attention k");
      requireBytes(v, numKvHeads * headDim * 4, "attention v");
      requireBytes(invFreq, (headDim / 2) * 4, "attention invFreq");
      dispatchAttend(batch, [q, cacheK, cacheV], out, startPos, 1, window, at, true, [
        k,
        v,
        invFreq,
      ]);
    },
    destroy() {
      scratch?.destroy();
    },
  };
}
