/**
 * A plain fp32 Llama forward pass on the CPU, written to be read: the yardstick every GPU path
 * and every quantized format is measured against. One token at a time, like llama2.c's `run.c`,
 * with a KV cache so a prompt and the tokens generated after it go through the same code.
 *
 * Layout follows Hugging Face: a linear weight is [out, in] row-major, RoPE rotates the pairs
 * (i, i + headDim/2) of each head ("rotate half"), and the MLP is down(silu(gate(x)) * up(x)).
 *
 * @module
 */

import type { Checkpoint } from "./checkpoint.ts";
import { type LlamaConfig, ropeInverseFrequencies } from "./config.ts";

/**
 * The weights of one decoder layer, as f32.
 *
 * @example
 * ```ts ignore
 * const layer: LayerWeights = weights.layers[0];
 * layer.wq.length; // numHeads * headDim * hiddenSize
 * ```
 */
export interface LayerWeights {
  /** input_layernorm [hidden] */
  attnNorm: Float32Array;
  /** q_proj [numHeads * headDim, hidden] */
  wq: Float32Array;
  /** k_proj [numKvHeads * headDim, hidden] */
  wk: Float32Array;
  /** v_proj [numKvHeads * headDim, hidden] */
  wv: Float32Array;
  /** o_proj [hidden, numHeads * headDim] */
  wo: Float32Array;
  /** post_attention_layernorm [hidden] */
  mlpNorm: Float32Array;
  /** gate_proj [intermediate, hidden] */
  wGate: Float32Array;
  /** up_proj [intermediate, hidden] */
  wUp: Float32Array;
  /** down_proj [hidden, intermediate] */
  wDown: Float32Array;
}

/**
 * All weights of a Llama model, as f32.
 *
 * @example
 * ```ts ignore
 * const weights: ReferenceWeights = await loadReferenceWeights(ckpt, config);
 * weights.lmHead === weights.embedding; // true when tied
 * ```
 */
export interface ReferenceWeights {
  /** embed_tokens [vocab, hidden] */
  embedding: Float32Array;
  /** One entry per decoder layer. */
  layers: LayerWeights[];
  /** model.norm [hidden] */
  finalNorm: Float32Array;
  /** lm_head [vocab, hidden]; the embedding itself when tied. */
  lmHead: Float32Array;
}

/**
 * Reads every weight of a Llama checkpoint as f32, checking each shape against the config.
 *
 * @example
 * ```ts ignore
 * import { openCheckpoint } from "./checkpoint.ts";
 * import { loadLlamaConfig } from "./config.ts";
 * import { loadReferenceWeights } from "./reference.ts";
 * const config = await loadLlamaConfig(dir);
 * using ckpt = await openCheckpoint(dir);
 * const weights = await loadReferenceWeights(ckpt, config);
 * ```
 */
export async function loadReferenceWeights(
  checkpoint: Checkpoint,
  config: LlamaConfig,
): Promise<ReferenceWeights> {
  if (config.family) {
    throw new Error(
      `loadReferenceWeights: the ${config.family.name} family is not implemented by the CPU ` +
        `reference; only plain Llama`,
    );
  }
  const h = config.hiddenSize;
  const q = config.numHeads * config.headDim;
  const kv = config.numKvHeads * config.headDim;
  const read = async (name: string, shape: number[]): Promise<Float32Array> => {
    checkpoint.expectShape(name, shape);
    return await checkpoint.readF32(name);
  };
  const embedding = await read("model.embed_tokens.weight", [config.vocabSize, h]);
  const layers: LayerWeights[] = [];
  for (let l = 0; l < config.numLayers; l++) {
    const p = `model.layers.${l}`;
    layers.push({
      attnNorm: await read(`${p}.input_layernorm.weight`, [h]),
      wq: await read(`${p}.self_attn.q_proj.weight`, [q, h]),
      wk: await read(`${p}.self_attn.k_proj.weight`, [kv, h]),
      wv: await read(`${p}.self_attn.v_proj.weight`, [kv, h]),
      wo: await read(`${p}.self_attn.o_proj.weight`, [h, q]),
      mlpNorm: await read(`${p}.post_attention_layernorm.weight`, [h]),
      wGate: await read(`${p}.mlp.gate_proj.weight`, [config.intermediateSize, h]),
      wUp: await read(`${p}.mlp.up_proj.weight`, [config.intermediateSize, h]),
      wDown: await read(`${p}.mlp.down_proj.weight`, [h, config.intermediateSize]),
    });
  }
  const finalNorm = await read("model.norm.weight", [h]);
  // Tied models reuse the embedding even if a (redundant) lm_head.weight was saved.
  const lmHead = config.tieWordEmbeddings
    ? embedding
    : await read("lm_head.weight", [config.vocabSize, h]);
  return { embedding, layers, finalNorm, lmHead };
}

