import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { assertThrowsWith } from "./assert.ts";
import { randn } from "../helpers/random.ts";
import {
  dequantizeNf4,
  encodeNf4,
  NF4_PIVOTS,
  NF4_TABLE,
  quantizeNf4,
} from "../../lib/quant/nf4.ts";
import { dequantizeNf4Dq, dequantizeNf4DqAbsmax, quantizeNf4Dq } from "../../lib/quant/nf4_dq.ts";
import { createDynamicMap, DYNAMIC_MAP_SIGNED } from "../../lib/quant/dynamic_map.ts";
import { byteAt, unpackNibbles } from "../../lib/quant/pack.ts";
import { meanAbsError, meanRelativeError } from "../../lib/quant/stats.ts";

// bitsandbytes' get_4bit_type("nf4"), verbatim.
const BNB_NF4 = [
  -1.0,
  -0.6961928009986877,
  -0.5250730514526367,
  -0.39491748809814453,
  -0.28444138169288635,
  -0.18477343022823334,
  -0.09105003625154495,
  0.0,
  0.07958029955625534,
  0.16093020141124725,
  0.24611230194568634,
  0.33791524171829224,
  0.44070982933044434,
  0.5626170039176941,
  0.7229568362236023,
  1.0,
];

// The thresholds of bitsandbytes' dQuantizeNF4 tree (kernels.cu), sorted.
const BNB_NF4_PIVOTS = [
  -0.8480964004993439,
  -0.6106329262256622,
  -0.4599952697753906,
  -0.33967943489551544,
  -0.23460740596055984,
  -0.13791173323988914,
  -0.045525018125772476,
  0.03979014977812767,
  0.1202552504837513,
  0.2035212516784668,
  0.2920137718319893,
  0.3893125355243683,
  0.5016634166240692,
  0.6427869200706482,
  0.8614784181118011,
];

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);
/** The next f32 after `x` in direction `dir` (+1 up, -1 down). */
function nextF32(x: number, dir: 1 | -1): number {
  f32[0] = x;
  if (x === 0) return dir * 1.4e-45;
  u32[0] += (x > 0) === (dir > 0) ? 1 : -1;
  return f32[0];
}

Deno.test("NF4 table is bitsandbytes' table, bit for bit as f32", () => {
  assertEquals(NF4_TABLE.length, 16);
  for (let i = 0; i < 16; i++) assertEquals(NF4_TABLE[i], Math.fround(BNB_NF4[i]), `entry ${i}`);
});

Deno.test("NF4 thresholds equal bitsandbytes' decision-tree constants as f32", () => {
  for (let i = 0; i < 15; i++) {
    assertEquals(NF4_PIVOTS[i], Math.fround(BNB_NF4_PIVOTS[i]), `pivot ${i}`);
  }
});

Deno.test("NF4 encoding is nearest-value: each midpoint goes low, the next f32 up goes high", () => {
  for (let i = 0; i < 15; i++) {
    const p = NF4_PIVOTS[i];
    assertEquals(encodeNf4(p), i, `at pivot ${i}`);
    assertEquals(encodeNf4(nextF32(p, 1)), i + 1, `just above pivot ${i}`);
    assertEquals(encodeNf4(nextF32(p, -1)), i, `just below pivot ${i}`);
  }
  // A fine sweep of [-1, 1]: the code is the argmin of |x - table| (no ties on this grid).
  for (let j = 0; j <= 20000; j++) {
    const x = Math.fround(-1 + j / 10000);
    let best = 0;
    for (let c = 1; c < 16; c++) {
      if (Math.abs(x - NF4_TABLE[c]) < Math.abs(x - NF4_TABLE[best])) best = c;
    }
    assertEquals(encodeNf4(x), best, `x = ${x}`);
  }
  for (let c = 0; c < 16; c++) assertEquals(encodeNf4(NF4_TABLE[c]), c, `table value ${c}`);
});

Deno.test("NF4 packing: element 2j in the high nibble, bytes little-endian in each u32", () => {
  const w = new Float32Array(64);
  w[0] = -1; // code 0
  w[1] = 1; // code 15
  w[2] = 0.7229568362236023; // code 14
  w[3] = -0.6961928009986877; // code 1
  const q = quantizeNf4(w, 1, 64);
  assertEquals(q.absmax[0], 1);
  // byte 0 = (0 << 4) | 15, byte 1 = (14 << 4) | 1, bytes 2-3 = code 7 (zero) twice.
  assertEquals(q.codes[0], 0x7777e10f);
  assertEquals(q.codes[1], 0x77777777);
  assertEquals(Array.from(unpackNibbles(q.codes, 4)), [0, 15, 14, 1]);
  assertEquals(Array.from(dequantizeNf4(q).subarray(0, 4)), [
    -1,
    1,
    Math.fround(0.7229568362236023),
    Math.fround(-0.6961928009986877),
  ]);
});

// bitsandbytes' test_4bit_quant reference errors for nf4 on randn(1024, 1024) (means of 1000
// samples): abs 0.072792 / rel 0.203299 at blocksize 64.
const N = 1024;
const K = 1024;
const A = randn(N * K, 1);

