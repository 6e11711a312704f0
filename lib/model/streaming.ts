/**
 * Layer streaming: a model bigger than its GPU memory budget keeps as many decoder layers on the
 * GPU as fit and the rest, already quantized, in host memory; each forward uploads those into a
 * small ring of GPU slots just before they run.
 *
 * How it works, in the order it happens:
 *
 * - Loading: every decoder linear layer arrives as a {@linkcode PlacedLinear} holding its packed
 *   weight on the CPU. Once the loader has made everything else (embeddings, LM head, KV cache,
 *   activations, scratch), {@linkcode LayerStreamer.place} reads the ledger, builds one layer to
 *   learn a layer's exact size, and decides: the first `r` layers go to the GPU as ordinary
 *   layers; the others are written once into buffers the GPU can copy from
 *   (`MAP_WRITE | COPY_SRC`, host memory on a discrete GPU; not in the ledger, which counts GPU
 *   memory), and `slots` (default 2) layer-sized sets of GPU buffers are made for them.
 * - Forward: the first product of a streamed layer records copies of its weights into a slot
 *   (unless a slot still holds it), then copies of the *next* streamed layer into another slot,
 *   so that upload runs on the GPU while this layer computes. Everything stays in one command
 *   buffer; WebGPU orders a copy into a slot after the products that read its previous layer.
 *   A prefill chunk therefore uploads each streamed layer once, not once per token.
 *
 * - Or, where this runtime fills mapped buffers slowly (`StreamingOptions.upload`), the streamed
 *   layers stay ordinary CPU arrays and each upload is a `queue.writeBuffer`: the forward is
 *   submitted layer by layer, and the CPU copies the next layer while the GPU computes.
 *
 * The streamed layers' bytes cross the bus once per forward chunk, so decoding is bound by
 * `streamed bytes per token ÷ host→GPU bandwidth` ({@linkcode measureUploadBandwidth}), and in
 * `"write"` mode by the rate of `queue.writeBuffer` (a CPU copy into a staging buffer).
 * Results are identical to the resident model: the slot layers are the same kernels on the same
 * bytes.
 *
 * @module
 */

import type { CommandBatch } from "../gpu/batch.ts";
import type { Binding } from "../gpu/batch.ts";
import type { Gpu } from "../gpu/device.ts";
import { f16ArrayToF32 } from "../gpu/f16.ts";
import { formatBytes } from "../gpu/ledger.ts";
import type { GpuTensor } from "../gpu/tensor.ts";
import { Fp16Linear, type Linear, type LinearEncodeOptions } from "../kernels/linear.ts";
import { QuantLinear, type QuantLinearFactoryOptions } from "../kernels/quant_linear.ts";
import {
  packedBytesFor,
  type QuantFormat,
  quantize,
  type QuantizedWeight,
} from "../quant/formats.ts";
import type { LlamaConfig } from "./config.ts";
import { LINEAR_NAMES } from "./family.ts";
import type { LayerWeights, LinearFactory, LinearName, LinearRequest } from "./load.ts";

/**
 * A linear layer's weights on the CPU, as its GPU layer is built from them: f16 bits for FP16,
 * lib/quant's packed weight for the other formats.
 */
export type HostWeight = Uint16Array | QuantizedWeight;

/**
 * Options of layer streaming ({@linkcode LoadOptions.vramBudget} turns it on).
 *
 * @example
 * ```ts ignore
 * const model = await LlamaModel.load(dir, { format: "nf4", vramBudget: 2 * 2 ** 30, streaming: { slots: 3 } });
 * ```
 */
