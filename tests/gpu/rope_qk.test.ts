/**
 * RoPE of queries and keys in one dispatch (`rope_qk`) against the CPU twin applied to each:
 * the same tolerance as the single-tensor kernel's test (tests/kernels/rope.test.ts).
 */
import { CommandBatch } from "../../lib/gpu/batch.ts";
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
