// QuantLinearStack: quantized layers moved into one matrix whose one-row GEMV routes each output
// feature to its layer's y. Every output is checked against its own layer's CPU twin
// (`matmulQuantized`) at the tolerances of quant_linear.test.ts, for the stacked GEMV and for
// each layer afterwards (GEMV and GEMM over its rows of the stacked arrays), on both arithmetic
// paths; the weights take the same memory before and after, and all of it is freed.

import { deepStrictEqual as assertEquals, ok as assert, rejects } from "node:assert/strict";
import { CommandBatch } from "../../lib/gpu/batch.ts";
import type { Gpu } from "../../lib/gpu/device.ts";
import {
  QuantLinear,
  type QuantLinearFormat,
  QuantLinearStack,
} from "../../lib/kernels/quant_linear.ts";
import { matmulQuantized, packedBytes, quantize } from "../../lib/quant/formats.ts";
import { findOutlierColumns } from "../../lib/quant/llm_int8.ts";
import { assertClose, randn } from "../helpers/random.ts";
import { emptyF32, f32Tensor, hasF16, withGpu } from "./_gpu.ts";

const W_SCALE = 0.05;
const F32_TOL = 2e-5; // 4-bit, f32 arithmetic, in units of σ_y (as quant_linear.test.ts)
const F16_TOL = 5e-3; // 4-bit, f16 arithmetic
const INT8_RTOL = 1e-6;
const INT8_ATOL = 1e-7;
const OUTLIER_F32_TOL = 1e-5;
const OUTLIER_F16_TOL = 5e-3;
const THRESHOLD = 3;

const FORMATS: QuantLinearFormat[] = [
  "nf4",
  "nf4-dq",
  "fp4",
  "int4",
  "q4_0",
  "q8_0",
  "int8-vectorwise",
  "llm-int8",
];

function tolerance(
  format: QuantLinearFormat,
  f16: boolean,
  x: Float32Array,
  rows: number,
  k: number,
): { atol: number; rtol?: number } {
  const sigma = Math.sqrt(k) * W_SCALE;
  if (format === "int8-vectorwise" || format === "llm-int8") {
    let outl = 0;
    if (format === "llm-int8") {
      const cols = findOutlierColumns(x, rows, k, THRESHOLD).columns;
      let s = 0;
      for (let m = 0; m < rows; m++) for (const c of cols) s += x[m * k + c] ** 2;
      outl = cols.length ? Math.sqrt(s / rows) * W_SCALE : 0;
    }
    return {
      atol: INT8_ATOL * sigma + (f16 ? OUTLIER_F16_TOL : OUTLIER_F32_TOL) * outl,
      rtol: INT8_RTOL,
    };
  }
  return { atol: (f16 ? F16_TOL : F32_TOL) * sigma };
}

function activations(rows: number, k: number, seed: number): Float32Array {
  const x = randn(rows * k, seed);
  for (let m = 0; m < rows; m++) x[m * k + 5] = m % 2 ? -12 : 9; // an outlier column (llm-int8)
  return x;
}

