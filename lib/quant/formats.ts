/**
 * The registry of quantization formats: their names, labels and defaults, exact memory
 * accounting, and one entry point each for quantize / dequantize / the CPU reference matmul.
 *
 * Accounting counts every array a kernel needs for one tensor — codes, scales, block absmax,
 * nested statistics, offsets, padding to whole `u32` words — and nothing shared by all tensors
 * (the 16-entry 4-bit tables, the 256-entry dynamic map of NF4-DQ: 1 KiB per model).
 * `packedBytes(quantize(f, W, N, K, o))` always equals `packedBytesFor(f, N, K, o)`, and
 * `bitsPerParameter` is `8 · packedBytesFor / (N · K)`.
 *
 * @module
 */

import { dequantizeFp16, type Fp16Weight, matmulFp16, quantizeFp16 } from "./fp16.ts";
import {
  dequantizeInt8Absmax,
  type Int8AbsmaxWeight,
  matmulInt8Absmax,
  quantizeInt8Absmax,
} from "./int8_absmax.ts";
import {
  dequantizeInt8Vectorwise,
  type Int8VectorwiseWeight,
  matmulInt8Vectorwise,
  quantizeInt8Vectorwise,
} from "./int8_vectorwise.ts";
import {
  dequantizeLlmInt8,
  LLM_INT8_THRESHOLD,
  type LlmInt8Weight,
  matmulLlmInt8,
  quantizeLlmInt8,
} from "./llm_int8.ts";
import { dequantizeNf4, matmulNf4, NF4_BLOCKSIZE, type Nf4Weight, quantizeNf4 } from "./nf4.ts";
import {
  dequantizeNf4Dq,
  matmulNf4Dq,
  NESTED_BLOCKSIZE,
  type Nf4DqWeight,
  quantizeNf4Dq,
} from "./nf4_dq.ts";
import { dequantizeFp4, type Fp4Weight, matmulFp4, quantizeFp4 } from "./fp4.ts";
import { dequantizeInt4, type Int4Weight, matmulInt4, quantizeInt4 } from "./int4.ts";
import { dequantizeQ8_0, matmulQ8_0, type Q8_0Weight, QK8_0, quantizeQ8_0 } from "./q8_0.ts";
import {
  dequantizeQ4_0,
  dequantizeQ4K,
  dequantizeQ6K,
  matmulKQuant,
  matmulQ4_0,
  type Q4_0Weight,
  Q4_K_WORDS,
  type Q4KWeight,
  Q6_K_WORDS,
  type Q6KWeight,
  QK_K,
  quantizeQ4_0,
} from "./ggml.ts";
import { checkBlocksize } from "./blockwise4.ts";
import { checkMultiple } from "./shape.ts";

/**
 * A weight quantization format.
 *
 * @example
 * ```ts
 * import type { QuantFormat } from "./formats.ts";
 * const format: QuantFormat = "nf4";
 * ```
 */
export type QuantFormat =
  | "fp16"
  | "int8-absmax"
  | "int8-vectorwise"
  | "llm-int8"
  | "nf4"
  | "nf4-dq"
  | "fp4"
  | "int4"
  | "q8_0"
  | "q4_0"
  | "q4_k"
  | "q6_k";

/**
 * Every format, in the order tables and plots list them.
 *
 * @example
 * ```ts
 * import { QUANT_FORMATS } from "./formats.ts";
 * QUANT_FORMATS.includes("q8_0"); // true
 * ```
 */
export const QUANT_FORMATS: readonly QuantFormat[] = [
  "fp16",
  "int8-absmax",
  "int8-vectorwise",
  "llm-int8",
  "q8_0",
  "nf4",
  "nf4-dq",
  "fp4",
  "int4",
];

/**
 * Options of every format; each format reads the ones it knows.
 *
 * @example
 * ```ts
 * import type { QuantOptions } from "./formats.ts";
 * const options: QuantOptions = { blocksize: 128 };
 * ```
 */
