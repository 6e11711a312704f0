/**
 * RoPE of queries and keys in one dispatch (`rope_qk`) against the CPU twin applied to each:
 * the same tolerance as the single-tensor kernel's test (tests/kernels/rope.test.ts); and the form
 * that writes k and v into the KV cache.
 */
import * as assert from "node:assert/strict";
import { CommandBatch } from "../../lib/gpu/batch.ts";
import { f16BitsToF32, f32ToF16Bits } from "../../lib/gpu/f16.ts";
import { cpuRope, createRopeQk } from "../../lib/kernels/rope.ts";
import { assertClose, randn } from "../helpers/random.ts";
import { f32Tensor, withGpu } from "../kernels/_gpu.ts";

function invFreq(headDim: number, theta: number): Float32Array {
  return Float32Array.from({ length: headDim / 2 }, (_, i) => theta ** (-(2 * i) / headDim));
}

Deno.test("RoPE of q and k in one dispatch matches cpuRope on each", () =>
  withGpu({}, async (gpu) => {
    const cases = [
      { rows: 1, heads: 4, kvHeads: 2, headDim: 64, startPos: 0 },
      { rows: 5, heads: 8, kvHeads: 8, headDim: 128, startPos: 3 },
      { rows: 37, heads: 6, kvHeads: 1, headDim: 6, startPos: 17 },
      { rows: 1, heads: 32, kvHeads: 8, headDim: 128, startPos: 4095 },
    ];
    for (const [c, { rows, heads, kvHeads, headDim, startPos }] of cases.entries()) {
      const rope = await createRopeQk(gpu, { heads, kvHeads, headDim });
      const freqs = invFreq(headDim, c % 2 ? 500_000 : 10_000);
      const q = randn(rows * heads * headDim, 60 + c);
      const k = randn(rows * kvHeads * headDim, 80 + c);
      const tq = f32Tensor(gpu, "q", q);
      const tk = f32Tensor(gpu, "k", k);
      const tf = f32Tensor(gpu, "inv_freq", freqs);
      const batch = new CommandBatch(gpu);
      rope.encode(batch, tq, tk, tf, startPos, rows);
      batch.submit();
      const what = `rows=${rows} heads=${heads}/${kvHeads} d=${headDim} pos=${startPos}`;
      assertClose(
        await gpu.readF32(tq),
        cpuRope(q, rows, heads, headDim, startPos, freqs),
        { atol: 2e-5 },
        `q ${what}`,
      );
      assertClose(
        await gpu.readF32(tk),
        cpuRope(k, rows, kvHeads, headDim, startPos, freqs),
        { atol: 2e-5 },
        `k ${what}`,
      );
      for (const t of [tq, tk, tf]) t.destroy();
    }
  }));

// The fused form stores k and v in f16: the twin's rotated k, rounded to f16, within one f16
// rounding (rtol 1e-3 ≥ 2⁻¹⁰) plus the f32 kernel's 2e-5; v is copied, so its f16 is exact.
// Cache positions outside the new rows keep their sentinel.
Deno.test("RoPE into the KV cache matches cpuRope on q and k, and stores v, in one dispatch", () =>
  withGpu({}, async (gpu) => {
    const cases = [
      { rows: 1, heads: 4, kvHeads: 2, headDim: 64, startPos: 0, maxSeq: 4 },
      { rows: 5, heads: 8, kvHeads: 8, headDim: 128, startPos: 3, maxSeq: 9 },
      { rows: 37, heads: 6, kvHeads: 1, headDim: 6, startPos: 17, maxSeq: 60 },
      { rows: 1, heads: 32, kvHeads: 8, headDim: 128, startPos: 4095, maxSeq: 4097 },
    ];
    for (const [c, { rows, heads, kvHeads, headDim, startPos, maxSeq }] of cases.entries()) {
      const rope = await createRopeQk(gpu, { heads, kvHeads, headDim });
      const freqs = invFreq(headDim, c % 2 ? 500_000 : 10_000);
      const q = randn(rows * heads * headDim, 160 + c);
      const k = randn(rows * kvHeads * headDim, 180 + c);
      const v = randn(rows * kvHeads * headDim, 190 + c);
      const words = maxSeq * kvHeads * headDim / 2;
      const sentinel = 0x7e007e00; // two f16 NaNs
      const cache = () =>
        gpu.tensor({
          label: "cache",
          category: "kv-cache",
          data: new Uint32Array(words).fill(sentinel),
        });
      const [tq, tk, tv, tf] = [
        f32Tensor(gpu, "q", q),
        f32Tensor(gpu, "k", k),
        f32Tensor(gpu, "v", v),
        f32Tensor(gpu, "inv_freq", freqs),
      ];
      const [ck, cv] = [cache(), cache()];
      const batch = new CommandBatch(gpu);
      rope.encodeToCache(batch, tq, tk, tv, tf, ck, cv, startPos, rows);
      batch.submit();
      const what = `rows=${rows} heads=${heads}/${kvHeads} d=${headDim} pos=${startPos}`;
      assertClose(
        await gpu.readF32(tq),
        cpuRope(q, rows, heads, headDim, startPos, freqs),
        { atol: 2e-5 },
        `q ${what}`,
      );
      assertClose(await gpu.readF32(tk), k, { atol: 0 }, `k left as it was, ${what}`);
      const first = startPos * kvHeads * headDim / 2;
      const count = rows * kvHeads * headDim / 2;
      for (
        const [name, t, want, tol] of [
          ["k", ck, cpuRope(k, rows, kvHeads, headDim, startPos, freqs), {
            atol: 2e-5,
            rtol: 1e-3,
          }],
          ["v", cv, v.map((x) => f16BitsToF32(f32ToF16Bits(x))), { atol: 0 }],
        ] as const
      ) {
        const got = await gpu.readU32(t);
        const outside = [...got.subarray(0, first), ...got.subarray(first + count)];
        assert.ok(outside.every((w) => w === sentinel), `${name} cache outside the rows, ${what}`);
        const halves = new Uint16Array(got.buffer, got.byteOffset + first * 4, count * 2);
        assertClose(Float32Array.from(halves, f16BitsToF32), want, tol, `${name} cache ${what}`);
      }
      for (const t of [tq, tk, tv, tf, ck, cv]) t.destroy();
    }
  }));
