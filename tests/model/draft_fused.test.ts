/**
 * The fused draft (kernels/draft_fused.wgsl): its proposals against the CPU reference forward's
 * greedy tokens and against the layer-by-layer path, the KV cache it leaves, which models and
 * adapters it refuses and why, and speculative decoding with it on and off.
 */
import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { type Gpu, requestGpu } from "../../lib/gpu/device.ts";
import { fusedDraftThreads } from "../../lib/kernels/draft_fused.ts";
import { openCheckpoint } from "../../lib/model/checkpoint.ts";
import { loadLlamaConfig } from "../../lib/model/config.ts";
import { LlamaModel } from "../../lib/model/llama.ts";
import { loadReferenceWeights, ReferenceLlama } from "../../lib/model/reference.ts";
import { speculativeDecode } from "../../lib/model/speculative.ts";
import { f16ArrayToF32 } from "../../lib/gpu/f16.ts";
import { loadTokenizer } from "../../lib/model/tokenizer.ts";
import { writeRandomLlama } from "../helpers/random_llama.ts";

const TARGET = new URL("../../models/sotu-llama", import.meta.url).pathname;
const DRAFT = new URL("../../models/sotu-llama-draft", import.meta.url).pathname;
const MAX_SEQ = 96;

const gpu: Gpu = await requestGpu();
globalThis.addEventListener("unload", () => gpu.destroy());

/**
 * The CPU reference's greedy continuation of `prompt` for `count` tokens, cut where its top two
 * logits are within `margin` (a near tie f32 sums in another order may break the other way).
 */
async function referenceGreedy(
  dir: string,
  prompt: number[],
  count: number,
  margin = 1e-3,
): Promise<number[]> {
  const config = await loadLlamaConfig(dir);
  using ckpt = await openCheckpoint(dir);
  const ref = new ReferenceLlama(config, await loadReferenceWeights(ckpt, config), {
    maxSeqLen: MAX_SEQ,
  });
  const out: number[] = [];
  let logits = ref.forward(prompt, 0);
  let row = logits.subarray((prompt.length - 1) * config.vocabSize);
  for (let i = 0; i < count; i++) {
    const sorted = [...row.keys()].sort((a, b) => row[b] - row[a]);
    if (row[sorted[0]] - row[sorted[1]] < margin) break;
    out.push(sorted[0]);
    logits = ref.forward([sorted[0]], prompt.length + i);
    row = logits;
  }
  return out;
}

/** One chained proposal call after `prompt`, fused or not: the proposals and the KV caches. */
async function propose(
  model: LlamaModel,
  prompt: number[],
  count: number,
  fused: boolean,
): Promise<{ tokens: number[]; caches: Float32Array[] }> {
  model.reset();
  assertEquals(await model.fuseProposals(fused), null);
  assertEquals(model.proposalsFused, fused);
  const n = prompt.length;
  if (n > 2) await model.forward(prompt.slice(0, -2), "none");
  model.setGpuStart(n - 2);
  model.tokenInput.write(gpu.device, new Uint32Array([prompt[n - 2], prompt[n - 1]]));
  const into = gpu.tensor({ label: "proposals", category: "scratch", byteSize: (count + 1) * 4 });
  try {
    model.proposeChained(count, into, n - 2);
    const tokens = [...new Uint32Array(await gpu.read(into)).subarray(1)];
    // the positions the call wrote: the two rows, then count - 1 steps
    const c = model.config;
    const rowBytes = c.numKvHeads * c.headDim * 2;
    const caches: Float32Array[] = [];
    for (let l = 0; l < c.numLayers; l++) {
      const { key, value } = model.kvCacheTensors(l);
      for (const t of [key, value]) {
        const bytes = await gpu.read(t, (n - 2) * rowBytes, (count + 1) * rowBytes);
        caches.push(f16ArrayToF32(new Uint16Array(bytes)));
      }
    }
    return { tokens, caches };
  } finally {
    into.destroy();
  }
}

Deno.test("fused draft proposals = the CPU reference's greedy tokens = the layer-by-layer path's (bundled draft)", async () => {
  const model = await LlamaModel.load(DRAFT, { gpu, format: "fp16", maxSeqLen: MAX_SEQ });
  try {
    const tokenizer = await loadTokenizer(TARGET);
    for (const text of ["The state of the Union is", "We must", "Our economy"]) {
      const prompt = tokenizer.encode(text);
      const want = await referenceGreedy(DRAFT, prompt, 5);
      assert(want.length >= 3, `the reference has clear tokens for ${prompt}`);
      const layered = await propose(model, prompt, 5, false);
      const fused = await propose(model, prompt, 5, true);
      assertEquals(fused.tokens.slice(0, want.length), want, `fused, prompt ${prompt}`);
      assertEquals(layered.tokens.slice(0, want.length), want, `layer by layer, prompt ${prompt}`);
      // The keys and values written agree with the layer-by-layer path's to f16 rounding and the
      // f16 rounding of the products' inputs there (up to ~1e-3 of the largest).
      for (const [i, c] of fused.caches.entries()) {
        const ref = layered.caches[i];
        const scale = ref.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
        // only the positions both paths fed the same tokens
        const upTo = (want.length + 1) * (c.length / 6);
        for (let j = 0; j < upTo; j++) {
          assert(
            Math.abs(c[j] - ref[j]) <= 4e-3 * scale,
            `cache ${i} element ${j}: ${c[j]} against ${ref[j]} (scale ${scale})`,
          );
        }
      }
    }
  } finally {
    model.dispose();
  }
});

