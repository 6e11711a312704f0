/**
 * Speculative decoding: a small draft model proposes a few tokens, the target model checks them
 * all in one verify pass ({@linkcode LlamaModel.verify}), and the tokens it agrees with are kept
 * — several tokens per target pass where the draft guesses well, and the output is the target's.
 *
 * One round, with `last` the newest token (not yet in either KV cache):
 *
 * 1. the draft decodes k tokens d₁..d_k from `last` (greedily, or sampling from its own
 *    distribution q);
 * 2. the target runs `[last, d₁, .., d_k]` in one pass, which gives its next-token
 *    distribution p after each of them;
 * 3. greedy: d_i is kept while it equals the target's argmax; the first argmax that differs (or,
 *    when all k are kept, the argmax after d_k) is added too. Sampling: d_i is kept with
 *    probability min(1, p(d_i) / q(d_i)); at the first rejection a token is drawn from
 *    norm(max(0, p − q)) instead, and when all are kept one more from p (Leviathan et al. 2023,
 *    Chen et al. 2023). Either way each round adds 1 to k + 1 tokens, distributed exactly as the
 *    target alone would produce them;
 * 4. both KV caches roll back to the kept tokens (a position counter: nothing is copied).
 *
 * The draft length k is fixed, or adapts. Rounds read back one by one follow transformers'
 * assisted generation: +2 after a round that kept every draft token, −1 (not below 1) after one
 * that did not; that rule settles where a round keeps all of its k draft tokens one time in three
 * ({@linkcode settledDraftLength}), whatever a draft token costs. Rounds chained in groups (below)
 * change k only between groups, and weigh the cost too: each group's readback shows what its rounds
 * cost on this machine, and from two lengths on, the next group takes the length that yields the
 * most tokens per millisecond for the acceptance seen so far ({@linkcode adaptiveDraftLength}): long
 * rounds where drafting is cheap next to the verify pass (the bundled pair on a GPU), short ones
 * where a draft step costs a good share of a target step (a 1B draft for a 7B target). What the
 * pair's rounds showed is kept from one call to the next.
 *
 * Greedy rounds of two models on one device are chained on the GPU: the draft writes its
 * proposals straight into the target's input ({@linkcode LlamaModel.proposeGreedy}) and they come
 * back with the target's argmaxes in one readback ({@linkcode LlamaModel.verifyProposed}): one
 * wait per round. In Deno that wait is at least 10 ms (`mapAsync` polls the device, then sleeps
 * 10 ms), and it is what bounds the speed on a fast GPU (BENCHMARKS.md). So greedy rounds go
 * further: both models read their start position from a word on the GPU, an acceptance kernel
 * (`kernels/speculative.wgsl`) compares proposals with argmaxes, appends the kept tokens to a
 * record, advances both positions and leaves the next round's inputs, and groups of rounds run
 * back to back with one readback per group, the next group already submitted while one is read
 * (`groupRounds`).
 *
 * Sampled rounds are chained the same way. The draft draws each proposal on the GPU
 * (`kernels/sample.wgsl`) and keeps the distribution q_i it drew from; the target's verify pass
 * turns its rows into p_0..p_k and draws its token after the last proposal from p_k; `choose`
 * then puts into the target's argmax word i either d_{i+1} (kept: u · q(d) < p(d)) or a draw from
 * max(0, p − q), so the greedy acceptance kernel, keeping proposals while they equal those words,
 * applies the accept/reject rule. Every round's uniforms come from the seeded generator as the
 * round is recorded: with a fixed draft length the same seed gives the same tokens; with the
 * adaptive length on a GPU the groups, and so where k changes, follow the clock.
 *
 * @module
 */

import { CommandBatch } from "../gpu/batch.ts";
import type { GpuTensor } from "../gpu/tensor.ts";
import { createChooseKernel, createSampleKernel, type SampleSettings } from "../kernels/sample.ts";
import { type AcceptBuffers, createAccept } from "../kernels/speculative.ts";
import { checkArgmaxToken } from "./finite.ts";
import {
  AUTO_IN_FLIGHT,
  autoInFlight,
  autoPace,
  type LlamaModel,
  type TokenPick,
} from "./llama.ts";
import { argmax, seededRandom } from "./sampling.ts";

/**
 * What speculative decoding needs of a model: {@linkcode LlamaModel} has it all (tests use small
 * CPU models with the same methods).
 *
 * @example
 * ```ts ignore
 * const target: SpeculativeModel = await LlamaModel.load("models/sotu-llama");
 * ```
 */
export type SpeculativeModel =
  & Pick<
    LlamaModel,
    "position" | "maxSeqLen" | "maxVerifyTokens" | "reset" | "rollback" | "forward" | "decodeGreedy"
  >
  & {
    /** {@linkcode LlamaModel.verify}: every row's logits, or their argmaxes. */
    verify(tokens: readonly number[], want: "logits"): Promise<Float32Array>;
    verify(tokens: readonly number[], want: "argmax"): Promise<Uint32Array>;
  };

/** The methods that let greedy rounds chain draft and target on the GPU (one wait per round). */
type Chained = Pick<LlamaModel, "gpu" | "tokenInput" | "proposeGreedy" | "verifyProposed">;

function chainable(m: SpeculativeModel): m is SpeculativeModel & Chained {
  return "proposeGreedy" in m && "verifyProposed" in m && "tokenInput" in m && "gpu" in m;
}

/** What groups of rounds chained on the GPU need besides {@linkcode Chained}. */
type Grouped =
  & Chained
  & Pick<
    LlamaModel,
    | "config"
    | "format"
    | "gpuStart"
    | "argmaxOutput"
    | "setGpuStart"
    | "proposeChained"
    | "verifyChained"
    | "chunkSize"
    | "proposalsFused"
  >;

function groupable(m: SpeculativeModel): m is SpeculativeModel & Grouped {
  // the draft's first pass of a round has two rows
  return chainable(m) && "proposeChained" in m && "verifyChained" in m && "gpuStart" in m &&
    "chunkSize" in m && (m.chunkSize as number) >= 2;
}

function fusable(m: SpeculativeModel): m is SpeculativeModel & Pick<LlamaModel, "fuseProposals"> {
  return "fuseProposals" in m;
}

