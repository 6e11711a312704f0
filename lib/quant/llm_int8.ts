/**
 * LLM.int8() (Dettmers et al., 2022): vector-wise int8 with a mixed-precision decomposition.
 * Hidden dimensions where the activations hold an outlier (|x| ≥ threshold, default 6.0) are
 * multiplied in 16-bit; the rest go through the int8 product.
 *
 * We follow bitsandbytes' `MatMul8bitLt` (through `int8_vectorwise_quant` and
 * `int8_mixed_scaled_mm`), which differs from the paper in one place:
 *
 * - **outlier columns**: every column `k` with any `|X[m, k]| ≥ threshold`. Outlier elements
 *   are left out of their row's absmax, and the whole column is zeroed in the int8 codes.
 * - **int8 part**: exactly the vector-wise product of `int8_vectorwise.ts` on those codes.
 * - **outlier part**: `X[:, outliers]` rounded to f16 times `W[:, outliers]`. bitsandbytes
 *   keeps no FP16 copy of the weights, so it uses the int8-dequantized columns; that is our
 *   default, `outlierWeights: "dequantized"`. bitsandbytes rounds each dequantized weight to
 *   f16, `f16(code * SCB[n] / 127)`; we do not: the outlier part is
 *   `(Σ_k f16(X[m, k]) · code[n, k]) · SCB[n] / 127`, the scale applied to the sum as in the
 *   int8 part. That lets the GPU compute the sum exactly in integers over the weight codes the
 *   int8 part loads anyway (`kernels/q_int8.wgsl`, the dense outlier sum), and differs from
 *   bitsandbytes by at most 2⁻¹¹ relative per outlier weight (its f16 rounding).
 *   The paper multiplies the outliers with FP16 weights. That needs FP16 copies of the
 *   columns, which we keep only for columns chosen at quantization time
 *   (`quantizeLlmInt8(..., { fp16Columns })`, e.g. from {@linkcode findOutlierColumns} on
 *   calibration activations, since outlier dimensions are stable across tokens) and use with
 *   `outlierWeights: "fp16"`; an outlier column without a kept copy falls back to the
 *   dequantized one. The copies cost `16 N + 32` bits per kept column.
 *
 * The outlier sum is accumulated in f64 and added to the f32 int8 result; bitsandbytes adds
 * it in f16 (`addmm`), we keep f32 activations and outputs throughout.
 *
 * Packed layout (`LlmInt8Weight`): `codes` and `scb` exactly as `int8_vectorwise.ts` (int8
 * four per `u32`, element `4i` lowest byte; `scb` f32 per row), plus
 * - `fp16Columns` (`Uint32Array`, length `C`, ascending): the kept column indices;
 * - `fp16Weights` (`Uint32Array`, `C * N / 2` words): `W[:, fp16Columns[j]]` as f16 pairs,
 *   column after column (flat element `j * N + n`, element `2i` in the low half of word `i`).
 *   `N` must be even when columns are kept.
 *
 * Bits per parameter: `8 + 32 / K + C * (16 N + 32) / (N K)`.
 *
 * @module
 */

import { f16BitsToF32, f32ToF16Bits, packF16Pairs } from "../gpu/f16.ts";
import { int8Dequant, int8Gemm, int8MmDequant } from "./int8_codes.ts";
import { int8VectorwiseQuant, quantizeInt8Vectorwise } from "./int8_vectorwise.ts";
import { unpackInt8 } from "./pack.ts";
import { checkActivations, checkMatrix, checkMultiple } from "./shape.ts";

/**
 * A weight matrix quantized for LLM.int8(): vector-wise int8 plus optional FP16 columns.
 *
 * @example
 * ```ts
 * import { type LlmInt8Weight, quantizeLlmInt8 } from "./llm_int8.ts";
 * const w: LlmInt8Weight = quantizeLlmInt8(new Float32Array(8).fill(0.5), 2, 4);
 * ```
 */
export interface LlmInt8Weight {
  /** Format tag. */
  format: "llm-int8";
  /** Rows: output features. */
  n: number;
  /** Columns: input features (multiple of 4). */
  k: number;
  /** int8 codes, four per `u32`, element `4i` in the lowest byte. */
  codes: Uint32Array;
  /** Per-row absmax (bitsandbytes' `SCB`), length `N`. */
  scb: Float32Array;
  /** Ascending indices of the columns kept in FP16 (empty by default). */
  fp16Columns: Uint32Array;
  /** The kept columns as f16 pairs, column after column (`C * N / 2` words). */
  fp16Weights: Uint32Array;
}

