/**
 * The KV cache's quality on the bundled model: KL, top-1 agreement and perplexity of each cache
 * format against the f16 cache over the held-out text in 512-token windows, with FP16 and NF4
 * weights, by position in the window; and each layer's and head's attention error with keys and
 * values through each format (and KIVI's per-channel keys, and a symmetric 4-bit code).
 * Writes docs/results/kv-cache-quality.json and prints tables.
 *
 * ```sh
 * deno run -A tools/kv_quality.ts [--tokens 2048] [--out docs/results/kv-cache-quality.json]
 * ```
 *
 * @module
 */

import { parseArgs } from "node:util";
import { requestGpu } from "../lib/gpu/device.ts";
import {
  attentionErrors,
  attentionInputs,
  keyChannelAbsmax,
  kvCacheQuality,
  type KvTreatment,
} from "../lib/eval/kv_cache.ts";
import { openCheckpoint } from "../lib/model/checkpoint.ts";
import { LlamaModel } from "../lib/model/llama.ts";
import { loadTokenizer } from "../lib/model/tokenizer.ts";
import type { QuantFormat } from "../lib/quant/formats.ts";

const { values: args } = parseArgs({
  args: Deno.args,
  options: {
    tokens: { type: "string", default: "2048" },
    weights: { type: "string", default: "fp16,nf4" },
    out: { type: "string", default: "docs/results/kv-cache-quality.json" },
  },
});
const MODEL = new URL("../models/sotu-llama", import.meta.url).pathname;
const gpu = await requestGpu();
const tokenizer = await loadTokenizer(MODEL);
const text = await Deno.readTextFile(`${MODEL}/eval/sotu-heldout.txt`);
const tokens = tokenizer.encode(text).slice(0, Number(args.tokens));
const kvCaches = ["int8", "int8-plain", "int4", "int4-plain"] as const;
const started = new Date().toISOString();

const quality = [];
for (const weights of args.weights!.split(",") as QuantFormat[]) {
  const q = await kvCacheQuality({
    modelDir: MODEL,
    tokens,
    kvCaches: [...kvCaches],
    load: { gpu, format: weights },
  });
  quality.push({ weights, ...q });
  console.log(
    `\nweights ${weights}: f16 cache perplexity ${
      q.f16.perplexity.toFixed(3)
    } (${q.windows} windows of ${q.window})`,
  );
  console.log(
    "| KV cache | KL vs f16 cache | top-1 | perplexity | " + q.results[0].byPosition.map((b) =>
      `KL @${b.from}-${b.to - 1}`
    ).join(" | ") + " |",
  );
  for (const r of q.results) {
    console.log(
      `| ${r.kvCache} | ${r.all.kl.toExponential(2)} | ${(100 * r.all.top1).toFixed(1)}% | ${
        r.all.perplexity.toFixed(3)
      } | ` +
        r.byPosition.map((b) => b.metrics.kl.toExponential(2)).join(" | ") + " |",
    );
  }
}

// Per layer and head, on the first 512 tokens, FP16 weights.
const model = await LlamaModel.load(MODEL, { gpu, maxSeqLen: 512 });
const ckpt = await openCheckpoint(MODEL);
const inputs = await attentionInputs(model, ckpt, tokens.slice(0, 512));
ckpt.close();
const treatments: KvTreatment[] = [...kvCaches, "int4-sym", "kivi-int4"];
const errors = attentionErrors(inputs, model.config, treatments);
const keyAbsmax = keyChannelAbsmax(inputs, model.config);
model.dispose();
console.log("\nattention output relative error per layer (512 tokens, FP16 weights)");
console.log("| layer | " + treatments.join(" | ") + " |");
for (let l = 0; l < model.config.numLayers; l++) {
  console.log(
    `| ${l} | ` +
      treatments.map((t) =>
        errors.find((e) => e.layer === l && e.treatment === t)!.relativeError.toExponential(2)
      ).join(" | ") + " |",
  );
}
const mean = (t: KvTreatment) =>
  errors.filter((e) => e.treatment === t).reduce((s, e) => s + e.relativeError, 0) /
  model.config.numLayers;
console.log("| mean | " + treatments.map((t) => mean(t).toExponential(2)).join(" | ") + " |");
const worst = errors.filter((e) => e.treatment === "int4").flatMap((e) =>
  e.perHead.map((err, h) => ({ layer: e.layer, head: h, err }))
)
  .sort((a, b) => b.err - a.err).slice(0, 5);
console.log(
  "int4: worst heads " +
    worst.map((w) => `L${w.layer}h${w.head} ${w.err.toExponential(2)}`).join(", "),
);

await Deno.writeTextFile(
  args.out!,
  JSON.stringify({
    date: started,
    adapter: gpu.describe(),
    command: `deno run -A tools/kv_quality.ts ${Deno.args.join(" ")}`.trim(),
    tokens: tokens.length,
    quality,
    attentionErrors: errors,
    keyChannelAbsmax: keyAbsmax,
  }) + "\n",
);
console.log(`\nwrote ${args.out}`);
gpu.destroy();
