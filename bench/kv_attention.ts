/**
 * The attention kernel alone over each KV cache format at long context: one decode step's
 * attention at Llama-2-7B's head layout (32 heads of 128, 32 layers, each layer its own cache so
 * that nothing stays in L2), GPU time from timestamps, median of five, for a few kernel settings
 * (threads per workgroup, positions per split range, key elements per thread, int8/int4 codes to
 * floats with or without integer-to-float conversions). Each timed step follows ~100 ms of the
 * same work with no idle gap, so the GPU's clocks are up. Writes `kv-attention.json` to `--out`.
 *
 * The caches hold zeros (as in bench/kv_cache.ts): what any values cost the kernel. On a software
 * adapter the layout is scaled down (8 heads, 4 layers, positions 512 and 2048).
 *
 * ```sh
 * deno run -A bench/kv_attention.ts --out /tmp/kv
 * deno run -A bench/kv_attention.ts --kv int8 --positions 4096 --variants 256/256,128/256
 * deno run -A bench/kv_attention.ts --kv f16 --positions 8,136 --variants 128/256,64/64 --whole
 * ```
 *
 * `--whole` times each step in one compute pass, as decoding runs it; by default every dispatch
 * has a pass of its own (timestamps at pass boundaries), whose fixed cost each then includes.
 *
 * @module
 */

import { parseArgs } from "node:util";
import type { CommandBatch } from "../lib/gpu/batch.ts";
import { requestGpu } from "../lib/gpu/device.ts";
import type { GpuTensor } from "../lib/gpu/tensor.ts";
import { createAttention } from "../lib/kernels/attention.ts";
import { KV_CACHE_INFO, type KvCacheFormat, kvCacheLayout } from "../lib/kernels/kv_cache.ts";
import { medianWarmGpuMs, writeBenchJson } from "./report.ts";

const { values: args } = parseArgs({
  args: Deno.args,
  options: {
    out: { type: "string", default: "bench/out" },
    kv: { type: "string", default: "int4,int8,f16" },
    // time each step in one compute pass, as decoding runs it (default: a pass per dispatch)
    whole: { type: "boolean", default: false },
    positions: { type: "string" },
    // workgroup size / split keys, then optionally "/k32" or "/k16" (key elements per thread;
    // default: the format's), "/fixed" (ranges of split keys whatever the context) or "/fast" (int8/int4: codes to
    // floats by integer operations and an exact subtraction instead of conversions) or "/wN"
    // (ranges as long as about N workgroups need; 1024 by default) or "/v16" (16 value elements
    // per thread, quantized caches)
    variants: {
      type: "string",
      default: "128/256,128/256/k32,256/256,128/256/fixed,128/512/fixed,128/256/fast",
    },
  },
});

const gpu = await requestGpu();
const software = gpu.isSoftware;
console.log(`adapter: ${gpu.describe()}`);
const positions = (args.positions ?? (software ? "512,2048" : "4096,16384")).split(",").map(
  Number,
);
const numHeads = software ? 8 : 32;
const layers = software ? 4 : 32;
const headDim = 128;
const maxSeq = Math.max(...positions) + 1;
const variants = args.variants!.split(",").map((v) => {
  const [wg, split, ...flags] = v.split("/");
  return {
    name: v,
    workgroupSize: Number(wg),
    splitKeys: Number(split),
    fast: flags.includes("fast"),
    keyElements: flags.includes("k32")
      ? 32 as const
      : flags.includes("k16")
      ? 16 as const
      : undefined,
    valueElements: flags.includes("v16") ? 16 as const : undefined,
    splitWorkgroups: flags.includes("fixed")
      ? 0
      : flags.filter((f) => /^w\d+$/.test(f)).map((f) => Number(f.slice(1)))[0],
  };
});

interface Row {
  kvCache: KvCacheFormat;
  variant: string;
  position: number;
  /** GPU ms of one step's attention over every layer (split + combine). */
  ms: number;
  /** Cache bytes read per step / ms. */
  gbPerS: number;
}
const rows: Row[] = [];

for (const kvCache of args.kv!.split(",") as KvCacheFormat[]) {
  const layout = kvCacheLayout(kvCache, maxSeq, numHeads, headDim);
  const caches: GpuTensor[] = [];
  for (let l = 0; l < 2 * layers; l++) {
    caches.push(gpu.tensor({ label: `cache ${l}`, category: "kv-cache", byteSize: layout.bytes }));
  }
  const q = gpu.tensor({ label: "q", category: "activations", byteSize: numHeads * headDim * 4 });
  const out = gpu.tensor({
    label: "out",
    category: "activations",
    byteSize: numHeads * headDim * 4,
  });
  try {
    for (const v of variants) {
      const f16 = KV_CACHE_INFO[kvCache].codeBits === 16;
      if (f16 && v.fast) continue; // not a variant for this format
      const attn = await createAttention(gpu, {
        numHeads,
        numKvHeads: numHeads,
        headDim,
        maxSeq,
        kvCache,
        workgroupSize: v.workgroupSize,
        splitKeys: v.splitKeys,
        fastConvert: v.fast,
        keyElements: v.keyElements,
        valueElements: v.valueElements,
        splitWorkgroups: v.splitWorkgroups,
      });
      try {
        for (const position of positions) {
          const step = (batch: CommandBatch) => {
            for (let l = 0; l < layers; l++) {
              attn.attend(batch, q, caches[2 * l], caches[2 * l + 1], out, position, 1);
            }
          };
          // ~100 ms of warm-up
          // (no more than 256 steps at the short positions: ~100 ms there too)
          const warm = Math.min(256, Math.ceil(262144 / position));
          const ms = await medianWarmGpuMs(gpu, step, warm, args.whole);
          const bytes = 2 * layers * (layout.bytes * (position + 1)) / maxSeq;
          const row = { kvCache, variant: v.name, position, ms, gbPerS: bytes / ms / 1e6 };
          rows.push(row);
          console.log(
            `${kvCache.padEnd(5)} ${v.name.padEnd(14)} pos ${String(position).padStart(6)}: ` +
              `${ms.toFixed(3)} ms (${row.gbPerS.toFixed(0)} GB/s)`,
          );
        }
      } finally {
        attn.destroy();
      }
    }
  } finally {
    for (const t of [...caches, q, out]) t.destroy();
    await gpu.sync();
  }
}

await writeBenchJson(args.out!, "kv-attention.json", "bench/kv_attention.ts", gpu.describe(), {
  numHeads,
  headDim,
  layers,
}, rows);
gpu.destroy();
