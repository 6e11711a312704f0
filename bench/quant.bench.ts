/**
 * Quantized linear benchmarks: `deno bench -A bench/quant.bench.ts`.
 *
 * One GEMV per format (and one GEMM) from the packed weights, next to FP16. Before the
 * `Deno.bench` entries (wall clock: encode + submit + wait), one timestamped submission per case
 * prints the GPU time of a whole product — the int8 formats' activation quantization included,
 * and their product kernel alone — and the effective bandwidth over the bytes a perfect kernel
 * must read (packed weights, x and y). Without `timestamp-query` those lines are wall-clock.
 * Sizes shrink on a software adapter so that the suite finishes in a minute.
 */

import { CommandBatch } from "../lib/gpu/batch.ts";
import { type Gpu, requestGpu } from "../lib/gpu/device.ts";
import type { Linear } from "../lib/kernels/linear.ts";
import { Fp16Linear } from "../lib/kernels/linear.ts";
import { QuantLinear } from "../lib/kernels/quant_linear.ts";
import { f32ToF16Array } from "../lib/gpu/f16.ts";
import { type QuantFormat, quantize } from "../lib/quant/formats.ts";

const gpuF32 = await requestGpu({ f16: false });
const gpuF16 = gpuF32.f16 ? null : await requestGpu();
const software = gpuF32.isSoftware;
console.log(`adapter: ${gpuF32.describe()}`);

const FORMATS: QuantFormat[] = [
  "fp16",
  "int8-absmax",
  "int8-vectorwise",
  "llm-int8",
  "q8_0",
  "nf4",
  "nf4-dq",
  "fp4",
  "int4",
];

// [rows, N, K]
const shapes: [number, number, number][] = software
  ? [[1, 2048, 2048], [16, 1024, 1024]]
  : [[1, 4096, 4096], [1, 14336, 4096], [256, 4096, 4096]];

function randomWeights(n: number): Float32Array {
  const v = new Float32Array(n);
  let s = 1;
  for (let i = 0; i < n; i++) v[i] = ((s = (s * 1103515245 + 12345) >>> 0) / 2 ** 32 - 0.5) * 0.1;
  return v;
}

function randomActivations(n: number): Float32Array {
  // A couple of large hidden dimensions, so LLM.int8() has outlier columns to decompose.
  const v = randomWeights(n).map((a) => a * 20);
  for (let i = 7; i < n; i += 1024) v[i] = 12;
  return v;
}

interface Case {
  name: string;
  group: string;
  bytes: number;
  gpu: Gpu;
  lin: Linear;
  run: (batch: CommandBatch) => void;
}

const cases: Case[] = [];
for (const [rows, n, k] of shapes) {
  const w = randomWeights(n * k);
  const bits = f32ToF16Array(w);
  const packed = new Map(
    FORMATS.filter((f) => f !== "fp16").map((f) => [f, quantize(f, w, n, k)]),
  );
  for (const gpu of [gpuF32, gpuF16 ?? (gpuF32.f16 ? gpuF32 : null)]) {
    if (!gpu) continue;
    const f16 = gpu !== gpuF32;
    const x = gpu.tensor({
      label: "x",
      category: "activations",
      data: randomActivations(rows * k),
    });
    const y = gpu.tensor({ label: "y", category: "activations", byteSize: rows * n * 4 });
    for (const format of FORMATS) {
      const lin: Linear = format === "fp16"
        ? await Fp16Linear.create(gpu, {
          label: "w",
          weight: bits,
          outFeatures: n,
          inFeatures: k,
          f16,
        })
        : await QuantLinear.create(gpu, { label: "w", weight: packed.get(format)!, f16 });
      cases.push({
        name: `${rows === 1 ? "gemv" : "gemm"} ${format} ${rows}x${k}·(${n}x${k})ᵀ ${
          f16 ? "f16" : "f32"
        }`,
        group: `${rows === 1 ? "gemv" : "gemm"} ${n}x${k} ${f16 ? "f16" : "f32"}`,
        bytes: lin.weightBytes + rows * (k + n) * 4,
        gpu,
        lin,
        run: (batch) => lin.encode(batch, x, y, rows),
      });
    }
  }
}

/**
 * Median GPU milliseconds of one product (all its dispatches) and of its last dispatch (the
 * product kernel itself), over `reps` products in one timed submission.
 */
async function gpuMs(c: Case, reps: number): Promise<{ total: number; product: number }> {
  const batch = new CommandBatch(c.gpu);
  c.run(batch);
  const per = batch.dispatchCount;
  for (let i = 1; i < reps; i++) c.run(batch);
  const t = await batch.submitTimed();
  if (t.length !== per * reps) return { total: t[0].ms / reps, product: NaN }; // wall clock
  const totals: number[] = [];
  const products: number[] = [];
  for (let i = 0; i < reps; i++) {
    const group = t.slice(i * per, (i + 1) * per);
    totals.push(group.reduce((s, d) => s + d.ms, 0));
    products.push(group[per - 1].ms);
  }
  const median = (a: number[]) => a.sort((p, q) => p - q)[Math.floor(a.length / 2)];
  return { total: median(totals), product: median(products) };
}

// Warm up first: pipelines JIT-compile on first use, and an idle GPU starts at low clocks.
for (const c of cases) await gpuMs(c, 2);
const reps = software ? 3 : 25;
for (const c of cases) {
  const { total, product } = await gpuMs(c, reps);
  console.log(
    `${c.name.padEnd(52)} GPU ${total.toFixed(4).padStart(9)} ms ` +
      `(product ${Number.isNaN(product) ? "-" : product.toFixed(4)} ms) ` +
      `${(c.bytes / total / 1e6).toFixed(1).padStart(7)} GB/s  ` +
      `weights ${(c.lin.weightBytes / 2 ** 20).toFixed(2)} MiB`,
  );
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
