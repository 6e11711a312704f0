/**
 * Configs of well-known Llama-style models (Llama, Mistral, Qwen2, Qwen3, Phi-3), for estimating memory and speed without
 * downloading them. Each is kept as the fields of the model's official `config.json` on the
 * Hugging Face Hub and parsed by the same code as a downloaded one.
 *
 * @module
 */

import { familyOf, type LlamaConfig, parseLlamaConfig } from "./config.ts";

const LLAMA = { architectures: ["LlamaForCausalLM"], model_type: "llama", hidden_act: "silu" };

const QWEN2 = {
  architectures: ["Qwen2ForCausalLM"],
  model_type: "qwen2",
  hidden_act: "silu",
  rms_norm_eps: 1e-6,
  rope_theta: 1000000,
  use_sliding_window: false,
  bos_token_id: 151643,
  eos_token_id: 151643,
  torch_dtype: "bfloat16",
};

const QWEN3 = {
  architectures: ["Qwen3ForCausalLM"],
  model_type: "qwen3",
  hidden_act: "silu",
  head_dim: 128,
  max_position_embeddings: 40960,
  rms_norm_eps: 1e-6,
  rope_theta: 1000000,
  attention_bias: false,
  sliding_window: null,
  use_sliding_window: false,
  bos_token_id: 151643,
  eos_token_id: 151645,
  torch_dtype: "bfloat16",
};

