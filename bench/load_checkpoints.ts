/**
 * Load time and peak memory of quantized checkpoints at real model shapes: a bitsandbytes NF4
 * checkpoint (transformers' layout) and a llama.cpp GGUF Q4_0 file, with random contents
 * written here (codes random, scales sane), and optionally an FP16 checkpoint loaded with
 * quantize-at-load against the same model written once by `quantize`.
 *
 * ```sh
 * deno run -A bench/load_checkpoints.ts --preset llama-2-7b --dir /tmp/ckpts --out load.json
 * deno run -A bench/load_checkpoints.ts --hidden 1024 --layers 8 --fp16-baseline --dir /tmp/c
 * ```
 *
 * Each load runs in a child process, so its peak resident memory (VmHWM) is its own. Reported:
 * file size, load time (`LlamaModel.load` to return), the ledger's GPU peak and weights, the
 * process's peak RSS, and decode speed over 32 greedy tokens.
 *
 * @module
 */

import { join } from "node:path";
import { parseArgs } from "node:util";
import { requestGpu } from "../lib/gpu/device.ts";
import { f32ToF16Bits } from "../lib/gpu/f16.ts";
import type { LlamaConfig } from "../lib/model/config.ts";
import { LINEAR_NAMES, linearShapes, LlamaModel } from "../lib/model/llama.ts";
import { presetConfig } from "../lib/model/presets.ts";
import {
  quantizationConfigFor,
  quantizeCheckpoint,
  type StreamedTensor,
  writeSafetensorsStreaming,
} from "../lib/model/quantize_checkpoint.ts";
import { NF4_TABLE } from "../lib/quant/nf4.ts";
import { RandomPools } from "./random_weights.ts";

const pools = new RandomPools();

function randomBytes(n: number): Uint8Array {
  const words = pools.words(Math.ceil(n / 4));
  return new Uint8Array(words.buffer, words.byteOffset, n);
}

/** Random f16 weights, |v| in [2⁻⁷, 2⁻³) (a view into a shared pool). */
function randomF16(n: number): Uint8Array {
  const h = pools.f16(n);
  return new Uint8Array(h.buffer, h.byteOffset, 2 * n);
}

const ones = (n: number, f16: boolean): Uint8Array =>
  f16
    ? new Uint8Array(new Uint16Array(n).fill(f32ToF16Bits(1)).buffer)
    : new Uint8Array(new Float32Array(n).fill(1).buffer);

function hfConfig(c: LlamaConfig, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    architectures: ["LlamaForCausalLM"],
    model_type: "llama",
    hidden_size: c.hiddenSize,
    intermediate_size: c.intermediateSize,
    num_hidden_layers: c.numLayers,
    num_attention_heads: c.numHeads,
    num_key_value_heads: c.numKvHeads,
    head_dim: c.headDim,
    vocab_size: c.vocabSize,
    max_position_embeddings: c.maxPositionEmbeddings,
    rms_norm_eps: c.rmsNormEps,
    rope_theta: c.ropeTheta,
    tie_word_embeddings: c.tieWordEmbeddings,
    torch_dtype: "float16",
    ...extra,
  };
}

/** Plain tensors every checkpoint has: embeddings, norms, the LM head (F16). */
function plainTensors(c: LlamaConfig): StreamedTensor[] {
  const t = (name: string, shape: number[], make: () => Uint8Array): StreamedTensor => ({
    name,
    dtype: "F16",
    shape,
    bytes: shape.reduce((a, b) => a * b, 1) * 2,
    make: () => Promise.resolve(make()),
  });
  const list = [
    t(
      "model.embed_tokens.weight",
      [c.vocabSize, c.hiddenSize],
      () => randomF16(c.vocabSize * c.hiddenSize),
    ),
    t("model.norm.weight", [c.hiddenSize], () => ones(c.hiddenSize, true)),
  ];
  if (!c.tieWordEmbeddings) {
    list.push(
      t("lm_head.weight", [c.vocabSize, c.hiddenSize], () => randomF16(c.vocabSize * c.hiddenSize)),
    );
  }
  for (let l = 0; l < c.numLayers; l++) {
    for (const norm of ["input_layernorm", "post_attention_layernorm"]) {
      list.push(
        t(`model.layers.${l}.${norm}.weight`, [c.hiddenSize], () => ones(c.hiddenSize, true)),
      );
    }
  }
  return list;
}

