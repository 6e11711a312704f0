/**
 * How far one model's next-token distributions are from a reference's: KL divergence and top-1
 * agreement, row by row over `[rows, vocab]` logits.
 *
 * @module
 */

import { argmax } from "../model/sampling.ts";
import { logSumExp } from "./perplexity.ts";

/**
 * KL(P ‖ Q) in nats between the softmax distributions of two logits rows, P the reference.
 *
 * @example
 * ```ts
 * import { klDivergence } from "./divergence.ts";
 * klDivergence([1, 2, 3], [1, 2, 3]); // 0
 * ```
 */
export function klDivergence(reference: ArrayLike<number>, test: ArrayLike<number>): number {
  if (reference.length !== test.length) {
    throw new RangeError(`logits rows differ in length: ${reference.length} vs ${test.length}`);
  }
  const lp = logSumExp(reference);
  const lq = logSumExp(test);
  let kl = 0;
  for (let i = 0; i < reference.length; i++) {
    const logP = reference[i] - lp;
    const p = Math.exp(logP);
    if (p > 0) kl += p * (logP - (test[i] - lq));
  }
  return Math.max(0, kl);
}

/** Summary of {@linkcode compareLogits}. */
export interface LogitsComparison {
  /** Rows compared. */
  rows: number;
  /** Mean KL(reference ‖ test) in nats. */
  meanKl: number;
  /** Largest per-row KL. */
  maxKl: number;
  /** Fraction of rows whose argmax agrees. */
  top1Agreement: number;
}

/**
 * Compares `[rows, vocab]` logits of a model against a reference's.
 *
 * @example
 * ```ts
 * import { compareLogits } from "./divergence.ts";
 * const a = new Float32Array([0, 1, 1, 0]);
 * compareLogits(a, a, 2); // { rows: 2, meanKl: 0, maxKl: 0, top1Agreement: 1 }
 * ```
 */
export function compareLogits(
  reference: Float32Array,
  test: Float32Array,
  vocab: number,
): LogitsComparison {
  if (reference.length !== test.length || reference.length % vocab !== 0) {
    throw new RangeError(
      `logits of ${reference.length} and ${test.length} values are not both [rows, ${vocab}]`,
    );
  }
  const rows = reference.length / vocab;
  let sum = 0;
  let max = 0;
  let agree = 0;
  for (let r = 0; r < rows; r++) {
    const p = reference.subarray(r * vocab, (r + 1) * vocab);
    const q = test.subarray(r * vocab, (r + 1) * vocab);
    const kl = klDivergence(p, q);
    sum += kl;
    max = Math.max(max, kl);
    if (argmax(p) === argmax(q)) agree++;
  }
  return {
    rows,
    meanKl: rows ? sum / rows : 0,
    maxKl: max,
    top1Agreement: rows ? agree / rows : 0,
  };
}
