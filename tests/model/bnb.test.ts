/**
 * bitsandbytes checkpoints (tests/fixtures/bnb: NF4, NF4 + double quantization, FP4 and
 * LLM.int8() of the bundled model, written by bitsandbytes 0.50 + transformers 5.17 on a CUDA
 * GPU and rebuilt here byte for byte, see tests/helpers/bnb_fixture.ts).
 *
 * - Dequantization: our dequantization of the file's layer-0 weights, rounded to f16, equals
 *   bitsandbytes' own (`dequantize_4bit`, or int8 · SCB / 127) bit for bit (SHA-256).
 * - Logits on bitsandbytes' 64 token ids: argmax agrees with `logits_bnb` on ≥ 62 of 64
 *   positions, and |Δ logit| ≤ 0.05 at the 16 stored positions (4-bit; measured 0.011-0.015,
 *   against 1.3 between bitsandbytes' NF4 and FP16 logits). bitsandbytes computes in f16 with
 *   cuBLAS (f16 activations between layers), we keep f32 activations: that is the difference
 *   allowed for.
 * - LLM.int8(): bitsandbytes picks the outlier columns per call from the f16 activations of
 *   that call (|x| ≥ 6 in any row of the 64-token batch) and multiplies them with the
 *   int8-dequantized weights, adding them in f16; we pick them per chunk (here: the same 64
 *   tokens) from f32 activations. The larger difference is the activation codes themselves:
 *   bitsandbytes rounds `x · 127 / absmax` from f16 activations, we from f32 ones, so codes
 *   near a rounding boundary differ by one, an independent draw of the activation rounding
 *   error, which is most of int8's error. So the bound is the size of int8's own error:
 *   bitsandbytes' int8 logits are within max 0.219, mean 0.034 of its FP16 logits at these
 *   positions; we allow max |Δ logit| ≤ 0.3 and mean ≤ 0.05 (measured 0.20-0.25 and 0.03),
 *   argmax ≥ 62 of 64.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { requestGpu } from "../../lib/gpu/device.ts";
import { f32ToF16Bits } from "../../lib/gpu/f16.ts";
import { BnbWeights, parseBnbQuantizationConfig } from "../../lib/model/bnb.ts";
import { type Checkpoint, openCheckpoint } from "../../lib/model/checkpoint.ts";
import { fp16Linear, LlamaModel } from "../../lib/model/llama.ts";
import { quantizeCheckpoint } from "../../lib/model/quantize_checkpoint.ts";
import { type QuantLinear, quantLinearFactory } from "../../lib/kernels/quant_linear.ts";
import { openSafetensors } from "../../lib/model/safetensors.ts";
import { argmax } from "../../lib/model/sampling.ts";
import { dequantize } from "../../lib/quant/formats.ts";
import {
  BNB_FIXTURES,
  type BnbFixture,
  type BnbManifest,
  rebuildBnbFixture,
  sha256,
} from "../helpers/bnb_fixture.ts";

const hasF16 = (await navigator.gpu.requestAdapter())?.features.has("shader-f16") ?? false;
const FIXTURES: BnbFixture[] = ["nf4", "nf4-dq", "fp4", "int8"];
const MODEL = new URL("../../models/sotu-llama", import.meta.url).pathname;

// Each fixture is rebuilt once per run, into a directory removed when the tests end.
const built = new Map<BnbFixture, Promise<{ dir: string; manifest: BnbManifest }>>();
const dirs: string[] = [];
function fixtureDir(fixture: BnbFixture): Promise<{ dir: string; manifest: BnbManifest }> {
  let p = built.get(fixture);
  if (!p) {
    p = (async () => {
      const dir = await Deno.makeTempDir();
      dirs.push(dir);
      return { dir, manifest: await rebuildBnbFixture(fixture, dir) };
    })();
    built.set(fixture, p);
  }
  return p;
}
globalThis.addEventListener("unload", () => {
  for (const d of dirs) Deno.removeSync(d, { recursive: true });
});

async function reference(fixture: BnbFixture) {
  using ref = await openSafetensors(join(BNB_FIXTURES, fixture, "reference.safetensors"));
  const ids = Array.from(
    new BigInt64Array((await ref.readRaw("input_ids")).slice().buffer),
    Number,
  );
  const rows = await ref.readF32("logits_bnb_every4");
  const argmaxBnb = new Int32Array((await ref.readRaw("argmax_bnb")).slice().buffer);
  return { ids, rows, argmaxBnb };
}

for (const fixture of FIXTURES) {
  Deno.test(`bnb ${fixture}: dequantization equals bitsandbytes' bit for bit (f16)`, async () => {
    {
      const { dir, manifest } = await fixtureDir(fixture);
      const raw = JSON.parse(await Deno.readTextFile(join(dir, "config.json")));
      using ckpt = await openCheckpoint(dir);
      const w = new BnbWeights(ckpt, parseBnbQuantizationConfig(raw.quantization_config));
      const names = Object.keys(manifest.dequant);
      assert.equal(names.length, 7);
      for (const name of names) {
        assert.ok(w.isQuantized(name), name);
        const q = await w.readQuantized(name);
        const f = dequantize(q);
        const bits = Uint16Array.from(f, (v) => f32ToF16Bits(v));
        assert.equal(await sha256(new Uint8Array(bits.buffer)), manifest.dequant[name], name);
      }
    }
  });

  for (const f16 of [false, true]) {
    Deno.test({
      name: `bnb ${fixture}: logits match bitsandbytes' (${f16 ? "f16" : "f32"} arithmetic)`,
      ignore: f16 && !hasF16,
      fn: async () => {
        const { dir } = await fixtureDir(fixture);
        const gpu = await requestGpu({ f16 });
        try {
          const { ids, rows, argmaxBnb } = await reference(fixture);
          const model = await LlamaModel.load(dir, { gpu, maxSeqLen: 128, quant: { f16 } });
          const format = { nf4: "nf4", "nf4-dq": "nf4-dq", fp4: "fp4", int8: "llm-int8" }[fixture];
          assert.equal(model.format, format);
          const vocab = model.config.vocabSize;
          const logits = await model.forward(ids, "all");
          model.dispose();
          let agree = 0;
          for (let p = 0; p < 64; p++) {
            if (argmax(logits.subarray(p * vocab, (p + 1) * vocab)) === argmaxBnb[p]) agree++;
          }
          let worst = 0;
          let sum = 0;
          for (let r = 0; r < 16; r++) {
            const p = 4 * r + 3;
            for (let v = 0; v < vocab; v++) {
              const d = Math.abs(logits[p * vocab + v] - rows[r * vocab + v]);
              worst = Math.max(worst, d);
              sum += d;
            }
          }
          const mean = sum / (16 * vocab);
          const bound = fixture === "int8" ? 0.3 : 0.05;
          assert.ok(agree >= 62, `argmax agrees on ${agree}/64 positions`);
          assert.ok(worst <= bound, `max |Δ logit| ${worst} > ${bound}`);
          assert.ok(mean <= (fixture === "int8" ? 0.05 : 0.005), `mean |Δ logit| ${mean}`);
          gpu.trimScratch();
          assert.deepEqual(gpu.ledger.entries(), []);
        } finally {
          gpu.destroy();
        }
      },
    });
  }
}

Deno.test("bnb nf4 checkpoint gives the same logits as quantizing the FP16 model at load", async () => {
  const { dir } = await fixtureDir("nf4");
  const gpu = await requestGpu({ f16: false });
  try {
    const { ids } = await reference("nf4");
    const a = await LlamaModel.load(dir, { gpu, maxSeqLen: 128 });
    const la = await a.forward(ids.slice(0, 16), "all");
    a.dispose();
    const b = await LlamaModel.load(MODEL, { gpu, maxSeqLen: 128, format: "nf4" });
    const lb = await b.forward(ids.slice(0, 16), "all");
    b.dispose();
    assert.deepEqual(la, lb);
  } finally {
    gpu.destroy();
  }
});

Deno.test("bnb: a checkpoint refuses another format, and bad configs are named", async () => {
  const { dir } = await fixtureDir("nf4");
  await assert.rejects(
    () => LlamaModel.load(dir, { format: "q8_0" }),
    /stored quantized as nf4; it cannot be loaded as q8_0/,
  );
  assert.throws(
    () =>
      parseBnbQuantizationConfig({
        quant_method: "bitsandbytes",
        load_in_4bit: true,
        bnb_4bit_quant_type: "int4",
      }),
    /bnb_4bit_quant_type "int4" is not nf4 or fp4/,
  );
  assert.throws(
    () => parseBnbQuantizationConfig({ quant_method: "bitsandbytes" }),
    /exactly one of load_in_4bit and load_in_8bit/,
  );
});

Deno.test("bnb: llm_int8_skip_modules stay FP16, the rest as stored (same logits as mixing at load)", async () => {
  const dir = await Deno.makeTempDir();
  const gpu = await requestGpu({ f16: false });
  try {
    await quantizeCheckpoint(MODEL, dir, "bnb-nf4", { skipModules: ["mlp.down_proj"] });
    const config = JSON.parse(await Deno.readTextFile(join(dir, "config.json")));
    assert.deepEqual(config.quantization_config.llm_int8_skip_modules, [
      "lm_head",
      "mlp.down_proj",
    ]);
    const { ids } = await reference("nf4");
    const a = await LlamaModel.load(dir, { gpu, maxSeqLen: 64 });
    assert.equal(a.layers[0].linears["mlp.down_proj"].format, "fp16");
    assert.equal(a.layers[0].linears["mlp.up_proj"].format, "nf4");
    const la = await a.forward(ids.slice(0, 12), "all");
    a.dispose();
    const nf4 = quantLinearFactory("nf4");
    const b = await LlamaModel.load(MODEL, {
      gpu,
      maxSeqLen: 64,
      linear: (g, r) => r.kind === "mlp.down_proj" ? fp16Linear(g, r) : nf4(g, r),
    });
    const lb = await b.forward(ids.slice(0, 12), "all");
    b.dispose();
    assert.deepEqual(la, lb);
  } finally {
    gpu.destroy();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("bnb: llm_int8_threshold and bnb_4bit_compute_dtype reach the layers", async () => {
  const { dir } = await fixtureDir("int8");
  const copy = await Deno.makeTempDir();
  const gpu = await requestGpu({ f16: false });
  try {
    for (const f of ["model.safetensors", "tokenizer.json", "tokenizer_config.json"]) {
      await Deno.copyFile(join(dir, f), join(copy, f));
    }
    const config = JSON.parse(await Deno.readTextFile(join(dir, "config.json")));
    config.quantization_config.llm_int8_threshold = 0;
    await Deno.writeTextFile(join(copy, "config.json"), JSON.stringify(config));
    const model = await LlamaModel.load(copy, { gpu, maxSeqLen: 64 });
    const q = model.layers[0].linears["self_attn.q_proj"] as QuantLinear;
    assert.equal(q.threshold, 0);
    model.dispose();
  } finally {
    gpu.destroy();
    await Deno.remove(copy, { recursive: true });
  }
  const four = (dtype: string) =>
    new BnbWeights(
      null as unknown as Checkpoint,
      parseBnbQuantizationConfig({
        quant_method: "bitsandbytes",
        load_in_4bit: true,
        bnb_4bit_quant_type: "nf4",
        bnb_4bit_compute_dtype: dtype,
      }),
    ).linearOptions;
  assert.equal(four("float32").f16, false);
  assert.equal(four("bfloat16").f16, false);
  assert.equal(four("float16").f16, undefined); // the device's choice
});
