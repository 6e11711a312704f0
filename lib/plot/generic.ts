/**
 * Plain line and bar figures for what has no figure of its own (speeds, timings).
 *
 * @module
 */

import { baseLayout, type Data, makeFigure } from "./_build.ts";
import { type Figure, plainNumbers, seriesColor } from "./figure.ts";

/** One line of {@linkcode lineFigure}. */
export interface LineSeries {
  /** Its legend name. */
  name: string;
  /** x values. */
  x: ArrayLike<number> | string[];
  /** y values, as many as x. */
  y: ArrayLike<number>;
}

/** Options of {@linkcode lineFigure}. */
export interface LineOptions {
  /** The figure's title. */
  title?: string;
  /** The x axis title. */
  xTitle?: string;
  /** The y axis title. */
  yTitle?: string;
  /** Logarithmic x axis. */
  logX?: boolean;
  /** Logarithmic y axis. */
  logY?: boolean;
  /** Draw markers on the lines. */
  markers?: boolean;
}

/**
 * Lines, one per series.
 *
 * @example
 * ```ts
 * import { lineFigure } from "./generic.ts";
 * const fig = lineFigure([{ name: "nf4", x: [1, 2, 4], y: [30, 55, 90] }], { yTitle: "tokens/s" });
 * fig.data.length; // 1
 * ```
 */
export function lineFigure(series: LineSeries[], options: LineOptions = {}): Figure {
  const data: Data[] = series.map((s, i) => ({
    type: "scatter",
    mode: options.markers === false ? "lines" : "lines+markers",
    name: s.name,
    x: typeof s.x[0] === "string" ? Array.from(s.x as string[]) : plainNumbers(s.x as number[]),
    y: plainNumbers(s.y),
    line: { color: seriesColor(i) },
  }));
  return makeFigure(
    data,
    baseLayout(options.title ?? "", {
      xaxis: { title: { text: options.xTitle ?? "" }, type: options.logX ? "log" : "-" },
      yaxis: { title: { text: options.yTitle ?? "" }, type: options.logY ? "log" : "-" },
    }),
  );
}

/** One group of bars of {@linkcode barFigure}. */
export interface BarSeries {
  /** Its legend name. */
  name: string;
  /** One value per category. */
  values: ArrayLike<number>;
}

/** Options of {@linkcode barFigure}. */
export interface BarOptions {
  /** The figure's title. */
  title?: string;
  /** The value axis title. */
  valueTitle?: string;
  /** Stack the series instead of grouping them. */
  stacked?: boolean;
  /** Bars grow to the right, categories down the y axis (for long labels). */
  horizontal?: boolean;
  /** Print each value on its bar. */
  labels?: boolean;
}

/**
 * Bars per category, one colour per series, grouped or stacked.
 *
 * @example
 * ```ts
 * import { barFigure } from "./generic.ts";
 * const fig = barFigure(["fp16", "int8", "nf4"], [{ name: "decode", values: [40, 55, 70] }], {
 *   valueTitle: "tokens/s",
 * });
 * fig.layout.barmode; // "group"
 * ```
 */
export function barFigure(
  categories: string[],
  series: BarSeries[],
  options: BarOptions = {},
): Figure {
  const data: Data[] = series.map((s, i) => {
    const values = plainNumbers(s.values);
    return {
      type: "bar",
      name: s.name,
      orientation: options.horizontal ? "h" : "v",
      x: options.horizontal ? values : categories,
      y: options.horizontal ? categories : values,
      marker: { color: seriesColor(i) },
      ...(options.labels
        ? {
          text: values.map((v) => (v === null ? "" : v.toPrecision(3))),
          textposition: "auto",
        } as const
        : {}),
    };
  });
  const valueAxis = { title: { text: options.valueTitle ?? "" } };
  const categoryAxis = { type: "category" as const };
  return makeFigure(
    data,
    baseLayout(options.title ?? "", {
      barmode: options.stacked ? "stack" : "group",
      showlegend: series.length > 1,
      xaxis: options.horizontal ? valueAxis : categoryAxis,
      yaxis: options.horizontal ? { ...categoryAxis, autorange: "reversed" } : valueAxis,
    }),
  );
}
