/**
 * Quantized linear layers: {@linkcode QuantLinear} runs `y = x · Wᵀ` straight from the packed
 * arrays of `lib/quant` — the weights are dequantized inside the product and never exist as
 * FP16 on the GPU — and {@linkcode quantLinearFactory} builds one per tensor for the model
 * loader.
 *
 * Kernels, one file per family (each file's header gives the exact arithmetic):
 * - `kernels/q_int8.wgsl` — int8-vectorwise, int8-absmax, llm-int8: the activations are
 *   quantized on the GPU (per row, or per tensor), the product is int8·int8 with `dot4I8Packed`
 *   and i32 accumulation, rescaled by `sx · sw / 127²`; LLM.int8() adds the outlier columns
 *   (found on the GPU from the current activations) in 16-bit. One activation row (decode) is
 *   quantized by many workgroups in one dispatch (`quantize_row`), so a product is two
 *   dispatches; a layer given `reuseInput` (the same x as the previous layer) skips the
 *   quantization and is one.
 * - `kernels/q_4bit.wgsl` — nf4, fp4, int4 (the 16-entry table is a parameter) and nf4-dq
 *   (block absmax decoded in the kernel from its 8-bit code).
 * - `kernels/q_q8_0.wgsl` — q8_0: int8 codes in groups of 32 with f16 scales.
 *
 * Each has a GEMV entry for one activation row (decode), a tiled GEMM for more, and a multi-row
 * GEMV (`gemv_rows`) for 2 to 8 rows computed each as decode would (`encode`'s `perRow`: the
 * verify pass of speculative decoding), which reads the weights once for all rows. q8_0's
 * one-row GEMV is its `gemv_rows` at one row.
 *
 * @module
 */

import { type Binding, CommandBatch, grid, params } from "../gpu/batch.ts";
import type { Gpu } from "../gpu/device.ts";
import { f16ArrayToF32 } from "../gpu/f16.ts";
import type { Kernel, KernelSpec } from "../gpu/kernel.ts";
import type { GpuTensor } from "../gpu/tensor.ts";
import { DYNAMIC_MAP_SIGNED } from "../quant/dynamic_map.ts";
import { FP4_TABLE } from "../quant/fp4.ts";
import {
  type QuantFormat,
  quantize,
  type QuantizedWeight,
  type QuantOptions,
} from "../quant/formats.ts";
import { INT4_TABLE } from "../quant/int4.ts";
import { LLM_INT8_THRESHOLD } from "../quant/llm_int8.ts";
import { NESTED_BLOCKSIZE } from "../quant/nf4_dq.ts";
import { NF4_TABLE } from "../quant/nf4.ts";
import { Q4_0_TABLE } from "../quant/ggml.ts";
import { bindingBytes, requireBytes, type RowChunk, tensorRowChunks } from "./chunks.ts";
import { RowsKernel, rowsPipelineCounts } from "./rows_kernel.ts";
import {
  createGemmOuter,
  defaultRowsFeatures,
  encodeGemm,
  Fp16Linear,
  GEMM_OUTER_FEATURES,
  gemmKernelFor,
  type GemmKernels,
  holdGemmKernels,
  type Int8Input,
  type Linear,
  type LinearEncodeOptions,
  type LinearStack,
  MAX_GEMV_ROWS,
  releaseGemmKernels,
} from "./linear.ts";

/**
 * The formats {@linkcode QuantLinear} runs: every {@linkcode QuantFormat} but `"fp16"`
 * (that is {@linkcode Fp16Linear}).
 *
 * @example
 * ```ts
 * import type { QuantLinearFormat } from "./quant_linear.ts";
 * const f: QuantLinearFormat = "nf4-dq";
 * ```
 */
export type QuantLinearFormat = Exclude<QuantFormat, "fp16">;

/**
 * Launch shapes of the quantized kernels; the defaults suit the software adapter and are sane
 * on GPUs.
 *
 * @example
 * ```ts
 * import type { QuantTuning } from "./quant_linear.ts";
 * const t: QuantTuning = { gemvThreadsPerRow: 64 };
 * ```
 */
export interface QuantTuning {
  /** GEMV threads per workgroup (default 256). */
  gemvWorkgroupSize?: number;
  /**
   * GEMV threads per output feature, a power of two dividing the workgroup (default 32; on a
   * hardware adapter 4-bit layers take 64 where N ≤ 4096 or K > N, Q8_0, int8-vectorwise and
   * int8-absmax layers 16 where N > K).
   */
  gemvThreadsPerRow?: number;
  /** 4-bit GEMV: output features per thread group, 2, 4 or 8 (default 4). */
  gemvRowsPerThread?: number;
  /**
   * int8 GEMV: four units of K per thread and step with their loads issued together (default on
   * a hardware adapter, off on a software one).
   */
  gemvUnroll?: boolean;
  /**
   * 4-bit f16 GEMV: issue each step's code and scale loads one step ahead, before the x tile's
   * barriers (default off).
   */
  gemvPrefetch?: boolean;
  /**
   * 4-bit f16 GEMV: code values from a 256-entry table of pairs (`"pairs"`, one lookup per byte,
   * bank conflicts) or a 16-entry table copied per bank (`"banked"`, two conflict-free lookups
   * per byte). Default `"pairs"`.
   */
  gemvTable?: "pairs" | "banked";
  /**
   * Offer SwiGLU folded into the product's input read ({@linkcode QuantLinear.fusesSwiglu};
   * default true): the 4-bit f16 GEMV (K % 32 == 0) and Q8_0's f16 one-row product stage
   * silu(x) · up as their x, and the int8 formats but LLM.int8() quantize silu(x) · up as their
   * activation row.
   */
  gemvFuseSwiglu?: boolean;
  /**
   * 4-bit f16 GEMV (K % 32 == 0): stage the whole row of x in workgroup memory once instead of
   * a tile per step, so the loop over K has no barriers (default false; ignored where K·2.25
   * bytes do not fit the device's workgroup memory).
   */
  gemvFullX?: boolean;
  /**
   * 4-bit f16 GEMV (K % 32 == 0) and Q8_0's f16 one-row product: offer the residual add in the
   * product's epilogue
   * ({@linkcode QuantLinear.addsToOutput}) and RMSNorm folded into its input
   * ({@linkcode QuantLinear.foldsRmsNorm}), which take a decode layer's two norm dispatches away.
   * Default: on a hardware adapter.
   */
  gemvFoldNorm?: boolean;
  /**
   * Multi-row GEMV (`gemv_rows`): output features per lane group, 2 (default) or 4 (each load
   * of x serves four weight rows, with half the threads).
   */
  gemvRowsFeatures?: 2 | 4;
  /**
   * Multi-row GEMV: load the codes (the weights) ahead, so that they are in flight with other
   * work (default true): the 4-bit formats load the next step's while this step's sums are made,
   * the others each step's before its x is staged.
   */
  gemvRowsPrefetch?: boolean;
  /** Multi-row GEMV: threads per workgroup (default: the GEMV's). */
  gemvRowsWorkgroupSize?: number;
  /**
   * Multi-row GEMV: a pipeline made for each row count, 2 to 8 (1 to 8 for Q8_0, whose one-row
   * product is its multi-row GEMV at one row; `RowsKernel`; default: on a hardware adapter), or
   * one for any count.
   */
  gemvRowsPerCount?: boolean;
  /**
   * llm-int8 GEMV (K % 16 == 0, no FP16 columns): outliers per 1024 input columns from which a
   * product sums its outlier columns densely, over the int8 part's weight loads, instead of
   * walking the outlier list (q_int8.wgsl's header); 0 to 1025 (1025: never). Default 4.
   */
  llmDenseOutliers?: number;
  /** int8 formats: GEMM activation rows per workgroup tile, multiple of 4 (default 64). */
  gemmTileM?: number;
  /** int8 formats: GEMM output features per workgroup tile, multiple of 4 (default 64). */
  gemmTileN?: number;
  /**
   * 4-bit and Q8_0: rows per workgroup of the GEMM (`gemm_outer`: 128 features wide, 8x8 outputs
   * per thread, f32 arithmetic): 128 (default) or 64.
   */
  gemmOuterRows?: 64 | 128;
  /** 4-bit and Q8_0: `gemm_outer` with K steps of 32 ({@linkcode Fp16Tuning.gemmOuterK32}). */
  gemmOuterK32?: boolean;
  /** 4-bit and Q8_0: `gemm_outer` with two tiles ({@linkcode Fp16Tuning.gemmOuterDoubleBuffer}). */
  gemmOuterDoubleBuffer?: boolean;
  /** 4-bit and Q8_0: `gemm_outer` split over K ({@linkcode Fp16Tuning.gemmOuterSplitK}). */
  gemmOuterSplitK?: boolean;
  /**
   * 4-bit and Q8_0: `gemm_outer` split across workgroups
   * ({@linkcode Fp16Tuning.gemmOuterSpread}).
   */
  gemmOuterSpread?: number;
  /**
   * 4-bit and Q8_0: 64-row tiles beside the 128-row ones for short products
   * ({@linkcode Fp16Tuning.gemmOuterShortTiles}).
   */
  gemmOuterShortTiles?: boolean;
}

/**
 * Options for {@linkcode QuantLinear.create}.
 *
 * @example
 * ```ts ignore
 * const opts: QuantLinearOptions = { label: "q_proj", weight: quantize("nf4", w, n, k) };
 * ```
 */
export interface QuantLinearOptions {
  /** Ledger label prefix of the weight arrays, e.g. `layers.0.mlp.down_proj.weight`. */
  label: string;
  /** The packed weight from `lib/quant`'s `quantize` (any format but fp16). */
  weight: QuantizedWeight;
  /**
   * Use `shader-f16` arithmetic where the format has an f16 path; default `gpu.f16`, except the
   * 4-bit formats on a software adapter (f32 there: faster on llvmpipe). The int8 formats'
   * product is integer either way: f16 only changes LLM.int8()'s outlier part.
   */
  f16?: boolean;
  /** llm-int8: outlier threshold on |x| (default 6.0; 0 turns the decomposition off). */
  threshold?: number;
  /**
   * llm-int8: weights for the outlier columns: `"dequantized"` int8 (default, bitsandbytes),
   * or `"fp16"` — the FP16 copies the weight keeps (`fp16Columns`), falling back to the
   * dequantized ones for columns without a copy.
   */
  outlierWeights?: "dequantized" | "fp16";
  /**
   * Largest weight binding in bytes; default the device's `maxStorageBufferBindingSize`.
   * Larger code arrays are bound in chunks of output features. Tests lower it.
   */
  maxBindingBytes?: number;
  /** Workgroup shapes. */
  tuning?: QuantTuning;
}

