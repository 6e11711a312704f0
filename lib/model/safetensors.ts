/**
 * The safetensors format, read one tensor at a time: an 8-byte little-endian header length, a
 * JSON header naming each tensor's dtype, shape and byte range, then the raw data. Only the
 * header is held in memory; each read seeks to one tensor's bytes.
 *
 * Also a writer, {@link writeSafetensors}, that never leaves a half-written file behind.
 *
 * @module
 */

import { writeFileAtomic } from "../io/atomic.ts";
import { bf16BitsToF32, f16BitsToF32, f32ToF16Bits } from "../gpu/f16.ts";
import { excerpt, nameOf, parseJsonStrict } from "./json.ts";

/** Bytes per element of every dtype the safetensors format defines. */
const DTYPE_SIZES: Record<string, number> = {
  BOOL: 1,
  U8: 1,
  I8: 1,
  F8_E4M3: 1,
  F8_E5M2: 1,
  U16: 2,
  I16: 2,
  F16: 2,
  BF16: 2,
  U32: 4,
  I32: 4,
  F32: 4,
  U64: 8,
  I64: 8,
  F64: 8,
};

/** The HF reference implementation refuses headers above 100 MB; so do we. */
const MAX_HEADER_BYTES = 100_000_000;

/** Deepest JSON nesting a header needs is 3 (`{name: {shape: [...]}}`); allow a little more. */
const MAX_HEADER_DEPTH = 8;

/** Most dimensions of a tensor (PyTorch allows 64; real checkpoints use up to 5). */
const MAX_RANK = 64;

/**
 * Where one tensor lives in a safetensors file.
 *
 * @example
 * ```ts
 * import type { TensorInfo } from "./safetensors.ts";
 * const info: TensorInfo = { name: "w", dtype: "F16", shape: [2, 3], begin: 0, end: 12 };
 * ```
 */
export interface TensorInfo {
  /** Tensor name, e.g. `model.layers.0.mlp.up_proj.weight`. */
  name: string;
  /** Safetensors dtype string: `F32`, `F16`, `BF16`, `I8`, ... */
  dtype: string;
  /** Dimensions, outermost first (row-major). */
  shape: number[];
  /** First byte of the data, relative to the start of the data section. */
  begin: number;
  /** One past the last byte of the data, relative to the start of the data section. */
  end: number;
}

/**
 * Number of elements of a shape (1 for a scalar).
 *
 * @example
 * ```ts
 * import { numel } from "./safetensors.ts";
 * numel([2, 3]); // 6
 * ```
 */
