/**
 * The comparison at the heart of the project: one model, several weight formats, one run. For
 * each format it loads the model (quantizing as the weights stream in), then measures what the
 * format costs — weight, static and peak memory from the ledger, prefill and decode speed, GPU
 * time per kernel family — and what it loses against FP16: perplexity, KL divergence and top-1
 * agreement on the same tokens, per-layer error on the same inputs, and a sample continuation.
 *
 * @module
 */

import type { Gpu } from "../gpu/device.ts";
import type { KvCacheFormat } from "../kernels/kv_cache.ts";
import type { MemoryCategory } from "../gpu/ledger.ts";
import type { QuantLinearFactoryOptions } from "../kernels/quant_linear.ts";
import { generate } from "../model/generate.ts";
import { LlamaModel, type Trace } from "../model/llama.ts";
import type { Tokenizer } from "../model/tokenizer.ts";
import { FORMAT_INFO, type QuantFormat } from "../quant/formats.ts";
import { klDivergence } from "./divergence.ts";
import { argmax } from "../model/sampling.ts";
import {
  type BlockError,
  blockErrors,
  type LinearError,
  linearErrors,
  linearOutputs,
} from "./layer_error.ts";
import { type LayerOutliers, outlierStatistics } from "./outliers.ts";
import { type LogitsModel, perplexity } from "./perplexity.ts";

/** Options for {@linkcode compareFormats}. */
export interface CompareOptions {
  /** The model directory. */
  modelDir: string;
  /** Its tokenizer. */
  tokenizer: Tokenizer;
  /** The device. */
  gpu: Gpu;
  /** Formats to compare; FP16 is always run first, as the reference. */
  formats: QuantFormat[];
  /**
   * KV cache formats, swept like weight formats: every weight format runs with each (default
   * `["f16"]`). FP16 weights with an f16 cache always run first, as the reference.
   */
  kvCaches?: KvCacheFormat[];
  /** Options of the formats (block size, LLM.int8() threshold). */
  quant?: QuantLinearFactoryOptions;
  /** Held-out text for perplexity, KL and top-1 agreement. */
  text: string;
  /** Most tokens of `text` to score (default 512). */
  maxTokens?: number;
  /** Perplexity window (default 256). */
  context?: number;
  /** Perplexity stride (default context / 2). */
  stride?: number;
  /** Tokens traced for per-layer error and outliers (default 64). */
  traceTokens?: number;
  /** Prompt of the sample continuation. */
  prompt?: string;
  /** Tokens of the sample continuation (default 24). */
  sampleTokens?: number;
  /**
   * Timed repeats for speed (default 3): after the sample continuation (which warms up every
   * kernel), decode speed is the median of this many greedy runs of {@linkcode timingTokens}
   * tokens, and the GPU time per kernel family the median of as many timed forwards after one
   * untimed.
   */
  timingRepeats?: number;
  /** Tokens decoded in each timed run (default 16). */
  timingTokens?: number;
  /** Tokens of the timed forward behind the GPU time per kernel family (default: one chunk of
   * the traced tokens). */
  kernelTimingTokens?: number;
  /** KV cache length (default: context, or the prompt plus the sample). */
  maxSeqLen?: number;
  /** GPU memory budget in bytes: layers beyond it are streamed (`LoadOptions.vramBudget`). */
  vramBudget?: number;
  /**
   * Other files of the same model, each run as one more row in its stored format: a GGUF file
   * (`model-Q4_K_M.gguf`), a bitsandbytes checkpoint, or one written by `quantize`.
   */
  checkpoints?: string[];
  /** Progress: `stage` names what runs now (`format` is the weight format, or `format +kv F`). */
  onProgress?: (format: string, stage: string) => void;
}