export interface StreamingOptions {
  /** GPU slots streamed layers take turns in (default 2, at least 2). */
  slots?: number;
  /**
   * Packs one layer's weights instead of quantizing what the loader read (benchmarks hand in
   * random packed weights this way, as they do with `LoadOptions.linear` when resident).
   */
  pack?: (request: LinearRequest) => HostWeight;
  /**
   * How streamed layers reach their slots. `"mapped"`: written once at load into buffers the
   * GPU copies from (`MAP_WRITE | COPY_SRC`), and every forward records copies in its command
   * buffer — no CPU work per token. `"write"`: kept as ordinary CPU arrays and written with
   * `queue.writeBuffer` (the forward submits its work layer by layer so that each write lands
   * after the products that read the slot before) — a CPU copy per token, for runtimes where
   * filling mapped buffers is slow (Deno 2.9 on an NVIDIA H200: 0.02-0.03 GB/s, its
   * `getMappedRange` reading the mapped memory back; there only `"write"` is usable). Where the
   * GPU exposes its memory through a resizable BAR (the H200 does), `MAP_WRITE` buffers may be
   * placed in GPU memory, which the ledger does not see: `"mapped"` would then hold the streamed
   * layers in GPU memory after all. `"auto"` (default): fills a 4 MiB mapped buffer when
   * placing and takes `"mapped"` if that ran at 1 GB/s or more, else `"write"`.
   */
  upload?: "mapped" | "write" | "auto";
  /**
   * Receives a line per placing phase (the upload mode chosen and why, host copies made, slots
   * and resident layers built, each with its time), for a command line or a benchmark to print.
   */
  log?: (line: string) => void;
}

/**
 * Where a model's decoder layers live, as {@linkcode LlamaModel.streaming} reports it.
 *
 * @example
 * ```ts ignore
 * const s = model.streaming!;
 * console.log(`${s.residentLayers} resident, ${s.streamedLayers} streamed, ${s.streamedBytesPerForward} B per token`);
 * ```
 */
export interface StreamingStats {
  /** The budget the layers were placed under, in bytes. */
  budgetBytes: number;
  /**
   * GPU bytes besides the decoder layers' linear weights (embeddings, head, norms, KV cache,
   * activations, scratch) plus what running adds (logits read back): the budget's fixed part.
   */
  fixedBytes: number;
  /** Decoder layers kept on the GPU. */
  residentLayers: number;
  /** Decoder layers kept in host memory and uploaded per forward chunk. */
  streamedLayers: number;
  /** GPU slots the streamed layers take turns in (0 when none is streamed). */
  slots: number;
  /** GPU bytes of one layer's linear weights (one slot). */
  layerBytes: number;
  /** Bytes every forward chunk uploads: the streamed layers' weights. */
  streamedBytesPerForward: number;
  /** Host memory the streamed layers occupy (outside the ledger). */
  hostBytes: number;
  /** Bytes recorded for upload so far (for measuring). */
  uploadedBytes: number;
  /** How streamed layers reach their slots (see {@linkcode StreamingOptions.upload}). */
  upload: "mapped" | "write" | "none";
}

/**
 * Copies of one streamed linear layer: a host buffer (`"mapped"`) or CPU arrays (`"write"`), and
 * where each part goes in a slot.
 */
interface HostCopy {
  buffer: GPUBuffer | null;
  /** Per slot tensor, in the slot layer's `weightTensors` order: offset and size in `buffer`. */
  parts: { offset: number; size: number; data: Uint8Array<ArrayBuffer> | null }[];
  /** Bytes it holds. */
  bytes: number;
}

type SlotLinear = Fp16Linear | QuantLinear;

/** One GPU slot: a full set of linear layers whose buffers streamed layers are copied into. */
interface Slot {
  linears: Record<LinearName, SlotLinear>;
  holds: number; // layer index, -1 none
  used: number; // tick of its last use, for LRU
}

/**
 * The bytes of each part of `host` as the GPU layer `target` uploaded it: for FP16 the rows of
 * each weight tensor in order; for the other formats the field named by each array's label
 * (`<label>.codes`, ...). LLM.int8()'s FP16 outlier columns are left out: the products only read
 * them with `outlierWeights: "fp16"`, which streaming refuses.
 */