// ---------------------------------------------------------------------------------------------
// The building blocks.

/** out = x / rms(x) * weight. */
function rmsnorm(out: Float32Array, x: Float32Array, weight: Float32Array, eps: number): void {
  let ss = 0;
  for (let i = 0; i < x.length; i++) ss += x[i] * x[i];
  const scale = 1 / Math.sqrt(ss / x.length + eps);
  for (let i = 0; i < x.length; i++) out[i] = x[i] * scale * weight[i];
}

/** out[i] = sum_j w[i, j] * x[j], with w [out.length, x.length] row-major. */
function matmul(out: Float32Array, x: Float32Array, w: Float32Array): void {
  const n = x.length;
  for (let i = 0; i < out.length; i++) {
    let sum = 0;
    const row = i * n;
    for (let j = 0; j < n; j++) sum += w[row + j] * x[j];
    out[i] = sum;
  }
}

/** In-place softmax of x[0..size). */
function softmax(x: Float32Array, size: number): void {
  let max = -Infinity;
  for (let i = 0; i < size; i++) max = Math.max(max, x[i]);
  let sum = 0;
  for (let i = 0; i < size; i++) sum += x[i] = Math.exp(x[i] - max);
  for (let i = 0; i < size; i++) x[i] /= sum;
}

/**
 * Rotates each head of `vec` (numHeads heads of headDim) by position `pos`: the pair
 * (i, i + headDim/2) turns by angle pos * invFreq[i] (HF's rotate_half convention).
 */
function rope(
  vec: Float32Array,
  numHeads: number,
  headDim: number,
  pos: number,
  invFreq: Float32Array,
): void {
  const half = headDim / 2;
  for (let i = 0; i < half; i++) {
    const angle = pos * invFreq[i];
    const cos = Math.cos(angle);
    const sin = Math.sin(angle);
    for (let h = 0; h < numHeads; h++) {
      const a = h * headDim + i;
      const x0 = vec[a];
      const x1 = vec[a + half];
      vec[a] = x0 * cos - x1 * sin;
      vec[a + half] = x1 * cos + x0 * sin;
    }
  }
}

function silu(x: number): number {
  return x / (1 + Math.exp(-x));
}

// ---------------------------------------------------------------------------------------------
// The model.

/**
 * Receives the input of a linear layer, for per-layer error studies. `name` is one of
 * `self_attn.q_proj` (also the input of k_proj and v_proj), `self_attn.o_proj`, `mlp.gate_proj`
 * (also up_proj's input), `mlp.down_proj`, or `lm_head` (with `layer` = numLayers). `data` is a
 * copy the callback may keep.
 *
 * @example
 * ```ts
 * import type { ActivationHook } from "./reference.ts";
 * const maxAbs: ActivationHook = (name, layer, data) => {
 *   console.log(name, layer, Math.max(...data.map(Math.abs)));
 * };
 * ```
 */
export type ActivationHook = (name: string, layer: number, data: Float32Array, pos: number) => void;

/**
 * Options of {@link ReferenceLlama}.
 *
 * @example
 * ```ts
 * import type { ReferenceOptions } from "./reference.ts";
 * const o: ReferenceOptions = { maxSeqLen: 512 };
 * ```
 */
