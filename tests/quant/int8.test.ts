import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { assertClose, randn, uniform } from "../helpers/random.ts";
import { assertThrowsWith } from "./assert.ts";
import { roundToF16 } from "../../lib/gpu/f16.ts";
import { matmulF32 } from "../../lib/quant/fp16.ts";
import {
  dequantizeInt8Absmax,
  matmulInt8Absmax,
  quantizeInt8Absmax,
} from "../../lib/quant/int8_absmax.ts";
import {
  dequantizeInt8Vectorwise,
  int8VectorwiseQuant,
  matmulInt8Vectorwise,
  quantizeInt8Vectorwise,
} from "../../lib/quant/int8_vectorwise.ts";
import { findOutlierColumns, matmulLlmInt8, quantizeLlmInt8 } from "../../lib/quant/llm_int8.ts";
import { packInt8, unpackInt8 } from "../../lib/quant/pack.ts";
import { relativeFrobeniusError } from "../../lib/quant/stats.ts";

/** bitsandbytes' reference `vectorwise_quant`: round(x * 127 / rowmax), half to even, in f32. */
function refRowQuant(a: Float32Array, rows: number, cols: number, skip?: (v: number) => boolean) {
  const stats = new Float32Array(rows);
  const codes = new Int8Array(rows * cols);
  for (let r = 0; r < rows; r++) {
    let m = 0;
    for (let c = 0; c < cols; c++) {
      const v = Math.abs(a[r * cols + c]);
      if (!skip?.(v)) m = Math.max(m, v);
    }
    stats[r] = m;
    const s = Math.fround(127 / m);
    for (let c = 0; c < cols; c++) {
      const v = Math.fround(a[r * cols + c] * s);
      const fl = Math.floor(v);
      codes[r * cols + c] = v - fl === 0.5 ? (fl % 2 === 0 ? fl : fl + 1) : Math.round(v);
    }
  }
  return { stats, codes };
}

/** The exact integer formula: int32 dot, then f32(acc) * (sx * sw) * (1/127²). */
function refInt8Product(
  xq: Int8Array,
  sx: Float32Array,
  wq: Int8Array,
  sw: Float32Array,
  m: number,
  n: number,
  k: number,
): Float32Array {
  const y = new Float32Array(m * n);
  for (let i = 0; i < m; i++) {
    for (let j = 0; j < n; j++) {
      let acc = 0;
      for (let t = 0; t < k; t++) acc += xq[i * k + t] * wq[j * k + t];
      assert(Number.isSafeInteger(acc) && Math.abs(acc) < 2 ** 31);
      y[i * n + j] = Math.fround(
        Math.fround(acc * Math.fround(sx[i] * sw[j])) * Math.fround(1 / 16129),
      );
    }
  }
  return y;
}

Deno.test("int8 packing: four per u32, element 4i in the lowest byte, two's complement", () => {
  const codes = new Int8Array([1, -1, 127, -127, 0, 5, -128, 64]);
  const words = packInt8(codes);
  assertEquals(Array.from(words), [0x817fff01, 0x40800500]);
  assertEquals(unpackInt8(words), codes);
});

Deno.test("int8 vector-wise: codes and SCB match bitsandbytes' reference vectorwise_quant", () => {
  const n = 48;
  const k = 96;
  const w = roundToF16(randn(n * k, 3, 0.05));
  const q = quantizeInt8Vectorwise(w, n, k);
  const ref = refRowQuant(w, n, k);
  assertEquals(q.scb, ref.stats);
  assertEquals(unpackInt8(q.codes), ref.codes);
});

Deno.test("int8 vector-wise round trip is within half an LSB per row", () => {
  const n = 64;
  const k = 256;
  const w = roundToF16(randn(n * k, 4, 0.02));
  const q = quantizeInt8Vectorwise(w, n, k);
  const d = dequantizeInt8Vectorwise(q);
  for (let r = 0; r < n; r++) {
    const lsb = q.scb[r] / 127;
    for (let c = 0; c < k; c++) {
      const err = Math.abs(w[r * k + c] - d[r * k + c]);
      // half an LSB, plus f32 rounding of the scale and of the decode (a few ulps of scb)
      assert(err <= lsb / 2 + 1e-6 * q.scb[r], `row ${r} col ${c}: ${err} > ${lsb / 2}`);
    }
  }
});

