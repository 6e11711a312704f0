/**
 * The speculative-decoding section of `deno task bench`, in three parts (run in the order
 * bundled, verify, simulated; `--spec-parts` picks them):
 *
 * - **verify cost**: the GPU time of one verify pass over 5 tokens (multi-row GEMVs, every
 *   row's logits and argmax) against one decode step, per weight format, at Llama-2-7B shape
 *   (random weights); the target is ≤ 1.3×.
 * - **simulated acceptance**: 7B/8B targets with a 1B-class draft (TinyLlama-1.1B for
 *   Llama-2-7B, Llama-3.2-1B for Llama-3-8B; random weights, formats mixed), the real draft and
 *   verify passes with each draft token kept with probability α (0.5-0.9): tokens/s against the
 *   target's own greedy decoding, so the curve is known without a trained pair.
 * - **bundled pair**: models/sotu-llama with models/sotu-llama-draft, greedy, several prompts:
 *   the measured acceptance and speed-up, with rounds read back one by one (`groupRounds` 0) and
 *   chained on the GPU in groups (`--spec-groups`).
 *
 * On a software adapter the random models are scaled down (dimensions and layers ÷8).
 *
 * @module
 */

import type { Gpu } from "../lib/gpu/device.ts";
import { LlamaModel } from "../lib/model/llama.ts";
import type { SamplerOptions } from "../lib/model/sampling.ts";
import { speculativeDecode } from "../lib/model/speculative.ts";
import { loadTokenizer } from "../lib/model/tokenizer.ts";
import {
  benchConfig,
  type BenchFormat,
  median,
  randomLinearFactory,
  type RandomPools,
  RandomWeightSource,
} from "./random_weights.ts";

/** One format's verify pass against its decode step. */
export interface VerifyCost {
  model: string;
  format: string;
  /** Tokens in the verify pass. */
  tokens: number;
  /** GPU ms of one decode step (median). */
  decodeGpuMs: number;
  /** GPU ms of the verify pass (median). */
  verifyGpuMs: number;
  /** verify / decode, GPU time. */
  ratio: number;
  /** GPU ms of a verify pass by its token count (1: the decode step). */
  verifyGpuMsByTokens?: Record<number, number>;
  /** Wall ms of one decode step with its argmax read back (median). */
  decodeWallMs: number;
  /** Wall ms of the verify pass with its argmaxes read back (median). */
  verifyWallMs: number;
  /**
   * Wall ms per pass, without the LM head, of 20 passes submitted back to back with one wait at
   * the end (median of 3): a decode step's layers, and the verify pass's. Neither the readback's
   * floor nor the timestamps' cost per dispatch is in it.
   */
  decodeBackToBackMs?: number;
  /** As {@linkcode decodeBackToBackMs}, for the verify pass's rows. */
  verifyBackToBackMs?: number;
}

/** One point of a simulated-acceptance curve. */
export interface SimulatedPoint {
  /** Probability that each draft token is kept. */
  acceptance: number;
  /** Fixed draft length, or "adaptive". */
  draftTokens: number | "adaptive";
  tokensPerSecond: number;
  /** Against the target decoding alone. */
  speedup: number;
  tokensPerTargetPass: number;
}

/** A target/draft pair of random models. */
export interface SimulatedPair {
  target: string;
  draft: string;
  targetFormat: string;
  draftFormat: string;
  /** The target's own greedy decoding (decodeGreedy, 8 in flight). */
  baselineTokensPerSecond: number;
  /** The draft's own greedy decoding. */
  draftTokensPerSecond: number;
  /** GPU ms (timestamps) of a target decode step, a draft step, and verify passes by tokens. */
  gpuMs: { target: number; draft: number; verify: Record<number, number> };
  /**
   * The same passes timed whole, each in one compute pass as decoding runs it
   * (`timeForward(…, { whole: true })`): per-dispatch timestamps add a pass's fixed cost to every
   * kernel, which weighs most on the draft's many small ones.
   */
  onePassMs: { target: number; draft: number; verify: Record<number, number> };
  /**
   * Speed-up predicted from GPU time alone, E(α, k)·t / (k·t_draft + t_verify(k + 1)): what a
   * loop with no CPU in it (no readback wait, no encoding) would reach. By k, then α; from the
   * per-dispatch times (`gpuProjection`) and from the one-pass times (`onePassProjection`).
   */
  gpuProjection: Record<number, number[]>;
  onePassProjection: Record<number, number[]>;
  points: SimulatedPoint[];
}

