/**
 * Speculative decoding on the GPU with the bundled pair (models/sotu-llama and its draft): the
 * verify pass against decode steps, rollback, greedy output identical to the target's greedy
 * decoding for every weight format (target and draft formats mixed), and a small seeded check
 * that sampled tokens follow the target's distribution.
 */
import { deepStrictEqual as assertEquals, ok as assert, rejects, throws } from "node:assert/strict";
import { type Gpu, requestGpu } from "../../lib/gpu/device.ts";
import { LlamaModel } from "../../lib/model/llama.ts";
import { argmax, seededRandom } from "../../lib/model/sampling.ts";
import {
  adaptiveDraftLength,
  samplingDistribution,
  speculativeDecode,
  type SpeculativeResult,
  type TimedGroup,
} from "../../lib/model/speculative.ts";
import { loadTokenizer } from "../../lib/model/tokenizer.ts";
import { kernelsOf } from "../helpers/dispatches.ts";
import { cpuChoose, cpuKeptDistribution, cpuSample } from "../../lib/kernels/sample.ts";
import type { QuantFormat } from "../../lib/quant/formats.ts";

const TARGET = new URL("../../models/sotu-llama", import.meta.url).pathname;
const DRAFT = new URL("../../models/sotu-llama-draft", import.meta.url).pathname;
const MAX_SEQ = 160;

const gpu: Gpu = await requestGpu();
globalThis.addEventListener("unload", () => gpu.destroy());
const tokenizer = await loadTokenizer(TARGET);
const prompt = tokenizer.encode("The state of the Union is");

function load(dir: string, format: QuantFormat): Promise<LlamaModel> {
  return LlamaModel.load(dir, { gpu, format, maxSeqLen: MAX_SEQ, chunkSize: 32 });
}

// Speculative decoding's output is the target's greedy output only if a verify pass's rows are
// exactly its decode steps, the KV entries they leave included: a last-bit difference in the
// cache grows along the sequence and flips near ties (the bundled int8 target did, 63 tokens
// after "I ask the Congress to", when the decode step summed its attention in another order).
// Here a cache built by verify passes of 2 and 3 rows against one built by decode steps, bit for
// bit: on a software adapter for each format; on a GPU the 4-bit formats' multi-row products
// round their f16 arithmetic differently from the one-row product, so there the same argmaxes.
for (const format of ["fp16", "int8-vectorwise", "nf4"] as const) {
  Deno.test(`verify passes build the cache decode steps build, bit for bit (${format})`, async () => {
    const model = await load(TARGET, format);
    try {
      const text = tokenizer.encode("I ask the Congress to");
      const steps = await model.decodeGreedy(text, { maxNewTokens: 24 });
      const tokens = steps.tokens;
      model.reset();
      const want: Float32Array[] = [(await model.forward(text, "last")).slice()];
      for (const t of tokens.slice(0, -1)) want.push((await model.forward([t], "last")).slice());
      const vocab = model.config.vocabSize;
      const exact = gpu.isSoftware || !format.startsWith("nf4");
      for (const rows of [2, 3]) {
        model.reset();
        await model.forward(text, "none");
        for (let i = 0; i + rows <= tokens.length - 1; i += rows) {
          const got = await model.verify(tokens.slice(i, i + rows), "logits");
          for (let r = 0; r < rows; r++) {
            const row = got.subarray(r * vocab, (r + 1) * vocab);
            const step = want[i + r + 1];
            const where = `${rows}-row passes, token ${i + r + 1}`;
            if (exact) assertEquals(row, step, where);
            else assertEquals(argmax(row), argmax(step), where);
          }
        }
      }
    } finally {
      model.dispose();
    }
  });
}

