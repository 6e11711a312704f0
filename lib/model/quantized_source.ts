/**
 * What the model loader reads a checkpoint with quantized linear layers through (see
 * `prequantized.ts` and `bnb.ts`).
 *
 * @module
 */

import type { QuantFormat, QuantizedWeight } from "../quant/formats.ts";
import type { LlamaConfig } from "./config.ts";
import type { TensorClaim } from "./unused_tensors.ts";

/**
 * A weight source whose quantized linear layers come out in our packed layouts.
 *
 * @example
 * ```ts ignore
 * const source = await prequantizedWeights(dir, checkpoint);
 * if (source?.isQuantized(name)) await source.readQuantized(name);
 * ```
 */
export interface PrequantizedWeights {
  /** Format of the quantized layers. */
  readonly format: QuantFormat;
  /** Layer options the file implies (LLM.int8() threshold; `f16: false` for f32 compute). */
  readonly linearOptions: { threshold?: number; f16?: boolean };
  /** Whether `name` (a `….weight`) is stored quantized. */
  isQuantized(name: string): boolean;
  /** The quantized layer `name` in our packed layout. */
  readQuantized(name: string): Promise<QuantizedWeight>;
  /** Throws unless the tensor's logical shape is `shape`. */
  expectShape(name: string, shape: readonly number[]): void;
  /** A tensor as f32 (a quantized one dequantized). */
  readF32(name: string): Promise<Float32Array>;
  /** A tensor as f16 bits (a quantized one dequantized). */
  readF16Bits(name: string): Promise<Uint16Array>;
  /** The directory the checkpoint was opened from. */
  readonly dir: string;
  /** Every tensor name stored. */
  names(): string[];
  /** Claims on the companion tensors of the quantized layers (for the unused-tensor check). */
  tensorClaims(config: LlamaConfig): TensorClaim[];
}
