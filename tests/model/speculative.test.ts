// Speculative decoding on the CPU with small toy models (tests/helpers/toy_lm.ts): the
// accept/reject rule, the sampling distribution it must preserve, greedy identity, rollback and
// the adaptive draft length. The GPU end-to-end checks with the bundled pair are in
// speculative_gpu.test.ts.

import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { createSampler, seededRandom } from "../../lib/model/sampling.ts";
import {
  acceptOrResample,
  adaptiveDraftLength,
  expectedRoundTokens,
  fastestDraftLength,
  roundCostOf,
  sampleFrom,
  samplingDistribution,
  settledDraftLength,
  speculativeDecode,
} from "../../lib/model/speculative.ts";
import { ToyLm } from "../helpers/toy_lm.ts";

/**
 * Pearson's chi-square of observed counts against expected probabilities, cells with an
 * expected count below 5 pooled into one; returns the statistic and the 0.999 quantile of the
 * chi-square distribution with that many degrees of freedom (Wilson–Hilferty).
 */
function chiSquare(counts: number[], probs: number[]): { stat: number; limit: number } {
  const total = counts.reduce((a, b) => a + b, 0);
  let stat = 0;
  let cells = 0;
  let poolObs = 0;
  let poolExp = 0;
  counts.forEach((c, i) => {
    const e = probs[i] * total;
    if (e < 5) {
      poolObs += c;
      poolExp += e;
      return;
    }
    stat += (c - e) ** 2 / e;
    cells++;
  });
  if (poolExp > 0) {
    stat += (poolObs - poolExp) ** 2 / Math.max(poolExp, 1e-9);
    cells++;
  }
  const dof = Math.max(1, cells - 1);
  const z = 3.09; // 0.999
  const limit = dof * (1 - 2 / (9 * dof) + z * Math.sqrt(2 / (9 * dof))) ** 3;
  return { stat, limit };
}

const SETTINGS = [
  { temperature: 1 },
  { temperature: 0.7, topK: 3 },
  { temperature: 1.3, topP: 0.8 },
  { temperature: 0.8, topK: 4, topP: 0.9 },
];

Deno.test("samplingDistribution is the distribution createSampler draws from", () => {
  const logits = new Float32Array([0.3, -1, 2, 1.1, 0.9, -0.2, 1.5]);
  for (const s of SETTINGS) {
    const p = samplingDistribution(logits, s);
    assert(Math.abs(p.reduce((a, b) => a + b, 0) - 1) < 1e-12);
    const sample = createSampler({ ...s, seed: 7 });
    const counts = new Array(logits.length).fill(0);
    for (let i = 0; i < 20000; i++) counts[sample(logits)]++;
    const { stat, limit } = chiSquare(counts, [...p]);
    assert(stat < limit, `${JSON.stringify(s)}: chi-square ${stat} ≥ ${limit}`);
    // cut tokens are never drawn
    p.forEach((v, i) => v === 0 && assertEquals(counts[i], 0));
  }
  assertEquals([...samplingDistribution(logits, { temperature: 0 })], [0, 0, 1, 0, 0, 0, 0]);
});

Deno.test("acceptOrResample: draft tokens from q come out distributed as p", () => {
  const rng = seededRandom(3);
  const cases = [
    { p: [0.5, 0.3, 0.2, 0], q: [0.1, 0.1, 0.4, 0.4] }, // q puts mass where p has none
    { p: [0.25, 0.25, 0.25, 0.25], q: [0.7, 0.1, 0.1, 0.1] },
    { p: [0.1, 0.6, 0.3, 0], q: [0.1, 0.6, 0.3, 0] }, // q = p: everything accepted
  ];
  for (const { p, q } of cases) {
    const counts = [0, 0, 0, 0];
    let accepted = 0;
    const n = 40000;
    for (let i = 0; i < n; i++) {
      const d = sampleFrom(q, rng);
      const r = acceptOrResample(d, p, q, rng);
      counts[r.token]++;
      if (r.accepted) accepted++;
    }
    const { stat, limit } = chiSquare(counts, p);
    assert(stat < limit, `p=${p} q=${q}: chi-square ${stat} ≥ ${limit}`);
    // The acceptance rate is Σ min(p, q).
    const expected = p.reduce((s, v, i) => s + Math.min(v, q[i]), 0);
    assert(Math.abs(accepted / n - expected) < 0.01, `acceptance ${accepted / n} vs ${expected}`);
  }
});

