import {
  deepStrictEqual as assertEquals,
  ok as assert,
  rejects as assertRejects,
  throws as assertThrows,
} from "node:assert/strict";
import { type Binding, CommandBatch } from "../../lib/gpu/batch.ts";
import { type Gpu, requestGpu } from "../../lib/gpu/device.ts";
import { f16ArrayToF32 } from "../../lib/gpu/f16.ts";
import {
  QuantLinear,
  quantLinearFactory,
  type QuantLinearFormat,
  type QuantTuning,
} from "../../lib/kernels/quant_linear.ts";
import {
  matmulQuantized,
  packedBytes,
  quantize,
  type QuantizedWeight,
  type QuantOptions,
} from "../../lib/quant/formats.ts";
import { findOutlierColumns } from "../../lib/quant/llm_int8.ts";
import { createElementwise } from "../../lib/kernels/elementwise.ts";
import { assertClose, maxAbsDiff, randn, uniform } from "../helpers/random.ts";
import { emptyF32, f32Tensor, hasF16, onGl, randomF16 } from "./_gpu.ts";

// One device per arithmetic for the whole file: a software adapter JIT-compiles each pipeline
// on its first dispatch (0.5 s per GEMM on lavapipe, several on GL), so a device per test would
// pay for the same kernels again and again. Leaks are still caught after every test.
const devices = new Map<boolean, Gpu>();
devices.set(false, await requestGpu({ f16: false }));
if (hasF16) devices.set(true, await requestGpu({ f16: true }));
globalThis.addEventListener("unload", () => devices.forEach((gpu) => gpu.destroy()));

async function withGpu(opts: { f16: boolean }, fn: (gpu: Gpu) => Promise<void>): Promise<void> {
  const gpu = devices.get(opts.f16)!;
  try {
    await fn(gpu);
  } catch (err) {
    // A failed test leaves its layers behind: give the next tests a clean device.
    gpu.destroy();
    devices.set(opts.f16, await requestGpu({ f16: opts.f16 }));
    throw err;
  }
  gpu.trimScratch();
  assertEquals(gpu.ledger.entries(), []);
}

// Every format's GPU product against its CPU twin (`matmulQuantized`). Errors are measured in
// units of an output's natural scale σ_y = sqrt(K)·rms(x)·rms(w).
//
// - int8 formats (integer part): the activation codes are computed with the twin's exact f32
//   steps (the kernel divides 127/absmax in integer arithmetic to be correctly rounded) and the
//   int8 products are exact i32 sums, so the int8 part is the same f32 number up to the order of
//   the rescale's two f32 multiplies, which the shader compiler may reassociate. Measured: the
//   same i32 sums, y within 2 ulp on lavapipe and GL, bit-equal on an H100; allowed 1e-6·|y| + 1e-7·σ_y. One differing
//   activation code would move y by ~1e-3·|y|.
// - llm-int8 outlier part: the twin sums f16(x)·w in f64 (w = code·sw/127, or a kept f16
//   weight). The GEMV's dense sum is exact in integers, scaled once in f32; the list walk (and
//   GEMM, multi-row GEMV) sums in f32 or, with F16, multiplies in f16 with w rounded to f16
//   (relative 2⁻¹¹ per product, twice). In units of σ_o = sqrt(C)·rms(x_outlier)·rms(w): f32
//   ≤ 1e-6 allowed 1e-5; f16 allowed 5e-3.
// - 4-bit and q8_0, f32: the twin sums x·table[code] per block in f64, the kernel in f32
//   (GEMM: the dequantized weight table·absmax rounded to f32 first). Allowed 2e-5·σ_y, as the
//   FP16 kernels.
// - 4-bit and q8_0, f16: the GEMVs round x to f16 and take 4-term f16 dots, as the FP16 kernels'
//   f16 path. Allowed 5e-3·σ_y. The GEMM (gemm_outer) is f32 arithmetic on both paths and is
//   held to 2e-5·σ_y.
const X_SCALE = 1;
const W_SCALE = 0.05;
const INT8_RTOL = 1e-6;
const INT8_ATOL = 1e-7;
const OUTLIER_F32_TOL = 1e-5;
const OUTLIER_F16_TOL = 5e-3;
const F32_TOL = 2e-5;
const F16_TOL = 5e-3;

const INT8: QuantLinearFormat[] = ["int8-vectorwise", "int8-absmax", "llm-int8"];
const FOUR_BIT: QuantLinearFormat[] = ["nf4", "fp4", "int4", "nf4-dq"];

interface Case {
  rows: number;
  n: number;
  k: number;
  options?: QuantOptions;
  /** Launch shapes (default: the layer's defaults). */
  tuning?: QuantTuning;
  maxBindingBytes?: number;
  /** Columns of x to set to ±OUTLIER in some rows. */
  outlierCols?: number[];
  /** Activations to use instead of random ones. */
  x?: Float32Array;
}

const OUTLIER = 20;

function activations(rows: number, k: number, seed: number, cols: number[] = []): Float32Array {
  const x = randn(rows * k, seed, X_SCALE);
  cols.forEach((c, i) => {
    // every other row, alternating signs: an outlier column need not be large in every row
    for (let m = i % 2; m < rows; m += 2) x[m * k + c] = (m % 3 ? -1 : 1) * (OUTLIER + i);
  });
  return x;
}

async function run(
  gpu: Gpu,
  lin: QuantLinear,
  x: Float32Array,
  rows: number,
): Promise<Float32Array> {
  const tx = f32Tensor(gpu, "x", x);
  const ty = emptyF32(gpu, "y", rows * lin.outFeatures);
  const batch = new CommandBatch(gpu);
  lin.encode(batch, tx, ty, rows);
  batch.submit();
  const got = await gpu.readF32(ty);
  tx.destroy();
  ty.destroy();
  return got;
}

function outlierScale(x: Float32Array, rows: number, k: number, threshold: number): number {
  const cols = findOutlierColumns(x, rows, k, threshold).columns;
  if (cols.length === 0) return 0;
  let s = 0;
  for (let m = 0; m < rows; m++) for (const c of cols) s += x[m * k + c] ** 2;
  return Math.sqrt(s / rows) * W_SCALE;
}

