import { deepStrictEqual as assertEquals, throws as assertThrows } from "node:assert/strict";
import { CommandBatch } from "../../lib/gpu/batch.ts";
import type { Gpu } from "../../lib/gpu/device.ts";
import { f32ToF16Array, packF16Pairs } from "../../lib/gpu/f16.ts";
import type { GpuTensor } from "../../lib/gpu/tensor.ts";
import {
  type Attention,
  attentionScratchBytes,
  type AttentionShape,
  cpuAttention,
  createAttention,
  FOLD_ROPE_MAX_POSITIONS,
  kvCacheBytes,
} from "../../lib/kernels/attention.ts";
import { kvCacheLayout } from "../../lib/kernels/kv_cache.ts";
import { createRopeQk } from "../../lib/kernels/rope.ts";
import { assertClose, randn } from "../helpers/random.ts";
import { emptyF32, f32Tensor, withGpu } from "./_gpu.ts";

// Twin and kernel read the same f16-rounded K/V; the kernel computes scores and the online
// softmax in f32 (scores O(few), exp relative error ~1e-7, rescaling by exp(m - m_new)), the
// twin in f64. Outputs are convex combinations of values ~N(0, 1): atol 2e-5 + rtol 1e-4.
const TOL = { atol: 2e-5, rtol: 1e-4 };

function kvCache(gpu: Gpu, maxSeq: number, shape: AttentionShape): [GpuTensor, GpuTensor] {
  const bytes = kvCacheBytes(maxSeq, shape.numKvHeads, shape.headDim);
  const make = (label: string) =>
    gpu.tensor({ label, category: "kv-cache", byteSize: bytes, dtype: "f16x2" });
  return [make("cache k"), make("cache v")];
}

/** Runs writeKv + attend for rows at startPos; returns the GPU output. */
let lastDispatches = 0;
async function step(
  gpu: Gpu,
  attn: Attention,
  cache: [GpuTensor, GpuTensor],
  q: Float32Array,
  k: Float32Array,
  v: Float32Array,
  startPos: number,
  rows: number,
): Promise<Float32Array> {
  const tq = f32Tensor(gpu, "q", q);
  const tk = f32Tensor(gpu, "k", k);
  const tv = f32Tensor(gpu, "v", v);
  const out = emptyF32(gpu, "out", q.length);
  const batch = new CommandBatch(gpu);
  attn.writeKv(batch, tk, tv, cache[0], cache[1], startPos, rows);
  attn.attend(batch, tq, cache[0], cache[1], out, startPos, rows);
  lastDispatches = batch.dispatchCount;
  batch.submit();
  const got = await gpu.readF32(out);
  for (const t of [tq, tk, tv, out]) t.destroy();
  return got;
}

Deno.test("writeKv stores f16 (round to nearest even) at the right positions", () =>
  withGpu({}, async (gpu) => {
    const shape = { numHeads: 4, numKvHeads: 2, headDim: 6 };
    const attn = await createAttention(gpu, shape);
    const cache = kvCache(gpu, 10, shape);
    const per = shape.numKvHeads * shape.headDim;
    const k = randn(3 * per, 1, 2);
    const v = randn(3 * per, 2, 2);
    const tk = f32Tensor(gpu, "k", k);
    const tv = f32Tensor(gpu, "v", v);
    const batch = new CommandBatch(gpu);
    attn.writeKv(batch, tk, tv, cache[0], cache[1], 4, 3);
    batch.submit();
    const words = per / 2;
    const gotK = await gpu.readU32(cache[0]);
    assertEquals(gotK.subarray(4 * words, 7 * words), packF16Pairs(f32ToF16Array(k)));
    assertEquals(gotK.subarray(0, 4 * words), new Uint32Array(4 * words)); // untouched
    const gotV = await gpu.readU32(cache[1], 4 * words, 3 * words);
    assertEquals(gotV, packF16Pairs(f32ToF16Array(v)));
    assertThrows(
      () => attn.writeKv(batch, tk, tv, cache[0], cache[1], 8, 3),
      /cacheK/,
      "writing past the cache end is refused",
    );
    for (const t of [tk, tv, ...cache]) t.destroy();
    attn.destroy();
  }));

