/**
 * Start positions read on the GPU (`GpuStart`): RoPE into the KV cache (f16 and quantized) and
 * attention (unsplit and split, planned for a longer context than the real one) add the u32 in
 * the `base` binding to the start position of their parameters. With the same sum they must do
 * exactly what the CPU-given position does (RoPE: bit for bit; attention: against the CPU twin,
 * as its split ranges may differ, with the tolerance of tests/kernels/attention.test.ts).
 */
import { deepStrictEqual as assertEquals } from "node:assert/strict";
import { CommandBatch } from "../../lib/gpu/batch.ts";
import type { Gpu } from "../../lib/gpu/device.ts";
import type { GpuTensor } from "../../lib/gpu/tensor.ts";
import { cpuAttention, createAttention, kvCacheBytes } from "../../lib/kernels/attention.ts";
import { type KvCacheFormat, kvCacheLayout } from "../../lib/kernels/kv_cache.ts";
import { createRopeQk } from "../../lib/kernels/rope.ts";
import { assertClose, randn } from "../helpers/random.ts";
import { emptyF32, f32Tensor, withGpu } from "./_gpu.ts";

function word(gpu: Gpu, value: number): GpuTensor {
  return gpu.tensor({ label: "start", category: "activations", data: new Uint32Array([value]) });
}

Deno.test("RoPE into the cache at a GPU start position = at the same CPU start position", () =>
  withGpu({}, async (gpu) => {
    const [heads, kvHeads, headDim, rows, maxSeq] = [4, 2, 64, 3, 40];
    const freqs = Float32Array.from({ length: headDim / 2 }, (_, i) => 1e4 ** (-2 * i / headDim));
    const formats: KvCacheFormat[] = ["f16", "int8", "int4-plain"];
    for (const kvCache of formats) {
      const rope = await createRopeQk(gpu, { heads, kvHeads, headDim, kvCache, maxSeq });
      const bytes = kvCacheLayout(kvCache, maxSeq, kvHeads, headDim).bytes;
      const run = async (startPos: number, base?: number) => {
        const t = [
          f32Tensor(gpu, "q", randn(rows * heads * headDim, 1)),
          f32Tensor(gpu, "k", randn(rows * kvHeads * headDim, 2)),
          f32Tensor(gpu, "v", randn(rows * kvHeads * headDim, 3)),
          f32Tensor(gpu, "inv_freq", freqs),
          gpu.tensor({ label: "ck", category: "kv-cache", byteSize: bytes }),
          gpu.tensor({ label: "cv", category: "kv-cache", byteSize: bytes }),
        ];
        const pos = base === undefined ? undefined : word(gpu, base);
        const batch = new CommandBatch(gpu);
        const at = pos ? { base: pos, bound: startPos + base! + 5 } : undefined;
        rope.encodeToCache(batch, t[0], t[1], t[2], t[3], t[4], t[5], startPos, rows, at);
        batch.submit();
        const out = [await gpu.readU32(t[0]), await gpu.readU32(t[4]), await gpu.readU32(t[5])];
        for (const x of [...t, ...(pos ? [pos] : [])]) x.destroy();
        return out;
      };
      // 17 = 0 + 17 = 2 + 15: the queries and the cache bit for bit
      const want = await run(17);
      assertEquals(await run(0, 17), want, `${kvCache}: start 0 + 17 on the GPU`);
      assertEquals(await run(2, 15), want, `${kvCache}: start 2 + 15 on the GPU`);
    }
  }));

Deno.test("attention at a GPU start position matches cpuAttention, split planned for a longer context", () =>
  withGpu({}, async (gpu) => {
    const shape = { numHeads: 4, numKvHeads: 2, headDim: 64 };
    const { numHeads: h, numKvHeads: kvh, headDim: d } = shape;
    const maxSeq = 400;
    // (rows, start: CPU part + GPU part, bound): unsplit; split in ranges of 64 where the bound
    // (planning 6 ranges) leaves the last ones empty; a verify-sized pass
    const cases = [
      { rows: 1, cpu: 0, gpu: 30, bound: 60, variant: {} },
      { rows: 1, cpu: 3, gpu: 130, bound: 380, variant: { splitKeys: 64, splitWorkgroups: 0 } },
      { rows: 5, cpu: 0, gpu: 200, bound: 300, variant: { splitKeys: 64, workgroupSize: 64 } },
    ];
    for (const [c, { rows, cpu, gpu: onGpu, bound, variant }] of cases.entries()) {
      const start = cpu + onGpu;
      const len = start + rows;
      const k = randn(len * kvh * d, 10 + c);
      const v = randn(len * kvh * d, 20 + c);
      const q = randn(rows * h * d, 30 + c, 1.5);
      const want = cpuAttention(q, k, v, rows, start, shape);
      const attn = await createAttention(gpu, { ...shape, ...variant, maxSeq });
      const bytes = kvCacheBytes(maxSeq, kvh, d);
      const cache = [0, 1].map((i) =>
        gpu.tensor({ label: `c${i}`, category: "kv-cache", byteSize: bytes, dtype: "f16x2" })
      );
      const tk = f32Tensor(gpu, "k", k);
      const tv = f32Tensor(gpu, "v", v);
      const tq = f32Tensor(gpu, "q", q);
      const out = emptyF32(gpu, "out", q.length);
      const pos = word(gpu, onGpu);
      const batch = new CommandBatch(gpu);
      attn.writeKv(batch, tk, tv, cache[0], cache[1], 0, len);
      attn.attend(batch, tq, cache[0], cache[1], out, cpu, rows, 0, { base: pos, bound });
      batch.submit();
      assertClose(await gpu.readF32(out), want, { atol: 2e-5, rtol: 1e-4 }, `case ${c}`);
      for (const t of [...cache, tk, tv, tq, out, pos]) t.destroy();
      attn.destroy();
    }
  }));
