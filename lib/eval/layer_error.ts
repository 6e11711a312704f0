/**
 * Per-layer error: how far each quantized linear layer's output is from FP16's on the same
 * input (the FP16 model's own activations), and how far each block's output has drifted after
 * the quantized model ran end to end.
 *
 * @module
 */

import { CommandBatch } from "../gpu/batch.ts";
import type { Gpu } from "../gpu/device.ts";
import type { Linear } from "../kernels/linear.ts";
import {
  LINEAR_NAMES,
  type LinearName,
  type LlamaModel,
  type Trace,
  type TracePoint,
} from "../model/llama.ts";

/** Relative error and cosine similarity of one output against the reference's. */
export interface ErrorStats {
  /** ‖y − y_ref‖ / ‖y_ref‖. */
  relativeError: number;
  /** cos(y, y_ref). */
  cosine: number;
}

/** One linear layer's error. */
export interface LinearError extends ErrorStats {
  /** Layer index. */
  layer: number;
  /** Which linear layer. */
  linear: LinearName;
}

/** One block output's drift. */
export interface BlockError extends ErrorStats {
  /** Layer index. */
  layer: number;
}

/**
 * Relative error and cosine similarity of `y` against `reference`.
 *
 * @example
 * ```ts
 * import { errorStats } from "./layer_error.ts";
 * errorStats(new Float32Array([1, 2]), new Float32Array([1, 2])); // { relativeError: 0, cosine: 1 }
 * ```
 */
export function errorStats(y: ArrayLike<number>, reference: ArrayLike<number>): ErrorStats {
  let diff = 0;
  let ref = 0;
  let dot = 0;
  let norm = 0;
  for (let i = 0; i < reference.length; i++) {
    const d = y[i] - reference[i];
    diff += d * d;
    ref += reference[i] * reference[i];
    dot += y[i] * reference[i];
    norm += y[i] * y[i];
  }
  return {
    relativeError: ref > 0 ? Math.sqrt(diff / ref) : Math.sqrt(diff),
    cosine: norm > 0 && ref > 0 ? dot / Math.sqrt(norm * ref) : (norm === ref ? 1 : 0),
  };
}

/** Which traced activation is the input of each linear layer. */
export const LINEAR_INPUT: Record<LinearName, TracePoint> = {
  "self_attn.q_proj": "attn_in",
  "self_attn.k_proj": "attn_in",
  "self_attn.v_proj": "attn_in",
  "self_attn.o_proj": "o_in",
  "mlp.gate_proj": "mlp_in",
  "mlp.up_proj": "mlp_in",
  "mlp.down_proj": "down_in",
};

/** Runs one linear layer on the GPU over `rows` rows of `input`. */
export async function runLinear(
  gpu: Gpu,
  linear: Linear,
  input: Float32Array,
  rows: number,
): Promise<Float32Array> {
  const x = gpu.tensor({ label: "layer-error input", category: "scratch", data: input });
  const y = gpu.tensor({
    label: "layer-error output",
    category: "scratch",
    byteSize: rows * linear.outFeatures * 4,
  });
  try {
    const batch = new CommandBatch(gpu);
    linear.encode(batch, x, y, rows);
    batch.submit();
    return await gpu.readF32(y);
  } finally {
    x.destroy();
    y.destroy();
  }
}

/**
 * Every linear layer's output on a trace's own inputs, keyed `layer/linear`: the reference that
 * {@linkcode linearErrors} compares other formats with.
 *
 * @example
 * ```ts ignore
 * const trace = await fp16.trace(tokens);
 * const outputs = await linearOutputs(fp16, trace);
 * ```
 */
export async function linearOutputs(
  model: LlamaModel,
  trace: Trace,
): Promise<Map<string, Float32Array>> {
  const out = new Map<string, Float32Array>();
  for (let layer = 0; layer < model.config.numLayers; layer++) {
    for (const linear of LINEAR_NAMES) {
      const input = trace.layers[layer][LINEAR_INPUT[linear]];
      out.set(
        `${layer}/${linear}`,
        await runLinear(model.gpu, model.layers[layer].linears[linear], input, trace.tokens),
      );
    }
  }
  return out;
}

/**
 * Per-linear-layer error of `model` fed the reference's traced activations, against the
 * reference's outputs from {@linkcode linearOutputs}.
 *
 * @example
 * ```ts ignore
 * const errors = await linearErrors(nf4, trace, await linearOutputs(fp16, trace));
 * ```
 */
export async function linearErrors(
  model: LlamaModel,
  trace: Trace,
  referenceOutputs: Map<string, Float32Array>,
): Promise<LinearError[]> {
  const out: LinearError[] = [];
  for (let layer = 0; layer < model.config.numLayers; layer++) {
    for (const linear of LINEAR_NAMES) {
      const expected = referenceOutputs.get(`${layer}/${linear}`);
      if (!expected) throw new Error(`no reference output for layer ${layer} ${linear}`);
      const input = trace.layers[layer][LINEAR_INPUT[linear]];
      const got = await runLinear(
        model.gpu,
        model.layers[layer].linears[linear],
        input,
        trace.tokens,
      );
      out.push({ layer, linear, ...errorStats(got, expected) });
    }
  }
  return out;
}

/**
 * Drift of each block's output (the residual stream) between two traces of the same tokens.
 *
 * @example
 * ```ts ignore
 * const drift = blockErrors(await nf4.trace(tokens), await fp16.trace(tokens));
 * ```
 */
export function blockErrors(trace: Trace, reference: Trace): BlockError[] {
  return reference.layers.map((layer, i) => ({
    layer: i,
    ...errorStats(trace.layers[i].block_out, layer.block_out),
  }));
}
