/**
 * The f32 FMA-rate reference kernel (`kernels/fma_peak.wgsl`): independent fused multiply-add
 * chains and nothing else. Its GPU time is the arithmetic ceiling that the benchmarks compare
 * compute-bound kernels (GEMM) with, measured on the same adapter in the same run, as the
 * streaming read (`stream_read.ts`) is for memory-bound ones.
 *
 * @module
 */

import { CommandBatch, params } from "../gpu/batch.ts";
import type { Gpu } from "../gpu/device.ts";
import type { Kernel } from "../gpu/kernel.ts";
import type { GpuTensor } from "../gpu/tensor.ts";

/** FMAs per thread per step: one of each of the 8 vec4 chains. */
export const FMAS_PER_STEP = 32;

/**
 * The CPU twin: what the kernel writes for threads `0..threads-1` after `steps` steps (trips
 * times {@linkcode FmaPeak.stepsPerTrip}) with multiplier `m` and addend `c`. Each step rounds
 * the product and the sum apart; WGSL lets `fma` round once or twice, so the kernel may differ by
 * about an ulp per step (see the test's tolerance).
 *
 * @example
 * ```ts
 * import { cpuFmaPeak } from "./fma_peak.ts";
 * cpuFmaPeak(1, 0, 0.5, 0.5)[0]; // 15.5: the starting values, 0/32 + 1/32 + ... + 31/32
 * ```
 */
export function cpuFmaPeak(threads: number, steps: number, m: number, c: number): Float32Array {
  const f = Math.fround;
  const [mf, cf] = [f(m), f(c)];
  const out = new Float32Array(threads);
  const a = new Float32Array(32);
  for (let t = 0; t < threads; t++) {
    for (let k = 0; k < 32; k++) a[k] = (t & 1023) / 1024 + k / 32;
    for (let s = 0; s < steps; s++) {
      for (let k = 0; k < 32; k++) a[k] = f(f(a[k] * mf) + cf);
    }
    // the kernel's order: chains pairwise (vec4 by vec4), then the four lanes pairwise
    const s = new Float32Array(4);
    for (let l = 0; l < 4; l++) {
      const v = (j: number) => a[4 * j + l];
      s[l] = f(f(f(v(0) + v(1)) + f(v(2) + v(3))) + f(f(v(4) + v(5)) + f(v(6) + v(7))));
    }
    out[t] = f(f(s[0] + s[1]) + f(s[2] + s[3]));
  }
  return out;
}

/** A compiled FMA-rate kernel with its launch shape. */
export interface FmaPeak {
  /** Workgroups per dispatch. */
  readonly workgroups: number;
  /** Threads per workgroup. */
  readonly workgroupSize: number;
  /** Steps of every chain per loop trip: 4, or 16 (`LONG_TRIP`). */
  readonly stepsPerTrip: 4 | 16;
  /** Bytes of the output buffer `encode` needs: one f32 per thread. */
  readonly outBytes: number;
  /** FLOPs of one dispatch of `trips` trips, an FMA counting as two. */
  flops(trips: number): number;
  /** Records one dispatch of `trips` trips of `a = fma(a, m, c)` (`|m| < 1`) into `out`. */
  encode(batch: CommandBatch, out: GpuTensor, trips: number, m?: number, c?: number): void;
}

/**
 * Compiles the kernel for `workgroups` workgroups of `workgroupSize` threads (defaults: 15840 of
 * 256, whole waves on 132 SMs at 4, 5, 6 or 8 workgroups per SM; on other GPUs the many waves
 * keep the last one's idle share small), `stepsPerTrip` steps per loop trip (default: 16, or 4 on
 * a software adapter; `kernels/fma_peak.wgsl` says why).
 *
 * @example
 * ```ts ignore
 * const fma = await createFmaPeak(gpu, { workgroups: 4 });
 * const out = gpu.tensor({ label: "out", category: "scratch", byteSize: fma.outBytes });
 * fma.encode(batch, out, 16);
 * ```
 */
export async function createFmaPeak(
  gpu: Gpu,
  options: { workgroups?: number; workgroupSize?: number; stepsPerTrip?: 4 | 16 } = {},
): Promise<FmaPeak> {
  const workgroups = options.workgroups ?? 15840;
  const workgroupSize = options.workgroupSize ?? 256;
  const stepsPerTrip = options.stepsPerTrip ?? (gpu.isSoftware ? 4 : 16);
  const kernel: Kernel = await gpu.kernel({
    file: "fma_peak",
    entry: "main",
    defines: stepsPerTrip === 16 ? ["LONG_TRIP"] : [],
    constants: { WG: workgroupSize },
  });
  const threads = workgroups * workgroupSize;
  return {
    workgroups,
    workgroupSize,
    stepsPerTrip,
    outBytes: threads * 4,
    flops: (trips) => 2 * FMAS_PER_STEP * stepsPerTrip * threads * trips,
    encode(batch, out, trips, m = 0.999, c = 0.001) {
      if (!(Math.abs(m) < 1)) throw new RangeError(`fma peak: |m| must be below 1, got ${m}`);
      if (out.byteSize < threads * 4) {
        throw new RangeError(`fma peak: output needs ${threads * 4} bytes`);
      }
      batch.dispatch(kernel, [out], workgroups, params().u32(trips).f32(m).f32(c).build());
    },
  };
}

/**
 * Measures the f32 FMA rate the adapter sustains from WGSL, in TFLOP/s (an FMA counting as two
 * FLOPs): the median GPU time of `reps` dispatches (timestamps; wall clock of them all without
 * `timestamp-query`), submitted right behind `warmup` untimed ones so that the clocks are up.
 * The defaults take about 8 ms a dispatch on an H200 (15840 workgroups, 128 trips of 16 steps); a
 * software adapter gets 64 workgroups, 256 trips of 4 steps: a few ms a dispatch on two CPU cores
 * (lavapipe).
 *
 * @example
 * ```ts ignore
 * const gpu = await requestGpu();
 * console.log(`f32 FMA: ${(await measureFmaRate(gpu)).toFixed(2)} TFLOP/s`);
 * ```
 */
export async function measureFmaRate(
  gpu: Gpu,
  options: { workgroups?: number; trips?: number; reps?: number; warmup?: number } = {},
): Promise<number> {
  const fma = await createFmaPeak(gpu, {
    workgroups: options.workgroups ?? (gpu.isSoftware ? 64 : 15840),
  });
  const trips = options.trips ?? (gpu.isSoftware ? 256 : 128);
  const reps = options.reps ?? (gpu.isSoftware ? 5 : 20);
  const warmup = options.warmup ?? (gpu.isSoftware ? 2 : 10);
  const out = gpu.tensor({ label: "fma peak out", category: "scratch", byteSize: fma.outBytes });
  try {
    const batch = new CommandBatch(gpu);
    for (let i = 0; i < warmup; i++) fma.encode(batch, out, trips);
    if (!gpu.timestamps) {
      // a wall clock would count the warm-up still running: let it finish first
      batch.submit();
      await gpu.device.queue.onSubmittedWorkDone();
    }
    for (let i = 0; i < reps; i++) fma.encode(batch, out, trips);
    const t = await batch.submitTimed();
    const ms = gpu.timestamps
      ? t.slice(warmup).map((d) => d.ms).sort((a, b) => a - b)[Math.floor(reps / 2)]
      : t[0].ms / reps;
    return fma.flops(trips) / ms / 1e9;
  } finally {
    out.destroy();
  }
}
