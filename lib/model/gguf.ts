/**
 * GGUF files of Llama-architecture models (llama.cpp's format): the config from the file's
 * keys, the tokenizer from its metadata (or a `tokenizer.json` beside it), and the weights,
 * renamed to Hugging Face's names with the q/k rows put back in Hugging Face's order
 * (llama.cpp's converter permutes them for its RoPE layout).
 *
 * The container (header, metadata, tensor infos; GGUF versions 2 and 3) is parsed here rather
 * than with npm `@huggingface/gguf`: that package depends on `@huggingface/tasks` (3.2 MB), which
 * every copy of the project would carry, for the hundred lines below. Tensor data is read one
 * tensor at a time. Per tensor type:
 *
 * | GGUF type | loads as | cost |
 * | --- | --- | --- |
 * | Q8_0 | our q8_0 (same bits, split into codes and scales) | none |
 * | Q4_0 | our q4_0 (4-bit kernels, table `q - 8`) | `d` widened to f32: 5 instead of 4.5 bits |
 * | Q4_K, Q6_K | their own kernels (`kernels/q_kquant.wgsl`) | Q6_K padded to words: +0.8% |
 * | F16 | FP16 | none |
 * | F32, BF16 | FP16 (rounded) | F32: precision; BF16: range beyond 65504 |
 * | Q4_1 | FP16 (decoded exactly, rounded to f16) | 16 instead of 5 bits per value |
 *
 * Embeddings, norms and the LM head are FP16/f32 on our side whatever the file holds (a
 * quantized `output.weight` is decoded at load, as for a bitsandbytes checkpoint's head).
 *
 * @module
 */

import { basename, dirname, join } from "node:path";
import { bf16BitsToF32, f16ArrayToF32, f32ToF16Bits } from "../gpu/f16.ts";
import { dequantize, type QuantFormat, type QuantizedWeight } from "../quant/formats.ts";
import {
  dequantizeQ4_1,
  q4_0FromGgml,
  q4KFromGgml,
  q6KFromGgml,
  q8_0FromGgml,
} from "../quant/ggml.ts";
import { type LlamaConfig, parseLlamaConfig } from "./config.ts";
import type { PrequantizedWeights } from "./quantized_source.ts";
import type { TensorClaim } from "./unused_tensors.ts";

/** ggml type ids we read, with their block size (values) and bytes per block. */
const GGML_TYPES: Record<number, { name: string; values: number; bytes: number }> = {
  0: { name: "F32", values: 1, bytes: 4 },
  1: { name: "F16", values: 1, bytes: 2 },
  2: { name: "Q4_0", values: 32, bytes: 18 },
  3: { name: "Q4_1", values: 32, bytes: 20 },
  8: { name: "Q8_0", values: 32, bytes: 34 },
  12: { name: "Q4_K", values: 256, bytes: 144 },
  14: { name: "Q6_K", values: 256, bytes: 210 },
  30: { name: "BF16", values: 1, bytes: 2 },
};

/** Our format of each quantized GGUF type that loads into a kernel of ours. */
const KERNEL_FORMAT: Record<string, QuantFormat> = {
  Q8_0: "q8_0",
  Q4_0: "q4_0",
  Q4_K: "q4_k",
  Q6_K: "q6_k",
};

/**
 * One tensor of a GGUF file.
 *
 * @example
 * ```ts ignore
 * const t: GgufTensor = file.tensors.get("blk.0.attn_q.weight")!;
 * ```
 */
export interface GgufTensor {
  /** GGUF name, e.g. `blk.0.attn_q.weight`. */
  name: string;
  /** Type name: F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q4_K, Q6_K. */
  type: string;
  /** Dimensions outermost first, as Hugging Face writes them (`[N, K]` for a linear layer). */
  shape: number[];
  /** Absolute byte offset of the data in the file. */
  offset: number;
  /** Bytes of data. */
  bytes: number;
}

