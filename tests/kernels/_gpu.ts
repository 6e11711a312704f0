/** Shared set-up for the kernel tests: one device per test, checked for leaks afterwards. */

import { deepStrictEqual as assertEquals } from "node:assert/strict";
import { type Gpu, requestGpu } from "../../lib/gpu/device.ts";
import { f16ArrayToF32, f32ToF16Array } from "../../lib/gpu/f16.ts";
import type { GpuTensor } from "../../lib/gpu/tensor.ts";
import { randn } from "../helpers/random.ts";

/** Whether the adapter offers `shader-f16` (the GL backend does not). */
export const hasF16: boolean = (await navigator.gpu.requestAdapter())?.features.has("shader-f16") ??
  false;

/**
 * Whether the tests run on the GL backend. Mesa's llvmpipe runs a workgroup's barriers there as
 * coroutines, and without its worker threads (as the test task runs it) a 512-invocation
 * workgroup took 14-77 s for a product that takes under a second on lavapipe: such cases run in
 * the Vulkan pass only, and the tests say so.
 */
export const onGl: boolean = Deno.env.get("DENO_WEBGPU_BACKEND") === "gl";

/**
 * Runs `fn` on a fresh device, then checks that everything it created was destroyed: the
 * ledger must be back at zero once the shared uniform buffer is trimmed.
 */
export async function withGpu(
  opts: { f16?: boolean },
  fn: (gpu: Gpu) => Promise<void>,
): Promise<void> {
  const gpu = await requestGpu({ f16: opts.f16 ?? false });
  try {
    await fn(gpu);
    gpu.trimScratch();
    assertEquals(gpu.ledger.entries(), []);
  } finally {
    gpu.destroy();
  }
}

/** An f32 activation tensor holding `data`. */
export function f32Tensor(gpu: Gpu, label: string, data: Float32Array): GpuTensor {
  return gpu.tensor({ label, category: "activations", data });
}

/** An empty f32 activation tensor of `n` elements. */
export function emptyF32(gpu: Gpu, label: string, n: number): GpuTensor {
  return gpu.tensor({ label, category: "activations", byteSize: n * 4 });
}

/** Random FP16 weights: the bit patterns, and the values they decode to. */
export function randomF16(n: number, seed: number, scale = 1): {
  bits: Uint16Array;
  values: Float32Array;
} {
  const bits = f32ToF16Array(randn(n, seed, scale));
  return { bits, values: f16ArrayToF32(bits) };
}
