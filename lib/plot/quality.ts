/**
 * What each format loses against what it saves: perplexity (and KL divergence from the reference,
 * when measured) against bits per parameter, one labelled point per format.
 *
 * @module
 */

import { baseLayout, type Data, makeFigure } from "./_build.ts";
import { type Figure, seriesColor } from "./figure.ts";

/** One format's cost and quality. */
export interface QualityRow {
  /** The format's label. */
  format: string;
  /** Bits stored per weight, scales and outliers included. */
  bitsPerParam: number;
  /** Perplexity on held-out text. */
  perplexity: number;
  /** Mean KL divergence from the reference model, in nats. */
  kl?: number;
}

/**
 * Perplexity against bits per parameter, with KL divergence in a second panel below (sharing the
 * x axis) when any row has it. The KL axis is logarithmic when every value is positive and they
 * span more than a decade, as the gap between INT8 and NF4 usually does.
 *
 * @example
 * ```ts
 * import { qualityVsBitsFigure } from "./quality.ts";
 * const fig = qualityVsBitsFigure([
 *   { format: "fp16", bitsPerParam: 16, perplexity: 5.68 },
 *   { format: "nf4", bitsPerParam: 4.127, perplexity: 5.87, kl: 0.021 },
 * ]);
 * fig.data.length; // 2 (perplexity, KL)
 * ```
 */
export function qualityVsBitsFigure(
  rows: QualityRow[],
  title = "Quality vs bits per parameter",
): Figure {
  const formats = rows.map((r) => r.format);
  const colors = rows.map((_, i) => seriesColor(i));
  const withKl = rows.filter((r) => r.kl !== undefined && Number.isFinite(r.kl));
  const data: Data[] = [{
    type: "scatter",
    mode: "text+markers",
    name: "perplexity",
    x: rows.map((r) => r.bitsPerParam),
    y: rows.map((r) => r.perplexity),
    text: formats,
    textposition: "top center",
    cliponaxis: false,
    marker: { size: 11, color: colors },
    hovertemplate: "%{text}: %{x:.3f} bits, perplexity %{y:.4g}<extra></extra>",
  }];
  if (withKl.length === 0) {
    return makeFigure(
      data,
      baseLayout(title, {
        showlegend: false,
        xaxis: { title: { text: "bits per parameter" } },
        yaxis: { title: { text: "perplexity" } },
      }),
    );
  }
  const kls = withKl.map((r) => r.kl as number);
  const logKl = kls.every((k) => k > 0) && Math.max(...kls) / Math.min(...kls) > 10;
  data.push({
    type: "scatter",
    mode: "text+markers",
    name: "KL divergence",
    x: withKl.map((r) => r.bitsPerParam),
    y: kls,
    text: withKl.map((r) => r.format),
    textposition: "top center",
    cliponaxis: false,
    xaxis: "x",
    yaxis: "y2",
    marker: { size: 11, symbol: "diamond", color: withKl.map((r) => colors[rows.indexOf(r)]) },
    hovertemplate: "%{text}: %{x:.3f} bits, KL %{y:.3g} nats<extra></extra>",
  });
  return makeFigure(
    data,
    baseLayout(title, {
      height: 560,
      showlegend: false,
      // Two panels, one x axis: the x axis hangs off the lower panel so its ticks sit at the bottom.
      xaxis: { title: { text: "bits per parameter" }, anchor: "y2" },
      yaxis: { title: { text: "perplexity" }, domain: [0.56, 1] },
      yaxis2: {
        title: { text: "KL (nats)" },
        domain: [0, 0.44],
        type: logKl ? "log" : "linear",
        exponentformat: "power",
      },
    }),
  );
}
