/**
 * GPU memory without a GPU: what the memory ledger will read for a Llama config in a given
 * weight format, computed from the same sizes the loader allocates. It answers "does
 * Llama-3-8B in NF4 fit on my 8 GB card?" before downloading anything.
 *
 * What it counts, per ledger category:
 * - weights: the embedding (f16), each decoder linear layer in its format (every scale and
 *   statistic included), the LM head (f16 unless quantized, nothing extra when tied), the RMSNorm
 *   weights, biases and q/k norms of the model's family (f32), RoPE's inverse frequencies (f32), and NF4-DQ's 1 KiB code table;
 * - activations: the run state's buffers for a prefill chunk of `chunkSize` tokens;
 * - kv-cache: keys and values of every layer for `contextLength` positions;
 * - scratch: the uniform-parameter buffer, attention's partial results for long decode steps,
 *   the int8 activation codes and scales shared by the int8 layers, and LLM.int8()'s per-layer
 *   outlier lists;
 * - staging: the readback of logits at the peak (one row when generating, a chunk when
 *   scoring a text).
 *
 * @module
 */

import { uniformArenaSize } from "../gpu/device.ts";
import type { MemoryCategory } from "../gpu/ledger.ts";
import {
  attentionScratchBytes,
  defaultSplitKeys,
  defaultUnsplitPositions,
  kvCacheBytes,
} from "../kernels/attention.ts";
import type { KvCacheFormat } from "../kernels/kv_cache.ts";
import { int8ScratchBytes, llmInt8OutlierBytes } from "../kernels/quant_linear.ts";
import { familyOf, type LlamaConfig } from "../model/config.ts";
import { LINEAR_NAMES, linearShapes } from "../model/load.ts";
import { activationFloats, uniformBytesPerChunk } from "../model/run_state.ts";
import { parameterCount } from "../model/presets.ts";
import { planLayers } from "../model/streaming.ts";
import { packedBytesFor, type QuantFormat, type QuantOptions } from "../quant/formats.ts";

/** Options for {@linkcode estimateMemory}. */
export interface MemoryEstimateOptions {
  /** Weight format of the decoder blocks' linear layers (default `"fp16"`). */
  format?: QuantFormat;
  /** Options of the format (block size, ...). */
  quant?: QuantOptions;
  /** Whether the LM head is quantized too (default false, as bitsandbytes). */
  quantizeHead?: boolean;
  /** KV cache positions (default: the model's context, at most 4096). */
  contextLength?: number;
  /** Sequences held at once: scales the KV cache and activations (the runtime decodes one). */
  batch?: number;
  /**
   * Storage of the KV cache (default `"f16"`): one of the runtime's formats
   * (`LoadOptions.kvCache`), or `"f32"` (what an unquantized framework would hold).
   */
  kvCacheFormat?: KvCacheFormat | "f32";
  /** Tokens per prefill chunk (default 128, as {@linkcode LlamaModel.load}). */
  chunkSize?: number;
  /** What the peak is measured on: generating text, or scoring a text's every token. */
  workload?: "generate" | "score";
}

/** Bytes per ledger category. */
export type CategoryBytes = Record<MemoryCategory, number>;

/** The result of {@linkcode estimateMemory}. */
export interface MemoryEstimate {
  /** The weight format of the linear layers. */
  format: QuantFormat;
  /** All parameters of the model. */
  parameters: number;
  /** Parameters in the decoder blocks' linear layers (the quantized ones). */
  linearParameters: number;
  /** Bits per parameter of the linear layers, every scale included. */
  linearBitsPerParameter: number;
  /** Bits per parameter over all weights (embeddings and norms included). */
  weightBitsPerParameter: number;
  /** Bytes after loading, per category. */
  afterLoad: CategoryBytes;
  /** Bytes at the peak of the workload, per category. */
  atPeak: CategoryBytes;
  /** Total after loading. */
  staticBytes: number;
  /** Total at the peak. */
  peakBytes: number;
}

