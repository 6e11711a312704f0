/**
 * Linear layers: the {@linkcode Linear} interface every weight format implements, the FP16
 * format ({@linkcode Fp16Linear}, kernels in `kernels/matmul_f16.wgsl`) and its CPU twin
 * {@linkcode cpuMatmul}.
 *
 * @module
 */

import { type Binding, type CommandBatch, grid, params } from "../gpu/batch.ts";
import type { Gpu } from "../gpu/device.ts";
import type { Kernel, KernelSpec } from "../gpu/kernel.ts";
import type { GpuTensor } from "../gpu/tensor.ts";
import { planRowChunks, requireBytes, type RowChunk, tensorRowChunks } from "./chunks.ts";
import { RowsKernel, rowsPipelineCounts } from "./rows_kernel.ts";
import {
  acquireSpreadScratch,
  createSplitSum,
  encodeSplitSum,
  gemmSpread,
  releaseSpreadScratch,
  spreadScratch,
} from "./gemm_spread.ts";

/**
 * Options of {@linkcode Linear.encode}.
 *
 * @example
 * ```ts ignore
 * q.encode(batch, xn, yq, rows);
 * k.encode(batch, xn, yk, rows, { reuseInput: true }); // xn unchanged since q's encode
 * ```
 */
export interface LinearEncodeOptions {
  /**
   * The caller promises that `x` is the same binding as in the previous `encode` of a linear
   * layer into this batch, and that its contents have not changed since (nothing recorded in
   * between writes it, nor anything else, a submit included) — as for k_proj and v_proj after
   * q_proj, or up_proj after gate_proj — so a format that transforms x before its product (the
   * int8 formats quantize it) may reuse that work instead of repeating it. Formats that read x
   * directly ignore it. A format that reuses checks that what it holds was made from this
   * binding, in this batch, with its own settings, and transforms x anyway when not, so a wrong
   * promise about *which* x only costs time; a wrong promise about its *contents* gives wrong
   * results. Default false.
   */
  reuseInput?: boolean;
  /**
   * Compute every row as a one-row product (a decode step) would compute it alone — the verify
   * pass of speculative decoding, where row r must give the logits that decoding token r would.
   * 2 to {@linkcode MAX_GEMV_ROWS} rows then run a multi-row GEMV, which reads the weights once
   * for all rows, and the int8 formats quantize each row's activations on their own (its own
   * scale, its own LLM.int8() outliers) instead of as one batch. Default false.
   */
  perRow?: boolean;
  /**
   * SwiGLU folded into the product: `x` holds gate_proj's output and this binding up_proj's, and
   * the layer multiplies `silu(x) · up` (elementwise.wgsl's `swiglu`) without writing it. Only
   * for a layer whose {@linkcode Linear.fusesSwiglu} says yes for these rows and `perRow`.
   */
  swigluUp?: Binding;
  /**
   * The residual add in the product's epilogue: `y += x · Wᵀ` (each output read, added to in
   * f32 and written back), where `y` is the residual stream. Only for a layer whose
   * {@linkcode Linear.addsToOutput} says yes for these rows.
   */
  addToOutput?: boolean;
  /**
   * RMSNorm folded into the product: `x` is the residual stream, and the layer multiplies
   * `rmsnorm(x) · weight` (rmsnorm.wgsl's arithmetic, in f32) without writing it. Only for a
   * layer or stack whose `foldsRmsNorm` says yes for these rows; not with `swigluUp`.
   */
  rmsNorm?: { weight: Binding; eps: number };
  /**
   * A [gate; up] stack's one-row product writes `silu(gate) · up` (elementwise.wgsl's swiglu)
   * into the first output instead of both outputs. Only where the stack's `fusesSwigluOut` says
   * yes for these rows.
   */
  swigluOut?: boolean;
}

/**
 * Most activation rows the multi-row GEMV kernels (`gemv_rows`, one per weight format) take in
 * one dispatch: speculative decoding verifies at most this many tokens per pass.
 *
 * @example
 * ```ts
 * import { MAX_GEMV_ROWS } from "./linear.ts";
 * MAX_GEMV_ROWS; // 8
 * ```
 */
export const MAX_GEMV_ROWS = 8;

/**
 * A linear layer without bias, `y = x · Wᵀ`, in some weight format. The forward pass only
 * calls {@linkcode Linear.encode}, so formats are interchangeable.
 *
 * @example
 * ```ts ignore
 * const y = gpu.tensor({ label: "y", category: "activations", byteSize: rows * lin.outFeatures * 4 });
 * lin.encode(batch, x, y, rows);
 * ```
 */
export interface Linear {
  /** Weight format, e.g. `"fp16"`. */
  readonly format: string;
  /** K: input features. */
  readonly inFeatures: number;
  /** N: output features. */
  readonly outFeatures: number;
  /** Bytes of GPU memory the weights take (ledger category "weights"). */
  readonly weightBytes: number;
  /**
   * Records `y[rows, N] = x[rows, K] · Wᵀ` (x and y f32, row-major); `options.reuseInput`
   * lets a layer that reads the previous layer's x reuse its transformed input.
   */
  encode(
    batch: CommandBatch,
    x: Binding,
    y: Binding,
    rows: number,
    options?: LinearEncodeOptions,
  ): void;
  /**
   * Whether {@linkcode LinearEncodeOptions.swigluUp} may be passed for `rows` activation rows,
   * with {@linkcode LinearEncodeOptions.perRow} as given (absent: never).
   */
  fusesSwiglu?(rows: number, perRow?: boolean): boolean;
  /** Whether `encode` takes {@linkcode LinearEncodeOptions.addToOutput} for `rows` rows. */
  addsToOutput?(rows: number): boolean;
  /** Whether `encode` takes {@linkcode LinearEncodeOptions.rmsNorm} for `rows` rows. */
  foldsRmsNorm?(rows: number): boolean;
  /**
   * Layers that quantize their activations (int8): where the product reads the codes and absmax
   * of `x` (one row, or `rows` rows each quantized alone, as `perRow` products quantize them),
   * recorded as holding `x` quantized, so that the next `encode` of this x with `reuseInput` (and
   * `perRow` for several rows) skips its own quantization. The caller must record, before that
   * product, a dispatch writing them (RMSNorm's `encodeAddQ8`). Null (or absent): the layer
   * quantizes x itself.
   */
  int8Input?(batch: CommandBatch, x: Binding, rows?: number): Int8Input | null;
  /**
   * Whether {@linkcode LinearEncodeOptions.perRow} products of `rows` rows run a multi-row GEMV,
   * which reads the weights once for all of them (absent: not known, treated as no).
   */
  takesRows?(rows: number): boolean;
  /**
   * True where a product over several rows (without `perRow`) quantizes them together, as
   * bitsandbytes does: one absmax for the tensor (int8-absmax), outlier columns chosen over all
   * rows (LLM.int8()). Such a layer's rows computed each alone come out otherwise, so a prompt
   * must not be split into passes through it (absent: false).
   */
  readonly quantizesRowsTogether?: boolean;
  /** Frees what the layer owns (not a weight tensor it was given to share). */
  destroy(): void;
}

