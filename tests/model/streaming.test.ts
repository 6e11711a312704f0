/**
 * Layer streaming: with a GPU memory budget smaller than the model, every weight format gives
 * the same logits and tokens as the fully resident model, the ledger's peak stays within the
 * budget, a prefill uploads each streamed layer once per chunk, and disposing frees everything.
 */

import { deepStrictEqual as assertEquals, ok as assert, rejects } from "node:assert/strict";
import { requestGpu } from "../../lib/gpu/device.ts";
import { estimateStreaming } from "../../lib/eval/memory.ts";
import { loadLlamaConfig } from "../../lib/model/config.ts";
import { LlamaModel } from "../../lib/model/llama.ts";
import { measureUploadBandwidth, planLayers } from "../../lib/model/streaming.ts";
import { QUANT_FORMATS } from "../../lib/quant/formats.ts";
import { writeRandomLlama } from "../helpers/random_llama.ts";

const dir = await Deno.makeTempDir({ prefix: "qlab-stream-" });
await writeRandomLlama(dir, { layers: 6, hidden: 64, heads: 4, kvHeads: 2, intermediate: 128 });
const config = await loadLlamaConfig(dir);
const TOKENS = Array.from({ length: 20 }, (_, i) => (i * 37 + 5) % 300);
const LOAD = { maxSeqLen: 64, chunkSize: 8 };

for (const format of QUANT_FORMATS) {
  Deno.test(`streamed layers give the resident model's logits (${format})`, async () => {
    const gpu = await requestGpu();
    try {
      const resident = await LlamaModel.load(dir, { gpu, format, ...LOAD });
      const want = await resident.forward(TOKENS, "all");
      resident.reset();
      const wantTokens = (await resident.decodeGreedy(TOKENS.slice(0, 5), { maxNewTokens: 6 }))
        .tokens;
      const residentPeak = gpu.ledger.peakBytes;
      resident.dispose();
      assertEquals(gpu.ledger.currentBytes, 0);

      // The layer size, from a budget everything fits in.
      const roomy = await LlamaModel.load(dir, { gpu, format, ...LOAD, vramBudget: 2 ** 30 });
      const all = roomy.streaming!;
      assertEquals([all.residentLayers, all.streamedLayers, all.slots], [6, 0, 0]);
      assertEquals(all.upload, "none");
      assertEquals(await roomy.forward(TOKENS, "all"), want);
      roomy.dispose();

      for (const [keep, upload] of [[1, "mapped"], [0, "write"]] as const) {
        gpu.ledger.resetPeak();
        const budget = all.fixedBytes + (keep + 2.5) * all.layerBytes;
        const model = await LlamaModel.load(dir, {
          gpu,
          format,
          ...LOAD,
          vramBudget: budget,
          streaming: { upload },
        });
        const s = model.streaming!;
        // The estimator places the layers as the loader did, from the config alone.
        const est = estimateStreaming(config, budget, {
          format,
          contextLength: LOAD.maxSeqLen,
          chunkSize: LOAD.chunkSize,
        });
        // (The loader's first NF4-DQ layer also makes the model's 1 KiB code table.)
        const table = format === "nf4-dq" ? 1024 : 0;
        assertEquals(est.layerBytes + table, s.layerBytes, format);
        assertEquals(est.fixedBytes, s.fixedBytes + table, `${format}: fixed bytes`);
        assertEquals([est.residentLayers, est.streamedLayers], [
          s.residentLayers,
          s.streamedLayers,
        ]);
        assertEquals(
          est.streamedBytesPerToken / est.streamedLayers * s.streamedLayers,
          s.streamedBytesPerForward,
        );
        assert(s.streamedLayers > s.slots, `${format}: ${JSON.stringify(s)}`);
        assertEquals(s.residentLayers + s.streamedLayers, 6);
        assertEquals(s.slots, 2);
        assertEquals(s.upload, upload);
        assertEquals(s.residentLayers, keep);

        const got = await model.forward(TOKENS, "all"); // three chunks of 8
        assertEquals(got, want, `${format}: streamed logits differ from resident ones`);
        // Each chunk uploads each streamed layer exactly once (the last one ends by uploading
        // the first streamed layer for the next forward).
        model.reset();
        const before = model.streaming!.uploadedBytes;
        assertEquals(await model.forward(TOKENS, "all"), want);
        assertEquals(model.streaming!.uploadedBytes - before, 3 * s.streamedBytesPerForward);

        model.reset();
        const tokens = (await model.decodeGreedy(TOKENS.slice(0, 5), { maxNewTokens: 6 })).tokens;
        assertEquals(tokens, wantTokens);
        assert(
          gpu.ledger.peakBytes <= budget,
          `${format}: peak ${gpu.ledger.peakBytes} over the budget ${budget}`,
        );
        assert(gpu.ledger.peakBytes < residentPeak);
        model.dispose();
        assertEquals(gpu.ledger.currentBytes, 0, "ledger after dispose");
      }
    } finally {
      gpu.destroy();
    }
  });
}

Deno.test("a budget below the fixed costs plus two slots fails cleanly", async () => {
  const gpu = await requestGpu();
  try {
    await rejects(
      LlamaModel.load(dir, { gpu, format: "nf4", ...LOAD, vramBudget: 100_000 }),
      /vramBudget 100000 bytes is too small: .* at least \d+ bytes/,
    );
    assertEquals(gpu.ledger.currentBytes, 0, "nothing left after a failed load");
    await rejects(
      LlamaModel.load(dir, { gpu, ...LOAD, vramBudget: 2 ** 30, streaming: { slots: 1 } }),
      /slots must be an integer ≥ 2/,
    );
  } finally {
    gpu.destroy();
  }
});

Deno.test("planLayers keeps what fits and leaves room for the slots", () => {
  const p = planLayers({
    budget: 1000,
    fixedBytes: 200,
    reserveBytes: 50,
    layerBytes: 100,
    layers: 32,
  });
  assertEquals(p, { residentLayers: 5, streamedLayers: 27, slots: 2, peakBytes: 950 });
  assertEquals(
    planLayers({ budget: 1000, fixedBytes: 200, reserveBytes: 0, layerBytes: 100, layers: 8 })
      .streamedLayers,
    0,
  );
  assertEquals(
    planLayers({ budget: 300, fixedBytes: 200, reserveBytes: 0, layerBytes: 100, layers: 8 })
      .residentLayers,
    -1,
  );
});

Deno.test("measureUploadBandwidth gives a rate and frees its buffers", async () => {
  const gpu = await requestGpu();
  try {
    const bw = await measureUploadBandwidth(gpu, { bytes: 2 ** 20, reps: 1, copies: 2 });
    assert(Number.isFinite(bw) && bw > 1e6, `${bw} bytes/s`);
    assertEquals(gpu.ledger.currentBytes, 0);
  } finally {
    gpu.destroy();
  }
});

globalThis.addEventListener("unload", () => Deno.removeSync(dir, { recursive: true }));