Deno.test("speculativeDecode greedy: the target's greedy tokens, fixed and adaptive draft lengths", async () => {
  for (const seed of [1, 2, 3]) {
    const target = new ToyLm(12, seed);
    const draft = new ToyLm(12, seed + 100, { base: target, noise: 0.6 });
    const prompt = [1, 5, 2];
    const want = [
      ...(await target.decodeGreedy(prompt, { maxNewTokens: 40 })).tokens,
    ];
    for (const opts of [{ draftTokens: 1 }, { draftTokens: 4 }, { draftTokens: 7 }, {}]) {
      const run = await speculativeDecode(target, draft, prompt, { maxNewTokens: 40, ...opts });
      assertEquals(run.tokens, want, `seed ${seed} ${JSON.stringify(opts)}`);
      assert(run.accepted > 0 && run.accepted < run.drafted, "a mix of accepted and rejected");
      // every verify pass yields its kept draft tokens plus one
      assertEquals(
        run.tokens.length - 1,
        run.acceptedPerRound.reduce((a, b) => a + b, 0) + run.targetPasses,
      );
      // caches rolled back to the kept tokens: the target holds prompt + all but the last token
      assertEquals(target.position, prompt.length + run.tokens.length - 1);
      // fixed: every round drafts K until the token budget caps it (then never K again);
      // adaptive: the length goes up and down
      const lens = run.draftLengths;
      const grew = lens.some((n, i) => i > 0 && n > lens[i - 1]);
      if ("draftTokens" in opts) assertEquals(lens[0], opts.draftTokens);
      assertEquals(grew, !("draftTokens" in opts), `${lens}`);
    }
  }
});

Deno.test("speculativeDecode adaptive length grows on full acceptance and shrinks on rejection", async () => {
  // A draft identical to the target is always right: k grows 4, 6, 7, 7, ...
  const target = new ToyLm(10, 9);
  const same = new ToyLm(10, 9);
  const run = await speculativeDecode(target, same, [3], { maxNewTokens: 40 });
  assertEquals(run.draftLengths.slice(0, 4), [4, 6, 7, 7]);
  assertEquals(run.acceptanceRate, 1);
  // An unrelated draft is mostly wrong: k shrinks after every rejection, grows after a full round
  const run2 = await speculativeDecode(target, new ToyLm(10, 55, { noise: 3 }), [3], {
    maxNewTokens: 30,
  });
  assert(run2.acceptanceRate < 0.5);
  assert(run2.draftLengths.includes(1));
  for (let i = 1; i < run2.draftLengths.length; i++) {
    const prev = run2.draftLengths[i - 1];
    const full = run2.acceptedPerRound[i - 1] === prev;
    // the next length follows the rule unless the token budget capped it
    if (i < run2.draftLengths.length - 1) {
      assertEquals(run2.draftLengths[i], full ? Math.min(7, prev + 2) : Math.max(1, prev - 1));
    }
  }
});

Deno.test("fastestDraftLength: the most tokens per millisecond, long rounds where drafting is cheap", () => {
  assert(Math.abs(expectedRoundTokens(0.7, 3) - 2.533) < 1e-12);
  assertEquals(expectedRoundTokens(1, 5), 6);
  assertEquals(expectedRoundTokens(0, 5), 1);
  // against a brute force over the lengths
  for (const alpha of [0.3, 0.6, 0.75, 0.9, 0.99]) {
    for (const cost of [{ fixed: 10, perToken: 0.3 }, { fixed: 6.5, perToken: 1.7 }]) {
      const rate = (k: number) => expectedRoundTokens(alpha, k) / (cost.fixed + cost.perToken * k);
      const want = [1, 2, 3, 4, 5, 6, 7].reduce((a, b) => rate(b) > rate(a) ? b : a);
      assertEquals(fastestDraftLength(alpha, 7, cost), want, `α ${alpha}, ${JSON.stringify(cost)}`);
    }
  }
  // free draft tokens: the longest; a draft token as dear as a round: short rounds
  assertEquals(fastestDraftLength(0.5, 7, { fixed: 1, perToken: 0 }), 7);
  assertEquals(fastestDraftLength(0.5, 7, { fixed: 1, perToken: 1 }), 1);
  assertEquals(fastestDraftLength(0.8, 7, { fixed: 6.5, perToken: 1.7 }), 3);
  assertEquals(fastestDraftLength(0, 7, { fixed: 1, perToken: 0 }), 1);
});