const rounded = (bytes: number): number => Math.max(4, Math.ceil(bytes / 4) * 4);

const INT8_FORMATS: readonly QuantFormat[] = ["int8-absmax", "int8-vectorwise", "llm-int8"];

/**
 * Estimates the memory ledger's figures for a model config and weight format.
 *
 * @example
 * ```ts
 * import { estimateMemory } from "./memory.ts";
 * import { presetConfig } from "../model/presets.ts";
 * const e = estimateMemory(presetConfig("llama-3-8b"), { format: "nf4-dq", contextLength: 4096 });
 * (e.peakBytes / 2 ** 30).toFixed(2); // GiB
 * ```
 */
export function estimateMemory(
  c: LlamaConfig,
  options: MemoryEstimateOptions = {},
): MemoryEstimate {
  const format = options.format ?? "fp16";
  const quant = options.quant ?? {};
  const context = options.contextLength ?? Math.min(c.maxPositionEmbeddings, 4096);
  const batch = options.batch ?? 1;
  const chunk = Math.min(options.chunkSize ?? 128, context);
  const workload = options.workload ?? "generate";

  // weights
  const shapes = linearShapes(c);
  let linearBytes = 0;
  let linearParams = 0;
  for (const name of LINEAR_NAMES) {
    const [n, k] = shapes[name];
    linearBytes += c.numLayers * packedBytesFor(format, n, k, quant);
    linearParams += c.numLayers * n * k;
  }
  const embed = rounded(c.vocabSize * c.hiddenSize * 2);
  let head = 0;
  if (options.quantizeHead && format !== "fp16") {
    head = packedBytesFor(format, c.vocabSize, c.hiddenSize, quant);
  } else if (!c.tieWordEmbeddings) {
    head = embed;
  }
  let norms = (2 * c.numLayers + 1) * rounded(c.hiddenSize * 4);
  // The family's extras, f32 in every format: biases (Qwen2's q/k/v) and q/k norms (Qwen3).
  const family = familyOf(c);
  for (const name of family.biases) norms += c.numLayers * rounded(shapes[name][0] * 4);
  if (family.qkNorm) norms += 2 * c.numLayers * rounded(c.headDim * 4);
  const rope = rounded((c.headDim / 2) * 4);
  const codeTable = format === "nf4-dq" ? 256 * 4 : 0;
  const weights = linearBytes + embed + head + norms + rope + codeTable;

  // activations, KV cache
  const activations = Object.values(activationFloats(c, chunk))
    .reduce((sum, floats) => sum + rounded(floats * 4 * batch), 0);
  const kvFormat = options.kvCacheFormat ?? "f16";
  const perCache = kvFormat === "f32"
    ? 2 * kvCacheBytes(context, c.numKvHeads, c.headDim)
    : kvCacheBytes(context, c.numKvHeads, c.headDim, kvFormat);
  const kvCache = 2 * c.numLayers * rounded(perCache * batch);

  // scratch
  // Attention keeps split partials only when a context spans more than one range.
  const cacheFormat = kvFormat === "f32" ? "f16" : kvFormat;
  const attnScratch = attentionScratchBytes(
    c,
    context,
    defaultSplitKeys(cacheFormat),
    undefined,
    defaultUnsplitPositions(cacheFormat),
  );
  let scratch = uniformArenaSize(uniformBytesPerChunk(c)) + attnScratch;
  const int8 = INT8_FORMATS.includes(format);
  if (int8) {
    const maxK = Math.max(...LINEAR_NAMES.map((name) => shapes[name][1]));
    scratch += int8ScratchBytes(chunk * batch, maxK);
  }
  if (format === "llm-int8") {
    for (const name of LINEAR_NAMES) scratch += c.numLayers * llmInt8OutlierBytes(shapes[name][1]);
  }

  const afterLoad: CategoryBytes = {
    weights,
    activations,
    "kv-cache": kvCache,
    scratch,
    staging: 0,
  };
  const staging = workload === "score" ? chunk * c.vocabSize * 4 : c.vocabSize * 4;
  const atPeak: CategoryBytes = { ...afterLoad, staging };
  const total = (b: CategoryBytes) => Object.values(b).reduce((s, v) => s + v, 0);
  const parameters = parameterCount(c);
  return {
    format,
    parameters,
    linearParameters: linearParams,
    linearBitsPerParameter: (8 * linearBytes) / linearParams,
    weightBitsPerParameter: (8 * weights) / parameters,
    afterLoad,
    atPeak,
    staticBytes: total(afterLoad),
    peakBytes: total(atPeak),
  };
}

