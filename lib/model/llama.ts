/**
 * The Llama forward pass on WebGPU, in the spirit of llama2.c's `run.c`: the model (its weights,
 * loaded by `load.ts`; its run state, `run_state.ts`) and the forward, decode and verify passes.
 *
 * One token's path: `embed` looks its row up in the f16 table; each layer does
 * `rmsnorm → q,k,v → rope → kv cache → attention → o → +residual → rmsnorm → gate,up → swiglu →
 * down → +residual`; a final `rmsnorm` and the LM head give logits. Every product goes through
 * a {@linkcode Linear}, which is where the weight formats differ.
 *
 * @module
 */

import { BindGroupCache, CommandBatch, type DispatchTiming } from "../gpu/batch.ts";
import type { Binding } from "../gpu/batch.ts";
import { defaultGpu, type Gpu } from "../gpu/device.ts";
import type { GpuTensor } from "../gpu/tensor.ts";
import type { Linear, LinearEncodeOptions, LinearStack } from "../kernels/linear.ts";
import { MAX_GEMV_ROWS } from "../kernels/linear.ts";
import { reserveInt8Scratch } from "../kernels/quant_linear.ts";
import type { QuantFormat } from "../quant/formats.ts";
import type { KvCacheFormat } from "../kernels/kv_cache.ts";
import { LlamaOps } from "./ops.ts";
import { type Checkpoint, openCheckpoint } from "./checkpoint.ts";
import { prequantizedWeights } from "./prequantized.ts";
import { openGguf } from "./gguf.ts";
import { familyOf, type LlamaConfig, loadLlamaConfig } from "./config.ts";
import { isLlama2cFile, Llama2cSource } from "./llama2c.ts";
import type { LayerStreamer, StreamingStats } from "./streaming.ts";
import type { FusedDraft } from "../kernels/draft_fused.ts";
import { createFusedDraftFor, fusedDraftUnfitModel } from "./draft_fused.ts";
import { checkArgmaxToken, checkLogits } from "./finite.ts";
import { createSampler, type SamplerOptions, seededRandom } from "./sampling.ts";
import { createSampleKernel } from "../kernels/sample.ts";
import { checkUnusedTensors, llamaTensorClaims } from "./unused_tensors.ts";
import {
  baseFactory,
  formatOf,
  isPrequantized,
  type LayerWeights,
  type LinearName,
  type LoadOptions,
  loadWeights,
  newStreamer,
  type WeightSource,
} from "./load.ts";
import {
  createRunState,
  destroyRunState,
  type RunState,
  uniformBytesPerChunk,
} from "./run_state.ts";

export {
  fp16Linear,
  type LayerWeights,
  LINEAR_NAMES,
  type LinearFactory,
  type LinearName,
  type LinearRequest,
  linearShapes,
  type LoadOptions,
  type WeightSource,
} from "./load.ts";
export { type ActivationBuffers, activationFloats, uniformBytesPerChunk } from "./run_state.ts";

/**
 * Points inside a decoder block whose activations {@linkcode LlamaModel.trace} records:
 * the input of q/k/v (`attn_in`), of o_proj (`o_in`), of gate/up (`mlp_in`), of down_proj
 * (`down_in`), and the residual stream after the block (`block_out`).
 */
export const TRACE_POINTS = ["attn_in", "o_in", "mlp_in", "down_in", "block_out"] as const;

/** One of {@linkcode TRACE_POINTS}. */
export type TracePoint = typeof TRACE_POINTS[number];

/** Activations recorded by {@linkcode LlamaModel.trace}: `[tokens, width]` row-major each. */
export interface Trace {
  /** Number of tokens traced. */
  tokens: number;
  /** Per layer, per point. */
  layers: Record<TracePoint, Float32Array>[];
  /** Logits `[tokens, vocab]`. */
  logits: Float32Array;
}

type CaptureHook = (point: TracePoint, layer: number, source: GpuTensor, width: number) => void;

/** Options for {@linkcode LlamaModel.decodeGreedy}. */
export interface GreedyDecodeOptions {
  /** Most new tokens (the one the prompt yields included). */
  maxNewTokens: number;
  /**
   * Receives each new token as soon as it is read back, in order; returning `false` stops
   * decoding (that token still counts as delivered).
   */
  onToken?: (token: number, index: number) => boolean | void;
  /**
   * Tokens read back together. Above 1, the next group is submitted while one is read back; 1
   * waits for each token before encoding the next step, as {@linkcode LlamaModel.forwardGreedy}
   * does. `"auto"` (the default on a hardware adapter; 1 on a software one, where `submit` runs
   * the work before it returns, so nothing can overlap) starts at 8 and then sizes each group to
   * about 25 ms of steps (8 to 64): every readback in Deno takes at least ~10 ms, so a fast
   * model needs more steps in flight to keep the GPU busy, and a slow one needs no more. A
   * group's pace is measured from its readback; where that shows only the ~10 ms wait (and after
   * the first group), what recording a step costs the CPU bounds it instead, so a small model
   * reaches large groups from the third group on.
   */
  inFlight?: number | "auto";
  /**
   * `inFlight: "auto"`: the wall time each group aims at, in ms (default 25). Longer groups
   * stream tokens in bigger bursts and may run further past a stop.
   */
  autoGroupMs?: number;
}

/** Options for {@linkcode LlamaModel.decodeSampled}: those of greedy decoding, and how to draw. */
export interface SampledDecodeOptions extends GreedyDecodeOptions {
  /**
   * `createSampler`'s options: temperature (default 1), topK, topP and the seed of the uniform
   * draws (default 0, so runs repeat). Temperature 0 or topK 1 is greedy decoding.
   */
  sampling: SamplerOptions;
}

/** What {@linkcode LlamaModel.decodeGreedy} and {@linkcode LlamaModel.decodeSampled} produced. */
export interface GreedyDecodeResult {
  /** The new tokens delivered to `onToken`, in order. */
  tokens: number[];
  /** `"callback"`: `onToken` returned false; `"context"`: the KV cache is full. */
  stoppedBy: "callback" | "max-tokens" | "context";
  /** Steps that were computed after the stop and discarded. */
  overshoot: number;
  /** How many steps each readback brought back, in order (the sizes `inFlight: "auto"` chose). */
  groups: number[];
  /** CPU milliseconds spent recording, encoding and submitting the steps (all of them). */
  encodeMs?: number;
}

/** For a linear layer that reads the x the previous one read (k/v after q, up after gate). */
const SAME_INPUT: LinearEncodeOptions = { reuseInput: true };
/** The verify pass: every row computed as a decode step would compute it alone. */
const PER_ROW: LinearEncodeOptions = { perRow: true };
const PER_ROW_SAME_INPUT: LinearEncodeOptions = { reuseInput: true, perRow: true };

/** Where a pass of chained rounds starts: `offset` past the GPU's position word, at most `bound`. */
interface ChainedStart {
  offset: number;
  bound: number;
}

/** The default readback group of {@linkcode LlamaModel.decodeGreedy} on this adapter. */
function defaultInFlight(gpu: Gpu): number | "auto" {
  return gpu.isSoftware ? 1 : "auto";
}

/**
 * The longest prompt that runs as passes of up to {@linkcode MAX_GEMV_ROWS} rows through the
 * multi-row products rather than through the prefill GEMM, on this adapter, for a model of
 * `format` ({@linkcode LoadOptions.shortPromptTokens}'s default). Measured at Llama-2-7B shape
 * on an H200 (BENCHMARKS.md, "Short prompts: 64-row GEMM tiles"): the passes take 20-110 ms for
 * 2-64 tokens; the GEMM (64-row tiles) 66-77 ms for FP16, NF4 and Q8_0 prompts of up to 64
 * tokens, so the passes win up to about 40 tokens; int8-vectorwise's integer GEMM takes ~100 ms,
 * and its passes win up to 64. On lavapipe the passes win up to about 8 tokens for NF4, 24 for
 * FP16.
 *
 * @example
 * ```ts ignore
 * defaultShortPromptTokens(gpu, "nf4"); // 40 on a hardware adapter, 8 on a software one
 * defaultShortPromptTokens(gpu, "int8-vectorwise"); // 64 on a hardware adapter
 * ```
 */