/**
 * Options of {@linkcode quantizeLlmInt8}.
 *
 * @example
 * ```ts
 * import type { LlmInt8QuantizeOptions } from "./llm_int8.ts";
 * const options: LlmInt8QuantizeOptions = { fp16Columns: [3, 17] };
 * ```
 */
export interface LlmInt8QuantizeOptions {
  /** Columns (hidden dimensions) to keep an FP16 copy of, for `outlierWeights: "fp16"`. */
  fp16Columns?: ArrayLike<number>;
}

/**
 * Options of {@linkcode matmulLlmInt8}.
 *
 * @example
 * ```ts
 * import type { LlmInt8Options } from "./llm_int8.ts";
 * const options: LlmInt8Options = { threshold: 6, outlierWeights: "dequantized" };
 * ```
 */
export interface LlmInt8Options {
  /** Outlier threshold on |x|; 0 turns the decomposition off. Default 6.0. */
  threshold?: number;
  /** Which weights multiply the outlier columns. Default `"dequantized"` (bitsandbytes). */
  outlierWeights?: "dequantized" | "fp16";
}

/**
 * Outlier statistics of an activation matrix.
 *
 * @example
 * ```ts
 * import { findOutlierColumns, type OutlierStats } from "./llm_int8.ts";
 * const s: OutlierStats = findOutlierColumns(new Float32Array([1, 9, 1, 1]), 1, 4, 6);
 * ```
 */
export interface OutlierStats {
  /** Ascending indices of the columns with any |x| ≥ threshold. */
  columns: Uint32Array;
  /** Max |x| of each of those columns. */
  maxAbs: Float32Array;
  /** How many rows (tokens) of each of those columns reach the threshold. */
  rowCount: Uint32Array;
}

/** Default outlier threshold, as bitsandbytes' `llm_int8_threshold`. */
export const LLM_INT8_THRESHOLD = 6.0;

/**
 * Finds the outlier columns (hidden dimensions) of `X[M, K]`: those with any
 * `|X[m, k]| ≥ threshold`, with their max |x| and how many rows cross the threshold.
 *
 * @example
 * ```ts
 * import { findOutlierColumns } from "./llm_int8.ts";
 * const s = findOutlierColumns(new Float32Array([1, 9, 1, 1, 0, -7, 0, 0]), 2, 4, 6);
 * s.columns; // Uint32Array [1]
 * s.maxAbs; // Float32Array [9]
 * s.rowCount; // Uint32Array [2]
 * ```
 */
export function findOutlierColumns(
  x: Float32Array,
  m: number,
  k: number,
  threshold: number = LLM_INT8_THRESHOLD,
): OutlierStats {
  checkMatrix("llm-int8", "activations X [M, K]", x, m, k);
  const max = new Float32Array(k);
  const count = new Uint32Array(k);
  for (let i = 0; i < m; i++) {
    for (let c = 0; c < k; c++) {
      const a = Math.abs(x[i * k + c]);
      if (a > max[c]) max[c] = a;
      if (a >= threshold) count[c]++;
    }
  }
  const cols: number[] = [];
  for (let c = 0; c < k; c++) if (count[c] > 0) cols.push(c);
  return {
    columns: Uint32Array.from(cols),
    maxAbs: Float32Array.from(cols, (c) => max[c]),
    rowCount: Uint32Array.from(cols, (c) => count[c]),
  };
}

/**
 * Quantizes `W[N, K]` for LLM.int8(): the vector-wise int8 storage, plus FP16 copies of the
 * columns in `options.fp16Columns` (none by default, as bitsandbytes).
 *
 * @example
 * ```ts
 * import { quantizeLlmInt8 } from "./llm_int8.ts";
 * const w = quantizeLlmInt8(new Float32Array(8).fill(0.5), 2, 4, { fp16Columns: [1] });
 * w.fp16Weights.length; // 1 (two f16 values: W[0, 1] and W[1, 1])
 * ```
 */