/** Checks one product; returns the worst error in units of σ_y. */
async function check(
  gpu: Gpu,
  format: QuantLinearFormat,
  f16: boolean,
  c: Case,
  seed: number,
): Promise<number> {
  const { rows, n, k, options = {} } = c;
  const w = randn(n * k, seed, W_SCALE);
  const x = c.x ?? activations(rows, k, seed + 1, c.outlierCols);
  const weight = quantize(format, w, n, k, options);
  const lin = await QuantLinear.create(gpu, {
    label: `${format} ${n}x${k}`,
    weight,
    f16,
    threshold: options.threshold,
    outlierWeights: options.outlierWeights,
    maxBindingBytes: c.maxBindingBytes,
    tuning: c.tuning,
  });
  assertEquals(lin.weightBytes, packedBytes(weight));
  const got = await run(gpu, lin, x, rows);
  const want = matmulQuantized(x, rows, weight, options);
  const sigma = Math.sqrt(k) * X_SCALE * W_SCALE;
  const what = `${format} ${f16 ? "f16" : "f32"} rows=${rows} N=${n} K=${k} ` +
    `chunks=${lin.chunks.length} ${JSON.stringify(options)}${c.x ? " (x given)" : ""}`;
  if (INT8.includes(format)) {
    const threshold = format === "llm-int8" ? options.threshold ?? 6 : 0;
    const outl = threshold > 0 ? outlierScale(x, rows, k, threshold) : 0;
    const atol = INT8_ATOL * sigma + (f16 ? OUTLIER_F16_TOL : OUTLIER_F32_TOL) * outl;
    assertClose(got, want, { atol, rtol: INT8_RTOL }, what);
    if (threshold > 0) {
      const cpu = findOutlierColumns(x, rows, k, threshold).columns;
      assertEquals(await lin.readOutlierColumns(), cpu, `${what}: outlier columns`);
    }
  } else {
    // gemm_outer sums in f32 on either path (x and the decoded weights widened to f32).
    const outer = rows > 1;
    assertClose(got, want, { atol: (f16 && !outer ? F16_TOL : F32_TOL) * sigma }, what);
  }
  lin.destroy();
  return maxAbsDiff(got, want) / sigma;
}

// GEMV (rows 1) and GEMM (5, 33: ragged tiles), K and N off the tile sizes.
const CASES: Record<string, Case[]> = {
  int8: [
    { rows: 1, n: 130, k: 68 }, // K % 16 != 0: one word per load
    { rows: 1, n: 67, k: 256 }, // K % 16 == 0: vec4 loads
    // four units per step (the GPUs' default): whole steps, and whole steps plus a tail
    { rows: 1, n: 67, k: 4096, tuning: { gemvUnroll: true } },
    { rows: 1, n: 33, k: 2064, tuning: { gemvUnroll: true } },
    // 16 lanes a feature (hardware adapters' default where N > K for int8-vectorwise/-absmax)
    { rows: 1, n: 67, k: 2064, tuning: { gemvUnroll: true, gemvThreadsPerRow: 16 } },
    { rows: 5, n: 130, k: 68 },
    { rows: 33, n: 70, k: 100 },
  ],
  fourBit: [
    { rows: 1, n: 130, k: 256 }, // K % 32 == 0: vec4 loads; 520 blocks (nf4-dq: 3 nested)
    { rows: 1, n: 70, k: 96 }, // K % 32 == 0 with 3 units, fewer than the threads per row
    { rows: 1, n: 40, k: 96, options: { blocksize: 128 } }, // blocks spanning rows
    { rows: 1, n: 40, k: 2080, options: { blocksize: 32 } }, // 65 units: x in a second, short tile
    { rows: 1, n: 64, k: 66 }, // rows start mid-word
    { rows: 1, n: 96, k: 200, options: { blocksize: 32 } },
    { rows: 5, n: 64, k: 66 },
    { rows: 33, n: 96, k: 200, options: { blocksize: 128 } },
    { rows: 5, n: 130, k: 256 },
    // gemm_outer: one row past a 128-row tile, features past a 128-wide one, blocks spanning
    // rows; the 64-row tiles (K % 8 != 0 above: weight by weight)
    { rows: 130, n: 132, k: 48, options: { blocksize: 64 } },
    { rows: 70, n: 40, k: 96, tuning: { gemmOuterRows: 64 } },
    // K steps of 32, two buffers (64 rows: at 128 the tiles and the code table pass 32 KiB)
    { rows: 130, n: 132, k: 48, tuning: { gemmOuterK32: true, gemmOuterRows: 64 } },
    { rows: 70, n: 132, k: 96, tuning: { gemmOuterDoubleBuffer: true, gemmOuterRows: 64 } },
    // Halves summing alternate K steps (three steps: the second half's last lies past K)
    { rows: 70, n: 132, k: 48, tuning: { gemmOuterSplitK: true, gemmOuterRows: 64 } },
    // split across workgroups: three copies of K = 96 (two steps each), and their sum
    { rows: 70, n: 132, k: 96, tuning: { gemmOuterSpread: 3, gemmOuterRows: 64 } },
    // 64-row tiles beside the 128-row ones: taken at 33 rows and at 130 (three tiles of 64)
    { rows: 33, n: 132, k: 96, tuning: { gemmOuterShortTiles: true } },
    { rows: 130, n: 40, k: 48, tuning: { gemmOuterShortTiles: true, gemmOuterSpread: 2 } },
  ],
  q8_0: [
    { rows: 1, n: 130, k: 96 },
    { rows: 5, n: 67, k: 64 },
    { rows: 33, n: 70, k: 160 },
    { rows: 130, n: 131, k: 64 },
    { rows: 70, n: 67, k: 96, tuning: { gemmOuterRows: 64 } },
    { rows: 130, n: 67, k: 96, tuning: { gemmOuterK32: true, gemmOuterRows: 64 } },
    { rows: 70, n: 67, k: 160, tuning: { gemmOuterDoubleBuffer: true, gemmOuterRows: 64 } },
    { rows: 70, n: 67, k: 96, tuning: { gemmOuterSplitK: true, gemmOuterRows: 64 } },
    { rows: 33, n: 70, k: 160, tuning: { gemmOuterSpread: 4 } },
    { rows: 33, n: 70, k: 160, tuning: { gemmOuterShortTiles: true } },
  ],
};