/** A bitsandbytes NF4 checkpoint with random codes and block absmax in [0.01, 0.05). */
async function writeBnbNf4(dir: string, c: LlamaConfig): Promise<void> {
  await Deno.mkdir(dir, { recursive: true });
  const plan = plainTensors(c);
  const shapes = linearShapes(c);
  for (let l = 0; l < c.numLayers; l++) {
    for (const kind of LINEAR_NAMES) {
      const [n, k] = shapes[kind];
      const name = `model.layers.${l}.${kind}.weight`;
      const blocks = (n * k) / 64;
      const state =
        `{"quant_type": "nf4", "blocksize": 64, "dtype": "float16", "shape": [${n}, ${k}]}`;
      plan.push(
        {
          name,
          dtype: "U8",
          shape: [(n * k) / 2, 1],
          bytes: (n * k) / 2,
          make: () => Promise.resolve(randomBytes((n * k) / 2)),
        },
        {
          name: `${name}.absmax`,
          dtype: "F32",
          shape: [blocks],
          bytes: 4 * blocks,
          make: () => {
            const r = randomBytes(blocks);
            return Promise.resolve(
              new Uint8Array(Float32Array.from(r, (b) => 0.01 + b / 6400).buffer),
            );
          },
        },
        {
          name: `${name}.quant_map`,
          dtype: "F32",
          shape: [16],
          bytes: 64,
          make: () => Promise.resolve(new Uint8Array(NF4_TABLE.slice().buffer)),
        },
        {
          name: `${name}.quant_state.bitsandbytes__nf4`,
          dtype: "U8",
          shape: [state.length],
          bytes: state.length,
          make: () => Promise.resolve(new TextEncoder().encode(state)),
        },
      );
    }
  }
  await writeSafetensorsStreaming(join(dir, "model.safetensors"), plan, { format: "pt" });
  const config = hfConfig(c, { quantization_config: quantizationConfigFor("bnb-nf4") });
  await Deno.writeTextFile(join(dir, "config.json"), JSON.stringify(config, null, 2));
}

/** An FP16 checkpoint with random weights. */
async function writeFp16(dir: string, c: LlamaConfig): Promise<void> {
  await Deno.mkdir(dir, { recursive: true });
  const plan = plainTensors(c);
  const shapes = linearShapes(c);
  for (let l = 0; l < c.numLayers; l++) {
    for (const kind of LINEAR_NAMES) {
      const [n, k] = shapes[kind];
      plan.push({
        name: `model.layers.${l}.${kind}.weight`,
        dtype: "F16",
        shape: [n, k],
        bytes: 2 * n * k,
        make: () => Promise.resolve(randomF16(n * k)),
      });
    }
  }
  await writeSafetensorsStreaming(join(dir, "model.safetensors"), plan, { format: "pt" });
  await Deno.writeTextFile(join(dir, "config.json"), JSON.stringify(hfConfig(c), null, 2));
}

// --- a minimal GGUF v3 writer ------------------------------------------------------------

class Bytes {
  parts: Uint8Array[] = [];
  length = 0;
  push(b: Uint8Array): this {
    this.parts.push(b);
    this.length += b.length;
    return this;
  }
  u32(v: number): this {
    const b = new Uint8Array(4);
    new DataView(b.buffer).setUint32(0, v, true);
    return this.push(b);
  }
  u64(v: number): this {
    const b = new Uint8Array(8);
    new DataView(b.buffer).setBigUint64(0, BigInt(v), true);
    return this.push(b);
  }
  f32(v: number): this {
    const b = new Uint8Array(4);
    new DataView(b.buffer).setFloat32(0, v, true);
    return this.push(b);
  }
  str(s: string): this {
    const e = new TextEncoder().encode(s);
    return this.u64(e.length).push(e);
  }
  concat(): Uint8Array {
    const out = new Uint8Array(this.length);
    let o = 0;
    for (const p of this.parts) {
      out.set(p, o);
      o += p.length;
    }
    return out;
  }
}

