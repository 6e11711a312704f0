/**
 * Model families: what distinguishes Mistral, Qwen2, Qwen3 and Phi-3 from Llama, as data the one
 * forward pass reads. They all share Llama's block (RMSNorm → attention with RoPE → residual →
 * RMSNorm → SwiGLU MLP → residual); a family only says
 *
 * - which linear layers carry a bias (Qwen2's q/k/v; Llama with `attention_bias`/`mlp_bias`),
 * - whether q and k get a per-head RMSNorm before RoPE (Qwen3),
 * - which layers attend through a sliding window, and how wide (Mistral, Phi-3, Qwen with
 *   `use_sliding_window`),
 * - whether q/k/v and gate/up are stored fused in one tensor each (Phi-3's `qkv_proj`,
 *   `gate_up_proj`; the loader splits them into the usual seven layers).
 *
 * Biases and norms stay f32 in every weight format; only the linear layers' weights are
 * quantized.
 *
 * @module
 */

import { excerpt } from "./json.ts";

/**
 * The families the forward pass implements.
 *
 * @example
 * ```ts
 * import { FAMILY_NAMES } from "./family.ts";
 * FAMILY_NAMES.includes("qwen3"); // true
 * ```
 */
export const FAMILY_NAMES = ["llama", "mistral", "qwen2", "qwen3", "phi3"] as const;

/**
 * One of {@linkcode FAMILY_NAMES}.
 *
 * @example
 * ```ts
 * import type { FamilyName } from "./family.ts";
 * const f: FamilyName = "phi3";
 * ```
 */
export type FamilyName = typeof FAMILY_NAMES[number];

/**
 * The `architectures` entry of each family's Hugging Face config.
 *
 * @example
 * ```ts
 * import { FAMILY_ARCHITECTURES } from "./family.ts";
 * FAMILY_ARCHITECTURES.qwen2; // "Qwen2ForCausalLM"
 * ```
 */
export const FAMILY_ARCHITECTURES: Record<FamilyName, string> = {
  llama: "LlamaForCausalLM",
  mistral: "MistralForCausalLM",
  qwen2: "Qwen2ForCausalLM",
  qwen3: "Qwen3ForCausalLM",
  phi3: "Phi3ForCausalLM",
};

/**
 * The names of the seven linear layers of a decoder block, as in Hugging Face checkpoints, in
 * the order the forward runs them.
 *
 * @example
 * ```ts
 * import { LINEAR_NAMES } from "./family.ts";
 * LINEAR_NAMES.length; // 7
 * ```
 */
export const LINEAR_NAMES = [
  "self_attn.q_proj",
  "self_attn.k_proj",
  "self_attn.v_proj",
  "self_attn.o_proj",
  "mlp.gate_proj",
  "mlp.up_proj",
  "mlp.down_proj",
] as const;

/**
 * One of the seven linear layers of a block, by its Hugging Face name ({@linkcode LINEAR_NAMES}).
 *
 * @example
 * ```ts
 * import type { BlockLinear } from "./family.ts";
 * const k: BlockLinear = "self_attn.k_proj";
 * ```
 */
export type BlockLinear = typeof LINEAR_NAMES[number];

/**
 * What a family changes in the Llama block; parsed from `config.json` by {@linkcode parseFamily}.
 *
 * @example
 * ```ts
 * import { parseFamily } from "./family.ts";
 * const f = parseFamily({ architectures: ["Qwen2ForCausalLM"], num_hidden_layers: 2 });
 * f.biases; // ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"]
 * ```
 */
export interface ModelFamily {
  /** Which family. */
  name: FamilyName;
  /** Linear layers with a bias (f32, added to the layer's output). */
  biases: BlockLinear[];
  /** Per-head RMSNorm of q and k before RoPE (`self_attn.q_norm`, `self_attn.k_norm`). */
  qkNorm: boolean;
  /**
   * Per layer, the sliding attention window in positions (a query sees itself and the
   * `window - 1` positions before it), or 0 for full causal attention.
   */
  windows: number[];
  /**
   * Tensors stored fused: q/k/v rows stacked in `self_attn.qkv_proj`, gate/up rows in
   * `mlp.gate_up_proj` (Phi-3).
   */
  fused: boolean;
}