function suite(f16: boolean): void {
  const tag = f16 ? "f16 arithmetic" : "f32 arithmetic";
  const ignore = f16 && !hasF16;
  const groups: [string, QuantLinearFormat[], Case[]][] = [
    ["int8 formats", INT8, CASES.int8],
    ["4-bit formats", FOUR_BIT, CASES.fourBit],
    ["q8_0", ["q8_0"], CASES.q8_0],
  ];
  for (const [name, formats, cases] of groups) {
    Deno.test({
      name: `QuantLinear ${name} (${tag}) match their CPU twins, GEMV and GEMM`,
      ignore,
      fn: () =>
        withGpu({ f16 }, async (gpu) => {
          for (const format of formats) {
            let worst = 0;
            for (const [i, c] of cases.entries()) {
              if (onGl && c.tuning?.gemmOuterSplitK) {
                console.log(`  GL: ${JSON.stringify(c.tuning)} runs in the Vulkan pass only`);
                continue;
              }
              worst = Math.max(worst, await check(gpu, format, f16, c, 100 + i));
            }
            console.log(`  ${format}: worst |error| / σ_y = ${worst.toExponential(2)}`);
          }
        }),
    });
  }

  Deno.test({
    name: `QuantLinear llm-int8 (${tag}) decomposes injected outlier columns like the CPU`,
    ignore,
    fn: () =>
      withGpu({ f16 }, async (gpu) => {
        const outlierCols = [3, 17, 64, 65];
        for (const rows of [1, 5, 33]) {
          for (const k of [68, 256]) {
            await check(gpu, "llm-int8", f16, {
              rows,
              n: 70,
              k,
              outlierCols,
              options: { threshold: 3 },
            }, 200 + rows + k);
            // FP16 copies of some outlier columns (the paper's variant)
            await check(gpu, "llm-int8", f16, {
              rows,
              n: 70,
              k,
              outlierCols,
              options: { threshold: 3, fp16Columns: [3, 64, 66], outlierWeights: "fp16" },
            }, 300 + rows + k);
          }
        }
      }),
  });

  Deno.test({
    name: `QuantLinear int8 (${tag}) quantizes one row over several workgroups like the CPU`,
    ignore,
    fn: () =>
      withGpu({ f16 }, async (gpu) => {
        // quantize_row codes 1024 values per workgroup: K = 4096 takes 4 workgroups, K = 1028
        // (257 words) 2, the second with one word. Outliers straddle the segment boundaries.
        const injected: Record<number, number[]> = {
          4096: [0, 5, 1023, 1024, 1030, 2047, 2048, 3071, 4092, 4095],
          1028: [1, 1023, 1024, 1027],
        };
        for (const k of [4096, 1028]) {
          const seed = 500 + k;
          for (const format of INT8) await check(gpu, format, f16, { rows: 1, n: 70, k }, seed);
          const cols = injected[k];
          const x = randn(k, seed + 7, X_SCALE);
          cols.forEach((c, i) => x[c] = (i % 2 ? -1 : 1) * (OUTLIER + i));
          // threshold 6: no outlier in N(0, 1) values (absent), then the injected ones only
          await check(gpu, "llm-int8", f16, { rows: 1, n: 70, k }, seed + 1);
          await check(gpu, "llm-int8", f16, { rows: 1, n: 70, k, x }, seed + 2);
          // threshold 2: natural outliers too (~5%), some with FP16 copies
          const fp16Columns = [cols[1], cols[2], 7, k - 1];
          for (const outlierWeights of ["dequantized", "fp16"] as const) {
            const options: QuantOptions = { threshold: 2, fp16Columns, outlierWeights };
            await check(gpu, "llm-int8", f16, { rows: 1, n: 70, k, x, options }, seed + 3);
          }
          // threshold 0.25: most columns are outliers, every workgroup scans many
          const options = { threshold: 0.25, fp16Columns, outlierWeights: "fp16" } as const;
          await check(gpu, "llm-int8", f16, { rows: 1, n: 70, k, x, options }, seed + 4);
          // the int8 formats at the same x (one huge value sets the absmax)
          for (const format of ["int8-vectorwise", "int8-absmax"] as const) {
            await check(gpu, format, f16, { rows: 1, n: 70, k, x }, seed + 5);
          }
        }
      }),
  });

  Deno.test({
    name: `QuantLinear llm-int8 (${tag}) sums outliers densely or from their list alike`,
    ignore,
    fn: () =>
      withGpu({ f16 }, async (gpu) => {
        // llmDenseOutliers 0: the dense sum (digit planes) wherever there are outliers; 1025:
        // the list walk. K = 256 one step per lane, 4096 whole unrolled steps, 2064 a tail.
        for (const llmDenseOutliers of [0, 1025]) {
          for (const k of [256, 4096, 2064]) {
            const tuning: QuantTuning = { llmDenseOutliers, gemvUnroll: k > 256 };
            const x = randn(k, 600 + k, X_SCALE);
            [1, 17, 200, k - 1].forEach((c, i) => x[c] = (i % 2 ? -1 : 1) * (OUTLIER + 0.37 * i));
            // threshold 6: the injected outliers (digits of f16(x) · 2^8); 2: ~5% natural ones
            // too; 0.01: most columns, digits of f16(x) · 2^17 up to 2^22
            for (const threshold of [6, 2, 0.01]) {
              const options = { threshold };
              await check(gpu, "llm-int8", f16, { rows: 1, n: 70, k, x, tuning, options }, 610 + k);
            }
            // an outlier past the digits' range (30000 · 2^8 > 2^22): the list walk takes over
            const big = x.slice();
            big[200] = 30000;
            const options = { threshold: 6 };
            await check(
              gpu,
              "llm-int8",
              f16,
              { rows: 1, n: 70, k, x: big, tuning, options },
              620 + k,
            );
          }
        }
      }),
  });

  Deno.test({
    name: `QuantLinear (${tag}) splits code arrays larger than one binding`,
    ignore,
    fn: () =>
      withGpu({ f16 }, async (gpu) => {
        // 130 rows in 1-2 KiB bindings: several chunks, 256-byte aligned offsets
        for (const rows of [1, 5]) {
          for (const format of ["int8-vectorwise", "llm-int8", "q8_0"] as const) {
            const llm = format === "llm-int8";
            await check(gpu, format, f16, {
              rows,
              n: 130,
              k: 64,
              maxBindingBytes: 2048,
              outlierCols: llm ? [5] : [],
              options: llm ? { threshold: 3 } : {},
            }, 400);
          }
          for (const format of ["nf4", "nf4-dq"] as const) {
            await check(gpu, format, f16, { rows, n: 130, k: 64, maxBindingBytes: 1024 }, 401);
            await check(gpu, format, f16, { rows, n: 96, k: 40, maxBindingBytes: 1536 }, 402);
          }
        }
      }),
  });

  Deno.test({
    name: `QuantLinear 4-bit GEMV (${tag}) at other launch shapes`,
    ignore,
    fn: () =>
      withGpu({ f16 }, async (gpu) => {
        const tunings: QuantTuning[] = [
          { gemvRowsPerThread: 8 },
          { gemvWorkgroupSize: 128, gemvThreadsPerRow: 8, gemvRowsPerThread: 8 },
          { gemvWorkgroupSize: 64, gemvThreadsPerRow: 64 },
        ];
        for (const tuning of tunings) {
          const cases: Case[] = [
            { rows: 1, n: 70, k: 2080, tuning }, // K % 32 == 0, two x tiles at 32 threads per row
            { rows: 1, n: 72, k: 200, tuning }, // any K
          ];
          for (const format of FOUR_BIT) {
            for (const [i, c] of cases.entries()) {
              await check(gpu, format, f16, c, 600 + i).catch((err: Error) => {
                throw new Error(`${JSON.stringify(tuning)}: ${err.message}`);
              });
            }
          }
          // several chunks of codes
          await check(
            gpu,
            "nf4-dq",
            f16,
            { rows: 1, n: 130, k: 64, maxBindingBytes: 1024, tuning },
            602,
          );
        }
        // The f16 path's variants (K % 32 == 0 only): loads a step ahead, the per-bank table;
        // two rows per thread group (the f32 path's loops take any count: one case there).
        const variants: QuantTuning[] = f16
          ? [
            { gemvPrefetch: true },
            { gemvTable: "banked" },
            { gemvPrefetch: true, gemvTable: "banked", gemvRowsPerThread: 8 },
            { gemvWorkgroupSize: 256, gemvThreadsPerRow: 128, gemvPrefetch: true },
            { gemvRowsPerThread: 2 },
            { gemvRowsPerThread: 2, gemvThreadsPerRow: 16, gemvPrefetch: true },
            { gemvFullX: true },
            { gemvFullX: true, gemvThreadsPerRow: 64, gemvRowsPerThread: 2 },
          ]
          : [{ gemvRowsPerThread: 2 }];
        if (f16) {
          // x staged whole in the middle table (4096 < K ≤ 11264; the largest, for K ≤ 16384,
          // needs more than a software adapter's 32 KiB of workgroup memory)
          await check(gpu, "nf4", f16, {
            rows: 1,
            n: 20,
            k: 4160,
            tuning: { gemvFullX: true },
          }, 604);
        }
        for (const tuning of variants) {
          for (const format of f16 ? ["nf4", "nf4-dq"] as const : ["nf4"] as const) {
            await check(gpu, format, f16, { rows: 1, n: 70, k: 2080, tuning }, 603).catch(
              (err: Error) => {
                throw new Error(`${JSON.stringify(tuning)}: ${err.message}`);
              },
            );
          }
        }
      }),
  });
}

