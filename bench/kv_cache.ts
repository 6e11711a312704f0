/**
 * Decode speed at long context per KV cache format: greedy decode of a random model of
 * Llama-2-7B's shape with its cache at 4096 and 16384 positions, for each cache format and a
 * couple of weight formats, plus the GPU time of one decode step by kernel family (attention
 * is what the cache format changes), each timed step right after eight untimed ones so that the
 * GPU's clocks are up. Writes `kv-cache.json` and `kv-cache.md` to `--out`.
 *
 * The positions before the measured ones are not computed: the model's position is set there
 * (`LlamaModel.reset(position)`), so the cache holds zeros, which costs the kernels what any
 * values cost. On a software adapter the model is scaled down (dimensions ÷8, layers ÷8) and
 * the positions are 512 and 2048.
 *
 * ```sh
 * deno run -A bench/kv_cache.ts --out /tmp/kv
 * deno run -A bench/kv_cache.ts --weights fp16 --kv f16,int8 --positions 4096 --tokens 32
 * deno run -A bench/kv_cache.ts --weights nf4 --kv f16 --positions 128 --tuning '{"gemvRowsPerThread":8}'
 * ```
 *
 * @module
 */

import { parseArgs } from "node:util";
import { requestGpu } from "../lib/gpu/device.ts";
import { formatBytes } from "../lib/gpu/ledger.ts";
import { KV_CACHE_FORMATS, type KvCacheFormat } from "../lib/kernels/kv_cache.ts";
import type { QuantTuning } from "../lib/kernels/quant_linear.ts";
import { parseLlamaConfig } from "../lib/model/config.ts";
import { LlamaModel } from "../lib/model/llama.ts";
import { presetConfig } from "../lib/model/presets.ts";
import { writeBenchJson } from "./report.ts";
import {
  type BenchFormat,
  randomLinearFactory,
  RandomPools,
  RandomWeightSource,
} from "./random_weights.ts";

const { values: args } = parseArgs({
  args: Deno.args,
  options: {
    out: { type: "string", default: "bench/out" },
    weights: { type: "string", default: "fp16,nf4" },
    kv: { type: "string", default: "f16,int8,int4" },
    positions: { type: "string" },
    tokens: { type: "string" },
    tuning: { type: "string" },
    // "false": RoPE and the cache write in their own dispatch, as before they were folded into
    // the attention (LoadOptions.foldRope)
    "fold-rope": { type: "string", default: "true" },
  },
});
// --tuning JSON: launch shapes and variants of every quantized layer (QuantTuning).
const tuning = args.tuning ? JSON.parse(args.tuning) as QuantTuning : undefined;

const gpu = await requestGpu();
const software = gpu.isSoftware;
const started = new Date();
console.log(`adapter: ${gpu.describe()}`);
const positions = (args.positions ?? (software ? "512,2048" : "4096,16384")).split(",").map(
  Number,
);
const tokens = Number(args.tokens ?? (software ? 4 : 32));
const weightFormats = args.weights!.split(",") as BenchFormat[];
const kvFormats = args.kv!.split(",") as KvCacheFormat[];
for (const k of kvFormats) {
  if (!KV_CACHE_FORMATS.includes(k)) throw new Error(`unknown KV cache format ${k}`);
}
const maxPos = Math.max(...positions);

const base = presetConfig("llama-2-7b");
const div = software ? 8 : 1;
const config = parseLlamaConfig({
  architectures: ["LlamaForCausalLM"],
  model_type: "llama",
  hidden_act: "silu",
  vocab_size: base.vocabSize / div,
  hidden_size: base.hiddenSize / div,
  intermediate_size: base.intermediateSize / div,
  num_hidden_layers: base.numLayers / div,
  num_attention_heads: base.numHeads / div,
  num_key_value_heads: base.numKvHeads / div,
  max_position_embeddings: maxPos + tokens + 16,
  rms_norm_eps: 1e-5,
  rope_theta: 10000,
  tie_word_embeddings: false,
}, software ? "llama-2-7b ÷8" : "llama-2-7b");
const pools = new RandomPools();

