/**
 * Quantized KV caches: the CPU twin's formats (tests/kernels has no other reference for them),
 * RoPE writing codes and scales straight into the cache against the twin, and attention reading
 * a quantized cache against `cpuAttention` on the same dequantized values.
 */
import * as assert from "node:assert/strict";
import { CommandBatch } from "../../lib/gpu/batch.ts";
import type { Gpu } from "../../lib/gpu/device.ts";
import type { GpuTensor } from "../../lib/gpu/tensor.ts";
import { cpuAttention, createAttention } from "../../lib/kernels/attention.ts";
import {
  decodeKvCache,
  encodeKvRows,
  hadamard32,
  KV_CACHE_INFO,
  type KvCacheFormat,
  kvCacheLayout,
  kvRoundTrip,
  turnedQueries,
} from "../../lib/kernels/kv_cache.ts";
import { cpuRope, createRopeQk } from "../../lib/kernels/rope.ts";
import { assertClose, randn } from "../helpers/random.ts";
import { emptyF32, f32Tensor, withGpu } from "./_gpu.ts";

const QUANTIZED: KvCacheFormat[] = ["int8", "int4", "int8-plain", "int4-plain"];

Deno.test("hadamard32 is orthonormal and its own inverse", () => {
  const x = randn(32, 1);
  const y = new Float64Array(x);
  hadamard32(y);
  const norm = (a: ArrayLike<number>) => Math.hypot(...Array.from(a));
  assert.ok(Math.abs(norm(y) - norm(x)) < 1e-5 * norm(x), "norm kept");
  hadamard32(y);
  assertClose(y, x, { atol: 1e-6 }, "H·H = I");
  const e = new Float32Array(32);
  e[0] = 1;
  hadamard32(e);
  assertClose(e, new Float32Array(32).fill(1 / Math.sqrt(32)), { atol: 1e-7 }, "first column");
});

Deno.test("kvRoundTrip: error within half a step per group; the turn spreads a key's outlier", () => {
  const hd = 64;
  const x = randn(8 * hd, 2);
  for (const format of QUANTIZED) {
    const bits = KV_CACHE_INFO[format].codeBits;
    const got = kvRoundTrip(x, hd, format, false); // values: never turned
    for (let g = 0; g < x.length; g += 32) {
      const grp = Array.from(x.subarray(g, g + 32));
      const range = bits === 8
        ? 2 * Math.max(...grp.map(Math.abs))
        : Math.max(...grp) - Math.min(...grp);
      const step = range / (bits === 8 ? 254 : 15);
      for (let i = g; i < g + 32; i++) {
        // half a step, plus the f16 rounding of scale (and offset): 2⁻¹¹ relative each
        const allowed = step / 2 + range * 2 ** -10 + 1e-6;
        assert.ok(Math.abs(got[i] - x[i]) <= allowed, `${format} element ${i}`);
      }
    }
  }
  // A key with one outlier channel (|x| 20 among N(0,1)): turned first, the other 31 values of
  // its group keep their precision at 4 bits.
  const key = randn(32, 3);
  key[5] = 20;
  const err = (f: KvCacheFormat) => {
    const r = kvRoundTrip(key, 32, f, true);
    return Math.hypot(...Array.from(r, (v, i) => v - key[i]));
  };
  assert.ok(err("int4") < 0.6 * err("int4-plain"), `${err("int4")} vs ${err("int4-plain")}`);
});

Deno.test("encodeKvRows and decodeKvCache agree with kvRoundTrip; layouts are padded to 16 bytes", () => {
  const [seq, kvh, hd] = [3, 2, 128];
  const x = randn(seq * kvh * hd, 4);
  for (const format of QUANTIZED) {
    for (const isKey of [false, true]) {
      const layout = kvCacheLayout(format, seq, kvh, hd);
      assert.equal(layout.bytes % 16, 0);
      const words = new Uint32Array(layout.bytes / 4);
      const { codes, scales } = encodeKvRows(x, hd, format, isKey);
      assert.equal(codes.length, layout.scaleWord);
      words.set(codes);
      words.set(scales, layout.scaleWord);
      const back = decodeKvCache(words, format, seq, kvh, hd, seq, isKey);
      assertClose(back, kvRoundTrip(x, hd, format, isKey), { atol: 1e-6 }, `${format} ${isKey}`);
    }
  }
  assert.equal(kvCacheLayout("int8", 4096, 32, 128).bytes, 4096 * 32 * (128 + 8));
  assert.equal(kvCacheLayout("int4", 4096, 32, 128).bytes, 4096 * 32 * (64 + 16));
  assert.throws(() => kvCacheLayout("int8", 8, 2, 96), /head_dim 96 is not a multiple of 64/);
});