suite(false);
suite(true);
if (!hasF16) {
  console.log("shader-f16 is not offered by this adapter: the f16-arithmetic tests are ignored");
}

Deno.test("QuantLinear llm-int8 threshold is a runtime setting", async () => {
  await withGpu({ f16: false }, async (gpu) => {
    const [rows, n, k] = [5, 40, 64];
    const weight = quantize("llm-int8", randn(n * k, 7, W_SCALE), n, k);
    const x = activations(rows, k, 8, [9, 30]);
    const lin = await QuantLinear.create(gpu, { label: "sweep", weight, f16: false });
    assertEquals(lin.threshold, 6);
    for (const threshold of [0, 3, 6, 25]) {
      lin.setThreshold(threshold);
      const got = await run(gpu, lin, x, rows);
      const want = matmulQuantized(x, rows, weight, { threshold });
      const outl = threshold > 0 ? outlierScale(x, rows, k, threshold) : 0;
      const sigma = Math.sqrt(k) * X_SCALE * W_SCALE;
      assertClose(got, want, {
        atol: INT8_ATOL * sigma + OUTLIER_F32_TOL * outl,
        rtol: INT8_RTOL,
      }, `threshold ${threshold}`);
      const cols = await lin.readOutlierColumns();
      assertEquals(
        cols,
        threshold > 0 ? findOutlierColumns(x, rows, k, threshold).columns : new Uint32Array(0),
      );
    }
    assertThrows(() => lin.setThreshold(-1), /threshold/);
    lin.destroy();
  });
});

Deno.test("QuantLinear ledger: weights equal packedBytes, all freed on destroy", async () => {
  await withGpu({ f16: false }, async (gpu) => {
    const [n, k] = [96, 128];
    const w = randn(n * k, 9, W_SCALE);
    const formats: QuantLinearFormat[] = [...INT8, "q8_0", ...FOUR_BIT];
    for (const format of formats) {
      const weight: QuantizedWeight = quantize(format, w, n, k);
      const lin = await QuantLinear.create(gpu, { label: format, weight, f16: false });
      // nf4-dq adds the 1 KiB dynamic map once per device (shared by all its layers)
      const shared = format === "nf4-dq" ? 1024 : 0;
      assertEquals(gpu.ledger.bytesIn("weights"), packedBytes(weight) + shared, format);
      assertEquals(lin.weightBytes, packedBytes(weight), format);
      await run(gpu, lin, randn(3 * k, 10), 3); // creates the shared int8 scratch
      lin.destroy();
      assertEquals(gpu.ledger.bytesIn("weights"), 0, `${format} after destroy`);
      assertEquals(gpu.ledger.bytesIn("scratch") - uniformBytes(gpu), 0, `${format} scratch`);
    }
  });
});

function uniformBytes(gpu: Gpu): number {
  return gpu.ledger.entries().filter((e) => e.label === "uniform parameters")
    .reduce((s, e) => s + e.bytes, 0);
}

Deno.test("quantLinearFactory quantizes f16 bits on the CPU and builds the layer", async () => {
  await withGpu({ f16: false }, async (gpu) => {
    const [rows, n, k] = [3, 64, 128];
    const bits = randomF16(n * k, 11, W_SCALE).bits;
    const x = randn(rows * k, 12);
    for (const format of ["nf4", "llm-int8", "q8_0"] as const) {
      const factory = quantLinearFactory(format, { blocksize: 64, f16: false });
      const lin = await factory(gpu, {
        name: `model.layers.0.mlp.${format}`,
        layer: 0,
        kind: "mlp.up_proj",
        weight: bits,
        outFeatures: n,
        inFeatures: k,
      });
      assert(lin instanceof QuantLinear);
      const want = matmulQuantized(x, rows, quantize(format, f16ArrayToF32(bits), n, k));
      const got = await run(gpu, lin, x, rows);
      const sigma = Math.sqrt(k) * W_SCALE;
      assertClose(got, want, { atol: F32_TOL * sigma }, `factory ${format}`);
      lin.destroy();
    }
    const fp16 = await quantLinearFactory("fp16", { f16: false })(gpu, {
      name: "fp16",
      layer: 0,
      kind: "mlp.up_proj",
      weight: bits,
      outFeatures: n,
      inFeatures: k,
    });
    assertEquals(fp16.format, "fp16");
    assertEquals(fp16.weightBytes, n * k * 2);
    fp16.destroy();
  });
});

Deno.test("QuantLinear rejects fp16 weights, f16 without shader-f16, bad thresholds", async () => {
  await withGpu({ f16: false }, async (gpu) => {
    const w = randn(64, 13);
    await assertRejects(
      QuantLinear.create(gpu, { label: "fp16", weight: quantize("fp16", w, 2, 32) }),
      /Fp16Linear/,
    );
    await assertRejects(
      QuantLinear.create(gpu, { label: "f16", weight: quantize("q8_0", w, 2, 32), f16: true }),
      /shader-f16/,
    );
    await assertRejects(
      QuantLinear.create(gpu, {
        label: "thr",
        weight: quantize("llm-int8", w, 2, 32),
        threshold: -1,
      }),
      /threshold/,
    );
    // the tiles of 128 rows with K steps of 32, and the 4-bit code table on top
    const limit = gpu.limits.maxComputeWorkgroupStorageSize;
    if (limit < 32768 + 64) {
      await assertRejects(
        QuantLinear.create(gpu, {
          label: "tiles",
          weight: quantize("nf4", w, 2, 32),
          tuning: { gemmOuterK32: true },
        }),
        RangeError,
        `tiles: gemm_outer tiles of 128 rows, K step 32, 1 buffer(s) and 64 bytes of its own ` +
          `need 32832 bytes of workgroup storage; this adapter offers ${limit}`,
      );
    } else {
      console.log(
        `  this adapter offers ${limit} bytes of workgroup storage: the tile limit is not met`,
      );
    }
    const lin = await QuantLinear.create(gpu, { label: "nf4", weight: quantize("nf4", w, 2, 32) });
    assert(lin.format === "nf4");
    assertThrows(() => lin.setThreshold(3), /no outlier decomposition/);
    lin.destroy();
  });
});

