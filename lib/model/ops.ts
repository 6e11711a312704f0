/**
 * The non-linear kernels of a Llama block, built once for one model's shapes: what
 * {@linkcode LlamaModel} calls between its linear layers.
 *
 * @module
 */

import type { Binding, CommandBatch } from "../gpu/batch.ts";
import type { Gpu } from "../gpu/device.ts";
import type { GpuTensor } from "../gpu/tensor.ts";
import { type Argmax, createArgmax } from "../kernels/argmax.ts";
import { type Attention, createAttention } from "../kernels/attention.ts";
import { createElementwise, type Elementwise } from "../kernels/elementwise.ts";
import { createEmbedding, type Embedding } from "../kernels/embedding.ts";
import type { GpuStart } from "../kernels/chunks.ts";
import type { Int8Input } from "../kernels/linear.ts";
import { createRmsNorm, type RmsNorm } from "../kernels/rmsnorm.ts";
import { createRopeQk, type RopeQk } from "../kernels/rope.ts";
import type { KvCacheFormat } from "../kernels/kv_cache.ts";
import { familyOf, type LlamaConfig } from "./config.ts";

/**
 * Compiled kernels for one model configuration.
 *
 * @example
 * ```ts ignore
 * const ops = await LlamaOps.create(gpu, config, embedTable);
 * ops.rmsnorm(batch, x, weight, out, rows);
 * ```
 */
export class LlamaOps {
  #embedding: Embedding;
  #norm: RmsNorm;
  #rope: RopeQk;
  #attention: Attention;
  #elementwise: Elementwise;
  #argmax: Argmax;
  #headNorm: RmsNorm | null;
  #foldRope: boolean;

  private constructor(
    embedding: Embedding,
    norm: RmsNorm,
    rope: RopeQk,
    attention: Attention,
    elementwise: Elementwise,
    argmax: Argmax,
    headNorm: RmsNorm | null,
    foldRope: boolean,
  ) {
    this.#embedding = embedding;
    this.#norm = norm;
    this.#rope = rope;
    this.#attention = attention;
    this.#elementwise = elementwise;
    this.#argmax = argmax;
    this.#headNorm = headNorm;
    this.#foldRope = foldRope;
  }

  /**
   * Compiles every kernel the forward pass needs for sequences up to `maxSeq` (attention keeps a
   * small scratch for splitting long decode steps) with a KV cache of `maxSeq` positions in
   * `kvCache`; `embedTable` stays owned by the caller. `foldRope` (default true): one-row steps
   * take RoPE and the cache write inside the attention where it can (see `attention`).
   */
  static async create(
    gpu: Gpu,
    c: LlamaConfig,
    embedTable: GpuTensor,
    maxSeq: number,
    kvCache: KvCacheFormat = "f16",
    { foldRope = true }: { foldRope?: boolean } = {},
  ): Promise<LlamaOps> {
    const [embedding, norm, rope, attention, elementwise, argmax, headNorm] = await Promise.all([
      createEmbedding(gpu, {
        label: "embed_tokens",
        table: embedTable,
        vocab: c.vocabSize,
        hidden: c.hiddenSize,
      }),
      createRmsNorm(gpu, { dim: c.hiddenSize, eps: c.rmsNormEps }),
      createRopeQk(gpu, {
        heads: c.numHeads,
        kvHeads: c.numKvHeads,
        headDim: c.headDim,
        kvCache,
        maxSeq,
      }),
      createAttention(gpu, {
        numHeads: c.numHeads,
        numKvHeads: c.numKvHeads,
        headDim: c.headDim,
        maxSeq,
        kvCache,
      }),
      createElementwise(gpu),
      createArgmax(gpu),
      // Qwen3's q/k norm: rows of one head.
      familyOf(c).qkNorm
        ? createRmsNorm(gpu, { dim: c.headDim, eps: c.rmsNormEps, workgroupSize: 64 })
        : null,
    ]);
    return new LlamaOps(
      embedding,
      norm,
      rope,
      attention,
      elementwise,
      argmax,
      headNorm,
      foldRope,
    );
  }

