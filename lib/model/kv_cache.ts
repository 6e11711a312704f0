/**
 * Reading a model's KV cache back, whatever its format: for looking at what keys and values
 * look like (their outlier channels) and what quantizing them changed.
 *
 * @module
 */

import { decodeKvCache, KV_CACHE_INFO } from "../kernels/kv_cache.ts";
import type { LlamaModel } from "./llama.ts";

/** Keys and values of one layer, `[positions, numKvHeads, headDim]` f32 each. */
export interface KvCacheContents {
  /** Keys after RoPE, in the model's basis (a turned quantized key is turned back). */
  keys: Float32Array;
  /** Values. */
  values: Float32Array;
  /** Positions read (the model's position when read). */
  positions: number;
}

/**
 * Reads layer `layer`'s cache positions `0 .. model.position - 1` and decodes them.
 *
 * @example
 * ```ts ignore
 * await model.forward(tokens, "none");
 * const { keys } = await readKvCache(model, 0); // [tokens, kvHeads, headDim]
 * ```
 */
export async function readKvCache(model: LlamaModel, layer: number): Promise<KvCacheContents> {
  const { key, value } = model.kvCacheTensors(layer);
  const c = model.config;
  const positions = model.position;
  const format = model.kvCache;
  const words = async (t: typeof key) =>
    KV_CACHE_INFO[format].codeBits === 16
      ? await model.gpu.readU32(t, 0, Math.max(1, (positions * c.numKvHeads * c.headDim) / 2))
      : await model.gpu.readU32(t);
  const decode = (w: Uint32Array, isKey: boolean) =>
    decodeKvCache(w, format, positions, c.numKvHeads, c.headDim, model.maxSeqLen, isKey);
  return {
    keys: decode(await words(key), true),
    values: decode(await words(value), false),
    positions,
  };
}
