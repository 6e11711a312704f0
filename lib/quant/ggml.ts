/**
 * llama.cpp's (ggml's) block formats as GGUF files store them, decoded exactly as gguf-py's
 * `gguf.quants.dequantize` does (f32 arithmetic in its order), and laid out for our kernels.
 *
 * - **Q4_0**: blocks of 32, `{ f16 d; u8 qs[16] }`, value `d · (q - 8)`; nibble `j` of a block
 *   is the low half of `qs[j]`, nibble `j + 16` the high half. It *is* a blockwise 4-bit format
 *   of ours ({@linkcode Q4_0Weight}: table `q - 8`, f32 "absmax" `d`, blocksize 32), repacked
 *   to our nibble order at load; the f16 `d` is widened to f32 (5 bits per value instead of
 *   4.5). Decoding `f32(table[q] · d)` is bit-identical to ggml's.
 * - **Q4_1**: blocks of 32, `{ f16 d; f16 m; u8 qs[16] }`, value `d · q + m`. No kernel of ours
 *   has a per-block offset: converted to FP16 at load ({@linkcode dequantizeQ4_1}).
 * - **Q4_K**: super-blocks of 256, `{ f16 d; f16 dmin; u8 scales[12]; u8 qs[128] }` (144 bytes):
 *   eight sub-blocks of 32 with 6-bit scale `sc` and min `m`, value `d·sc · q - dmin·m`. Kept
 *   as is ({@linkcode Q4KWeight}, 36 words per block), decoded by `kernels/q_kquant.wgsl`.
 * - **Q6_K**: super-blocks of 256, `{ u8 ql[128]; u8 qh[64]; i8 scales[16]; f16 d }` (210
 *   bytes): sixteen sub-blocks of 16 with an int8 scale, value `d·sc · (q - 32)`, q of 6 bits
 *   (4 in `ql`, 2 in `qh`). Repacked to 212-byte blocks (53 words: `d` padded to a word) so
 *   every block starts on a word ({@linkcode Q6KWeight}).
 *
 * @module
 */

import { f16BitsToF32, f32ToF16Bits } from "../gpu/f16.ts";
import { matmulBlockwise4bit } from "./blockwise4.ts";
import { packBytes, packNibbles } from "./pack.ts";
import { checkActivations } from "./shape.ts";
import type { Q8_0Weight } from "./q8_0.ts";

/** Values per super-block of the K-quants (ggml's `QK_K`). */
export const QK_K = 256;

/**
 * Q4_0 values by nibble: `q - 8`.
 *
 * @example
 * ```ts
 * import { Q4_0_TABLE } from "./ggml.ts";
 * Q4_0_TABLE[0]; // -8
 * ```
 */
export const Q4_0_TABLE: Float32Array = Float32Array.from({ length: 16 }, (_, q) => q - 8);

/**
 * A Q4_0 weight in our blockwise 4-bit layout (see `blockwise4.ts`): blocksize 32, `absmax`
 * holding ggml's `d` (which may be negative).
 *
 * @example
 * ```ts
 * import { type Q4_0Weight, quantizeQ4_0 } from "./ggml.ts";
 * const w: Q4_0Weight = quantizeQ4_0(new Float32Array(32).fill(1), 1, 32);
 * ```
 */
export interface Q4_0Weight {
  /** Format tag. */
  format: "q4_0";
  /** Rows: output features. */
  n: number;
  /** Columns: input features (a multiple of 32). */
  k: number;
  /** Always 32. */
  blocksize: number;
  /** Nibbles `q`, element `2j` in the high half of byte `j`, bytes little-endian in `u32`. */
  codes: Uint32Array;
  /** ggml's `d` per block, widened from f16. */
  absmax: Float32Array;
}

/**
 * Quantizes `W[N, K]` to Q4_0 as ggml's `quantize_row_q4_0_ref`: `d = max / -8` with `max` the
 * value of largest magnitude, `q = min(15, trunc(x / d + 8.5))`, `d` stored as f16.
 *
 * @example
 * ```ts
 * import { quantizeQ4_0 } from "./ggml.ts";
 * quantizeQ4_0(new Float32Array(32).fill(2), 1, 32).absmax; // Float32Array [-0.25]
 * ```
 */
