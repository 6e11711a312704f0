/**
 * Non-finite logits are caught where it costs nothing: forward checks what it reads back, and
 * the argmax kernel flags a row holding NaN, so greedy decoding stops with an error instead of
 * emitting token 0 or "stopping by eos".
 *
 * WGSL lets compilers assume finite math, so how far a NaN travels depends on the kernels and
 * the adapter (a two-token prompt here turns it into zeros on lavapipe); these prompts carry it
 * to the logits.
 */
import assert from "node:assert/strict";
import { requestGpu } from "../../lib/gpu/device.ts";
import { openCheckpoint } from "../../lib/model/checkpoint.ts";
import { loadLlamaConfig } from "../../lib/model/config.ts";
import { LlamaModel, type WeightSource } from "../../lib/model/llama.ts";
import { writeRandomLlama } from "../helpers/random_llama.ts";

Deno.test("NaN reaching the logits stops forward, forwardGreedy and decodeGreedy with a reason", async () => {
  const dir = await Deno.makeTempDir({ prefix: "qlab-finite-" });
  const gpu = await requestGpu();
  try {
    await writeRandomLlama(dir, { layers: 1, hidden: 32, heads: 2, kvHeads: 1, intermediate: 64 });
    const config = await loadLlamaConfig(dir);
    using ckpt = await openCheckpoint(dir);
    // A source that slips one NaN past the file checks, as an overflow would produce.
    const source: WeightSource = {
      expectShape: (name, shape) => ckpt.expectShape(name, shape),
      readF32: (name) => ckpt.readF32(name),
      readF16Bits: async (name) => {
        const bits = await ckpt.readF16Bits(name);
        if (name === "model.layers.0.mlp.down_proj.weight") bits[5] = 0x7e00;
        return bits;
      },
    };
    const model = await LlamaModel.fromCheckpoint(config, source, { gpu, maxSeqLen: 32 });
    try {
      await assert.rejects(
        model.forward([0, 5, 9]),
        /forward \(tokens 0\.\.\): the logits of row 0 hold 300 non-finite values \(first: NaN for token 0\) in the fp16 model/,
      );
      model.reset();
      await assert.rejects(model.forwardGreedy([0, 5, 9]), /forwardGreedy: the logits hold NaN/);
      model.reset();
      await assert.rejects(
        model.decodeGreedy([0, 5, 9], { maxNewTokens: 4 }),
        /decodeGreedy: the logits hold NaN or infinity in the fp16 model/,
      );
    } finally {
      model.dispose();
    }
    assert.equal(gpu.ledger.currentBytes, 0);
  } finally {
    gpu.destroy();
    await Deno.remove(dir, { recursive: true });
  }
});