  /** Frees the attention scratch (the embedding table belongs to the model). */
  destroy(): void {
    this.#attention.destroy();
  }

  /** x[r] = embed[ids[r]]. */
  embed(batch: CommandBatch, ids: Binding, x: Binding, rows: number): void {
    this.#embedding.encode(batch, ids, x, rows);
  }

  /** out = rmsnorm(x) * weight, row by row. */
  rmsnorm(batch: CommandBatch, x: Binding, weight: Binding, out: Binding, rows: number): void {
    this.#norm.encode(batch, x, weight, out, rows);
  }

  /**
   * x += delta, then out = rmsnorm(x) * weight, row by row (one dispatch); with `q8` also the
   * int8 codes and absmax of each row of out, where an int8 product will read them.
   */
  addRmsnorm(
    batch: CommandBatch,
    x: Binding,
    delta: Binding,
    weight: Binding,
    out: Binding,
    rows: number,
    q8?: Int8Input,
  ): void {
    if (q8) {
      // and the int8 codes of each row of `out` for the products that read it
      this.#norm.encodeAddQ8(batch, x, delta, weight, out, q8, rows);
    } else {
      this.#norm.encodeAdd(batch, x, delta, weight, out, rows);
    }
  }

  /**
   * x[i, :] = rmsnorm(x[i, :]) * weight in place for `rows` rows of one head each (tokens ×
   * heads): Qwen3's per-head q/k norm (compiled only for families that have it).
   */
  headRmsnorm(batch: CommandBatch, x: Binding, weight: Binding, rows: number): void {
    if (!this.#headNorm) throw new Error("headRmsnorm: this model's family has no q/k norm");
    this.#headNorm.encodeInPlace(batch, x, weight, rows);
  }

  /** x[r, :] += bias for the `n / width` rows of x: a linear layer's bias. */
  addBias(batch: CommandBatch, x: Binding, bias: Binding, n: number, width: number): void {
    this.#elementwise.addBias(batch, x, bias, n, width);
  }

  /**
   * Rotates q in place and appends the rotated k and v to the layer's cache for positions
   * start .. start + rows - 1 (one dispatch), then causal attention of q over the cache (over
   * the last `window` positions only, when given: sliding-window attention). With `at`, both
   * add the u32 in `at.base` to `start` on the GPU. One row at a context up to
   * `FOLD_ROPE_MAX_POSITIONS` takes one dispatch: the attention turns q and k itself and writes
   * the cache (`Attention.attendNew`; the same cache, the output within rounding), leaving q as
   * it was.
   */
  attention(
    batch: CommandBatch,
    q: Binding,
    k: Binding,
    v: Binding,
    invFreq: Binding,
    cacheK: Binding,
    cacheV: Binding,
    out: Binding,
    start: number,
    rows: number,
    window = 0,
    at?: GpuStart,
  ): void {
    if (rows === 1 && this.#foldRope && this.#attention.foldsRopeAt(start, at)) {
      this.#attention.attendNew(batch, q, k, v, invFreq, cacheK, cacheV, out, start, window, at);
      return;
    }
    this.#rope.encodeToCache(batch, q, k, v, invFreq, cacheK, cacheV, start, rows, at);
    this.#attention.attend(batch, q, cacheK, cacheV, out, start, rows, window, at);
  }

  /** a += b over n floats. */
  add(batch: CommandBatch, a: Binding, b: Binding, n: number): void {
    this.#elementwise.add(batch, a, b, n);
  }

  /** gate = silu(gate) * up over n floats. */
  swiglu(batch: CommandBatch, gate: Binding, up: Binding, n: number): void {
    this.#elementwise.swiglu(batch, gate, up, n);
  }

  /** out[r] = argmax of logits row r. */
  argmax(batch: CommandBatch, logits: Binding, out: Binding, rows: number, vocab: number): void {
    this.#argmax.encode(batch, logits, out, rows, vocab);
  }
}