/** What the model loader asks a factory to build (structurally `LinearRequest` of the model). */
export interface QuantLinearRequest {
  /** Full tensor name, e.g. `model.layers.3.mlp.down_proj.weight`. */
  name: string;
  /** Layer index, or -1 for the LM head. */
  layer: number;
  /** Which linear layer of the block, or `"lm_head"`. */
  kind: string;
  /** Weights as f16 bits, `[outFeatures, inFeatures]` row-major. */
  weight: Uint16Array;
  /** N. */
  outFeatures: number;
  /** K. */
  inFeatures: number;
}

/**
 * Builds one linear layer from its f16 weights (the model's `LinearFactory` shape).
 *
 * @example
 * ```ts ignore
 * const factory: QuantLinearFactory = quantLinearFactory("nf4");
 * ```
 */
export type QuantLinearFactory = (gpu: Gpu, request: QuantLinearRequest) => Promise<Linear>;

/**
 * Options for {@linkcode quantLinearFactory}: the quantizer's options plus the layer's.
 *
 * @example
 * ```ts
 * import type { QuantLinearFactoryOptions } from "./quant_linear.ts";
 * const o: QuantLinearFactoryOptions = { blocksize: 128, f16: false };
 * ```
 */
export interface QuantLinearFactoryOptions extends QuantOptions {
  /**
   * Use `shader-f16` arithmetic where the format has it; default as
   * {@linkcode QuantLinearOptions.f16}.
   */
  f16?: boolean;
  /** Workgroup shapes. */
  tuning?: QuantTuning;
}

/**
 * A factory for the model loader: each tensor arrives as f16 bits, is quantized on the CPU and
 * uploaded packed. `"fp16"` gives {@linkcode Fp16Linear}, so one call site covers every format.
 *
 * @example
 * ```ts ignore
 * const model = await LlamaModel.load(dir, { linear: quantLinearFactory("llm-int8", { threshold: 6 }) });
 * ```
 */
export function quantLinearFactory(
  format: QuantFormat,
  options: QuantLinearFactoryOptions = {},
): QuantLinearFactory {
  return (gpu, r) => {
    if (format === "fp16") {
      return Fp16Linear.create(gpu, {
        label: r.name,
        weight: r.weight,
        outFeatures: r.outFeatures,
        inFeatures: r.inFeatures,
        f16: options.f16,
      });
    }
    const w = f16ArrayToF32(r.weight);
    const weight = quantize(format, w, r.outFeatures, r.inFeatures, options);
    return QuantLinear.create(gpu, {
      label: r.name,
      weight,
      f16: options.f16,
      threshold: options.threshold,
      outlierWeights: options.outlierWeights,
      tuning: options.tuning,
    });
  };
}

// ---------------------------------------------------------------------------------------------
// Per-device state shared by every quantized layer: the int8 activation scratch (codes and
// row scales, rewritten by each int8 product, so one buffer serves all layers), what it holds,
// and the NF4-DQ dynamic map (one 1 KiB constant per model, as lib/quant's accounting assumes).
// Freed when the last layer of the device is destroyed.

/** How an int8 layer quantizes its input: products with equal keys write the same scratch. */
interface InputKey {
  batch: CommandBatch;
  x: GpuTensor;
  offset: number; // bytes; the product reads rows · k · 4 bytes from there
  rows: number;
  k: number;
  mode: "vectorwise" | "absmax" | "llm";
  threshold: number; // llm: outlier threshold; else 0
  kept: Uint32Array | null; // llm with FP16 columns: the list's kept indices point into these
  perRow: boolean; // each row quantized on its own (quantize_rows)
  xq: GpuTensor;
  sx: GpuTensor;
}

/** The input the shared scratch holds: the last int8 product that quantized. */
interface HeldInput extends InputKey {
  /** llm: the layer's buffer holding the outlier list of this input. */
  outliers: GpuTensor | null;
  owner: QuantLinear;
  /** The owner's count of quantizing products when this one was recorded. */
  generation: number;
}

function sameInput(a: InputKey, b: InputKey): boolean {
  return a.batch === b.batch && a.x === b.x && a.offset === b.offset && a.rows === b.rows &&
    a.k === b.k && a.mode === b.mode && a.threshold === b.threshold && a.perRow === b.perRow &&
    a.xq === b.xq &&
    a.sx === b.sx && sameColumns(a.kept, b.kept);
}

function sameColumns(a: Uint32Array | null, b: Uint32Array | null): boolean {
  if (a === null || b === null) return a === b;
  return a.length === b.length && a.every((c, i) => c === b[i]);
}

interface Shared {
  layers: number;
  xq: GpuTensor | null;
  sx: GpuTensor | null;
  /** What xq and sx (and, for llm, its owner's outlier list) hold now; null: unknown. */
  input: HeldInput | null;
  // Outgrown scratch stays alive until the last layer goes: an unsubmitted batch may still
  // bind it, and destroying a buffer a pending submission uses is a validation error.
  retired: GpuTensor[];
  dmap: GpuTensor | null;
  /** Maps of NF4-DQ weights that bring their own (bitsandbytes checkpoints), by content. */
  maps: Map<string, GpuTensor>;
  /** llm products with `perRow`: one outlier list per row (quantize_rows), shared by all layers. */
  rowLists: GpuTensor | null;
}

const sharedState = new WeakMap<Gpu, Shared>();

function acquireShared(gpu: Gpu): Shared {
  let s = sharedState.get(gpu);
  if (!s) {
    s = {
      layers: 0,
      xq: null,
      sx: null,
      input: null,
      retired: [],
      dmap: null,
      maps: new Map(),
      rowLists: null,
    };
    sharedState.set(gpu, s);
  }
  s.layers++;
  return s;
}

function releaseShared(gpu: Gpu): void {
  const s = sharedState.get(gpu);
  if (!s) return;
  if (--s.layers > 0) return;
  for (const t of [s.xq, s.sx, s.dmap, s.rowLists, ...s.retired, ...s.maps.values()]) {
    t?.destroy();
  }
  sharedState.delete(gpu);
}

const pow2 = (n: number) => 2 ** Math.ceil(Math.log2(Math.max(n, 256)));

/**
 * Bytes of the int8 activation scratch (codes and row scales) that int8 products of `rows`
 * rows and `k` inputs need; shared by every int8 layer of a device.
 *
 * @example
 * ```ts
 * import { int8ScratchBytes } from "./quant_linear.ts";
 * int8ScratchBytes(128, 768); // 131072 + 512
 * ```
 */
export function int8ScratchBytes(rows: number, k: number): number {
  return pow2(rows * k) + pow2(rows * 4);
}

/**
 * Bytes of one LLM.int8() layer's outlier list (a count and three words per input column).
 *
 * @example
 * ```ts
 * import { llmInt8OutlierBytes } from "./quant_linear.ts";
 * llmInt8OutlierBytes(256); // 3076
 * ```
 */
export function llmInt8OutlierBytes(k: number): number {
  return (1 + 3 * k) * 4;
}

/**
 * Allocates the shared int8 scratch for products of up to `rows` × `k` now, so that it never
 * grows mid-run (a model calls this once its layers exist). Does nothing without int8 layers.
 *
 * @example
 * ```ts ignore
 * reserveInt8Scratch(gpu, 128, config.intermediateSize);
 * ```
 */
export function reserveInt8Scratch(gpu: Gpu, rows: number, k: number): void {
  const s = sharedState.get(gpu);
  if (s) int8Scratch(gpu, s, rows, k);
}

function int8Scratch(gpu: Gpu, s: Shared, rows: number, k: number): [GpuTensor, GpuTensor] {
  if (!s.xq || s.xq.byteSize < rows * k) {
    if (s.xq) s.retired.push(s.xq);
    s.xq = gpu.tensor({
      label: "int8 activation codes (shared)",
      category: "scratch",
      byteSize: pow2(rows * k),
      dtype: "u8x4",
    });
  }
  if (!s.sx || s.sx.byteSize < rows * 4) {
    if (s.sx) s.retired.push(s.sx);
    s.sx = gpu.tensor({
      label: "int8 activation scales (shared)",
      category: "scratch",
      byteSize: pow2(rows * 4),
    });
  }
  return [s.xq, s.sx];
}

/**
 * Bytes of the per-row outlier lists of LLM.int8() products with `perRow` (a count and two
 * words per column for each of up to {@linkcode MAX_GEMV_ROWS} rows), shared by the layers of a
 * device and allocated by the first such product.
 *
 * @example
 * ```ts
 * import { llmInt8RowListBytes } from "./quant_linear.ts";
 * llmInt8RowListBytes(256); // 8 · (1 + 512) · 4
 * ```
 */
export function llmInt8RowListBytes(k: number): number {
  return MAX_GEMV_ROWS * (1 + 2 * k) * 4;
}

function rowLists(gpu: Gpu, s: Shared, k: number): GpuTensor {
  const bytes = llmInt8RowListBytes(k);
  if (!s.rowLists || s.rowLists.byteSize < bytes) {
    if (s.rowLists) s.retired.push(s.rowLists);
    s.rowLists = gpu.tensor({
      label: "llm-int8 per-row outlier lists (shared)",
      category: "scratch",
      byteSize: bytes,
      dtype: "u32",
    });
  }
  return s.rowLists;
}

function dynamicMap(gpu: Gpu, s: Shared, own?: Float32Array): GpuTensor {
  if (own && own.some((v, i) => v !== DYNAMIC_MAP_SIGNED[i])) {
    const key = Array.from(new Uint32Array(own.buffer, own.byteOffset, 256)).join(",");
    let t = s.maps.get(key);
    if (!t) {
      t = gpu.tensor({ label: "nf4-dq checkpoint map (shared)", category: "weights", data: own });
      s.maps.set(key, t);
    }
    return t;
  }
  s.dmap ??= gpu.tensor({
    label: "nf4-dq dynamic map (shared)",
    category: "weights",
    data: DYNAMIC_MAP_SIGNED,
  });
  return s.dmap;
}