function invFreq(headDim: number): Float32Array {
  return Float32Array.from({ length: headDim / 2 }, (_, i) => 10_000 ** (-(2 * i) / headDim));
}

// The kernel's quantization against the twin's on the twin's rotated keys: RoPE's cos/sin differ
// by ~1e-6, and GPU division and reciprocals may be a few ulps off (NVIDIA's are), so a value
// within that of a rounding boundary may land one code apart. Allowed: at most 3% of codes (+2)
// one step apart, none further; scales (and offsets) within two f16 ulps. Everything outside the
// written rows is untouched.
Deno.test("RoPE writes quantized keys and values into the cache as the twin quantizes them", () =>
  withGpu({}, async (gpu) => {
    const cases = [
      { rows: 1, heads: 4, kvHeads: 2, headDim: 64, startPos: 0, maxSeq: 4 },
      { rows: 5, heads: 8, kvHeads: 2, headDim: 128, startPos: 3, maxSeq: 9 },
      { rows: 19, heads: 6, kvHeads: 3, headDim: 64, startPos: 17, maxSeq: 40 },
    ];
    for (const format of QUANTIZED) {
      for (const [c, { rows, heads, kvHeads, headDim, startPos, maxSeq }] of cases.entries()) {
        const what =
          `${format} rows=${rows} heads=${heads}/${kvHeads} d=${headDim} pos=${startPos}`;
        const rope = await createRopeQk(gpu, { heads, kvHeads, headDim, kvCache: format, maxSeq });
        const freqs = invFreq(headDim);
        const q = randn(rows * heads * headDim, 10 + c);
        const k = randn(rows * kvHeads * headDim, 20 + c);
        const v = randn(rows * kvHeads * headDim, 30 + c, 2);
        const layout = kvCacheLayout(format, maxSeq, kvHeads, headDim);
        const sentinel = 0xdeadbeef;
        const cache = () =>
          gpu.tensor({
            label: "cache",
            category: "kv-cache",
            data: new Uint32Array(layout.bytes / 4).fill(sentinel),
          });
        const [tq, tk, tv, tf, ck, cv] = [
          f32Tensor(gpu, "q", q),
          f32Tensor(gpu, "k", k),
          f32Tensor(gpu, "v", v),
          f32Tensor(gpu, "inv_freq", freqs),
          cache(),
          cache(),
        ];
        const batch = new CommandBatch(gpu);
        rope.encodeToCache(batch, tq, tk, tv, tf, ck, cv, startPos, rows);
        batch.submit();
        assertClose(
          await gpu.readF32(tq),
          turnedQueries(cpuRope(q, rows, heads, headDim, startPos, freqs), format),
          { atol: 2e-5 },
          `q (turned as the keys are) ${what}`,
        );
        const perPos = kvHeads * headDim;
        for (
          const [name, t, x, isKey] of [
            ["k", ck, cpuRope(k, rows, kvHeads, headDim, startPos, freqs), true],
            ["v", cv, v, false],
          ] as const
        ) {
          const got = await gpu.readU32(t);
          const want = encodeKvRows(x, headDim, format, isKey);
          const codeWords = (perPos * KV_CACHE_INFO[format].codeBits) / 32;
          const c0 = startPos * codeWords;
          const bits = KV_CACHE_INFO[format].codeBits;
          let off = 0;
          const elems = rows * perPos;
          const codeOf = (w: Uint32Array, base: number, e: number) =>
            bits === 8
              ? ((w[base + (e >> 2)] >>> (8 * (e & 3))) << 24) >> 24
              : (w[base + (e >> 3)] >>> ((e & 7) < 4 ? 8 * (e & 7) : 8 * ((e & 7) - 4) + 4)) & 15;
          for (let e = 0; e < elems; e++) {
            const d = Math.abs(codeOf(got, c0, e) - codeOf(want.codes, 0, e));
            assert.ok(d <= 1, `${name} ${what}: code ${e} is ${d} steps off`);
            off += d;
          }
          assert.ok(
            off <= 0.03 * elems + 2,
            `${name} ${what}: ${off} of ${elems} codes off by one`,
          );
          const scalesPerPos = want.scales.length / rows;
          const s0 = layout.scaleWord + startPos * scalesPerPos;
          const gotScales = new Uint16Array(got.slice(s0, s0 + want.scales.length).buffer);
          const wantScales = new Uint16Array(want.scales.buffer.slice(0));
          for (let i = 0; i < wantScales.length; i++) {
            assert.ok(Math.abs(gotScales[i] - wantScales[i]) <= 2, `${name} ${what}: scale ${i}`);
          }
          const untouched = [
            ...got.subarray(0, c0),
            ...got.subarray(c0 + rows * codeWords, s0),
            ...got.subarray(s0 + want.scales.length),
          ];
          assert.ok(untouched.every((w) => w === sentinel), `${name} ${what}: outside the rows`);
        }
        for (const t of [tq, tk, tv, tf, ck, cv]) t.destroy();
      }
    }
  }));