// Activations whose values sit on the codes' rounding boundaries: each row has one value ±A
// (its absmax) and the others round((j + ½) / s) with s = 127 / A in f32, so v · s lands on a
// tie (or an ulp from one) and a scale one ulp off the CPU's would move many codes; y shows a
// moved code at ~1e-4·σ_y, far above the int8 tolerance.
function boundaryActivations(amaxes: number[], k: number, seed: number): Float32Array {
  const rows = amaxes.length;
  const x = new Float32Array(rows * k);
  const r = randn(rows * k, seed);
  amaxes.forEach((a, m) => {
    const s = Math.fround(127 / a);
    for (let i = 0; i < k; i++) {
      const j = Math.floor(Math.abs(r[m * k + i]) * 1e4) % 127;
      x[m * k + i] = Math.sign(r[m * k + i]) * Math.fround((j + 0.5) / s);
    }
    x[m * k + (37 * m + 5) % k] = m % 2 ? -a : a;
  });
  return x;
}

// Absmaxes across exponents, with mantissas on both sides of 127/128 (where the integer division
// in scale127 takes 40 rather than 41 quotient bits), and a few random ones.
const BOUNDARY_AMAXES = [
  1,
  0.7,
  0.9921875,
  Math.fround(0.9921875 * (1 + 2 ** -23)),
  Math.fround(0.9921875 * (1 - 2 ** -24)),
  3.3,
  1234.5,
  2.5e-3,
  5e-30,
  ...Array.from(uniform(5, 77, 0.1, 20), (v) => Math.fround(v)),
];

Deno.test("QuantLinear int8 codes are the CPU's on rounding boundaries (scale127)", async () => {
  await withGpu({ f16: false }, async (gpu) => {
    const [n, k] = [34, 1028];
    const weights = new Map(
      INT8.map((f) => [f, quantize(f, randn(n * k, 810, W_SCALE), n, k, { threshold: 0 })]),
    );
    // one row per absmax (quantize_row), then all rows at once (quantize; absmax: the largest)
    const sets = [...BOUNDARY_AMAXES.map((a) => [a]), BOUNDARY_AMAXES];
    for (const format of INT8) {
      const weight = weights.get(format)!;
      const lin = await QuantLinear.create(gpu, {
        label: format,
        weight,
        f16: false,
        threshold: 0,
      });
      for (const [i, amaxes] of sets.entries()) {
        const rows = amaxes.length;
        const x = boundaryActivations(amaxes, k, 800 + i);
        const got = await run(gpu, lin, x, rows);
        const want = matmulQuantized(x, rows, weight, { threshold: 0 });
        for (let m = 0; m < rows; m++) {
          // the int8 tolerance at this row's scale (σ_y with rms(x) ≤ A)
          const sigma = Math.sqrt(k) * amaxes[m] * W_SCALE;
          const row = (v: Float32Array) => v.subarray(m * n, (m + 1) * n);
          assertClose(
            row(got),
            row(want),
            { atol: INT8_ATOL * sigma, rtol: INT8_RTOL },
            `${format} A=${amaxes[m]} rows=${rows}`,
          );
        }
      }
      lin.destroy();
    }
  });
});

// --- reuseInput: the int8 formats skip quantizing x when the shared scratch holds it ----------

interface Layer {
  lin: QuantLinear;
  weight: QuantizedWeight;
  options: QuantOptions;
}

async function int8Layer(
  gpu: Gpu,
  format: QuantLinearFormat,
  n: number,
  k: number,
  seed: number,
  options: QuantOptions = {},
): Promise<Layer> {
  const weight = quantize(format, randn(n * k, seed, W_SCALE), n, k, options);
  const lin = await QuantLinear.create(gpu, {
    label: `${format} ${n}x${k} #${seed}`,
    weight,
    f16: false,
    threshold: options.threshold,
    outlierWeights: options.outlierWeights,
  });
  return { lin, weight, options };
}

/** Checks y of `layer` for `x` against the CPU twin (and the outlier list), at the int8 tolerances. */
async function checkAgainstCpu(
  layer: Layer,
  x: Float32Array,
  rows: number,
  got: Float32Array,
  what: string,
): Promise<void> {
  const { lin, weight, options } = layer;
  const k = lin.inFeatures;
  const want = matmulQuantized(x, rows, weight, options);
  const sigma = Math.sqrt(k) * X_SCALE * W_SCALE;
  const threshold = lin.format === "llm-int8" ? lin.threshold : 0;
  const outl = threshold > 0 ? outlierScale(x, rows, k, threshold) : 0;
  assertClose(
    got,
    want,
    { atol: INT8_ATOL * sigma + OUTLIER_F32_TOL * outl, rtol: INT8_RTOL },
    what,
  );
  if (threshold > 0) {
    const cpu = findOutlierColumns(x, rows, k, threshold).columns;
    assertEquals(await lin.readOutlierColumns(), cpu, `${what}: outlier columns`);
  }
}

/** Encodes one product per entry into one batch; returns y of each and the dispatches each added. */
async function encodeAll(
  gpu: Gpu,
  products: { lin: QuantLinear; x: Binding; rows: number; reuse?: boolean }[],
): Promise<{ ys: Float32Array[]; dispatches: number[] }> {
  const batch = new CommandBatch(gpu);
  const ys = products.map((p) => emptyF32(gpu, "y", p.rows * p.lin.outFeatures));
  const dispatches: number[] = [];
  products.forEach((p, i) => {
    const before = batch.dispatchCount;
    p.lin.encode(batch, p.x, ys[i], p.rows, p.reuse ? { reuseInput: true } : undefined);
    dispatches.push(batch.dispatchCount - before);
  });
  batch.submit();
  const out = [];
  for (const y of ys) {
    out.push(await gpu.readF32(y));
    y.destroy();
  }
  return { ys: out, dispatches };
}

/** Activation-side dispatches of one int8 product without reuse. */
function activationDispatches(format: QuantLinearFormat, rows: number): number {
  return rows === 1 || format === "int8-vectorwise" ? 1 : 2;
}

