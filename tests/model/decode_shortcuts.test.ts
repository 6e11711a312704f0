/**
 * Shortcuts the forward pass takes that must not change a single bit of the logits, in a
 * prefill and in decode steps:
 * - the model passes `reuseInput` to k_proj, v_proj and up_proj, so the int8 formats quantize
 *   each layer input once, and in decode int8-vectorwise and int8-absmax take the codes of
 *   q/k/v's and gate/up's input from the add + RMSNorm dispatch (`Linear.int8Input`); against
 *   the same layers ignoring the option (every product quantizes x itself);
 * - FP16 q/k/v and gate/up stacked in one tensor each, one dispatch per group in decode; against
 *   the same model loaded without stacking; likewise the quantized formats that stack (nf4, nf4-dq,
 *   int8-vectorwise, llm-int8: on the software adapters the stacked GEMV has the layers' launch
 *   shape, so each output is computed exactly as its layer alone computes it);
 * - 4-bit down_proj reading silu(gate) · up itself in decode (f16 arithmetic), against the same
 *   layers with the SwiGLU dispatch;
 * - an FP16 gate/up stack writing silu(gate) · up in its epilogue in decode, against the same
 *   stack with the SwiGLU dispatch.
 *
 * And one that changes only rounding: 4-bit decode steps without norm dispatches (o_proj and
 * down_proj adding into the residual stream, the q/k/v and gate/up stacks computing the norm as
 * they read x), against the same layers with them.
 */
import { deepStrictEqual as assertEquals } from "node:assert/strict";
import { requestGpu } from "../../lib/gpu/device.ts";
import type { Linear } from "../../lib/kernels/linear.ts";
import { quantLinearFactory, QuantLinearStack } from "../../lib/kernels/quant_linear.ts";
import { type LinearFactory, LlamaModel } from "../../lib/model/llama.ts";
import { writeRandomLlama } from "../helpers/random_llama.ts";
import { hasF16 } from "../kernels/_gpu.ts";
import { maxAbsDiff } from "../helpers/random.ts";

/** The format's layers, with `reuseInput` dropped on the way in (`perRow` kept). */
function ignoringReuse(format: "int8-vectorwise" | "int8-absmax" | "llm-int8"): LinearFactory {
  const inner = quantLinearFactory(format, { threshold: 1.5 });
  return async (gpu, request) => {
    const lin = await inner(gpu, request);
    const wrapped: Linear = {
      format: lin.format,
      inFeatures: lin.inFeatures,
      outFeatures: lin.outFeatures,
      weightBytes: lin.weightBytes,
      encode: (batch, x, y, rows, options) =>
        lin.encode(batch, x, y, rows, options?.perRow ? { perRow: true } : undefined),
      takesRows: (rows) => lin.takesRows?.(rows) ?? false,
      quantizesRowsTogether: lin.quantizesRowsTogether,
      destroy: () => lin.destroy(),
    };
    return wrapped;
  };
}

