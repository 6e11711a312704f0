/**
 * Outlier statistics per layer, the facts LLM.int8() rests on: at each linear layer's input,
 * which hidden dimensions reach |x| ≥ threshold, how often, and how large.
 *
 * @module
 */

import type { Trace, TracePoint } from "../model/llama.ts";
import { findOutlierColumns, LLM_INT8_THRESHOLD } from "../quant/llm_int8.ts";

/** The linear-layer inputs among the trace points. */
export const LINEAR_INPUT_POINTS: readonly TracePoint[] = ["attn_in", "o_in", "mlp_in", "down_in"];

/** Outliers at one point of one layer. */
export interface LayerOutliers {
  /** Layer index. */
  layer: number;
  /** Which linear layer's input (`attn_in` feeds q/k/v, `mlp_in` gate/up, ...). */
  point: TracePoint;
  /** Largest |x| anywhere. */
  maxAbs: number;
  /** Hidden dimensions with some |x| ≥ threshold. */
  dims: number[];
  /** For each of `dims`: its max |x|. */
  dimMaxAbs: number[];
  /** For each of `dims`: the fraction of tokens where it reaches the threshold. */
  dimTokenFraction: number[];
  /** Fraction of tokens with at least one value ≥ threshold. */
  tokenFraction: number;
  /** Fraction of hidden dimensions that LLM.int8() would multiply in FP16. */
  columnFraction: number;
  /** Width of the activation. */
  width: number;
}

/**
 * Outlier statistics of every linear-layer input in a trace.
 *
 * @example
 * ```ts ignore
 * const stats = outlierStatistics(await model.trace(tokens), 6);
 * stats.filter((s) => s.point === "attn_in").map((s) => s.dims);
 * ```
 */
export function outlierStatistics(trace: Trace, threshold = LLM_INT8_THRESHOLD): LayerOutliers[] {
  const out: LayerOutliers[] = [];
  trace.layers.forEach((layer, index) => {
    for (const point of LINEAR_INPUT_POINTS) {
      const x = layer[point];
      const width = x.length / trace.tokens;
      const s = findOutlierColumns(x, trace.tokens, width, threshold);
      let maxAbs = 0;
      let rowsWithOutlier = 0;
      for (let r = 0; r < trace.tokens; r++) {
        let any = false;
        for (let c = 0; c < width; c++) {
          const a = Math.abs(x[r * width + c]);
          if (a > maxAbs) maxAbs = a;
          if (a >= threshold) any = true;
        }
        if (any) rowsWithOutlier++;
      }
      out.push({
        layer: index,
        point,
        maxAbs,
        dims: [...s.columns],
        dimMaxAbs: [...s.maxAbs],
        dimTokenFraction: [...s.rowCount].map((n) => n / trace.tokens),
        tokenFraction: rowsWithOutlier / trace.tokens,
        columnFraction: s.columns.length / width,
        width,
      });
    }
  });
  return out;
}

/**
 * |x| of every value at one point of every layer, for magnitude histograms.
 *
 * @example
 * ```ts ignore
 * const magnitudes = activationMagnitudes(trace, "attn_in");
 * ```
 */
export function activationMagnitudes(trace: Trace, point: TracePoint): Float32Array[] {
  return trace.layers.map((layer) => layer[point].map(Math.abs));
}