/** Options of {@linkcode speculativeDecode}. */
export interface SpeculativeOptions {
  /** Most new tokens (default 64). */
  maxNewTokens?: number;
  /**
   * Draft tokens per round. With `adaptive` (the default when this is not given) the starting
   * length (default 4, or for rounds chained in groups where the pair's last such call left off);
   * otherwise the fixed length. At most the target's
   * `maxVerifyTokens − 1` (7).
   */
  draftTokens?: number;
  /**
   * Grow k by 2 after a fully accepted round, shrink it by 1 after a rejection. Where rounds are
   * chained on the GPU in groups (`groupRounds`), k changes only between groups: each group after
   * the first read takes the length with the most tokens per millisecond for the acceptance of
   * the latest rounds read and what the latest timed groups' rounds cost
   * ({@linkcode adaptiveDraftLength}; until two lengths are timed, the length the +2 / −1 rule
   * settles at, {@linkcode settledDraftLength}, or a probe two away from it). Those rounds and
   * groups are the pair's, kept from call to call (per way of running: greedy or the sampling
   * settings), so a call too short for several groups still gains from the calls before it.
   */
  adaptive?: boolean;
  /** 0 (default) is greedy; above 0 both models' logits are divided by it before softmax. */
  temperature?: number;
  /** Sampling: keep the k most likely tokens of both distributions (0: all). */
  topK?: number;
  /** Sampling: keep the nucleus of mass p of both distributions (1: all). */
  topP?: number;
  /** Seed of the random generator (default 0). */
  seed?: number;
  /**
   * Models on one device: the draft writes its proposals straight into the target's input on
   * the GPU (default true), greedy rounds in groups (`groupRounds`) or one readback a round,
   * sampled rounds in groups (both models' vocabularies the same size). False reads the
   * proposals back first (greedy: two waits per round, the same tokens; sampling: every draft
   * step and verify pass read back, the acceptance on the CPU, other tokens for the same seed).
   */
  chain?: boolean;
  /**
   * Models on one device, `chain` on: rounds (greedy or sampled) run back to back on the GPU in
   * groups of this many, with one readback per group, and the next group submitted while one is read
   * back. Each readback in Deno costs at least 10 ms, so a group should carry more work than
   * that. `"auto"` (the default on a GPU; 8 on a software adapter) starts with 8 and sizes each
   * later group to about 25 ms of rounds (8 to 64) from the pace of the group before, as
   * `decodeGreedy`'s `inFlight: "auto"` does (BENCHMARKS.md). The acceptance step runs on the
   * GPU, which advances both models' positions there; with `adaptive`, k changes only between
   * groups (from the acceptance of the rounds read so far, for the next group submitted). Rounds
   * past a stop are discarded. Near the end of a KV cache, or with 0, rounds are read back one
   * by one. The tokens are the same either way.
   */
  groupRounds?: number | "auto";
  /** `groupRounds: "auto"`: the wall time each group aims at, in ms (default 25). */
  autoGroupMs?: number;
  /**
   * Greedy rounds chained in groups: the draft's proposals of a round as one dispatch where the
   * draft allows it (`LlamaModel.fuseProposals`: a small FP16 draft with an f16 KV cache; default
   * true). False runs the draft layer by layer. The tokens are the same either way.
   */
  fuseDraft?: boolean;
  /**
   * Benchmarks only: keep each draft token with this probability (until the first rejection)
   * instead of comparing it with the target's choice, so that the speed at a given acceptance
   * rate can be measured with random weights. The output is then not the target's.
   */
  simulateAcceptance?: number;
  /**
   * Receives each new token in order; returning `false` stops (that token still counts). Tokens
   * of a round after a stop are discarded.
   */
  onToken?: (token: number, index: number) => boolean | void;
}

/** What {@linkcode speculativeDecode} produced, and how often the draft was right. */
export interface SpeculativeResult {
  /** The new tokens delivered to `onToken`. */
  tokens: number[];
  /** `"callback"`: `onToken` returned false; `"context"`: a KV cache is full. */
  stoppedBy: "callback" | "max-tokens" | "context";
  /** Draft tokens proposed. */
  drafted: number;
  /** Draft tokens the target kept. */
  accepted: number;
  /** accepted / drafted (0 when nothing was drafted). */
  acceptanceRate: number;
  /** Verify passes of the target (its prompt pass not counted). */
  targetPasses: number;
  /** Tokens after the first per verify pass: what one target pass yields on average. */
  tokensPerTargetPass: number;
  /** The draft length of each round, in order. */
  draftLengths: number[];
  /** Draft tokens kept in each round, in order. */
  acceptedPerRound: number[];
  /**
   * Wall-clock milliseconds until the first token arrived: the prompt passes (with rounds
   * chained on the GPU, the first token comes back with the first group's records).
   */
  prefillMs: number;
  /** Wall-clock milliseconds after that, to the end. */
  decodeMs: number;
  /** Whether the draft's chained proposals ran fused (`SpeculativeOptions.fuseDraft`). */
  draftFused: boolean;
  /** Rounds per readback of the groups chained on the GPU, in order (empty: none ran). */
  groups: number[];
  /**
   * Per group in `groups`: the wall-clock milliseconds per round its readback showed, what the
   * adaptive length weighs draft lengths by ({@linkcode adaptiveDraftLength}); NaN for the first
   * group (it holds the prompt pass) and where a readback showed only Deno's ~10 ms floor.
   */
  groupRoundMs: number[];
}

/** The starting draft length when none is given (the adaptive rule then moves it in 1..7). */
const DEFAULT_DRAFT_TOKENS = 4;

/**
 * The draft length where the adaptive rule (+2 after a round that kept all k draft tokens, −1
 * after one that did not) settles, for draft tokens each kept with probability `alpha`
 * independently: it grows while more than one round in three keeps all k (α^k > 1/3) and shrinks
 * below that, so it settles at k = ln(1/3) / ln(α), rounded, within 1..`maxK`.
 *
 * @example
 * ```ts
 * import { settledDraftLength } from "./speculative.ts";
 * settledDraftLength(0.7, 7); // 3
 * settledDraftLength(0.9, 7); // 7 (10.4, capped)
 * ```
 */