Deno.test("a layer-by-layer draft's chained first pass runs its two rows as a verify pass does, not as a prefill", async () => {
  // A prefill's GEMM pads two rows to a whole tile: a TinyLlama-shaped NF4 draft took 85 ms for
  // it on the H200, against ~2 ms for the multi-row products.
  for (const format of ["nf4", "fp16"] as const) {
    const draft = await load(DRAFT, format);
    try {
      const text = tokenizer.encode("I ask the Congress to");
      const want = (await draft.decodeGreedy(text, { maxNewTokens: 5 })).tokens;
      // as chained rounds leave it: the cache holds all but the last prompt token, and the input
      // holds that token and the first greedy one
      draft.reset();
      await draft.forward(text.slice(0, -1), "none");
      draft.tokenInput.write(gpu.device, new Uint32Array([text[text.length - 1], want[0]]));
      draft.setGpuStart(text.length - 1);
      const into = gpu.tensor({ label: "proposals", category: "scratch", byteSize: 8 * 4 });
      const kernels = await kernelsOf(() => draft.proposeChained(4, into, text.length - 1));
      const got = await gpu.readU32(into, 1, 4);
      into.destroy();
      assertEquals([...got], want.slice(1, 5), `${format}: the draft's own greedy tokens`);
      const gemms = kernels.filter((k) => k.includes(":gemm"));
      assertEquals(gemms, [], `${format}: no prefill GEMM in the proposals`);
      assert(kernels.some((k) => k.includes("gemv_rows")), `${format}: multi-row products`);
    } finally {
      draft.setGpuStart(0);
      draft.dispose();
    }
  }
});

Deno.test("verify: every row's logits are a decode step's, and rollback drops the rest", async () => {
  const model = await load(TARGET, "llm-int8");
  try {
    const tokens = [450, 3681, 310, 278, 761, 338];
    await model.forward(prompt, "none");
    const start = model.position;
    const steps: Float32Array[] = [];
    for (const t of tokens) steps.push(await model.forward([t], "last"));
    model.rollback(start);
    const all = await model.verify(tokens, "logits");
    const vocab = model.config.vocabSize;
    for (let r = 0; r < tokens.length; r++) {
      const row = all.subarray(r * vocab, (r + 1) * vocab);
      let diff = 0;
      let scale = 0;
      for (let i = 0; i < vocab; i++) {
        diff = Math.max(diff, Math.abs(row[i] - steps[r][i]));
        scale = Math.max(scale, Math.abs(steps[r][i]));
      }
      // the products are the decode step's; attention may split its sums elsewhere
      assert(diff <= 1e-4 * scale, `row ${r}: max diff ${diff} (scale ${scale})`);
      assertEquals(argmax(row), argmax(steps[r]));
    }
    assertEquals(model.position, start + tokens.length);
    model.rollback(start + 2);
    const best = await model.verify(tokens.slice(2, 5), "argmax");
    assertEquals([...best], [2, 3, 4].map((r) => argmax(steps[r])));
    // "none": the pass alone (no LM head, nothing read back) leaves the cache as the others do
    model.rollback(start);
    assertEquals(await model.verify(tokens.slice(0, 4), "none"), undefined);
    assertEquals(model.position, start + 4);
    assertEquals(argmax(await model.forward([tokens[4]], "last")), argmax(steps[4]));
    throws(() => model.rollback(model.position + 1), /rollback/);
    await rejects(() => model.verify(new Array(9).fill(1), "argmax"), /verify pass/);
    await rejects(() => model.verify(new Array(9).fill(1), "none"), /verify pass/);
  } finally {
    model.dispose();
  }
});

// Target format, draft format: every format as a target, drafts mixed.
const PAIRS: [QuantFormat, QuantFormat][] = [
  ["fp16", "fp16"],
  ["int8-vectorwise", "nf4"],
  ["int8-absmax", "fp16"],
  ["llm-int8", "int8-vectorwise"],
  ["nf4", "llm-int8"],
  ["nf4-dq", "q8_0"],
  ["fp4", "fp16"],
  ["int4", "nf4-dq"],
  ["q8_0", "fp4"],
];

for (const [targetFormat, draftFormat] of PAIRS) {
  Deno.test(`speculative greedy = target greedy: ${targetFormat} target, ${draftFormat} draft`, async () => {
    const target = await load(TARGET, targetFormat);
    const draft = await load(DRAFT, draftFormat);
    try {
      const n = 24;
      target.reset();
      const want = (await target.decodeGreedy(prompt, { maxNewTokens: n })).tokens;
      // fixed draft length for half the pairs, adaptive for the others
      const opts = PAIRS.findIndex(([t]) => t === targetFormat) % 2 ? {} : { draftTokens: 3 };
      {
        const run = await speculativeDecode(target, draft, prompt, { maxNewTokens: n, ...opts });
        assertEquals(run.tokens, want, JSON.stringify(opts));
        assert(run.accepted > 0, "the draft gets some tokens right");
        assert(run.tokensPerTargetPass > 1);
      }
    } finally {
      target.dispose();
      draft.dispose();
    }
  });
}