Deno.test("attention matches cpuAttention: GQA, prefill at several startPos, long context, split", () =>
  withGpu({}, async (gpu) => {
    const cases = [
      { shape: { numHeads: 4, numKvHeads: 2, headDim: 64 }, startPos: 0, rows: 1 },
      { shape: { numHeads: 4, numKvHeads: 2, headDim: 64 }, startPos: 0, rows: 37 },
      { shape: { numHeads: 6, numKvHeads: 2, headDim: 6 }, startPos: 70, rows: 3 },
      { shape: { numHeads: 2, numKvHeads: 2, headDim: 128 }, startPos: 129, rows: 5 },
      { shape: { numHeads: 8, numKvHeads: 1, headDim: 32 }, startPos: 4100, rows: 2 },
      { shape: { numHeads: 3, numKvHeads: 3, headDim: 40 }, startPos: 300, rows: 1 },
    ];
    // unsplit (the adapter's default); 128 threads (the GPU default: several value lanes per
    // head); split in ranges of 64 positions (many ranges, some empty for early rows); split from
    // 128 positions up, ranges as long as ~1024 workgroups need, 32 key elements per thread
    // (rather than 16); split with the default 256-position ranges; 32 threads (few value lanes
    // at head_dim 128). Head widths 6 and 40 take the narrow paths (2 and 8 key elements per
    // thread). (256 threads: tests/kernels/kv_cache.test.ts.)
    const variants: {
      splitKeys?: number;
      workgroupSize?: number;
      keyElements?: 16 | 32;
      splitWorkgroups?: number;
    }[] = [
      {},
      { workgroupSize: 128 },
      { splitKeys: 64, workgroupSize: 64, splitWorkgroups: 0 },
      { splitKeys: 128, workgroupSize: 128, keyElements: 32 },
      { splitKeys: 256 },
      { workgroupSize: 32 },
    ];
    for (const [c, { shape, startPos, rows }] of cases.entries()) {
      const { numHeads: h, numKvHeads: kvh, headDim: d } = shape;
      const cache = kvCache(gpu, startPos + rows + 3, shape);
      const kAll = randn((startPos + rows) * kvh * d, 100 + c, 1);
      const vAll = randn((startPos + rows) * kvh * d, 200 + c, 1);
      const q = randn(rows * h * d, 300 + c, 1.5);
      const want = cpuAttention(q, kAll, vAll, rows, startPos, shape);
      for (const variant of variants) {
        const maxSeq = variant.splitKeys ? startPos + rows + 3 : undefined;
        const attn = await createAttention(gpu, { ...shape, ...variant, maxSeq });
        if (startPos > 0) {
          // history first, as an earlier prefill would have written it
          const hist = startPos * kvh * d;
          const tk = f32Tensor(gpu, "k", kAll.subarray(0, hist));
          const tv = f32Tensor(gpu, "v", vAll.subarray(0, hist));
          const batch = new CommandBatch(gpu);
          attn.writeKv(batch, tk, tv, cache[0], cache[1], 0, startPos);
          batch.submit();
          tk.destroy();
          tv.destroy();
        }
        const off = startPos * kvh * d;
        const got = await step(
          gpu,
          attn,
          cache,
          q,
          kAll.subarray(off),
          vAll.subarray(off),
          startPos,
          rows,
        );
        assertClose(
          got,
          want,
          TOL,
          `attention ${h}/${kvh} heads of ${d}, startPos=${startPos} rows=${rows} ` +
            JSON.stringify(variant),
        );
        const split = startPos + rows > (variant.splitKeys ?? Infinity);
        assertEquals(lastDispatches, split ? 3 : 2, "split path taken exactly when asked for");
        attn.destroy();
      }
      for (const t of cache) t.destroy();
    }
  }));

