/**
 * Kernel benchmarks: `deno bench -A bench/kernels.bench.ts`.
 *
 * Each entry times encode + submit + wait (wall clock, so it includes Deno's per-dispatch CPU
 * cost and the queue round trip). Before the entries run, one timestamped submission per
 * case prints GPU time and effective bandwidth, which is the number to tune kernels against.
 * Sizes shrink on a software adapter so that the suite finishes in seconds.
 */

import { CommandBatch } from "../lib/gpu/batch.ts";
import { requestGpu } from "../lib/gpu/device.ts";
import { f32ToF16Array } from "../lib/gpu/f16.ts";
import type { GpuTensor } from "../lib/gpu/tensor.ts";
import { createAttention, kvCacheBytes } from "../lib/kernels/attention.ts";
import { Fp16Linear } from "../lib/kernels/linear.ts";

const gpuF32 = await requestGpu({ f16: false });
const gpuF16 = gpuF32.f16 ? null : await requestGpu(); // f16: default where offered
const software = gpuF32.isSoftware;
console.log(`adapter: ${gpuF32.describe()}`);

function randomBits(n: number): Uint16Array {
  const v = new Float32Array(n);
  let s = 1;
  for (let i = 0; i < n; i++) v[i] = ((s = (s * 1103515245 + 12345) >>> 0) / 2 ** 32 - 0.5) * 0.1;
  return f32ToF16Array(v);
}

interface Case {
  name: string;
  group: string;
  bytes: number; // bytes a perfect kernel must read (for GB/s)
  flops: number;
  run: (batch: CommandBatch) => void;
  gpu: typeof gpuF32;
}

const cases: Case[] = [];
const linearShapes: [number, number, number][] = software
  ? [[1, 4096, 4096], [64, 1024, 1024]]
  : [[1, 4096, 4096], [1, 14336, 4096], [1, 4096, 14336], [256, 4096, 4096], [512, 14336, 4096]];

for (const gpu of [gpuF32, gpuF16 ?? (gpuF32.f16 ? gpuF32 : null)]) {
  if (!gpu) continue;
  for (const f16 of gpu === gpuF32 ? [false] : [true]) {
    for (const [rows, n, k] of linearShapes) {
      const lin = await Fp16Linear.create(gpu, {
        label: `w ${n}x${k}`,
        weight: randomBits(n * k),
        outFeatures: n,
        inFeatures: k,
        f16,
      });
      const x = gpu.tensor({ label: "x", category: "activations", byteSize: rows * k * 4 });
      const y = gpu.tensor({ label: "y", category: "activations", byteSize: rows * n * 4 });
      cases.push({
        name: `${rows === 1 ? "gemv" : "gemm"} ${rows}x${k} · (${n}x${k})ᵀ ${f16 ? "f16" : "f32"}`,
        group: rows === 1 ? "gemv" : "gemm",
        bytes: n * k * 2 + rows * (k + n) * 4,
        flops: 2 * rows * n * k,
        run: (batch) => lin.encode(batch, x, y, rows),
        gpu,
      });
    }
  }
}

{
  const shape = { numHeads: 32, numKvHeads: 8, headDim: 128 };
  const context = software ? 512 : 4096;
  const unsplit = await createAttention(gpuF32, shape);
  const attn = await createAttention(gpuF32, { ...shape, maxSeq: context });
  const cache = [0, 1].map((i) =>
    gpuF32.tensor({
      label: `cache ${i}`,
      category: "kv-cache",
      byteSize: kvCacheBytes(context, shape.numKvHeads, shape.headDim),
    })
  );
  const q: GpuTensor = gpuF32.tensor({
    label: "q",
    category: "activations",
    byteSize: 32 * 128 * 4,
  });
  const out = gpuF32.tensor({ label: "o", category: "activations", byteSize: 32 * 128 * 4 });
  cases.push({
    name: `attend decode 32/8 heads x128, ctx ${context}, split`,
    group: "attention",
    bytes: 2 * kvCacheBytes(context, shape.numKvHeads, shape.headDim),
    flops: 4 * 32 * 128 * context,
    run: (batch) => attn.attend(batch, q, cache[0], cache[1], out, context - 1, 1),
    gpu: gpuF32,
  });
  cases.push({
    name: `attend decode 32/8 heads x128, ctx ${context}, unsplit`,
    group: "attention",
    bytes: 2 * kvCacheBytes(context, shape.numKvHeads, shape.headDim),
    flops: 4 * 32 * 128 * context,
    run: (batch) => unsplit.attend(batch, q, cache[0], cache[1], out, context - 1, 1),
    gpu: gpuF32,
  });
}

