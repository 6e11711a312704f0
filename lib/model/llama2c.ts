/**
 * llama2.c's model files (Karpathy's `run.c` / `runq.c`): export a Hugging Face Llama to them,
 * tensor by tensor, and read them back as a {@linkcode WeightSource}.
 *
 * The layouts, as llama2.c's `export.py` writes them and `run.c` / `runq.c` read them (all
 * little-endian, weights `[out, in]` row-major like Hugging Face's):
 *
 * - **version 0** (legacy, `run.c`): a 28-byte header of seven int32 — dim, hidden_dim,
 *   n_layers, n_heads, n_kv_heads, vocab_size (negative when the classifier is not shared with
 *   the embedding), seq_len — then f32: token embedding, every layer's attention norm, wq, wk,
 *   wv, wo (each for all layers in turn), the FFN norms, w1 (gate), w2 (down), w3 (up), the final
 *   norm, RoPE's cos and sin tables (`seq_len × head_size / 2` each, which `run.c` skips), and
 *   the classifier when not shared.
 * - **version 1**: a 256-byte header (uint32 magic `0x616b3432` "ak42", int32 version, the
 *   seven int32, a uint8 shared-classifier flag, zeros), then f32: the attention norms, FFN
 *   norms, final norm, embedding, wq … w3, classifier when not shared.
 * - **version 2** (`runq.c`): the version-1 header plus an int32 group size after the flag; f32
 *   norms as in version 1, then each weight matrix (embedding, wq … w3 per layer, classifier when
 *   not shared) in Q8_0: int8 values, then one f32 scale per group (`max|w| / 127`, values
 *   `round(w / scale)`). The group size is the largest of 64, 32, 16, … that divides dim.
 *
 * llama2.c applies rotary embeddings to adjacent pairs (2i, 2i+1) of a head where Hugging Face
 * uses (i, i + head_size/2); export.py permutes wq and wk's rows to match, and so do we (wk with
 * the key/value heads' count). The files carry no RoPE theta or norm epsilon: `run.c` uses 10000
 * and 1e-5, and so does a model read from them.
 *
 * @module
 */

import { dirname, join } from "node:path";
import { f32ToF16Array } from "../gpu/f16.ts";
import { openCheckpoint } from "./checkpoint.ts";
import { type LlamaConfig, loadLlamaConfig, parseLlamaConfig } from "./config.ts";

/** llama2.c's magic number, "ak42" read as a little-endian uint32. */
export const LLAMA2C_MAGIC = 0x616b3432;

/** The header size of versions 1 and 2. */
export const LLAMA2C_HEADER_BYTES = 256;

/**
 * What a llama2.c file's header says.
 *
 * @example
 * ```ts ignore
 * const h = parseLlama2cHeader(await readHead("stories15M.bin"), fileSize);
 * h.version; // 0
 * ```
 */
export interface Llama2cHeader {
  /** 0 (legacy), 1 (f32 with header) or 2 (Q8_0). */
  version: 0 | 1 | 2;
  /** Model width. */
  dim: number;
  /** MLP width. */
  hiddenDim: number;
  /** Decoder layers. */
  nLayers: number;
  /** Query heads. */
  nHeads: number;
  /** Key/value heads. */
  nKvHeads: number;
  /** Vocabulary size (positive). */
  vocabSize: number;
  /** Longest sequence. */
  seqLen: number;
  /** Whether the classifier is the embedding table. */
  sharedClassifier: boolean;
  /** Version 2: values per Q8_0 group. */
  groupSize: number;
  /** Bytes before the first tensor (28 or 256). */
  headerBytes: number;
}

/** One tensor of a llama2.c file, in file order. */
export interface Llama2cEntry {
  /** Its Hugging Face name (`model.layers.0.self_attn.q_proj.weight`), or `rope.cos`/`rope.sin`. */
  name: string;
  /** `[rows, cols]` or `[n]`. */
  shape: number[];
  /** f32, or Q8_0 (int8 values then f32 group scales). */
  type: "f32" | "q8";
  /** Byte offset in the file. */
  offset: number;
  /** Bytes it takes. */
  bytes: number;
  /** Rows permuted for llama2.c's RoPE pairs: by this many heads (q: n_heads, k: n_kv_heads). */
  permuteHeads?: number;
}

