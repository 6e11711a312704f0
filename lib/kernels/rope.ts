/**
 * Rotary position embedding (`kernels/rope.wgsl`), Hugging Face Llama "rotate half" layout, and
 * its CPU twin. The inverse frequencies (rope_theta, llama3 scaling) are computed elsewhere and
 * passed in.
 *
 * @module
 */

import { type Binding, type CommandBatch, grid, params } from "../gpu/batch.ts";
import type { Gpu } from "../gpu/device.ts";
import { type GpuStart, latestStart, requireBytes } from "./chunks.ts";
import { KV_CACHE_INFO, type KvCacheFormat, kvCacheLayout } from "./kv_cache.ts";

/**
 * Reference RoPE on `x` `[rows, heads, headDim]`: returns a rotated copy. Row `r` is position
 * `startPos + r`; pair `(x[i], x[i + headDim/2])` turns by `fround(pos * invFreq[i])`, the f32
 * angle Hugging Face computes, with cos/sin in f64.
 *
 * @example
 * ```ts
 * import { cpuRope } from "./rope.ts";
 * cpuRope(new Float32Array([1, 0]), 1, 1, 2, 0, new Float32Array([1])); // position 0: unchanged
 * ```
 */
export function cpuRope(
  x: Float32Array,
  rows: number,
  heads: number,
  headDim: number,
  startPos: number,
  invFreq: Float32Array,
): Float32Array {
  const half = headDim / 2;
  const out = new Float32Array(x);
  for (let r = 0; r < rows; r++) {
    for (let i = 0; i < half; i++) {
      const angle = Math.fround((startPos + r) * invFreq[i]);
      const c = Math.cos(angle);
      const s = Math.sin(angle);
      for (let h = 0; h < heads; h++) {
        const lo = (r * heads + h) * headDim + i;
        const a = x[lo];
        const b = x[lo + half];
        out[lo] = a * c - b * s;
        out[lo + half] = b * c + a * s;
      }
    }
  }
  return out;
}

/** RoPE for one head layout; see {@linkcode createRope}. */
export interface Rope {
  /** Heads per row. */
  readonly heads: number;
  /** Head width (even). */
  readonly headDim: number;
  /**
   * Rotates `x` `[rows, heads, headDim]` in place for positions `startPos ..`; `invFreq` is an
   * f32 tensor of `headDim / 2` inverse frequencies.
   */
  encode(batch: CommandBatch, x: Binding, invFreq: Binding, startPos: number, rows: number): void;
}

/**
 * Compiles the RoPE kernel for `heads` heads of `headDim` values (queries and keys differ in
 * head count under GQA: one instance each).
 *
 * @example
 * ```ts ignore
 * const ropeQ = await createRope(gpu, { heads: 32, headDim: 128 });
 * ropeQ.encode(batch, q, invFreq, startPos, rows);
 * ```
 */
export async function createRope(
  gpu: Gpu,
  opts: { heads: number; headDim: number },
): Promise<Rope> {
  const { heads, headDim } = opts;
  if (headDim % 2) throw new RangeError(`rope: head_dim ${headDim} is odd`);
  const kernel = await gpu.kernel({ file: "rope", entry: "rope" });
  const half = headDim / 2;
  return {
    heads,
    headDim,
    encode(batch, x, invFreq, startPos, rows) {
      requireBytes(x, rows * heads * headDim * 4, "rope x");
      requireBytes(invFreq, half * 4, "rope invFreq");
      const p = params().u32(rows).u32(heads).u32(half).u32(startPos).u32(0).u32(0).build();
      batch.dispatch(kernel, [x, invFreq], grid(Math.ceil((rows * heads * half) / 256)), p);
    },
  };
}

/** RoPE of queries and keys in one dispatch; see {@linkcode createRopeQk}. */
export interface RopeQk {
  /** Query heads per row. */
  readonly heads: number;
  /** Key heads per row. */
  readonly kvHeads: number;
  /** Head width (even). */
  readonly headDim: number;
  /** The KV cache format `encodeToCache` writes. */
  readonly kvCache: KvCacheFormat;
  /**
   * Rotates `q` `[rows, heads, headDim]` and `k` `[rows, kvHeads, headDim]` in place for
   * positions `startPos ..`, exactly as two {@linkcode Rope.encode} calls would.
   */
  encode(
    batch: CommandBatch,
    q: Binding,
    k: Binding,
    invFreq: Binding,
    startPos: number,
    rows: number,
  ): void;
  /**
   * Rotates `q` in place as {@linkcode RopeQk.encode} does, and stores the rotated `k` and `v`
   * (both `[rows, kvHeads, headDim]` f32; `k` itself is left as it was) into a layer's f16 KV
   * cache at positions `startPos ..` — what `encode` followed by the attention's `writeKv` leaves
   * in the cache, in one dispatch. The caches use the attention's layout
   * (`[maxSeq, kvHeads, headDim]`, two f16 per u32). With `at`, the positions start at
   * `startPos` plus the u32 in `at.base`, read on the GPU (checked against the cache at
   * `at.bound`).
   */
  encodeToCache(
    batch: CommandBatch,
    q: Binding,
    k: Binding,
    v: Binding,
    invFreq: Binding,
    cacheK: Binding,
    cacheV: Binding,
    startPos: number,
    rows: number,
    at?: GpuStart,
  ): void;
}

