/**
 * Drawing the next token on the GPU (`kernels/sample.wgsl`), from the distribution that
 * `createSampler` (lib/model/sampling.ts) draws from, and its CPU twin. Decoding that samples
 * can then feed each token back on the GPU, as greedy decoding feeds its argmax, instead of
 * reading every step's logits back.
 *
 * @module
 */

import { type Binding, type CommandBatch, params } from "../gpu/batch.ts";
import type { Gpu } from "../gpu/device.ts";
import { ARGMAX_NONFINITE } from "./argmax.ts";
import { requireBytes } from "./chunks.ts";

/** What the distribution is: softmax(logits / temperature), cut to the top k, then to mass p. */
export interface SampleSettings {
  /** Above 0 (0 is greedy: use argmax). */
  temperature: number;
  /** Keep the k most likely tokens (ties: lower index first); 0 keeps all. */
  topK: number;
  /** Then keep the smallest set of most likely tokens whose mass reaches p; 1 keeps all. */
  topP: number;
}

/** What {@linkcode cpuSample} drew, and how far the draw was from choosing a neighbour. */
export interface CpuSample {
  /** The token, or {@linkcode ARGMAX_NONFINITE} for a row holding a NaN or an infinity. */
  token: number;
  /**
   * The distance from `u` to the nearest edge of the token's interval of [0, 1), where the
   * running mass of the kept tokens crosses it. Below ~1e-5 the GPU's f32 sums may land on the
   * neighbour.
   */
  margin: number;
}

function checkSettings(s: SampleSettings, what: string): void {
  if (!(s.temperature > 0 && Number.isFinite(s.temperature))) {
    throw new RangeError(`${what}: temperature ${s.temperature} must be above 0 (0 is argmax)`);
  }
  if (!Number.isInteger(s.topK) || s.topK < 0) {
    throw new RangeError(`${what}: topK ${s.topK} must be an integer >= 0`);
  }
  if (!(s.topP > 0 && s.topP <= 1)) {
    throw new RangeError(`${what}: topP ${s.topP} must be in (0, 1]`);
  }
}

/**
 * The kernel's CPU twin, in f64: the kept tokens (the top k, ties lower index first; then the
 * nucleus of mass `topP`, most likely first, ties lower index first) walked in index order with
 * `u` times their mass.
 *
 * @example
 * ```ts
 * import { cpuSample } from "./sample.ts";
 * cpuSample(new Float32Array([0, 1, 2]), { temperature: 1, topK: 2, topP: 1 }, 0.5).token; // 2
 * ```
 */
export function cpuSample(logits: Float32Array, settings: SampleSettings, u: number): CpuSample {
  checkSettings(settings, "cpuSample");
  if (logits.some((v) => !Number.isFinite(v))) return { token: ARGMAX_NONFINITE, margin: 1 };
  const { weight, inOrder } = keptTokens(logits, settings);
  const keptMass = inOrder.reduce((a, i) => a + weight[i], 0);
  const r = u * keptMass;
  let acc = 0;
  for (const i of inOrder) {
    const from = acc;
    acc += weight[i];
    if (acc > r) return { token: i, margin: Math.min(r - from, acc - r) / keptMass };
  }
  return { token: inOrder[inOrder.length - 1], margin: 0 };
}

/** The weights exp((l - max) / T) and the kept tokens (top-k, then the nucleus) in index order. */
function keptTokens(
  logits: Float32Array,
  settings: SampleSettings,
): { weight: number[]; inOrder: number[] } {
  const n = logits.length;
  const max = logits.reduce((a, b) => Math.max(a, b), -Infinity);
  const weight = Array.from(logits, (l) => Math.exp((l - max) / settings.temperature));
  const total = weight.reduce((a, b) => a + b, 0);
  const likelyFirst = [...weight.keys()].sort((a, b) => weight[b] - weight[a] || a - b);
  let kept = settings.topK > 0 && settings.topK < n
    ? likelyFirst.slice(0, settings.topK)
    : likelyFirst;
  if (settings.topP < 1) {
    let mass = 0;
    const reach = kept.findIndex((i) => (mass += weight[i]) >= settings.topP * total);
    if (reach >= 0) kept = kept.slice(0, reach + 1);
  }
  return { weight, inOrder: [...kept].sort((a, b) => a - b) };
}

