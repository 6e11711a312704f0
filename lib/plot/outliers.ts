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
 * Histograms of activation magnitudes (log-scaled counts) as **small multiples**: one panel per
 * series, stacked, on one shared |x| axis, with a vertical line at `threshold` (bitsandbytes'
 * default 6.0) through all of them; each panel's name says how many values reach the threshold.
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
  const panels = Math.max(1, series.length);
  const gap = panels > 1 ? 0.04 : 0;
  const span = (1 - gap * (panels - 1)) / panels;
  const axis = (i: number) => (i === 0 ? "" : String(i + 1));
  const layoutAxes: Record<string, unknown> = {};
  const annotations: Record<string, unknown>[] = [];
  const data: Data[] = series.map((s, i) => {
    const counts = new Array<number>(bins).fill(0);
    let over = 0;
    for (let j = 0; j < s.magnitudes.length; j++) {
      const m = Math.abs(s.magnitudes[j]);
      if (!Number.isFinite(m)) continue;
      counts[Math.min(bins - 1, Math.floor(m / width))]++;
      if (m >= threshold) over++;
    }
    // Panel 0 on top.
    const top = 1 - i * (span + gap);
    layoutAxes[`yaxis${axis(i)}`] = {
      type: "log",
      dtick: 1,
      domain: [Math.max(0, top - span), top],
      title: { text: panels > 1 ? "" : "count" },
      anchor: "x",
    };
    const name = `${s.name} (${over} ≥ ${threshold})`;
    if (panels > 1) {
      annotations.push({
        xref: "paper",
        x: 0,
        xanchor: "left",
        yref: "paper",
        y: top,
        yanchor: "top",
        text: name,
        showarrow: false,
        font: { size: 12 },
        bgcolor: "rgba(255,255,255,0.7)",
      });
    }
    return {
      type: "bar",
      name,
      x: centers,
      // Empty bins become gaps: a log axis has no place for 0.
      y: counts.map((c) => (c > 0 ? c : null)),
      width,
      xaxis: "x",
      yaxis: `y${axis(i)}`,
      marker: { color: seriesColor(i) },
      hovertemplate: `${s.name}: %{y} values near %{x:.3g}<extra></extra>`,
    } as Data;
  });
  annotations.push({
    xref: "x",
    x: threshold,
    xanchor: "left",
    yref: "paper",
    y: 1,
    yanchor: "bottom",
    text: ` τ = ${threshold}`,
    showarrow: false,
    font: { color: "#d62728" },
  });
  if (panels > 1) {
    annotations.push({
      xref: "paper",
      x: -0.07,
      yref: "paper",
      y: 0.5,
      text: "count (log)",
      textangle: -90,
      showarrow: false,
    });
  }
  return makeFigure(
    data,
    baseLayout(options.title ?? "Activation magnitudes", {
      height: panels > 1 ? Math.max(360, 70 + 130 * panels) : 420,
      showlegend: panels === 1,
      bargap: 0,
      xaxis: {
        title: { text: "|activation|" },
        range: [0, max * 1.02],
        anchor: `y${axis(panels - 1)}` as "y",
      },
      ...layoutAxes,
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
      annotations,
    }),
  );
}

/** Options of {@linkcode outlierMagnitudeFigure}. */
export interface OutlierMagnitudeOptions {
  /** The figure's title. */
  title?: string;
  /** Labels of the layers (default "0", "1", ...). */
  layers?: string[];
}

/**
 * The largest |activation| per layer, one line per place in the model (say the attention input
 * and the down_proj input), on a log axis, with a horizontal line at `threshold` (τ = 6): where a
 * line crosses it, LLM.int8() sends columns to FP16.
 *
 * @example
 * ```ts
 * import { outlierMagnitudeFigure } from "./outliers.ts";
 * const fig = outlierMagnitudeFigure([
 *   { name: "attention input", values: [2.1, 6.8, 7.2] },
 *   { name: "down_proj input", values: [9.5, 12, 30] },
 * ]);
 * fig.data.length; // 2
 * ```
 */
export function outlierMagnitudeFigure(
  series: { name: string; values: ArrayLike<number> }[],
  threshold = 6,
  options: OutlierMagnitudeOptions = {},
): Figure {
  const count = Math.max(0, ...series.map((s) => s.values.length));
  const layers = options.layers ?? Array.from({ length: count }, (_, i) => String(i));
  return makeFigure(
    series.map((s, i) => ({
      type: "scatter",
      mode: "lines+markers",
      name: s.name,
      x: layers.slice(0, s.values.length),
      y: Array.from(s.values),
      marker: { size: 8, color: seriesColor(i) },
      line: { color: seriesColor(i) },
      hovertemplate: `${s.name}, layer %{x}: max |x| %{y:.3g}<extra></extra>`,
    })),
    baseLayout(options.title ?? "Largest |activation| per layer", {
      xaxis: { title: { text: "layer" }, type: "category" },
      yaxis: {
        title: { text: "max |x| (log scale)" },
        type: "log",
        tickvals: [0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000],
      },
      shapes: [{
        type: "line",
        xref: "paper",
        x0: 0,
        x1: 1,
        yref: "y",
        y0: threshold,
        y1: threshold,
        line: { color: "#d62728", width: 2, dash: "dash" },
      }],
      annotations: [{
        xref: "paper",
        x: 1,
        xanchor: "right",
        yref: "y",
        y: Math.log10(threshold),
        yanchor: "bottom",
        text: `τ = ${threshold} (LLM.int8()'s threshold)`,
        showarrow: false,
        font: { color: "#d62728" },
      }],
    }),
  );
}
