/**
 * Row chunks for matrices larger than one storage binding (an LM head or embedding table can
 * pass the 128 MiB default), and small binding helpers shared by the kernel wrappers.
 *
 * @module
 */

import type { Binding } from "../gpu/batch.ts";
import type { Gpu } from "../gpu/device.ts";
import type { GpuTensor } from "../gpu/tensor.ts";

/** A run of matrix rows `[start, start + count)` and the binding that holds exactly them. */
export interface RowChunk {
  /** First row. */
  start: number;
  /** Number of rows. */
  count: number;
  /** The rows' bytes: a whole tensor or a sub-range of one. */
  binding: Binding;
}

function gcd(a: number, b: number): number {
  while (b) [a, b] = [b, a % b];
  return a;
}

/**
 * Splits `rows` rows of `rowBytes` bytes each into runs of at most `maxBytes` bytes whose byte
 * offsets are multiples of `align` (WebGPU's `minStorageBufferOffsetAlignment`).
 *
 * @example
 * ```ts
 * import { planRowChunks } from "./chunks.ts";
 * planRowChunks(10, 512, 2048); // [{start:0,count:4},{start:4,count:4},{start:8,count:2}]
 * ```
 */
export function planRowChunks(
  rows: number,
  rowBytes: number,
  maxBytes: number,
  align = 256,
): { start: number; count: number }[] {
  if (rows * rowBytes <= maxBytes) return [{ start: 0, count: rows }];
  const step = align / gcd(rowBytes, align); // rows per aligned offset
  const perChunk = Math.floor(Math.floor(maxBytes / rowBytes) / step) * step;
  if (perChunk < 1) {
    throw new RangeError(
      `a chunk of ${step} rows of ${rowBytes} bytes exceeds the ${maxBytes}-byte binding limit`,
    );
  }
  const chunks = [];
  for (let start = 0; start < rows; start += perChunk) {
    chunks.push({ start, count: Math.min(perChunk, rows - start) });
  }
  return chunks;
}

/**
 * Binds row chunks of a matrix held in one tensor (from row `firstRow` of it, whose byte offset
 * must be a multiple of the storage binding alignment), as sub-ranges where there are several.
 *
 * @example
 * ```ts ignore
 * const chunks = tensorRowChunks(gpu, table, vocab, hidden * 2);
 * ```
 */
export function tensorRowChunks(
  gpu: Gpu,
  tensor: GpuTensor,
  rows: number,
  rowBytes: number,
  maxBytes: number = gpu.limits.maxStorageBufferBindingSize,
  firstRow = 0,
): RowChunk[] {
  const base = firstRow * rowBytes;
  const align = gpu.limits.minStorageBufferOffsetAlignment;
  if (tensor.byteSize < base + rows * rowBytes) {
    throw new RangeError(
      `${tensor.label}: ${tensor.byteSize} bytes cannot hold rows ${firstRow}..${
        firstRow + rows - 1
      } of ${rowBytes} bytes`,
    );
  }
  if (base % align) {
    throw new RangeError(
      `${tensor.label}: row ${firstRow} starts at byte ${base}, not a multiple of the ` +
        `${align}-byte storage binding alignment`,
    );
  }
  const plan = planRowChunks(rows, rowBytes, maxBytes, align);
  if (plan.length === 1 && base === 0) return [{ ...plan[0], binding: tensor }];
  return plan.map(({ start, count }) => ({
    start,
    count,
    binding: { tensor, offset: base + start * rowBytes, size: alignUp(count * rowBytes, 4) },
  }));
}

/**
 * Bytes a binding covers.
 *
 * @example
 * ```ts ignore
 * bindingBytes({ tensor, offset: 256, size: 1024 }); // 1024
 * ```
 */
export function bindingBytes(binding: Binding): number {
  return "tensor" in binding ? binding.size : binding.byteSize;
}

/**
 * Throws unless `binding` covers at least `bytes` bytes; catches shape mistakes at encode time
 * rather than as silent out-of-range reads (WebGPU clamps them).
 *
 * @example
 * ```ts ignore
 * requireBytes(x, rows * dim * 4, "rmsnorm x");
 * ```
 */
export function requireBytes(binding: Binding, bytes: number, what: string): void {
  const have = bindingBytes(binding);
  if (have < bytes) throw new RangeError(`${what}: binding has ${have} bytes, needs ${bytes}`);
}

/**
 * Rounds `n` up to a multiple of `to`.
 *
 * @example
 * ```ts
 * import { alignUp } from "./chunks.ts";
 * alignUp(5, 4); // 8
 * ```
 */
export function alignUp(n: number, to: number): number {
  return Math.ceil(n / to) * to;
}

/**
 * A start position that lives partly on the GPU: a kernel adds the u32 in `base` to the start
 * position its parameters carry, so that work recorded ahead of time (speculative rounds
 * chained on the GPU) can run at a position only the GPU knows. `bound` is the most the sum can
 * be; the CPU sizes grids and checks the cache against it.
 *
 * @example
 * ```ts ignore
 * rope.encodeToCache(batch, q, k, v, invFreq, cacheK, cacheV, 0, rows, { base: pos, bound: 96 });
 * ```
 */
export interface GpuStart {
  /** One u32 (at the binding's offset) added to the start position. */
  base: Binding;
  /** The most `startPos + base` can be when the work runs. */
  bound: number;
}

/**
 * The latest position rows may start at: `startPos`, or with a {@linkcode GpuStart} the most its
 * sum can be. What a kernel sizes its grid for and checks the cache against.
 *
 * @example
 * ```ts ignore
 * latestStart(10); // 10
 * latestStart(0, { base: positionWord, bound: 96 }); // 96
 * ```
 */
export function latestStart(startPos: number, at?: GpuStart): number {
  return at ? Math.max(startPos, at.bound) : startPos;
}
