/**
 * The integer arithmetic shared by the int8 formats (per-tensor absmax, vector-wise,
 * LLM.int8()), written to match what a fused WGSL kernel computes step by step in f32:
 *
 * - code: `round(x * (127 / absmax))` with round-half-even (`torch.round`, WGSL `round()`),
 *   clamped to [-127, 127]; an all-zero row (absmax 0) gets all-zero codes instead of NaN.
 * - product: `acc = Σ_k xq[m,k] · wq[n,k]` in int32 (exact: |acc| ≤ 127²·K < 2³¹ for
 *   K < 133 000), then `y = f32(acc) * (sx[m] * sw[n]) * (1 / 127²)`, each step in f32.
 *   bitsandbytes' `int8_mm_dequant` does the same with the constant 6.200124e-05, which is
 *   1.8e-5 relatively off 1/127²; we use the exact value.
 * - dequantization: `code * absmax * (1 / 127)` in f32, as bitsandbytes'
 *   `int8_vectorwise_dequant`.
 *
 * @module
 */

/** 1/127 rounded to f32. */
const INV_127 = Math.fround(1 / 127);
/** 1/127² rounded to f32. */
const INV_127_SQ = Math.fround(1 / (127 * 127));

/**
 * The f32 multiplier that maps `[-absmax, absmax]` onto `[-127, 127]`, or 0 for an all-zero
 * vector (so its codes are all zero rather than NaN).
 *
 * @example
 * ```ts
 * import { int8Scale } from "./int8_codes.ts";
 * int8Scale(127); // 1
 * int8Scale(0); // 0
 * ```
 */
export function int8Scale(absmax: number): number {
  return absmax > 0 ? Math.fround(127 / absmax) : 0;
}

/**
 * One int8 code: `round(x * scale)` (half to even, in f32), clamped to [-127, 127].
 *
 * @example
 * ```ts
 * import { int8Code, int8Scale } from "./int8_codes.ts";
 * int8Code(0.5, int8Scale(1)); // 64 (63.5 rounds to even)
 * ```
 */
export function int8Code(x: number, scale: number): number {
  const v = Math.fround(x * scale);
  const r = Math.round(v);
  const q = r - v === 0.5 && r % 2 !== 0 ? r - 1 : r;
  return q > 127 ? 127 : q < -127 ? -127 : q;
}

/**
 * Dequantizes one code: `code * absmax * (1/127)` in f32.
 *
 * @example
 * ```ts
 * import { int8Dequant } from "./int8_codes.ts";
 * int8Dequant(127, 2.5); // 2.5
 * ```
 */
export function int8Dequant(code: number, absmax: number): number {
  return Math.fround(Math.fround(code * absmax) * INV_127);
}

/**
 * Largest |value| in `values[start, end)`.
 *
 * @example
 * ```ts
 * import { absmaxOf } from "./int8_codes.ts";
 * absmaxOf(new Float32Array([1, -3, 2]), 0, 3); // 3
 * ```
 */
export function absmaxOf(values: ArrayLike<number>, start: number, end: number): number {
  let m = 0;
  for (let i = start; i < end; i++) {
    const a = Math.abs(values[i]);
    if (a > m) m = a;
  }
  return m;
}

/**
 * Exact int32 product of int8 matrices: `acc[M, N] = A[M, K] · B[N, K]ᵀ`
 * (bitsandbytes' `int8_linear_matmul`).
 *
 * @example
 * ```ts
 * import { int8Gemm } from "./int8_codes.ts";
 * int8Gemm(new Int8Array([1, 2]), 1, new Int8Array([3, -4]), 1, 2); // Int32Array [-5]
 * ```
 */
export function int8Gemm(a: Int8Array, m: number, b: Int8Array, n: number, k: number): Int32Array {
  const acc = new Int32Array(m * n);
  for (let i = 0; i < m; i++) {
    const ao = i * k;
    for (let j = 0; j < n; j++) {
      const bo = j * k;
      let s = 0;
      for (let t = 0; t < k; t++) s += a[ao + t] * b[bo + t];
      acc[i * n + j] = s;
    }
  }
  return acc;
}

/**
 * Rescales an int32 product: `y[m, n] = f32(acc) * (rowStats[m] * colStats[n]) * (1/127²)`,
 * each step rounded to f32 (bitsandbytes' `int8_mm_dequant`).
 *
 * @example
 * ```ts
 * import { int8MmDequant } from "./int8_codes.ts";
 * int8MmDequant(new Int32Array([16129]), 1, 1, new Float32Array([2]), new Float32Array([3]));
 * // Float32Array [6]
 * ```
 */
export function int8MmDequant(
  acc: Int32Array,
  m: number,
  n: number,
  rowStats: Float32Array,
  colStats: Float32Array,
): Float32Array {
  const y = new Float32Array(m * n);
  for (let i = 0; i < m; i++) {
    for (let j = 0; j < n; j++) {
      const s = Math.fround(rowStats[i] * colStats[j]);
      y[i * n + j] = Math.fround(Math.fround(acc[i * n + j] * s) * INV_127_SQ);
    }
  }
  return y;
}