/** `config.json` fields, by preset name (source repository in the comment). */
const RAW_PRESETS: Record<string, Record<string, unknown>> = {
  // meta-llama/Llama-2-7b-hf
  "llama-2-7b": {
    ...LLAMA,
    vocab_size: 32000,
    hidden_size: 4096,
    intermediate_size: 11008,
    num_hidden_layers: 32,
    num_attention_heads: 32,
    num_key_value_heads: 32,
    max_position_embeddings: 4096,
    rms_norm_eps: 1e-5,
    rope_theta: 10000,
    tie_word_embeddings: false,
    bos_token_id: 1,
    eos_token_id: 2,
    torch_dtype: "float16",
  },
  // meta-llama/Llama-2-13b-hf
  "llama-2-13b": {
    ...LLAMA,
    vocab_size: 32000,
    hidden_size: 5120,
    intermediate_size: 13824,
    num_hidden_layers: 40,
    num_attention_heads: 40,
    num_key_value_heads: 40,
    max_position_embeddings: 4096,
    rms_norm_eps: 1e-5,
    rope_theta: 10000,
    tie_word_embeddings: false,
    bos_token_id: 1,
    eos_token_id: 2,
    torch_dtype: "float16",
  },
  // meta-llama/Llama-2-70b-hf (grouped-query attention: 8 key/value heads)
  "llama-2-70b": {
    ...LLAMA,
    vocab_size: 32000,
    hidden_size: 8192,
    intermediate_size: 28672,
    num_hidden_layers: 80,
    num_attention_heads: 64,
    num_key_value_heads: 8,
    max_position_embeddings: 4096,
    rms_norm_eps: 1e-5,
    rope_theta: 10000,
    tie_word_embeddings: false,
    bos_token_id: 1,
    eos_token_id: 2,
    torch_dtype: "float16",
  },
  // meta-llama/Meta-Llama-3-8B
  "llama-3-8b": {
    ...LLAMA,
    vocab_size: 128256,
    hidden_size: 4096,
    intermediate_size: 14336,
    num_hidden_layers: 32,
    num_attention_heads: 32,
    num_key_value_heads: 8,
    max_position_embeddings: 8192,
    rms_norm_eps: 1e-5,
    rope_theta: 500000,
    tie_word_embeddings: false,
    bos_token_id: 128000,
    eos_token_id: 128001,
    torch_dtype: "bfloat16",
  },
  // meta-llama/Llama-3.1-8B
  "llama-3.1-8b": {
    ...LLAMA,
    vocab_size: 128256,
    hidden_size: 4096,
    intermediate_size: 14336,
    num_hidden_layers: 32,
    num_attention_heads: 32,
    num_key_value_heads: 8,
    max_position_embeddings: 131072,
    rms_norm_eps: 1e-5,
    rope_theta: 500000,
    rope_scaling: {
      factor: 8.0,
      low_freq_factor: 1.0,
      high_freq_factor: 4.0,
      original_max_position_embeddings: 8192,
      rope_type: "llama3",
    },
    tie_word_embeddings: false,
    bos_token_id: 128000,
    eos_token_id: 128001,
    torch_dtype: "bfloat16",
  },
  // meta-llama/Llama-3.2-1B
  "llama-3.2-1b": {
    ...LLAMA,
    vocab_size: 128256,
    hidden_size: 2048,
    intermediate_size: 8192,
    num_hidden_layers: 16,
    num_attention_heads: 32,
    num_key_value_heads: 8,
    head_dim: 64,
    max_position_embeddings: 131072,
    rms_norm_eps: 1e-5,
    rope_theta: 500000,
    rope_scaling: {
      factor: 32.0,
      low_freq_factor: 1.0,
      high_freq_factor: 4.0,
      original_max_position_embeddings: 8192,
      rope_type: "llama3",
    },
    tie_word_embeddings: true,
    bos_token_id: 128000,
    eos_token_id: 128001,
    torch_dtype: "bfloat16",
  },
  // TinyLlama/TinyLlama-1.1B-Chat-v1.0
  "tinyllama-1.1b": {
    ...LLAMA,
    vocab_size: 32000,
    hidden_size: 2048,
    intermediate_size: 5632,
    num_hidden_layers: 22,
    num_attention_heads: 32,
    num_key_value_heads: 4,
    max_position_embeddings: 2048,
    rms_norm_eps: 1e-5,
    rope_theta: 10000,
    tie_word_embeddings: false,
    bos_token_id: 1,
    eos_token_id: 2,
    torch_dtype: "bfloat16",
  },
  // mistralai/Mistral-7B-v0.3: no sliding window, so the Llama forward computes it exactly.
  "mistral-7b-v0.3": {
    architectures: ["MistralForCausalLM"],
    model_type: "mistral",
    hidden_act: "silu",
    vocab_size: 32768,
    hidden_size: 4096,
    intermediate_size: 14336,
    num_hidden_layers: 32,
    num_attention_heads: 32,
    num_key_value_heads: 8,
    max_position_embeddings: 32768,
    rms_norm_eps: 1e-5,
    rope_theta: 1000000,
    sliding_window: null,
    tie_word_embeddings: false,
    bos_token_id: 1,
    eos_token_id: 2,
    torch_dtype: "bfloat16",
  },
  // mistralai/Mistral-7B-v0.1: sliding-window attention over 4096 positions.
  "mistral-7b-v0.1": {
    architectures: ["MistralForCausalLM"],
    model_type: "mistral",
    hidden_act: "silu",
    vocab_size: 32000,
    hidden_size: 4096,
    intermediate_size: 14336,
    num_hidden_layers: 32,
    num_attention_heads: 32,
    num_key_value_heads: 8,
    max_position_embeddings: 32768,
    rms_norm_eps: 1e-5,
    rope_theta: 10000,
    sliding_window: 4096,
    tie_word_embeddings: false,
    bos_token_id: 1,
    eos_token_id: 2,
    torch_dtype: "bfloat16",
  },
  // Qwen/Qwen2.5-0.5B: q/k/v biases, tied embeddings.
  "qwen2.5-0.5b": {
    ...QWEN2,
    vocab_size: 151936,
    hidden_size: 896,
    intermediate_size: 4864,
    num_hidden_layers: 24,
    num_attention_heads: 14,
    num_key_value_heads: 2,
    max_position_embeddings: 32768,
    sliding_window: 32768,
    max_window_layers: 24,
    tie_word_embeddings: true,
  },
  // Qwen/Qwen2.5-7B
  "qwen2.5-7b": {
    ...QWEN2,
    vocab_size: 152064,
    hidden_size: 3584,
    intermediate_size: 18944,
    num_hidden_layers: 28,
    num_attention_heads: 28,
    num_key_value_heads: 4,
    max_position_embeddings: 131072,
    sliding_window: 131072,
    max_window_layers: 28,
    tie_word_embeddings: false,
  },
  // Qwen/Qwen3-0.6B: per-head q/k RMSNorm, head_dim 128 wider than hidden / heads.
  "qwen3-0.6b": {
    ...QWEN3,
    vocab_size: 151936,
    hidden_size: 1024,
    intermediate_size: 3072,
    num_hidden_layers: 28,
    num_attention_heads: 16,
    num_key_value_heads: 8,
    max_window_layers: 28,
    tie_word_embeddings: true,
  },
  // Qwen/Qwen3-8B
  "qwen3-8b": {
    ...QWEN3,
    vocab_size: 151936,
    hidden_size: 4096,
    intermediate_size: 12288,
    num_hidden_layers: 36,
    num_attention_heads: 32,
    num_key_value_heads: 8,
    max_window_layers: 36,
    tie_word_embeddings: false,
  },
  // microsoft/Phi-3-mini-4k-instruct: fused qkv_proj and gate_up_proj, a 2047-position window.
  "phi-3-mini-4k": {
    architectures: ["Phi3ForCausalLM"],
    model_type: "phi3",
    hidden_act: "silu",
    vocab_size: 32064,
    hidden_size: 3072,
    intermediate_size: 8192,
    num_hidden_layers: 32,
    num_attention_heads: 32,
    num_key_value_heads: 32,
    max_position_embeddings: 4096,
    original_max_position_embeddings: 4096,
    rms_norm_eps: 1e-5,
    rope_theta: 10000,
    sliding_window: 2047,
    tie_word_embeddings: false,
    bos_token_id: 1,
    eos_token_id: 32000,
    torch_dtype: "bfloat16",
  },
};

