/**
 * A lost device gives a clear error naming what was asked and what was running, and the model
 * and the ledger refuse further use instead of waiting on a device that is gone.
 */
import assert from "node:assert/strict";
import { Gpu, GpuLostError, requestGpu } from "../../lib/gpu/device.ts";
import { LlamaModel } from "../../lib/model/llama.ts";
import { writeRandomLlama } from "../helpers/random_llama.ts";

/** A Gpu on a real device whose `lost` promise the test settles (a driver reset, say). */
async function gpuWithFakeLoss(): Promise<{ gpu: Gpu; lose: (message: string) => void }> {
  const real = await requestGpu();
  let lose!: (info: GPUDeviceLostInfo) => void;
  const lost = new Promise<GPUDeviceLostInfo>((resolve) => (lose = resolve));
  const device = new Proxy(real.device, {
    get(target, key) {
      if (key === "lost") return lost;
      const value = Reflect.get(target, key, target);
      return typeof value === "function" ? value.bind(target) : value;
    },
  });
  const gpu = new Gpu(device, real.adapterInfo);
  return {
    gpu,
    lose: (message) => lose({ reason: undefined, message } as unknown as GPUDeviceLostInfo),
  };
}

async function tinyModelDir(): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: "qlab-lost-" });
  await writeRandomLlama(dir, { layers: 1, hidden: 32, heads: 2, kvHeads: 1, intermediate: 64 });
  return dir;
}

Deno.test("device loss mid-decode: a clear error, then the model and ledger refuse", async () => {
  const dir = await tinyModelDir();
  const { gpu, lose } = await gpuWithFakeLoss();
  try {
    const model = await LlamaModel.load(dir, { gpu, maxSeqLen: 32 });
    assert.deepEqual((await model.forward([0, 5])).length, 300);
    model.reset();
    const error = await model.decodeGreedy([0, 5], {
      maxNewTokens: 8,
      onToken: (_t, i) => {
        if (i === 1) lose("simulated driver reset");
      },
    }).then(() => null, (e) => e);
    assert.ok(error instanceof GpuLostError, `a GpuLostError, got ${error}`);
    assert.match(error.message, /the GPU device was lost \(unknown: simulated driver reset\)/);
    assert.match(error.message, /last work started: decodeGreedy of 2 tokens at position 0/);
    assert.match(error.message, /request a new Gpu and load the model again/);
    // Everything after refuses at once.
    await assert.rejects(model.forward([1]), /^GpuLostError: forward \(fp16 model\): the GPU/);
    await assert.rejects(model.forwardGreedy([1]), /forwardGreedy \(fp16 model\): the GPU/);
    assert.throws(
      () => gpu.tensor({ label: "more", category: "scratch", byteSize: 16 }),
      /tensor more: the GPU device was lost/,
    );
    assert.throws(
      () => gpu.ledger.record("weights", "w", 4),
      /memory ledger: cannot allocate w: the GPU device was lost/,
    );
    // A wait that would never settle is cut short.
    await assert.rejects(gpu.whileAlive(new Promise(() => {}), "waiting"), /waiting: the GPU/);
    await assert.rejects(gpu.sync(), GpuLostError);
    // Disposing still works and the ledger reads zero.
    model.dispose();
    assert.equal(gpu.ledger.currentBytes, 0);
  } finally {
    gpu.device.destroy();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a destroyed device: forward and loads refuse with the reason, nothing hangs", async () => {
  const dir = await tinyModelDir();
  const gpu = await requestGpu();
  try {
    const model = await LlamaModel.load(dir, { gpu, maxSeqLen: 32 });
    gpu.destroy();
    await gpu.device.lost;
    await assert.rejects(
      model.forward([0, 5]),
      /forward \(fp16 model\): the GPU device was destroyed \(Gpu\.destroy\)/,
    );
    await assert.rejects(LlamaModel.load(dir, { gpu }), /the GPU device was destroyed/);
    model.dispose();
    assert.equal(gpu.ledger.currentBytes, 0);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
