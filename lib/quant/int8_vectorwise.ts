/**
 * Vector-wise INT8 (the LLM.int8() paper's "vector-wise quantization", bitsandbytes'
 * `int8_vectorwise_quant`): one absmax per row of the weight — per output channel, bitsandbytes'
 * `SCB` — and, at product time, one absmax per row of the activations (per token).
 *
 * Packed layout (`Int8VectorwiseWeight`):
 * - `codes` (`Uint32Array`, `N * K / 4` words): row-major `W[N, K]` as int8, four per `u32`,
 *   flat element `4i` in the lowest byte, two's complement. `K` must be a multiple of 4, so
 *   row `n` is words `[n * K/4, (n+1) * K/4)`.
 * - `scb` (`Float32Array`, length `N`): `scb[n] = max_k |W[n, k]|`; `W[n, k] ≈ code * scb[n] / 127`.
 *
 * Product (`matmulInt8Vectorwise`): `xq = round(X[m, k] * 127 / sx[m])` with
 * `sx[m] = max_k |X[m, k]|`, `acc = Σ_k xq · wq` in int32, `y = acc · (sx[m] · scb[n]) / 127²`
 * (see `int8_codes.ts` for the exact f32 steps).
 *
 * Bits per parameter: `8 + 32 / K`.
 *
 * @module
 */

import { packInt8, unpackInt8 } from "./pack.ts";
import { checkActivations, checkMatrix, checkMultiple } from "./shape.ts";
import { int8Code, int8Dequant, int8Gemm, int8MmDequant, int8Scale } from "./int8_codes.ts";

/**
 * A weight matrix `W[N, K]` quantized to int8 with one absmax per row.
 *
 * @example
 * ```ts
 * import { type Int8VectorwiseWeight, quantizeInt8Vectorwise } from "./int8_vectorwise.ts";
 * const w: Int8VectorwiseWeight = quantizeInt8Vectorwise(new Float32Array(8).fill(1), 2, 4);
 * ```
 */
export interface Int8VectorwiseWeight {
  /** Format tag. */
  format: "int8-vectorwise";
  /** Rows: output features. */
  n: number;
  /** Columns: input features (multiple of 4). */
  k: number;
  /** int8 codes, four per `u32`, element `4i` in the lowest byte. */
  codes: Uint32Array;
  /** Per-row absmax (bitsandbytes' `SCB`), length `N`. */
  scb: Float32Array;
}

/**
 * Row-wise int8 quantization of a matrix, as bitsandbytes' `int8_vectorwise_quant`.
 *
 * @example
 * ```ts
 * import { int8VectorwiseQuant } from "./int8_vectorwise.ts";
 * const q = int8VectorwiseQuant(new Float32Array([1, 2, 8, 0]), 1, 4, 6);
 * q.rowStats[0]; // 2 (the 8 is an outlier, left out of the absmax)
 * q.outlierCols; // Uint32Array [2]
 * ```
 */
export interface Int8RowQuant {
  /** int8 codes of `A[rows, cols]`, four per `u32`; zero in every outlier column. */
  codes: Uint32Array;
  /** Per-row absmax over the non-outlier elements, length `rows`. */
  rowStats: Float32Array;
  /** Ascending indices of the columns holding any |a| ≥ threshold (empty without one). */
  outlierCols: Uint32Array;
}

/**
 * Quantizes each row of `A[rows, cols]` to int8 with its own absmax, as bitsandbytes'
 * `int8_vectorwise_quant(A, threshold)`: with `threshold > 0`, elements with
 * `|a| ≥ threshold` are left out of their row's absmax, and every column that holds one such
 * element (an outlier column) gets zero codes in all rows — the caller multiplies those columns
 * in higher precision. bitsandbytes casts `A` to f16 first; we quantize the f32 values as given.
 *
 * @example
 * ```ts
 * import { int8VectorwiseQuant } from "./int8_vectorwise.ts";
 * int8VectorwiseQuant(new Float32Array([1, -2, 0.5, 0]), 1, 4).rowStats[0]; // 2
 * ```
 */