Deno.test("prefill of 5 tokens equals 5 single-token decodes", () =>
  withGpu({}, async (gpu) => {
    const shape = { numHeads: 8, numKvHeads: 2, headDim: 64 };
    const { numHeads: h, numKvHeads: kvh, headDim: d } = shape;
    const attn = await createAttention(gpu, shape);
    const start = 11; // after a first prefill of 11 tokens
    const total = start + 5;
    const k = randn(total * kvh * d, 1);
    const v = randn(total * kvh * d, 2);
    const q = randn(total * h * d, 3);
    const run = async (chunks: number[]) => {
      const cache = kvCache(gpu, 32, shape);
      const outs: Float32Array[] = [];
      let pos = 0;
      for (const rows of chunks) {
        outs.push(
          await step(
            gpu,
            attn,
            cache,
            q.subarray(pos * h * d, (pos + rows) * h * d),
            k.subarray(pos * kvh * d, (pos + rows) * kvh * d),
            v.subarray(pos * kvh * d, (pos + rows) * kvh * d),
            pos,
            rows,
          ),
        );
        pos += rows;
      }
      for (const t of cache) t.destroy();
      const all = new Float32Array(total * h * d);
      let o = 0;
      for (const x of outs) all.set(x, (o += x.length) - x.length);
      return all.subarray(start * h * d);
    };
    const prefill = await run([start, 5]);
    const decode = await run([start, 1, 1, 1, 1, 1]);
    // The same f32 operations in the same order for each query row: bit-for-bit equal.
    assertEquals(prefill, decode);
    assertClose(prefill, cpuAttention(q, k, v, total, 0, shape).subarray(start * h * d), TOL);
    attn.destroy();
  }));

// Sliding window (Mistral): each query sees only the last `window` positions up to its own.
// Same tolerance; both the one-pass and the split path, windows shorter and longer than a range.
Deno.test("sliding-window attention matches cpuAttention with the same window", () =>
  withGpu({}, async (gpu) => {
    const shape = { numHeads: 4, numKvHeads: 2, headDim: 64 };
    const { numHeads: h, numKvHeads: kvh, headDim: d } = shape;
    const cases = [
      { startPos: 0, rows: 40, window: 16 },
      { startPos: 70, rows: 30, window: 50 },
      { startPos: 300, rows: 1, window: 100 },
      { startPos: 300, rows: 1, window: 20 },
    ];
    for (const [c, { startPos, rows, window }] of cases.entries()) {
      const total = startPos + rows;
      const kAll = randn(total * kvh * d, 400 + c, 1);
      const vAll = randn(total * kvh * d, 500 + c, 1);
      const q = randn(rows * h * d, 600 + c, 1.5);
      const want = cpuAttention(q, kAll, vAll, rows, startPos, shape, window);
      const full = cpuAttention(q, kAll, vAll, rows, startPos, shape);
      // the window must matter for the test to mean anything
      assertThrows(() => assertClose(want, full, TOL));
      for (const variant of [{}, { splitKeys: 64, workgroupSize: 64 }]) {
        const attn = await createAttention(gpu, { ...shape, ...variant, maxSeq: total });
        const cache = kvCache(gpu, total, shape);
        const tq = f32Tensor(gpu, "q", q);
        const tk = f32Tensor(gpu, "k", kAll);
        const tv = f32Tensor(gpu, "v", vAll);
        const out = emptyF32(gpu, "out", q.length);
        const batch = new CommandBatch(gpu);
        attn.writeKv(batch, tk, tv, cache[0], cache[1], 0, total);
        attn.attend(batch, tq, cache[0], cache[1], out, startPos, rows, window);
        batch.submit();
        assertClose(
          await gpu.readF32(out),
          want,
          TOL,
          `window ${window}, startPos=${startPos} rows=${rows} ${JSON.stringify(variant)}`,
        );
        for (const t of [tq, tk, tv, out, ...cache]) t.destroy();
        attn.destroy();
      }
    }
  }));

