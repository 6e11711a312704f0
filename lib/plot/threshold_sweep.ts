/**
 * The LLM.int8() trade-off: as the outlier threshold drops, more columns stay in FP16 and the
 * error falls. One point per threshold.
 *
 * @module
 */

import { baseLayout, makeFigure } from "./_build.ts";
import type { Figure } from "./figure.ts";

/** One threshold's measurement. */
export interface ThresholdPoint {
  /** The outlier threshold (bitsandbytes' default is 6.0). */
  threshold: number;
  /** Share of input columns kept in FP16, in [0, 1]. */
  outlierColumnFraction: number;
  /** The error measured at this threshold. */
  error: number;
}

/**
 * The sweep against the threshold τ on a log axis, τ = ∞ (no decomposition: vector-wise INT8)
 * drawn at the right end with its own tick: the error in % (left axis, line and markers) and the
 * share of columns kept in FP16 in % (right axis, bars).
 *
 * @example
 * ```ts
 * import { thresholdSweepFigure } from "./threshold_sweep.ts";
 * const fig = thresholdSweepFigure([
 *   { threshold: 6, outlierColumnFraction: 0.001, error: 0.02 },
 *   { threshold: 3, outlierColumnFraction: 0.01, error: 0.008 },
 *   { threshold: Infinity, outlierColumnFraction: 0, error: 0.025 },
 * ], "relative error of the layer outputs");
 * fig.data.length; // 2 (error, FP16 columns)
 * ```
 */
export function thresholdSweepFigure(
  points: ThresholdPoint[],
  errorLabel = "error",
  title = "LLM.int8(): error and FP16 columns against the threshold τ",
): Figure {
  const sorted = [...points].sort((a, b) => a.threshold - b.threshold);
  const finite = sorted.filter((p) => Number.isFinite(p.threshold));
  const largest = finite.length ? finite[finite.length - 1].threshold : 1;
  const smallest = finite.length ? finite[0].threshold : 1;
  // τ = ∞ sits one and a half "doublings" past the largest finite threshold.
  const infinityAt = largest * 2.8;
  const x = sorted.map((p) => (Number.isFinite(p.threshold) ? p.threshold : infinityAt));
  const label = sorted.map((p) => (Number.isFinite(p.threshold) ? `τ = ${p.threshold}` : "τ = ∞"));
  const ticks = [
    ...finite.map((p) => p.threshold),
    ...(finite.length < sorted.length ? [infinityAt] : []),
  ];
  return makeFigure(
    [{
      type: "bar",
      name: "columns kept in FP16 (%)",
      x,
      y: sorted.map((p) => 100 * p.outlierColumnFraction),
      yaxis: "y2",
      width: x.map((v) => v * 0.12),
      marker: { color: "rgba(128,128,128,0.35)" },
      customdata: label,
      hovertemplate: "%{customdata}: %{y:.3g}% of columns in FP16<extra></extra>",
    }, {
      type: "scatter",
      mode: "lines+markers",
      name: `${errorLabel} (%)`,
      x,
      y: sorted.map((p) => 100 * p.error),
      marker: { size: 9, color: "#1f77b4" },
      line: { color: "#1f77b4" },
      customdata: label,
      hovertemplate: `%{customdata}: ${errorLabel} %{y:.4g}%<extra></extra>`,
    }],
    baseLayout(title, {
      xaxis: {
        title: { text: "outlier threshold τ (log scale; ∞ = no decomposition, vector-wise INT8)" },
        type: "log",
        range: [Math.log10(smallest / 1.4), Math.log10(infinityAt * 1.4)],
        tickvals: ticks,
        ticktext: ticks.map((t) => (t === infinityAt ? "∞" : String(t))),
      },
      yaxis: { title: { text: `${errorLabel} (%)` }, rangemode: "tozero" },
      yaxis2: {
        title: { text: "columns kept in FP16 (%)" },
        overlaying: "y",
        side: "right",
        rangemode: "tozero",
        showgrid: false,
      },
      margin: { l: 70, r: 70, t: 60, b: 70 },
    }),
  );
}