/**
 * Compiles RoPE for queries and keys together (one dispatch instead of two per layer).
 *
 * @example
 * ```ts ignore
 * const rope = await createRopeQk(gpu, { heads: 32, kvHeads: 8, headDim: 128 });
 * rope.encode(batch, q, k, invFreq, startPos, rows);
 * ```
 */
export async function createRopeQk(
  gpu: Gpu,
  opts: {
    heads: number;
    kvHeads: number;
    headDim: number;
    /** The cache format `encodeToCache` writes (default `"f16"`). */
    kvCache?: KvCacheFormat;
    /** Positions the cache holds; required for a quantized cache. */
    maxSeq?: number;
  },
): Promise<RopeQk> {
  const { heads, kvHeads, headDim } = opts;
  if (headDim % 2) throw new RangeError(`rope: head_dim ${headDim} is odd`);
  const kvCache = opts.kvCache ?? "f16";
  const info = KV_CACHE_INFO[kvCache];
  const quantized = info.codeBits !== 16;
  if (quantized && !opts.maxSeq) {
    throw new RangeError(`rope: a ${kvCache} KV cache needs maxSeq (the cache's positions)`);
  }
  const layout = kvCacheLayout(kvCache, opts.maxSeq ?? 0, kvHeads, headDim);
  const defines = quantized
    ? ["KVQ", info.codeBits === 8 ? "KV8" : "KV4", ...(info.rotateKeys ? ["KROT"] : [])]
    : [];
  const [kernel, toCache] = await Promise.all([
    gpu.kernel({ file: "rope", entry: "rope_qk" }),
    gpu.kernel({ file: "rope", entry: quantized ? "rope_qk_cache_q" : "rope_qk_cache", defines }),
  ]);
  const half = headDim / 2;
  if (quantized && 256 % headDim) {
    throw new RangeError(`rope: a ${kvCache} KV cache needs head_dim dividing 256, got ${headDim}`);
  }
  const check = (q: Binding, k: Binding, invFreq: Binding, rows: number) => {
    requireBytes(q, rows * heads * headDim * 4, "rope q");
    requireBytes(k, rows * kvHeads * headDim * 4, "rope k");
    requireBytes(invFreq, half * 4, "rope invFreq");
  };
  // Both entries run one thread per query pair plus one per key pair (or cache word).
  const groups = (rows: number) => grid(Math.ceil((rows * (heads + kvHeads) * half) / 256));
  // Quantized: one thread per element, queries and keys in separate workgroups of 256.
  const cacheGroups = (rows: number) =>
    quantized
      ? grid(
        Math.ceil((rows * heads * headDim) / 256) + Math.ceil((rows * kvHeads * headDim) / 256),
      )
      : groups(rows);
  const p = (rows: number, startPos: number) =>
    params().u32(rows).u32(heads).u32(half).u32(startPos).u32(kvHeads).u32(layout.scaleWord)
      .build();
  return {
    heads,
    kvHeads,
    headDim,
    kvCache,
    encode(batch, q, k, invFreq, startPos, rows) {
      check(q, k, invFreq, rows);
      batch.dispatch(kernel, [q, invFreq, k], groups(rows), p(rows, startPos));
    },
    encodeToCache(batch, q, k, v, invFreq, cacheK, cacheV, startPos, rows, at) {
      check(q, k, invFreq, rows);
      requireBytes(v, rows * kvHeads * headDim * 4, "rope v");
      const start = latestStart(startPos, at);
      if (opts.maxSeq && start + rows > opts.maxSeq) {
        throw new RangeError(
          `rope: positions up to ${start + rows} exceed the KV cache (${opts.maxSeq})`,
        );
      }
      const cacheBytes = quantized ? layout.bytes : (start + rows) * kvHeads * headDim * 2;
      requireBytes(cacheK, cacheBytes, "rope cacheK (too short?)");
      requireBytes(cacheV, cacheBytes, "rope cacheV (too short?)");
      if (at) requireBytes(at.base, 4, "rope start position");
      const bindings = [q, invFreq, k, v, cacheK, cacheV, at?.base ?? batch.gpu.zeros()];
      batch.dispatch(toCache, bindings, cacheGroups(rows), p(rows, startPos));
    },
  };
}
