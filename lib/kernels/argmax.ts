/**
 * Argmax over the last axis (`kernels/argmax.wgsl`), for greedy decoding, and its CPU twin.
 *
 * @module
 */

import { type Binding, type CommandBatch, grid, params } from "../gpu/batch.ts";
import type { Gpu } from "../gpu/device.ts";
import { requireBytes } from "./chunks.ts";

/**
 * Reference argmax of each row of `logits` `[rows, n]`: the first index of the largest value,
 * like `numpy.argmax`, or {@linkcode ARGMAX_NONFINITE} for a row holding a NaN or an infinity
 * (the kernel's flag that the logits are unusable).
 *
 * @example
 * ```ts
 * import { cpuArgmax } from "./argmax.ts";
 * cpuArgmax(new Float32Array([1, 3, 3, 0]), 1, 4); // Uint32Array [1]
 * ```
 */
export function cpuArgmax(logits: Float32Array, rows: number, n: number): Uint32Array {
  const out = new Uint32Array(rows);
  for (let r = 0; r < rows; r++) {
    let best = 0;
    let finite = true;
    for (let i = 0; i < n; i++) {
      const v = logits[r * n + i];
      if (!Number.isFinite(v)) finite = false;
      else if (v > logits[r * n + best]) best = i;
    }
    out[r] = finite ? best : ARGMAX_NONFINITE;
  }
  return out;
}

/** What argmax gives for a row of logits holding a NaN or an infinity. */
export const ARGMAX_NONFINITE = 0xffffffff;

/** The argmax kernel; see {@linkcode createArgmax}. */
export interface Argmax {
  /** Records `out[r] = argmax(logits[r, :n])` for `rows` rows (out: u32). */
  encode(batch: CommandBatch, logits: Binding, out: Binding, rows: number, n: number): void;
}

/**
 * Compiles the argmax kernel.
 *
 * @example
 * ```ts ignore
 * const argmax = await createArgmax(gpu);
 * argmax.encode(batch, logits, nextToken, 1, vocab);
 * ```
 */
export async function createArgmax(gpu: Gpu, opts: { workgroupSize?: number } = {}): Promise<
  Argmax
> {
  const wg = opts.workgroupSize ?? 256;
  if (wg & (wg - 1)) throw new RangeError(`argmax: workgroup size ${wg} is not a power of two`);
  const kernel = await gpu.kernel({ file: "argmax", entry: "argmax", constants: { WG: wg } });
  return {
    encode(batch, logits, out, rows, n) {
      if (n < 1) throw new RangeError("argmax of an empty row");
      requireBytes(logits, rows * n * 4, "argmax logits");
      requireBytes(out, rows * 4, "argmax out");
      batch.dispatch(kernel, [logits, out], grid(rows), params().u32(rows).u32(n).build());
    },
  };
}