function hostParts(label: string, host: HostWeight, target: SlotLinear): (Uint8Array | null)[] {
  const tensors = target.weightTensors;
  if (host instanceof Uint16Array) {
    const bytes = new Uint8Array(host.buffer, host.byteOffset, host.byteLength);
    let at = 0;
    return tensors.map((t) => {
      const part = bytes.subarray(at, Math.min(at + t.byteSize, bytes.byteLength));
      at += t.byteSize;
      return part;
    });
  }
  return tensors.map((t) => {
    const field = t.label.slice(t.label.lastIndexOf(".") + 1);
    if (field === "fp16Columns" || field === "fp16Weights") return null;
    const value = (host as unknown as Record<string, unknown>)[field];
    if (!ArrayBuffer.isView(value)) {
      throw new Error(`${label}: streaming found no ${host.format} array "${field}" to upload`);
    }
    const bytes = new Uint8Array(value.buffer, value.byteOffset, value.byteLength);
    if (Math.ceil(bytes.byteLength / 4) * 4 !== t.byteSize) {
      throw new Error(
        `${label}: ${field} has ${bytes.byteLength} bytes but the slot's ${t.label} has ` +
          `${t.byteSize}; streamed layers must all have one shape`,
      );
    }
    return bytes;
  });
}

/**
 * A decoder linear layer whose place (GPU or host memory) is decided after loading; it runs as
 * an ordinary {@linkcode Linear} either way.
 */
export class PlacedLinear implements Linear {
  /** The weight format. */
  readonly format: string;
  /** K. */
  readonly inFeatures: number;
  /** N. */
  readonly outFeatures: number;
  /** Tensor name. */
  readonly name: string;
  /** Decoder layer. */
  readonly layer: number;
  /** Which linear layer of the block. */
  readonly kind: LinearName;
  /** The packed weights, until placed. */
  host: HostWeight | null;
  /** Its GPU layer when resident. */
  resident: SlotLinear | null = null;
  /** Its host copy when streamed. */
  copy: HostCopy | null = null;
  #streamer: LayerStreamer;

  constructor(streamer: LayerStreamer, request: LinearRequest, host: HostWeight) {
    this.#streamer = streamer;
    this.format = streamer.format;
    this.name = request.name;
    this.layer = request.layer;
    this.kind = request.kind as LinearName;
    this.inFeatures = request.inFeatures;
    this.outFeatures = request.outFeatures;
    this.host = host;
  }

  /**
   * Bytes of its weights wherever they live: on the GPU when resident, in host memory when
   * streamed (the ledger counts the slots instead).
   */
  get weightBytes(): number {
    return this.resident?.weightBytes ?? this.copy?.bytes ?? 0;
  }

  /** Records the product, uploading the layer's weights into a slot first when streamed. */
  encode(
    batch: CommandBatch,
    x: Binding,
    y: Binding,
    rows: number,
    options?: LinearEncodeOptions,
  ): void {
    if (this.resident) return this.resident.encode(batch, x, y, rows, options);
    if (!this.copy) throw new Error(`${this.name}: used before placing or after destroy()`);
    this.#streamer.slotFor(batch, this).encode(batch, x, y, rows, options);
  }

  /** Frees its GPU layer or host copy. */
  destroy(): void {
    this.resident?.destroy();
    this.resident = null;
    this.copy?.buffer?.destroy();
    this.copy = null;
    this.host = null;
    this.#streamer.released(this);
  }
}

/**
 * Places a model's decoder layers under a GPU memory budget and streams the rest (see the
 * module). {@linkcode LlamaModel.fromCheckpoint} makes one when `vramBudget` is given.
 *
 * @example
 * ```ts ignore
 * const streamer = new LayerStreamer(gpu, config, "nf4", {}, {});
 * // loadWeights(..., { linear: streamer.factory(realFactory) }) ... then:
 * await streamer.place(layers, { budget, usedBytes, reserveBytes });
 * ```
 */
export class LayerStreamer {
  /** The weight format of the decoder layers. */
  readonly format: QuantFormat;
  #gpu: Gpu;
  #config: LlamaConfig;
  #quant: QuantLinearFactoryOptions;
  #options: StreamingOptions;
  #placed = new Set<PlacedLinear>();
  #layers: PlacedLinear[][] = [];
  #streamed: number[] = [];
  #slots: Slot[] = [];
  #tick = 0;
  #current = -1; // the layer whose products are being recorded
  #stats: StreamingStats | null = null;

