/**
 * Where quantization error lands inside the network: a layers × projections heatmap of one error
 * metric for one format.
 *
 * @module
 */

import { baseLayout, makeFigure } from "./_build.ts";
import { type Figure, plainNumbers } from "./figure.ts";

/** A grid of per-layer, per-projection errors. */
export interface LayerErrorGrid {
  /** Row labels, top to bottom, such as `"layer 0"`. */
  rows: string[];
  /** Column labels, such as `"q_proj"` … `"down_proj"`, `"block out"`. */
  columns: string[];
  /** `values[row][column]`; NaN leaves a cell blank. */
  values: ArrayLike<number>[];
  /** What the values measure, such as `"relative error"`. */
  metric: string;
  /** The format measured, such as `"nf4"`. */
  format: string;
}

/**
 * A heatmap of `values`, layer 0 at the top, coloured from light (small error) to dark.
 *
 * @throws {RangeError} when `values` does not match the row and column labels.
 *
 * @example
 * ```ts
 * import { layerErrorHeatmapFigure } from "./heatmap.ts";
 * const fig = layerErrorHeatmapFigure({
 *   rows: ["layer 0", "layer 1"],
 *   columns: ["q_proj", "down_proj"],
 *   values: [[0.01, 0.03], [0.02, 0.05]],
 *   metric: "relative error",
 *   format: "nf4",
 * });
 * fig.data[0].type; // "heatmap"
 * ```
 */
export function layerErrorHeatmapFigure(grid: LayerErrorGrid): Figure {
  if (grid.values.length !== grid.rows.length) {
    throw new RangeError(`${grid.values.length} rows of values for ${grid.rows.length} row labels`);
  }
  grid.values.forEach((row, i) => {
    if (row.length !== grid.columns.length) {
      throw new RangeError(
        `row ${i} has ${row.length} values for ${grid.columns.length} column labels`,
      );
    }
  });
  return makeFigure(
    [{
      type: "heatmap",
      x: grid.columns,
      y: grid.rows,
      z: grid.values.map(plainNumbers),
      // Plotly's YlOrRd runs from red to yellow: reversed, small errors are the light cells.
      colorscale: "YlOrRd",
      reversescale: true,
      colorbar: { title: { text: grid.metric } },
      hoverongaps: false,
      hovertemplate: `%{y}, %{x}: %{z:.4g}<extra>${grid.format}</extra>`,
    }],
    baseLayout(`${grid.metric} per layer: ${grid.format}`, {
      height: Math.max(320, 120 + 26 * grid.rows.length),
      xaxis: { type: "category", side: "bottom" },
      yaxis: { type: "category", autorange: "reversed" },
    }),
  );
}
