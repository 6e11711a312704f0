// The multi-row GEMVs (`gemv_rows`, reached through `encode(..., { perRow: true })`) of every
// weight format against their CPU twin (each row multiplied alone: `matmulPerRow`, `cpuMatmul`)
// and against the one-row GEMV run on each row in turn, which is what a decode step computes.
//
// Tolerances, in units of an output's natural scale σ_y = sqrt(K)·rms(x)·rms(w), as in
// linear.test.ts and quant_linear.test.ts: against the twin 2e-5·σ_y with f32 arithmetic, 5e-3·σ_y
// with f16. Against the one-row GEMV 1e-6·σ_y (the kernels keep its lanes, order and reduction
// tree, so rows come out equal, measured bit-equal on lavapipe and GL), except 4-bit layers
// with f16 arithmetic, whose one-row GEMV rounds in f16 and gemv_rows does not (5e-3·σ_y).

import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { CommandBatch } from "../../lib/gpu/batch.ts";
import { type Gpu, requestGpu } from "../../lib/gpu/device.ts";
import { f16ArrayToF32 } from "../../lib/gpu/f16.ts";
import { cpuMatmul, Fp16Linear, type Fp16Tuning, type Linear } from "../../lib/kernels/linear.ts";
import {
  QuantLinear,
  type QuantLinearFormat,
  type QuantTuning,
} from "../../lib/kernels/quant_linear.ts";
import { RowsKernel, rowsPipelineCounts } from "../../lib/kernels/rows_kernel.ts";
import { quantize } from "../../lib/quant/formats.ts";
import { matmulPerRow } from "../../lib/quant/per_row.ts";
import { assertClose, maxAbsDiff, randn } from "../helpers/random.ts";
import { emptyF32, f32Tensor, hasF16, randomF16 } from "./_gpu.ts";

const X_SCALE = 1;
const W_SCALE = 0.05;
const F32_TOL = 2e-5;
const F16_TOL = 5e-3;
const SAME_TOL = 1e-6;

const devices = new Map<boolean, Gpu>();
devices.set(false, await requestGpu({ f16: false }));
if (hasF16) devices.set(true, await requestGpu({ f16: true }));
globalThis.addEventListener("unload", () => devices.forEach((gpu) => gpu.destroy()));

async function withGpu(f16: boolean, fn: (gpu: Gpu) => Promise<void>): Promise<void> {
  const gpu = devices.get(f16)!;
  try {
    await fn(gpu);
  } catch (err) {
    gpu.destroy();
    devices.set(f16, await requestGpu({ f16 }));
    throw err;
  }
  gpu.trimScratch();
  assertEquals(gpu.ledger.entries(), []);
}

/** Runs `lin` on x's rows: all at once with perRow, or (`single`) one encode per row. */
async function product(
  gpu: Gpu,
  lin: Linear,
  x: Float32Array,
  rows: number,
  single: boolean,
): Promise<Float32Array> {
  const { inFeatures: k, outFeatures: n } = lin;
  if (single) {
    // A tensor per row (rows of x and y need not start on the binding alignment), all in one
    // submission, gathered into one y for a single readback.
    const y = emptyF32(gpu, "y", rows * n);
    const parts = [];
    const batch = new CommandBatch(gpu);
    for (let r = 0; r < rows; r++) {
      const tx = f32Tensor(gpu, "x row", x.slice(r * k, (r + 1) * k));
      const ty = emptyF32(gpu, "y row", n);
      lin.encode(batch, tx, ty, 1);
      batch.copy(ty, 0, y, r * n * 4, n * 4);
      parts.push(tx, ty);
    }
    batch.submit();
    const got = await gpu.readF32(y);
    for (const t of [...parts, y]) t.destroy();
    return got;
  }
  const tx = f32Tensor(gpu, "x", x);
  const ty = emptyF32(gpu, "y", rows * n);
  const batch = new CommandBatch(gpu);
  lin.encode(batch, tx, ty, rows, { perRow: true });
  batch.submit();
  const got = await gpu.readF32(ty);
  tx.destroy();
  ty.destroy();
  return got;
}

/** x with a few outlier values (|x| ≥ 6) in some rows only, so rows have different lists. */
function activations(rows: number, k: number, seed: number): Float32Array {
  const x = randn(rows * k, seed, X_SCALE);
  for (let r = 0; r < rows; r++) {
    if (r % 3 === 2) continue; // some rows without outliers
    x[r * k + ((7 * r + 3) % k)] = r % 2 ? -9 : 12;
    x[r * k + ((11 * r + 5) % k)] = 7.5;
  }
  return x;
}

const SHAPES = [
  { n: 96, k: 256 }, // wide paths (K % 32 == 0), a partial last workgroup
  { n: 64, k: 1088 }, // the int8 unrolled loop with a remainder
];

