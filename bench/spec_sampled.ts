/**
 * The bundled pair sampling (T 0.8, top-k 40, top-p 0.95), whole calls timed: rounds read back
 * one by one with the acceptance on the CPU (`chain: false`) against rounds chained on the GPU,
 * adaptive and 3 draft tokens, and the target alone (`decodeSampled`). A first pass warms; two
 * are printed. `GREEDY=1` decodes greedily instead.
 *
 * ```sh
 * deno run -A bench/spec_sampled.ts 64   # new tokens per call
 * ```
 *
 * @module
 */
import { requestGpu } from "../lib/gpu/device.ts";
import { LlamaModel } from "../lib/model/llama.ts";
import { speculativeDecode } from "../lib/model/speculative.ts";
import { loadTokenizer } from "../lib/model/tokenizer.ts";

const models = new URL("../models/", import.meta.url).pathname;
const gpu = await requestGpu();
const target = await LlamaModel.load(`${models}sotu-llama`, { gpu });
const draft = await LlamaModel.load(`${models}sotu-llama-draft`, { gpu });
const prompt = (await loadTokenizer(`${models}sotu-llama`)).encode("The state of the Union is");
const settings = Deno.env.get("GREEDY") ? {} : { temperature: 0.8, topK: 40, topP: 0.95 };
const tokens = Number(Deno.args[0] ?? 64);
console.log(`adapter: ${gpu.describe()}; ${tokens} new tokens a call, ${JSON.stringify(settings)}`);
try {
  for (const pass of [0, 1, 2]) {
    for (const chain of [false, true]) {
      for (const draftTokens of [undefined, 3]) {
        const t0 = performance.now();
        const r = await speculativeDecode(target, draft, prompt, {
          maxNewTokens: tokens,
          seed: 1 + pass,
          chain,
          draftTokens,
          ...settings,
        });
        const tokS = r.tokens.length / ((performance.now() - t0) / 1000);
        if (pass === 0) continue;
        console.log(
          `${chain ? "chained" : "one by one"}, k ${draftTokens ?? "adaptive"}: ` +
            `${tokS.toFixed(1)} tok/s, ${r.tokensPerTargetPass.toFixed(2)} tokens a target pass, ` +
            `groups ${r.groups.join(",") || "none"}`,
        );
      }
    }
    target.reset();
    const t0 = performance.now();
    const a = await target.decodeSampled(prompt, {
      maxNewTokens: tokens,
      sampling: { ...settings, temperature: settings.temperature ?? 0, seed: 1 + pass },
    });
    const tokS = a.tokens.length / ((performance.now() - t0) / 1000);
    if (pass > 0) console.log(`the target alone: ${tokS.toFixed(1)} tok/s`);
  }
} finally {
  target.dispose();
  draft.dispose();
  gpu.destroy();
}
