/**
 * What quantizing the KV cache loses, measured two ways:
 *
 * - **End to end** ({@linkcode kvCacheQuality}): the same model and weights with each cache
 *   format over the same held-out windows; KL divergence from the f16 cache's next-token
 *   distribution, top-1 agreement and perplexity, overall and by position in the window (the
 *   error of a quantized cache grows with the number of keys a query attends to).
 * - **Per layer and head, isolated** ({@linkcode attentionErrors}): each layer's attention
 *   recomputed on the CPU from the f16 model's own queries, keys and values, with the keys and
 *   values passed through a cache format's round trip; the relative error of its output, per
 *   head. No error carries over from earlier layers, so it says which layers and heads suffer.
 *   Besides the runtime's formats it measures alternatives that are cheap to try here: KIVI's
 *   per-channel key scales (groups of 32 tokens) and a symmetric 4-bit code.
 *
 * @module
 */

import { cpuAttention } from "../kernels/attention.ts";
import { KV_GROUP, type KvCacheFormat, kvRoundTrip } from "../kernels/kv_cache.ts";
import { cpuRope } from "../kernels/rope.ts";
import type { Checkpoint } from "../model/checkpoint.ts";
import { familyOf, loadLlamaConfig, ropeInverseFrequencies } from "../model/config.ts";
import { readKvCache } from "../model/kv_cache.ts";
import { LlamaModel, type LoadOptions } from "../model/llama.ts";
import { argmax } from "../model/sampling.ts";
import { klDivergence } from "./divergence.ts";
import { logProbability } from "./perplexity.ts";

/** Options for {@linkcode kvCacheQuality}. */
export interface KvQualityOptions {
  /** The model directory. */
  modelDir: string;
  /** Tokens of the held-out text; scored in windows of `window` tokens from an empty cache. */
  tokens: readonly number[];
  /** Cache formats to measure against f16. */
  kvCaches: KvCacheFormat[];
  /** Window length (default: the model's context, at most 512). */
  window?: number;
  /** Edges of the position buckets the metrics are also reported by (default 0,64,128,256). */
  buckets?: number[];
  /** Load options shared by every run (device, weight format, ...). */
  load?: Omit<LoadOptions, "kvCache" | "maxSeqLen">;
}

/** The metrics of one cache format over a set of positions. */
export interface KvQualityMetrics {
  /** Mean KL(f16 cache ‖ this cache) over the positions. */
  kl: number;
  /** Fraction of positions whose most likely next token is the f16 cache's. */
  top1: number;
  /** Perplexity of the text over the positions. */
  perplexity: number;
  /** Positions counted. */
  count: number;
}

/** One cache format's result. */
export interface KvQualityResult {
  /** The cache format. */
  kvCache: KvCacheFormat;
  /** Over every scored position. */
  all: KvQualityMetrics;
  /** Per bucket of positions in the window: `[from, to)` and the metrics there. */
  byPosition: { from: number; to: number; metrics: KvQualityMetrics }[];
}

/** What {@linkcode kvCacheQuality} returns. */
export interface KvQuality {
  /** Window length. */
  window: number;
  /** Windows scored. */
  windows: number;
  /** The f16 cache's own perplexity (its KL is 0 and its top-1 100%). */
  f16: KvQualityMetrics;
  /** One per format asked for. */
  results: KvQualityResult[];
}

/**
 * Scores the text in windows with an f16 cache and with each format, on the same weights, and
 * compares the next-token distributions position by position.
 *
 * @example
 * ```ts ignore
 * const q = await kvCacheQuality({ modelDir, tokens, kvCaches: ["int8", "int4"], load: { gpu } });
 * q.results[0].all.kl; // int8's KL over the f16 cache
 * ```
 */