Deno.test("NF4 on randn(1024, 1024), blocksize 64: bitsandbytes' errors within 5%", () => {
  const d = dequantizeNf4(quantizeNf4(A, N, K, { blocksize: 64 }));
  const err = meanAbsError(d, A);
  const rel = meanRelativeError(d, A, 1e-8);
  assert(Math.abs(err / 0.072792 - 1) < 0.05, `mean abs error ${err}`);
  assert(Math.abs(rel / 0.203299 - 1) < 0.05, `mean relative error ${rel}`);
});

Deno.test("NF4 with double quantization on randn(1024, 1024): abs < 0.11, rel < 0.28", () => {
  const q = quantizeNf4Dq(A, N, K);
  const d = dequantizeNf4Dq(q);
  const err = meanAbsError(d, A);
  const rel = meanRelativeError(d, A, 1e-15); // test_4bit_compressed_stats uses 1e-15
  assert(err < 0.11, `abs ${err}`);
  assert(rel < 0.28, `rel ${rel}`);
  // DQ costs almost nothing: within 1% of plain NF4's error.
  const plain = meanAbsError(dequantizeNf4(quantizeNf4(A, N, K)), A);
  assert(err < plain * 1.01, `dq ${err} vs plain ${plain}`);
  // The decoded block absmax is close to the exact one: the 8-bit dynamic map of the centred
  // values keeps them within 2% here.
  const exact = quantizeNf4(A, N, K).absmax;
  const decoded = dequantizeNf4DqAbsmax(q);
  for (let b = 0; b < exact.length; b++) {
    assert(Math.abs(decoded[b] - exact[b]) < 0.02 * exact[b], `block ${b}`);
  }
});

Deno.test("NF4 error grows monotonically with blocksize 32 -> 4096", () => {
  const sizes = [32, 64, 128, 256, 512, 1024, 2048, 4096];
  // bitsandbytes' reference abs errors (blocksize 64..4096), to within 5%.
  const bnb = [NaN, 0.072792, 0.076835, 0.080326, 0.083535, 0.086603, 0.089592, 0.092537];
  let prev = 0;
  sizes.forEach((bs, i) => {
    const err = meanAbsError(dequantizeNf4(quantizeNf4(A, N, K, { blocksize: bs })), A);
    assert(err > prev, `blocksize ${bs}: ${err} not above ${prev}`);
    if (!Number.isNaN(bnb[i])) assert(Math.abs(err / bnb[i] - 1) < 0.05, `bs ${bs}: ${err}`);
    prev = err;
  });
});

Deno.test("double quantization: 8-bit codes packed four per u32, nested blocks of 256", () => {
  const w = randn(64 * 320, 5); // 320 blocks of 64: one full nested block and one of 64
  const q = quantizeNf4Dq(w, 64, 320);
  assertEquals(q.qabsmax.length, 80);
  assertEquals(q.absmax2.length, 2);
  assertEquals(q.offset.length, 1);
  const exact = quantizeNf4(w, 64, 320).absmax;
  let mean = 0;
  for (const a of exact) mean += a;
  assertEquals(q.offset[0], Math.fround(mean / exact.length));
  // Block 5 decodes from byte 1 of word 1.
  const b = 5;
  assertEquals(byteAt(q.qabsmax, b), (q.qabsmax[1] >>> 8) & 0xff);
  const decoded = Math.fround(
    Math.fround(DYNAMIC_MAP_SIGNED[byteAt(q.qabsmax, b)] * q.absmax2[0]) + q.offset[0],
  );
  assertEquals(dequantizeNf4DqAbsmax(q)[b], decoded);
});

Deno.test("signed dynamic map: 256 sorted values, 127 negative, 0 at 127, 1 at 255", () => {
  const map = createDynamicMap(true, 7, 8);
  assertEquals(map.length, 256);
  for (let i = 1; i < 256; i++) assert(map[i] > map[i - 1], `not increasing at ${i}`);
  assertEquals(map[127], 0);
  assertEquals(map[255], 1);
  // The largest magnitudes are midpoints of linspace(0.1, 1, 65): (0.9859375 + 1) / 2.
  assert(Math.abs(map[254] - 0.99296875) < 1e-6, `map[254] = ${map[254]}`);
  assertEquals(map[0], -map[254]);
  // The smallest: 1e-6 * (0.1 + 1) / 2.
  assert(Math.abs(map[128] - 5.5e-7) < 1e-12, `map[128] = ${map[128]}`);
});

Deno.test("NF4 rejects bad blocksizes and shapes with errors naming the requirement", () => {
  const w = new Float32Array(96);
  assertThrowsWith(() => quantizeNf4(w, 1, 96), "N * K = 96 must be a multiple of 64");
  assertThrowsWith(() => quantizeNf4(w, 1, 96, { blocksize: 48 }), "power of two in 32..4096");
  assertThrowsWith(() => quantizeNf4(w, 2, 64), "has 96 values but its shape [2, 64]");
  assertThrowsWith(() => quantizeNf4Dq(w, 1, 96, { blocksize: 8192 }), "power of two");
});