async function stackCase(
  gpu: Gpu,
  format: QuantLinearFormat,
  f16: boolean,
  ns: number[],
): Promise<void> {
  const k = 256;
  const weights = ns.map((n, i) =>
    quantize(format, randn(n * k, 40 + i, W_SCALE), n, k, {
      threshold: THRESHOLD,
    })
  );
  const layers = await Promise.all(
    weights.map((weight, i) =>
      QuantLinear.create(gpu, { label: `${format} part ${i}`, weight, f16, threshold: THRESHOLD })
    ),
  );
  // nf4-dq: plus the 1 KiB dynamic map, shared by the device's layers
  const bytes = weights.reduce((s, w) => s + packedBytes(w), 0) + (format === "nf4-dq" ? 1024 : 0);
  assertEquals(gpu.ledger.bytesIn("weights"), bytes);
  assert(QuantLinear.canStack(gpu, layers), `${format} ${ns}: stackable`);
  const stack = await QuantLinearStack.create(gpu, { label: `${format} stack`, layers });
  // Every array moves into the stack, but nf4-dq's offsets (4 bytes a layer) and, at these
  // small shapes, its nested scales (8 and 4 bytes a layer: off the binding alignment), which
  // the stack copies.
  const copied = format === "nf4-dq" ? 3 * 4 + (2 + 1 + 1) * 4 : 0;
  assertEquals(stack.copiedBytes, ns.length === 3 ? copied : stack.copiedBytes, format);
  if (format !== "nf4-dq") assertEquals(stack.copiedBytes, 0, format);
  assertEquals(
    gpu.ledger.bytesIn("weights"),
    bytes + stack.copiedBytes,
    `${format}: the same weight memory stacked`,
  );
  assert(!QuantLinear.canStack(gpu, layers), "stacked layers do not stack again");
  const what = `${format} ${f16 ? "f16" : "f32"} ${ns.join("+")}x${k}`;
  try {
    // the stacked GEMV, one row
    const x1 = activations(1, k, 7);
    const tx = f32Tensor(gpu, "x", x1);
    const ys = ns.map((n, i) => emptyF32(gpu, `y${i}`, n));
    const batch = new CommandBatch(gpu);
    stack.encodeRow(batch, tx, ys);
    assertEquals(
      batch.dispatchCount,
      format === "int8-vectorwise" || format === "llm-int8" ? 2 : 1,
    );
    batch.submit();
    for (const [i, y] of ys.entries()) {
      const got = await gpu.readF32(y);
      const want = matmulQuantized(x1, 1, weights[i], { threshold: THRESHOLD });
      assertClose(got, want, tolerance(format, f16, x1, 1, k), `${what} stacked, layer ${i}`);
    }
    for (const t of [tx, ...ys]) t.destroy();
    // the stacked multi-row GEMV (a verify pass's 3 rows): each output bit for bit its layer's
    // perRow product, which computes each row as one row alone would
    assert(stack.takesRows(3) && !stack.takesRows(9), `${what}: multi-row stack`);
    const x3 = activations(3, k, 9);
    const tx3 = f32Tensor(gpu, "x", x3);
    const ys3 = ns.map((n, i) => emptyF32(gpu, `y${i}`, 3 * n));
    const alone = ns.map((n, i) => emptyF32(gpu, `alone${i}`, 3 * n));
    const b3 = new CommandBatch(gpu);
    stack.encodeRows(b3, tx3, ys3, 3);
    for (const [i, lin] of layers.entries()) lin.encode(b3, tx3, alone[i], 3, { perRow: true });
    b3.submit();
    for (const i of ns.keys()) {
      assertEquals(
        await gpu.readF32(ys3[i]),
        await gpu.readF32(alone[i]),
        `${what} stacked 3 rows, layer ${i}`,
      );
    }
    for (const t of [tx3, ...ys3, ...alone]) t.destroy();
    // each layer alone on its rows of the stacked arrays: GEMV and GEMM
    for (const rows of [1, 5]) {
      const x = activations(rows, k, 8 + rows);
      const tx = f32Tensor(gpu, "x", x);
      for (const [i, lin] of layers.entries()) {
        const ty = emptyF32(gpu, "y", rows * ns[i]);
        const batch = new CommandBatch(gpu);
        lin.encode(batch, tx, ty, rows);
        batch.submit();
        const got = await gpu.readF32(ty);
        ty.destroy();
        const want = matmulQuantized(x, rows, weights[i], { threshold: THRESHOLD });
        assertClose(
          got,
          want,
          tolerance(format, f16, x, rows, k),
          `${what} layer ${i} rows ${rows}`,
        );
        assertEquals(lin.weightBytes, packedBytes(weights[i]));
      }
      tx.destroy();
    }
  } finally {
    stack.destroy();
    for (const l of layers) l.destroy();
  }
  assertEquals(gpu.ledger.bytesIn("weights"), 0, `${what}: freed`);
}

for (const f16 of [false, true]) {
  Deno.test({
    name: `QuantLinearStack (${
      f16 ? "f16" : "f32"
    } arithmetic): each output is its layer's product`,
    ignore: f16 && !hasF16,
    fn: () =>
      withGpu({ f16 }, async (gpu) => {
        for (const format of FORMATS) {
          await stackCase(gpu, format, f16, [128, 64, 64]); // q, k, v (GQA-like)
          await stackCase(gpu, format, f16, [192, 192]); // gate, up
        }
      }),
  });
}

Deno.test("QuantLinear.canStack: formats, shapes and alignment it refuses", async () => {
  await withGpu({ f16: false }, async (gpu) => {
    const k = 256;
    const make = (format: QuantLinearFormat, n: number, kk = k) =>
      QuantLinear.create(gpu, {
        label: `${format} ${n}x${kk}`,
        weight: quantize(format, randn(n * kk, n, W_SCALE), n, kk),
        f16: false,
      });
    const cases: [string, QuantLinear[]][] = [
      // 32 x 256 weights: 128 blocks, half a group of 256 with one nested scale
      ["nf4-dq, part of a nested group", [await make("nf4-dq", 32), await make("nf4-dq", 64)]],
      ["int8-absmax (per-tensor scale)", [
        await make("int8-absmax", 64),
        await make("int8-absmax", 64),
      ]],
      ["different formats", [await make("nf4", 64), await make("fp4", 64)]],
      ["different K", [await make("nf4", 64), await make("nf4", 64, 512)]],
      // 3 rows of 128 code bytes: the second layer would start at byte 384
      ["unaligned start", [await make("nf4", 3), await make("nf4", 64)]],
      ["one layer", [await make("nf4", 64)]],
    ];
    for (const [why, layers] of cases) {
      assert(!QuantLinear.canStack(gpu, layers), why);
      await rejects(QuantLinearStack.create(gpu, { label: why, layers }), RangeError);
      for (const l of layers) l.destroy();
    }
  });
});
