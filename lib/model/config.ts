/**
 * The Llama architecture's hyper-parameters, parsed from a Hugging Face `config.json`, and the
 * rotary-embedding frequencies they imply (including Llama 3.1's frequency scaling).
 *
 * @module
 */

import { join } from "node:path";
import { familyName, llamaFamily, type ModelFamily, parseFamily } from "./family.ts";
import { excerpt, readJsonStrict } from "./json.ts";

/**
 * Llama 3.1-style rotary frequency scaling (`rope_scaling.rope_type == "llama3"`).
 *
 * @example
 * ```ts
 * import type { Llama3RopeScaling } from "./config.ts";
 * const s: Llama3RopeScaling = {
 *   type: "llama3", factor: 8, lowFreqFactor: 1, highFreqFactor: 4,
 *   originalMaxPositionEmbeddings: 8192,
 * };
 * ```
 */
export interface Llama3RopeScaling {
  /** The only scaling kind supported. */
  type: "llama3";
  /** How much longer the context is than the one trained on. */
  factor: number;
  /** Wavelengths above `original / lowFreqFactor` are divided by `factor`. */
  lowFreqFactor: number;
  /** Wavelengths below `original / highFreqFactor` are kept as they are. */
  highFreqFactor: number;
  /** The context length the base model was trained with. */
  originalMaxPositionEmbeddings: number;
}

/**
 * Hyper-parameters of a Llama-architecture causal language model.
 *
 * @example
 * ```ts
 * import { parseLlamaConfig } from "./config.ts";
 * const c = parseLlamaConfig({
 *   architectures: ["LlamaForCausalLM"], hidden_size: 64, intermediate_size: 128,
 *   num_hidden_layers: 2, num_attention_heads: 4, vocab_size: 300,
 * });
 * c.numKvHeads; // 4
 * ```
 */
export interface LlamaConfig {
  /** Rows of the embedding and LM head. */
  vocabSize: number;
  /** Model (residual stream) width. */
  hiddenSize: number;
  /** Width of the MLP's gate/up projections. */
  intermediateSize: number;
  /** Number of decoder layers. */
  numLayers: number;
  /** Query heads. */
  numHeads: number;
  /** Key/value heads (fewer than `numHeads` with grouped-query attention). */
  numKvHeads: number;
  /** Width of one attention head. */
  headDim: number;
  /** Longest context the model supports. */
  maxPositionEmbeddings: number;
  /** Epsilon inside RMSNorm's square root. */
  rmsNormEps: number;
  /** RoPE base frequency. */
  ropeTheta: number;
  /** Whether the LM head reuses the embedding matrix. */
  tieWordEmbeddings: boolean;
  /** Beginning-of-sequence token, when the config names one. */
  bosTokenId?: number;
  /** End-of-sequence tokens (Llama 3 instruct models have several). */
  eosTokenIds: number[];
  /** The dtype the checkpoint was saved in, e.g. `bfloat16`. */
  torchDtype: string;
  /** Rotary frequency scaling, when the config asks for it. */
  ropeScaling?: Llama3RopeScaling;
  /**
   * What the model's family changes in the Llama block (biases, q/k norm, sliding windows,
   * fused tensors); absent for plain Llama. See {@linkcode familyOf}.
   */
  family?: ModelFamily;
}

/**
 * The family of a config: its `family`, or plain Llama when it has none.
 *
 * @example
 * ```ts
 * import { familyOf, parseLlamaConfig } from "./config.ts";
 * const c = parseLlamaConfig({
 *   architectures: ["Qwen3ForCausalLM"], hidden_size: 64, intermediate_size: 128,
 *   num_hidden_layers: 2, num_attention_heads: 4, vocab_size: 300,
 * });
 * familyOf(c).qkNorm; // true
 * ```
 */
export function familyOf(config: LlamaConfig): ModelFamily {
  return config.family ?? llamaFamily(config.numLayers);
}

/** A reason to refuse a config, with the file it came from. */
function fail(source: string, message: string): never {
  throw new Error(`${source}: ${message}`);
}

/** Largest size accepted for a dimension: ids and offsets are 32-bit on the GPU. */
const MAX_DIM = 2 ** 31 - 1;

