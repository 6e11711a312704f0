/**
 * The K-quant kernels (kernels/q_kquant.wgsl: Q4_K and Q6_K) and Q4_0 in the 4-bit kernels,
 * against their CPU twins (lib/quant/ggml.ts), on both shader paths. Weights: the blocks
 * gguf-py wrote in tests/fixtures/gguf/types.gguf (outliers and an all-zero row among them),
 * and random blocks (any bits with finite scales are a valid block) at a shape where each
 * thread strides over several units. Rows 1 (decode), 3, 4 and 9 (partial and several
 * four-row passes).
 *
 * Tolerance per output: f32 path 2e-5 · Σ|x · w| (summation order), f16 path 2e-3 · Σ|x · w|
 * (x rounded to f16 inside four-value dots: relative 2^-11 per term).
 */
import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { CommandBatch } from "../../lib/gpu/batch.ts";
import { type Gpu, requestGpu } from "../../lib/gpu/device.ts";
import { KQuantLinear } from "../../lib/kernels/kquant_linear.ts";
import { QuantLinear } from "../../lib/kernels/quant_linear.ts";
import { openGguf } from "../../lib/model/gguf.ts";
import { dequantize, matmulQuantized, type QuantizedWeight } from "../../lib/quant/formats.ts";
import { q4_0FromGgml, q4KFromGgml, q6KFromGgml } from "../../lib/quant/ggml.ts";
import { randn } from "../helpers/random.ts";
import { emptyF32, f32Tensor, hasF16 } from "./_gpu.ts";

const TYPES = new URL("../fixtures/gguf/types.gguf", import.meta.url).pathname;

function randomBlocks(
  count: number,
  bytesPer: number,
  seed: number,
  scaleAt: number[],
): Uint8Array {
  const out = new Uint8Array(count * bytesPer);
  let s = seed;
  for (let i = 0; i < out.length; i++) {
    s = (s * 1103515245 + 12345) >>> 0;
    out[i] = s >>> 24;
  }
  for (let b = 0; b < count; b++) {
    // finite, modest f16 scales: 0x1c00 + small = about 0.004
    for (const at of scaleAt) {
      out[b * bytesPer + at] = out[b * bytesPer + at] & 0x3f;
      out[b * bytesPer + at + 1] = 0x1c;
    }
  }
  return out;
}

async function weights(): Promise<[string, QuantizedWeight][]> {
  using file = await openGguf(TYPES);
  const list: [string, QuantizedWeight][] = [];
  for (const t of ["Q4_K", "Q6_K", "Q4_0"]) {
    list.push([`${t} (gguf-py)`, await file.readQuantized(t)]);
  }
  const n = 24;
  const k = 2560;
  list.push(["Q4_K (random)", q4KFromGgml(randomBlocks((n * k) / 256, 144, 1, [0, 2]), n, k)]);
  list.push(["Q6_K (random)", q6KFromGgml(randomBlocks((n * k) / 256, 210, 2, [208]), n, k)]);
  list.push(["Q4_0 (random)", q4_0FromGgml(randomBlocks((n * k) / 32, 18, 3, [0]), n, k)]);
  return list;
}

const cases = await weights();

async function product(gpu: Gpu, w: QuantizedWeight, x: Float32Array, rows: number, f16: boolean) {
  const lin = w.format === "q4_k" || w.format === "q6_k"
    ? await KQuantLinear.create(gpu, { label: "w", weight: w, f16 })
    : await QuantLinear.create(gpu, { label: "w", weight: w, f16 });
  const tx = f32Tensor(gpu, "x", x);
  const ty = emptyF32(gpu, "y", rows * lin.outFeatures);
  const batch = new CommandBatch(gpu);
  lin.encode(batch, tx, ty, rows);
  batch.submit();
  const y = await gpu.readF32(ty);
  lin.destroy();
  tx.destroy();
  ty.destroy();
  return y;
}

for (const f16 of [false, true]) {
  Deno.test({
    name: `K-quant and Q4_0 kernels match their CPU twins (${f16 ? "f16" : "f32"} path)`,
    ignore: f16 && !hasF16,
    fn: async () => {
      const gpu = await requestGpu({ f16 });
      try {
        for (const [label, w] of cases) {
          const deq = dequantize(w);
          for (const rows of [1, 3, 4, 9]) {
            const x = randn(rows * w.k, 100 + rows);
            const want = matmulQuantized(x, rows, w);
            const got = await product(gpu, w, x, rows, f16);
            for (let m = 0; m < rows; m++) {
              for (let r = 0; r < w.n; r++) {
                let abs = 0;
                for (let c = 0; c < w.k; c++) abs += Math.abs(x[m * w.k + c] * deq[r * w.k + c]);
                const tol = (f16 ? 2e-3 : 2e-5) * abs + 1e-6;
                const i = m * w.n + r;
                assert(
                  Math.abs(got[i] - want[i]) <= tol,
                  `${label} rows=${rows} [${m}, ${r}]: ${got[i]} vs ${want[i]} (tol ${tol})`,
                );
              }
            }
          }
        }
        gpu.trimScratch();
        assertEquals(gpu.ledger.entries(), []);
      } finally {
        gpu.destroy();
      }
    },
  });
}