export interface ReferenceOptions {
  /** KV cache length (default: the smaller of maxPositionEmbeddings and 2048). */
  maxSeqLen?: number;
  /** Called with the input of every linear layer at every position. */
  onActivation?: ActivationHook;
}

/**
 * The fp32 reference model with its KV cache.
 *
 * @example
 * ```ts ignore
 * import { ReferenceLlama } from "./reference.ts";
 * const model = new ReferenceLlama(config, weights);
 * const logits = model.forward([1, 15043, 3186], 0); // [3, vocab]
 * const next = model.forward([29991], 3); // continue from the cache
 * ```
 */
export class ReferenceLlama {
  /** The model's hyper-parameters. */
  readonly config: LlamaConfig;
  /** The model's weights. */
  readonly weights: ReferenceWeights;
  /** Positions the KV cache holds. */
  readonly maxSeqLen: number;
  /** The activation hook, if any; may be set at any time. */
  onActivation?: ActivationHook;
  /** Positions currently held in the KV cache. */
  length = 0;

  #invFreq: Float32Array;
  #keyCache: Float32Array[]; // per layer: [maxSeqLen, numKvHeads * headDim]
  #valueCache: Float32Array[];
  // Scratch buffers, as llama2.c's RunState.
  #x: Float32Array;
  #xb: Float32Array;
  #q: Float32Array;
  #attnOut: Float32Array;
  #hb: Float32Array;
  #hb2: Float32Array;
  #att: Float32Array;

  /** Builds the model over already loaded weights; see {@link loadReferenceWeights}. */
  constructor(config: LlamaConfig, weights: ReferenceWeights, options: ReferenceOptions = {}) {
    if (config.family) {
      // The GPU forward reads the family description; this twin implements plain Llama only.
      throw new Error(
        `ReferenceLlama: the ${config.family.name} family (biases, q/k norm, sliding window or ` +
          `fused tensors) is not implemented by the CPU reference; only plain Llama`,
      );
    }
    this.config = config;
    this.weights = weights;
    this.maxSeqLen = options.maxSeqLen ?? Math.min(config.maxPositionEmbeddings, 2048);
    this.onActivation = options.onActivation;
    this.#invFreq = ropeInverseFrequencies(config);
    const kvDim = config.numKvHeads * config.headDim;
    this.#keyCache = weights.layers.map(() => new Float32Array(this.maxSeqLen * kvDim));
    this.#valueCache = weights.layers.map(() => new Float32Array(this.maxSeqLen * kvDim));
    const qDim = config.numHeads * config.headDim;
    this.#x = new Float32Array(config.hiddenSize);
    this.#xb = new Float32Array(config.hiddenSize);
    this.#q = new Float32Array(qDim);
    this.#attnOut = new Float32Array(qDim);
    this.#hb = new Float32Array(config.intermediateSize);
    this.#hb2 = new Float32Array(config.intermediateSize);
    this.#att = new Float32Array(this.maxSeqLen);
  }

  /**
   * Empties the KV cache.
   *
   * @example
   * ```ts ignore
   * model.reset();
   * ```
   */
  reset(): void {
    this.length = 0;
  }

  /**
   * Runs `tokens` at positions startPos, startPos + 1, ... and returns their logits,
   * [tokens.length, vocab] row-major. `startPos` may rewind into the cache (later entries are
   * overwritten) but not skip past its end.
   *
   * @example
   * ```ts ignore
   * const logits = model.forward([1, 2, 3], 0);
   * const last = logits.subarray(2 * config.vocabSize);
   * ```
   */
  forward(tokens: readonly number[], startPos: number): Float32Array {
    const { vocabSize } = this.config;
    if (!Number.isInteger(startPos) || startPos < 0 || startPos > this.length) {
      throw new Error(`forward: startPos ${startPos} must be within the cache (0..${this.length})`);
    }
    if (startPos + tokens.length > this.maxSeqLen) {
      throw new Error(
        `forward: positions up to ${startPos + tokens.length} exceed the KV cache of ` +
          `${this.maxSeqLen} (maxSeqLen option)`,
      );
    }
    const logits = new Float32Array(tokens.length * vocabSize);
    for (let t = 0; t < tokens.length; t++) {
      const token = tokens[t];
      if (!Number.isInteger(token) || token < 0 || token >= vocabSize) {
        throw new Error(
          `forward: token ${token} at index ${t} is outside the vocabulary (${vocabSize})`,
        );
      }
      this.#step(token, startPos + t, logits.subarray(t * vocabSize, (t + 1) * vocabSize));
    }
    this.length = startPos + tokens.length;
    return logits;
  }

