/**
 * The pipelines of a multi-row GEMV (`gemv_rows` in matmul_f16, q_int8, q_4bit and q_q8_0): one
 * made for each row count, or one for any.
 *
 * @module
 */

import type { Gpu } from "../gpu/device.ts";
import type { Kernel, KernelSpec } from "../gpu/kernel.ts";

/**
 * A multi-row GEMV's pipelines. Made for one row count (the kernels' `ROWS` override), the shader
 * compiler drops the branches of the rows past it and schedules the rows' sums together: on the
 * H200 a Llama-2-7B verify pass of 5 tokens took 4.5% less time that way (FP16; int8-vectorwise
 * 2%; NF4 8% with its codes loaded a step ahead, BENCHMARKS.md). The arithmetic is the same, so
 * the outputs are too. A software adapter keeps one pipeline for any count (`ROWS` = 0: the
 * count comes from the parameters), as each pipeline costs it seconds to compile.
 *
 * @example
 * ```ts ignore
 * const rows = await RowsKernel.create(gpu, { file: "matmul_f16", entry: "gemv_rows" }, [2, 3]);
 * batch.dispatch(rows.for(3), bindings, groups, params);
 * ```
 */
export class RowsKernel {
  readonly #any: Kernel;
  readonly #byCount: ReadonlyMap<number, Kernel>;

  private constructor(any: Kernel, byCount: ReadonlyMap<number, Kernel>) {
    this.#any = any;
    this.#byCount = byCount;
  }

  /** Builds the pipeline for any count and one for each of `counts` (none: the first only). */
  static async create(
    gpu: Gpu,
    spec: KernelSpec,
    counts: readonly number[],
  ): Promise<RowsKernel> {
    const made = (rows: number) =>
      gpu.kernel({ ...spec, constants: { ...spec.constants, ROWS: rows } });
    const [any, ...each] = await Promise.all([made(0), ...counts.map(made)]);
    return new RowsKernel(any, new Map(counts.map((rows, i) => [rows, each[i]])));
  }

  /** The pipeline for `rows` activation rows. */
  for(rows: number): Kernel {
    return this.#byCount.get(rows) ?? this.#any;
  }
}

/**
 * The row counts a layer's multi-row GEMV gets pipelines of its own for: `from` to `to` where
 * the tuning asks for them (`perCount`, default: on a hardware adapter), else none.
 *
 * @example
 * ```ts ignore
 * rowsPipelineCounts(gpu, undefined, 2, 8); // [2, ..., 8] on a GPU, [] on llvmpipe
 * ```
 */
export function rowsPipelineCounts(
  gpu: Gpu,
  perCount: boolean | undefined,
  from: number,
  to: number,
): number[] {
  if (!(perCount ?? !gpu.isSoftware)) return [];
  return Array.from({ length: to - from + 1 }, (_, i) => from + i);
}
