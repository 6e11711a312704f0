/**
 * Command batches: record many dispatches, then submit them as one command buffer.
 *
 * Binding convention for every kernel: `@binding(0)` is a uniform struct of parameters when the
 * dispatch has any, and storage buffers follow from `@binding(1)` in the order given. All
 * parameter structs of a batch share one uniform buffer, written once per submit, so a decode
 * step costs one `writeBuffer` however many kernels it runs.
 *
 * A batch creates one bind group per dispatch when it is submitted. A decode loop records the
 * same dispatches on the same buffers every step (only parameter values change, and those live in
 * the uniform buffer at the same offsets), so a {@linkcode BindGroupCache} handed to each batch
 * lets step t+1 reuse step t's bind groups instead of creating them again.
 *
 * @module
 */

import type { Gpu } from "./device.ts";
import type { Kernel } from "./kernel.ts";
import type { GpuTensor } from "./tensor.ts";

/** A storage binding: a whole tensor, or a byte range of one. */
export type Binding = GpuTensor | { tensor: GpuTensor; offset: number; size: number };

/** GPU time of one dispatch. */
export interface DispatchTiming {
  /** The kernel's name (`file:entry[defines]`). */
  kernel: string;
  /** Milliseconds. */
  ms: number;
}

/**
 * Builds a parameter struct of 32-bit fields in declaration order.
 *
 * @example
 * ```ts
 * import { params } from "./batch.ts";
 * const p = params().u32(4).f32(1e-5).build(); // struct { n: u32, eps: f32 }
 * p.byteLength; // 16 (padded to 16 bytes)
 * ```
 */
export function params(): ParamWriter {
  return new ParamWriter();
}