/**
 * The twin of the filtering kernel ({@linkcode createSampleKernel} with `filter`), in f64: the
 * kept distribution, each kept token's weight over the kept mass and every other token 0.
 *
 * @example
 * ```ts
 * import { cpuKeptDistribution } from "./sample.ts";
 * cpuKeptDistribution(new Float32Array([0, 0, 5]), { temperature: 1, topK: 1, topP: 1 }); // [0, 0, 1]
 * ```
 */
export function cpuKeptDistribution(logits: Float32Array, settings: SampleSettings): Float64Array {
  checkSettings(settings, "cpuKeptDistribution");
  const { weight, inOrder } = keptTokens(logits, settings);
  const mass = inOrder.reduce((a, i) => a + weight[i], 0);
  const out = new Float64Array(logits.length);
  for (const i of inOrder) out[i] = weight[i] / mass;
  return out;
}

/** What {@linkcode cpuChoose} chose for a proposal, and how close the choice came to another. */
export interface CpuChoice {
  /** The proposal itself when kept, else the residual's draw. */
  token: number;
  /** Whether the proposal was kept. */
  kept: boolean;
  /**
   * The smaller of the acceptance's distance (|u_x · q(d) - p(d)| over q(d)) and, for a draw,
   * its distance to an interval's edge over the mass walked; below ~1e-5 f32 may differ.
   */
  margin: number;
}

/**
 * The twin of {@linkcode createChooseKernel}'s step for one proposal `d` drawn from `q`, in f64:
 * keeps `d` when `uAccept · q(d) < p(d)` (probability min(1, p(d) / q(d))), else draws from
 * max(0, p − q) (p if that has no mass) walked in index order with `uResidual`.
 *
 * @example
 * ```ts
 * import { cpuChoose } from "./sample.ts";
 * cpuChoose([0.5, 0.5], [1, 0], 0, 0.9, 0.3).token; // 1: rejected (0.9 · 1 > 0.5), the residual is token 1
 * ```
 */
export function cpuChoose(
  p: ArrayLike<number>,
  q: ArrayLike<number>,
  d: number,
  uAccept: number,
  uResidual: number,
): CpuChoice {
  const inside = d >= 0 && d < p.length;
  const accMargin = inside ? Math.abs(uAccept * q[d] - p[d]) / Math.max(q[d], 1e-30) : 1;
  let residual = Array.from(p, (v, j) => Math.max(0, v - q[j]));
  let mass = residual.reduce((a, b) => a + b, 0);
  if (!(mass > 0)) {
    residual = Array.from(p);
    mass = residual.reduce((a, b) => a + b, 0);
  }
  const r = uResidual * mass;
  let acc = 0;
  let drawn = -1;
  let drawMargin = 0;
  for (let j = 0; j < residual.length; j++) {
    if (!(residual[j] > 0)) continue;
    const from = acc;
    acc += residual[j];
    drawn = j;
    if (acc > r) {
      drawMargin = Math.min(r - from, acc - r) / mass;
      break;
    }
  }
  if (inside && uAccept * q[d] < p[d]) return { token: d, kept: true, margin: accMargin };
  return { token: drawn, kept: false, margin: Math.min(accMargin, drawMargin) };
}

/** The sampling kernel; see {@linkcode createSampleKernel}. */
export interface SampleKernel {
  /**
   * Records `next[out]` = a token drawn with the uniform `u` from logits row `row` (`n` values,
   * f32), which the kernel overwrites with its weights (with `filter`: with the kept
   * distribution, {@linkcode cpuKeptDistribution}); with `rows`, rows `row ..` into words
   * `out ..`, one workgroup each, the same `u` for all.
   */
  encode(
    batch: CommandBatch,
    logits: Binding,
    next: Binding,
    n: number,
    settings: SampleSettings,
    u: number,
    at?: { row?: number; out?: number; rows?: number },
  ): void;
}

/**
 * Compiles the sampling kernel.
 *
 * @example
 * ```ts ignore
 * const sampler = await createSampleKernel(gpu);
 * sampler.encode(batch, logits, next, vocab, { temperature: 0.8, topK: 40, topP: 0.95 }, rng());
 * ```
 */
