/**
 * Adapter and device choice. One {@linkcode Gpu} owns a `GPUDevice`, the memory ledger of every
 * buffer created through it, and the pipeline cache.
 *
 * @module
 */

import { compileKernel, type Kernel, kernelKey, type KernelSpec } from "./kernel.ts";
import { formatBytes, MemoryLedger } from "./ledger.ts";
import { GpuTensor, type TensorOptions } from "./tensor.ts";

/**
 * Bytes the shared uniform buffer takes when batches need `bytes` of parameters: the next power
 * of two, at least 4 KiB.
 *
 * @example
 * ```ts
 * import { uniformArenaSize } from "./device.ts";
 * uniformArenaSize(5000); // 8192
 * ```
 */
export function uniformArenaSize(bytes: number): number {
  let size = 4096;
  while (size < bytes) size *= 2;
  return size;
}

/**
 * Thrown when a lost (or destroyed) device is used: the message says what was asked and what
 * was running when it went.
 *
 * @example
 * ```ts ignore
 * import { GpuLostError } from "./device.ts";
 * try {
 *   await model.forward([1]);
 * } catch (e) {
 *   if (e instanceof GpuLostError) console.error("reload the model on a new device");
 * }
 * ```
 */
export class GpuLostError extends Error {
  /** Always `"GpuLostError"`. */
  override name = "GpuLostError";
}

/** Submissions kept by {@linkcode Gpu.holdSubmissions}, and what the recording returned. */
export interface HeldSubmissions<T> {
  /** What the recording function returned. */
  readonly value: T;
  /** Submits what was held, in order, and ends the hold. */
  submit(): void;
}

/** Options for {@linkcode requestGpu}. */
export interface GpuOptions {
  /** Use `shader-f16` kernels where the adapter offers the feature (default true). */
  f16?: boolean;
  /** Use GPU timestamp queries where offered (default true). */
  timestamps?: boolean;
  /** Passed to `requestAdapter`; the default asks for the fastest adapter. */
  powerPreference?: GPUPowerPreference;
}

/** Bytes of uploads after which {@linkcode Gpu.tensor} submits, to release staging copies. */
export const UPLOAD_FLUSH_BYTES = 64 * 2 ** 20;

const INSTALL_HINT = "No WebGPU adapter was found. Install a GPU driver with Vulkan support, " +
  "or Mesa's software Vulkan driver (Debian/Ubuntu: `sudo apt-get install mesa-vulkan-drivers`), " +
  "or use the OpenGL fallback with DENO_WEBGPU_BACKEND=gl.";

/**
 * A WebGPU device with the features this library uses, its memory ledger and its kernels.
 *
 * @example
 * ```ts ignore
 * import { requestGpu } from "./device.ts";
 * const gpu = await requestGpu();
 * console.log(gpu.describe());
 * gpu.destroy();
 * ```
 */
export class Gpu {
  /** The device. */
  readonly device: GPUDevice;
  /** What the adapter says of itself. */
  readonly adapterInfo: GPUAdapterInfo;
  /** Whether `shader-f16` is enabled (offered and not turned off). */
  readonly f16: boolean;
  /** Whether timestamp queries are enabled. */
  readonly timestamps: boolean;
  /** Whether the adapter is a software rasterizer (llvmpipe, lavapipe, SwiftShader). */
  readonly isSoftware: boolean;
  /** Every buffer created through {@linkcode tensor} is recorded here. */
  readonly ledger: MemoryLedger = new MemoryLedger();
  #kernels = new Map<string, Promise<Kernel>>();
  #lost = false;
  #lostInfo: { reason: string; message: string } | null = null;
  #lostSignal: Promise<never>;
  #arena: GpuTensor | null = null;
  #zeros: GpuTensor | null = null;
  #unflushed = 0;
  #held: { first: GPUCommandBuffer | null; later: (() => GPUCommandBuffer)[] } | null = null;
  /**
   * What is running on the device, for the message if it is lost (set by long operations such
   * as a model's forward; empty when idle).
   */
  activity = "";

