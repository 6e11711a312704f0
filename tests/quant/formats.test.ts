import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { assertClose, randn } from "../helpers/random.ts";
import { assertThrowsWith } from "./assert.ts";
import { roundToF16 } from "../../lib/gpu/f16.ts";
import { matmulF32 } from "../../lib/quant/fp16.ts";
import {
  bitsPerParameter,
  dequantize,
  FORMAT_INFO,
  matmulQuantized,
  packedBytes,
  packedBytesFor,
  QUANT_FORMATS,
  type QuantFormat,
  quantize,
  type QuantOptions,
} from "../../lib/quant/formats.ts";

Deno.test("bits per parameter: the nominal figures of each format", () => {
  const n = 4096;
  const k = 4096;
  assertEquals(bitsPerParameter("fp16", n, k), 16);
  assertEquals(bitsPerParameter("nf4", n, k), 4.5);
  assertEquals(bitsPerParameter("fp4", n, k), 4.5);
  assertEquals(bitsPerParameter("int4", n, k), 4.5);
  assertEquals(bitsPerParameter("nf4", n, k, { blocksize: 128 }), 4.25);
  assertEquals(bitsPerParameter("q8_0", n, k), 8.5);
  for (const kk of [256, 4096, 11008]) {
    assertEquals(bitsPerParameter("int8-vectorwise", n, kk), 8 + 32 / kk);
    assertEquals(bitsPerParameter("llm-int8", n, kk), 8 + 32 / kk);
  }
  assertEquals(bitsPerParameter("int8-absmax", n, k), 8 + 32 / (n * k));
  // NF4-DQ: 4 + 8/64 + 32/(64·256) = 4.126953125, plus the 32-bit offset per tensor.
  assertEquals(bitsPerParameter("nf4-dq", n, k), 4 + 8 / 64 + 32 / (64 * 256) + 32 / (n * k));
  assert(Math.abs(bitsPerParameter("nf4-dq", n, k) - 4.127) < 0.0005);
  // LLM.int8() with the paper's FP16 outlier columns: 16 N + 32 bits per kept column.
  assertEquals(
    bitsPerParameter("llm-int8", n, k, { fp16Columns: [1, 2, 3] }),
    8 + 32 / k + (3 * (16 * n + 32)) / (n * k),
  );
});

// Shapes with awkward counts: an odd number of Q8_0 groups (padding), a partial nested DQ
// block, blocks spanning rows (blocksize > K).
const CASES: Array<[QuantFormat, number, number, QuantOptions]> = [
  ["fp16", 6, 10, {}],
  ["int8-absmax", 6, 12, {}],
  ["int8-vectorwise", 5, 16, {}],
  ["llm-int8", 6, 16, {}],
  ["llm-int8", 6, 16, { fp16Columns: [0, 5, 9] }],
  ["nf4", 3, 64, {}],
  ["nf4", 8, 32, { blocksize: 128 }],
  ["nf4-dq", 10, 64 * 30, {}],
  ["nf4-dq", 4, 64, { blocksize: 32 }],
  ["fp4", 2, 96, { blocksize: 32 }],
  ["int4", 4, 128, {}],
  ["q8_0", 3, 32, {}],
  ["q8_0", 4, 64, {}],
];

Deno.test("packed byte counts equal the accounting exactly", () => {
  for (const [format, n, k, options] of CASES) {
    const w = quantize(format, randn(n * k, n + k), n, k, options);
    const bytes = packedBytes(w);
    assertEquals(bytes, packedBytesFor(format, n, k, options), `${format} [${n}, ${k}]`);
    assertEquals(bitsPerParameter(format, n, k, options) * n * k / 8, bytes, `${format} bits`);
    // Every array is u32-sized: a kernel reads them all with u32 loads.
    for (const v of Object.values(w)) {
      if (ArrayBuffer.isView(v)) assert(v.byteLength % 4 === 0, `${format}: ${v.constructor.name}`);
    }
  }
  // The nominal sizes where the counts are even.
  const nf4 = quantize("nf4", new Float32Array(64 * 64), 64, 64);
  assertEquals(packedBytes(nf4), (64 * 64 * 4.5) / 8);
  const q8 = quantize("q8_0", new Float32Array(64 * 64), 64, 64);
  assertEquals(packedBytes(q8), (64 * 64 * 8.5) / 8);
});

Deno.test("each CPU reference matmul equals dequantize-then-f32-matmul", () => {
  // Not the int8 formats: they quantize the activations too (tested against the exact
  // integer formula in int8.test.ts).
  const m = 5;
  for (const [format, n, k, options] of CASES) {
    if (format.includes("int8")) continue;
    const x = randn(m * k, 100 + n);
    const w = quantize(format, roundToF16(randn(n * k, n * k, 0.05)), n, k, options);
    const twin = matmulQuantized(x, m, w, options);
    const ref = matmulF32(x, m, dequantize(w), n, k);
    // Both accumulate in f64; they differ only in the factoring (scale per block vs per
    // element) and the f32 rounding of the dequantized weights: a few f32 ulps of Σ|x·w|.
    let scale = 0;
    for (const v of ref) scale = Math.max(scale, Math.abs(v));
    assertClose(
      twin,
      ref,
      { atol: 1e-6 * Math.max(scale, 1), rtol: 1e-5 },
      `${format} [${n}, ${k}]`,
    );
  }
});

Deno.test("every format has a label, a description and defaults", () => {
  assertEquals(QUANT_FORMATS.length, 9);
  for (const f of QUANT_FORMATS) {
    assert(FORMAT_INFO[f].label.length > 0 && FORMAT_INFO[f].description.length > 0, f);
  }
  assertEquals(FORMAT_INFO["nf4"].defaults.blocksize, 64);
  assertEquals(FORMAT_INFO["llm-int8"].defaults.threshold, 6);
});

Deno.test("fp16 round trip is f16 rounding; bad shapes give clear errors", () => {
  const w = randn(4 * 8, 9);
  assertEquals(dequantize(quantize("fp16", w, 4, 8)), roundToF16(w));
  assertThrowsWith(
    () => quantize("fp16", new Float32Array(9), 3, 3),
    "K (in_features) = 3 must be a multiple of 2",
  );
  assertThrowsWith(
    () => quantize("q8_0", new Float32Array(48), 1, 48),
    "q8_0: K (in_features) = 48 must be a multiple of 32",
  );
  assertThrowsWith(
    () => quantize("nf4", new Float32Array(10), 2, 4),
    "has 10 values but its shape [2, 4] needs 8",
  );
  assertThrowsWith(
    () => quantize("int4", new Float32Array(64), 1, 64, { blocksize: 100 }),
    "power of two",
  );
  assertThrowsWith(() => packedBytesFor("nf4", 0, 64), "invalid weight shape");
  const q = quantize("nf4", new Float32Array(64), 1, 64);
  assertThrowsWith(() => matmulQuantized(new Float32Array(63), 1, q), "must be [M=1, K=64]");
});

Deno.test("the accounting rejects shapes the layout cannot hold", () => {
  assertThrowsWith(() => bitsPerParameter("nf4", 1, 96), "N * K = 96 must be a multiple of 64");
  assertThrowsWith(
    () => bitsPerParameter("q8_0", 4, 48),
    "K (in_features) = 48 must be a multiple of 32",
  );
  assertThrowsWith(() => bitsPerParameter("int8-vectorwise", 4, 30), "multiple of 4");
});
