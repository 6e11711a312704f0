/**
 * Loading a model's weights onto the GPU: what the loader reads from (a checkpoint, a quantized
 * checkpoint, random weights), the options it takes, and `loadWeights`, which builds every
 * decoder block's linear layers one tensor at a time in the format asked for.
 *
 * @module
 */

import type { Gpu } from "../gpu/device.ts";
import type { GpuTensor } from "../gpu/tensor.ts";
import type { Linear, LinearStack } from "../kernels/linear.ts";
import { Fp16Linear, Fp16LinearStack } from "../kernels/linear.ts";
import {
  QuantLinear,
  quantLinearFactory,
  type QuantLinearFactoryOptions,
  QuantLinearStack,
} from "../kernels/quant_linear.ts";
import { KQuantLinear } from "../kernels/kquant_linear.ts";
import type { KvCacheFormat } from "../kernels/kv_cache.ts";
import type { QuantFormat } from "../quant/formats.ts";
import type { Checkpoint } from "./checkpoint.ts";
import type { PrequantizedWeights } from "./quantized_source.ts";
import { familyOf, type LlamaConfig } from "./config.ts";
import { BlockTensorReader, LINEAR_NAMES } from "./family.ts";
import { LayerStreamer, type StreamingOptions } from "./streaming.ts";
import type { TensorClaim } from "./unused_tensors.ts";

export { LINEAR_NAMES };

/** One of {@linkcode LINEAR_NAMES}. */
export type LinearName = typeof LINEAR_NAMES[number];

/**
 * `[outFeatures, inFeatures]` of each linear layer of a block, as stored in the checkpoint.
 *
 * @example
 * ```ts ignore
 * import { linearShapes } from "./load.ts";
 * linearShapes(config)["mlp.down_proj"]; // [hidden, intermediate]
 * ```
 */
export function linearShapes(c: LlamaConfig): Record<LinearName, [number, number]> {
  const q = c.numHeads * c.headDim;
  const kv = c.numKvHeads * c.headDim;
  return {
    "self_attn.q_proj": [q, c.hiddenSize],
    "self_attn.k_proj": [kv, c.hiddenSize],
    "self_attn.v_proj": [kv, c.hiddenSize],
    "self_attn.o_proj": [c.hiddenSize, q],
    "mlp.gate_proj": [c.intermediateSize, c.hiddenSize],
    "mlp.up_proj": [c.intermediateSize, c.hiddenSize],
    "mlp.down_proj": [c.hiddenSize, c.intermediateSize],
  };
}

/** What a {@linkcode LinearFactory} is asked to build. */
export interface LinearRequest {
  /** Full tensor name, e.g. `model.layers.3.mlp.down_proj.weight`. */
  name: string;
  /** Layer index, or -1 for the LM head. */
  layer: number;
  /** Which linear layer of the block, or `"lm_head"`. */
  kind: LinearName | "lm_head";
  /** Weights as f16 bits, `[outFeatures, inFeatures]` row-major. */
  weight: Uint16Array;
  /** N. */
  outFeatures: number;
  /** K. */
  inFeatures: number;
}

/**
 * Builds the GPU form of one linear layer from its f16 weights. This is where quantization
 * plugs in: the weights arrive on the CPU one tensor at a time, so a quantized format never
 * holds an FP16 copy on the GPU.
 */
export type LinearFactory = (gpu: Gpu, request: LinearRequest) => Promise<Linear>;

/**
 * What the loader reads tensors from: an open {@linkcode Checkpoint}, or anything else with its
 * `expectShape`, `readF32` and `readF16Bits` (benchmarks feed random weights this way).
 */
export type WeightSource =
  | Pick<Checkpoint, "expectShape" | "readF32" | "readF16Bits">
  | PrequantizedWeights;

