/**
 * bitsandbytes checkpoints, as transformers' `save_pretrained` writes them for a model loaded
 * with a `BitsAndBytesConfig` (the "-bnb-4bit" repositories of the Hugging Face hub). The
 * quantized layers are read straight into the packed layouts of `lib/quant`, with no FP16
 * round trip: bitsandbytes' 4-bit byte layout (element `2j` in the high nibble of byte `j`)
 * and its row-major int8 are ours already.
 *
 * Tensors of a 4-bit linear layer `<name>` (e.g. `model.layers.0.self_attn.q_proj`):
 * - `<name>.weight`: the packed codes, `N·K/2` bytes (U8 `[N·K/2, 1]` with the default
 *   `bnb_4bit_quant_storage` uint8);
 * - `<name>.weight.absmax`: F32 per block of `blocksize`; with double quantization U8 codes
 *   into `<name>.weight.nested_quant_map` (F32 [256]) scaled by `<name>.weight.nested_absmax`
 *   (F32 per 256 blocks), plus `nested_offset` from the quant state;
 * - `<name>.weight.quant_map`: F32 [16], the NF4 or FP4 table;
 * - `<name>.weight.quant_state.bitsandbytes__nf4` (or `__fp4`): the JSON of bitsandbytes'
 *   `QuantState.as_dict` (shape, dtype, blocksize, quant type, nested blocksize and offset).
 *
 * An 8-bit (LLM.int8()) layer holds `<name>.weight` (I8 `[N, K]`), `<name>.SCB` (F32 `[N]`, the
 * row absmax) and `<name>.weight_format`. Layers in `llm_int8_skip_modules` (and the LM head)
 * stay FP16 and load as such.
 *
 * @module
 */

import { f32ToF16Bits } from "../gpu/f16.ts";
import { dequantize, type QuantFormat, type QuantizedWeight } from "../quant/formats.ts";
import { FP4_TABLE } from "../quant/fp4.ts";
import { NF4_TABLE } from "../quant/nf4.ts";
import { NESTED_BLOCKSIZE } from "../quant/nf4_dq.ts";
import { packBytes } from "../quant/pack.ts";
import type { Checkpoint } from "./checkpoint.ts";
import type { LlamaConfig } from "./config.ts";
import type { PrequantizedWeights } from "./quantized_source.ts";
import { companionClaim, llamaTensorNames, type TensorClaim } from "./unused_tensors.ts";

/**
 * The `quantization_config` of a bitsandbytes checkpoint, as read from `config.json`.
 *
 * @example
 * ```ts
 * import { parseBnbQuantizationConfig } from "./bnb.ts";
 * const q = parseBnbQuantizationConfig({
 *   quant_method: "bitsandbytes", load_in_4bit: true, bnb_4bit_quant_type: "nf4",
 * });
 * q.format; // "nf4"
 * ```
 */
export interface BnbQuantizationConfig {
  /** Our format of the quantized layers: nf4, nf4-dq, fp4 or llm-int8. */
  format: "nf4" | "nf4-dq" | "fp4" | "llm-int8";
  /** `bnb_4bit_compute_dtype` (4-bit) or the model dtype (8-bit): float16, bfloat16, float32. */
  computeDtype: string;
  /** `llm_int8_threshold` (default 6.0; 0 turns the outlier decomposition off). */
  threshold: number;
  /** `llm_int8_skip_modules`: module names kept unquantized (null: bitsandbytes' default). */
  skipModules: string[] | null;
}

function fail(source: string, message: string): never {
  throw new Error(`${source}: quantization_config: ${message}`);
}

/**
 * Reads a bitsandbytes `quantization_config` object; refuses what we cannot load
 * (`llm_int8_has_fp16_weight`, a 4-bit quant type other than nf4/fp4).
 *
 * @example
 * ```ts
 * import { parseBnbQuantizationConfig } from "./bnb.ts";
 * parseBnbQuantizationConfig({ quant_method: "bitsandbytes", load_in_8bit: true }).format;
 * // "llm-int8"
 * ```
 */
export function parseBnbQuantizationConfig(
  raw: Record<string, unknown>,
  source = "config.json",
  modelDtype = "float16",
): BnbQuantizationConfig {
  if (raw.quant_method !== "bitsandbytes") {
    fail(source, `quant_method ${JSON.stringify(raw.quant_method)} is not "bitsandbytes"`);
  }
  const four = raw.load_in_4bit === true || raw._load_in_4bit === true;
  const eight = raw.load_in_8bit === true || raw._load_in_8bit === true;
  if (four === eight) fail(source, "expected exactly one of load_in_4bit and load_in_8bit");
  if (raw.llm_int8_has_fp16_weight === true) {
    fail(source, "llm_int8_has_fp16_weight (training layout) is not supported");
  }
  const threshold = raw.llm_int8_threshold ?? 6.0;
  if (typeof threshold !== "number" || !(threshold >= 0)) {
    fail(source, `llm_int8_threshold must be a number >= 0, got ${JSON.stringify(threshold)}`);
  }
  const skip = raw.llm_int8_skip_modules ?? null;
  if (skip !== null && !(Array.isArray(skip) && skip.every((s) => typeof s === "string"))) {
    fail(source, `llm_int8_skip_modules must be a list of names, got ${JSON.stringify(skip)}`);
  }
  let format: BnbQuantizationConfig["format"] = "llm-int8";
  let computeDtype = modelDtype;
  if (four) {
    const type = raw.bnb_4bit_quant_type ?? "fp4";
    if (type !== "nf4" && type !== "fp4") {
      fail(source, `bnb_4bit_quant_type ${JSON.stringify(type)} is not nf4 or fp4`);
    }
    const dq = raw.bnb_4bit_use_double_quant === true;
    if (dq && type === "fp4") fail(source, "double quantization of FP4 is not supported");
    format = type === "nf4" ? (dq ? "nf4-dq" : "nf4") : "fp4";
    computeDtype = String(raw.bnb_4bit_compute_dtype ?? "float32");
  }
  return { format, computeDtype, threshold, skipModules: skip as string[] | null };
}

