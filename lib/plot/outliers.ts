/**
 * How heavy the tail of the activations is: histograms of |x| on a log count axis, with the
 * LLM.int8() outlier threshold drawn in.
 *
 * @module
 */

import { baseLayout, type Data, makeFigure } from "./_build.ts";
import { type Figure, seriesColor } from "./figure.ts";

/** Activation magnitudes from one place in the model. */
export interface MagnitudeSeries {
  /** Where they come from, such as `"layer 3 attn input"`. */
  name: string;
  /** Magnitudes (or raw values: their absolute values are taken). */
  magnitudes: ArrayLike<number>;
}

/** Options of {@linkcode outlierHistogramFigure}. */
export interface OutlierHistogramOptions {
  /** Number of bins between 0 and the largest magnitude. */
  bins?: number;
  /** The figure's title. */
  title?: string;
}

/**
 * Histograms of activation magnitudes (log-scaled counts) with a vertical line at `threshold`
 * (bitsandbytes' default 6.0); each legend entry says how many values reach the threshold.
 *
 * The data are binned here rather than by plotly.js, so a figure of a million activations stays a
 * few kilobytes in a notebook.
 *
 * @example
 * ```ts
 * import { outlierHistogramFigure } from "./outliers.ts";
 * const fig = outlierHistogramFigure([{ name: "layer 0", magnitudes: [0.1, 0.5, 2, 9] }]);
 * fig.data[0].name; // "layer 0 (1 ≥ 6)"
 * ```
 */
export function outlierHistogramFigure(
  series: MagnitudeSeries[],
  threshold = 6,
  options: OutlierHistogramOptions = {},
): Figure {
  const bins = options.bins ?? 60;
  let max = threshold;
  for (const s of series) {
    for (let i = 0; i < s.magnitudes.length; i++) {
      const m = Math.abs(s.magnitudes[i]);
      if (Number.isFinite(m) && m > max) max = m;
    }
  }
  const width = max / bins;
  const centers = Array.from({ length: bins }, (_, b) => (b + 0.5) * width);
  const data: Data[] = series.map((s, i) => {
    const counts = new Array<number>(bins).fill(0);
    let over = 0;
    for (let j = 0; j < s.magnitudes.length; j++) {
      const m = Math.abs(s.magnitudes[j]);
      if (!Number.isFinite(m)) continue;
      counts[Math.min(bins - 1, Math.floor(m / width))]++;
      if (m >= threshold) over++;
    }
    return {
      type: "bar",
      name: `${s.name} (${over} ≥ ${threshold})`,
      x: centers,
      // Empty bins become gaps: a log axis has no place for 0.
      y: counts.map((c) => (c > 0 ? c : null)),
      width,
      opacity: series.length > 1 ? 0.6 : 1,
      marker: { color: seriesColor(i) },
      hovertemplate: `${s.name}: %{y} values near %{x:.3g}<extra></extra>`,
    };
  });
  return makeFigure(
    data,
    baseLayout(options.title ?? "Activation magnitudes", {
      barmode: "overlay",
      bargap: 0,
      xaxis: { title: { text: "|activation|" }, range: [0, max * 1.02] },
      yaxis: { title: { text: "count" }, type: "log" },
      shapes: [{
        type: "line",
        xref: "x",
        x0: threshold,
        x1: threshold,
        yref: "paper",
        y0: 0,
        y1: 1,
        line: { color: "#d62728", width: 2, dash: "dash" },
      }],
      annotations: [{
        xref: "x",
        x: threshold,
        xanchor: "left",
        yref: "paper",
        y: 1,
        yanchor: "top",
        text: ` threshold ${threshold}`,
        showarrow: false,
        font: { color: "#d62728" },
      }],
    }),
  );
}