const HF_NAMES: [RegExp, string][] = [
  [/^token_embd\.weight$/, "model.embed_tokens.weight"],
  [/^output_norm\.weight$/, "model.norm.weight"],
  [/^output\.weight$/, "lm_head.weight"],
  [/^blk\.(\d+)\.attn_norm\.weight$/, "model.layers.$1.input_layernorm.weight"],
  [/^blk\.(\d+)\.ffn_norm\.weight$/, "model.layers.$1.post_attention_layernorm.weight"],
  [/^blk\.(\d+)\.attn_q\.weight$/, "model.layers.$1.self_attn.q_proj.weight"],
  [/^blk\.(\d+)\.attn_k\.weight$/, "model.layers.$1.self_attn.k_proj.weight"],
  [/^blk\.(\d+)\.attn_v\.weight$/, "model.layers.$1.self_attn.v_proj.weight"],
  [/^blk\.(\d+)\.attn_output\.weight$/, "model.layers.$1.self_attn.o_proj.weight"],
  [/^blk\.(\d+)\.ffn_gate\.weight$/, "model.layers.$1.mlp.gate_proj.weight"],
  [/^blk\.(\d+)\.ffn_up\.weight$/, "model.layers.$1.mlp.up_proj.weight"],
  [/^blk\.(\d+)\.ffn_down\.weight$/, "model.layers.$1.mlp.down_proj.weight"],
];

/**
 * The Hugging Face name of a GGUF tensor name (Llama architecture), or null.
 *
 * @example
 * ```ts
 * import { hfTensorName } from "./gguf.ts";
 * hfTensorName("blk.3.ffn_down.weight"); // "model.layers.3.mlp.down_proj.weight"
 * ```
 */
export function hfTensorName(name: string): string | null {
  for (const [re, hf] of HF_NAMES) if (re.test(name)) return name.replace(re, hf);
  return null;
}

type Metadata = Record<string, unknown>; // GGUF metadata

/**
 * An open GGUF file: its metadata, tensors, the Llama config its keys describe, and a weight
 * source for {@linkcode LlamaModel.fromCheckpoint}.
 *
 * @example
 * ```ts ignore
 * using file = await openGguf("model-Q4_K_M.gguf");
 * file.config.numLayers;
 * ```
 */
export class GgufFile implements PrequantizedWeights {
  /** Path of the file. */
  readonly path: string;
  /** The metadata key/values (numbers, strings, arrays; 64-bit integers as numbers). */
  readonly metadata: Readonly<Record<string, unknown>>;
  /** Tensors by GGUF name. */
  readonly tensors: ReadonlyMap<string, GgufTensor>;
  /** The format most of the decoder's linear layers load as. */
  readonly format: QuantFormat;
  /** No per-file layer options. */
  readonly linearOptions: Record<string, never> = {};
  #file: Deno.FsFile;
  #byHf = new Map<string, GgufTensor>();

  /** Use {@linkcode openGguf}. */
  constructor(path: string, file: Deno.FsFile, metadata: Metadata, tensors: GgufTensor[]) {
    this.path = path;
    this.#file = file;
    this.metadata = metadata;
    this.tensors = new Map(tensors.map((t) => [t.name, t]));
    for (const t of tensors) {
      const hf = hfTensorName(t.name);
      if (hf) this.#byHf.set(hf, t);
    }
    const counts = new Map<QuantFormat, number>();
    for (const [hf, t] of this.#byHf) {
      if (!hf.includes("_proj.")) continue;
      const f = KERNEL_FORMAT[t.type] ?? "fp16";
      counts.set(f, (counts.get(f) ?? 0) + 1);
    }
    this.format = [...counts].sort((a, b) => b[1] - a[1])[0]?.[0] ?? "fp16";
  }

  #config: LlamaConfig | null = null;

  /** The model config from the `llama.*` keys (read on first use: throws if they are absent). */
  get config(): LlamaConfig {
    this.#config ??= ggufLlamaConfig(this.metadata, this.tensors, this.path);
    return this.#config;
  }

  /** The file, for error messages and the unused-tensor check. */
  get dir(): string {
    return this.path;
  }

  /** Tensor names, as Hugging Face names them where there is one (others as stored). */
  names(): string[] {
    return [...this.tensors.values()].map((t) => hfTensorName(t.name) ?? t.name);
  }

  /** None: every tensor has a Hugging Face name the loader reads. */
  tensorClaims(_config: LlamaConfig): TensorClaim[] {
    return [];
  }

