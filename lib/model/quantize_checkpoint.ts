/**
 * Writes a quantized copy of a checkpoint, so that a model is quantized once rather than at
 * every load: in our packed layout (`quant_method: "qlab"`, see `prequantized.ts`), or in
 * bitsandbytes' own layout (`bnb-nf4`, `bnb-nf4-dq`, `bnb-fp4`, `bnb-int8`), which transformers
 * + bitsandbytes load as if `save_pretrained` had written it (see `bnb.ts` for the tensors).
 *
 * The decoder blocks' seven linear layers are quantized, one tensor at a time; embeddings,
 * norms and the LM head are copied as stored (bitsandbytes leaves them unquantized too). The
 * output is written as it is produced: only one layer's weights are in memory at once.
 *
 * @module
 */

import { join } from "node:path";
import { writeFileAtomic } from "../io/atomic.ts";
import { f16ArrayToF32 } from "../gpu/f16.ts";
import {
  QUANT_FORMATS,
  type QuantFormat,
  quantize,
  type QuantizedWeight,
  type QuantOptions,
} from "../quant/formats.ts";
import { FP4_TABLE } from "../quant/fp4.ts";
import { NF4_TABLE } from "../quant/nf4.ts";
import { DYNAMIC_MAP_SIGNED } from "../quant/dynamic_map.ts";
import { NESTED_BLOCKSIZE } from "../quant/nf4_dq.ts";
import { openCheckpoint } from "./checkpoint.ts";
import type { LlamaConfig } from "./config.ts";
import { loadLlamaConfig } from "./config.ts";
import { LINEAR_NAMES, linearShapes } from "./load.ts";
import type { QlabQuantizationConfig } from "./prequantized.ts";
import { dtypeSize, numel } from "./safetensors.ts";

/**
 * Output layouts of {@linkcode quantizeCheckpoint}: any quantized format of ours, or
 * bitsandbytes' layout of NF4, NF4 + double quantization, FP4 or LLM.int8().
 *
 * @example
 * ```ts
 * import type { CheckpointFormat } from "./quantize_checkpoint.ts";
 * const f: CheckpointFormat = "bnb-nf4";
 * ```
 */
export type CheckpointFormat =
  | Exclude<QuantFormat, "fp16">
  | "bnb-nf4"
  | "bnb-nf4-dq"
  | "bnb-fp4"
  | "bnb-int8";

/**
 * Every {@linkcode CheckpointFormat}.
 *
 * @example
 * ```ts
 * import { CHECKPOINT_FORMATS } from "./quantize_checkpoint.ts";
 * CHECKPOINT_FORMATS.includes("bnb-int8"); // true
 * ```
 */
export const CHECKPOINT_FORMATS: readonly CheckpointFormat[] = [
  ...QUANT_FORMATS.filter((f): f is Exclude<QuantFormat, "fp16"> => f !== "fp16"),
  "q4_0",
  "bnb-nf4",
  "bnb-nf4-dq",
  "bnb-fp4",
  "bnb-int8",
];

const BNB: Record<string, Exclude<QuantFormat, "fp16">> = {
  "bnb-nf4": "nf4",
  "bnb-nf4-dq": "nf4-dq",
  "bnb-fp4": "fp4",
  "bnb-int8": "llm-int8",
};

/**
 * Options of {@linkcode quantizeCheckpoint}.
 *
 * @example
 * ```ts
 * import type { QuantizeCheckpointOptions } from "./quantize_checkpoint.ts";
 * const o: QuantizeCheckpointOptions = { blocksize: 128 };
 * ```
 */
export interface QuantizeCheckpointOptions {
  /** 4-bit formats: values per block (default 64; bitsandbytes layouts: 64 only). */
  blocksize?: number;
  /** llm-int8 / bnb-int8: the outlier threshold recorded for loading (default 6.0). */
  threshold?: number;
  /**
   * Linear layers to keep in FP16: a layer whose name contains any of these (bitsandbytes'
   * `llm_int8_skip_modules` rule, e.g. `"mlp.down_proj"` or `"layers.0."`) is copied as stored.
   */
  skipModules?: string[];
  /** Called after each tensor is written. */
  onProgress?: (done: number, total: number, name: string) => void;
}

/**
 * One tensor of {@linkcode writeSafetensorsStreaming}: its header entry and how to make its
 * bytes.
 *
 * @example
 * ```ts
 * import type { StreamedTensor } from "./quantize_checkpoint.ts";
 * const t: StreamedTensor = {
 *   name: "w", dtype: "U8", shape: [4], bytes: 4, make: () => Promise.resolve(new Uint8Array(4)),
 * };
 * ```
 */
