// Times the sampling kernel against argmax at a vocabulary size, one dispatch each, GPU time.
import { CommandBatch } from "../lib/gpu/batch.ts";
import { requestGpu } from "../lib/gpu/device.ts";
import { createArgmax } from "../lib/kernels/argmax.ts";
import { createSampleKernel } from "../lib/kernels/sample.ts";
const n = Number(Deno.args[0] ?? 32000);
const gpu = await requestGpu();
const sampler = await createSampleKernel(gpu);
const argmax = await createArgmax(gpu);
const flat = new Float32Array(n).map(() => Math.random() * 10);
// A language model's shape: 20 tokens near logit 12 hold ~93% of the mass, the rest a normal
// tail (σ 2) whose thousands of tokens above (1 - p) / (n - 1) of the mass are candidates for
// top-p alone, though the nucleus lies in the head.
const normal = () =>
  Math.sqrt(-2 * Math.log(1 - Math.random())) * Math.cos(2 * Math.PI * Math.random());
const peaked = new Float32Array(n).map((_, i) => i < 20 ? 12 + 0.3 * normal() : 2 * normal());
const tl = gpu.tensor({ label: "l", category: "activations", byteSize: n * 4 });
const next = gpu.tensor({ label: "n", category: "activations", byteSize: 16 });
for (
  const [name, enc, logits] of [
    ["argmax", (b: CommandBatch) => argmax.encode(b, tl, next, 1, n), flat] as const,
    ...([
      ["sample k40 p0.95", { temperature: 0.8, topK: 40, topP: 0.95 }, flat],
      ["sample p0.9", { temperature: 0.8, topK: 0, topP: 0.9 }, flat],
      ["sample p0.9, peaked row", { temperature: 1, topK: 0, topP: 0.9 }, peaked],
      ["sample no cut", { temperature: 0.8, topK: 0, topP: 1 }, flat],
    ] as const).map(([name, settings, row]) =>
      [name, (b: CommandBatch) => sampler.encode(b, tl, next, n, settings, 0.3), row] as const
    ),
  ]
) {
  const ms: number[] = [];
  for (let i = 0; i < 7; i++) {
    tl.write(gpu.device, logits);
    const b = new CommandBatch(gpu);
    enc(b);
    ms.push((await b.submitTimed())[0].ms);
  }
  ms.sort((a, b) => a - b);
  console.log(`${name}: ${ms[3].toFixed(3)} ms (median of 7), vocab ${n}`);
}
gpu.destroy();