interface QuantState {
  quant_type: string;
  blocksize: number;
  dtype: string;
  shape: number[];
  nested_blocksize?: number;
  nested_offset?: number;
}

const asF32 = (b: Uint8Array): Float32Array => new Float32Array(b.slice().buffer, 0, b.length / 4);

/**
 * The weights of a bitsandbytes checkpoint: plain tensors pass through, quantized linear
 * layers come out as `lib/quant` weights ({@linkcode readQuantized}) or, for anyone who asks
 * for f16 (an FP16 load of a quantized file), dequantized.
 *
 * @example
 * ```ts ignore
 * const ckpt = await openCheckpoint("sotu-llama-bnb-nf4");
 * const weights = new BnbWeights(ckpt, parseBnbQuantizationConfig(raw.quantization_config));
 * const q = await weights.readQuantized("model.layers.0.self_attn.q_proj.weight");
 * ```
 */
export class BnbWeights implements PrequantizedWeights {
  /** Format of the quantized layers. */
  readonly format: QuantFormat;
  /** The parsed `quantization_config`. */
  readonly config: BnbQuantizationConfig;
  /** Options the quantized layers run with: the threshold, and f32 unless compute is float16. */
  readonly linearOptions: { threshold: number; f16?: boolean };
  #ckpt: Checkpoint;

  /** Wraps an open checkpoint whose config.json holds `config`. */
  constructor(checkpoint: Checkpoint, config: BnbQuantizationConfig) {
    this.#ckpt = checkpoint;
    this.config = config;
    this.format = config.format;
    this.linearOptions = {
      threshold: config.threshold,
      ...(config.computeDtype === "float16" ? {} : { f16: false }),
    };
  }

  /** The checkpoint directory. */
  get dir(): string {
    return this.#ckpt.dir;
  }

  /** Every tensor name stored. */
  names(): string[] {
    return this.#ckpt.names();
  }

  /**
   * The companion tensors bitsandbytes stores beside a quantized `….weight`: 4-bit `.absmax`,
   * `.quant_map`, `.nested_absmax`, `.nested_quant_map` and the quant state; 8-bit `.SCB` and
   * `.weight_format` beside the module.
   */
  tensorClaims(config: LlamaConfig): TensorClaim[] {
    const used = llamaTensorNames(config);
    return [
      companionClaim(used, [
        ".absmax",
        ".quant_map",
        ".nested_absmax",
        ".nested_quant_map",
        ".quant_state.bitsandbytes__nf4",
        ".quant_state.bitsandbytes__fp4",
      ]),
      (name) =>
        /\.(SCB|weight_format)$/.test(name) && used.has(name.replace(/\.[A-Za-z_]+$/, ".weight")),
    ];
  }

  /** Whether `name` (a `….weight`) is stored quantized. */
  isQuantized(name: string): boolean {
    if (this.config.format === "llm-int8") {
      return this.#ckpt.has(name.replace(/\.weight$/, ".SCB"));
    }
    return this.#ckpt.has(`${name}.absmax`);
  }

  /** Throws unless the tensor's (logical) shape is `shape`. */
  expectShape(name: string, shape: readonly number[]): void {
    if (!this.isQuantized(name)) return this.#ckpt.expectShape(name, shape);
    if (this.config.format === "llm-int8") return this.#ckpt.expectShape(name, shape);
    const info = this.#ckpt.info(name);
    const bytes = info.end - info.begin;
    const want = (shape[0] * shape[1]) / 2;
    if (bytes !== want) {
      throw new Error(
        `tensor ${name} in ${info.file}: ${bytes} bytes of 4-bit codes, but the config implies ` +
          `[${shape.join(", ")}], ${want} bytes`,
      );
    }
  }

  /** A plain tensor as f32 (a quantized one dequantized). */
  async readF32(name: string): Promise<Float32Array> {
    if (!this.isQuantized(name)) return await this.#ckpt.readF32(name);
    return dequantize(await this.readQuantized(name));
  }