  #tensor(name: string): GgufTensor {
    const t = this.#byHf.get(name) ?? this.tensors.get(name);
    if (!t) throw new Error(`${this.path}: no tensor ${name} (GGUF name of ${name} not found)`);
    return t;
  }

  /** Whether the tensor loads into one of our quantized kernels. */
  isQuantized(name: string): boolean {
    const t = this.#byHf.get(name);
    return t !== undefined && t.type in KERNEL_FORMAT && name.includes("_proj.");
  }

  /** Throws unless the tensor (Hugging Face name) has this shape. */
  expectShape(name: string, shape: readonly number[]): void {
    const t = this.#tensor(name);
    if (t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i])) {
      throw new Error(
        `${this.path}: tensor ${t.name} (${name}) has shape [${t.shape.join(", ")}], but the ` +
          `config implies [${shape.join(", ")}]`,
      );
    }
  }

  /** The stored bytes, rows in Hugging Face order (q/k un-permuted). */
  async readRaw(name: string): Promise<Uint8Array> {
    const t = this.#tensor(name);
    const bytes = new Uint8Array(t.bytes);
    await this.#file.seek(t.offset, Deno.SeekMode.Start);
    let done = 0;
    while (done < bytes.length) {
      const n = await this.#file.read(bytes.subarray(done));
      if (n === null) throw new Error(`${this.path}: file ends inside tensor ${t.name}`);
      done += n;
    }
    const m = /self_attn\.(q|k)_proj\.weight$/.exec(name);
    if (!m) return bytes;
    const c = this.config;
    return unpermuteRows(bytes, m[1] === "q" ? c.numHeads : c.numKvHeads, t.shape[0]);
  }

  /** A quantized linear layer in our layout. */
  async readQuantized(name: string): Promise<QuantizedWeight> {
    const t = this.#tensor(name);
    const [n, k] = t.shape;
    const bytes = await this.readRaw(name);
    switch (t.type) {
      case "Q8_0":
        return q8_0FromGgml(bytes, n, k);
      case "Q4_0":
        return q4_0FromGgml(bytes, n, k);
      case "Q4_K":
        return q4KFromGgml(bytes, n, k);
      case "Q6_K":
        return q6KFromGgml(bytes, n, k);
    }
    throw new Error(`${this.path}: tensor ${t.name} is ${t.type}, not a kernel format`);
  }

  /** Any tensor decoded to f32 (quantized types as gguf-py decodes them). */
  async readF32(name: string): Promise<Float32Array> {
    const t = this.#tensor(name);
    const bytes = await this.readRaw(name);
    const [n, k] = t.shape.length === 2 ? t.shape : [1, t.shape[0]];
    switch (t.type) {
      case "F32":
        return new Float32Array(bytes.buffer, bytes.byteOffset, bytes.length / 4);
      case "F16":
        return f16ArrayToF32(new Uint16Array(bytes.buffer, bytes.byteOffset, bytes.length / 2));
      case "BF16":
        return Float32Array.from(
          new Uint16Array(bytes.buffer, bytes.byteOffset, bytes.length / 2),
          bf16BitsToF32,
        );
      case "Q4_1":
        return dequantizeQ4_1(bytes, n, k);
    }
    return dequantize(await this.readQuantized(name));
  }

  /** Any tensor as f16 bits (F16 as stored; others decoded and rounded). */
  async readF16Bits(name: string): Promise<Uint16Array> {
    const t = this.#tensor(name);
    if (t.type === "F16") {
      const bytes = await this.readRaw(name);
      return new Uint16Array(bytes.buffer, bytes.byteOffset, bytes.length / 2);
    }
    const f = await this.readF32(name);
    const bits = new Uint16Array(f.length);
    for (let i = 0; i < f.length; i++) bits[i] = f32ToF16Bits(f[i]);
    return bits;
  }

  /** Closes the file. */
  close(): void {
    this.#file.close();
  }

  /** Closes the file at the end of a `using` block. */
  [Symbol.dispose](): void {
    this.close();
  }
}

/**
 * Puts the rows of a q or k projection back in Hugging Face order: llama.cpp's converter
 * stores head `h`'s row `i` (rotate-half pairs `i`, `i + d/2`) at `h·d + 2·(i mod d/2) + [i ≥ d/2]`
 * (interleaved pairs). Rows are whole blocks in every type, so this moves bytes.
 *
 * @example
 * ```ts
 * import { unpermuteRows } from "./gguf.ts";
 * unpermuteRows(new Uint8Array([0, 1, 2, 3]), 1, 4); // rows 0, 2, 1, 3
 * ```
 */
export function unpermuteRows(bytes: Uint8Array, heads: number, rows: number): Uint8Array {
  const rowBytes = bytes.length / rows;
  const d = rows / heads;
  const out = new Uint8Array(bytes.length);
  for (let h = 0; h < heads; h++) {
    for (let i = 0; i < d; i++) {
      const from = h * d + 2 * (i % (d / 2)) + (i >= d / 2 ? 1 : 0);
      out.set(bytes.subarray(from * rowBytes, (from + 1) * rowBytes), (h * d + i) * rowBytes);
    }
  }
  return out;
}

