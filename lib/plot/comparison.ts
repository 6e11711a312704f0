/**
 * Tables and figures of a format comparison: what `demo` and `compare` print and put in their
 * HTML report, and what the showdown notebook displays.
 *
 * @module
 */

import { type Comparison, type FormatResult, resultName } from "../eval/compare.ts";
import type { MemoryEstimate } from "../eval/memory.ts";
import type { BlockSizeSweepPoint, ThresholdSweepPoint } from "../eval/sweeps.ts";
import { LINEAR_NAMES } from "../model/llama.ts";
import { blockSizeSweepFigure } from "./block_size_sweep.ts";
import type { Figure } from "./figure.ts";
import { barFigure, lineFigure } from "./generic.ts";
import { layerErrorGridsFigure, layerErrorHeatmapFigure } from "./heatmap.ts";
import { memoryBarsFigure } from "./memory.ts";
import { outlierHistogramFigure } from "./outliers.ts";
import { qualityVsBitsFigure } from "./quality.ts";
import type { Report, ReportSection } from "./report.ts";
import type { Table } from "./table.ts";
import { thresholdSweepFigure } from "./threshold_sweep.ts";
import { formatBytes } from "./units.ts";

/**
 * The summary table: one row per format. A perplexity marked "≈" differs from FP16's by less than
 * twice the standard error of the paired per-token difference: within the noise of so few tokens.
 * {@linkcode comparisonLegend} says what each column means.
 *
 * @example
 * ```ts ignore
 * console.log(tableText(comparisonTable(comparison)));
 * ```
 */
export function comparisonTable(comparison: Comparison): Table {
  return {
    columns: [
      "format",
      "bits/param",
      "weights",
      "peak memory",
      "perplexity",
      "KL (nats)",
      "top-1 agree",
      "decode tok/s",
    ],
    rows: comparison.results.map((r) => [
      resultName(r),
      Number(r.bitsPerParameter.toFixed(3)),
      formatBytes(r.weightBytes),
      formatBytes(r.peakBytes),
      r !== comparison.results[0] && withinNoise(r)
        ? `${r.perplexity.toFixed(2)} ≈`
        : Number(r.perplexity.toFixed(2)),
      // One notation for every row: 3.63e-4, never 0.00424 beside 7.01e-4.
      r === comparison.results[0] ? "0" : r.klMean.toExponential(2),
      `${(r.top1Agreement * 100).toFixed(1)}%`,
      Number(r.decodeTokensPerSecond.toFixed(1)),
    ]),
  };
}

/** Whether a format's perplexity is within twice the paired standard error of FP16's. */
function withinNoise(r: FormatResult): boolean {
  return Number.isFinite(r.nllDeltaStdErr) && Math.abs(r.nllDelta) < 2 * r.nllDeltaStdErr;
}

/**
 * What the columns of {@linkcode comparisonTable} mean, for this comparison: lines to print
 * under it (the demo does) or to put beside it.
 *
 * @example
 * ```ts ignore
 * console.log(comparisonLegend(comparison).join("\n"));
 * ```
 */
export function comparisonLegend(comparison: Comparison): string[] {
  const scored = comparison.results[0]?.scoredTokens ?? 0;
  const noisy = comparison.results.slice(1).filter(withinNoise);
  return [
    `Scored: ${scored} tokens of held-out text (${comparison.tokens} tokenized; window ` +
    `${comparison.context}, stride ${comparison.stride}), the same tokens for every format.`,
    "bits/param: bits stored per weight of the decoder's linear layers, scales and outlier " +
    "columns included (from the ledger); embeddings and norms stay FP16 and are not counted.",
    "perplexity: exp of the mean −log p of the next token; ≈ marks a difference from FP16 " +
    "smaller than twice its standard error over these tokens, i.e. within noise" +
    (noisy.length ? ` (${noisy.map(resultName).join(", ")}).` : "."),
    "KL (nats): mean over the scored tokens of KL(FP16 ‖ format), how far the format's " +
    "next-token distribution is from FP16's; 0 for FP16 itself.",
    "top-1 agree: share of the scored tokens where the format's most likely next token is FP16's.",
    `decode tok/s: ${runs(comparison.timingRepeats, "greedy run")} after a warm-up` +
    (comparison.software
      ? "; on this software adapter it measures a CPU, and differences are noise."
      : ", wall clock (CPU encoding included)."),
  ];
}

