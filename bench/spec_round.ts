/**
 * Where a speculative round of the bundled pair spends its time: for the target's decode step,
 * the draft's proposals and the target's verify pass, the dispatches and submissions each
 * records, the CPU time to record and submit it, and the wall time per call when many calls are
 * queued back to back (the GPU's pace, or the CPU's where recording is slower). Then whole
 * `speculativeDecode` runs, counted the same way per round.
 *
 * ```sh
 * deno run -A bench/spec_round.ts                    # fp16 target and draft
 * deno run -A bench/spec_round.ts --target nf4 --draft nf4 --calls 200
 * deno run -A bench/spec_round.ts --ks 4,6,adaptive --groups auto
 * # random weights at other shapes, each draft token kept with probability 0.7:
 * deno run -A bench/spec_round.ts --target-preset llama-2-7b --draft-preset tinyllama-1.1b \
 *   --draft nf4 --simulate 0.7 --ks 3 --groups auto --tokens 48
 * ```
 *
 * For whole runs it also says where the readbacks' time goes: Deno's `mapAsync` first blocks
 * until all submitted work is done, then settles one 10 ms sleep later.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { CommandBatch } from "../lib/gpu/batch.ts";
import { requestGpu } from "../lib/gpu/device.ts";
import type { QuantFormat } from "../lib/quant/formats.ts";
import { LlamaModel } from "../lib/model/llama.ts";
import { speculativeDecode } from "../lib/model/speculative.ts";
import { loadTokenizer } from "../lib/model/tokenizer.ts";
import { type BenchFormat, RandomPools } from "./random_weights.ts";
import { writeBenchJson } from "./report.ts";
import { randomModel } from "./speculative.ts";

const { values: args } = parseArgs({
  args: Deno.args,
  options: {
    out: { type: "string", default: "bench/out" },
    target: { type: "string", default: "fp16" },
    draft: { type: "string", default: "fp16" },
    calls: { type: "string" },
    ks: { type: "string", default: "1,2,3,4" },
    groups: { type: "string", default: "8-layers,8,32,auto" },
    "target-preset": { type: "string" },
    "draft-preset": { type: "string" },
    simulate: { type: "string" },
    tokens: { type: "string", default: "128" },
  },
});

const gpu = await requestGpu();
console.log(`adapter: ${gpu.describe()}`);
const calls = Number(args.calls ?? (gpu.isSoftware ? 10 : 200));
const dir = new URL("../models/", import.meta.url).pathname;
const tokens = Number(args.tokens);
const simulateAcceptance = args.simulate === undefined ? undefined : Number(args.simulate);
const pools = new RandomPools();
const load = (bundled: string, preset: string | undefined, format: string) =>
  preset === undefined
    ? LlamaModel.load(`${dir}${bundled}`, { gpu, format: format as QuantFormat })
    : randomModel({ gpu, pools }, preset, format as BenchFormat);
const target = await load("sotu-llama", args["target-preset"], args.target!);
const draft = await load("sotu-llama-draft", args["draft-preset"], args.draft!);
const prompt = args["target-preset"] === undefined
  ? (await loadTokenizer(`${dir}sotu-llama`)).encode("The state of the Union is")
  : [1, 2, 3, 4, 5, 6, 7, 8];

// Counts what CommandBatch records and submits, and the CPU time spent submitting (encoding the
// recorded dispatches into a command buffer, wgpu's validation, the queue submit).
let dispatches = 0;
let submits = 0;
let submitMs = 0;
const proto = CommandBatch.prototype as unknown as Record<string, (...a: unknown[]) => unknown>;
const dispatch = proto.dispatch;
proto.dispatch = function (this: unknown, ...a: unknown[]) {
  dispatches++;
  return dispatch.apply(this, a);
};
const submit = proto.submit;
proto.submit = function (this: unknown, ...a: unknown[]) {
  submits++;
  const t0 = performance.now();
  try {
    return submit.apply(this, a);
  } finally {
    submitMs += performance.now() - t0;
  }
};

// Readbacks: how long each mapAsync call blocks (until every submitted command has run) and how
// long its promise then takes to settle.
let readbacks = 0;
let blockedMs = 0;
let settleMs = 0;
let runStart = 0;
const timeline: string[] = [];
const bufferProto = GPUBuffer.prototype;
const mapAsync = bufferProto.mapAsync;
bufferProto.mapAsync = function (this: GPUBuffer, ...a: Parameters<GPUBuffer["mapAsync"]>) {
  readbacks++;
  const t0 = performance.now();
  const p = mapAsync.apply(this, a);
  const t1 = performance.now();
  blockedMs += t1 - t0;
  return p.finally(() => {
    const t2 = performance.now();
    settleMs += t2 - t1;
    timeline.push(
      `${(t0 - runStart).toFixed(1)}+${(t1 - t0).toFixed(1)}+${(t2 - t1).toFixed(1)}`,
    );
  });
};
const resetCounts = () => {
  dispatches =
    submits =
    submitMs =
    readbacks =
    blockedMs =
    settleMs =
      0;
  timeline.length = 0;
  runStart = performance.now();
};
const readbackLine = (ms: number) =>
  `${readbacks} readbacks, ${blockedMs.toFixed(1)} ms blocked in mapAsync, ` +
  `${settleMs.toFixed(1)} ms settling, of ${ms.toFixed(1)} ms (called at ms + blocked + ` +
  `settling: ${timeline.join(" ")})`;

interface Part {
  part: string;
  dispatchesPerCall: number;
  submitsPerCall: number;
  /** CPU ms to record and submit one call. */
  cpuMs: number;
  /** Wall ms per call with `calls` queued back to back and one wait at the end. */
  wallMs: number;
}
const parts: Part[] = [];