/**
 * The group size llama2.c's export gives version 2: start at 64 and halve until it divides dim.
 *
 * @example
 * ```ts
 * import { llama2cGroupSize } from "./llama2c.ts";
 * llama2cGroupSize(4096); // 64
 * llama2cGroupSize(288); // 32
 * ```
 */
export function llama2cGroupSize(dim: number, start = 64): number {
  let gs = start;
  while (gs > 1 && dim % gs !== 0) gs = Math.floor(gs / 2);
  return gs;
}

/**
 * Reads and checks a header (at least the first 256 bytes of a file, or all of a smaller one).
 * Any of: bad magic or version, non-positive or inconsistent dimensions, a group size that does
 * not divide every matrix, non-zero padding, or a `fileSize` other than the layout's, throws an
 * error naming the field.
 *
 * @example
 * ```ts ignore
 * const head = await Deno.readFile("model.bin").then((b) => b.subarray(0, 256));
 * parseLlama2cHeader(head, (await Deno.stat("model.bin")).size);
 * ```
 */
export function parseLlama2cHeader(
  head: Uint8Array,
  fileSize?: number,
  source = "llama2.c file",
): Llama2cHeader {
  const fail = (msg: string): never => {
    throw new Error(`${source}: ${msg}`);
  };
  if (head.byteLength < 28) fail(`${head.byteLength} bytes is too short for a header`);
  const view = new DataView(head.buffer, head.byteOffset, head.byteLength);
  const magic = view.getUint32(0, true);
  let h: Llama2cHeader;
  const ints = (at: number) => Array.from({ length: 7 }, (_, i) => view.getInt32(at + 4 * i, true));
  if (magic === LLAMA2C_MAGIC) {
    if (head.byteLength < LLAMA2C_HEADER_BYTES) fail("a versioned file needs a 256-byte header");
    const version = view.getInt32(4, true);
    if (version !== 1 && version !== 2) fail(`version ${version}; this reader knows 0, 1 and 2`);
    const [dim, hiddenDim, nLayers, nHeads, nKvHeads, vocabSize, seqLen] = ints(8);
    const flag = head[36];
    if (flag > 1) fail(`shared-classifier flag ${flag}; it must be 0 or 1`);
    const groupSize = version === 2 ? view.getInt32(37, true) : 0;
    const padFrom = version === 2 ? 41 : 37;
    for (let i = padFrom; i < LLAMA2C_HEADER_BYTES; i++) {
      if (head[i] !== 0) fail(`header byte ${i} is ${head[i]}; the padding must be zeros`);
    }
    h = {
      version: version as 1 | 2,
      dim,
      hiddenDim,
      nLayers,
      nHeads,
      nKvHeads,
      vocabSize,
      seqLen,
      sharedClassifier: flag === 1,
      groupSize,
      headerBytes: LLAMA2C_HEADER_BYTES,
    };
  } else {
    const [dim, hiddenDim, nLayers, nHeads, nKvHeads, vocab, seqLen] = ints(0);
    h = {
      version: 0,
      dim,
      hiddenDim,
      nLayers,
      nHeads,
      nKvHeads,
      vocabSize: Math.abs(vocab),
      seqLen,
      sharedClassifier: vocab > 0,
      groupSize: 0,
      headerBytes: 28,
    };
  }
  // Without the magic the file is read as version 0; say so when that makes no sense.
  const hint = magic === LLAMA2C_MAGIC
    ? ""
    : ` (no "ak42" magic, so read as a version 0 header: is this a llama2.c file?)`;
  const check = (ok: boolean, msg: string) => ok || fail(msg + hint);
  const dims = [
    "dim",
    "hiddenDim",
    "nLayers",
    "nHeads",
    "nKvHeads",
    "vocabSize",
    "seqLen",
  ] as const;
  for (const key of dims) check(h[key] > 0, `${key} is ${h[key]}`);
  check(h.dim % h.nHeads === 0, `dim ${h.dim} is not a multiple of n_heads ${h.nHeads}`);
  check(
    h.nHeads % h.nKvHeads === 0,
    `n_heads ${h.nHeads} is not a multiple of n_kv_heads ${h.nKvHeads}`,
  );
  check((h.dim / h.nHeads) % 2 === 0, `head size ${h.dim / h.nHeads} is odd`);
  if (h.version === 2) {
    if (!(h.groupSize > 0)) fail(`group size ${h.groupSize}`);
    for (const e of llama2cLayout(h)) {
      const numel = e.shape.reduce((a, b) => a * b, 1);
      if (e.type === "q8" && numel % h.groupSize !== 0) {
        fail(`${e.name} has ${numel} values, not a multiple of the group size ${h.groupSize}`);
      }
    }
  }
  if (fileSize !== undefined) {
    const want = llama2cFileBytes(h);
    if (fileSize !== want) {
      fail(`${fileSize} bytes, but its header's layout takes exactly ${want}`);
    }
  }
  return h;
}