/**
 * Memory per format, stacked by ledger category, at the peak of the run.
 *
 * @example
 * ```ts ignore
 * display(comparisonMemoryFigure(comparison, 8e9));
 * ```
 */
export function comparisonMemoryFigure(comparison: Comparison, budgetBytes?: number): Figure {
  return memoryBarsFigure(
    comparison.results.map((r) => ({
      format: resultName(r),
      weights: r.atPeak.weights,
      activations: r.atPeak.activations,
      kvCache: r.atPeak["kv-cache"],
      scratch: r.atPeak.scratch + r.atPeak.staging,
    })),
    { title: "GPU memory at the peak (ledger)", budgetBytes },
  );
}

/**
 * Perplexity and KL against bits per parameter, every format of the run, with the frontier.
 *
 * @example
 * ```ts ignore
 * await show(comparisonQualityFigure(comparison));
 * ```
 */
export function comparisonQualityFigure(comparison: Comparison): Figure {
  return qualityVsBitsFigure(
    comparison.results.map((r) => ({
      format: resultName(r),
      bitsPerParam: r.bitsPerParameter,
      perplexity: r.perplexity,
      kl: r === comparison.results[0] ? undefined : r.klMean,
    })),
    `Quality against bits per parameter (${comparison.results[0]?.scoredTokens ?? 0} tokens)`,
  );
}

const SHORT = (name: string) => name.split(".")[1];

function linearGrid(result: FormatResult, range?: [number, number]) {
  const layers = result.blockErrors.length;
  return {
    rows: Array.from({ length: layers }, (_, i) => `layer ${i}`),
    columns: LINEAR_NAMES.map(SHORT),
    values: Array.from(
      { length: layers },
      (_, layer) =>
        LINEAR_NAMES.map((linear) =>
          result.linearErrors.find((e) => e.layer === layer && e.linear === linear)
            ?.relativeError ?? NaN
        ),
    ),
    metric: "relative error",
    format: resultName(result),
    range,
  };
}

/**
 * Per-layer relative error of one format's linear layers, each fed FP16's own inputs (the drift
 * of the block outputs is {@linkcode blockDriftFigure}). Pass `range` to share a colour scale
 * with other formats' figures, or use {@linkcode layerErrorsFigure}.
 *
 * @example
 * ```ts ignore
 * await show(layerErrorFigure(comparison.results[2]));
 * ```
 */
export function layerErrorFigure(result: FormatResult, range?: [number, number]): Figure {
  return layerErrorHeatmapFigure(linearGrid(result, range));
}

/**
 * The per-layer error of several formats' linear layers as small multiples with one colour
 * scale: the same colour is the same error in every panel.
 *
 * @example
 * ```ts ignore
 * await show(layerErrorsFigure(comparison.results.slice(1)));
 * ```
 */
export function layerErrorsFigure(results: FormatResult[]): Figure {
  return layerErrorGridsFigure(
    results.map((r) => linearGrid(r)),
    "Relative error of each linear layer on FP16's inputs (one colour scale)",
  );
}

/**
 * How far each block's output drifts from FP16's when the quantized model runs end to end
 * (errors compounding through the layers), one line per format, in %.
 *
 * @example
 * ```ts ignore
 * await show(blockDriftFigure(comparison.results.slice(1)));
 * ```
 */
export function blockDriftFigure(results: FormatResult[]): Figure {
  return lineFigure(
    results.map((r) => ({
      name: resultName(r),
      x: r.blockErrors.map((_, i) => i),
      y: r.blockErrors.map((e) => 100 * e.relativeError),
    })),
    {
      title: "Drift of each block's output from FP16's, end to end",
      xTitle: "layer (block)",
      yTitle: "relative error of the block output (%)",
    },
  );
}

