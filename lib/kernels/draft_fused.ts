/**
 * A small draft model's greedy proposals in one dispatch (kernels/draft_fused.wgsl): one
 * workgroup runs the whole forward pass token after token, with its activations in workgroup
 * memory. Speculative rounds with a draft as small as the bundled one spend most of a
 * layer-by-layer draft step on dispatch overhead; fused, a round's proposals cost one dispatch.
 *
 * @module
 */

import { type Binding, type CommandBatch, params } from "../gpu/batch.ts";
import type { Gpu } from "../gpu/device.ts";
import type { GpuTensor } from "../gpu/tensor.ts";
import { requireBytes } from "./chunks.ts";

/** The shape of a draft the fused kernel can run. */
export interface FusedDraftShape {
  hidden: number;
  heads: number;
  kvHeads: number;
  headDim: number;
  ffn: number;
  vocab: number;
  layers: number;
  /** Positions the KV caches hold. */
  maxSeq: number;
  /** RMSNorm epsilon. */
  eps: number;
}

/** One decoder layer's weights: matrices as f16 bits in Hugging Face's `[out, in]` layout. */
export interface FusedDraftLayer {
  attnNorm: Float32Array;
  q: Uint16Array;
  k: Uint16Array;
  v: Uint16Array;
  o: Uint16Array;
  mlpNorm: Float32Array;
  gate: Uint16Array;
  up: Uint16Array;
  down: Uint16Array;
}

/** A draft's weights for {@linkcode createFusedDraft}. */
export interface FusedDraftWeights {
  /** The embedding table `[vocab, hidden]` (f16 bits); absent when tied to `head`. */
  embed?: Uint16Array;
  /** The LM head `[vocab, hidden]` (f16 bits). */
  head: Uint16Array;
  /** The final RMSNorm weight. */
  norm: Float32Array;
  /** RoPE's inverse frequencies `[headDim / 2]`. */
  invFreq: Float32Array;
  layers: FusedDraftLayer[];
}

/** Most decoder layers the kernel binds caches for. */
export const FUSED_DRAFT_MAX_LAYERS = 4;

/** Workgroup memory regions in f32, as draft_fused.wgsl's overrides name them. */
function regions(s: FusedDraftShape, wg: number): Record<string, number> {
  const nq = s.heads * s.headDim;
  const nkv = s.kvHeads * s.headDim;
  const wide = Math.max(s.hidden, s.ffn);
  const sizes: [string, number][] = [
    ["X", s.hidden],
    ["XN", wide],
    ["Q", nq],
    ["KV", 2 * nkv],
    ["ATT", nq],
    ["HID", s.ffn],
    ["TMP", wide],
    ["SC", s.heads * s.maxSeq],
    ["RED", wg],
    ["PART", 2 * wg],
  ];
  const out: Record<string, number> = {};
  let at = 0;
  for (const [name, n] of sizes) {
    out[name] = at;
    at += n;
  }
  out.WS = at;
  return out;
}

/** What {@linkcode fusedDraftThreads} reads of an adapter. */
export type FusedDraftLimits = Pick<
  GPUSupportedLimits,
  | "maxComputeWorkgroupStorageSize"
  | "maxStorageBuffersPerShaderStage"
  | "maxComputeInvocationsPerWorkgroup"
  | "maxComputeWorkgroupSizeX"
>;

/**
 * The fused kernel's threads for a draft of this shape: the most the adapter allows up to 1024
 * (256 on a software adapter, whose barriers cost in proportion to the threads) whose
 * workgroup memory fits; or why it cannot run (a string naming the limit): at most
 * {@linkcode FUSED_DRAFT_MAX_LAYERS} layers, even widths, and bindings within the adapter's.
 *
 * @example
 * ```ts
 * import { fusedDraftThreads } from "./draft_fused.ts";
 * const shape = { hidden: 128, heads: 2, kvHeads: 1, headDim: 64, ffn: 320, vocab: 4096,
 *   layers: 2, maxSeq: 512, eps: 1e-5 };
 * const limits = { maxComputeWorkgroupStorageSize: 16384, maxStorageBuffersPerShaderStage: 8,
 *   maxComputeInvocationsPerWorkgroup: 256, maxComputeWorkgroupSizeX: 256 };
 * fusedDraftThreads(shape, limits, false); // 256
 * ```
 */