/**
 * Every tensor of a llama2.c file in file order, with offsets.
 *
 * @example
 * ```ts ignore
 * llama2cLayout(header).find((e) => e.name === "model.norm.weight")!.offset;
 * ```
 */
export function llama2cLayout(h: Llama2cHeader): Llama2cEntry[] {
  const headSize = h.dim / h.nHeads;
  const q = h.nHeads * headSize;
  const kv = h.nKvHeads * headSize;
  const L = Array.from({ length: h.nLayers }, (_, l) => l);
  const layer = (l: number, s: string) => `model.layers.${l}.${s}.weight`;
  type Spec = Omit<Llama2cEntry, "offset" | "bytes" | "type"> & { quantized: boolean };
  const mat = (name: string, rows: number, cols: number, permuteHeads?: number): Spec => ({
    name,
    shape: [rows, cols],
    quantized: true,
    ...(permuteHeads ? { permuteHeads } : {}),
  });
  const vec = (name: string, n: number): Spec => ({ name, shape: [n], quantized: false });
  const attnNorms = L.map((l) => vec(layer(l, "input_layernorm"), h.dim));
  const ffnNorms = L.map((l) => vec(layer(l, "post_attention_layernorm"), h.dim));
  const finalNorm = vec("model.norm.weight", h.dim);
  const embed = mat("model.embed_tokens.weight", h.vocabSize, h.dim);
  const matrices = [
    ...L.map((l) => mat(layer(l, "self_attn.q_proj"), q, h.dim, h.nHeads)),
    ...L.map((l) => mat(layer(l, "self_attn.k_proj"), kv, h.dim, h.nKvHeads)),
    ...L.map((l) => mat(layer(l, "self_attn.v_proj"), kv, h.dim)),
    ...L.map((l) => mat(layer(l, "self_attn.o_proj"), h.dim, q)),
  ];
  const mlp = [
    ...L.map((l) => mat(layer(l, "mlp.gate_proj"), h.hiddenDim, h.dim)),
    ...L.map((l) => mat(layer(l, "mlp.down_proj"), h.dim, h.hiddenDim)),
    ...L.map((l) => mat(layer(l, "mlp.up_proj"), h.hiddenDim, h.dim)),
  ];
  const head = h.sharedClassifier ? [] : [mat("lm_head.weight", h.vocabSize, h.dim)];
  let specs: Spec[];
  if (h.version === 0) {
    const rope = (name: string): Spec => ({
      name,
      shape: [h.seqLen, headSize / 2],
      quantized: false,
    });
    specs = [
      embed,
      ...attnNorms,
      ...matrices,
      ...ffnNorms,
      ...mlp,
      finalNorm,
      rope("rope.cos"),
      rope("rope.sin"),
      ...head,
    ];
  } else {
    specs = [...attnNorms, ...ffnNorms, finalNorm, embed, ...matrices, ...mlp, ...head];
  }
  let offset = h.headerBytes;
  return specs.map(({ quantized, ...s }) => {
    const numel = s.shape.reduce((a, b) => a * b, 1);
    const type = quantized && h.version === 2 ? "q8" : "f32";
    const bytes = type === "q8" ? numel + (numel / h.groupSize) * 4 : numel * 4;
    const entry: Llama2cEntry = { ...s, type, offset, bytes };
    offset += bytes;
    return entry;
  });
}

