/**
 * A small random Llama checkpoint in Hugging Face layout, for tests: `config.json`,
 * `model.safetensors` (or two shards and an index), a byte-level BPE `tokenizer.json` trained on
 * a few English sentences, `tokenizer_config.json` and `generation_config.json`.
 *
 * @module
 */

import { join } from "node:path";
import { type TensorToWrite, writeSafetensors } from "../../lib/model/safetensors.ts";
import { randn } from "./random.ts";

/**
 * Shape and storage of the random model.
 *
 * @example
 * ```ts
 * import type { RandomLlamaOptions } from "./random_llama.ts";
 * const o: RandomLlamaOptions = { layers: 2, hidden: 64, heads: 4, kvHeads: 2 };
 * ```
 */
export interface RandomLlamaOptions {
  /** Decoder layers (default 2). */
  layers?: number;
  /** Model width (default 64). */
  hidden?: number;
  /** Query heads (default 4). */
  heads?: number;
  /** Key/value heads (default 2: grouped-query attention). */
  kvHeads?: number;
  /** MLP width (default 128). */
  intermediate?: number;
  /** Vocabulary size, at least 258 (2 specials + 256 bytes); default 300. */
  vocab?: number;
  /** LM head shares the embedding (default false). */
  tied?: boolean;
  /** Storage dtype of the weights (default F16). */
  dtype?: "F32" | "F16" | "BF16";
  /** Split the weights over two shard files with an index (default false). */
  sharded?: boolean;
  /** Seed of every weight (default 1). */
  seed?: number;
  /** Max positions written to config.json (default 256). */
  maxPositions?: number;
  /** Extra `config.json` fields, e.g. `rope_scaling` (default none). */
  extraConfig?: Record<string, unknown>;
  /**
   * Llama 3 style BOS: no `add_bos_token` in tokenizer_config.json, only the post-processor
   * adds it (default false: Llama 2 style, `add_bos_token: true`).
   */
  bosFromPostProcessor?: boolean;
}

/**
 * What {@link writeRandomLlama} wrote.
 *
 * @example
 * ```ts ignore
 * const { config, tensors } = await writeRandomLlama(dir);
 * tensors["model.norm.weight"].length === config.hidden_size; // true
 * ```
 */
export interface RandomLlama {
  /** The raw `config.json` object. */
  config: Record<string, unknown>;
  /** The weights as written, before rounding to the storage dtype. */
  tensors: Record<string, Float32Array>;
}

/** GPT-2's byte-to-printable-character table, as the ByteLevel pre-tokenizer uses. */
function bytesToUnicode(): string[] {
  const printable: number[] = [];
  for (let b = 0x21; b <= 0x7e; b++) printable.push(b);
  for (let b = 0xa1; b <= 0xac; b++) printable.push(b);
  for (let b = 0xae; b <= 0xff; b++) printable.push(b);
  const table: string[] = new Array(256);
  let extra = 0;
  for (let b = 0; b < 256; b++) {
    table[b] = String.fromCodePoint(printable.includes(b) ? b : 256 + extra++);
  }
  return table;
}

const CORPUS = `The quick brown fox jumps over the lazy dog. A small model learns the shape of the
text it reads: the words that come often, the spaces between them, and the way a sentence ends.
In the beginning there was the token, and the token was a byte. Then the bytes were merged into
pairs, and the pairs into words, until the vocabulary was full. Quantization makes the weights
smaller; the question is what it costs. We measure the error of each layer and the perplexity of
the whole model, and we print the numbers so that anyone can check them.`;

const GPT2_SPLIT = /'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+/gu;

/** Learns up to `count` BPE merges from CORPUS (most frequent pair first, ties by string). */
function trainMerges(count: number, table: string[]): [string, string][] {
  const freq = new Map<string, number>();
  for (const m of CORPUS.matchAll(GPT2_SPLIT)) {
    const word = [...new TextEncoder().encode(m[0])].map((b) => table[b]).join("\u0000");
    freq.set(word, (freq.get(word) ?? 0) + 1);
  }
  let words = [...freq].map(([w, n]) => ({ symbols: w.split("\u0000"), n }));
  const merges: [string, string][] = [];
  while (merges.length < count) {
    const pairs = new Map<string, number>();
    for (const { symbols, n } of words) {
      for (let i = 0; i + 1 < symbols.length; i++) {
        const key = symbols[i] + "\u0000" + symbols[i + 1];
        pairs.set(key, (pairs.get(key) ?? 0) + n);
      }
    }
    let best: string | undefined;
    let bestN = 0;
    for (const [key, n] of pairs) {
      if (n > bestN || (n === bestN && best !== undefined && key < best)) [best, bestN] = [key, n];
    }
    if (best === undefined) break;
    const [a, b] = best.split("\u0000");
    merges.push([a, b]);
    words = words.map(({ symbols, n }) => {
      const out: string[] = [];
      for (let i = 0; i < symbols.length; i++) {
        if (symbols[i] === a && symbols[i + 1] === b) {
          out.push(a + b);
          i++;
        } else out.push(symbols[i]);
      }
      return { symbols: out, n };
    });
  }
  return merges;
}

