/**
 * RMSNorm (`kernels/rmsnorm.wgsl`) and its CPU twin.
 *
 * @module
 */

import { type Binding, type CommandBatch, grid, params } from "../gpu/batch.ts";
import type { Gpu } from "../gpu/device.ts";
import { requireBytes } from "./chunks.ts";

/**
 * Reference RMSNorm: `out[r, :] = x[r, :] / sqrt(mean(x[r, :]²) + eps) * weight`, summed in
 * f64.
 *
 * @example
 * ```ts
 * import { cpuRmsNorm } from "./rmsnorm.ts";
 * cpuRmsNorm(new Float32Array([3, 4]), new Float32Array([1, 1]), 1, 2, 0); // ≈ [0.849, 1.131]
 * ```
 */
export function cpuRmsNorm(
  x: Float32Array,
  weight: Float32Array,
  rows: number,
  dim: number,
  eps: number,
): Float32Array {
  const out = new Float32Array(rows * dim);
  for (let r = 0; r < rows; r++) {
    let ss = 0;
    for (let i = 0; i < dim; i++) ss += x[r * dim + i] ** 2;
    const inv = 1 / Math.sqrt(ss / dim + eps);
    for (let i = 0; i < dim; i++) out[r * dim + i] = x[r * dim + i] * inv * weight[i];
  }
  return out;
}

/** An RMSNorm of a fixed width; see {@linkcode createRmsNorm}. */
export interface RmsNorm {
  /** Row width. */
  readonly dim: number;
  /** Added to the mean square. */
  readonly eps: number;
  /** Records `out = rmsnorm(x) * weight` for `rows` rows; `out` must not alias `x`. */
  encode(batch: CommandBatch, x: Binding, weight: Binding, out: Binding, rows: number): void;
  /** Records `x = rmsnorm(x) * weight` in place for `rows` rows. */
  encodeInPlace(batch: CommandBatch, x: Binding, weight: Binding, rows: number): void;
  /**
   * Records `x += delta`, then `out = rmsnorm(x) * weight`, in one dispatch (the residual add
   * of a block and the next norm); `x` ends up holding the sum, as an add kernel would leave it.
   */
  encodeAdd(
    batch: CommandBatch,
    x: Binding,
    delta: Binding,
    weight: Binding,
    out: Binding,
    rows: number,
  ): void;
  /**
   * {@linkcode encodeAdd} (dim % 4 == 0), then the int8 activation codes of each row of `out`
   * in the same dispatch: row r's absmax to `absmax[r]` and its codes, four per u32, to row r of
   * `codes` — what an int8 product's own activation quantization of each row alone (q_int8.wgsl
   * `quantize_row`, `quantize_rows`) would write.
   */
  encodeAddQ8(
    batch: CommandBatch,
    x: Binding,
    delta: Binding,
    weight: Binding,
    out: Binding,
    q8: { codes: Binding; absmax: Binding },
    rows?: number,
  ): void;
}

/**
 * Threads per workgroup for rows of `dim` when the caller does not say: on a GPU, enough for
 * four elements a thread (add_rmsnorm then holds a row in registers and waits on one round of
 * loads; kernels/rmsnorm.wgsl), 256 to the adapter's limit; 256 on a software adapter.
 *
 * @example
 * ```ts ignore
 * normWorkgroupSize(gpu, 4096); // 1024 on an H200, 256 on llvmpipe
 * ```
 */
export function normWorkgroupSize(gpu: Gpu, dim: number): number {
  if (gpu.isSoftware) return 256;
  const limit = Math.min(
    gpu.limits.maxComputeInvocationsPerWorkgroup,
    gpu.limits.maxComputeWorkgroupSizeX,
  );
  let wg = 256;
  while (wg * 4 < dim && wg * 2 <= limit) wg *= 2;
  return wg;
}

/**
 * Compiles the RMSNorm kernel for rows of `dim` f32 values.
 *
 * @example
 * ```ts ignore
 * const norm = await createRmsNorm(gpu, { dim: 4096, eps: 1e-5 });
 * norm.encode(batch, x, weight, out, rows);
 * ```
 */
export async function createRmsNorm(
  gpu: Gpu,
  opts: { dim: number; eps: number; workgroupSize?: number },
): Promise<RmsNorm> {
  const { dim, eps } = opts;
  const wg = opts.workgroupSize ?? normWorkgroupSize(gpu, dim);
  if (wg & (wg - 1)) throw new RangeError(`rmsnorm: workgroup size ${wg} is not a power of two`);
  const [kernel, withAdd, inPlace, withAddQ8, withAddQ8Rows] = await Promise.all([
    gpu.kernel({ file: "rmsnorm", entry: "rmsnorm", constants: { WG: wg } }),
    gpu.kernel({ file: "rmsnorm", entry: "add_rmsnorm", constants: { WG: wg } }),
    gpu.kernel({ file: "rmsnorm", entry: "rmsnorm_inplace", constants: { WG: wg } }),
    gpu.kernel({ file: "rmsnorm", entry: "add_rmsnorm_q8", constants: { WG: wg } }),
    gpu.kernel({ file: "rmsnorm", entry: "add_rmsnorm_q8_rows", constants: { WG: wg } }),
  ]);
  const check = (x: Binding, weight: Binding, out: Binding, rows: number) => {
    requireBytes(x, rows * dim * 4, "rmsnorm x");
    requireBytes(weight, dim * 4, "rmsnorm weight");
    requireBytes(out, rows * dim * 4, "rmsnorm out");
  };
  const p = (rows: number) => params().u32(rows).u32(dim).f32(eps).build();
  return {
    dim,
    eps,
    encode(batch, x, weight, out, rows) {
      check(x, weight, out, rows);
      batch.dispatch(kernel, [x, weight, out], grid(rows), p(rows));
    },
    encodeInPlace(batch, x, weight, rows) {
      requireBytes(x, rows * dim * 4, "rmsnorm x");
      requireBytes(weight, dim * 4, "rmsnorm weight");
      batch.dispatch(inPlace, [x, weight], grid(rows), p(rows));
    },
    encodeAdd(batch, x, delta, weight, out, rows) {
      check(x, weight, out, rows);
      requireBytes(delta, rows * dim * 4, "rmsnorm delta");
      batch.dispatch(withAdd, [x, weight, out, delta], grid(rows), p(rows));
    },
    encodeAddQ8(batch, x, delta, weight, out, q8, rows = 1) {
      if (dim % 4) {
        throw new RangeError(`rmsnorm with int8 codes: dim ${dim} is not a multiple of 4`);
      }
      check(x, weight, out, rows);
      requireBytes(delta, rows * dim * 4, "rmsnorm delta");
      requireBytes(q8.codes, rows * dim, "rmsnorm int8 codes");
      requireBytes(q8.absmax, rows * 4, "rmsnorm int8 absmax");
      const bindings = [x, weight, out, delta, q8.absmax, q8.codes];
      if (rows === 1) batch.dispatch(withAddQ8, bindings, 1, p(1));
      else batch.dispatch(withAddQ8Rows, bindings, grid(rows), p(rows));
    },
  };
}
