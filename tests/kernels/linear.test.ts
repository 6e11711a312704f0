import {
  deepStrictEqual as assertEquals,
  ok as assert,
  rejects as assertRejects,
} from "node:assert/strict";
import { CommandBatch } from "../../lib/gpu/batch.ts";
import type { Gpu } from "../../lib/gpu/device.ts";
import {
  cpuMatmul,
  createGemmOuter,
  Fp16Linear,
  Fp16LinearStack,
  type Fp16Tuning,
  GEMM_OUTER_SPLIT_BELOW,
  gemmKernelFor,
  gemmSplitsFor,
  gemmTileRows,
  stackThreadsPerRow,
} from "../../lib/kernels/linear.ts";
import {
  cpuSplitSum,
  createSplitSum,
  encodeSplitSum,
  GEMM_SPREAD_BELOW,
} from "../../lib/kernels/gemm_spread.ts";
import { assertClose, maxAbsDiff, randn } from "../helpers/random.ts";
import { emptyF32, f32Tensor, hasF16, onGl, randomF16, withGpu } from "./_gpu.ts";
import { createElementwise } from "../../lib/kernels/elementwise.ts";

// Tolerances, relative to the natural scale of an output, σ_y = sqrt(K)·rms(x)·rms(w):
//
// - f32 arithmetic: twin and kernel multiply the same f16-decoded weights, and the twin sums in
//   f64, so only the kernel's f32 summation (a few 2⁻²⁴-relative roundings of partial sums of
//   order σ_y) and the final rounding of y differ. Measured: ≤ 4e-6·σ_y; allowed 2e-5·σ_y.
// - f16 arithmetic: x is rounded to f16 (relative 2⁻¹¹), each product and each 4-term dot is
//   rounded to f16 (2⁻¹¹ each), then summed in f32. These K independent errors random-walk to
//   σ ≈ 2⁻¹¹·sqrt(3)·σ_y ≈ 8.5e-4·σ_y; 5e-3·σ_y is about six standard deviations. Measured:
//   ≤ 2.5e-3·σ_y.
const X_SCALE = 1;
const W_SCALE = 0.05;
const F32_TOL = 2e-5;
const F16_TOL = 5e-3;

async function check(
  gpu: Gpu,
  { rows, n, k, f16, maxBindingBytes, shared = false, seed = 1, tuning }: {
    rows: number;
    n: number;
    k: number;
    f16: boolean;
    maxBindingBytes?: number;
    shared?: boolean;
    seed?: number;
    tuning?: Fp16Tuning;
  },
): Promise<number> {
  const w = randomF16(n * k, seed, W_SCALE);
  const x = randn(rows * k, seed + 1, X_SCALE);
  const sharedWeight = shared
    ? gpu.tensor({ label: "shared w", category: "weights", data: w.bits })
    : null;
  const lin = await Fp16Linear.create(gpu, {
    label: `w ${n}x${k}`,
    weight: sharedWeight ?? w.bits,
    outFeatures: n,
    inFeatures: k,
    f16,
    maxBindingBytes,
    tuning,
  });
  const tx = f32Tensor(gpu, "x", x);
  const ty = emptyF32(gpu, "y", rows * n);
  const batch = new CommandBatch(gpu);
  lin.encode(batch, tx, ty, rows);
  batch.submit();
  const got = await gpu.readF32(ty);
  const want = cpuMatmul(x, w.values, rows, n, k);
  const sigma = Math.sqrt(k) * X_SCALE * W_SCALE;
  const what = `${f16 ? "f16" : "f32"} rows=${rows} N=${n} K=${k} chunks=${lin.chunks.length}` +
    (tuning ? ` ${JSON.stringify(tuning)}` : "");
  // gemm_outer sums in f32 on either path (x and the weights widened to f32 in its tiles).
  const outer = rows > 1;
  assertClose(got, want, { atol: (f16 && !outer ? F16_TOL : F32_TOL) * sigma }, what);
  lin.destroy();
  // a product split across workgroups borrowed the device's scratch; the last layer frees it
  assert(!gpu.ledger.entries().some((e) => e.label === "gemm split copies"), `${what}: scratch`);
  if (sharedWeight) {
    assert(!sharedWeight.destroyed, "a shared weight outlives the layer");
    sharedWeight.destroy();
  }
  tx.destroy();
  ty.destroy();
  return maxAbsDiff(got, want) / sigma;
}