/** A llama.cpp-layout GGUF file: linear layers Q4_0 (random codes, d about 0.003), rest F16/F32. */
async function writeGgufQ4_0(path: string, c: LlamaConfig): Promise<void> {
  const kv = new Bytes();
  let kvCount = 0;
  const addU32 = (k: string, v: number) => (kv.str(k).u32(4).u32(v), kvCount++);
  const addF32 = (k: string, v: number) => (kv.str(k).u32(6).f32(v), kvCount++);
  kv.str("general.architecture").u32(8).str("llama");
  kvCount++;
  addU32("llama.context_length", c.maxPositionEmbeddings);
  addU32("llama.embedding_length", c.hiddenSize);
  addU32("llama.block_count", c.numLayers);
  addU32("llama.feed_forward_length", c.intermediateSize);
  addU32("llama.attention.head_count", c.numHeads);
  addU32("llama.attention.head_count_kv", c.numKvHeads);
  addU32("llama.vocab_size", c.vocabSize);
  addF32("llama.rope.freq_base", c.ropeTheta);
  addF32("llama.attention.layer_norm_rms_epsilon", c.rmsNormEps);
  addU32("general.alignment", 32);
  type T = { name: string; dims: number[]; type: number; bytes: number; make: () => Uint8Array };
  const tensors: T[] = [];
  const h = c.hiddenSize;
  tensors.push({
    name: "token_embd.weight",
    dims: [h, c.vocabSize],
    type: 1,
    bytes: 2 * h * c.vocabSize,
    make: () => randomF16(h * c.vocabSize),
  });
  const ggufNames: Record<string, string> = {
    "self_attn.q_proj": "attn_q",
    "self_attn.k_proj": "attn_k",
    "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output",
    "mlp.gate_proj": "ffn_gate",
    "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down",
  };
  const shapes = linearShapes(c);
  for (let l = 0; l < c.numLayers; l++) {
    for (const norm of ["attn_norm", "ffn_norm"]) {
      tensors.push({
        name: `blk.${l}.${norm}.weight`,
        dims: [h],
        type: 0,
        bytes: 4 * h,
        make: () => ones(h, false),
      });
    }
    for (const kind of LINEAR_NAMES) {
      const [n, k] = shapes[kind];
      const blocks = (n * k) / 32;
      tensors.push({
        name: `blk.${l}.${ggufNames[kind]}.weight`,
        dims: [k, n],
        type: 2,
        bytes: 18 * blocks,
        make: () => {
          const b = randomBytes(18 * blocks).slice();
          for (let i = 0; i < blocks; i++) {
            b[18 * i] = 0x20; // d = f16 0x1a20 ≈ 0.0032
            b[18 * i + 1] = 0x1a;
          }
          return b;
        },
      });
    }
  }
  tensors.push({
    name: "output_norm.weight",
    dims: [h],
    type: 0,
    bytes: 4 * h,
    make: () => ones(h, false),
  });
  if (!c.tieWordEmbeddings) {
    tensors.push({
      name: "output.weight",
      dims: [h, c.vocabSize],
      type: 1,
      bytes: 2 * h * c.vocabSize,
      make: () => randomF16(h * c.vocabSize),
    });
  }
  const head = new Bytes().push(new TextEncoder().encode("GGUF")).u32(3).u64(tensors.length)
    .u64(kvCount).push(kv.concat());
  let offset = 0;
  for (const t of tensors) {
    head.str(t.name).u32(t.dims.length);
    for (const d of t.dims) head.u64(d);
    head.u32(t.type).u64(offset);
    offset += Math.ceil(t.bytes / 32) * 32;
  }
  const pad = (n: number) => new Uint8Array((32 - (n % 32)) % 32);
  head.push(pad(head.length));
  const file = await Deno.open(path, { write: true, create: true, truncate: true });
  try {
    await writeAll(file, head.concat());
    for (const t of tensors) {
      const data = t.make();
      await writeAll(file, data);
      await writeAll(file, pad(data.length));
    }
  } finally {
    file.close();
  }
}

async function writeAll(file: Deno.FsFile, bytes: Uint8Array): Promise<void> {
  let done = 0;
  while (done < bytes.length) done += await file.write(bytes.subarray(done));
}

// --- one load, in a child process ----------------------------------------------------------

interface LoadResult {
  path: string;
  format: string;
  loadSeconds: number;
  gpuPeakBytes: number;
  gpuWeightBytes: number;
  peakRssBytes: number;
  decodeTokensPerSecond: number;
}

async function loadOnce(path: string, format?: string): Promise<LoadResult> {
  const gpu = await requestGpu({});
  const t0 = performance.now();
  const model = await LlamaModel.load(path, {
    gpu,
    format: format as "nf4" | undefined,
    maxSeqLen: 256,
  });
  const loadSeconds = (performance.now() - t0) / 1000;
  const gpuPeakBytes = gpu.ledger.peakBytes;
  const gpuWeightBytes = gpu.ledger.bytesIn("weights");
  await model.forward([1, 2, 3, 4], "last"); // compile and warm up
  const t1 = performance.now();
  const r = await model.decodeGreedy([5], { maxNewTokens: 32 });
  const decodeTokensPerSecond = r.tokens.length / ((performance.now() - t1) / 1000);
  const status = await Deno.readTextFile("/proc/self/status");
  const hwm = Number(/VmHWM:\s+(\d+) kB/.exec(status)?.[1] ?? 0) * 1024;
  const result = {
    path,
    format: model.format,
    loadSeconds,
    gpuPeakBytes,
    gpuWeightBytes,
    peakRssBytes: hwm,
    decodeTokensPerSecond,
  };
  model.dispose();
  gpu.destroy();
  return result;
}

