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
 * x axis) when any row has it. Each format is one legend entry, in the same colour and symbol in
 * both panels (no point labels, which collide where formats share a bit count). The KL panel draws
 * the **frontier**: the formats no other beats with as few bits or fewer. Its axis is logarithmic
 * when every value is positive and they span more than a decade, as the gap between INT8 and NF4
 * usually does.
 *
 * @example
 * ```ts
 * import { qualityVsBitsFigure } from "./quality.ts";
 * const fig = qualityVsBitsFigure([
 *   { format: "fp16", bitsPerParam: 16, perplexity: 5.68 },
 *   { format: "nf4", bitsPerParam: 4.127, perplexity: 5.87, kl: 0.021 },
 * ]);
 * fig.data.length; // 4 (each format in two panels)
 * ```
 */
export function qualityVsBitsFigure(
  rows: QualityRow[],
  title = "Quality vs bits per parameter",
): Figure {
  const withKl = rows.filter((r) => r.kl !== undefined && Number.isFinite(r.kl));
  const symbols = ["circle", "diamond", "square", "triangle-up", "x", "cross", "star", "pentagon"];
  const style = (i: number) => ({
    size: 11,
    color: seriesColor(i),
    symbol: symbols[i % symbols.length],
    line: { width: 1, color: "#333" },
  });
  const data: Data[] = rows.map((r, i) => ({
    type: "scatter",
    mode: "markers",
    name: r.format,
    legendgroup: r.format,
    x: [r.bitsPerParam],
    y: [r.perplexity],
    cliponaxis: false,
    marker: style(i),
    hovertemplate: `${r.format}: %{x:.3f} bits, perplexity %{y:.4g}<extra></extra>`,
  }));
  if (withKl.length === 0) {
    return makeFigure(
      data,
      baseLayout(title, {
        xaxis: { title: { text: "bits per parameter" } },
        yaxis: { title: { text: "perplexity" } },
      }),
    );
  }
  const kls = withKl.map((r) => r.kl as number);
  const logKl = kls.every((k) => k > 0) && Math.max(...kls) / Math.min(...kls) > 10;
  const frontier = klFrontier(withKl);
  data.push({
    type: "scatter",
    mode: "lines",
    name: "frontier",
    x: frontier.map((r) => r.bitsPerParam),
    y: frontier.map((r) => r.kl as number),
    xaxis: "x",
    yaxis: "y2",
    line: { color: "#888", dash: "dot", width: 2 },
    hovertemplate: "frontier: %{x:.3f} bits, KL %{y:.3g} nats<extra></extra>",
  });
  for (const r of withKl) {
    const i = rows.indexOf(r);
    data.push({
      type: "scatter",
      mode: "markers",
      name: r.format,
      legendgroup: r.format,
      showlegend: false,
      x: [r.bitsPerParam],
      y: [r.kl as number],
      cliponaxis: false,
      xaxis: "x",
      yaxis: "y2",
      marker: style(i),
      hovertemplate: `${r.format}: %{x:.3f} bits, KL %{y:.3g} nats<extra></extra>`,
    });
  }
  return makeFigure(
    data,
    baseLayout(title, {
      height: 600,
      legend: { orientation: "v", x: 1.02, y: 1 },
      margin: { l: 70, r: 150, t: 60, b: 60 },
      // Two panels, one x axis: the x axis hangs off the lower panel so its ticks sit at the bottom.
      xaxis: { title: { text: "bits per parameter" }, anchor: "y2" },
      yaxis: { title: { text: "perplexity" }, domain: [0.56, 1] },
      yaxis2: {
        title: { text: "KL(FP16 ‖ format), nats" },
        domain: [0, 0.44],
        type: logKl ? "log" : "linear",
        exponentformat: "power",
      },
    }),
  );
}

/**
 * The formats on the frontier of bits against KL, in order of bits: each has a lower KL than
 * every format with as many bits or fewer.
 *
 * @example
 * ```ts
 * import { klFrontier } from "./quality.ts";
 * klFrontier([
 *   { bitsPerParam: 4.5, kl: 0.02 },
 *   { bitsPerParam: 4.127, kl: 0.0126 },
 *   { bitsPerParam: 8.1, kl: 0.0004 },
 * ]).map((r) => r.bitsPerParam); // [4.127, 8.1]
 * ```
 */
export function klFrontier<T extends { bitsPerParam: number; kl?: number }>(rows: T[]): T[] {
  const sorted = [...rows].sort((a, b) => a.bitsPerParam - b.bitsPerParam || a.kl! - b.kl!);
  const frontier: T[] = [];
  let best = Infinity;
  for (const r of sorted) {
    if (r.kl! < best) {
      frontier.push(r);
      best = r.kl!;
    }
  }
  return frontier;
}