  constructor(
    gpu: Gpu,
    config: LlamaConfig,
    format: QuantFormat,
    quant: QuantLinearFactoryOptions = {},
    options: StreamingOptions = {},
  ) {
    if (quant.outlierWeights === "fp16") {
      throw new Error(
        'vramBudget: llm-int8 with outlierWeights "fp16" keeps a different number of FP16 ' +
          "columns per layer, so its layers cannot share slots; use the default outlier weights",
      );
    }
    const slots = options.slots ?? 2;
    if (!Number.isInteger(slots) || slots < 2) {
      throw new RangeError(`streaming: slots must be an integer ≥ 2, got ${slots}`);
    }
    this.#gpu = gpu;
    this.#config = config;
    this.format = format;
    this.#quant = quant;
    const upload = options.upload ?? "auto";
    if (upload !== "mapped" && upload !== "write" && upload !== "auto") {
      throw new RangeError(`streaming: upload must be "mapped", "write" or "auto", got ${upload}`);
    }
    this.#options = { ...options, slots, upload };
  }

  /**
   * The loader's factory: decoder layers become {@linkcode PlacedLinear}s holding their packed
   * weights; the LM head is built at once by `head`.
   */
  factory(head: LinearFactory): LinearFactory {
    return (gpu, request) => {
      if (request.layer < 0) return head(gpu, request);
      const host = this.#options.pack?.(request) ??
        (this.format === "fp16" ? request.weight : quantize(
          this.format,
          f16ArrayToF32(request.weight),
          request.outFeatures,
          request.inFeatures,
          this.#quant,
        ));
      const placed = new PlacedLinear(this, request, host);
      this.#placed.add(placed);
      (this.#layers[request.layer] ??= []).push(placed);
      return Promise.resolve(placed);
    };
  }

  /** Where the layers went, once placed. */
  get stats(): StreamingStats | null {
    return this.#stats && { ...this.#stats };
  }

  /**
   * Decides which layers stay on the GPU and builds them, the slots and the host copies.
   * `usedBytes` is what the model holds on the GPU already (everything but the decoder layers'
   * linear weights); `reserveBytes` what it will add while running (logits read back).
   */
  async place(
    layers: LayerWeights[],
    limits: {
      budget: number;
      usedBytes: number;
      reserveBytes: number;
      /** Allocations that need a built layer (the int8 scratch); counted in `usedBytes`. */
      afterFirstLayer?: () => void;
    },
  ): Promise<void> {
    const n = layers.length;
    const R = this.#options.slots!;
    const ledger = this.#gpu.ledger;
    const byLayer = this.#layers;
    if (byLayer.length !== n || byLayer.some((l) => l.length !== LINEAR_NAMES.length)) {
      throw new Error("streaming: every decoder layer needs its seven linear layers placed");
    }
    // One layer built for real gives its exact size; it is the last layer, which is streamed
    // whenever any layer is, so it becomes the first slot (or simply resident).
    const start = ledger.currentBytes;
    const probe = await this.#build(byLayer[n - 1], "");
    const layerBytes = ledger.currentBytes - start;
    const beforeScratch = ledger.currentBytes;
    limits.afterFirstLayer?.();
    limits = { ...limits, usedBytes: limits.usedBytes + ledger.currentBytes - beforeScratch };
    const room = limits.budget - limits.usedBytes - limits.reserveBytes;
    if (n * layerBytes <= room) {
      this.#adopt(byLayer[n - 1], probe);
      for (let l = 0; l < n - 1; l++) this.#adopt(byLayer[l], await this.#build(byLayer[l], ""));
      this.#stats = this.#statsFor(limits, n, 0, layerBytes, 0);
      return;
    }
    const resident = Math.floor((room - R * layerBytes) / layerBytes);
    if (resident < 0) {
      for (const l of Object.values(probe)) l.destroy();
      const need = limits.usedBytes + limits.reserveBytes + R * layerBytes;
      throw new Error(
        `vramBudget ${limits.budget} bytes is too small: the model needs ${limits.usedBytes} ` +
          `bytes besides its layers, ${limits.reserveBytes} for reading logits back and ${R} ` +
          `slots of ${layerBytes} bytes, at least ${need} bytes (${formatBytes(need)})`,
      );
    }
    this.#streamed = Array.from({ length: n - resident }, (_, i) => resident + i);
    const log = this.#options.log ?? (() => {});
    let t = performance.now();
    const seconds = () => {
      const now = performance.now();
      const s = (now - t) / 1000;
      t = now;
      return s.toFixed(2);
    };
    if (this.#options.upload === "auto") {
      const rate = mappedFillRate(this.#gpu);
      this.#options.upload = rate >= 1e9 ? "mapped" : "write";
      log(
        `streaming: a 4 MiB mapped-buffer fill ran at ${(rate / 1e9).toFixed(2)} GB/s, so ` +
          `upload "${this.#options.upload}"`,
      );
    }
    log(
      `streaming: ${resident} of ${n} layers resident, ${
        n - resident
      } streamed through ${R} slots of ` +
        `${formatBytes(layerBytes)} (upload "${this.#options.upload}")`,
    );
    // Host copies first (the CPU forms go once copied), then the slots, then resident layers.
    seconds();
    let copied = 0;
    for (const l of this.#streamed) {
      for (const p of byLayer[l]) {
        p.copy = this.#hostCopy(p, probe[p.kind]);
        copied += p.copy.bytes;
      }
    }
    const copyS = seconds();
    log(
      `streaming: host copies of ${n - resident} layers (${formatBytes(copied)}) in ${copyS} s` +
        (this.#options.upload === "mapped"
          ? `, ${(copied / 1e9 / Math.max(Number(copyS), 1e-3)).toFixed(2)} GB/s`
          : ""),
    );
    this.#slots.push({ linears: probe, holds: n - 1, used: 0 });
    for (let s = 1; s < R; s++) {
      const l = n - 1 - s;
      this.#slots.push({ linears: await this.#build(byLayer[l], `slot ${s} `), holds: l, used: 0 });
    }
    for (const l of this.#streamed) for (const p of byLayer[l]) p.host = null;
    for (let l = 0; l < resident; l++) this.#adopt(byLayer[l], await this.#build(byLayer[l], ""));
    log(`streaming: ${R} slots and ${resident} resident layers built in ${seconds()} s`);
    const perForward = this.#streamed.reduce(
      (sum, l) => sum + byLayer[l].reduce((s, p) => s + p.copy!.bytes, 0),
      0,
    );
    this.#stats = this.#statsFor(limits, resident, n - resident, layerBytes, perForward);
  }

  /** The slot layer that runs `linear`'s product, recording uploads as needed. */
  slotFor(batch: CommandBatch, linear: PlacedLinear): SlotLinear {
    const l = linear.layer;
    // "write": what is recorded so far goes first, so that writes land after it in queue order.
    if (this.#options.upload === "write" && this.#current !== l) batch.submit();
    const slot = this.#ensure(batch, l, -1);
    if (this.#current !== l) {
      // A new layer starts: queue the next streamed layer's upload behind this layer's work.
      this.#current = l;
      const i = this.#streamed.indexOf(l);
      const next = this.#streamed[(i + 1) % this.#streamed.length];
      if (next !== l) this.#ensure(batch, next, this.#slots.indexOf(slot));
    }
    return slot.linears[linear.kind];
  }

  /** Called by each placed layer's destroy; the last one frees the slots. */
  released(linear: PlacedLinear): void {
    this.#placed.delete(linear);
    if (this.#placed.size > 0) return;
    for (const slot of this.#slots) for (const l of Object.values(slot.linears)) l.destroy();
    this.#slots = [];
  }

  /** Frees everything placed so far (a failed load). */
  destroy(): void {
    for (const p of [...this.#placed]) p.destroy();
  }

  /** The slot holding layer `l`, uploading it into the least recently used one if none does. */
  #ensure(batch: CommandBatch, l: number, keep: number): Slot {
    let slot = this.#slots.find((s) => s.holds === l);
    if (!slot) {
      let best = -1;
      for (let s = 0; s < this.#slots.length; s++) {
        if (s === keep) continue;
        if (best < 0 || this.#slots[s].used < this.#slots[best].used) best = s;
      }
      slot = this.#slots[best];
      const queue = this.#gpu.device.queue;
      for (const p of this.#layers[l]) {
        const target = slot.linears[p.kind].weightTensors;
        const { buffer, parts } = p.copy!;
        parts.forEach(({ offset, size, data }, i) => {
          if (size === 0) return;
          if (buffer) batch.copyBuffers(buffer, offset, target[i].buffer, 0, size);
          else writeInPieces(queue, target[i].buffer, data!, size);
        });
      }
      slot.holds = l;
      this.#stats!.uploadedBytes += this.#layers[l].reduce((s, p) => s + p.copy!.bytes, 0);
    }
    slot.used = ++this.#tick;
    return slot;
  }

  #statsFor(
    limits: { budget: number; usedBytes: number; reserveBytes: number },
    resident: number,
    streamed: number,
    layerBytes: number,
    perForward: number,
  ): StreamingStats {
    let hostBytes = 0;
    for (const l of this.#streamed) {
      for (const p of this.#layers[l]) hostBytes += p.copy!.bytes;
    }
    return {
      budgetBytes: limits.budget,
      fixedBytes: limits.usedBytes + limits.reserveBytes,
      residentLayers: resident,
      streamedLayers: streamed,
      slots: streamed > 0 ? this.#slots.length : 0,
      layerBytes,
      streamedBytesPerForward: perForward,
      hostBytes,
      uploadedBytes: 0,
      upload: streamed > 0 ? this.#options.upload as "mapped" | "write" : "none",
    };
  }

  /** Makes the GPU layers of one decoder layer from its packed weights. */
  async #build(layer: PlacedLinear[], prefix: string): Promise<Record<LinearName, SlotLinear>> {
    const out = {} as Record<LinearName, SlotLinear>;
    try {
      for (const p of layer) {
        const host = p.host;
        if (!host) throw new Error(`${p.name}: its packed weights are gone`);
        const label = prefix + p.name;
        out[p.kind] = host instanceof Uint16Array
          ? await Fp16Linear.create(this.#gpu, {
            label,
            weight: host,
            outFeatures: p.outFeatures,
            inFeatures: p.inFeatures,
          })
          : await QuantLinear.create(this.#gpu, {
            label,
            weight: host,
            f16: this.#quant.f16,
            threshold: this.#quant.threshold,
            outlierWeights: this.#quant.outlierWeights,
            tuning: this.#quant.tuning,
          });
      }
    } catch (err) {
      for (const l of Object.values(out)) l.destroy();
      throw err;
    }
    return out;
  }

  #adopt(layer: PlacedLinear[], built: Record<LinearName, SlotLinear>): void {
    for (const p of layer) {
      p.resident = built[p.kind];
      p.host = null;
    }
  }

  /** Writes one streamed layer's packed weights into a host buffer the GPU copies from. */
  #hostCopy(p: PlacedLinear, target: SlotLinear): HostCopy {
    const parts = hostParts(p.name, p.host!, target);
    const tensors: readonly GpuTensor[] = target.weightTensors;
    const layout = parts.map((bytes, i) => ({
      size: bytes === null ? 0 : tensors[i].byteSize,
      offset: 0,
      data: null as Uint8Array<ArrayBuffer> | null,
    }));
    let total = 0;
    for (const part of layout) {
      part.offset = total;
      total += part.size;
    }
    if (this.#options.upload === "write") {
      // queue.writeBuffer reads the CPU arrays themselves at every upload; only an array whose
      // length is not whole words is copied, padded.
      layout.forEach((part, i) => {
        if (part.size === 0) return;
        const bytes = parts[i]!;
        if (bytes.byteLength === part.size && bytes.buffer instanceof ArrayBuffer) {
          part.data = bytes as Uint8Array<ArrayBuffer>;
        } else {
          part.data = new Uint8Array(part.size);
          part.data.set(bytes);
        }
      });
      return { buffer: null, parts: layout, bytes: total };
    }
    const buffer = this.#gpu.device.createBuffer({
      label: `${p.name} (host copy)`,
      size: Math.max(4, total),
      usage: GPUBufferUsage.MAP_WRITE | GPUBufferUsage.COPY_SRC,
      mappedAtCreation: true,
    });
    const mapped = new Uint8Array(buffer.getMappedRange());
    parts.forEach((bytes, i) => {
      if (bytes) mapped.set(bytes, layout[i].offset);
    });
    buffer.unmap();
    return { buffer, parts: layout, bytes: total };
  }
}