Deno.test("roundCostOf: the line through each length's mean time per round", () => {
  assertEquals(roundCostOf([]), null);
  // one length timed (and an untimed group): no line yet
  assertEquals(
    roundCostOf([{ k: 4, rounds: 8, msPerRound: 3 }, { k: 6, rounds: 8, msPerRound: NaN }]),
    null,
  );
  // exact on a line, whatever the rounds; each length's rounds weigh its mean
  const line = (k: number) => 2 + 0.25 * k;
  const c = roundCostOf([
    { k: 3, rounds: 5, msPerRound: line(3) },
    { k: 6, rounds: 20, msPerRound: line(6) },
    { k: 3, rounds: 9, msPerRound: line(3) },
  ])!;
  assert(Math.abs(c.fixed - 2) < 1e-12 && Math.abs(c.perToken - 0.25) < 1e-12, JSON.stringify(c));
  // rounds that got cheaper with length (noise): no negative cost per token
  const d = roundCostOf([{ k: 2, rounds: 8, msPerRound: 4 }, { k: 4, rounds: 8, msPerRound: 3 }])!;
  assertEquals(d.perToken, 0);
  assert(Math.abs(d.fixed - 3.5) < 1e-12);
});

Deno.test("adaptiveDraftLength: settled, then a probe, then the cheapest tokens", () => {
  const untimed = [{ k: 4, rounds: 8, msPerRound: NaN }];
  assertEquals(adaptiveDraftLength(0.7, 7, untimed, 4), settledDraftLength(0.7, 7));
  // one length timed, the settled one, in flight too: two more, or two fewer at the cap
  assertEquals(adaptiveDraftLength(0.75, 7, [{ k: 4, rounds: 8, msPerRound: 3 }], 4), 6);
  assertEquals(adaptiveDraftLength(0.97, 7, [{ k: 7, rounds: 8, msPerRound: 3 }], 7), 5);
  // ... but not when another length is in flight (its group will be timed)
  assertEquals(adaptiveDraftLength(0.75, 7, [{ k: 4, rounds: 8, msPerRound: 3 }], 6), 4);
  // two lengths timed: the fastest for that cost
  const cheap = [{ k: 4, rounds: 8, msPerRound: 3.2 }, { k: 6, rounds: 8, msPerRound: 3.3 }];
  assertEquals(adaptiveDraftLength(0.75, 7, cheap, 6), 7);
  const dear = [{ k: 4, rounds: 8, msPerRound: 13.3 }, { k: 6, rounds: 8, msPerRound: 16.7 }];
  assertEquals(
    adaptiveDraftLength(0.7, 7, dear, 6),
    fastestDraftLength(0.7, 7, roundCostOf(dear)!),
  );
  assertEquals(adaptiveDraftLength(0.7, 7, dear, 6), 2);
});