/** The result of {@linkcode estimateStreaming}. */
export interface StreamingEstimate {
  /** The budget, in bytes. */
  budgetBytes: number;
  /** Bytes besides the decoder layers' linear weights, plus logits read back. */
  fixedBytes: number;
  /** GPU bytes of one decoder layer's linear weights (one slot). */
  layerBytes: number;
  /** Layers that stay on the GPU; -1 when the budget is below the fixed part plus the slots. */
  residentLayers: number;
  /** Layers kept in host memory and uploaded every forward (every token when decoding). */
  streamedLayers: number;
  /** GPU slots the streamed layers take turns in. */
  slots: number;
  /** Bytes uploaded per token when decoding. */
  streamedBytesPerToken: number;
  /** Host memory the streamed layers occupy. */
  hostBytes: number;
  /** The ledger's peak with this placement. */
  peakBytes: number;
}

/**
 * Where a GPU memory budget puts a model's decoder layers under layer streaming
 * (`LoadOptions.vramBudget`): how many stay resident, how many are streamed, and the bytes each
 * decoded token uploads. The same sizes the loader measures on the ledger.
 *
 * @example
 * ```ts
 * import { estimateStreaming } from "./memory.ts";
 * import { presetConfig } from "../model/presets.ts";
 * const s = estimateStreaming(presetConfig("llama-3-8b"), 2 * 2 ** 30, { format: "nf4", contextLength: 512 });
 * s.residentLayers; // a few of 32; the rest stream
 * ```
 */
export function estimateStreaming(
  c: LlamaConfig,
  budget: number,
  options: MemoryEstimateOptions & { slots?: number } = {},
): StreamingEstimate {
  const format = options.format ?? "fp16";
  const e = estimateMemory(c, { ...options, workload: "generate" });
  const context = options.contextLength ?? Math.min(c.maxPositionEmbeddings, 4096);
  const chunk = Math.min(options.chunkSize ?? 128, context);
  const shapes = linearShapes(c);
  const linear = LINEAR_NAMES.reduce(
    (s, name) => s + packedBytesFor(format, shapes[name][0], shapes[name][1], options.quant ?? {}),
    0,
  );
  const outliers = format === "llm-int8"
    ? LINEAR_NAMES.reduce((s, name) => s + llmInt8OutlierBytes(shapes[name][1]), 0)
    : 0;
  const layerBytes = linear + outliers;
  // What the loader reserves while running: a chunk of logits read back, and a little more.
  const reserve = chunk * c.vocabSize * 4 + 1024;
  const fixedBytes = e.staticBytes - c.numLayers * layerBytes + reserve;
  const plan = planLayers({
    budget,
    fixedBytes,
    reserveBytes: 0,
    layerBytes,
    layers: c.numLayers,
    slots: options.slots,
  });
  const streamed = Math.max(0, plan.streamedLayers);
  return {
    budgetBytes: budget,
    fixedBytes,
    layerBytes,
    residentLayers: plan.residentLayers,
    streamedLayers: plan.streamedLayers,
    slots: plan.slots,
    streamedBytesPerToken: streamed * linear,
    hostBytes: streamed * linear,
    peakBytes: plan.peakBytes,
  };
}