export function fusedDraftThreads(
  s: FusedDraftShape,
  limits: FusedDraftLimits,
  software: boolean,
): number | string {
  if (s.layers < 1 || s.layers > FUSED_DRAFT_MAX_LAYERS) {
    return `${s.layers} layers (the fused draft takes 1 to ${FUSED_DRAFT_MAX_LAYERS})`;
  }
  for (const [name, v] of Object.entries({ hidden: s.hidden, ffn: s.ffn, vocab: s.vocab })) {
    if (v % 2) return `odd ${name} (${v})`;
  }
  if (s.headDim % 2 || s.heads % s.kvHeads) {
    return `head layout ${s.heads}/${s.kvHeads}×${s.headDim}`;
  }
  const buffers = 4 + 2 * s.layers;
  if (buffers > limits.maxStorageBuffersPerShaderStage) {
    return `${buffers} storage bindings (the adapter allows ${limits.maxStorageBuffersPerShaderStage})`;
  }
  const most = Math.min(
    software ? 256 : 1024,
    limits.maxComputeInvocationsPerWorkgroup,
    limits.maxComputeWorkgroupSizeX,
  );
  let bytes = 0;
  for (let wg = 2 ** Math.floor(Math.log2(most)); wg >= 64; wg /= 2) {
    bytes = workgroupBytes(s, wg);
    if (bytes <= limits.maxComputeWorkgroupStorageSize) return wg;
  }
  return `${bytes} bytes of workgroup memory at 64 threads (the adapter allows ` +
    `${limits.maxComputeWorkgroupStorageSize}; ${s.heads} heads × ${s.maxSeq} positions of scores)`;
}

function workgroupBytes(s: FusedDraftShape, wg: number): number {
  return (regions(s, wg).WS + wg) * 4; // + best_i
}

/** Where a call reads its inputs and leaves its proposals. */
export interface FusedDraftIo {
  /** Words 0 and 1: the token before the last and the last (u32). */
  ids: Binding;
  /** Word 0: the position of `ids[0]` (u32). */
  position: Binding;
  /** Receives the proposals at words `outWord ..`. */
  out: Binding;
  outWord: number;
  /** The draft's per-layer KV caches (f16, attention.wgsl's layout). */
  keyCache: readonly Binding[];
  valueCache: readonly Binding[];
}

/** A compiled fused draft with its packed weights; see {@linkcode createFusedDraft}. */
export interface FusedDraft {
  readonly shape: FusedDraftShape;
  /** Threads of its one workgroup. */
  readonly threads: number;
  /** Bytes of the packed weights (recorded in the ledger as weights). */
  readonly weightBytes: number;
  /**
   * Records `count` greedy proposals: the rows `io.ids[0]` at `io.position[0]` and `io.ids[1]`
   * one after, then `count - 1` steps fed back. `bound` is the most `io.position[0]` can be when
   * it runs, checked against the caches.
   */
  encode(batch: CommandBatch, io: FusedDraftIo, count: number, bound: number): void;
  destroy(): void;
}

// [n, k] f16 bits → words k · (n / 2) + j holding (w[2j, k], w[2j + 1, k]).
function transposedPairs(w: Uint16Array, n: number, k: number, label: string): Uint32Array {
  if (w.length !== n * k) throw new RangeError(`${label}: ${w.length} values, want ${n}×${k}`);
  const half = n / 2;
  const out = new Uint32Array(k * half);
  for (let c = 0; c < k; c++) {
    for (let j = 0; j < half; j++) {
      out[c * half + j] = w[2 * j * k + c] | (w[(2 * j + 1) * k + c] << 16);
    }
  }
  return out;
}

/**
 * Packs a draft's weights and compiles the fused kernel.
 *
 * @example
 * ```ts ignore
 * const fused = await createFusedDraft(gpu, shape, weights);
 * fused.encode(batch, { ids, position, out, outWord: 1, keyCache, valueCache }, 4, pos);
 * ```
 */