Deno.test("settledDraftLength: where the +2 / -1 rule settles for a given acceptance", () => {
  assertEquals(settledDraftLength(0.7, 7), 3);
  assertEquals(settledDraftLength(0.9, 7), 7); // 10.4, capped
  assertEquals(settledDraftLength(0.9, 20), 10);
  assertEquals(settledDraftLength(0.3, 7), 1);
  assertEquals(settledDraftLength(0, 7), 1);
  assertEquals(settledDraftLength(1, 7), 7);
  // the rule itself, run round after round with tokens kept independently: its lengths stay
  // around the settled one (without a cap, so that the walk shows where it goes)
  const rng = seededRandom(3);
  for (const alpha of [0.5, 0.7, 0.8, 0.85]) {
    let k = 4;
    let sum = 0;
    const rounds = 20000;
    for (let r = 0; r < rounds; r++) {
      let kept = 0;
      while (kept < k && rng() < alpha) kept++;
      k = kept === k ? k + 2 : Math.max(1, k - 1);
      sum += k;
    }
    const mean = sum / rounds;
    const settled = settledDraftLength(alpha, 100);
    assert(
      Math.abs(mean - settled) < 1,
      `α ${alpha}: the rule's mean length ${mean}, settled ${settled}`,
    );
  }
});

Deno.test("speculativeDecode sampling: the joint distribution of 3 tokens is the target's", async () => {
  const vocab = 5;
  const prompt = [2];
  for (const s of [{ temperature: 1 }, { temperature: 0.8, topK: 3, topP: 0.9 }]) {
    const target = new ToyLm(vocab, 21);
    const draft = new ToyLm(vocab, 22, { base: target, noise: 0.8 });
    // Exact target probabilities of every 3-token continuation.
    const exact: number[] = [];
    for (let a = 0; a < vocab; a++) {
      for (let b = 0; b < vocab; b++) {
        for (let c = 0; c < vocab; c++) {
          target.reset();
          const p1 = samplingDistribution(await target.forward(prompt), s)[a];
          const p2 = samplingDistribution(await target.forward([a]), s)[b];
          const p3 = samplingDistribution(await target.forward([b]), s)[c];
          exact.push(p1 * p2 * p3);
        }
      }
    }
    const runs = 12000;
    const counts = new Array(exact.length).fill(0);
    const naive = new Array(exact.length).fill(0); // the draft's own samples: must fail
    let drafted = 0;
    let accepted = 0;
    for (let seed = 1; seed <= runs; seed++) {
      const run = await speculativeDecode(target, draft, prompt, {
        maxNewTokens: 3,
        draftTokens: 2,
        seed,
        ...s,
      });
      const [a, b, c] = run.tokens;
      counts[(a * vocab + b) * vocab + c]++;
      drafted += run.drafted;
      accepted += run.accepted;
      const rng = seededRandom(seed);
      draft.reset();
      const x = sampleFrom(samplingDistribution(await draft.forward(prompt), s), rng);
      const y = sampleFrom(samplingDistribution(await draft.forward([x]), s), rng);
      const z = sampleFrom(samplingDistribution(await draft.forward([y]), s), rng);
      naive[(x * vocab + y) * vocab + z]++;
    }
    const good = chiSquare(counts, exact);
    assert(good.stat < good.limit, `${JSON.stringify(s)}: chi-square ${good.stat} ≥ ${good.limit}`);
    const bad = chiSquare(naive, exact);
    assert(bad.stat > bad.limit, `the test should tell the draft's distribution apart`);
    const rate = accepted / drafted;
    assert(rate > 0.2 && rate < 0.95, `acceptance ${rate}: a mix of accepts and rejections`);
  }
});

Deno.test("speculativeDecode stops at the KV cache's end and on the callback", async () => {
  const target = new ToyLm(8, 4, { maxSeqLen: 20 });
  const draft = new ToyLm(8, 5, { base: target, noise: 0.3, maxSeqLen: 20 });
  const run = await speculativeDecode(target, draft, [1, 2, 3], { maxNewTokens: 100 });
  assertEquals(run.stoppedBy, "context");
  assertEquals(run.tokens.length, 20 - 3 + 1);
  target.reset();
  const want = (await target.decodeGreedy([1, 2, 3], { maxNewTokens: 18 })).tokens;
  assertEquals(run.tokens, want);
  const stop = await speculativeDecode(target, draft, [1, 2, 3], {
    maxNewTokens: 100,
    onToken: (_, i) => i < 4,
  });
  assertEquals(stop.stoppedBy, "callback");
  assertEquals(stop.tokens, want.slice(0, 5));
});
