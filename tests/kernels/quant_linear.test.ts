import {
  deepStrictEqual as assertEquals,
  ok as assert,
  rejects as assertRejects,
  throws as assertThrows,
} from "node:assert/strict";
import { CommandBatch } from "../../lib/gpu/batch.ts";
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
import { assertClose, maxAbsDiff, randn } from "../helpers/random.ts";
import { emptyF32, f32Tensor, hasF16, randomF16 } from "./_gpu.ts";

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
// - llm-int8 outlier part: the twin sums f16(x)·f16(w) in f64, the kernel in f32 (the f16
//   products are exact in f32) or, with F16, multiplies in f16 (relative 2⁻¹¹ per product). In
//   units of σ_o = sqrt(C)·rms(x_outlier)·rms(w): f32 ≤ 1e-6 allowed 1e-5; f16 allowed 5e-3.
// - 4-bit and q8_0, f32: the twin sums x·table[code] per block in f64, the kernel in f32
//   (GEMM: the dequantized weight table·absmax rounded to f32 first). Allowed 2e-5·σ_y, as the
//   FP16 kernels.
// - 4-bit and q8_0, f16: x rounded to f16 and 4-term f16 dots (GEMM also rounds the decoded
//   weights to f16), as the FP16 kernels' f16 path. Allowed 5e-3·σ_y.
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
  const x = activations(rows, k, seed + 1, c.outlierCols);
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
    `chunks=${lin.chunks.length} ${JSON.stringify(options)}`;
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
    assertClose(got, want, { atol: (f16 ? F16_TOL : F32_TOL) * sigma }, what);
  }
  lin.destroy();
  return maxAbsDiff(got, want) / sigma;
}

// GEMV (rows 1) and GEMM (5, 33: ragged tiles), K and N off the tile sizes.
const CASES: Record<string, Case[]> = {
  int8: [
    { rows: 1, n: 130, k: 68 }, // K % 16 != 0: one word per load
    { rows: 1, n: 67, k: 256 }, // K % 16 == 0: vec4 loads
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
  ],
  q8_0: [
    { rows: 1, n: 130, k: 96 },
    { rows: 5, n: 67, k: 64 },
    { rows: 33, n: 70, k: 160 },
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
    const lin = await QuantLinear.create(gpu, { label: "nf4", weight: quantize("nf4", w, 2, 32) });
    assert(lin.format === "nf4");
    assertThrows(() => lin.setThreshold(3), /no outlier decomposition/);
    lin.destroy();
  });
});
