import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { CommandBatch } from "../../lib/gpu/batch.ts";
import { ARGMAX_NONFINITE } from "../../lib/kernels/argmax.ts";
import {
  cpuChoose,
  cpuKeptDistribution,
  cpuSample,
  createChooseKernel,
  createSampleKernel,
  type SampleSettings,
} from "../../lib/kernels/sample.ts";
import { seededRandom } from "../../lib/model/sampling.ts";
import { f32Tensor, withGpu } from "./_gpu.ts";

/**
 * `n` logits a grid step apart in a shuffled order (distinct weights, no near-ties for f32 to
 * merge), with runs of exact ties where `ties` asks: equal logits give equal weights on both
 * sides, so the top-k and nucleus cuts go through them.
 */
function gridLogits(n: number, seed: number, ties = false): Float32Array {
  const rng = seededRandom(seed);
  const values = Array.from({ length: n }, (_, i) => i * 0.013);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(rng() * (i + 1));
    [values[i], values[j]] = [values[j], values[i]];
  }
  const out = Float32Array.from(values, (v) => v - 6);
  if (ties) {
    // the 12 largest all equal, and 40 more equal a little below them
    const order = [...out.keys()].sort((a, b) => out[b] - out[a]);
    const top = out[order[0]];
    order.slice(0, 12).forEach((i) => (out[i] = top));
    order.slice(12, 52).forEach((i) => (out[i] = top - 0.5));
  }
  return out;
}

// Each draw gets its own copy of the row (the kernel overwrites it with its weights) and its
// own output word, all in one submission.
async function drawMany(
  gpu: Parameters<Parameters<typeof withGpu>[1]>[0],
  logits: Float32Array,
  settings: SampleSettings,
  us: number[],
): Promise<Uint32Array> {
  const sampler = await createSampleKernel(gpu);
  const n = logits.length;
  const rows = new Float32Array(n * us.length);
  us.forEach((_, j) => rows.set(logits, j * n));
  const tl = f32Tensor(gpu, "logits", rows);
  const next = gpu.tensor({ label: "next", category: "activations", byteSize: us.length * 4 });
  const batch = new CommandBatch(gpu);
  us.forEach((u, j) => sampler.encode(batch, tl, next, n, settings, u, { row: j, out: j }));
  batch.submit();
  const got = await gpu.readU32(next);
  tl.destroy();
  next.destroy();
  return got;
}

const SETTINGS: SampleSettings[] = [
  { temperature: 1, topK: 0, topP: 1 },
  { temperature: 0.7, topK: 40, topP: 1 },
  { temperature: 1.3, topK: 0, topP: 0.9 },
  { temperature: 0.8, topK: 50, topP: 0.95 },
  { temperature: 0.5, topK: 5, topP: 0.5 },
];

Deno.test("sample: the GPU draws cpuSample's token for each u (top-k, top-p, ties at the cuts)", () =>
  withGpu({}, async (gpu) => {
    const rng = seededRandom(3);
    // u spread over [0, 1), the ends included
    const us = [0, 0.999999, ...Array.from({ length: 46 }, () => rng())];
    let compared = 0;
    for (
      const [n, ties] of [[1000, false], [1000, true], [32000, false], [300, true]] as const
    ) {
      const logits = gridLogits(n, n + Number(ties), ties);
      // past the 1024 candidates the kernel gathers into workgroup memory, the row is walked whole
      const cases = ties
        ? [
          ...SETTINGS,
          { temperature: 1, topK: 8, topP: 1 },
          { temperature: 1, topK: 30, topP: 1 },
          // the nucleus cut through the 12 tied largest: alone, and after a top-k cut through
          // the 40 tied below them
          { temperature: 1, topK: 0, topP: 0.1 },
          { temperature: 1, topK: 20, topP: 0.1 },
        ]
        : n > 2000
        ? [
          ...SETTINGS,
          { temperature: 3, topK: 1500, topP: 0.9 },
          { temperature: 2, topK: 5000, topP: 1 },
          { temperature: 6, topK: 0, topP: 0.9 }, // top-p alone, over 1024 candidates left
          // top-p alone, over 1024 candidates at first, a nucleus of ~700 and ~320: gathered
          // part way through the search
          { temperature: 4, topK: 0, topP: 0.9 },
          { temperature: 6, topK: 0, topP: 0.5 },
        ]
        : SETTINGS;
      for (const settings of cases) {
        const got = await drawMany(gpu, logits, settings, us);
        us.forEach((u, j) => {
          const want = cpuSample(logits, settings, u);
          // within 1e-5 of an interval's edge f32 sums may pick the neighbour: not compared
          if (want.margin < 1e-5) return;
          compared++;
          assertEquals(
            got[j],
            want.token,
            `n=${n} ties=${ties} ${JSON.stringify(settings)} u=${u}`,
          );
        });
      }
    }
    assert(compared > 1000, `only ${compared} draws compared`);
  }));

