import assert from "node:assert/strict";
import { parseLlamaBench, sideBySide, sideBySideMarkdown } from "../../bench/llama_bench.ts";

// Two lines of the llama-bench file measured on the H200 (bench/results/), shortened.
const JSONL = [
  '{"backends":"CUDA","model_type":"llama 7B Q4_0","n_prompt":512,"n_gen":0,"avg_ts":10718.088281}',
  '{"backends":"CUDA","model_type":"llama 7B Q4_0","n_prompt":0,"n_gen":128,"avg_ts":351.150309}',
  '{"backends":"Vulkan","model_type":"llama 7B F16","n_prompt":0,"n_gen":128,"avg_ts":189.6}',
  "",
].join("\n");

Deno.test("llama-bench JSONL: parsed, paired by model size and weight type, ratio per test", () => {
  const llama = parseLlamaBench(JSONL);
  assert.equal(llama.length, 3);
  assert.deepEqual(llama[1], {
    backend: "CUDA",
    modelType: "llama 7B Q4_0",
    nPrompt: 0,
    nGen: 128,
    tokensPerSecond: 351.150309,
  });
  const rows = sideBySide([
    { model: "llama-2-7b", format: "nf4", tokensPerSecond: 175.575, prefillTokensPerSecond: 5359 },
    { model: "llama-2-7b", format: "fp16", tokensPerSecond: 189.6 },
    { model: "llama-3-8b", format: "nf4", tokensPerSecond: 100 }, // no 8B line: no row
  ], llama);
  assert.deepEqual(
    rows.map((r) => [r.format, r.backend, r.test, r.llamaType, Number(r.ratio.toFixed(4))]),
    [
      ["nf4", "CUDA", "prefill", "Q4_0", 0.5],
      ["nf4", "CUDA", "decode", "Q4_0", 0.5],
      ["fp16", "Vulkan", "decode", "F16", 1],
    ],
  );
  const md = sideBySideMarkdown(rows);
  assert.match(
    md,
    /\| llama-2-7b \| nf4 \| decode \| Q4_0 \| CUDA \| 175\.6 \| 351\.2 \| 0\.50× \|/,
  );
});

Deno.test("llama-bench JSONL: a line without the fields or not JSON names the file and line", () => {
  assert.throws(() => parseLlamaBench('{"backends":"CUDA"}', "x.jsonl"), /x\.jsonl:1: missing/);
  assert.throws(() => parseLlamaBench("\n{oops", "y.jsonl"), /y\.jsonl:2: not JSON/);
});