export interface StreamedTensor {
  /** Tensor name. */
  name: string;
  /** Safetensors dtype. */
  dtype: string;
  /** Shape (for a tensor of unknown size: replaced by `[bytes]` once made). */
  shape: number[];
  /** Exact size when known before the data is made (everything but quant states). */
  bytes?: number;
  /** Makes the bytes, when the writer reaches the tensor. */
  make: () => Promise<Uint8Array>;
}

type Planned = StreamedTensor;

const u8 = (a: ArrayBufferView, length = a.byteLength): Uint8Array =>
  new Uint8Array(a.buffer, a.byteOffset, length);

/**
 * A float as Python's `repr` writes it (the shortest round-trip digits; exponent form below
 * 1e-4 and from 1e16), so that quant-state JSON matches bitsandbytes' byte for byte.
 *
 * @example
 * ```ts
 * import { pythonFloat } from "./quantize_checkpoint.ts";
 * pythonFloat(6); // "6.0"
 * pythonFloat(0.00001); // "1e-05"
 * ```
 */
export function pythonFloat(x: number): string {
  if (Number.isInteger(x) && Math.abs(x) < 1e16) return x.toFixed(1);
  const abs = Math.abs(x);
  if (abs >= 1e-4 && abs < 1e16) return String(x);
  const [m, e] = x.toExponential().split("e");
  const exp = Number(e);
  return `${m}e${exp < 0 ? "-" : "+"}${String(Math.abs(exp)).padStart(2, "0")}`;
}

/** Python's `json.dumps` of the quant state dict bitsandbytes stores (ints, one float). */
function quantStateJson(state: Record<string, unknown>): string {
  const value = (k: string, v: unknown): string =>
    Array.isArray(v)
      ? `[${v.map((x) => value(k, x)).join(", ")}]`
      : k === "nested_offset"
      ? pythonFloat(v as number)
      : JSON.stringify(v);
  return `{${
    Object.entries(state).map(([k, v]) => `${JSON.stringify(k)}: ${value(k, v)}`).join(", ")
  }}`;
}

/** The tensors bitsandbytes stores for one quantized linear layer, in its layout. */
function bnbTensors(
  name: string,
  format: Exclude<QuantFormat, "fp16">,
  n: number,
  k: number,
  weight: () => Promise<QuantizedWeight>,
): Planned[] {
  const base = name.replace(/\.weight$/, "");
  if (format === "llm-int8") {
    return [
      {
        name,
        dtype: "I8",
        shape: [n, k],
        bytes: n * k,
        make: async () => u8((await weight() as { codes: Uint32Array }).codes, n * k),
      },
      {
        name: `${base}.SCB`,
        dtype: "F32",
        shape: [n],
        bytes: 4 * n,
        make: async () => u8((await weight() as { scb: Float32Array }).scb),
      },
      // transformers' Int8 serialisation: 0 = row-major ("row").
      {
        name: `${base}.weight_format`,
        dtype: "U8",
        shape: [],
        bytes: 1,
        make: () => Promise.resolve(new Uint8Array(1)),
      },
    ];
  }
  const blocks = (n * k) / 64;
  const type = format === "fp4" ? "fp4" : "nf4";
  const out: Planned[] = [
    {
      name,
      dtype: "U8",
      shape: [(n * k) / 2, 1],
      bytes: (n * k) / 2,
      make: async () => u8((await weight() as { codes: Uint32Array }).codes, (n * k) / 2),
    },
  ];
  if (format === "nf4-dq") {
    const nested = Math.ceil(blocks / NESTED_BLOCKSIZE);
    out.push(
      {
        name: `${name}.absmax`,
        dtype: "U8",
        shape: [blocks],
        bytes: blocks,
        make: async () => u8((await weight() as { qabsmax: Uint32Array }).qabsmax, blocks),
      },
      {
        name: `${name}.nested_absmax`,
        dtype: "F32",
        shape: [nested],
        bytes: 4 * nested,
        make: async () => u8((await weight() as { absmax2: Float32Array }).absmax2),
      },
      {
        name: `${name}.nested_quant_map`,
        dtype: "F32",
        shape: [256],
        bytes: 1024,
        make: () => Promise.resolve(u8(DYNAMIC_MAP_SIGNED)),
      },
    );
  } else {
    out.push({
      name: `${name}.absmax`,
      dtype: "F32",
      shape: [blocks],
      bytes: 4 * blocks,
      make: async () => u8((await weight() as { absmax: Float32Array }).absmax),
    });
  }
  out.push({
    name: `${name}.quant_map`,
    dtype: "F32",
    shape: [16],
    bytes: 64,
    // bitsandbytes' FP4 table has +0 for code 8 (our table: -0, the same value).
    make: () => Promise.resolve(u8(type === "nf4" ? NF4_TABLE : FP4_TABLE.map((v) => v + 0))),
  });
  out.push({
    name: `${name}.quant_state.bitsandbytes__${type}`,
    dtype: "U8",
    shape: [0], // set once made
    make: async () => {
      const w = await weight();
      const state: Record<string, unknown> = {
        quant_type: type,
        blocksize: 64,
        dtype: "float16",
        shape: [n, k],
      };
      if (w.format === "nf4-dq") {
        Object.assign(state, {
          nested_blocksize: NESTED_BLOCKSIZE,
          nested_dtype: "float32",
          nested_offset: w.offset[0],
        });
      }
      return new TextEncoder().encode(quantStateJson(state));
    },
  });
  return out;
}

