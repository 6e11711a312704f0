/**
 * The run state of a forward pass, as llama2.c's `RunState`: the activation buffers for one chunk
 * of tokens and the KV cache, with their sizes (which the memory estimator counts without a GPU).
 *
 * @module
 */

import type { Gpu } from "../gpu/device.ts";
import type { GpuTensor } from "../gpu/tensor.ts";
import { kvCacheBytes } from "../kernels/attention.ts";
import type { KvCacheFormat } from "../kernels/kv_cache.ts";
import { type LlamaConfig, ropeInverseFrequencies } from "./config.ts";

/** Activation buffers for up to `rows` tokens, and the KV cache. */
export interface RunState {
  rows: number;
  ids: GpuTensor; // u32 [rows]
  x: GpuTensor; // residual stream [rows, hidden]
  xn: GpuTensor; // normed input of a block [rows, hidden]
  q: GpuTensor; // [rows, heads * headDim]
  k: GpuTensor; // [rows, kvHeads * headDim]
  v: GpuTensor;
  att: GpuTensor; // attention output [rows, heads * headDim]
  proj: GpuTensor; // o_proj / down_proj output [rows, hidden]
  gate: GpuTensor; // [rows, intermediate]
  up: GpuTensor;
  logits: GpuTensor; // [rows, vocab]
  next: GpuTensor; // u32 [rows]: argmax of each logits row
  // u32, added to the start position by RoPE and attention: 0, except while speculative rounds
  // chained on the GPU keep the position there (lib/model/speculative.ts)
  position: GpuTensor;
  invFreq: GpuTensor; // RoPE inverse frequencies [headDim / 2]
  keyCache: GpuTensor[]; // per layer, [maxSeq, kvHeads, headDim] in the cache format
  valueCache: GpuTensor[];
}

/**
 * Bytes of kernel parameters one chunk of the forward pass may write: 256 bytes (the uniform
 * offset alignment) per dispatch, with room for 64 dispatches per layer.
 *
 * @example
 * ```ts ignore
 * import { uniformBytesPerChunk } from "./run_state.ts";
 * uniformBytesPerChunk(config); // 256 * (8 + 64 * layers)
 * ```
 */
export function uniformBytesPerChunk(c: LlamaConfig): number {
  return 256 * (8 + 64 * c.numLayers);
}

/** Activation buffers of the run state, in 32-bit words each. */
export type ActivationBuffers = Record<
  | "ids"
  | "x"
  | "xn"
  | "q"
  | "k"
  | "v"
  | "att"
  | "proj"
  | "gate"
  | "up"
  | "logits"
  | "next"
  | "position",
  number
>;

/**
 * The 32-bit words of each activation buffer a model with `rows`-token chunks allocates: what
 * the ledger records as "activations", so the memory estimator can count it without a GPU.
 *
 * @example
 * ```ts ignore
 * import { activationFloats } from "./run_state.ts";
 * activationFloats(config, 128).logits; // 128 * vocab
 * ```
 */
export function activationFloats(c: LlamaConfig, rows: number): ActivationBuffers {
  return {
    ids: rows,
    x: rows * c.hiddenSize,
    xn: rows * c.hiddenSize,
    q: rows * c.numHeads * c.headDim,
    k: rows * c.numKvHeads * c.headDim,
    v: rows * c.numKvHeads * c.headDim,
    att: rows * c.numHeads * c.headDim,
    proj: rows * c.hiddenSize,
    gate: rows * c.intermediateSize,
    up: rows * c.intermediateSize,
    logits: rows * c.vocabSize,
    next: rows,
    position: 1,
  };
}

export function createRunState(
  gpu: Gpu,
  c: LlamaConfig,
  rows: number,
  maxSeq: number,
  kvCache: KvCacheFormat,
  owned: { destroy(): void }[],
): RunState {
  const act = (label: string, floats: number): GpuTensor => {
    const t = gpu.tensor({ label, category: "activations", byteSize: floats * 4 });
    owned.push(t);
    return t;
  };
  const cacheBytes = kvCacheBytes(maxSeq, c.numKvHeads, c.headDim, kvCache);
  const dtype = kvCache === "f16" ? "f16x2" : "u32";
  const cache = (label: string): GpuTensor => {
    const t = gpu.tensor({ label, category: "kv-cache", byteSize: cacheBytes, dtype });
    owned.push(t);
    return t;
  };
  const invFreq = gpu.tensor({
    label: "rope inverse frequencies",
    category: "weights",
    data: ropeInverseFrequencies(c),
  });
  owned.push(invFreq);
  const f = activationFloats(c, rows);
  return {
    rows,
    ids: act("token ids", f.ids),
    x: act("residual", f.x),
    xn: act("normed", f.xn),
    q: act("q", f.q),
    k: act("k", f.k),
    v: act("v", f.v),
    att: act("attention out", f.att),
    proj: act("projection out", f.proj),
    gate: act("gate", f.gate),
    up: act("up", f.up),
    logits: act("logits", f.logits),
    next: act("next token", f.next),
    position: act("start position on the GPU", f.position),
    invFreq,
    keyCache: Array.from({ length: c.numLayers }, (_, l) => cache(`layers.${l}.key cache`)),
    valueCache: Array.from({ length: c.numLayers }, (_, l) => cache(`layers.${l}.value cache`)),
  };
}

export function destroyRunState(s: RunState): void {
  for (
    const t of [
      s.ids,
      s.x,
      s.xn,
      s.q,
      s.k,
      s.v,
      s.att,
      s.proj,
      s.gate,
      s.up,
      s.logits,
      s.next,
      s.position,
      s.invFreq,
    ]
  ) t.destroy();
  for (const t of [...s.keyCache, ...s.valueCache]) t.destroy();
}