export function numel(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

/**
 * Bytes per element of a safetensors dtype, or `undefined` for an unknown one.
 *
 * @example
 * ```ts
 * import { dtypeSize } from "./safetensors.ts";
 * dtypeSize("BF16"); // 2
 * ```
 */
export function dtypeSize(dtype: string): number | undefined {
  return DTYPE_SIZES[dtype];
}

/**
 * An open safetensors file. Reads are serialised on one file handle; call {@link close} (or use
 * `using`) when done.
 *
 * @example
 * ```ts ignore
 * import { openSafetensors } from "./safetensors.ts";
 * using st = await openSafetensors("model.safetensors");
 * const w = await st.readF32("model.norm.weight");
 * ```
 */
export class SafetensorsFile {
  /** Path the file was opened from. */
  readonly path: string;
  /** Every tensor in header order. */
  readonly tensors: ReadonlyMap<string, TensorInfo>;
  /** The header's `__metadata__` string map (empty when absent). */
  readonly metadata: Readonly<Record<string, string>>;
  /** Byte offset of the data section: 8 + header length. */
  readonly dataOffset: number;
  #file: Deno.FsFile;
  #queue: Promise<unknown> = Promise.resolve();
  #closed = false;
  #checkFinite: boolean;

  /** Use {@link openSafetensors}; this constructor trusts an already validated header. */
  constructor(
    path: string,
    file: Deno.FsFile,
    tensors: Map<string, TensorInfo>,
    metadata: Record<string, string>,
    dataOffset: number,
    options: OpenSafetensorsOptions = {},
  ) {
    this.#checkFinite = options.checkFinite ?? true;
    this.path = path;
    this.#file = file;
    this.tensors = tensors;
    this.metadata = metadata;
    this.dataOffset = dataOffset;
  }

  /**
   * Tensor names in header order.
   *
   * @example
   * ```ts ignore
   * st.names(); // ["model.embed_tokens.weight", ...]
   * ```
   */
  names(): string[] {
    return [...this.tensors.keys()];
  }

  /**
   * The info of one tensor; throws naming the file and tensor when it is absent.
   *
   * @example
   * ```ts ignore
   * st.info("model.norm.weight").shape; // [4096]
   * ```
   */
  info(name: string): TensorInfo {
    const info = this.tensors.get(name);
    if (!info) throw new Error(`tensor ${name} not found in ${this.path}`);
    return info;
  }

  /**
   * The tensor's bytes exactly as stored (little-endian), in a fresh, aligned buffer.
   *
   * @example
   * ```ts ignore
   * const bytes = await st.readRaw("model.norm.weight");
   * ```
   */
  async readRaw(name: string): Promise<Uint8Array> {
    const info = this.info(name);
    // One handle, one cursor: chain reads so a seek from one cannot interleave with another.
    const result = this.#queue.then(() => this.#readAt(this.dataOffset + info.begin, info));
    this.#queue = result.catch(() => {});
    return await result;
  }

  /**
   * The tensor as f32 values, converting from F16 or BF16.
   *
   * @example
   * ```ts ignore
   * const w = await st.readF32("model.norm.weight");
   * ```
   */
  async readF32(name: string): Promise<Float32Array> {
    const info = this.info(name);
    checkFloatDtype(this.path, info);
    const bytes = await this.readRaw(name);
    // Hosts Deno runs on are little-endian, like the format, so typed views read it directly.
    if (info.dtype === "F32") return new Float32Array(bytes.buffer, 0, bytes.length / 4);
    const bits = new Uint16Array(bytes.buffer, 0, bytes.length / 2);
    const out = new Float32Array(bits.length);
    const decode = info.dtype === "F16" ? f16BitsToF32 : bf16BitsToF32;
    for (let i = 0; i < bits.length; i++) out[i] = decode(bits[i]);
    return out;
  }

  /**
   * The tensor as f16 bit patterns; F32 and BF16 are rounded to nearest, ties to even.
   *
   * @example
   * ```ts ignore
   * const bits = await st.readF16Bits("model.layers.0.self_attn.q_proj.weight");
   * ```
   */
  async readF16Bits(name: string): Promise<Uint16Array> {
    const info = this.info(name);
    checkFloatDtype(this.path, info);
    const bytes = await this.readRaw(name);
    if (info.dtype === "F16") return new Uint16Array(bytes.buffer, 0, bytes.length / 2);
    const out = new Uint16Array(numel(info.shape));
    if (info.dtype === "F32") {
      const f = new Float32Array(bytes.buffer, 0, out.length);
      for (let i = 0; i < out.length; i++) out[i] = f32ToF16Bits(f[i]);
    } else {
      const b = new Uint16Array(bytes.buffer, 0, out.length);
      for (let i = 0; i < out.length; i++) out[i] = f32ToF16Bits(bf16BitsToF32(b[i]));
    }
    return out;
  }

  /**
   * Closes the file handle. Safe to call twice.
   *
   * @example
   * ```ts ignore
   * st.close();
   * ```
   */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#file.close();
  }

  /** Closes the file handle at the end of a `using` block. */
  [Symbol.dispose](): void {
    this.close();
  }

  async #readAt(position: number, info: TensorInfo): Promise<Uint8Array> {
    if (this.#closed) throw new Error(`${this.path} is closed (reading tensor ${info.name})`);
    const out = new Uint8Array(info.end - info.begin);
    await this.#file.seek(position, Deno.SeekMode.Start);
    let got = 0;
    while (got < out.length) {
      const n = await this.#file.read(out.subarray(got));
      if (n === null) {
        throw new Error(
          `${this.path}: file ended after ${got} of ${out.length} bytes of tensor ${info.name} ` +
            `(was it truncated after opening?)`,
        );
      }
      got += n;
    }
    if (this.#checkFinite) checkFinite(this.path, info, out);
    return out;
  }
}

/**
 * Index of the first NaN or infinity among float values stored as `dtype` in `bytes`, or -1;
 * -1 too for dtypes that are not floating point. Fast: exponent fields are tested two f16 (or
 * bf16) values per 32-bit word, OR-ed over a block, and only a block that trips is searched.
 *
 * @example
 * ```ts
 * import { firstNonFinite } from "./safetensors.ts";
 * firstNonFinite(new Uint8Array(new Float32Array([1, NaN]).buffer), "F32"); // 1
 * ```
 */
export function firstNonFinite(bytes: Uint8Array, dtype: string): number {
  const aligned = bytes.byteOffset % 8 === 0 ? bytes : bytes.slice();
  if (dtype === "F64") {
    const f = new Float64Array(aligned.buffer, aligned.byteOffset, aligned.byteLength >> 3);
    for (let i = 0; i < f.length; i++) if (!Number.isFinite(f[i])) return i;
    return -1;
  }
  let mask: number; // the exponent field of each value in a word
  let carry: number; // one unit of that field: all-ones exponent + carry sets the top bit
  let perWord: number;
  if (dtype === "F32") [mask, carry, perWord] = [0x7f800000, 0x00800000, 1];
  else if (dtype === "F16") [mask, carry, perWord] = [0x7c007c00, 0x04000400, 2];
  else if (dtype === "BF16") [mask, carry, perWord] = [0x7f807f80, 0x00800080, 2];
  else return -1;
  const top = perWord === 1 ? 0x80000000 : 0x80008000;
  const words = new Uint32Array(aligned.buffer, aligned.byteOffset, aligned.byteLength >> 2);
  const BLOCK = 4096;
  for (let start = 0; start < words.length; start += BLOCK) {
    const stop = Math.min(words.length, start + BLOCK);
    let acc = 0;
    for (let i = start; i < stop; i++) acc |= (words[i] & mask) + carry;
    if ((acc & top) === 0) continue;
    for (let i = start; i < stop; i++) {
      const hit = ((words[i] & mask) + carry) & top;
      if (hit === 0) continue;
      // Little-endian: the low half is the earlier value.
      return perWord === 1 ? i : 2 * i + ((hit & 0x8000) !== 0 ? 0 : 1);
    }
  }
  // An odd number of 16-bit values leaves one outside the whole words.
  if (perWord === 2 && (aligned.byteLength & 3) === 2) {
    const last = aligned[aligned.byteLength - 2] | (aligned[aligned.byteLength - 1] << 8);
    if ((((last & (mask & 0xffff)) + (carry & 0xffff)) & 0x8000) !== 0) return words.length * 2;
  }
  return -1;
}

/** Throws naming the file, tensor, position and value of the first non-finite element. */
function checkFinite(path: string, info: TensorInfo, bytes: Uint8Array): void {
  const first = firstNonFinite(bytes, info.dtype);
  if (first < 0) return;
  const size = DTYPE_SIZES[info.dtype];
  const value = (i: number): number => {
    const view = new DataView(bytes.buffer, bytes.byteOffset + i * size, size);
    if (info.dtype === "F32") return view.getFloat32(0, true);
    if (info.dtype === "F64") return view.getFloat64(0, true);
    const bits = view.getUint16(0, true);
    return info.dtype === "F16" ? f16BitsToF32(bits) : bf16BitsToF32(bits);
  };
  const total = bytes.length / size;
  let count = 0;
  for (let i = first; i < total; i++) if (!Number.isFinite(value(i))) count++;
  const at = unravel(first, info.shape);
  throw new Error(
    `${path}: tensor ${info.name} holds ${count} non-finite value${count === 1 ? "" : "s"} ` +
      `(first: ${value(first)} at index [${at.join(", ")}] of shape [${info.shape.join(", ")}]); ` +
      `the weights are corrupt`,
  );
}

function unravel(flat: number, shape: readonly number[]): number[] {
  const at = new Array<number>(shape.length);
  for (let d = shape.length - 1; d >= 0; d--) {
    at[d] = flat % shape[d];
    flat = Math.floor(flat / shape[d]);
  }
  return at;
}

function checkFloatDtype(path: string, info: TensorInfo): void {
  if (info.dtype !== "F32" && info.dtype !== "F16" && info.dtype !== "BF16") {
    throw new Error(
      `${path}: tensor ${info.name} has dtype ${info.dtype}; only F32, F16 and BF16 can be read ` +
        `as floating point`,
    );
  }
}

/**
 * Options of {@link openSafetensors}.
 *
 * @example
 * ```ts
 * import type { OpenSafetensorsOptions } from "./safetensors.ts";
 * const o: OpenSafetensorsOptions = { checkFinite: false };
 * ```
 */
export interface OpenSafetensorsOptions {
  /**
   * Refuse a floating-point tensor (F16, BF16, F32, F64) holding NaN or infinity when it is read
   * (default true). The test costs well under a nanosecond per value.
   */
  checkFinite?: boolean;
}

/**
 * Opens a safetensors file and validates its header against the file size and the format's
 * rules: the header length, strict JSON (no duplicate keys, nesting bounded), a string-to-string
 * `__metadata__`, every tensor's dtype, shape and byte range, and byte ranges that tile the data
 * section exactly. Tensor data is not read here; each read checks float tensors for NaN and
 * infinity (see {@link OpenSafetensorsOptions.checkFinite}).
 *
 * @example
 * ```ts ignore
 * import { openSafetensors } from "./safetensors.ts";
 * using st = await openSafetensors("model.safetensors");
 * console.log(st.names());
 * ```
 */
export async function openSafetensors(
  path: string,
  options: OpenSafetensorsOptions = {},
): Promise<SafetensorsFile> {
  const file = await openFileNamed(path);
  try {
    const fileSize = (await file.stat()).size;
    if (fileSize < 8) {
      throw new Error(`${path}: ${fileSize} bytes is too short for a safetensors file (need 8+)`);
    }
    const lenBytes = new Uint8Array(8);
    await readExactly(file, lenBytes, path, "header length");
    const headerLen = Number(new DataView(lenBytes.buffer).getBigUint64(0, true));
    if (headerLen < 2 || headerLen > MAX_HEADER_BYTES) {
      throw new Error(
        `${path}: header length ${headerLen} is not plausible (limit ${MAX_HEADER_BYTES}); ` +
          `not a safetensors file, or corrupt`,
      );
    }
    if (8 + headerLen > fileSize) {
      throw new Error(
        `${path}: header claims ${headerLen} bytes but the file has only ${fileSize - 8} after ` +
          `the length field (truncated?)`,
      );
    }
    const headerBytes = new Uint8Array(headerLen);
    await readExactly(file, headerBytes, path, "header");
    let text: string;
    try {
      text = new TextDecoder("utf-8", { fatal: true }).decode(headerBytes);
    } catch {
      throw new Error(`${path}: header is not valid UTF-8 (corrupt, or not a safetensors file)`);
    }
    const header = parseJsonStrict(text, `${path}: header`, { maxDepth: MAX_HEADER_DEPTH });
    const dataOffset = 8 + headerLen;
    const { tensors, metadata } = parseHeader(path, header, fileSize - dataOffset);
    return new SafetensorsFile(path, file, tensors, metadata, dataOffset, options);
  } catch (e) {
    file.close();
    throw e;
  }
}

async function openFileNamed(path: string): Promise<Deno.FsFile> {
  try {
    if ((await Deno.stat(path)).isDirectory) {
      throw new Error(`${path}: is a directory, not a safetensors file`);
    }
    return await Deno.open(path, { read: true });
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) throw new Error(`${path}: no such file`);
    if (e instanceof Deno.errors.PermissionDenied) throw new Error(`${path}: permission denied`);
    throw e;
  }
}

