/**
 * Pipelined greedy decoding (`LlamaModel.decodeGreedy`, the next token fed back on the GPU,
 * several steps in flight) against the step-by-step path (`forwardGreedy` on the prompt, then on
 * each new token, waiting for every token): the tokens must be identical, a stop must leave the
 * KV cache and position as the step-by-step loop does, and every staging buffer must be freed.
 */
import { deepStrictEqual as assertEquals, ok as assert, rejects } from "node:assert/strict";
import type { Gpu } from "../../lib/gpu/device.ts";
import { requestGpu } from "../../lib/gpu/device.ts";
import { generate } from "../../lib/model/generate.ts";
import { autoInFlight, autoPace, LlamaModel } from "../../lib/model/llama.ts";
import { loadTokenizer, type Tokenizer } from "../../lib/model/tokenizer.ts";
import { seededRandom } from "../../lib/model/sampling.ts";
import { cpuSample } from "../../lib/kernels/sample.ts";
import { writeRandomLlama } from "../helpers/random_llama.ts";

const BUNDLED = new URL("../../models/sotu-llama", import.meta.url).pathname;

/** forwardGreedy on the prompt, then on each new token: the reference sequence. */
async function stepByStep(model: LlamaModel, prompt: number[], count: number): Promise<number[]> {
  model.reset();
  const out = [await model.forwardGreedy(prompt)];
  while (out.length < count && model.position < model.maxSeqLen) {
    out.push(await model.forwardGreedy([out[out.length - 1]]));
  }
  return out;
}

/** Checks decodeGreedy against `ref` (the step-by-step tokens) in several ways. */
async function checkPipeline(model: LlamaModel, prompt: number[], ref: number[]): Promise<void> {
  const n = ref.length;
  for (const inFlight of [1, 2, 3, 8, "auto"] as const) {
    model.reset();
    const seen: number[] = [];
    const run = await model.decodeGreedy(prompt, {
      maxNewTokens: n,
      inFlight,
      onToken: (t, i) => {
        assertEquals(i, seen.length);
        seen.push(t);
      },
    });
    assertEquals(run.tokens, ref, `inFlight ${inFlight}: tokens`);
    assertEquals(seen, ref, `inFlight ${inFlight}: onToken saw every token in order`);
    assertEquals(run.stoppedBy, "max-tokens");
    assertEquals(run.overshoot, 0);
    assertEquals(model.position, prompt.length + n - 1, `inFlight ${inFlight}: position`);
    assertEquals(run.groups.reduce((a, b) => a + b, 0), n, `inFlight ${inFlight}: groups`);
  }

  // Stop early: the tokens run ahead are discarded and the position is set back, so that going
  // on step by step from there gives the reference continuation.
  const stopAt = Math.floor(n / 2);
  for (const inFlight of [2, 4]) {
    model.reset();
    const run = await model.decodeGreedy(prompt, {
      maxNewTokens: n,
      inFlight,
      onToken: (_t, i) => i < stopAt,
    });
    assertEquals(run.tokens, ref.slice(0, stopAt + 1));
    assertEquals(run.stoppedBy, "callback");
    // Tokens come back in groups of inFlight, the next group already submitted.
    const groupsSubmitted = Math.floor(stopAt / inFlight) + 2;
    assertEquals(run.overshoot, Math.min(n, groupsSubmitted * inFlight) - (stopAt + 1));
    assertEquals(model.position, prompt.length + stopAt);
    const cont = [await model.forwardGreedy([run.tokens[stopAt]])];
    cont.push(await model.forwardGreedy([cont[0]]));
    assertEquals(cont, ref.slice(stopAt + 1, stopAt + 3), "continuation after a stop");
  }

  // Without bind-group reuse: the same tokens.
  model.reuseBindGroups = false;
  try {
    model.reset();
    const run = await model.decodeGreedy(prompt, { maxNewTokens: n });
    assertEquals(run.tokens, ref, "without bind-group reuse");
  } finally {
    model.reuseBindGroups = true;
  }
}

/**
 * Runs `fn` on the bundled model (a 64-position cache) and its tokenizer, with the prompt the
 * tests decode from; afterwards the model is disposed and the ledger must be back where it was.
 */
async function withBundled(
  fn: (model: LlamaModel, tok: Tokenizer, prompt: number[]) => Promise<void>,
): Promise<void> {
  const gpu = await requestGpu();
  try {
    const before = gpu.ledger.currentBytes;
    const model = await LlamaModel.load(BUNDLED, { gpu, maxSeqLen: 64 });
    const tok = await loadTokenizer(BUNDLED);
    await fn(model, tok, tok.encode("The state of the Union is"));
    model.dispose();
    assertEquals(gpu.ledger.currentBytes, before, "the ledger returns to where it was");
  } finally {
    gpu.destroy();
  }
}

