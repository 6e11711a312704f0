/**
 * The figure type every function in `lib/plot` returns: a plain Plotly figure (data, layout,
 * config) that serialises to the `application/vnd.plotly.v1+json` MIME type as it is.
 *
 * @module
 */

/**
 * A Plotly trace: `type` picks its kind (`"bar"`, `"scatter"`, `"heatmap"` …), the other
 * attributes are those of plotly.js's figure reference.
 *
 * @example
 * ```ts
 * import type { Trace } from "./figure.ts";
 * const trace: Trace = { type: "scatter", name: "nf4", x: [4.127], y: [5.87] };
 * ```
 */
export interface Trace {
  /** The kind of trace. */
  type?: string;
  /** Its legend name. */
  name?: string;
  /** Any other plotly.js trace attribute. */
  [attribute: string]: unknown;
}

/**
 * A Plotly layout: title, axes, shapes, annotations, as in plotly.js's figure reference.
 *
 * @example
 * ```ts
 * import type { PlotLayout } from "./figure.ts";
 * const layout: PlotLayout = { title: { text: "Memory" }, height: 400, barmode: "stack" };
 * ```
 */
export interface PlotLayout {
  /** The figure's title. */
  title?: string | { text?: string; [attribute: string]: unknown };
  /** Height in pixels. */
  height?: number;
  /** Any other plotly.js layout attribute. */
  [attribute: string]: unknown;
}

/**
 * A Plotly figure as plain JSON-ready data, as the `application/vnd.plotly.v1+json` MIME type
 * carries it.
 *
 * The figure functions are written against the plotly.js type definitions (npm
 * `@types/plotly.js`); the public type is this looser one because those definitions are not part
 * of this module's documented API.
 *
 * @example
 * ```ts
 * import type { Figure } from "./figure.ts";
 * const fig: Figure = { data: [{ type: "bar", x: ["a"], y: [1] }], layout: {} };
 * ```
 */
export interface Figure {
  /** The traces. */
  data: Trace[];
  /** The layout. */
  layout: PlotLayout;
  /** Plot options such as `responsive`; the displays add their defaults. */
  config?: Record<string, unknown>;
}

/**
 * Colours reused across figures, so one format or one memory component keeps its colour from plot
 * to plot (Plotly's default qualitative palette, in its order).
 *
 * @example
 * ```ts
 * import { PALETTE } from "./figure.ts";
 * PALETTE[0]; // "#636efa"
 * ```
 */
export const PALETTE: readonly string[] = [
  "#636efa",
  "#ef553b",
  "#00cc96",
  "#ab63fa",
  "#ffa15a",
  "#19d3f3",
  "#ff6692",
  "#b6e880",
  "#ff97ff",
  "#fecb52",
];

/**
 * The colour of the `index`-th series, wrapping around the palette.
 *
 * @example
 * ```ts
 * import { seriesColor } from "./figure.ts";
 * seriesColor(10) === seriesColor(0); // true
 * ```
 */
export function seriesColor(index: number): string {
  return PALETTE[((index % PALETTE.length) + PALETTE.length) % PALETTE.length];
}

/**
 * The figure's title text, or `""` when it has none.
 *
 * @example
 * ```ts
 * import { figureTitle } from "./figure.ts";
 * figureTitle({ data: [], layout: { title: { text: "KL" } } }); // "KL"
 * figureTitle({ data: [], layout: { title: { text: "Speed<br><sub>median</sub>" } } }); // "Speed — median"
 * ```
 */
export function figureTitle(figure: Figure): string {
  const title = figure.layout.title;
  const text = typeof title === "string" ? title : title?.text ?? "";
  // As text: a line break becomes " — ", other markup (<sub>, <b>) goes.
  return text.replace(/<br\s*\/?>/gi, " — ").replace(/<[^>]*>/g, "");
}

/**
 * Copies numbers into a plain array, turning non-finite values into `null` so that the figure's
 * JSON means the same as the data (JSON has no NaN; typed arrays would serialise as objects).
 *
 * @example
 * ```ts
 * import { plainNumbers } from "./figure.ts";
 * plainNumbers(new Float32Array([1, NaN])); // [1, null]
 * ```
 */
export function plainNumbers(values: ArrayLike<number>): (number | null)[] {
  return Array.from(values, (v) => (Number.isFinite(v) ? v : null));
}