/**
 * Where an int8 product reads its quantized activation rows ({@linkcode Linear.int8Input}): the
 * codes, four per u32, K bytes a row, and each row's absmax (f32).
 *
 * @example
 * ```ts ignore
 * const q8: Int8Input | null = lin.int8Input?.(batch, xn) ?? null;
 * ```
 */
export interface Int8Input {
  /** The codes, four int8 per u32 word, K bytes. */
  codes: GpuTensor;
  /** The absmax of the row, one f32. */
  absmax: GpuTensor;
}

/**
 * Reference matmul in f64: `y[rows, N] = x[rows, K] · Wᵀ` with `W` row-major `[N, K]`,
 * rounded to f32 at the end. For FP16 weights pass the decoded values
 * (`f16ArrayToF32(bits)`), so twin and kernel multiply the same numbers.
 *
 * @example
 * ```ts
 * import { cpuMatmul } from "./linear.ts";
 * const y = cpuMatmul(new Float32Array([1, 2]), new Float32Array([1, 0, 0, 1, 1, 1]), 1, 3, 2);
 * // y = [1, 2, 3]
 * ```
 */
export function cpuMatmul(
  x: Float32Array,
  weight: Float32Array,
  rows: number,
  outFeatures: number,
  inFeatures: number,
): Float32Array {
  const y = new Float32Array(rows * outFeatures);
  for (let r = 0; r < rows; r++) {
    const xo = r * inFeatures;
    for (let n = 0; n < outFeatures; n++) {
      const wo = n * inFeatures;
      let s = 0;
      for (let k = 0; k < inFeatures; k++) s += x[xo + k] * weight[wo + k];
      y[r * outFeatures + n] = s;
    }
  }
  return y;
}

/** Launch shapes of the FP16 kernels; the defaults suit the software adapter and are sane on GPUs. */
export interface Fp16Tuning {
  /** GEMV threads per workgroup (default 256). */
  gemvWorkgroupSize?: number;
  /**
   * GEMV threads per output feature, a power of two dividing the workgroup (default 32; some
   * stacks, q/k/v or gate/up, on a hardware adapter 16: the stack and its parts, see
   * {@linkcode stackThreadsPerRow}).
   */
  gemvThreadsPerRow?: number;
  /**
   * GEMV: four units of K per thread and step with their loads issued together (default on a
   * hardware adapter, off on a software one, where llvmpipe ran it 10-25% slower).
   */
  gemvUnroll?: boolean;
  /**
   * The multi-row GEMV (`gemv_rows`, 2-8 rows) with f16 arithmetic stages each step's x of every
   * row in workgroup memory, rounded to f16 once (default true); false reads it from memory in
   * every lane as the one-row GEMV does.
   */
  gemvRowsStageX?: boolean;
  /**
   * Output features per lane group of the multi-row GEMV: 2 (default), 1 (twice the threads, each
   * x load serving one weight row) or 4 (each x load serves four weight rows, with half the
   * threads).
   */
  gemvRowsFeatures?: 1 | 2 | 4;
  /**
   * Multi-row GEMV: load each step's weights before its x is staged, so both are in flight
   * together (default true).
   */
  gemvRowsPrefetch?: boolean;
  /** Threads per workgroup of the multi-row GEMV (default: the GEMV's). */
  gemvRowsWorkgroupSize?: number;
  /**
   * Multi-row GEMV: a pipeline made for each row count, 2 to 8 (`RowsKernel`; default: on a
   * hardware adapter), or one for any count.
   */
  gemvRowsPerCount?: boolean;
  /**
   * Rows per workgroup of the GEMM (`gemm_outer`: 128 features wide, 8x8 outputs per thread, f32
   * arithmetic): 128 (default) or 64.
   */
  gemmOuterRows?: 64 | 128;
  /** `gemm_outer` with K steps of 32 instead of 16: half the barriers, twice the tile. */
  gemmOuterK32?: boolean;
  /** `gemm_outer` with two tiles, one filled while the other is read: one barrier a step. */
  gemmOuterDoubleBuffer?: boolean;
  /**
   * `gemm_outer` in 512-thread workgroups whose two halves sum alternate K steps of the same
   * tile: twice the threads in flight where a product has fewer tiles than the adapter has room
   * for (needs 512 invocations a workgroup). `true`: every product; `false`: none; unset: on a
   * hardware adapter, products of fewer than {@linkcode GEMM_OUTER_SPLIT_BELOW} tiles, where the
   * adapter holds the split tiles.
   */
  gemmOuterSplitK?: boolean;
  /**
   * Split each GEMM across this many workgroups along K, their copies of the output added after
   * (lib/kernels/gemm_spread.ts; 1: never). Unset: on a hardware adapter, products of fewer than
   * `GEMM_SPREAD_BELOW` (128) tiles, into as many copies as keep the workgroups within 264 (at most 8).
   */
  gemmOuterSpread?: number;
  /**
   * With 128-row tiles: also build `gemm_outer` with 64-row tiles and take it for products whose
   * rows it pads less (`rows % 128` in 1..64: a prompt of up to 64 tokens computes 64 rows, not
   * 128). Default: on a hardware adapter.
   */
  gemmOuterShortTiles?: boolean;
  /**
   * A stack of two layers of equal width (gate/up) offers SwiGLU in its GEMV's epilogue
   * ({@linkcode Fp16LinearStack.fusesSwigluOut}; default true).
   */
  stackSwiglu?: boolean;
}

/** Output features per workgroup of `gemm_outer` (kernels/common/gemm_outer.wgsl's OUTER_N). */
export const GEMM_OUTER_FEATURES = 128;

/** The tile options of `gemm_outer` that every format offers. */
export type GemmOuterTuning = Pick<
  Fp16Tuning,
  | "gemmOuterRows"
  | "gemmOuterK32"
  | "gemmOuterDoubleBuffer"
  | "gemmOuterSplitK"
  | "gemmOuterSpread"
  | "gemmOuterShortTiles"