Deno.test("int8 vector-wise product equals the exact integer formula, bit for bit", () => {
  const m = 8;
  const n = 24;
  const k = 64;
  const x = randn(m * k, 5);
  const w = roundToF16(randn(n * k, 6, 0.1));
  const y = matmulInt8Vectorwise(x, m, quantizeInt8Vectorwise(w, n, k));
  const rx = refRowQuant(x, m, k);
  const rw = refRowQuant(w, n, k);
  assertEquals(y, refInt8Product(rx.codes, rx.stats, rw.codes, rw.stats, m, n, k));
  // ... and the dequantize-both-then-multiply product up to f32 rounding.
  const xd = new Float32Array(m * k).map((_, i) => rx.codes[i] * rx.stats[Math.floor(i / k)] / 127);
  assertClose(
    y,
    matmulF32(xd, m, dequantizeInt8Vectorwise(quantizeInt8Vectorwise(w, n, k)), n, k),
    {
      atol: 1e-5,
      rtol: 1e-5,
    },
    "vs dequantized",
  );
});

Deno.test("int8 vector-wise product vs the FP16 product: atol 0.025, rtol 0.05", () => {
  // bitsandbytes' test_int8_linear_matmul_half: X ~ N(0, 0.5²), W xavier-uniform, here with
  // K = 256 (outputs have std ≈ 0.6).
  const m = 32;
  const n = 64;
  const k = 256;
  const x = randn(m * k, 21, 0.5);
  const bound = Math.sqrt(6 / (k + n));
  const w = roundToF16(uniform(n * k, 22, -bound, bound));
  const ref = matmulF32(roundToF16(x), m, w, n, k);
  const y = matmulInt8Vectorwise(x, m, quantizeInt8Vectorwise(w, n, k));
  assertClose(y, ref, { atol: 0.025, rtol: 0.05 }, "int8 vs fp16");
});

Deno.test("int8 absmax (per tensor): one scale, exact integer formula", () => {
  const m = 4;
  const n = 16;
  const k = 32;
  const x = randn(m * k, 7);
  const w = roundToF16(randn(n * k, 8, 0.1));
  const q = quantizeInt8Absmax(w, n, k);
  let amax = 0;
  for (const v of w) amax = Math.max(amax, Math.abs(v));
  assertEquals(q.absmax[0], amax);
  const d = dequantizeInt8Absmax(q);
  for (let i = 0; i < w.length; i++) assert(Math.abs(d[i] - w[i]) <= amax / 254 + 1e-6 * amax);
  // The whole tensor as one "row".
  const rx = refRowQuant(x, 1, m * k);
  const rw = refRowQuant(w, 1, n * k);
  const y = matmulInt8Absmax(x, m, q);
  assertEquals(
    y,
    refInt8Product(
      rx.codes,
      new Float32Array(m).fill(rx.stats[0]),
      rw.codes,
      new Float32Array(n).fill(rw.stats[0]),
      m,
      n,
      k,
    ),
  );
});

// Activations with outlier features: three hidden dimensions at 20..30 (fixed sign per
// dimension) in a quarter of the tokens, as LLM.int8() describes; W ~ N(0, 1/K) so that the
// regular part of Y is O(1) (|Y| reaches ≈ 10 with the outliers).
const M = 32;
const N = 128;
const K = 256;
const OUTLIER_DIMS = [7, 100, 201];
const X = randn(M * K, 11);
const mags = uniform(M * 3, 12, 20, 30);
for (let m = 0; m < M; m += 4) {
  OUTLIER_DIMS.forEach((d, j) => X[m * K + d] = (j === 1 ? -1 : 1) * mags[m * 3 + j]);
}
const W = roundToF16(randn(N * K, 13, 1 / Math.sqrt(K)));
const Y_FP16 = matmulF32(roundToF16(X), M, W, N, K);

Deno.test("LLM.int8() with outliers matches the FP16 product (rtol 0.05, atol 0.1)", () => {
  // atol: the outlier part multiplies |x| up to 30 in three columns by int8-dequantized weights
  // off by up to half an LSB (scb / 254 ≈ 8e-4), i.e. up to ≈ 0.07, plus the int8 part.
  const y = matmulLlmInt8(X, M, quantizeLlmInt8(W, N, K), { threshold: 3.0 });
  assertClose(y, Y_FP16, { atol: 0.1, rtol: 0.05 }, "llm.int8 vs fp16");
});