/**
 * Histograms of |x| at the attention input as small multiples of a few layers (the first, the
 * last, and the two with the largest values), with the LLM.int8() threshold.
 *
 * @example
 * ```ts ignore
 * await show(outlierFigure(comparison));
 * ```
 */
export function outlierFigure(comparison: Comparison, threshold = 6): Figure {
  const layers = comparison.trace.layers;
  const peak = layers.map((layer, i) => {
    let max = 0;
    for (const v of layer.attn_in) max = Math.max(max, Math.abs(v));
    return { i, max };
  });
  const chosen = [
    ...new Set([
      0,
      ...[...peak].sort((a, b) => b.max - a.max).slice(0, 2).map((p) => p.i),
      layers.length - 1,
    ]),
  ].sort((a, b) => a - b);
  return outlierHistogramFigure(
    chosen.map((i) => ({ name: `layer ${i}`, magnitudes: layers[i].attn_in })),
    threshold,
    { title: "Activation magnitudes at the attention input (FP16), selected layers" },
  );
}

/** "the median of 3 runs" ("one run" for one). */
function runs(n: number, what: string): string {
  return n === 1 ? `one ${what}` : `the median of ${n} ${what}s`;
}

/** "the median of 3 runs after a warm-up", and where it ran. */
function timingNote(comparison: Comparison): string {
  return `${runs(comparison.timingRepeats, "run")} after a warm-up, ` +
    (comparison.software ? "software adapter: noise, not a GPU measurement" : comparison.adapter);
}

/**
 * Decode speed per format: the median of the timed runs after a warm-up, and where it ran.
 *
 * @example
 * ```ts ignore
 * await show(speedFigure(comparison));
 * ```
 */
export function speedFigure(comparison: Comparison): Figure {
  return barFigure(
    comparison.results.map(resultName),
    [{ name: "decode tokens/s", values: comparison.results.map((r) => r.decodeTokensPerSecond) }],
    {
      title: `Decode speed<br><sub>${timingNote(comparison)}</sub>`,
      valueTitle: "decode tokens/s (higher is faster)",
    },
  );
}

/**
 * GPU time of one prefill chunk per format, stacked by kernel family (matmul, attention, ...):
 * where each format spends its time (medians after a warm-up).
 *
 * @example
 * ```ts ignore
 * await show(kernelTimeFigure(comparison));
 * ```
 */
export function kernelTimeFigure(comparison: Comparison): Figure {
  const families = [...new Set(comparison.results.flatMap((r) => Object.keys(r.kernelMs)))];
  return barFigure(
    comparison.results.map(resultName),
    families.map((family) => ({
      name: family,
      values: comparison.results.map((r) => r.kernelMs[family] ?? 0),
    })),
    {
      title: `GPU time per kernel family, one prefill chunk<br><sub>${
        timingNote(comparison)
      }</sub>`,
      valueTitle: "milliseconds",
      stacked: true,
    },
  );
}

/** Extra material for {@linkcode comparisonReport}. */
export interface ReportExtras {
  /** LLM.int8() threshold sweep. */
  thresholdSweep?: ThresholdSweepPoint[];
  /** NF4 block-size sweep. */
  blockSizeSweep?: BlockSizeSweepPoint[];
  /** A memory budget line for the memory figure, in bytes. */
  budgetBytes?: number;
  /** Memory estimates for larger models (rows of a table). */
  estimates?: { model: string; estimate: MemoryEstimate; fits: Record<string, boolean> }[];
}

/**
 * The standalone HTML report of a comparison.
 *
 * @example
 * ```ts ignore
 * await writeReport("qlab-report.html", comparisonReport(comparison, { thresholdSweep }));
 * ```
 */