const SHAPES = [
  // GEMV: pair path (K % 8 != 0), wide path, a single output, more features than one workgroup
  { rows: 1, n: 130, k: 66 },
  { rows: 1, n: 1, k: 4096 },
  { rows: 1, n: 300, k: 1000 },
  // GEMM: fewer rows than a tile, ragged tiles in every dimension, K not a multiple of 16 (or 8,
  // or 4: pairs of weights and of x)
  { rows: 3, n: 130, k: 66 },
  { rows: 37, n: 130, k: 4096 },
  { rows: 70, n: 1, k: 18 },
  { rows: 2, n: 64, k: 2 },
];

function suite(f16: boolean): void {
  const tag = f16 ? "f16 arithmetic" : "f32 arithmetic";
  Deno.test({
    name:
      `Fp16Linear (${tag}) GEMMs: gemm_outer at f32 tolerance, both tile heights, K steps, buffers`,
    ignore: f16 && !hasF16,
    fn: () =>
      withGpu({ f16 }, async (gpu) => {
        // A partial last K step is impossible here; ragged rows and features are not: one row
        // past a 128-row tile, features past a 128-wide tile, fewer rows than a tile.
        const shapes = [
          { rows: 129, n: 257, k: 48 },
          { rows: 5, n: 300, k: 32 },
          { rows: 64, n: 128, k: 16 },
        ];
        let worst = 0;
        // K steps of 32 meet K = 16 and 48 (a half step, zeros past K); two buffers meet one,
        // two and three steps.
        const tunings: Fp16Tuning[] = [
          { gemmOuterRows: 128 },
          { gemmOuterRows: 64 },
          { gemmOuterK32: true },
          { gemmOuterDoubleBuffer: true },
          { gemmOuterRows: 64, gemmOuterK32: true },
          { gemmOuterRows: 64, gemmOuterDoubleBuffer: true },
          // Halves summing alternate K steps: K = 16 leaves the second half nothing but zeros,
          // 48 gives it one step of three.
          { gemmOuterSplitK: true },
          { gemmOuterRows: 64, gemmOuterSplitK: true },
          // Split across workgroups: K = 16 leaves two of three copies empty (zeros), K = 48
          // gives each one step; with the halves, shares of two steps.
          { gemmOuterSpread: 3 },
          { gemmOuterSpread: 2, gemmOuterSplitK: true },
          // 64-row tiles beside the 128-row ones: every shape here takes them (129 rows: three)
          { gemmOuterShortTiles: true },
          { gemmOuterShortTiles: true, gemmOuterSpread: 2 },
        ];
        if (onGl) console.log("  GL: the K-split (512-thread) tunings run in the Vulkan pass only");
        for (const tuning of tunings.filter((t) => !(onGl && t.gemmOuterSplitK))) {
          for (const [i, s] of shapes.entries()) {
            worst = Math.max(worst, await check(gpu, { ...s, f16, seed: 40 + i, tuning }));
          }
        }
        console.log(`  worst |error| / σ_y = ${worst.toExponential(2)}`);
      }),
  });

  Deno.test({
    name: `Fp16Linear (${tag}) matches cpuMatmul on ragged shapes`,
    ignore: f16 && !hasF16,
    fn: () =>
      withGpu({ f16 }, async (gpu) => {
        let worst = 0;
        // Both GEMV loops: four units per step (GPUs' default) and one (software adapters').
        for (const gemvUnroll of [true, false]) {
          for (const [i, s] of SHAPES.entries()) {
            const tuning = { gemvUnroll };
            worst = Math.max(worst, await check(gpu, { ...s, f16, seed: 10 + i, tuning }));
          }
        }
        console.log(`  worst |error| / σ_y = ${worst.toExponential(2)}`);
      }),
  });

  Deno.test({
    name: `Fp16Linear (${tag}) splits a weight larger than one binding`,
    ignore: f16 && !hasF16,
    fn: () =>
      withGpu({ f16 }, async (gpu) => {
        // 130 rows of 128 bytes in 4 KiB bindings: chunks of 32 rows (offsets 256-aligned)
        for (const rows of [1, 5]) {
          await check(gpu, { rows, n: 130, k: 64, f16, maxBindingBytes: 4096 });
          await check(gpu, { rows, n: 130, k: 64, f16, maxBindingBytes: 4096, shared: true });
        }
        // odd row size: 256-byte alignment forces chunks of a multiple of 64 rows of 20 bytes
        await check(gpu, { rows: 1, n: 200, k: 10, f16, maxBindingBytes: 2000 });
        // a GEMM split across workgroups: each chunk's features in every copy, one sum after
        const tuning = { gemmOuterSpread: 2 };
        await check(gpu, { rows: 9, n: 130, k: 64, f16, maxBindingBytes: 4096, tuning });
      }),
  });
}