Deno.test("LLM.int8() beats vector-wise int8, which beats per-tensor absmax", () => {
  const eLlm = relativeFrobeniusError(
    matmulLlmInt8(X, M, quantizeLlmInt8(W, N, K), { threshold: 3.0 }),
    Y_FP16,
  );
  const eVec = relativeFrobeniusError(
    matmulInt8Vectorwise(X, M, quantizeInt8Vectorwise(W, N, K)),
    Y_FP16,
  );
  const eAbs = relativeFrobeniusError(matmulInt8Absmax(X, M, quantizeInt8Absmax(W, N, K)), Y_FP16);
  // Measured: 0.0079, 0.0192, 0.0396.
  assert(eLlm < 0.5 * eVec, `llm.int8 ${eLlm} vs vector-wise ${eVec}`);
  assert(eVec < 0.75 * eAbs, `vector-wise ${eVec} vs absmax ${eAbs}`);
  // The paper's variant (FP16 weights for the outlier columns, kept at quantization time) is
  // more accurate still.
  const ePaper = relativeFrobeniusError(
    matmulLlmInt8(X, M, quantizeLlmInt8(W, N, K, { fp16Columns: OUTLIER_DIMS }), {
      threshold: 3.0,
      outlierWeights: "fp16",
    }),
    Y_FP16,
  );
  assert(ePaper < eLlm, `fp16 outlier weights ${ePaper} vs dequantized ${eLlm}`);
});

Deno.test("LLM.int8() product follows bitsandbytes' decomposition step by step", () => {
  const threshold = 3.0;
  const w = quantizeLlmInt8(W, N, K);
  const y = matmulLlmInt8(X, M, w, { threshold });
  // int8 part: outlier elements left out of the row absmax, outlier columns zeroed.
  const outl = findOutlierColumns(X, M, K, threshold).columns;
  const rx = refRowQuant(X, M, K, (v) => v >= threshold);
  for (let i = 0; i < M; i++) for (const c of outl) rx.codes[i * K + c] = 0;
  const wq = unpackInt8(w.codes);
  const ref = refInt8Product(rx.codes, rx.stats, wq, w.scb, M, N, K);
  // outlier part: f16(x) times the int8-dequantized w, not rounded to f16 as bitsandbytes
  // rounds it (the scale applies to the sum: see lib/quant/llm_int8.ts).
  const xo = roundToF16(X);
  const wd = dequantizeInt8Vectorwise(w);
  for (let i = 0; i < M; i++) {
    for (let j = 0; j < N; j++) {
      let acc = 0;
      for (const c of outl) acc += xo[i * K + c] * wd[j * K + c];
      ref[i * N + j] += acc;
    }
  }
  assertClose(y, ref, { atol: 1e-6, rtol: 1e-6 }, "llm.int8 vs step-by-step");
  // Without decomposition it is exactly the vector-wise product.
  assertEquals(matmulLlmInt8(X, M, w, { threshold: 0 }), matmulInt8Vectorwise(X, M, w));
});

Deno.test("int8VectorwiseQuant with a threshold: outlier columns zeroed, absmax without them", () => {
  const a = new Float32Array([
    1,
    2,
    8,
    0, //
    -0.5,
    1,
    2.5,
    0.25, //
  ]);
  const q = int8VectorwiseQuant(a, 2, 4, 6);
  assertEquals(q.outlierCols, new Uint32Array([2]));
  // Row 1's 2.5 is no outlier: it still sets the row absmax, though its column is zeroed.
  assertEquals(q.rowStats, new Float32Array([2, 2.5]));
  assertEquals(Array.from(unpackInt8(q.codes)), [64, 127, 0, 0, -25, 51, 0, 13]);
});

Deno.test("findOutlierColumns: indices, max |x| and rows crossing", () => {
  const s = findOutlierColumns(X, M, K, 6.0);
  assertEquals(Array.from(s.columns), OUTLIER_DIMS);
  assertEquals(Array.from(s.rowCount), [8, 8, 8]);
  for (let j = 0; j < 3; j++) {
    let m = 0;
    for (let i = 0; i < M; i++) m = Math.max(m, Math.abs(X[i * K + OUTLIER_DIMS[j]]));
    assertEquals(s.maxAbs[j], m);
    assert(m >= 20 && m <= 30);
  }
});

Deno.test("int8 formats reject K not a multiple of 4 and mismatched activations", () => {
  const w = new Float32Array(2 * 30);
  assertThrowsWith(
    () => quantizeInt8Vectorwise(w, 2, 30),
    "K (in_features) = 30 must be a multiple of 4",
  );
  assertThrowsWith(() => quantizeInt8Absmax(w, 2, 30), "W [N=2, K=30]");
  assertThrowsWith(() => quantizeLlmInt8(w, 2, 30), "multiple of 4");
  const q = quantizeInt8Vectorwise(new Float32Array(8), 2, 4);
  assertThrowsWith(() => matmulInt8Vectorwise(new Float32Array(6), 2, q), "must be [M=2, K=4]");
  assertThrowsWith(
    () => quantizeLlmInt8(new Float32Array(12), 3, 4, { fp16Columns: [1] }),
    "N (out_features) = 3 must be a multiple of 2",
  );
  assertThrowsWith(
    () => quantizeLlmInt8(new Float32Array(8), 2, 4, { fp16Columns: [4] }),
    "outside [0, K=4)",
  );
});