export function quantizeQ4_0(w: Float32Array, n: number, k: number): Q4_0Weight {
  if (k % 32 !== 0) throw new Error(`q4_0: K=${k} must be a multiple of 32`);
  const blocks = (n * k) / 32;
  const codes = new Uint8Array(n * k);
  const absmax = new Float32Array(blocks);
  for (let b = 0; b < blocks; b++) {
    let amax = 0;
    let max = 0;
    for (let i = 32 * b; i < 32 * b + 32; i++) {
      if (Math.abs(w[i]) > amax) {
        amax = Math.abs(w[i]);
        max = w[i];
      }
    }
    const d = Math.fround(max / -8);
    const id = d !== 0 ? Math.fround(1 / d) : 0;
    absmax[b] = f16BitsToF32(f32ToF16Bits(d));
    for (let i = 32 * b; i < 32 * b + 32; i++) {
      codes[i] = Math.min(15, Math.trunc(Math.fround(Math.fround(w[i] * id) + 8.5)));
    }
  }
  return { format: "q4_0", n, k, blocksize: 32, codes: packNibbles(codes), absmax };
}

/**
 * Reads GGUF Q4_0 blocks (18 bytes per 32 values, rows of `K / 32` blocks) into our layout.
 *
 * @example
 * ```ts
 * import { q4_0FromGgml } from "./ggml.ts";
 * const bytes = new Uint8Array(18); // d = 0
 * q4_0FromGgml(bytes, 1, 32).absmax; // Float32Array [0]
 * ```
 */
export function q4_0FromGgml(bytes: Uint8Array, n: number, k: number): Q4_0Weight {
  checkBytes("q4_0", bytes, n, k, 32, 18);
  const blocks = (n * k) / 32;
  // our byte j of a block holds values 2j (high nibble) and 2j + 1 (low); ggml's qs[j] holds
  // values j (low) and j + 16 (high)
  const codes = new Uint8Array(blocks * 16);
  const absmax = new Float32Array(blocks);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  for (let b = 0; b < blocks; b++) {
    const o = 18 * b;
    const q = o + 2;
    const c = 16 * b;
    absmax[b] = f16BitsToF32(view.getUint16(o, true));
    for (let j = 0; j < 8; j++) {
      codes[c + j] = ((bytes[q + 2 * j] & 15) << 4) | (bytes[q + 2 * j + 1] & 15);
      codes[c + 8 + j] = (bytes[q + 2 * j] & 0xf0) | (bytes[q + 2 * j + 1] >> 4);
    }
  }
  return { format: "q4_0", n, k, blocksize: 32, codes: new Uint32Array(codes.buffer), absmax };
}

/**
 * Decodes GGUF Q4_1 blocks (20 bytes per 32 values) as gguf-py: `d · q + m` in f32.
 *
 * @example
 * ```ts
 * import { dequantizeQ4_1 } from "./ggml.ts";
 * dequantizeQ4_1(new Uint8Array(20), 1, 32)[0]; // 0
 * ```
 */
export function dequantizeQ4_1(bytes: Uint8Array, n: number, k: number): Float32Array {
  checkBytes("q4_1", bytes, n, k, 32, 20);
  const out = new Float32Array(n * k);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  for (let b = 0; b < out.length / 32; b++) {
    const o = 20 * b;
    const d = f16BitsToF32(view.getUint16(o, true));
    const m = f16BitsToF32(view.getUint16(o + 2, true));
    for (let j = 0; j < 16; j++) {
      const q = bytes[o + 4 + j];
      out[32 * b + j] = Math.fround(Math.fround(d * (q & 15)) + m);
      out[32 * b + j + 16] = Math.fround(Math.fround(d * (q >> 4)) + m);
    }
  }
  return out;
}

/**
 * Decodes a Q4_0 weight of our layout (`f32(table[q] · d)`, ggml's value exactly).
 *
 * @example
 * ```ts
 * import { dequantizeQ4_0, quantizeQ4_0 } from "./ggml.ts";
 * dequantizeQ4_0(quantizeQ4_0(new Float32Array(32).fill(2), 1, 32))[0]; // 2
 * ```
 */
export function dequantizeQ4_0(w: Q4_0Weight): Float32Array {
  const out = new Float32Array(w.n * w.k);
  for (let e = 0; e < out.length; e++) {
    const q = (w.codes[e >> 3] >>> (8 * ((e >> 1) & 3) + (e % 2 === 0 ? 4 : 0))) & 15;
    out[e] = Math.fround(Q4_0_TABLE[q] * w.absmax[e >> 5]);
  }
  return out;
}

/**
 * CPU twin of the Q4_0 product (the blockwise 4-bit kernel's factoring).
 *
 * @example
 * ```ts
 * import { matmulQ4_0, quantizeQ4_0 } from "./ggml.ts";
 * matmulQ4_0(new Float32Array(32).fill(1), 1, quantizeQ4_0(new Float32Array(32).fill(2), 1, 32));
 * // Float32Array [64]
 * ```
 */
