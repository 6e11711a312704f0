/**
 * Choosing the next token from logits on the CPU: greedy, temperature, top-k and top-p
 * (nucleus), with a seeded random generator so a run can be repeated exactly.
 *
 * @module
 */

/**
 * How to pick the next token.
 *
 * @example
 * ```ts
 * import type { SamplerOptions } from "./sampling.ts";
 * const o: SamplerOptions = { temperature: 0.8, topK: 40, topP: 0.95, seed: 42 };
 * ```
 */
export interface SamplerOptions {
  /** Softmax temperature; 0 means greedy (argmax). Default 1. */
  temperature?: number;
  /** Keep only the k most likely tokens; 0 keeps all. Default 0. */
  topK?: number;
  /** Keep the smallest set of most likely tokens whose probability reaches p; 1 keeps all. */
  topP?: number;
  /** Seed of the random generator (default 0: runs repeat unless a seed is chosen). */
  seed?: number;
}

/**
 * Index of the largest logit (the first one on ties). Throws on NaN logits, which mean the
 * forward pass went wrong and should not be sampled from silently.
 *
 * @example
 * ```ts
 * import { argmax } from "./sampling.ts";
 * argmax(new Float32Array([0.1, 3, -2])); // 1
 * ```
 */
export function argmax(logits: ArrayLike<number>): number {
  let best = 0;
  let max = -Infinity;
  for (let i = 0; i < logits.length; i++) {
    const v = logits[i];
    if (Number.isNaN(v)) throw new Error(`sampling: logit ${i} of ${logits.length} is NaN`);
    if (v > max) {
      max = v;
      best = i;
    }
  }
  return best;
}

/**
 * A mulberry32 generator: uniform floats in [0, 1), the same sequence for the same seed.
 *
 * @example
 * ```ts
 * import { seededRandom } from "./sampling.ts";
 * const rng = seededRandom(42);
 * rng(); // the same number on every run
 * ```
 */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** The k largest-probability indices, most likely first (ties: lower index first). */
function topKIndices(probs: Float64Array, k: number): number[] {
  // Insertion into a short sorted list: O(n) for the usual k of tens, no full vocabulary sort.
  const top: number[] = [];
  for (let i = 0; i < probs.length; i++) {
    const p = probs[i];
    if (top.length === k && p <= probs[top[k - 1]]) continue;
    let j = top.length < k ? top.length : k - 1;
    while (j > 0 && probs[top[j - 1]] < p) j--;
    top.splice(j, 0, i);
    if (top.length > k) top.pop();
  }
  return top;
}

/**
 * A sampler: a function from one position's logits to a token id. Temperature 0 or `topK` 1
 * is greedy; otherwise softmax(logits / temperature) is cut to the top k, then to the nucleus
 * of mass `topP`, renormalised and sampled.
 *
 * @example
 * ```ts
 * import { createSampler } from "./sampling.ts";
 * const sample = createSampler({ temperature: 0.7, topP: 0.9, seed: 1 });
 * const id = sample(new Float32Array([1, 2, 3]));
 * ```
 */
export function createSampler(options: SamplerOptions = {}): (logits: ArrayLike<number>) => number {
  const temperature = options.temperature ?? 1;
  const topK = options.topK ?? 0;
  const topP = options.topP ?? 1;
  if (!(temperature >= 0)) throw new Error(`sampling: temperature ${temperature} must be >= 0`);
  if (!Number.isInteger(topK) || topK < 0) {
    throw new Error(`sampling: topK ${topK} must be an integer >= 0`);
  }
  if (!(topP > 0 && topP <= 1)) throw new Error(`sampling: topP ${topP} must be in (0, 1]`);
  const rng = seededRandom(options.seed ?? 0);
  if (temperature === 0 || topK === 1) return argmax;

  return (logits: ArrayLike<number>): number => {
    const n = logits.length;
    const max = logits[argmax(logits)];
    const probs = new Float64Array(n);
    let sum = 0;
    for (let i = 0; i < n; i++) sum += probs[i] = Math.exp((logits[i] - max) / temperature);
    for (let i = 0; i < n; i++) probs[i] /= sum;

    let candidates: number[];
    if (topK > 0 && topK < n) {
      candidates = topKIndices(probs, topK);
    } else if (topP < 1) {
      // A token below (1 - p) / (n - 1) can never be in the nucleus (llama2.c's shortcut), so
      // only the rest needs sorting.
      const cutoff = (1 - topP) / (n - 1);
      candidates = [];
      for (let i = 0; i < n; i++) if (probs[i] >= cutoff) candidates.push(i);
      candidates.sort((a, b) => probs[b] - probs[a] || a - b);
    } else {
      let r = rng();
      for (let i = 0; i < n; i++) {
        r -= probs[i];
        if (r < 0) return i;
      }
      return n - 1; // rounding left r a hair above zero
    }

    let mass = 0;
    let kept = candidates.length;
    for (let i = 0; i < candidates.length; i++) {
      mass += probs[candidates[i]];
      if (mass >= topP) {
        kept = i + 1;
        break;
      }
    }
    let r = rng() * mass;
    for (let i = 0; i < kept; i++) {
      r -= probs[candidates[i]];
      if (r < 0) return candidates[i];
    }
    return candidates[kept - 1];
  };
}