export function defaultShortPromptTokens(gpu: Gpu, format?: string): number {
  if (gpu.isSoftware) return 8;
  return format === "int8-vectorwise" || format === "int8-absmax" ? 64 : 40;
}

/** A prompt's passes: its pieces, and whether each runs through the multi-row products. */
interface PromptPiece {
  start: number;
  tokens: readonly number[];
  isLast: boolean;
  perRow: boolean;
}

/**
 * Readback groups sized `"auto"` (`decodeGreedy`'s `inFlight`, `speculativeDecode`'s
 * `groupRounds`): the first group's size, the bounds, and the wall time a group aims at — 2.5x
 * the ~10 ms that Deno's `mapAsync` takes at the least (it polls the device, then sleeps 10 ms),
 * so that the wait hides behind the next group's work.
 *
 * @example
 * ```ts
 * import { AUTO_IN_FLIGHT } from "./llama.ts";
 * AUTO_IN_FLIGHT.groupMs; // 25
 * ```
 */
export const AUTO_IN_FLIGHT: Readonly<
  { first: number; min: number; max: number; groupMs: number; floorMs: number }
> = { first: 8, min: 8, max: 64, groupMs: 25, floorMs: 10 };

/**
 * The readback group that `inFlight: "auto"` takes next, from the milliseconds per step the last
 * group took: about `groupMs` (default 25) ms of steps, 8 to 64.
 *
 * @example
 * ```ts
 * autoInFlight(5); // 8: a 7B model's 5 ms steps fill 25 ms in 5, and 8 is the least
 * autoInFlight(0.6); // 42
 * ```
 */
export function autoInFlight(msPerStep: number, groupMs = AUTO_IN_FLIGHT.groupMs): number {
  const { min, max } = AUTO_IN_FLIGHT;
  if (!(msPerStep > 0)) return max;
  return Math.min(max, Math.max(min, Math.ceil(groupMs / msPerStep)));
}

/**
 * The pace, in ms per step (or per round), that `"auto"` readback groups size the next group
 * from ({@linkcode autoInFlight}): what the group's readback shows, `waitedMs` over its `count`
 * items; but where that shows only Deno's ~10 ms readback floor, the group carried less work than
 * the wait, and what recording an item costs the CPU (`cpuMs`, a pace no group beats) bounds it
 * instead, as it does for a first group whose readback also holds a prompt (`first`).
 *
 * @example
 * ```ts
 * import { autoPace } from "./llama.ts";
 * autoPace(40, 8, 3, false); // 5: a 7B model's group of 8 steps took 40 ms
 * autoPace(11, 8, 0.45, false); // 0.45: back at the floor, the CPU's pace bounds it
 * ```
 */
export function autoPace(waitedMs: number, count: number, cpuMs: number, first: boolean): number {
  if (first) return cpuMs;
  const shown = waitedMs / Math.max(1, count);
  return waitedMs < 1.5 * AUTO_IN_FLIGHT.floorMs ? Math.min(shown, cpuMs) : shown;
}

/** Which logits {@linkcode LlamaModel.forward} returns. */
export type LogitsWanted = "last" | "all" | "none";

/**
 * How a pass recorded on the GPU turns its logits into tokens (default: the argmax of each row):
 * records the tokens of `rows` logits rows (f32, `[rows, vocab]` from the start of `logits`)
 * into the first `rows` words of `next`. `step` counts the passes of one call from 0 (a draft's
 * proposals). Speculative sampling draws here (lib/model/speculative.ts).
 *
 * @example
 * ```ts ignore
 * const pick: TokenPick = (batch, logits, next, rows) =>
 *   sampler.encode(batch, logits, next, vocab, settings, rng(), { rows });
 * draft.proposeChained(3, target.tokenInput, 40, undefined, pick);
 * ```
 */
export type TokenPick = (
  batch: CommandBatch,
  logits: GpuTensor,
  next: GpuTensor,
  rows: number,
  step: number,
) => void;

/**
 * A Llama model on the GPU with its KV cache.
 *
 * @example
 * ```ts ignore
 * import { LlamaModel } from "./llama.ts";
 * const model = await LlamaModel.load("models/sotu-llama");
 * const logits = await model.forward([1, 450, 3681], "last"); // Float32Array [vocab]
 * model.dispose();
 * ```
 */
export class LlamaModel {
  /** The architecture. */
  readonly config: LlamaConfig;
  /** The device it runs on. */
  readonly gpu: Gpu;
  /** Token embedding table, f16 `[vocab, hidden]`. */
  readonly embed: GpuTensor;
  /** Decoder blocks. */
  readonly layers: LayerWeights[];
  /** Final RMSNorm weight (f32). */
  readonly norm: GpuTensor;
  /** The LM head (shares `embed` when embeddings are tied). */
  readonly lmHead: Linear;
  /** Longest sequence the KV cache holds. */
  readonly maxSeqLen: number;
  /** Weight format of the decoder blocks' linear layers. */
  readonly format: QuantFormat;
  /** Storage format of the KV cache. */
  readonly kvCache: KvCacheFormat;
  #ops: LlamaOps;
  #state: RunState;
  #pos = 0;
  #disposed = false;
  #bindGroups = new BindGroupCache();
  #chainedBindGroups = new Map<string, BindGroupCache>();
  #streamer: LayerStreamer | null = null;
  #shortPrompt = 0;
  #fused: FusedDraft | null = null;
  /**
   * Whether batches reuse bind groups across calls (default true). Results are the same either
   * way; turning it off is for measuring what it saves.
   */
  reuseBindGroups = true;

  private constructor(
    config: LlamaConfig,
    gpu: Gpu,
    weights: { embed: GpuTensor; layers: LayerWeights[]; norm: GpuTensor; lmHead: Linear },
    ops: LlamaOps,
    state: RunState,
    maxSeqLen: number,
    format: QuantFormat,
    kvCache: KvCacheFormat,
  ) {
    this.config = config;
    this.gpu = gpu;
    this.embed = weights.embed;
    this.layers = weights.layers;
    this.norm = weights.norm;
    this.lmHead = weights.lmHead;
    this.#ops = ops;
    this.#state = state;
    this.maxSeqLen = maxSeqLen;
    this.format = format;
    this.kvCache = kvCache;
  }

  /**
   * Loads a Hugging Face Llama checkpoint directory, one tensor at a time, or a llama2.c model
   * file (`.bin`, version 0, 1 or 2; see `lib/model/llama2c.ts`).
   *
   * @example
   * ```ts ignore
   * const model = await LlamaModel.load("models/sotu-llama", { maxSeqLen: 512 });
   * ```
   */
  static async load(dir: string, options: LoadOptions = {}): Promise<LlamaModel> {
    if (dir.endsWith(".gguf")) {
      // A llama.cpp file: config from its keys, quantized layers into our kernels.
      using file = await openGguf(dir);
      return await LlamaModel.fromCheckpoint(file.config, file, options);
    }
    if (await isLlama2cFile(dir)) {
      // a llama2.c model file (version 0, 1 or 2) rather than a Hugging Face directory
      const source = await Llama2cSource.open(dir);
      try {
        return await LlamaModel.fromCheckpoint(source.config, source, options);
      } finally {
        source.close();
      }
    }
    const config = await loadLlamaConfig(dir);
    const checkpoint = await openCheckpoint(dir);
    try {
      // A bitsandbytes or qlab checkpoint: its quantized layers load as they are.
      const source = await prequantizedWeights(dir, checkpoint) ?? checkpoint;
      return await LlamaModel.fromCheckpoint(config, source, options);
    } finally {
      checkpoint.close();
    }
  }

