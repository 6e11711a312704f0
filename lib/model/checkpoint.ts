/**
 * A model's weights as one set of named tensors, whether stored in a single `model.safetensors`
 * or sharded across files listed by `model.safetensors.index.json`.
 *
 * @module
 */

import { join } from "node:path";
import { excerpt, nameOf, readJsonStrict } from "./json.ts";
import {
  openSafetensors,
  type OpenSafetensorsOptions,
  type SafetensorsFile,
  type TensorInfo,
} from "./safetensors.ts";

/**
 * Where a tensor of a checkpoint lives: its header info plus the shard file holding it.
 *
 * @example
 * ```ts ignore
 * const { file, shape } = ckpt.info("model.norm.weight");
 * ```
 */
export interface CheckpointTensorInfo extends TensorInfo {
  /** Path of the safetensors file holding the tensor. */
  file: string;
}

/**
 * An open checkpoint directory. Tensors are read one at a time; {@link close} releases the
 * shard file handles.
 *
 * @example
 * ```ts ignore
 * import { openCheckpoint } from "./checkpoint.ts";
 * using ckpt = await openCheckpoint("models/sotu-llama");
 * const norm = await ckpt.readF32("model.norm.weight");
 * ```
 */
export class Checkpoint {
  /** The directory the checkpoint was opened from. */
  readonly dir: string;
  /** The safetensors files, in index order. */
  readonly files: readonly SafetensorsFile[];
  #where: Map<string, SafetensorsFile>;

  /** Use {@link openCheckpoint}. */
  constructor(dir: string, files: SafetensorsFile[], where: Map<string, SafetensorsFile>) {
    this.dir = dir;
    this.files = files;
    this.#where = where;
  }

  /**
   * All tensor names, across shards.
   *
   * @example
   * ```ts ignore
   * ckpt.names().length;
   * ```
   */
  names(): string[] {
    return [...this.#where.keys()];
  }

  /**
   * Whether the checkpoint has a tensor of this name.
   *
   * @example
   * ```ts ignore
   * ckpt.has("lm_head.weight"); // false for tied embeddings
   * ```
   */
  has(name: string): boolean {
    return this.#where.has(name);
  }

  /**
   * A tensor's dtype, shape, byte range and file; throws naming the tensor and the files checked.
   *
   * @example
   * ```ts ignore
   * ckpt.info("model.embed_tokens.weight").shape; // [32000, 4096]
   * ```
   */
  info(name: string): CheckpointTensorInfo {
    const file = this.#file(name);
    return { ...file.info(name), file: file.path };
  }

  /**
   * Throws unless the tensor exists with exactly this shape; the message names both shapes.
   *
   * @example
   * ```ts ignore
   * ckpt.expectShape("model.norm.weight", [config.hiddenSize]);
   * ```
   */
  expectShape(name: string, shape: readonly number[]): void {
    const info = this.info(name);
    const same = info.shape.length === shape.length && info.shape.every((d, i) => d === shape[i]);
    if (!same) {
      throw new Error(
        `tensor ${name} in ${info.file} has shape [${info.shape.join(", ")}], but the config ` +
          `implies [${shape.join(", ")}]`,
      );
    }
  }

  /**
   * The tensor as f32 values (converted from F16/BF16).
   *
   * @example
   * ```ts ignore
   * const w = await ckpt.readF32("model.layers.0.mlp.up_proj.weight");
   * ```
   */
  async readF32(name: string): Promise<Float32Array> {
    return await this.#file(name).readF32(name);
  }

  /**
   * The tensor as f16 bit patterns (F32/BF16 rounded to nearest, ties to even).
   *
   * @example
   * ```ts ignore
   * const bits = await ckpt.readF16Bits("model.layers.0.mlp.up_proj.weight");
   * ```
   */
  async readF16Bits(name: string): Promise<Uint16Array> {
    return await this.#file(name).readF16Bits(name);
  }

  /**
   * The tensor's stored bytes.
   *
   * @example
   * ```ts ignore
   * const bytes = await ckpt.readRaw("model.norm.weight");
   * ```
   */
  async readRaw(name: string): Promise<Uint8Array> {
    return await this.#file(name).readRaw(name);
  }

  /**
   * Closes every shard file.
   *
   * @example
   * ```ts ignore
   * ckpt.close();
   * ```
   */
  close(): void {
    for (const f of this.files) f.close();
  }

  /** Closes every shard file at the end of a `using` block. */
  [Symbol.dispose](): void {
    this.close();
  }

  #file(name: string): SafetensorsFile {
    const file = this.#where.get(name);
    if (!file) {
      const checked = this.files.map((f) => f.path.slice(this.dir.length).replace(/^[/\\]/, ""));
      throw new Error(`tensor ${name} not found in ${this.dir} (checked: ${checked.join(", ")})`);
    }
    return file;
  }
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return false;
    throw e;
  }
}