interface Row {
  weights: BenchFormat;
  kvCache: KvCacheFormat;
  position: number;
  tokensPerSecond: number;
  msPerToken: number;
  gpuMsPerToken: number;
  /** GPU ms per decode step by kernel family (file name). */
  gpuMsByFamily: Record<string, number>;
  /** Bytes of the whole KV cache (ledger). */
  kvCacheBytes: number;
  /** Bytes the attention reads per step at this position: keys and values of every layer. */
  cacheBytesRead: number;
}
const rows: Row[] = [];

for (const weights of weightFormats) {
  for (const kvCache of kvFormats) {
    const model = await LlamaModel.fromCheckpoint(config, new RandomWeightSource(pools), {
      gpu,
      format: weights,
      linear: weights === "fp16" ? undefined : randomLinearFactory(pools, weights, tuning),
      maxSeqLen: maxPos + tokens + 16,
      kvCache,
      foldRope: args["fold-rope"] !== "false",
    });
    try {
      const kvBytes = gpu.ledger.bytesIn("kv-cache");
      for (const position of positions) {
        model.reset(position);
        // warm-up: compiles, bind groups, a few steps at this context
        await model.decodeGreedy([1], { maxNewTokens: 4 });
        model.reset(position);
        const t0 = performance.now();
        const run = await model.decodeGreedy([1], { maxNewTokens: tokens });
        const ms = (performance.now() - t0) / run.tokens.length;
        // GPU time of one step by kernel family, median of three
        const steps: { total: number; fam: Record<string, number> }[] = [];
        for (let i = 0; i < 3; i++) {
          // a few steps right before, so that the timed one finds the GPU's clocks up
          model.reset(position + tokens);
          await model.decodeGreedy([1], { maxNewTokens: 8 });
          model.reset(position + tokens);
          const t = await model.timeForward([1]);
          const fam: Record<string, number> = {};
          for (const d of t) {
            const f = d.kernel.split(":")[0];
            fam[f] = (fam[f] ?? 0) + d.ms;
          }
          steps.push({ total: t.reduce((s, d) => s + d.ms, 0), fam });
        }
        steps.sort((a, b) => a.total - b.total);
        const mid = steps[1];
        const row: Row = {
          weights,
          kvCache,
          position,
          tokensPerSecond: 1000 / ms,
          msPerToken: ms,
          gpuMsPerToken: mid.total,
          gpuMsByFamily: mid.fam,
          kvCacheBytes: kvBytes,
          cacheBytesRead: (kvBytes * (position + tokens / 2)) / model.maxSeqLen,
        };
        rows.push(row);
        console.log(
          `${weights.padEnd(6)} kv ${kvCache.padEnd(10)} pos ${String(position).padStart(6)}: ` +
            `${row.tokensPerSecond.toFixed(1)} tok/s (${ms.toFixed(2)} ms; GPU ${
              mid.total.toFixed(2)
            } ms, attention ${(mid.fam.attention ?? 0).toFixed(2)} ms, rope ${
              (mid.fam.rope ?? 0).toFixed(2)
            } ms); cache ${formatBytes(kvBytes)}`,
        );
      }
    } finally {
      model.dispose();
      await gpu.sync();
    }
  }
}

await writeBenchJson(
  args.out!,
  "kv-cache.json",
  "bench/kv_cache.ts",
  gpu.describe(),
  {
    tokens,
    shape: "llama-2-7b",
  },
  rows,
  started,
);
const md = [
  `Decode at long context, ${gpu.describe()}, ${started.toISOString()}`,
  "",
  "| weights | KV cache | position | tok/s | ms/token | GPU ms/step | attention ms | rope ms | cache read/step |",
  "| ------- | -------- | -------- | ----- | -------- | ----------- | ------------ | ------- | --------------- |",
  ...rows.map((r) =>
    `| ${r.weights} | ${r.kvCache} | ${r.position} | ${r.tokensPerSecond.toFixed(1)} | ${
      r.msPerToken.toFixed(2)
    } | ${r.gpuMsPerToken.toFixed(2)} | ${(r.gpuMsByFamily.attention ?? 0).toFixed(2)} | ${
      (r.gpuMsByFamily.rope ?? 0).toFixed(3)
    } | ${formatBytes(r.cacheBytesRead)} |`
  ),
].join("\n") + "\n";
await Deno.writeTextFile(`${args.out}/kv-cache.md`, md);
console.log("\n" + md);
gpu.destroy();
