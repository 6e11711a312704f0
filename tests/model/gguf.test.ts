/**
 * GGUF files (tests/fixtures/gguf, written by llama.cpp's gguf-py; make_fixtures.py there):
 *
 * - every type we read decodes exactly as gguf-py's `gguf.quants.dequantize` (bit for bit, f32);
 * - a tiny random Llama with every type among its layers (tiny-mixed.gguf) loads with the
 *   config from its keys and the tokenizer from its metadata, and its logits match a float64
 *   numpy forward on gguf-py's dequantized weights: max |Δ logit| ≤ 0.01 and the same argmax at
 *   every position (our embeddings, LM head and KV cache are f16, activations f32);
 * - the metadata tokenizer gives the ids Hugging Face's tokenizer.json of the model gives.
 */
import assert from "node:assert/strict";
import { requestGpu } from "../../lib/gpu/device.ts";
import { hfTensorName, openGguf, unpermuteRows } from "../../lib/model/gguf.ts";
import { LlamaModel } from "../../lib/model/llama.ts";
import { argmax } from "../../lib/model/sampling.ts";
import { loadTokenizer } from "../../lib/model/tokenizer.ts";

const DIR = new URL("../fixtures/gguf/", import.meta.url).pathname;
const hasF16 = (await navigator.gpu.requestAdapter())?.features.has("shader-f16") ?? false;

Deno.test("gguf: every type decodes as gguf-py's dequantize, bit for bit", async () => {
  using file = await openGguf(`${DIR}types.gguf`);
  const types = ["F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q4_K", "Q6_K"];
  for (const t of types) {
    const ours = await file.readF32(t);
    const ref = await file.readF32(`${t}.ref`);
    assert.equal(ours.length, 16 * 512, t);
    const a = new Uint32Array(ours.buffer, ours.byteOffset, ours.length);
    const b = new Uint32Array(ref.buffer, ref.byteOffset, ref.length);
    let differ = 0;
    for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) differ++;
    assert.equal(differ, 0, `${t}: ${differ} values differ from gguf-py's`);
  }
});

Deno.test("gguf: names and q/k rows map back to Hugging Face's", () => {
  assert.equal(hfTensorName("blk.0.attn_output.weight"), "model.layers.0.self_attn.o_proj.weight");
  assert.equal(hfTensorName("token_embd.weight"), "model.embed_tokens.weight");
  assert.equal(hfTensorName("blk.0.attn_rot_embd"), null);
  // one head of 4 rows: llama.cpp stores rows (0, 2, 1, 3) of HF's order
  assert.deepEqual([...unpermuteRows(new Uint8Array([10, 12, 11, 13]), 1, 4)], [10, 11, 12, 13]);
});

for (const f16 of [false, true]) {
  Deno.test({
    name: `gguf: tiny-mixed.gguf matches a numpy forward on gguf-py's weights (${
      f16 ? "f16" : "f32"
    })`,
    ignore: f16 && !hasF16,
    fn: async () => {
      const ref = JSON.parse(await Deno.readTextFile(`${DIR}tiny-reference.json`));
      const gpu = await requestGpu({ f16 });
      try {
        const model = await LlamaModel.load(`${DIR}tiny-mixed.gguf`, { gpu, maxSeqLen: 64 });
        assert.equal(model.config.numLayers, 2);
        assert.equal(model.config.tieWordEmbeddings, false);
        const vocab = model.config.vocabSize;
        const logits = await model.forward(ref.input_ids, "all");
        model.dispose();
        let worst = 0;
        for (let t = 0; t < ref.input_ids.length; t++) {
          const row = logits.subarray(t * vocab, (t + 1) * vocab);
          assert.equal(argmax(row), argmax(Float32Array.from(ref.logits[t])), `position ${t}`);
          for (let v = 0; v < vocab; v++) {
            worst = Math.max(worst, Math.abs(row[v] - ref.logits[t][v]));
          }
        }
        assert.ok(worst <= 0.01, `max |Δ logit| ${worst}`);
        gpu.trimScratch();
        assert.deepEqual(gpu.ledger.entries(), []);
      } finally {
        gpu.destroy();
      }
    },
  });
}

Deno.test("gguf: the metadata tokenizer encodes as the model's tokenizer.json", async () => {
  const ref = JSON.parse(await Deno.readTextFile(`${DIR}tiny-reference.json`));
  const tok = await loadTokenizer(`${DIR}tiny-mixed.gguf`);
  assert.deepEqual(tok.encode(ref.sample.text), ref.sample.ids);
  assert.equal(
    tok.decode(tok.encode(ref.sample.text), { skipSpecialTokens: true }),
    ref.sample.text,
  );
});

Deno.test("gguf: errors name the file and what is wrong", async () => {
  await assert.rejects(
    () => LlamaModel.load(`${DIR}types.gguf`),
    /metadata key llama\.attention\.head_count is missing/,
  );
  const tmp = await Deno.makeTempFile({ suffix: ".gguf" });
  try {
    await Deno.writeFile(tmp, new TextEncoder().encode("not a gguf file at all"));
    await assert.rejects(() => openGguf(tmp), /not a readable GGUF file/);
  } finally {
    await Deno.remove(tmp);
  }
});

Deno.test("gguf: generate runs on a GGUF file", async () => {
  const { main } = await import("../../cli/main.ts");
  const status = await main([
    "generate",
    "--model",
    `${DIR}tiny-mixed.gguf`,
    "--prompt",
    "the fox",
    "--max-tokens",
    "4",
  ]);
  assert.equal(status, 0);
});