async function readExactly(
  file: Deno.FsFile,
  buf: Uint8Array,
  path: string,
  what: string,
): Promise<void> {
  let got = 0;
  while (got < buf.length) {
    const n = await file.read(buf.subarray(got));
    if (n === null) throw new Error(`${path}: file ended while reading the ${what}`);
    got += n;
  }
}

/**
 * Checks a parsed header against the format's rules (those of Hugging Face's `safetensors`):
 * `__metadata__` is a string-to-string map; every tensor has a known dtype, a shape of sizes
 * and `data_offsets` whose length matches them; and the tensors' byte ranges, taken in order,
 * are contiguous from byte 0 and end exactly where the file does: no gap, no overlap, no byte
 * left over.
 */
function parseHeader(
  path: string,
  header: unknown,
  dataSize: number,
): { tensors: Map<string, TensorInfo>; metadata: Record<string, string> } {
  if (typeof header !== "object" || header === null || Array.isArray(header)) {
    throw new Error(`${path}: header is not a JSON object (got ${excerpt(header)})`);
  }
  const tensors = new Map<string, TensorInfo>();
  let metadata: Record<string, string> = {};
  for (const [name, raw] of Object.entries(header as Record<string, unknown>)) {
    if (name === "__metadata__") {
      if (typeof raw !== "object" || raw === null || Array.isArray(raw)) {
        throw new Error(
          `${path}: __metadata__ must be an object of strings, got ${excerpt(raw)}`,
        );
      }
      for (const [key, value] of Object.entries(raw)) {
        if (typeof value !== "string") {
          throw new Error(
            `${path}: __metadata__ value of ${excerpt(key)} must be a string, got ` +
              `${excerpt(value)}`,
          );
        }
      }
      metadata = raw as Record<string, string>;
      continue;
    }
    const where = `${path}: tensor ${nameOf(name)}`;
    if (typeof raw !== "object" || raw === null || Array.isArray(raw)) {
      throw new Error(`${where}: entry is not an object (got ${excerpt(raw)})`);
    }
    const entry = raw as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
    const size = typeof entry.dtype === "string" && Object.hasOwn(DTYPE_SIZES, entry.dtype)
      ? DTYPE_SIZES[entry.dtype]
      : undefined;
    if (size === undefined) throw new Error(`${where}: unknown dtype ${excerpt(entry.dtype)}`);
    const shape = entry.shape;
    if (
      !Array.isArray(shape) || shape.length > MAX_RANK ||
      !shape.every((d) => Number.isSafeInteger(d) && d >= 0)
    ) {
      throw new Error(
        `${where}: shape ${excerpt(shape)} is not a list of at most ${MAX_RANK} sizes`,
      );
    }
    const offsets = entry.data_offsets;
    if (
      !Array.isArray(offsets) || offsets.length !== 2 ||
      !offsets.every((o) => Number.isSafeInteger(o) && o >= 0) || offsets[0] > offsets[1]
    ) {
      throw new Error(`${where}: data_offsets ${excerpt(offsets)} is not [begin, end]`);
    }
    const [begin, end] = offsets as [number, number];
    const expected = numel(shape) * size;
    if (!Number.isSafeInteger(expected)) {
      throw new Error(`${where}: shape ${excerpt(shape)} is too large`);
    }
    if (end - begin !== expected) {
      throw new Error(
        `${where}: ${end - begin} bytes stored, but shape [${shape.join(", ")}] of ` +
          `${entry.dtype} needs ${expected}`,
      );
    }
    if (end > dataSize) {
      throw new Error(
        `${where}: data ends at byte ${end} of the data section, but the file holds only ` +
          `${dataSize} data bytes (truncated?)`,
      );
    }
    tensors.set(name, { name, dtype: entry.dtype as string, shape: [...shape], begin, end });
  }
  checkLayout(path, [...tensors.values()], dataSize);
  return { tensors, metadata };
}

