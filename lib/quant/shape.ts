/**
 * Shape checks with errors that name the format, the shape and the requirement, so that a
 * caller who passes a 4095-wide matrix learns what to change.
 *
 * @module
 */

/**
 * Throws unless `data` holds exactly `rows * cols` values and both are positive integers.
 *
 * @example
 * ```ts
 * import { checkMatrix } from "./shape.ts";
 * checkMatrix("nf4", "weight W [N, K]", new Float32Array(8), 2, 4); // ok
 * ```
 */
export function checkMatrix(
  format: string,
  what: string,
  data: ArrayLike<number>,
  rows: number,
  cols: number,
): void {
  if (!Number.isInteger(rows) || !Number.isInteger(cols) || rows <= 0 || cols <= 0) {
    throw new Error(`${format}: ${what} has invalid shape [${rows}, ${cols}]`);
  }
  if (data.length !== rows * cols) {
    throw new Error(
      `${format}: ${what} has ${data.length} values but its shape [${rows}, ${cols}] ` +
        `needs ${rows * cols}`,
    );
  }
}

/**
 * Throws unless `value` is a multiple of `multiple`; `why` says what needs it.
 *
 * @example
 * ```ts
 * import { checkMultiple } from "./shape.ts";
 * checkMultiple("q8_0", "K (in_features)", 64, 32, "groups of 32 along K", "W [N=8, K=64]");
 * ```
 */
export function checkMultiple(
  format: string,
  name: string,
  value: number,
  multiple: number,
  why: string,
  shape: string,
): void {
  if (value % multiple !== 0) {
    throw new Error(
      `${format}: ${name} = ${value} must be a multiple of ${multiple} (${why}); got ${shape}`,
    );
  }
}

/**
 * Throws unless the activation row length matches the weight's `K`.
 *
 * @example
 * ```ts
 * import { checkActivations } from "./shape.ts";
 * checkActivations("fp16", new Float32Array(8), 2, 4); // ok: X is [2, 4]
 * ```
 */
export function checkActivations(format: string, x: Float32Array, m: number, k: number): void {
  if (!Number.isInteger(m) || m <= 0 || x.length !== m * k) {
    throw new Error(
      `${format}: activations X have ${x.length} values but must be [M=${m}, K=${k}] ` +
        `(K = the weight's in_features)`,
    );
  }
}