/**
 * Bytes `queue.writeBuffer` takes per call in `"write"` mode. Each call copies into a staging
 * buffer of its size; pieces of 16 MiB fit the blocks the allocator keeps, where a whole 90 MB
 * tensor would get memory of its own every time.
 */
const WRITE_PIECE_BYTES = 16 * 2 ** 20;

/** `queue.writeBuffer` of `data`'s first `size` bytes into `target`, in pieces. */
function writeInPieces(
  queue: GPUQueue,
  target: GPUBuffer,
  data: Uint8Array<ArrayBuffer>,
  size: number,
): void {
  for (let at = 0; at < size; at += WRITE_PIECE_BYTES) {
    queue.writeBuffer(target, at, data, at, Math.min(WRITE_PIECE_BYTES, size - at));
  }
}

/**
 * Bytes per second at which this runtime fills a new mapped `MAP_WRITE` buffer from a CPU array
 * (create, `getMappedRange`, copy, unmap), on 4 MiB. (Deno 2.9 on an NVIDIA H200: 0.02 GB/s,
 * `getMappedRange` reading the mapped host memory back; so `"auto"` picks `"write"` there.)
 */
function mappedFillRate(gpu: Gpu): number {
  const bytes = 4 * 2 ** 20;
  const data = new Uint8Array(bytes).fill(1);
  const t0 = performance.now();
  const buffer = gpu.device.createBuffer({
    label: "mapped fill probe",
    size: bytes,
    usage: GPUBufferUsage.MAP_WRITE | GPUBufferUsage.COPY_SRC,
    mappedAtCreation: true,
  });
  new Uint8Array(buffer.getMappedRange()).set(data);
  buffer.unmap();
  const seconds = (performance.now() - t0) / 1000;
  buffer.destroy();
  return bytes / Math.max(seconds, 1e-9);
}