/** The bundled pair, measured. */
export interface BundledRun {
  targetFormat: string;
  draftFormat: string;
  draftTokens: number | "adaptive";
  /**
   * Rounds per readback (`SpeculativeOptions.groupRounds`; 0: one readback per round; "auto":
   * sized to ~25 ms of rounds).
   */
  groupRounds: number | "auto";
  /** Whether the draft's proposals ran fused (`SpeculativeResult.draftFused`). */
  draftFused: boolean;
  /** The draft length per round, on average over all prompts (the adaptive length's choice). */
  meanDraftLength: number;
  /** Over all prompts. */
  acceptance: number;
  tokensPerTargetPass: number;
  tokensPerSecond: number;
  /** The target alone at its fastest of the measured readback groups. */
  baselineTokensPerSecond: number;
  /** The target alone (decodeGreedy) by tokens in flight per readback (or "auto"). */
  baselineByInFlight: Record<string, number>;
  /** Against the fastest baseline. */
  speedup: number;
  /** Whether every prompt gave the target's own greedy tokens (sampled runs: not compared). */
  sameTokens: boolean;
  /** Sampled runs: the settings both the pair and the target alone (decodeSampled) drew with. */
  sampling?: SamplerOptions;
}

/** Everything the section measures. */
export interface SpeculativeBench {
  verify: VerifyCost[];
  simulated: SimulatedPair[];
  bundled: BundledRun[];
}

/** Settings of {@linkcode benchSpeculative}. */
export interface SpeculativeBenchOptions {
  gpu: Gpu;
  pools: RandomPools;
  /** Formats of the verify-cost table. */
  formats: BenchFormat[];
  /** Which parts to run (default all three). */
  parts?: ("verify" | "simulated" | "bundled")[];
  /** Bundled pair: the `groupRounds` values to measure (default 0 and "auto"). */
  groups?: (number | "auto")[];
  /**
   * Bundled pair: the target alone with these tokens in flight per readback (decodeGreedy's
   * `inFlight`, default 8 and "auto"); speed-ups are against the fastest, so that a pair is
   * compared with the target at its best (8 alone holds a GPU to one readback per 8 tokens).
   */
  aloneInFlight?: (number | "auto")[];
  /** Bundled pair: the draft lengths to measure (default adaptive, 1, 2, 3, 4). */
  draftLengths?: (number | "adaptive")[];
  /**
   * Bundled pair: sample with these settings instead of greedy decoding, the target alone
   * through `decodeSampled`, each prompt with its own seed.
   */
  sampling?: SamplerOptions;
  /**
   * Bundled pair: target and draft formats (default fp16 + fp16, int8-vectorwise + fp16,
   * nf4 + nf4, nf4 + fp16; on a software adapter fp16 + fp16).
   */
  pairs?: [BenchFormat, BenchFormat][];
  /**
   * Simulated pairs: new tokens per call, for the target alone and the pair (default 192 on a
   * GPU, 12 on a software adapter). Short calls weigh the prompt pass and the rounds run past the
   * last token wanted more heavily than a long generation does: at 48 tokens the H200's 7B pairs
   * ran as fast at 80% acceptance as at 90% (both ended in the same group of rounds).
   */
  simulatedTokens?: number;
  /** Simulated pairs: only those whose target is one of these presets (default all). */
  simulatedTargets?: string[];
  /** Called with each finished part, so a cut run keeps what it has. */
  onPart?: (r: SpeculativeBench) => Promise<void>;
}