/** Byte ranges in order must tile the data section exactly. */
function checkLayout(path: string, infos: TensorInfo[], dataSize: number): void {
  infos.sort((a, b) => a.begin - b.begin || a.end - b.end);
  let at = 0;
  let previous: TensorInfo | undefined;
  for (const info of infos) {
    if (info.begin !== at) {
      const name = nameOf(info.name);
      throw new Error(
        info.begin > at
          ? `${path}: tensor ${name} starts at byte ${info.begin} of the data section, but ` +
            (previous
              ? `tensor ${nameOf(previous.name)} ends at ${at}`
              : "the data section starts at 0") +
            `: ${info.begin - at} bytes belong to no tensor (corrupt or shifted data)`
          : `${path}: tensor ${name} (bytes ${info.begin}..${info.end}) overlaps tensor ` +
            `${nameOf(previous!.name)} (bytes ${previous!.begin}..${previous!.end})`,
      );
    }
    at = info.end;
    previous = info;
  }
  if (at !== dataSize) {
    throw new Error(
      `${path}: the tensors end at byte ${at} of the data section, but the file has ` +
        `${dataSize} data bytes: ${dataSize - at} bytes after ` +
        (previous ? `the last tensor, ${nameOf(previous.name)}` : "an empty header") +
        ` belong to no tensor (wrong header length, or bytes inserted or appended)`,
    );
  }
}

