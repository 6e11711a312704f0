/**
 * IEEE 754 half precision and bfloat16 conversions, and the packed layout the kernels read:
 * two f16 values per `u32`, element `2i` in the low 16 bits (what WGSL's `unpack2x16float`
 * returns as `.x`).
 *
 * @module
 */

const f32Scratch = new Float32Array(1);
const u32Scratch = new Uint32Array(f32Scratch.buffer);

/**
 * Rounds a number to the nearest f16 (ties to even) and returns its 16-bit pattern.
 *
 * @example
 * ```ts
 * import { f32ToF16Bits } from "./f16.ts";
 * f32ToF16Bits(1); // 0x3c00
 * ```
 */
export function f32ToF16Bits(value: number): number {
  f32Scratch[0] = value;
  const x = u32Scratch[0];
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  let mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0); // inf or NaN
  const e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00; // overflow to inf
  if (e <= 0) {
    if (e < -10) return sign; // underflow to signed zero
    mant |= 0x800000; // make the implicit bit explicit for the subnormal shift
    const shift = 14 - e;
    let half = mant >>> shift;
    const rem = mant & ((1 << shift) - 1);
    const mid = 1 << (shift - 1);
    if (rem > mid || (rem === mid && (half & 1))) half++;
    return sign | half;
  }
  let half = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && (half & 1))) half++; // may carry into exponent: correct
  return sign | half;
}

/**
 * Decodes a 16-bit f16 pattern to a number.
 *
 * @example
 * ```ts
 * import { f16BitsToF32 } from "./f16.ts";
 * f16BitsToF32(0x3c00); // 1
 * ```
 */
export function f16BitsToF32(bits: number): number {
  const sign = bits & 0x8000 ? -1 : 1;
  const exp = (bits >>> 10) & 0x1f;
  const mant = bits & 0x3ff;
  if (exp === 0) return sign * mant * 2 ** -24;
  if (exp === 0x1f) return mant ? NaN : sign * Infinity;
  return sign * (1 + mant / 1024) * 2 ** (exp - 15);
}

/**
 * Decodes a 16-bit bfloat16 pattern to a number (exact: bf16 is the top half of an f32).
 *
 * @example
 * ```ts
 * import { bf16BitsToF32 } from "./f16.ts";
 * bf16BitsToF32(0x3f80); // 1
 * ```
 */
export function bf16BitsToF32(bits: number): number {
  u32Scratch[0] = bits << 16;
  return f32Scratch[0];
}

/**
 * Rounds every value to f16 and back, as storing it in FP16 would.
 *
 * @example
 * ```ts
 * import { roundToF16 } from "./f16.ts";
 * roundToF16(new Float32Array([0.1]))[0]; // 0.0999755859375
 * ```
 */
export function roundToF16(values: Float32Array): Float32Array {
  const out = new Float32Array(values.length);
  for (let i = 0; i < values.length; i++) out[i] = f16BitsToF32(f32ToF16Bits(values[i]));
  return out;
}

/**
 * Converts f32 values to f16 bit patterns.
 *
 * @example
 * ```ts
 * import { f32ToF16Array } from "./f16.ts";
 * f32ToF16Array(new Float32Array([1, 2])); // Uint16Array [0x3c00, 0x4000]
 * ```
 */
export function f32ToF16Array(values: Float32Array): Uint16Array {
  const out = new Uint16Array(values.length);
  for (let i = 0; i < values.length; i++) out[i] = f32ToF16Bits(values[i]);
  return out;
}

/**
 * Converts f16 bit patterns to f32 values.
 *
 * @example
 * ```ts
 * import { f16ArrayToF32 } from "./f16.ts";
 * f16ArrayToF32(new Uint16Array([0x3c00])); // Float32Array [1]
 * ```
 */
export function f16ArrayToF32(bits: Uint16Array): Float32Array {
  const out = new Float32Array(bits.length);
  for (let i = 0; i < bits.length; i++) out[i] = f16BitsToF32(bits[i]);
  return out;
}

/**
 * Packs f16 bit patterns two per `u32` (element `2i` low). An odd count is padded with zero.
 * On little-endian hosts this is the same bytes as the `Uint16Array` itself.
 *
 * @example
 * ```ts
 * import { packF16Pairs } from "./f16.ts";
 * packF16Pairs(new Uint16Array([0x3c00, 0x4000]))[0]; // 0x40003c00
 * ```
 */
export function packF16Pairs(bits: Uint16Array): Uint32Array {
  const out = new Uint32Array(Math.ceil(bits.length / 2));
  for (let i = 0; i < out.length; i++) {
    out[i] = (bits[2 * i] | ((bits[2 * i + 1] ?? 0) << 16)) >>> 0;
  }
  return out;
}