suite(false);
suite(true);
if (!hasF16) {
  console.log("shader-f16 is not offered by this adapter: the f16-arithmetic tests are ignored");
}

Deno.test("gemm_outer's K split: picked below the tile count, built only where asked or useful", async () => {
  await withGpu({ f16: false }, async (gpu) => {
    const b = { label: "pick", k: 64 };
    const auto = await createGemmOuter(gpu, "matmul_f16", [], { ...b, t: {} });
    // A software adapter has no SMs to fill: the whole-K pipeline only, unless asked.
    assertEquals(auto.split === undefined, gpu.isSoftware);
    const always = await createGemmOuter(gpu, "matmul_f16", [], {
      ...b,
      t: { gemmOuterSplitK: true },
    });
    assert(always.split === undefined && /OUTER_KSPLIT/.test(always.kernel.name));
    const never = await createGemmOuter(gpu, "matmul_f16", [], {
      ...b,
      t: { gemmOuterSplitK: false },
    });
    assert(never.split === undefined && !/OUTER_KSPLIT/.test(never.kernel.name));
    const both = { kernel: never.kernel, split: always.kernel };
    assertEquals(gemmKernelFor(both, GEMM_OUTER_SPLIT_BELOW - 1), always.kernel);
    assertEquals(gemmKernelFor(both, GEMM_OUTER_SPLIT_BELOW), never.kernel);
    assertEquals(gemmKernelFor({ kernel: never.kernel }, 1), never.kernel);
    // split across workgroups: the whole-K pipeline, copies by the tile count where unset
    assertEquals(gemmKernelFor(both, 10, 4), never.kernel);
    assertEquals(gemmSplitsFor({ ...both, sum: never.kernel }, 32, 4096), 8);
    assertEquals(gemmSplitsFor({ ...both, sum: never.kernel }, 86, 4096), 3);
    assertEquals(gemmSplitsFor({ ...both, sum: never.kernel }, 112, 4096), 2);
    assertEquals(gemmSplitsFor({ ...both, sum: never.kernel }, GEMM_SPREAD_BELOW, 4096), 1);
    assertEquals(gemmSplitsFor({ ...both, sum: never.kernel }, 32, 128), 2); // shares of 64
    assertEquals(gemmSplitsFor({ ...both, sum: never.kernel, spread: 5 }, 1000, 64), 5);
    assertEquals(gemmSplitsFor(both, 32, 4096), 1); // no split_sum built: never
    assertEquals(auto.sum === undefined, gpu.isSoftware);
    // 64-row tiles beside 128-row ones: built where asked (default: hardware adapters), taken
    // where they pad the rows less
    assertEquals(auto.short === undefined, gpu.isSoftware);
    const short = await createGemmOuter(gpu, "matmul_f16", [], {
      ...b,
      t: { gemmOuterShortTiles: true },
    });
    assert(/OUTER_M64/.test(short.short!.name) && !/OUTER_M64/.test(short.kernel.name));
    const rows64 = await createGemmOuter(gpu, "matmul_f16", [], {
      ...b,
      t: { gemmOuterShortTiles: true, gemmOuterRows: 64 },
    });
    assertEquals(rows64.short, undefined, "64-row tiles already");
    assertEquals([1, 40, 64, 65, 128, 129, 192, 193, 512].map((r) => gemmTileRows(short, r, 128)), [
      64,
      64,
      64,
      128,
      128,
      64,
      64,
      128,
      128,
    ]);
    assertEquals(gemmTileRows(never, 40, 128), 128);
    await assertRejects(
      createGemmOuter(gpu, "matmul_f16", [], { ...b, t: { gemmOuterSpread: 0 } }),
      /gemmOuterSpread must be an integer in 1\.\.64, got 0/,
    );
  });
});