/** What one format costs and loses. */
export interface FormatResult {
  /** The format (of a checkpoint row: the one most of its layers load as). */
  format: QuantFormat;
  /** The model's vocabulary size. */
  vocabSize: number;
  /** A checkpoint row: the file or directory it was loaded from. */
  checkpoint?: string;
  /** The KV cache format. */
  kvCache: KvCacheFormat;
  /** Short label. */
  label: string;
  /** Bits per parameter of the decoder's linear layers, from the ledger. */
  bitsPerParameter: number;
  /** Ledger bytes of all weights. */
  weightBytes: number;
  /** Ledger bytes of the decoder's linear layers. */
  linearBytes: number;
  /** Ledger total after loading. */
  staticBytes: number;
  /** Ledger peak while scoring and generating. */
  peakBytes: number;
  /** Ledger bytes per category at the peak. */
  atPeak: Record<MemoryCategory, number>;
  /** Sliding-window perplexity of the text. */
  perplexity: number;
  /** Tokens scored. */
  scoredTokens: number;
  /** Mean KL(FP16 ‖ format) over the scored tokens (0 for FP16 with an f16 cache). */
  klMean: number;
  /** Fraction of scored tokens whose most likely next token agrees with FP16's. */
  top1Agreement: number;
  /** Prompt tokens per second: the median of the timed runs. */
  prefillTokensPerSecond: number;
  /** Generated tokens per second: the median of the timed runs, after a warm-up. */
  decodeTokensPerSecond: number;
  /** Generated tokens per second of each timed run, in order. */
  decodeTokensPerSecondRuns: number[];
  /**
   * GPU milliseconds per kernel family over one prefill chunk of the trace tokens: the median of
   * the timed forwards, after an untimed one.
   */
  kernelMs: Record<string, number>;
  /**
   * Mean per-token difference of −log p from FP16's over the scored tokens (nats; 0 for FP16):
   * `exp` of it is the perplexity ratio.
   */
  nllDelta: number;
  /**
   * Standard error of {@linkcode nllDelta} (paired over the same tokens): a perplexity difference
   * smaller than twice this is within the noise of so few tokens.
   */
  nllDeltaStdErr: number;
  /** Standard error of {@linkcode klMean} over the scored tokens. */
  klStdErr: number;
  /** The sample continuation. */
  sample: string;
  /** Per linear layer: error against FP16 on FP16's inputs (empty for FP16). */
  linearErrors: LinearError[];
  /** Per block: drift of the residual stream against FP16 (zeros for FP16). */
  blockErrors: BlockError[];
}

/** The result of {@linkcode compareFormats}. */
export interface Comparison {
  /** The adapter, as {@linkcode Gpu.describe} says. */
  adapter: string;
  /** Whether it is a software adapter (speeds are then a CPU's, and noisy). */
  software: boolean;
  /** Timed runs behind each speed (see {@linkcode CompareOptions.timingRepeats}). */
  timingRepeats: number;
  /** The model directory. */
  modelDir: string;
  /** Parameters of the decoder's linear layers. */
  linearParameters: number;
  /** Tokens of the text scored. */
  tokens: number;
  /** Window and stride of the perplexity. */
  context: number;
  /** Stride of the perplexity. */
  stride: number;
  /** The prompt of the samples. */
  prompt: string;
  /** One result per format, FP16 first. */
  results: FormatResult[];
  /** Outlier statistics of the FP16 model's linear-layer inputs. */
  outliers: LayerOutliers[];
  /** The FP16 trace behind the outlier statistics (for plots). */
  trace: Trace;
}

/**
 * A result's name in tables and plots: its weight format (a checkpoint row: its label), plus
 * `+kv FORMAT` for a quantized KV cache.
 *
 * @example
 * ```ts ignore
 * resultName(comparison.results[1]); // "nf4" or "fp16 +kv int8"
 * ```
 */
export function resultName(
  r: Pick<FormatResult, "format" | "kvCache" | "label" | "checkpoint">,
): string {
  const name = r.checkpoint ? r.label : r.format;
  return r.kvCache === "f16" ? name : `${name} +kv ${r.kvCache}`;
}

function linearWeightBytes(model: LlamaModel): number {
  let bytes = 0;
  for (const layer of model.layers) {
    for (const l of Object.values(layer.linears)) bytes += l.weightBytes;
  }
  return bytes;
}

/**
 * Runs every format over the same text, FP16 first, and reports each one's costs and losses.
 *
 * @example
 * ```ts ignore
 * const comparison = await compareFormats({
 *   modelDir: "models/sotu-llama", tokenizer, gpu, formats: ["llm-int8", "nf4-dq"],
 *   text: await Deno.readTextFile("models/sotu-llama/eval/sotu-heldout.txt"),
 * });
 * ```
 */
