/**
 * Random weights at real model sizes without the CPU quantizer: packed arrays of the right
 * lengths filled with random codes and sane scales (lib/quant's layouts), a
 * {@linkcode LinearFactory} that builds the layers from them, and a `WeightSource`
 * that hands the model loader random f16 tensors. A 7B model loads in seconds this way; the
 * numbers are only good for timing.
 *
 * Random codes matter for the 4-bit formats: their GEMV looks codes up in a table in workgroup
 * memory, and all-zero codes would make every lookup hit one address.
 *
 * @module
 */

import type { Gpu } from "../lib/gpu/device.ts";
import { Fp16Linear, type Linear } from "../lib/kernels/linear.ts";
import { QuantLinear, type QuantTuning } from "../lib/kernels/quant_linear.ts";
import type { QuantFormat, QuantizedWeight } from "../lib/quant/formats.ts";
import { NESTED_BLOCKSIZE } from "../lib/quant/nf4_dq.ts";
import { type LlamaConfig, parseLlamaConfig } from "../lib/model/config.ts";
import type { LinearFactory, LinearRequest } from "../lib/model/load.ts";
import { presetConfig } from "../lib/model/presets.ts";

/** xorshift32 words into `out`. */
function fillRandom(out: Uint32Array, seed: number): void {
  let s = seed >>> 0 || 1;
  for (let i = 0; i < out.length; i++) {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    out[i] = s >>> 0;
  }
}

/**
 * Shared random pools, grown on demand and handed out as views, so no per-tensor generation.
 *
 * @example
 * ```ts
 * import { RandomPools } from "./random_weights.ts";
 * const pools = new RandomPools();
 * pools.f16(10).length; // 10
 * ```
 */
export class RandomPools {
  #words = new Uint32Array(0);
  #halves = new Uint16Array(0);
  #scales = new Float32Array(0);

  /** `n` random u32 words (any bits: int8 and 4-bit codes, 8-bit map indices). */
  words(n: number): Uint32Array {
    if (this.#words.length < n) {
      this.#words = new Uint32Array(n);
      fillRandom(this.#words, 0x9e3779b9);
    }
    return this.#words.subarray(0, n);
  }

  /** `n` random f16 bit patterns, |v| in [2⁻⁷, 2⁻³), random signs. */
  f16(n: number): Uint16Array {
    if (this.#halves.length < n) {
      const words = new Uint32Array(Math.ceil(n / 2));
      fillRandom(words, 0x85ebca6b);
      // sign | exponent 8..11 (2^-7 .. 2^-4 times 1.x) | mantissa
      for (let i = 0; i < words.length; i++) words[i] = (words[i] & 0x8fff8fff) | 0x20002000;
      this.#halves = new Uint16Array(words.buffer, 0, n);
    }
    return this.#halves.subarray(0, n);
  }

  /** `n` positive f32 scales in [0.02, 0.06). */
  scales(n: number): Float32Array {
    if (this.#scales.length < n) {
      const w = new Uint32Array(n);
      fillRandom(w, 0xc2b2ae35);
      this.#scales = Float32Array.from(w, (v) => 0.02 + 0.04 * (v / 2 ** 32));
    }
    return this.#scales.subarray(0, n);
  }
}

/** The formats {@linkcode randomLinear} builds. */
export type BenchFormat = Extract<
  QuantFormat,
  | "fp16"
  | "int8-vectorwise"
  | "llm-int8"
  | "nf4"
  | "nf4-dq"
  | "fp4"
  | "int4"
  | "int8-absmax"
  | "q8_0"
>;

/** A packed weight of `format` with random codes and sane scales, sized as lib/quant packs it. */
export function randomPackedWeight(
  pools: RandomPools,
  format: Exclude<BenchFormat, "fp16">,
  n: number,
  k: number,
  blocksize = 64,
): QuantizedWeight {
  switch (format) {
    case "int8-vectorwise":
      return {
        format,
        n,
        k,
        codes: pools.words(n * k / 4),
        scb: pools.scales(n).map((s) => s * 3),
      };
    case "int8-absmax":
      return { format, n, k, codes: pools.words(n * k / 4), absmax: new Float32Array([0.1]) };
    case "llm-int8":
      return {
        format,
        n,
        k,
        codes: pools.words(n * k / 4),
        scb: pools.scales(n).map((s) => s * 3),
        fp16Columns: new Uint32Array(0),
        fp16Weights: new Uint32Array(0),
      };
    case "nf4":
    case "fp4":
    case "int4":
      return {
        format,
        n,
        k,
        blocksize,
        codes: pools.words(n * k / 8),
        absmax: pools.scales(n * k / blocksize),
      };
    case "nf4-dq": {
      const blocks = n * k / blocksize;
      return {
        format,
        n,
        k,
        blocksize,
        nestedBlocksize: NESTED_BLOCKSIZE,
        codes: pools.words(n * k / 8),
        qabsmax: pools.words(Math.ceil(blocks / 4)),
        absmax2: pools.scales(Math.ceil(blocks / NESTED_BLOCKSIZE)),
        offset: new Float32Array([0.04]),
      };
    }
    case "q8_0":
      // f16 scales, two per word: 0x1400 is 2^-10 (weights within ±1/8: 7B-wide activations stay
      // within f16)
      return {
        format,
        n,
        k,
        codes: pools.words(n * k / 4),
        scales: new Uint32Array(n * k / 64).fill(0x14001400),
      };
  }
}

/** Builds one random linear layer of `format` for an `[n, k]` weight. */
export function randomLinear(
  gpu: Gpu,
  pools: RandomPools,
  format: BenchFormat,
  n: number,
  k: number,
  options: { label?: string; tuning?: QuantTuning; f16?: boolean } = {},
): Promise<Linear> {
  const label = options.label ?? `random ${format} ${n}x${k}`;
  if (format === "fp16") {
    return Fp16Linear.create(gpu, {
      label,
      weight: pools.f16(n * k),
      outFeatures: n,
      inFeatures: k,
      f16: options.f16,
      tuning: options.tuning,
    });
  }
  return QuantLinear.create(gpu, {
    label,
    weight: randomPackedWeight(pools, format, n, k),
    f16: options.f16,
    tuning: options.tuning,
  });
}

/**
 * A {@linkcode LinearFactory} that ignores the f16 weights it is given and builds a random layer
 * of `format` of the requested shape.
 */
export function randomLinearFactory(
  pools: RandomPools,
  format: BenchFormat,
  tuning?: QuantTuning,
): LinearFactory {
  return (gpu: Gpu, r: LinearRequest) =>
    randomLinear(gpu, pools, format, r.outFeatures, r.inFeatures, { label: r.name, tuning });
}

/**
 * A `WeightSource` (lib/model/llama.ts) of random tensors: every shape the loader expects exists, f16
 * tensors are views of one random pool, f32 ones (the norms) are ones.
 */
export class RandomWeightSource {
  #pools: RandomPools;
  #shapes = new Map<string, number>();