>;

/**
 * Products of fewer tiles than this (128 x 128 outputs each) take `gemm_outer` split over K
 * when `gemmOuterSplitK` is unset. Measured on the H200 (132 SMs; 512 rows): 128 and 344 tiles
 * ran 11-16% faster split, 448 tiles 17% slower (BENCHMARKS.md, "K split in the workgroup").
 */
export const GEMM_OUTER_SPLIT_BELOW = 400;

/** A layer's prefill product: one pipeline, and with `split` another for few tiles. */
export interface GemmKernels {
  /** The pipeline for every product (`split` absent), or for products of many tiles. */
  kernel: Kernel;
  /** `gemm_outer` split over K, for products of fewer than `GEMM_OUTER_SPLIT_BELOW` tiles. */
  split?: Kernel;
  /**
   * split_sum, where products may be split across workgroups; a layer holding these kernels
   * then holds the device's split scratch ({@linkcode holdGemmKernels}).
   */
  sum?: Kernel;
  /** `gemmOuterSpread` as asked (unset: by the tile count). */
  spread?: number;
  /**
   * `gemm_outer` with 64-row tiles beside 128-row ones ({@linkcode Fp16Tuning.gemmOuterShortTiles}),
   * for products that {@linkcode gemmTileRows} gives to it.
   */
  short?: Kernel;
}

/**
 * Rows per tile for a product of `rows` rows: 64 where `g` has 64-row tiles beside its
 * `tileM` = 128 and they pad the rows less (`rows % 128` in 1..64), else `tileM`.
 *
 * @example
 * ```ts ignore
 * gemmTileRows(gemm, 40, 128); // 64 with short tiles: 24 padded rows instead of 88
 * ```
 */
export function gemmTileRows(g: GemmKernels, rows: number, tileM: number): number {
  const rest = rows % 128;
  return g.short && tileM === 128 && rest > 0 && rest <= 64 ? 64 : tileM;
}

/**
 * The pipeline of `g` for a product of `tiles` workgroup tiles split `splits` ways across
 * workgroups (a split product takes the whole-K pipeline: independent workgroups fill the GPU
 * better than the halves of one).
 *
 * @example
 * ```ts ignore
 * batch.dispatch(gemmKernelFor(gemm, tiles), bindings, grid(tiles), p);
 * ```
 */
export function gemmKernelFor(g: GemmKernels, tiles: number, splits = 1): Kernel {
  return splits === 1 && g.split && tiles < GEMM_OUTER_SPLIT_BELOW ? g.split : g.kernel;
}

/** Copies across workgroups for a product of `tiles` tiles over `k` ({@linkcode gemmSpread}). */
export function gemmSplitsFor(g: GemmKernels, tiles: number, k: number): number {
  return g.sum ? gemmSpread(tiles, k, g.spread) : 1;
}

/** A layer built with `g` keeps the device's split scratch alive (where `g` may split). */
export function holdGemmKernels(gpu: Gpu, g: GemmKernels): void {
  if (g.sum) acquireSpreadScratch(gpu);
}

/** The layer's hold taken by {@linkcode holdGemmKernels} ends (its destroy). */
export function releaseGemmKernels(gpu: Gpu, g: GemmKernels): void {
  if (g.sum) releaseSpreadScratch(gpu);
}

/**
 * Records a layer's GEMM over its row chunks: `dispatch(kernel, y, grid)` per chunk, into y or,
 * split across workgroups, into copies in the split scratch, then their sum into y.
 */
export function encodeGemm(
  batch: CommandBatch,
  gpu: Gpu,
  g: GemmKernels,
  shape: { rows: number; n: number; k: number; tileM: number; tileN: number },
  y: Binding,
  chunks: readonly { count: number }[],
  dispatch: (chunk: number, kernel: Kernel, y: Binding, size: [number, number, number]) => void,
): void {
  const { rows, n, k, tileN } = shape;
  const tileM = gemmTileRows(g, rows, shape.tileM);
  const short = tileM !== shape.tileM;
  const splits = gemmSplitsFor(g, Math.ceil(n / tileN) * Math.ceil(rows / tileM), k);
  const part = splits > 1 ? spreadScratch(gpu, splits * rows * n * 4) : null;
  chunks.forEach((chunk, i) => {
    const tiles = Math.ceil(chunk.count / tileN) * Math.ceil(rows / tileM);
    const [gx, gy] = grid(tiles);
    const kernel = short ? g.short! : gemmKernelFor(g, tiles, splits);
    dispatch(i, kernel, part ?? y, [gx, gy, splits]);
  });
  if (part) encodeSplitSum(batch, g.sum!, part, y, rows * n, splits);
}

/**
 * Builds `gemm_outer` from `file` with `defines` and the tile options of `t` (see
 * {@linkcode gemmOuterDefines}), and, where `gemmOuterSplitK` is unset on a hardware adapter
 * that holds the split tiles, its K-split twin for products of few tiles.
 */
export async function createGemmOuter(
  gpu: Gpu,
  file: string,
  defines: string[],
  b: { label: string; k: number; t: GemmOuterTuning; ownBytes?: number },
): Promise<GemmKernels> {
  const { label, k, t, ownBytes } = b;
  const spread = t.gemmOuterSpread;
  if (spread !== undefined && !(Number.isInteger(spread) && spread >= 1 && spread <= 64)) {
    throw new RangeError(`${label}: gemmOuterSpread must be an integer in 1..64, got ${spread}`);
  }
  const build = (d: string[]) =>
    gpu.kernel({ file, entry: "gemm_outer", defines: [...defines, ...d] });
  const own = gemmOuterDefines(gpu, label, k, t, ownBytes);
  let split: string[] | undefined;
  if (t.gemmOuterSplitK === undefined && !gpu.isSoftware) {
    try {
      split = gemmOuterDefines(gpu, label, k, { ...t, gemmOuterSplitK: true }, ownBytes);
    } catch (err) {
      if (!(err instanceof RangeError)) throw err; // the adapter cannot hold it: whole K only
    }
  }
  const spreads = spread === undefined ? !gpu.isSoftware : spread > 1;
  const short = (t.gemmOuterRows ?? 128) === 128 && (t.gemmOuterShortTiles ?? !gpu.isSoftware)
    ? gemmOuterDefines(gpu, label, k, { ...t, gemmOuterRows: 64, gemmOuterSplitK: false }, ownBytes)
    : undefined;
  const [kernel, splitKernel, sum, shortKernel] = await Promise.all([
    build(own),
    split ? build(split) : Promise.resolve(undefined),
    spreads ? createSplitSum(gpu) : Promise.resolve(undefined),
    short ? build(short) : Promise.resolve(undefined),
  ]);
  return { kernel, split: splitKernel, sum, spread, short: shortKernel };
}