/** Options for `LlamaModel.load`. */
export interface LoadOptions {
  /** The device; defaults to `defaultGpu()`. */
  gpu?: Gpu;
  /** Weight format of the decoder blocks' linear layers (default `"fp16"`). */
  format?: QuantFormat;
  /** Options of that format: block size, LLM.int8() threshold, f16 arithmetic, ... */
  quant?: QuantLinearFactoryOptions;
  /** Builds each linear layer; overrides `format` (for experiments with custom layers). */
  linear?: LinearFactory;
  /** Whether the LM head goes through `linear` too (default: it stays FP16, as bitsandbytes does). */
  quantizeHead?: boolean;
  /** KV cache length; defaults to the config's `max_position_embeddings` (capped at 4096). */
  maxSeqLen?: number;
  /**
   * How the KV cache stores keys and values (default `"f16"`): `"int8"` or `"int4"` quantize
   * them per token, head and group of 32 as RoPE writes them (see `lib/kernels/kv_cache.ts`).
   */
  kvCache?: KvCacheFormat;
  /** Most tokens per forward chunk (activation buffers are sized for it); default 128. */
  chunkSize?: number;
  /**
   * Prompts of at most this many tokens run as passes of up to `MAX_GEMV_ROWS` (8) rows through
   * the multi-row products (each row computed as a decode step computes it: the verify pass's
   * products), instead of one chunk through the prefill GEMM, whose tiles pad a short prompt to
   * a whole tile of rows. 0 turns it off. Default {@linkcode defaultShortPromptTokens}. At most 8
   * (one pass) with layer streaming, which uploads the streamed layers again for every pass, or
   * where a layer has no multi-row product; 0 where a layer is int8-absmax or LLM.int8(), whose
   * prompt products quantize all rows together (one absmax, outlier columns chosen over all
   * rows), as bitsandbytes does.
   */
  shortPromptTokens?: number;
  /** Called after each tensor is loaded. */
  onProgress?: (done: number, total: number, name: string) => void;
  /**
   * Store q, k and v, and gate and up, each group in one tensor, so that a decode step computes
   * each group in one dispatch: FP16 ({@linkcode Fp16LinearStack}; the results are the same bit
   * for bit either way) and the quantized formats that stack ({@linkcode QuantLinear.canStack}:
   * nf4, fp4, int4, q4_0, q8_0, int8-vectorwise, llm-int8; {@linkcode QuantLinearStack}: each output is
   * its layer's product, with the stacked matrix's GEMV launch shape). The per-layer `linears`
   * read their rows of it. Default true.
   */
  stackLayers?: boolean;
  /**
   * Fold RoPE and the KV cache write into a decode step's attention, one dispatch per layer
   * instead of two, up to `FOLD_ROPE_MAX_POSITIONS` positions, where it measured faster
   * (`Attention.attendNew`: head_dim a multiple of 8, of 64 with an int8 cache; the same cache
   * words, the output within rounding). Default true.
   */
  foldRope?: boolean;
  /**
   * With FP16 gate/up stacked: a decode step's gate/up product writes silu(gate) · up itself
   * (`Fp16LinearStack.fusesSwigluOut`; bit for bit the SwiGLU dispatch it replaces). Default true.
   */
  stackSwiglu?: boolean;
  /**
   * GPU memory budget in bytes (the ledger's figure). Given, the loader keeps as many decoder
   * layers on the GPU as fit after everything else, keeps the others quantized in host memory
   * and uploads them during each forward into a ring of slots ({@linkcode LayerStreamer}); the
   * ledger's peak stays within it. Results are the same as fully resident.
   */
  vramBudget?: number;
  /** Layer streaming's options (with {@linkcode LoadOptions.vramBudget}). */
  streaming?: StreamingOptions;
  /**
   * Load even when the checkpoint holds tensors the model does not read (default false: such a
   * checkpoint is refused, naming them, as it usually means config and weights disagree).
   */
  allowUnusedTensors?: boolean;
  /** More tensors to count as used, e.g. a quantized format's scales (see `companionClaim`). */
  claimTensors?: readonly TensorClaim[];
}

/** Weights of one decoder block on the GPU. */
export interface LayerWeights {
  /** RMSNorm weight before attention (f32). */
  attnNorm: GpuTensor;
  /** Attention and MLP products. */
  linears: Record<LinearName, Linear>;
  /** RMSNorm weight before the MLP (f32). */
  mlpNorm: GpuTensor;
  /** Stacked layers (see {@linkcode LoadOptions.stackLayers}): q/k/v and gate/up. */
  stacks?: { qkv?: LinearStack; gateUp?: LinearStack };
  /** Biases (f32) of the layers that have one in this model's family (Qwen2: q, k, v). */
  biases?: Partial<Record<LinearName, GpuTensor>>;
  /** Per-head RMSNorm weights of q and k (f32 `[headDim]`; Qwen3). */
  qkNorm?: { q: GpuTensor; k: GpuTensor };
}

/** Layers stacked for one-dispatch decode (see {@linkcode LoadOptions.stackLayers}). */
export const STACKS = {
  qkv: ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"],
  gateUp: ["mlp.gate_proj", "mlp.up_proj"],
} as const satisfies Record<string, readonly LinearName[]>;

export function isPrequantized(source: WeightSource): source is PrequantizedWeights {
  return "readQuantized" in source;
}