export function int8VectorwiseQuant(
  a: Float32Array,
  rows: number,
  cols: number,
  threshold = 0,
): Int8RowQuant {
  checkMatrix("int8-vectorwise", "matrix [rows, cols]", a, rows, cols);
  checkMultiple(
    "int8-vectorwise",
    "cols",
    cols,
    4,
    "four int8 codes per u32",
    `[${rows}, ${cols}]`,
  );
  const isOutlierCol = new Uint8Array(cols);
  const rowStats = new Float32Array(rows);
  for (let r = 0; r < rows; r++) {
    let m = 0;
    for (let c = 0; c < cols; c++) {
      const v = Math.abs(a[r * cols + c]);
      if (threshold > 0 && v >= threshold) isOutlierCol[c] = 1;
      else if (v > m) m = v;
    }
    rowStats[r] = m;
  }
  const codes = new Int8Array(rows * cols);
  for (let r = 0; r < rows; r++) {
    const scale = int8Scale(rowStats[r]);
    for (let c = 0; c < cols; c++) {
      if (!isOutlierCol[c]) codes[r * cols + c] = int8Code(a[r * cols + c], scale);
    }
  }
  const outlierCols: number[] = [];
  for (let c = 0; c < cols; c++) if (isOutlierCol[c]) outlierCols.push(c);
  return { codes: packInt8(codes), rowStats, outlierCols: Uint32Array.from(outlierCols) };
}

/**
 * Quantizes `W[N, K]` row-wise (per output channel).
 *
 * @example
 * ```ts
 * import { quantizeInt8Vectorwise } from "./int8_vectorwise.ts";
 * quantizeInt8Vectorwise(new Float32Array([1, 2, 3, 4, 0, 0, 0, -8]), 2, 4).scb;
 * // Float32Array [4, 8]
 * ```
 */
export function quantizeInt8Vectorwise(
  w: Float32Array,
  n: number,
  k: number,
): Int8VectorwiseWeight {
  checkMatrix("int8-vectorwise", "weight W [N, K]", w, n, k);
  checkMultiple(
    "int8-vectorwise",
    "K (in_features)",
    k,
    4,
    "four int8 codes per u32",
    `W [N=${n}, K=${k}]`,
  );
  const q = int8VectorwiseQuant(w, n, k, 0);
  return { format: "int8-vectorwise", n, k, codes: q.codes, scb: q.rowStats };
}

/**
 * Reconstructs `W[n, k] ≈ code * scb[n] / 127`.
 *
 * @example
 * ```ts
 * import { dequantizeInt8Vectorwise, quantizeInt8Vectorwise } from "./int8_vectorwise.ts";
 * const w = quantizeInt8Vectorwise(new Float32Array([1, 2, 3, 4]), 1, 4);
 * dequantizeInt8Vectorwise(w)[3]; // 4
 * ```
 */
export function dequantizeInt8Vectorwise(
  w: { n: number; k: number; codes: Uint32Array; scb: Float32Array },
): Float32Array {
  const codes = unpackInt8(w.codes);
  const out = new Float32Array(w.n * w.k);
  for (let r = 0; r < w.n; r++) {
    for (let c = 0; c < w.k; c++) out[r * w.k + c] = int8Dequant(codes[r * w.k + c], w.scb[r]);
  }
  return out;
}

/**
 * CPU twin of the vector-wise int8 product: `X` quantized per row (token), int32 accumulation,
 * rescaled by `sx[m] · scb[n] / 127²`. No outlier decomposition (see `llm_int8.ts`).
 *
 * @example
 * ```ts
 * import { matmulInt8Vectorwise, quantizeInt8Vectorwise } from "./int8_vectorwise.ts";
 * const w = quantizeInt8Vectorwise(new Float32Array([1, 0, 0, 0]), 1, 4);
 * matmulInt8Vectorwise(new Float32Array([3, 0, 0, 0]), 1, w); // Float32Array [3]
 * ```
 */
export function matmulInt8Vectorwise(
  x: Float32Array,
  m: number,
  w: { n: number; k: number; codes: Uint32Array; scb: Float32Array },
): Float32Array {
  checkActivations("int8-vectorwise", x, m, w.k);
  const q = int8VectorwiseQuant(x, m, w.k, 0);
  const acc = int8Gemm(unpackInt8(q.codes), m, unpackInt8(w.codes), w.n, w.k);
  return int8MmDequant(acc, m, w.n, q.rowStats, w.scb);
}
