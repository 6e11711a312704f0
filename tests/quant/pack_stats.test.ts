import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { assertThrowsWith } from "./assert.ts";
import {
  byteAt,
  nibbleAt,
  packBytes,
  packNibbles,
  roundHalfAway,
  roundHalfEven,
  unpackNibbles,
} from "../../lib/quant/pack.ts";
import {
  cosineSimilarity,
  maxAbsError,
  meanAbsError,
  meanRelativeError,
  relativeFrobeniusError,
} from "../../lib/quant/stats.ts";

Deno.test("rounding: half to even (torch, WGSL) and half away from zero (roundf)", () => {
  assertEquals([0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 2.4, -2.6].map(roundHalfEven), [
    0,
    2,
    2,
    -0,
    -2,
    -2,
    2,
    -3,
  ]);
  assertEquals([0.5, 1.5, 2.5, -0.5, -2.5, 2.4].map(roundHalfAway), [1, 2, 3, -1, -3, 2]);
});

Deno.test("nibbles: element 2j high, byte j at bits 8j of its word", () => {
  const codes = Uint8Array.from({ length: 16 }, (_, i) => i);
  const words = packNibbles(codes);
  assertEquals(Array.from(words), [0x67452301, 0xefcdab89]);
  for (let e = 0; e < 16; e++) assertEquals(nibbleAt(words, e), e);
  assertEquals(unpackNibbles(words, 16), codes);
  assertThrowsWith(() => packNibbles(new Uint8Array(6)), "not a multiple of 8");
});

Deno.test("bytes: four per u32, element 4i lowest, last word zero-padded", () => {
  const words = packBytes(new Uint8Array([0x11, 0x22, 0x33, 0x44, 0xff]));
  assertEquals(Array.from(words), [0x44332211, 0xff]);
  assertEquals(byteAt(words, 4), 0xff);
});

Deno.test("error metrics", () => {
  const ref = [1, -2, 4, 0.5];
  const approx = [1.1, -2, 3.6, 0.5];
  assert(Math.abs(meanAbsError(approx, ref) - 0.125) < 1e-12);
  assert(Math.abs(maxAbsError(approx, ref) - 0.4) < 1e-12);
  // bitsandbytes: mean(|A - B| / (|A| + 1e-8)), A the original.
  assert(Math.abs(meanRelativeError(approx, ref) - (0.1 / 1 + 0.4 / 4) / 4) < 1e-8);
  const frob = Math.sqrt((0.01 + 0.16) / (1 + 4 + 16 + 0.25));
  assert(Math.abs(relativeFrobeniusError(approx, ref) - frob) < 1e-12);
  assert(Math.abs(cosineSimilarity([1, 2], [2, 4]) - 1) < 1e-12);
  assertEquals(cosineSimilarity([1, 0], [0, 1]), 0);
  assertThrowsWith(() => meanAbsError([1], [1, 2]), "must be equal");
});