Deno.test("split_sum adds a split product's copies in order, as cpuSplitSum does", async () => {
  await withGpu({ f16: false }, async (gpu) => {
    const sum = await createSplitSum(gpu);
    for (const [count, splits] of [[1000, 3], [5, 1], [70000, 8]]) {
      const part = randn(count * splits, count + splits, 1);
      const tp = f32Tensor(gpu, "part", part);
      const ty = emptyF32(gpu, "y", count);
      const batch = new CommandBatch(gpu);
      encodeSplitSum(batch, sum, tp, ty, count, splits);
      batch.submit();
      // f32 additions in the same order: the same bits
      assertEquals(await gpu.readF32(ty), cpuSplitSum(part, count, splits), `${count}x${splits}`);
      tp.destroy();
      ty.destroy();
    }
  });
});

Deno.test("Fp16Linear rejects odd K, wrong sizes and f16 without shader-f16", async () => {
  await withGpu({ f16: false }, async (gpu) => {
    const bits = new Uint16Array(12);
    await assertRejects(
      Fp16Linear.create(gpu, { label: "odd", weight: bits, outFeatures: 4, inFeatures: 3 }),
      /even K/,
    );
    await assertRejects(
      Fp16Linear.create(gpu, { label: "size", weight: bits, outFeatures: 4, inFeatures: 4 }),
      /expected 4x4/,
    );
    await assertRejects(
      Fp16Linear.create(gpu, {
        label: "f16",
        weight: bits,
        outFeatures: 6,
        inFeatures: 2,
        f16: true,
      }),
      /shader-f16/,
    );
    // Two 32-deep tiles of 128 rows and 128 features take 64 KiB of workgroup storage.
    const limit = gpu.limits.maxComputeWorkgroupStorageSize;
    if (limit < 65536) {
      const w = new Uint16Array(16 * 16);
      await assertRejects(
        Fp16Linear.create(gpu, {
          label: "tiles",
          weight: w,
          outFeatures: 16,
          inFeatures: 16,
          tuning: { gemmOuterK32: true, gemmOuterDoubleBuffer: true },
        }),
        RangeError,
        `tiles: gemm_outer tiles of 128 rows, K step 32, 2 buffer(s) need 65536 bytes of ` +
          `workgroup storage; this adapter offers ${limit}`,
      );
    } else {
      console.log(
        `  this adapter offers ${limit} bytes of workgroup storage: the tile limit is not met`,
      );
    }
  });
});