/** The format the model runs in: the file's for a quantized checkpoint, else `options.format`. */
export function formatOf(source: WeightSource, options: LoadOptions): QuantFormat {
  if (!isPrequantized(source)) return options.format ?? "fp16";
  if (options.format !== undefined && options.format !== source.format) {
    throw new Error(
      `the checkpoint is stored quantized as ${source.format}; it cannot be loaded as ` +
        `${options.format} (load the FP16 checkpoint to quantize it another way)`,
    );
  }
  if (options.linear) throw new Error("a custom linear factory needs an unquantized checkpoint");
  if (options.vramBudget !== undefined) {
    throw new Error(
      `vramBudget: layer streaming of a checkpoint stored as ${source.format} is not supported`,
    );
  }
  return source.format;
}

/** The FP16 linear layer: the default {@linkcode LinearFactory}. */
export const fp16Linear: LinearFactory = (gpu: Gpu, r: LinearRequest): Promise<Linear> =>
  Fp16Linear.create(gpu, {
    label: r.name,
    weight: r.weight,
    outFeatures: r.outFeatures,
    inFeatures: r.inFeatures,
  });

/** The factory `options` ask for. */
export function baseFactory(options: LoadOptions): LinearFactory {
  return options.linear ??
    (options.format && options.format !== "fp16"
      ? quantLinearFactory(options.format, options.quant)
      : fp16Linear);
}

export function newStreamer(gpu: Gpu, config: LlamaConfig, options: LoadOptions): LayerStreamer {
  if (options.linear) {
    throw new Error(
      "vramBudget: layer streaming builds the layers itself; give streaming.pack instead of linear",
    );
  }
  const budget = options.vramBudget!;
  if (!(budget > 0)) {
    throw new RangeError(`vramBudget must be a positive byte count, got ${budget}`);
  }
  return new LayerStreamer(gpu, config, options.format ?? "fp16", options.quant, options.streaming);
}