export function settledDraftLength(alpha: number, maxK: number): number {
  if (!(alpha > 0)) return 1;
  if (alpha >= 1) return maxK;
  return Math.min(maxK, Math.max(1, Math.round(Math.log(1 / 3) / Math.log(alpha))));
}

/**
 * What a round costs at draft length k, in ms: `fixed + perToken · k` (the target's verify pass,
 * the acceptance and the readback's share; each draft token's step and its verify row).
 */
export interface RoundCost {
  /** Milliseconds a round costs whatever its length. */
  fixed: number;
  /** Milliseconds each draft token adds. */
  perToken: number;
}

/**
 * Tokens a round of k draft tokens yields on average when each is kept with probability `alpha`
 * until the first rejection: the kept ones and the target's own token, (1 − α^(k+1)) / (1 − α).
 *
 * @example
 * ```ts
 * import { expectedRoundTokens } from "./speculative.ts";
 * expectedRoundTokens(0.7, 3); // 2.53
 * ```
 */
export function expectedRoundTokens(alpha: number, k: number): number {
  if (alpha >= 1) return k + 1;
  return (1 - alpha ** (k + 1)) / (1 - alpha);
}

/**
 * The draft length in 1..`maxK` that yields the most tokens per millisecond, for draft tokens each
 * kept with probability `alpha` and rounds costing `cost`: the largest
 * {@linkcode expectedRoundTokens} / (fixed + perToken · k), the shorter length on a tie. A cheap
 * draft and an expensive verify pass favour long rounds; a draft step that costs a good share of
 * the target's favours short ones.
 *
 * @example
 * ```ts
 * import { fastestDraftLength } from "./speculative.ts";
 * fastestDraftLength(0.75, 7, { fixed: 10, perToken: 0.3 }); // 7: drafting is cheap
 * fastestDraftLength(0.7, 7, { fixed: 6.5, perToken: 1.7 }); // 2: a 1B draft for a 7B target
 * ```
 */
export function fastestDraftLength(alpha: number, maxK: number, cost: RoundCost): number {
  if (!(alpha > 0)) return 1;
  let best = 1;
  let bestRate = -Infinity;
  for (let k = 1; k <= maxK; k++) {
    const rate = expectedRoundTokens(Math.min(alpha, 1), k) / (cost.fixed + cost.perToken * k);
    if (rate > bestRate * (1 + 1e-9)) {
      best = k;
      bestRate = rate;
    }
  }
  return best;
}

/** One group of rounds chained on the GPU, as the adaptive length weighs it. */
export interface TimedGroup {
  /** Its draft length. */
  k: number;
  /** Its rounds. */
  rounds: number;
  /** Wall-clock milliseconds per round its readback showed; NaN: not timed. */
  msPerRound: number;
}

/**
 * The round cost that timed groups show: each length's mean milliseconds per round (weighted by
 * rounds), and the line through them (least squares, weighted by rounds), its slope at least 0
 * and its intercept above 0. Null until groups of two lengths or more have been timed.
 *
 * @example
 * ```ts
 * import { roundCostOf } from "./speculative.ts";
 * roundCostOf([{ k: 4, rounds: 8, msPerRound: 3.2 }, { k: 6, rounds: 8, msPerRound: 3.6 }]);
 * // { fixed: 2.4, perToken: 0.2 } (to rounding)
 * ```
 */
export function roundCostOf(groups: readonly TimedGroup[]): RoundCost | null {
  const byK = new Map<number, { rounds: number; ms: number }>();
  for (const g of groups) {
    if (!(g.msPerRound > 0) || !(g.rounds > 0)) continue;
    const e = byK.get(g.k) ?? { rounds: 0, ms: 0 };
    e.rounds += g.rounds;
    e.ms += g.msPerRound * g.rounds;
    byK.set(g.k, e);
  }
  if (byK.size < 2) return null;
  let w = 0;
  let sk = 0;
  let sm = 0;
  for (const [k, e] of byK) {
    w += e.rounds;
    sk += k * e.rounds;
    sm += e.ms;
  }
  const meanK = sk / w;
  const meanMs = sm / w;
  let skk = 0;
  let skm = 0;
  for (const [k, e] of byK) {
    skk += e.rounds * (k - meanK) ** 2;
    skm += (k - meanK) * (e.ms - e.rounds * meanMs);
  }
  const perToken = Math.max(0, skm / skk);
  const fixed = Math.max(meanMs - perToken * meanK, 1e-3 * meanMs);
  return { fixed, perToken };
}

/**
 * The draft length of the next group of chained rounds, with the adaptive length on: the length
 * that yields the most tokens per millisecond ({@linkcode fastestDraftLength}) for the acceptance
 * so far and the round cost the timed groups show ({@linkcode roundCostOf}). Until two lengths
 * have been timed, the length the +2 / −1 rule settles at ({@linkcode settledDraftLength}); when
 * that is the only length timed and the one in flight too, two more (or two fewer at `maxK`),
 * to learn what a draft token costs.
 *
 * @param alpha each draft token's chance of being kept, as estimated so far
 * @param groups the groups read so far, in order
 * @param inFlight the draft length of the group already submitted and not read (NaN: none)
 *
 * @example
 * ```ts
 * import { adaptiveDraftLength } from "./speculative.ts";
 * adaptiveDraftLength(0.75, 7, [{ k: 4, rounds: 8, msPerRound: NaN }], 4); // 4 (settled)
 * adaptiveDraftLength(0.75, 7, [{ k: 4, rounds: 8, msPerRound: 3.2 }], 4); // 6 (a probe)
 * adaptiveDraftLength(0.75, 7, [
 *   { k: 4, rounds: 8, msPerRound: 3.2 },
 *   { k: 6, rounds: 8, msPerRound: 3.3 },
 * ], 6); // 7
 * ```
 */
export function adaptiveDraftLength(
  alpha: number,
  maxK: number,
  groups: readonly TimedGroup[],
  inFlight: number,
): number {
  const cost = roundCostOf(groups);
  if (cost) return fastestDraftLength(alpha, maxK, cost);
  const settled = settledDraftLength(alpha, maxK);
  const timed = new Set(groups.filter((g) => g.msPerRound > 0).map((g) => g.k));
  if (timed.size === 1 && timed.has(settled) && inFlight === settled) {
    if (settled + 2 <= maxK) return settled + 2;
    if (settled - 2 >= 1) return settled - 2;
  }
  return settled;
}