export async function kvCacheQuality(options: KvQualityOptions): Promise<KvQuality> {
  const formats: KvCacheFormat[] = ["f16", ...options.kvCaches.filter((k) => k !== "f16")];
  const config = await loadLlamaConfig(options.modelDir);
  const vocab = config.vocabSize;
  const context = config.maxPositionEmbeddings;
  const window = options.window ?? Math.min(512, context);
  const windows = Math.floor(options.tokens.length / window);
  if (windows < 1) throw new Error(`kvCacheQuality: fewer than ${window} tokens`);
  const edges = [...(options.buckets ?? [0, 64, 128, 256]), window].filter((e) => e <= window);
  // Per format, per scored position (window w, position t predicting token t + 1).
  const perPosition = window - 1;
  const n = windows * perPosition;
  const logp = new Map<KvCacheFormat, Float64Array>();
  const kl = new Map<KvCacheFormat, Float64Array>();
  const agree = new Map<KvCacheFormat, Uint8Array>();
  const reference: Float32Array[] = [];
  for (const kvCache of formats) {
    const model = await LlamaModel.load(options.modelDir, {
      ...options.load,
      kvCache,
      maxSeqLen: window,
    });
    const lp = new Float64Array(n);
    const k = new Float64Array(n);
    const a = new Uint8Array(n);
    try {
      for (let w = 0; w < windows; w++) {
        const toks = options.tokens.slice(w * window, (w + 1) * window);
        model.reset();
        const logits = await model.forward(toks, "all");
        if (kvCache === "f16") reference.push(logits);
        const ref = reference[w];
        for (let t = 0; t < perPosition; t++) {
          const i = w * perPosition + t;
          const row = logits.subarray(t * vocab, (t + 1) * vocab);
          const refRow = ref.subarray(t * vocab, (t + 1) * vocab);
          lp[i] = logProbability(row, toks[t + 1]);
          k[i] = kvCache === "f16" ? 0 : klDivergence(refRow, row);
          a[i] = kvCache === "f16" || argmax(row) === argmax(refRow) ? 1 : 0;
        }
      }
    } finally {
      model.dispose();
    }
    logp.set(kvCache, lp);
    kl.set(kvCache, k);
    agree.set(kvCache, a);
  }
  const metrics = (f: KvCacheFormat, from: number, to: number): KvQualityMetrics => {
    let sumKl = 0, sumAgree = 0, sumLp = 0, count = 0;
    for (let w = 0; w < windows; w++) {
      for (let t = from; t < Math.min(to, perPosition); t++) {
        const i = w * perPosition + t;
        sumKl += kl.get(f)![i];
        sumAgree += agree.get(f)![i];
        sumLp += logp.get(f)![i];
        count++;
      }
    }
    return {
      kl: sumKl / count,
      top1: sumAgree / count,
      perplexity: Math.exp(-sumLp / count),
      count,
    };
  };
  return {
    window,
    windows,
    f16: metrics("f16", 0, window),
    results: formats.slice(1).map((kvCache) => ({
      kvCache,
      all: metrics(kvCache, 0, window),
      byPosition: edges.slice(0, -1).map((from, i) => ({
        from,
        to: edges[i + 1],
        metrics: metrics(kvCache, from, edges[i + 1]),
      })),
    })),
  };
}

/**
 * A KV treatment measured by {@linkcode attentionErrors}: one of the runtime's formats, or one
 * of the alternatives simulated on the CPU:
 * - `kivi-int4`: keys quantized per channel over groups of 32 tokens (scale and offset per
 *   channel, KIVI's key treatment), values per token as `int4-plain`;
 * - `int4-sym`: int4 with a symmetric code (absmax / 7, codes -7..7) per token and group, for
 *   keys (turned) and values alike.
 */
export type KvTreatment = KvCacheFormat | "kivi-int4" | "int4-sym";

/** One layer's attention error under one treatment. */
export interface AttentionError {
  /** The treatment. */
  treatment: KvTreatment;
  /** Layer index. */
  layer: number;
  /** ‖out − out_f16‖ / ‖out_f16‖ over every position and head of the layer. */
  relativeError: number;
  /** The same per query head. */
  perHead: number[];
}

