/**
 * Shortcuts the forward pass takes that must not change a single bit of the logits, in a
 * prefill and in decode steps:
 * - the model passes `reuseInput` to k_proj, v_proj and up_proj, so the int8 formats quantize
 *   each layer input once; against the same layers ignoring the option (every product quantizes
 *   x itself);
 * - FP16 q/k/v and gate/up stacked in one tensor each, one dispatch per group in decode; against
 *   the same model loaded without stacking;
 * - 4-bit down_proj reading silu(gate) · up itself in decode (f16 arithmetic), against the same
 *   layers with the SwiGLU dispatch.
 */
import { deepStrictEqual as assertEquals } from "node:assert/strict";
import { requestGpu } from "../../lib/gpu/device.ts";
import type { Linear } from "../../lib/kernels/linear.ts";
import { quantLinearFactory } from "../../lib/kernels/quant_linear.ts";
import { type LinearFactory, LlamaModel } from "../../lib/model/llama.ts";
import { writeRandomLlama } from "../helpers/random_llama.ts";
import { hasF16 } from "../kernels/_gpu.ts";

/** The format's layers, with `options` (reuseInput) dropped on the way in. */
function ignoringReuse(format: "int8-vectorwise" | "int8-absmax" | "llm-int8"): LinearFactory {
  const inner = quantLinearFactory(format, { threshold: 1.5 });
  return async (gpu, request) => {
    const lin = await inner(gpu, request);
    const wrapped: Linear = {
      format: lin.format,
      inFeatures: lin.inFeatures,
      outFeatures: lin.outFeatures,
      weightBytes: lin.weightBytes,
      encode: (batch, x, y, rows) => lin.encode(batch, x, y, rows),
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
          return { prefill, steps };
        } finally {
          model.dispose();
        }
      };
      const reusing = await run(quantLinearFactory(format, { threshold: 1.5 }));
      const fresh = await run(ignoringReuse(format));
      assertEquals(reusing.prefill, fresh.prefill, `${format}: prefill logits`);
      assertEquals(reusing.steps, fresh.steps, `${format}: decode logits`);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
    gpu.destroy();
  }
});

Deno.test("stacked FP16 q/k/v and gate/up give the logits of separate layers", async () => {
  const gpu = await requestGpu();
  const dir = await Deno.makeTempDir();
  try {
    // hidden 128 and 64-wide k/v rows keep every stacked layer on the 256-byte alignment
    await writeRandomLlama(dir, { seed: 9, hidden: 128, heads: 4, kvHeads: 2, intermediate: 192 });
    const run = async (stackLayers: boolean) => {
      const model = await LlamaModel.load(dir, { gpu, maxSeqLen: 32, stackLayers });
      try {
        const stacked = model.layers.every((l) => l.stacks?.qkv && l.stacks.gateUp);
        const prefill = await model.forward([3, 17, 5, 29, 11, 2], "all");
        const steps = [];
        for (const t of [7, 13, 19]) steps.push(await model.forward([t]));
        return { stacked, prefill, steps };
      } finally {
        model.dispose();
      }
    };
    const on = await run(true);
    const off = await run(false);
    assertEquals([on.stacked, off.stacked], [true, false], "stacking as asked");
    assertEquals(on.prefill, off.prefill, "prefill logits");
    assertEquals(on.steps, off.steps, "decode logits");
    gpu.trimScratch();
    assertEquals(gpu.ledger.currentBytes, 0, "dispose frees the stacks");
  } finally {
    await Deno.remove(dir, { recursive: true });
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