  /** Loads from an open checkpoint or another weight source (see {@linkcode LlamaModel.load}). */
  static async fromCheckpoint(
    config: LlamaConfig,
    checkpoint: WeightSource,
    options: LoadOptions = {},
  ): Promise<LlamaModel> {
    const names = (checkpoint as Partial<Checkpoint>).names;
    if (!options.allowUnusedTensors && typeof names === "function") {
      checkUnusedTensors(
        (checkpoint as Partial<Checkpoint>).dir ?? "checkpoint",
        names.call(checkpoint),
        [
          ...llamaTensorClaims(config),
          ...(isPrequantized(checkpoint) ? checkpoint.tensorClaims(config) : []),
          ...(options.claimTensors ?? []),
        ],
        config,
      );
    }
    const short = options.shortPromptTokens;
    if (short !== undefined && !(Number.isInteger(short) && short >= 0)) {
      throw new RangeError(`shortPromptTokens must be an integer ≥ 0, got ${short}`);
    }
    const gpu = options.gpu ?? await defaultGpu();
    const maxSeqLen = options.maxSeqLen ?? Math.min(config.maxPositionEmbeddings, 4096);
    if (maxSeqLen > config.maxPositionEmbeddings) {
      throw new Error(
        `maxSeqLen ${maxSeqLen} exceeds the model's max_position_embeddings ` +
          `(${config.maxPositionEmbeddings})`,
      );
    }
    const chunk = Math.min(options.chunkSize ?? 128, maxSeqLen);
    const format = formatOf(checkpoint, options);
    const owned: { destroy(): void }[] = [];
    const streamer = options.vramBudget === undefined ? null : newStreamer(gpu, config, options);
    const baseline = gpu.ledger.currentBytes;
    try {
      const weights = await loadWeights(
        gpu,
        config,
        checkpoint,
        streamer ? { ...options, linear: streamer.factory(baseFactory(options)) } : options,
        owned,
      );
      if (streamer) owned.push(streamer);
      const kvCache = options.kvCache ?? "f16";
      const ops = await LlamaOps.create(gpu, config, weights.embed, maxSeqLen, kvCache, {
        foldRope: options.foldRope ?? true,
      });
      owned.push(ops);
      const state = createRunState(gpu, config, chunk, maxSeqLen, kvCache, owned);
      // Reserve the uniform buffer for a whole chunk now, so it never grows mid-run and the
      // memory estimator can count it.
      gpu.uniformArena(uniformBytesPerChunk(config));
      const reserveScratch = () => {
        if (["int8-absmax", "int8-vectorwise", "llm-int8"].includes(format)) {
          const maxK = Math.max(
            config.hiddenSize,
            config.numHeads * config.headDim,
            config.intermediateSize,
          );
          reserveInt8Scratch(gpu, chunk, maxK);
        }
      };
      reserveScratch();
      if (streamer) {
        await streamer.place(weights.layers, {
          // the int8 scratch is made with the first int8 layer, which placing builds
          afterFirstLayer: reserveScratch,
          budget: options.vramBudget!,
          usedBytes: gpu.ledger.currentBytes - baseline,
          // a chunk of logits read back, and decodeGreedy's two token staging buffers
          reserveBytes: chunk * config.vocabSize * 4 + 1024,
        });
      }
      // Let the uploads' staging copies go now, not at the first forward, and wait until
      // they have: a loop of loads could otherwise outrun their release.
      gpu.flush();
      await gpu.sync();
      const model = new LlamaModel(
        config,
        gpu,
        weights,
        ops,
        state,
        maxSeqLen,
        format,
        kvCache,
      );
      model.#streamer = streamer;
      const asked = options.shortPromptTokens ?? defaultShortPromptTokens(gpu, format);
      const linears = [...weights.layers.flatMap((l) => Object.values(l.linears)), weights.lmHead];
      // More than one pass only where every product reads its weights once for all rows (and a
      // streamed layer is uploaded once per pass): else at most one pass, as a prompt had.
      const oneReadEach = !streamer && linears.every((lin) => lin.takesRows?.(2) === true);
      // A layer that quantizes a product's rows together keeps prompts whole (the GEMM).
      model.#shortPrompt = linears.some((lin) => lin.quantizesRowsTogether === true)
        ? 0
        : oneReadEach
        ? asked
        : Math.min(asked, MAX_GEMV_ROWS);
      return model;
    } catch (err) {
      // Nothing half-built stays on the GPU, nor its uploads' staging copies in memory.
      for (const o of owned.reverse()) o.destroy();
      if (streamer) gpu.trimScratch();
      gpu.flush();
      throw err;
    }
  }

  /** Where the decoder layers live when loaded with a `vramBudget`; null otherwise. */
  get streaming(): StreamingStats | null {
    return this.#streamer?.stats ?? null;
  }

  /** Tokens already in the KV cache. */
  get position(): number {
    return this.#pos;
  }

  /** Most tokens one internal chunk processes at once. */
  get chunkSize(): number {
    return this.#state.rows;
  }