/**
 * Host→GPU copy bandwidth on this adapter, in bytes per second: copies of `bytes` from a
 * `MAP_WRITE | COPY_SRC` buffer (host memory on a discrete GPU) into a GPU buffer, timed as the
 * difference between a submission of 1 copy and one of 1 + `copies`, each waited for (so the
 * fixed cost of submitting and waiting, ~10 ms in Deno, cancels out); the median of `reps` such
 * pairs. The source is never mapped: filling it would time this runtime's mapping, not the bus.
 * This is the link only where such buffers live in host memory: with a resizable BAR they may be
 * in GPU memory (an H200 copies from them at 420 GB/s), and the bus is crossed by the CPU's
 * writes, which `queue.writeBuffer` makes.
 *
 * @example
 * ```ts ignore
 * const bw = await measureUploadBandwidth(gpu, { bytes: 64 * 2 ** 20 });
 * console.log(`${(bw / 1e9).toFixed(1)} GB/s`);
 * ```
 */
export async function measureUploadBandwidth(
  gpu: Gpu,
  options: { bytes?: number; reps?: number; copies?: number } = {},
): Promise<number> {
  const bytes = Math.ceil((options.bytes ?? 64 * 2 ** 20) / 4) * 4;
  const reps = options.reps ?? 3;
  const copies = options.copies ?? 4;
  const { device } = gpu;
  const src = device.createBuffer({
    label: "upload bandwidth source",
    size: bytes,
    usage: GPUBufferUsage.MAP_WRITE | GPUBufferUsage.COPY_SRC,
  });
  const dst = gpu.tensor({
    label: "upload bandwidth target",
    category: "scratch",
    byteSize: bytes,
  });
  const timed = async (n: number) => {
    const encoder = device.createCommandEncoder();
    for (let i = 0; i < n; i++) encoder.copyBufferToBuffer(src, 0, dst.buffer, 0, bytes);
    const t0 = performance.now();
    device.queue.submit([encoder.finish()]);
    await device.queue.onSubmittedWorkDone();
    return performance.now() - t0;
  };
  try {
    await timed(1); // warm-up (and the source's zero-fill)
    const rates: number[] = [];
    for (let r = 0; r < reps; r++) {
      const one = await timed(1);
      const more = await timed(1 + copies);
      rates.push(copies * bytes / (Math.max(more - one, 1e-3) / 1000));
    }
    rates.sort((a, b) => a - b);
    return rates[Math.floor(rates.length / 2)];
  } finally {
    src.destroy();
    dst.destroy();
  }
}