export interface QuantOptions {
  /** nf4, nf4-dq, fp4, int4: values per absmax block (power of two, 32..4096). Default 64. */
  blocksize?: number;
  /** llm-int8: outlier threshold on |x| at product time. Default 6.0. */
  threshold?: number;
  /** llm-int8: weights for the outlier columns. Default `"dequantized"` (bitsandbytes). */
  outlierWeights?: "dequantized" | "fp16";
  /** llm-int8: columns to keep an FP16 copy of (counted in the memory). Default none. */
  fp16Columns?: ArrayLike<number>;
}

/**
 * What the registry says about a format.
 *
 * @example
 * ```ts
 * import { FORMAT_INFO, type FormatInfo } from "./formats.ts";
 * const info: FormatInfo = FORMAT_INFO["nf4"];
 * ```
 */
export interface FormatInfo {
  /** Short label for tables and plot legends. */
  label: string;
  /** One sentence on what is stored. */
  description: string;
  /** The options used when none are given. */
  defaults: QuantOptions;
}

/**
 * Labels, descriptions and defaults of every format.
 *
 * @example
 * ```ts
 * import { FORMAT_INFO } from "./formats.ts";
 * FORMAT_INFO["llm-int8"].defaults.threshold; // 6
 * ```
 */
export const FORMAT_INFO: Readonly<Record<QuantFormat, FormatInfo>> = {
  "fp16": {
    label: "FP16",
    description: "IEEE half precision, two values per u32; the baseline.",
    defaults: {},
  },
  "int8-absmax": {
    label: "INT8 absmax",
    description: "int8 with one absmax for the whole tensor; activations likewise per tensor.",
    defaults: {},
  },
  "int8-vectorwise": {
    label: "INT8 vector-wise",
    description: "int8 with one absmax per output row (SCB) and per activation row (token).",
    defaults: {},
  },
  "llm-int8": {
    label: "LLM.int8()",
    description: "Vector-wise int8 plus 16-bit products for activation outlier columns.",
    defaults: { threshold: LLM_INT8_THRESHOLD, outlierWeights: "dequantized" },
  },
  "q4_0": {
    label: "Q4_0",
    description: "llama.cpp Q4_0: 4-bit q - 8 in groups of 32 with one scale d each.",
    defaults: { blocksize: 32 },
  },
  "q4_k": {
    label: "Q4_K",
    description: "llama.cpp Q4_K (GGUF only): 256-value super-blocks, 6-bit scale and min per 32.",
    defaults: {},
  },
  "q6_k": {
    label: "Q6_K",
    description: "llama.cpp Q6_K (GGUF only): 6-bit values, an int8 scale per 16, f16 d per 256.",
    defaults: {},
  },
  "q8_0": {
    label: "Q8_0",
    description: "llama.cpp Q8_0: int8 in groups of 32 along K with an f16 scale each.",
    defaults: {},
  },
  "nf4": {
    label: "NF4",
    description: "4-bit NormalFloat with an f32 absmax per block of 64 (QLoRA).",
    defaults: { blocksize: NF4_BLOCKSIZE },
  },
  "nf4-dq": {
    label: "NF4 + DQ",
    description: "NF4 whose block absmax values are quantized to 8 bits in blocks of 256.",
    defaults: { blocksize: NF4_BLOCKSIZE },
  },
  "fp4": {
    label: "FP4",
    description: "bitsandbytes 4-bit float (1-2-1, bias 3) with an f32 absmax per block of 64.",
    defaults: { blocksize: 64 },
  },
  "int4": {
    label: "INT4",
    description: "Symmetric 4-bit integers -7..7 with an f32 absmax per block of 64.",
    defaults: { blocksize: 64 },
  },
};

/**
 * A quantized weight of any format, told apart by its `format` tag.
 *
 * @example
 * ```ts
 * import { quantize, type QuantizedWeight } from "./formats.ts";
 * const w: QuantizedWeight = quantize("q8_0", new Float32Array(64), 2, 32);
 * ```
 */