/** Round half to even. */
function roundEven(x: number): number {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** KIVI's keys: per channel, per group of 32 positions, 4-bit with scale and offset (f32). */
function kiviKeys(k: Float32Array, positions: number, width: number): Float32Array {
  const out = new Float32Array(k.length);
  for (let p0 = 0; p0 < positions; p0 += KV_GROUP) {
    const p1 = Math.min(positions, p0 + KV_GROUP);
    for (let c = 0; c < width; c++) {
      let lo = Infinity, hi = -Infinity;
      for (let p = p0; p < p1; p++) {
        lo = Math.min(lo, k[p * width + c]);
        hi = Math.max(hi, k[p * width + c]);
      }
      const d = (hi - lo) / 15;
      for (let p = p0; p < p1; p++) {
        const q = d > 0 ? Math.max(0, Math.min(15, roundEven((k[p * width + c] - lo) / d))) : 0;
        out[p * width + c] = lo + d * q;
      }
    }
  }
  return out;
}

/** Symmetric 4-bit per group of 32 (absmax / 7), optionally turned by the Hadamard matrix. */
function symmetricInt4(x: Float32Array, turn: boolean): Float32Array {
  const out = new Float32Array(x.length);
  const g = new Float64Array(KV_GROUP);
  const h = (a: Float64Array) => {
    for (let s = 1; s < KV_GROUP; s <<= 1) {
      for (let i = 0; i < KV_GROUP; i++) {
        if (i & s) continue;
        const u = a[i], v = a[i + s];
        a[i] = u + v;
        a[i + s] = u - v;
      }
    }
    for (let i = 0; i < KV_GROUP; i++) a[i] /= Math.sqrt(KV_GROUP);
  };
  for (let o = 0; o < x.length; o += KV_GROUP) {
    for (let i = 0; i < KV_GROUP; i++) g[i] = x[o + i];
    if (turn) h(g);
    let amax = 0;
    for (const v of g) amax = Math.max(amax, Math.abs(v));
    const d = amax / 7;
    for (let i = 0; i < KV_GROUP; i++) g[i] = d > 0 ? d * roundEven(g[i] / d) : 0;
    if (turn) h(g);
    for (let i = 0; i < KV_GROUP; i++) out[o + i] = g[i];
  }
  return out;
}

/** Queries, keys and values of every layer of the f16 model on some tokens. */
export interface AttentionInputs {
  /** Tokens (positions 0 .. tokens - 1). */
  tokens: number;
  /** Per layer: queries after RoPE `[tokens, numHeads, headDim]`. */
  q: Float32Array[];
  /** Per layer: keys after RoPE `[tokens, numKvHeads, headDim]` (the f16 cache's contents). */
  k: Float32Array[];
  /** Per layer: values. */
  v: Float32Array[];
}

/**
 * Runs `tokens` through an f16-cache model and collects each layer's attention inputs: keys and
 * values read back from its cache, queries recomputed on the CPU from the traced attention input
 * and q_proj's weights (which must be FP16: the model's format is used for nothing else).
 *
 * @example
 * ```ts ignore
 * const inputs = await attentionInputs(model, checkpoint, tokens.slice(0, 512));
 * ```
 */
export async function attentionInputs(
  model: LlamaModel,
  checkpoint: Pick<Checkpoint, "readF32">,
  tokens: readonly number[],
): Promise<AttentionInputs> {
  if (model.kvCache !== "f16") throw new Error("attentionInputs: the model's cache must be f16");
  const c = model.config;
  const family = familyOf(c);
  if (
    family.qkNorm || family.fused || family.biases.includes("self_attn.q_proj") ||
    family.windows.some((w) => w > 0)
  ) {
    throw new Error(
      `attentionInputs: queries are recomputed for plain Llama attention (no q bias, q/k norm, ` +
        `fused q/k/v or sliding window); this ${family.name} model has one of them`,
    );
  }
  const trace = await model.trace(tokens); // leaves the cache holding the tokens
  const n = tokens.length;
  const qDim = c.numHeads * c.headDim;
  const invFreq = ropeInverseFrequencies(c);
  const q: Float32Array[] = [], k: Float32Array[] = [], v: Float32Array[] = [];
  for (let l = 0; l < c.numLayers; l++) {
    const w = await checkpoint.readF32(`model.layers.${l}.self_attn.q_proj.weight`);
    const x = trace.layers[l].attn_in;
    const ql = new Float32Array(n * qDim);
    for (let t = 0; t < n; t++) {
      for (let o = 0; o < qDim; o++) {
        let s = 0;
        for (let i = 0; i < c.hiddenSize; i++) {
          s += x[t * c.hiddenSize + i] * w[o * c.hiddenSize + i];
        }
        ql[t * qDim + o] = s;
      }
    }
    q.push(cpuRope(ql, n, c.numHeads, c.headDim, 0, invFreq));
    const cache = await readKvCache(model, l);
    k.push(cache.keys);
    v.push(cache.values);
  }
  return { tokens: n, q, k, v };
}

/**
 * Each layer's causal attention over `inputs` with keys and values through each treatment,
 * against the f16 cache's, per layer and per head (CPU, f64 softmax).
 *
 * @example
 * ```ts ignore
 * const errs = attentionErrors(inputs, model.config, ["int8", "int4", "int4-plain", "kivi-int4"]);
 * ```
 */
export function attentionErrors(
  inputs: AttentionInputs,
  shape: { numHeads: number; numKvHeads: number; headDim: number; numLayers: number },
  treatments: KvTreatment[],
): AttentionError[] {
  const { numHeads, numKvHeads, headDim } = shape;
  const n = inputs.tokens;
  const out: AttentionError[] = [];
  for (let l = 0; l < shape.numLayers; l++) {
    const { q } = inputs;
    const k = inputs.k[l], v = inputs.v[l];
    const ref = cpuAttention(q[l], k, v, n, 0, shape, 0, "f16");
    for (const t of treatments) {
      let got: Float32Array;
      if (t === "kivi-int4") {
        const kq = kiviKeys(k, n, numKvHeads * headDim);
        const vq = kvRoundTrip(v, headDim, "int4-plain", false);
        got = cpuAttention(q[l], kq, vq, n, 0, shape, 0, "f16");
      } else if (t === "int4-sym") {
        got = cpuAttention(q[l], symmetricInt4(k, true), symmetricInt4(v, false), n, 0, shape);
      } else {
        got = cpuAttention(q[l], k, v, n, 0, shape, 0, t);
      }
      const perHeadErr = new Float64Array(numHeads), perHeadRef = new Float64Array(numHeads);
      for (let i = 0; i < got.length; i++) {
        const h = Math.floor(i / headDim) % numHeads;
        perHeadErr[h] += (got[i] - ref[i]) ** 2;
        perHeadRef[h] += ref[i] ** 2;
      }
      const sum = (a: Float64Array) => a.reduce((s, x) => s + x, 0);
      out.push({
        treatment: t,
        layer: l,
        relativeError: Math.sqrt(sum(perHeadErr) / sum(perHeadRef)),
        perHead: Array.from(perHeadErr, (e, h) => Math.sqrt(e / perHeadRef[h])),
      });
    }
  }
  return out;
}

/**
 * Per layer and key channel, the largest |k| over the positions and heads (keys after RoPE):
 * where keys' outlier channels are. Returns `[numLayers][numKvHeads * headDim]`.
 *
 * @example
 * ```ts ignore
 * const absmax = keyChannelAbsmax(inputs, model.config);
 * ```
 */
export function keyChannelAbsmax(
  inputs: Pick<AttentionInputs, "k" | "tokens">,
  shape: { numKvHeads: number; headDim: number },
): number[][] {
  const width = shape.numKvHeads * shape.headDim;
  return inputs.k.map((k) => {
    const m = new Array<number>(width).fill(0);
    for (let i = 0; i < inputs.tokens * width; i++) {
      m[i % width] = Math.max(m[i % width], Math.abs(k[i]));
    }
    return m;
  });
}