export async function createFusedDraft(
  gpu: Gpu,
  shape: FusedDraftShape,
  weights: FusedDraftWeights,
): Promise<FusedDraft> {
  const wg = fusedDraftThreads(shape, gpu.limits, gpu.isSoftware);
  if (typeof wg === "string") throw new RangeError(`fused draft: ${wg}`);
  const s = shape;
  const nq = s.heads * s.headDim;
  const nkv = s.kvHeads * s.headDim;
  if (weights.layers.length !== s.layers) {
    throw new RangeError(`fused draft: ${weights.layers.length} layers of weights for ${s.layers}`);
  }
  const parts: Uint32Array[] = [];
  let words = 0;
  const put = (a: Uint32Array): number => {
    parts.push(a);
    words += a.length;
    return words - a.length;
  };
  const f32 = (a: Float32Array, n: number, label: string) => {
    if (a.length !== n) throw new RangeError(`fused draft ${label}: ${a.length} values, want ${n}`);
    return new Uint32Array(a.buffer.slice(a.byteOffset, a.byteOffset + a.byteLength));
  };
  const head = put(transposedPairs(weights.head, s.vocab, s.hidden, "head"));
  const embed = weights.embed
    ? put(transposedPairs(weights.embed, s.vocab, s.hidden, "embed"))
    : head;
  const norm = put(f32(weights.norm, s.hidden, "norm"));
  const invFreq = put(f32(weights.invFreq, s.headDim / 2, "invFreq"));
  const layer0 = words;
  const offsets: Record<string, number> = {};
  for (const [l, lw] of weights.layers.entries()) {
    const start = words;
    const at = (name: string, a: Uint32Array) => {
      const o = put(a) - start;
      if (l === 0) offsets[name] = o;
      else if (offsets[name] !== o) {
        throw new RangeError(`fused draft: layer ${l} differs in shape`);
      }
    };
    at("attn_norm", f32(lw.attnNorm, s.hidden, `layer ${l} attnNorm`));
    at("wq", transposedPairs(lw.q, nq, s.hidden, `layer ${l} q`));
    at("wk", transposedPairs(lw.k, nkv, s.hidden, `layer ${l} k`));
    at("wv", transposedPairs(lw.v, nkv, s.hidden, `layer ${l} v`));
    at("wo", transposedPairs(lw.o, s.hidden, nq, `layer ${l} o`));
    at("mlp_norm", f32(lw.mlpNorm, s.hidden, `layer ${l} mlpNorm`));
    at("wgate", transposedPairs(lw.gate, s.ffn, s.hidden, `layer ${l} gate`));
    at("wup", transposedPairs(lw.up, s.ffn, s.hidden, `layer ${l} up`));
    at("wdown", transposedPairs(lw.down, s.hidden, s.ffn, `layer ${l} down`));
  }
  const layerWords = s.layers > 1 ? (words - layer0) / s.layers : words - layer0;
  const packed = new Uint32Array(words);
  let o = 0;
  for (const a of parts) {
    packed.set(a, o);
    o += a.length;
  }
  const tensor: GpuTensor = gpu.tensor({
    label: "fused draft weights",
    category: "weights",
    data: packed,
  });
  const defines = ["L2", "L3", "L4"].slice(0, s.layers - 1);
  const kernel = await gpu.kernel({
    file: "draft_fused",
    entry: "propose",
    defines,
    constants: { WG: wg, ...regions(s, wg) },
  });
  const cacheBytes = s.maxSeq * nkv * 2;
  return {
    shape,
    threads: wg,
    weightBytes: tensor.byteSize,
    encode(batch, io, count, bound) {
      if (!Number.isInteger(count) || count < 1) {
        throw new RangeError(`fused draft: ${count} proposals`);
      }
      if (bound + 1 + count > s.maxSeq) {
        throw new RangeError(
          `fused draft: positions up to ${bound + 1 + count} exceed the cache (${s.maxSeq})`,
        );
      }
      if (io.keyCache.length !== s.layers || io.valueCache.length !== s.layers) {
        throw new RangeError(`fused draft: ${io.keyCache.length} caches for ${s.layers} layers`);
      }
      requireBytes(io.ids, 8, "fused draft ids");
      requireBytes(io.position, 4, "fused draft position");
      requireBytes(io.out, (io.outWord + count) * 4, "fused draft out");
      const caches: Binding[] = [];
      for (let l = 0; l < s.layers; l++) {
        requireBytes(io.keyCache[l], cacheBytes, `fused draft layer ${l} key cache`);
        requireBytes(io.valueCache[l], cacheBytes, `fused draft layer ${l} value cache`);
        caches.push(io.keyCache[l], io.valueCache[l]);
      }
      const p = params()
        .u32(s.hidden).u32(s.heads).u32(s.kvHeads).u32(s.headDim).u32(s.ffn).u32(s.vocab)
        .u32(s.layers).u32(count).f32(s.eps).f32(1 / Math.sqrt(s.headDim)).u32(io.outWord)
        .u32(embed).u32(norm).u32(head).u32(invFreq).u32(layer0).u32(layerWords)
        .u32(offsets.attn_norm).u32(offsets.wq).u32(offsets.wk).u32(offsets.wv).u32(offsets.wo)
        .u32(offsets.mlp_norm).u32(offsets.wgate).u32(offsets.wup).u32(offsets.wdown)
        .build();
      batch.dispatch(kernel, [tensor, io.ids, io.position, io.out, ...caches], 1, p);
    },
    destroy() {
      tensor.destroy();
    },
  };
}
