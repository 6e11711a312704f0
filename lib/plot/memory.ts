/**
 * Where the GPU memory goes, format by format: stacked bars of weights, activations, KV cache and
 * scratch, against an optional budget line (an 8 GB card, say).
 *
 * @module
 */

import { type Annotations, baseLayout, type Data, makeFigure, type Shape } from "./_build.ts";
import { type Figure, seriesColor } from "./figure.ts";
import { byteUnit, formatBytes } from "./units.ts";

/** The memory one format needs, in bytes, by component. */
export interface MemoryRow {
  /** The format's label, such as `"fp16"` or `"nf4"`. */
  format: string;
  /** Weights (with their scales and outlier columns). */
  weights: number;
  /** Activations live at once. */
  activations: number;
  /** The KV cache. */
  kvCache: number;
  /** Temporary buffers (dequantised tiles, logits). */
  scratch: number;
  /** A memory budget to draw as a horizontal line, in bytes. */
  budgetBytes?: number;
}

/** Options of {@linkcode memoryBarsFigure}. */
export interface MemoryBarsOptions {
  /** The figure's title. */
  title?: string;
  /** A budget line in bytes, added to those given in the rows. */
  budgetBytes?: number;
  /** The budget line's label; the default prints its size. */
  budgetLabel?: string;
  /** More budget lines, each with its label, such as `{ bytes: 16 * 2 ** 30, label: "16 GB card" }`. */
  budgets?: { bytes: number; label: string }[];
}

const COMPONENTS = [
  { key: "weights", label: "weights" },
  { key: "activations", label: "activations" },
  { key: "kvCache", label: "KV cache" },
  { key: "scratch", label: "scratch" },
] as const;

/**
 * Stacked bars of memory per format, in the unit (MiB, GiB) that suits the largest total, each bar
 * topped by its total, with one dashed horizontal line per distinct budget.
 *
 * @example
 * ```ts
 * import { memoryBarsFigure } from "./memory.ts";
 * const GiB = 1024 ** 3;
 * const fig = memoryBarsFigure([
 *   { format: "fp16", weights: 13 * GiB, activations: 0.1 * GiB, kvCache: 1 * GiB, scratch: 0.2 * GiB },
 *   { format: "nf4", weights: 3.6 * GiB, activations: 0.1 * GiB, kvCache: 1 * GiB, scratch: 0.3 * GiB },
 * ], { budgetBytes: 8e9, budgetLabel: "8 GB card" });
 * fig.data.length; // 4 (one trace per component)
 * ```
 */
export function memoryBarsFigure(rows: MemoryRow[], options: MemoryBarsOptions = {}): Figure {
  const totals = rows.map((r) => r.weights + r.activations + r.kvCache + r.scratch);
  const unlabelled = [
    ...new Set(
      [options.budgetBytes, ...rows.map((r) => r.budgetBytes)].filter((b): b is number =>
        b !== undefined && Number.isFinite(b) && b > 0
      ),
    ),
  ];
  const labelled = (options.budgets ?? []).filter((b) => Number.isFinite(b.bytes) && b.bytes > 0);
  const budgets = [...unlabelled, ...labelled.map((b) => b.bytes)];
  const unit = byteUnit(Math.max(0, ...totals, ...budgets));
  const formats = rows.map((r) => r.format);
  const data: Data[] = COMPONENTS.map(({ key, label }, i) => ({
    type: "bar",
    name: label,
    x: formats,
    y: rows.map((r) => r[key] / unit.bytes),
    // The exact byte count goes into the hover text: axis units round it away.
    customdata: rows.map((r) => formatBytes(r[key])),
    hovertemplate: `%{x} ${label}: %{customdata}<extra></extra>`,
    marker: { color: seriesColor(i) },
  }));
  const annotations: Partial<Annotations>[] = rows.map((r, i) => ({
    x: r.format,
    y: totals[i] / unit.bytes,
    text: formatBytes(totals[i]),
    showarrow: false,
    yanchor: "bottom",
  }));
  const shapes: Partial<Shape>[] = [];
  for (const [k, budget] of budgets.entries()) {
    const y = budget / unit.bytes;
    const given = k >= unlabelled.length ? labelled[k - unlabelled.length].label : undefined;
    shapes.push({
      type: "line",
      xref: "paper",
      x0: 0,
      x1: 1,
      yref: "y",
      y0: y,
      y1: y,
      line: { color: "#444", width: 2, dash: "dash" },
    });
    annotations.push({
      xref: "paper",
      x: 1,
      xanchor: "right",
      y,
      yanchor: "bottom",
      text: given ??
        (unlabelled.length === 1 && options.budgetLabel
          ? options.budgetLabel
          : budgetLabel(budget)),
      showarrow: false,
      font: { color: "#444" },
    });
  }
  return makeFigure(
    data,
    baseLayout(options.title ?? "GPU memory by format", {
      barmode: "stack",
      xaxis: { title: { text: "format" }, type: "category" },
      yaxis: { title: { text: `memory (${unit.name})` }, rangemode: "tozero" },
      shapes,
      annotations,
    }),
  );
}

/** "budget 7.45 GiB", or "budget 8 GB (7.45 GiB)" for sizes given in decimal gigabytes, as cards are sold. */
function budgetLabel(bytes: number): string {
  const decimal = bytes % 1e9 === 0 && bytes % 1024 ** 3 !== 0 ? `${bytes / 1e9} GB (` : "";
  return `budget ${decimal}${formatBytes(bytes)}${decimal ? ")" : ""}`;
}