  /** A plain tensor as f16 bits (a quantized one dequantized and rounded to f16). */
  async readF16Bits(name: string): Promise<Uint16Array> {
    if (!this.isQuantized(name)) return await this.#ckpt.readF16Bits(name);
    const w = dequantize(await this.readQuantized(name));
    const bits = new Uint16Array(w.length);
    for (let i = 0; i < w.length; i++) bits[i] = f32ToF16Bits(w[i]);
    return bits;
  }

  /** The quantized layer `name` (a `….weight`) in our packed layout. */
  async readQuantized(name: string): Promise<QuantizedWeight> {
    if (this.config.format === "llm-int8") return await this.#readInt8(name);
    return await this.#read4bit(name);
  }

  async #readInt8(name: string): Promise<QuantizedWeight> {
    const info = this.#ckpt.info(name);
    if (info.dtype !== "I8" || info.shape.length !== 2) {
      throw new Error(
        `tensor ${name} in ${info.file}: expected I8 [N, K] int8 weights, got ${info.dtype} ` +
          `[${info.shape.join(", ")}]`,
      );
    }
    const [n, k] = info.shape;
    if (k % 4 !== 0) throw new Error(`tensor ${name}: K=${k} must be a multiple of 4`);
    const scbName = name.replace(/\.weight$/, ".SCB");
    this.#ckpt.expectShape(scbName, [n]);
    const scb = await this.#ckpt.readF32(scbName);
    const codes = packBytes(await this.#ckpt.readRaw(name));
    return {
      format: "llm-int8",
      n,
      k,
      codes,
      scb,
      fp16Columns: new Uint32Array(0),
      fp16Weights: new Uint32Array(0),
    };
  }

  async #read4bit(name: string): Promise<QuantizedWeight> {
    const type = this.config.format === "fp4" ? "fp4" : "nf4";
    const stateName = `${name}.quant_state.bitsandbytes__${type}`;
    let state: QuantState;
    try {
      state = JSON.parse(new TextDecoder().decode(await this.#ckpt.readRaw(stateName)));
    } catch (e) {
      throw new Error(`tensor ${stateName}: not a bitsandbytes quant state (${e})`);
    }
    const where = `${name} (quant state ${stateName})`;
    if (state.quant_type !== type) {
      throw new Error(`${where}: quant_type ${state.quant_type}, config says ${type}`);
    }
    if (!Array.isArray(state.shape) || state.shape.length !== 2) {
      throw new Error(`${where}: shape ${JSON.stringify(state.shape)} is not [N, K]`);
    }
    const [n, k] = state.shape;
    const blocksize = state.blocksize;
    const blocks = (n * k) / blocksize;
    if (!Number.isInteger(blocks)) {
      throw new Error(`${where}: N·K = ${n * k} is not a multiple of blocksize ${blocksize}`);
    }
    const raw = await this.#ckpt.readRaw(name);
    if (raw.length !== (n * k) / 2) {
      throw new Error(`${where}: ${raw.length} bytes of codes, [${n}, ${k}] needs ${(n * k) / 2}`);
    }
    const table = asF32(await this.#ckpt.readRaw(`${name}.quant_map`));
    const ours = type === "nf4" ? NF4_TABLE : FP4_TABLE;
    if (table.length !== 16 || table.some((v, i) => v !== ours[i])) {
      throw new Error(
        `tensor ${name}.quant_map: not bitsandbytes' ${type} table [${table.join(", ")}]`,
      );
    }
    const codes = packBytes(raw);
    const absmaxRaw = await this.#ckpt.readRaw(`${name}.absmax`);
    const nested = state.nested_blocksize !== undefined;
    if (nested !== (this.config.format === "nf4-dq")) {
      throw new Error(
        `${where}: ${nested ? "" : "no "}nested quantization, but the config says ` +
          `${this.config.format}`,
      );
    }
    if (!nested) {
      const absmax = asF32(absmaxRaw);
      if (absmax.length !== blocks) {
        throw new Error(`tensor ${name}.absmax: ${absmax.length} values, expected ${blocks}`);
      }
      return { format: type, n, k, blocksize, codes, absmax };
    }
    if (state.nested_blocksize !== NESTED_BLOCKSIZE) {
      throw new Error(`${where}: nested blocksize ${state.nested_blocksize}, expected 256`);
    }
    if (absmaxRaw.length !== blocks) {
      throw new Error(`tensor ${name}.absmax: ${absmaxRaw.length} codes, expected ${blocks}`);
    }
    const absmax2 = asF32(await this.#ckpt.readRaw(`${name}.nested_absmax`));
    if (absmax2.length !== Math.ceil(blocks / NESTED_BLOCKSIZE)) {
      throw new Error(`tensor ${name}.nested_absmax: ${absmax2.length} values`);
    }
    const map = asF32(await this.#ckpt.readRaw(`${name}.nested_quant_map`));
    if (map.length !== 256) throw new Error(`tensor ${name}.nested_quant_map: not 256 values`);
    return {
      format: "nf4-dq",
      n,
      k,
      blocksize,
      nestedBlocksize: NESTED_BLOCKSIZE,
      codes,
      qabsmax: packBytes(absmaxRaw),
      absmax2,
      offset: new Float32Array([state.nested_offset ?? 0]),
      map,
    };
  }
}