/**
 * Names of the built-in presets.
 *
 * @example
 * ```ts
 * import { PRESET_NAMES } from "./presets.ts";
 * PRESET_NAMES.includes("llama-2-7b"); // true
 * ```
 */
export const PRESET_NAMES: readonly string[] = Object.keys(RAW_PRESETS);

/**
 * The config of a named preset; throws listing the known names when there is no such preset.
 *
 * @example
 * ```ts
 * import { presetConfig } from "./presets.ts";
 * presetConfig("llama-3-8b").numKvHeads; // 8
 * ```
 */
export function presetConfig(name: string): LlamaConfig {
  const raw = RAW_PRESETS[name];
  if (!raw) {
    throw new Error(`unknown model preset "${name}" (known: ${PRESET_NAMES.join(", ")})`);
  }
  return parseLlamaConfig(raw, `preset ${name}`);
}

/**
 * Parameter count of a Llama-style config: embeddings, attention, MLP, norms, the family's biases
 * and q/k norms, and (when untied) the LM head.
 *
 * @example
 * ```ts
 * import { parameterCount, presetConfig } from "./presets.ts";
 * parameterCount(presetConfig("llama-2-7b")); // 6738415616
 * ```
 */
export function parameterCount(config: LlamaConfig): number {
  const h = config.hiddenSize;
  const q = config.numHeads * config.headDim;
  const kv = config.numKvHeads * config.headDim;
  const attn = h * q + 2 * h * kv + q * h;
  const mlp = 3 * h * config.intermediateSize;
  // The family's extras: biases (their layers' output widths) and q/k norms.
  const family = familyOf(config);
  const biasWidth: Record<string, number> = {
    "self_attn.q_proj": q,
    "self_attn.k_proj": kv,
    "self_attn.v_proj": kv,
    "self_attn.o_proj": h,
    "mlp.gate_proj": config.intermediateSize,
    "mlp.up_proj": config.intermediateSize,
    "mlp.down_proj": h,
  };
  const extras = family.biases.reduce((sum, name) => sum + biasWidth[name], 0) +
    (family.qkNorm ? 2 * config.headDim : 0);
  const perLayer = attn + mlp + 2 * h + extras;
  const embed = config.vocabSize * h;
  return embed + config.numLayers * perLayer + h + (config.tieWordEmbeddings ? 0 : embed);
}
