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
 * Error against the share of FP16 columns, points joined in threshold order and labelled with
 * their threshold.
 *
 * @example
 * ```ts
 * import { thresholdSweepFigure } from "./threshold_sweep.ts";
 * const fig = thresholdSweepFigure([
 *   { threshold: 6, outlierColumnFraction: 0.001, error: 0.02 },
 *   { threshold: 3, outlierColumnFraction: 0.01, error: 0.008 },
 * ], "relative error");
 * fig.data[0].mode; // "text+lines+markers"
 * ```
 */
export function thresholdSweepFigure(
  points: ThresholdPoint[],
  errorLabel = "error",
  title = "LLM.int8(): quality vs share of FP16 columns",
): Figure {
  const sorted = [...points].sort((a, b) => b.threshold - a.threshold);
  return makeFigure(
    [{
      type: "scatter",
      mode: "text+lines+markers",
      name: errorLabel,
      x: sorted.map((p) => p.outlierColumnFraction),
      y: sorted.map((p) => p.error),
      text: sorted.map((p) => `t=${p.threshold}`),
      textposition: "top right",
      marker: { size: 9 },
      hovertemplate:
        `threshold %{text}: %{x:.3%} FP16 columns, ${errorLabel} %{y:.4g}<extra></extra>`,
    }],
    baseLayout(title, {
      showlegend: false,
      xaxis: { title: { text: "columns kept in FP16" }, tickformat: ".2%", rangemode: "tozero" },
      yaxis: { title: { text: errorLabel } },
    }),
  );
}