Deno.test("QuantLinear int8: dispatches per product, and reuseInput skips the quantization", async () => {
  await withGpu({ f16: false }, async (gpu) => {
    const k = 1028;
    for (const format of INT8) {
      const options: QuantOptions = format === "llm-int8" ? { threshold: 3 } : {};
      // q, k, v: three layers of the same K reading one x; the second and third reuse it
      const layers = [
        await int8Layer(gpu, format, 40, k, 600, options),
        await int8Layer(gpu, format, 70, k, 601, options),
        await int8Layer(gpu, format, 36, k, 602, options),
      ];
      for (const rows of [1, 5]) {
        const x = activations(rows, k, 603 + rows, [3, 17, 1024, 1027]);
        const tx = f32Tensor(gpu, "x", x);
        const what = `${format} rows=${rows}`;
        const reused = await encodeAll(gpu, [
          { lin: layers[0].lin, x: tx, rows },
          { lin: layers[1].lin, x: tx, rows, reuse: true },
          { lin: layers[2].lin, x: tx, rows, reuse: true },
        ]);
        // today's counts: rows = 1, 2 per product (was 3 for int8-absmax and llm-int8)
        const act = activationDispatches(format, rows);
        assertEquals(reused.dispatches, [act + 1, 1, 1], `${what}: dispatches`);
        for (const [i, layer] of layers.entries()) {
          await checkAgainstCpu(layer, x, rows, reused.ys[i], `${what}: layer ${i}`);
        }
        for (const [i, layer] of layers.entries()) {
          // the same y as a product of its own, bit for bit
          const fresh = await encodeAll(gpu, [{ lin: layer.lin, x: tx, rows }]);
          assertEquals(fresh.dispatches, [act + 1]);
          assertEquals(reused.ys[i], fresh.ys[0], `${what}: layer ${i} reused vs fresh`);
        }
        // the outlier list of a reusing layer comes from the first; it is gone once the first
        // runs another product
        if (format === "llm-int8") {
          await encodeAll(gpu, [
            { lin: layers[0].lin, x: tx, rows },
            { lin: layers[1].lin, x: tx, rows, reuse: true },
          ]);
          await encodeAll(gpu, [{ lin: layers[0].lin, x: tx, rows }]);
          await assertRejects(layers[1].lin.readOutlierColumns(), /reused the outlier list/);
        }
        tx.destroy();
      }
      for (const l of layers) l.lin.destroy();
    }
  });
});

Deno.test("QuantLinear int8 reuseInput with another x (or settings) still quantizes", async () => {
  await withGpu({ f16: false }, async (gpu) => {
    const k = 1028;
    const x1 = activations(5, k, 700, [3, 1024]);
    const x2 = activations(5, k, 701, [17, 1027]);
    // both in one buffer too, the second at a 256-byte aligned offset
    const offset = Math.ceil(x1.byteLength / 256) * 256;
    const both = new Float32Array(offset / 4 + x2.length);
    both.set(x1);
    both.set(x2, offset / 4);
    const t1 = f32Tensor(gpu, "x1", x1);
    const t2 = f32Tensor(gpu, "x2", x2);
    const tb = f32Tensor(gpu, "x1|x2", both);
    const r1: Binding = { tensor: tb, offset: 0, size: x1.byteLength };
    const r2: Binding = { tensor: tb, offset, size: x2.byteLength };
    for (const format of INT8) {
      const options: QuantOptions = format === "llm-int8" ? { threshold: 3 } : {};
      const a = await int8Layer(gpu, format, 40, k, 710, options);
      const b = await int8Layer(gpu, format, 70, k, 711, options);
      for (const rows of [1, 5]) {
        const act = activationDispatches(format, rows);
        const what = `${format} rows=${rows}`;
        const first = (x: Float32Array) => x.subarray(0, rows * k);
        // a different tensor, then a different offset of one tensor: b quantizes x2 itself
        for (const [xa, xb] of [[t1, t2], [r1, r2]]) {
          const got = await encodeAll(gpu, [
            { lin: a.lin, x: xa, rows },
            { lin: b.lin, x: xb, rows, reuse: true },
          ]);
          assertEquals(got.dispatches, [act + 1, act + 1], what);
          await checkAgainstCpu(b, first(x2), rows, got.ys[1], `${what}: other x`);
          await checkAgainstCpu(a, first(x1), rows, got.ys[0], `${what}: first x`);
        }
        // the same binding in another batch: nothing held from this batch
        await encodeAll(gpu, [{ lin: a.lin, x: t2, rows }]);
        const later = await encodeAll(gpu, [{ lin: b.lin, x: t2, rows, reuse: true }]);
        assertEquals(later.dispatches, [act + 1], `${what}: other batch`);
        await checkAgainstCpu(b, first(x2), rows, later.ys[0], `${what}: other batch`);
      }
      // more rows of the same binding than the held product's: b quantizes 5 rows
      const rowsDiffer = await encodeAll(gpu, [
        { lin: a.lin, x: t2, rows: 1 },
        { lin: b.lin, x: t2, rows: 5, reuse: true },
      ]);
      assertEquals(rowsDiffer.dispatches[1], activationDispatches(format, 5) + 1);
      await checkAgainstCpu(b, x2, 5, rowsDiffer.ys[1], `${format}: other rows`);
      a.lin.destroy();
      b.lin.destroy();
    }
    // other settings on the same x: format, threshold, kept FP16 columns
    const llm = (seed: number, options: QuantOptions) =>
      int8Layer(gpu, "llm-int8", 70, k, seed, options);
    const vw = await int8Layer(gpu, "int8-vectorwise", 40, k, 720);
    const thr3 = await llm(721, { threshold: 3 });
    const thr4 = await llm(722, { threshold: 4 });
    const keptA = await llm(723, { threshold: 3, fp16Columns: [17, 40], outlierWeights: "fp16" });
    const keptB = await llm(724, { threshold: 3, fp16Columns: [17, 41], outlierWeights: "fp16" });
    const keptA2 = await llm(725, { threshold: 3, fp16Columns: [17, 40], outlierWeights: "fp16" });
    const absmax = await int8Layer(gpu, "int8-absmax", 40, k, 726);
    const chain = [vw, thr3, thr4, keptA, keptA2, keptB, absmax, vw];
    for (const rows of [1, 5]) {
      const tx = rows === 1 ? t2 : t1;
      const x = rows === 1 ? x2.subarray(0, k) : x1;
      const got = await encodeAll(
        gpu,
        chain.map((l) => ({ lin: l.lin, x: tx, rows, reuse: true })),
      );
      const q = (f: QuantLinearFormat) => activationDispatches(f, rows) + 1;
      // only keptA2 (same threshold and kept columns as keptA, just before it) reuses
      assertEquals(
        got.dispatches,
        chain.map((l, i) => i === 4 ? 1 : q(l.lin.format)),
        `rows=${rows}`,
      );
      for (const [i, l] of chain.entries()) {
        await checkAgainstCpu(l, x, rows, got.ys[i], `settings chain rows=${rows}: ${i}`);
      }
    }
    for (const l of new Set(chain)) l.lin.destroy();
    t1.destroy();
    t2.destroy();
    tb.destroy();
  });
});