function num(meta: Metadata, key: string): number | undefined {
  const v = meta[key];
  if (v === undefined) return undefined;
  return typeof v === "bigint" ? Number(v) : v as number;
}

/**
 * The Llama config a GGUF file's keys describe (`llama.embedding_length`, `llama.block_count`,
 * ...), checked as a `config.json` would be.
 *
 * @example
 * ```ts ignore
 * const config = ggufLlamaConfig(file.metadata, file.tensors, path);
 * ```
 */
export function ggufLlamaConfig(
  meta: Record<string, unknown>,
  tensors: ReadonlyMap<string, GgufTensor>,
  path = "gguf",
): LlamaConfig {
  const arch = meta["general.architecture"];
  if (arch !== "llama") {
    throw new Error(
      `${path}: general.architecture ${JSON.stringify(arch)} is not "llama" (only Llama-` +
        `architecture GGUF files load here)`,
    );
  }
  if (tensors.has("rope_freqs.weight")) {
    throw new Error(
      `${path}: rope_freqs.weight (Llama 3.1 RoPE scaling stored as factors) is not supported; ` +
        `load the Hugging Face checkpoint instead`,
    );
  }
  const need = (key: string): number => {
    const v = num(meta, key);
    if (v === undefined) throw new Error(`${path}: metadata key ${key} is missing`);
    return v;
  };
  const heads = need("llama.attention.head_count");
  const hidden = need("llama.embedding_length");
  const tokens = meta["tokenizer.ggml.tokens"] as unknown[] | undefined;
  const embd = tensors.get("token_embd.weight");
  const raw: Record<string, unknown> = {
    model_type: "llama",
    architectures: ["LlamaForCausalLM"],
    hidden_size: hidden,
    intermediate_size: need("llama.feed_forward_length"),
    num_hidden_layers: need("llama.block_count"),
    num_attention_heads: heads,
    num_key_value_heads: num(meta, "llama.attention.head_count_kv") ?? heads,
    head_dim: num(meta, "llama.attention.key_length") ?? hidden / heads,
    vocab_size: num(meta, "llama.vocab_size") ?? embd?.shape[0] ?? tokens?.length,
    max_position_embeddings: need("llama.context_length"),
    rms_norm_eps: num(meta, "llama.attention.layer_norm_rms_epsilon") ?? 1e-5,
    rope_theta: num(meta, "llama.rope.freq_base") ?? 10000,
    tie_word_embeddings: !tensors.has("output.weight"),
    bos_token_id: num(meta, "tokenizer.ggml.bos_token_id"),
    eos_token_id: num(meta, "tokenizer.ggml.eos_token_id"),
  };
  return parseLlamaConfig(raw, `${path} (metadata)`);
}

/**
 * Opens a GGUF file: parses the container with `@huggingface/gguf` and checks every tensor's
 * type and extent.
 *
 * @example
 * ```ts ignore
 * using file = await openGguf("tests/fixtures/gguf/tiny-mixed.gguf");
 * ```
 */
export async function openGguf(path: string): Promise<GgufFile> {
  let parsed: ParsedGguf;
  try {
    parsed = await parseGgufHeader(path);
  } catch (e) {
    throw new Error(`${path}: not a readable GGUF file (${(e as Error).message})`);
  }
  const size = (await Deno.stat(path)).size;
  const base = Number(parsed.tensorDataOffset);
  const tensors: GgufTensor[] = parsed.tensorInfos.map((info) => {
    const type = GGML_TYPES[Number(info.dtype)];
    if (!type) {
      throw new Error(
        `${path}: tensor ${info.name} has ggml type ${info.dtype}, not one we load ` +
          `(${Object.values(GGML_TYPES).map((t) => t.name).join(", ")})`,
      );
    }
    const dims = info.shape.map(Number); // ggml order: innermost first
    const count = dims.reduce((a, b) => a * b, 1);
    if (dims[0] % type.values !== 0) {
      throw new Error(
        `${path}: tensor ${info.name}: row length ${dims[0]} is not a multiple of ` +
          `${type.values} (${type.name})`,
      );
    }
    const offset = base + Number(info.offset);
    const bytes = (count / type.values) * type.bytes;
    if (offset + bytes > size) {
      throw new Error(`${path}: tensor ${info.name} runs past the end of the file`);
    }
    return { name: info.name, type: type.name, shape: dims.reverse(), offset, bytes };
  });
  const metadata: Metadata = {};
  for (const [k, v] of Object.entries(parsed.metadata)) metadata[k] = v;
  const file = await Deno.open(path, { read: true });
  try {
    return new GgufFile(path, file, metadata, tensors);
  } catch (e) {
    file.close();
    throw e;
  }
}