const ACCEPTANCES = [0.5, 0.6, 0.7, 0.8, 0.9];

/**
 * A model of `preset`'s shape with random weights in `format` (scaled down on a software
 * adapter), with a KV cache of 512 positions.
 *
 * @example
 * ```ts ignore
 * const draft = await randomModel({ gpu, pools }, "tinyllama-1.1b", "nf4");
 * ```
 */
export async function randomModel(
  o: { gpu: Gpu; pools: RandomPools },
  preset: string,
  format: BenchFormat,
): Promise<LlamaModel> {
  return await LlamaModel.fromCheckpoint(
    benchConfig(preset, o.gpu.isSoftware),
    new RandomWeightSource(o.pools),
    {
      gpu: o.gpu,
      format,
      linear: format === "fp16" ? undefined : randomLinearFactory(o.pools, format),
      maxSeqLen: 512,
    },
  );
}

/**
 * Median GPU ms of one pass over `tokens` at position 64: the sum of its timestamped dispatches,
 * or with `whole` the pass timed whole.
 */
async function gpuPass(
  model: LlamaModel,
  tokens: number[],
  verify: boolean,
  whole = false,
): Promise<number> {
  model.reset();
  await model.forward(Array.from({ length: 64 }, (_, i) => 1 + i), "none");
  const times: number[] = [];
  for (let i = 0; i < (whole ? 9 : 5); i++) {
    model.rollback(64);
    const t = await model.timeForward(tokens, { verify, whole });
    times.push(t.reduce((s, d) => s + d.ms, 0));
  }
  return median(times.slice(1));
}

/** GPU ms of a pair's passes: a target step, a draft step, verify passes of 4 and 5 tokens. */
async function pairPasses(
  target: LlamaModel,
  draft: LlamaModel,
  whole: boolean,
): Promise<{ target: number; draft: number; verify: Record<number, number> }> {
  return {
    target: await gpuPass(target, [100], false, whole),
    draft: await gpuPass(draft, [100], false, whole),
    verify: {
      4: await gpuPass(target, [100, 101, 102, 103], true, whole),
      5: await gpuPass(target, [100, 101, 102, 103, 104], true, whole),
    },
  };
}

/** E(α, k)·t / (k·t_draft + t_verify(k + 1)) for each α, from one set of pass times. */
function projection(
  g: { target: number; draft: number; verify: Record<number, number> },
  k: number,
): number[] {
  return ACCEPTANCES.map((a) =>
    ((1 - a ** (k + 1)) / (1 - a)) * g.target / (k * g.draft + g.verify[k + 1])
  );
}

/** The prompt of the simulated pairs, for the target alone as for the pair. */
const SIMULATED_PROMPT = [1, 2, 3, 4, 5, 6, 7, 8];

/**
 * Greedy tokens/s of `model` alone (decodeGreedy, default readback groups): tokens after the
 * first per second of the whole call, prompt pass included (as for the pair); the median of
 * three calls after a warm one.
 */
async function baseline(model: LlamaModel, tokens: number): Promise<number> {
  model.reset();
  await model.decodeGreedy(SIMULATED_PROMPT, { maxNewTokens: 8 }); // warm
  const rates: number[] = [];
  for (let i = 0; i < 3; i++) {
    model.reset();
    const t0 = performance.now();
    const run = await model.decodeGreedy(SIMULATED_PROMPT, { maxNewTokens: tokens });
    rates.push((run.tokens.length - 1) / ((performance.now() - t0) / 1000));
  }
  return median(rates);
}