Deno.test({
  name: "QuantLinear 4-bit GEMV with SwiGLU folded into its input (f16 arithmetic)",
  ignore: !hasF16,
  fn: () =>
    withGpu({ f16: true }, async (gpu) => {
      const [n, k] = [70, 2080]; // K % 32 == 0, two x tiles at the default launch shape
      const gate = randn(k, 801, 2);
      const up = randn(k, 802, 1);
      // elementwise.wgsl's swiglu in f32: silu(g) · u
      const x = new Float32Array(k);
      for (let i = 0; i < k; i++) {
        x[i] = Math.fround(Math.fround(gate[i] / Math.fround(1 + Math.exp(-gate[i]))) * up[i]);
      }
      const rms = Math.sqrt(x.reduce((s, v) => s + v * v, 0) / k);
      for (const format of ["nf4", "nf4-dq"] as const) {
        const weight = quantize(format, randn(n * k, 803, W_SCALE), n, k);
        const lin = await QuantLinear.create(gpu, { label: `${format} swiglu`, weight, f16: true });
        assert(lin.fusesSwiglu(1) && !lin.fusesSwiglu(2), `${format}: fuses for one row only`);
        const tg = f32Tensor(gpu, "gate", gate);
        const tu = f32Tensor(gpu, "up", up);
        const ty = emptyF32(gpu, "y", n);
        const batch = new CommandBatch(gpu);
        lin.encode(batch, tg, ty, 1, { swigluUp: tu });
        batch.submit();
        const got = await gpu.readF32(ty);
        const want = matmulQuantized(x, 1, weight, {});
        // as every f16 4-bit product; silu's exp may differ from Math.exp in the last ulp
        assertClose(got, want, { atol: F16_TOL * Math.sqrt(k) * rms * W_SCALE }, format);
        // an up binding shorter than K
        const short: Binding = { tensor: tu, offset: 0, size: 16 };
        assertThrows(() => lin.encode(batch, tg, ty, 1, { swigluUp: short }), /swigluUp/);
        for (const t of [tg, tu, ty]) t.destroy();
        lin.destroy();
      }
      // without the fused kernel: no offer
      const weight = quantize("nf4", randn(64 * 64, 804, W_SCALE), 64, 64);
      const off = await QuantLinear.create(gpu, {
        label: "nf4 no fuse",
        weight,
        f16: true,
        tuning: { gemvFuseSwiglu: false },
      });
      assert(!off.fusesSwiglu(1));
      off.destroy();
    }),
});

// A decode layer's norms folded away (4-bit f16 GEMV): o_proj and down_proj add their output to
// the residual stream in their epilogue (y += x · Wᵀ, f32), and the next product reads
// rmsnorm(x) · weight as it stages x. Both against the CPU product at the f16 tolerance.
Deno.test({
  name: "QuantLinear 4-bit GEMV with the residual add and RMSNorm folded in (f16 arithmetic)",
  ignore: !hasF16,
  fn: () =>
    withGpu({ f16: true }, async (gpu) => {
      const [n, k] = [70, 2080]; // K % 32 == 0, two x tiles at the default launch shape
      const eps = 1e-5;
      const x = randn(k, 821, 3);
      const g = randn(k, 822, 0.5);
      const y0 = randn(n, 823, 4);
      const up = randn(k, 824, 1);
      // rmsnorm.wgsl: x · (1 / sqrt(mean(x²) + eps)) · w
      const inv = 1 / Math.sqrt(x.reduce((s, v) => s + v * v, 0) / k + eps);
      const xn = x.map((v, i) => v * inv * g[i]);
      const xs = x.map((v, i) => v / (1 + Math.exp(-v)) * up[i]);
      const norm = (a: Float32Array) => Math.sqrt(a.reduce((s, v) => s + v * v, 0) / a.length);
      for (const format of ["nf4", "nf4-dq"] as const) {
        const weight = quantize(format, randn(n * k, 825, W_SCALE), n, k);
        const lin = await QuantLinear.create(gpu, {
          label: `${format} fold`,
          weight,
          f16: true,
          tuning: { gemvFoldNorm: true },
        });
        assert(lin.addsToOutput(1) && !lin.addsToOutput(2), `${format}: adds for one row only`);
        assert(lin.foldsRmsNorm(1) && !lin.foldsRmsNorm(2), `${format}: folds for one row only`);
        const [tx, tg, tu] = [
          f32Tensor(gpu, "x", x),
          f32Tensor(gpu, "g", g),
          f32Tensor(gpu, "up", up),
        ];
        const [added, addedSwiglu, normed] = [
          f32Tensor(gpu, "y += ", y0),
          f32Tensor(gpu, "y += swiglu", y0),
          emptyF32(gpu, "y normed", n),
        ];
        const batch = new CommandBatch(gpu);
        lin.encode(batch, tx, added, 1, { addToOutput: true });
        lin.encode(batch, tx, addedSwiglu, 1, { addToOutput: true, swigluUp: tu });
        lin.encode(batch, tx, normed, 1, { rmsNorm: { weight: tg, eps } });
        assertEquals(batch.dispatchCount, 3, `${format}: one dispatch each`);
        batch.submit();
        const tol = (a: Float32Array) => ({ atol: F16_TOL * Math.sqrt(k) * norm(a) * W_SCALE });
        const plain = matmulQuantized(x, 1, weight, {});
        assertClose(
          await gpu.readF32(added),
          y0.map((v, i) => v + plain[i]),
          tol(x),
          `${format} +=`,
        );
        const sw = matmulQuantized(xs, 1, weight, {});
        assertClose(
          await gpu.readF32(addedSwiglu),
          y0.map((v, i) => v + sw[i]),
          tol(xs),
          `${format} += swiglu`,
        );
        assertClose(await gpu.readF32(normed), matmulQuantized(xn, 1, weight, {}), tol(xn), format);
        // a norm weight shorter than K; a norm with SwiGLU
        const short: Binding = { tensor: tg, offset: 0, size: 16 };
        assertThrows(() => lin.encode(batch, tx, normed, 1, { rmsNorm: { weight: short, eps } }));
        assertThrows(
          () => lin.encode(batch, tx, normed, 1, { rmsNorm: { weight: tg, eps }, swigluUp: tu }),
          /RMSNorm/,
        );
        for (const t of [tx, tg, tu, added, addedSwiglu, normed]) t.destroy();
        lin.destroy();
      }
      const off = await QuantLinear.create(gpu, {
        label: "nf4 no fold",
        weight: quantize("nf4", randn(64 * 64, 826, W_SCALE), 64, 64),
        f16: true,
        tuning: { gemvFoldNorm: false },
      });
      assert(!off.addsToOutput(1) && !off.foldsRmsNorm(1));
      const [ox, oy] = [f32Tensor(gpu, "x", x.subarray(0, 64)), emptyF32(gpu, "y", 64)];
      assertThrows(
        () => off.encode(new CommandBatch(gpu), ox, oy, 1, { addToOutput: true }),
        /adding/,
      );
      ox.destroy();
      oy.destroy();
      off.destroy();
    }),
});

