/**
 * GPU tensors: a `GPUBuffer` with a shape, an element type, and a ledger entry that is released
 * exactly once when the tensor is destroyed.
 *
 * @module
 */

import type { MemoryCategory, MemoryLedger } from "./ledger.ts";

/**
 * How a tensor's bytes are laid out. `f16x2` is two f16 values per `u32` (element `2i` low);
 * `u8x4` is four bytes per `u32` (element `4i` lowest); the quantized formats use `u32` words
 * with a layout documented by their format.
 */
export type TensorDType = "f32" | "f16x2" | "u32" | "i32" | "u8x4";

/** Options for {@linkcode GpuTensor.create}. */
export interface TensorOptions {
  /** Name shown in the ledger and in WebGPU error messages. */
  label: string;
  /** Ledger category. */
  category: MemoryCategory;
  /** Logical shape in elements (informational; kernels receive sizes explicitly). */
  shape?: number[];
  /** Element layout. */
  dtype?: TensorDType;
  /** Size in bytes; rounded up to a multiple of 4. Defaults to `data.byteLength`. */
  byteSize?: number;
  /** Initial contents, uploaded at creation. */
  data?: ArrayBufferView;
  /** Extra usage flags beyond STORAGE | COPY_SRC | COPY_DST. */
  usage?: number;
}

/**
 * A GPU buffer recorded in the memory ledger.
 *
 * @example
 * ```ts ignore
 * import { requestGpu } from "./device.ts";
 * const gpu = await requestGpu();
 * const t = gpu.tensor({ label: "x", category: "activations", data: new Float32Array(4) });
 * t.destroy();
 * ```
 */
export class GpuTensor {
  /** The underlying buffer. */
  readonly buffer: GPUBuffer;
  /** Allocated bytes (what the ledger records). */
  readonly byteSize: number;
  /** Ledger category. */
  readonly category: MemoryCategory;
  /** Label. */
  readonly label: string;
  /** Logical shape. */
  readonly shape: readonly number[];
  /** Element layout. */
  readonly dtype: TensorDType;
  #ledger: MemoryLedger;
  #ledgerId: number | null;

  private constructor(
    buffer: GPUBuffer,
    opts: TensorOptions,
    byteSize: number,
    ledger: MemoryLedger,
  ) {
    this.buffer = buffer;
    this.byteSize = byteSize;
    this.category = opts.category;
    this.label = opts.label;
    this.shape = opts.shape ?? [byteSize / 4];
    this.dtype = opts.dtype ?? "f32";
    this.#ledger = ledger;
    this.#ledgerId = ledger.record(opts.category, opts.label, byteSize);
  }

  /** Creates a tensor on `device`, records it in `ledger`, and uploads `data` if given. */
  static create(device: GPUDevice, ledger: MemoryLedger, opts: TensorOptions): GpuTensor {
    const requested = opts.byteSize ?? opts.data?.byteLength;
    if (requested === undefined) {
      throw new Error(`tensor ${opts.label}: give byteSize or data`);
    }
    const byteSize = Math.max(4, Math.ceil(requested / 4) * 4);
    const maxBuffer = device.limits.maxBufferSize;
    if (byteSize > maxBuffer) {
      throw new Error(
        `tensor ${opts.label}: ${byteSize} bytes exceeds this device's maxBufferSize ` +
          `(${maxBuffer} bytes)`,
      );
    }
    const usage = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST |
      (opts.usage ?? 0);
    const buffer = device.createBuffer({ label: opts.label, size: byteSize, usage });
    const tensor = new GpuTensor(buffer, opts, byteSize, ledger);
    if (opts.data) tensor.write(device, opts.data);
    return tensor;
  }

  /** Uploads `data` at `byteOffset` (both padded to whole words as WebGPU requires). */
  write(device: GPUDevice, data: ArrayBufferView, byteOffset = 0): void {
    if (byteOffset + data.byteLength > this.byteSize) {
      throw new Error(
        `tensor ${this.label}: writing ${data.byteLength} bytes at ${byteOffset} ` +
          `overruns its ${this.byteSize} bytes`,
      );
    }
    const bytes = new Uint8Array(data.buffer as ArrayBuffer, data.byteOffset, data.byteLength);
    const whole = bytes.byteLength & ~3;
    if (whole > 0) device.queue.writeBuffer(this.buffer, byteOffset, bytes, 0, whole);
    if (whole < bytes.byteLength) {
      const tail = new Uint8Array(4);
      tail.set(bytes.subarray(whole));
      device.queue.writeBuffer(this.buffer, byteOffset + whole, tail);
    }
  }

  /** Whether {@linkcode destroy} has been called. */
  get destroyed(): boolean {
    return this.#ledgerId === null;
  }

  /** Frees the buffer and its ledger entry. Safe to call twice. */
  destroy(): void {
    if (this.#ledgerId === null) return;
    this.#ledger.release(this.#ledgerId);
    this.#ledgerId = null;
    this.buffer.destroy();
  }
}