/**
 * A tensor to write. `data` is either the raw little-endian bytes, f16/bf16 bit patterns
 * (`Uint16Array`, for F16/BF16), or f32 values (`Float32Array`), which are rounded to the
 * target dtype (nearest, ties to even) when it is F16 or BF16.
 *
 * @example
 * ```ts
 * import type { TensorToWrite } from "./safetensors.ts";
 * const t: TensorToWrite = { dtype: "F16", shape: [2], data: new Float32Array([1, 2]) };
 * ```
 */
export interface TensorToWrite {
  /** Safetensors dtype string. */
  dtype: string;
  /** Dimensions, outermost first. */
  shape: number[];
  /** Values (see the interface doc for the accepted forms). */
  data: Float32Array | Uint16Array | Uint8Array;
}

/**
 * Rounds an f32 value to bfloat16 (nearest, ties to even) and returns its 16-bit pattern.
 *
 * @example
 * ```ts
 * import { f32ToBf16Bits } from "./safetensors.ts";
 * f32ToBf16Bits(1); // 0x3f80
 * ```
 */
export function f32ToBf16Bits(value: number): number {
  const f = new Float32Array([value]);
  const x = new Uint32Array(f.buffer)[0];
  if ((x & 0x7f800000) === 0x7f800000 && (x & 0x7fffff) !== 0) return (x >>> 16) | 0x40; // NaN
  const rounded = x + 0x7fff + ((x >>> 16) & 1);
  return (rounded >>> 16) & 0xffff;
}