// A draft that is often right yields several tokens a round, and rounds submitted past the last
// token are work for nothing: once a group has been read, the next is sized by the tokens a round
// has yielded so far (two rounds to spare), and one more group follows if that falls short.
Deno.test("rounds chained in groups: the last groups sized by the tokens a round yields", async () => {
  const target = await load(TARGET, "fp16");
  const draft = await load(DRAFT, "fp16");
  let submitted = 0;
  const verifyChained = target.verifyChained.bind(target);
  target.verifyChained = (...a: Parameters<typeof verifyChained>) => {
    submitted++;
    verifyChained(...a);
  };
  try {
    target.reset();
    const want = (await target.decodeGreedy(prompt, { maxNewTokens: 64 })).tokens;
    const run = await speculativeDecode(target, draft, prompt, {
      maxNewTokens: 64,
      draftTokens: 3,
      groupRounds: 8,
    });
    assertEquals(run.tokens, want);
    assert(
      run.tokensPerTargetPass > 2,
      `the bundled draft is often right: ${run.tokensPerTargetPass}`,
    );
    // at least one token a round would have allowed 8 + 8 + 8 + 8 rounds here
    assert(
      submitted <= run.targetPasses + 6,
      `${submitted} rounds submitted for ${run.targetPasses} passes (groups ${run.groups})`,
    );
  } finally {
    target.dispose();
    draft.dispose();
  }
});

Deno.test("rounds chained in groups: stops inside a group, group sizes, one round per readback", async () => {
  const target = await load(TARGET, "nf4");
  const draft = await load(DRAFT, "fp16");
  try {
    target.reset();
    const want = (await target.decodeGreedy(prompt, { maxNewTokens: 30 })).tokens;
    // groups of 1, 3 and 8 rounds (the default), and one readback per round
    await draft.fuseProposals(); // reads the draft's weights back once, to pack them
    const proto = GPUBuffer.prototype;
    const mapAsync = proto.mapAsync;
    for (const groupRounds of [1, 3, undefined, 0]) {
      let readbacks = 0;
      proto.mapAsync = function (this: GPUBuffer, ...a: Parameters<GPUBuffer["mapAsync"]>) {
        readbacks++;
        return mapAsync.apply(this, a);
      };
      const run = await speculativeDecode(target, draft, prompt, {
        maxNewTokens: 30,
        draftTokens: 3,
        groupRounds,
      }).finally(() => proto.mapAsync = mapAsync);
      assertEquals(run.tokens, want, `groupRounds ${groupRounds}`);
      if (groupRounds !== 0) {
        // every chained round drafts k (one readback per round drafts less near the end)
        assertEquals(run.draftLengths.length, run.targetPasses);
        assertEquals(run.drafted, 3 * run.targetPasses);
        // one readback per group: the prompt pass's token comes back with the first
        assertEquals(readbacks, run.groups.length, `readbacks, groupRounds ${groupRounds}`);
      }
      assertEquals(target.position, prompt.length + want.length - 1);
    }
    // a stop by onToken at every token of the first rounds (k = 4: a round makes 1 to 5
    // tokens, a group of 8 rounds 8 to 40), and by maxNewTokens: the surplus is dropped, and the target's position is what
    // greedy decoding leaves
    for (let stopAt = 0; stopAt < 9; stopAt++) {
      const seen: number[] = [];
      const run = await speculativeDecode(target, draft, prompt, {
        maxNewTokens: 30,
        draftTokens: 4,
        onToken: (t, i) => {
          seen.push(t);
          return i !== stopAt;
        },
      });
      assertEquals(run.tokens, want.slice(0, stopAt + 1), `stop at ${stopAt}`);
      assertEquals(seen, run.tokens);
      assertEquals(run.stoppedBy, "callback");
      assertEquals(target.position, prompt.length + stopAt);
      assert(draft.position <= target.position);
      // the cache holds what greedy decoding's would: the next step gives the next token
      if (stopAt + 1 < want.length) {
        const next = await target.decodeGreedy([want[stopAt]], { maxNewTokens: 1 });
        assertEquals(next.tokens, [want[stopAt + 1]], `after a stop at ${stopAt}`);
      }
    }
    for (const maxNewTokens of [1, 2, 5, 13]) {
      const run = await speculativeDecode(target, draft, prompt, { maxNewTokens });
      assertEquals(run.tokens, want.slice(0, maxNewTokens), `maxNewTokens ${maxNewTokens}`);
      assertEquals(run.stoppedBy, "max-tokens");
      assertEquals(target.position, prompt.length + maxNewTokens - 1);
    }
  } finally {
    target.dispose();
    draft.dispose();
  }
});

