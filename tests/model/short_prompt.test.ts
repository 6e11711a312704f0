/**
 * Short prompts run as passes of up to 8 rows through the multi-row products (each row as a
 * decode step computes it), not through the prefill GEMM, which pads them to a whole tile
 * (`LoadOptions.shortPromptTokens`). The bundled model, on whatever adapter runs the tests.
 */
import { deepStrictEqual as assertEquals, ok as assert, rejects } from "node:assert/strict";
import { CommandBatch } from "../../lib/gpu/batch.ts";
import { type Gpu, requestGpu } from "../../lib/gpu/device.ts";
import { quantLinearFactory } from "../../lib/kernels/quant_linear.ts";
import type { LoadOptions } from "../../lib/model/load.ts";
import { type LinearFactory, LlamaModel } from "../../lib/model/llama.ts";
import { argmax } from "../../lib/model/sampling.ts";
import { loadTokenizer } from "../../lib/model/tokenizer.ts";
import { kernelsOf } from "../helpers/dispatches.ts";
import type { QuantFormat } from "../../lib/quant/formats.ts";

const TARGET = new URL("../../models/sotu-llama", import.meta.url).pathname;

const gpu: Gpu = await requestGpu();
globalThis.addEventListener("unload", () => gpu.destroy());
const tokenizer = await loadTokenizer(TARGET);
// 12 tokens: a pass of 8 rows and one of 4
const prompt = tokenizer.encode("I ask the Congress to join me in pledging");

function load(format: QuantFormat, options: LoadOptions = {}): Promise<LlamaModel> {
  return LlamaModel.load(TARGET, { gpu, format, maxSeqLen: 64, chunkSize: 32, ...options });
}

// Each row as a decode step computes it: the prompt's logits are those of feeding its tokens
// one at a time, bit for bit (as the verify pass's are; on a GPU the 4-bit multi-row products
// round their f16 arithmetic otherwise than the one-row product, so there the argmaxes).
for (const format of ["fp16", "int8-vectorwise", "nf4"] as const) {
  Deno.test(`a short prompt's logits are its decode steps', without a GEMM (${format})`, async () => {
    // (software adapters' default limit is 8)
    const model = await load(format, { shortPromptTokens: 16 });
    try {
      assert(prompt.length > 8 && prompt.length <= 16, `prompt of ${prompt.length} tokens`);
      let all: Float32Array = new Float32Array();
      const kernels = await kernelsOf(async () => all = await model.forward(prompt, "all"));
      assertEquals(kernels.filter((k) => k.includes(":gemm")), [], "no prefill GEMM");
      assert(kernels.some((k) => k.includes("gemv_rows")), "multi-row products");
      const vocab = model.config.vocabSize;
      const exact = gpu.isSoftware || !format.startsWith("nf4");
      model.reset();
      for (let r = 0; r < prompt.length; r++) {
        const step = await model.forward([prompt[r]], "last");
        const row = all.subarray(r * vocab, (r + 1) * vocab);
        if (exact) assertEquals(row, step, `token ${r}`);
        else assertEquals(argmax(row), argmax(step), `token ${r}`);
      }
    } finally {
      model.dispose();
    }
  });
}