export function quantizeLlmInt8(
  w: Float32Array,
  n: number,
  k: number,
  options: LlmInt8QuantizeOptions = {},
): LlmInt8Weight {
  checkMatrix("llm-int8", "weight W [N, K]", w, n, k);
  checkMultiple(
    "llm-int8",
    "K (in_features)",
    k,
    4,
    "four int8 codes per u32",
    `W [N=${n}, K=${k}]`,
  );
  const cols = [...new Set(Array.from(options.fp16Columns ?? []))].sort((a, b) => a - b);
  for (const c of cols) {
    if (!Number.isInteger(c) || c < 0 || c >= k) {
      throw new Error(`llm-int8: fp16 column ${c} is outside [0, K=${k})`);
    }
  }
  if (cols.length > 0) {
    checkMultiple(
      "llm-int8",
      "N (out_features)",
      n,
      2,
      "kept FP16 columns are f16 pairs",
      `W [N=${n}, K=${k}]`,
    );
  }
  const bits = new Uint16Array(cols.length * n);
  cols.forEach((c, j) => {
    for (let r = 0; r < n; r++) bits[j * n + r] = f32ToF16Bits(w[r * k + c]);
  });
  const v = quantizeInt8Vectorwise(w, n, k);
  return {
    format: "llm-int8",
    n,
    k,
    codes: v.codes,
    scb: v.scb,
    fp16Columns: Uint32Array.from(cols),
    fp16Weights: packF16Pairs(bits),
  };
}

/**
 * Reconstructs the int8 weights `code * scb[n] / 127` (the kept FP16 columns are not used:
 * they only enter the product for outlier columns).
 *
 * @example
 * ```ts
 * import { dequantizeLlmInt8, quantizeLlmInt8 } from "./llm_int8.ts";
 * dequantizeLlmInt8(quantizeLlmInt8(new Float32Array([1, 2, 3, 4]), 1, 4))[3]; // 4
 * ```
 */
export function dequantizeLlmInt8(w: LlmInt8Weight): Float32Array {
  const codes = unpackInt8(w.codes);
  const out = new Float32Array(w.n * w.k);
  for (let r = 0; r < w.n; r++) {
    for (let c = 0; c < w.k; c++) out[r * w.k + c] = int8Dequant(codes[r * w.k + c], w.scb[r]);
  }
  return out;
}

/**
 * CPU twin of the LLM.int8() product `Y[M, N] = X[M, K] · Wᵀ` with outlier decomposition (see
 * the module doc for the exact steps). With `threshold: 0` it equals the vector-wise product.
 *
 * @example
 * ```ts
 * import { matmulLlmInt8, quantizeLlmInt8 } from "./llm_int8.ts";
 * const w = quantizeLlmInt8(new Float32Array([1, 0.5, 0, 0]), 1, 4);
 * matmulLlmInt8(new Float32Array([1, 20, 0, 0]), 1, w); // ≈ [11.079]: 1 + 20 · 64/127
 * ```
 */
export function matmulLlmInt8(
  x: Float32Array,
  m: number,
  w: LlmInt8Weight,
  options: LlmInt8Options = {},
): Float32Array {
  const threshold = options.threshold ?? LLM_INT8_THRESHOLD;
  const useFp16 = (options.outlierWeights ?? "dequantized") === "fp16";
  const { n, k } = w;
  checkActivations("llm-int8", x, m, k);
  const wCodes = unpackInt8(w.codes);
  const q = int8VectorwiseQuant(x, m, k, threshold);
  const y = int8MmDequant(int8Gemm(unpackInt8(q.codes), m, wCodes, n, k), m, n, q.rowStats, w.scb);
  const cols = q.outlierCols;
  if (cols.length === 0) return y;

  // Gather the outlier columns once: X[:, cols] in f16, W[:, cols] as the kernel would read it
  // (a kept f16 weight, or code · SCB / 127 not rounded to f16: see the module doc).
  const c = cols.length;
  const xo = new Float64Array(m * c);
  for (let i = 0; i < m; i++) {
    for (let j = 0; j < c; j++) xo[i * c + j] = f16BitsToF32(f32ToF16Bits(x[i * k + cols[j]]));
  }
  const wo = new Float64Array(n * c);
  for (let j = 0; j < c; j++) {
    const kept = useFp16 ? indexOfSorted(w.fp16Columns, cols[j]) : -1;
    for (let r = 0; r < n; r++) {
      wo[r * c + j] = kept >= 0
        ? f16At(w.fp16Weights, kept * n + r)
        : wCodes[r * k + cols[j]] * w.scb[r] / 127;
    }
  }
  for (let i = 0; i < m; i++) {
    for (let r = 0; r < n; r++) {
      let acc = 0;
      for (let j = 0; j < c; j++) acc += xo[i * c + j] * wo[r * c + j];
      y[i * n + r] = y[i * n + r] + acc;
    }
  }
  return y;
}

function f16At(words: Uint32Array, i: number): number {
  return f16BitsToF32((words[i >> 1] >>> (16 * (i & 1))) & 0xffff);
}

function indexOfSorted(sorted: Uint32Array, value: number): number {
  let lo = 0;
  let hi = sorted.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    if (sorted[mid] === value) return mid;
    if (sorted[mid] < value) lo = mid + 1;
    else hi = mid - 1;
  }
  return -1;
}
