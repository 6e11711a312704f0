/**
 * Where a decode step's time goes, measured inside the pipelined loop: each kind of dispatch is
 * recorded twice per step (its method wrapped to run twice), and the extra time per token is its
 * real cost — unlike per-dispatch timestamps, which put every dispatch in its own pass and
 * overstate small kernels. The doubled steps compute other numbers; only their time counts.
 *
 * ```sh
 * deno run -A bench/step_breakdown.ts fp16     # any bench format; Llama-2-7B shapes, random weights
 * deno run -A bench/step_breakdown.ts nf4 llama-3-8b
 * ```
 *
 * @module
 */

import { requestGpu } from "../lib/gpu/device.ts";
import { Fp16Linear, Fp16LinearStack } from "../lib/kernels/linear.ts";
import { QuantLinear, QuantLinearStack } from "../lib/kernels/quant_linear.ts";
import { LlamaModel } from "../lib/model/llama.ts";
import { LlamaOps } from "../lib/model/ops.ts";
import { presetConfig } from "../lib/model/presets.ts";
import {
  type BenchFormat,
  randomLinearFactory,
  RandomPools,
  RandomWeightSource,
} from "./random_weights.ts";

const FORMATS: BenchFormat[] = ["fp16", "int8-vectorwise", "llm-int8", "nf4", "nf4-dq", "q8_0"];
const format = (Deno.args[0] ?? "fp16") as BenchFormat;
if (!FORMATS.includes(format)) throw new Error(`format must be one of ${FORMATS.join(", ")}`);
const preset = Deno.args[1] ?? "llama-2-7b";
const TOKENS = 64;

const gpu = await requestGpu();
console.log(`${gpu.describe()}\n${preset}, ${format}, ${TOKENS} tokens per run, best of three`);
const pools = new RandomPools();
const model = await LlamaModel.fromCheckpoint(presetConfig(preset), new RandomWeightSource(pools), {
  gpu,
  format,
  // FP16 takes the model's own (stacked) layers, as bench/run.ts does.
  linear: format === "fp16" ? undefined : randomLinearFactory(pools, format),
  maxSeqLen: 512,
});

type Method = (this: unknown, ...args: unknown[]) => unknown;

/** Makes `proto[name]` run twice per call; returns the undo. */
function twice(proto: object, name: string): () => void {
  const methods = proto as Record<string, Method>;
  const original = methods[name];
  methods[name] = function (this: unknown, ...args: unknown[]) {
    original.apply(this, args);
    return original.apply(this, args);
  };
  return () => {
    methods[name] = original;
  };
}

/** Milliseconds per token of greedy decoding (groups of 8), best of three from one position. */
async function msPerToken(): Promise<number> {
  const runs = [];
  for (let r = 0; r < 3; r++) {
    model.reset();
    await model.forwardGreedy([1, 2, 3, 4, 5, 6, 7, 8]);
    const t0 = performance.now();
    await model.decodeGreedy([9], { maxNewTokens: TOKENS, inFlight: 8 });
    runs.push((performance.now() - t0) / TOKENS);
  }
  return Math.min(...runs);
}

try {
  const base = await msPerToken();
  console.log(`base: ${base.toFixed(3)} ms/token`);
  const cases: [string, object, string][] = [
    ["add + RMSNorm", LlamaOps.prototype, "addRmsnorm"],
    ["RoPE into the cache + attention", LlamaOps.prototype, "attention"],
    ["SwiGLU", LlamaOps.prototype, "swiglu"],
    ["stacked FP16 GEMVs (q/k/v, gate/up)", Fp16LinearStack.prototype, "encodeRow"],
    ["other FP16 products (and the LM head)", Fp16Linear.prototype, "encode"],
    ["stacked quantized GEMVs (q/k/v, gate/up)", QuantLinearStack.prototype, "encodeRow"],
    ["other quantized products", QuantLinear.prototype, "encode"],
  ];
  for (const [label, proto, name] of cases) {
    const undo = twice(proto, name);
    try {
      const t = await msPerToken();
      console.log(`${label.padEnd(40)} ${(t - base).toFixed(3)} ms/token`);
    } finally {
      undo();
    }
  }
  console.log(`base again: ${(await msPerToken()).toFixed(3)} ms/token`);
} finally {
  model.dispose();
  gpu.destroy();
}
