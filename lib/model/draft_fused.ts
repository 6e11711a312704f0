/**
 * A loaded model as a fused draft (lib/kernels/draft_fused.ts): which models qualify, and their
 * weights read back from the GPU and packed for the kernel.
 *
 * @module
 */

import type { Gpu } from "../gpu/device.ts";
import type { Binding } from "../gpu/batch.ts";
import {
  createFusedDraft,
  type FusedDraft,
  type FusedDraftShape,
  fusedDraftThreads,
} from "../kernels/draft_fused.ts";
import { Fp16Linear } from "../kernels/linear.ts";
import type { Linear } from "../kernels/linear.ts";
import { familyOf, type LlamaConfig, ropeInverseFrequencies } from "./config.ts";
import type { LayerWeights } from "./load.ts";
import type { QuantFormat } from "../quant/formats.ts";
import type { KvCacheFormat } from "../kernels/kv_cache.ts";
import type { GpuTensor } from "../gpu/tensor.ts";

/** What of a model the fused draft reads. */
export interface FusableModel {
  readonly config: LlamaConfig;
  readonly gpu: Gpu;
  readonly format: QuantFormat;
  readonly kvCache: KvCacheFormat;
  readonly maxSeqLen: number;
  readonly embed: GpuTensor;
  readonly layers: LayerWeights[];
  readonly norm: GpuTensor;
  readonly lmHead: Linear;
}

/** The fused kernel's view of a model's shape. */
export function fusedDraftShape(m: FusableModel): FusedDraftShape {
  const c = m.config;
  return {
    hidden: c.hiddenSize,
    heads: c.numHeads,
    kvHeads: c.numKvHeads,
    headDim: c.headDim,
    ffn: c.intermediateSize,
    vocab: c.vocabSize,
    layers: c.numLayers,
    maxSeq: m.maxSeqLen,
    eps: c.rmsNormEps,
  };
}

/**
 * Why `m` cannot run as a fused draft, or null when it can: FP16 weights, an f16 KV cache, a
 * plain Llama block (no biases, q/k norms or sliding windows), resident layers, and a shape the
 * kernel fits ({@linkcode fusedDraftThreads}).
 *
 * @example
 * ```ts ignore
 * const why = fusedDraftUnfitModel(draft, false); // null for the bundled draft on a GPU
 * ```
 */
export function fusedDraftUnfitModel(m: FusableModel, streaming: boolean): string | null {
  if (m.format !== "fp16") return `${m.format} weights (the fused draft reads FP16)`;
  if (m.kvCache !== "f16") return `a ${m.kvCache} KV cache (the fused draft writes f16)`;
  if (streaming) return "layers streamed from the host";
  const f = familyOf(m.config);
  if (f.biases.length || f.qkNorm || f.windows.some((w) => w > 0)) {
    return `the ${f.name} block (biases, q/k norms or sliding windows)`;
  }
  if (!(m.lmHead instanceof Fp16Linear)) return "a quantized LM head";
  for (const [l, layer] of m.layers.entries()) {
    for (const [name, lin] of Object.entries(layer.linears)) {
      if (!(lin instanceof Fp16Linear)) return `layer ${l} ${name} is not FP16`;
    }
  }
  const threads = fusedDraftThreads(fusedDraftShape(m), m.gpu.limits, m.gpu.isSoftware);
  return typeof threads === "string" ? threads : null;
}

async function readBinding(gpu: Gpu, b: Binding): Promise<ArrayBuffer> {
  return "tensor" in b ? await gpu.read(b.tensor, b.offset, b.size) : await gpu.read(b);
}

async function f16Weights(gpu: Gpu, lin: Fp16Linear): Promise<Uint16Array> {
  const out = new Uint16Array(lin.outFeatures * lin.inFeatures);
  for (const c of lin.chunks) {
    const bytes = await readBinding(gpu, c.binding);
    out.set(
      new Uint16Array(bytes, 0, c.count * lin.inFeatures),
      c.start * lin.inFeatures,
    );
  }
  return out;
}

/**
 * Packs `m`'s weights (read back from the GPU) into a fused draft. Check
 * {@linkcode fusedDraftUnfitModel} first.
 */
export async function createFusedDraftFor(m: FusableModel): Promise<FusedDraft> {
  const gpu = m.gpu;
  const c = m.config;
  const f32 = async (t: GpuTensor) => new Float32Array(await gpu.read(t)).subarray(0, c.hiddenSize);
  const lin = (l: LayerWeights, name: keyof LayerWeights["linears"]) =>
    f16Weights(gpu, l.linears[name] as Fp16Linear);
  const lmHead = m.lmHead as Fp16Linear;
  const head = await f16Weights(gpu, lmHead);
  // tied: the head's weights are the embedding table itself (read above)
  const tied = lmHead.chunks.every((ch) =>
    ("tensor" in ch.binding ? ch.binding.tensor : ch.binding) === m.embed
  );
  const embed = tied
    ? undefined
    : new Uint16Array(await gpu.read(m.embed, 0, c.vocabSize * c.hiddenSize * 2));
  const layers = [];
  for (const l of m.layers) {
    layers.push({
      attnNorm: await f32(l.attnNorm),
      q: await lin(l, "self_attn.q_proj"),
      k: await lin(l, "self_attn.k_proj"),
      v: await lin(l, "self_attn.v_proj"),
      o: await lin(l, "self_attn.o_proj"),
      mlpNorm: await f32(l.mlpNorm),
      gate: await lin(l, "mlp.gate_proj"),
      up: await lin(l, "mlp.up_proj"),
      down: await lin(l, "mlp.down_proj"),
    });
  }
  return await createFusedDraft(gpu, fusedDraftShape(m), {
    embed,
    head,
    norm: await f32(m.norm),
    invFreq: ropeInverseFrequencies(c),
    layers,
  });
}