interface ParsedGguf {
  metadata: Record<string, unknown>;
  tensorInfos: { name: string; shape: bigint[]; dtype: number; offset: bigint }[];
  tensorDataOffset: bigint;
}

class HeaderEnd extends Error {}

/** Reads the header, metadata and tensor infos (GGUF v2/v3, little-endian). */
async function parseGgufHeader(path: string): Promise<ParsedGguf> {
  const size = (await Deno.stat(path)).size;
  let want = Math.min(size, 1 << 22);
  while (true) {
    const buf = new Uint8Array(want);
    using f = await Deno.open(path, { read: true });
    let got = 0;
    while (got < want) {
      const n = await f.read(buf.subarray(got));
      if (n === null) break;
      got += n;
    }
    try {
      return parseHeaderBytes(buf.subarray(0, got));
    } catch (e) {
      if (!(e instanceof HeaderEnd) || want >= size) {
        throw e instanceof HeaderEnd ? new Error("the file ends inside its header") : e;
      }
      want = Math.min(size, want * 4); // a header longer than read so far: read more
    }
  }
}

function parseHeaderBytes(b: Uint8Array): ParsedGguf {
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  let o = 0;
  const need = (n: number) => {
    if (o + n > b.length) throw new HeaderEnd();
  };
  const u32 = () => (need(4), o += 4, v.getUint32(o - 4, true));
  const u64 = () => (need(8), o += 8, v.getBigUint64(o - 8, true));
  const str = () => {
    const n = Number(u64());
    need(n);
    o += n;
    return new TextDecoder().decode(b.subarray(o - n, o));
  };
  const value = (type: number): unknown => {
    switch (type) {
      case 0:
        return (need(1), o += 1, v.getUint8(o - 1));
      case 1:
        return (need(1), o += 1, v.getInt8(o - 1));
      case 2:
        return (need(2), o += 2, v.getUint16(o - 2, true));
      case 3:
        return (need(2), o += 2, v.getInt16(o - 2, true));
      case 4:
        return u32();
      case 5:
        return (need(4), o += 4, v.getInt32(o - 4, true));
      case 6:
        return (need(4), o += 4, v.getFloat32(o - 4, true));
      case 7:
        return (need(1), o += 1, v.getUint8(o - 1) !== 0);
      case 8:
        return str();
      case 9: {
        const inner = u32();
        const n = Number(u64());
        const out = new Array(n);
        for (let i = 0; i < n; i++) out[i] = value(inner);
        return out;
      }
      case 10:
        return Number(u64());
      case 11:
        return (need(8), o += 8, Number(v.getBigInt64(o - 8, true)));
      case 12:
        return (need(8), o += 8, v.getFloat64(o - 8, true));
    }
    throw new Error(`unknown metadata value type ${type} at byte ${o}`);
  };
  if (b.length < 4 || new TextDecoder().decode(b.subarray(0, 4)) !== "GGUF") {
    throw new Error("no GGUF magic");
  }
  o = 4;
  const version = u32();
  if (version !== 2 && version !== 3) throw new Error(`GGUF version ${version} (2 and 3 are read)`);
  const tensorCount = Number(u64());
  const kvCount = Number(u64());
  const metadata: Record<string, unknown> = {};
  for (let i = 0; i < kvCount; i++) {
    const key = str();
    metadata[key] = value(u32());
  }
  const tensorInfos: ParsedGguf["tensorInfos"] = [];
  for (let i = 0; i < tensorCount; i++) {
    const name = str();
    const dims = u32();
    if (dims > 4) throw new Error(`tensor ${name}: ${dims} dimensions`);
    const shape: bigint[] = [];
    for (let d = 0; d < dims; d++) shape.push(u64());
    tensorInfos.push({ name, shape, dtype: u32(), offset: u64() });
  }
  const alignment = Number(metadata["general.alignment"] ?? 32);
  const tensorDataOffset = BigInt(Math.ceil(o / alignment) * alignment);
  return { metadata, tensorInfos, tensorDataOffset };
}