export async function createSampleKernel(
  gpu: Gpu,
  opts: { workgroupSize?: number; filter?: boolean } = {},
): Promise<SampleKernel> {
  const wg = opts.workgroupSize ?? 256;
  if (wg & (wg - 1)) throw new RangeError(`sample: workgroup size ${wg} is not a power of two`);
  const kernel = await gpu.kernel({
    file: "sample",
    entry: "sample",
    constants: { WG: wg },
    defines: opts.filter ? ["FILTER"] : [],
  });
  return {
    encode(batch, logits, next, n, settings, u, at = {}) {
      checkSettings(settings, "sample");
      if (!(u >= 0 && u < 1)) throw new RangeError(`sample: u ${u} must be in [0, 1)`);
      if (!Number.isInteger(n) || n < 1) throw new RangeError(`sample: ${n} logits`);
      const row = at.row ?? 0;
      const out = at.out ?? 0;
      const rows = at.rows ?? 1;
      if (!Number.isInteger(rows) || rows < 1) throw new RangeError(`sample: ${rows} rows`);
      requireBytes(logits, (row + rows) * n * 4, "sample logits");
      requireBytes(next, (out + rows) * 4, "sample next");
      const p = params().u32(n).u32(row).u32(out).u32(settings.topK)
        .f32(settings.temperature).f32(settings.topP).f32(u).build();
      batch.dispatch(kernel, [logits, next], rows, p);
    },
  };
}

/** Most proposals one {@linkcode ChooseKernel.encode} takes (the uniforms' room). */
export const MAX_CHOOSE_ROWS = 8;

/** Speculative sampling's accept/reject step on the GPU; see {@linkcode createChooseKernel}. */
export interface ChooseKernel {
  /**
   * Records, for proposals d_1..d_k (words 1..k of `ids`), best[i] = {@linkcode cpuChoose} of
   * d_{i+1} with the kept distributions `p` row i (the target's, filtered) and `q` row i (the
   * draft's), and uniforms `us[i]` = [accept, residual]. `best[i]` already
   * {@linkcode ARGMAX_NONFINITE} stays so.
   */
  encode(
    batch: CommandBatch,
    p: Binding,
    q: Binding,
    ids: Binding,
    best: Binding,
    n: number,
    us: readonly (readonly [number, number])[],
  ): void;
}

/**
 * Compiles the accept/reject step of speculative sampling (kernels/sample.wgsl's `choose`): one
 * workgroup per proposal. With the greedy acceptance kernel after it (which keeps proposals while
 * they equal `best`), the kept tokens and the next one are distributed as the target's samples.
 *
 * @example
 * ```ts ignore
 * const choose = await createChooseKernel(gpu);
 * choose.encode(batch, targetProbs, draftProbs, targetIds, best, vocab, [[0.3, 0.8], [0.6, 0.1]]);
 * ```
 */
export async function createChooseKernel(gpu: Gpu): Promise<ChooseKernel> {
  const kernel = await gpu.kernel({
    file: "sample",
    entry: "choose",
    constants: { WG: 256 },
    defines: ["CHOOSE"],
  });
  return {
    encode(batch, p, q, ids, best, n, us) {
      const k = us.length;
      if (!Number.isInteger(k) || k < 1 || k > MAX_CHOOSE_ROWS) {
        throw new RangeError(`choose: ${k} proposals; one dispatch takes 1..${MAX_CHOOSE_ROWS}`);
      }
      if (!Number.isInteger(n) || n < 1) throw new RangeError(`choose: ${n} tokens`);
      for (const [a, r] of us) {
        if (!(a >= 0 && a < 1 && r >= 0 && r < 1)) {
          throw new RangeError(`choose: uniforms ${a}, ${r} must be in [0, 1)`);
        }
      }
      requireBytes(p, k * n * 4, "choose p");
      requireBytes(q, k * n * 4, "choose q");
      requireBytes(ids, (k + 1) * 4, "choose ids");
      requireBytes(best, k * 4, "choose best");
      const b = params().u32(n).u32(k).u32(0).u32(0);
      for (let i = 0; i < MAX_CHOOSE_ROWS; i++) {
        const [a, r] = us[i] ?? [0, 0];
        b.f32(a).f32(r).f32(0).f32(0);
      }
      batch.dispatch(kernel, [p, q, ids, best], k, b.build());
    },
  };
}