/**
 * What the adaptive length had seen after a run's first `count` groups were read: each draft
 * token's chance of being kept over their rounds (as speculative.ts estimates it), and the groups
 * as timed.
 */
function readGroups(run: SpeculativeResult, count: number): { alpha: number; timed: TimedGroup[] } {
  const timed: TimedGroup[] = [];
  let rounds = 0;
  for (let g = 0; g < count; g++) {
    timed.push({
      k: run.draftLengths[rounds],
      rounds: run.groups[g],
      msPerRound: run.groupRoundMs[g],
    });
    rounds += run.groups[g];
  }
  let kept = 0;
  let rejections = 0;
  for (let r = 0; r < rounds; r++) {
    kept += run.acceptedPerRound[r];
    if (run.acceptedPerRound[r] < run.draftLengths[r]) rejections++;
  }
  return { alpha: kept / (kept + rejections), timed };
}

Deno.test("rounds chained in groups, adaptive: each group takes the length that the acceptance and the timed groups so far give", async () => {
  const target = await load(TARGET, "fp16");
  const draft = await load(DRAFT, "fp16");
  try {
    target.reset();
    const want = (await target.decodeGreedy(prompt, { maxNewTokens: 60 })).tokens;
    const run = await speculativeDecode(target, draft, prompt, {
      maxNewTokens: 60,
      groupRounds: 3,
    });
    assertEquals(run.tokens, want);
    // the first two groups are submitted before any is read: the starting length, 4
    assertEquals(run.draftLengths.slice(0, 6), [4, 4, 4, 4, 4, 4]);
    assertEquals(run.groupRoundMs.length, run.groups.length);
    assert(
      Number.isNaN(run.groupRoundMs[0]),
      "the first group (with the prompt pass) is not timed",
    );
    // group g + 2 is submitted once group g is read: its length comes from the rounds of groups
    // 0 .. g, their times, and group g + 1's length (in flight)
    let at = 0;
    for (const rounds of run.groups) {
      const lengths = run.draftLengths.slice(at, at + rounds);
      assert(lengths.every((k) => k === lengths[0]), `one length per group: ${lengths}`);
      at += rounds;
    }
    const { timed } = readGroups(run, run.groups.length);
    for (let g = 2; g < run.groups.length; g++) {
      const { alpha } = readGroups(run, g - 1);
      assertEquals(
        timed[g].k,
        adaptiveDraftLength(alpha, 7, timed.slice(0, g - 1), timed[g - 1].k),
        `group ${g}`,
      );
    }
    assert(run.groups.length >= 4, `groups ${run.groups}`);
  } finally {
    target.dispose();
    draft.dispose();
  }
});

Deno.test("rounds chained in groups, adaptive: a pair's next call starts where its last left off", async () => {
  const target = await load(TARGET, "fp16");
  const draft = await load(DRAFT, "fp16");
  try {
    const want = (await target.decodeGreedy(prompt, { maxNewTokens: 40 })).tokens;
    const first = await speculativeDecode(target, draft, prompt, {
      maxNewTokens: 40,
      groupRounds: 3,
    });
    assertEquals(first.tokens, want);
    assertEquals(first.draftLengths.slice(0, 6), [4, 4, 4, 4, 4, 4], "a new pair starts at 4");
    const { alpha, timed } = readGroups(first, first.groups.length);
    const start = adaptiveDraftLength(alpha, 7, timed, NaN);
    const second = await speculativeDecode(target, draft, prompt, {
      maxNewTokens: 40,
      groupRounds: 3,
    });
    assertEquals(second.tokens, want);
    assertEquals(second.draftLengths.slice(0, 3), [start, start, start]);
    // a starting length given is kept; sampling has a history of its own (it starts at 4)
    const given = await speculativeDecode(target, draft, prompt, {
      maxNewTokens: 12,
      groupRounds: 3,
      draftTokens: 2,
      adaptive: true,
    });
    assertEquals(given.draftLengths.slice(0, 3), [2, 2, 2]);
    const sampled = await speculativeDecode(target, draft, prompt, {
      maxNewTokens: 12,
      groupRounds: 3,
      temperature: 0.8,
    });
    assertEquals(sampled.draftLengths.slice(0, 3), [4, 4, 4]);
  } finally {
    target.dispose();
    draft.dispose();
  }
});