// ---------------------------------------------------------------------------------------------

type Family = "int8" | "4bit" | "q8_0";

const TABLES: Partial<Record<QuantLinearFormat, Float32Array>> = {
  "nf4": NF4_TABLE,
  "nf4-dq": NF4_TABLE,
  "fp4": FP4_TABLE,
  "int4": INT4_TABLE,
  "q4_0": Q4_0_TABLE,
};

function familyOf(format: QuantLinearFormat): Family {
  if (format === "q8_0") return "q8_0";
  if (format in TABLES) return "4bit";
  return "int8";
}

interface Kernels {
  gemv: Kernel;
  /** 4-bit f16 gemv with K % 32 == 0: the same with SwiGLU on its input (SWIGLU). */
  gemvSwiglu?: Kernel;
  /** The same with the residual add in its epilogue (RESID), without and with SWIGLU. */
  gemvResid?: Kernel;
  gemvSwigluResid?: Kernel;
  /** The gemv (with the layer's routing) reading rmsnorm(x) · weight (NORM). */
  gemvNorm?: Kernel;
  /** int8 (not LLM.int8()): quantize_row of silu(x) · up (SWIGLU). */
  quantizeRowSwiglu?: Kernel;
  /** The same for 2 to 8 rows each alone: quantize_rows (SWIGLU). */
  quantizeRowsSwiglu?: Kernel;
  /** The prefill product (gemm_outer, with its K-split twin where built; int8: the integer gemm). */
  gemm: GemmKernels;
  /** Multi-row GEMV (absent: 4-bit with K % 32 != 0, where perRow products take the GEMM). */
  gemvRows?: RowsKernel;
  quantizeRows?: Kernel;
  quantize?: Kernel;
  quantizeRow?: Kernel;
  absmaxAll?: Kernel;
  outlierMask?: Kernel;
}

/** The formats whose layers {@linkcode QuantLinear.canStack} may stack. */
const STACKABLE: ReadonlySet<QuantLinearFormat> = new Set<QuantLinearFormat>([
  "nf4",
  "nf4-dq",
  "fp4",
  "int4",
  "q4_0",
  "int8-vectorwise",
  "llm-int8",
  "q8_0",
]);

/** Threads per workgroup of the int8 activation kernels (QWG in q_int8.wgsl). */
const QUANT_WG = 256;

/**
 * A linear layer whose weights stay in a quantized format on the GPU. One activation row runs
 * the format's GEMV kernel, more rows its tiled GEMM; the int8 formats first quantize the
 * activations on the GPU (at one row: one dispatch of ⌈K / 1024⌉ workgroups), which
 * `encode(..., { reuseInput: true })` skips when the shared scratch already holds that x.
 *
 * GPU memory: exactly the packed arrays of the weight (ledger category "weights";
 * {@linkcode weightBytes} equals lib/quant's `packedBytes`), plus, shared by all layers of a
 * device, the int8 activation scratch (category "scratch", `rows · K` bytes for the widest
 * product so far) and, for nf4-dq, the 1 KiB dynamic map (category "weights"). LLM.int8()
 * layers own a `(1 + 3K)`-word outlier buffer (scratch).
 *
 * @example
 * ```ts ignore
 * import { quantize } from "../quant/formats.ts";
 * const lin = await QuantLinear.create(gpu, { label: "q_proj", weight: quantize("nf4", w, n, k) });
 * const batch = new CommandBatch(gpu);
 * lin.encode(batch, x, y, 1);
 * batch.submit();
 * lin.destroy();
 * ```
 */
export class QuantLinear implements Linear {
  /** The weight format. */
  readonly format: QuantLinearFormat;
  /** K. */
  readonly inFeatures: number;
  /** N. */
  readonly outFeatures: number;
  /** Bytes of the uploaded weight arrays: lib/quant's `packedBytes` of the weight. */
  readonly weightBytes: number;
  /** Whether the kernels use f16 arithmetic where the format has an f16 path. */
  readonly f16: boolean;
  #chunks: RowChunk[];
  #gpu: Gpu;
  #shared: Shared | null;
  #family: Family;
  #owned: GpuTensor[];
  #arrays: Binding[]; // the per-format arrays bound after the codes, in binding order
  #kernels: Kernels;
  #build: BuildOptions; // how the kernels were chosen (a stack compiles its own from it)
  #maxBytes: number;
  // a stacked layer: its codes and arrays are views of the stack's tensors
  #stacked = false;
  // a stack's whole matrix: gemv writes features [split1, split2) and [split2, N) to other ys
  #splits: [number, number] | null = null;
  #borrowedOutliers = false; // a stack's matrix writes its first layer's outlier list
  #shape: Shape;
  #blocksize: number;
  #table: Float32Array | null;
  #threshold: number;
  #outliers: GpuTensor | null;
  #kept: { columns: GpuTensor; weights: GpuTensor } | null;
  #keptColumns: Uint32Array | null; // CPU copy of the kept columns, for the input key
  #generation = 0; // quantizing products recorded by this layer
  // llm: where the outlier list of this layer's latest product lives when it reused another
  // layer's (null: its own buffer)
  #listFrom: { owner: QuantLinear; generation: number; outliers: GpuTensor } | null = null;

  private constructor(
    gpu: Gpu,
    shared: Shared,
    init: {
      format: QuantLinearFormat;
      n: number;
      k: number;
      f16: boolean;
      chunks: RowChunk[];
      owned: GpuTensor[];
      arrays: Binding[];
      kernels: Kernels;
      build: BuildOptions;
      maxBytes: number;
      shape: Shape;
      blocksize: number;
      threshold: number;
      outliers: GpuTensor | null;
      kept: { columns: GpuTensor; weights: GpuTensor } | null;
      keptColumns: Uint32Array | null;
    },
  ) {
    this.#gpu = gpu;
    this.#shared = shared;
    holdGemmKernels(gpu, init.kernels.gemm);
    this.format = init.format;
    this.#family = familyOf(init.format);
    this.outFeatures = init.n;
    this.inFeatures = init.k;
    this.f16 = init.f16;
    this.#chunks = init.chunks;
    this.#owned = init.owned;
    this.weightBytes = init.owned.reduce((s, t) => s + t.byteSize, 0);
    this.#arrays = init.arrays;
    this.#kernels = init.kernels;
    this.#build = init.build;
    this.#maxBytes = init.maxBytes;
    this.#shape = init.shape;
    this.#blocksize = init.blocksize;
    this.#table = TABLES[init.format] ?? null;
    this.#threshold = init.threshold;
    this.#outliers = init.outliers;
    this.#kept = init.kept;
    this.#keptColumns = init.keptColumns;
  }

  /** Uploads the packed arrays of `weight` and compiles the format's kernels. */
  static async create(gpu: Gpu, opts: QuantLinearOptions): Promise<QuantLinear> {
    const { label, weight } = opts;
    if (weight.format === "fp16") {
      throw new Error(`${label}: fp16 weights are Fp16Linear's; QuantLinear runs the others`);
    }
    if (weight.format === "q4_k" || weight.format === "q6_k") {
      throw new Error(`${label}: ${weight.format} weights are KQuantLinear's`);
    }
    const format = weight.format;
    const { n, k } = weight;
    const family = familyOf(format);
    const f16 = opts.f16 ?? defaultF16(gpu, family);
    if (f16 && !gpu.f16) {
      throw new Error(`${label}: f16 arithmetic requested but the device lacks shader-f16`);
    }
    const t = opts.tuning ?? {};
    checkTuning(gpu, label, format, n, k, t);
    const threshold = opts.threshold ?? LLM_INT8_THRESHOLD;
    checkThreshold(label, threshold);

    const owned: GpuTensor[] = [];
    const upload = (name: string, data: Uint32Array | Float32Array, dtype: "u32" | "f32") => {
      const tensor = gpu.tensor({ label: `${label}.${name}`, category: "weights", data, dtype });
      owned.push(tensor);
      return tensor;
    };
    const shared = acquireShared(gpu);
    const extra: GpuTensor[] = [];
    try {
      const codes = upload("codes", weight.codes, "u32");
      const arrays: GpuTensor[] = [];
      let rowBytes: number | null; // bytes per row of codes, when rows are whole words
      let blocksize = 0;
      let outliers: GpuTensor | null = null;
      let kept: { columns: GpuTensor; weights: GpuTensor } | null = null;
      switch (weight.format) {
        case "int8-absmax":
          arrays.push(upload("absmax", weight.absmax, "f32"));
          rowBytes = k;
          break;
        case "int8-vectorwise":
          arrays.push(upload("scb", weight.scb, "f32"));
          rowBytes = k;
          break;
        case "llm-int8": {
          arrays.push(upload("scb", weight.scb, "f32"));
          rowBytes = k;
          if (weight.fp16Columns.length > 0) {
            kept = {
              columns: upload("fp16Columns", weight.fp16Columns, "u32"),
              weights: upload("fp16Weights", weight.fp16Weights, "u32"),
            };
          }
          outliers = gpu.tensor({
            label: `${label}.outliers`,
            category: "scratch",
            byteSize: llmInt8OutlierBytes(k),
            dtype: "u32",
          });
          extra.push(outliers);
          break;
        }
        case "nf4":
        case "fp4":
        case "int4":
        case "q4_0":
          arrays.push(upload("absmax", weight.absmax, "f32"));
          blocksize = weight.blocksize;
          rowBytes = k % 8 === 0 ? k / 2 : null;
          break;
        case "nf4-dq":
          if (weight.nestedBlocksize !== NESTED_BLOCKSIZE) {
            throw new RangeError(
              `${label}: nested blocksize ${weight.nestedBlocksize}; the kernel decodes ` +
                `blocks of ${NESTED_BLOCKSIZE}`,
            );
          }
          arrays.push(
            upload("qabsmax", weight.qabsmax, "u32"),
            upload("absmax2", weight.absmax2, "f32"),
            upload("offset", weight.offset, "f32"),
            dynamicMap(gpu, shared, weight.map),
          );
          blocksize = weight.blocksize;
          rowBytes = k % 8 === 0 ? k / 2 : null;
          break;
        case "q8_0":
          arrays.push(upload("scales", weight.scales, "u32"));
          rowBytes = k;
          break;
      }
      const maxBytes = opts.maxBindingBytes ?? gpu.limits.maxStorageBufferBindingSize;
      let chunks: RowChunk[];
      if (rowBytes === null) {
        if (codes.byteSize > maxBytes) {
          throw new RangeError(
            `${label}: ${codes.byteSize} bytes of 4-bit codes exceed one binding and K=${k} ` +
              `is not a multiple of 8, so rows are not whole words to split at`,
          );
        }
        chunks = [{ start: 0, count: n, binding: codes }];
      } else {
        chunks = tensorRowChunks(gpu, codes, n, rowBytes, maxBytes);
      }
      for (const a of arrays) {
        if (a.byteSize > gpu.limits.maxStorageBufferBindingSize) {
          throw new RangeError(`${a.label}: ${a.byteSize} bytes exceed one storage binding`);
        }
      }

      const useKept = kept !== null && opts.outlierWeights === "fp16";
      const build: BuildOptions = { format, family, f16, k, useKept, tuning: t };
      const { kernels, shape } = await buildKernels(gpu, label, build, n, []);
      return new QuantLinear(gpu, shared, {
        format,
        n,
        k,
        f16,
        chunks,
        owned,
        arrays,
        kernels,
        build,
        maxBytes,
        shape,
        blocksize,
        threshold,
        outliers,
        kept: useKept ? kept : null,
        keptColumns: useKept && weight.format === "llm-int8" ? weight.fp16Columns.slice() : null,
      });
    } catch (err) {
      for (const o of [...owned, ...extra]) o.destroy();
      releaseShared(gpu);
      throw err;
    }
  }

