/**
 * GEMMs split across workgroups. A prefill product of few rows has few 128 × 128 tiles (a
 * 64-token prompt at 4,096 features: 32), so most of a large GPU idles while each workgroup walks
 * the whole of K; measured on the H200, such a product takes as long at 64 rows as at 512. Split
 * `s` ways, workgroup z of a tile sums its share of K into copy z of the output in a scratch
 * shared by the device's layers, and `kernels/split_sum.wgsl` adds the copies into y in order.
 *
 * @module
 */
import { type Binding, type CommandBatch, grid, params } from "../gpu/batch.ts";
import type { Gpu } from "../gpu/device.ts";
import type { Kernel } from "../gpu/kernel.ts";
import type { GpuTensor } from "../gpu/tensor.ts";

/**
 * Products of fewer tiles than this are split across workgroups when `gemmOuterSpread` is unset,
 * on a hardware adapter (a tile per SM of a large GPU: the H200 has 132).
 */
export const GEMM_SPREAD_BELOW = 128;
/** The most copies a product is split into. */
export const MAX_GEMM_SPREAD = 8;
// Workgroups a split product may reach: what the H200 runs at once (two 256-thread workgroups on
// each of 132 SMs; a product split past that runs in two waves: 112 tiles split 3 ways ran 8%
// slower than unsplit, 86 tiles 3 ways 77% faster). And the least of K a share keeps (four K
// steps of 16), so that the copies' traffic stays small beside the product.
const SPREAD_WORKGROUPS = 264;
const MIN_SHARE_K = 64;

/**
 * Copies a product of `tiles` tiles over K = `k` is split into: `forced` when given (1: none),
 * else as many as keep the workgroups within 264 where the product has fewer than
 * {@linkcode GEMM_SPREAD_BELOW} tiles, each share at least 64 of K, at most
 * {@linkcode MAX_GEMM_SPREAD}.
 *
 * @example
 * ```ts
 * import { gemmSpread } from "./gemm_spread.ts";
 * gemmSpread(32, 4096); // 8
 * gemmSpread(112, 4096); // 2
 * gemmSpread(128, 4096); // 1
 * gemmSpread(32, 4096, 3); // 3
 * ```
 */
export function gemmSpread(tiles: number, k: number, forced?: number): number {
  if (forced !== undefined) return forced;
  if (tiles >= GEMM_SPREAD_BELOW) return 1;
  const wanted = Math.floor(SPREAD_WORKGROUPS / Math.max(1, tiles));
  return Math.max(1, Math.min(MAX_GEMM_SPREAD, wanted, Math.floor(k / MIN_SHARE_K)));
}

/**
 * What split_sum.wgsl computes: `count` values, each the in-order sum of its `splits` copies.
 *
 * @example
 * ```ts
 * import { cpuSplitSum } from "./gemm_spread.ts";
 * cpuSplitSum(new Float32Array([1, 2, 10, 20]), 2, 2); // Float32Array [11, 22]
 * ```
 */
export function cpuSplitSum(part: Float32Array, count: number, splits: number): Float32Array {
  const y = new Float32Array(count);
  for (let i = 0; i < count; i++) {
    let s = part[i];
    for (let j = 1; j < splits; j++) s = Math.fround(s + part[j * count + i]);
    y[i] = s;
  }
  return y;
}

interface SpreadState {
  users: number;
  scratch: GpuTensor | null;
  // Outgrown scratch stays until the last user goes: a recorded, unsubmitted batch may bind it.
  retired: GpuTensor[];
}

const states = new WeakMap<Gpu, SpreadState>();

/** Counts a layer that may split its products; the scratch lives while any such layer does. */
export function acquireSpreadScratch(gpu: Gpu): void {
  const s = states.get(gpu) ?? { users: 0, scratch: null, retired: [] };
  s.users++;
  states.set(gpu, s);
}

/** The layer counted by {@linkcode acquireSpreadScratch} is gone; the last one frees the scratch. */
export function releaseSpreadScratch(gpu: Gpu): void {
  const s = states.get(gpu);
  if (!s) return;
  if (--s.users > 0) return;
  for (const t of [...s.retired, ...(s.scratch ? [s.scratch] : [])]) t.destroy();
  states.delete(gpu);
}

/** The device's split scratch, at least `bytes` long (grown in whole MiB). */
export function spreadScratch(gpu: Gpu, bytes: number): GpuTensor {
  const s = states.get(gpu);
  if (!s) throw new Error("gemm split scratch: no layer holds it (acquireSpreadScratch)");
  if (s.scratch && s.scratch.byteSize >= bytes) return s.scratch;
  if (s.scratch) s.retired.push(s.scratch);
  const mib = 1 << 20;
  s.scratch = gpu.tensor({
    label: "gemm split copies",
    category: "scratch",
    byteSize: Math.ceil(bytes / mib) * mib,
  });
  return s.scratch;
}

/** Builds split_sum.wgsl. */
export function createSplitSum(gpu: Gpu): Promise<Kernel> {
  return gpu.kernel({ file: "split_sum", entry: "main" });
}

/**
 * Records `y = Σ copies` for a product split `splits` ways whose copies of `count` values each
 * lie in `part`.
 */
export function encodeSplitSum(
  batch: CommandBatch,
  sum: Kernel,
  part: Binding,
  y: Binding,
  count: number,
  splits: number,
): void {
  batch.dispatch(
    sum,
    [part, y],
    grid(Math.ceil(count / 256)),
    params().u32(count).u32(splits).build(),
  );
}