/**
 * The defines that shape `gemm_outer` (kernels/common/gemm_outer.wgsl), checked against the
 * adapter's workgroup storage (the tiles and `ownBytes`, what the including kernel keeps there:
 * a 4-bit code table), with `ANYK` where K % 8 != 0.
 */
export function gemmOuterDefines(
  gpu: Gpu,
  label: string,
  k: number,
  t: GemmOuterTuning,
  ownBytes = 0,
): string[] {
  const rows = t.gemmOuterRows ?? 128;
  const steps = t.gemmOuterK32 ? 32 : 16;
  const bufs = (t.gemmOuterDoubleBuffer ? 2 : 1) * (t.gemmOuterSplitK ? 2 : 1);
  const bytes = steps * (rows + GEMM_OUTER_FEATURES) * 4 * bufs + ownBytes;
  const shape = `gemm_outer tiles of ${rows} rows, K step ${steps}, ${bufs} buffer(s)`;
  if (bytes > gpu.limits.maxComputeWorkgroupStorageSize) {
    throw new RangeError(
      `${label}: ${shape}` + (ownBytes ? ` and ${ownBytes} bytes of its own` : "") +
        ` need ${bytes} bytes of workgroup storage; this adapter offers ` +
        `${gpu.limits.maxComputeWorkgroupStorageSize}`,
    );
  }
  if (t.gemmOuterSplitK) {
    if (gpu.limits.maxComputeInvocationsPerWorkgroup < 512) {
      throw new RangeError(
        `${label}: gemmOuterSplitK needs 512 invocations a workgroup; this adapter offers ` +
          `${gpu.limits.maxComputeInvocationsPerWorkgroup}`,
      );
    }
  }
  return [
    ...(rows === 64 ? ["OUTER_M64"] : []),
    ...(t.gemmOuterK32 ? ["OUTER_K32"] : []),
    ...(t.gemmOuterDoubleBuffer ? ["OUTER_DB"] : []),
    ...(t.gemmOuterSplitK ? ["OUTER_KSPLIT"] : []),
    ...(k % 8 ? ["ANYK"] : []),
  ];
}

/** Options for {@linkcode Fp16Linear.create}. */
export interface Fp16LinearOptions {
  /** Ledger label of the weight tensor, e.g. `layers.0.mlp.down_proj.weight`. */
  label: string;
  /**
   * The weights `[N, K]` row-major: f16 bit patterns to upload, or a tensor of packed f16 pairs
   * to share (tied embeddings), which the layer reads but does not destroy.
   */
  weight: Uint16Array | GpuTensor;
  /**
   * With a shared tensor: the layer's rows start at this row of it (default 0), e.g. k_proj in
   * a tensor that stacks q, k and v. Its byte offset must be a multiple of the device's
   * `minStorageBufferOffsetAlignment`.
   */
  firstRow?: number;
  /** N. */
  outFeatures: number;
  /** K; must be even (rows are whole u32 words). */
  inFeatures: number;
  /** Multiply in f16 (`shader-f16`) rather than f32; default `gpu.f16`. */
  f16?: boolean;
  /**
   * Largest weight binding in bytes; default the device's `maxStorageBufferBindingSize`.
   * Larger weights are bound in chunks of output features. Tests lower it to exercise chunking.
   */
  maxBindingBytes?: number;
  /** Workgroup shapes. */
  tuning?: Fp16Tuning;
}

/**
 * An FP16 linear layer: weights stay FP16 on the GPU, activations are f32. One activation row
 * runs the GEMV kernel, more rows the tiled GEMM kernel.
 *
 * @example
 * ```ts ignore
 * const lin = await Fp16Linear.create(gpu, { label: "q_proj", weight: bits, outFeatures: 64, inFeatures: 64 });
 * const batch = new CommandBatch(gpu);
 * lin.encode(batch, x, y, 1);
 * batch.submit();
 * lin.destroy();
 * ```
 */
export class Fp16Linear implements Linear {
  /** Always `"fp16"`. */
  readonly format = "fp16";
  /** K. */
  readonly inFeatures: number;
  /** N. */
  readonly outFeatures: number;
  /**
   * N·K·2: the bytes of the weights it reads. For a shared weight these bytes are owned (and
   * counted in the ledger) by the tensor's creator; see {@linkcode sharedWeight}.
   */
  readonly weightBytes: number;
  /** Whether the weight tensor was given (shared) rather than uploaded by this layer. */
  readonly sharedWeight: boolean;
  /** Whether the kernels multiply in f16. */
  readonly f16: boolean;
  /** The weight bindings, one per chunk of output features. */
  readonly chunks: readonly RowChunk[];
  #owned: GpuTensor[];
  #gemv: Kernel;
  #gemm: GemmKernels;
  #gpu: Gpu;
  #destroyed = false;
  #gemvMulti: RowsKernel;
  #gemvRowsPerWorkgroup: number;
  #multiRowsPerWorkgroup: number;
  #tileM: number;
  #tileN: number;