  /** The code array's bindings, one per chunk of output features. */
  get chunks(): readonly RowChunk[] {
    return this.#chunks;
  }

  /**
   * Whether {@linkcode QuantLinearStack.create} can stack `layers` (in this order) on `gpu`: two
   * or three unstacked layers of one format with the same K and settings, with no chunked codes,
   * where each layer's codes start on the storage binding alignment and hold whole blocks.
   * Formats: nf4, nf4-dq (whole groups of 256 blocks per layer), fp4, int4, q4_0, q8_0,
   * int8-vectorwise and llm-int8 (without FP16 outlier columns); int8-absmax's per-tensor scale
   * does not stack.
   */
  static canStack(gpu: Gpu, layers: readonly Linear[]): boolean {
    if (layers.length < 2 || layers.length > 3) return false;
    if (!layers.every((l) => l instanceof QuantLinear)) return false;
    const ls = layers as readonly QuantLinear[];
    const a = ls[0];
    if (!STACKABLE.has(a.format)) return false;
    const align = gpu.limits.minStorageBufferOffsetAlignment;
    const maxBinding = gpu.limits.maxStorageBufferBindingSize;
    let codes = 0;
    for (const l of ls) {
      if (
        l.#shared === null || l.#stacked || l.#splits || l.#gpu !== gpu || l.#kept ||
        l.format !== a.format || l.inFeatures !== a.inFeatures || l.f16 !== a.f16 ||
        l.#blocksize !== a.#blocksize || l.#threshold !== a.#threshold ||
        JSON.stringify(l.#build) !== JSON.stringify(a.#build) || l.#chunks.length !== 1 ||
        l.#arrays.length !== a.#arrays.length
      ) return false;
      const own = l.#owned[0];
      if (l.#chunks[0].binding !== own || codes % align) return false;
      codes += own.byteSize;
      // the 4-bit formats: whole blocks per layer (nf4-dq: whole groups of 256 blocks, each
      // with its nested scale), so the stacked blocks are the layers' blocks
      const blocks = (l.outFeatures * l.inFeatures) / a.#blocksize;
      if (a.#family === "4bit" && !Number.isInteger(blocks)) return false;
      if (a.format === "nf4-dq" && blocks % NESTED_BLOCKSIZE) return false;
    }
    const modes = QuantLinear.#arrayModes(ls, align);
    if (modes === null) return false;
    const sizes = modes.map((_, i) => ls.reduce((s, l) => s + bindingBytes(l.#arrays[i]), 0));
    return codes <= maxBinding && codes <= a.#maxBytes && sizes.every((b) => b <= maxBinding);
  }

  /**
   * How a stack holds each of the layers' arrays: moved into one tensor (every layer's part
   * starts on the binding alignment), copied into one (the layers keep theirs; only arrays of at
   * most 1/1024 of the codes' bytes: nf4-dq's per-tensor offsets, its nested scales or int8
   * row scales at K ≥ 4096 where layers are off the alignment), or shared (nf4-dq's dynamic map,
   * one tensor for every layer). Null: not stackable.
   */
  static #arrayModes(
    ls: readonly QuantLinear[],
    align: number,
  ): ("move" | "copy" | "share")[] | null {
    const modes: ("move" | "copy" | "share")[] = [];
    const codes = ls.reduce((s, l) => s + l.#owned[0].byteSize, 0);
    for (const [i, first] of ls[0].#arrays.entries()) {
      const arrays = ls.map((l) => l.#arrays[i]);
      if (arrays.every((t) => t === first) && !ls[0].#owned.includes(first as GpuTensor)) {
        modes.push("share");
        continue;
      }
      if (!arrays.every((t, j) => "buffer" in t && ls[j].#owned.includes(t))) return null;
      let at = 0;
      let aligned = true;
      for (const t of arrays as GpuTensor[]) {
        aligned &&= at % align === 0;
        at += t.byteSize;
      }
      if (!aligned && at * 1024 > codes) return null;
      modes.push(aligned ? "move" : "copy");
    }
    return modes;
  }

  /**
   * Moves `layers` into one matrix (see {@linkcode QuantLinearStack.create}, which checks
   * {@linkcode canStack} first): returns that matrix, whose gemv routes each layer's rows to its
   * output, the tensors it holds, and how many of their bytes are copies of arrays the layers
   * keep; each layer keeps working on its rows of the stacked codes.
   */
  static async stack(
    gpu: Gpu,
    label: string,
    layers: readonly QuantLinear[],
  ): Promise<{ whole: QuantLinear; tensors: GpuTensor[]; copiedBytes: number }> {
    if (!QuantLinear.canStack(gpu, layers)) {
      throw new RangeError(`${label}: these layers cannot be stacked (see QuantLinear.canStack)`);
    }
    const a = layers[0];
    const k = a.inFeatures;
    const total = layers.reduce((s, l) => s + l.outFeatures, 0);
    const modes = QuantLinear.#arrayModes(layers, gpu.limits.minStorageBufferOffsetAlignment)!;
    // per layer: its codes, then its arrays in binding order (shared ones: not copied)
    const sources = layers.map((l) => [l.#owned[0], ...(l.#arrays as GpuTensor[])]);
    const kinds = ["move", ...modes];
    const names = ["codes", ...a.#arrays.map((t) => (t as GpuTensor).label.split(".").pop())];
    const tensors: GpuTensor[] = [];
    const shared = acquireShared(gpu);
    let copiedBytes = 0;
    try {
      // index i of `sources`: the stacked tensor (or the shared one)
      const stacked = names.map((name, i) => {
        if (kinds[i] === "share") return sources[0][i];
        const byteSize = sources.reduce((s, src) => s + src[i].byteSize, 0);
        if (kinds[i] === "copy") copiedBytes += byteSize;
        const t = gpu.tensor({
          label: `${label}.${name}`,
          category: "weights",
          byteSize,
          dtype: sources[0][i].dtype,
        });
        tensors.push(t);
        return t;
      });
      const batch = new CommandBatch(gpu);
      const offsets = sources.map(() => names.map(() => 0));
      const at = names.map(() => 0);
      sources.forEach((src, l) =>
        src.forEach((t, i) => {
          if (kinds[i] === "share") return;
          offsets[l][i] = at[i];
          batch.copy(t, 0, stacked[i], at[i], t.byteSize);
          at[i] += t.byteSize;
        })
      );
      batch.submit();
      const splits: [number, number] = [
        layers[0].outFeatures,
        layers.length === 3 ? layers[0].outFeatures + layers[1].outFeatures : total,
      ];
      const route = layers.length === 3 ? ["ROUTE3"] : ["ROUTE2"];
      const { kernels, shape } = await buildKernels(gpu, label, a.#build, total, route);
      const whole = new QuantLinear(gpu, shared, {
        format: a.format,
        n: total,
        k,
        f16: a.f16,
        chunks: [{ start: 0, count: total, binding: stacked[0] }],
        owned: [],
        arrays: stacked.slice(1),
        kernels,
        build: a.#build,
        maxBytes: a.#maxBytes,
        shape,
        blocksize: a.#blocksize,
        threshold: a.#threshold,
        // llm-int8: the outlier list of the stack's x goes where the first layer keeps the list
        // of its own products (the same x), rather than into a buffer of its own
        outliers: a.#outliers,
        kept: null,
        keptColumns: null,
      });
      whole.#splits = splits;
      whole.#borrowedOutliers = true;
      await gpu.sync(); // the copies are done before the layers' own arrays go
      layers.forEach((l, j) => {
        const src = sources[j];
        const moved = src.filter((_, i) => kinds[i] === "move");
        const view = (i: number): Binding => ({
          tensor: stacked[i],
          offset: offsets[j][i],
          size: src[i].byteSize,
        });
        l.#chunks = [{ start: 0, count: l.outFeatures, binding: view(0) }];
        l.#arrays = l.#arrays.map((t, i) => kinds[i + 1] === "move" ? view(i + 1) : t);
        l.#owned = l.#owned.filter((t) => !moved.includes(t));
        l.#stacked = true;
        for (const t of moved) t.destroy();
      });
      return { whole, tensors, copiedBytes };
    } catch (err) {
      for (const t of tensors) t.destroy();
      releaseShared(gpu);
      throw err;
    }
  }

  /**
   * The arrays this layer uploaded, each labelled `<label>.<field>` after its field of the
   * {@linkcode QuantizedWeight} (`codes`, `absmax`, `scb`, ...): what layer streaming overwrites
   * to put another layer's weights in its place.
   */
  get weightTensors(): readonly GpuTensor[] {
    return this.#owned;
  }

  /** llm-int8: the outlier threshold on |x| used by the next {@linkcode encode}. */
  get threshold(): number {
    return this.#threshold;
  }

  /**
   * llm-int8: sets the outlier threshold for later products (0 turns the decomposition off),
   * so a sweep needs no reload.
   */
  setThreshold(threshold: number): void {
    if (this.format !== "llm-int8") {
      throw new Error(`setThreshold: ${this.format} has no outlier decomposition`);
    }
    checkThreshold(this.format, threshold);
    this.#threshold = threshold;
  }

  /**
   * llm-int8: the outlier columns (ascending) of the most recent product that has run, read back
   * from the GPU. Costs a readback: call it for statistics, not in the decode loop. After a
   * product that reused another layer's quantized input (`reuseInput`), the list is read from
   * that layer, and this throws if that layer has recorded another product since.
   */
  async readOutlierColumns(): Promise<Uint32Array> {
    if (!this.#outliers) {
      throw new Error(`readOutlierColumns: ${this.format} has no outlier decomposition`);
    }
    let list = this.#outliers;
    const from = this.#listFrom;
    if (from) {
      if (from.owner.#shared === null || from.owner.#generation !== from.generation) {
        throw new Error(
          "readOutlierColumns: the latest product reused the outlier list of a layer that has " +
            "run another product since (or was destroyed); encode without reuseInput to read it",
        );
      }
      list = from.outliers;
    }
    const [count] = await this.#gpu.readU32(list, 0, 1);
    if (count === 0) return new Uint32Array(0);
    return await this.#gpu.readU32(list, 1, count);
  }

  /**
   * Whether `encode` takes {@linkcode LinearEncodeOptions.swigluUp} for `rows` rows: one row, a
   * 4-bit format with f16 arithmetic and K % 32 == 0 or Q8_0 with f16 arithmetic (the GEMVs
   * that stage x in workgroup memory) or int8-vectorwise / int8-absmax (the activation quantization reads silu(x) · up),
   * unless {@linkcode QuantTuning.gemvFuseSwiglu} is false; and for the int8 formats, 2 to 8 rows
   * of a `perRow` product (each row's quantization reads its silu(x) · up).
   *
   * @example
   * ```ts ignore
   * lin.fusesSwiglu(1); // a decode step's down_proj
   * lin.fusesSwiglu(5, true); // a verify pass's (int8-vectorwise: yes; without perRow: no)
   * ```
   */
  fusesSwiglu(rows: number, perRow = false): boolean {
    const k = this.#kernels;
    if (rows > 1) {
      return perRow && k.quantizeRowsSwiglu !== undefined && this.takesRows(rows);
    }
    return rows === 1 && (k.gemvSwiglu !== undefined || k.quantizeRowSwiglu !== undefined);
  }

  /**
   * Whether `encode` takes {@linkcode LinearEncodeOptions.addToOutput} for `rows` rows: one row
   * of a 4-bit layer with f16 arithmetic and K % 32 == 0 or a Q8_0 layer with f16 arithmetic,
   * where {@linkcode
   * QuantTuning.gemvFoldNorm} holds (with {@linkcode LinearEncodeOptions.swigluUp} too where
   * {@linkcode fusesSwiglu} does).
   */
  addsToOutput(rows: number): boolean {
    return rows === 1 && this.#kernels.gemvResid !== undefined;
  }

  /**
   * Whether `encode` (and a stack's `encodeRow`) takes {@linkcode LinearEncodeOptions.rmsNorm}
   * for `rows` rows: as {@linkcode addsToOutput}, for a layer or a stack's matrix.
   */
  foldsRmsNorm(rows: number): boolean {
    return rows === 1 && this.#kernels.gemvNorm !== undefined;
  }

  /**
   * Records `y[rows, N] = x[rows, K] · Wᵀ`. With `options.reuseInput`, an int8 layer skips
   * quantizing x when the shared scratch holds this x (same binding, rows, K, format and
   * settings, recorded in this batch); otherwise, and for the formats that read x directly, it
   * changes nothing.
   */
  encode(
    batch: CommandBatch,
    x: Binding,
    y: Binding,
    rows: number,
    options: LinearEncodeOptions = {},
  ): void {
    this.#encode(batch, x, [y], rows, options);
  }

  /**
   * A stack's product for one activation row (see {@linkcode QuantLinearStack}): `ys` has one
   * output per stacked layer, in stacking order. Only for the matrix a stack made.
   */
  encodeStacked(
    batch: CommandBatch,
    x: Binding,
    ys: readonly Binding[],
    options: LinearEncodeOptions = {},
    rows = 1,
  ): void {
    if (!this.#splits) throw new Error(`${this.format} linear: not a stack's matrix`);
    if (rows > 1 && !this.stackTakesRows(rows)) {
      throw new RangeError(`${this.format} stack: no multi-row product for ${rows} rows`);
    }
    this.#encode(batch, x, ys, rows, {
      reuseInput: options.reuseInput,
      perRow: rows > 1,
      rmsNorm: options.rmsNorm,
    });
  }

  /**
   * Whether {@linkcode encodeStacked} takes `rows` activation rows: one, or 2 to
   * {@linkcode MAX_GEMV_ROWS} where the format has a multi-row GEMV (each row computed as one
   * row alone would be).
   */
  stackTakesRows(rows: number): boolean {
    return rows === 1 ||
      (rows >= 2 && rows <= MAX_GEMV_ROWS && this.#kernels.gemvRows !== undefined);
  }

  /**
   * int8-vectorwise and int8-absmax, K % 4 == 0: the shared activation scratch, recorded as
   * holding `x` quantized as this layer's own quantization would code it — one row, or `rows`
   * rows each alone (a `perRow` product's quantization; 2 to 8 rows, where the layer has a
   * multi-row product) — so that `encode(batch, x, y, rows, { reuseInput: true, perRow })`
   * skips that dispatch; the caller records the dispatch that writes it (RMSNorm's
   * `encodeAddQ8`) first. Null for the other formats (LLM.int8() also needs its outlier list).
   */
  int8Input(batch: CommandBatch, x: Binding, rows = 1): Int8Input | null {
    const shared = this.#shared;
    if (!shared || this.#family !== "int8" || this.#outliers || this.inFeatures % 4) return null;
    if (rows !== 1 && !this.takesRows(rows)) return null;
    const k = this.inFeatures;
    const [xq, sx] = int8Scratch(this.#gpu, shared, rows, k);
    shared.input = {
      batch,
      x: "tensor" in x ? x.tensor : x,
      offset: "tensor" in x ? x.offset : 0,
      rows,
      k,
      mode: this.format === "int8-absmax" ? "absmax" : "vectorwise",
      threshold: 0,
      kept: this.#keptColumns,
      perRow: rows > 1,
      xq,
      sx,
      outliers: null,
      owner: this,
      generation: ++this.#generation,
    };
    this.#listFrom = null;
    return { codes: xq, absmax: sx };
  }

  #encode(
    batch: CommandBatch,
    x: Binding,
    ys: readonly Binding[],
    rows: number,
    options: LinearEncodeOptions,
  ): void {
    const { inFeatures: k, outFeatures: n } = this;
    const y = ys[0];
    const more = ys.slice(1); // a stack's outputs past the first
    const [split1, split2] = this.#splits ?? [n, n];
    if (!this.#shared) throw new Error(`${this.format} linear: used after destroy()`);
    if (!Number.isInteger(rows) || rows < 1) throw new RangeError(`linear rows: ${rows}`);
    requireBytes(x, rows * k * 4, "linear x");
    if (this.#splits) {
      const ends = [split1, split2, n].slice(0, ys.length);
      if (ends.length !== ys.length || (ys.length === 2 && split2 !== n)) {
        throw new RangeError(`stacked linear: ${ys.length} outputs for splits ${this.#splits}`);
      }
      ys.forEach((b, i) =>
        requireBytes(b, rows * (ends[i] - (i ? ends[i - 1] : 0)) * 4, "stacked y")
      );
    } else {
      requireBytes(y, rows * n * 4, "linear y");
    }
    const perRow = options.perRow === true && rows > 1;
    if (perRow && rows > MAX_GEMV_ROWS) {
      throw new RangeError(
        `${this.format} linear: perRow products take at most ${MAX_GEMV_ROWS} rows, got ${rows}`,
      );
    }
    if (options.swigluUp) {
      if (!this.fusesSwiglu(rows, perRow)) {
        throw new Error(
          `${this.format} linear: no SwiGLU-fused product for ${rows} rows` +
            (rows > 1 && !perRow ? " without perRow" : ""),
        );
      }
      requireBytes(options.swigluUp, rows * k * 4, "linear swigluUp");
    }
    if (options.addToOutput && !this.addsToOutput(rows)) {
      throw new Error(`${this.format} linear: no product adding to its output for ${rows} rows`);
    }
    if (options.rmsNorm) {
      if (!this.foldsRmsNorm(rows) || options.swigluUp) {
        throw new Error(`${this.format} linear: no RMSNorm-folded product for ${rows} rows`);
      }
      requireBytes(options.rmsNorm.weight, k * 4, "linear rmsNorm weight");
    }
    if (this.#family === "int8") {
      this.#encodeInt8(batch, x, ys, rows, options.reuseInput === true, perRow, options.swigluUp);
      return;
    }
    if (
      rows > 1 && !(perRow && this.#kernels.gemvRows) && !this.#splits && !options.swigluUp &&
      !options.addToOutput && !options.rmsNorm
    ) {
      // the GEMM, possibly split across workgroups (lib/kernels/gemm_spread.ts)
      const chunkParams = (chunk: RowChunk): ArrayBuffer => {
        if (this.#family !== "4bit") {
          return params().u32(rows).u32(n).u32(k).u32(chunk.start).u32(chunk.count).u32(n)
            .u32(n).f32(0).build();
        }
        const w = params().u32(rows).u32(n).u32(k).u32(chunk.start).u32(chunk.count)
          .u32(this.#blocksize).u32(chunk.start * k / 8).u32(n).u32(n).f32(0).u32(0).u32(0);
        for (const v of this.#table!) w.f32(v);
        return w.build();
      };
      const { tileM, tileN } = this.#shape;
      const shape = { rows, n, k, tileM, tileN };
      encodeGemm(
        batch,
        this.#gpu,
        this.#kernels.gemm,
        shape,
        y,
        this.chunks,
        (i, kern, out, size) => {
          const chunk = this.chunks[i];
          batch.dispatch(kern, [x, chunk.binding, ...this.#arrays, out], size, chunkParams(chunk));
        },
      );
      return;
    }
    for (const chunk of this.chunks) {
      let p: ArrayBuffer;
      if (this.#family === "4bit") {
        const w = params().u32(rows).u32(n).u32(k).u32(chunk.start).u32(chunk.count)
          .u32(this.#blocksize).u32(chunk.start * k / 8).u32(split1).u32(split2)
          .f32(options.rmsNorm?.eps ?? 0).u32(0).u32(0);
        for (const v of this.#table!) w.f32(v);
        p = w.build();
      } else {
        p = params().u32(rows).u32(n).u32(k).u32(chunk.start).u32(chunk.count).u32(split1)
          .u32(split2).f32(options.rmsNorm?.eps ?? 0).build();
      }
      const groups = grid(Math.ceil(chunk.count / this.#shape.gemvRows));
      const kern = this.#kernels;
      if (options.swigluUp) {
        const bindings = [x, chunk.binding, ...this.#arrays, y, options.swigluUp];
        const kernel = options.addToOutput ? kern.gemvSwigluResid! : kern.gemvSwiglu!;
        batch.dispatch(kernel, bindings, groups, p);
      } else if (options.addToOutput) {
        batch.dispatch(kern.gemvResid!, [x, chunk.binding, ...this.#arrays, y], groups, p);
      } else if (options.rmsNorm) {
        const bindings = [x, chunk.binding, ...this.#arrays, y, ...more, options.rmsNorm.weight];
        batch.dispatch(kern.gemvNorm!, bindings, groups, p);
      } else {
        const bindings = [x, chunk.binding, ...this.#arrays, y, ...more];
        this.#product(batch, bindings, chunk, rows, p, perRow);
      }
    }
  }

  #encodeInt8(
    batch: CommandBatch,
    x: Binding,
    ys: readonly Binding[],
    rows: number,
    reuse: boolean,
    perRow: boolean,
    swigluUp?: Binding,
  ): void {
    const { inFeatures: k, outFeatures: n } = this;
    const kern = this.#kernels;
    const shared = this.#shared!;
    // llm-int8 without FP16 columns, one row or each row alone: quantize_row(s) writes three
    // digit planes per row after the codes (and their scales after the row scales)
    const planes = this.#outliers !== null && !this.#kept && (rows === 1 || perRow) ? 4 : 1;
    const [xq, sx] = int8Scratch(this.#gpu, shared, planes * rows, k);
    const keptCount = this.#kept ? this.#kept.columns.byteSize / 4 : 0;
    const [split1, split2] = this.#splits ?? [n, n];
    const base = (start: number, count: number) =>
      params().u32(rows).u32(n).u32(k).u32(start).u32(count).f32(this.#threshold)
        .u32(keptCount).u32(this.format === "int8-absmax" ? 0 : 1).u32(split1).u32(split2)
        .build();
    const llm = this.#outliers !== null;
    const key: InputKey = {
      batch,
      x: "tensor" in x ? x.tensor : x,
      offset: "tensor" in x ? x.offset : 0,
      rows,
      k,
      mode: llm ? "llm" : this.format === "int8-absmax" ? "absmax" : "vectorwise",
      threshold: llm ? this.#threshold : 0,
      kept: this.#keptColumns,
      perRow,
      xq,
      sx,
    };
    const held = shared.input;
    // where the product reads the outlier list(s)
    const ownLists = llm && perRow ? rowLists(this.#gpu, shared, k) : this.#outliers;
    let outliers = ownLists;
    if (swigluUp) {
      // silu(x) · up quantized as down_proj's input (each row alone): the scratch no longer
      // holds a plain x
      const groups = Math.ceil(k / (4 * QUANT_WG));
      if (rows === 1) {
        batch.dispatch(kern.quantizeRowSwiglu!, [x, sx, xq, swigluUp], grid(groups), base(0, n));
      } else {
        batch.dispatch(kern.quantizeRowsSwiglu!, [x, sx, xq, swigluUp], [groups, rows], base(0, n));
      }
      shared.input = null;
    } else if (reuse && held !== null && sameInput(held, key)) {
      // The scratch (and held.owner's outlier list) already hold this x, quantized alike.
      if (llm) {
        outliers = held.outliers!;
        this.#listFrom = held.owner === this
          ? null
          : { owner: held.owner, generation: held.generation, outliers };
      }
    } else {
      const p0 = base(0, n);
      const kept = this.#kept ? [this.#kept.columns] : [];
      const act: Binding[] = llm ? [x, ownLists!, sx, xq, ...kept] : [x, sx, xq];
      if (rows === 1) {
        // one row: absmax, codes (and the outlier list) in one dispatch of many workgroups
        batch.dispatch(kern.quantizeRow!, act, grid(Math.ceil(k / (4 * QUANT_WG))), p0);
      } else if (perRow) {
        // quantize_row's work for each row, as if it were alone: one dispatch, a grid row each
        batch.dispatch(kern.quantizeRows!, act, [Math.ceil(k / (4 * QUANT_WG)), rows], p0);
      } else {
        if (kern.outlierMask) {
          batch.dispatch(kern.outlierMask, [x, this.#outliers!], grid(Math.ceil(k / 256)), p0);
        }
        if (kern.absmaxAll) batch.dispatch(kern.absmaxAll, [x, sx], 1, p0);
        batch.dispatch(kern.quantize!, act, grid(rows), p0);
      }
      shared.input = {
        ...key,
        outliers: ownLists,
        owner: this,
        generation: ++this.#generation,
      };
      this.#listFrom = null;
    }
    const tail: Binding[] = llm ? [x, outliers!, ...(this.#kept ? [this.#kept.weights] : [])] : [];
    for (const chunk of this.chunks) {
      const bindings = [xq, sx, chunk.binding, this.#arrays[0], ys[0], ...tail, ...ys.slice(1)];
      this.#product(batch, bindings, chunk, rows, base(chunk.start, chunk.count), perRow);
    }
  }

  /**
   * Whether `perRow` products of `rows` rows run the multi-row GEMV: 2 to 8 rows, where the
   * format has one (not the 4-bit formats at K % 32 != 0).
   */
  takesRows(rows: number): boolean {
    return this.#kernels.gemvRows !== undefined && rows >= 2 && rows <= MAX_GEMV_ROWS;
  }

  /**
   * int8-absmax and LLM.int8(): a product over several rows quantizes them together (one absmax,
   * outlier columns over all rows), so the rows computed each alone differ
   * ({@linkcode Linear.quantizesRowsTogether}).
   */
  get quantizesRowsTogether(): boolean {
    return this.format === "int8-absmax" || this.format === "llm-int8";
  }

  #product(
    batch: CommandBatch,
    bindings: Binding[],
    chunk: RowChunk,
    rows: number,
    p: ArrayBuffer,
    perRow: boolean,
  ): void {
    const { gemvRows, multiRows, tileM, tileN } = this.#shape;
    const multi = this.#kernels.gemvRows;
    if (rows === 1) {
      batch.dispatch(this.#kernels.gemv, bindings, grid(Math.ceil(chunk.count / gemvRows)), p);
    } else if (perRow && multi) {
      batch.dispatch(multi.for(rows), bindings, grid(Math.ceil(chunk.count / multiRows)), p);
    } else {
      const tiles = Math.ceil(chunk.count / tileN) * Math.ceil(rows / tileM);
      batch.dispatch(gemmKernelFor(this.#kernels.gemm, tiles), bindings, grid(tiles), p);
    }
  }

  /** Frees the weights (and, with the device's last quantized layer, the shared scratch). */
  destroy(): void {
    if (!this.#shared) return;
    if (this.#shared.input?.owner === this) this.#shared.input = null; // its outlier list goes
    for (const t of this.#owned) t.destroy();
    if (!this.#borrowedOutliers) this.#outliers?.destroy();
    this.#owned = [];
    this.#shared = null;
    releaseGemmKernels(this.#gpu, this.#kernels.gemm);
    releaseShared(this.#gpu);
  }
}

/**
 * Options for {@linkcode QuantLinearStack.create}.
 *
 * @example
 * ```ts ignore
 * const opts: QuantLinearStackOptions = { label: "layers.0.{q,k,v}", layers: [q, k, v] };
 * ```
 */
export interface QuantLinearStackOptions {
  /** Ledger label prefix of the stacked arrays. */
  label: string;
  /** Two or three layers that read the same x ({@linkcode QuantLinear.canStack}). */
  layers: readonly Linear[];
}

/**
 * Quantized layers that read the same activations (q/k/v, gate/up) moved into one matrix, so
 * that one activation row is one GEMV dispatch for all of them (int8: one activation
 * quantization too), each output feature routed to its layer's y. The layers' codes and scales
 * are copied on the GPU into stacked arrays and the layers' own arrays freed, so the weights take
 * the same memory as before (but {@linkcode copiedBytes}); each layer keeps working on its rows
 * of the stacked arrays (prefill, tracing, per-layer error). The stacked matrix is exactly the layers' matrices one after another:
 * every format it takes quantizes per block or per row within a layer, so each output is the
 * product its layer computes, only with the whole matrix's GEMV launch shape.
 *
 * @example
 * ```ts ignore
 * const qkv = await QuantLinearStack.create(gpu, { label: "layers.0.{q,k,v}", layers: [q, k, v] });
 * qkv.encodeRow(batch, xn, [yq, yk, yv]);
 * ```
 */
export class QuantLinearStack implements LinearStack {
  /** The stacked layers, each reading its rows of the stacked arrays. */
  readonly parts: readonly QuantLinear[];
  /** K. */
  readonly inFeatures: number;
  /** Total output features of the stack. */
  readonly outFeatures: number;
  /**
   * Bytes the stack holds beyond the layers' own weights: copies of arrays the layers keep
   * (nf4-dq's per-tensor offsets, 4 bytes per layer; scales of layers that do not start on the
   * binding alignment). The stacked codes and every other array are moved, not copied.
   */
  readonly copiedBytes: number;
  #whole: QuantLinear | null;
  #tensors: GpuTensor[];

  private constructor(
    parts: readonly QuantLinear[],
    stacked: { whole: QuantLinear; tensors: GpuTensor[]; copiedBytes: number },
  ) {
    this.parts = parts;
    this.inFeatures = stacked.whole.inFeatures;
    this.outFeatures = stacked.whole.outFeatures;
    this.copiedBytes = stacked.copiedBytes;
    this.#whole = stacked.whole;
    this.#tensors = stacked.tensors;
  }

  /** Stacks `opts.layers` (throws unless {@linkcode QuantLinear.canStack} holds). */
  static async create(gpu: Gpu, opts: QuantLinearStackOptions): Promise<QuantLinearStack> {
    const { label, layers } = opts;
    if (!QuantLinear.canStack(gpu, layers)) {
      throw new RangeError(
        `${label}: cannot stack ${layers.length} layers (2 or 3 unstacked quantized layers of ` +
          `one stackable format and K, each starting on the ` +
          `${gpu.limits.minStorageBufferOffsetAlignment}-byte binding alignment, within one binding)`,
      );
    }
    const parts = layers as readonly QuantLinear[];
    return new QuantLinearStack(parts, await QuantLinear.stack(gpu, label, parts));
  }

  /**
   * Records every layer's `y = x · Wᵀ` for one activation row, into `ys` in stacking order
   * (`options.reuseInput`: see {@linkcode int8Input}).
   */
  encodeRow(
    batch: CommandBatch,
    x: Binding,
    ys: readonly Binding[],
    options: LinearEncodeOptions = {},
  ): void {
    if (!this.#whole) throw new Error("quantized stack: used after destroy()");
    if (ys.length !== this.parts.length) {
      throw new RangeError(`stack of ${this.parts.length} layers: ${ys.length} outputs given`);
    }
    this.#whole.encodeStacked(batch, x, ys, options);
  }

  /**
   * As {@linkcode encodeRow} for `rows` activation rows (`ys[i]` holding `[rows, N_i]`), each row
   * computed as one row alone would be (the layers' `perRow` products), where
   * {@linkcode takesRows} says so.
   */
  encodeRows(
    batch: CommandBatch,
    x: Binding,
    ys: readonly Binding[],
    rows: number,
    options: LinearEncodeOptions = {},
  ): void {
    if (!this.#whole) throw new Error("quantized stack: used after destroy()");
    if (ys.length !== this.parts.length) {
      throw new RangeError(`stack of ${this.parts.length} layers: ${ys.length} outputs given`);
    }
    this.#whole.encodeStacked(batch, x, ys, options, rows);
  }

  /** Whether {@linkcode encodeRows} takes `rows` rows. */
  takesRows(rows: number): boolean {
    return this.#whole !== null && this.#whole.stackTakesRows(rows);
  }

  /** As {@linkcode QuantLinear.int8Input}, for the stack's one product. */
  int8Input(batch: CommandBatch, x: Binding, rows = 1): Int8Input | null {
    if (!this.#whole) throw new Error("quantized stack: used after destroy()");
    return this.#whole.int8Input(batch, x, rows);
  }

  /** As {@linkcode QuantLinear.foldsRmsNorm}, for the stack's one product. */
  foldsRmsNorm(rows: number): boolean {
    return this.#whole !== null && this.#whole.foldsRmsNorm(rows);
  }

  /** Frees the stacked arrays (the parts only read them; destroy them too). */
  destroy(): void {
    this.#whole?.destroy();
    this.#whole = null;
    for (const t of this.#tensors) t.destroy();
    this.#tensors = [];
  }
}

/**
 * Whether a layer multiplies in f16 when the caller does not say: where the device has
 * `shader-f16`, except the 4-bit formats on a software adapter. Their f16 GEMV is built for GPUs
 * (x staged in workgroup memory each step, all lanes busy with clamped loads), and llvmpipe, which
 * emulates f16, ran it 1.5-5x slower than the earlier f16 kernel at the software bench's shapes,
 * while the f32 path there is as fast as that kernel was.
 */
function defaultF16(gpu: Gpu, family: Family): boolean {
  return gpu.f16 && !(gpu.isSoftware && family === "4bit");
}

/**
 * GEMV threads per output feature when the caller gives none. On a hardware adapter the 4-bit
 * GEMV does better with 64 when the grid is small or the rows long (N ≤ 4096 or K > N), 32
 * otherwise — H100, NF4, same run: 4096×4096 406 vs 391 GB/s, 4096×11008 575 vs 495, 4096×14336
 * 607 vs 554, but 11008×4096 469 vs 570 and 14336×4096 478 vs 567. Q8_0 (its one-row
 * product is gemv_rows) and int8-vectorwise / int8-absmax take 16 where N > K — H200, µs, 16 vs
 * 32: Q8_0 11008×4096 30.0 vs 34.5, 14336×4096 35.3 vs 42.4, but 4096×11008 47.1 vs 31.4;
 * int8-vectorwise's 7B q/k/v and gate/up stacks 26.9 vs 28.0 and 37.3 vs 38.5 (a 7B decode step
 * 3.66 vs 3.82 ms in one pass). LLM.int8() (not measured with 16) and every other case: 32.
 */
function defaultThreadsPerRow(
  gpu: Gpu,
  format: QuantLinearFormat,
  n: number,
  k: number,
): number {
  if (gpu.isSoftware || format === "llm-int8") return 32;
  if (familyOf(format) !== "4bit") return n > k ? 16 : 32;
  return n <= 4096 || k > n ? 64 : 32;
}

/**
 * Whether q_4bit.wgsl's XFULL gemv (x staged whole in a table for K ≤ 4096, ≤ 11264 or
 * ≤ 16384, 72 bytes per 32 of K) applies and fits workgroup memory.
 */
function fullXFits(gpu: Gpu, k: number, wg: number, rpt: number): boolean {
  const bytes = (k <= 4096 ? 129 : k <= 11264 ? 353 : 513) * 72 + 4 * wg * rpt + 4 * 512;
  return k % 32 === 0 && k <= 16384 && bytes <= gpu.limits.maxComputeWorkgroupStorageSize;
}

/** What a layer's kernels are chosen from (a stack builds its routing GEMV from its parts'). */
interface BuildOptions {
  format: QuantLinearFormat;
  family: Family;
  f16: boolean;
  k: number;
  useKept: boolean;
  tuning: QuantTuning;
}

interface Shape {
  gemvRows: number;
  multiRows: number;
  tileM: number;
  tileN: number;
}

function checkTuning(
  gpu: Gpu,
  label: string,
  format: QuantLinearFormat,
  n: number,
  k: number,
  t: QuantTuning,
): void {
  const gemvWg = t.gemvWorkgroupSize ?? 256;
  const gemvTpr = t.gemvThreadsPerRow ?? defaultThreadsPerRow(gpu, format, n, k);
  const rpt = t.gemvRowsPerThread ?? 4;
  const rowsWg = t.gemvRowsWorkgroupSize ?? gemvWg;
  if (
    gemvTpr & (gemvTpr - 1) || gemvWg % gemvTpr || (t.gemmTileM ?? 64) % 4 ||
    rowsWg % Math.max(gemvTpr, FOUR_BIT_ROWS_TPR) ||
    (t.gemvRowsFeatures !== undefined && t.gemvRowsFeatures !== 2 &&
      t.gemvRowsFeatures !== 4) ||
    (t.gemmTileN ?? 64) % 4 || ![2, 4, 8].includes(rpt) ||
    (t.gemvTable && !["pairs", "banked"].includes(t.gemvTable)) ||
    (t.gemmOuterRows !== undefined && ![64, 128].includes(t.gemmOuterRows)) ||
    (t.llmDenseOutliers !== undefined &&
      !(Number.isInteger(t.llmDenseOutliers) && t.llmDenseOutliers >= 0 &&
        t.llmDenseOutliers <= 1025))
  ) {
    throw new RangeError(`${label}: invalid tuning ${JSON.stringify(t)}`);
  }
}

/**
 * The kernels of a layer of N output features and their launch shapes; `route` (`[]`,
 * `["ROUTE2"]`, `["ROUTE3"]`) goes to the gemv only.
 */
async function buildKernels(
  gpu: Gpu,
  label: string,
  b: BuildOptions,
  n: number,
  route: string[],
): Promise<{ kernels: Kernels; shape: Shape }> {
  const { format, family, k, tuning: t } = b;
  const gemvWg = t.gemvWorkgroupSize ?? 256;
  const gemvTpr = t.gemvThreadsPerRow ?? defaultThreadsPerRow(gpu, format, n, k);
  // The int8 formats' GEMM is integer (dot4I8Packed) and keeps its own tiles.
  const outerRows = family !== "int8" ? t.gemmOuterRows ?? 128 : 0;
  const tileM = outerRows || (t.gemmTileM ?? 64);
  const tileN = outerRows ? GEMM_OUTER_FEATURES : t.gemmTileN ?? 64;
  const rpt = t.gemvRowsPerThread ?? 4;
  // gemv_rows: FPT features per lane group; the 4-bit f16 one with 32 lanes per group
  // (FOUR_BIT_ROWS_TPR), the others with the GEMV's, whose order they keep; the 4-bit f32 one
  // always with four features
  const fourBitF16Rows = family === "4bit" && b.f16 && k % 32 === 0;
  const rowsWg = t.gemvRowsWorkgroupSize ?? gemvWg;
  const rowsTpr = fourBitF16Rows ? FOUR_BIT_ROWS_TPR : gemvTpr;
  const fpt = family === "4bit" && !fourBitF16Rows
    ? 4
    : t.gemvRowsFeatures ?? defaultRowsFeatures();
  const kernels = await compileKernels(gpu, {
    format: b.format,
    family,
    f16: b.f16,
    k,
    useKept: b.useKept,
    rpt,
    fourBitVariants: [
      ...(t.gemvFullX && fullXFits(gpu, k, gemvWg, rpt)
        ? ["XFULL", ...(k <= 4096 ? ["XF4K"] : k <= 11264 ? ["XF11K"] : [])]
        : []),
      ...(t.gemvPrefetch ? ["PREFETCH"] : []),
      ...(t.gemvTable === "banked" ? ["TBL16R"] : []),
    ],
    swiglu: route.length === 0 && (t.gemvFuseSwiglu ?? true),
    foldNorm: t.gemvFoldNorm ?? !gpu.isSoftware,
    unroll: t.gemvUnroll ?? !gpu.isSoftware,
    route,
    gemv: { GEMV_WG: gemvWg, GEMV_TPR: gemvTpr },
    llmDense: t.llmDenseOutliers ?? LLM_DENSE_OUTLIERS,
    rows: { GEMV_WG: rowsWg, GEMV_TPR: rowsTpr },
    rowCounts: rowsPipelineCounts(
      gpu,
      t.gemvRowsPerCount,
      family === "q8_0" ? 1 : 2,
      MAX_GEMV_ROWS,
    ),
    rowsFeatures: fpt,
    rowsPrefetch: t.gemvRowsPrefetch ?? true,
    gemm: { TILE_M: tileM, TILE_N: tileN },
    outerRows,
    // the 4-bit kernels keep their 16-value code table in workgroup memory too
    outer: { label, k, t, ownBytes: family === "4bit" ? 64 : 0 },
  });
  // q_4bit.wgsl's gemv computes RPT (2, 4 or 8) output features per thread group, gemv_rows FPT
  const multiRows = (rowsWg / rowsTpr) * fpt;
  const shape = {
    gemvRows: family === "q8_0" ? multiRows : (gemvWg / gemvTpr) * (family === "4bit" ? rpt : 1),
    multiRows,
    tileM,
    tileN,
  };
  return { kernels, shape };
}

/** Default of {@linkcode QuantTuning.llmDenseOutliers}. */
const LLM_DENSE_OUTLIERS = 4;

/**
 * Threads per output-feature group of the 4-bit multi-row GEMV with f16 arithmetic, whatever the
 * one-row GEMV's: its x tile (72 bytes per 32 activations and row) is sized for 32.
 */
const FOUR_BIT_ROWS_TPR = 32;

function checkThreshold(label: string, threshold: number): void {
  if (!Number.isFinite(threshold) || threshold < 0) {
    throw new RangeError(`${label}: outlier threshold must be a finite number ≥ 0`);
  }
}

async function compileKernels(
  gpu: Gpu,
  o: {
    format: QuantLinearFormat;
    family: Family;
    f16: boolean;
    k: number;
    useKept: boolean;
    rpt: number;
    fourBitVariants: string[];
    swiglu: boolean;
    foldNorm: boolean;
    unroll: boolean;
    route: string[];
    gemv: Record<string, number>;
    llmDense: number;
    rows: Record<string, number>;
    rowsFeatures: number;
    rowsPrefetch: boolean;
    rowCounts: number[];
    gemm: Record<string, number>;
    /** Rows per workgroup of gemm_outer (64 or 128), or 0 for gemm. */
    outerRows: number;
    /** gemm_outer's tile options ({@linkcode createGemmOuter}). */
    outer: Parameters<typeof createGemmOuter>[3];
  },
): Promise<Kernels> {
  const f16 = o.f16 ? ["F16"] : [];
  // The prefill product: gemm_outer for the 4-bit formats and Q8_0, the integer gemm for int8.
  const gemmSpec = (file: string, defines: string[]): Promise<GemmKernels> =>
    o.outerRows
      ? createGemmOuter(gpu, file, defines, o.outer)
      : spec(file, "gemm", defines, o.gemm).then((kernel) => ({ kernel }));
  const fpt2 = [
    ...(o.rowsFeatures === 2 ? ["FPT2"] : []),
    ...(o.rowsPrefetch ? [] : ["NOPREFETCH"]),
  ];
  const spec = (
    file: string,
    entry: string,
    defines: string[],
    constants?: Record<string, number>,
  ) => gpu.kernel({ file, entry, defines, constants } satisfies KernelSpec);
  const rowsSpec = (file: string, defines: string[], constants?: Record<string, number>) =>
    RowsKernel.create(gpu, { file, entry: "gemv_rows", defines, constants }, o.rowCounts);
  if (o.family === "int8") {
    // The products of int8-absmax and int8-vectorwise are one kernel (see sw_stride).
    const llm = o.format === "llm-int8" ? (o.useKept ? ["LLM", "LLM_FP16"] : ["LLM"]) : [];
    const mode = o.format === "int8-absmax" ? ["PER_TENSOR"] : llm;
    const k16 = o.k % 16 === 0 ? ["K16", ...(o.unroll ? ["UNROLL4"] : [])] : [];
    const swiglu = o.swiglu && llm.length === 0 && o.k % 4 === 0;
    // the dense outlier sum's switch, only where the kernels have that path (gemv, gemv_rows)
    const dense: Record<string, number> = llm.length === 1 && k16.length
      ? { LLM_DENSE: o.llmDense }
      : {};
    const [
      gemv,
      gemm,
      quantize,
      quantizeRow,
      extra,
      gemvRows,
      quantizeRows,
      quantizeRowSwiglu,
      quantizeRowsSwiglu,
    ] = await Promise.all([
      spec("q_int8", "gemv", [...llm, ...f16, ...k16, ...o.route], { ...o.gemv, ...dense }),
      gemmSpec("q_int8", [...llm, ...f16]),
      spec("q_int8", "quantize", mode),
      // one row: the per-tensor absmax is the row's, so int8-absmax shares vector-wise's
      spec("q_int8", "quantize_row", llm),
      o.format === "int8-absmax"
        ? spec("q_int8", "absmax_all", mode)
        : o.format === "llm-int8"
        ? spec("q_int8", "outlier_mask", ["LLM"])
        : Promise.resolve(undefined),
      rowsSpec("q_int8", [...llm, ...f16, ...k16, ...fpt2, ...o.route], { ...o.rows, ...dense }),
      // each row alone: int8-absmax's scale is the row's, as in decode
      spec("q_int8", "quantize_rows", llm),
      swiglu ? spec("q_int8", "quantize_row", ["SWIGLU"]) : Promise.resolve(undefined),
      swiglu ? spec("q_int8", "quantize_rows", ["SWIGLU"]) : Promise.resolve(undefined),
    ]);
    return {
      gemv,
      gemm,
      gemvRows,
      quantizeRows,
      quantize,
      quantizeRow,
      absmaxAll: o.format === "int8-absmax" ? extra : undefined,
      outlierMask: o.format === "llm-int8" ? extra : undefined,
      quantizeRowSwiglu,
      quantizeRowsSwiglu,
    };
  }
  if (o.family === "4bit") {
    const dq = o.format === "nf4-dq" ? ["DQ"] : [];
    const k32 = o.k % 32 === 0 ? ["K32"] : [];
    const rpt = o.rpt === 8 ? ["RPT8"] : o.rpt === 2 ? ["RPT2"] : [];
    const defines = [...dq, ...f16, ...k32, ...rpt, ...o.fourBitVariants];
    const gemvConstants = o.gemv;
    const fold = o.foldNorm && o.f16 && k32.length > 0;
    const [gemv, gemm, gemvRows, gemvSwiglu, gemvResid, gemvSwigluResid, gemvNorm] = await Promise
      .all([
        spec("q_4bit", "gemv", [...defines, ...o.route], gemvConstants),
        gemmSpec("q_4bit", [...dq, ...f16]),
        // f16: FPT features per lane group of 32 lanes; f32: the gemv's lanes, four features (see
        // q_4bit.wgsl's gemv_rows)
        k32.length
          ? rowsSpec("q_4bit", [...dq, ...f16, ...k32, ...(o.f16 ? fpt2 : []), ...o.route], o.rows)
          : Promise.resolve(undefined),
        o.swiglu && o.f16 && k32.length
          ? spec("q_4bit", "gemv", [...defines, "SWIGLU"], gemvConstants)
          : Promise.resolve(undefined),
        fold && o.route.length === 0
          ? spec("q_4bit", "gemv", [...defines, "RESID"], gemvConstants)
          : Promise.resolve(undefined),
        fold && o.route.length === 0 && o.swiglu
          ? spec("q_4bit", "gemv", [...defines, "SWIGLU", "RESID"], gemvConstants)
          : Promise.resolve(undefined),
        fold
          ? spec("q_4bit", "gemv", [...defines, ...o.route, "NORM"], gemvConstants)
          : Promise.resolve(undefined),
      ]);
    return { gemv, gemm, gemvRows, gemvSwiglu, gemvResid, gemvSwigluResid, gemvNorm };
  }
  // q8_0's one-row product is gemv_rows at one row (see q_q8_0.wgsl); so are its SwiGLU,
  // residual-add and RMSNorm variants, which stage x in f16 (the F16 path)
  const rows = [...f16, ...fpt2];
  const one = (defines: string[]) =>
    spec("q_q8_0", "gemv_rows", [...rows, ...defines], { ...o.rows, ROWS: 1 });
  const fold = o.foldNorm && o.f16;
  const alone = o.route.length === 0;
  const [gemm, gemvRows, gemvSwiglu, gemvResid, gemvSwigluResid, gemvNorm] = await Promise.all([
    gemmSpec("q_q8_0", f16),
    rowsSpec("q_q8_0", [...rows, ...o.route], o.rows),
    o.swiglu && o.f16 ? one(["SWIGLU"]) : undefined,
    fold && alone ? one(["RESID"]) : undefined,
    fold && alone && o.swiglu ? one(["SWIGLU", "RESID"]) : undefined,
    fold ? one([...o.route, "NORM"]) : undefined,
  ]);
  return {
    gemv: gemvRows.for(1),
    gemm,
    gemvRows,
    gemvSwiglu,
    gemvResid,
    gemvSwigluResid,
    gemvNorm,
  };
}