// A decode step with RoPE and the cache write folded into the attention (attendNew) must leave
// the same cache, bit for bit, as RoPE into the cache followed by attend, and the same output (the
// new position is summed in its place, from workgroup memory): bit for bit with f16 and int8
// caches, within rounding with int4 ones (below), for every cache format: unsplit
// and split (the new position in the last range, and alone in a range),
// GQA, a sliding window, 32 key and 16 value elements per thread, 128-wide heads, workgroups of
// 64 threads for heads of 128, and a start position read on the GPU.
Deno.test("attendNew (RoPE and the cache write folded in) = RoPE into the cache, then attend: the same cache, the same output", () =>
  withGpu({}, async (gpu) => {
    type Case = {
      heads: number;
      kvHeads: number;
      headDim: number;
      start: number;
      variant: Record<string, number>;
      window?: number;
      onGpu?: number;
    };
    const cases: Case[] = [
      { heads: 4, kvHeads: 2, headDim: 64, start: 37, variant: {} },
      { heads: 4, kvHeads: 2, headDim: 64, start: 140, variant: { splitKeys: 64 } },
      { heads: 4, kvHeads: 2, headDim: 64, start: 128, variant: { splitKeys: 64 } },
      { heads: 4, kvHeads: 4, headDim: 128, start: 75, variant: { keyElements: 32 } },
      { heads: 4, kvHeads: 2, headDim: 128, start: 50, variant: { workgroupSize: 64 } },
      { heads: 8, kvHeads: 2, headDim: 64, start: 90, variant: { splitKeys: 64 }, window: 40 },
      { heads: 4, kvHeads: 2, headDim: 64, start: 100, variant: { splitKeys: 64 }, onGpu: 60 },
    ];
    const formats = ["f16", "int8", "int4", "int4-plain"] as const;
    let n = 0;
    for (const kvCache of formats) {
      for (const { heads, kvHeads, headDim, start, variant, window, onGpu } of cases) {
        const c = n++;
        const shape = { numHeads: heads, numKvHeads: kvHeads, headDim };
        const maxSeq = 200;
        const values = kvCache === "f16" ? {} : { valueElements: c % 2 ? 16 : 8 } as const;
        const attn = await createAttention(gpu, {
          ...shape,
          ...variant,
          ...values,
          splitWorkgroups: 0,
          maxSeq,
          kvCache,
        });
        if (!attn.foldsRope) throw new Error(`${kvCache}, head_dim ${headDim}: must fold RoPE`);
        const rope = await createRopeQk(gpu, { heads, kvHeads, headDim, maxSeq, kvCache });
        const freqs = Float32Array.from(
          { length: headDim / 2 },
          (_, i) => 1e4 ** (-2 * i / headDim),
        );
        const kOld = randn(start * kvHeads * headDim, 40 + c);
        const vOld = randn(start * kvHeads * headDim, 50 + c);
        const qOld = new Float32Array(start * heads * headDim);
        const q = randn(heads * headDim, 60 + c, 1.5);
        const k = randn(kvHeads * headDim, 70 + c);
        const v = randn(kvHeads * headDim, 80 + c);
        const bytes = kvCacheLayout(kvCache, maxSeq, kvHeads, headDim).bytes;
        const run = async (folded: boolean) => {
          const cache = [0, 1].map((i) =>
            gpu.tensor({ label: `cache ${i}`, category: "kv-cache", byteSize: bytes })
          );
          const t = [q, k, v, freqs, kOld, vOld, qOld].map((x, i) => f32Tensor(gpu, `t${i}`, x));
          const out = emptyF32(gpu, "out", q.length);
          const cpuStart = onGpu ? start - onGpu : start;
          const base = onGpu
            ? gpu.tensor({
              label: "start",
              category: "activations",
              data: new Uint32Array([onGpu]),
            })
            : undefined;
          const at = base ? { base, bound: start + 20 } : undefined;
          const batch = new CommandBatch(gpu);
          batch.clear(cache[0]);
          batch.clear(cache[1]);
          // the older positions, as a prefill leaves them
          rope.encodeToCache(batch, t[6], t[4], t[5], t[3], cache[0], cache[1], 0, start);
          const before = batch.dispatchCount;
          if (folded) {
            attn.attendNew(
              batch,
              t[0],
              t[1],
              t[2],
              t[3],
              cache[0],
              cache[1],
              out,
              cpuStart,
              window,
              at,
            );
          } else {
            rope.encodeToCache(batch, t[0], t[1], t[2], t[3], cache[0], cache[1], cpuStart, 1, at);
            attn.attend(batch, t[0], cache[0], cache[1], out, cpuStart, 1, window, at);
          }
          const dispatches = batch.dispatchCount - before;
          batch.submit();
          const got = {
            out: await gpu.readF32(out),
            k: await gpu.readU32(cache[0]),
            v: await gpu.readU32(cache[1]),
            dispatches,
          };
          for (const x of [...t, ...cache, out, ...(base ? [base] : [])]) x.destroy();
          return got;
        };
        const want = await run(false);
        const got = await run(true);
        const label = `${kvCache}, case ${c}`;
        // The same sums in the same order: a decode step's output is a verify pass's row's. With
        // int4 caches a shader compiler may round the folded kernel's query arithmetic otherwise
        // (GL's does, in the last bits; lavapipe's Vulkan does not): near.
        if (kvCache.startsWith("int4")) assertClose(got.out, want.out, TOL, `${label}: output`);
        else assertEquals(got.out, want.out, `${label}: output`);
        assertEquals(got.k, want.k, `${label}: key cache`);
        assertEquals(got.v, want.v, `${label}: value cache`);
        assertEquals(got.dispatches, want.dispatches - 1, `${label}: one dispatch fewer`);
        // the model folds only short contexts (FOLD_ROPE_MAX_POSITIONS), planned for at.bound
        assertEquals(attn.foldsRopeAt(start), true, `${label}: folds at ${start}`);
        assertEquals(attn.foldsRopeAt(FOLD_ROPE_MAX_POSITIONS - 1), true, `${label}: the last`);
        assertEquals(attn.foldsRopeAt(FOLD_ROPE_MAX_POSITIONS), false, `${label}: past it`);
        const far = { base: gpu.zeros(), bound: FOLD_ROPE_MAX_POSITIONS };
        assertEquals(attn.foldsRopeAt(start, far), false, `${label}: a GPU start's bound`);
        attn.destroy();
      }
    }
  }));