/** A cache tensor holding `x` `[positions, kvHeads, headDim]` as the twin encodes it. */
function quantizedCache(
  gpu: Gpu,
  x: Float32Array,
  format: KvCacheFormat,
  maxSeq: number,
  kvHeads: number,
  headDim: number,
  isKey: boolean,
): GpuTensor {
  const layout = kvCacheLayout(format, maxSeq, kvHeads, headDim);
  const words = new Uint32Array(layout.bytes / 4);
  const { codes, scales } = encodeKvRows(x, headDim, format, isKey);
  words.set(codes);
  words.set(scales, layout.scaleWord);
  return gpu.tensor({ label: `${format} cache`, category: "kv-cache", data: words });
}

// Kernel and twin read the same codes and scales: the kernel folds the scale out of each group's
// dot product (and turns the query rather than the keys), the twin dequantizes each key in f32
// first; those reassociations move scores by ~1e-6 relative. Same tolerance as the f16 cache's
// test (tests/kernels/attention.test.ts): atol 2e-5 + rtol 1e-4.
Deno.test("attention over a quantized cache matches cpuAttention on the dequantized cache", () =>
  withGpu({}, async (gpu) => {
    // decode from an empty cache; a prefill of 9 after 40 (256 threads: several value lanes); a
    // decode step split over ranges of 64 positions; 32 threads (few value lanes at head_dim
    // 128); a split decode step with 32 key elements (a whole group) per thread rather than 16;
    // 16 value elements per thread rather than 8, split (three rows) and with few lanes
    const cases = [
      { shape: { numHeads: 4, numKvHeads: 2, headDim: 64 }, startPos: 0, rows: 1, variant: {} },
      {
        shape: { numHeads: 4, numKvHeads: 2, headDim: 64 },
        startPos: 40,
        rows: 9,
        variant: { workgroupSize: 256 },
      },
      {
        shape: { numHeads: 8, numKvHeads: 2, headDim: 128 },
        startPos: 200,
        rows: 1,
        variant: { splitKeys: 64, workgroupSize: 64, fastConvert: true },
      },
      {
        shape: { numHeads: 2, numKvHeads: 1, headDim: 128 },
        startPos: 20,
        rows: 2,
        variant: { workgroupSize: 32 },
      },
      {
        shape: { numHeads: 4, numKvHeads: 2, headDim: 128 },
        startPos: 300,
        rows: 1,
        variant: { splitKeys: 64, workgroupSize: 128, keyElements: 32 as const },
      },
      {
        shape: { numHeads: 4, numKvHeads: 2, headDim: 128 },
        startPos: 150,
        rows: 3,
        variant: { splitKeys: 64, workgroupSize: 64, valueElements: 16 as const },
      },
      {
        shape: { numHeads: 2, numKvHeads: 2, headDim: 64 },
        startPos: 33,
        rows: 2,
        variant: { workgroupSize: 32, valueElements: 16 as const },
      },
    ];
    for (const format of QUANTIZED) {
      for (const [c, { shape, startPos, rows, variant }] of cases.entries()) {
        const { numHeads: h, numKvHeads: kvh, headDim: d } = shape;
        const maxSeq = startPos + rows + 2;
        const len = startPos + rows;
        const k = randn(len * kvh * d, 40 + c);
        const v = randn(len * kvh * d, 50 + c);
        // keys with a bias and two outlier channels, as real keys have
        for (let i = 0; i < k.length; i++) {
          if (i % d === 3) k[i] += 6;
          if (i % d === 17) k[i] *= 5;
        }
        const q = randn(rows * h * d, 60 + c, 1.5);
        const want = cpuAttention(q, k, v, rows, startPos, shape, 0, format);
        const ck = quantizedCache(gpu, k, format, maxSeq, kvh, d, true);
        const cv = quantizedCache(gpu, v, format, maxSeq, kvh, d, false);
        {
          const attn = await createAttention(gpu, {
            ...shape,
            ...variant,
            maxSeq,
            kvCache: format,
          });
          const tq = f32Tensor(gpu, "q", turnedQueries(q, format));
          const out = emptyF32(gpu, "out", q.length);
          const batch = new CommandBatch(gpu);
          attn.attend(batch, tq, ck, cv, out, startPos, rows);
          batch.submit();
          assertClose(
            await gpu.readF32(out),
            want,
            { atol: 2e-5, rtol: 1e-4 },
            `${format} ${h}/${kvh} heads of ${d}, pos ${startPos} rows ${rows} ${
              JSON.stringify(variant)
            }`,
          );
          tq.destroy();
          out.destroy();
          attn.destroy();
        }
        ck.destroy();
        cv.destroy();
      }
    }
  }));
