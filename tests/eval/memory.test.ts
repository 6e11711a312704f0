/**
 * The memory estimator against the ledger on the bundled model, for every format (within 1%
 * as the issue asks; in practice it is exact), and against known figures for Llama-2-7B.
 */
import assert from "node:assert/strict";
import { requestGpu } from "../../lib/gpu/device.ts";
import { MEMORY_CATEGORIES } from "../../lib/gpu/ledger.ts";
import { estimateMemory } from "../../lib/eval/memory.ts";
import { LINEAR_NAMES, linearShapes, LlamaModel } from "../../lib/model/llama.ts";
import { loadLlamaConfig } from "../../lib/model/config.ts";
import { parameterCount, presetConfig } from "../../lib/model/presets.ts";
import { openCheckpoint } from "../../lib/model/checkpoint.ts";
import { packedBytesFor, QUANT_FORMATS } from "../../lib/quant/formats.ts";

const MODEL = new URL("../../models/sotu-llama", import.meta.url).pathname;

const within = (actual: number, expected: number, rel: number, what: string) =>
  assert.ok(
    Math.abs(actual - expected) <= rel * Math.max(1, Math.abs(expected)),
    `${what}: ${actual} vs ${expected} (±${rel * 100}%)`,
  );

Deno.test("estimator equals the ledger on the bundled model, for every format", async () => {
  const gpu = await requestGpu();
  const config = await loadLlamaConfig(MODEL);
  try {
    for (const format of QUANT_FORMATS) {
      // Small chunks keep this test quick on a software adapter; the estimator takes the same.
      const model = await LlamaModel.load(MODEL, { gpu, format, maxSeqLen: 512, chunkSize: 32 });
      try {
        const estimate = estimateMemory(config, {
          format,
          contextLength: 512,
          chunkSize: 32,
          workload: "score",
        });
        const ledger = gpu.ledger.snapshot();
        for (const category of MEMORY_CATEGORIES) {
          within(
            ledger.byCategory[category],
            estimate.afterLoad[category],
            0.01,
            `${format} ${category}`,
          );
        }
        within(ledger.currentBytes, estimate.staticBytes, 0.01, `${format} after load`);

        // The ledger's bytes of the linear layers match the format's bits-per-parameter
        // accounting (lib/quant) within 1%.
        let linearBytes = 0;
        for (const layer of model.layers) {
          for (const l of Object.values(layer.linears)) linearBytes += l.weightBytes;
        }
        const shapes = linearShapes(config);
        const accounted = LINEAR_NAMES.reduce(
          (sum, name) => sum + config.numLayers * packedBytesFor(format, ...shapes[name]),
          0,
        );
        within(linearBytes, accounted, 0.01, `${format} linear weight bytes`);

        // Scoring a full chunk reads its logits back: the peak the estimator predicts.
        gpu.ledger.resetPeak();
        await model.forward(Array.from({ length: 32 }, (_, i) => i), "all");
        within(gpu.ledger.peakBytes, estimate.peakBytes, 0.01, `${format} peak`);
      } finally {
        model.dispose();
      }
    }
    assert.equal(gpu.ledger.currentBytes, 0);
  } finally {
    gpu.destroy();
  }
});

Deno.test("estimator: Llama-2-7B and Llama-3-8B weights as published", () => {
  const GiB = 2 ** 30;
  const l2 = presetConfig("llama-2-7b");
  const fp16 = estimateMemory(l2, { format: "fp16", contextLength: 4096 });
  // 6.74e9 parameters × 2 bytes = 12.55 GiB, the figure bitsandbytes users report for FP16.
  within(fp16.afterLoad.weights / GiB, 12.55, 0.005, "llama-2-7b fp16 weights (GiB)");
  // KV cache: 2 × 32 layers × 4096 positions × 4096 × 2 bytes = 2 GiB.
  assert.equal(fp16.afterLoad["kv-cache"], 2 * GiB);
  const nf4dq = estimateMemory(l2, { format: "nf4-dq" });
  within(nf4dq.linearBitsPerParameter, 4.127, 0.001, "nf4-dq bits per parameter");
  const nf4 = estimateMemory(l2, { format: "nf4" });
  assert.equal(nf4.linearBitsPerParameter, 4.5);
  const l3 = estimateMemory(presetConfig("llama-3-8b"), { format: "nf4-dq", contextLength: 8192 });
  // GQA: 8 KV heads of 128 → 2 × 32 × 8192 × 1024 × 2 bytes = 1 GiB.
  assert.equal(l3.afterLoad["kv-cache"], GiB);
  assert.ok(l3.peakBytes < 8e9, "Llama-3-8B NF4 fits an 8 GB card");
});