export type QuantizedWeight =
  | Fp16Weight
  | Int8AbsmaxWeight
  | Int8VectorwiseWeight
  | LlmInt8Weight
  | Nf4Weight
  | Nf4DqWeight
  | Fp4Weight
  | Int4Weight
  | Q8_0Weight
  | Q4_0Weight
  | Q4KWeight
  | Q6KWeight;

/**
 * Quantizes `W[N, K]` (row-major, Hugging Face Linear layout) to `format`.
 *
 * @example
 * ```ts
 * import { quantize } from "./formats.ts";
 * quantize("nf4", new Float32Array(128), 2, 64).format; // "nf4"
 * ```
 */
export function quantize(
  format: QuantFormat,
  w: Float32Array,
  n: number,
  k: number,
  options: QuantOptions = {},
): QuantizedWeight {
  switch (format) {
    case "fp16":
      return quantizeFp16(w, n, k);
    case "int8-absmax":
      return quantizeInt8Absmax(w, n, k);
    case "int8-vectorwise":
      return quantizeInt8Vectorwise(w, n, k);
    case "llm-int8":
      return quantizeLlmInt8(w, n, k, options);
    case "nf4":
      return quantizeNf4(w, n, k, options);
    case "nf4-dq":
      return quantizeNf4Dq(w, n, k, options);
    case "fp4":
      return quantizeFp4(w, n, k, options);
    case "int4":
      return quantizeInt4(w, n, k, options);
    case "q8_0":
      return quantizeQ8_0(w, n, k);
    case "q4_0":
      return quantizeQ4_0(w, n, k);
    case "q4_k":
    case "q6_k":
      throw new Error(`${format}: weights come from GGUF files; there is no quantizer here`);
  }
  throw new Error(`unknown quantization format ${JSON.stringify(format)}`);
}

/**
 * Reconstructs the f32 weights `W[N, K]` a quantized weight stands for.
 *
 * @example
 * ```ts
 * import { dequantize, quantize } from "./formats.ts";
 * dequantize(quantize("fp16", new Float32Array([1, 2]), 1, 2)); // Float32Array [1, 2]
 * ```
 */
export function dequantize(w: QuantizedWeight): Float32Array {
  switch (w.format) {
    case "fp16":
      return dequantizeFp16(w);
    case "int8-absmax":
      return dequantizeInt8Absmax(w);
    case "int8-vectorwise":
      return dequantizeInt8Vectorwise(w);
    case "llm-int8":
      return dequantizeLlmInt8(w);
    case "nf4":
      return dequantizeNf4(w);
    case "nf4-dq":
      return dequantizeNf4Dq(w);
    case "fp4":
      return dequantizeFp4(w);
    case "int4":
      return dequantizeInt4(w);
    case "q8_0":
      return dequantizeQ8_0(w);
    case "q4_0":
      return dequantizeQ4_0(w);
    case "q4_k":
      return dequantizeQ4K(w);
    case "q6_k":
      return dequantizeQ6K(w);
  }
}

/**
 * The CPU reference product `Y[M, N] = X[M, K] · Wᵀ` of a quantized weight, computed as the
 * format's fused kernel does (int8 formats quantize `X` too).
 *
 * @example
 * ```ts
 * import { matmulQuantized, quantize } from "./formats.ts";
 * const w = quantize("fp16", new Float32Array([1, 2]), 1, 2);
 * matmulQuantized(new Float32Array([3, 4]), 1, w); // Float32Array [11]
 * ```
 */
export function matmulQuantized(
  x: Float32Array,
  m: number,
  w: QuantizedWeight,
  options: QuantOptions = {},
): Float32Array {
  switch (w.format) {
    case "fp16":
      return matmulFp16(x, m, w);
    case "int8-absmax":
      return matmulInt8Absmax(x, m, w);
    case "int8-vectorwise":
      return matmulInt8Vectorwise(x, m, w);
    case "llm-int8":
      return matmulLlmInt8(x, m, w, options);
    case "nf4":
      return matmulNf4(x, m, w);
    case "nf4-dq":
      return matmulNf4Dq(x, m, w);
    case "fp4":
      return matmulFp4(x, m, w);
    case "int4":
      return matmulInt4(x, m, w);
    case "q8_0":
      return matmulQ8_0(x, m, w);
    case "q4_0":
      return matmulQ4_0(x, m, w);
    case "q4_k":
    case "q6_k":
      return matmulKQuant(x, m, w);
  }
}