/**
 * Each draft token's chance of being kept, estimated from rounds (draft length, tokens kept):
 * kept tokens over kept tokens plus rejections (a round that kept all of its k saw no rejection).
 * NaN before any round.
 */
function acceptanceEstimate(lengths: readonly number[], kept: readonly number[]): number {
  let keptTokens = 0;
  let rejections = 0;
  lengths.forEach((k, i) => {
    keptTokens += kept[i];
    if (kept[i] < k) rejections++;
  });
  return keptTokens / (keptTokens + rejections);
}

/**
 * The distribution a sampler with these settings draws from, over the whole vocabulary: softmax
 * of logits / temperature, cut to the top k, then to the smallest set of most likely tokens
 * whose probability reaches p, renormalised — the same cuts as `createSampler`. Temperature 0
 * (or top-k 1) is one-hot on the argmax.
 *
 * @example
 * ```ts
 * import { samplingDistribution } from "./speculative.ts";
 * samplingDistribution(new Float32Array([0, Math.log(3)]), { temperature: 1 }); // [0.25, 0.75]
 * ```
 */
export function samplingDistribution(
  logits: ArrayLike<number>,
  options: { temperature?: number; topK?: number; topP?: number } = {},
): Float64Array {
  const n = logits.length;
  const temperature = options.temperature ?? 1;
  const topK = options.topK ?? 0;
  const topP = options.topP ?? 1;
  const out = new Float64Array(n);
  let best = 0;
  for (let i = 1; i < n; i++) {
    if (Number.isNaN(logits[i])) throw new Error(`sampling: logit ${i} of ${n} is NaN`);
    if (logits[i] > logits[best]) best = i;
  }
  if (temperature === 0 || topK === 1) {
    out[best] = 1;
    return out;
  }
  const max = logits[best];
  let sum = 0;
  for (let i = 0; i < n; i++) sum += out[i] = Math.exp((logits[i] - max) / temperature);
  for (let i = 0; i < n; i++) out[i] /= sum;
  if (!(topK > 0 && topK < n) && topP >= 1) return out;
  let candidates = Array.from({ length: n }, (_, i) => i);
  candidates.sort((a, b) => out[b] - out[a] || a - b);
  if (topK > 0 && topK < n) candidates = candidates.slice(0, topK);
  let mass = 0;
  let kept = candidates.length;
  for (let i = 0; i < candidates.length; i++) {
    mass += out[candidates[i]];
    if (mass >= topP) {
      kept = i + 1;
      break;
    }
  }
  mass = 0;
  for (let i = 0; i < kept; i++) mass += out[candidates[i]];
  const cut = new Float64Array(n);
  for (let i = 0; i < kept; i++) cut[candidates[i]] = out[candidates[i]] / mass;
  return cut;
}

/**
 * Draws from a distribution (non-negative weights; they need not sum to 1).
 *
 * @example
 * ```ts
 * import { sampleFrom } from "./speculative.ts";
 * sampleFrom(new Float64Array([0, 1, 0]), Math.random); // 1
 * ```
 */
export function sampleFrom(weights: ArrayLike<number>, rng: () => number): number {
  let total = 0;
  for (let i = 0; i < weights.length; i++) total += weights[i];
  let r = rng() * total;
  let last = -1;
  for (let i = 0; i < weights.length; i++) {
    if (weights[i] <= 0) continue;
    last = i;
    r -= weights[i];
    if (r < 0) return i;
  }
  if (last < 0) throw new Error("sampleFrom: all weights are zero");
  return last; // rounding left r a hair above zero
}

/**
 * The accept/reject step for one draft token `d` drawn from `q`: keeps it with probability
 * min(1, p(d) / q(d)), else draws from norm(max(0, p − q)). The token it returns is distributed
 * exactly as p — whatever q is. Returns the token and whether it was the draft's.
 *
 * @example
 * ```ts
 * import { acceptOrResample } from "./speculative.ts";
 * import { seededRandom } from "./sampling.ts";
 * const p = new Float64Array([0.5, 0.5]);
 * const q = new Float64Array([1, 0]);
 * acceptOrResample(0, p, q, seededRandom(1)); // { token: 0 or 1, accepted: ... }
 * ```
 */
export function acceptOrResample(
  d: number,
  p: ArrayLike<number>,
  q: ArrayLike<number>,
  rng: () => number,
): { token: number; accepted: boolean } {
  if (!(q[d] > 0)) throw new Error(`speculative: draft token ${d} has probability 0 under q`);
  if (rng() < Math.min(1, p[d] / q[d])) return { token: d, accepted: true };
  const residual = new Float64Array(p.length);
  let mass = 0;
  for (let i = 0; i < p.length; i++) mass += residual[i] = Math.max(0, p[i] - q[i]);
  // A rejection means p(d) < q(d), so the residual has mass; rounding aside, fall back to p.
  return { token: sampleFrom(mass > 0 ? residual : p, rng), accepted: false };
}

/**
 * Speculative decoding of `prompt` (both KV caches are reset first): `draft` proposes, `target`
 * verifies. Greedy (temperature 0) gives exactly the target's greedy tokens; sampling gives
 * tokens distributed exactly as the target's samples with the same temperature, top-k and
 * top-p. The models must share a tokenizer.
 *
 * @example
 * ```ts ignore
 * const target = await LlamaModel.load("models/sotu-llama");
 * const draft = await LlamaModel.load("models/sotu-llama-draft");
 * const run = await speculativeDecode(target, draft, tokenizer.encode("The Union"), {
 *   maxNewTokens: 64,
 * });
 * console.log(run.acceptanceRate, run.tokensPerTargetPass);
 * ```
 */
