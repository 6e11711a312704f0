import assert from "node:assert/strict";
import { join } from "node:path";
import {
  familyOf,
  loadLlamaConfig,
  parseLlamaConfig,
  ropeInverseFrequencies,
} from "../../lib/model/config.ts";
import { parameterCount, PRESET_NAMES, presetConfig } from "../../lib/model/presets.ts";
import { assertClose } from "../helpers/random.ts";
import { writeRandomLlama } from "../helpers/random_llama.ts";

const BASE = {
  architectures: ["LlamaForCausalLM"],
  model_type: "llama",
  hidden_size: 256,
  intermediate_size: 512,
  num_hidden_layers: 2,
  num_attention_heads: 8,
  vocab_size: 1000,
};

Deno.test("config: defaults follow transformers' LlamaConfig", () => {
  const c = parseLlamaConfig(BASE);
  assert.equal(c.numKvHeads, 8); // no GQA unless asked
  assert.equal(c.headDim, 32);
  assert.equal(c.tieWordEmbeddings, false);
  assert.equal(c.ropeTheta, 10000);
  assert.equal(c.rmsNormEps, 1e-6);
  assert.equal(c.maxPositionEmbeddings, 2048);
  assert.deepEqual(c.eosTokenIds, []);
  assert.equal(c.bosTokenId, undefined);
  assert.equal(c.ropeScaling, undefined);
});

Deno.test("config: GQA, explicit head_dim, tied embeddings and EOS lists", () => {
  const c = parseLlamaConfig({
    ...BASE,
    num_key_value_heads: 2,
    head_dim: 64,
    tie_word_embeddings: true,
    eos_token_id: [128001, 128008, 128009],
    bos_token_id: 128000,
    rms_norm_eps: 1e-5,
    torch_dtype: "bfloat16",
  });
  assert.equal(c.numKvHeads, 2);
  assert.equal(c.headDim, 64);
  assert.equal(c.tieWordEmbeddings, true);
  assert.deepEqual(c.eosTokenIds, [128001, 128008, 128009]);
  assert.equal(c.bosTokenId, 128000);
  assert.equal(c.torchDtype, "bfloat16");
  assert.deepEqual(parseLlamaConfig({ ...BASE, eos_token_id: 2 }).eosTokenIds, [2]);
});