/** Median GPU milliseconds of one `run` (the sum of its dispatches), over `reps` runs. */
async function gpuMs(gpu: typeof gpuF32, run: (batch: CommandBatch) => void, reps: number) {
  const batch = new CommandBatch(gpu);
  for (let i = 0; i < reps; i++) run(batch);
  const per = batch.dispatchCount / reps;
  const timings = await batch.submitTimed();
  const ms = Array.from(
    { length: reps },
    (_, i) => timings.slice(i * per, (i + 1) * per).reduce((sum, t) => sum + t.ms, 0),
  ).sort((a, b) => a - b);
  return ms[Math.floor(ms.length / 2)];
}

// Warm up first: a GPU that has been idle runs its first milliseconds at low clocks.
for (const c of cases) await gpuMs(c.gpu, c.run, 3);
const reps = software ? 3 : 25;
function report(name: string, bytes: number, flops: number, ms: number): void {
  console.log(
    `${name.padEnd(48)} GPU ${ms.toFixed(4).padStart(9)} ms  ` +
      `${(bytes / ms / 1e6).toFixed(1).padStart(7)} GB/s  ` +
      `${(flops / ms / 1e6).toFixed(1).padStart(8)} GFLOP/s`,
  );
}
for (const c of cases) report(c.name, c.bytes, c.flops, await gpuMs(c.gpu, c.run, reps));

// QLAB_BENCH_SWEEP=1: GEMV launch shapes, for tuning the defaults on a new GPU.
if (Deno.env.get("QLAB_BENCH_SWEEP")) {
  for (const gpu of [gpuF32, gpuF16 ?? (gpuF32.f16 ? gpuF32 : null)]) {
    if (!gpu) continue;
    const f16 = gpu !== gpuF32;
    for (const [n, k] of [[4096, 4096], [14336, 4096], [4096, 14336]]) {
      const bits = randomBits(n * k);
      const x = gpu.tensor({ label: "x", category: "activations", byteSize: k * 4 });
      const y = gpu.tensor({ label: "y", category: "activations", byteSize: n * 4 });
      for (const wg of [64, 128, 256]) {
        for (const tpr of [4, 8, 16, 32, 64]) {
          if (tpr > wg) continue;
          const lin = await Fp16Linear.create(gpu, {
            label: "sweep",
            weight: bits,
            outFeatures: n,
            inFeatures: k,
            f16,
            tuning: { gemvWorkgroupSize: wg, gemvThreadsPerRow: tpr },
          });
          const run = (batch: CommandBatch) => lin.encode(batch, x, y, 1);
          await gpuMs(gpu, run, 3);
          const ms = await gpuMs(gpu, run, reps);
          report(
            `sweep gemv ${n}x${k} ${f16 ? "f16" : "f32"} wg=${wg} tpr=${tpr}`,
            n * k * 2,
            2 * n * k,
            ms,
          );
          lin.destroy();
        }
      }
      x.destroy();
      y.destroy();
    }
  }
}

for (const c of cases) {
  Deno.bench({
    name: c.name,
    group: c.group,
    n: software ? 10 : 200,
    warmup: software ? 2 : 20,
    async fn() {
      const batch = new CommandBatch(c.gpu);
      c.run(batch);
      batch.submit();
      await c.gpu.sync();
    },
  });
}