Deno.test("a prompt past shortPromptTokens, int8-absmax and LLM.int8() take the prefill GEMM", async () => {
  // the limit
  let model = await load("fp16", { shortPromptTokens: 8 });
  try {
    const long = await kernelsOf(() => model.forwardGreedy(prompt));
    assert(long.some((k) => k.includes(":gemm")), "12 tokens past a limit of 8: the GEMM");
    model.reset();
    const short = await kernelsOf(() => model.forwardGreedy(prompt.slice(0, 8)));
    assertEquals(short.filter((k) => k.includes(":gemm")), [], "8 tokens: no GEMM");
    // turned off: the GEMM, and the same greedy token within the GEMM's rounding
    const off = await load("fp16", { shortPromptTokens: 0 });
    try {
      model.reset();
      const viaRows = await model.forward(prompt, "last");
      model.reset();
      const viaRowsShort = await model.forward(prompt.slice(0, 8), "last");
      const gemm = await kernelsOf(async () => {
        const a = await off.forward(prompt.slice(0, 8), "last");
        assertEquals(argmax(a), argmax(viaRowsShort), "8 tokens: the same next token");
      });
      assert(gemm.some((k) => k.includes(":gemm")), "shortPromptTokens 0: the GEMM");
      off.reset();
      assertEquals(argmax(await off.forward(prompt, "last")), argmax(viaRows));
    } finally {
      off.dispose();
    }
  } finally {
    model.dispose();
  }
  // int8-absmax and LLM.int8() quantize a prompt's rows together (one absmax; outlier columns
  // chosen over all rows), as bitsandbytes does
  for (const format of ["int8-absmax", "llm-int8"] as const) {
    model = await load(format);
    try {
      const kernels = await kernelsOf(() => model.forwardGreedy(prompt.slice(0, 5)));
      assertEquals(kernels.filter((k) => k.includes("gemv_rows")), [], `${format}: no multi-row`);
    } finally {
      model.dispose();
    }
  }
});

Deno.test("a layer that quantizes rows together keeps any prompt whole, whatever its format's name", async () => {
  // int8-absmax's layers under a name of their own: what counts is what the layer says
  const inner = quantLinearFactory("int8-absmax");
  const linear: LinearFactory = async (g, request) => {
    const lin = await inner(g, request);
    return {
      format: "my-int8",
      inFeatures: lin.inFeatures,
      outFeatures: lin.outFeatures,
      weightBytes: lin.weightBytes,
      encode: (batch, x, y, rows, options) => lin.encode(batch, x, y, rows, options),
      takesRows: (rows) => lin.takesRows?.(rows) ?? false,
      quantizesRowsTogether: lin.quantizesRowsTogether,
      destroy: () => lin.destroy(),
    };
  };
  const model = await load("int8-absmax", { linear });
  try {
    const kernels = await kernelsOf(() => model.forwardGreedy(prompt.slice(0, 5)));
    assertEquals(kernels.filter((k) => k.includes("gemv_rows")), [], "no multi-row product");
    assert(kernels.some((k) => k.includes(":gemm")), "5 tokens: the GEMM");
  } finally {
    model.dispose();
  }
});

Deno.test("a layer without multi-row products keeps a short prompt to one pass", async () => {
  // layers that do not say they read their weights once for several rows
  const inner = quantLinearFactory("nf4");
  const linear: LinearFactory = async (g, request) => {
    const lin = await inner(g, request);
    return {
      format: lin.format,
      inFeatures: lin.inFeatures,
      outFeatures: lin.outFeatures,
      weightBytes: lin.weightBytes,
      encode: (batch, x, y, rows, options) => lin.encode(batch, x, y, rows, options),
      destroy: () => lin.destroy(),
    };
  };
  const model = await load("nf4", { linear, shortPromptTokens: 16 });
  try {
    const long = await kernelsOf(() => model.forwardGreedy(prompt));
    assert(long.some((k) => k.includes(":gemm")), "12 tokens: one chunk through the GEMM");
    model.reset();
    let passes = 0;
    const proto = CommandBatch.prototype;
    const submit = proto.submit;
    proto.submit = function (this: CommandBatch) {
      passes++;
      return submit.call(this);
    };
    try {
      await model.forwardGreedy(prompt.slice(0, 8));
    } finally {
      proto.submit = submit;
    }
    assertEquals(passes, 1, "8 tokens: one pass");
  } finally {
    model.dispose();
  }
});

Deno.test("shortPromptTokens: a bad value is refused before anything is loaded", async () => {
  const before = gpu.ledger.currentBytes;
  for (const bad of [-1, 2.5, NaN]) {
    await rejects(load("fp16", { shortPromptTokens: bad }), /shortPromptTokens must be/);
  }
  assertEquals(gpu.ledger.currentBytes, before);
});