// A stack's one-row dispatch runs the same per-row arithmetic as each layer's own GEMV, so its
// outputs must equal theirs bit for bit; each layer (any rows) must match cpuMatmul as above.
function stackSuite(f16: boolean): void {
  Deno.test({
    name: `Fp16LinearStack (${f16 ? "f16" : "f32"} arithmetic): one dispatch routes each layer's ` +
      `outputs, one row or several; each part alone matches cpuMatmul`,
    ignore: f16 && !hasF16,
    fn: () =>
      withGpu({ f16 }, async (gpu) => {
        const cases = [
          // q, k, v of a GQA block (K % 8 == 0); two layers (gate, up) with K % 8 != 0;
          // three layers over several small bindings (chunks cross layer boundaries)
          { k: 128, ns: [128, 64, 64], maxBindingBytes: undefined },
          { k: 130, ns: [192, 64], maxBindingBytes: undefined },
          { k: 64, ns: [96, 32, 160], maxBindingBytes: 6144 },
          // 16 lanes a feature, a GPU's default for stacks wider than long
          {
            k: 128,
            ns: [128, 64, 64],
            maxBindingBytes: undefined,
            tuning: { gemvThreadsPerRow: 16 },
          },
        ];
        for (const [c, { k, ns, maxBindingBytes, tuning }] of cases.entries()) {
          const weights = ns.map((n, i) => randomF16(n * k, 40 + 3 * c + i, W_SCALE));
          const stack = await Fp16LinearStack.create(gpu, {
            label: `stack ${c}`,
            layers: ns.map((n, i) => ({
              label: `part ${i}`,
              weight: weights[i].bits,
              outFeatures: n,
            })),
            inFeatures: k,
            f16,
            maxBindingBytes,
            tuning,
          });
          const sigma = Math.sqrt(k) * X_SCALE * W_SCALE;
          const x = randn(k, 50 + c, X_SCALE);
          const tx = f32Tensor(gpu, "x", x);
          const routed = ns.map((n, i) => emptyF32(gpu, `routed ${i}`, n));
          const alone = ns.map((n, i) => emptyF32(gpu, `alone ${i}`, n));
          const batch = new CommandBatch(gpu);
          stack.encodeRow(batch, tx, routed);
          stack.parts.forEach((part, i) => part.encode(batch, tx, alone[i], 1));
          batch.submit();
          for (const [i, n] of ns.entries()) {
            const got = await gpu.readF32(routed[i]);
            assertEquals(got, await gpu.readF32(alone[i]), `stack ${c} layer ${i}: routed = alone`);
            assertClose(
              got,
              cpuMatmul(x, weights[i].values, 1, n, k),
              { atol: (f16 ? F16_TOL : F32_TOL) * sigma },
              `stack ${c} layer ${i} (N=${n})`,
            );
          }
          // The parts on several rows (GEMM over their rows of the shared tensor).
          const xs = randn(5 * k, 60 + c, X_SCALE);
          const txs = f32Tensor(gpu, "xs", xs);
          for (const [i, part] of stack.parts.entries()) {
            const ty = emptyF32(gpu, "y", 5 * ns[i]);
            const b = new CommandBatch(gpu);
            part.encode(b, txs, ty, 5);
            b.submit();
            assertClose(
              await gpu.readF32(ty),
              cpuMatmul(xs, weights[i].values, 5, ns[i], k),
              { atol: (f16 ? F16_TOL : F32_TOL) * sigma },
              `stack ${c} part ${i}, 5 rows`,
            );
            ty.destroy();
          }
          // The stack's multi-row GEMV over 5 rows: each output bit for bit its part's perRow
          // product (each row as one row alone).
          const routed5 = ns.map((n, i) => emptyF32(gpu, `routed5 ${i}`, 5 * n));
          const alone5 = ns.map((n, i) => emptyF32(gpu, `alone5 ${i}`, 5 * n));
          const b5 = new CommandBatch(gpu);
          stack.encodeRows(b5, txs, routed5, 5);
          stack.parts.forEach((part, i) => part.encode(b5, txs, alone5[i], 5, { perRow: true }));
          b5.submit();
          for (const i of ns.keys()) {
            assertEquals(
              await gpu.readF32(routed5[i]),
              await gpu.readF32(alone5[i]),
              `stack ${c} layer ${i}, 5 rows: routed = alone`,
            );
          }
          assert(stack.takesRows(8) && !stack.takesRows(9));
          assert(stack.parts.every((p) => p.sharedWeight), "the parts only read the stack");
          stack.destroy();
          for (const t of [tx, txs, ...routed, ...alone, ...routed5, ...alone5]) t.destroy();
        }
      }),
  });
}

stackSuite(false);
stackSuite(true);