/**
 * The exact size of a llama2.c file with this header.
 *
 * @example
 * ```ts ignore
 * llama2cFileBytes(header) === (await Deno.stat(path)).size;
 * ```
 */
export function llama2cFileBytes(h: Llama2cHeader): number {
  const layout = llama2cLayout(h);
  const last = layout[layout.length - 1];
  return last.offset + last.bytes;
}

/**
 * The header llama2.c's export writes for a Hugging Face config.
 *
 * @example
 * ```ts ignore
 * llama2cHeaderFor(config, 2).groupSize; // 64 for dim 4096
 * ```
 */
export function llama2cHeaderFor(c: LlamaConfig, version: 0 | 2): Llama2cHeader {
  if (c.headDim * c.numHeads !== c.hiddenSize) {
    throw new Error(
      `llama2.c files assume head_dim = hidden_size / n_heads; this model has head_dim ` +
        `${c.headDim} with hidden_size ${c.hiddenSize} and ${c.numHeads} heads`,
    );
  }
  return {
    version,
    dim: c.hiddenSize,
    hiddenDim: c.intermediateSize,
    nLayers: c.numLayers,
    nHeads: c.numHeads,
    nKvHeads: c.numKvHeads,
    vocabSize: c.vocabSize,
    seqLen: c.maxPositionEmbeddings,
    sharedClassifier: c.tieWordEmbeddings,
    groupSize: version === 2 ? llama2cGroupSize(c.hiddenSize) : 0,
    headerBytes: version === 0 ? 28 : LLAMA2C_HEADER_BYTES,
  };
}

/** Encodes a header as llama2.c's export writes it (28 bytes for version 0, else 256). */
export function encodeLlama2cHeader(h: Llama2cHeader): Uint8Array {
  const out = new Uint8Array(h.headerBytes);
  const view = new DataView(out.buffer);
  const params = [h.dim, h.hiddenDim, h.nLayers, h.nHeads, h.nKvHeads, h.vocabSize, h.seqLen];
  if (h.version === 0) {
    params[5] = h.sharedClassifier ? h.vocabSize : -h.vocabSize;
    params.forEach((v, i) => view.setInt32(4 * i, v, true));
    return out;
  }
  view.setUint32(0, LLAMA2C_MAGIC, true);
  view.setInt32(4, h.version, true);
  params.forEach((v, i) => view.setInt32(8 + 4 * i, v, true));
  out[36] = h.sharedClassifier ? 1 : 0;
  if (h.version === 2) view.setInt32(37, h.groupSize, true);
  return out;
}

/**
 * Reorders the rows of a q or k weight between Hugging Face's RoPE halves and llama2.c's
 * adjacent pairs: `toLlama2c` moves row `h·d + j·d/2 + i` to `h·d + 2i + j` (export.py's
 * `permute_reverse`), the other way undoes it.
 *
 * @example
 * ```ts
 * import { permuteRopeRows } from "./llama2c.ts";
 * // one head of size 4, one column: HF rows [a, b, c, d] are pairs (a,c), (b,d)
 * permuteRopeRows(new Float32Array([1, 2, 3, 4]), 1, 1, true); // [1, 3, 2, 4]
 * ```
 */
