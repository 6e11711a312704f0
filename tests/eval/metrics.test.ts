import { deepStrictEqual as assertEquals, ok as assert, rejects } from "node:assert/strict";
import { compareLogits, klDivergence } from "../../lib/eval/divergence.ts";
import { argmax } from "../../lib/model/sampling.ts";
import { type LogitsModel, logSumExp, perplexity } from "../../lib/eval/perplexity.ts";
import { randn } from "../helpers/random.ts";

const close = (a: number, b: number, tol: number, what: string) =>
  assert(Math.abs(a - b) <= tol, `${what}: ${a} vs ${b} (tol ${tol})`);

Deno.test("KL of identical logits is 0, and invariant to a constant shift", () => {
  const a = randn(1000, 1);
  assertEquals(klDivergence(a, a), 0);
  const shifted = a.map((x) => x + 7);
  close(klDivergence(a, shifted), 0, 1e-9, "shifted");
});

Deno.test("KL matches a hand-computed value and is asymmetric", () => {
  // P = softmax(ln [0.5, 0.5]) , Q = softmax(ln [0.9, 0.1])
  const p = [Math.log(0.5), Math.log(0.5)];
  const q = [Math.log(0.9), Math.log(0.1)];
  const expected = 0.5 * Math.log(0.5 / 0.9) + 0.5 * Math.log(0.5 / 0.1);
  close(klDivergence(p, q), expected, 1e-12, "KL(P||Q)");
  const reverse = 0.9 * Math.log(0.9 / 0.5) + 0.1 * Math.log(0.1 / 0.5);
  close(klDivergence(q, p), reverse, 1e-12, "KL(Q||P)");
});

Deno.test("top-1 agreement counts rows whose argmax matches", () => {
  const ref = new Float32Array([0, 1, 0, /**/ 2, 0, 0, /**/ 0, 0, 3, /**/ 1, 0, 0]);
  const test = new Float32Array([0, 2, 0, /**/ 0, 1, 0, /**/ 0, 0, 1, /**/ 1, 0, 0]);
  const c = compareLogits(ref, test, 3);
  assertEquals(c.rows, 4);
  assertEquals(c.top1Agreement, 0.75);
  assert(c.maxKl > 0 && c.meanKl > 0 && c.meanKl <= c.maxKl);
  assertEquals(argmax([1, 3, 3]), 1);
});

Deno.test("logsumexp is stable for large logits", () => {
  close(logSumExp([1000, 1000]), 1000 + Math.LN2, 1e-9, "lse");
});

function uniformModel(vocab: number, calls: number[][]): LogitsModel {
  return {
    vocabSize: vocab,
    logits: (tokens) => {
      calls.push([...tokens]);
      return Promise.resolve(new Float32Array(tokens.length * vocab));
    },
  };
}

Deno.test("a uniform model's perplexity equals the vocabulary size", async () => {
  const tokens = Array.from({ length: 1000 }, (_, i) => (i * 7) % 50);
  const r = await perplexity(uniformModel(50, []), tokens, { context: 128, stride: 64 });
  close(r.perplexity, 50, 1e-9, "ppl");
  assertEquals(r.scoredTokens, 999);
});

Deno.test("sliding windows score every token after the first exactly once", async () => {
  const tokens = Array.from({ length: 300 }, (_, i) => i % 11);
  for (const [context, stride] of [[64, 32], [64, 63], [100, 7], [500, 250]]) {
    const seen: number[] = [];
    const calls: number[][] = [];
    await perplexity(uniformModel(11, calls), tokens, {
      context,
      stride,
      onTokenNll: (pos) => seen.push(pos),
    });
    assertEquals(seen, Array.from({ length: 299 }, (_, i) => i + 1), `context ${context}`);
    assert(calls.every((c) => c.length <= context));
  }
});

Deno.test("with stride = context, each window's first token goes unscored, as in HF", async () => {
  const tokens = Array.from({ length: 200 }, (_, i) => i % 11);
  const seen: number[] = [];
  await perplexity(uniformModel(11, []), tokens, {
    context: 64,
    stride: 64,
    onTokenNll: (pos) => seen.push(pos),
  });
  const expected = Array.from({ length: 199 }, (_, i) => i + 1).filter((p) => p % 64 !== 0);
  assertEquals(seen, expected);
});

Deno.test("a model that knows the next token has perplexity near 1", async () => {
  const vocab = 5;
  const tokens = Array.from({ length: 40 }, (_, i) => i % vocab);
  const oracle: LogitsModel = {
    vocabSize: vocab,
    logits: (window) => {
      const out = new Float32Array(window.length * vocab);
      window.forEach((t, i) => (out[i * vocab + ((t + 1) % vocab)] = 30));
      return Promise.resolve(out);
    },
  };
  const r = await perplexity(oracle, tokens, { context: 16, stride: 8 });
  close(r.perplexity, 1, 1e-9, "ppl");
});

Deno.test("perplexity refuses bad windows", async () => {
  await rejects(perplexity(uniformModel(3, []), [1, 2, 3], { context: 8, stride: 9 }), /stride/);
  await rejects(perplexity(uniformModel(3, []), [1], {}), /at least 2/);
});