Deno.test('rounds chained in groups sized "auto": the same tokens, groups of 8 then grown to the aim', async () => {
  const target = await load(TARGET, "fp16");
  const draft = await load(DRAFT, "fp16");
  try {
    const want = (await target.decodeGreedy(prompt, { maxNewTokens: 100 })).tokens;
    // an aim no group reaches on any adapter: groups grow from the first measure on
    const run = await speculativeDecode(target, draft, prompt, {
      maxNewTokens: 100,
      draftTokens: 3,
      groupRounds: "auto",
      autoGroupMs: 1e6,
    });
    assertEquals(run.tokens, want);
    // the second group is submitted before the first is read; the third is sized from it
    assertEquals(run.groups.slice(0, 2), [8, 8], "8 until the first group is read");
    assert(run.groups[2] > 8, `the third group grows: ${run.groups}`);
    assert(run.groups.every((g) => g >= 1 && g <= 64), `groups of 1 to 64 rounds: ${run.groups}`);
  } finally {
    target.dispose();
    draft.dispose();
  }
});

Deno.test("rounds chained in groups: the context limit (groups give way to single rounds)", async () => {
  // caches of 40 positions; the draft's a little longer, then shorter than the target's
  for (const draftSeq of [44, 36]) {
    const opts = { gpu, chunkSize: 32 };
    const target = await LlamaModel.load(TARGET, { ...opts, format: "fp16", maxSeqLen: 40 });
    const draft = await LlamaModel.load(DRAFT, { ...opts, format: "q8_0", maxSeqLen: draftSeq });
    try {
      target.reset();
      const alone = await target.decodeGreedy(prompt, { maxNewTokens: 64 });
      assertEquals(alone.stoppedBy, "context");
      const run = await speculativeDecode(target, draft, prompt, { maxNewTokens: 64 });
      assertEquals(run.tokens, alone.tokens, `draft cache ${draftSeq}`);
      assertEquals(run.stoppedBy, "context");
      assertEquals(target.position, 40);
      // a prompt that leaves no room for a round of 4: the prompt pass's token read alone
      const long = [...prompt, ...prompt, ...prompt, ...prompt, ...prompt, ...prompt]
        .slice(0, Math.min(36, draftSeq - 1));
      target.reset();
      const longAlone = await target.decodeGreedy(long, { maxNewTokens: 8 });
      const longRun = await speculativeDecode(target, draft, long, {
        maxNewTokens: 8,
        draftTokens: 4,
      });
      assertEquals(longRun.tokens, longAlone.tokens, `long prompt, draft cache ${draftSeq}`);
      assertEquals(longRun.groups, [], "no group of rounds fits");
    } finally {
      target.dispose();
      draft.dispose();
    }
  }
});

Deno.test("a draft whose chunks hold one token reads back every round (the chained first pass has two rows)", async () => {
  const target = await load(TARGET, "fp16");
  const draft = await LlamaModel.load(DRAFT, {
    gpu,
    format: "fp16",
    maxSeqLen: MAX_SEQ,
    chunkSize: 1,
  });
  try {
    target.reset();
    const want = (await target.decodeGreedy(prompt, { maxNewTokens: 12 })).tokens;
    const run = await speculativeDecode(target, draft, prompt, {
      maxNewTokens: 12,
      draftTokens: 2,
    });
    assertEquals(run.tokens, want);
  } finally {
    target.dispose();
    draft.dispose();
  }
});