function positiveInt(source: string, raw: Record<string, unknown>, key: string): number {
  const v = raw[key];
  if (!Number.isSafeInteger(v) || (v as number) <= 0 || (v as number) > MAX_DIM) {
    fail(source, `${key} must be a positive integer (at most ${MAX_DIM}), got ${excerpt(v)}`);
  }
  return v as number;
}

/**
 * A number that must lie in `(min, max)` (open bounds) when present; `fallback` when absent or
 * null. `meaning` says why, in the message.
 */
function numberIn(
  source: string,
  raw: Record<string, unknown>,
  key: string,
  fallback: number,
  [min, max]: [number, number],
  meaning: string,
  prefix = "",
): number {
  const v = raw[key];
  if (v === undefined || v === null) return fallback;
  if (typeof v !== "number" || !Number.isFinite(v) || !(v > min) || !(v < max)) {
    fail(source, `${prefix}${key} must be a number ${meaning}, got ${excerpt(v)}`);
  }
  return v;
}

/** A boolean that must be `true` or `false` when present (`"true"` is refused, not read). */
function strictBoolean(
  source: string,
  raw: Record<string, unknown>,
  key: string,
  fallback: boolean,
): boolean {
  const v = raw[key];
  if (v === undefined || v === null) return fallback;
  if (typeof v !== "boolean") fail(source, `${key} must be true or false, got ${excerpt(v)}`);
  return v;
}

/**
 * Parses a Hugging Face `config.json` object of a Llama-style model: `LlamaForCausalLM`,
 * `MistralForCausalLM`, `Qwen2ForCausalLM`, `Qwen3ForCausalLM` or `Phi3ForCausalLM` (their
 * differences go to `family`, see `family.ts`). Refuses what the forward pass does not
 * implement: other architectures, activations other than silu, rope scaling other than `llama3`.
 *
 * @example
 * ```ts
 * import { parseLlamaConfig } from "./config.ts";
 * const c = parseLlamaConfig({
 *   model_type: "llama", hidden_size: 4096, intermediate_size: 14336, num_hidden_layers: 32,
 *   num_attention_heads: 32, num_key_value_heads: 8, vocab_size: 128256,
 * });
 * c.headDim; // 128
 * ```
 */
