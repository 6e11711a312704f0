/**
 * Embedding lookup from an FP16 table (`kernels/embedding.wgsl`) and its CPU twin.
 *
 * @module
 */

import { type Binding, type CommandBatch, grid, params } from "../gpu/batch.ts";
import type { Gpu } from "../gpu/device.ts";
import { f16BitsToF32 } from "../gpu/f16.ts";
import type { GpuTensor } from "../gpu/tensor.ts";
import { requireBytes, type RowChunk, tensorRowChunks } from "./chunks.ts";

/**
 * Reference lookup: row `r` of the result is row `ids[r]` of the FP16 table `[vocab, hidden]`
 * (bit patterns), decoded to f32; an id ≥ vocab gives a row of zeros.
 *
 * @example
 * ```ts
 * import { cpuEmbedding } from "./embedding.ts";
 * cpuEmbedding(new Uint32Array([1]), new Uint16Array([0, 0, 0x3c00, 0x4000]), 2, 2); // [1, 2]
 * ```
 */
export function cpuEmbedding(
  ids: Uint32Array,
  table: Uint16Array,
  vocab: number,
  hidden: number,
): Float32Array {
  const out = new Float32Array(ids.length * hidden);
  ids.forEach((id, r) => {
    if (id >= vocab) return;
    for (let i = 0; i < hidden; i++) out[r * hidden + i] = f16BitsToF32(table[id * hidden + i]);
  });
  return out;
}

/** Options for {@linkcode createEmbedding}. */
export interface EmbeddingOptions {
  /** Ledger label when the table is uploaded here. */
  label?: string;
  /** FP16 `[vocab, hidden]`: bit patterns to upload, or a packed-pair tensor to share. */
  table: Uint16Array | GpuTensor;
  /** Rows of the table. */
  vocab: number;
  /** Row width; must be even. */
  hidden: number;
  /** Largest table binding in bytes (default the device's); larger tables are chunked. */
  maxBindingBytes?: number;
}

/** An embedding table on the GPU; see {@linkcode createEmbedding}. */
export interface Embedding {
  /** The packed FP16 table, e.g. to share with a tied LM head. */
  readonly table: GpuTensor;
  /** Rows. */
  readonly vocab: number;
  /** Row width. */
  readonly hidden: number;
  /**
   * Records `out[r, :] = table[ids[r], :]` for `rows` u32 ids; ids ≥ vocab read nothing and
   * give zeros.
   */
  encode(batch: CommandBatch, ids: Binding, out: Binding, rows: number): void;
  /** Frees the table if it was uploaded here (not a shared one). */
  destroy(): void;
}

/**
 * Uploads (or adopts) an FP16 embedding table and compiles the lookup kernel.
 *
 * @example
 * ```ts ignore
 * const embed = await createEmbedding(gpu, { table: bits, vocab: 32000, hidden: 4096 });
 * embed.encode(batch, ids, hiddenState, rows);
 * ```
 */
export async function createEmbedding(gpu: Gpu, opts: EmbeddingOptions): Promise<Embedding> {
  const { vocab, hidden } = opts;
  if (hidden % 2) throw new RangeError(`embedding: hidden size ${hidden} is odd`);
  const owned = opts.table instanceof Uint16Array;
  if (opts.table instanceof Uint16Array && opts.table.length !== vocab * hidden) {
    throw new RangeError(`embedding: ${opts.table.length} values, expected ${vocab}x${hidden}`);
  }
  const table = opts.table instanceof Uint16Array
    ? gpu.tensor({
      label: opts.label ?? "embed_tokens.weight",
      category: "weights",
      data: opts.table,
      shape: [vocab, hidden],
      dtype: "f16x2",
    })
    : opts.table;
  let chunks: RowChunk[];
  let kernel;
  try {
    chunks = tensorRowChunks(gpu, table, vocab, hidden * 2, opts.maxBindingBytes);
    kernel = await gpu.kernel({ file: "embedding", entry: "embedding" });
  } catch (err) {
    if (owned) table.destroy();
    throw err;
  }
  const half = hidden / 2;
  return {
    table,
    vocab,
    hidden,
    encode(batch, ids, out, rows) {
      requireBytes(ids, rows * 4, "embedding ids");
      requireBytes(out, rows * hidden * 4, "embedding out");
      const groups = grid(Math.ceil((rows * half) / 256));
      chunks.forEach(({ start, count, binding }, c) => {
        const last = c === chunks.length - 1 ? 1 : 0;
        const p = params().u32(rows).u32(half).u32(vocab).u32(start).u32(count).u32(last);
        batch.dispatch(kernel, [ids, binding, out], groups, p.build());
      });
    },
    destroy() {
      if (owned) table.destroy();
    },
  };
}
