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
import { barFigure } from "./generic.ts";
import { layerErrorHeatmapFigure } from "./heatmap.ts";
import { memoryBarsFigure } from "./memory.ts";
import { outlierHistogramFigure } from "./outliers.ts";
import { qualityVsBitsFigure } from "./quality.ts";
import type { Report, ReportSection } from "./report.ts";
import type { Table } from "./table.ts";
import { thresholdSweepFigure } from "./threshold_sweep.ts";
import { formatBytes } from "./units.ts";

/**
 * The summary table: one row per format.
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
      "KL vs FP16",
      "top-1 agree",
      "decode tok/s",
    ],
    rows: comparison.results.map((r) => [
      resultName(r),
      Number(r.bitsPerParameter.toFixed(3)),
      formatBytes(r.weightBytes),
      formatBytes(r.peakBytes),
      Number(r.perplexity.toFixed(3)),
      r === comparison.results[0] ? 0 : Number(r.klMean.toPrecision(3)),
      `${(r.top1Agreement * 100).toFixed(1)}%`,
      Number(r.decodeTokensPerSecond.toFixed(1)),
    ]),
  };
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
 * Perplexity and KL against bits per parameter.
 *
 * @example
 * ```ts ignore
 * display(comparisonQualityFigure(comparison));
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
    "Quality against bits per parameter",
  );
}

const SHORT = (name: string) => name.split(".")[1];

/**
 * Per-layer relative error of one format: each linear layer on FP16's inputs, and the block
 * output's drift after the quantized model ran end to end.
 *
 * @example
 * ```ts ignore
 * display(layerErrorFigure(comparison.results[2]));
 * ```
 */
export function layerErrorFigure(result: FormatResult): Figure {
  const layers = result.blockErrors.length;
  const values = Array.from({ length: layers }, (_, layer) => [
    ...LINEAR_NAMES.map((linear) =>
      result.linearErrors.find((e) => e.layer === layer && e.linear === linear)?.relativeError ??
        NaN
    ),
    result.blockErrors[layer].relativeError,
  ]);
  return layerErrorHeatmapFigure({
    rows: Array.from({ length: layers }, (_, i) => `layer ${i}`),
    columns: [...LINEAR_NAMES.map(SHORT), "block out"],
    values,
    metric: "relative error",
    format: resultName(result),
  });
}

/**
 * Histogram of |x| at the attention input of every layer, with the LLM.int8() threshold.
 *
 * @example
 * ```ts ignore
 * display(outlierFigure(comparison));
 * ```
 */
export function outlierFigure(comparison: Comparison, threshold = 6): Figure {
  return outlierHistogramFigure(
    comparison.trace.layers.map((layer, i) => ({
      name: `layer ${i}`,
      magnitudes: Array.from(layer.attn_in, Math.abs),
    })),
    threshold,
    { title: "Activation magnitudes at the attention input (FP16)" },
  );
}

/**
 * Decode speed per format.
 *
 * @example
 * ```ts ignore
 * display(speedFigure(comparison));
 * ```
 */
export function speedFigure(comparison: Comparison): Figure {
  return barFigure(
    comparison.results.map(resultName),
    [{ name: "decode tokens/s", values: comparison.results.map((r) => r.decodeTokensPerSecond) }],
    { title: `Decode speed (${comparison.adapter})` },
  );
}

/**
 * GPU time of one prefill chunk per format, stacked by kernel family (matmul, attention, ...):
 * where each format spends its time.
 *
 * @example
 * ```ts ignore
 * display(kernelTimeFigure(comparison));
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
      title: "GPU time per kernel family, one prefill chunk of the traced tokens",
      valueTitle: "ms",
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
  const worst = comparison.results.slice(1);
  const sections: ReportSection[] = [
    {
      heading: "Summary",
      text: `${comparison.modelDir} on ${comparison.adapter}. Perplexity over ` +
        `${comparison.tokens} held-out tokens (window ${comparison.context}, stride ` +
        `${comparison.stride}); KL and top-1 agreement against FP16 on the same tokens.`,
      table: comparisonTable(comparison),
    },
    { heading: "Memory", figures: [comparisonMemoryFigure(comparison, extras.budgetBytes)] },
    { heading: "Quality against size", figures: [comparisonQualityFigure(comparison)] },
    {
      heading: "Per-layer error",
      text: "Each linear layer fed FP16's own activations; the last column is the drift of " +
        "the block's output after the quantized model ran end to end.",
      figures: worst.map(layerErrorFigure),
    },
    {
      heading: "Outliers",
      text: "LLM.int8() multiplies in FP16 every hidden dimension where some |x| ≥ 6.",
      figures: [outlierFigure(comparison)],
    },
  ];
  if (extras.thresholdSweep) {
    sections.push({
      heading: "LLM.int8() threshold",
      figures: [thresholdSweepFigure(
        extras.thresholdSweep.filter((p) => Number.isFinite(p.threshold)),
        "relative error vs FP16",
      )],
    });
  }
  if (extras.blockSizeSweep) {
    sections.push({
      heading: "NF4 block size",
      figures: [blockSizeSweepFigure(extras.blockSizeSweep, "relative weight error")],
    });
  }
  sections.push({
    heading: "Speed",
    text: "Decode speed is wall clock (CPU encoding included); kernel times are GPU timestamps " +
      "where the adapter has them.",
    figures: [speedFigure(comparison), kernelTimeFigure(comparison)],
  });
  sections.push({
    heading: "Samples",
    table: {
      columns: ["format", `continuation of "${comparison.prompt}"`],
      rows: comparison.results.map((r) => [resultName(r), r.sample]),
    },
  });
  return { title: "qlab: what each format costs and loses", sections };
}