export function parseLlamaConfig(raw: unknown, source = "config.json"): LlamaConfig {
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) {
    fail(source, "expected a JSON object");
  }
  const r = raw as Record<string, unknown>;
  if (
    r.architectures != null &&
    (!Array.isArray(r.architectures) || !r.architectures.every((a) => typeof a === "string"))
  ) {
    fail(source, `architectures must be a list of names, got ${excerpt(r.architectures)}`);
  }
  if (r.model_type != null && typeof r.model_type !== "string") {
    fail(source, `model_type must be a string, got ${excerpt(r.model_type)}`);
  }
  // A supported architecture first: its other fields mean nothing otherwise.
  familyName(r, source);

  const hiddenSize = positiveInt(source, r, "hidden_size");
  const numHeads = positiveInt(source, r, "num_attention_heads");
  const numKvHeads = r.num_key_value_heads == null
    ? numHeads
    : positiveInt(source, r, "num_key_value_heads");
  if (numHeads % numKvHeads !== 0) {
    fail(
      source,
      `num_attention_heads ${numHeads} is not a multiple of num_key_value_heads ${numKvHeads}`,
    );
  }
  let headDim: number;
  if (r.head_dim == null) {
    if (hiddenSize % numHeads !== 0) {
      fail(source, `hidden_size ${hiddenSize} is not divisible by num_attention_heads ${numHeads}`);
    }
    headDim = hiddenSize / numHeads;
  } else {
    headDim = positiveInt(source, r, "head_dim");
  }
  if (headDim % 2 !== 0) fail(source, `head_dim ${headDim} must be even for rotary embeddings`);

  const eos = r.eos_token_id;
  let eosTokenIds: number[];
  if (eos == null) eosTokenIds = [];
  else if (Array.isArray(eos) && eos.every(isTokenId)) eosTokenIds = eos as number[];
  else if (isTokenId(eos)) eosTokenIds = [eos as number];
  else fail(source, `eos_token_id ${excerpt(eos)} is not a token id or a list of them`);

  const bos = r.bos_token_id;
  if (bos != null && !isTokenId(bos)) {
    fail(source, `bos_token_id ${excerpt(bos)} is not a token id`);
  }

  if (
    r.rope_parameters != null &&
    (typeof r.rope_parameters !== "object" || Array.isArray(r.rope_parameters))
  ) {
    fail(source, `rope_parameters must be an object, got ${excerpt(r.rope_parameters)}`);
  }
  const ropeParameters = r.rope_parameters
    ? r.rope_parameters as Record<string, unknown>
    : undefined;
  if (r.torch_dtype != null && typeof r.torch_dtype !== "string") {
    fail(source, `torch_dtype must be a string, got ${excerpt(r.torch_dtype)}`);
  }
  const config: LlamaConfig = {
    vocabSize: positiveInt(source, r, "vocab_size"),
    hiddenSize,
    intermediateSize: positiveInt(source, r, "intermediate_size"),
    numLayers: positiveInt(source, r, "num_hidden_layers"),
    numHeads,
    numKvHeads,
    headDim,
    maxPositionEmbeddings: r.max_position_embeddings == null
      ? 2048
      : positiveInt(source, r, "max_position_embeddings"),
    // Below ~1e-38 an f32 epsilon rounds to 0 (or a denormal) and an all-zero row gives NaN.
    rmsNormEps: numberIn(source, r, "rms_norm_eps", 1e-6, [1e-30, 1], "between 1e-30 and 1"),
    // transformers ≥ 5 writes `rope_parameters: { rope_type, rope_theta, ... }` instead of
    // top-level `rope_theta` / `rope_scaling`.
    ropeTheta: ropeParameters
      ? numberIn(source, ropeParameters, "rope_theta", 10000, ...THETA, "rope_parameters.")
      : numberIn(source, r, "rope_theta", 10000, ...THETA),
    tieWordEmbeddings: strictBoolean(source, r, "tie_word_embeddings", false),
    bosTokenId: bos == null ? undefined : bos as number,
    eosTokenIds,
    torchDtype: typeof r.torch_dtype === "string"
      ? r.torch_dtype
      : typeof r.dtype === "string"
      ? r.dtype
      : "float32",
  };
  if (!Number.isSafeInteger(config.vocabSize * config.hiddenSize * 4)) {
    fail(source, `vocab_size ${config.vocabSize} × hidden_size ${config.hiddenSize} is too large`);
  }
  const scaling = parseRopeScaling(source, r.rope_scaling ?? ropeParameters);
  if (scaling) config.ropeScaling = scaling;
  // Whatever the parameters, the frequencies the GPU gets must be usable f32 numbers.
  const inv = ropeInverseFrequencies(config);
  const bad = inv.findIndex((f) => !Number.isFinite(f) || !(f > 0));
  if (bad >= 0) {
    fail(
      source,
      `rope_theta ${config.ropeTheta}${scaling ? " with this rope_scaling" : ""} gives rotary ` +
        `frequency ${inv[bad]} for pair ${bad} of head_dim ${config.headDim}`,
    );
  }
  // What the family changes in the block (biases, q/k norm, windows, fused tensors).
  const family = parseFamily(r, source);
  if (family.name !== "llama" || family.biases.length > 0) config.family = family;
  return config;
}

/** rope_theta: the base of the rotary frequencies; Llama uses 10000 or 500000. */
const THETA: [[number, number], string] = [[1, 1e30], "greater than 1 (and at most 1e30)"];

function isTokenId(v: unknown): boolean {
  return Number.isSafeInteger(v) && (v as number) >= 0 && (v as number) <= 2 ** 32 - 1;
}