Deno.test("pipelined greedy decoding gives the step-by-step tokens (bundled model)", () =>
  withBundled(async (model, tok, prompt) => {
    const ref = await stepByStep(model, prompt, 12);
    await checkPipeline(model, prompt, ref);

    // generate (greedy: pipelined) streams the same tokens and text, and stops at EOS exactly
    // where the step-by-step loop would: make the 6th new token the end-of-sequence token.
    const pieces: string[] = [];
    const res = await generate(model, tok, prompt, {
      maxNewTokens: ref.length,
      onText: (t) => pieces.push(t),
    });
    assertEquals(res.tokens, ref);
    assertEquals(pieces.join(""), res.text);
    assertEquals(res.text, tok.decode(ref));
    const eosAt = ref.indexOf(ref[5]);
    const eosTok = { ...tok, eosIds: [ref[5]] };
    const stopped = await generate(model, eosTok, prompt, { maxNewTokens: ref.length });
    assertEquals(stopped.tokens, ref.slice(0, eosAt));
    assertEquals(stopped.stoppedBy, "eos");
    assertEquals(model.position, prompt.length + eosAt);
    const one = await generate(model, tok, prompt, { maxNewTokens: 1 });
    assertEquals(one.tokens, ref.slice(0, 1));
    assertEquals((await generate(model, tok, prompt, { maxNewTokens: 0 })).tokens, []);
  }));

Deno.test("pipelined sampled decoding draws what cpuSample draws from the step-by-step logits (bundled model)", () =>
  withBundled(async (model, tok, prompt) => {
    const n = 16;
    for (
      const sampling of [
        { temperature: 0.9, topK: 40, topP: 0.95, seed: 7 },
        { temperature: 1.2, seed: 3 }, // no cut: the kept set is the whole vocabulary
      ]
    ) {
      // the reference: forward's logits step by step, the kernel's twin, the same uniforms
      const settings = {
        temperature: sampling.temperature,
        topK: sampling.topK ?? 0,
        topP: sampling.topP ?? 1,
      };
      const uniform = seededRandom(sampling.seed);
      model.reset();
      const ref: number[] = [];
      let logits = await model.forward(prompt, "last");
      while (ref.length < n) {
        const drawn = cpuSample(logits, settings, uniform());
        // a draw this close to an edge could go either way in f32: the seeds avoid them
        assert(drawn.margin >= 1e-5, `draw ${ref.length}: margin ${drawn.margin}`);
        ref.push(drawn.token);
        if (ref.length < n) logits = await model.forward([drawn.token], "last");
      }
      assert(new Set(ref).size > 4, "the draws vary");
      for (const inFlight of [1, 3, 8] as const) {
        model.reset();
        const run = await model.decodeSampled(prompt, { maxNewTokens: n, inFlight, sampling });
        assertEquals(run.tokens, ref, `${JSON.stringify(sampling)}, inFlight ${inFlight}`);
        assertEquals(model.position, prompt.length + n - 1);
      }
      // generate samples the same way, and stops where told
      const res = await generate(model, tok, prompt, { maxNewTokens: n, ...sampling });
      assertEquals(res.tokens, ref);
      assertEquals(res.text, tok.decode(ref));
      model.reset();
      const stopped = await model.decodeSampled(prompt, {
        maxNewTokens: n,
        inFlight: 4,
        sampling,
        onToken: (_t, i) => i < 5,
      });
      assertEquals(stopped.tokens, ref.slice(0, 6));
      assertEquals(stopped.stoppedBy, "callback");
      assertEquals(model.position, prompt.length + 5);
    }
    // temperature 0 and top-k 1 are greedy; bad settings are refused before anything runs
    const greedy = await stepByStep(model, prompt, 6);
    model.reset();
    const cold = await model.decodeSampled(prompt, {
      maxNewTokens: 6,
      sampling: { temperature: 0 },
    });
    assertEquals(cold.tokens, greedy);
    model.reset();
    const k1 = await model.decodeSampled(prompt, {
      maxNewTokens: 6,
      sampling: { topK: 1, seed: 5 },
    });
    assertEquals(k1.tokens, greedy);
    await rejects(
      () => model.decodeSampled(prompt, { maxNewTokens: 4, sampling: { topP: 0 } }),
      /topP 0 must be in \(0, 1\]/,
    );
  }));