Deno.test("sample: the draws follow the kept distribution; k = 1 is the argmax", () =>
  withGpu({}, async (gpu) => {
    const logits = gridLogits(64, 9, true);
    const settings = { temperature: 1, topK: 20, topP: 0.8 };
    const draws = 2000;
    const got = await drawMany(
      gpu,
      logits,
      settings,
      Array.from({ length: draws }, (_, j) => (j + 0.5) / draws),
    );
    // a uniform grid of u: each token's count is its kept probability times the draws, to one
    const want = new Map<number, number>();
    for (let j = 0; j < draws; j++) {
      const t = cpuSample(logits, settings, (j + 0.5) / draws).token;
      want.set(t, (want.get(t) ?? 0) + 1);
    }
    const counts = new Map<number, number>();
    for (const t of got) counts.set(t, (counts.get(t) ?? 0) + 1);
    assertEquals([...counts.keys()].sort((a, b) => a - b), [...want.keys()].sort((a, b) => a - b));
    for (const [t, c] of want) assert(Math.abs((counts.get(t) ?? 0) - c) <= 1, `token ${t}`);
    const best = logits.indexOf(Math.max(...logits)); // the first of the 12 tied largest
    const [k1] = await drawMany(gpu, logits, { temperature: 1, topK: 1, topP: 1 }, [0.7]);
    assertEquals(k1, best);
  }));

Deno.test("sample: a row holding NaN or an infinity gives the argmax kernel's flag", () =>
  withGpu({}, async (gpu) => {
    for (const bad of [NaN, Infinity, -Infinity]) {
      const logits = gridLogits(500, 1);
      logits[321] = bad;
      const settings = { temperature: 1, topK: 10, topP: 0.9 };
      const [got] = await drawMany(gpu, logits, settings, [0.5]);
      assertEquals(got, ARGMAX_NONFINITE);
      assertEquals(cpuSample(logits, settings, 0.5).token, ARGMAX_NONFINITE);
    }
  }));