Deno.test("speculative greedy = target greedy with quantized KV caches (rollback moves only the position)", async () => {
  for (const kvCache of ["int8", "int4"] as const) {
    const opts = { gpu, maxSeqLen: MAX_SEQ, chunkSize: 32, kvCache };
    const target = await LlamaModel.load(TARGET, { ...opts, format: "fp16" });
    const draft = await LlamaModel.load(DRAFT, { ...opts, format: "nf4" });
    try {
      target.reset();
      const want = (await target.decodeGreedy(prompt, { maxNewTokens: 24 })).tokens;
      const run = await speculativeDecode(target, draft, prompt, { maxNewTokens: 24 });
      assertEquals(run.tokens, want, `kv cache ${kvCache}`);
      assert(run.accepted > 0);
    } finally {
      target.dispose();
      draft.dispose();
    }
  }
});

// Pooled chi-square at p = 0.001 of tokens observed after prefixes, against the target's
// distribution after each (expected counts under 5 pooled into one cell).
function pooledChiSquare(observed: Map<number, number>, expected: Map<number, number>): void {
  for (const b of observed.keys()) assert(expected.has(b), `token ${b} has probability 0`);
  let stat = 0;
  let cells = 0;
  let restObs = 0;
  let restExp = 0;
  for (const [b, e] of expected) {
    const o = observed.get(b) ?? 0;
    if (e < 5) {
      restObs += o;
      restExp += e;
    } else {
      stat += (o - e) ** 2 / e;
      cells++;
    }
  }
  if (restExp > 0) {
    stat += (restObs - restExp) ** 2 / restExp;
    cells++;
  }
  const dof = Math.max(1, cells - 1);
  const limit = dof * (1 - 2 / (9 * dof) + 3.09 * Math.sqrt(2 / (9 * dof))) ** 3; // p = 0.001
  assert(stat < limit, `chi-square ${stat.toFixed(1)} ≥ ${limit.toFixed(1)} (${cells} cells)`);
}

// Sampled rounds chained on the GPU: the draft draws on the GPU, the target accepts or redraws
// there (kernels/sample.wgsl's choose), groups come back as greedy rounds do. Each token after
// the first must follow the target's distribution given the tokens before it.
for (const k of [1, 3]) {
  Deno.test(`speculative sampling on the GPU, ${k} draft token(s): each token follows the target given the ones before`, async () => {
    const target = await load(TARGET, "fp16");
    const draft = await load(DRAFT, "nf4");
    try {
      const settings = { temperature: 1, topK: 4 };
      const runs = 80;
      const positions = k === 1 ? 1 : 2; // the tokens checked after the first
      const runsTokens: number[][] = [];
      let drafted = 0;
      let accepted = 0;
      for (let seed = 1; seed <= runs; seed++) {
        const run = await speculativeDecode(target, draft, prompt, {
          maxNewTokens: 1 + positions,
          draftTokens: k,
          seed,
          ...settings,
        });
        assert(run.groups.length > 0, "the rounds ran chained on the GPU");
        runsTokens.push(run.tokens);
        drafted += run.drafted;
        accepted += run.accepted;
      }
      assert(accepted > 0 && accepted < drafted, `${accepted} of ${drafted} kept: both paths`);
      // the same seed, the same tokens (a fixed draft length, groups of a fixed size)
      const again = await speculativeDecode(target, draft, prompt, {
        maxNewTokens: 1 + positions,
        draftTokens: k,
        seed: 1,
        ...settings,
      });
      assertEquals(again.tokens, runsTokens[0]);
      for (let at = 1; at <= positions; at++) {
        const byPrefix = new Map<string, number[]>();
        for (const t of runsTokens) {
          const key = t.slice(0, at).join(",");
          (byPrefix.get(key) ?? byPrefix.set(key, []).get(key)!).push(t[at]);
        }
        const expected = new Map<number, number>();
        const observed = new Map<number, number>();
        for (const [key, next] of byPrefix) {
          target.reset();
          await target.forward(prompt, "none");
          const before = key.split(",").map(Number);
          if (before.length > 1) await target.forward(before.slice(0, -1), "none");
          const p = samplingDistribution(await target.forward(before.slice(-1), "last"), settings);
          p.forEach((v, b) => v > 0 && expected.set(b, (expected.get(b) ?? 0) + v * next.length));
          for (const b of next) observed.set(b, (observed.get(b) ?? 0) + 1);
        }
        pooledChiSquare(observed, expected);
      }
    } finally {
      target.dispose();
      draft.dispose();
    }
  });
}

