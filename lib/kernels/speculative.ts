/**
 * The acceptance step of greedy speculative decoding on the GPU (`kernels/speculative.wgsl`) and
 * its CPU twin: what lets rounds of draft and verify passes run back to back with nothing read
 * back between them (`lib/model/speculative.ts`).
 *
 * @module
 */

import { type Binding, type CommandBatch, params } from "../gpu/batch.ts";
import type { Gpu } from "../gpu/device.ts";
import { requireBytes } from "./chunks.ts";

/** What one acceptance step does; see {@linkcode cpuAccept}. */
export interface AcceptStep {
  /** Draft tokens kept. */
  kept: number;
  /** The round's record: kept, the kept proposals, then the target's next token. */
  record: Uint32Array;
  /** The target's next input: `[next]` in word 0, the rest as they were. */
  targetIds: Uint32Array;
  /** The draft's next two inputs: the token before `next`, and `next`. */
  draftIds: [number, number];
  /** The target's position after the round. */
  targetPos: number;
  /** The draft's position after the round (one less: it re-feeds the token before `next`). */
  draftPos: number;
}

/**
 * Reference acceptance step. `targetIds` is the verify pass's input `[last, d₁ .. d_k]`, `best`
 * the target's argmax after each (`k + 1` of them). Proposals are kept while `d_i = best[i−1]`
 * (with `forced`, the first `forced` whatever they are: a benchmark's simulated acceptance),
 * and `next = best[kept]`.
 *
 * @example
 * ```ts
 * import { cpuAccept } from "./speculative.ts";
 * const s = cpuAccept(new Uint32Array([7, 3, 4]), new Uint32Array([3, 5, 6]), 2, 10);
 * s.kept; // 1: d₁ = 3 matches, d₂ = 4 is not the 5 the target wants
 * [...s.record]; // [1, 3, 5]
 * s.draftIds; // [3, 5]
 * s.targetPos; // 12
 * ```
 */
export function cpuAccept(
  targetIds: Uint32Array,
  best: Uint32Array,
  k: number,
  targetPos: number,
  forced?: number,
): AcceptStep {
  let kept = 0;
  if (forced === undefined) { while (kept < k && targetIds[kept + 1] === best[kept]) kept++; }
  else kept = Math.min(forced, k);
  const next = best[kept];
  const record = new Uint32Array(kept + 2);
  record[0] = kept;
  record.set(targetIds.subarray(1, kept + 1), 1);
  record[kept + 1] = next;
  const ids = targetIds.slice();
  ids[0] = next;
  const pos = targetPos + 1 + kept;
  return {
    kept,
    record,
    targetIds: ids,
    draftIds: [targetIds[kept], next],
    targetPos: pos,
    draftPos: pos - 1,
  };
}

/** The buffers one acceptance step reads and writes; see {@linkcode Accept.encode}. */
export interface AcceptBuffers {
  /** u32, the verify pass's input `[last, d₁ .. d_k]`; word 0 becomes `next`. */
  targetIds: Binding;
  /** u32 `[k + 1]`, the target's argmaxes. */
  best: Binding;
  /** u32, the draft's input; words 0 and 1 become the token before `next` and `next`. */
  draftIds: Binding;
  /** One u32: the target's start position on the GPU. */
  targetPos: Binding;
  /** One u32: the draft's start position on the GPU. */
  draftPos: Binding;
  /** u32; the round's record goes at word `slot` (`k + 2` words at most). */
  record: Binding;
}

/** The acceptance kernel; see {@linkcode createAccept}. */
export interface Accept {
  /**
   * Records one acceptance step of `k` proposals, its record at word `slot` of `b.record`
   * (with `forced`: keep that many proposals, as {@linkcode cpuAccept}).
   */
  encode(batch: CommandBatch, b: AcceptBuffers, k: number, slot: number, forced?: number): void;
}

/**
 * Compiles the acceptance kernel.
 *
 * @example
 * ```ts ignore
 * const accept = await createAccept(gpu);
 * accept.encode(batch, { targetIds, best, draftIds, targetPos, draftPos, record }, 4, 0);
 * ```
 */
export async function createAccept(gpu: Gpu): Promise<Accept> {
  const kernel = await gpu.kernel({ file: "speculative", entry: "accept" });
  return {
    encode(batch, b, k, slot, forced) {
      if (!Number.isInteger(k) || k < 1) throw new RangeError(`accept: k = ${k}, not ≥ 1`);
      if (forced !== undefined && !(Number.isInteger(forced) && forced >= 0)) {
        throw new RangeError(`accept: forced = ${forced}, not a count`);
      }
      requireBytes(b.targetIds, (k + 1) * 4, "accept targetIds");
      requireBytes(b.best, (k + 1) * 4, "accept best");
      requireBytes(b.draftIds, 8, "accept draftIds");
      requireBytes(b.targetPos, 4, "accept targetPos");
      requireBytes(b.draftPos, 4, "accept draftPos");
      requireBytes(b.record, (slot + k + 2) * 4, "accept record");
      const p = params().u32(k).u32(slot).u32(forced ?? 0xffffffff).build();
      batch.dispatch(
        kernel,
        [b.targetIds, b.best, b.draftIds, b.targetPos, b.draftPos, b.record],
        1,
        p,
      );
    },
  };
}