/**
 * Bytes a quantized tensor occupies: the sum of its typed arrays' lengths in bytes.
 *
 * @example
 * ```ts
 * import { packedBytes, quantize } from "./formats.ts";
 * packedBytes(quantize("nf4", new Float32Array(128), 2, 64)); // 64 + 2 * 4
 * ```
 */
export function packedBytes(w: QuantizedWeight): number {
  let bytes = 0;
  for (const v of Object.values(w)) if (ArrayBuffer.isView(v)) bytes += v.byteLength;
  return bytes;
}

const words = (count: number): number => 4 * Math.ceil(count);

/**
 * Bytes a `format` tensor of shape `[N, K]` occupies, from the layout alone (no quantizing).
 *
 * @example
 * ```ts
 * import { packedBytesFor } from "./formats.ts";
 * packedBytesFor("q8_0", 4096, 4096); // 4096 * 4096 * 8.5 / 8
 * ```
 */
export function packedBytesFor(
  format: QuantFormat,
  n: number,
  k: number,
  options: QuantOptions = {},
): number {
  if (!Number.isInteger(n) || !Number.isInteger(k) || n <= 0 || k <= 0) {
    throw new Error(`${format}: invalid weight shape [N=${n}, K=${k}]`);
  }
  const params = n * k;
  const blocksize = options.blocksize ?? 64;
  const blocks = params / blocksize;
  const shape = `W [N=${n}, K=${k}]`;
  if (format === "nf4" || format === "nf4-dq" || format === "fp4" || format === "int4") {
    checkBlocksize(format, n, k, blocksize);
  } else {
    const multiple = format === "fp16"
      ? 2
      : format === "q8_0" || format === "q4_0"
      ? 32
      : format === "q4_k" || format === "q6_k"
      ? QK_K
      : 4;
    checkMultiple(format, "K (in_features)", k, multiple, "the packed layout", shape);
  }
  switch (format) {
    case "fp16":
      return words(params / 2);
    case "int8-absmax":
      return words(params / 4) + 4;
    case "int8-vectorwise":
      return words(params / 4) + 4 * n;
    case "llm-int8": {
      const c = new Set(Array.from(options.fp16Columns ?? [])).size;
      return words(params / 4) + 4 * n + 4 * c + words((c * n) / 2);
    }
    case "nf4":
    case "fp4":
    case "int4":
      return words(params / 8) + 4 * blocks;
    case "nf4-dq":
      return words(params / 8) + words(blocks / 4) + words(blocks / NESTED_BLOCKSIZE) + 4;
    case "q8_0":
      return words(params / 4) + words(params / QK8_0 / 2);
    case "q4_0":
      return words(params / 8) + 4 * (params / 32);
    case "q4_k":
      return 4 * Q4_K_WORDS * (params / QK_K);
    case "q6_k":
      return 4 * Q6_K_WORDS * (params / QK_K);
  }
  throw new Error(`unknown quantization format ${JSON.stringify(format)}`);
}

/**
 * Exact bits per parameter of a `format` tensor of shape `[N, K]`, every scale and statistic
 * included: `8 · packedBytesFor(format, N, K, options) / (N · K)`. E.g. fp16 16, int8
 * vector-wise `8 + 32 / K`, q8_0 8.5, nf4 4.5 at blocksize 64, nf4-dq ≈ 4.127.
 *
 * @example
 * ```ts
 * import { bitsPerParameter } from "./formats.ts";
 * bitsPerParameter("nf4", 4096, 4096); // 4.5
 * bitsPerParameter("int8-vectorwise", 4096, 4096); // 8.0078125
 * ```
 */
export function bitsPerParameter(
  format: QuantFormat,
  n: number,
  k: number,
  options: QuantOptions = {},
): number {
  return (8 * packedBytesFor(format, n, k, options)) / (n * k);
}