const probes = new Map<string, QuantizedWeight>();

/** Our layout: one U32/F32 tensor per packed array. */
function qlabTensors(
  name: string,
  format: Exclude<QuantFormat, "fp16">,
  n: number,
  k: number,
  options: QuantOptions,
  weight: () => Promise<QuantizedWeight>,
): Planned[] {
  // The arrays and their lengths: quantize a zero matrix of the shape once per shape.
  const key = `${format}:${n}x${k}:${options.blocksize}`;
  let probe = probes.get(key);
  if (!probe) {
    probe = quantize(format, new Float32Array(n * k), n, k, options);
    probes.set(key, probe);
  }
  return Object.entries(probe).filter(([, v]) => ArrayBuffer.isView(v) && v.byteLength > 0)
    .map(([field, v]) => {
      const arr = v as Uint32Array | Float32Array;
      return {
        name: `${name}.${field}`,
        dtype: arr instanceof Float32Array ? "F32" : "U32",
        shape: [arr.length],
        bytes: arr.byteLength,
        make: async () => {
          const got = (await weight() as unknown as Record<string, Uint32Array | Float32Array>)[
            field
          ];
          return u8(got);
        },
      };
    });
}

/**
 * Where {@linkcode writeQuantizedSafetensors} reads tensors from (an open checkpoint fits).
 *
 * @example
 * ```ts ignore
 * const reader: CheckpointReader = await openCheckpoint("models/sotu-llama");
 * ```
 */
export interface CheckpointReader {
  /** Tensor names in file order. */
  names(): string[];
  /** dtype and shape. */
  info(name: string): { dtype: string; shape: number[] };
  /** Stored bytes. */
  readRaw(name: string): Promise<Uint8Array>;
  /** f16 bits. */
  readF16Bits(name: string): Promise<Uint16Array>;
}

/**
 * What {@linkcode quantizeCheckpoint} wrote.
 *
 * @example
 * ```ts ignore
 * const { bytes } = await quantizeCheckpoint("models/sotu-llama", "/tmp/q", "nf4");
 * ```
 */
export interface QuantizeCheckpointResult {
  /** Path of the model.safetensors written. */
  path: string;
  /** Its size in bytes. */
  bytes: number;
  /** Linear layers quantized. */
  quantized: number;
}

/**
 * Quantizes the decoder linear layers of a Hugging Face Llama checkpoint directory and writes
 * `model.safetensors` and `config.json` (with its `quantization_config`) to `outDir`, copying
 * the tokenizer and generation files beside them.
 *
 * @example
 * ```ts ignore
 * import { quantizeCheckpoint } from "./quantize_checkpoint.ts";
 * await quantizeCheckpoint("models/sotu-llama", "/tmp/sotu-nf4", "nf4-dq");
 * ```
 */
