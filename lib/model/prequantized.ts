/**
 * Checkpoints whose linear layers are stored already quantized, so that loading uploads them
 * as they are: bitsandbytes' layout (`bnb.ts`) and our own, written by `deno task quantize`.
 *
 * Our layout (`quantization_config.quant_method: "qlab"`): each quantized linear layer
 * `<name>.weight` is replaced by one tensor per packed array of its `lib/quant` weight,
 * `<name>.weight.<array>` (`codes`, `absmax`, `qabsmax`, `absmax2`, `offset`, `scb`, `scales`,
 * ...; `U32` for `Uint32Array`, `F32` for `Float32Array`, shape `[length]`), exactly the words
 * the kernels bind. `quantization_config` holds the format and its options
 * (`{ quant_method: "qlab", format: "nf4-dq", blocksize: 64 }`); the layer shapes come from
 * the model config. Everything else (embeddings, norms, the LM head) is stored as usual.
 *
 * @module
 */

import { join } from "node:path";
import { f32ToF16Bits } from "../gpu/f16.ts";
import {
  dequantize,
  packedBytes,
  packedBytesFor,
  QUANT_FORMATS,
  type QuantFormat,
  type QuantizedWeight,
  type QuantOptions,
} from "../quant/formats.ts";
import { NESTED_BLOCKSIZE } from "../quant/nf4_dq.ts";
import { BnbWeights, parseBnbQuantizationConfig } from "./bnb.ts";
import type { Checkpoint } from "./checkpoint.ts";
import type { LlamaConfig } from "./config.ts";
import { companionClaim, llamaTensorNames, type TensorClaim } from "./unused_tensors.ts";
import type { PrequantizedWeights } from "./quantized_source.ts";

export type { PrequantizedWeights };

/**
 * The `quantization_config` of our own quantized files.
 *
 * @example
 * ```ts
 * import type { QlabQuantizationConfig } from "./prequantized.ts";
 * const q: QlabQuantizationConfig = { quant_method: "qlab", format: "nf4-dq", blocksize: 64 };
 * ```
 */
export interface QlabQuantizationConfig {
  /** Always `"qlab"`. */
  quant_method: "qlab";
  /** The format of the decoder blocks' linear layers. */
  format: QuantFormat;
  /** 4-bit formats: values per block. */
  blocksize?: number;
  /** llm-int8: the outlier threshold the layers run with. */
  threshold?: number;
}

const ARRAY_DTYPES = { U32: Uint32Array, F32: Float32Array } as const;

/**
 * Our own quantized layout (see the module doc).
 *
 * @example
 * ```ts ignore
 * const w = new QlabWeights(ckpt, { quant_method: "qlab", format: "nf4" }, shapes);
 * ```
 */
export class QlabWeights implements PrequantizedWeights {
  /** Format of the quantized layers. */
  readonly format: QuantFormat;
  /** Layer options the file implies. */
  readonly linearOptions: { threshold?: number };
  #ckpt: Checkpoint;
  #config: QlabQuantizationConfig;
  #fields = new Map<string, string[]>(); // weight name -> its array names

  /** Wraps an open checkpoint in our layout. */
  constructor(checkpoint: Checkpoint, config: QlabQuantizationConfig, source = "config.json") {
    const stored = [...QUANT_FORMATS, "q4_0"].filter((f) => f !== "fp16");
    if (!stored.includes(config.format)) {
      throw new Error(
        `${source}: quantization_config: format ${JSON.stringify(config.format)} is not a ` +
          `quantized format (${stored.join(", ")})`,
      );
    }
    this.#ckpt = checkpoint;
    this.#config = config;
    this.format = config.format;
    this.linearOptions = config.threshold === undefined ? {} : { threshold: config.threshold };
    for (const name of checkpoint.names()) {
      const m = /^(.*\.weight)\.([A-Za-z0-9]+)$/.exec(name);
      if (!m) continue;
      const list = this.#fields.get(m[1]) ?? [];
      list.push(m[2]);
      this.#fields.set(m[1], list);
    }
  }

  /** The checkpoint directory. */
  get dir(): string {
    return this.#ckpt.dir;
  }

  /** Every tensor name stored. */
  names(): string[] {
    return this.#ckpt.names();
  }