// Q8_0's one-row product with SwiGLU, the residual add and RMSNorm folded in (f16 arithmetic).
// SwiGLU is elementwise.wgsl's f32 expression and the add the same f32 addition, so those two
// must equal the dispatches they replace bit for bit; the norm's 1 / rms is summed in another
// order than rmsnorm.wgsl's, so it is held to the CPU product at the f16 tolerance.
Deno.test({
  name: "QuantLinear Q8_0 one-row product with SwiGLU, the residual add and RMSNorm folded in",
  ignore: !hasF16,
  fn: () =>
    withGpu({ f16: true }, async (gpu) => {
      const [n, k] = [70, 2080]; // two x tiles at the default launch shape, a part-filled one
      const eps = 1e-5;
      const x = randn(k, 831, 3);
      const g = randn(k, 832, 0.5);
      const y0 = randn(n, 833, 4);
      const up = randn(k, 834, 1);
      const inv = 1 / Math.sqrt(x.reduce((s, v) => s + v * v, 0) / k + eps);
      const xn = x.map((v, i) => v * inv * g[i]);
      const norm = (a: Float32Array) => Math.sqrt(a.reduce((s, v) => s + v * v, 0) / a.length);
      const weight = quantize("q8_0", randn(n * k, 835, W_SCALE), n, k);
      const lin = await QuantLinear.create(gpu, {
        label: "q8_0 fold",
        weight,
        f16: true,
        tuning: { gemvFoldNorm: true },
      });
      assert(lin.fusesSwiglu(1) && !lin.fusesSwiglu(2), "swiglu: one row only");
      assert(lin.addsToOutput(1) && !lin.addsToOutput(2), "adds: one row only");
      assert(lin.foldsRmsNorm(1) && !lin.foldsRmsNorm(2), "norm: one row only");
      const ew = await createElementwise(gpu);
      const [tx, tg, tu] = [
        f32Tensor(gpu, "x", x),
        f32Tensor(gpu, "g", g),
        f32Tensor(gpu, "up", up),
      ];
      const act = f32Tensor(gpu, "x (swiglu in place)", x);
      const out = (label: string, init?: Float32Array) =>
        init ? f32Tensor(gpu, label, init) : emptyF32(gpu, label, n);
      const [swFused, swApart] = [out("swiglu fused"), out("swiglu apart")];
      const [addFused, addApart, plain] = [out("+= fused", y0), out("+= apart", y0), out("plain")];
      const [bothFused, bothApart, normed] = [
        out("both fused", y0),
        out("both apart", y0),
        out("n"),
      ];
      const batch = new CommandBatch(gpu);
      lin.encode(batch, tx, swFused, 1, { swigluUp: tu });
      lin.encode(batch, tx, addFused, 1, { addToOutput: true });
      lin.encode(batch, tx, bothFused, 1, { addToOutput: true, swigluUp: tu });
      lin.encode(batch, tx, normed, 1, { rmsNorm: { weight: tg, eps } });
      assertEquals(batch.dispatchCount, 4, "one dispatch each");
      lin.encode(batch, tx, plain, 1);
      ew.add(batch, addApart, plain, n);
      ew.swiglu(batch, act, tu, k);
      lin.encode(batch, act, swApart, 1);
      ew.add(batch, bothApart, swApart, n);
      batch.submit();
      assertEquals(await gpu.readF32(swFused), await gpu.readF32(swApart), "swiglu");
      assertEquals(await gpu.readF32(addFused), await gpu.readF32(addApart), "+=");
      assertEquals(await gpu.readF32(bothFused), await gpu.readF32(bothApart), "+= swiglu");
      const tol = { atol: F16_TOL * Math.sqrt(k) * norm(xn) * W_SCALE };
      assertClose(await gpu.readF32(normed), matmulQuantized(xn, 1, weight, {}), tol, "norm");
      assertThrows(
        () => lin.encode(batch, tx, normed, 1, { rmsNorm: { weight: tg, eps }, swigluUp: tu }),
        /RMSNorm/,
      );
      for (const t of [tx, tg, tu, act, swFused, swApart, addFused, addApart, plain]) t.destroy();
      for (const t of [bothFused, bothApart, normed]) t.destroy();
      lin.destroy();
      const off = await QuantLinear.create(gpu, {
        label: "q8_0 no fold",
        weight: quantize("q8_0", randn(64 * 64, 836, W_SCALE), 64, 64),
        f16: true,
        tuning: { gemvFoldNorm: false, gemvFuseSwiglu: false },
      });
      assert(!off.addsToOutput(1) && !off.foldsRmsNorm(1) && !off.fusesSwiglu(1));
      off.destroy();
      assertEquals(gpu.ledger.bytesIn("weights"), 0);
    }),
});

// int8 (not LLM.int8()): down_proj's activation quantization reads silu(gate) · up itself, for
// one row and for the rows of a perRow product (each row alone). The same f32 expression as
// elementwise.wgsl's swiglu, so the product must equal, bit for bit, the SwiGLU dispatch
// followed by the layer's own quantization and product.
Deno.test("QuantLinear int8 quantization with SwiGLU folded into its input", async () => {
  await withGpu({ f16: false }, async (gpu) => {
    const [n, k] = [70, 4100]; // five quantize_row workgroups, the last with one word
    const ew = await createElementwise(gpu);
    for (const format of ["int8-vectorwise", "int8-absmax"] as const) {
      const weight = quantize(format, randn(n * k, 813, W_SCALE), n, k);
      const lin = await QuantLinear.create(gpu, { label: `${format} swiglu`, weight, f16: false });
      assert(lin.fusesSwiglu(1) && lin.fusesSwiglu(3, true) && !lin.fusesSwiglu(9, true), format);
      assert(!lin.fusesSwiglu(3), `${format}: several rows fuse only as perRow products`);
      for (const rows of [1, 3]) {
        const gate = randn(rows * k, 811 + rows, 2);
        const up = randn(rows * k, 812 + rows, 1);
        const [tg, tu] = [f32Tensor(gpu, "gate", gate), f32Tensor(gpu, "up", up)];
        const act = f32Tensor(gpu, "gate (swiglu in place)", gate);
        const [fused, apart] = [
          emptyF32(gpu, "y fused", rows * n),
          emptyF32(gpu, "y apart", rows * n),
        ];
        const perRow = rows > 1;
        const batch = new CommandBatch(gpu);
        lin.encode(batch, tg, fused, rows, { swigluUp: tu, perRow });
        ew.swiglu(batch, act, tu, rows * k);
        lin.encode(batch, act, apart, rows, { perRow });
        assertEquals(
          batch.dispatchCount,
          5,
          `${format}, ${rows} rows: fused 2 dispatches, apart 3`,
        );
        batch.submit();
        assertEquals(await gpu.readF32(fused), await gpu.readF32(apart), `${format}, ${rows} rows`);
        // several rows take SwiGLU only as a perRow product
        if (perRow) {
          assertThrows(
            () => lin.encode(new CommandBatch(gpu), tg, fused, rows, { swigluUp: tu }),
            /without perRow/,
          );
        }
        for (const t of [tg, tu, act, fused, apart]) t.destroy();
      }
      lin.destroy();
    }
    const llm = await QuantLinear.create(gpu, {
      label: "llm-int8 swiglu",
      weight: quantize("llm-int8", randn(64 * 64, 814, W_SCALE), 64, 64),
      f16: false,
    });
    assert(!llm.fusesSwiglu(1), "llm-int8 reads x itself for its outlier columns: no fusion");
    llm.destroy();
  });
});