async function child(path: string, format?: string): Promise<LoadResult> {
  const args = ["run", "-A", "--no-lock", import.meta.filename!, "--load", path];
  if (format) args.push("--format", format);
  const out = await new Deno.Command(Deno.execPath(), { args, stderr: "inherit" }).output();
  if (!out.success) throw new Error(`load of ${path} failed`);
  const text = new TextDecoder().decode(out.stdout);
  return JSON.parse(text.slice(text.lastIndexOf("\n{") + 1));
}

async function sizeOf(path: string): Promise<number> {
  const st = await Deno.stat(path);
  if (st.isFile) return st.size;
  let total = 0;
  for await (const e of Deno.readDir(path)) total += (await Deno.stat(join(path, e.name))).size;
  return total;
}

const { values } = parseArgs({
  args: Deno.args,
  options: {
    load: { type: "string" },
    format: { type: "string" },
    preset: { type: "string" },
    hidden: { type: "string" },
    layers: { type: "string" },
    dir: { type: "string", default: "/tmp/qlab-load-bench" },
    out: { type: "string" },
    "fp16-baseline": { type: "boolean", default: false },
    keep: { type: "boolean", default: false },
  },
});

if (values.load) {
  console.log("\n" + JSON.stringify(await loadOnce(values.load, values.format)));
  Deno.exit(0);
}

let config: LlamaConfig;
if (values.preset) config = presetConfig(values.preset);
else {
  const h = Number(values.hidden ?? 1024);
  const base = presetConfig("llama-2-7b");
  config = {
    ...base,
    hiddenSize: h,
    intermediateSize: Math.round((h * 8) / 3 / 256) * 256,
    numLayers: Number(values.layers ?? 8),
    numHeads: h / 128,
    numKvHeads: h / 128,
    headDim: 128,
  };
}
const dir = values.dir!;
await Deno.mkdir(dir, { recursive: true });
const rows: Record<string, unknown>[] = [];
const note = (s: string) => console.error(`[${(performance.now() / 1000).toFixed(1)} s] ${s}`);
const shape =
  `${config.numLayers} layers, hidden ${config.hiddenSize}, MLP ${config.intermediateSize}, vocab ${config.vocabSize}`;
note(`shape: ${shape}`);

let t = performance.now();
await writeBnbNf4(join(dir, "bnb-nf4"), config);
note(`wrote bnb-nf4 in ${((performance.now() - t) / 1000).toFixed(1)} s`);
rows.push({
  checkpoint: "bitsandbytes NF4",
  bytes: await sizeOf(join(dir, "bnb-nf4")),
  ...(await child(join(dir, "bnb-nf4"))),
});
note(JSON.stringify(rows.at(-1)));
if (!values.keep) await Deno.remove(join(dir, "bnb-nf4"), { recursive: true });

t = performance.now();
await writeGgufQ4_0(join(dir, "model-q4_0.gguf"), config);
note(`wrote gguf q4_0 in ${((performance.now() - t) / 1000).toFixed(1)} s`);
rows.push({
  checkpoint: "GGUF Q4_0",
  bytes: await sizeOf(join(dir, "model-q4_0.gguf")),
  ...(await child(join(dir, "model-q4_0.gguf"))),
});
note(JSON.stringify(rows.at(-1)));
if (!values.keep) await Deno.remove(join(dir, "model-q4_0.gguf"));

if (values["fp16-baseline"]) {
  await writeFp16(join(dir, "fp16"), config);
  rows.push({
    checkpoint: "FP16, quantized to NF4 at load",
    bytes: await sizeOf(join(dir, "fp16")),
    ...(await child(join(dir, "fp16"), "nf4")),
  });
  note(JSON.stringify(rows.at(-1)));
  t = performance.now();
  await quantizeCheckpoint(join(dir, "fp16"), join(dir, "nf4"), "nf4");
  const quantizeSeconds = (performance.now() - t) / 1000;
  rows.push({
    checkpoint: "NF4 written by quantize",
    quantizeSeconds,
    bytes: await sizeOf(join(dir, "nf4")),
    ...(await child(join(dir, "nf4"))),
  });
  note(JSON.stringify(rows.at(-1)));
  if (!values.keep) {
    await Deno.remove(join(dir, "fp16"), { recursive: true });
    await Deno.remove(join(dir, "nf4"), { recursive: true });
  }
}
const gpu = await requestGpu({});
const result = { adapter: gpu.describe(), shape, rows };
gpu.destroy();
console.log(JSON.stringify(result, null, 2));
if (values.out) await Deno.writeTextFile(values.out, JSON.stringify(result, null, 2) + "\n");
