/**
 * Internal: the plotly.js-typed side of building a figure. The figure functions type their traces
 * and layouts with `@types/plotly.js`, which catches misspelt attributes at check time, then hand
 * them out as the plain {@linkcode Figure} type.
 *
 * @module
 */

import type { Data, Layout } from "plotly-types";
import type { Figure, PlotLayout, Trace } from "./figure.ts";

export type { Annotations, Data, Layout, Shape } from "plotly-types";

/**
 * The layout every figure starts from: its title, a compact margin and a readable font, merged
 * with the figure's own settings (which win).
 *
 * @example
 * ```ts
 * import { baseLayout } from "./_build.ts";
 * const layout = baseLayout("Memory", { barmode: "stack" });
 * layout.barmode; // "stack"
 * ```
 */
export function baseLayout(title: string, extra: Partial<Layout> = {}): Partial<Layout> {
  return {
    title: { text: title },
    font: { family: "system-ui, -apple-system, 'Segoe UI', sans-serif", size: 13 },
    margin: { l: 70, r: 30, t: 60, b: 60 },
    height: 420,
    hovermode: "closest",
    legend: { orientation: "h", y: -0.2 },
    ...extra,
  };
}

/** A figure from plotly.js-typed parts. */
export function makeFigure(data: Data[], layout: Partial<Layout>): Figure {
  return { data: data as unknown as Trace[], layout: layout as unknown as PlotLayout };
}