async function timeCalls(part: string, call: () => void): Promise<void> {
  call(); // warm: pipelines, bind groups
  await gpu.sync();
  resetCounts();
  let cpu = 0;
  const t0 = performance.now();
  for (let i = 0; i < calls; i++) {
    const c0 = performance.now();
    call();
    cpu += performance.now() - c0;
  }
  await gpu.sync();
  const wall = performance.now() - t0;
  const p = {
    part,
    dispatchesPerCall: dispatches / calls,
    submitsPerCall: submits / calls,
    cpuMs: cpu / calls,
    wallMs: wall / calls,
  };
  parts.push(p);
  console.log(
    `${part.padEnd(22)} ${p.dispatchesPerCall.toFixed(0).padStart(4)} dispatches, ` +
      `${p.submitsPerCall.toFixed(0)} submits: CPU ${p.cpuMs.toFixed(3)} ms, ` +
      `wall ${p.wallMs.toFixed(3)} ms per call`,
  );
}

try {
  // prompt in both caches, then the parts of a round at the position after it
  await target.forward(prompt, "none");
  await draft.forward(prompt.slice(0, -1), "none");
  const pos = target.position;
  target.setGpuStart(pos);
  draft.setGpuStart(pos - 1);
  for (const fused of [false, true]) {
    const why = await draft.fuseProposals(fused);
    if (fused && why) console.log(`draft not fused: ${why}`);
    const tag = draft.proposalsFused ? " (fused)" : "";
    for (const k of [1, 2, 4]) {
      await timeCalls(
        `draft proposes ${k}${tag}`,
        () => draft.proposeChained(k, target.tokenInput, pos),
      );
      if (!fused) await timeCalls(`target verifies ${k + 1}`, () => target.verifyChained(k, pos));
    }
  }
  target.setGpuStart(0);
  draft.setGpuStart(0);
  for (const inFlight of [8, 32, 64, "auto"] as const) {
    target.reset();
    resetCounts();
    const t0 = performance.now();
    const run = await target.decodeGreedy(prompt, { maxNewTokens: tokens, inFlight });
    const ms = performance.now() - t0;
    console.log(
      `decodeGreedy, ${inFlight} in flight: ${(run.tokens.length / (ms / 1000)).toFixed(1)} ` +
        `tok/s, ${(dispatches / run.tokens.length).toFixed(1)} dispatches and ` +
        `${(submits / run.tokens.length).toFixed(2)} submits per token, ` +
        `${(submitMs / run.tokens.length).toFixed(3)} CPU ms submitting per token; ` +
        `groups ${run.groups.join(",")}; ${readbackLine(ms)}`,
    );
  }
  // "8-layers": groups of 8 with the draft layer by layer; otherwise fused where it can be
  const groupSettings = args.groups!.split(",").map((g) => {
    const [n, layers] = g.split("-");
    return [n === "auto" ? "auto" : Number(n), layers !== "layers"] as const;
  });
  const ks = args.ks!.split(",").map((k) => k === "adaptive" ? undefined : Number(k));
  for (const k of ks) {
    for (const [groupRounds, fuseDraft] of groupSettings) {
      target.reset();
      draft.reset();
      const options = { draftTokens: k, groupRounds, fuseDraft, simulateAcceptance };
      await speculativeDecode(target, draft, prompt, { ...options, maxNewTokens: 16 }); // warm
      resetCounts();
      const t0 = performance.now();
      const run = await speculativeDecode(target, draft, prompt, {
        ...options,
        maxNewTokens: tokens,
      });
      const ms = performance.now() - t0;
      console.log(
        `speculative k=${k ?? "adaptive"}, groups of ${groupRounds}${
          run.draftFused ? ", fused" : ""
        }: ${(run.tokens.length / (ms / 1000)).toFixed(1)} tok/s, ${run.targetPasses} passes, ${
          (ms / run.targetPasses).toFixed(3)
        } ms, ` +
          `${(dispatches / run.targetPasses).toFixed(1)} dispatches and ${
            (submits / run.targetPasses).toFixed(2)
          } submits per pass, ${
            (submitMs / run.targetPasses).toFixed(3)
          } CPU ms submitting per pass; prompt pass ${run.prefillMs.toFixed(1)} ms; groups ${
            run.groups.join(",")
          }${k === undefined ? `; k ${run.draftLengths.join(",")}` : ""}; ${readbackLine(ms)}`,
      );
    }
  }
} finally {
  target.dispose();
  draft.dispose();
}
await writeBenchJson(args.out!, "spec-round.json", "bench/spec_round.ts", gpu.describe(), {
  target: args.target,
  draft: args.draft,
  calls,
}, parts);
gpu.destroy();