Deno.test("sample with filter: each row becomes its kept distribution, rows at once, the same draws", () =>
  withGpu({}, async (gpu) => {
    const sampler = await createSampleKernel(gpu, { filter: true });
    const n = 3000; // past the gather's 1,024 candidates with top-p alone at T 4
    const cases: SampleSettings[] = [
      { temperature: 1, topK: 0, topP: 1 },
      { temperature: 0.8, topK: 40, topP: 0.95 },
      { temperature: 4, topK: 0, topP: 0.9 },
      { temperature: 1, topK: 0, topP: 0.5 },
      // rows walked whole (more than 1,024 kept): the cut tokens zeroed in place
      { temperature: 3, topK: 1500, topP: 1 },
      { temperature: 30, topK: 0, topP: 0.9 },
    ];
    for (const settings of cases) {
      const rows = [gridLogits(n, 1), gridLogits(n, 2, true), gridLogits(n, 3)];
      const all = new Float32Array(n * 4); // row 0 is left alone: the dispatch starts at row 1
      rows.forEach((r, i) => all.set(r, (i + 1) * n));
      const tl = f32Tensor(gpu, "logits", all);
      const next = gpu.tensor({ label: "next", category: "activations", byteSize: 16 });
      const batch = new CommandBatch(gpu);
      sampler.encode(batch, tl, next, n, settings, 0.37, { row: 1, out: 1, rows: 3 });
      batch.submit();
      const probs = await gpu.readF32(tl);
      const tokens = await gpu.readU32(next);
      tl.destroy();
      next.destroy();
      assertEquals([...probs.subarray(0, n)], [...all.subarray(0, n)]);
      rows.forEach((logits, i) => {
        const want = cpuKeptDistribution(logits, settings);
        const got = probs.subarray((i + 1) * n, (i + 2) * n);
        for (let j = 0; j < n; j++) {
          assert(
            Math.abs(got[j] - want[j]) <= 2e-6 * Math.max(want[j], 1e-3) + 1e-9,
            `${JSON.stringify(settings)} row ${i} token ${j}: ${got[j]} against ${want[j]}`,
          );
        }
        const draw = cpuSample(logits, settings, 0.37);
        if (draw.margin >= 1e-5) assertEquals(tokens[i + 1], draw.token);
      });
    }
  }));

Deno.test("choose: keeps or redraws each proposal as cpuChoose does (speculative sampling's step)", () =>
  withGpu({}, async (gpu) => {
    const choose = await createChooseKernel(gpu);
    const n = 700;
    const rng = seededRandom(11);
    let kept = 0;
    let redrawn = 0;
    for (let trial = 0; trial < 6; trial++) {
      const k = 1 + (trial % 7);
      const settings = { temperature: 1 + trial / 3, topK: trial % 2 ? 50 : 0, topP: 0.9 };
      const p: Float64Array[] = [];
      const q: Float64Array[] = [];
      const ids = new Uint32Array(k + 1);
      const us: [number, number][] = [];
      for (let i = 0; i < k; i++) {
        // a draft that agrees in part: the target's logits plus noise
        const lt = gridLogits(n, 100 * trial + i);
        const ld = lt.map((v) => v + 2 * (rng() - 0.5));
        p.push(cpuKeptDistribution(lt, settings));
        q.push(cpuKeptDistribution(ld, settings));
        ids[1 + i] = cpuSample(ld, settings, rng()).token;
        us.push([rng(), rng()]);
      }
      const flat = (rows: Float64Array[]) => {
        const out = new Float32Array(k * n);
        rows.forEach((r, i) => out.set(r, i * n));
        return out;
      };
      const tp = f32Tensor(gpu, "p", flat(p));
      const tq = f32Tensor(gpu, "q", flat(q));
      const tids = gpu.tensor({ label: "ids", category: "activations", data: ids });
      // row 0 flagged as a NaN row would be: it must stay flagged
      const flagged = trial === 5;
      const best = gpu.tensor({
        label: "best",
        category: "activations",
        data: new Uint32Array(k).fill(0).map((_, i) => (flagged && i === 0 ? ARGMAX_NONFINITE : 7)),
      });
      const batch = new CommandBatch(gpu);
      choose.encode(batch, tp, tq, tids, best, n, us);
      batch.submit();
      const got = await gpu.readU32(best);
      for (const t of [tp, tq, tids, best]) t.destroy();
      for (let i = 0; i < k; i++) {
        if (flagged && i === 0) {
          assertEquals(got[i], ARGMAX_NONFINITE);
          continue;
        }
        // the twin in f64 on the f32 rows the kernel read
        const pf = Float64Array.from(Float32Array.from(p[i]));
        const qf = Float64Array.from(Float32Array.from(q[i]));
        const want = cpuChoose(pf, qf, ids[1 + i], us[i][0], us[i][1]);
        if (want.margin < 1e-5) continue;
        assertEquals(got[i], want.token, `trial ${trial} row ${i}`);
        if (want.kept) kept++;
        else redrawn++;
      }
    }
    assert(kept > 3 && redrawn > 3, `${kept} kept, ${redrawn} redrawn: both paths`);
  }));