/**
 * The `tokenizer.json` and `tokenizer_config.json` objects for a GGUF file: a `tokenizer.json`
 * beside the file if there is one, else built from the `tokenizer.ggml.*` metadata of a
 * byte-level BPE ("gpt2") tokenizer, with the pre-tokenizer its `tokenizer.ggml.pre` names
 * ("default"/"gpt2", or "llama-bpe" for Llama 3). SentencePiece ("llama") vocabularies need
 * the `tokenizer.json` beside the file.
 *
 * @example
 * ```ts ignore
 * const { json, config } = await ggufTokenizerJson("model.gguf", file.metadata);
 * ```
 */
export async function ggufTokenizerJson(
  path: string,
  meta: Readonly<Record<string, unknown>>,
): Promise<{ json: Record<string, unknown>; config: Record<string, unknown> }> {
  const beside = join(dirname(path), "tokenizer.json");
  const tokens = meta["tokenizer.ggml.tokens"] as string[] | undefined;
  const bos = num(meta as Metadata, "tokenizer.ggml.bos_token_id");
  const eos = num(meta as Metadata, "tokenizer.ggml.eos_token_id");
  const addBos = meta["tokenizer.ggml.add_bos_token"] !== false;
  const config: Record<string, unknown> = { add_bos_token: addBos };
  if (tokens && bos !== undefined) config.bos_token = tokens[bos];
  if (tokens && eos !== undefined) config.eos_token = tokens[eos];
  try {
    const json = JSON.parse(await Deno.readTextFile(beside));
    return { json, config };
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
  const model = meta["tokenizer.ggml.model"];
  if (model !== "gpt2" || !tokens) {
    throw new Error(
      `${basename(path)}: tokenizer.ggml.model ${JSON.stringify(model)} is not a byte-level ` +
        `BPE ("gpt2") vocabulary; put the model's tokenizer.json beside the file`,
    );
  }
  const types = (meta["tokenizer.ggml.token_type"] as number[] | undefined) ?? [];
  const merges = (meta["tokenizer.ggml.merges"] as string[] | undefined) ?? [];
  const vocab: Record<string, number> = {};
  tokens.forEach((t, i) => vocab[t] = i);
  // token types: 1 normal, 3 control, 4 user defined
  const added = tokens.flatMap((t, i) =>
    types[i] === 3 || types[i] === 4
      ? [{
        id: i,
        content: t,
        single_word: false,
        lstrip: false,
        rstrip: false,
        normalized: false,
        special: types[i] === 3,
      }]
      : []
  );
  const pre = meta["tokenizer.ggml.pre"] ?? "default";
  let preTokenizer: Record<string, unknown>;
  if (pre === "default" || pre === "gpt2") {
    preTokenizer = {
      type: "ByteLevel",
      add_prefix_space: false,
      trim_offsets: true,
      use_regex: true,
    };
  } else if (pre === "llama-bpe" || pre === "llama3") {
    preTokenizer = {
      type: "Sequence",
      pretokenizers: [
        {
          type: "Split",
          pattern: {
            Regex:
              "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
          },
          behavior: "Isolated",
          invert: false,
        },
        { type: "ByteLevel", add_prefix_space: false, trim_offsets: true, use_regex: false },
      ],
    };
  } else {
    throw new Error(
      `${basename(path)}: tokenizer.ggml.pre ${JSON.stringify(pre)} is not known here; put the ` +
        `model's tokenizer.json beside the file`,
    );
  }
  const bosToken = bos !== undefined ? tokens[bos] : undefined;
  const json: Record<string, unknown> = {
    version: "1.0",
    truncation: null,
    padding: null,
    added_tokens: added,
    normalizer: null,
    pre_tokenizer: preTokenizer,
    post_processor: addBos && bosToken !== undefined
      ? {
        type: "TemplateProcessing",
        single: [{ SpecialToken: { id: bosToken, type_id: 0 } }, {
          Sequence: { id: "A", type_id: 0 },
        }],
        pair: [
          { SpecialToken: { id: bosToken, type_id: 0 } },
          { Sequence: { id: "A", type_id: 0 } },
          { SpecialToken: { id: bosToken, type_id: 1 } },
          { Sequence: { id: "B", type_id: 1 } },
        ],
        special_tokens: { [bosToken]: { id: bosToken, ids: [bos], tokens: [bosToken] } },
      }
      : null,
    decoder: { type: "ByteLevel", add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: {
      type: "BPE",
      dropout: null,
      unk_token: null,
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: false,
      byte_fallback: false,
      ignore_merges: pre === "llama-bpe" || pre === "llama3",
      vocab,
      merges,
    },
  };
  return { json, config };
}