export async function speculativeDecode(
  target: SpeculativeModel,
  draft: SpeculativeModel,
  prompt: readonly number[],
  options: SpeculativeOptions = {},
): Promise<SpeculativeResult> {
  const maxNew = options.maxNewTokens ?? 64;
  const adaptive = options.adaptive ?? options.draftTokens === undefined;
  const maxK = target.maxVerifyTokens - 1;
  let k = options.draftTokens ?? DEFAULT_DRAFT_TOKENS;
  if (!Number.isInteger(k) || k < 1 || k > maxK) {
    throw new RangeError(`speculative: draftTokens ${k} must be an integer in 1..${maxK}`);
  }
  if (prompt.length === 0) throw new Error("speculative: empty prompt");
  const temperature = options.temperature ?? 0;
  const greedy = temperature === 0 || options.topK === 1;
  const dist = (logits: Float32Array, row = 0, vocab = logits.length) =>
    samplingDistribution(logits.subarray(row * vocab, (row + 1) * vocab), {
      temperature,
      topK: options.topK,
      topP: options.topP,
    });
  const rng = seededRandom(options.seed ?? 0);

  const result: SpeculativeResult = {
    tokens: [],
    stoppedBy: "max-tokens",
    drafted: 0,
    accepted: 0,
    acceptanceRate: 0,
    targetPasses: 0,
    tokensPerTargetPass: 0,
    draftLengths: [],
    acceptedPerRound: [],
    prefillMs: 0,
    decodeMs: 0,
    draftFused: false,
    groups: [],
    groupRoundMs: [],
  };
  let stopped = maxNew <= 0;
  // Delivers tokens until a stop; returns whether decoding goes on.
  const deliver = (tokens: number[]): boolean => {
    for (const t of tokens) {
      result.tokens.push(t);
      if (options.onToken?.(t, result.tokens.length - 1) === false) {
        result.stoppedBy = "callback";
        stopped = true;
      } else if (result.tokens.length >= maxNew) stopped = true;
      if (stopped) return false;
    }
    return true;
  };

  const t0 = performance.now();
  target.reset();
  draft.reset();
  if (prompt.length > target.maxSeqLen || prompt.length + 1 > draft.maxSeqLen) {
    throw new RangeError(`speculative: the prompt (${prompt.length} tokens) fills a KV cache`);
  }
  const groupOption = options.groupRounds ??
    ("gpu" in target && !(target.gpu as LlamaModel["gpu"]).isSoftware ? "auto" : 8);
  const autoGroups = groupOption === "auto";
  const groupRounds = autoGroups ? AUTO_IN_FLIGHT.first : groupOption as number;
  if (!Number.isInteger(groupRounds) || groupRounds < 0) {
    throw new RangeError(
      `speculative: groupRounds ${groupOption} must be a whole number or "auto"`,
    );
  }
  // Rounds chained on the GPU need two tokens still wanted: the prompt pass's and a round's.
  // Sampled rounds draw on the GPU too; their acceptance compares the two models' distributions
  // token by token, so the vocabularies must be the same size.
  const grouped = maxNew >= 2 && groupRounds > 0 && (options.chain ?? true) &&
    groupable(target) && groupable(draft) && draft.gpu === target.gpu && draft !== target &&
    (greedy || draft.config.vocabSize === target.config.vocabSize);
  // The time the first token arrived (the end of the prompt passes).
  let t1 = t0;
  let last = 0;
  let pending: number[] = [];
  if (grouped) {
    // The draft's first round re-feeds the prompt's last token with `last`: it needs the rest.
    if (prompt.length > 1) await draft.forward(prompt.slice(0, -1), "none");
    // a fused draft proposes its argmaxes: sampled rounds run it layer by layer
    if (fusable(draft) && greedy) {
      const fuse = options.fuseDraft ?? true;
      result.draftFused = fuse && await draft.fuseProposals() === null;
      if (!fuse) await draft.fuseProposals(false);
    }
    const mode = [
      greedy
        ? "greedy"
        : `T ${temperature}, top-k ${options.topK ?? 0}, top-p ${options.topP ?? 1}`,
      result.draftFused ? "fused" : "layers",
      `simulated ${options.simulateAcceptance ?? "no"}`,
    ].join("; ");
    const ended = await groupedRounds(target, draft, prompt, k, {
      adaptive,
      history: pairHistory(target, draft, mode),
      startFromHistory: options.draftTokens === undefined,
      maxK,
      groupRounds,
      autoGroups,
      autoGroupMs: options.autoGroupMs ?? AUTO_IN_FLIGHT.groupMs,
      maxNew,
      result,
      deliver: (tokens) => {
        if (result.tokens.length === 0) t1 = performance.now();
        return deliver(tokens);
      },
      sampling: greedy ? undefined : {
        settings: { temperature, topK: options.topK ?? 0, topP: options.topP ?? 1 },
        rng,
      },
      simulate: options.simulateAcceptance === undefined || !greedy ? undefined : (n: number) => {
        let kept = 0;
        while (kept < n && rng() < options.simulateAcceptance!) kept++;
        return kept;
      },
    });
    stopped = ended.stopped;
    k = ended.k;
    last = result.tokens[result.tokens.length - 1];
    if (!stopped) pending = [ended.prev, last];
  } else if (!stopped) {
    const logits = await target.forward(prompt, "last");
    last = greedy ? argmax(logits) : sampleFrom(dist(logits), rng);
    t1 = performance.now();
    deliver([last]);
    pending = [...prompt, last]; // tokens the draft has not seen yet
  }
  result.prefillMs = t1 - t0;
  while (!stopped) {
    const start = target.position; // tokens before `last`
    const roomTarget = target.maxSeqLen - start - 1;
    if (roomTarget < 0) {
      result.stoppedBy = "context";
      break;
    }
    const roomDraft = draft.maxSeqLen - draft.position - pending.length + 1;
    const want = Math.min(k, maxK, roomTarget, roomDraft, maxNew - result.tokens.length - 1);
    // Draft: `want` proposals and, when sampling, the distribution each was drawn from.
    const proposals: number[] = [];
    const q: Float64Array[] = [];
    const draftStart = draft.position;
    const chained = greedy && want > 0 && (options.chain ?? true) && chainable(draft) &&
      chainable(target) && draft.gpu === target.gpu;
    let best: ArrayLike<number> | null = null;
    if (chained) {
      // Nothing comes back until the target has checked the proposals.
      draft.proposeGreedy(pending, want, target.tokenInput, 1);
      const r = await target.verifyProposed(last, want);
      proposals.push(...r.proposals);
      best = r.best;
    } else if (want > 0 && greedy) {
      const run = await draft.decodeGreedy(pending, { maxNewTokens: want, inFlight: want });
      proposals.push(...run.tokens);
    } else if (want > 0) {
      for (let i = 0; i < want; i++) {
        const logits = await draft.forward(i === 0 ? pending : [proposals[i - 1]], "last");
        q.push(dist(logits));
        proposals.push(sampleFrom(q[i], rng));
      }
    }
    const n = proposals.length;
    // Target: one pass over last and the proposals.
    const input = [last, ...proposals];
    let kept = 0;
    let next: number;
    if (greedy) {
      best ??= await target.verify(input, "argmax");
      const sim = options.simulateAcceptance;
      if (sim !== undefined) { while (kept < n && rng() < sim) kept++; }
      else while (kept < n && proposals[kept] === best[kept]) kept++;
      next = best[kept];
    } else {
      const logits = await target.verify(input, "logits");
      const vocab = logits.length / input.length;
      next = -1;
      for (; kept < n; kept++) {
        const step = acceptOrResample(proposals[kept], dist(logits, kept, vocab), q[kept], rng);
        if (!step.accepted) {
          next = step.token;
          break;
        }
      }
      if (next < 0) next = sampleFrom(dist(logits, n, vocab), rng);
    }
    result.targetPasses++;
    result.drafted += n;
    result.accepted += kept;
    if (n > 0) {
      result.draftLengths.push(n);
      result.acceptedPerRound.push(kept);
    }
    // Roll both caches back to what was kept.
    target.rollback(start + 1 + kept);
    if (n > 0) {
      draft.rollback(draftStart + pending.length + Math.min(kept, n - 1));
      pending = kept === n ? [proposals[n - 1], next] : [next];
    } else {
      pending = [...pending, next];
    }
    if (adaptive && n > 0) k = kept === n ? Math.min(maxK, k + 2) : Math.max(1, k - 1);
    last = next;
    if (!deliver([...proposals.slice(0, kept), next])) break;
  }
  result.decodeMs = performance.now() - t1;
  result.acceptanceRate = result.drafted > 0 ? result.accepted / result.drafted : 0;
  result.tokensPerTargetPass = result.targetPasses > 0
    ? (result.tokens.length - 1) / result.targetPasses
    : 0;
  return result;
}