const BIAS_ATTENTION: BlockLinear[] = [
  "self_attn.q_proj",
  "self_attn.k_proj",
  "self_attn.v_proj",
  "self_attn.o_proj",
];
const BIAS_QKV: BlockLinear[] = ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"];
const BIAS_MLP: BlockLinear[] = ["mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"];

const MODEL_TYPES: Record<string, FamilyName> = {
  llama: "llama",
  mistral: "mistral",
  qwen2: "qwen2",
  qwen3: "qwen3",
  phi3: "phi3",
};

function fail(source: string, message: string): never {
  throw new Error(`${source}: ${message}`);
}

/**
 * A description of what is supported, for error messages: the architectures by name.
 *
 * @example
 * ```ts
 * import { supportedArchitectures } from "./family.ts";
 * supportedArchitectures(); // "LlamaForCausalLM, MistralForCausalLM, ..."
 * ```
 */
export function supportedArchitectures(): string {
  return FAMILY_NAMES.map((f) => FAMILY_ARCHITECTURES[f]).join(", ");
}

/**
 * Which family a config belongs to, from `architectures` (else `model_type`); throws naming the
 * supported architectures when it is none of them.
 *
 * @example
 * ```ts
 * import { familyName } from "./family.ts";
 * familyName({ model_type: "qwen3" }); // "qwen3"
 * ```
 */
export function familyName(raw: Record<string, unknown>, source = "config.json"): FamilyName {
  const arch = Array.isArray(raw.architectures) ? raw.architectures as unknown[] : [];
  for (const a of arch) {
    const found = FAMILY_NAMES.find((f) => FAMILY_ARCHITECTURES[f] === a);
    if (found) return found;
  }
  const modelType = typeof raw.model_type === "string" ? raw.model_type : undefined;
  if (arch.length === 0 && modelType && MODEL_TYPES[modelType]) return MODEL_TYPES[modelType];
  fail(
    source,
    `architecture ${excerpt(arch.length ? arch : modelType ?? null)} is not supported ` +
      `(supported: ${supportedArchitectures()})`,
  );
}

function windowSize(source: string, raw: Record<string, unknown>): number | null {
  const w = raw.sliding_window;
  if (w === undefined || w === null) return null;
  if (!Number.isSafeInteger(w) || (w as number) <= 0) {
    fail(source, `sliding_window must be a positive integer or null, got ${excerpt(w)}`);
  }
  return w as number;
}

/**
 * Per-layer windows from `layer_types` ("sliding_attention" / "full_attention"), when present.
 */
function windowsFromLayerTypes(
  source: string,
  raw: Record<string, unknown>,
  layers: number,
  window: number | null,
): number[] | null {
  const types = raw.layer_types;
  if (types === undefined || types === null) return null;
  if (!Array.isArray(types) || types.length !== layers) {
    fail(source, `layer_types must list one entry per layer (${layers})`);
  }
  return types.map((t, l) => {
    if (t === "full_attention") return 0;
    if (t === "sliding_attention") {
      if (window === null) {
        fail(source, `layer ${l} is sliding_attention but sliding_window is null`);
      }
      return window;
    }
    fail(source, `layer_types[${l}] ${excerpt(t)} is not supported`);
  });
}

/**
 * Parses the family-specific parts of a Hugging Face `config.json`, refusing what the forward
 * pass does not implement (an unknown architecture, a non-SwiGLU activation).
 *
 * @example
 * ```ts
 * import { parseFamily } from "./family.ts";
 * const f = parseFamily({
 *   architectures: ["MistralForCausalLM"], num_hidden_layers: 2, sliding_window: 4096,
 * });
 * f.windows; // [4096, 4096]
 * ```
 */
