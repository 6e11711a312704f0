/**
 * Two sweeps that explain the formats' defaults, computed on a model's real weights and
 * activations with the CPU references of lib/quant:
 *
 * - the LLM.int8() threshold: lower thresholds send more hidden dimensions to FP16 and the
 *   product gets closer to FP16's, at the cost of more FP16 work;
 * - the NF4 block size: smaller blocks track the weights' scale more closely but spend more
 *   bits on absmax values — which double quantization mostly buys back.
 *
 * @module
 */

import { f16ArrayToF32 } from "../gpu/f16.ts";
import type { Checkpoint } from "../model/checkpoint.ts";
import type { LlamaConfig } from "../model/config.ts";
import { LINEAR_NAMES, type LinearName, type Trace } from "../model/llama.ts";
import { matmulF32 } from "../quant/fp16.ts";
import { bitsPerParameter, dequantize, quantize } from "../quant/formats.ts";
import { matmulLlmInt8, quantizeLlmInt8 } from "../quant/llm_int8.ts";
import { findOutlierColumns } from "../quant/llm_int8.ts";
import { relativeFrobeniusError } from "../quant/stats.ts";
import { LINEAR_INPUT } from "./layer_error.ts";

/** One point of {@linkcode thresholdSweep}. */
export interface ThresholdSweepPoint {
  /** The outlier threshold on |x|. */
  threshold: number;
  /** Mean over the swept layers of the fraction of hidden dimensions multiplied in FP16. */
  outlierColumnFraction: number;
  /** Mean relative Frobenius error of the layer outputs against FP16. */
  error: number;
}

/** One point of {@linkcode blockSizeSweep}. */
export interface BlockSizeSweepPoint {
  /** Values per absmax block. */
  blockSize: number;
  /** Whether the absmax values are themselves quantized. */
  doubleQuant: boolean;
  /** Bits per parameter, every scale included. */
  bitsPerParam: number;
  /** Relative Frobenius error of the dequantized weights, over all swept layers. */
  error: number;
}

/** Which linear layers a sweep visits. */
export interface SweepLayers {
  /** Layer indices (default: all). */
  layers?: number[];
  /** Linear layers of each block (default: all seven). */
  linears?: readonly LinearName[];
}

async function weightOf(
  ckpt: Checkpoint,
  layer: number,
  linear: LinearName,
): Promise<Float32Array> {
  return f16ArrayToF32(await ckpt.readF16Bits(`model.layers.${layer}.${linear}.weight`));
}

/**
 * LLM.int8()'s quality against the share of FP16 columns as the threshold varies, on the
 * FP16 model's traced activations and the checkpoint's weights.
 *
 * @example
 * ```ts ignore
 * const points = await thresholdSweep(ckpt, config, trace, [1, 2, 3, 4, 6, 8, Infinity]);
 * ```
 */
export async function thresholdSweep(
  ckpt: Checkpoint,
  config: LlamaConfig,
  trace: Trace,
  thresholds: readonly number[],
  which: SweepLayers = {},
): Promise<ThresholdSweepPoint[]> {
  const layers = which.layers ?? [...Array(config.numLayers).keys()];
  const linears = which.linears ?? LINEAR_NAMES;
  const sums = thresholds.map(() => ({ fraction: 0, error: 0 }));
  let count = 0;
  for (const layer of layers) {
    for (const linear of linears) {
      const w = await weightOf(ckpt, layer, linear);
      const x = trace.layers[layer][LINEAR_INPUT[linear]];
      const m = trace.tokens;
      const k = x.length / m;
      const n = w.length / k;
      const exact = matmulF32(x, m, w, n, k);
      const q = quantizeLlmInt8(w, n, k);
      thresholds.forEach((t, i) => {
        const y = matmulLlmInt8(x, m, q, { threshold: t });
        sums[i].error += relativeFrobeniusError(y, exact);
        sums[i].fraction += findOutlierColumns(x, m, k, t).columns.length / k;
      });
      count++;
    }
  }
  return thresholds.map((threshold, i) => ({
    threshold,
    outlierColumnFraction: sums[i].fraction / count,
    error: sums[i].error / count,
  }));
}

/**
 * NF4 reconstruction error and bits per parameter for each block size, with and without double
 * quantization, on the checkpoint's weights.
 *
 * @example
 * ```ts ignore
 * const points = await blockSizeSweep(ckpt, config, [32, 64, 128, 256, 512, 1024, 2048, 4096]);
 * ```
 */
export async function blockSizeSweep(
  ckpt: Checkpoint,
  config: LlamaConfig,
  blockSizes: readonly number[],
  which: SweepLayers = {},
): Promise<BlockSizeSweepPoint[]> {
  const layers = which.layers ?? [...Array(config.numLayers).keys()];
  const linears = which.linears ?? LINEAR_NAMES;
  const acc = new Map<string, { diff: number; ref: number; bits: number; params: number }>();
  for (const layer of layers) {
    for (const linear of linears) {
      const w = await weightOf(ckpt, layer, linear);
      const k = linear === "mlp.down_proj"
        ? config.intermediateSize
        : linear === "self_attn.o_proj"
        ? config.numHeads * config.headDim
        : config.hiddenSize;
      const n = w.length / k;
      let ref = 0;
      for (const v of w) ref += v * v;
      for (const blocksize of blockSizes) {
        if ((n * k) % blocksize !== 0) continue;
        for (const format of ["nf4", "nf4-dq"] as const) {
          const back = dequantize(quantize(format, w, n, k, { blocksize }));
          let diff = 0;
          for (let i = 0; i < w.length; i++) diff += (back[i] - w[i]) ** 2;
          const key = `${blocksize}/${format}`;
          const a = acc.get(key) ?? { diff: 0, ref: 0, bits: 0, params: 0 };
          a.diff += diff;
          a.ref += ref;
          a.bits += bitsPerParameter(format, n, k, { blocksize }) * n * k;
          a.params += n * k;
          acc.set(key, a);
        }
      }
    }
  }
  return [...acc].map(([key, a]) => {
    const [blockSize, format] = key.split("/");
    return {
      blockSize: Number(blockSize),
      doubleQuant: format === "nf4-dq",
      bitsPerParam: a.bits / a.params,
      error: Math.sqrt(a.diff / a.ref),
    };
  });
}
