/**
 * Linear layers in llama.cpp's K-quants (Q4_K, Q6_K), as GGUF files store them: the blocks go
 * to the GPU as they are (Q6_K padded to whole words) and `kernels/q_kquant.wgsl` decodes them
 * inside the product. CPU twins: `lib/quant/ggml.ts`.
 *
 * @module
 */

import { type Binding, type CommandBatch, grid, params } from "../gpu/batch.ts";
import type { Gpu } from "../gpu/device.ts";
import type { Kernel } from "../gpu/kernel.ts";
import type { GpuTensor } from "../gpu/tensor.ts";
import type { Q4KWeight, Q6KWeight } from "../quant/ggml.ts";
import { requireBytes } from "./chunks.ts";
import type { Linear } from "./linear.ts";

/**
 * Options for {@linkcode KQuantLinear.create}.
 *
 * @example
 * ```ts ignore
 * const o: KQuantLinearOptions = { label: "blk.0.attn_q", weight: q4KFromGgml(bytes, n, k) };
 * ```
 */
export interface KQuantLinearOptions {
  /** Ledger label of the weight array. */
  label: string;
  /** The blocks (lib/quant/ggml.ts). */
  weight: Q4KWeight | Q6KWeight;
  /** f16 dots of four values where the device has `shader-f16` (default `gpu.f16`). */
  f16?: boolean;
}

/** Threads per output feature, output features per workgroup, rows per workgroup. */
const GPT = 32;
const RPW = 8;
const MT = 4;

/**
 * A Q4_K or Q6_K linear layer. One kernel serves one activation row (decode) and many (a
 * prefill chunk, four rows per pass over the weights).
 *
 * @example
 * ```ts ignore
 * const lin = await KQuantLinear.create(gpu, { label: "w", weight });
 * lin.encode(batch, x, y, rows);
 * lin.destroy();
 * ```
 */
export class KQuantLinear implements Linear {
  /** `"q4_k"` or `"q6_k"`. */
  readonly format: "q4_k" | "q6_k";
  /** K. */
  readonly inFeatures: number;
  /** N. */
  readonly outFeatures: number;
  /** Bytes of the uploaded blocks. */
  readonly weightBytes: number;
  /** Whether the kernel takes its four-value dots in f16. */
  readonly f16: boolean;
  #blocks: GpuTensor | null;
  #kernel: Kernel;

  private constructor(
    w: Q4KWeight | Q6KWeight,
    blocks: GpuTensor,
    kernel: Kernel,
    f16: boolean,
  ) {
    this.format = w.format;
    this.inFeatures = w.k;
    this.outFeatures = w.n;
    this.#blocks = blocks;
    this.weightBytes = blocks.byteSize;
    this.#kernel = kernel;
    this.f16 = f16;
  }

  /** Uploads the blocks and compiles the kernel. */
  static async create(gpu: Gpu, opts: KQuantLinearOptions): Promise<KQuantLinear> {
    const w = opts.weight;
    const f16 = opts.f16 ?? gpu.f16;
    if (f16 && !gpu.f16) {
      throw new Error(`${opts.label}: f16 arithmetic requested but the device lacks shader-f16`);
    }
    if (w.k % 256 !== 0) throw new Error(`${opts.label}: K=${w.k} is not a multiple of 256`);
    if (w.blocks.byteLength > gpu.limits.maxStorageBufferBindingSize) {
      throw new RangeError(
        `${opts.label}: ${w.blocks.byteLength} bytes of ${w.format} blocks exceed one storage ` +
          `binding (${gpu.limits.maxStorageBufferBindingSize})`,
      );
    }
    const kernel = await gpu.kernel({
      file: "q_kquant",
      entry: "gemv",
      defines: [...(w.format === "q6_k" ? ["Q6K"] : []), ...(f16 ? ["F16"] : [])],
      constants: { GPT, RPW, MT },
    });
    const blocks = gpu.tensor({
      label: `${opts.label}.blocks`,
      category: "weights",
      data: w.blocks,
      dtype: "u32",
    });
    return new KQuantLinear(w, blocks, kernel, f16);
  }

  /** Records `y[rows, N] = x[rows, K] · Wᵀ`. */
  encode(batch: CommandBatch, x: Binding, y: Binding, rows: number): void {
    if (!this.#blocks) throw new Error(`${this.format} linear: used after destroy()`);
    if (!Number.isInteger(rows) || rows < 1) throw new RangeError(`linear rows: ${rows}`);
    const { inFeatures: k, outFeatures: n } = this;
    requireBytes(x, rows * k * 4, "linear x");
    requireBytes(y, rows * n * 4, "linear y");
    const p = params().u32(rows).u32(n).u32(k).u32(0).u32(n).build();
    const tiles = Math.ceil(n / RPW) * Math.ceil(rows / MT);
    batch.dispatch(this.#kernel, [x, this.#blocks, y], grid(tiles), p);
  }

  /** Frees the blocks. */
  destroy(): void {
    this.#blocks?.destroy();
    this.#blocks = null;
  }
}