/**
 * A byte-level BPE `tokenizer.json` with exactly `vocab` ids: `<s>` = 0, `</s>` = 1, the 256
 * bytes = 2..257, learned merges, then reserved special tokens if the merges run out.
 *
 * @example
 * ```ts
 * import { randomTokenizerJson } from "./random_llama.ts";
 * const json = randomTokenizerJson(300);
 * ```
 */
export function randomTokenizerJson(vocab: number): Record<string, unknown> {
  if (vocab < 258) throw new Error(`random tokenizer needs vocab >= 258, got ${vocab}`);
  const table = bytesToUnicode();
  const model: Record<string, number> = {};
  const special = (id: number, content: string) => ({
    id,
    content,
    single_word: false,
    lstrip: false,
    rstrip: false,
    normalized: false,
    special: true,
  });
  const added = [special(0, "<s>"), special(1, "</s>")];
  model["<s>"] = 0;
  model["</s>"] = 1;
  for (let b = 0; b < 256; b++) model[table[b]] = 2 + b;
  const merges = trainMerges(vocab - 258, table);
  let next = 258;
  for (const [a, b] of merges) model[a + b] ??= next++;
  while (next < vocab) {
    const content = `<|reserved_${next}|>`;
    added.push(special(next, content));
    model[content] = next++;
  }
  return {
    version: "1.0",
    truncation: null,
    padding: null,
    added_tokens: added,
    normalizer: null,
    pre_tokenizer: {
      type: "ByteLevel",
      add_prefix_space: false,
      trim_offsets: true,
      use_regex: true,
    },
    post_processor: {
      type: "TemplateProcessing",
      single: [{ SpecialToken: { id: "<s>", type_id: 0 } }, { Sequence: { id: "A", type_id: 0 } }],
      pair: [
        { SpecialToken: { id: "<s>", type_id: 0 } },
        { Sequence: { id: "A", type_id: 0 } },
        { SpecialToken: { id: "<s>", type_id: 1 } },
        { Sequence: { id: "B", type_id: 1 } },
      ],
      special_tokens: { "<s>": { id: "<s>", ids: [0], tokens: ["<s>"] } },
    },
    decoder: { type: "ByteLevel", add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: {
      type: "BPE",
      dropout: null,
      unk_token: null,
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: false,
      byte_fallback: false,
      ignore_merges: false,
      vocab: model,
      merges: merges.map(([a, b]) => `${a} ${b}`),
    },
  };
}

/**
 * Writes a random Llama model directory and returns its config and f32 weights.
 *
 * @example
 * ```ts ignore
 * import { writeRandomLlama } from "./random_llama.ts";
 * const dir = await Deno.makeTempDir();
 * await writeRandomLlama(dir, { layers: 2, tied: true });
 * ```
 */
export async function writeRandomLlama(
  dir: string,
  opts: RandomLlamaOptions = {},
): Promise<RandomLlama> {
  const layers = opts.layers ?? 2;
  const hidden = opts.hidden ?? 64;
  const heads = opts.heads ?? 4;
  const kvHeads = opts.kvHeads ?? 2;
  const inter = opts.intermediate ?? 128;
  const vocab = opts.vocab ?? 300;
  const tied = opts.tied ?? false;
  const dtype = opts.dtype ?? "F16";
  const seed = opts.seed ?? 1;
  const headDim = hidden / heads;
  if (!Number.isInteger(headDim)) {
    throw new Error(`hidden ${hidden} not divisible by heads ${heads}`);
  }

  const config: Record<string, unknown> = {
    architectures: ["LlamaForCausalLM"],
    model_type: "llama",
    hidden_act: "silu",
    vocab_size: vocab,
    hidden_size: hidden,
    intermediate_size: inter,
    num_hidden_layers: layers,
    num_attention_heads: heads,
    num_key_value_heads: kvHeads,
    max_position_embeddings: opts.maxPositions ?? 256,
    rms_norm_eps: 1e-5,
    rope_theta: 10000,
    tie_word_embeddings: tied,
    attention_bias: false,
    mlp_bias: false,
    bos_token_id: 0,
    eos_token_id: 1,
    torch_dtype: { F32: "float32", F16: "float16", BF16: "bfloat16" }[dtype],
    ...opts.extraConfig,
  };

  const tensors: Record<string, Float32Array> = {};
  const shapes: Record<string, number[]> = {};
  let k = 0;
  // Linear weights ~ N(0, 0.5/sqrt(in)): activations stay O(1) and logits have std ~1.
  const linear = (name: string, out: number, inp: number) => {
    tensors[name] = randn(out * inp, seed * 1000 + k++, 0.5 / Math.sqrt(inp));
    shapes[name] = [out, inp];
  };
  const norm = (name: string) => {
    const w = randn(hidden, seed * 1000 + k++, 0.1);
    for (let i = 0; i < hidden; i++) w[i] += 1;
    tensors[name] = w;
    shapes[name] = [hidden];
  };
  tensors["model.embed_tokens.weight"] = randn(
    vocab * hidden,
    seed * 1000 + k++,
    1 / Math.sqrt(hidden),
  );
  shapes["model.embed_tokens.weight"] = [vocab, hidden];
  for (let l = 0; l < layers; l++) {
    const p = `model.layers.${l}`;
    norm(`${p}.input_layernorm.weight`);
    linear(`${p}.self_attn.q_proj.weight`, heads * headDim, hidden);
    linear(`${p}.self_attn.k_proj.weight`, kvHeads * headDim, hidden);
    linear(`${p}.self_attn.v_proj.weight`, kvHeads * headDim, hidden);
    linear(`${p}.self_attn.o_proj.weight`, hidden, heads * headDim);
    norm(`${p}.post_attention_layernorm.weight`);
    linear(`${p}.mlp.gate_proj.weight`, inter, hidden);
    linear(`${p}.mlp.up_proj.weight`, inter, hidden);
    linear(`${p}.mlp.down_proj.weight`, hidden, inter);
  }
  norm("model.norm.weight");
  if (!tied) linear("lm_head.weight", vocab, hidden);

  const toWrite = (names: string[]): Record<string, TensorToWrite> =>
    Object.fromEntries(names.map((n) => [n, { dtype, shape: shapes[n], data: tensors[n] }]));
  const names = Object.keys(tensors);
  const metadata = { format: "pt" };
  if (opts.sharded) {
    const half = Math.ceil(names.length / 2);
    const files = ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"];
    const parts = [names.slice(0, half), names.slice(half)];
    const weightMap: Record<string, string> = {};
    let totalSize = 0;
    for (let i = 0; i < 2; i++) {
      await writeSafetensors(join(dir, files[i]), toWrite(parts[i]), metadata);
      for (const n of parts[i]) {
        weightMap[n] = files[i];
        totalSize += tensors[n].length * (dtype === "F32" ? 4 : 2);
      }
    }
    await Deno.writeTextFile(
      join(dir, "model.safetensors.index.json"),
      JSON.stringify({ metadata: { total_size: totalSize }, weight_map: weightMap }, null, 2),
    );
  } else {
    await writeSafetensors(join(dir, "model.safetensors"), toWrite(names), metadata);
  }

  await Deno.writeTextFile(join(dir, "config.json"), JSON.stringify(config, null, 2));
  await Deno.writeTextFile(join(dir, "tokenizer.json"), JSON.stringify(randomTokenizerJson(vocab)));
  const tokConfig: Record<string, unknown> = {
    bos_token: "<s>",
    eos_token: "</s>",
    clean_up_tokenization_spaces: false,
    model_max_length: config.max_position_embeddings,
    tokenizer_class: "PreTrainedTokenizerFast",
  };
  if (!opts.bosFromPostProcessor) tokConfig.add_bos_token = true;
  await Deno.writeTextFile(join(dir, "tokenizer_config.json"), JSON.stringify(tokConfig, null, 2));
  await Deno.writeTextFile(
    join(dir, "generation_config.json"),
    JSON.stringify({ bos_token_id: 0, eos_token_id: 1 }, null, 2),
  );
  return { config, tensors };
}