// The families' extras (biases, q/k norms) and Phi-3's fused tensors split at load: the
// estimator still equals the ledger, and the parameter count equals the checkpoint's.
Deno.test("estimator equals the ledger for every model family (fp16 and nf4)", async () => {
  const gpu = await requestGpu();
  try {
    for (const family of ["mistral", "qwen2", "qwen3", "phi3"]) {
      const dir = new URL(`../fixtures/families/${family}`, import.meta.url).pathname;
      const config = await loadLlamaConfig(dir);
      using ckpt = await openCheckpoint(dir);
      const stored = ckpt.names().reduce(
        (sum, name) => sum + ckpt.info(name).shape.reduce((a, b) => a * b, 1),
        0,
      );
      assert.equal(parameterCount(config), stored, `${family} parameters`);
      for (const format of ["fp16", "nf4"] as const) {
        const model = await LlamaModel.fromCheckpoint(config, ckpt, {
          gpu,
          format,
          maxSeqLen: 64,
          chunkSize: 16,
        });
        try {
          const estimate = estimateMemory(config, { format, contextLength: 64, chunkSize: 16 });
          const ledger = gpu.ledger.snapshot();
          for (const category of MEMORY_CATEGORIES) {
            assert.equal(
              ledger.byCategory[category],
              estimate.afterLoad[category],
              `${family} ${format} ${category}`,
            );
          }
        } finally {
          model.dispose();
        }
      }
    }
    assert.equal(gpu.ledger.currentBytes, 0);
  } finally {
    gpu.destroy();
  }
});

Deno.test("estimator equals the ledger exactly for every KV cache format (and with NF4 weights)", async () => {
  const gpu = await requestGpu();
  const config = await loadLlamaConfig(MODEL);
  try {
    for (
      const [format, kvCache] of [["fp16", "int8"], ["fp16", "int4"], [
        "nf4",
        "int4-plain",
      ]] as const
    ) {
      const model = await LlamaModel.load(MODEL, {
        gpu,
        format,
        kvCache,
        maxSeqLen: 384,
        chunkSize: 16,
      });
      try {
        const estimate = estimateMemory(config, {
          format,
          kvCacheFormat: kvCache,
          contextLength: 384,
          chunkSize: 16,
        });
        const ledger = gpu.ledger.snapshot();
        for (const category of MEMORY_CATEGORIES) {
          assert.equal(
            ledger.byCategory[category],
            estimate.afterLoad[category],
            `${format} + ${kvCache} KV: ${category}`,
          );
        }
      } finally {
        model.dispose();
      }
    }
    assert.equal(gpu.ledger.currentBytes, 0);
  } finally {
    gpu.destroy();
  }
  // Llama-2-7B at 16k positions: 8 GiB in f16; 8.5 and 5 bits per value quantized.
  const GiB = 2 ** 30;
  const l2 = presetConfig("llama-2-7b");
  const kv = (kvCacheFormat: "f16" | "int8" | "int4") =>
    estimateMemory(l2, { contextLength: 16384, kvCacheFormat }).afterLoad["kv-cache"];
  assert.equal(kv("f16"), 8 * GiB);
  assert.equal(kv("int8"), 8 * GiB * 8.5 / 16);
  assert.equal(kv("int4"), 8 * GiB * 5 / 16);
});
