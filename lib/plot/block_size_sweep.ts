/**
 * The NF4 block-size trade-off: smaller blocks cost more bits (one scale per block) and lose less;
 * double quantization buys back most of the scale's bits.
 *
 * @module
 */

import { baseLayout, type Data, makeFigure } from "./_build.ts";
import { type Figure, seriesColor } from "./figure.ts";

/** One block size's measurement. */
export interface BlockSizePoint {
  /** Weights per absmax block (bitsandbytes' default is 64). */
  blockSize: number;
  /** Bits per parameter, scales included. */
  bitsPerParam: number;
  /** The error measured. */
  error: number;
  /** Whether the block scales were themselves quantized (blocksize 256, 8 bits). */
  doubleQuant: boolean;
}

/**
 * Error against bits per parameter, one line with double quantization and one without, each point
 * labelled with its block size.
 *
 * @example
 * ```ts
 * import { blockSizeSweepFigure } from "./block_size_sweep.ts";
 * const fig = blockSizeSweepFigure([
 *   { blockSize: 64, bitsPerParam: 4.5, error: 0.1, doubleQuant: false },
 *   { blockSize: 64, bitsPerParam: 4.127, error: 0.1, doubleQuant: true },
 * ]);
 * fig.data.length; // 2
 * ```
 */
export function blockSizeSweepFigure(
  points: BlockSizePoint[],
  errorLabel = "error",
  title = "NF4: block size vs bits and error",
): Figure {
  const data: Data[] = [];
  for (const doubleQuant of [false, true]) {
    const line = points.filter((p) => p.doubleQuant === doubleQuant)
      .sort((a, b) => a.blockSize - b.blockSize);
    if (line.length === 0) continue;
    const name = doubleQuant ? "double quant" : "fp32 scales";
    data.push({
      type: "scatter",
      mode: "text+lines+markers",
      name,
      x: line.map((p) => p.bitsPerParam),
      y: line.map((p) => p.error),
      text: line.map((p) => String(p.blockSize)),
      // The double-quant line lies left of the other: labels on the outer side of each, so that
      // the two series' labels do not collide where the lines run close (large blocks).
      textposition: doubleQuant ? "middle left" : "middle right",
      textfont: { color: seriesColor(doubleQuant ? 1 : 0) },
      cliponaxis: false,
      marker: { size: 9, color: seriesColor(doubleQuant ? 1 : 0) },
      line: { color: seriesColor(doubleQuant ? 1 : 0), dash: doubleQuant ? "solid" : "dot" },
      hovertemplate: `${name}, block %{text}: %{x:.3f} bits, ${errorLabel} %{y:.4g}<extra></extra>`,
    });
  }
  return makeFigure(
    data,
    baseLayout(title, {
      xaxis: { title: { text: "bits per parameter" } },
      margin: { l: 90, r: 50, t: 60, b: 60 },
      yaxis: { title: { text: errorLabel } },
    }),
  );
}