  private constructor(
    gpu: Gpu,
    opts: Fp16LinearOptions,
    f16: boolean,
    chunks: RowChunk[],
    owned: GpuTensor[],
    kernels: [Kernel, GemmKernels, RowsKernel],
    shape: [number, number, number, number],
  ) {
    this.#gpu = gpu;
    this.inFeatures = opts.inFeatures;
    this.outFeatures = opts.outFeatures;
    this.weightBytes = opts.outFeatures * opts.inFeatures * 2;
    this.sharedWeight = !(opts.weight instanceof Uint16Array);
    this.f16 = f16;
    this.chunks = chunks;
    this.#owned = owned;
    [this.#gemv, this.#gemm, this.#gemvMulti] = kernels;
    holdGemmKernels(gpu, this.#gemm);
    [this.#gemvRowsPerWorkgroup, this.#tileM, this.#tileN, this.#multiRowsPerWorkgroup] = shape;
  }

  /** Uploads (or adopts) the weights and compiles both kernels. */
  static async create(gpu: Gpu, opts: Fp16LinearOptions): Promise<Fp16Linear> {
    const { label, weight, outFeatures: n, inFeatures: k } = opts;
    if (!Number.isInteger(n) || !Number.isInteger(k) || n < 1 || k < 2 || k % 2) {
      throw new RangeError(`${label}: need N ≥ 1 and an even K ≥ 2, got N=${n} K=${k}`);
    }
    const f16 = opts.f16 ?? gpu.f16;
    if (f16 && !gpu.f16) {
      throw new Error(`${label}: f16 arithmetic requested but the device lacks shader-f16`);
    }
    const rowBytes = k * 2;
    const maxBytes = opts.maxBindingBytes ?? gpu.limits.maxStorageBufferBindingSize;
    const owned: GpuTensor[] = [];
    let chunks: RowChunk[];
    if (weight instanceof Uint16Array) {
      if (weight.length !== n * k) {
        throw new RangeError(`${label}: ${weight.length} weights, expected ${n}x${k}`);
      }
      if (n * rowBytes <= gpu.limits.maxBufferSize) {
        const t = gpu.tensor({
          label,
          category: "weights",
          data: weight,
          shape: [n, k],
          dtype: "f16x2",
        });
        owned.push(t);
        chunks = tensorRowChunks(gpu, t, n, rowBytes, maxBytes);
      } else {
        // Beyond one buffer: a tensor per chunk, each a whole binding.
        const plan = planRowChunks(n, rowBytes, Math.min(maxBytes, gpu.limits.maxBufferSize), 4);
        chunks = plan.map(({ start, count }) => {
          const t = gpu.tensor({
            label: `${label}[${start}:${start + count}]`,
            category: "weights",
            data: weight.subarray(start * k, (start + count) * k),
            shape: [count, k],
            dtype: "f16x2",
          });
          owned.push(t);
          return { start, count, binding: t };
        });
      }
    } else {
      chunks = tensorRowChunks(gpu, weight, n, rowBytes, maxBytes, opts.firstRow ?? 0);
    }

    const t = opts.tuning ?? {};
    const outerRows = t.gemmOuterRows ?? 128;
    if (outerRows !== 64 && outerRows !== 128) {
      throw new RangeError(`${label}: invalid tuning ${JSON.stringify(t)}`);
    }
    const build: GemvBuild = { gpu, label, k, f16, t };
    try {
      const kernels = await Promise.all([
        gemvKernel(build, []),
        gemvRowsKernel(build, []),
        createGemmOuter(gpu, "matmul_f16", f16 ? ["F16"] : [], { label, k, t }),
      ]);
      const gemvRows = kernels[0].rowsPerWorkgroup;
      const ks: [Kernel, GemmKernels, RowsKernel] = [
        kernels[0].kernel,
        kernels[2],
        kernels[1].kernel,
      ];
      return new Fp16Linear(gpu, opts, f16, chunks, owned, ks, [
        gemvRows,
        outerRows,
        GEMM_OUTER_FEATURES,
        kernels[1].rowsPerWorkgroup,
      ]);
    } catch (err) {
      for (const o of owned) o.destroy();
      throw err;
    }
  }

  /**
   * The tensors this layer uploaded (none for a shared weight), in row order: what layer
   * streaming overwrites to put another layer's weights in its place.
   */
  get weightTensors(): readonly GpuTensor[] {
    return this.#owned;
  }

  /** Whether `perRow` products of `rows` rows run the multi-row GEMV: 2 to 8 rows. */
  takesRows(rows: number): boolean {
    return rows >= 2 && rows <= MAX_GEMV_ROWS;
  }

  /**
   * Records `y[rows, N] = x[rows, K] · Wᵀ`. FP16 reads x as it is, so `reuseInput` changes
   * nothing; `perRow` with 2 to {@linkcode MAX_GEMV_ROWS} rows runs the multi-row GEMV.
   */
  encode(
    batch: CommandBatch,
    x: Binding,
    y: Binding,
    rows: number,
    options?: LinearEncodeOptions,
  ): void {
    const multi = options?.perRow === true && rows >= 2 && rows <= MAX_GEMV_ROWS;
    const { inFeatures: k, outFeatures: n } = this;
    requireBytes(x, rows * k * 4, "linear x");
    requireBytes(y, rows * n * 4, "linear y");
    const chunkParams = (chunk: RowChunk) =>
      params().u32(rows).u32(n).u32(k).u32(chunk.start).u32(chunk.count).u32(0).u32(0).build();
    if (!multi && rows > 1) {
      const shape = { rows, n, k, tileM: this.#tileM, tileN: this.#tileN };
      encodeGemm(batch, this.#gpu, this.#gemm, shape, y, this.chunks, (i, kernel, out, size) => {
        const chunk = this.chunks[i];
        batch.dispatch(kernel, [x, chunk.binding, out], size, chunkParams(chunk));
      });
      return;
    }
    for (const chunk of this.chunks) {
      const p = chunkParams(chunk);
      if (multi) {
        const groups = Math.ceil(chunk.count / this.#multiRowsPerWorkgroup);
        batch.dispatch(this.#gemvMulti.for(rows), [x, chunk.binding, y], grid(groups), p);
      } else {
        const groups = Math.ceil(chunk.count / this.#gemvRowsPerWorkgroup);
        batch.dispatch(this.#gemv, [x, chunk.binding, y], grid(groups), p);
      }
    }
  }

  /** Frees the uploaded weights; a shared weight tensor is left alone. */
  destroy(): void {
    for (const t of this.#owned) t.destroy();
    this.#owned = [];
    if (!this.#destroyed) releaseGemmKernels(this.#gpu, this.#gemm);
    this.#destroyed = true;
  }
}

/** What a layer's FP16 GEMV kernels are made for. */
interface GemvBuild {
  gpu: Gpu;
  /** The layer's label, for errors. */
  label: string;
  /** K. */
  k: number;
  /** f16 arithmetic. */
  f16: boolean;
  t: Fp16Tuning;
}

/**
 * Lanes a feature of an FP16 stack's GEMVs by default, on a hardware adapter: 16 where the stack
 * has at least twice as many rows as K and at most {@linkcode STACK_16_LANES_MAX_ROWS}, else 32
 * (always 32 on a software adapter). Measured on the H200 (BENCHMARKS.md, "FP16 stacks with 16
 * lanes a feature"): Llama-2-7B's q/k/v (12,288 × 4,096) and gate/up (22,016 × 4,096) faster
 * (decode 183.3-183.9 → 188.4-189.7 tok/s, a 5-token verify pass 10.25 → 9.29 GPU ms);
 * Llama-3-8B's gate/up (28,672 × 4,096) slower (its decode 166 → 162-164 tok/s with it).
 *
 * @example
 * ```ts ignore
 * stackThreadsPerRow(gpu, 12288, 4096); // 16 on a GPU (Llama-2-7B's q/k/v), 32 on llvmpipe
 * ```
 */
export function stackThreadsPerRow(gpu: Pick<Gpu, "isSoftware">, n: number, k: number): number {
  return !gpu.isSoftware && n >= 2 * k && n <= STACK_16_LANES_MAX_ROWS ? 16 : 32;
}

/**
 * The most rows an FP16 stack takes 16 lanes a feature for (1,536 workgroups of 16 features; the
 * H200 ran 28,672 rows slower with 16 than with 32, 22,016 faster).
 */
export const STACK_16_LANES_MAX_ROWS = 24576;

/**
 * The FP16 GEMV kernel for K, with the output routing `route` (`[]`, `["ROUTE2"]`, ...), and how
 * many output features a workgroup computes; `rows`: its multi-row form (`gemv_rows`).
 */
function gemvSpec(
  { gpu, label, k, f16, t }: GemvBuild,
  route: string[],
  rows = false,
): { spec: KernelSpec; rowsPerWorkgroup: number } {
  const gemvWg = (rows ? t.gemvRowsWorkgroupSize : undefined) ?? t.gemvWorkgroupSize ?? 256;
  const fpt = rows ? t.gemvRowsFeatures ?? defaultRowsFeatures() : 1;
  const gemvTpr = t.gemvThreadsPerRow ?? 32;
  if (gemvTpr & (gemvTpr - 1) || gemvWg % gemvTpr || (fpt !== 1 && fpt !== 2 && fpt !== 4)) {
    throw new RangeError(`${label}: invalid tuning ${JSON.stringify(t)}`);
  }
  const unroll = t.gemvUnroll ?? !gpu.isSoftware;
  const defines = [
    ...(f16 ? ["F16"] : []),
    ...(k % 8 === 0 ? ["K8"] : []),
    ...(unroll ? ["UNROLL4"] : []),
    ...route,
    ...(rows && f16 && k % 8 === 0 && t.gemvRowsStageX !== false ? ["XTILE"] : []),
    ...(rows && fpt === 2 ? ["FPT2"] : rows && fpt === 1 ? ["FPT1"] : []),
    ...(rows && t.gemvRowsPrefetch === false ? ["NOPREFETCH"] : []),
  ];
  const spec = {
    file: "matmul_f16",
    entry: rows ? "gemv_rows" : "gemv",
    defines,
    constants: { GEMV_WG: gemvWg, GEMV_TPR: gemvTpr },
  };
  // gemv: one output feature per lane group; gemv_rows: FPT (matmul_f16.wgsl)
  return { spec, rowsPerWorkgroup: (gemvWg / gemvTpr) * fpt };
}

/** The one-row GEMV of {@linkcode gemvSpec}. */
async function gemvKernel(
  build: GemvBuild,
  route: string[],
): Promise<{ kernel: Kernel; rowsPerWorkgroup: number }> {
  const { spec, rowsPerWorkgroup } = gemvSpec(build, route);
  return { kernel: await build.gpu.kernel(spec), rowsPerWorkgroup };
}

/** The multi-row GEMV of {@linkcode gemvSpec}, a pipeline per row count where the tuning says. */
async function gemvRowsKernel(
  build: GemvBuild,
  route: string[],
): Promise<{ kernel: RowsKernel; rowsPerWorkgroup: number }> {
  const { spec, rowsPerWorkgroup } = gemvSpec(build, route, true);
  const counts = rowsPipelineCounts(build.gpu, build.t.gemvRowsPerCount, 2, MAX_GEMV_ROWS);
  return { kernel: await RowsKernel.create(build.gpu, spec, counts), rowsPerWorkgroup };
}

/**
 * Output features per lane group of a multi-row GEMV (`gemv_rows`) when the layer's tuning does
 * not say: 2. Four per group read each x once for four weight rows but leave a quarter of the
 * one-row GEMV's threads, too few to keep the H200's memory system busy: a Llama-2-7B layer's
 * seven products over 5 rows took 2.16x the one-row time with 2 (FP16), 3.38x with 4 (and
 * int8-vectorwise 1.58x / 1.83x, LLM.int8() 2.25x / 3.55x, NF4 1.97x / 2.96x, Q8_0 1.06x / 1.48x;
 * bench/gemv_rows.ts, BENCHMARKS.md).
 */
export function defaultRowsFeatures(): 2 | 4 {
  return 2;
}

/**
 * Layers that read the same activations (q/k/v, gate/up) held as one matrix: one dispatch
 * computes all of them for one activation row ({@linkcode Fp16LinearStack}, and
 * `QuantLinearStack` of quant_linear.ts).
 *
 * @example
 * ```ts ignore
 * const stack: LinearStack = qkv;
 * stack.encodeRow(batch, xn, [yq, yk, yv]);
 * ```
 */
export interface LinearStack {
  /** The stacked layers, for any number of activation rows. */
  readonly parts: readonly Linear[];
  /**
   * Records every layer's `y = x · Wᵀ` for one activation row, into `ys` in stacking order
   * (`options.reuseInput` as in {@linkcode Linear.encode}).
   */
  encodeRow(
    batch: CommandBatch,
    x: Binding,
    ys: readonly Binding[],
    options?: LinearEncodeOptions,
  ): void;
  /**
   * As {@linkcode encodeRow} for `rows` activation rows (`ys[i]` holding `[rows, N_i]`), each row
   * computed as one row alone would be (the layers' `perRow` products), where
   * {@linkcode takesRows} says so (absent: one row only).
   */
  encodeRows?(
    batch: CommandBatch,
    x: Binding,
    ys: readonly Binding[],
    rows: number,
    options?: LinearEncodeOptions,
  ): void;
  /** Whether {@linkcode encodeRows} takes `rows` rows. */
  takesRows?(rows: number): boolean;
  /** As {@linkcode Linear.int8Input}, for the stack's one product. */
  int8Input?(batch: CommandBatch, x: Binding, rows?: number): Int8Input | null;
  /** Whether `encodeRow` takes {@linkcode LinearEncodeOptions.rmsNorm} for `rows` rows. */
  foldsRmsNorm?(rows: number): boolean;
  /**
   * Whether `encodeRow` (one row) or `encodeRows` take {@linkcode LinearEncodeOptions.swigluOut}
   * for `rows` rows.
   */
  fusesSwigluOut?(rows: number): boolean;
  /** Frees what the stack holds. */
  destroy(): void;
}

/** One layer of an {@linkcode Fp16LinearStack}. */
export interface StackedWeight {
  /** Ledger-style name of the layer, e.g. `model.layers.0.self_attn.k_proj.weight`. */
  label: string;
  /** Its f16 weights `[outFeatures, K]`. */
  weight: Uint16Array;
  /** Its N. */
  outFeatures: number;
}

/** Options for {@linkcode Fp16LinearStack.create}. */
export interface Fp16LinearStackOptions {
  /** Ledger label of the stacked tensor. */
  label: string;
  /** The two or three layers, in stacking order. */
  layers: StackedWeight[];
  /** K, shared by all. */
  inFeatures: number;
  /** Multiply in f16; default `gpu.f16`. */
  f16?: boolean;
  /** Largest weight binding in bytes (default the device's); tests lower it. */
  maxBindingBytes?: number;
  /** GEMV workgroup shape. */
  tuning?: Fp16Tuning;
}

/**
 * FP16 layers that read the same input (q, k and v; gate and up) with their weights stacked in
 * one tensor: each layer is an {@linkcode Fp16Linear} over its own rows of it ({@linkcode parts},
 * for any number of activation rows), and {@linkcode encodeRow} computes all of them for one
 * activation row in one dispatch, each output feature written to its own layer's y. For decode
 * that is one launch instead of two or three, over a grid as large as their sum.
 *
 * @example
 * ```ts ignore
 * const qkv = await Fp16LinearStack.create(gpu, {
 *   label: "layers.0.qkv",
 *   layers: [{ label: "q", weight: q, outFeatures: 4096 }, { label: "k", weight: k, outFeatures: 1024 },
 *     { label: "v", weight: v, outFeatures: 1024 }],
 *   inFeatures: 4096,
 * });
 * qkv.encodeRow(batch, xn, [yq, yk, yv]);
 * qkv.destroy();
 * ```
 */
export class Fp16LinearStack implements LinearStack {
  /** The stacked layers, each reading its rows of the shared tensor. */
  readonly parts: readonly Fp16Linear[];
  /** K. */
  readonly inFeatures: number;
  /** Total output features of the stack. */
  readonly outFeatures: number;
  #tensor: GpuTensor | null;
  #gemv: Kernel;
  #rowsPerWorkgroup: number;
  #gemvRows: RowsKernel;
  #multiRowsPerWorkgroup: number;
  #gemvSwiglu: Kernel | null;
  #gemvRowsSwiglu: RowsKernel | null;
  #chunks: RowChunk[];
  #splits: [number, number];

  private constructor(
    parts: Fp16Linear[],
    tensor: GpuTensor,
    gemv: { kernel: Kernel; rowsPerWorkgroup: number },
    gemvRows: { kernel: RowsKernel; rowsPerWorkgroup: number },
    swiglu: { gemv: Kernel; gemvRows: RowsKernel } | null,
    chunks: RowChunk[],
    splits: [number, number],
  ) {
    this.parts = parts;
    this.inFeatures = parts[0].inFeatures;
    this.outFeatures = parts.reduce((s, p) => s + p.outFeatures, 0);
    this.#tensor = tensor;
    this.#gemv = gemv.kernel;
    this.#rowsPerWorkgroup = gemv.rowsPerWorkgroup;
    this.#gemvRows = gemvRows.kernel;
    this.#multiRowsPerWorkgroup = gemvRows.rowsPerWorkgroup;
    this.#gemvSwiglu = swiglu?.gemv ?? null;
    this.#gemvRowsSwiglu = swiglu?.gemvRows ?? null;
    this.#chunks = chunks;
    this.#splits = splits;
  }

  /**
   * Whether layers of these output features can share a tensor on `gpu`: each layer's first
   * row must start on the storage binding alignment, and the stack must fit one buffer.
   */
  static fits(gpu: Gpu, inFeatures: number, outFeatures: readonly number[]): boolean {
    const rowBytes = inFeatures * 2;
    let row = 0;
    for (const n of outFeatures) {
      if ((row * rowBytes) % gpu.limits.minStorageBufferOffsetAlignment) return false;
      row += n;
    }
    return outFeatures.length >= 2 && outFeatures.length <= 3 && inFeatures % 2 === 0 &&
      row * rowBytes <= gpu.limits.maxBufferSize;
  }

  /** Uploads the layers into one tensor and compiles the routing GEMV. */
  static async create(gpu: Gpu, opts: Fp16LinearStackOptions): Promise<Fp16LinearStack> {
    const { label, layers, inFeatures: k } = opts;
    const counts = layers.map((l) => l.outFeatures);
    if (!Fp16LinearStack.fits(gpu, k, counts)) {
      throw new RangeError(
        `${label}: cannot stack ${counts.join(" + ")} rows of ${k} (2 or 3 layers, each ` +
          `starting on the ${gpu.limits.minStorageBufferOffsetAlignment}-byte binding alignment, ` +
          `within maxBufferSize)`,
      );
    }
    for (const l of layers) {
      if (l.weight.length !== l.outFeatures * k) {
        throw new RangeError(
          `${l.label}: ${l.weight.length} weights, expected ${l.outFeatures}x${k}`,
        );
      }
    }
    const f16 = opts.f16 ?? gpu.f16;
    const total = counts.reduce((a, b) => a + b, 0);
    const tensor = gpu.tensor({
      label,
      category: "weights",
      byteSize: total * k * 2,
      shape: [total, k],
      dtype: "f16x2",
    });
    try {
      const starts: number[] = [];
      let row = 0;
      for (const l of layers) {
        starts.push(row);
        tensor.write(gpu.device, l.weight, row * k * 2);
        row += l.outFeatures;
      }
      const maxBytes = opts.maxBindingBytes ?? gpu.limits.maxStorageBufferBindingSize;
      const route = layers.length === 3 ? ["ROUTE3"] : ["ROUTE2"];
      // the stack's lanes a feature, which its parts share (so that each part alone computes
      // what the stack routes to it)
      const t: Fp16Tuning = {
        ...opts.tuning,
        gemvThreadsPerRow: opts.tuning?.gemvThreadsPerRow ?? stackThreadsPerRow(gpu, total, k),
      };
      // gate/up: SwiGLU in the epilogue, where the thread groups of a workgroup pair up
      const groups = (t.gemvWorkgroupSize ?? 256) / t.gemvThreadsPerRow!;
      const swiglu = layers.length === 2 && counts[0] === counts[1] && groups % 2 === 0 &&
        (t.stackSwiglu ?? true);
      const routeSwiglu = [...route, "SWIGLU_OUT"];
      const build: GemvBuild = { gpu, label, k, f16, t };
      const [gemv, gemvRows, gemvSwiglu, gemvRowsSwiglu, ...parts] = await Promise.all([
        gemvKernel(build, route),
        gemvRowsKernel(build, route),
        swiglu ? gemvKernel(build, routeSwiglu) : null,
        swiglu ? gemvRowsKernel(build, routeSwiglu) : null,
        ...layers.map((l, i) =>
          Fp16Linear.create(gpu, {
            label: l.label,
            weight: tensor,
            firstRow: starts[i],
            outFeatures: l.outFeatures,
            inFeatures: k,
            f16,
            maxBindingBytes: opts.maxBindingBytes,
            tuning: t,
          })
        ),
      ]);
      const chunks = tensorRowChunks(gpu, tensor, total, k * 2, maxBytes);
      const splits: [number, number] = [starts[1], starts[2] ?? total];
      return new Fp16LinearStack(
        parts as Fp16Linear[],
        tensor,
        gemv,
        gemvRows,
        gemvSwiglu && gemvRowsSwiglu
          ? { gemv: gemvSwiglu.kernel, gemvRows: gemvRowsSwiglu.kernel }
          : null,
        chunks,
        splits,
      );
    } catch (err) {
      tensor.destroy();
      throw err;
    }
  }

  /**
   * Records every layer's `y = x · Wᵀ` for one activation row, into `ys` in stacking order;
   * with `options.swigluOut`, `silu(ys[0]) · ys[1]` into `ys[0]` instead.
   */
  encodeRow(
    batch: CommandBatch,
    x: Binding,
    ys: readonly Binding[],
    options: LinearEncodeOptions = {},
  ): void {
    if (ys.length !== this.parts.length) {
      throw new RangeError(`stack of ${this.parts.length} layers: ${ys.length} outputs given`);
    }
    const k = this.inFeatures;
    requireBytes(x, k * 4, "stacked linear x");
    this.parts.forEach((part, i) => requireBytes(ys[i], part.outFeatures * 4, "stacked linear y"));
    if (options.swigluOut) return this.#encodeSwiglu(batch, x, ys[0], 1);
    for (const chunk of this.#chunks) {
      const p = params().u32(1).u32(this.outFeatures).u32(k).u32(chunk.start).u32(chunk.count)
        .u32(this.#splits[0]).u32(this.#splits[1]).build();
      const groups = Math.ceil(chunk.count / this.#rowsPerWorkgroup);
      batch.dispatch(this.#gemv, [x, chunk.binding, ...ys], grid(groups), p);
    }
  }

  /**
   * Records every layer's `y = x · Wᵀ` for `rows` activation rows (1 to
   * {@linkcode MAX_GEMV_ROWS}; `ys[i]` holds `[rows, N_i]`), each row as the layers' multi-row
   * GEMV computes it (`perRow`).
   */
  encodeRows(
    batch: CommandBatch,
    x: Binding,
    ys: readonly Binding[],
    rows: number,
    options: LinearEncodeOptions = {},
  ): void {
    if (rows === 1) return this.encodeRow(batch, x, ys, options);
    if (!this.takesRows(rows)) {
      throw new RangeError(`stacked linear: ${rows} rows (2 to ${MAX_GEMV_ROWS} at once)`);
    }
    if (ys.length !== this.parts.length) {
      throw new RangeError(`stack of ${this.parts.length} layers: ${ys.length} outputs given`);
    }
    const k = this.inFeatures;
    requireBytes(x, rows * k * 4, "stacked linear x");
    this.parts.forEach((part, i) =>
      requireBytes(ys[i], rows * part.outFeatures * 4, "stacked linear y")
    );
    if (options.swigluOut) return this.#encodeSwiglu(batch, x, ys[0], rows);
    for (const chunk of this.#chunks) {
      const p = params().u32(rows).u32(this.outFeatures).u32(k).u32(chunk.start)
        .u32(chunk.count).u32(this.#splits[0]).u32(this.#splits[1]).build();
      const groups = Math.ceil(chunk.count / this.#multiRowsPerWorkgroup);
      batch.dispatch(this.#gemvRows.for(rows), [x, chunk.binding, ...ys], grid(groups), p);
    }
  }

  /** silu(gate) · up of `rows` rows into the gate output (the SWIGLU_OUT gemv or gemv_rows). */
  #encodeSwiglu(batch: CommandBatch, x: Binding, gate: Binding, rows: number): void {
    if (!this.fusesSwigluOut(rows)) throw new Error("FP16 stack: no SwiGLU epilogue here");
    const n = this.#splits[0];
    const [kernel, perWorkgroup] = rows === 1
      ? [this.#gemvSwiglu!, this.#rowsPerWorkgroup]
      : [this.#gemvRowsSwiglu!.for(rows), this.#multiRowsPerWorkgroup];
    const p = params().u32(rows).u32(this.outFeatures).u32(this.inFeatures).u32(0)
      .u32(this.outFeatures).u32(n).u32(n).build();
    // only the gate output: the kernel never touches up's, which its layout then leaves out; a
    // workgroup's features are half gate, half the same rows of up
    const groups = grid(Math.ceil(n / (perWorkgroup / 2)));
    batch.dispatch(kernel, [x, this.#chunks[0].binding, gate], groups, p);
  }

  /** Whether {@linkcode encodeRows} takes `rows` rows: 1 to {@linkcode MAX_GEMV_ROWS}. */
  takesRows(rows: number): boolean {
    return Number.isInteger(rows) && rows >= 1 && rows <= MAX_GEMV_ROWS;
  }

  /**
   * Whether `encodeRow` / `encodeRows` take {@linkcode LinearEncodeOptions.swigluOut} for `rows`
   * rows (1 to {@linkcode MAX_GEMV_ROWS}, each row as its one-row product): a stack of two layers
   * of equal width in one binding, unless {@linkcode Fp16Tuning.stackSwiglu} is false.
   */
  fusesSwigluOut(rows: number): boolean {
    return this.takesRows(rows) && this.#gemvSwiglu !== null && this.#chunks.length === 1;
  }

  /** Frees the stacked tensor (the parts only read it). */
  destroy(): void {
    this.#tensor?.destroy();
    this.#tensor = null;
  }
}