  /** The packed arrays stored beside (instead of) each quantized `….weight`. */
  tensorClaims(config: LlamaConfig): TensorClaim[] {
    const suffixes = new Set<string>();
    for (const fields of this.#fields.values()) for (const f of fields) suffixes.add(`.${f}`);
    return [companionClaim(llamaTensorNames(config), [...suffixes])];
  }

  /** Whether `name` is stored quantized. */
  isQuantized(name: string): boolean {
    return this.#fields.has(name) && !this.#ckpt.has(name);
  }

  /** Checks the stored arrays add up to the packed size of `shape` (or the plain shape). */
  expectShape(name: string, shape: readonly number[]): void {
    if (!this.isQuantized(name)) return this.#ckpt.expectShape(name, shape);
    const want = packedBytesFor(this.format, shape[0], shape[1], this.#options());
    let got = 0;
    for (const f of this.#fields.get(name)!) {
      const info = this.#ckpt.info(`${name}.${f}`);
      got += info.end - info.begin;
    }
    if (got !== want) {
      throw new Error(
        `tensor ${name}: ${got} bytes of ${this.format} arrays, but [${shape.join(", ")}] ` +
          `needs ${want}`,
      );
    }
    this.#shapes.set(name, [shape[0], shape[1]]);
  }

  #shapes = new Map<string, [number, number]>();

  #options(): QuantOptions {
    return { blocksize: this.#config.blocksize };
  }

  /** The quantized layer `name` (its shape checked first by {@linkcode expectShape}). */
  async readQuantized(name: string): Promise<QuantizedWeight> {
    const shape = this.#shapes.get(name);
    if (!shape) throw new Error(`tensor ${name}: expectShape must be called before reading`);
    const [n, k] = shape;
    const w: Record<string, unknown> = { format: this.format, n, k };
    if (["nf4", "nf4-dq", "fp4", "int4"].includes(this.format)) {
      w.blocksize = this.#config.blocksize ?? 64;
    }
    if (this.format === "q4_0") w.blocksize = 32;
    if (this.format === "nf4-dq") w.nestedBlocksize = NESTED_BLOCKSIZE;
    if (this.format === "llm-int8") {
      w.fp16Columns = new Uint32Array(0);
      w.fp16Weights = new Uint32Array(0);
    }
    for (const f of this.#fields.get(name)!) {
      const full = `${name}.${f}`;
      const info = this.#ckpt.info(full);
      const Type = ARRAY_DTYPES[info.dtype as keyof typeof ARRAY_DTYPES];
      if (!Type) throw new Error(`tensor ${full}: dtype ${info.dtype}, expected U32 or F32`);
      const raw = await this.#ckpt.readRaw(full);
      w[f] = new Type(raw.slice().buffer);
    }
    const weight = w as unknown as QuantizedWeight;
    const want = packedBytesFor(this.format, n, k, this.#options());
    if (packedBytes(weight) !== want) {
      throw new Error(`tensor ${name}: ${packedBytes(weight)} bytes of arrays, expected ${want}`);
    }
    return weight;
  }

  /** A tensor as f32 (a quantized one dequantized). */
  async readF32(name: string): Promise<Float32Array> {
    if (!this.isQuantized(name)) return await this.#ckpt.readF32(name);
    return dequantize(await this.readQuantized(name));
  }

  /** A tensor as f16 bits (a quantized one dequantized). */
  async readF16Bits(name: string): Promise<Uint16Array> {
    if (!this.isQuantized(name)) return await this.#ckpt.readF16Bits(name);
    const w = dequantize(await this.readQuantized(name));
    return Uint16Array.from(w, (v) => f32ToF16Bits(v));
  }
}

/**
 * The raw `quantization_config` of a model directory's `config.json`, or null when absent.
 *
 * @example
 * ```ts ignore
 * await readQuantizationConfig("models/sotu-llama"); // null
 * ```
 */
export async function readQuantizationConfig(
  dir: string,
): Promise<{ raw: Record<string, unknown>; dtype: string; path: string } | null> {
  const path = join(dir, "config.json");
  const config = JSON.parse(await Deno.readTextFile(path));
  const q = config.quantization_config;
  if (q === undefined || q === null) return null;
  if (typeof q !== "object" || Array.isArray(q)) {
    throw new Error(`${path}: quantization_config must be an object`);
  }
  return { raw: q, dtype: String(config.torch_dtype ?? config.dtype ?? "float16"), path };
}

/**
 * Wraps `checkpoint` for its `quantization_config`: bitsandbytes or our own layout; null for a
 * plain checkpoint. Other quantization methods (GPTQ, AWQ, ...) are refused by name.
 *
 * @example
 * ```ts ignore
 * const source = await prequantizedWeights("sotu-llama-bnb-nf4", ckpt); // BnbWeights
 * ```
 */
export async function prequantizedWeights(
  dir: string,
  checkpoint: Checkpoint,
): Promise<PrequantizedWeights | null> {
  const q = await readQuantizationConfig(dir);
  if (!q) return null;
  const method = q.raw.quant_method;
  if (method === "bitsandbytes") {
    return new BnbWeights(checkpoint, parseBnbQuantizationConfig(q.raw, q.path, q.dtype));
  }
  if (method === "qlab") {
    return new QlabWeights(checkpoint, q.raw as unknown as QlabQuantizationConfig, q.path);
  }
  throw new Error(
    `${q.path}: quantization_config.quant_method ${JSON.stringify(method)} is not supported ` +
      `(supported: "bitsandbytes", "qlab")`,
  );
}