for (const f16 of [false, true]) {
  const ignore = f16 && !hasF16;
  const arith = f16 ? "f16" : "f32";

  Deno.test({
    name: `gemv_rows fp16 (${arith}): 2-8 rows equal the CPU twin and one-row GEMVs`,
    ignore,
    fn: () =>
      withGpu(f16, async (gpu) => {
        // The unrolled loop (hardware adapters' default) at K with whole, partial and no
        // unrolled steps per lane; with f16, also x read in every lane instead of staged.
        const cases: { n: number; k: number; tuning?: Fp16Tuning }[] = [
          ...SHAPES,
          { n: 64, k: 66 },
          { n: 33, k: 128 },
          { n: 36, k: 1824, tuning: { gemvUnroll: true } },
          { n: 20, k: 256, tuning: { gemvUnroll: true } },
          ...(f16 ? [{ n: 36, k: 1824, tuning: { gemvUnroll: true, gemvRowsStageX: false } }] : []),
          // four features per lane group, 128 threads
          { n: 38, k: 1824, tuning: { gemvUnroll: true, gemvRowsFeatures: 4 as const } },
          { n: 33, k: 66, tuning: { gemvRowsFeatures: 4 as const, gemvRowsWorkgroupSize: 128 } },
          // one feature per lane group; weights loaded after x is staged
          { n: 37, k: 1824, tuning: { gemvUnroll: true, gemvRowsFeatures: 1 as const } },
          { n: 37, k: 66, tuning: { gemvRowsFeatures: 1 as const } },
          { n: 36, k: 1824, tuning: { gemvUnroll: true, gemvRowsPrefetch: false } },
        ];
        for (const { n, k, tuning } of cases) {
          const w = randomF16(n * k, n + k, W_SCALE);
          const lin = await Fp16Linear.create(gpu, {
            label: "w",
            weight: w.bits,
            outFeatures: n,
            inFeatures: k,
            f16,
            tuning,
          });
          const sigma = Math.sqrt(k) * X_SCALE * W_SCALE;
          for (const rows of [2, 5, 8]) {
            const x = randn(rows * k, rows, X_SCALE);
            const got = await product(gpu, lin, x, rows, false);
            const what = `fp16 ${arith} rows=${rows} ${n}x${k} ${JSON.stringify(tuning ?? {})}`;
            assertClose(got, cpuMatmul(x, w.values, rows, n, k), {
              atol: (f16 ? F16_TOL : F32_TOL) * sigma,
            }, what);
            const one = await product(gpu, lin, x, rows, true);
            assertClose(got, one, { atol: SAME_TOL * sigma }, `${what} vs one-row gemv`);
          }
          lin.destroy();
        }
      }),
  });

  const formats: QuantLinearFormat[] = [
    "int8-vectorwise",
    "int8-absmax",
    "llm-int8",
    "nf4",
    "nf4-dq",
    "fp4",
    "int4",
    "q8_0",
  ];
  for (const format of formats) {
    Deno.test({
      name: `gemv_rows ${format} (${arith}): 2-8 rows equal the per-row CPU twin and one-row GEMVs`,
      ignore,
      fn: () =>
        withGpu(f16, async (gpu) => {
          // Also four features per lane group (128 threads), and for int8 the unrolled loop
          // (hardware adapters' default) with whole and partial unrolled steps. llvmpipe takes
          // 20-40 s to compile each LLM.int8() variant, so that format gets one extra: the
          // unrolled loop with four features, there with the dense outlier sum wherever a row
          // has outliers (int8-absmax's product is vector-wise's kernel; at K = 256 the two
          // outliers of a row take the dense sum by default, at K = 1088 the list walk).
          const unroll = { n: 20, k: 2688, tuning: { gemvUnroll: true } };
          const unroll4 = {
            n: 20,
            k: 2688,
            tuning: { gemvUnroll: true, gemvRowsFeatures: 4 as const },
          };
          const f4w128 = {
            n: 38,
            k: 256,
            tuning: { gemvRowsFeatures: 4 as const, gemvRowsWorkgroupSize: 128 },
          };
          const noPrefetch = { n: 36, k: 1088, tuning: { gemvRowsPrefetch: false } };
          const extra: Record<string, { n: number; k: number; tuning?: QuantTuning }[]> = {
            // with 16 lanes a feature (hardware adapters' default where N > K) as well
            "int8-vectorwise": [unroll, unroll4, f4w128, {
              ...unroll,
              tuning: { ...unroll.tuning, gemvThreadsPerRow: 16 },
            }],
            "int8-absmax": [],
            "llm-int8": [{ ...unroll4, tuning: { ...unroll4.tuning, llmDenseOutliers: 0 } }],
            // 16 lanes a feature (hardware adapters' default where N > K): the reduction in
            // workgroup memory rather than the 32-lane tree in registers
            "q8_0": [f4w128, noPrefetch, { n: 40, k: 1088, tuning: { gemvThreadsPerRow: 16 } }],
          };
          const cases: { n: number; k: number; tuning?: QuantTuning }[] = [
            ...SHAPES,
            ...(extra[format] ?? [f4w128, noPrefetch]),
          ];
          for (const { n, k, tuning } of cases) {
            const wf = f16ArrayToF32(randomF16(n * k, 3 * n + k, W_SCALE).bits);
            const weight = quantize(format, wf, n, k);
            const lin = await QuantLinear.create(gpu, { label: "w", weight, f16, tuning });
            const sigma = Math.sqrt(k) * X_SCALE * W_SCALE;
            for (const rows of [2, 3, 8]) {
              const x = activations(rows, k, 10 * rows + k);
              const got = await product(gpu, lin, x, rows, false);
              const what = `${format} ${arith} rows=${rows} ${n}x${k}`;
              const twin = matmulPerRow(x, rows, weight);
              // The outlier part of LLM.int8() and the f16 paths are the loosest: see above.
              const tol = f16 ? F16_TOL : F32_TOL;
              assertClose(got, twin, { atol: tol * sigma * (format === "llm-int8" ? 4 : 1) }, what);
              const one = await product(gpu, lin, x, rows, true);
              const fourBitF16 = f16 && ["nf4", "nf4-dq", "fp4", "int4"].includes(format);
              assertClose(got, one, {
                atol: (fourBitF16 ? F16_TOL : SAME_TOL) * sigma,
              }, `${what} vs one-row gemv`);
            }
            lin.destroy();
          }
        }),
    });
  }
}