  #hook(name: string, layer: number, data: Float32Array, pos: number): void {
    this.onActivation?.(name, layer, data.slice(), pos);
  }

  /** One token through the whole network; writes its logits to `out`. */
  #step(token: number, pos: number, out: Float32Array): void {
    const c = this.config;
    const w = this.weights;
    const dim = c.hiddenSize;
    const headDim = c.headDim;
    const kvDim = c.numKvHeads * headDim;
    const groupSize = c.numHeads / c.numKvHeads;
    const x = this.#x, xb = this.#xb, q = this.#q, attnOut = this.#attnOut;
    const hb = this.#hb, hb2 = this.#hb2, att = this.#att;

    x.set(w.embedding.subarray(token * dim, (token + 1) * dim));

    for (let l = 0; l < c.numLayers; l++) {
      const lw = w.layers[l];

      // Attention: q, k, v of the normed input; k and v go straight into the cache at pos.
      rmsnorm(xb, x, lw.attnNorm, c.rmsNormEps);
      this.#hook("self_attn.q_proj", l, xb, pos);
      const k = this.#keyCache[l].subarray(pos * kvDim, (pos + 1) * kvDim);
      const v = this.#valueCache[l].subarray(pos * kvDim, (pos + 1) * kvDim);
      matmul(q, xb, lw.wq);
      matmul(k, xb, lw.wk);
      matmul(v, xb, lw.wv);
      rope(q, c.numHeads, headDim, pos, this.#invFreq);
      rope(k, c.numKvHeads, headDim, pos, this.#invFreq);

      // Each query head attends over positions 0..pos of its key/value head (GQA: groupSize
      // query heads share one kv head, as HF's repeat_kv does).
      const scale = 1 / Math.sqrt(headDim);
      for (let h = 0; h < c.numHeads; h++) {
        const qh = h * headDim;
        const kvh = Math.floor(h / groupSize) * headDim;
        for (let t = 0; t <= pos; t++) {
          const kt = this.#keyCache[l].subarray(t * kvDim + kvh, t * kvDim + kvh + headDim);
          let score = 0;
          for (let i = 0; i < headDim; i++) score += q[qh + i] * kt[i];
          att[t] = score * scale;
        }
        softmax(att, pos + 1);
        attnOut.fill(0, qh, qh + headDim);
        for (let t = 0; t <= pos; t++) {
          const vt = this.#valueCache[l].subarray(t * kvDim + kvh, t * kvDim + kvh + headDim);
          const a = att[t];
          for (let i = 0; i < headDim; i++) attnOut[qh + i] += a * vt[i];
        }
      }
      this.#hook("self_attn.o_proj", l, attnOut, pos);
      matmul(xb, attnOut, lw.wo);
      for (let i = 0; i < dim; i++) x[i] += xb[i];

      // MLP: down(silu(gate(x)) * up(x)).
      rmsnorm(xb, x, lw.mlpNorm, c.rmsNormEps);
      this.#hook("mlp.gate_proj", l, xb, pos);
      matmul(hb, xb, lw.wGate);
      matmul(hb2, xb, lw.wUp);
      for (let i = 0; i < hb.length; i++) hb[i] = silu(hb[i]) * hb2[i];
      this.#hook("mlp.down_proj", l, hb, pos);
      matmul(xb, hb, lw.wDown);
      for (let i = 0; i < dim; i++) x[i] += xb[i];
    }

    rmsnorm(xb, x, w.finalNorm, c.rmsNormEps);
    this.#hook("lm_head", c.numLayers, xb, pos);
    matmul(out, xb, w.lmHead);
  }
}
