import assert from "node:assert/strict";
import { openCheckpoint } from "../../lib/model/checkpoint.ts";
import { type LlamaConfig, loadLlamaConfig, parseLlamaConfig } from "../../lib/model/config.ts";
import {
  loadReferenceWeights,
  ReferenceLlama,
  type ReferenceWeights,
} from "../../lib/model/reference.ts";
import { roundToF16 } from "../../lib/gpu/f16.ts";
import { assertClose, randn } from "../helpers/random.ts";
import { type RandomLlamaOptions, writeRandomLlama } from "../helpers/random_llama.ts";

async function loadRandom(
  opts: RandomLlamaOptions,
): Promise<
  { config: LlamaConfig; weights: ReferenceWeights; tensors: Record<string, Float32Array> }
> {
  const dir = await Deno.makeTempDir({ prefix: "qlab-ref-" });
  try {
    const { tensors } = await writeRandomLlama(dir, opts);
    const config = await loadLlamaConfig(dir);
    using ckpt = await openCheckpoint(dir);
    return { config, weights: await loadReferenceWeights(ckpt, config), tensors };
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

const TOKENS = [0, 17, 42, 299, 5, 5, 128, 77, 3, 250];

Deno.test("reference: prefill logits equal token-by-token decode logits", async () => {
  for (
    const opts of [{ kvHeads: 2 }, { kvHeads: 1, tied: true, layers: 3 }, {
      kvHeads: 4,
      dtype: "BF16" as const,
    }]
  ) {
    const { config, weights } = await loadRandom(opts);
    const model = new ReferenceLlama(config, weights);
    const prefill = model.forward(TOKENS, 0);
    assert.equal(prefill.length, TOKENS.length * config.vocabSize);
    assert.equal(model.length, TOKENS.length);
    model.reset();
    const v = config.vocabSize;
    // A short prompt, then one token at a time from the cache.
    const decoded = new Float32Array(prefill.length);
    decoded.set(model.forward(TOKENS.slice(0, 3), 0));
    for (let t = 3; t < TOKENS.length; t++) decoded.set(model.forward([TOKENS[t]], t), t * v);
    assertClose(decoded, prefill, { atol: 1e-4 }, `logits ${JSON.stringify(opts)}`);
    // Logits are not degenerate: spread out, and different at every position.
    let sq = 0;
    for (const x of prefill) sq += x * x;
    const std = Math.sqrt(sq / prefill.length);
    assert.ok(std > 0.3 && std < 10, `logit std ${std}`);
    assert.notDeepEqual(prefill.subarray(4 * v, 5 * v), prefill.subarray(5 * v, 6 * v));
  }
});

Deno.test("reference: rewinding startPos overwrites the cache", async () => {
  const { config, weights } = await loadRandom({});
  const v = config.vocabSize;
  const model = new ReferenceLlama(config, weights);
  model.forward([1, 2, 3, 4], 0);
  const rewound = model.forward([9], 1);
  assert.equal(model.length, 2);
  model.reset();
  const fresh = model.forward([1, 9], 0).subarray(v);
  assertClose(rewound, fresh, { atol: 1e-6 });
});

Deno.test("reference: weights are the checkpoint's stored values; tied head is the embedding", async () => {
  const { weights, tensors } = await loadRandom({ tied: true });
  assert.equal(weights.lmHead, weights.embedding);
  assert.deepEqual(weights.embedding, roundToF16(tensors["model.embed_tokens.weight"]));
  assert.deepEqual(
    weights.layers[1].wDown,
    roundToF16(tensors["model.layers.1.mlp.down_proj.weight"]),
  );
  const untied = await loadRandom({ dtype: "F32" });
  assert.deepEqual(untied.weights.lmHead, untied.tensors["lm_head.weight"]);
});

Deno.test("reference: a checkpoint that disagrees with the config is refused by name", async () => {
  const dir = await Deno.makeTempDir({ prefix: "qlab-ref-" });
  try {
    await writeRandomLlama(dir, { kvHeads: 2 });
    const config = { ...(await loadLlamaConfig(dir)), numKvHeads: 4 };
    using ckpt = await openCheckpoint(dir);
    await assert.rejects(
      loadReferenceWeights(ckpt, config),
      /tensor model\.layers\.0\.self_attn\.k_proj\.weight .* has shape \[32, 64\], but the config implies \[64, 64\]/,
    );
    const tiedConfig = { ...(await loadLlamaConfig(dir)), tieWordEmbeddings: false };
    await Deno.remove(dir, { recursive: true });
    await Deno.mkdir(dir);
    await writeRandomLlama(dir, { tied: true });
    using tiedCkpt = await openCheckpoint(dir);
    await assert.rejects(
      loadReferenceWeights(tiedCkpt, tiedConfig),
      /tensor lm_head\.weight not found/,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

/** A model whose weights the test sets by hand. */
function handModel(hidden: number, heads: number, kvHeads: number, inter: number, vocab: number): {
  config: LlamaConfig;
  weights: ReferenceWeights;
} {
  const config = {
    ...parseLlamaConfig({
      model_type: "llama",
      hidden_size: hidden,
      intermediate_size: inter,
      num_hidden_layers: 1,
      num_attention_heads: heads,
      num_key_value_heads: kvHeads,
      vocab_size: vocab,
      max_position_embeddings: 16,
    }),
    // Exact arithmetic for the hand-set weights; a config.json may not say 0.
    rmsNormEps: 0,
  };
  const headDim = hidden / heads;
  const ones = new Float32Array(hidden).fill(1);
  const embedding = randn(vocab * hidden, 1);
  const weights: ReferenceWeights = {
    embedding,
    finalNorm: ones,
    lmHead: randn(vocab * hidden, 2),
    layers: [{
      attnNorm: ones,
      wq: randn(heads * headDim * hidden, 3),
      wk: randn(kvHeads * headDim * hidden, 4),
      wv: randn(kvHeads * headDim * hidden, 5),
      wo: randn(hidden * heads * headDim, 6),
      mlpNorm: ones,
      wGate: randn(inter * hidden, 7),
      wUp: randn(inter * hidden, 8),
      wDown: randn(hidden * inter, 9),
    }],
  };
  return { config, weights };
}

function normed(x: Float32Array): Float32Array {
  const rms = Math.sqrt(x.reduce((s, v) => s + v * v, 0) / x.length);
  return x.map((v) => v / rms);
}

function matvec(w: Float32Array, x: Float32Array): Float32Array {
  const out = new Float32Array(w.length / x.length);
  for (let i = 0; i < out.length; i++) {
    for (let j = 0; j < x.length; j++) out[i] += w[i * x.length + j] * x[j];
  }
  return out;
}

Deno.test("reference: attention at position 0 returns v0 (per GQA group)", () => {
  const { config, weights } = handModel(8, 4, 2, 16, 10);
  const seen: Record<string, Float32Array> = {};
  const model = new ReferenceLlama(config, weights, {
    onActivation: (name, layer, data, pos) => (seen[`${name}@${layer}:${pos}`] = data),
  });
  model.forward([3], 0);
  const x0 = normed(weights.embedding.subarray(3 * 8, 4 * 8));
  assertClose(seen["self_attn.q_proj@0:0"], x0, { atol: 1e-6 });
  const v0 = matvec(weights.layers[0].wv, x0); // 2 kv heads of dim 2
  // Query heads 0, 1 read kv head 0; heads 2, 3 read kv head 1.
  const expected = [v0[0], v0[1], v0[0], v0[1], v0[2], v0[3], v0[2], v0[3]];
  assertClose(seen["self_attn.o_proj@0:0"], expected, { atol: 1e-5 });
  assert.deepEqual(Object.keys(seen).sort(), [
    "lm_head@1:0",
    "mlp.down_proj@0:0",
    "mlp.gate_proj@0:0",
    "self_attn.o_proj@0:0",
    "self_attn.q_proj@0:0",
  ]);
});

Deno.test("reference: RoPE rotates the pairs (i, i + d/2) and attention mixes by softmax", () => {
  // One head of dim 4, identity q/k/v: every step can be written out by hand.
  const { config, weights } = handModel(4, 1, 1, 4, 2);
  const eye = new Float32Array([1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1]);
  Object.assign(weights.layers[0], { wq: eye, wk: eye, wv: eye });
  weights.embedding.set([1, 2, 3, 4, -1, 0.5, 2, 0]);
  let out1: Float32Array = new Float32Array();
  const model = new ReferenceLlama(config, weights, {
    onActivation: (name, _l, data, pos) => {
      if (name === "self_attn.o_proj" && pos === 1) out1 = data;
    },
  });
  model.forward([0, 1], 0);

  const x0 = normed(new Float32Array([1, 2, 3, 4]));
  const x1 = normed(new Float32Array([-1, 0.5, 2, 0]));
  // inv_freq = [1, 1/100] for theta 10000 and d 4; at position 1 the pair (0, 2) turns by 1 rad
  // and the pair (1, 3) by 0.01 rad.
  const rot = (x: Float32Array, a: number[]) => [
    x[0] * Math.cos(a[0]) - x[2] * Math.sin(a[0]),
    x[1] * Math.cos(a[1]) - x[3] * Math.sin(a[1]),
    x[2] * Math.cos(a[0]) + x[0] * Math.sin(a[0]),
    x[3] * Math.cos(a[1]) + x[1] * Math.sin(a[1]),
  ];
  const q1 = rot(x1, [1, 0.01]);
  const k0 = Array.from(x0); // position 0: no rotation
  const k1 = rot(x1, [1, 0.01]);
  const dot = (a: number[], b: number[]) => a.reduce((s, v, i) => s + v * b[i], 0);
  const s0 = dot(q1, k0) / 2;
  const s1 = dot(q1, k1) / 2;
  const p0 = 1 / (1 + Math.exp(s1 - s0));
  const expected = [0, 1, 2, 3].map((i) => p0 * x0[i] + (1 - p0) * x1[i]);
  assertClose(out1, expected, { atol: 1e-5 });
});

Deno.test("reference: with zero attention and MLP, logits are lm_head · norm(embedding)", () => {
  const { config, weights } = handModel(8, 2, 2, 16, 12);
  weights.layers[0].wo.fill(0);
  weights.layers[0].wDown.fill(0);
  const model = new ReferenceLlama(config, weights);
  const logits = model.forward([7], 0);
  const expected = matvec(weights.lmHead, normed(weights.embedding.subarray(7 * 8, 8 * 8)));
  assertClose(logits, expected, { atol: 1e-5 });
});

Deno.test("reference: bad positions and tokens are refused with the limit", () => {
  const { config, weights } = handModel(8, 2, 2, 16, 12);
  const model = new ReferenceLlama(config, weights, { maxSeqLen: 4 });
  assert.throws(() => model.forward([1], 1), /startPos 1 must be within the cache \(0\.\.0\)/);
  assert.throws(
    () => model.forward([12], 0),
    /token 12 at index 0 is outside the vocabulary \(12\)/,
  );
  assert.throws(
    () => model.forward([1, 2, 3, 4, 5], 0),
    /positions up to 5 exceed the KV cache of 4/,
  );
});