// Which contexts a decode step splits, by default: an f16 cache past 256 positions, a quantized
// one past 128 (where each split before), in ranges of at least 128 positions; the scratch only
// where a split can happen, the size the memory estimator uses.
Deno.test("attention splits a decode step past 256 positions (f16 cache) or 128 (quantized)", () =>
  withGpu({}, async (gpu) => {
    const shape = { numHeads: 4, numKvHeads: 2, headDim: 64 };
    const q = emptyF32(gpu, "q", shape.numHeads * shape.headDim);
    const out = emptyF32(gpu, "out", shape.numHeads * shape.headDim);
    try {
      for (const [kv, unsplit] of [["f16", 256], ["int8", 128]] as const) {
        const maxSeq = 600;
        const layout = kvCacheLayout(kv, maxSeq, shape.numKvHeads, shape.headDim);
        const cache = [0, 1].map((i) =>
          gpu.tensor({ label: `cache ${i}`, category: "kv-cache", byteSize: layout.bytes })
        );
        const attn = await createAttention(gpu, { ...shape, maxSeq, kvCache: kv });
        try {
          assertEquals(attn.scratchBytes, attentionScratchBytes(shape, maxSeq, 128, 256, unsplit));
          const dispatches = (len: number) => {
            const batch = new CommandBatch(gpu);
            attn.attend(batch, q, cache[0], cache[1], out, len - 1, 1);
            return batch.dispatchCount;
          };
          assertEquals(
            [dispatches(unsplit), dispatches(unsplit + 1), dispatches(maxSeq)],
            [1, 2, 2],
            `${kv}: unsplit up to ${unsplit} positions, then split and merged`,
          );
        } finally {
          attn.destroy();
          cache.forEach((t) => t.destroy());
        }
      }
      const small = await createAttention(gpu, { ...shape, maxSeq: 256 });
      assertEquals(small.scratchBytes, 0, "f16 up to 256 positions: no scratch");
      small.destroy();
    } finally {
      q.destroy();
      out.destroy();
    }
  }));