export function parseFamily(raw: Record<string, unknown>, source = "config.json"): ModelFamily {
  const name = familyName(raw, source);
  const layers = raw.num_hidden_layers;
  if (!Number.isSafeInteger(layers) || (layers as number) <= 0) {
    fail(source, `num_hidden_layers must be a positive integer, got ${excerpt(layers)}`);
  }
  const n = layers as number;
  if (raw.hidden_act !== undefined && raw.hidden_act !== "silu") {
    fail(source, `hidden_act ${excerpt(raw.hidden_act)} is not supported (only silu)`);
  }
  const window = windowSize(source, raw);
  const family: ModelFamily = {
    name,
    biases: [],
    qkNorm: false,
    windows: new Array(n).fill(0),
    fused: false,
  };
  const flag = (key: string): boolean => {
    const v = raw[key];
    if (v === undefined || v === null) return false;
    if (typeof v !== "boolean") fail(source, `${key} must be true or false, got ${excerpt(v)}`);
    return v;
  };
  switch (name) {
    case "llama":
      if (flag("attention_bias")) family.biases.push(...BIAS_ATTENTION);
      if (flag("mlp_bias")) family.biases.push(...BIAS_MLP);
      break;
    case "mistral":
      // Every layer slides when the config gives a window.
      if (window !== null) family.windows.fill(window);
      break;
    case "qwen2":
    case "qwen3": {
      if (name === "qwen2") family.biases.push(...BIAS_QKV);
      else {
        family.qkNorm = true;
        if (flag("attention_bias")) family.biases.push(...BIAS_ATTENTION);
      }
      // transformers: no layer slides unless use_sliding_window is set (sliding_window is then
      // dropped, whatever layer_types say); with it, layer_types, else the layers from
      // max_window_layers on.
      if (!flag("use_sliding_window") || window === null) break;
      const fromTypes = windowsFromLayerTypes(source, raw, n, window);
      if (fromTypes) family.windows = fromTypes;
      else {
        const first = Number.isSafeInteger(raw.max_window_layers)
          ? raw.max_window_layers as number
          : n;
        for (let l = first; l < n; l++) family.windows[l] = window;
      }
      break;
    }
    case "phi3": {
      family.fused = true;
      if (window !== null) family.windows.fill(window);
      const rope = raw.rope_parameters as Record<string, unknown> | undefined;
      const partial = raw.partial_rotary_factor ?? rope?.partial_rotary_factor;
      if (partial !== undefined && partial !== null && partial !== 1) {
        fail(source, `partial_rotary_factor ${partial} is not supported (only 1.0)`);
      }
      break;
    }
  }
  return family;
}

/**
 * The family of a config that carries none: plain Llama (no biases, no q/k norm, full
 * attention, separate tensors).
 *
 * @example
 * ```ts
 * import { llamaFamily } from "./family.ts";
 * llamaFamily(2).windows; // [0, 0]
 * ```
 */
export function llamaFamily(numLayers: number): ModelFamily {
  return {
    name: "llama",
    biases: [],
    qkNorm: false,
    windows: new Array(numLayers).fill(0),
    fused: false,
  };
}

/**
 * Where a linear layer's weight rows are stored: the tensor (relative to `model.layers.N.`) and
 * the first row in it (non-zero inside a fused tensor).
 *
 * @example
 * ```ts
 * import { linearSource, parseFamily } from "./family.ts";
 * const phi3 = parseFamily({ architectures: ["Phi3ForCausalLM"], num_hidden_layers: 1 });
 * linearSource(phi3, "self_attn.k_proj", { q: 3072, kv: 3072, intermediate: 8192 });
 * // { tensor: "self_attn.qkv_proj", firstRow: 3072, tensorRows: 9216 }
 * ```
 */
