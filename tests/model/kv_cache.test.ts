/**
 * The bundled model with a quantized KV cache against an independent PyTorch implementation of
 * the same cache formats on transformers' forward (tests/fixtures/kv-cache/make_kv_quality.py):
 * the KL divergence each format adds over the f16 cache on 256 held-out tokens must agree within
 * 25% (the two forwards differ by ~1e-3 in logits — f16 vs fp32 arithmetic — which moves a KL of
 * 1e-5..1e-3 by a few per cent, and a code on a rounding boundary may fall either way), and
 * perplexity within 0.5%. Also: int8 stays under the 1e-3 target, the Hadamard turn of the keys
 * lowers int4's KL, and the cache read back decodes to what was written.
 */
import assert from "node:assert/strict";
import { requestGpu } from "../../lib/gpu/device.ts";
import { klDivergence } from "../../lib/eval/divergence.ts";
import { logProbability } from "../../lib/eval/perplexity.ts";
import type { KvCacheFormat } from "../../lib/kernels/kv_cache.ts";
import { readKvCache } from "../../lib/model/kv_cache.ts";
import { LlamaModel } from "../../lib/model/llama.ts";
import { assertClose } from "../helpers/random.ts";

const MODEL = new URL("../../models/sotu-llama", import.meta.url).pathname;
const fixture: {
  input_ids: number[];
  formats: Record<string, { kl_mean: number; top1: number; ppl: number }>;
} = JSON.parse(
  await Deno.readTextFile(new URL("../fixtures/kv-cache/kv-quality.json", import.meta.url)),
);

Deno.test("quantized KV caches lose what the PyTorch reference says they lose", async () => {
  const gpu = await requestGpu();
  const ids = fixture.input_ids;
  try {
    const runs = new Map<KvCacheFormat, Float32Array>();
    const formats: KvCacheFormat[] = ["f16", "int8", "int4", "int4-plain"];
    const keys = new Map<KvCacheFormat, Float32Array>();
    for (const kvCache of formats) {
      const model = await LlamaModel.load(MODEL, { gpu, kvCache, maxSeqLen: ids.length });
      try {
        runs.set(kvCache, await model.forward(ids, "all"));
        keys.set(kvCache, (await readKvCache(model, 3)).keys);
        if (kvCache === "int4") {
          // The position is a plain counter: set back, the same tokens give the same logits (up to
          // the order of sums — a 56-row chunk takes the split attention, a 128-row one not — and
          // a code that lands the other side of a rounding boundary; a wrong position would move
          // logits by whole units).
          model.reset(200);
          const again = await model.forward(ids.slice(200), "all");
          const vocabSize = model.config.vocabSize;
          assertClose(again, runs.get("int4")!.subarray(200 * vocabSize), { atol: 0.05 });
          assert.throws(() => model.reset(ids.length + 1), /outside 0\.\.256/);
        }
      } finally {
        model.dispose();
      }
    }
    const vocab = runs.get("f16")!.length / ids.length;
    const ref = runs.get("f16")!;
    const kl: Record<string, number> = {};
    for (const f of formats) {
      const run = runs.get(f)!;
      let sumKl = 0, sumLp = 0;
      for (let t = 0; t < ids.length - 1; t++) {
        const row = run.subarray(t * vocab, (t + 1) * vocab);
        sumKl += klDivergence(ref.subarray(t * vocab, (t + 1) * vocab), row);
        sumLp += logProbability(row, ids[t + 1]);
      }
      const n = ids.length - 1;
      kl[f] = sumKl / n;
      const want = fixture.formats[f];
      const ppl = Math.exp(-sumLp / n);
      assert.ok(Math.abs(ppl / want.ppl - 1) < 0.005, `${f}: perplexity ${ppl} vs ${want.ppl}`);
      if (f !== "f16") {
        assert.ok(
          Math.abs(kl[f] - want.kl_mean) <= 0.25 * want.kl_mean,
          `${f}: KL over the f16 cache ${kl[f]} vs PyTorch's ${want.kl_mean}`,
        );
      }
    }
    assert.ok(kl.int8 <= 1e-3, `int8 KL ${kl.int8} over the 1e-3 target`);
    assert.ok(
      kl.int4 < kl["int4-plain"],
      `turning keys helps int4: ${kl.int4} vs ${kl["int4-plain"]}`,
    );
    // Layer 3's keys read back: within a 4-bit step of the f16 cache's (and f16's within its own
    // rounding of the int8 cache's step).
    const k16 = keys.get("f16")!;
    let maxAbs = 0;
    for (const v of k16) maxAbs = Math.max(maxAbs, Math.abs(v));
    for (const [f, bound] of [["int8", maxAbs / 127], ["int4", (2 * maxAbs) / 15]] as const) {
      const k = keys.get(f)!;
      let worst = 0;
      for (let i = 0; i < k.length; i++) worst = Math.max(worst, Math.abs(k[i] - k16[i]));
      assert.ok(
        worst > 0 && worst <= bound,
        `${f} keys read back: max error ${worst} (bound ${bound})`,
      );
    }
  } finally {
    gpu.destroy();
  }
});
