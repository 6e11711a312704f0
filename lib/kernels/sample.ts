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
  const n = logits.length;
  if (logits.some((v) => !Number.isFinite(v))) return { token: ARGMAX_NONFINITE, margin: 1 };
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
  const inOrder = [...kept].sort((a, b) => a - b);
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

/** The sampling kernel; see {@linkcode createSampleKernel}. */
export interface SampleKernel {
  /**
   * Records `next[out]` = a token drawn with the uniform `u` from logits row `row` (`n` values,
   * f32), which the kernel overwrites with its weights.
   */
  encode(
    batch: CommandBatch,
    logits: Binding,
    next: Binding,
    n: number,
    settings: SampleSettings,
    u: number,
    at?: { row?: number; out?: number },
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
  opts: { workgroupSize?: number } = {},
): Promise<SampleKernel> {
  const wg = opts.workgroupSize ?? 256;
  if (wg & (wg - 1)) throw new RangeError(`sample: workgroup size ${wg} is not a power of two`);
  const kernel = await gpu.kernel({ file: "sample", entry: "sample", constants: { WG: wg } });
  return {
    encode(batch, logits, next, n, settings, u, at = {}) {
      checkSettings(settings, "sample");
      if (!(u >= 0 && u < 1)) throw new RangeError(`sample: u ${u} must be in [0, 1)`);
      if (!Number.isInteger(n) || n < 1) throw new RangeError(`sample: ${n} logits`);
      const row = at.row ?? 0;
      const out = at.out ?? 0;
      requireBytes(logits, (row + 1) * n * 4, "sample logits");
      requireBytes(next, (out + 1) * 4, "sample next");
      const p = params().u32(n).u32(row).u32(out).u32(settings.topK)
        .f32(settings.temperature).f32(settings.topP).f32(u).build();
      batch.dispatch(kernel, [logits, next], 1, p);
    },
  };
}