Deno.test("config: unsupported features are refused with the reason", () => {
  assert.throws(
    () => parseLlamaConfig({ ...BASE, hidden_act: "gelu" }),
    /hidden_act "gelu" is not supported/,
  );
  assert.throws(
    () => parseLlamaConfig({ ...BASE, rope_scaling: { type: "linear", factor: 2 } }),
    /rope_scaling type "linear" is not supported/,
  );
  assert.throws(
    () => parseLlamaConfig({ ...BASE, model_type: "gpt2", architectures: ["GPT2LMHeadModel"] }),
    /architecture \["GPT2LMHeadModel"\] is not supported \(supported: LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM, Phi3ForCausalLM\)/,
  );
  assert.throws(
    () => parseLlamaConfig({ ...BASE, model_type: "gemma2", architectures: [] }),
    /architecture "gemma2" is not supported \(supported: LlamaForCausalLM/,
  );
  assert.equal(
    parseLlamaConfig({ ...BASE, model_type: "mistral", architectures: [], sliding_window: null })
      .hiddenSize,
    256,
  );
  assert.throws(
    () => parseLlamaConfig({ ...BASE, num_key_value_heads: 3 }),
    /num_attention_heads 8 is not a multiple of num_key_value_heads 3/,
  );
  assert.throws(
    () => parseLlamaConfig({ ...BASE, hidden_size: "big" }),
    /hidden_size must be a positive integer/,
  );
});

Deno.test("config: rope inverse frequencies without scaling", () => {
  const c = parseLlamaConfig({ ...BASE, hidden_size: 64, num_attention_heads: 8 }); // headDim 8
  assertClose(ropeInverseFrequencies(c), [1, 0.1, 0.01, 0.001], { atol: 0, rtol: 1e-6 });
});

Deno.test("config: llama3 rope scaling matches HF _compute_llama3_parameters", () => {
  const c = presetConfig("llama-3.1-8b");
  assert.deepEqual(c.ropeScaling, {
    type: "llama3",
    factor: 8,
    lowFreqFactor: 1,
    highFreqFactor: 4,
    originalMaxPositionEmbeddings: 8192,
  });
  const f = ropeInverseFrequencies(c);
  assert.equal(f.length, 64);
  // Values of the HF formula (theta 500000, head dim 128), computed in double precision:
  // high frequencies (i <= 28) unchanged, low ones (i >= 35) divided by 8, 29..34 interpolated.
  const expected: [number, number][] = [
    [0, 1.0],
    [28, 0.0032114459947525913],
    [30, 0.0013718935677611381],
    [34, 0.00017850781276799638],
    [35, 9.556212353964683e-05],
    [63, 3.068925988914511e-07],
  ];
  for (const [i, v] of expected) {
    assertClose([f[i]], [v], { atol: 0, rtol: 1e-6 }, `inv_freq[${i}]`);
  }
  // Same config without scaling: only the low band changes.
  const plain = ropeInverseFrequencies({ ...c, ropeScaling: undefined });
  assert.equal(f[10], plain[10]);
  assertClose([f[50]], [plain[50] / 8], { atol: 0, rtol: 1e-6 });
});

Deno.test("config: presets have the official values", () => {
  const l2 = presetConfig("llama-2-7b");
  assert.deepEqual(
    [l2.hiddenSize, l2.intermediateSize, l2.numLayers, l2.numHeads, l2.numKvHeads, l2.vocabSize],
    [4096, 11008, 32, 32, 32, 32000],
  );
  assert.equal(l2.maxPositionEmbeddings, 4096);
  assert.equal(l2.rmsNormEps, 1e-5);
  const l3 = presetConfig("llama-3-8b");
  assert.deepEqual(
    [l3.hiddenSize, l3.intermediateSize, l3.numLayers, l3.numHeads, l3.numKvHeads, l3.vocabSize],
    [4096, 14336, 32, 32, 8, 128256],
  );
  assert.equal(l3.ropeTheta, 500000);
  assert.equal(l3.tieWordEmbeddings, false);
  assert.equal(l3.maxPositionEmbeddings, 8192);
  // Published parameter counts.
  assert.equal(parameterCount(l2), 6_738_415_616);
  assert.equal(parameterCount(l3), 8_030_261_248);
  assert.equal(parameterCount(presetConfig("llama-2-13b")), 13_015_864_320);
  assert.equal(parameterCount(presetConfig("llama-2-70b")), 68_976_648_192);
  assert.equal(parameterCount(presetConfig("tinyllama-1.1b")), 1_100_048_384);
  assert.equal(parameterCount(presetConfig("llama-3.2-1b")), 1_235_814_400);
  // The other families, as transformers 5.17 counts them (the models built on the meta device).
  assert.equal(parameterCount(presetConfig("mistral-7b-v0.1")), 7_241_732_096);
  assert.equal(parameterCount(presetConfig("qwen2.5-0.5b")), 494_032_768);
  assert.equal(parameterCount(presetConfig("qwen2.5-7b")), 7_615_616_512);
  assert.equal(parameterCount(presetConfig("qwen3-0.6b")), 596_049_920);
  assert.equal(parameterCount(presetConfig("qwen3-8b")), 8_190_735_360);
  assert.equal(parameterCount(presetConfig("phi-3-mini-4k")), 3_821_079_552);
  for (const name of PRESET_NAMES) assert.ok(parameterCount(presetConfig(name)) > 4e8, name);
  assert.throws(() => presetConfig("gpt-5"), /unknown model preset "gpt-5" \(known: llama-2-7b/);
});

Deno.test("config: loadLlamaConfig reads a model directory and names the file on errors", async () => {
  const dir = await Deno.makeTempDir({ prefix: "qlab-config-" });
  try {
    await assert.rejects(loadLlamaConfig(dir), /config\.json: not found/);
    await writeRandomLlama(dir, { hidden: 64, heads: 4, kvHeads: 1, tied: true });
    const c = await loadLlamaConfig(dir);
    assert.deepEqual([c.hiddenSize, c.numHeads, c.numKvHeads, c.headDim], [64, 4, 1, 16]);
    assert.equal(c.tieWordEmbeddings, true);
    await Deno.writeTextFile(join(dir, "config.json"), JSON.stringify({ ...BASE, hidden_act: 1 }));
    await assert.rejects(loadLlamaConfig(dir), (e: Error) => {
      assert.ok(e.message.startsWith(join(dir, "config.json")), e.message);
      return true;
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("transformers 5 rope_parameters carry rope_theta and llama3 scaling", () => {
  const base = {
    architectures: ["LlamaForCausalLM"],
    hidden_size: 64,
    intermediate_size: 128,
    num_hidden_layers: 2,
    num_attention_heads: 4,
    vocab_size: 300,
    dtype: "float16",
  };
  const plain = parseLlamaConfig({
    ...base,
    rope_parameters: { rope_type: "default", rope_theta: 50000 },
  });
  assert.equal(plain.ropeTheta, 50000);
  assert.equal(plain.ropeScaling, undefined);
  assert.equal(plain.torchDtype, "float16");
  const scaled = parseLlamaConfig({
    ...base,
    rope_parameters: {
      rope_type: "llama3",
      rope_theta: 500000,
      factor: 8,
      low_freq_factor: 1,
      high_freq_factor: 4,
      original_max_position_embeddings: 8192,
    },
  });
  assert.equal(scaled.ropeTheta, 500000);
  assert.equal(scaled.ropeScaling?.factor, 8);
});

Deno.test("config: each family's description, from its config", () => {
  const base = { ...BASE, num_hidden_layers: 4 };
  const llama = parseLlamaConfig(base);
  assert.equal(llama.family, undefined);
  assert.deepEqual(familyOf(llama), {
    name: "llama",
    biases: [],
    qkNorm: false,
    windows: [0, 0, 0, 0],
    fused: false,
  });
  const withBias = familyOf(parseLlamaConfig({ ...base, attention_bias: true, mlp_bias: true }));
  assert.equal(withBias.biases.length, 7);

  const mistral = familyOf(parseLlamaConfig({
    ...base,
    architectures: ["MistralForCausalLM"],
    sliding_window: 4096,
  }));
  assert.deepEqual([mistral.name, mistral.windows], ["mistral", [4096, 4096, 4096, 4096]]);
  const noWindow = parseLlamaConfig({ ...base, model_type: "mistral", architectures: [] });
  assert.deepEqual(familyOf(noWindow).windows, [0, 0, 0, 0]);

  // Qwen2.5 ships sliding_window with use_sliding_window false: full attention.
  const qwen2 = familyOf(parseLlamaConfig({
    ...base,
    architectures: ["Qwen2ForCausalLM"],
    sliding_window: 32768,
    use_sliding_window: false,
    max_window_layers: 2,
  }));
  assert.deepEqual(qwen2.biases, ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"]);
  assert.deepEqual(qwen2.windows, [0, 0, 0, 0]);
  const sliding = familyOf(parseLlamaConfig({
    ...base,
    architectures: ["Qwen2ForCausalLM"],
    sliding_window: 64,
    use_sliding_window: true,
    max_window_layers: 2,
  }));
  assert.deepEqual(sliding.windows, [0, 0, 64, 64]);
  const types = ["full_attention", "sliding_attention", "full_attention", "sliding_attention"];
  const typed = familyOf(parseLlamaConfig({
    ...base,
    architectures: ["Qwen3ForCausalLM"],
    sliding_window: 16,
    use_sliding_window: true,
    layer_types: types,
  }));
  assert.deepEqual([typed.qkNorm, typed.biases, typed.windows], [true, [], [0, 16, 0, 16]]);
  // Without use_sliding_window transformers drops the window whatever layer_types say.
  const off = familyOf(parseLlamaConfig({
    ...base,
    architectures: ["Qwen3ForCausalLM"],
    sliding_window: 16,
    layer_types: types,
  }));
  assert.deepEqual(off.windows, [0, 0, 0, 0]);

  const phi3 = familyOf(parseLlamaConfig({
    ...base,
    architectures: ["Phi3ForCausalLM"],
    sliding_window: 2047,
  }));
  assert.deepEqual([phi3.fused, phi3.windows[0]], [true, 2047]);
  assert.throws(
    () =>
      parseLlamaConfig({
        ...base,
        architectures: ["Phi3ForCausalLM"],
        rope_parameters: { rope_type: "default", partial_rotary_factor: 0.5 },
      }),
    /partial_rotary_factor 0.5 is not supported/,
  );
  assert.throws(
    () => parseLlamaConfig({ ...base, architectures: ["MistralForCausalLM"], sliding_window: 0 }),
    /sliding_window must be a positive integer or null/,
  );
});