export async function quantizeCheckpoint(
  srcDir: string,
  outDir: string,
  format: CheckpointFormat,
  options: QuantizeCheckpointOptions = {},
): Promise<QuantizeCheckpointResult> {
  if (!CHECKPOINT_FORMATS.includes(format)) {
    throw new Error(
      `unknown checkpoint format ${JSON.stringify(format)} (one of ${
        CHECKPOINT_FORMATS.join(", ")
      })`,
    );
  }
  const config = await loadLlamaConfig(srcDir);
  const rawConfig = JSON.parse(await Deno.readTextFile(join(srcDir, "config.json")));
  if (rawConfig.quantization_config) {
    throw new Error(`${srcDir}/config.json: the checkpoint is quantized already`);
  }
  await Deno.mkdir(outDir, { recursive: true });
  using ckpt = await openCheckpoint(srcDir);
  const reader: CheckpointReader = {
    names: () => ckpt.names(),
    info: (n) => ckpt.info(n),
    readRaw: (n) => ckpt.readRaw(n),
    readF16Bits: (n) => ckpt.readF16Bits(n),
  };
  const path = join(outDir, "model.safetensors");
  const result = await writeQuantizedSafetensors(reader, config, path, format, options);
  rawConfig.quantization_config = quantizationConfigFor(format, options);
  await Deno.writeTextFile(join(outDir, "config.json"), JSON.stringify(rawConfig, null, 2) + "\n");
  for (
    const f of [
      "tokenizer.json",
      "tokenizer_config.json",
      "generation_config.json",
      "special_tokens_map.json",
    ]
  ) {
    try {
      await Deno.copyFile(join(srcDir, f), join(outDir, f));
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) throw e;
    }
  }
  return result;
}

/**
 * The `quantization_config` written for `format`: transformers' `BitsAndBytesConfig.to_dict`
 * fields for the bitsandbytes layouts, ours otherwise.
 *
 * @example
 * ```ts
 * import { quantizationConfigFor } from "./quantize_checkpoint.ts";
 * quantizationConfigFor("nf4-dq").quant_method; // "qlab"
 * ```
 */
export function quantizationConfigFor(
  format: CheckpointFormat,
  options: QuantizeCheckpointOptions = {},
): Record<string, unknown> {
  const bnb = BNB[format];
  if (!bnb) {
    const q: QlabQuantizationConfig = {
      quant_method: "qlab",
      format: format as Exclude<QuantFormat, "fp16">,
    };
    if (["nf4", "nf4-dq", "fp4", "int4"].includes(format)) q.blocksize = options.blocksize ?? 64;
    if (format === "llm-int8") q.threshold = options.threshold ?? 6.0;
    return { ...q, ...(options.skipModules?.length ? { skip_modules: options.skipModules } : {}) };
  }
  const four = bnb !== "llm-int8";
  return {
    _load_in_4bit: four,
    _load_in_8bit: !four,
    bnb_4bit_compute_dtype: four ? "float16" : "float32",
    bnb_4bit_quant_storage: "uint8",
    bnb_4bit_quant_type: bnb === "fp4" ? "fp4" : "nf4",
    bnb_4bit_use_double_quant: bnb === "nf4-dq",
    llm_int8_enable_fp32_cpu_offload: false,
    llm_int8_has_fp16_weight: false,
    llm_int8_skip_modules: options.skipModules?.length ? ["lm_head", ...options.skipModules] : null,
    llm_int8_threshold: options.threshold ?? 6.0,
    load_in_4bit: four,
    load_in_8bit: !four,
    quant_method: "bitsandbytes",
  };
}

/**
 * Writes the quantized tensors of `source` to one safetensors file at `path` (see
 * {@linkcode quantizeCheckpoint}); tensors are made and written one at a time.
 *
 * @example
 * ```ts ignore
 * await writeQuantizedSafetensors(reader, config, "out/model.safetensors", "bnb-nf4");
 * ```
 */