export function matmulQ4_0(x: Float32Array, m: number, w: Q4_0Weight): Float32Array {
  return matmulBlockwise4bit("q4_0", x, m, w.n, w.k, w, 32, Q4_0_TABLE);
}

/**
 * A Q4_K weight: ggml's 144-byte blocks as they are, 36 words each, rows of `K / 256` blocks.
 *
 * @example
 * ```ts
 * import { type Q4KWeight, q4KFromGgml } from "./ggml.ts";
 * const w: Q4KWeight = q4KFromGgml(new Uint8Array(144), 1, 256);
 * ```
 */
export interface Q4KWeight {
  /** Format tag. */
  format: "q4_k";
  /** Rows: output features. */
  n: number;
  /** Columns: input features (a multiple of 256). */
  k: number;
  /** The blocks, 36 words each: `d | dmin << 16`, 3 words of scales, 32 words of nibbles. */
  blocks: Uint32Array;
}

/**
 * A Q6_K weight: ggml's 210-byte blocks padded to 212 bytes (53 words: `ql` 32, `qh` 16,
 * `scales` 4, `d` in the low half of the last), rows of `K / 256` blocks.
 *
 * @example
 * ```ts
 * import { type Q6KWeight, q6KFromGgml } from "./ggml.ts";
 * const w: Q6KWeight = q6KFromGgml(new Uint8Array(210), 1, 256);
 * ```
 */
export interface Q6KWeight {
  /** Format tag. */
  format: "q6_k";
  /** Rows: output features. */
  n: number;
  /** Columns: input features (a multiple of 256). */
  k: number;
  /** The blocks, 53 words each. */
  blocks: Uint32Array;
}

/** Words per Q4_K block. */
export const Q4_K_WORDS = 36;
/** Words per (padded) Q6_K block. */
export const Q6_K_WORDS = 53;

function checkBytes(
  format: string,
  bytes: Uint8Array,
  n: number,
  k: number,
  per: number,
  blockBytes: number,
): void {
  if (k % per !== 0) throw new Error(`${format}: K=${k} must be a multiple of ${per}`);
  const want = ((n * k) / per) * blockBytes;
  if (bytes.length !== want) {
    throw new Error(`${format}: ${bytes.length} bytes for [${n}, ${k}], expected ${want}`);
  }
}

/**
 * Wraps GGUF Q4_K bytes (144 per 256 values).
 *
 * @example
 * ```ts
 * import { q4KFromGgml } from "./ggml.ts";
 * q4KFromGgml(new Uint8Array(144), 1, 256).blocks.length; // 36
 * ```
 */
export function q4KFromGgml(bytes: Uint8Array, n: number, k: number): Q4KWeight {
  checkBytes("q4_k", bytes, n, k, QK_K, 144);
  return { format: "q4_k", n, k, blocks: packBytes(bytes) };
}

/**
 * Repacks GGUF Q6_K bytes (210 per 256 values) to word-aligned 212-byte blocks.
 *
 * @example
 * ```ts
 * import { q6KFromGgml } from "./ggml.ts";
 * q6KFromGgml(new Uint8Array(210), 1, 256).blocks.length; // 53
 * ```
 */
export function q6KFromGgml(bytes: Uint8Array, n: number, k: number): Q6KWeight {
  checkBytes("q6_k", bytes, n, k, QK_K, 210);
  const count = (n * k) / QK_K;
  const out = new Uint8Array(count * 212);
  for (let b = 0; b < count; b++) out.set(bytes.subarray(210 * b, 210 * b + 210), 212 * b);
  return { format: "q6_k", n, k, blocks: new Uint32Array(out.buffer) };
}

const byte = (words: Uint32Array, i: number): number => (words[i >> 2] >>> (8 * (i & 3))) & 255;

/** ggml's `get_scale_min_k4`: the 6-bit scale and min of sub-block `j` (0..7). */
function scaleMinK4(words: Uint32Array, base: number, j: number): [number, number] {
  const q = (i: number) => byte(words, base + 4 + i); // scales start at byte 4
  if (j < 4) return [q(j) & 63, q(j + 4) & 63];
  return [(q(j + 4) & 15) | ((q(j - 4) >> 6) << 4), (q(j + 4) >> 4) | ((q(j) >> 6) << 4)];
}

/**
 * Decodes a Q4_K weight as gguf-py: `f32(f32(d · sc) · q) - f32(dmin · m)`.
 *
 * @example
 * ```ts
 * import { dequantizeQ4K, q4KFromGgml } from "./ggml.ts";
 * dequantizeQ4K(q4KFromGgml(new Uint8Array(144), 1, 256))[0]; // 0
 * ```
 */