export async function loadWeights(
  gpu: Gpu,
  c: LlamaConfig,
  ckpt: WeightSource,
  options: LoadOptions,
  owned: { destroy(): void }[],
): Promise<{ embed: GpuTensor; layers: LayerWeights[]; norm: GpuTensor; lmHead: Linear }> {
  // A quantized checkpoint: its quantized layers are uploaded as stored, the others (skipped
  // modules) stay FP16.
  const pre = isPrequantized(ckpt) ? ckpt : null;
  const linear = pre ? fp16Linear : baseFactory(options);
  const family = familyOf(c);
  const perLayer = 2 + LINEAR_NAMES.length + family.biases.length + (family.qkNorm ? 2 : 0);
  const total = 2 + c.numLayers * perLayer + 1;
  let done = 0;
  const progress = (name: string) => options.onProgress?.(++done, total, name);
  const shapes = linearShapes(c);
  const own = <T extends { destroy(): void }>(t: T): T => {
    owned.push(t);
    return t;
  };
  const norm = async (name: string): Promise<GpuTensor> => {
    ckpt.expectShape(name, [c.hiddenSize]);
    const data = await ckpt.readF32(name);
    progress(name);
    return own(gpu.tensor({ label: name, category: "weights", data, shape: [c.hiddenSize] }));
  };

  const embedName = "model.embed_tokens.weight";
  ckpt.expectShape(embedName, [c.vocabSize, c.hiddenSize]);
  const embedBits = await ckpt.readF16Bits(embedName);
  const embed = own(gpu.tensor({
    label: embedName,
    category: "weights",
    data: embedBits,
    shape: [c.vocabSize, c.hiddenSize],
    dtype: "f16x2",
  }));
  progress(embedName);

  // Stacking is exact for FP16 (each output row is computed as it would be alone).
  const stacking = (options.stackLayers ?? true) && linear === fp16Linear && !pre;
  const layers: LayerWeights[] = [];
  for (let l = 0; l < c.numLayers; l++) {
    const prefix = `model.layers.${l}`;
    const attnNorm = await norm(`${prefix}.input_layernorm.weight`);
    const mlpNorm = await norm(`${prefix}.post_attention_layernorm.weight`);
    const linears = {} as Record<LinearName, Linear>;
    const stacks: NonNullable<LayerWeights["stacks"]> = {};
    // The family says where each tensor is (Phi-3 fuses q/k/v and gate/up) and what else the
    // block has (biases, q/k norms); those stay f32 in every format.
    const reader = new BlockTensorReader(ckpt, family, prefix, {
      q: c.numHeads * c.headDim,
      kv: c.numKvHeads * c.headDim,
      intermediate: c.intermediateSize,
    });
    const readLinear = async (kind: LinearName) => {
      const [n, k] = shapes[kind];
      return { n, k, ...await reader.linear(kind, n, k) };
    };
    const f32 = async (read: Promise<{ name: string; data: Float32Array }>) => {
      const { name, data } = await read;
      progress(name);
      return own(gpu.tensor({ label: name, category: "weights", data }));
    };
    const biases: NonNullable<LayerWeights["biases"]> = {};
    for (const kind of family.biases) {
      biases[kind] = await f32(reader.bias(kind, shapes[kind][0]));
    }
    const qkNorm = family.qkNorm
      ? {
        q: await f32(reader.headNorm("q", c.headDim)),
        k: await f32(reader.headNorm("k", c.headDim)),
      }
      : undefined;
    if (stacking) {
      for (
        const [group, kinds] of Object.entries(STACKS) as [
          keyof typeof STACKS,
          readonly LinearName[],
        ][]
      ) {
        const k = shapes[kinds[0]][1];
        if (!Fp16LinearStack.fits(gpu, k, kinds.map((kind) => shapes[kind][0]))) continue;
        const parts = [];
        for (const kind of kinds) {
          const { name, n, weight } = await readLinear(kind);
          parts.push({ label: name, weight, outFeatures: n });
        }
        const stack = own(
          await Fp16LinearStack.create(gpu, {
            label: `${prefix}.{${kinds.join(",")}}.weight`,
            layers: parts,
            inFeatures: k,
            tuning: { stackSwiglu: options.stackSwiglu ?? true },
          }),
        );
        stacks[group] = stack;
        kinds.forEach((kind, i) => linears[kind] = stack.parts[i]);
        for (const part of parts) progress(part.label);
      }
    }
    for (const kind of LINEAR_NAMES) {
      if (linears[kind]) continue;
      const name = `${prefix}.${kind}.weight`;
      if (pre?.isQuantized(name)) {
        ckpt.expectShape(name, shapes[kind]);
        const weight = await pre.readQuantized(name);
        linears[kind] = own(
          weight.format === "q4_k" || weight.format === "q6_k"
            ? await KQuantLinear.create(gpu, { label: name, weight, f16: options.quant?.f16 })
            : await QuantLinear.create(gpu, {
              label: name,
              ...pre.linearOptions,
              ...options.quant,
              weight,
            }),
        );
        progress(name);
        continue;
      }
      const { n, k, weight } = await readLinear(kind);
      linears[kind] = own(
        await linear(gpu, { name, layer: l, kind, weight, outFeatures: n, inFeatures: k }),
      );
      progress(name);
    }
    // Quantized layers that read the same x share one matrix where their format allows it
    // (QuantLinearStack): one decode dispatch per group, in the same memory.
    // (Not with layer streaming: it rewrites each streamed layer's own arrays.)
    if ((options.stackLayers ?? true) && options.vramBudget === undefined) {
      for (
        const [group, kinds] of Object.entries(STACKS) as [
          keyof typeof STACKS,
          readonly LinearName[],
        ][]
      ) {
        const parts = kinds.map((kind) => linears[kind]);
        if (stacks[group] || !QuantLinear.canStack(gpu, parts)) continue;
        stacks[group] = own(
          await QuantLinearStack.create(gpu, {
            label: `${prefix}.{${kinds.join(",")}}.weight`,
            layers: parts,
          }),
        );
      }
    }
    layers.push({ attnNorm, linears, mlpNorm, stacks, biases, qkNorm });
  }
  const norm_ = await norm("model.norm.weight");

  let lmHead: Linear;
  const headName = c.tieWordEmbeddings ? embedName : "lm_head.weight";
  const headFactory = options.quantizeHead ? linear : fp16Linear;
  if (c.tieWordEmbeddings && !options.quantizeHead) {
    lmHead = own(
      await Fp16Linear.create(gpu, {
        label: "lm_head (tied to embed_tokens)",
        weight: embed,
        outFeatures: c.vocabSize,
        inFeatures: c.hiddenSize,
      }),
    );
  } else {
    ckpt.expectShape(headName, [c.vocabSize, c.hiddenSize]);
    const weight = c.tieWordEmbeddings ? embedBits : await ckpt.readF16Bits(headName);
    lmHead = own(
      await headFactory(gpu, {
        name: headName,
        layer: -1,
        kind: "lm_head",
        weight,
        outFeatures: c.vocabSize,
        inFeatures: c.hiddenSize,
      }),
    );
  }
  progress(headName);
  return { embed, layers, norm: norm_, lmHead };
}
