import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { randn } from "../helpers/random.ts";
import { f16BitsToF32, f32ToF16Bits, roundToF16 } from "../../lib/gpu/f16.ts";
import { dequantizeFp4, encodeFp4, FP4_TABLE, quantizeFp4 } from "../../lib/quant/fp4.ts";
import { dequantizeInt4, encodeInt4, INT4_TABLE, quantizeInt4 } from "../../lib/quant/int4.ts";
import { dequantizeQ8_0, q8_0Scale, quantizeQ8_0 } from "../../lib/quant/q8_0.ts";
import { unpackInt8, unpackNibbles } from "../../lib/quant/pack.ts";
import { meanAbsError, meanRelativeError } from "../../lib/quant/stats.ts";

Deno.test("FP4 table is bitsandbytes' (code -> value × 12: 0, 0.0625, 8, 12, 4, 6, 2, 3)", () => {
  const times12 = [0, 0.0625, 8, 12, 4, 6, 2, 3];
  for (let c = 0; c < 16; c++) {
    const want = (c & 8 ? -1 : 1) * times12[c & 7] / 12;
    assert(Math.abs(FP4_TABLE[c] - want) < 1e-7, `code ${c}: ${FP4_TABLE[c]} vs ${want}`);
  }
});

Deno.test("FP4 encoding picks the nearest value and sets the sign bit for x < 0", () => {
  for (let j = 0; j <= 4000; j++) {
    const x = Math.fround(-1 + j / 2000);
    const code = encodeFp4(x);
    let best = Infinity;
    for (let c = 0; c < 16; c++) best = Math.min(best, Math.abs(x - FP4_TABLE[c]));
    // bitsandbytes' thresholds are 7-digit decimals of the midpoints: allow that slack.
    assert(Math.abs(x - FP4_TABLE[code]) <= best + 1e-6, `x = ${x}: code ${code}`);
    if (x < 0) assert(code & 8, `x = ${x}: no sign bit`);
  }
  assertEquals(encodeFp4(1), 0b0011);
  assertEquals(encodeFp4(-0.5), 0b1101);
});

Deno.test("FP4 on randn(1024, 1024), blocksize 64: bitsandbytes' errors within 5%", () => {
  const a = randn(1024 * 1024, 2);
  const d = dequantizeFp4(quantizeFp4(a, 1024, 1024));
  const err = meanAbsError(d, a);
  const rel = meanRelativeError(d, a);
  assert(Math.abs(err / 0.096545 - 1) < 0.05, `abs ${err}`);
  assert(Math.abs(rel / 0.26013 - 1) < 0.05, `rel ${rel}`);
});

Deno.test("FP4 and INT4 round trips stay within half the table's largest gap", () => {
  const n = 64;
  const k = 256;
  const w = roundToF16(randn(n * k, 3, 0.03));
  const fp4 = quantizeFp4(w, n, k);
  const int4 = quantizeInt4(w, n, k);
  const cases = [
    { name: "fp4", absmax: fp4.absmax, deq: dequantizeFp4(fp4), halfGap: 1 / 6 },
    { name: "int4", absmax: int4.absmax, deq: dequantizeInt4(int4), halfGap: 1 / 14 },
  ];
  for (const { name, absmax, deq, halfGap } of cases) {
    for (let i = 0; i < w.length; i++) {
      const err = Math.abs(deq[i] - w[i]);
      const bound = halfGap * absmax[Math.floor(i / 64)] * (1 + 1e-6);
      assert(err <= bound, `${name} element ${i}: ${err}`);
    }
    // Each block's absmax element is reproduced (fp4: up to the 0.66666667 constant's rounding).
    for (let b = 0; b < absmax.length; b++) {
      let at = b * 64;
      for (let i = b * 64; i < (b + 1) * 64; i++) if (Math.abs(w[i]) > Math.abs(w[at])) at = i;
      assert(Math.abs(deq[at] - w[at]) <= 1e-6 * absmax[b], `${name} block ${b}`);
    }
  }
});

Deno.test("INT4 codes: round(7x) + 8 in 1..15, half to even", () => {
  assertEquals(INT4_TABLE[8], 0);
  assertEquals(INT4_TABLE[15], 1);
  assertEquals(encodeInt4(1), 15);
  assertEquals(encodeInt4(-1), 1);
  assertEquals(encodeInt4(0.5 / 7), 8); // 0.5 rounds to 0
  assertEquals(encodeInt4(1.5 / 7), 10); // 1.5 rounds to 2
  const q = quantizeInt4(randn(256, 4), 4, 64);
  for (const c of unpackNibbles(q.codes, 256)) assert(c >= 1 && c <= 15);
});

Deno.test("Q8_0 round trip: within half an LSB of each group (plus the f16 scale rounding)", () => {
  const n = 16;
  const k = 128;
  const w = roundToF16(randn(n * k, 5, 0.02));
  const q = quantizeQ8_0(w, n, k);
  const d = dequantizeQ8_0(q);
  for (let g = 0; g < (n * k) / 32; g++) {
    let amax = 0;
    for (let i = 32 * g; i < 32 * g + 32; i++) amax = Math.max(amax, Math.abs(w[i]));
    const dF32 = Math.fround(amax / 127);
    const d16 = q8_0Scale(q, g);
    assertEquals(d16, f16BitsToF32(f32ToF16Bits(dF32)));
    // Codes come from the f32 d (half an LSB), decoding uses the f16 d: |q| ≤ 127 times the
    // f16 rounding of d on top.
    const bound = dF32 / 2 + 127 * Math.abs(d16 - dF32) + 1e-6 * amax;
    for (let i = 32 * g; i < 32 * g + 32; i++) {
      assert(Math.abs(d[i] - w[i]) <= bound, `group ${g} element ${i}`);
    }
  }
});

Deno.test("Q8_0 layout: codes four per u32, f16 scales two per u32 (group 2i low)", () => {
  const w = new Float32Array(64);
  w[0] = 127; // group 0: d = 1
  w[1] = -3;
  w[32] = 254; // group 1: d = 2
  w[33] = 5; // 2.5 rounds away from zero: 3
  const q = quantizeQ8_0(w, 1, 64);
  assertEquals(q.scales[0], (0x4000 << 16 | 0x3c00) >>> 0);
  const codes = unpackInt8(q.codes);
  assertEquals([codes[0], codes[1], codes[32], codes[33]], [127, -3, 127, 3]);
  assertEquals(q.codes[0] & 0xffff, 0xfd7f);
});