/**
 * What a pair's chained rounds have shown so far, for the adaptive length: the latest timed
 * groups and rounds. Kept per target, draft and way of running (greedy or the sampling settings,
 * fused proposals, a simulated acceptance), across calls: a round's cost is the pair's on this
 * device, and a call too short for several groups still starts where the last one left off.
 */
interface PairHistory {
  groups: TimedGroup[];
  lengths: number[];
  kept: number[];
}

/** The groups and rounds a {@linkcode PairHistory} keeps (older ones go first). */
const HISTORY_GROUPS = 32;
const HISTORY_ROUNDS = 256;

const pairHistories = new WeakMap<object, WeakMap<object, Map<string, PairHistory>>>();

function pairHistory(target: object, draft: object, mode: string): PairHistory {
  let byDraft = pairHistories.get(target);
  if (!byDraft) pairHistories.set(target, byDraft = new WeakMap());
  let byMode = byDraft.get(draft);
  if (!byMode) byDraft.set(draft, byMode = new Map());
  let h = byMode.get(mode);
  if (!h) byMode.set(mode, h = { groups: [], lengths: [], kept: [] });
  return h;
}

/** The next group's length from a pair's history ({@linkcode adaptiveDraftLength}); null before any round. */
function historyLength(h: PairHistory, maxK: number, inFlight: number): number | null {
  const alpha = acceptanceEstimate(h.lengths, h.kept);
  return Number.isNaN(alpha) ? null : adaptiveDraftLength(alpha, maxK, h.groups, inFlight);
}

/** What {@linkcode groupedRounds} needs from {@linkcode speculativeDecode}. */
interface GroupedContext {
  adaptive: boolean;
  /** With `adaptive`: the pair's earlier groups and rounds, updated as groups are read. */
  history: PairHistory;
  /** Whether the first groups take their length from `history` (no starting length given). */
  startFromHistory: boolean;
  maxK: number;
  /** Rounds per group (with `autoGroups`, the first group's). */
  groupRounds: number;
  /** Size later groups to about 25 ms of rounds each (`groupRounds: "auto"`). */
  autoGroups: boolean;
  autoGroupMs: number;
  maxNew: number;
  result: SpeculativeResult;
  /** Delivers a round's tokens; false: a stop (the rest of the round is dropped). */
  deliver: (tokens: number[]) => boolean;
  /** Benchmarks: the number of proposals to keep of n, drawn when the round is submitted. */
  simulate?: (n: number) => number;
  /**
   * Sampled rounds: the draft draws its proposals and the target accepts or redraws them on the
   * GPU, each round's uniforms drawn from `rng` as it is recorded.
   */
  sampling?: { settings: SampleSettings; rng: () => number };
}

/**
 * Greedy rounds chained on the GPU in groups, the target's prompt pass first: nothing is in the
 * target's cache yet, and the draft's holds all of the prompt but its last token. The prompt
 * pass leaves its argmax, `last`, in both models' inputs on the GPU, and it comes back with the
 * first group's records: no wait of its own. Each round: the draft runs [token before last,
 * last] and k − 1 more steps, writing its proposals into the target's input; the target
 * verifies; the acceptance kernel keeps what matches and leaves the next round's inputs and
 * positions. Groups are read back one at a time while the next runs.
 *
 * Returns whether a stop was reached, the draft length for what follows, and the token before
 * `last`. Afterwards the models' positions are set as the round-by-round loop expects them
 * (target: the tokens before `last`; draft: one fewer, as it re-feeds the token before `last`)
 * or, after a stop, to what greedy decoding leaves (the prompt and every token delivered but
 * the last).
 */