// The same rounds, token for token: the first round of a chained sampled run against the CPU
// twins fed the same uniforms (the prompt pass's, the draft's k, k pairs for the acceptance, one
// for the target's token after the last proposal, drawn in that order from the seed) and the
// logits of forward passes (a verify row is a decode step, bit for bit, on a software adapter).
Deno.test("speculative sampling on the GPU: a round's tokens are the twins' for the same uniforms", async () => {
  const target = await load(TARGET, "fp16");
  const draft = await load(DRAFT, "fp16");
  try {
    const settings = { temperature: 1.5, topK: 0, topP: 0.95 };
    const k = 3;
    const vocab = target.config.vocabSize;
    let compared = 0;
    let rejected = 0;
    for (let seed = 1; seed <= 24; seed++) {
      const run = await speculativeDecode(target, draft, prompt, {
        maxNewTokens: 2 + k,
        draftTokens: k,
        seed,
        ...settings,
      });
      const rng = seededRandom(seed);
      const u0 = rng();
      const uDraft = Array.from({ length: k }, () => rng());
      const uChoose = Array.from({ length: k }, () => [rng(), rng()]);
      const uNext = rng();
      const margins: number[] = [];
      target.reset();
      const first = cpuSample(await target.forward(prompt, "last"), settings, u0);
      margins.push(first.margin);
      draft.reset();
      await draft.forward(prompt, "none");
      const d: number[] = [];
      const q: Float64Array[] = [];
      let last = first.token;
      for (let i = 0; i < k; i++) {
        const logits = await draft.forward([last], "last");
        q.push(cpuKeptDistribution(logits, settings));
        const drawn = cpuSample(logits, settings, uDraft[i]);
        margins.push(drawn.margin);
        d.push(last = drawn.token);
      }
      const want = [first.token];
      let kept = 0;
      let next = -1;
      for (const [i, token] of [first.token, ...d].entries()) {
        const logits = await target.forward([token], "last");
        if (i === k) {
          const bonus = cpuSample(logits, settings, uNext);
          margins.push(bonus.margin);
          next = bonus.token;
          break;
        }
        const p = Float64Array.from(Float32Array.from(cpuKeptDistribution(logits, settings)));
        const qf = Float64Array.from(Float32Array.from(q[i]));
        const c = cpuChoose(p, qf, d[i], uChoose[i][0], uChoose[i][1]);
        margins.push(c.margin);
        if (!c.kept) {
          next = c.token;
          break;
        }
        kept++;
      }
      want.push(...d.slice(0, kept), next);
      if (Math.min(...margins) < 1e-5) continue; // f32 sums may choose the neighbour there
      compared++;
      if (kept < k) rejected++;
      assertEquals(run.acceptedPerRound[0], kept, `seed ${seed}: kept`);
      assertEquals(run.tokens.slice(0, want.length), want, `seed ${seed}`);
      assert(want.every((t) => t < vocab));
    }
    assert(
      compared >= 10 && rejected >= 2,
      `${compared} rounds compared, ${rejected} with a rejection`,
    );
  } finally {
    target.dispose();
    draft.dispose();
  }
});

Deno.test("speculative decoding frees nothing it did not own: the ledger returns to zero", async () => {
  const before = gpu.ledger.currentBytes;
  const target = await load(TARGET, "llm-int8");
  const draft = await load(DRAFT, "fp16");
  await speculativeDecode(target, draft, prompt, { maxNewTokens: 8 });
  // a prompt whose last token is outside the vocabulary: refused, with nothing left behind
  const held = gpu.ledger.currentBytes;
  await rejects(
    speculativeDecode(target, draft, [...prompt, target.config.vocabSize], { maxNewTokens: 8 }),
    /outside the vocabulary/,
  );
  assertEquals(gpu.ledger.currentBytes, held, "a refused prompt frees what the rounds took");
  target.dispose();
  draft.dispose();
  gpu.trimScratch();
  assertEquals(gpu.ledger.currentBytes, before);
});
