/**
 * Logits checked for NaN and infinity where it costs nothing: on the CPU when they are read
 * back anyway, and on the GPU by the argmax kernel, which flags such a row instead of picking a
 * token from it.
 *
 * @module
 */

import { ARGMAX_NONFINITE } from "../kernels/argmax.ts";

/** Why logits stop being finite, for the messages below. */
const CAUSE = "an activation overflowed (f16 range) or a weight is corrupt";

/**
 * Throws unless every value of `logits` (`rows` rows of `vocab`) is finite; the message names
 * `what` was running, the row, the first bad value and the format.
 *
 * @example
 * ```ts
 * import { checkLogits } from "./finite.ts";
 * checkLogits(new Float32Array([0.5, -1]), 1, 2, "forward", "fp16"); // fine
 * ```
 */
export function checkLogits(
  logits: Float32Array,
  rows: number,
  vocab: number,
  what: string,
  format: string,
): void {
  for (let i = 0; i < rows * vocab; i++) {
    // One comparison per value: x - x is 0 for finite x and NaN otherwise.
    if (logits[i] - logits[i] === 0) continue;
    const row = Math.floor(i / vocab);
    let count = 0;
    for (let j = row * vocab; j < (row + 1) * vocab; j++) if (!Number.isFinite(logits[j])) count++;
    throw new Error(
      `${what}: the logits of row ${row} hold ${count} non-finite value${count === 1 ? "" : "s"} ` +
        `(first: ${logits[i]} for token ${i - row * vocab}) in the ${format} model; ${CAUSE}`,
    );
  }
}

/**
 * Throws when a token the argmax kernel produced is its non-finite flag (or out of range).
 *
 * @example
 * ```ts
 * import { checkArgmaxToken } from "./finite.ts";
 * checkArgmaxToken(5, 32000, "forwardGreedy", "nf4"); // fine
 * ```
 */
export function checkArgmaxToken(
  token: number,
  vocab: number,
  what: string,
  format: string,
): void {
  if (token === ARGMAX_NONFINITE) {
    throw new Error(`${what}: the logits hold NaN or infinity in the ${format} model; ${CAUSE}`);
  }
  if (token >= vocab) throw new Error(`${what}: argmax gave token ${token} of ${vocab}`);
}