Deno.test({
  name: "gemv_rows llm-int8: each row keeps its own outliers (not the batch's union)",
  fn: () =>
    withGpu(false, async (gpu) => {
      const n = 64;
      const k = 256;
      const rows = 4;
      const weight = quantize(
        "llm-int8",
        f16ArrayToF32(randomF16(n * k, 5, W_SCALE).bits),
        n,
        k,
      );
      const lin = await QuantLinear.create(gpu, { label: "w", weight, f16: false });
      const x = activations(rows, k, 77);
      const got = await product(gpu, lin, x, rows, false);
      const batchTwin = (await import("../../lib/quant/formats.ts")).matmulQuantized(
        x,
        rows,
        weight,
      );
      const perRow = matmulPerRow(x, rows, weight);
      // The two semantics differ on this x, and the kernel follows the per-row one.
      assert(maxAbsDiff(perRow, batchTwin) > 1e-4, "batch and per-row products should differ");
      assert(maxAbsDiff(got, perRow) < maxAbsDiff(got, batchTwin) / 10);
      lin.destroy();
    }),
});

// A hardware adapter builds a multi-row GEMV's pipeline for each row count (the ROWS override),
// a software one keeps one for any count; both must give the same outputs, bit for bit (the
// arithmetic is the same). Q8_0's one-row product is its multi-row GEMV at one row.
for (const f16 of [false, true]) {
  const arith = f16 ? "f16" : "f32";
  const formats = f16 ? ["fp16", "int8-vectorwise", "nf4", "q8_0"] as const : ["fp16"] as const;
  Deno.test({
    name: `gemv_rows (${arith}): a pipeline per row count equals one for any count (${
      formats.join(", ")
    })`,
    ignore: f16 && !hasF16,
    fn: () =>
      withGpu(f16, async (gpu) => {
        const n = 40;
        const k = 1024;
        const w = randomF16(n * k, 11, W_SCALE);
        const wf = f16ArrayToF32(w.bits);
        for (const format of formats) {
          const make = (perCount: boolean): Promise<Linear> =>
            format === "fp16"
              ? Fp16Linear.create(gpu, {
                label: "w",
                weight: w.bits,
                outFeatures: n,
                inFeatures: k,
                f16,
                tuning: { gemvRowsPerCount: perCount, gemvUnroll: true },
              })
              : QuantLinear.create(gpu, {
                label: "w",
                weight: quantize(format, wf, n, k),
                f16,
                tuning: { gemvRowsPerCount: perCount, gemvUnroll: true },
              });
          const [each, any] = [await make(true), await make(false)];
          for (const rows of format === "q8_0" ? [1, 2, 5, 8] : [2, 5, 8]) {
            const x = activations(rows, k, rows);
            const a = await product(gpu, each, x, rows, false);
            const b = await product(gpu, any, x, rows, false);
            assertEquals(maxAbsDiff(a, b), 0, `${format} ${arith} rows=${rows}`);
          }
          each.destroy();
          any.destroy();
        }
      }),
  });
}

Deno.test("RowsKernel: a pipeline for each count asked for, the one for any count otherwise", async () => {
  const gpu = await requestGpu();
  try {
    const spec = { file: "matmul_f16", entry: "gemv_rows", defines: ["K8", "FPT2"] };
    const rows = await RowsKernel.create(gpu, spec, [2, 5]);
    const any = await RowsKernel.create(gpu, spec, []);
    assert(rows.for(2) !== rows.for(5) && rows.for(2) !== rows.for(3));
    assert(rows.for(3) === any.for(3) && any.for(2) === any.for(5), "ROWS = 0 for the others");
    assertEquals(rowsPipelineCounts(gpu, true, 2, 4), [2, 3, 4]);
    assertEquals(rowsPipelineCounts(gpu, false, 2, 4), []);
    assertEquals(rowsPipelineCounts(gpu, undefined, 1, 2), gpu.isSoftware ? [] : [1, 2]);
  } finally {
    gpu.destroy();
  }
});
