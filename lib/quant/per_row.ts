/**
 * The CPU twin of the multi-row GEMVs (`gemv_rows` in each kernel file): every activation row
 * multiplied as if it were alone, as a decode step multiplies it. For the weight-only formats
 * that is the ordinary product; for the int8 formats it differs from a batch product, which
 * takes one per-tensor scale (int8-absmax) or one outlier column set (LLM.int8()) over all rows.
 *
 * @module
 */

import { matmulQuantized, type QuantizedWeight, type QuantOptions } from "./formats.ts";

/**
 * `y[m, N] = x[m, K] · Wᵀ` one row at a time through {@linkcode matmulQuantized}: the reference
 * for products whose rows must each equal a one-row product (speculative decoding's verify pass).
 *
 * @example
 * ```ts
 * import { quantize } from "./formats.ts";
 * import { matmulPerRow } from "./per_row.ts";
 * const w = quantize("int8-absmax", new Float32Array([1, 2, 3, 4]), 1, 4);
 * matmulPerRow(new Float32Array([1, 0, 0, 0, 0, 0, 0, 9]), 2, w).length; // 2
 * ```
 */
export function matmulPerRow(
  x: Float32Array,
  m: number,
  w: QuantizedWeight,
  options: QuantOptions = {},
): Float32Array {
  const y = new Float32Array(m * w.n);
  for (let r = 0; r < m; r++) {
    const row = x.subarray(r * w.k, (r + 1) * w.k);
    y.set(matmulQuantized(row, 1, w, options), r * w.n);
  }
  return y;
}