export async function writeQuantizedSafetensors(
  source: CheckpointReader,
  config: LlamaConfig,
  path: string,
  format: CheckpointFormat,
  options: QuantizeCheckpointOptions = {},
): Promise<QuantizeCheckpointResult> {
  const bnb = BNB[format];
  const quantFormat = bnb ?? (format as Exclude<QuantFormat, "fp16">);
  if (bnb && (options.blocksize ?? 64) !== 64) {
    throw new Error(`${format}: bitsandbytes checkpoints are written with blocksize 64 only`);
  }
  const qopts: QuantOptions = { blocksize: options.blocksize };
  const shapes = linearShapes(config);
  const linearNames = new Map<string, [number, number]>();
  for (let l = 0; l < config.numLayers; l++) {
    for (const kind of LINEAR_NAMES) {
      linearNames.set(`model.layers.${l}.${kind}.weight`, shapes[kind]);
    }
  }
  const plan: Planned[] = [];
  let quantized = 0;
  for (const name of source.names()) {
    const skipped = options.skipModules?.some((m) => name.includes(m)) ?? false;
    const shape = skipped ? undefined : linearNames.get(name);
    if (!shape) {
      const info = source.info(name);
      plan.push({
        name,
        dtype: info.dtype,
        shape: info.shape,
        bytes: numel(info.shape) * (dtypeSize(info.dtype) ?? 0),
        make: () => source.readRaw(name),
      });
      continue;
    }
    const [n, k] = shape;
    const info = source.info(name);
    if (info.shape.length !== 2 || info.shape[0] !== n || info.shape[1] !== k) {
      throw new Error(
        `tensor ${name}: shape [${info.shape.join(", ")}], the config implies [${n}, ${k}]`,
      );
    }
    quantized++;
    let cached: Promise<QuantizedWeight> | null = null;
    let uses = 0;
    const parts = bnb
      ? bnbTensors(name, quantFormat, n, k, () => weight())
      : qlabTensors(name, quantFormat, n, k, qopts, () => weight());
    const weight = (): Promise<QuantizedWeight> => {
      cached ??= source.readF16Bits(name).then((bits) =>
        quantize(quantFormat, f16ArrayToF32(bits), n, k, qopts)
      );
      const c = cached;
      if (++uses === parts.length) cached = null; // the last part: let it go
      return c;
    };
    plan.push(...parts);
  }
  const bytes = await writeSafetensorsStreaming(path, plan, { format: "pt" }, options.onProgress);
  return { path, bytes, quantized };
}

/**
 * Writes a safetensors file whose tensors are made one at a time: room for the header is
 * reserved first (sizes not known in advance are bounded), the data streamed after it, and the
 * header written last, padded with spaces. Written to a temporary file renamed at the end.
 * Returns the file's size.
 *
 * @example
 * ```ts ignore
 * await writeSafetensorsStreaming("/tmp/x.safetensors", [
 *   { name: "w", dtype: "U8", shape: [4], bytes: 4, make: async () => new Uint8Array(4) },
 * ], { format: "pt" });
 * ```
 */
export async function writeSafetensorsStreaming(
  path: string,
  plan: Planned[],
  metadata: Record<string, string>,
  onProgress?: (done: number, total: number, name: string) => void,
): Promise<number> {
  const UNKNOWN = 4096; // bound on a quant-state JSON
  // Unknown sizes go last so that every other offset is known up front.
  const ordered = [
    ...plan.filter((p) => p.bytes !== undefined),
    ...plan.filter((p) => p.bytes === undefined),
  ];
  const header = (offsets: Map<string, [number, number, number[]]>): string => {
    const h: Record<string, unknown> = { __metadata__: metadata };
    for (const p of ordered) {
      const [b, e, shape] = offsets.get(p.name)!;
      h[p.name] = { dtype: p.dtype, shape, data_offsets: [b, e] };
    }
    return JSON.stringify(h);
  };
  const bound = new Map<string, [number, number, number[]]>();
  for (const p of ordered) {
    bound.set(p.name, [1e14, 1e14, p.bytes === undefined ? [UNKNOWN] : p.shape]);
  }
  const reserved = Math.ceil((new TextEncoder().encode(header(bound)).length + 64) / 8) * 8;
  return await writeFileAtomic(path, async (file) => {
    const offsets = new Map<string, [number, number, number[]]>();
    let offset = 0;
    await file.seek(8 + reserved, Deno.SeekMode.Start);
    let done = 0;
    for (const p of ordered) {
      const data = await p.make();
      if (p.bytes !== undefined && data.length !== p.bytes) {
        throw new Error(`tensor ${p.name}: made ${data.length} bytes, expected ${p.bytes}`);
      }
      if (data.length > UNKNOWN && p.bytes === undefined) {
        throw new Error(`tensor ${p.name}: ${data.length} bytes exceed the reserved bound`);
      }
      await writeAll(file, data);
      offsets.set(p.name, [
        offset,
        offset + data.length,
        p.bytes === undefined ? [data.length] : p.shape,
      ]);
      offset += data.length;
      onProgress?.(++done, ordered.length, p.name);
    }
    const json = new TextEncoder().encode(header(offsets));
    const head = new Uint8Array(8 + reserved).fill(0x20);
    new DataView(head.buffer).setBigUint64(0, BigInt(reserved), true);
    head.set(json, 8);
    await file.seek(0, Deno.SeekMode.Start);
    await writeAll(file, head);
    return 8 + reserved + offset;
  });
}

async function writeAll(file: Deno.FsFile, bytes: Uint8Array): Promise<void> {
  let done = 0;
  while (done < bytes.length) done += await file.write(bytes.subarray(done));
}