/**
 * Opens the weights of a Hugging Face model directory: `model.safetensors`, or the shards named
 * by `model.safetensors.index.json`. Every shard's header is validated; every tensor the index
 * names must be in the shard it points to, and every tensor of a shard must be listed there.
 *
 * @example
 * ```ts ignore
 * import { openCheckpoint } from "./checkpoint.ts";
 * const ckpt = await openCheckpoint("models/sotu-llama");
 * console.log(ckpt.names());
 * ckpt.close();
 * ```
 */
export async function openCheckpoint(
  dir: string,
  options: OpenSafetensorsOptions = {},
): Promise<Checkpoint> {
  await expectDirectory(dir);
  const indexPath = join(dir, "model.safetensors.index.json");
  const singlePath = join(dir, "model.safetensors");
  const opened: SafetensorsFile[] = [];
  try {
    const where = new Map<string, SafetensorsFile>();
    if (await exists(indexPath)) {
      const weightMap = parseIndex(indexPath, await readJsonStrict(indexPath));
      const shards = new Map<string, SafetensorsFile>();
      for (const [name, shard] of weightMap) {
        let file = shards.get(shard);
        if (!file) {
          const path = join(dir, shard);
          if (!(await exists(path))) {
            throw new Error(`${indexPath}: shard ${shard} (holding tensor ${name}) is missing`);
          }
          file = await openSafetensors(path, options);
          opened.push(file);
          shards.set(shard, file);
        }
        if (!file.tensors.has(name)) {
          throw new Error(`${indexPath}: tensor ${name} is mapped to ${shard}, which lacks it`);
        }
        where.set(name, file);
      }
      // A tensor the index does not list would be silently ignored: the shard or the index is
      // not what was written together.
      for (const [shard, file] of shards) {
        for (const name of file.tensors.keys()) {
          if (where.get(name) !== file) {
            throw new Error(
              `${indexPath}: shard ${shard} holds tensor ${name}, which the index ` +
                (where.has(name) ? `maps to another shard` : `does not list`),
            );
          }
        }
      }
    } else if (await exists(singlePath)) {
      const file = await openSafetensors(singlePath, options);
      opened.push(file);
      for (const name of file.tensors.keys()) where.set(name, file);
    } else {
      throw new Error(
        `no weights in ${dir}: expected model.safetensors or model.safetensors.index.json`,
      );
    }
    return new Checkpoint(dir, opened, where);
  } catch (e) {
    for (const f of opened) f.close();
    throw e;
  }
}

/**
 * The `weight_map` of a `model.safetensors.index.json`: tensor name to shard file name. Shard
 * names must be plain file names in the same directory.
 */
function parseIndex(indexPath: string, raw: unknown): Map<string, string> {
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) {
    throw new Error(`${indexPath}: expected a JSON object, got ${excerpt(raw)}`);
  }
  const r = raw as Record<string, unknown>;
  const metadata = r.metadata;
  if (metadata != null && (typeof metadata !== "object" || Array.isArray(metadata))) {
    throw new Error(`${indexPath}: metadata must be an object, got ${excerpt(metadata)}`);
  }
  const weightMap = r.weight_map;
  if (typeof weightMap !== "object" || weightMap === null || Array.isArray(weightMap)) {
    throw new Error(`${indexPath}: weight_map must be an object, got ${excerpt(weightMap)}`);
  }
  const out = new Map<string, string>();
  for (const [name, shard] of Object.entries(weightMap)) {
    if (typeof shard !== "string") {
      throw new Error(
        `${indexPath}: weight_map entry of tensor ${nameOf(name)} must be a shard file ` +
          `name, got ${excerpt(shard)}`,
      );
    }
    if (
      shard.length === 0 || shard.length > 255 || /[/\\\0]/.test(shard) || shard === "." ||
      shard === ".."
    ) {
      throw new Error(
        `${indexPath}: weight_map maps tensor ${nameOf(name)} to ${excerpt(shard)}, ` +
          `which is not a file name in the model directory`,
      );
    }
    out.set(name, shard);
  }
  if (out.size === 0) throw new Error(`${indexPath}: weight_map lists no tensors`);
  return out;
}

/**
 * Throws a plain message unless `dir` is an existing directory: "no such directory", or "is a
 * file, not a directory".
 *
 * @example
 * ```ts ignore
 * import { expectDirectory } from "./checkpoint.ts";
 * await expectDirectory("models/sotu-llama");
 * ```
 */
export async function expectDirectory(dir: string): Promise<void> {
  let stat: Deno.FileInfo;
  try {
    stat = await Deno.stat(dir);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) throw new Error(`${dir}: no such directory`);
    throw e;
  }
  if (!stat.isDirectory) throw new Error(`${dir}: is a file, not a model directory`);
}