export function dequantizeQ4K(w: Q4KWeight): Float32Array {
  const out = new Float32Array(w.n * w.k);
  const count = out.length / QK_K;
  for (let b = 0; b < count; b++) {
    const base = 4 * Q4_K_WORDS * b; // byte offset of the block
    const d = f16BitsToF32(w.blocks[Q4_K_WORDS * b] & 0xffff);
    const dmin = f16BitsToF32(w.blocks[Q4_K_WORDS * b] >>> 16);
    for (let j = 0; j < 8; j++) {
      const [sc, m] = scaleMinK4(w.blocks, base, j);
      const ds = Math.fround(d * sc);
      const dm = Math.fround(dmin * m);
      const c = j >> 1;
      for (let l = 0; l < 32; l++) {
        const qb = byte(w.blocks, base + 16 + 32 * c + l);
        const q = j % 2 === 0 ? qb & 15 : qb >> 4;
        out[QK_K * b + 32 * j + l] = Math.fround(Math.fround(ds * q) - dm);
      }
    }
  }
  return out;
}

/**
 * Decodes a Q6_K weight as gguf-py: `f32(f32(d · sc) · (q - 32))`.
 *
 * @example
 * ```ts
 * import { dequantizeQ6K, q6KFromGgml } from "./ggml.ts";
 * dequantizeQ6K(q6KFromGgml(new Uint8Array(210), 1, 256))[0]; // -0
 * ```
 */
export function dequantizeQ6K(w: Q6KWeight): Float32Array {
  const out = new Float32Array(w.n * w.k);
  const count = out.length / QK_K;
  for (let b = 0; b < count; b++) {
    const base = 4 * Q6_K_WORDS * b;
    const d = f16BitsToF32(w.blocks[Q6_K_WORDS * b + 52] & 0xffff);
    for (let e = 0; e < QK_K; e++) {
      const h = e >> 7;
      const r = e & 127;
      const qd = r >> 5;
      const l = r & 31;
      const qlb = byte(w.blocks, base + 64 * h + l + 32 * (qd & 1));
      const lo = qd >= 2 ? qlb >> 4 : qlb & 15;
      const hi = (byte(w.blocks, base + 128 + 32 * h + l) >> (2 * qd)) & 3;
      const scByte = byte(w.blocks, base + 192 + 8 * h + (l >> 4) + 2 * qd);
      const sc = scByte >= 128 ? scByte - 256 : scByte;
      out[QK_K * b + e] = Math.fround(Math.fround(d * sc) * ((lo | (hi << 4)) - 32));
    }
  }
  return out;
}

/**
 * CPU twin of the K-quant products: the dequantized weights times `X[M, K]`, accumulated in
 * f64 and rounded to f32.
 *
 * @example
 * ```ts
 * import { matmulKQuant, q4KFromGgml } from "./ggml.ts";
 * matmulKQuant(new Float32Array(256), 1, q4KFromGgml(new Uint8Array(144), 1, 256)); // [0]
 * ```
 */
export function matmulKQuant(x: Float32Array, m: number, w: Q4KWeight | Q6KWeight): Float32Array {
  checkActivations(w.format, x, m, w.k);
  const deq = w.format === "q4_k" ? dequantizeQ4K(w) : dequantizeQ6K(w);
  const y = new Float32Array(m * w.n);
  for (let i = 0; i < m; i++) {
    for (let r = 0; r < w.n; r++) {
      let s = 0;
      for (let c = 0; c < w.k; c++) s += x[i * w.k + c] * deq[r * w.k + c];
      y[i * w.n + r] = s;
    }
  }
  return y;
}

/**
 * Reads GGUF Q8_0 blocks (`{ f16 d; i8 qs[32] }`, 34 bytes) into our Q8_0 layout (the same
 * bits, codes and scales in separate arrays).
 *
 * @example
 * ```ts
 * import { q8_0FromGgml } from "./ggml.ts";
 * q8_0FromGgml(new Uint8Array(34), 1, 32).codes.length; // 8
 * ```
 */
export function q8_0FromGgml(bytes: Uint8Array, n: number, k: number): Q8_0Weight {
  checkBytes("q8_0", bytes, n, k, 32, 34);
  const groups = (n * k) / 32;
  const codes = new Uint8Array(n * k);
  const scales = new Uint16Array(groups + (groups % 2));
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  for (let g = 0; g < groups; g++) {
    scales[g] = view.getUint16(34 * g, true);
    codes.set(bytes.subarray(34 * g + 2, 34 * g + 34), 32 * g);
  }
  return {
    format: "q8_0",
    n,
    k,
    codes: new Uint32Array(codes.buffer),
    scales: new Uint32Array(scales.buffer),
  };
}