export async function compareFormats(options: CompareOptions): Promise<Comparison> {
  const { gpu, tokenizer } = options;
  const formats: QuantFormat[] = ["fp16", ...options.formats.filter((f) => f !== "fp16")];
  const kvCaches: KvCacheFormat[] = ["f16", ...(options.kvCaches ?? []).filter((k) => k !== "f16")];
  const context = options.context ?? 256;
  const stride = options.stride ?? Math.floor(context / 2);
  const tokens = tokenizer.encode(options.text).slice(0, options.maxTokens ?? 512);
  if (tokens.length < 2) throw new Error("compare: the text is too short to score");
  const traceTokens = tokens.slice(0, Math.min(options.traceTokens ?? 64, tokens.length));
  const prompt = options.prompt ?? "The state of the Union is";
  const sampleTokens = options.sampleTokens ?? 24;
  const timingRepeats = Math.max(1, options.timingRepeats ?? 3);
  const timingTokens = Math.max(1, options.timingTokens ?? 16);
  const promptLength = tokenizer.encode(prompt).length;
  const maxSeqLen = options.maxSeqLen ??
    Math.max(context, traceTokens.length, promptLength + Math.max(sampleTokens, timingTokens));

  const results: FormatResult[] = [];
  let referenceRows: Float32Array | null = null;
  let referenceNll: number[] = [];
  let referenceTrace: Trace | null = null;
  let referenceOutputs = new Map<string, Float32Array>();
  const runs: { format?: QuantFormat; path: string; kvCache: KvCacheFormat }[] = [
    ...formats.map((format) => ({ format, path: options.modelDir })),
    ...(options.checkpoints ?? []).map((path) => ({ path })),
  ].flatMap((run) => kvCaches.map((kvCache) => ({ ...run, kvCache })));
  for (const run of runs) {
    gpu.ledger.resetPeak();
    const model = await LlamaModel.load(run.path, {
      gpu,
      format: run.format,
      quant: run.format ? options.quant : undefined,
      kvCache: run.kvCache,
      maxSeqLen,
      vramBudget: run.format ? options.vramBudget : undefined,
    });
    const format = model.format;
    const name = resultName({ format, kvCache: run.kvCache, label: run.path });
    const progress = (stage: string) => options.onProgress?.(name, stage);
    progress("loaded");
    try {
      if (results.length > 0 && model.config.vocabSize !== results[0].vocabSize) {
        throw new Error(
          `compare: ${run.path} has a vocabulary of ${model.config.vocabSize}, the model ` +
            `${results[0].vocabSize}: not the same model`,
        );
      }
      const staticBytes = gpu.ledger.currentBytes;
      const weightBytes = gpu.ledger.bytesIn("weights");
      const vocab = model.config.vocabSize;

      progress("perplexity");
      const rows: Float32Array[] = [];
      const nll: number[] = [];
      const scorer: LogitsModel = {
        vocabSize: vocab,
        logits: (window) => {
          model.reset();
          return model.forward(window, "all");
        },
      };
      const ppl = await perplexity(scorer, tokens, {
        context,
        stride,
        onTokenNll: (_pos, value, row) => {
          rows.push(row.slice());
          nll.push(value);
        },
      });
      const scored = new Float32Array(rows.length * vocab);
      rows.forEach((r, i) => scored.set(r, i * vocab));
      let kl = { mean: 0, stdErr: 0 };
      let nllDelta = { mean: 0, stdErr: 0 };
      let top1 = 1;
      if (referenceRows) {
        const kls: number[] = [];
        let agree = 0;
        for (let i = 0; i < rows.length; i++) {
          const ref = referenceRows.subarray(i * vocab, (i + 1) * vocab);
          kls.push(klDivergence(ref, rows[i]));
          if (argmax(ref) === argmax(rows[i])) agree++;
        }
        kl = meanAndStdErr(kls);
        nllDelta = meanAndStdErr(nll.map((v, i) => v - referenceNll[i]));
        top1 = agree / rows.length;
      } else {
        referenceRows = scored;
        referenceNll = nll;
      }

      progress("generating");
      const gen = await generate(model, tokenizer, prompt, {
        maxNewTokens: sampleTokens,
        ignoreEos: true,
      });
      const peakBytes = gpu.ledger.peakBytes;
      const atPeak = gpu.ledger.snapshot().atPeak;

      progress("timing");
      // The sample above ran every kernel once: these runs are warm.
      const decodeRuns: number[] = [];
      const prefillRuns: number[] = [];
      for (let r = 0; r < timingRepeats; r++) {
        const run = await generate(model, tokenizer, prompt, {
          maxNewTokens: timingTokens,
          ignoreEos: true,
        });
        decodeRuns.push(run.decodeTokensPerSecond);
        prefillRuns.push(run.prefillTokensPerSecond);
      }
      const chunk = traceTokens.slice(
        0,
        Math.min(model.chunkSize, options.kernelTimingTokens ?? model.chunkSize),
      );
      model.reset();
      await model.timeForward(chunk); // untimed warm-up
      const familyRuns: Record<string, number[]> = {};
      for (let r = 0; r < timingRepeats; r++) {
        model.reset();
        const sums: Record<string, number> = {};
        for (const t of await model.timeForward(chunk)) {
          const family = t.kernel.split(":")[0];
          sums[family] = (sums[family] ?? 0) + t.ms;
        }
        for (const [family, ms] of Object.entries(sums)) (familyRuns[family] ??= []).push(ms);
      }
      const kernelMs = Object.fromEntries(
        Object.entries(familyRuns).map(([family, runs]) => [family, median(runs)]),
      );

      progress("per-layer error");
      model.reset();
      const trace = await model.trace(traceTokens);
      let layerErrs: LinearError[] = [];
      let blockErrs: BlockError[];
      if (referenceTrace) {
        // (FP16 weights with another cache: the linear layers are FP16's, their error is 0.)
        if (format !== "fp16") {
          layerErrs = await linearErrors(model, referenceTrace, referenceOutputs);
        }
        blockErrs = blockErrors(trace, referenceTrace);
      } else {
        referenceTrace = trace;
        referenceOutputs = await linearOutputs(model, trace);
        blockErrs = blockErrors(trace, trace);
      }

      const linearBytes = linearWeightBytes(model);
      const linearParams = model.layers.reduce(
        (sum, l) =>
          sum + Object.values(l.linears).reduce((s, x) => s + x.inFeatures * x.outFeatures, 0),
        0,
      );
      results.push({
        format,
        label: (run.format ? FORMAT_INFO[format].label : checkpointLabel(run.path, format)) +
          (run.kvCache === "f16" ? "" : `, ${run.kvCache} KV cache`),
        kvCache: run.kvCache,
        vocabSize: model.config.vocabSize,
        ...(run.format ? {} : { checkpoint: run.path }),
        bitsPerParameter: (8 * linearBytes) / linearParams,
        weightBytes,
        linearBytes,
        staticBytes,
        peakBytes,
        atPeak,
        perplexity: ppl.perplexity,
        scoredTokens: ppl.scoredTokens,
        klMean: kl.mean,
        klStdErr: kl.stdErr,
        nllDelta: nllDelta.mean,
        nllDeltaStdErr: nllDelta.stdErr,
        top1Agreement: top1,
        prefillTokensPerSecond: median(prefillRuns),
        decodeTokensPerSecond: median(decodeRuns),
        decodeTokensPerSecondRuns: decodeRuns,
        kernelMs,
        sample: gen.text,
        linearErrors: layerErrs,
        blockErrors: blockErrs,
      });
    } finally {
      model.dispose();
    }
  }
  const fp16 = results[0];
  return {
    adapter: gpu.describe(),
    software: gpu.isSoftware,
    timingRepeats,
    modelDir: options.modelDir,
    linearParameters: Math.round((8 * fp16.linearBytes) / fp16.bitsPerParameter),
    tokens: tokens.length,
    context,
    stride,
    prompt,
    results,
    outliers: outlierStatistics(referenceTrace!, options.quant?.threshold),
    trace: referenceTrace!,
  };
}

/** A checkpoint row's label: its file or directory name and the format it loads as. */
function checkpointLabel(path: string, format: QuantFormat): string {
  const name = path.replace(/[\\/]+$/, "").split(/[\\/]/).pop() ?? path;
  return `${name} (${FORMAT_INFO[format].label})`;
}

/** The median (the mean of the middle two for an even count); NaN for none. */
function median(values: number[]): number {
  if (values.length === 0) return NaN;
  const s = [...values].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
}

/** Mean and standard error of the mean. */
function meanAndStdErr(values: number[]): { mean: number; stdErr: number } {
  const n = values.length;
  if (n === 0) return { mean: NaN, stdErr: NaN };
  const mean = values.reduce((a, b) => a + b, 0) / n;
  if (n < 2) return { mean, stdErr: NaN };
  const variance = values.reduce((a, v) => a + (v - mean) ** 2, 0) / (n - 1);
  return { mean, stdErr: Math.sqrt(variance / n) };
}