// The second shape leaves tails everywhere the kernel unrolls: K = 60 (loads go eight at a time),
// head_dim 20 (keys read eight words at a time), 550 pairs of LM-head rows (two pairs a thread,
// then one).
for (
  const shape of [
    { layers: 3, hidden: 64, heads: 4, kvHeads: 2, intermediate: 96 },
    { layers: 2, hidden: 60, heads: 3, kvHeads: 1, intermediate: 70, vocab: 1100 },
  ]
) {
  Deno.test(
    `fused draft proposals = the CPU reference's greedy tokens: untied head, grouped heads, ${
      JSON.stringify(shape)
    }`,
    async () => {
      const dir = await Deno.makeTempDir({ prefix: "qlab-fused-" });
      try {
        await writeRandomLlama(dir, shape);
        const model = await LlamaModel.load(dir, { gpu, format: "fp16", maxSeqLen: MAX_SEQ });
        try {
          const prompt = [0, 17, 42, 299, 5, 128, 77];
          const want = await referenceGreedy(dir, prompt, 6);
          assert(want.length >= 3, "the reference has clear tokens");
          const fused = await propose(model, prompt, 6, true);
          assertEquals(fused.tokens.slice(0, want.length), want);
        } finally {
          model.dispose();
        }
      } finally {
        await Deno.remove(dir, { recursive: true });
      }
    },
  );
}

Deno.test("fusedDraftThreads: the threads that fit, or the limit that does not", () => {
  const shape = {
    hidden: 128,
    heads: 2,
    kvHeads: 1,
    headDim: 64,
    ffn: 320,
    vocab: 4096,
    layers: 2,
    maxSeq: 512,
    eps: 1e-5,
  };
  const limits = {
    maxComputeWorkgroupStorageSize: 49152,
    maxStorageBuffersPerShaderStage: 8,
    maxComputeInvocationsPerWorkgroup: 1024,
    maxComputeWorkgroupSizeX: 1024,
  };
  assertEquals(fusedDraftThreads(shape, limits, false), 1024);
  assertEquals(fusedDraftThreads(shape, limits, true), 256);
  // 16 KiB: fewer threads (their reduction and partial-sum slots shrink)
  assertEquals(
    fusedDraftThreads(shape, { ...limits, maxComputeWorkgroupStorageSize: 16384 }, false),
    256,
  );
  const why = (s: Partial<typeof shape>, l: Partial<typeof limits> = {}) =>
    String(fusedDraftThreads({ ...shape, ...s }, { ...limits, ...l }, false));
  assert(/5 layers/.test(why({ layers: 5 })));
  assert(/odd vocab \(4095\)/.test(why({ vocab: 4095 })));
  assert(/10 storage bindings \(the adapter allows 8\)/.test(why({ layers: 3 })));
  assert(/workgroup memory.*4 heads × 4096 positions/.test(why({ heads: 4, maxSeq: 4096 })));
});

Deno.test("fuseProposals: which models it refuses and why; off again; the ledger returns to zero", async () => {
  const before = gpu.ledger.snapshot().byCategory;
  const nf4 = await LlamaModel.load(DRAFT, { gpu, format: "nf4", maxSeqLen: MAX_SEQ });
  assert(/nf4 weights/.test(String(await nf4.fuseProposals())));
  assertEquals(nf4.proposalsFused, false);
  nf4.dispose();
  const int8Kv = await LlamaModel.load(DRAFT, { gpu, maxSeqLen: MAX_SEQ, kvCache: "int8" });
  assert(/int8 KV cache/.test(String(await int8Kv.fuseProposals())));
  int8Kv.dispose();
  const model = await LlamaModel.load(DRAFT, { gpu, format: "fp16", maxSeqLen: MAX_SEQ });
  const weights = gpu.ledger.snapshot().byCategory.weights;
  assertEquals(await model.fuseProposals(), null);
  assert(gpu.ledger.snapshot().byCategory.weights > weights, "the packed copy is counted");
  assertEquals(await model.fuseProposals(false), null);
  assertEquals(gpu.ledger.snapshot().byCategory.weights, weights);
  assertEquals(await model.fuseProposals(), null);
  model.dispose();
  assertEquals(gpu.ledger.snapshot().byCategory, before);
});

Deno.test("speculative greedy with the fused draft = without it = the target's greedy", async () => {
  const target = await LlamaModel.load(TARGET, { gpu, format: "fp16", maxSeqLen: MAX_SEQ });
  const draft = await LlamaModel.load(DRAFT, { gpu, format: "fp16", maxSeqLen: MAX_SEQ });
  try {
    const prompt = (await loadTokenizer(TARGET)).encode("The state of the Union is");
    const want = (await target.decodeGreedy(prompt, { maxNewTokens: 24 })).tokens;
    for (const fuseDraft of [true, false]) {
      const run = await speculativeDecode(target, draft, prompt, {
        maxNewTokens: 24,
        draftTokens: 3,
        fuseDraft,
      });
      assertEquals(run.tokens, want, `fuseDraft ${fuseDraft}`);
      assertEquals(run.draftFused, fuseDraft);
      assertEquals(draft.proposalsFused, fuseDraft);
    }
  } finally {
    target.dispose();
    draft.dispose();
  }
});