  /** Wraps an existing device; prefer {@linkcode requestGpu}. */
  constructor(device: GPUDevice, adapterInfo: GPUAdapterInfo) {
    this.device = device;
    this.adapterInfo = adapterInfo;
    this.f16 = device.features.has("shader-f16");
    this.timestamps = device.features.has("timestamp-query");
    this.isSoftware = adapterInfo.isFallbackAdapter ||
      /llvmpipe|lavapipe|swiftshader|software/i.test(adapterInfo.description);
    this.#lostSignal = device.lost.then((info) => {
      this.#lost = true;
      this.#lostInfo = { reason: info.reason ?? "unknown", message: info.message };
      const running = this.activity ? ` (last work started: ${this.activity})` : "";
      this.ledger.close(this.#lostText());
      if (info.reason !== "destroyed") {
        console.error(`WebGPU device lost${running}: ${info.message || "no reason given"}`);
      }
      throw this.lostError("GPU work");
    });
    this.#lostSignal.catch(() => {}); // observed by whileAlive; never unhandled
  }

  #lostText(): string {
    const info = this.#lostInfo!;
    return info.reason === "destroyed"
      ? "the GPU device was destroyed (Gpu.destroy)"
      : `the GPU device was lost (${info.reason}: ${info.message || "no reason given"})`;
  }

  /**
   * The error for using the device after it was lost: names `what` was asked, what was running
   * when it went, and what to do.
   */
  lostError(what: string): GpuLostError {
    const running = this.activity ? ` (last work started: ${this.activity})` : "";
    return new GpuLostError(
      `${what}: ${this.#lostText()}${running}; every buffer on it is gone: request a new Gpu ` +
        `and load the model again`,
    );
  }

  /** Throws {@linkcode GpuLostError} if the device has been lost or destroyed. */
  checkAlive(what: string): void {
    if (this.#lost) throw this.lostError(what);
  }

  /**
   * Awaits `work` (a map, a queue wait), but rejects with {@linkcode GpuLostError} as soon as
   * the device is lost, so nothing waits forever on a device that is gone.
   */
  async whileAlive<T>(work: Promise<T>, what: string): Promise<T> {
    this.checkAlive(what);
    try {
      return await Promise.race([work, this.#lostSignal]);
    } catch (e) {
      if (this.#lost) throw this.lostError(what);
      throw e;
    }
  }

  /** The device limits in effect. */
  get limits(): GPUSupportedLimits {
    return this.device.limits;
  }

  /** Whether the device has been lost or destroyed. */
  get lost(): boolean {
    return this.#lost;
  }

  /** One line: adapter, features and the largest storage binding. */
  describe(): string {
    const info = this.adapterInfo;
    const name = info.description || `${info.vendor} ${info.device}`.trim() || "unknown adapter";
    const features = [this.f16 ? "shader-f16" : "no shader-f16"];
    features.push(this.timestamps ? "timestamp-query" : "no timestamp-query");
    const kind = this.isSoftware ? "software" : "hardware";
    return `${name} (${kind}; ${features.join(", ")}; max storage binding ` +
      `${formatBytes(this.limits.maxStorageBufferBindingSize)})`;
  }

  /**
   * Creates a buffer recorded in the ledger. Initial `data` goes through `queue.writeBuffer`,
   * whose staging copy the implementation keeps until the next submission: after every
   * {@linkcode UPLOAD_FLUSH_BYTES} of uploads an empty submission lets it go (see
   * {@linkcode flush}).
   */
  tensor(opts: TensorOptions): GpuTensor {
    this.checkAlive(`tensor ${opts.label}`);
    const tensor = GpuTensor.create(this.device, this.ledger, opts);
    if (opts.data) {
      this.#unflushed += opts.data.byteLength;
      if (this.#unflushed >= UPLOAD_FLUSH_BYTES) this.flush();
    }
    return tensor;
  }

  /**
   * Submits an empty command list. wgpu holds the staging copy of every `writeBuffer` (and the
   * memory of buffers destroyed since) until the queue's next submission, however long that
   * is: a model loaded and disposed without a forward in between kept its whole upload in
   * process memory. Loading and disposing a model call this; so can anything else that
   * uploads without submitting.
   */
  flush(): void {
    this.#unflushed = 0;
    if (!this.#lost) this.device.queue.submit([]);
  }

  /** Builds (once) and returns the pipeline for a kernel spec. */
  kernel(spec: KernelSpec): Promise<Kernel> {
    const key = kernelKey(spec);
    let kernel = this.#kernels.get(key);
    if (!kernel) {
      kernel = compileKernel(this.device, spec);
      kernel.catch(() => this.#kernels.delete(key));
      this.#kernels.set(key, kernel);
    }
    return kernel;
  }

  /**
   * Runs `record` while holding what command batches submit, until
   * {@linkcode HeldSubmissions.submit}: the first batch is encoded at once and its command buffer
   * kept; later ones are kept as recorded and encoded then, in order (they share the uniform
   * arena with the first). Nothing else may be submitted or written to the queue until then. A
   * `record` that throws ends the hold with nothing submitted.
   *
   * Why: in Deno, `mapAsync` returns only once everything submitted has run. Work recorded
   * before that call and submitted the moment it returns keeps the GPU from idling while the
   * CPU records it.
   *
   * @example
   * ```ts ignore
   * const held = gpu.holdSubmissions(() => nextStep()); // nextStep "submits": kept
   * const mapped = staging.mapAsync(GPUMapMode.READ); // Deno: returns once the queue is idle
   * held.submit();
   * await mapped;
   * ```
   */
  holdSubmissions<T>(record: () => T): HeldSubmissions<T> {
    if (this.#held) throw new Error("holdSubmissions: submissions are already held");
    const held: { first: GPUCommandBuffer | null; later: (() => GPUCommandBuffer)[] } = {
      first: null,
      later: [],
    };
    this.#held = held;
    let value: T;
    try {
      value = record();
    } catch (e) {
      this.#held = null;
      throw e;
    }
    return {
      value,
      submit: () => {
        if (this.#held !== held) throw new Error("holdSubmissions: already submitted");
        this.#held = null;
        if (held.first) this.device.queue.submit([held.first]);
        for (const encode of held.later) this.device.queue.submit([encode()]);
      },
    };
  }

  /** Whether {@linkcode holdSubmissions} is holding what command batches submit. */
  get holdingSubmissions(): boolean {
    return this.#held !== null;
  }

  /**
   * Submits the command buffer `encode` makes, or, while {@linkcode holdSubmissions} holds,
   * keeps it: the first encoded now, later ones as `encode` itself. For command batches.
   */
  submitEncoded(encode: () => GPUCommandBuffer): void {
    const held = this.#held;
    if (!held) this.device.queue.submit([encode()]);
    else if (held.first === null && held.later.length === 0) held.first = encode();
    else held.later.push(encode);
  }

  /**
   * The shared uniform buffer that command batches write their parameter structs into, grown
   * to at least `bytes`. Recorded in the ledger as scratch; {@linkcode trimScratch} frees it.
   */
  uniformArena(bytes: number): GPUBuffer {
    if (!this.#arena || this.#arena.byteSize < bytes) {
      this.#arena?.destroy();
      this.#arena = this.tensor({
        label: "uniform parameters",
        category: "scratch",
        byteSize: uniformArenaSize(bytes),
        usage: GPUBufferUsage.UNIFORM,
      });
    }
    return this.#arena.buffer;
  }

  /**
   * A shared 16-byte storage tensor of zeros, for a kernel's optional GPU-side offset when the
   * caller has none (a start position kept on the GPU, say). Recorded in the ledger as scratch;
   * {@linkcode trimScratch} frees it.
   *
   * @example
   * ```ts ignore
   * batch.dispatch(kernel, [x, gpu.zeros()], groups, p); // offset 0
   * ```
   */
  zeros(): GpuTensor {
    this.#zeros ??= this.tensor({
      label: "zeros",
      category: "scratch",
      data: new Uint32Array(4),
    });
    return this.#zeros;
  }

  /** Frees the shared uniform buffer and zeros; the next use creates them again. */
  trimScratch(): void {
    this.#arena?.destroy();
    this.#arena = null;
    this.#zeros?.destroy();
    this.#zeros = null;
  }

  /** Copies `byteLength` bytes of a tensor back to the CPU. */
  async read(tensor: GpuTensor, byteOffset = 0, byteLength?: number): Promise<ArrayBuffer> {
    this.checkAlive(`read ${tensor.label}`);
    const length = byteLength ?? tensor.byteSize - byteOffset;
    if (byteOffset % 4 || length % 4 || byteOffset + length > tensor.byteSize) {
      throw new Error(
        `read ${tensor.label}: range ${byteOffset}+${length} is not word-aligned ` +
          `or exceeds ${tensor.byteSize} bytes`,
      );
    }
    const staging = this.device.createBuffer({
      label: `read ${tensor.label}`,
      size: Math.max(4, length),
      usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
    });
    const id = this.ledger.record("staging", `read ${tensor.label}`, length);
    try {
      const encoder = this.device.createCommandEncoder();
      encoder.copyBufferToBuffer(tensor.buffer, byteOffset, staging, 0, length);
      this.device.queue.submit([encoder.finish()]);
      await this.whileAlive(staging.mapAsync(GPUMapMode.READ), `read ${tensor.label}`);
      return staging.getMappedRange().slice(0, length);
    } finally {
      staging.destroy();
      this.ledger.release(id);
    }
  }

  /** Reads a tensor (or `count` floats from element `offset`) as f32. */
  async readF32(tensor: GpuTensor, offset = 0, count?: number): Promise<Float32Array> {
    const n = count ?? tensor.byteSize / 4 - offset;
    return new Float32Array(await this.read(tensor, offset * 4, n * 4));
  }

  /** Reads a tensor (or `count` words from element `offset`) as u32. */
  async readU32(tensor: GpuTensor, offset = 0, count?: number): Promise<Uint32Array> {
    const n = count ?? tensor.byteSize / 4 - offset;
    return new Uint32Array(await this.read(tensor, offset * 4, n * 4));
  }

  /** Waits until all submitted work is done. */
  async sync(): Promise<void> {
    await this.whileAlive(this.device.queue.onSubmittedWorkDone(), "sync");
  }

  /** Destroys the device and with it every buffer. */
  destroy(): void {
    this.trimScratch();
    this.device.destroy();
  }
}

/**
 * Requests an adapter (hardware preferred, software accepted) and a device with the adapter's
 * own buffer limits and the optional features this library uses.
 *
 * @example
 * ```ts ignore
 * import { requestGpu } from "./device.ts";
 * const gpu = await requestGpu({ f16: false }); // the packed-u32 kernels even where f16 exists
 * console.log(gpu.describe());
 * ```
 */
export async function requestGpu(options: GpuOptions = {}): Promise<Gpu> {
  if (typeof navigator === "undefined" || !navigator.gpu) {
    throw new Error(`WebGPU is not available in this runtime. ${INSTALL_HINT}`);
  }
  const adapter = await navigator.gpu.requestAdapter({
    powerPreference: options.powerPreference ?? "high-performance",
  }) ?? await navigator.gpu.requestAdapter({ forceFallbackAdapter: true });
  if (!adapter) throw new Error(INSTALL_HINT);

  const wanted: GPUFeatureName[] = [];
  if (options.f16 !== false && adapter.features.has("shader-f16")) wanted.push("shader-f16");
  if (options.timestamps !== false && adapter.features.has("timestamp-query")) {
    wanted.push("timestamp-query");
  }
  const a = adapter.limits;
  const device = await adapter.requestDevice({
    requiredFeatures: wanted,
    requiredLimits: {
      maxStorageBufferBindingSize: a.maxStorageBufferBindingSize,
      maxBufferSize: a.maxBufferSize,
      maxStorageBuffersPerShaderStage: a.maxStorageBuffersPerShaderStage,
      maxComputeWorkgroupStorageSize: a.maxComputeWorkgroupStorageSize,
      maxComputeInvocationsPerWorkgroup: a.maxComputeInvocationsPerWorkgroup,
      maxComputeWorkgroupSizeX: a.maxComputeWorkgroupSizeX,
      maxComputeWorkgroupSizeY: a.maxComputeWorkgroupSizeY,
      maxComputeWorkgroupsPerDimension: a.maxComputeWorkgroupsPerDimension,
    },
  });
  return new Gpu(device, adapter.info);
}

let shared: Promise<Gpu> | null = null;

/**
 * A process-wide {@linkcode Gpu} with default options, created on first use.
 *
 * @example
 * ```ts ignore
 * import { defaultGpu } from "./device.ts";
 * const gpu = await defaultGpu();
 * ```
 */
export function defaultGpu(): Promise<Gpu> {
  shared ??= requestGpu();
  shared.catch(() => (shared = null));
  return shared;
}