/**
 * Which layers a budget keeps on the GPU, from sizes alone (the estimator's answer; the loader
 * measures the same sizes on the ledger). `fixedBytes` is everything but the decoder layers'
 * linear weights, `reserveBytes` what running adds (logits read back).
 *
 * @example
 * ```ts
 * import { planLayers } from "./streaming.ts";
 * const p = planLayers({ budget: 100, fixedBytes: 20, reserveBytes: 0, layerBytes: 10, layers: 32 });
 * p.residentLayers; // 6: 20 + 6 * 10 + 2 slots * 10 <= 100
 * ```
 */
export function planLayers(sizes: {
  budget: number;
  fixedBytes: number;
  reserveBytes: number;
  layerBytes: number;
  layers: number;
  slots?: number;
}): { residentLayers: number; streamedLayers: number; slots: number; peakBytes: number } {
  const R = sizes.slots ?? 2;
  const room = sizes.budget - sizes.fixedBytes - sizes.reserveBytes;
  const base = sizes.fixedBytes + sizes.reserveBytes;
  if (sizes.layers * sizes.layerBytes <= room) {
    return {
      residentLayers: sizes.layers,
      streamedLayers: 0,
      slots: 0,
      peakBytes: base + sizes.layers * sizes.layerBytes,
    };
  }
  const resident = Math.floor((room - R * sizes.layerBytes) / sizes.layerBytes);
  if (resident < 0) {
    return {
      residentLayers: -1,
      streamedLayers: -1,
      slots: R,
      peakBytes: base + R * sizes.layerBytes,
    };
  }
  return {
    residentLayers: resident,
    streamedLayers: sizes.layers - resident,
    slots: R,
    peakBytes: base + (resident + R) * sizes.layerBytes,
  };
}

/**
 * GPU bytes of one decoder layer's linear weights in `format`, from the layout alone.
 *
 * @example
 * ```ts ignore
 * layerLinearBytes(presetConfig("llama-2-7b"), "nf4"); // ≈ 113 MB
 * ```
 */
export function layerLinearBytes(
  c: LlamaConfig,
  format: QuantFormat,
  quant: QuantLinearFactoryOptions = {},
): number {
  const q = c.numHeads * c.headDim;
  const kv = c.numKvHeads * c.headDim;
  const shapes: [number, number][] = [
    [q, c.hiddenSize],
    [kv, c.hiddenSize],
    [kv, c.hiddenSize],
    [c.hiddenSize, q],
    [c.intermediateSize, c.hiddenSize],
    [c.intermediateSize, c.hiddenSize],
    [c.hiddenSize, c.intermediateSize],
  ];
  return shapes.reduce((s, [n, k]) => s + packedBytesFor(format, n, k, quant), 0);
}
