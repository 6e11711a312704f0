import assert from "node:assert/strict";
import { argmax, createSampler } from "../../lib/model/sampling.ts";
import { randn } from "../helpers/random.ts";

Deno.test("sampling: greedy, temperature 0 and top-k 1 are argmax", () => {
  for (let seed = 1; seed <= 20; seed++) {
    const logits = randn(500, seed, 3);
    const best = argmax(logits);
    assert.equal(logits[best], Math.max(...logits));
    assert.equal(createSampler({ temperature: 0 })(logits), best);
    assert.equal(createSampler({ topK: 1, seed })(logits), best);
    assert.equal(createSampler({ topP: 1e-9, seed })(logits), best);
    assert.equal(createSampler({ topK: 10, topP: 1e-9, seed })(logits), best);
  }
  assert.equal(argmax([1, 3, 3]), 1); // first of equal maxima
  assert.throws(() => argmax([0, NaN]), /logit 1 of 2 is NaN/);
});

function frequencies(
  sample: (l: Float32Array) => number,
  logits: Float32Array,
  draws: number,
): number[] {
  const counts = new Array(logits.length).fill(0);
  for (let i = 0; i < draws; i++) counts[sample(logits)]++;
  return counts.map((c) => c / draws);
}

function softmax(logits: ArrayLike<number>, t = 1): number[] {
  const m = Math.max(...Array.from(logits));
  const e = Array.from(logits, (x) => Math.exp((x - m) / t));
  const s = e.reduce((a, b) => a + b);
  return e.map((x) => x / s);
}

Deno.test("sampling: frequencies at temperature 1 match the softmax", () => {
  const logits = new Float32Array([2, 1, 0.5, 0, -1, -3]);
  const freq = frequencies(createSampler({ seed: 7 }), logits, 40000);
  softmax(logits).forEach((p, i) =>
    assert.ok(Math.abs(freq[i] - p) < 0.01, `token ${i}: ${freq[i]} vs ${p}`)
  );
  const hot = frequencies(createSampler({ seed: 8, temperature: 2 }), logits, 40000);
  softmax(logits, 2).forEach((p, i) => assert.ok(Math.abs(hot[i] - p) < 0.01, `T=2 token ${i}`));
});

Deno.test("sampling: top-k and top-p keep only the head of the distribution", () => {
  const logits = new Float32Array([0, 3, 1, 2, -1]); // order by probability: 1, 3, 2, 0, 4
  const p = softmax(logits);
  const k2 = frequencies(createSampler({ topK: 2, seed: 3 }), logits, 20000);
  assert.deepEqual(k2.map((f) => f > 0), [false, true, false, true, false]);
  assert.ok(Math.abs(k2[1] - p[1] / (p[1] + p[3])) < 0.015);
  // p[1] ~ 0.64 < 0.8 <= p[1] + p[3]: the nucleus is tokens 1 and 3.
  const nucleus = frequencies(createSampler({ topP: 0.8, seed: 4 }), logits, 20000);
  assert.deepEqual(nucleus.map((f) => f > 0), [false, true, false, true, false]);
  assert.ok(Math.abs(nucleus[1] - p[1] / (p[1] + p[3])) < 0.015);
});

Deno.test("sampling: the same seed gives the same sequence", () => {
  const logits = randn(1000, 11, 2);
  for (
    const opts of [{}, { topK: 40 }, { topP: 0.9 }, { temperature: 0.7, topK: 50, topP: 0.95 }]
  ) {
    const a = createSampler({ ...opts, seed: 123 });
    const b = createSampler({ ...opts, seed: 123 });
    const c = createSampler({ ...opts, seed: 124 });
    const sa = Array.from({ length: 50 }, () => a(logits));
    const sb = Array.from({ length: 50 }, () => b(logits));
    const sc = Array.from({ length: 50 }, () => c(logits));
    assert.deepEqual(sa, sb);
    assert.notDeepEqual(sa, sc);
  }
});

Deno.test("sampling: bad options are refused", () => {
  assert.throws(() => createSampler({ temperature: -1 }), /temperature -1/);
  assert.throws(() => createSampler({ topK: 1.5 }), /topK 1.5/);
  assert.throws(() => createSampler({ topP: 0 }), /topP 0/);
});