async function verifyCost(o: SpeculativeBenchOptions, format: BenchFormat): Promise<VerifyCost> {
  const model = await randomModel(o, "llama-2-7b", format);
  try {
    const n = 5;
    const prompt = Array.from({ length: 64 }, (_, i) => 1 + i);
    await model.forward(prompt, "none");
    const at = model.position;
    // GPU ms by kernel (file:entry) of the median pass, for the breakdown line
    const byKernel = new Map<string, { decode: number; verify: number }>();
    const gpuTime = async (tokens: number[], verify: boolean, record = true) => {
      const runs: { total: number; t: { kernel: string; ms: number }[] }[] = [];
      for (let i = 0; i < 7; i++) {
        model.rollback(at);
        const t = await model.timeForward(tokens, { verify });
        runs.push({ total: t.reduce((s, d) => s + d.ms, 0), t });
      }
      const kept = runs.slice(2).sort((a, b) => a.total - b.total);
      const mid = kept[Math.floor(kept.length / 2)];
      for (const d of record ? mid.t : []) {
        const name = d.kernel.replace(/\[.*$/, "");
        const e = byKernel.get(name) ?? { decode: 0, verify: 0 };
        e[verify ? "verify" : "decode"] += d.ms;
        byKernel.set(name, e);
      }
      return median(kept.map((r) => r.total));
    };
    const wall = async (tokens: number[]) => {
      const times: number[] = [];
      for (let i = 0; i < 12; i++) {
        model.rollback(at);
        const t0 = performance.now();
        await model.verify(tokens, "argmax");
        times.push(performance.now() - t0);
      }
      return median(times.slice(2));
    };
    // 20 passes back to back and one wait, without the LM head: decode steps (one token), or
    // verify passes (every format's multi-row products, as speculative rounds run them)
    const backToBack = async (tokens: number[]) => {
      const times: number[] = [];
      for (let rep = 0; rep < 4; rep++) {
        const t0 = performance.now();
        for (let i = 0; i < 20; i++) {
          model.rollback(at);
          await (tokens.length === 1
            ? model.forward(tokens, "none")
            : model.verify(tokens, "none"));
        }
        await o.gpu.sync();
        times.push((performance.now() - t0) / 20);
      }
      return median(times.slice(1));
    };
    const many = Array.from({ length: n }, (_, i) => 100 + i);
    const decodeGpuMs = await gpuTime([100], false);
    const verifyGpuMs = await gpuTime(many, true);
    const verifyGpuMsByTokens: Record<number, number> = { 1: decodeGpuMs, [n]: verifyGpuMs };
    for (const t of [2, 3, 4, 6, 8]) {
      const tokens = Array.from({ length: t }, (_, i) => 100 + i);
      verifyGpuMsByTokens[t] = await gpuTime(tokens, true, false);
    }
    console.log(
      `  ${format} verify GPU ms by tokens: ` +
        Object.entries(verifyGpuMsByTokens).map(([t, ms]) => `${t}: ${ms.toFixed(2)}`).join(", "),
    );
    const decodeWallMs = await wall([100]);
    const verifyWallMs = await wall(many);
    const decodeBackToBackMs = await backToBack([100]);
    const verifyBackToBackMs = await backToBack(many);
    console.log(
      `  ${format} back to back, no LM head: decode step ${decodeBackToBackMs.toFixed(2)} ms, ` +
        `verify ${n} ${verifyBackToBackMs.toFixed(2)} ms: ` +
        `${(verifyBackToBackMs / decodeBackToBackMs).toFixed(2)}x`,
    );
    const kernels = [...byKernel].sort((a, b) => b[1].verify - a[1].verify)
      .map(([k, v]) => `${k} ${v.decode.toFixed(2)}/${v.verify.toFixed(2)}`);
    console.log(`  ${format} GPU ms by kernel, decode step/verify ${n}: ${kernels.join(", ")}`);
    return {
      model: "llama-2-7b",
      format,
      tokens: n,
      decodeGpuMs,
      verifyGpuMs,
      ratio: verifyGpuMs / decodeGpuMs,
      verifyGpuMsByTokens,
      decodeWallMs,
      verifyWallMs,
      decodeBackToBackMs,
      verifyBackToBackMs,
    };
  } finally {
    model.dispose();
    await o.gpu.sync();
  }
}

/**
 * Runs the section and returns what it measured; logs a line per measurement.
 *
 * @example
 * ```ts ignore
 * const r = await benchSpeculative({ gpu, pools, formats: ["fp16", "nf4"] });
 * ```
 */
export async function benchSpeculative(o: SpeculativeBenchOptions): Promise<SpeculativeBench> {
  const parts = new Set(o.parts ?? ["verify", "simulated", "bundled"]);
  const software = o.gpu.isSoftware;
  const r: SpeculativeBench = { verify: [], simulated: [], bundled: [] };

  if (parts.has("bundled")) {
    const dir = new URL("../models/", import.meta.url).pathname;
    const tokenizer = await loadTokenizer(`${dir}sotu-llama`);
    const prompts = [
      "The state of the Union is",
      "We must",
      "Our economy",
      "I ask the Congress to",
      "The American people",
    ].map((p) => tokenizer.encode(p));
    const tokens = software ? 24 : 128;
    const combos: [BenchFormat, BenchFormat][] = o.pairs ??
      (software
        ? [["fp16", "fp16"]]
        : [["fp16", "fp16"], ["int8-vectorwise", "fp16"], ["nf4", "nf4"], ["nf4", "fp16"]]);
    for (const [tf, df] of combos) {
      const target = await LlamaModel.load(`${dir}sotu-llama`, { gpu: o.gpu, format: tf });
      const draft = await LlamaModel.load(`${dir}sotu-llama-draft`, { gpu: o.gpu, format: df });
      try {
        // the target alone, per prompt, with each readback group: a plain loop with more tokens
        // in flight waits less often on Deno's ≥ 10 ms map, so it is measured as well
        const alone: number[][] = [];
        const baselineByInFlight: Record<string, number> = {};
        for (const inFlight of o.aloneInFlight ?? [8, "auto" as const]) {
          let aloneMs = 0;
          let aloneTokens = 0;
          alone.length = 0;
          for (const [i, p] of prompts.entries()) {
            const sampling = o.sampling && { ...o.sampling, seed: (o.sampling.seed ?? 0) + i };
            const decode = (maxNewTokens: number) =>
              sampling
                ? target.decodeSampled(p, { maxNewTokens, inFlight, sampling })
                : target.decodeGreedy(p, { maxNewTokens, inFlight });
            target.reset();
            await decode(8); // warm
            target.reset();
            const t0 = performance.now();
            const run = await decode(tokens);
            aloneMs += performance.now() - t0;
            aloneTokens += run.tokens.length;
            alone.push(run.tokens);
          }
          baselineByInFlight[inFlight] = aloneTokens / (aloneMs / 1000);
          console.log(
            `bundled target ${tf} alone, ${inFlight} in flight: ${
              baselineByInFlight[inFlight].toFixed(1)
            } tok/s`,
          );
        }
        const baseTokS = Math.max(...Object.values(baselineByInFlight));
        // warm: every draft length once (pipelines and bind groups for each verify width), so
        // that the first setting timed (adaptive, whose length moves) pays no first-use costs
        for (let k = 1; k < target.maxVerifyTokens; k++) {
          await speculativeDecode(target, draft, prompts[0], {
            maxNewTokens: 16,
            draftTokens: k,
            ...o.sampling,
          });
        }
        const settings = (o.draftLengths ?? (software ? ["adaptive"] : ["adaptive", 1, 2, 3, 4]))
          .flatMap((k) =>
            (o.groups ?? [0, "auto" as const]).map((groupRounds) => ({ k, groupRounds }))
          );
        for (const { k, groupRounds } of settings) {
          let drafted = 0;
          let accepted = 0;
          let passes = 0;
          let produced = 0;
          let ms = 0;
          let same = true;
          let fused = false;
          let rounds = 0;
          let lengths = 0;
          for (const [i, p] of prompts.entries()) {
            const t0 = performance.now();
            const run = await speculativeDecode(target, draft, p, {
              maxNewTokens: tokens,
              draftTokens: k === "adaptive" ? undefined : k,
              groupRounds,
              ...o.sampling,
              seed: (o.sampling?.seed ?? 0) + i,
            });
            ms += performance.now() - t0;
            produced += run.tokens.length;
            drafted += run.drafted;
            accepted += run.accepted;
            passes += run.targetPasses;
            same &&= !o.sampling && run.tokens.join() === alone[i].join();
            fused = run.draftFused;
            rounds += run.draftLengths.length;
            lengths += run.draftLengths.reduce((a, b) => a + b, 0);
          }
          const tokS = produced / (ms / 1000);
          const b: BundledRun = {
            targetFormat: tf,
            draftFormat: df,
            draftTokens: k,
            groupRounds,
            draftFused: fused,
            meanDraftLength: lengths / rounds,
            acceptance: accepted / drafted,
            tokensPerTargetPass: (produced - prompts.length) / passes,
            tokensPerSecond: tokS,
            baselineTokensPerSecond: baseTokS,
            baselineByInFlight,
            speedup: tokS / baseTokS,
            sameTokens: same,
            ...(o.sampling ? { sampling: o.sampling } : {}),
          };
          r.bundled.push(b);
          console.log(
            `bundled pair ${tf} + draft ${df}${fused ? " (fused)" : ""}, k=${
              k === "adaptive" ? `adaptive (mean ${b.meanDraftLength.toFixed(2)})` : k
            }, groups of ${groupRounds}: acceptance ${(100 * b.acceptance).toFixed(1)}%, ${
              b.tokensPerTargetPass.toFixed(2)
            } tokens/pass, ${tokS.toFixed(1)} tok/s vs ${baseTokS.toFixed(1)} alone: ${
              b.speedup.toFixed(2)
            }x${o.sampling ? " (sampled)" : same ? "" : " (TOKENS DIFFER)"}`,
          );
        }
      } finally {
        target.dispose();
        draft.dispose();
      }
    }
    await o.onPart?.(r);
  }
  if (parts.has("verify")) {
    for (const format of o.formats) {
      const v = await verifyCost(o, format);
      r.verify.push(v);
      console.log(
        `verify ${v.tokens} tokens, llama-2-7b ${format.padEnd(16)} GPU ${
          v.verifyGpuMs.toFixed(2)
        } ms vs decode step ${v.decodeGpuMs.toFixed(2)} ms: ${v.ratio.toFixed(2)}x ` +
          `(wall ${v.verifyWallMs.toFixed(2)} vs ${v.decodeWallMs.toFixed(2)} ms)`,
      );
    }
    await o.onPart?.(r);
  }

  if (parts.has("simulated")) {
    const tokens = o.simulatedTokens ?? (software ? 12 : 192);
    const listed: [string, BenchFormat, string, BenchFormat][] = software
      ? [["llama-2-7b", "fp16", "tinyllama-1.1b", "fp16"]]
      : [
        ["llama-2-7b", "fp16", "tinyllama-1.1b", "nf4"],
        ["llama-2-7b", "int8-vectorwise", "tinyllama-1.1b", "nf4"],
        ["llama-2-7b", "nf4", "tinyllama-1.1b", "nf4"],
        ["llama-2-7b", "fp16", "tinyllama-1.1b", "fp16"],
        ["llama-3-8b", "fp16", "llama-3.2-1b", "nf4"],
      ];
    const pairs = listed.filter(([t]) => o.simulatedTargets?.includes(t) ?? true);
    const cache = new Map<string, LlamaModel>();
    const get = async (preset: string, format: BenchFormat) => {
      const key = `${preset}/${format}`;
      let m = cache.get(key);
      if (!m) cache.set(key, m = await randomModel(o, preset, format));
      return m;
    };
    try {
      for (const [tp, tf, dp, df] of pairs) {
        // Models of the other family are no longer needed: free them first.
        for (const [key, m] of cache) {
          if (!key.startsWith(tp) && !key.startsWith(dp)) {
            m.dispose();
            cache.delete(key);
          }
        }
        const target = await get(tp, tf);
        const draft = await get(dp, df);
        const pair: SimulatedPair = {
          target: tp,
          draft: dp,
          targetFormat: tf,
          draftFormat: df,
          baselineTokensPerSecond: await baseline(target, tokens),
          draftTokensPerSecond: await baseline(draft, tokens),
          gpuMs: await pairPasses(target, draft, false),
          onePassMs: await pairPasses(target, draft, true),
          gpuProjection: {},
          onePassProjection: {},
          points: [],
        };
        for (const k of [3, 4]) {
          pair.gpuProjection[k] = projection(pair.gpuMs, k);
          pair.onePassProjection[k] = projection(pair.onePassMs, k);
        }
        const prompt = SIMULATED_PROMPT;
        await speculativeDecode(target, draft, prompt, {
          maxNewTokens: 8,
          simulateAcceptance: 0.5,
        });
        for (const acceptance of ACCEPTANCES) {
          for (const k of software ? [4] : [3, "adaptive"] as const) {
            // the whole call, as for the target alone: with rounds chained on the GPU the first
            // group of rounds comes back with the prompt's token; the median of three calls
            const rates: number[] = [];
            let run!: Awaited<ReturnType<typeof speculativeDecode>>;
            for (let i = 0; i < (software ? 1 : 3); i++) {
              const t0 = performance.now();
              run = await speculativeDecode(target, draft, prompt, {
                maxNewTokens: tokens,
                draftTokens: k === "adaptive" ? undefined : k,
                simulateAcceptance: acceptance,
                seed: 1,
              });
              rates.push((run.tokens.length - 1) / ((performance.now() - t0) / 1000));
            }
            const tokS = median(rates);
            pair.points.push({
              acceptance,
              draftTokens: k,
              tokensPerSecond: tokS,
              speedup: tokS / pair.baselineTokensPerSecond,
              tokensPerTargetPass: run.tokensPerTargetPass,
            });
          }
        }
        r.simulated.push(pair);
        const best = (a: number) =>
          pair.points.filter((p) => p.acceptance === a).reduce((x, y) =>
            y.speedup > x.speedup ? y : x
          );
        console.log(
          `speculative ${tp} ${tf} + ${dp} ${df}: alone ${
            pair.baselineTokensPerSecond.toFixed(1)
          } tok/s (draft alone ${pair.draftTokensPerSecond.toFixed(1)}); best speed-up at ` +
            ACCEPTANCES.map((a) => {
              const b = best(a);
              return `α=${a}: ${b.speedup.toFixed(2)}x (k=${b.draftTokens})`;
            }).join(", ") +
            `; GPU ms: step ${pair.gpuMs.target.toFixed(2)}, draft ${
              pair.gpuMs.draft.toFixed(2)
            }, verify 4/5 ${pair.gpuMs.verify[4].toFixed(2)}/${
              pair.gpuMs.verify[5].toFixed(2)
            }; GPU-time projection k=4: ${
              pair.gpuProjection[4].map((x) => x.toFixed(2)).join("/")
            }; one pass: step ${pair.onePassMs.target.toFixed(2)}, draft ${
              pair.onePassMs.draft.toFixed(2)
            }, verify 4/5 ${pair.onePassMs.verify[4].toFixed(2)}/${
              pair.onePassMs.verify[5].toFixed(2)
            }, projection k=3: ${pair.onePassProjection[3].map((x) => x.toFixed(2)).join("/")}`,
        );
        await o.onPart?.(r);
      }
    } finally {
      for (const m of cache.values()) m.dispose();
      await o.gpu.sync();
    }
  }

  return r;
}

/**
 * The section as markdown tables.
 *
 * @example
 * ```ts ignore
 * console.log(speculativeMarkdown(await benchSpeculative({ gpu, pools, formats })));
 * ```
 */
export function speculativeMarkdown(r: SpeculativeBench): string {
  const lines: string[] = ["## Speculative decoding", ""];
  if (r.verify.length) {
    lines.push(
      "Verify pass (5 tokens, multi-row GEMVs) vs one decode step, Llama-2-7B shape, GPU time:",
      "",
      "| format | decode step ms | verify 5 ms | ratio | wall decode ms | wall verify ms | back to back, no head: decode / verify ms | ratio |",
      "| ------ | -------------- | ----------- | ----- | -------------- | -------------- | ----------------------------------------- | ----- |",
      ...r.verify.map((v) => {
        const b2b = v.decodeBackToBackMs && v.verifyBackToBackMs
          ? `${v.decodeBackToBackMs.toFixed(2)} / ${v.verifyBackToBackMs.toFixed(2)} | ${
            (v.verifyBackToBackMs / v.decodeBackToBackMs).toFixed(2)
          }`
          : "– | –";
        return `| ${v.format} | ${v.decodeGpuMs.toFixed(2)} | ${v.verifyGpuMs.toFixed(2)} | ${
          v.ratio.toFixed(2)
        } | ${v.decodeWallMs.toFixed(2)} | ${v.verifyWallMs.toFixed(2)} | ${b2b} |`;
      }),
      "",
    );
  }
  for (const p of r.simulated) {
    const ks = [...new Set(p.points.map((x) => x.draftTokens))];
    lines.push(
      `Simulated acceptance: ${p.target} ${p.targetFormat} + ${p.draft} ${p.draftFormat} ` +
        `(alone ${p.baselineTokensPerSecond.toFixed(1)} tok/s, draft alone ${
          p.draftTokensPerSecond.toFixed(1)
        }), speed-up by draft length:`,
      "",
      `| acceptance | ${
        ks.map((k) => `k=${k}`).join(" | ")
      } | GPU-time projection k=3 | k=4 | one-pass projection k=3 | k=4 |`,
      `| ---------- | ${ks.map(() => "---").join(" | ")} | --- | --- | --- | --- |`,
      ...ACCEPTANCES.filter((a) => p.points.some((x) => x.acceptance === a)).map((a) =>
        `| ${a} | ${
          ks.map((k) => {
            const x = p.points.find((y) => y.acceptance === a && y.draftTokens === k)!;
            return `${x.speedup.toFixed(2)}x (${x.tokensPerSecond.toFixed(0)})`;
          }).join(" | ")
        } | ${
          [p.gpuProjection[3], p.gpuProjection[4], p.onePassProjection[3], p.onePassProjection[4]]
            .map((v) => `${v[ACCEPTANCES.indexOf(a)].toFixed(2)}x`).join(" | ")
        } |`
      ),
      "",
      `GPU ms, per-dispatch timestamps / one pass: target step ${p.gpuMs.target.toFixed(2)} / ${
        p.onePassMs.target.toFixed(2)
      }, draft step ${p.gpuMs.draft.toFixed(2)} / ${
        p.onePassMs.draft.toFixed(2)
      }, verify 4 tokens ${p.gpuMs.verify[4].toFixed(2)} / ${
        p.onePassMs.verify[4].toFixed(2)
      }, 5 tokens ${p.gpuMs.verify[5].toFixed(2)} / ${p.onePassMs.verify[5].toFixed(2)}.`,
      "",
    );
  }
  if (r.bundled.length) {
    lines.push(
      "Bundled pair (sotu-llama + sotu-llama-draft), greedy, 5 prompts:",
      "",
      "| target | draft | k | rounds/readback | acceptance | tokens/pass | tok/s | alone tok/s | speed-up | same tokens |",
      "| ------ | ----- | - | --------------- | ---------- | ----------- | ----- | ----------- | -------- | ----------- |",
      ...r.bundled.map((b) =>
        `| ${b.targetFormat} | ${b.draftFormat}${
          b.draftFused ? " (fused)" : ""
        } | ${b.draftTokens} | ${b.groupRounds || 1} | ${(100 * b.acceptance).toFixed(1)}% | ${
          b.tokensPerTargetPass.toFixed(2)
        } | ${b.tokensPerSecond.toFixed(1)} | ${b.baselineTokensPerSecond.toFixed(1)} | ${
          b.speedup.toFixed(2)
        }x | ${b.sameTokens ? "yes" : "no"} |`
      ),
      "",
    );
  }
  return lines.join("\n");
}