  /**
   * How a prompt of `tokens.length` tokens runs: a short one (at most
   * {@linkcode LoadOptions.shortPromptTokens}) as passes of up to {@linkcode maxVerifyTokens}
   * rows through the multi-row products, a longer one as chunks through the prefill GEMM.
   */
  #promptPieces(tokens: readonly number[]): PromptPiece[] {
    const short = tokens.length <= this.#shortPrompt;
    const size = short ? this.maxVerifyTokens : this.#state.rows;
    const pieces: PromptPiece[] = [];
    for (let start = 0; start < tokens.length; start += size) {
      const piece = tokens.slice(start, start + size);
      pieces.push({
        start,
        tokens: piece,
        isLast: start + piece.length === tokens.length,
        perRow: short && piece.length > 1,
      });
    }
    return pieces;
  }

  /**
   * Sets the KV cache's position (default 0, an empty cache): the next forward starts there and
   * overwrites what the cache held from it on. Setting it back keeps positions `0 .. position -
   * 1` as they were. Setting it past what was computed leaves those positions as the cache holds
   * them (zeros on a fresh model): for timing long contexts without computing them. A
   * {@linkcode gpuStart} left by chained rounds goes back to 0, so that positions come from here
   * again.
   */
  reset(position = 0): void {
    if (!Number.isInteger(position) || position < 0 || position > this.maxSeqLen) {
      throw new RangeError(`reset: position ${position} is outside 0..${this.maxSeqLen}`);
    }
    this.#pos = position;
    if (!this.#disposed) this.setGpuStart(0);
  }

  /**
   * Layer `layer`'s key and value cache tensors (layout: `lib/kernels/kv_cache.ts`; positions
   * `0 .. position - 1` are filled). For inspecting what the cache holds.
   */
  kvCacheTensors(layer: number): { key: GpuTensor; value: GpuTensor } {
    if (!(layer >= 0 && layer < this.config.numLayers)) {
      throw new RangeError(`kvCacheTensors: layer ${layer} of ${this.config.numLayers}`);
    }
    return { key: this.#state.keyCache[layer], value: this.#state.valueCache[layer] };
  }

  /**
   * Moves the KV cache back to `position` tokens (at most {@linkcode position}): the entries
   * past it are forgotten and overwritten by the next forward. Speculative decoding calls it
   * after a verify pass to drop the rejected draft tokens.
   *
   * @example
   * ```ts ignore
   * const start = model.position;
   * await model.verify([last, ...draft], "argmax");
   * model.rollback(start + 1 + accepted);
   * ```
   */
  rollback(position: number): void {
    if (!Number.isInteger(position) || position < 0 || position > this.#pos) {
      throw new RangeError(
        `rollback: position ${position} is outside 0..${this.#pos} (the tokens in the KV cache)`,
      );
    }
    this.#pos = position;
  }

  /**
   * The u32 token buffer a forward reads its input ids from. A draft model on the same device
   * writes its proposals into it ({@linkcode proposeGreedy}) for {@linkcode verifyProposed}.
   */
  get tokenInput(): GpuTensor {
    return this.#state.ids;
  }

  /**
   * The draft side of speculative decoding with nothing read back: runs `tokens` after the
   * cached ones, then `count - 1` greedy steps that feed each argmax back on the GPU, and copies
   * the `count` argmaxes into words `firstWord ..` of `into` — another model's
   * {@linkcode tokenInput} on the same device (with `pick`, the tokens it records instead of the
   * argmaxes). Returns once the work is submitted. Afterwards the cache holds `tokens` and every
   * argmax but the last, as after {@linkcode decodeGreedy}.
   *
   * @example
   * ```ts ignore
   * draft.proposeGreedy([last], 4, target.tokenInput, 1);
   * const { proposals, best } = await target.verifyProposed(last, 4);
   * ```
   */
  proposeGreedy(
    tokens: readonly number[],
    count: number,
    into: GpuTensor,
    firstWord: number,
    pick?: TokenPick,
  ): void {
    this.#checkUsable(tokens.length + count - 1, "proposeGreedy");
    if (!Number.isInteger(count) || count < 1 || (firstWord + count) * 4 > into.byteSize) {
      throw new RangeError(
        `proposeGreedy: ${count} tokens from word ${firstWord} do not fit ${into.label} ` +
          `(${into.byteSize / 4} words)`,
      );
    }
    const s = this.#state;
    for (const { tokens: piece, isLast, perRow } of this.#promptPieces(tokens)) {
      const batch = this.#batch();
      this.#encodeChunk(batch, piece, isLast ? 1 : 0, undefined, perRow);
      if (isLast) {
        this.#pick(batch, 1, 0, pick);
        batch.copy(s.next, 0, into, firstWord * 4, 4);
      }
      batch.submit();
    }
    for (let i = 1; i < count; i++) {
      const batch = this.#batch();
      this.#encodeChunk(batch, "next", 1);
      this.#pick(batch, 1, i, pick);
      batch.copy(s.next, 0, into, (firstWord + i) * 4, 4);
      batch.submit();
    }
  }

  /** The tokens of a pass's `rows` logits rows into the first words of `next`: `pick`, or argmax. */
  #pick(batch: CommandBatch, rows: number, step: number, pick?: TokenPick): void {
    const s = this.#state;
    if (pick) pick(batch, s.logits, s.next, rows, step);
    else this.#ops.argmax(batch, s.logits, s.next, rows, this.config.vocabSize);
  }

  /**
   * {@linkcode verify} with argmaxes of `[first, p₁ .. p_count]`, where the proposals p are
   * already in words 1..count of {@linkcode tokenInput} (written on the GPU by a draft's
   * {@linkcode proposeGreedy}); only `first` comes from the CPU. Returns the proposals and the
   * `count + 1` argmaxes, read back together: one wait per round of speculative decoding.
   *
   * @example
   * ```ts ignore
   * const { proposals, best } = await target.verifyProposed(last, 4);
   * ```
   */
  async verifyProposed(
    first: number,
    count: number,
  ): Promise<{ proposals: Uint32Array; best: Uint32Array }> {
    const n = count + 1;
    this.#checkUsable(n, "verifyProposed");
    if (count < 1 || n > this.maxVerifyTokens) {
      throw new RangeError(
        `verifyProposed: ${n} tokens; a verify pass takes 2..${this.maxVerifyTokens}`,
      );
    }
    const s = this.#state;
    const vocab = this.config.vocabSize;
    const batch = this.#batch();
    this.#encodeChunk(batch, { first, rows: n }, n, undefined, true);
    this.#ops.argmax(batch, s.logits, s.next, n, vocab);
    const together = n + count <= s.rows;
    if (together) batch.copy(s.ids, 4, s.next, n * 4, count * 4);
    batch.submit();
    if (together) {
      const words = await this.gpu.readU32(s.next, 0, n + count);
      return { proposals: words.slice(n), best: words.slice(0, n) };
    }
    const best = await this.gpu.readU32(s.next, 0, n);
    return { proposals: await this.gpu.readU32(s.ids, 1, count), best };
  }

  /**
   * The u32 that RoPE and attention add to every start position (zero except during chained
   * speculative rounds, {@linkcode proposeChained} and {@linkcode verifyChained}, which keep
   * the position here, where no CPU sees it between rounds).
   */
  get gpuStart(): GpuTensor {
    return this.#state.position;
  }

  /** The u32 buffer where a pass leaves its argmaxes (one per row for a verify pass). */
  get argmaxOutput(): GpuTensor {
    return this.#state.next;
  }

  /**
   * Sets {@linkcode gpuStart} (in queue order: it holds for work submitted after this call).
   * Chained rounds set it to the position they start from, and back to 0 when they end.
   *
   * @example
   * ```ts ignore
   * target.setGpuStart(target.position); // then target.verifyChained(...) starts there
   * ```
   */
  setGpuStart(position: number): void {
    if (!Number.isInteger(position) || position < 0 || position > this.maxSeqLen) {
      throw new RangeError(`setGpuStart: position ${position} is outside 0..${this.maxSeqLen}`);
    }
    this.#state.position.write(this.gpu.device, new Uint32Array([position]));
  }

  /**
   * The draft side of speculative rounds chained on the GPU, with nothing from the CPU but the
   * shapes: runs two rows, words 0 and 1 of {@linkcode tokenInput} (the token before `last`
   * and `last`, which the acceptance kernel left there), at positions {@linkcode gpuStart} and
   * one after; then `count - 1` greedy steps that feed each argmax back; each of the `count`
   * argmaxes goes to words `1 .. count` of `into` (the target's {@linkcode tokenInput}).
   * {@linkcode gpuStart} is at most `bound` when the work runs, which sizes attention and is
   * checked against the cache. {@linkcode position} is left alone. Returns once submitted;
   * with `batch` (only where {@linkcode proposalsFused}: one dispatch), records into that
   * batch instead, for the caller to submit with the verify pass that follows. With `pick`
   * ({@linkcode TokenPick}: speculative sampling's draws) each step's token is what it records,
   * layer by layer even where the proposals are fused.
   *
   * @example
   * ```ts ignore
   * draft.proposeChained(4, target.tokenInput, 40);
   * target.verifyChained(4, 41, (batch) => accept.encode(batch, buffers, 4, 0));
   * ```
   */
  proposeChained(
    count: number,
    into: GpuTensor,
    bound: number,
    batch?: CommandBatch,
    pick?: TokenPick,
  ): void {
    this.#checkChained(bound, count + 1, "proposeChained");
    if (!Number.isInteger(count) || count < 1 || (count + 1) * 4 > into.byteSize) {
      throw new RangeError(
        `proposeChained: ${count} tokens do not fit ${into.label} (${into.byteSize / 4} words)`,
      );
    }
    const s = this.#state;
    // a fused draft picks its argmax inside its one dispatch: another pick runs layer by layer
    const fused = pick ? null : this.#fused;
    if (batch && !fused) {
      throw new Error("proposeChained: only fused greedy proposals record into the caller's batch");
    }
    if (fused) {
      const own = batch ?? this.#batch(this.#chainGroups("draft fused"));
      fused.encode(
        own,
        {
          ids: s.ids,
          position: s.position,
          out: into,
          outWord: 1,
          keyCache: s.keyCache,
          valueCache: s.valueCache,
        },
        count,
        bound,
      );
      if (!batch) own.submit();
      return;
    }
    const kind = pick ? " (picked)" : "";
    let step = this.#batch(this.#chainGroups(`draft 2 rows${kind}`));
    // the two rows as a verify pass runs them (multi-row products): a prefill's GEMM pads so few
    // rows to a whole tile (TinyLlama NF4 on the H200: 85 ms, against ~2 ms)
    this.#encodeChunk(step, { rows: 2 }, 1, undefined, true, { offset: 0, bound });
    this.#pick(step, 1, 0, pick);
    step.copy(s.next, 0, into, 4, 4);
    step.submit();
    for (let i = 1; i < count; i++) {
      step = this.#batch(this.#chainGroups(`draft step${kind}`));
      this.#encodeChunk(step, "next", 1, undefined, false, {
        offset: 1 + i,
        bound: bound + 1 + i,
      });
      this.#pick(step, 1, i, pick);
      step.copy(s.next, 0, into, (1 + i) * 4, 4);
      step.submit();
    }
  }

  /**
   * Makes {@linkcode proposeChained} one dispatch per call, whatever `count`: one workgroup runs
   * the whole model token after token (kernels/draft_fused.wgsl), for drafts so small that a
   * layer-by-layer step is mostly dispatch overhead. Needs FP16 weights, an f16 KV cache, a plain
   * Llama block of at most 4 layers and activations that fit in workgroup memory; the weights are
   * copied once more, packed for the kernel (counted in the ledger as weights). Proposals are
   * greedy as before, from f32 arithmetic throughout (the layer-by-layer path rounds products'
   * inputs to f16 where the adapter has it), so a near tie can go the other way; a draft only
   * proposes, and the target's output is the same either way. Returns null once fused, or why
   * this model cannot be. `false` undoes it.
   *
   * @example
   * ```ts ignore
   * const why = await draft.fuseProposals(); // null: proposeChained is one dispatch now
   * ```
   */
  async fuseProposals(on = true): Promise<string | null> {
    this.#checkAlive("fuseProposals");
    if (!on) {
      this.#fused?.destroy();
      this.#fused = null;
      return null;
    }
    if (this.#fused) return null;
    const why = fusedDraftUnfitModel(this, this.#streamer !== null);
    if (why) return why;
    this.#fused = await createFusedDraftFor(this);
    return null;
  }

  /** Whether {@linkcode proposeChained} runs fused ({@linkcode fuseProposals}). */
  get proposalsFused(): boolean {
    return this.#fused !== null;
  }

  /**
   * The target side of speculative rounds chained on the GPU: a {@linkcode verify} pass over
   * `count + 1` tokens already in {@linkcode tokenInput} (`last`, then a draft's proposals) at
   * position {@linkcode gpuStart} (at most `bound`), its argmaxes into
   * {@linkcode argmaxOutput} (with `pick`, the tokens it records there instead); `before`
   * records work that goes first in the same submission (a fused draft's proposals), `then` work
   * after it (the acceptance step). Nothing is read back; {@linkcode position} is left alone.
   *
   * @example
   * ```ts ignore
   * target.verifyChained(4, 41, (batch) => accept.encode(batch, buffers, 4, 0));
   * ```
   */
  verifyChained(
    count: number,
    bound: number,
    then?: (batch: CommandBatch) => void,
    before?: (batch: CommandBatch) => void,
    pick?: TokenPick,
  ): void {
    const n = count + 1;
    this.#checkChained(bound, n, "verifyChained");
    if (!Number.isInteger(count) || count < 1 || n > this.maxVerifyTokens) {
      throw new RangeError(
        `verifyChained: ${n} tokens; a verify pass takes 2..${this.maxVerifyTokens}`,
      );
    }
    // a pass with work before it keeps its own bind groups: its dispatches sit one place later
    const kind = (before ? "verify after proposals" : "verify") + (pick ? " (picked)" : "");
    const batch = this.#batch(this.#chainGroups(kind));
    before?.(batch);
    this.#encodeChunk(batch, { rows: n }, n, undefined, true, { offset: 0, bound });
    this.#pick(batch, n, 0, pick);
    then?.(batch);
    batch.submit();
  }

  /** Most tokens one {@linkcode verify} pass takes. */
  get maxVerifyTokens(): number {
    return Math.min(MAX_GEMV_ROWS, this.#state.rows);
  }

  /**
   * The verify pass of speculative decoding: runs `tokens` (1 to {@linkcode maxVerifyTokens})
   * after the cached ones in one forward, each row computed as a decode step would compute it
   * alone (multi-row GEMVs that read the weights once; int8 activations quantized per row), and
   * returns the logits of every token (`"logits"`, `[tokens.length, vocab]`) or the argmax of
   * each row, computed on the GPU (`"argmax"`). The tokens stay in the KV cache:
   * {@linkcode rollback} drops the rejected ones.
   *
   * @example
   * ```ts ignore
   * const best = await model.verify([last, d1, d2, d3], "argmax"); // 4 argmaxes
   * ```
   */
  verify(tokens: readonly number[], want: "logits"): Promise<Float32Array>;
  /** {@linkcode verify} returning the argmax of each row (computed on the GPU). */
  verify(tokens: readonly number[], want: "argmax"): Promise<Uint32Array>;
  /**
   * {@linkcode verify} without the LM head and without reading anything back: the pass only, its
   * tokens left in the KV cache (to time verify passes back to back).
   */
  verify(tokens: readonly number[], want: "none"): Promise<void>;
  async verify(
    tokens: readonly number[],
    want: "logits" | "argmax" | "none",
  ): Promise<Float32Array | Uint32Array | void> {
    this.#checkUsable(tokens.length, "verify");
    if (tokens.length > this.maxVerifyTokens) {
      throw new RangeError(
        `verify: ${tokens.length} tokens exceed one verify pass (${this.maxVerifyTokens})`,
      );
    }
    const n = tokens.length;
    const vocab = this.config.vocabSize;
    const s = this.#state;
    const batch = this.#batch();
    this.#encodeChunk(batch, tokens, want === "none" ? 0 : n, undefined, true);
    if (want === "argmax") this.#ops.argmax(batch, s.logits, s.next, n, vocab);
    batch.submit();
    if (want === "none") return;
    return want === "argmax"
      ? await this.gpu.readU32(s.next, 0, n)
      : await this.gpu.readF32(s.logits, 0, n * vocab);
  }

  /**
   * Runs `tokens` through the model after whatever is already in the KV cache, and returns the
   * logits of the last token (`"last"`, `[vocab]`), of every token (`"all"`,
   * `[tokens.length, vocab]`), or none.
   */
  async forward(tokens: readonly number[], logits: LogitsWanted = "last"): Promise<Float32Array> {
    this.#checkUsable(tokens.length, "forward");
    const vocab = this.config.vocabSize;
    const out = new Float32Array(
      logits === "all" ? tokens.length * vocab : logits === "last" ? vocab : 0,
    );
    for (const { start, tokens: piece, isLast, perRow } of this.#promptPieces(tokens)) {
      const headRows = logits === "all" ? piece.length : (logits === "last" && isLast ? 1 : 0);
      const batch = this.#batch();
      this.#encodeChunk(batch, piece, headRows, undefined, perRow);
      batch.submit();
      if (headRows > 0) {
        const rows = await this.gpu.readF32(this.#state.logits, 0, headRows * vocab);
        checkLogits(rows, headRows, vocab, `forward (tokens ${start}..)`, this.format);
        out.set(rows, logits === "all" ? start * vocab : 0);
      }
    }
    return out;
  }

  /**
   * Runs `tokens` from an empty cache and records the activations at every
   * {@linkcode TRACE_POINTS} of every layer, plus all logits. For per-layer error and outlier
   * statistics; slower than {@linkcode forward} (it copies and reads back every activation).
   */
  async trace(tokens: readonly number[]): Promise<Trace> {
    this.reset();
    this.#checkUsable(tokens.length, "trace");
    const c = this.config;
    const widths: Record<TracePoint, number> = {
      attn_in: c.hiddenSize,
      o_in: c.numHeads * c.headDim,
      mlp_in: c.hiddenSize,
      down_in: c.intermediateSize,
      block_out: c.hiddenSize,
    };
    const n = tokens.length;
    const layers = Array.from(
      { length: c.numLayers },
      () =>
        Object.fromEntries(TRACE_POINTS.map((p) => [p, new Float32Array(n * widths[p])])) as Record<
          TracePoint,
          Float32Array
        >,
    );
    const logits = new Float32Array(n * c.vocabSize);
    for (let start = 0; start < n; start += this.#state.rows) {
      const piece = tokens.slice(start, start + this.#state.rows);
      const rows = piece.length;
      const captures: { point: TracePoint; layer: number; tensor: GpuTensor }[] = [];
      const batch = new CommandBatch(this.gpu);
      try {
        this.#encodeChunk(batch, piece, rows, (point, layer, source, width) => {
          const tensor = this.gpu.tensor({
            label: `trace ${point} ${layer}`,
            category: "scratch",
            byteSize: rows * width * 4,
          });
          captures.push({ point, layer, tensor });
          batch.copy(source, 0, tensor, 0, rows * width * 4);
        });
        batch.submit();
        for (const { point, layer, tensor } of captures) {
          layers[layer][point].set(await this.gpu.readF32(tensor), start * widths[point]);
        }
        logits.set(
          await this.gpu.readF32(this.#state.logits, 0, rows * c.vocabSize),
          start * c.vocabSize,
        );
      } finally {
        for (const { tensor } of captures) tensor.destroy();
      }
    }
    return { tokens: n, layers, logits };
  }

  /**
   * Runs `tokens` (at most one chunk) after the cached ones with a GPU timestamp around every
   * kernel, and returns the time of each dispatch (wall clock of the whole chunk where the
   * adapter has no timestamp queries). With `verify`, the pass is {@linkcode verify}'s (at most
   * {@linkcode maxVerifyTokens} tokens, every row's logits and argmax). With `whole`, one entry:
   * the chunk's GPU time in one compute pass, as decoding runs it
   * ({@linkcode CommandBatch.submitTimed}); per-dispatch timestamps give every kernel a pass of
   * its own, whose fixed cost overstates a model of many small kernels.
   *
   * @example
   * ```ts ignore
   * const [{ ms }] = await model.timeForward([42], { whole: true }); // one decode step
   * ```
   */
  timeForward(
    tokens: readonly number[],
    options: { verify?: boolean; whole?: boolean } = {},
  ): Promise<DispatchTiming[]> {
    this.#checkUsable(tokens.length, "timeForward");
    const max = options.verify ? this.maxVerifyTokens : this.#state.rows;
    if (tokens.length > max) {
      throw new RangeError(`timeForward: ${tokens.length} tokens exceed one pass (${max})`);
    }
    const batch = this.#batch();
    if (options.verify) {
      // as verify(tokens, "argmax"): every row's logits and argmax
      this.#encodeChunk(batch, tokens, tokens.length, undefined, true);
      const s = this.#state;
      this.#ops.argmax(batch, s.logits, s.next, tokens.length, this.config.vocabSize);
    } else {
      this.#encodeChunk(batch, tokens, 1);
    }
    return batch.submitTimed({ whole: options.whole });
  }

  /**
   * Like {@linkcode forward} but returns only the argmax of the last token's logits, computed on
   * the GPU so that only four bytes come back.
   */
  async forwardGreedy(tokens: readonly number[]): Promise<number> {
    this.#checkUsable(tokens.length, "forwardGreedy");
    for (const { tokens: piece, isLast, perRow } of this.#promptPieces(tokens)) {
      const batch = this.#batch();
      this.#encodeChunk(batch, piece, isLast ? 1 : 0, undefined, perRow);
      if (isLast) {
        this.#ops.argmax(batch, this.#state.logits, this.#state.next, 1, this.config.vocabSize);
      }
      batch.submit();
    }
    const token = (await this.gpu.readU32(this.#state.next, 0, 1))[0];
    checkArgmaxToken(token, this.config.vocabSize, "forwardGreedy", this.format);
    return token;
  }

  /**
   * Greedy decoding with the next token kept on the GPU: runs `prompt` after the cached tokens,
   * then feeds each argmax back as the next input by a GPU copy, so no step waits for the CPU to
   * see a token. Tokens come back in groups of `inFlight` through a staging buffer, and while one
   * group is read back the next is already submitted; `onToken` gets them in order.
   *
   * Why groups: in Deno, `mapAsync` blocks until all work submitted so far has run and then
   * settles at least 10 ms later, so reading each token as it comes would leave the GPU idle for
   * that wait and for the encoding of the next step, every step. So the next group is recorded
   * before a group's map is asked for and submitted as soon as the call returns
   * ({@linkcode Gpu.holdSubmissions}): per group the GPU idles only for that submission.
   *
   * The tokens are exactly those of calling {@linkcode forwardGreedy} on the prompt and then on
   * each new token. Steps may run past a stop (`onToken` returning false) — up to two groups
   * less one, none with `inFlight` 1 — their tokens are discarded and the position is
   * set back, so afterwards {@linkcode position} is what the step-by-step loop leaves: the prompt
   * plus every delivered token but the last (cache entries past it are overwritten before they
   * are read).
   *
   * @example
   * ```ts ignore
   * const { tokens } = await model.decodeGreedy([1, 450], {
   *   maxNewTokens: 32,
   *   onToken: (t) => t !== eosId, // stop at end-of-sequence
   * });
   * ```
   */
  decodeGreedy(
    prompt: readonly number[],
    options: GreedyDecodeOptions,
  ): Promise<GreedyDecodeResult> {
    const s = this.#state;
    return this.#decodeOnGpu(prompt, options, "decodeGreedy", (batch) => {
      this.#ops.argmax(batch, s.logits, s.next, 1, this.config.vocabSize);
    });
  }

  /**
   * Decoding that samples, with each token drawn on the GPU and fed back there, pipelined as
   * {@linkcode decodeGreedy} is: no step waits for the CPU to see a token. Each token is drawn
   * from the distribution `createSampler` draws from (softmax of logits / temperature, cut to
   * the top k, then to the nucleus of mass topP), with one uniform per token from the seeded
   * generator `createSampler` uses; the kept tokens are walked in index order
   * (kernels/sample.wgsl), so the same seed gives the same tokens from run to run, but not
   * `createSampler`'s tokens when a cut is made.
   *
   * Why: sampling on the CPU reads every step's logits back, and in Deno each readback takes at
   * least ~10 ms.
   *
   * @example
   * ```ts ignore
   * const { tokens } = await model.decodeSampled([1, 450], {
   *   maxNewTokens: 32,
   *   sampling: { temperature: 0.8, topK: 40, topP: 0.95, seed: 1 },
   * });
   * ```
   */
  async decodeSampled(
    prompt: readonly number[],
    options: SampledDecodeOptions,
  ): Promise<GreedyDecodeResult> {
    createSampler(options.sampling); // the same checks, the same errors
    const { temperature = 1, topK = 0, topP = 1, seed = 0 } = options.sampling;
    if (temperature === 0 || topK === 1) return this.decodeGreedy(prompt, options);
    this.#checkUsable(prompt.length, "decodeSampled"); // before the kernel compiles
    const sampler = await createSampleKernel(this.gpu);
    const uniform = seededRandom(seed);
    const s = this.#state;
    const settings = { temperature, topK, topP };
    return this.#decodeOnGpu(prompt, options, "decodeSampled", (batch) => {
      sampler.encode(batch, s.logits, s.next, this.config.vocabSize, settings, uniform());
    });
  }

  /**
   * The pipelined decode loop of {@linkcode decodeGreedy} and {@linkcode decodeSampled}: `pick`
   * records the choice of each step's token from its logits into the state's `next` word.
   */
  async #decodeOnGpu(
    prompt: readonly number[],
    options: GreedyDecodeOptions,
    what: string,
    pick: (batch: CommandBatch) => void,
  ): Promise<GreedyDecodeResult> {
    this.#checkUsable(prompt.length, what);
    const maxNew = options.maxNewTokens;
    const asked = options.inFlight ?? defaultInFlight(this.gpu);
    const auto = asked === "auto";
    if (!auto && (!Number.isInteger(asked) || asked < 1)) {
      throw new RangeError(
        `${what}: inFlight must be a positive integer or "auto", got ${asked}`,
      );
    }
    const groupMs = options.autoGroupMs;
    if (groupMs !== undefined && !(groupMs > 0)) {
      throw new RangeError(`${what}: autoGroupMs must be above 0, got ${groupMs}`);
    }
    let group = auto ? AUTO_IN_FLIGHT.first : asked;
    const staged = auto ? AUTO_IN_FLIGHT.max : group; // slots per staging buffer
    const pipelined = auto || group > 1; // the next group submitted while one is read back
    const tokens: number[] = [];
    if (maxNew <= 0) return { tokens, stoppedBy: "max-tokens", overshoot: 0, groups: [] };
    const vocab = this.config.vocabSize;
    const device = this.gpu.device;
    const staging = [0, 1].map((i) => ({
      buffer: device.createBuffer({
        label: `decoded tokens ${i}`,
        size: staged * 4,
        usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
      }),
      id: this.gpu.ledger.record("staging", `decoded tokens ${i}`, staged * 4),
    }));
    const startPos = this.#pos;
    let submitted = 0;
    // Step 0 is the prompt; step i > 0 embeds the token step i - 1 left in `next`. Each step
    // copies its token into its slot of the group's staging buffer.
    let encodeMs = 0;
    let stepEncodeMs = 0; // of the steps after the prompt's
    const submitStep = (target: GPUBuffer, slot: number): void => {
      const t0 = performance.now();
      const first = submitted === 0;
      if (submitted === 0) {
        for (const { tokens: piece, isLast, perRow } of this.#promptPieces(prompt)) {
          const batch = this.#batch();
          this.#encodeChunk(batch, piece, isLast ? 1 : 0, undefined, perRow);
          if (isLast) this.#stepTail(batch, pick, target, slot);
          batch.submit();
        }
      } else {
        const batch = this.#batch();
        this.#encodeChunk(batch, "next", 1);
        this.#stepTail(batch, pick, target, slot);
        batch.submit();
      }
      submitted++;
      const ms = performance.now() - t0;
      encodeMs += ms;
      if (!first) stepEncodeMs += ms;
    };
    // Submits up to `group` steps into staging buffer g % 2; returns how many.
    const submitGroup = (g: number): number => {
      let count = 0;
      while (
        count < group && submitted < maxNew && (submitted === 0 || this.#pos < this.maxSeqLen)
      ) submitStep(staging[g % 2].buffer, count++);
      return count;
    };
    let stoppedBy: GreedyDecodeResult["stoppedBy"] | null = null;
    const groups: number[] = []; // the sizes of the groups read back
    try {
      let g = 0;
      let count = submitGroup(0);
      let lastRead = 0; // when the previous group's tokens arrived
      while (count > 0) {
        const { buffer } = staging[g % 2];
        // The next group needs nothing from the CPU: it is recorded now and submitted the moment
        // the map call returns (in Deno, once the queue has drained), while this group's tokens
        // are on their way.
        const held = pipelined ? this.gpu.holdSubmissions(() => submitGroup(g + 1)) : null;
        const next = held?.value ?? 0;
        const mapped = buffer.mapAsync(GPUMapMode.READ, 0, count * 4);
        if (held) {
          const t0 = performance.now();
          held.submit(); // the held steps' encoding happens here
          const ms = performance.now() - t0;
          encodeMs += ms;
          stepEncodeMs += ms;
        }
        await this.gpu.whileAlive(mapped, what);
        groups.push(count);
        const got = new Uint32Array(buffer.getMappedRange(0, count * 4)).slice();
        buffer.unmap();
        // "auto": a group's tokens arrive one group's work after the previous group's (the work
        // runs while the previous tokens are read), or at the ~10 ms floor; size later groups
        // from that. A group that came back near the floor carried less work than the wait, so
        // its pace is at most what it shows, and at least what recording a step costs the CPU:
        // that bound sizes the groups after group 0 (which holds the prompt) and after any
        // group that came back at the floor, so that small models reach large groups at once.
        const now = performance.now();
        if (auto) {
          const cpuMs = stepEncodeMs / Math.max(1, submitted - 1);
          group = autoInFlight(autoPace(now - lastRead, count, cpuMs, g === 0), groupMs);
        }
        lastRead = now;
        for (const token of got) {
          checkArgmaxToken(token, vocab, what, this.format);
          tokens.push(token);
          if (options.onToken?.(token, tokens.length - 1) === false) stoppedBy = "callback";
          else if (tokens.length === maxNew) stoppedBy = "max-tokens";
          if (stoppedBy !== null) break; // the rest of the group is overshoot
        }
        if (stoppedBy !== null) break;
        g++;
        count = pipelined ? next : submitGroup(g);
      }
    } finally {
      // Let every submitted step finish before its staging buffer is freed.
      const read = groups.reduce((a, b) => a + b, 0);
      if (submitted > read && !this.gpu.lost) await this.gpu.sync().catch(() => {});
      for (const { buffer, id } of staging) {
        buffer.destroy();
        this.gpu.ledger.release(id);
      }
      this.#pos = startPos + prompt.length + Math.max(0, tokens.length - 1);
    }
    return {
      tokens,
      stoppedBy: stoppedBy ?? "context",
      overshoot: submitted - tokens.length,
      groups,
      encodeMs,
    };
  }

  /** Frees every GPU buffer the model owns; the ledger drops by exactly what it added. */
  dispose(): void {
    if (this.#disposed) return;
    this.#disposed = true;
    this.#bindGroups.clear();
    this.#chainedBindGroups.clear();
    for (const layer of this.layers) {
      layer.attnNorm.destroy();
      layer.mlpNorm.destroy();
      for (const l of Object.values(layer.linears)) l.destroy();
      layer.stacks?.qkv?.destroy();
      layer.stacks?.gateUp?.destroy();
      for (const b of Object.values(layer.biases ?? {})) b.destroy();
      layer.qkNorm?.q.destroy();
      layer.qkNorm?.k.destroy();
    }
    this.lmHead.destroy();
    this.embed.destroy();
    this.norm.destroy();
    this.#fused?.destroy();
    this.#fused = null;
    destroyRunState(this.#state);
    this.#ops.destroy();
    this.gpu.trimScratch();
    // Buffers destroyed (and uploads not yet submitted) are only released at a submission.
    this.gpu.flush();
  }

  /**
   * A batch that reuses this model's bind groups (unless {@linkcode reuseBindGroups} is off),
   * from `cache` when given: one per kind of pass that repeats in turn with others.
   */
  #batch(cache = this.#bindGroups): CommandBatch {
    return new CommandBatch(this.gpu, this.reuseBindGroups ? { bindGroups: cache } : {});
  }

  #chainGroups(kind: string): BindGroupCache {
    let cache = this.#chainedBindGroups.get(kind);
    if (!cache) this.#chainedBindGroups.set(kind, cache = new BindGroupCache());
    return cache;
  }

  /** Chained passes: the model usable, and `rows` positions from `bound` inside the cache. */
  #checkChained(bound: number, rows: number, what: string): void {
    this.#checkAlive(what);
    if (!Number.isInteger(bound) || bound < 0 || bound + rows > this.maxSeqLen) {
      throw new RangeError(
        `${what}: ${rows} tokens from position ${bound} exceed the KV cache ` +
          `(${this.maxSeqLen} positions)`,
      );
    }
  }

  /** Appends the choice of the step's token (`pick`) and its copy into word `slot` of `staging`. */
  #stepTail(
    batch: CommandBatch,
    pick: (batch: CommandBatch) => void,
    staging: GPUBuffer,
    slot: number,
  ): void {
    pick(batch);
    batch.copyToBuffer(this.#state.next, 0, staging, slot * 4, 4);
  }

  /** Not disposed, and the device not lost (which refuses at once, not in a map that may never settle). */
  #checkAlive(what: string): void {
    if (this.#disposed) throw new Error(`${what}: this model has been disposed`);
    this.gpu.checkAlive(`${what} (${this.format} model)`);
  }

  #checkUsable(count: number, what = "forward"): void {
    this.#checkAlive(what);
    this.gpu.activity = `${what} of ${count} tokens at position ${this.#pos} ` +
      `(${this.format} model)`;
    if (count === 0) throw new Error("forward: no tokens given");
    if (this.#pos + count > this.maxSeqLen) {
      throw new Error(
        `forward: ${this.#pos} cached + ${count} new tokens exceed the KV cache ` +
          `(${this.maxSeqLen} positions); call reset() or load with a larger maxSeqLen`,
      );
    }
  }

  /**
   * Records one chunk: embeddings, every layer, and (for `headRows` last rows) the LM head.
   * `"next"` is one token: the argmax the previous greedy step left on the GPU.
   */
  #encodeChunk(
    batch: CommandBatch,
    tokens: readonly number[] | "next" | { first?: number; rows: number },
    headRows: number,
    capture?: CaptureHook,
    perRow = false,
    chained?: ChainedStart,
  ): void {
    const one = perRow ? PER_ROW : undefined;
    const same = perRow ? PER_ROW_SAME_INPUT : SAME_INPUT;
    const c = this.config;
    const s = this.#state;
    const ops = this.#ops;
    const rows = tokens === "next" ? 1 : "rows" in tokens ? tokens.rows : tokens.length;
    // Chained rounds: the start is `chained.offset` past the position word on the GPU.
    const pos = chained ? chained.offset : this.#pos;
    const at = { base: s.position, bound: chained ? chained.bound : pos };
    const windows = familyOf(c).windows;
    if (tokens === "next") {
      batch.copy(s.next, 0, s.ids, 0, 4);
    } else if ("rows" in tokens) {
      // verifyProposed: ids 1.. were written on the GPU by a draft; only the first comes from
      // here (chained rounds: none does)
      if (tokens.first !== undefined) {
        if (!Number.isInteger(tokens.first) || tokens.first < 0 || tokens.first >= c.vocabSize) {
          throw new RangeError(`token id ${tokens.first} is outside the vocabulary`);
        }
        s.ids.write(this.gpu.device, new Uint32Array([tokens.first]));
      }
    } else {
      for (const id of tokens) {
        if (!Number.isInteger(id) || id < 0 || id >= c.vocabSize) {
          throw new RangeError(`token id ${id} is outside the vocabulary (0..${c.vocabSize - 1})`);
        }
      }
      s.ids.write(this.gpu.device, new Uint32Array(tokens));
    }
    ops.embed(batch, s.ids, s.x, rows);
    // The residual add after down_proj waits for the next norm, which does both in one dispatch
    // (not while capturing: "block_out" is recorded right after the add).
    let pendingAdd = false;
    // One decode row without capture: a 4-bit product may add its output to the residual stream
    // itself (o_proj, down_proj: Linear.addsToOutput), and a stack that reads a norm's output may
    // fold that norm into its input read (LinearStack.foldsRmsNorm): no norm dispatch at all.
    const fuses = rows === 1 && !capture;
    // In decode and verify passes, the norm also writes the int8 codes of its output where the
    // next product is int8 (Linear.int8Input), which then skips its own quantization dispatch.
    const norm = (
      weight: Binding,
      next?: Linear | LinearStack,
      stack?: LinearStack,
    ): LinearEncodeOptions | undefined => {
      if (fuses && !pendingAdd && stack?.foldsRmsNorm?.(1)) {
        return { rmsNorm: { weight, eps: c.rmsNormEps } };
      }
      const q8 = pendingAdd && (rows === 1 || perRow)
        ? next?.int8Input?.(batch, s.xn, rows) ?? null
        : null;
      if (pendingAdd) ops.addRmsnorm(batch, s.x, s.proj, weight, s.xn, rows, q8 ?? undefined);
      else ops.rmsnorm(batch, s.x, weight, s.xn, rows);
      pendingAdd = false;
      return q8 ? (perRow ? PER_ROW_SAME_INPUT : { reuseInput: true }) : undefined;
    };
    // A stack serves one row, or the rows of a verify pass where it has a multi-row product.
    const stackFor = (stack?: LinearStack) =>
      rows === 1 || (perRow && stack?.takesRows?.(rows)) ? stack : undefined;
    const encodeStack = (
      stack: LinearStack,
      ys: GpuTensor[],
      options: LinearEncodeOptions | undefined,
    ) => {
      // a folded norm reads the residual stream itself
      if (rows === 1) stack.encodeRow(batch, options?.rmsNorm ? s.x : s.xn, ys, options);
      else stack.encodeRows!(batch, s.xn, ys, rows, options ?? one);
    };
    for (let l = 0; l < c.numLayers; l++) {
      const w = this.layers[l];
      const lin = w.linears;
      // attention
      const qkv = stackFor(w.stacks?.qkv);
      const attnIn = norm(w.attnNorm, qkv ?? lin["self_attn.q_proj"], qkv);
      capture?.("attn_in", l, s.xn, c.hiddenSize);
      if (qkv) {
        encodeStack(qkv, [s.q, s.k, s.v], attnIn);
      } else {
        // k_proj and v_proj read the same x as q_proj: formats that quantize x do it once.
        lin["self_attn.q_proj"].encode(batch, s.xn, s.q, rows, attnIn ?? one);
        lin["self_attn.k_proj"].encode(batch, s.xn, s.k, rows, same);
        lin["self_attn.v_proj"].encode(batch, s.xn, s.v, rows, same);
      }
      const bias = (kind: LinearName, out: GpuTensor, width: number) => {
        const b = w.biases?.[kind];
        if (b) ops.addBias(batch, out, b, rows * width, width);
      };
      bias("self_attn.q_proj", s.q, c.numHeads * c.headDim);
      bias("self_attn.k_proj", s.k, c.numKvHeads * c.headDim);
      bias("self_attn.v_proj", s.v, c.numKvHeads * c.headDim);
      if (w.qkNorm) {
        ops.headRmsnorm(batch, s.q, w.qkNorm.q, rows * c.numHeads);
        ops.headRmsnorm(batch, s.k, w.qkNorm.k, rows * c.numKvHeads);
      }
      ops.attention(
        batch,
        s.q,
        s.k,
        s.v,
        s.invFreq,
        s.keyCache[l],
        s.valueCache[l],
        s.att,
        pos,
        rows,
        windows[l],
        at,
      );
      capture?.("o_in", l, s.att, c.numHeads * c.headDim);
      const o = lin["self_attn.o_proj"];
      if (fuses && !w.biases?.["self_attn.o_proj"] && o.addsToOutput?.(1)) {
        o.encode(batch, s.att, s.x, rows, { addToOutput: true });
      } else {
        o.encode(batch, s.att, s.proj, rows, one);
        bias("self_attn.o_proj", s.proj, c.hiddenSize);
        pendingAdd = true;
      }
      // MLP
      const gateUp = stackFor(w.stacks?.gateUp);
      const mlpIn = norm(w.mlpNorm, gateUp ?? lin["mlp.gate_proj"], gateUp);
      capture?.("mlp_in", l, s.xn, c.hiddenSize);
      const down = lin["mlp.down_proj"];
      // an FP16 gate/up stack writing silu(gate) · up itself (no gate/up biases to add first)
      // (one decode row, or a verify pass's rows, each computed as that row alone)
      const swigluOut = (rows === 1 || perRow) && !capture && !w.biases?.["mlp.gate_proj"] &&
        !w.biases?.["mlp.up_proj"] && !down.fusesSwiglu?.(rows, perRow) &&
        gateUp?.fusesSwigluOut?.(rows) === true;
      if (gateUp) {
        encodeStack(gateUp, [s.gate, s.up], swigluOut ? { ...(mlpIn ?? one), swigluOut } : mlpIn);
      } else {
        lin["mlp.gate_proj"].encode(batch, s.xn, s.gate, rows, mlpIn ?? one);
        lin["mlp.up_proj"].encode(batch, s.xn, s.up, rows, same);
      }
      bias("mlp.gate_proj", s.gate, c.intermediateSize);
      bias("mlp.up_proj", s.up, c.intermediateSize);
      // down_proj adding to the residual stream itself (no bias to add first)
      const addsDown = fuses && !w.biases?.["mlp.down_proj"] && down.addsToOutput?.(1);
      const downOut = addsDown ? s.x : s.proj;
      const add = addsDown ? { addToOutput: true } : {};
      if (swigluOut) {
        down.encode(batch, s.gate, downOut, rows, { ...one, ...add });
      } else if (!capture && down.fusesSwiglu?.(rows, perRow)) {
        // down_proj reads silu(gate) · up itself: one dispatch less
        down.encode(batch, s.gate, downOut, rows, { ...one, ...add, swigluUp: s.up });
      } else {
        ops.swiglu(batch, s.gate, s.up, rows * c.intermediateSize);
        capture?.("down_in", l, s.gate, c.intermediateSize);
        down.encode(batch, s.gate, downOut, rows, { ...one, ...add });
      }
      if (!addsDown) {
        bias("mlp.down_proj", s.proj, c.hiddenSize);
        pendingAdd = true;
      }
      if (capture) {
        ops.add(batch, s.x, s.proj, rows * c.hiddenSize);
        pendingAdd = false;
        capture("block_out", l, s.x, c.hiddenSize);
      }
    }
    if (!chained) this.#pos += rows;
    if (headRows === 0) {
      if (pendingAdd) ops.add(batch, s.x, s.proj, rows * c.hiddenSize);
      return;
    }
    const headIn = norm(this.norm, headRows === rows ? this.lmHead : undefined);
    const first = rows - headRows;
    const rowBytes = c.hiddenSize * 4;
    const input: Binding = first === 0
      ? s.xn
      : { tensor: s.xn, offset: first * rowBytes, size: headRows * rowBytes };
    this.lmHead.encode(batch, input, s.logits, headRows, headIn ?? one);
  }
}