export function permuteRopeRows(
  w: Float32Array,
  heads: number,
  cols: number,
  toLlama2c: boolean,
): Float32Array {
  const rows = w.length / cols;
  const d = rows / heads;
  const out = new Float32Array(w.length);
  for (let h = 0; h < heads; h++) {
    for (let j = 0; j < 2; j++) {
      for (let i = 0; i < d / 2; i++) {
        const hf = h * d + j * (d / 2) + i;
        const l2c = h * d + 2 * i + j;
        const [from, to] = toLlama2c ? [hf, l2c] : [l2c, hf];
        out.set(w.subarray(from * cols, (from + 1) * cols), to * cols);
      }
    }
  }
  return out;
}

/** Rounds half to even, as `torch.round`. */
function roundHalfEven(x: number): number {
  const r = Math.round(x);
  return Math.abs(x - Math.trunc(x)) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/**
 * llama2.c's Q8_0 of `w` in groups of `groupSize`: per group `scale = max|w| / 127` (f32) and
 * `q = round(w / scale)` (ties to even, as torch), in [-127, 127]. An all-zero group gets
 * scale 0 and zeros.
 *
 * @example
 * ```ts
 * import { quantizeLlama2cQ8 } from "./llama2c.ts";
 * const { q, s } = quantizeLlama2cQ8(new Float32Array([0.5, -1, 0.25, 0]), 4);
 * [...q]; // [64, -127, 32, 0]
 * ```
 */
export function quantizeLlama2cQ8(
  w: Float32Array,
  groupSize: number,
): { q: Int8Array; s: Float32Array } {
  if (w.length % groupSize !== 0) {
    throw new RangeError(`${w.length} values are not whole groups of ${groupSize}`);
  }
  const q = new Int8Array(w.length);
  const s = new Float32Array(w.length / groupSize);
  for (let g = 0; g < s.length; g++) {
    const at = g * groupSize;
    let max = 0;
    for (let i = 0; i < groupSize; i++) max = Math.max(max, Math.abs(w[at + i]));
    const scale = Math.fround(max / 127);
    s[g] = scale;
    if (scale === 0) continue;
    for (let i = 0; i < groupSize; i++) {
      q[at + i] = roundHalfEven(Math.fround(w[at + i] / scale));
    }
  }
  return { q, s };
}

/** RoPE's cos/sin tables of version 0 (`seq_len × head_size/2`), as llama2.c's model.py makes them. */
function ropeTable(h: Llama2cHeader, theta: number, fn: (x: number) => number): Float32Array {
  const half = h.dim / h.nHeads / 2;
  const out = new Float32Array(h.seqLen * half);
  for (let i = 0; i < half; i++) {
    const freq = Math.fround(1 / Math.pow(theta, Math.fround((2 * i) / (2 * half))));
    for (let t = 0; t < h.seqLen; t++) out[t * half + i] = fn(Math.fround(t * freq));
  }
  return out;
}

/** Options of {@linkcode exportLlama2c}. */
export interface Llama2cExportOptions {
  /** `llama2c-v0` (legacy f32) or `llama2c-v2` (Q8_0). */
  format: "llama2c-v0" | "llama2c-v2";
  /** Called after each tensor is written. */
  onProgress?: (done: number, total: number, name: string) => void;
}

/** What {@linkcode exportLlama2c} did. */
export interface Llama2cExportResult {
  /** The header written. */
  header: Llama2cHeader;
  /** Bytes written. */
  bytes: number;
  /** Tensors written. */
  tensors: number;
  /** Resident set size when the export started. */
  baselineRssBytes: number;
  /** Highest resident set size seen after each tensor (`Deno.memoryUsage().rss`). */
  peakRssBytes: number;
  /** Bytes of the largest tensor as f32. */
  largestTensorBytes: number;
  /** Notes on what the file cannot carry (RoPE theta, norm epsilon, ...). */
  warnings: string[];
}

/**
 * Writes a Hugging Face Llama directory as a llama2.c file, one tensor at a time (read, permute
 * or quantize, write, drop), so memory stays near one tensor and its converted copy. The file
 * is written beside `out` and renamed over it when complete.
 *
 * @example
 * ```ts ignore
 * const r = await exportLlama2c("models/sotu-llama", "/tmp/sotu.bin", { format: "llama2c-v2" });
 * console.log(r.bytes, r.peakRssBytes);
 * ```
 */
export async function exportLlama2c(
  dir: string,
  out: string,
  options: Llama2cExportOptions,
): Promise<Llama2cExportResult> {
  const version = options.format === "llama2c-v0" ? 0 : 2;
  const config = await loadLlamaConfig(dir);
  const header = llama2cHeaderFor(config, version);
  const warnings: string[] = [];
  if (config.ropeTheta !== 10000) {
    warnings.push(`rope_theta ${config.ropeTheta}: llama2.c's run.c assumes 10000`);
  }
  if (config.ropeScaling) warnings.push("rope_scaling: llama2.c has none");
  if (Math.abs(config.rmsNormEps - 1e-5) > 1e-12) {
    warnings.push(`rms_norm_eps ${config.rmsNormEps}: llama2.c's run.c uses 1e-5`);
  }
  if (version === 2 && header.groupSize < 64) {
    warnings.push(`group size ${header.groupSize}: dim ${header.dim} is not a multiple of 64`);
  }
  const layout = llama2cLayout(header);
  // checks group sizes against every matrix, as export.py asserts
  parseLlama2cHeader(encodeLlama2cHeader(header).slice(), undefined, out);
  const ckpt = await openCheckpoint(dir);
  const tmp = `${out}.${crypto.randomUUID()}.tmp`;
  const file = await Deno.open(tmp, { write: true, create: true, truncate: true });
  const baseline = Deno.memoryUsage().rss;
  let peak = baseline;
  let largest = 0;
  let written = 0;
  const write = async (bytes: Uint8Array) => {
    let at = 0;
    while (at < bytes.byteLength) at += await file.write(bytes.subarray(at));
    written += bytes.byteLength;
  };
  const asBytes = (a: Float32Array | Int8Array) =>
    new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
  try {
    await write(encodeLlama2cHeader(header));
    let done = 0;
    for (const e of layout) {
      if (written !== e.offset) throw new Error(`export: ${e.name} at ${written}, not ${e.offset}`);
      let w: Float32Array;
      if (e.name === "rope.cos" || e.name === "rope.sin") {
        w = ropeTable(header, config.ropeTheta, e.name === "rope.cos" ? Math.cos : Math.sin);
      } else {
        ckpt.expectShape(e.name, e.shape);
        w = await ckpt.readF32(e.name);
        if (e.permuteHeads) w = permuteRopeRows(w, e.permuteHeads, e.shape[1], true);
      }
      largest = Math.max(largest, w.byteLength);
      if (e.type === "q8") {
        const { q, s } = quantizeLlama2cQ8(w, header.groupSize);
        peak = Math.max(peak, Deno.memoryUsage().rss);
        await write(asBytes(q));
        await write(asBytes(s));
      } else {
        peak = Math.max(peak, Deno.memoryUsage().rss);
        await write(asBytes(w));
      }
      options.onProgress?.(++done, layout.length, e.name);
    }
    file.close();
    await Deno.rename(tmp, out);
  } catch (err) {
    try {
      file.close();
    } catch { /* already closed */ }
    await Deno.remove(tmp).catch(() => {});
    throw err;
  } finally {
    ckpt.close();
  }
  return {
    header,
    bytes: written,
    tensors: layout.length,
    baselineRssBytes: baseline,
    peakRssBytes: peak,
    largestTensorBytes: largest,
    warnings,
  };
}

/**
 * A llama2.c file (version 0, 1 or 2) opened as the model loader's weight source: tensors by
 * their Hugging Face names, q and k rows permuted back, Q8_0 dequantized (`q · scale`, as
 * `runq.c`) before the loader rounds them to f16.
 *
 * @example
 * ```ts ignore
 * const src = await Llama2cSource.open("stories15M.bin");
 * const model = await LlamaModel.fromCheckpoint(src.config, src);
 * src.close();
 * ```
 */
export class Llama2cSource {
  /** The file's path. */
  readonly path: string;
  /** Its header. */
  readonly header: Llama2cHeader;
  /** The model config it implies (RoPE theta 10000, norm epsilon 1e-5, as `run.c`). */
  readonly config: LlamaConfig;
  #file: Deno.FsFile;
  #entries: Map<string, Llama2cEntry>;

  private constructor(path: string, header: Llama2cHeader, file: Deno.FsFile) {
    this.path = path;
    this.header = header;
    this.#file = file;
    this.#entries = new Map(llama2cLayout(header).map((e) => [e.name, e]));
    this.config = parseLlamaConfig({
      architectures: ["LlamaForCausalLM"],
      model_type: "llama",
      hidden_act: "silu",
      hidden_size: header.dim,
      intermediate_size: header.hiddenDim,
      num_hidden_layers: header.nLayers,
      num_attention_heads: header.nHeads,
      num_key_value_heads: header.nKvHeads,
      vocab_size: header.vocabSize,
      max_position_embeddings: header.seqLen,
      rms_norm_eps: 1e-5,
      rope_theta: 10000,
      tie_word_embeddings: header.sharedClassifier,
    }, path);
  }

  /** Opens and checks a file (header, padding, group size, exact size). */
  static async open(path: string): Promise<Llama2cSource> {
    const file = await Deno.open(path, { read: true });
    try {
      const size = (await file.stat()).size;
      const head = new Uint8Array(Math.min(LLAMA2C_HEADER_BYTES, size));
      await readExactly(file, head, 0);
      return new Llama2cSource(path, parseLlama2cHeader(head, size, path), file);
    } catch (e) {
      file.close();
      throw e;
    }
  }

  /** Whether the file holds a tensor of this name. */
  has(name: string): boolean {
    return this.#entries.has(name);
  }

  /** Throws unless the tensor exists with this shape. */
  expectShape(name: string, shape: readonly number[]): void {
    const e = this.#entry(name);
    if (e.shape.length !== shape.length || e.shape.some((d, i) => d !== shape[i])) {
      throw new Error(
        `${this.path}: tensor ${name} has shape [${e.shape.join(", ")}], expected [${
          shape.join(", ")
        }]`,
      );
    }
  }

  /** The tensor as f32, in Hugging Face's layout. */
  async readF32(name: string): Promise<Float32Array> {
    const e = this.#entry(name);
    const raw = new Uint8Array(e.bytes);
    await readExactly(this.#file, raw, e.offset);
    let w: Float32Array;
    if (e.type === "f32") {
      w = new Float32Array(raw.buffer);
    } else {
      const numel = e.shape.reduce((a, b) => a * b, 1);
      const q = new Int8Array(raw.buffer, 0, numel);
      const s = new Float32Array(raw.slice(numel).buffer);
      const gs = this.header.groupSize;
      w = new Float32Array(numel);
      for (let i = 0; i < numel; i++) w[i] = q[i] * s[Math.floor(i / gs)];
    }
    return e.permuteHeads ? permuteRopeRows(w, e.permuteHeads, e.shape[1], false) : w;
  }

  /** The tensor as f16 bits (rounded to nearest even). */
  async readF16Bits(name: string): Promise<Uint16Array> {
    return f32ToF16Array(await this.readF32(name));
  }

  /** Closes the file. */
  close(): void {
    this.#file.close();
  }

  #entry(name: string): Llama2cEntry {
    const e = this.#entries.get(name);
    if (!e) {
      throw new Error(
        `${this.path}: no tensor ${name} in a version ${this.header.version} llama2.c file`,
      );
    }
    return e;
  }
}

async function readExactly(file: Deno.FsFile, into: Uint8Array, offset: number): Promise<void> {
  await file.seek(offset, Deno.SeekMode.Start);
  let at = 0;
  while (at < into.byteLength) {
    const n = await file.read(into.subarray(at));
    if (n === null) throw new Error(`unexpected end of file at byte ${offset + at}`);
    at += n;
  }
}

/**
 * Whether `path` is a llama2.c model file rather than a model directory: a regular file not
 * named `.gguf` (its header is checked when opened).
 *
 * @example
 * ```ts ignore
 * if (await isLlama2cFile(path)) model = await LlamaModel.load(path); // reads the .bin
 * ```
 */
export async function isLlama2cFile(path: string): Promise<boolean> {
  if (path.endsWith(".gguf")) return false; // llama.cpp's, read by gguf.ts
  const stat = await Deno.stat(path).catch(() => null);
  return stat?.isFile ?? false;
}

/**
 * Where a llama2.c model's tokenizer lies: a `tokenizer.json` beside the file (preferred: exact
 * Hugging Face tokenization), else a `tokenizer.bin`.
 *
 * @example
 * ```ts ignore
 * await llama2cTokenizerFiles("/m/model.bin"); // { json: "/m/tokenizer.json" } or { bin: ... }
 * ```
 */
export async function llama2cTokenizerFiles(
  path: string,
): Promise<{ dir: string; json?: string; bin?: string }> {
  const dir = dirname(path);
  const exists = async (p: string) => (await Deno.stat(p).catch(() => null))?.isFile ?? false;
  const json = join(dir, "tokenizer.json");
  if (await exists(json)) return { dir, json };
  const bin = join(dir, "tokenizer.bin");
  if (await exists(bin)) return { dir, bin };
  return { dir };
}

/** What {@linkcode llama2cExportMemory} says about one llama2.c version. */
export interface Llama2cExportMemory {
  /** 0 or 2. */
  version: 0 | 2;
  /** Bytes of the file written. */
  outputBytes: number;
  /** Values in the largest tensor. */
  largestTensorValues: number;
  /**
   * RAM our streaming export needs: the process's own ~64 MiB plus about 8 bytes per value of
   * the largest tensor (its stored bytes, its f32 copy, the converted copy, garbage not yet
   * collected) — calibrated on measured runs (a 0.95B-parameter model: 568 MiB for v2, 505 MiB
   * for v0).
   */
  streamingBytes: number;
  /**
   * RAM of converting the whole model at once, as llama2.c's export.py does (it loads the model
   * in f32 and builds its own copy): 6.4 bytes per parameter, as measured for version 2 (5.80 GiB
   * for 0.95B parameters); version 0 adds `struct.pack`'s Python floats for the largest tensor
   * (about 32 bytes per value; not measured).
   */
  wholeModelBytes: number;
}

/**
 * RAM and output size of exporting a model to llama2.c's versions 0 and 2, streaming (ours)
 * or whole-model (llama2.c's export.py), from the config alone.
 *
 * @example
 * ```ts ignore
 * const [v0, v2] = llama2cExportMemory(presetConfig("llama-2-7b"));
 * v2.outputBytes; // ≈ 7.2 GB
 * ```
 */
export function llama2cExportMemory(c: LlamaConfig): Llama2cExportMemory[] {
  let params = 0;
  let largest = 0;
  for (const e of llama2cLayout(llama2cHeaderFor(c, 2))) {
    const n = e.shape.reduce((a, b) => a * b, 1);
    params += n;
    largest = Math.max(largest, n);
  }
  const base = 64 * 2 ** 20;
  return ([0, 2] as const).map((version) => ({
    version,
    outputBytes: llama2cFileBytes(llama2cHeaderFor(c, version)),
    largestTensorValues: largest,
    streamingBytes: base + 8 * largest,
    wholeModelBytes: 6.4 * params + (version === 2 ? 0 : 32 * largest),
  }));
}