export function comparisonReport(comparison: Comparison, extras: ReportExtras = {}): Report {
  const quantized = comparison.results.slice(1);
  const sections: ReportSection[] = [
    {
      heading: "Summary",
      text: `${comparison.modelDir} on ${comparison.adapter}. ` +
        comparisonLegend(comparison).join(" ") +
        " How to read it: KL is the sharp instrument — it compares whole next-token " +
        "distributions at every position, so it separates formats that perplexity over a few " +
        "hundred tokens cannot. Compare bits/param with KL to see what each saved byte costs.",
      table: comparisonTable(comparison),
    },
    {
      heading: "Memory",
      text: "Each bar is the ledger's bytes at the format's busiest moment, stacked by category. " +
        "Only the weights shrink with the format; on a small model the KV cache, activations and " +
        "read-back buffers are a large fixed share, on a 7B model the weights are nearly all.",
      figures: [comparisonMemoryFigure(comparison, extras.budgetBytes)],
    },
    {
      heading: "Quality against size",
      text: "Lower and further left is better: perplexity (top) and KL from FP16 (bottom, log " +
        "scale) against the bits each format stores per weight. The dotted frontier joins the " +
        "formats that no other beats with as few bits; a format above it is dominated.",
      figures: [comparisonQualityFigure(comparison)],
    },
    {
      heading: "Per-layer error",
      text: "Each linear layer was fed FP16's own inputs and its output compared with FP16's; " +
        "all panels share one colour scale, so the same colour is the same error. The line " +
        "plot is different: the drift of each block's output when the quantized model runs " +
        "end to end, errors compounding through the layers.",
      figures: quantized.length ? [layerErrorsFigure(quantized), blockDriftFigure(quantized)] : [],
    },
    {
      heading: "Outliers",
      text: "Magnitudes |x| at the attention input of a few layers, counts on a log scale. " +
        "LLM.int8() multiplies in FP16 every hidden dimension where some |x| ≥ 6 (the dashed " +
        "line); the rest of the values, near 1, keep int8's precision because those few no " +
        "longer set the scale.",
      figures: [outlierFigure(comparison)],
    },
  ];
  if (extras.thresholdSweep) {
    sections.push({
      heading: "LLM.int8() threshold",
      text: "As the threshold τ drops, more columns stay in FP16 (bars, right axis) and the " +
        "layers' output error falls (line, left axis); τ = ∞ is vector-wise INT8 with no " +
        "decomposition. bitsandbytes' default τ = 6 keeps well under 1% of the columns.",
      figures: [thresholdSweepFigure(extras.thresholdSweep, "relative error vs FP16")],
    });
  }
  if (extras.blockSizeSweep) {
    sections.push({
      heading: "NF4 block size",
      text: "Smaller blocks mean more absmax scales: more bits per weight, less error. Double " +
        "quantization stores those scales in 8 bits, moving each point left at almost no cost " +
        "in error.",
      figures: [blockSizeSweepFigure(extras.blockSizeSweep, "relative weight error")],
    });
  }
  sections.push({
    heading: "Speed",
    text: `Decode speed is wall clock (CPU encoding included) and kernel times are GPU ` +
      `timestamps where the adapter has them, each ${runs(comparison.timingRepeats, "run")} ` +
      "after a warm-up. " +
      (comparison.software
        ? 'This run used a software adapter, where the "GPU" is the CPU: read these bars ' +
          "as noise, not as what a GPU would do (BENCHMARKS.md has GPU measurements)."
        : "Smaller formats read fewer bytes, which speeds decoding only where the kernels are " +
          "memory-bound and well tuned."),
    figures: [speedFigure(comparison), kernelTimeFigure(comparison)],
  });
  sections.push({
    heading: "Samples",
    text: "A greedy continuation of the same prompt in each format: a format changes the text " +
      "only where it changes which token is on top, so similar samples do not mean equal " +
      "quality — KL above is the measure to trust.",
    table: {
      columns: ["format", `continuation of "${comparison.prompt}"`],
      rows: comparison.results.map((r) => [resultName(r), r.sample]),
    },
  });
  return { title: "qlab: what each format costs and loses", sections };
}