export function linearSource(
  family: ModelFamily,
  kind: BlockLinear,
  widths: { q: number; kv: number; intermediate: number },
): { tensor: string; firstRow: number; tensorRows: number } | { tensor: string } {
  if (!family.fused) return { tensor: kind };
  const { q, kv, intermediate } = widths;
  switch (kind) {
    case "self_attn.q_proj":
      return { tensor: "self_attn.qkv_proj", firstRow: 0, tensorRows: q + 2 * kv };
    case "self_attn.k_proj":
      return { tensor: "self_attn.qkv_proj", firstRow: q, tensorRows: q + 2 * kv };
    case "self_attn.v_proj":
      return { tensor: "self_attn.qkv_proj", firstRow: q + kv, tensorRows: q + 2 * kv };
    case "mlp.gate_proj":
      return { tensor: "mlp.gate_up_proj", firstRow: 0, tensorRows: 2 * intermediate };
    case "mlp.up_proj":
      return {
        tensor: "mlp.gate_up_proj",
        firstRow: intermediate,
        tensorRows: 2 * intermediate,
      };
    default:
      return { tensor: kind };
  }
}

/** What {@linkcode BlockTensorReader} reads from (an open checkpoint, or random weights). */
export interface TensorSource {
  /** Throws unless tensor `name` exists with this shape. */
  expectShape(name: string, shape: number[]): void;
  /** The tensor as f32. */
  readF32(name: string): Promise<Float32Array>;
  /** The tensor as f16 bits. */
  readF16Bits(name: string): Promise<Uint16Array>;
}

/**
 * Reads one decoder block's tensors the way its family stores them: a linear layer's weight from
 * its own tensor or as rows of a fused one (read once per block), its bias, the q/k norms.
 *
 * @example
 * ```ts ignore
 * const reader = new BlockTensorReader(checkpoint, family, "model.layers.0", widths);
 * const { weight } = await reader.linear("self_attn.k_proj", kvWidth, hidden);
 * ```
 */
export class BlockTensorReader {
  #fused = new Map<string, Uint16Array>();

  /** Reads from `source` the block whose tensors start with `prefix` (`model.layers.N`). */
  constructor(
    readonly source: TensorSource,
    readonly family: ModelFamily,
    readonly prefix: string,
    readonly widths: { q: number; kv: number; intermediate: number },
  ) {}

  /**
   * The f16 weight `[n, k]` of linear layer `kind`, and its name (`prefix.kind.weight`, also
   * for rows of a fused tensor).
   */
  async linear(
    kind: BlockLinear,
    n: number,
    k: number,
  ): Promise<{ name: string; weight: Uint16Array }> {
    const name = `${this.prefix}.${kind}.weight`;
    const src = linearSource(this.family, kind, this.widths);
    const tensor = `${this.prefix}.${src.tensor}.weight`;
    if (!("firstRow" in src)) {
      this.source.expectShape(tensor, [n, k]);
      return { name, weight: await this.source.readF16Bits(tensor) };
    }
    let all = this.#fused.get(tensor);
    if (!all) {
      this.source.expectShape(tensor, [src.tensorRows, k]);
      all = await this.source.readF16Bits(tensor);
      this.#fused.set(tensor, all);
    }
    return { name, weight: all.slice(src.firstRow * k, (src.firstRow + n) * k) };
  }

  /** The f32 bias `[n]` of linear layer `kind`, and its tensor name. */
  async bias(kind: BlockLinear, n: number): Promise<{ name: string; data: Float32Array }> {
    const name = `${this.prefix}.${kind}.bias`;
    this.source.expectShape(name, [n]);
    return { name, data: await this.source.readF32(name) };
  }

  /** The f32 per-head norm weight `[headDim]` of q or k (`self_attn.q_norm` / `k_norm`). */
  async headNorm(which: "q" | "k", headDim: number): Promise<{ name: string; data: Float32Array }> {
    const name = `${this.prefix}.self_attn.${which}_norm.weight`;
    this.source.expectShape(name, [headDim]);
    return { name, data: await this.source.readF32(name) };
  }
}