// A gate/up stack writing silu(gate) · up in its epilogue: the same sums (each row's lanes and
// reduction tree) and elementwise.wgsl's f32 expression, so bit for bit the routed product
// followed by the SwiGLU dispatch.
function swigluSuite(f16: boolean): void {
  Deno.test({
    name: `Fp16LinearStack (${f16 ? "f16" : "f32"} arithmetic): SwiGLU in the gate/up epilogue ` +
      `equals the product, then the SwiGLU dispatch`,
    ignore: f16 && !hasF16,
    fn: () =>
      withGpu({ f16 }, async (gpu) => {
        const ew = await createElementwise(gpu);
        // K % 8 == 0 and not; N not a multiple of the 4 pairs per workgroup; 64 lanes a row (each
        // layer starting on the binding alignment)
        const cases = [
          { k: 128, n: 96, tuning: {} },
          { k: 130, n: 64, tuning: {} },
          { k: 64, n: 38, tuning: {} },
          { k: 64, n: 38, tuning: { gemvThreadsPerRow: 64 } },
          { k: 128, n: 96, tuning: { gemvThreadsPerRow: 16 } },
        ];
        for (const [c, { k, n, tuning }] of cases.entries()) {
          const weights = [0, 1].map((i) => randomF16(n * k, 70 + 2 * c + i, W_SCALE));
          const stack = await Fp16LinearStack.create(gpu, {
            label: `gate/up ${c}`,
            layers: weights.map((w, i) => ({ label: `part ${i}`, weight: w.bits, outFeatures: n })),
            inFeatures: k,
            f16,
            tuning,
          });
          assert(stack.fusesSwigluOut(1) && stack.fusesSwigluOut(8) && !stack.fusesSwigluOut(9));
          const tx = f32Tensor(gpu, "x", randn(k, 80 + c, X_SCALE));
          const [g, u, fused, spare] = ["gate", "up", "fused", "up (untouched)"].map((l) =>
            emptyF32(gpu, l, n)
          );
          const batch = new CommandBatch(gpu);
          stack.encodeRow(batch, tx, [g, u]);
          ew.swiglu(batch, g, u, n);
          stack.encodeRow(batch, tx, [fused, spare], { swigluOut: true });
          batch.submit();
          const want = await gpu.readF32(g);
          assertEquals(await gpu.readF32(fused), want, `case ${c}: fused = apart`);
          assert(want.some((v) => v !== 0), `case ${c}: a product happened`);
          // 2 to 8 rows (the verify pass): each row as the stack's multi-row product, then SwiGLU
          for (const rows of [2, 5, 8]) {
            const txs = f32Tensor(gpu, "xs", randn(rows * k, 90 + rows, X_SCALE));
            const [gs, us, fs, ss] = ["gate", "up", "fused", "spare"].map((l) =>
              emptyF32(gpu, l, rows * n)
            );
            const b = new CommandBatch(gpu);
            stack.encodeRows(b, txs, [gs, us], rows);
            ew.swiglu(b, gs, us, rows * n);
            stack.encodeRows(b, txs, [fs, ss], rows, { swigluOut: true });
            b.submit();
            const wantRows = await gpu.readF32(gs);
            assertEquals(await gpu.readF32(fs), wantRows, `case ${c}, ${rows} rows: fused = apart`);
            assert(wantRows.subarray((rows - 1) * n).some((v) => v !== 0), `case ${c}: last row`);
            for (const t of [txs, gs, us, fs, ss]) t.destroy();
          }
          stack.destroy();
          for (const t of [tx, g, u, fused, spare]) t.destroy();
        }
        // layers of unequal width, three layers, or switched off: no offer
        const w = randomF16(64 * 32, 90, W_SCALE).bits;
        const make = (ns: number[], stackSwiglu?: boolean) =>
          Fp16LinearStack.create(gpu, {
            label: "no swiglu",
            layers: ns.map((n, i) => ({
              label: `p${i}`,
              weight: w.subarray(0, n * 32),
              outFeatures: n,
            })),
            inFeatures: 32,
            f16,
            tuning: { stackSwiglu },
          });
        for (
          const s of [await make([64, 32]), await make([32, 32, 32]), await make([32, 32], false)]
        ) {
          assert(!s.fusesSwigluOut(1));
          s.destroy();
        }
      }),
  });
}

swigluSuite(false);
swigluSuite(true);

Deno.test("FP16 stacks take 16 lanes a feature on a GPU at the shapes that measured faster", () => {
  const gpu = { isSoftware: false };
  const lanes = [[12288, 4096], [22016, 4096], [6144, 4096], [28672, 4096]].map(([n, k]) =>
    stackThreadsPerRow(gpu, n, k)
  );
  assertEquals(lanes, [16, 16, 32, 32], "7B q/k/v and gate/up; 8B q/k/v and gate/up");
  assertEquals(stackThreadsPerRow({ isSoftware: true }, 12288, 4096), 32);
});

Deno.test("Fp16LinearStack refuses layers that do not start on the binding alignment", async () => {
  await withGpu({ f16: false }, async (gpu) => {
    // 6 rows of 40 bytes: the second layer would start at byte 240
    assert(!Fp16LinearStack.fits(gpu, 20, [6, 4]));
    assert(Fp16LinearStack.fits(gpu, 128, [4, 4, 8]));
    assert(!Fp16LinearStack.fits(gpu, 128, [4]), "one layer is not a stack");
    await assertRejects(
      Fp16LinearStack.create(gpu, {
        label: "misaligned",
        layers: [
          { label: "a", weight: new Uint16Array(120), outFeatures: 6 },
          { label: "b", weight: new Uint16Array(80), outFeatures: 4 },
        ],
        inFeatures: 20,
      }),
      /binding alignment/,
    );
  });
});
