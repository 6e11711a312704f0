/**
 * The streaming-read reference kernel (`kernels/stream_read.wgsl`): reads a buffer once with
 * vec4 loads and sums it. Its GPU time is the read bandwidth ceiling that the benchmarks
 * compare memory-bound kernels with, measured on the same adapter in the same run.
 *
 * @module
 */

import { type CommandBatch, params } from "../gpu/batch.ts";
import type { Gpu } from "../gpu/device.ts";
import type { Kernel } from "../gpu/kernel.ts";
import type { GpuTensor } from "../gpu/tensor.ts";

/**
 * The CPU twin: the wrapping u32 sum of all words, which equals the sum of the kernel's output.
 *
 * @example
 * ```ts
 * import { cpuStreamSum } from "./stream_read.ts";
 * cpuStreamSum(new Uint32Array([1, 2, 0xffffffff])); // 2
 * ```
 */
export function cpuStreamSum(words: Uint32Array): number {
  let s = 0;
  for (let i = 0; i < words.length; i++) s = (s + words[i]) >>> 0;
  return s;
}

/** A compiled streaming-read kernel with its launch shape. */
export interface StreamRead {
  /** Workgroups per dispatch. */
  readonly workgroups: number;
  /** Threads per workgroup. */
  readonly workgroupSize: number;
  /** Bytes of the output buffer `encode` needs: one u32 per thread. */
  readonly outBytes: number;
  /** Records one read of `src` (a multiple of 16 bytes) into `out`. */
  encode(batch: CommandBatch, src: GpuTensor, out: GpuTensor): void;
}

/**
 * Compiles the kernel for `workgroups` workgroups of `workgroupSize` threads (defaults: 2048 of
 * 256, enough loads in flight to saturate a large GPU).
 *
 * @example
 * ```ts ignore
 * const reader = await createStreamRead(gpu);
 * const out = gpu.tensor({ label: "out", category: "scratch", byteSize: reader.outBytes });
 * reader.encode(batch, src, out);
 * ```
 */
export async function createStreamRead(
  gpu: Gpu,
  options: { workgroups?: number; workgroupSize?: number } = {},
): Promise<StreamRead> {
  const workgroups = options.workgroups ?? 2048;
  const workgroupSize = options.workgroupSize ?? 256;
  const kernel: Kernel = await gpu.kernel({
    file: "stream_read",
    entry: "main",
    constants: { WG: workgroupSize },
  });
  return {
    workgroups,
    workgroupSize,
    outBytes: workgroups * workgroupSize * 4,
    encode(batch, src, out) {
      if (src.byteSize % 16) throw new RangeError(`stream read: ${src.byteSize} bytes, not x16`);
      if (out.byteSize < workgroups * workgroupSize * 4) {
        throw new RangeError(`stream read: output needs ${workgroups * workgroupSize * 4} bytes`);
      }
      batch.dispatch(kernel, [src, out], workgroups, params().u32(src.byteSize / 16).build());
    },
  };
}