Deno.test("int8 layers reusing a quantized input give the logits of quantizing it again", async () => {
  const gpu = await requestGpu();
  const dir = await Deno.makeTempDir();
  try {
    await writeRandomLlama(dir, { seed: 7 });
    const tokens = [3, 17, 5, 29, 11, 2];
    for (const format of ["int8-vectorwise", "int8-absmax", "llm-int8"] as const) {
      const run = async (linear: LinearFactory) => {
        const model = await LlamaModel.load(dir, { gpu, maxSeqLen: 32, linear });
        try {
          const prefill = await model.forward(tokens, "all");
          const steps = [];
          for (const t of [7, 13, 19]) steps.push(await model.forward([t]));
          // a verify pass: its rows each quantized alone
          const at = model.position;
          const verified = await model.verify([3, 5, 8], "logits");
          model.rollback(at);
          // activation quantizations in one decode step and one verify pass (kernel names need
          // timestamps)
          const count = async (tokens: number[], verify: boolean, kernel: RegExp) => {
            model.rollback(at);
            const names = (await model.timeForward(tokens, { verify })).map((d) => d.kernel);
            return names.filter((k) => kernel.test(k)).length;
          };
          const quantize = /quantize_rows?[:[]|quantize_rows?$/;
          const quantized = await count([23], false, quantize);
          const quantizedRows = await count([23, 29, 31], true, quantize);
          const swiglus = await count([23, 29, 31], true, /^elementwise:swiglu/);
          return {
            prefill,
            steps,
            verified,
            quantized,
            quantizedRows,
            swiglus,
            layers: model.layers.length,
            timed: gpu.timestamps,
          };
        } finally {
          model.dispose();
        }
      };
      const reusing = await run(quantLinearFactory(format, { threshold: 1.5 }));
      const fresh = await run(ignoringReuse(format));
      assertEquals(reusing.prefill, fresh.prefill, `${format}: prefill logits`);
      assertEquals(reusing.steps, fresh.steps, `${format}: decode logits`);
      assertEquals(reusing.verified, fresh.verified, `${format}: verify logits`);
      if (reusing.timed) {
        const l = reusing.layers;
        // alone: every product; reusing, per layer: q/k/v's input, o_proj's, gate/up's and
        // down_proj's; fused into the norm (int8-vectorwise, int8-absmax): q/k/v's after the
        // first layer and every gate/up's, in a decode step and in a verify pass
        assertEquals(fresh.quantized, 7 * l, `${format}: quantizations per step, alone`);
        assertEquals(fresh.quantizedRows, 7 * l, `${format}: quantizations per verify, alone`);
        const fused = format === "llm-int8" ? 0 : 2 * l - 1;
        assertEquals(reusing.quantized, 4 * l - fused, `${format}: quantizations per step`);
        assertEquals(reusing.quantizedRows, 4 * l - fused, `${format}: quantizations per verify`);
        // down_proj's quantization reads silu(gate) · up itself (not LLM.int8())
        assertEquals(fresh.swiglus, l, `${format}: SwiGLU dispatches per verify, alone`);
        assertEquals(
          reusing.swiglus,
          format === "llm-int8" ? l : 0,
          `${format}: SwiGLU dispatches`,
        );
      }
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
    gpu.destroy();
  }
});

Deno.test("stacked q/k/v and gate/up give the logits of separate layers", async () => {
  const gpu = await requestGpu();
  const small = await Deno.makeTempDir();
  const wide = await Deno.makeTempDir();
  try {
    // hidden 128 and 64-wide k/v rows keep every stacked layer on the 256-byte alignment;
    // nf4-dq stacks whole groups of 256 blocks (16384 weights) per layer: hidden and MLP 256
    await writeRandomLlama(small, {
      seed: 9,
      hidden: 128,
      heads: 4,
      kvHeads: 2,
      intermediate: 192,
    });
    await writeRandomLlama(wide, { seed: 9, hidden: 256, heads: 4, kvHeads: 2, intermediate: 256 });
    for (
      const format of ["fp16", "nf4", "nf4-dq", "q8_0", "int8-vectorwise", "llm-int8"] as const
    ) {
      const dir = format === "nf4-dq" ? wide : small;
      const run = async (stackLayers: boolean) => {
        const model = await LlamaModel.load(dir, {
          gpu,
          maxSeqLen: 32,
          stackLayers,
          format,
          quant: { threshold: 1.5 },
        });
        try {
          const stacked = model.layers.every((l) => l.stacks?.qkv && l.stacks.gateUp);
          // the same weights, but copies a quantized stack keeps (nf4-dq's per-layer offsets)
          const copied = model.layers.flatMap((l) => [l.stacks?.qkv, l.stacks?.gateUp])
            .reduce((sum, st) => sum + (st instanceof QuantLinearStack ? st.copiedBytes : 0), 0);
          const weights = gpu.ledger.bytesIn("weights") - copied;
          const prefill = await model.forward([3, 17, 5, 29, 11, 2], "all");
          const steps = [];
          for (const t of [7, 13, 19]) steps.push(await model.forward([t]));
          return { stacked, weights, prefill, steps };
        } finally {
          model.dispose();
        }
      };
      const on = await run(true);
      const off = await run(false);
      assertEquals([on.stacked, off.stacked], [true, false], `${format}: stacking as asked`);
      assertEquals(on.weights, off.weights, `${format}: the same weight memory`);
      assertEquals(on.prefill, off.prefill, `${format}: prefill logits`);
      assertEquals(on.steps, off.steps, `${format}: decode logits`);
      gpu.trimScratch();
      assertEquals(gpu.ledger.currentBytes, 0, `${format}: dispose frees the stacks`);
    }
  } finally {
    await Deno.remove(small, { recursive: true });
    await Deno.remove(wide, { recursive: true });
    gpu.destroy();
  }
});

Deno.test({
  name: "4-bit down_proj with SwiGLU folded in gives the logits of a separate SwiGLU dispatch",
  ignore: !hasF16,
  fn: async () => {
    const gpu = await requestGpu({ f16: true });
    const dir = await Deno.makeTempDir();
    try {
      // K of every product a multiple of 32 (the fused GEMV's case)
      await writeRandomLlama(dir, {
        seed: 11,
        hidden: 128,
        heads: 4,
        kvHeads: 2,
        intermediate: 192,
      });
      const run = async (fuse: boolean) => {
        const linear = quantLinearFactory("nf4", { f16: true, tuning: { gemvFuseSwiglu: fuse } });
        const model = await LlamaModel.load(dir, { gpu, maxSeqLen: 32, linear });
        try {
          const fused = model.layers.every((l) => l.linears["mlp.down_proj"].fusesSwiglu?.(1));
          const prefill = await model.forward([3, 17, 5, 29, 11, 2], "all");
          const steps = [];
          for (const t of [7, 13, 19]) steps.push(await model.forward([t]));
          return { fused, prefill, steps };
        } finally {
          model.dispose();
        }
      };
      const on = await run(true);
      const off = await run(false);
      assertEquals([on.fused, off.fused], [true, false], "fusion as asked");
      assertEquals(on.prefill, off.prefill, "prefill logits (no fusion for several rows)");
      assertEquals(on.steps, off.steps, "decode logits");
    } finally {
      await Deno.remove(dir, { recursive: true });
      gpu.destroy();
    }
  },
});

Deno.test({
  name:
    "4-bit and Q8_0 decode with the norms folded into the products gives the logits within rounding",
  ignore: !hasF16,
  fn: async () => {
    const gpu = await requestGpu({ f16: true });
    const dir = await Deno.makeTempDir();
    try {
      // K of every product a multiple of 32 (the f16 GEMV's case); k_proj's 256 × 128 weights are
      // whole groups of 256 blocks, so that nf4-dq stacks too
      await writeRandomLlama(dir, {
        seed: 12,
        hidden: 256,
        heads: 4,
        kvHeads: 2,
        intermediate: 192,
      });
      for (const format of ["nf4", "nf4-dq", "q8_0"] as const) {
        const run = async (fold: boolean) => {
          const linear = quantLinearFactory(format, { f16: true, tuning: { gemvFoldNorm: fold } });
          const model = await LlamaModel.load(dir, { gpu, maxSeqLen: 32, linear });
          try {
            const prefill = await model.forward([3, 17, 5, 29, 11, 2], "all");
            const steps = [];
            for (const t of [7, 13, 19]) steps.push(await model.forward([t]));
            const names = (await model.timeForward([23])).map((d) => d.kernel);
            return { prefill, steps, names, layers: model.layers.length };
          } finally {
            model.dispose();
          }
        };
        const on = await run(true);
        const off = await run(false);
        assertEquals(
          on.prefill,
          off.prefill,
          `${format}: prefill logits (no fold for several rows)`,
        );
        // The residual adds are the same f32 additions; only 1/rms is summed in another order
        // before x is rounded to f16, so logits move by f16 roundings of the products' inputs.
        for (const [i, step] of on.steps.entries()) {
          const scale = Math.max(...off.steps[i].map(Math.abs));
          const d = maxAbsDiff(step, off.steps[i]);
          if (!(d <= 1e-2 * scale)) {
            throw new Error(`${format} step ${i}: logits differ by ${d} (scale ${scale})`);
          }
        }
        const norms = (n: string[]) => n.filter((k) => k.includes("rmsnorm")).length;
        // off: two add+RMSNorm a layer and the final norm; on: the final norm only
        assertEquals([norms(on.names), norms(off.names)], [1, 2 * on.layers + 1], format);
        assertEquals(off.names.length - on.names.length, 2 * on.layers, `${format}: dispatches`);
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
      gpu.destroy();
    }
  },
});

Deno.test("FP16 gate/up writing SwiGLU in its epilogue gives the logits of a SwiGLU dispatch (decode, verify)", async () => {
  const gpu = await requestGpu();
  const dir = await Deno.makeTempDir();
  try {
    // gate and up each start on the binding alignment, so they stack
    await writeRandomLlama(dir, { seed: 13, hidden: 64, heads: 4, kvHeads: 2, intermediate: 128 });
    const run = async (stackSwiglu: boolean) => {
      const model = await LlamaModel.load(dir, { gpu, maxSeqLen: 32, stackSwiglu });
      try {
        const fused = model.layers.every((l) => l.stacks?.gateUp?.fusesSwigluOut?.(1));
        const prefill = await model.forward([3, 17, 5, 29, 11, 2], "all");
        const steps = [];
        for (const t of [7, 13, 19]) steps.push(await model.forward([t]));
        const names = (await model.timeForward([23])).map((d) => d.kernel);
        // a verify pass (each row as its own decode step) over 5 tokens
        const verify = await model.verify([31, 37, 41, 43, 47], "logits");
        const verifyNames = (await model.timeForward([3, 5, 7], { verify: true })).map((d) =>
          d.kernel
        );
        return { fused, prefill, steps, names, verify, verifyNames, layers: model.layers.length };
      } finally {
        model.dispose();
      }
    };
    const on = await run(true);
    const off = await run(false);
    assertEquals([on.fused, off.fused], [true, false], "offered as asked");
    assertEquals(on.prefill, off.prefill, "prefill logits (several rows: the SwiGLU dispatch)");
    assertEquals(on.steps, off.steps, "decode logits");
    const swiglus = (n: string[]) => n.filter((k) => k.includes("swiglu")).length;
    assertEquals([swiglus(on.names), swiglus(off.names)], [0, on.layers], "SwiGLU dispatches");
    assertEquals(off.names.length - on.names.length, on.layers, "one dispatch fewer a layer");
    assertEquals(on.verify, off.verify, "verify logits");
    assertEquals(
      [swiglus(on.verifyNames), off.verifyNames.length - on.verifyNames.length],
      [0, on.layers],
      "verify pass: no SwiGLU dispatch",
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
    gpu.destroy();
  }
});
