/**
 * The GPU forward pass against the fp32 CPU reference on random Llamas.
 *
 * Tolerance: weights are f16 in both (the reference reads the same f16 values); the GPU keeps
 * K/V in f16 and the f16 path multiplies in f16, so logits differ by rounding only. With
 * logits of magnitude ~1-5 on these models, |Δlogit| ≤ 0.02 leaves room for f16 K/V rounding
 * (relative 2^-11) accumulated over a few layers and nothing more; a wrong index or a missing
 * term shows up as errors of order 1.
 */
import { deepStrictEqual as assertEquals, ok as assert, rejects } from "node:assert/strict";
import { join } from "node:path";
import { requestGpu } from "../../lib/gpu/device.ts";
import { LlamaModel } from "../../lib/model/llama.ts";
import { loadLlamaConfig } from "../../lib/model/config.ts";
import { openCheckpoint } from "../../lib/model/checkpoint.ts";
import { loadReferenceWeights, ReferenceLlama } from "../../lib/model/reference.ts";
import { type RandomLlamaOptions, writeRandomLlama } from "../helpers/random_llama.ts";
import { randomInts } from "../helpers/random.ts";
import { argmax } from "../../lib/model/sampling.ts";

const LOGIT_ATOL = 0.02;

async function referenceLogits(dir: string, tokens: number[]): Promise<Float32Array> {
  const config = await loadLlamaConfig(dir);
  const ckpt = await openCheckpoint(dir);
  try {
    const weights = await loadReferenceWeights(ckpt, config);
    return new ReferenceLlama(config, weights).forward(tokens, 0);
  } finally {
    ckpt.close();
  }
}

function compare(gpu: Float32Array, ref: Float32Array, vocab: number, what: string): number {
  assertEquals(gpu.length, ref.length, `${what}: length`);
  let worst = 0;
  for (let r = 0; r < ref.length / vocab; r++) {
    const g = gpu.subarray(r * vocab, (r + 1) * vocab);
    const c = ref.subarray(r * vocab, (r + 1) * vocab);
    assertEquals(argmax(g), argmax(c), `${what}: argmax differs at position ${r}`);
    for (let i = 0; i < vocab; i++) worst = Math.max(worst, Math.abs(g[i] - c[i]));
  }
  assert(worst <= LOGIT_ATOL, `${what}: max |Δlogit| ${worst} > ${LOGIT_ATOL}`);
  return worst;
}

const CASES: [string, RandomLlamaOptions][] = [
  ["untied, GQA 4/2", {
    layers: 2,
    hidden: 64,
    heads: 4,
    kvHeads: 2,
    intermediate: 160,
    tied: false,
    seed: 11,
  }],
  ["tied, GQA 8/2, 3 layers", {
    layers: 3,
    hidden: 128,
    heads: 8,
    kvHeads: 2,
    intermediate: 256,
    tied: true,
    seed: 12,
  }],
];

for (const f16 of [false, true]) {
  for (const [name, opts] of CASES) {
    const hasF16 = f16 ? (await navigator.gpu.requestAdapter())?.features.has("shader-f16") : true;
    Deno.test({
      name: `GPU forward matches the CPU reference (${name}, ${f16 ? "f16" : "packed-u32"} path)`,
      ignore: !hasF16,
      fn: async () => {
        const dir = await Deno.makeTempDir({ prefix: "qlab-llama-" });
        const gpu = await requestGpu({ f16 });
        try {
          await writeRandomLlama(dir, opts);
          const vocab = (await loadLlamaConfig(dir)).vocabSize;
          const tokens = [...randomInts(24, opts.seed ?? 0, vocab)];
          const ref = await referenceLogits(dir, tokens);
          // chunkSize 8 makes the 24-token prefill run in three chunks.
          const model = await LlamaModel.load(dir, { gpu, maxSeqLen: 64, chunkSize: 8 });
          const prefill = await model.forward(tokens, "all");
          compare(prefill, ref, vocab, "prefill");

          model.reset();
          const decoded = new Float32Array(tokens.length * vocab);
          for (let t = 0; t < tokens.length; t++) {
            decoded.set(await model.forward([tokens[t]], "last"), t * vocab);
          }
          compare(decoded, ref, vocab, "token-by-token decode");

          model.reset();
          const greedy = await model.forwardGreedy(tokens);
          assertEquals(greedy, argmax(ref.subarray((tokens.length - 1) * vocab)));

          model.dispose();
          assertEquals(gpu.ledger.currentBytes, 0, "ledger after dispose");
        } finally {
          gpu.destroy();
          await Deno.remove(dir, { recursive: true });
        }
      },
    });
  }
}

