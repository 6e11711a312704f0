/**
 * Bit packing shared by every quantized format, so that a WGSL kernel reads all of them with
 * plain `u32` loads:
 *
 * - **int8**: four codes per `u32`, element `4i + j` in bits `8j .. 8j+7` (element `4i` in the
 *   lowest byte), two's complement. In WGSL: `extractBits(bitcast<i32>(word), 8u * j, 8u)`
 *   (sign-extending), or `dot4I8Packed(a, b)` on two such words.
 * - **4-bit**: two codes per byte with element `2j` in the HIGH nibble (bitsandbytes' order),
 *   bytes four per `u32` little-endian (byte 0 = bits 0-7). Element `e` therefore lives in word
 *   `e >> 3` at bit `8 * ((e >> 1) & 3) + ((e & 1) == 0 ? 4 : 0)`.
 * - **8-bit unsigned** (double-quantized absmax codes): four per `u32`, element `4i` lowest.
 *
 * Rounding helpers live here too, because the quantizers must round the way the kernels do.
 *
 * @module
 */

/**
 * Rounds half to even, as `torch.round`, CUDA's `__float2int_rn` and WGSL's `round()` do.
 *
 * @example
 * ```ts
 * import { roundHalfEven } from "./pack.ts";
 * roundHalfEven(2.5); // 2
 * roundHalfEven(-3.5); // -4
 * ```
 */
export function roundHalfEven(x: number): number {
  const r = Math.round(x); // half up
  return r - x === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/**
 * Rounds half away from zero, as C's `roundf` (which llama.cpp uses for Q8_0) does.
 *
 * @example
 * ```ts
 * import { roundHalfAway } from "./pack.ts";
 * roundHalfAway(2.5); // 3
 * roundHalfAway(-2.5); // -3
 * ```
 */
export function roundHalfAway(x: number): number {
  return x < 0 ? -Math.round(-x) : Math.round(x);
}

/**
 * Packs int8 codes four per `u32`, element `4i` in the lowest byte. The length must be a
 * multiple of 4.
 *
 * @example
 * ```ts
 * import { packInt8 } from "./pack.ts";
 * packInt8(new Int8Array([1, -1, 2, -128]))[0].toString(16); // "8002ff01"
 * ```
 */
export function packInt8(codes: Int8Array): Uint32Array {
  if (codes.length % 4 !== 0) {
    throw new Error(`packInt8: length ${codes.length} is not a multiple of 4`);
  }
  const out = new Uint32Array(codes.length / 4);
  for (let i = 0; i < out.length; i++) {
    const j = 4 * i;
    out[i] = ((codes[j] & 0xff) | ((codes[j + 1] & 0xff) << 8) | ((codes[j + 2] & 0xff) << 16) |
      ((codes[j + 3] & 0xff) << 24)) >>> 0;
  }
  return out;
}

/**
 * Unpacks int8 codes packed by {@linkcode packInt8}.
 *
 * @example
 * ```ts
 * import { packInt8, unpackInt8 } from "./pack.ts";
 * unpackInt8(packInt8(new Int8Array([1, -1, 2, -128]))); // Int8Array [1, -1, 2, -128]
 * ```
 */
export function unpackInt8(words: Uint32Array): Int8Array {
  const out = new Int8Array(words.length * 4);
  for (let i = 0; i < words.length; i++) {
    const w = words[i];
    out[4 * i] = w << 24 >> 24;
    out[4 * i + 1] = w << 16 >> 24;
    out[4 * i + 2] = w << 8 >> 24;
    out[4 * i + 3] = w >> 24;
  }
  return out;
}

/**
 * Packs unsigned bytes four per `u32`, element `4i` in the lowest byte; a length that is not a
 * multiple of 4 is padded with zero bytes.
 *
 * @example
 * ```ts
 * import { packBytes } from "./pack.ts";
 * packBytes(new Uint8Array([1, 2, 3]))[0].toString(16); // "30201"
 * ```
 */
export function packBytes(bytes: Uint8Array): Uint32Array {
  const out = new Uint32Array(Math.ceil(bytes.length / 4));
  for (let i = 0; i < bytes.length; i++) out[i >> 2] |= bytes[i] << (8 * (i & 3));
  return out;
}

/**
 * Reads byte `i` of words packed by {@linkcode packBytes}.
 *
 * @example
 * ```ts
 * import { byteAt, packBytes } from "./pack.ts";
 * byteAt(packBytes(new Uint8Array([1, 2, 3])), 2); // 3
 * ```
 */
export function byteAt(words: Uint32Array, i: number): number {
  return (words[i >> 2] >>> (8 * (i & 3))) & 0xff;
}

/**
 * Packs 4-bit codes (0..15): two per byte with element `2j` in the high nibble, bytes four per
 * `u32` little-endian. The length must be a multiple of 8 so that every word is full.
 *
 * @example
 * ```ts
 * import { packNibbles } from "./pack.ts";
 * packNibbles(new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8]))[0].toString(16); // "78563412"
 * ```
 */
export function packNibbles(codes: Uint8Array): Uint32Array {
  if (codes.length % 8 !== 0) {
    throw new Error(`packNibbles: length ${codes.length} is not a multiple of 8`);
  }
  const out = new Uint32Array(codes.length / 8);
  for (let e = 0; e < codes.length; e++) {
    out[e >> 3] |= (codes[e] & 0xf) << nibbleShift(e);
  }
  return out;
}

/**
 * Reads 4-bit code `e` of words packed by {@linkcode packNibbles}.
 *
 * @example
 * ```ts
 * import { nibbleAt, packNibbles } from "./pack.ts";
 * nibbleAt(packNibbles(new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8])), 0); // 1
 * ```
 */
export function nibbleAt(words: Uint32Array, e: number): number {
  return (words[e >> 3] >>> nibbleShift(e)) & 0xf;
}

/**
 * Unpacks `count` 4-bit codes packed by {@linkcode packNibbles}.
 *
 * @example
 * ```ts
 * import { packNibbles, unpackNibbles } from "./pack.ts";
 * const codes = new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8]);
 * unpackNibbles(packNibbles(codes), 8); // Uint8Array [1, 2, ..., 8]
 * ```
 */
export function unpackNibbles(words: Uint32Array, count: number): Uint8Array {
  const out = new Uint8Array(count);
  for (let e = 0; e < count; e++) out[e] = nibbleAt(words, e);
  return out;
}

/** Bit offset of 4-bit element `e` inside its word: byte `(e >> 1) & 3`, even element high. */
function nibbleShift(e: number): number {
  return 8 * ((e >> 1) & 3) + ((e & 1) === 0 ? 4 : 0);
}
