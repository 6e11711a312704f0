/** One figure of every kind, from small made-up inputs, shared by the plot tests. */

import {
  barFigure,
  blockSizeSweepFigure,
  type Figure,
  layerErrorGridsFigure,
  layerErrorHeatmapFigure,
  lineFigure,
  memoryBarsFigure,
  outlierHistogramFigure,
  outlierMagnitudeFigure,
  qualityVsBitsFigure,
  thresholdSweepFigure,
} from "../../lib/plot/mod.ts";
import { randn } from "../helpers/random.ts";

const GiB = 1024 ** 3;

/** Every figure kind, by name. */
export function everyFigure(): Record<string, Figure> {
  const activations = randn(20_000, 7);
  // A few outlier features, as LLM.int8() sees them in real models.
  for (let i = 0; i < 40; i++) activations[i * 97] = 7 + (i % 9);
  return {
    memory: memoryBarsFigure([
      {
        format: "fp16",
        weights: 12.6 * GiB,
        activations: 0.2 * GiB,
        kvCache: 1 * GiB,
        scratch: 0.3 * GiB,
      },
      {
        format: "int8",
        weights: 6.7 * GiB,
        activations: 0.2 * GiB,
        kvCache: 1 * GiB,
        scratch: 0.4 * GiB,
        budgetBytes: 8e9,
      },
      {
        format: "nf4",
        weights: 3.6 * GiB,
        activations: 0.2 * GiB,
        kvCache: 1 * GiB,
        scratch: 0.5 * GiB,
      },
    ], { budgetLabel: "8 GB card" }),
    quality: qualityVsBitsFigure([
      { format: "fp16", bitsPerParam: 16, perplexity: 5.68, kl: 0 },
      { format: "int8", bitsPerParam: 8.06, perplexity: 5.69, kl: 0.0004 },
      { format: "nf4", bitsPerParam: 4.127, perplexity: 5.87, kl: 0.021 },
    ]),
    heatmap: layerErrorHeatmapFigure({
      rows: ["layer 0", "layer 1", "layer 2"],
      columns: [
        "q_proj",
        "k_proj",
        "v_proj",
        "o_proj",
        "gate_proj",
        "up_proj",
        "down_proj",
        "block out",
      ],
      values: [0, 1, 2].map((l) => [1, 2, 3, 4, 5, 6, 7, 8].map((c) => 0.01 * (l + 1) * c)),
      metric: "relative error",
      format: "nf4",
    }),
    outliers: outlierHistogramFigure([
      { name: "layer 0 attn input", magnitudes: activations },
      { name: "layer 0 down_proj input", magnitudes: randn(5000, 8, 2) },
    ]),
    threshold: thresholdSweepFigure([
      { threshold: 8, outlierColumnFraction: 0.0005, error: 0.031 },
      { threshold: 6, outlierColumnFraction: 0.0012, error: 0.018 },
      { threshold: 4, outlierColumnFraction: 0.004, error: 0.011 },
      { threshold: 2, outlierColumnFraction: 0.05, error: 0.006 },
      { threshold: Infinity, outlierColumnFraction: 0, error: 0.035 },
    ], "relative error"),
    heatmaps: layerErrorGridsFigure(["llm-int8", "nf4", "fp4"].map((format, f) => ({
      rows: ["layer 0", "layer 1", "layer 2"],
      columns: ["q_proj", "k_proj", "down_proj"],
      values: [0, 1, 2].map((l) => [1, 2, 3].map((c) => 0.01 * (f + 1) * (l + 1) * c)),
      metric: "relative error",
      format,
    }))),
    magnitudes: outlierMagnitudeFigure([
      { name: "attention input", values: [2.1, 6.8, 7.2, 5.5] },
      { name: "down_proj input", values: [9.5, 12, 30, 4] },
    ]),
    blockSize: blockSizeSweepFigure([
      { blockSize: 32, bitsPerParam: 5, error: 0.08, doubleQuant: false },
      { blockSize: 64, bitsPerParam: 4.5, error: 0.09, doubleQuant: false },
      { blockSize: 128, bitsPerParam: 4.25, error: 0.1, doubleQuant: false },
      { blockSize: 32, bitsPerParam: 4.25, error: 0.08, doubleQuant: true },
      { blockSize: 64, bitsPerParam: 4.127, error: 0.09, doubleQuant: true },
      { blockSize: 128, bitsPerParam: 4.063, error: 0.1, doubleQuant: true },
    ], "relative error"),
    line: lineFigure([
      { name: "fp16", x: [1, 2, 4, 8], y: [40, 38, 35, 30] },
      { name: "nf4", x: [1, 2, 4, 8], y: [70, 66, 60, 52] },
    ], { title: "Decode speed", xTitle: "batch", yTitle: "tokens/s" }),
    bar: barFigure(["fp16", "int8", "nf4"], [
      { name: "prefill", values: [900, 700, 650] },
      { name: "decode", values: [40, 55, 70] },
    ], { title: "Speed", valueTitle: "tokens/s", labels: true }),
  };
}