Deno.test("loading reports progress, refuses bad input, and disposing frees everything", async () => {
  const dir = await Deno.makeTempDir({ prefix: "qlab-llama-" });
  const gpu = await requestGpu();
  try {
    await writeRandomLlama(dir, { layers: 2, hidden: 64, heads: 4, kvHeads: 2 });
    const config = await loadLlamaConfig(dir);
    let last = [0, 0];
    const model = await LlamaModel.load(dir, {
      gpu,
      maxSeqLen: 16,
      onProgress: (done, total) => (last = [done, total]),
    });
    assertEquals(last[0], last[1]);
    assert(gpu.ledger.bytesIn("weights") > 0 && gpu.ledger.bytesIn("kv-cache") > 0);
    await rejects(model.forward([config.vocabSize]), /outside the vocabulary/);
    model.reset();
    await rejects(model.forward(new Array(17).fill(1)), /exceed the KV cache/);
    model.dispose();
    assertEquals(gpu.ledger.currentBytes, 0);
    await rejects(model.forward([1]), /disposed/);

    // A checkpoint missing a tensor fails cleanly and leaves nothing on the GPU.
    const bad = join(dir, "bad");
    await Deno.mkdir(bad);
    await writeRandomLlama(bad, {
      layers: 2,
      hidden: 64,
      heads: 4,
      kvHeads: 2,
      extraConfig: { num_hidden_layers: 3 },
    });
    await rejects(LlamaModel.load(bad, { gpu }), /model\.layers\.2\..* not found/);
    assertEquals(gpu.ledger.currentBytes, 0, "nothing left after a failed load");
  } finally {
    gpu.destroy();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("trace records each layer's linear inputs as the CPU reference computes them", async () => {
  const dir = await Deno.makeTempDir({ prefix: "qlab-llama-" });
  const gpu = await requestGpu();
  try {
    await writeRandomLlama(dir, { layers: 2, hidden: 64, heads: 4, kvHeads: 2, seed: 5 });
    const config = await loadLlamaConfig(dir);
    const tokens = [...randomInts(12, 5, config.vocabSize)];
    const ckpt = await openCheckpoint(dir);
    const weights = await loadReferenceWeights(ckpt, config);
    ckpt.close();
    const names: Record<string, "attn_in" | "o_in" | "mlp_in" | "down_in"> = {
      "self_attn.q_proj": "attn_in",
      "self_attn.o_proj": "o_in",
      "mlp.gate_proj": "mlp_in",
      "mlp.down_proj": "down_in",
    };
    const expected = new Map<string, number[]>();
    new ReferenceLlama(config, weights, {
      onActivation: (name, layer, data) => {
        const point = names[name];
        if (!point) return;
        const key = `${point}/${layer}`;
        expected.set(key, [...(expected.get(key) ?? []), ...data]);
      },
    }).forward(tokens, 0);

    const model = await LlamaModel.load(dir, { gpu, maxSeqLen: 32, chunkSize: 5 });
    const trace = await model.trace(tokens);
    assertEquals(trace.tokens, tokens.length);
    for (const [key, values] of expected) {
      const [point, layer] = key.split("/");
      const got = trace.layers[Number(layer)][point as "attn_in"];
      let worst = 0;
      values.forEach((v, i) => (worst = Math.max(worst, Math.abs(v - got[i]))));
      assert(worst < 0.02, `${key}: max |Δ| ${worst}`);
    }
    model.dispose();
    assertEquals(gpu.ledger.currentBytes, 0);
  } finally {
    gpu.destroy();
    await Deno.remove(dir, { recursive: true });
  }
});