  /** Hands out views of `pools`. */
  constructor(pools: RandomPools) {
    this.#pools = pools;
  }

  /** Records the shape, so the next read knows the size. */
  expectShape(name: string, shape: readonly number[]): void {
    this.#shapes.set(name, shape.reduce((a, b) => a * b, 1));
  }

  /** Ones (RMSNorm weights). */
  readF32(name: string): Promise<Float32Array> {
    return Promise.resolve(new Float32Array(this.#size(name)).fill(1));
  }

  /** Random f16 bits. */
  readF16Bits(name: string): Promise<Uint16Array> {
    return Promise.resolve(this.#pools.f16(this.#size(name)));
  }

  #size(name: string): number {
    const size = this.#shapes.get(name);
    if (size === undefined) throw new Error(`random weights: no shape given for ${name}`);
    return size;
  }
}

/**
 * A preset's config, or on a software adapter the same structure with every width ÷8 (heads ÷8,
 * so head_dim is kept) and layers ÷`layerDivisor`, so the bench sections finish on a CPU.
 *
 * @example
 * ```ts
 * import { benchConfig } from "./random_weights.ts";
 * const c = benchConfig("llama-2-7b", true); // hidden 512, 4 layers
 * ```
 */
export function benchConfig(preset: string, software: boolean, layerDivisor = 8): LlamaConfig {
  const c = presetConfig(preset);
  if (!software) return c;
  return parseLlamaConfig({
    architectures: ["LlamaForCausalLM"],
    model_type: "llama",
    hidden_act: "silu",
    vocab_size: Math.round(c.vocabSize / 64) * 8,
    hidden_size: c.hiddenSize / 8,
    intermediate_size: Math.round(c.intermediateSize / 64) * 8,
    num_hidden_layers: Math.max(1, Math.round(c.numLayers / layerDivisor)),
    num_attention_heads: Math.max(1, c.numHeads / 8),
    num_key_value_heads: Math.max(1, c.numKvHeads / 8),
    head_dim: c.headDim,
    max_position_embeddings: 4096,
    rms_norm_eps: 1e-5,
    rope_theta: 10000,
    tie_word_embeddings: false,
  }, `${preset} scaled`);
}

/**
 * The median of a list of timings (the upper one of the two middle values for an even count).
 *
 * @example
 * ```ts
 * import { median } from "./random_weights.ts";
 * median([3, 1, 2]); // 2
 * ```
 */
export function median(values: readonly number[]): number {
  const s = [...values].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}