async function randomModelCase(gpu: Gpu, dir: string): Promise<void> {
  const before = gpu.ledger.currentBytes;
  // Chunks of 4 tokens, so a 10-token prompt takes three submissions; a 24-position cache, so
  // decoding runs into its end.
  const model = await LlamaModel.load(dir, { gpu, maxSeqLen: 24, chunkSize: 4 });
  try {
    const prompt = [5, 17, 200, 33, 9, 120, 64, 2, 250, 7];
    const ref = await stepByStep(model, prompt, 10);
    await checkPipeline(model, prompt, ref);

    // Past the end of the cache: both stop after the same tokens.
    const full = await stepByStep(model, prompt, 100);
    assertEquals(full.length, 24 - prompt.length + 1);
    for (const inFlight of [1, 3]) {
      model.reset();
      const run = await model.decodeGreedy(prompt, { maxNewTokens: 100, inFlight });
      assertEquals(run.tokens, full);
      assertEquals(run.stoppedBy, "context");
      assertEquals(model.position, 24);
    }
    await rejects(model.decodeGreedy([1], { maxNewTokens: 1 }), /exceed the KV cache/);
    model.reset();
    await rejects(model.decodeGreedy([1], { maxNewTokens: 4, inFlight: 0 }), /inFlight/);
    // A throwing callback still frees the staging buffers.
    model.reset();
    await rejects(
      model.decodeGreedy(prompt, {
        maxNewTokens: 8,
        inFlight: 3,
        onToken: (_t, i) => {
          if (i === 2) throw new Error("stop here");
        },
      }),
      /stop here/,
    );
    assertEquals(model.position, prompt.length + 2);
  } finally {
    model.dispose();
  }
  assertEquals(gpu.ledger.currentBytes, before, "the ledger returns to where it was");
}

for (const f16 of [false, true]) {
  const hasF16 = f16 ? (await navigator.gpu.requestAdapter())?.features.has("shader-f16") : true;
  Deno.test({
    name: `pipelined greedy decoding gives the step-by-step tokens (random model, ${
      f16 ? "f16" : "packed-u32"
    } path)`,
    ignore: !hasF16,
    fn: async () => {
      const dir = await Deno.makeTempDir({ prefix: "qlab-pipeline-" });
      const gpu = await requestGpu({ f16 });
      try {
        await writeRandomLlama(dir, {
          layers: 2,
          hidden: 64,
          heads: 4,
          kvHeads: 2,
          intermediate: 160,
          vocab: 300,
          seed: 21,
        });
        await randomModelCase(gpu, dir);
        assert(gpu.ledger.currentBytes >= 0);
      } finally {
        gpu.destroy();
        await Deno.remove(dir, { recursive: true });
      }
    },
  });
}

Deno.test('inFlight "auto": groups of about 25 ms of steps, 8 to 64, from the pace a readback shows', () => {
  assertEquals(autoInFlight(5), 8); // a 7B step: 5 would do, 8 is the least
  assertEquals(autoInFlight(1.25), 20);
  assertEquals(autoInFlight(0.6), 42);
  assertEquals(autoInFlight(0.1), 64);
  assertEquals(autoInFlight(0), 64);
  // the pace a readback shows; at the ~10 ms floor (or for a first group) the CPU's bounds it
  assertEquals(autoPace(40, 8, 3, false), 5);
  assertEquals(autoPace(11, 8, 0.45, false), 0.45);
  assertEquals(autoPace(11, 8, 3, false), 11 / 8);
  assertEquals(autoPace(40, 8, 0.45, true), 0.45);
});

Deno.test('inFlight "auto" resizes its groups and gives the step-by-step tokens (bundled model)', async () => {
  const gpu = await requestGpu();
  try {
    const model = await LlamaModel.load(BUNDLED, { gpu, maxSeqLen: 256 });
    const tok = await loadTokenizer(BUNDLED);
    const prompt = tok.encode("The state of the Union is");
    const ref = await stepByStep(model, prompt, 120);
    // A software adapter's steps are slow, so the default 25 ms keeps groups of 8; a long aim
    // makes them grow to the most (64) from the third group on (the second is already submitted
    // when the first is read, and sized from what recording its steps cost the CPU).
    for (const autoGroupMs of [undefined, 10_000]) {
      model.reset();
      const run = await model.decodeGreedy(prompt, {
        maxNewTokens: ref.length,
        inFlight: "auto",
        autoGroupMs,
      });
      assertEquals(run.tokens, ref, `autoGroupMs ${autoGroupMs}: tokens`);
      assertEquals(run.groups.reduce((a, b) => a + b, 0), ref.length);
      // every group within the bounds, but the last two, which maxNewTokens may cut short
      for (const g of run.groups.slice(0, -2)) assert(g >= 8 && g <= 64, `group of ${g}`);
      if (autoGroupMs) assertEquals(run.groups.slice(0, 3), [8, 8, 64]);
      console.log(`  autoGroupMs ${autoGroupMs ?? "default"}: groups ${run.groups.join(", ")}`);
    }
    await rejects(model.decodeGreedy(prompt, { maxNewTokens: 4, autoGroupMs: 0 }), /autoGroupMs/);
    model.dispose();
  } finally {
    gpu.destroy();
  }
});
