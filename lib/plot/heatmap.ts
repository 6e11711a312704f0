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
  /** The colour scale's range; by default the grid's own. Give several grids one to compare. */
  range?: [number, number];
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
  checkGrid(grid);
  return makeFigure(
    [{
      type: "heatmap",
      x: grid.columns,
      y: grid.rows,
      z: grid.values.map(plainNumbers),
      // Plotly's YlOrRd runs from red to yellow: reversed, small errors are the light cells.
      colorscale: "YlOrRd",
      reversescale: true,
      ...(grid.range ? { zmin: grid.range[0], zmax: grid.range[1], zauto: false } : {}),
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

/**
 * Several grids of one metric as small multiples with **one colour scale**, so that the same
 * colour means the same error in every panel: one panel per grid (per format), up to `perRow`
 * side by side, layer 0 at the top of each.
 *
 * @throws {RangeError} when a grid's values do not match its labels.
 *
 * @example
 * ```ts
 * import { layerErrorGridsFigure } from "./heatmap.ts";
 * const grid = (format: string, v: number) => ({
 *   rows: ["layer 0", "layer 1"],
 *   columns: ["q_proj", "down_proj"],
 *   values: [[v, 2 * v], [v, 3 * v]],
 *   metric: "relative error",
 *   format,
 * });
 * const fig = layerErrorGridsFigure([grid("llm-int8", 0.01), grid("nf4", 0.05)]);
 * fig.data.length; // 2, sharing one colour axis
 * ```
 */
export function layerErrorGridsFigure(
  grids: LayerErrorGrid[],
  title = `${grids[0]?.metric ?? "error"} per layer, one colour scale for all formats`,
  perRow = 4,
): Figure {
  let max = 0;
  for (const grid of grids) {
    checkGrid(grid);
    for (const row of grid.values) {
      for (let i = 0; i < row.length; i++) if (Number.isFinite(row[i])) max = Math.max(max, row[i]);
    }
  }
  const columns = Math.max(1, Math.min(perRow, grids.length));
  const rowsOfPanels = Math.max(1, Math.ceil(grids.length / columns));
  const hGap = 0.03;
  const vGap = 0.12 / rowsOfPanels;
  const width = (0.9 - hGap * (columns - 1)) / columns;
  const height = (1 - vGap * (rowsOfPanels - 1)) / rowsOfPanels;
  const layout: Record<string, unknown> = {};
  const annotations: Record<string, unknown>[] = [];
  const data = grids.map((grid, i) => {
    const suffix = i === 0 ? "" : String(i + 1);
    const col = i % columns;
    const row = Math.floor(i / columns);
    const x0 = col * (width + hGap);
    const top = 1 - row * (height + vGap);
    layout[`xaxis${suffix}`] = {
      domain: [x0, x0 + width],
      anchor: `y${suffix}`,
      type: "category",
      tickangle: -45,
      tickfont: { size: 10 },
      // Every panel has the same columns: labelled once, under the bottom row.
      showticklabels: row === rowsOfPanels - 1 || i + columns >= grids.length,
    };
    layout[`yaxis${suffix}`] = {
      domain: [top - height, top],
      anchor: `x${suffix}`,
      type: "category",
      autorange: "reversed",
      showticklabels: col === 0,
    };
    annotations.push({
      xref: "paper",
      x: x0 + width / 2,
      yref: "paper",
      y: top,
      yanchor: "bottom",
      text: `<b>${grid.format}</b>`,
      showarrow: false,
    });
    return {
      type: "heatmap",
      x: grid.columns,
      y: grid.rows,
      z: grid.values.map(plainNumbers),
      xaxis: `x${suffix}`,
      yaxis: `y${suffix}`,
      coloraxis: "coloraxis",
      hoverongaps: false,
      hovertemplate: `%{y}, %{x}: %{z:.4g}<extra>${grid.format}</extra>`,
    };
  });
  return {
    data: data as unknown as Figure["data"],
    layout: {
      ...baseLayout(title, {
        height: Math.max(340, 90 + rowsOfPanels * (60 + 22 * (grids[0]?.rows.length ?? 8))),
        margin: { l: 70, r: 30, t: 80, b: 70 },
      }),
      ...layout,
      annotations,
      coloraxis: {
        colorscale: "YlOrRd",
        reversescale: true,
        cmin: 0,
        cmax: max || 1,
        colorbar: { title: { text: grids[0]?.metric ?? "" }, x: 0.93 },
      },
    } as unknown as Figure["layout"],
  };
}

function checkGrid(grid: LayerErrorGrid): void {
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
}
