/**
 * RoPE into the KV cache alone, per cache format: one decode step's `encodeToCache` (queries
 * turned in place, keys turned and keys and values stored, quantized for int8/int4) at
 * Llama-2-7B's head layout (32 heads of 128, 32 layers, each layer its own cache), GPU time from
 * timestamps, median of five, each timed step right after ~100 ms of the same work so that the
 * GPU's clocks are up. Writes `kv-rope.json` to `--out`. On a software adapter the layout is
 * scaled down (8 heads, 4 layers).
 *
 * Compare formats within one run only: on the H200 the same kernel measured 7.6 µs a layer in one
 * process and 14 µs in another (BENCHMARKS.md, "KV cache at long context"), while the RoPE times
 * per step of bench/kv_cache.ts, inside the model, agree between runs to 0.01 ms.
 *
 * ```sh
 * deno run -A bench/kv_rope.ts --out /tmp/kv
 * deno run -A bench/kv_rope.ts --kv int4,int4-plain --position 16384
 * ```
 *
 * @module
 */

import { parseArgs } from "node:util";
import type { CommandBatch } from "../lib/gpu/batch.ts";
import { requestGpu } from "../lib/gpu/device.ts";
import type { GpuTensor } from "../lib/gpu/tensor.ts";
import { type KvCacheFormat, kvCacheLayout } from "../lib/kernels/kv_cache.ts";
import { createRopeQk } from "../lib/kernels/rope.ts";
import { medianWarmGpuMs, writeBenchJson } from "./report.ts";

const { values: args } = parseArgs({
  args: Deno.args,
  options: {
    out: { type: "string", default: "bench/out" },
    kv: { type: "string", default: "f16,int8,int4" },
    position: { type: "string", default: "4096" },
  },
});

const gpu = await requestGpu();
const software = gpu.isSoftware;
console.log(`adapter: ${gpu.describe()}`);
const heads = software ? 8 : 32;
const layers = software ? 4 : 32;
const headDim = 128;
const position = Number(args.position);
const maxSeq = position + 1;

interface Row {
  kvCache: KvCacheFormat;
  position: number;
  /** GPU ms of one step's RoPE into the cache over every layer. */
  ms: number;
  /** The same per layer, in µs. */
  usPerLayer: number;
}
const rows: Row[] = [];

const act = (label: string, n: number) =>
  gpu.tensor({ label, category: "activations", data: new Float32Array(n).fill(0.5) });
const q = act("q", heads * headDim);
const k = act("k", heads * headDim);
const v = act("v", heads * headDim);
const invFreq = gpu.tensor({
  label: "inv_freq",
  category: "activations",
  data: Float32Array.from({ length: headDim / 2 }, (_, i) => 10_000 ** (-(2 * i) / headDim)),
});
try {
  for (const kvCache of args.kv!.split(",") as KvCacheFormat[]) {
    const layout = kvCacheLayout(kvCache, maxSeq, heads, headDim);
    const caches: GpuTensor[] = [];
    for (let l = 0; l < 2 * layers; l++) {
      caches.push(
        gpu.tensor({ label: `cache ${l}`, category: "kv-cache", byteSize: layout.bytes }),
      );
    }
    try {
      const rope = await createRopeQk(gpu, { heads, kvHeads: heads, headDim, kvCache, maxSeq });
      const step = (batch: CommandBatch) => {
        for (let l = 0; l < layers; l++) {
          rope.encodeToCache(
            batch,
            q,
            k,
            v,
            invFreq,
            caches[2 * l],
            caches[2 * l + 1],
            position,
            1,
          );
        }
      };
      const ms = await medianWarmGpuMs(gpu, step, 300); // ~100 ms of warm-up
      rows.push({ kvCache, position, ms, usPerLayer: (ms * 1000) / layers });
      console.log(
        `${kvCache.padEnd(10)} pos ${position}: ${ms.toFixed(3)} ms ` +
          `(${((ms * 1000) / layers).toFixed(2)} µs a layer)`,
      );
    } finally {
      for (const t of caches) t.destroy();
      await gpu.sync();
    }
  }
} finally {
  for (const t of [q, k, v, invFreq]) t.destroy();
}

await writeBenchJson(args.out!, "kv-rope.json", "bench/kv_rope.ts", gpu.describe(), {
  heads,
  headDim,
  layers,
}, rows);
gpu.destroy();