async function groupedRounds(
  target: SpeculativeModel & Grouped,
  draft: SpeculativeModel & Grouped,
  prompt: readonly number[],
  k: number,
  o: GroupedContext,
): Promise<{ stopped: boolean; k: number; prev: number }> {
  const gpu = target.gpu;
  const result = o.result;
  const slotWords = o.maxK + 2; // a round's record: kept, up to maxK proposals, next
  let groupRounds = o.groupRounds;
  const halfWords = (o.autoGroups ? AUTO_IN_FLIGHT.max : groupRounds) * slotWords;
  // each group's half of the records starts where a storage binding may
  const align = gpu.limits.minStorageBufferOffsetAlignment;
  const halfBytes = Math.ceil((halfWords * 4) / align) * align;
  const accept = await createAccept(gpu);
  const vocab = target.config.vocabSize;
  const sampled = o.sampling
    ? {
      ...o.sampling,
      // `filter`: each row it draws from is left as its kept distribution, for `choose`
      sampler: await createSampleKernel(gpu, { filter: true }),
      choose: await createChooseKernel(gpu),
    }
    : null;
  const record = gpu.tensor({
    label: "speculative records",
    category: "scratch",
    byteSize: 2 * halfBytes,
  });
  // sampled rounds: the draft's kept distribution at each proposal, for the acceptance
  let draftRows: GpuTensor | null = null;
  // each group's records; the first staging buffer has one word more, for the prompt's token
  const staging = [0, 1].map((i) => {
    const size = (halfWords + 1 - i) * 4;
    return {
      buffer: gpu.device.createBuffer({
        label: `speculative records ${i}`,
        size,
        usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
      }),
      id: gpu.ledger.record("staging", `speculative records ${i}`, size),
    };
  });
  const buffers = (half: number): AcceptBuffers => ({
    targetIds: target.tokenInput,
    best: target.argmaxOutput,
    draftIds: draft.tokenInput,
    targetPos: target.gpuStart,
    draftPos: draft.gpuStart,
    record: { tensor: record, offset: half * halfBytes, size: halfWords * 4 },
  });
  let tpos = prompt.length; // the target's tokens before `last`, as far as read
  let hi = tpos; // the most tpos can be when the next group starts
  let inFlightRounds = 0;
  let submitted = 0;
  let read = 0;
  const all = [...prompt];
  let prev = prompt[prompt.length - 1];
  let firstRead = false;

  interface Group {
    rounds: number;
    k: number;
    half: number;
    advance: number;
  }
  // Records and submits the next group (null: none fits, or none is needed).
  let encodeMs = 0; // recording and submitting rounds, for "auto"
  let encodedRounds = 0;
  const submitGroup = (): Group | null => {
    const t0 = performance.now();
    const kk = Math.min(k, o.maxK);
    // Every round yields at least one token: never more rounds than tokens still wanted. A
    // draft that is often right yields several, and rounds past the last token are GPU time
    // spent for nothing, so near the end a group is sized by the tokens a round has yielded so
    // far, with two rounds to spare; if that falls short, one more group follows.
    const left = o.maxNew - result.tokens.length - (firstRead ? 0 : 1);
    let rounds = Math.min(groupRounds, left - inFlightRounds);
    if (result.targetPasses > 0) {
      const perRound = Math.max(1, (result.tokens.length - 1) / result.targetPasses);
      const expected = Math.ceil((left - inFlightRounds * perRound) / perRound);
      rounds = Math.min(rounds, expected <= 0 ? 0 : expected + 2);
    }
    // round r starts at most at hi + r (k + 1); its passes write up to k positions further
    const room = Math.min(target.maxSeqLen, draft.maxSeqLen + 1);
    while (rounds > 0 && hi + rounds * (kk + 1) > room) rounds--;
    if (rounds <= 0) return null;
    const half = submitted % 2;
    const b = buffers(half);
    for (let r = 0; r < rounds; r++) {
      const start = hi + r * (kk + 1);
      const forced = o.simulate?.(kk);
      const acceptRound = (batch: CommandBatch) =>
        accept.encode(batch, b, kk, r * slotWords, forced);
      if (sampled) {
        // The draft draws d_i with its own uniform and keeps its kept distribution q_i; the
        // target's verify pass leaves p_0..p_k, draws its token after the last proposal from p_k
        // into best[k], and `choose` puts into best[i] d_{i+1} if kept, else the residual's draw:
        // the greedy acceptance then keeps proposals while they equal best.
        const { settings, rng, sampler, choose } = sampled;
        const rows = draftRows!;
        const uDraft = Array.from({ length: kk }, () => rng());
        const uChoose = Array.from({ length: kk }, () => [rng(), rng()] as const);
        const uNext = rng();
        const draftPick: TokenPick = (batch, logits, next, rowsPicked, step) => {
          sampler.encode(batch, logits, next, vocab, settings, uDraft[step], { rows: rowsPicked });
          batch.copy(logits, 0, rows, step * vocab * 4, vocab * 4);
        };
        const verifyPick: TokenPick = (batch, logits, next, rowsPicked) => {
          sampler.encode(batch, logits, next, vocab, settings, uNext, { rows: rowsPicked });
          choose.encode(batch, logits, rows, target.tokenInput, next, vocab, uChoose);
        };
        draft.proposeChained(kk, target.tokenInput, start - 1, undefined, draftPick);
        target.verifyChained(kk, start, acceptRound, undefined, verifyPick);
      } else if (draft.proposalsFused) {
        // one submission a round: the proposals' one dispatch, the verify pass, the acceptance
        target.verifyChained(
          kk,
          start,
          acceptRound,
          (batch) => draft.proposeChained(kk, target.tokenInput, start - 1, batch),
        );
      } else {
        draft.proposeChained(kk, target.tokenInput, start - 1);
        target.verifyChained(kk, start, acceptRound);
      }
    }
    const copy = new CommandBatch(gpu);
    copy.copyToBuffer(
      record,
      half * halfBytes,
      staging[half].buffer,
      0,
      rounds * slotWords * 4,
    );
    copy.submit();
    encodeMs += performance.now() - t0;
    encodedRounds += rounds;
    submitted++;
    inFlightRounds += rounds;
    const advance = rounds * (kk + 1);
    hi += advance;
    return { rounds, k: kk, half, advance };
  };

  let stopped = false;
  // The prompt pass's token, from the word after the first group's records.
  const deliverFirst = (words: Uint32Array) => {
    firstRead = true;
    const first = words[halfWords];
    checkArgmaxToken(first, target.config.vocabSize, "speculative rounds", target.format);
    all.push(first);
    if (!o.deliver([first])) stopped = true;
  };
  try {
    // The prompt pass (positions from the CPU: before the GPU's start words are set): its argmax
    // is `last`, in the target's input word 0 and the draft's word 1 (word 0: the prompt's last
    // token), and in the word after the first staging buffer's records.
    if (sampled) {
      draftRows = gpu.tensor({
        label: "speculative draft distributions",
        category: "scratch",
        byteSize: o.maxK * vocab * 4,
      });
    }
    // the prompt pass's token: drawn too when sampling
    const promptPick: TokenPick | undefined = sampled
      ? (batch, logits, next, rows) =>
        sampled.sampler.encode(batch, logits, next, vocab, sampled.settings, sampled.rng(), {
          rows,
        })
      : undefined;
    target.proposeGreedy(prompt, 1, target.tokenInput, 0, promptPick);
    draft.tokenInput.write(gpu.device, new Uint32Array([prev]));
    const firstCopy = new CommandBatch(gpu);
    firstCopy.copy(target.argmaxOutput, 0, draft.tokenInput, 4, 4);
    firstCopy.copyToBuffer(target.argmaxOutput, 0, staging[0].buffer, halfWords * 4, 4);
    firstCopy.submit();
    target.setGpuStart(tpos);
    draft.setGpuStart(tpos - 1);
    if (o.adaptive && o.startFromHistory) {
      k = historyLength(o.history, o.maxK, NaN) ?? k; // where the pair's last call left off
    }
    let lastRead = performance.now(); // when the previous group's records arrived
    let group = submitGroup();
    if (!group) {
      // no round fits: the prompt pass's token alone
      const { buffer } = staging[0];
      await gpu.whileAlive(buffer.mapAsync(GPUMapMode.READ), "speculative prompt pass");
      deliverFirst(new Uint32Array(buffer.getMappedRange()).slice());
      buffer.unmap();
    }
    while (group) {
      const { buffer } = staging[group.half];
      // the first group's read takes the prompt's token with it
      const bytes = firstRead ? group.rounds * slotWords * 4 : buffer.size;
      // The next group needs nothing from the CPU: it is recorded now and submitted the moment
      // the map call returns (in Deno, once the queue has drained), as decodeGreedy does.
      const held = gpu.holdSubmissions(submitGroup);
      const next = held.value;
      const mapped = buffer.mapAsync(GPUMapMode.READ, 0, bytes);
      const t0 = performance.now();
      held.submit(); // the held rounds' encoding happens here
      encodeMs += performance.now() - t0;
      await gpu.whileAlive(mapped, "speculative rounds");
      read++;
      // "auto": a group's records arrive one group's work after the previous group's (the work
      // runs while the previous records are read), or at the ~10 ms floor; size the group after
      // the next from that (the next is already submitted), as decodeGreedy does.
      const now = performance.now();
      result.groups.push(group.rounds);
      // what a round of this length cost, where the readback shows more than its floor and no
      // prompt pass
      const waited = now - lastRead;
      result.groupRoundMs.push(
        read > 1 && waited >= 1.5 * AUTO_IN_FLIGHT.floorMs ? waited / group.rounds : NaN,
      );
      if (o.autoGroups) {
        const pace = autoPace(now - lastRead, group.rounds, encodeMs / encodedRounds, false);
        groupRounds = autoInFlight(pace, o.autoGroupMs);
      }
      lastRead = now;
      const words = new Uint32Array(buffer.getMappedRange(0, bytes)).slice();
      buffer.unmap();
      inFlightRounds -= group.rounds;
      hi -= group.advance;
      if (!firstRead) deliverFirst(words);
      for (let r = 0; r < group.rounds && !stopped; r++) {
        const at = r * slotWords;
        const kept = words[at];
        if (!(kept <= group.k)) throw new Error(`speculative: a round kept ${kept} of ${group.k}`);
        const tokens = [...words.subarray(at + 1, at + kept + 2)];
        for (const t of tokens) {
          checkArgmaxToken(t, target.config.vocabSize, "speculative rounds", target.format);
        }
        result.targetPasses++;
        result.drafted += group.k;
        result.accepted += kept;
        result.draftLengths.push(group.k);
        result.acceptedPerRound.push(kept);
        tpos += 1 + kept;
        hi += 1 + kept;
        prev = tokens.length > 1 ? tokens[tokens.length - 2] : all[all.length - 1];
        all.push(...tokens);
        if (!o.deliver(tokens)) stopped = true;
      }
      if (stopped) break;
      if (o.adaptive) {
        const h = o.history;
        h.groups.push({
          k: group.k,
          rounds: group.rounds,
          msPerRound: result.groupRoundMs.at(-1)!,
        });
        const from = result.draftLengths.length - group.rounds;
        h.lengths.push(...result.draftLengths.slice(from));
        h.kept.push(...result.acceptedPerRound.slice(from));
        h.groups.splice(0, h.groups.length - HISTORY_GROUPS);
        h.lengths.splice(0, h.lengths.length - HISTORY_ROUNDS);
        h.kept.splice(0, h.kept.length - HISTORY_ROUNDS);
        k = historyLength(h, o.maxK, next?.k ?? NaN) ?? k;
      }
      // the groups in flight may yield fewer tokens than expected: then one more
      group = next ?? submitGroup();
    }
  } finally {
    // Let every submitted group finish before its buffers go.
    if (submitted > read && !gpu.lost) await gpu.sync().catch(() => {});
    for (const { buffer, id } of staging) {
      buffer.destroy();
      gpu.ledger.release(id);
    }
    record.destroy();
    draftRows?.destroy();
    target.setGpuStart(0);
    draft.setGpuStart(0);
  }
  if (stopped) {
    // as greedy decoding leaves it: the prompt and every delivered token but the last
    const end = prompt.length + result.tokens.length - 1;
    target.reset(end);
    draft.reset(Math.max(0, Math.min(end, tpos - 1)));
  } else {
    target.reset(tpos);
    draft.reset(tpos - 1);
  }
  return { stopped, k, prev };
}