/** See {@linkcode params}. */
export class ParamWriter {
  #words: number[] = [];
  #kinds: ("u32" | "i32" | "f32")[] = [];
  /** Appends a u32 field. */
  u32(value: number): this {
    if (!Number.isInteger(value) || value < 0 || value > 0xffffffff) {
      throw new RangeError(`u32 parameter out of range: ${value}`);
    }
    this.#words.push(value);
    this.#kinds.push("u32");
    return this;
  }
  /** Appends an i32 field. */
  i32(value: number): this {
    this.#words.push(value | 0);
    this.#kinds.push("i32");
    return this;
  }
  /** Appends an f32 field. */
  f32(value: number): this {
    this.#words.push(value);
    this.#kinds.push("f32");
    return this;
  }
  /** The struct's bytes, padded to a multiple of 16. */
  build(): ArrayBuffer {
    const buf = new ArrayBuffer(Math.max(16, Math.ceil(this.#words.length / 4) * 16));
    const u = new Uint32Array(buf);
    const i = new Int32Array(buf);
    const f = new Float32Array(buf);
    this.#words.forEach((w, k) => {
      if (this.#kinds[k] === "f32") f[k] = w;
      else if (this.#kinds[k] === "i32") i[k] = w;
      else u[k] = w;
    });
    return buf;
  }
}

interface DispatchOp {
  kind: "dispatch";
  kernel: Kernel;
  bindings: Binding[];
  workgroups: [number, number, number];
  paramOffset: number; // -1: no params
  paramSize: number;
}

type Op =
  | DispatchOp
  | {
    kind: "copy";
    src: GPUBuffer;
    srcOffset: number;
    dst: GPUBuffer;
    dstOffset: number;
    size: number;
  }
  | { kind: "clear"; dst: GpuTensor; offset: number; size: number };

const UNIFORM_ALIGN = 256;

/**
 * What a bind group is made of: its layout, then (buffer, offset, size) per entry in binding
 * order (offset and size -1 for a whole buffer).
 */
export type BindGroupKey = (GPUBindGroupLayout | GPUBuffer | number)[];

/**
 * Bind groups kept across submissions, one per dispatch position of a batch. Dispatch `i` of a
 * batch looks up slot `i`; the slot's group is reused only when it was made from exactly the
 * same layout and the same (buffer, offset, size) for every binding, the uniform range
 * included; otherwise a new group is created and replaces it. Reuse therefore never changes
 * what a dispatch reads or writes: it only skips `createBindGroup` when the result would be
 * identical. Parameter values may differ between submissions, since they are written into the
 * uniform buffer, not into the bind group.
 *
 * Its owner (e.g. a model) keeps one per kind of repeated batch, and calls
 * {@linkcode BindGroupCache.clear} before destroying the buffers it refers to.
 *
 * @example
 * ```ts ignore
 * const cache = new BindGroupCache();
 * for (let step = 0; step < 10; step++) {
 *   const batch = new CommandBatch(gpu, { bindGroups: cache });
 *   batch.dispatch(kernel, [x, y], [64], params().u32(step).build());
 *   batch.submit(); // from the second step on, the bind group is reused
 * }
 * cache.hits; // 9
 * ```
 */
export class BindGroupCache {
  #keys: (BindGroupKey | undefined)[] = [];
  #groups: (GPUBindGroup | undefined)[] = [];
  /** Lookups that reused a bind group. */
  hits = 0;
  /** Lookups that had to create one. */
  misses = 0;

  /** Number of bind groups held. */
  get size(): number {
    return this.#groups.filter((g) => g !== undefined).length;
  }

  /** Drops every bind group (and with them the references to their buffers). */
  clear(): void {
    this.#keys = [];
    this.#groups = [];
  }

  /** The group for dispatch `index` made from `key`, created by `create` unless held. */
  get(index: number, key: BindGroupKey, create: () => GPUBindGroup): GPUBindGroup {
    const held = this.#keys[index];
    if (held && held.length === key.length && held.every((v, i) => v === key[i])) {
      this.hits++;
      return this.#groups[index]!;
    }
    this.misses++;
    const group = create();
    this.#keys[index] = key;
    this.#groups[index] = group;
    return group;
  }
}

/** Options of a {@linkcode CommandBatch}. */
export interface CommandBatchOptions {
  /** Reuse bind groups across batches that record the same dispatches (see the class). */
  bindGroups?: BindGroupCache;
}

/**
 * Splits `n` workgroups over x and y so neither exceeds the per-dimension limit. Kernels
 * recover the flat index as `wid.x + wid.y * num_workgroups.x` and skip indices ≥ n.
 *
 * @example
 * ```ts
 * import { grid } from "./batch.ts";
 * grid(100_000); // [65535, 2, 1]
 * ```
 */
export function grid(n: number, limit = 65535): [number, number, number] {
  if (n <= limit) return [Math.max(1, n), 1, 1];
  const y = Math.ceil(n / limit);
  return [Math.ceil(n / y), y, 1];
}

/**
 * Records dispatches and copies for one submission.
 *
 * @example
 * ```ts ignore
 * const batch = new CommandBatch(gpu);
 * batch.dispatch(kernel, [x, y], [64], params().u32(n).build());
 * batch.submit();
 * ```
 */
export class CommandBatch {
  /** The device the batch submits to. */
  readonly gpu: Gpu;
  #ops: Op[] = [];
  #params: Uint8Array<ArrayBuffer> = new Uint8Array(UNIFORM_ALIGN * 16);
  #paramBytes = 0;
  #bindGroups: BindGroupCache | null;

  /** An empty batch for `gpu`, reusing bind groups from `options.bindGroups` if given. */
  constructor(gpu: Gpu, options: CommandBatchOptions = {}) {
    this.gpu = gpu;
    this.#bindGroups = options.bindGroups ?? null;
  }

  /** Number of recorded dispatches. */
  get dispatchCount(): number {
    return this.#ops.filter((op) => op.kind === "dispatch").length;
  }

  /** Records a dispatch of `kernel` over `workgroups`. */
  dispatch(
    kernel: Kernel,
    bindings: Binding[],
    workgroups: number | [number, number?, number?],
    paramBytes?: ArrayBuffer,
  ): this {
    const wg = typeof workgroups === "number" ? [workgroups] : workgroups;
    const limit = this.gpu.limits.maxComputeWorkgroupsPerDimension;
    const dims: [number, number, number] = [wg[0] ?? 1, wg[1] ?? 1, wg[2] ?? 1];
    for (const d of dims) {
      if (!Number.isInteger(d) || d < 1 || d > limit) {
        throw new RangeError(`${kernel.name}: workgroup count ${dims.join("x")} (limit ${limit})`);
      }
    }
    let paramOffset = -1;
    let paramSize = 0;
    if (paramBytes) {
      paramOffset = this.#paramBytes;
      paramSize = paramBytes.byteLength;
      const end = paramOffset + Math.ceil(paramSize / UNIFORM_ALIGN) * UNIFORM_ALIGN;
      if (end > this.#params.byteLength) {
        const grown = new Uint8Array(Math.max(end, this.#params.byteLength * 2));
        grown.set(this.#params);
        this.#params = grown;
      }
      this.#params.set(new Uint8Array(paramBytes), paramOffset);
      this.#paramBytes = end;
    }
    this.#ops.push({
      kind: "dispatch",
      kernel,
      bindings,
      workgroups: dims,
      paramOffset,
      paramSize,
    });
    return this;
  }

  /** Records a buffer-to-buffer copy. */
  copy(src: GpuTensor, srcOffset: number, dst: GpuTensor, dstOffset: number, size: number): this {
    return this.copyToBuffer(src, srcOffset, dst.buffer, dstOffset, size);
  }

  /** Records a copy into a plain buffer, e.g. a `MAP_READ` staging buffer the caller owns. */
  copyToBuffer(
    src: GpuTensor,
    srcOffset: number,
    dst: GPUBuffer,
    dstOffset: number,
    size: number,
  ): this {
    this.#ops.push({ kind: "copy", src: src.buffer, srcOffset, dst, dstOffset, size });
    return this;
  }

  /**
   * Records a copy between plain buffers, e.g. from a `MAP_WRITE | COPY_SRC` buffer in host
   * memory into a tensor (layer streaming).
   */
  copyBuffers(
    src: GPUBuffer,
    srcOffset: number,
    dst: GPUBuffer,
    dstOffset: number,
    size: number,
  ): this {
    this.#ops.push({ kind: "copy", src, srcOffset, dst, dstOffset, size });
    return this;
  }

  /** Records zero-filling a byte range (whole tensor by default). */
  clear(dst: GpuTensor, offset = 0, size = dst.byteSize - offset): this {
    this.#ops.push({ kind: "clear", dst, offset, size });
    return this;
  }

  /**
   * Encodes and submits everything recorded; the batch is empty afterwards. While the device
   * holds submissions ({@linkcode Gpu.holdSubmissions}) the work is kept, to be submitted in order
   * when the hold ends.
   */
  submit(): void {
    const ops = this.#ops;
    const bytes = this.#paramBytes;
    // a batch kept past this call keeps a copy of its parameters: the batch may be reused
    const params = this.gpu.holdingSubmissions ? this.#params.slice(0, bytes) : this.#params;
    this.#reset();
    this.gpu.submitEncoded(() => {
      const encoder = this.gpu.device.createCommandEncoder();
      this.#encodeOps(encoder, ops, params, bytes, null);
      return encoder.finish();
    });
  }

  /**
   * Submits with a timestamp around each dispatch and returns the GPU time of each. Without
   * `timestamp-query` it returns one entry, `"batch (wall clock)"`, timing the whole submission.
   *
   * With `whole`, the batch is encoded as {@linkcode submit} encodes it (its dispatches in one
   * compute pass, up to a copy or clear) and one entry, `"batch (one pass)"`, is the GPU time from
   * the start of its first pass to the end of its last. A dispatch in a pass of its own pays a
   * pass's fixed cost, several µs on some GPUs, which dwarfs a small kernel; this is what the same
   * work costs as decoding runs it.
   *
   * @example
   * ```ts ignore
   * const [{ ms }] = await batch.submitTimed({ whole: true });
   * ```
   */
  async submitTimed(options: { whole?: boolean } = {}): Promise<DispatchTiming[]> {
    const { device } = this.gpu;
    if (this.gpu.holdingSubmissions) {
      throw new Error("submitTimed: the device is holding submissions");
    }
    if (!this.gpu.timestamps) {
      const t0 = performance.now();
      this.submit();
      await device.queue.onSubmittedWorkDone();
      return [{ kernel: "batch (wall clock)", ms: performance.now() - t0 }];
    }
    const whole = options.whole === true && this.dispatchCount > 0;
    const count = whole ? 2 : this.dispatchCount * 2;
    const querySet = device.createQuerySet({ type: "timestamp", count: Math.max(2, count) });
    const resolve = device.createBuffer({
      size: Math.max(16, count * 8),
      usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC,
    });
    const readback = device.createBuffer({
      size: Math.max(16, count * 8),
      usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
    });
    const names = whole
      ? ["batch (one pass)"]
      : this.#ops.flatMap((op) => op.kind === "dispatch" ? [op.kernel.name] : []);
    try {
      const encoder = device.createCommandEncoder();
      this.#encodeOps(encoder, this.#ops, this.#params, this.#paramBytes, querySet, whole);
      encoder.resolveQuerySet(querySet, 0, count, resolve, 0);
      encoder.copyBufferToBuffer(resolve, 0, readback, 0, count * 8);
      device.queue.submit([encoder.finish()]);
      this.#reset();
      await readback.mapAsync(GPUMapMode.READ);
      const ticks = new BigUint64Array(readback.getMappedRange().slice(0, count * 8));
      return names.map((kernel, i) => ({
        kernel,
        ms: Number(ticks[2 * i + 1] - ticks[2 * i]) / 1e6,
      }));
    } finally {
      querySet.destroy();
      resolve.destroy();
      readback.destroy();
    }
  }

  #reset(): void {
    this.#ops = [];
    this.#paramBytes = 0;
  }

  /**
   * Records the ops into `encoder`. With `timing`, a pass per dispatch with a timestamp at each
   * end; with `whole` as well, the passes `submit` makes, timestamps at the first one's start
   * (query 0) and the last one's end (query 1).
   */
  #encodeOps(
    encoder: GPUCommandEncoder,
    ops: Op[],
    params: Uint8Array<ArrayBuffer>,
    paramBytes: number,
    timing: GPUQuerySet | null,
    whole = false,
  ): void {
    const uniforms = paramBytes > 0 ? this.gpu.uniformArena(paramBytes) : null;
    if (uniforms) this.gpu.device.queue.writeBuffer(uniforms, 0, params, 0, paramBytes);
    // whole: a pass opens at each dispatch that follows a copy or clear (or none); the first
    // pass's start and the last one's end are timed
    const opensPass = (i: number) =>
      ops[i].kind === "dispatch" && (i === 0 || ops[i - 1].kind !== "dispatch");
    const passStarts = whole ? [...ops.keys()].filter(opensPass) : [];
    let pass: GPUComputePassEncoder | null = null;
    let query = 0;
    let index = 0;
    for (const [i, op] of ops.entries()) {
      if (op.kind !== "dispatch") {
        pass?.end();
        pass = null;
        if (op.kind === "copy") {
          encoder.copyBufferToBuffer(op.src, op.srcOffset, op.dst, op.dstOffset, op.size);
        } else {
          encoder.clearBuffer(op.dst.buffer, op.offset, op.size);
        }
        continue;
      }
      if (timing && whole) {
        if (!pass) {
          const first = i === passStarts[0];
          const last = i === passStarts[passStarts.length - 1];
          pass = encoder.beginComputePass(
            first || last
              ? {
                timestampWrites: {
                  querySet: timing,
                  ...(first ? { beginningOfPassWriteIndex: 0 } : {}),
                  ...(last ? { endOfPassWriteIndex: 1 } : {}),
                },
              }
              : {},
          );
        }
      } else if (timing) {
        pass?.end();
        pass = encoder.beginComputePass({
          timestampWrites: {
            querySet: timing,
            beginningOfPassWriteIndex: query,
            endOfPassWriteIndex: query + 1,
          },
        });
        query += 2;
      } else {
        pass ??= encoder.beginComputePass();
      }
      const bindGroup = this.#bindGroups
        ? this.#bindGroups.get(index, bindKey(op, uniforms), () => this.#bindGroup(op, uniforms))
        : this.#bindGroup(op, uniforms);
      index++;
      pass.setPipeline(op.kernel.pipeline);
      pass.setBindGroup(0, bindGroup);
      pass.dispatchWorkgroups(...op.workgroups);
    }
    pass?.end();
  }

  #bindGroup(op: DispatchOp, uniforms: GPUBuffer | null): GPUBindGroup {
    const entries: GPUBindGroupEntry[] = [];
    if (op.paramOffset >= 0) {
      entries.push({
        binding: 0,
        resource: { buffer: uniforms!, offset: op.paramOffset, size: op.paramSize },
      });
    }
    op.bindings.forEach((b, i) => {
      const resource = "tensor" in b
        ? { buffer: b.tensor.buffer, offset: b.offset, size: b.size }
        : { buffer: b.buffer };
      entries.push({ binding: i + 1, resource });
    });
    return this.gpu.device.createBindGroup({
      label: op.kernel.name,
      layout: op.kernel.layout,
      entries,
    });
  }
}

/** Everything a dispatch's bind group is made of (whole-buffer bindings: offset and size -1). */
function bindKey(op: DispatchOp, uniforms: GPUBuffer | null): BindGroupKey {
  const key: BindGroupKey = [op.kernel.layout];
  if (op.paramOffset >= 0) key.push(uniforms!, op.paramOffset, op.paramSize);
  for (const b of op.bindings) {
    if ("tensor" in b) key.push(b.tensor.buffer, b.offset, b.size);
    else key.push(b.buffer, -1, -1);
  }
  return key;
}