function tensorBytes(name: string, t: TensorToWrite): Uint8Array {
  const size = DTYPE_SIZES[t.dtype];
  if (size === undefined) throw new Error(`tensor ${name}: unknown dtype ${t.dtype}`);
  const n = numel(t.shape);
  let bytes: Uint8Array;
  if (t.data instanceof Float32Array && t.dtype !== "F32") {
    if (t.dtype !== "F16" && t.dtype !== "BF16") {
      throw new Error(`tensor ${name}: cannot convert f32 values to ${t.dtype}`);
    }
    const bits = new Uint16Array(t.data.length);
    const round = t.dtype === "F16" ? f32ToF16Bits : f32ToBf16Bits;
    for (let i = 0; i < bits.length; i++) bits[i] = round(t.data[i]);
    bytes = new Uint8Array(bits.buffer);
  } else {
    bytes = new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);
  }
  if (bytes.length !== n * size) {
    throw new Error(
      `tensor ${name}: ${bytes.length} bytes of data, but shape [${t.shape.join(", ")}] of ` +
        `${t.dtype} needs ${n * size}`,
    );
  }
  return bytes;
}

/**
 * Writes tensors to a safetensors file atomically: everything goes to a temporary file in the
 * same directory, renamed over `path` only once complete, so an error leaves no partial file.
 *
 * @example
 * ```ts ignore
 * import { writeSafetensors } from "./safetensors.ts";
 * await writeSafetensors("out.safetensors", {
 *   "w": { dtype: "F32", shape: [2], data: new Float32Array([1, 2]) },
 * }, { format: "pt" });
 * ```
 */
export async function writeSafetensors(
  path: string,
  tensors: Record<string, TensorToWrite>,
  metadata?: Record<string, string>,
): Promise<void> {
  const header: Record<string, unknown> = {};
  if (metadata) header.__metadata__ = metadata;
  const chunks: Uint8Array[] = [];
  let offset = 0;
  for (const [name, t] of Object.entries(tensors)) {
    if (name === "__metadata__") throw new Error(`"__metadata__" is not a valid tensor name`);
    const bytes = tensorBytes(name, t);
    header[name] = {
      dtype: t.dtype,
      shape: t.shape,
      data_offsets: [offset, offset + bytes.length],
    };
    chunks.push(bytes);
    offset += bytes.length;
  }
  let json = new TextEncoder().encode(JSON.stringify(header));
  // Pad the header with spaces so the data section starts 8-byte aligned, as the HF writer does.
  const padded = Math.ceil(json.length / 8) * 8;
  if (padded !== json.length) {
    const p = new Uint8Array(padded).fill(0x20);
    p.set(json);
    json = p;
  }
  const lenBytes = new Uint8Array(8);
  new DataView(lenBytes.buffer).setBigUint64(0, BigInt(json.length), true);

  await writeFileAtomic(path, async (file) => {
    for (const chunk of [lenBytes, json, ...chunks]) await writeAll(file, chunk);
  });
}

async function writeAll(file: Deno.FsFile, bytes: Uint8Array): Promise<void> {
  let done = 0;
  while (done < bytes.length) done += await file.write(bytes.subarray(done));
}
