/**
 * Error metrics between a quantized reconstruction (or product) and its reference, with the
 * definitions bitsandbytes' tests use where they have one.
 *
 * @module
 */

function checkLengths(what: string, a: ArrayLike<number>, b: ArrayLike<number>): void {
  if (a.length !== b.length || a.length === 0) {
    throw new Error(`${what}: lengths ${a.length} and ${b.length} must be equal and non-zero`);
  }
}

/**
 * Mean of `|approx - ref|`.
 *
 * @example
 * ```ts
 * import { meanAbsError } from "./stats.ts";
 * meanAbsError([1, 2], [1.5, 2]); // 0.25
 * ```
 */
export function meanAbsError(approx: ArrayLike<number>, ref: ArrayLike<number>): number {
  checkLengths("meanAbsError", approx, ref);
  let s = 0;
  for (let i = 0; i < ref.length; i++) s += Math.abs(approx[i] - ref[i]);
  return s / ref.length;
}

/**
 * Largest `|approx - ref|`.
 *
 * @example
 * ```ts
 * import { maxAbsError } from "./stats.ts";
 * maxAbsError([1, 2], [1.5, 2]); // 0.5
 * ```
 */
export function maxAbsError(approx: ArrayLike<number>, ref: ArrayLike<number>): number {
  checkLengths("maxAbsError", approx, ref);
  let m = 0;
  for (let i = 0; i < ref.length; i++) m = Math.max(m, Math.abs(approx[i] - ref[i]));
  return m;
}

/**
 * Mean elementwise relative error `mean(|approx - ref| / (|ref| + eps))`, as bitsandbytes'
 * `test_4bit_quant` computes it (`eps = 1e-8`). Dominated by the small elements of `ref`: a
 * per-element measure, not the error of the tensor as a whole (see
 * {@linkcode relativeFrobeniusError}).
 *
 * @example
 * ```ts
 * import { meanRelativeError } from "./stats.ts";
 * meanRelativeError([1.1, 2], [1, 2]); // ≈ 0.05
 * ```
 */
export function meanRelativeError(
  approx: ArrayLike<number>,
  ref: ArrayLike<number>,
  eps = 1e-8,
): number {
  checkLengths("meanRelativeError", approx, ref);
  let s = 0;
  for (let i = 0; i < ref.length; i++) s += Math.abs(approx[i] - ref[i]) / (Math.abs(ref[i]) + eps);
  return s / ref.length;
}

/**
 * Relative Frobenius error `‖approx - ref‖₂ / ‖ref‖₂` over all elements.
 *
 * @example
 * ```ts
 * import { relativeFrobeniusError } from "./stats.ts";
 * relativeFrobeniusError([3, 4.5], [3, 4]); // 0.1
 * ```
 */
export function relativeFrobeniusError(approx: ArrayLike<number>, ref: ArrayLike<number>): number {
  checkLengths("relativeFrobeniusError", approx, ref);
  let num = 0;
  let den = 0;
  for (let i = 0; i < ref.length; i++) {
    num += (approx[i] - ref[i]) ** 2;
    den += ref[i] ** 2;
  }
  return Math.sqrt(num / den);
}

/**
 * Cosine similarity of two vectors (1 = same direction); 0 when either is all zero.
 *
 * @example
 * ```ts
 * import { cosineSimilarity } from "./stats.ts";
 * cosineSimilarity([1, 0], [1, 1]); // ≈ 0.7071
 * ```
 */
export function cosineSimilarity(a: ArrayLike<number>, b: ArrayLike<number>): number {
  checkLengths("cosineSimilarity", a, b);
  let ab = 0;
  let aa = 0;
  let bb = 0;
  for (let i = 0; i < a.length; i++) {
    ab += a[i] * b[i];
    aa += a[i] * a[i];
    bb += b[i] * b[i];
  }
  return aa === 0 || bb === 0 ? 0 : ab / Math.sqrt(aa * bb);
}
