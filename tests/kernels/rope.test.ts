import { CommandBatch } from "../../lib/gpu/batch.ts";
import { cpuRope, createRope } from "../../lib/kernels/rope.ts";
import { assertClose, randn } from "../helpers/random.ts";
import { f32Tensor, withGpu } from "./_gpu.ts";

/** Llama inverse frequencies theta^(-2i/d), rounded to f32 as Hugging Face stores them. */
function invFreq(headDim: number, theta: number): Float32Array {
  return Float32Array.from({ length: headDim / 2 }, (_, i) => theta ** (-(2 * i) / headDim));
}

// The angle is the same f32 product in kernel and twin; the kernel reduces it mod 2π (error
// ~1e-7 rad) and uses f32 sin/cos, the twin f64. Outputs are O(|x|) with x ~ N(0, 1):
// atol 2e-5 covers a few f32 ulps of sin/cos (llvmpipe's are accurate to ~1e-7 after reduction).
Deno.test("RoPE matches cpuRope at positions from 0 to 4096+", () =>
  withGpu({}, async (gpu) => {
    const cases = [
      { rows: 1, heads: 4, headDim: 64, startPos: 0 },
      { rows: 5, heads: 3, headDim: 128, startPos: 0 },
      { rows: 37, heads: 2, headDim: 6, startPos: 17 },
      { rows: 1, heads: 8, headDim: 128, startPos: 4095 },
      { rows: 3, heads: 2, headDim: 64, startPos: 100_000 },
    ];
    for (const [c, { rows, heads, headDim, startPos }] of cases.entries()) {
      const rope = await createRope(gpu, { heads, headDim });
      const freqs = invFreq(headDim, c % 2 ? 500_000 : 10_000);
      const x = randn(rows * heads * headDim, 40 + c);
      const tx = f32Tensor(gpu, "x", x);
      const tf = f32Tensor(gpu, "inv_freq", freqs);
      const batch = new CommandBatch(gpu);
      rope.encode(batch, tx, tf, startPos, rows);
      batch.submit();
      assertClose(
        await gpu.readF32(tx),
        cpuRope(x, rows, heads, headDim, startPos, freqs),
        { atol: 2e-5 },
        `rope rows=${rows} heads=${heads} d=${headDim} pos=${startPos}`,
      );
      tx.destroy();
      tf.destroy();
    }
  }));