function parseRopeScaling(source: string, raw: unknown): Llama3RopeScaling | undefined {
  if (raw == null) return undefined;
  if (typeof raw !== "object" || Array.isArray(raw)) {
    fail(source, `rope_scaling must be an object or null, got ${excerpt(raw)}`);
  }
  const r = raw as Record<string, unknown>;
  const kind = r.rope_type ?? r.type;
  if (kind === "default") return undefined;
  if (kind !== "llama3") {
    fail(
      source,
      `rope_scaling type ${excerpt(kind)} is not supported (only "llama3"; ` +
        `linear, dynamic, yarn and longrope are not implemented)`,
    );
  }
  const num = (key: string, min: number, what: string): number => {
    const v = r[key];
    if (typeof v !== "number" || !Number.isFinite(v) || !(v >= min) || v > 1e9) {
      fail(source, `rope_scaling.${key} must be ${what}, got ${excerpt(v)}`);
    }
    return v;
  };
  const scaling: Llama3RopeScaling = {
    type: "llama3",
    // A factor below 1 would shorten wavelengths: transformers refuses it too.
    factor: num("factor", 1, "a number of at least 1 (how much longer the context is)"),
    lowFreqFactor: num("low_freq_factor", Number.MIN_VALUE, "a positive number"),
    highFreqFactor: num("high_freq_factor", Number.MIN_VALUE, "a positive number"),
    originalMaxPositionEmbeddings: num(
      "original_max_position_embeddings",
      1,
      "a positive number of positions",
    ),
  };
  if (scaling.highFreqFactor <= scaling.lowFreqFactor) {
    fail(source, "rope_scaling.high_freq_factor must be greater than low_freq_factor");
  }
  return scaling;
}

/**
 * Reads and parses `config.json` from a model directory (or the file itself, when given a
 * file). The JSON is read strictly: duplicate keys and deep nesting are refused.
 *
 * @example
 * ```ts ignore
 * import { loadLlamaConfig } from "./config.ts";
 * const config = await loadLlamaConfig("models/sotu-llama");
 * ```
 */
export async function loadLlamaConfig(dir: string): Promise<LlamaConfig> {
  const stat = await Deno.stat(dir).catch((e) => {
    if (e instanceof Deno.errors.NotFound) throw new Error(`${dir}: no such directory`);
    throw e;
  });
  // A config.json given instead of its directory is read as meant.
  const path = stat.isDirectory ? join(dir, "config.json") : dir;
  if (stat.isDirectory && !(await Deno.stat(path).then(() => true, () => false))) {
    throw new Error(`${path}: not found (no config.json in ${dir})`);
  }
  return parseLlamaConfig(await readJsonStrict(path), path);
}

/**
 * The rotary inverse frequencies, one per pair of a head's dimensions (`headDim / 2` values):
 * `1 / theta^(2i / headDim)`, rescaled as Llama 3.1 does when `ropeScaling` is set. This is the
 * formula of Hugging Face's `_compute_llama3_parameters`: long wavelengths are divided by
 * `factor`, short ones kept, and the band between interpolated smoothly.
 *
 * @example
 * ```ts
 * import { parseLlamaConfig, ropeInverseFrequencies } from "./config.ts";
 * const c = parseLlamaConfig({
 *   model_type: "llama", hidden_size: 8, intermediate_size: 16, num_hidden_layers: 1,
 *   num_attention_heads: 1, vocab_size: 10,
 * });
 * ropeInverseFrequencies(c); // Float32Array [1, 0.1, 0.01, 0.001]
 * ```
 */
export function ropeInverseFrequencies(config: LlamaConfig): Float32Array {
  const half = config.headDim / 2;
  const out = new Float32Array(half);
  const s = config.ropeScaling;
  for (let i = 0; i < half; i++) {
    const invFreq = 1 / Math.pow(config.ropeTheta, (2 * i) / config.headDim);
    if (!s) {
      out[i] = invFreq;
      continue;
    }
    const lowFreqWavelen = s.originalMaxPositionEmbeddings / s.lowFreqFactor;
    const highFreqWavelen = s.originalMaxPositionEmbeddings / s.highFreqFactor;
    const wavelen = (2 * Math.PI) / invFreq;
    if (wavelen < highFreqWavelen) {
      out[i] = invFreq;
    } else if (wavelen > lowFreqWavelen) {
      out[i] = invFreq / s.factor;
    } else {
      const smooth = (s.originalMaxPositionEmbeddings / wavelen - s.lowFreqFactor) /
        (s.highFreqFactor - s.lowFreqFactor);
      out[i] = (1 - smooth) * invFreq / s.factor + smooth * invFreq;
    }
  }
  return out;
}
