/**
 * The benchmark suite behind `deno task bench`: the streaming-read and f32 FMA-rate references,
 * GEMV and GEMM per weight format at Llama-2-7B and Llama-3-8B shapes, and end-to-end greedy
 * decode of random models of those shapes. Writes `results.json`, `results.md` and `report.html`
 * (plots) to `--out` (default `bench/out`).
 *
 * Every kernel time is GPU time from timestamp queries (the median of many after a warm-up);
 * without `timestamp-query` (the GL backend) it is wall-clock time of the submission. Before each
 * timed GEMV a streaming read of a large buffer evicts the weights from the GPU's caches, as in a
 * real decode step where a layer's weights are read once per token. On a software adapter every
 * size is scaled down (dimensions ÷4 for kernels, ÷8 and layers ÷8 for the models) so that the
 * suite finishes in minutes.
 *
 * ```sh
 * deno task bench                                   # everything
 * deno task bench --sections reference,gemv --out /tmp/b
 * deno task bench --sweep                           # also GEMV launch shapes
 * deno task bench --sections speculative --spec-parts verify,simulated,bundled
 * ```
 *
 * @module
 */

import { parseArgs } from "node:util";
import { CommandBatch } from "../lib/gpu/batch.ts";
import { requestGpu } from "../lib/gpu/device.ts";
import { formatBytes } from "../lib/gpu/ledger.ts";
import type { GpuTensor } from "../lib/gpu/tensor.ts";
import type { Linear } from "../lib/kernels/linear.ts";
import type { QuantTuning } from "../lib/kernels/quant_linear.ts";
import { measureFmaRate } from "../lib/kernels/fma_peak.ts";
import { createStreamRead, type StreamRead } from "../lib/kernels/stream_read.ts";
import { LlamaModel } from "../lib/model/llama.ts";
import { createSampler } from "../lib/model/sampling.ts";
import { QUANT_FORMATS, type QuantFormat } from "../lib/quant/formats.ts";
import { barFigure } from "../lib/plot/generic.ts";
import { writeReport } from "../lib/plot/report.ts";
import {
  benchConfig,
  type BenchFormat,
  median,
  randomLinear,
  randomLinearFactory,
  RandomPools,
  RandomWeightSource,
} from "./random_weights.ts";
import { parseLlamaBench, sideBySide, sideBySideMarkdown } from "./llama_bench.ts";
import {
  type BenchResults,
  type DecodeModeResult,
  markdownReport,
  reportSections,
} from "./report.ts";
import { benchSpeculative, type SpeculativeBench, speculativeMarkdown } from "./speculative.ts";

/**
 * Ways to run the decode loop, timed one after another on the same model from the same position:
 * `step` calls forwardGreedy per token (each waits for its token); `pipeN` runs decodeGreedy
 * reading tokens back in groups of N (the next group running meanwhile; `pipe1` waits for each
 * token); `-fresh` creates every bind group again per step (the behaviour before bind groups were
 * reused); `sampled` runs decodeSampled (each token drawn on the GPU and fed back there, groups
 * "auto") and `sampled-cpu` the loop it replaced (forward, logits read back, createSampler), both
 * with {@linkcode SAMPLED_BENCH}. The first mode run is the headline number.
 */
const DECODE_MODES = [
  "pipe8",
  "step",
  "pipe1",
  "pipe2",
  "pipe4",
  "pipe16",
  "auto",
  "step-fresh",
  "pipe2-fresh",
  "sampled",
  "sampled-cpu",
] as const;
/** The sampling settings of the `sampled` and `sampled-cpu` decode modes. */
const SAMPLED_BENCH = { temperature: 0.8, topK: 40, topP: 0.95, seed: 1 };
const DEFAULT_DECODE_MODES = ["pipe8", "step", "pipe2", "pipe4", "pipe16"];
type DecodeMode = typeof DECODE_MODES[number];

const { values: args } = parseArgs({
  args: Deno.args,
  options: {
    out: { type: "string", default: "bench/out" },
    sections: { type: "string", default: "reference,gemv,gemm,decode,speculative" },
    formats: { type: "string", default: "fp16,int8-vectorwise,llm-int8,nf4,nf4-dq" },
    models: { type: "string", default: "llama-2-7b,llama-3-8b" },
    tokens: { type: "string" },
    reps: { type: "string" },
    sweep: { type: "boolean", default: false },
    "decode-modes": { type: "string", default: DEFAULT_DECODE_MODES.join(",") },
    "llama-bench": { type: "string" },
    "spec-parts": { type: "string", default: "verify,simulated,bundled" },
    "spec-groups": { type: "string", default: "0,auto" },
    "spec-alone": { type: "string", default: "8,auto" },
    "spec-k": { type: "string" },
    "spec-tokens": { type: "string" },
    "spec-targets": { type: "string" },
    "spec-pairs": { type: "string" },
    "spec-sampling": { type: "string" },
    "extra-shapes": { type: "string", default: "" },
    "sweep-formats": { type: "string", default: "fp16,int8-vectorwise,nf4" },
    "warm-ms": { type: "string" },
    tuning: { type: "string" },
    "gemv-tunings": { type: "string", default: "[{}]" },
    "gemm-tunings": { type: "string", default: "[{}]" },
    "gemm-rows": { type: "string" },
    stack: { type: "string", default: "all" },
    "stack-swiglu": { type: "string", default: "true" },
    "prompt-lengths": { type: "string", default: "1,8,32" },
    "short-prompt": { type: "string" },
    help: { type: "boolean", default: false },
  },
});
if (args.help) {
  console.log(
    "deno task bench [--out DIR] [--sections reference,gemv,gemm,decode,speculative]\n" +
      "                [--formats LIST] [--spec-parts verify,simulated,bundled]\n" +
      "                [--spec-groups 0,auto]              (bundled pair: rounds per readback)\n" +
      "                [--spec-alone 8,auto]               (bundled target alone: tokens in flight;\n" +
      "                                                     speed-ups against the fastest)\n" +
      "                [--spec-k adaptive,1,2,3,4]         (bundled pair: draft lengths)\n" +
      "                [--spec-tokens 192]                 (simulated pairs: new tokens per call)\n" +
      "                [--spec-targets llama-2-7b,llama-3-8b] (simulated pairs: their targets)\n" +
      "                [--spec-pairs fp16+fp16,nf4+fp16]   (bundled pair: target + draft formats)\n" +
      "                [--spec-sampling 0.8,40,0.95]       (bundled pair: sample with T, top-k, top-p)\n" +
      "                [--sweep [--sweep-formats LIST]] [--extra-shapes NxK,...]\n" +
      "                [--models llama-2-7b,llama-3-8b] [--tokens N] [--reps N] [--sweep]\n" +
      `                [--decode-modes ${DECODE_MODES.join(",")}]\n` +
      "                [--llama-bench LLAMA_BENCH.jsonl]   (side by side with llama.cpp)\n" +
      "                [--tuning JSON]                     (QuantTuning of the decode models)\n" +
      "                [--gemv-tunings JSON]               (a list of tunings the gemv section compares)\n" +
      "                [--gemm-tunings JSON]               (a list of tunings the gemm section compares)\n" +
      "                [--gemm-rows 128,512]               (gemm: activation rows; default the prefill's)\n" +
      "                [--stack all|fp16|none]             (q/k/v, gate/up stacked for decode)\n" +
      "                [--stack-swiglu true|false]         (FP16 gate/up writing SwiGLU itself)\n" +
      "                [--prompt-lengths 1,8,32]           (decode: time to the first token by prompt length)\n" +
      "                [--short-prompt N]                  (the decode models' shortPromptTokens)",
  );
  Deno.exit(0);
}
const sections = new Set(args.sections!.split(","));
const promptLengths = args["prompt-lengths"]!.split(",").filter((v) => v !== "").map(Number);
if (promptLengths.some((n) => !Number.isInteger(n) || n < 1 || n > 512)) {
  throw new Error(`--prompt-lengths: integers 1..512, got ${args["prompt-lengths"]}`);
}
const specTokens = args["spec-tokens"] === undefined ? undefined : Number(args["spec-tokens"]);
if (
  specTokens !== undefined &&
  !(Number.isInteger(specTokens) && specTokens >= 2 && specTokens <= 400)
) {
  throw new Error(
    `--spec-tokens: an integer 2..400 (the models hold 512 positions), got ${args["spec-tokens"]}`,
  );
}
// --spec-sampling T,K,P: the bundled pair samples (seed 1, then one more per prompt)
const specSampling = args["spec-sampling"] === undefined ? undefined : (() => {
  const [temperature, topK, topP] = args["spec-sampling"]!.split(",").map(Number);
  if (!(temperature > 0) || !Number.isInteger(topK) || topK < 0 || !(topP > 0 && topP <= 1)) {
    throw new Error(
      `--spec-sampling: T,K,P with T above 0, K an integer >= 0, P in (0, 1]; got ${
        args["spec-sampling"]
      }`,
    );
  }
  return { temperature, topK, topP, seed: 1 };
})();
const decodeModes = args["decode-modes"]!.split(",") as DecodeMode[];
for (const m of decodeModes) {
  if (!DECODE_MODES.includes(m)) throw new Error(`unknown decode mode ${m}`);
}
const formats = args.formats!.split(",") as BenchFormat[];
// Read first: a bad file fails now, not after the measurements.
const llamaBench = args["llama-bench"]
  ? parseLlamaBench(await Deno.readTextFile(args["llama-bench"]), args["llama-bench"])
  : null;

const gpu = await requestGpu();
const software = gpu.isSoftware;
const started = new Date();
console.log(`adapter: ${gpu.describe()}`);
const reps = Number(args.reps ?? (software ? 5 : 50));
const warmMs = Number(args["warm-ms"] ?? (software ? 0 : 50));
// --tuning JSON: launch shapes for every quantized layer of the decode models (QuantTuning).
const decodeTuning = args.tuning ? JSON.parse(args.tuning) as QuantTuning : undefined;
// --gemm-tunings '[{}, {"gemmOuterRows": 0}]': the gemm section measures each shape and format
// once per tuning, in this order (GEMM tiles against each other in one run).
// --gemv-tunings likewise for the gemv section (e.g. table layouts against each other).
function tuningList(option: "gemv-tunings" | "gemm-tunings"): QuantTuning[] {
  const list = JSON.parse(args[option]!) as QuantTuning[];
  if (!Array.isArray(list) || list.length === 0) {
    throw new Error(`--${option}: a non-empty JSON list of tunings, got ${args[option]}`);
  }
  return list;
}
const gemvTunings = tuningList("gemv-tunings");
const gemmTunings = tuningList("gemm-tunings");
// Which decode models stack q/k/v and gate/up (LoadOptions.stackLayers): every format that can
// (default), FP16 only (the quantized layers as they were before QuantLinearStack), or none.
if (!["all", "fp16", "none"].includes(args.stack!)) throw new Error(`--stack ${args.stack}`);
const pools = new RandomPools();

// Llama-2-7B: 4096x4096 (q,k,v,o), 11008x4096 (gate, up), 4096x11008 (down).
// Llama-3-8B: 14336x4096 (gate, up), 4096x14336 (down); 1024x4096 k/v (not benchmarked alone).
const FULL_SHAPES: { model: string; n: number; k: number }[] = [
  { model: "7B q/k/v/o", n: 4096, k: 4096 },
  { model: "7B gate/up", n: 11008, k: 4096 },
  { model: "7B down", n: 4096, k: 11008 },
  { model: "8B gate/up", n: 14336, k: 4096 },
  { model: "8B down", n: 4096, k: 14336 },
];
const SCALE = software ? 4 : 1;
const shapes = FULL_SHAPES.map((s) => ({ ...s, n: s.n / SCALE, k: s.k / SCALE }));
// --extra-shapes NxK,...: more GEMV shapes (GEMV section only), e.g. to probe one shape's
// neighbours.
const extraShapes = args["extra-shapes"]!.split(",").filter((v) => v).map((v) => {
  const [n, k] = v.split("x").map(Number);
  if (!(n > 0 && k > 0 && k % 8 === 0)) throw new Error(`--extra-shapes: bad shape ${v}`);
  return { model: "extra", n, k };
});
const prefillRows = software ? 32 : 512;
// --gemm-rows: the GEMM section's activation rows (default: the prefill's), e.g. shorter prompts
// whose products have fewer tiles than the GPU has SMs
const gemmRowsList = (args["gemm-rows"] ?? `${prefillRows}`).split(",").map(Number);
if (!gemmRowsList.every((r) => Number.isInteger(r) && r >= 2)) {
  throw new Error(`--gemm-rows: integers from 2, got ${args["gemm-rows"]}`);
}

const results: BenchResults = {
  meta: {
    date: started.toISOString(),
    command: `deno task bench${Deno.args.length ? " " + Deno.args.join(" ") : ""}`,
    adapter: gpu.describe(),
    software,
    f16: gpu.f16,
    timestamps: gpu.timestamps,
    deno: Deno.version.deno,
    reps,
    scale: software ? "kernel dims ÷4; models: dims ÷8, layers ÷8, vocab ÷8" : "full size",
  },
  reference: null,
  gemv: [],
  gemm: [],
  decode: [],
  sweep: [],
};

const out = args.out!;
await Deno.mkdir(out, { recursive: true });
/** Writes what is measured so far, so a run cut short keeps its finished sections. */
async function save(): Promise<void> {
  await Deno.writeTextFile(
    `${out}/results.json`,
    JSON.stringify(speculative ? { ...results, speculative } : results, null, 2) + "\n",
  );
  await Deno.writeTextFile(
    `${out}/results.md`,
    markdownReport(results) + (speculative ? "\n" + speculativeMarkdown(speculative) : ""),
  );
}
/** The speculative-decoding section's results (bench/speculative.ts), once it has run. */
let speculative: SpeculativeBench | null = null;

// ---------------------------------------------------------------------------------------------
// Timing helpers

/** Median of a list. */

/**
 * Times `count` repetitions of `run` in one submission: per repetition, the sum of its
 * dispatches and its last dispatch. `flush` is recorded before each repetition and not counted.
 */
async function timeReps(
  run: (batch: CommandBatch) => void,
  count: number,
  flush?: (batch: CommandBatch) => void,
): Promise<{ total: number; last: number; dispatches: number; flushGBps: number }> {
  warmUp();
  const batch = new CommandBatch(gpu);
  const starts: number[] = [];
  for (let i = 0; i < count; i++) {
    flush?.(batch);
    starts.push(batch.dispatchCount);
    run(batch);
  }
  const ends = [...starts.slice(1).map((s) => s - (flush ? 1 : 0)), batch.dispatchCount];
  const t = await batch.submitTimed();
  if (t.length === 1 && t[0].kernel === "batch (wall clock)") {
    return { total: t[0].ms / count, last: NaN, dispatches: ends[0] - starts[0], flushGBps: NaN };
  }
  const totals: number[] = [];
  const lasts: number[] = [];
  const flushes: number[] = [];
  for (let i = 0; i < count; i++) {
    const group = t.slice(starts[i], ends[i]);
    totals.push(group.reduce((s, d) => s + d.ms, 0));
    lasts.push(group[group.length - 1].ms);
    if (flush) flushes.push(t[starts[i] - 1].ms);
  }
  return {
    total: median(totals),
    last: median(lasts),
    dispatches: ends[0] - starts[0],
    // The flush is a streaming read too: its bandwidth in the same submission shows the clocks
    // the product ran at.
    flushGBps: flush ? flushBytes / median(flushes) / 1e6 : NaN,
  };
}

/**
 * Keeps the GPU busy for about `--warm-ms` (default 50 on a hardware adapter) just before a timed
 * submission, without waiting: the timed work follows it in the queue with no idle gap. On the
 * H200 the clocks dropped between the short timed bursts (each case's setup leaves the GPU idle
 * for longer than it runs): without this the streaming read measured after a GEMV sweep gave
 * 1818 GB/s against 4429 before it, and the late shapes of the GEMV table ran at a quarter of
 * their speed.
 */
function warmUp(): void {
  if (warmMs <= 0) return;
  const b = new CommandBatch(gpu);
  const msPerRead = refBytes / ((refGBps || 4000) * 1e6); // a guess until the reference is known
  const reads = Math.max(1, Math.ceil(warmMs / msPerRead));
  for (let i = 0; i < Math.min(reads, 1000); i++) reader.encode(b, refSrc, refOut);
  b.submit();
}

// The streaming-read reference doubles as the cache flush: a buffer several times any L2.
const refBytes = software ? 64 * 2 ** 20 : 1024 * 2 ** 20;
const flushBytes = software ? 32 * 2 ** 20 : 256 * 2 ** 20;
const reader: StreamRead = await createStreamRead(gpu, {
  workgroups: software ? 64 : 2048,
});
const refSrc = gpu.tensor({ label: "stream source", category: "scratch", byteSize: refBytes });
const refOut = gpu.tensor({ label: "stream out", category: "scratch", byteSize: reader.outBytes });
{
  // something other than zeros to read
  const b = new CommandBatch(gpu);
  b.clear(refSrc);
  b.submit();
}
const flushSrc = gpu.tensor({ label: "cache flush", category: "scratch", byteSize: flushBytes });
const flush = (batch: CommandBatch) => reader.encode(batch, flushSrc, refOut);

async function streamReference(): Promise<number> {
  const run = (batch: CommandBatch) => reader.encode(batch, refSrc, refOut);
  await timeReps(run, 3);
  const { total } = await timeReps(run, software ? 5 : 30);
  return refBytes / total / 1e6; // GB/s
}

// Reference first, then once more at the end: the ratio uses the larger (clock warm-up).
let refGBps = 0;
if (sections.has("reference") || sections.has("gemv") || sections.has("decode")) {
  refGBps = await streamReference();
  console.log(`reference streaming read ${formatBytes(refBytes)}: ${refGBps.toFixed(1)} GB/s`);
  results.reference = { bytes: refBytes, gbps: refGBps, first: refGBps, again: NaN };
}
// The arithmetic ceiling next to it, for the GEMM lines (NaN: not measured).
let fmaTflops = NaN;
if (sections.has("reference")) {
  fmaTflops = await measureFmaRate(gpu);
  console.log(`reference f32 FMA rate: ${fmaTflops.toFixed(2)} TFLOP/s`);
  results.reference!.fmaTflops = fmaTflops;
}

// ---------------------------------------------------------------------------------------------
// GEMV and GEMM per format

/** x for one product: N(0,1)-ish, with outlier columns (|x| 8..12) in 0.5% of them. */
function activations(rows: number, k: number): Float32Array {
  const x = new Float32Array(rows * k);
  let s = 7;
  for (let i = 0; i < x.length; i++) {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    x[i] = (s / 2 ** 32 - 0.5) * 3;
  }
  for (let c = 3; c < k; c += 200) for (let r = 0; r < rows; r++) x[r * k + c] = 8 + (c % 5);
  return x;
}

async function productCase(
  format: BenchFormat,
  n: number,
  k: number,
  rows: number,
  tuning?: QuantTuning,
): Promise<
  { lin: Linear; ms: number; productMs: number; dispatches: number; flushGBps: number }
> {
  const lin = await randomLinear(gpu, pools, format, n, k, { tuning });
  const x = gpu.tensor({ label: "x", category: "activations", data: activations(rows, k) });
  const y = gpu.tensor({ label: "y", category: "activations", byteSize: rows * n * 4 });
  try {
    const run = (batch: CommandBatch) => lin.encode(batch, x, y, rows);
    const f = rows === 1 ? flush : undefined;
    const count = rows === 1 ? reps : Math.max(3, Math.round(reps / 5));
    await timeReps(run, 2, f); // pipelines and clocks
    const t = await timeReps(run, count, f);
    return {
      lin,
      ms: t.total,
      productMs: t.last,
      dispatches: t.dispatches,
      flushGBps: t.flushGBps,
    };
  } finally {
    x.destroy();
    y.destroy();
    lin.destroy();
  }
}

if (sections.has("gemv")) {
  for (const s of [...shapes, ...extraShapes]) {
    for (const format of formats) {
      for (const t of gemvTunings) {
        const tuning = Object.keys(t).length ? t : undefined;
        const r = await productCase(format, s.n, s.k, 1, tuning);
        const bytes = r.lin.weightBytes + s.k * 4; // weights + scales + x (f32)
        const gbps = bytes / r.ms / 1e6;
        results.gemv.push({
          format,
          shape: s.model,
          n: s.n,
          k: s.k,
          bytes,
          ms: r.ms,
          productMs: r.productMs,
          dispatches: r.dispatches,
          gbps,
          ofReference: gbps / refGBps,
          flushGBps: r.flushGBps,
          ...(tuning ? { tuning } : {}),
        });
        console.log(
          `gemv ${format.padEnd(16)} ${`${s.n}x${s.k}`.padEnd(11)} ${r.ms.toFixed(4)} ms ` +
            `(product ${r.productMs.toFixed(4)}) ${gbps.toFixed(1)} GB/s ` +
            `${(100 * gbps / refGBps).toFixed(1)}% of reference; flush read ` +
            `${r.flushGBps.toFixed(0)} GB/s${tuning ? ` ${JSON.stringify(tuning)}` : ""}`,
        );
      }
    }
  }
}

await save();

if (sections.has("gemm")) {
  for (const [s, gemmRows] of shapes.flatMap((s) => gemmRowsList.map((r) => [s, r] as const))) {
    for (const format of formats) {
      for (const t of gemmTunings) {
        const tuning = Object.keys(t).length ? t : undefined;
        const r = await productCase(format, s.n, s.k, gemmRows, tuning).catch((err) => {
          // A tile option the adapter cannot hold (workgroup storage, invocations) is refused by
          // name when the layer is built: say so and measure the rest.
          if (!(err instanceof RangeError)) throw err;
          console.log(
            `gemm ${format.padEnd(16)} ${JSON.stringify(tuning)} skipped: ${err.message}`,
          );
          return undefined;
        });
        if (!r) continue;
        const tflops = 2 * gemmRows * s.n * s.k / r.ms / 1e9;
        results.gemm.push({
          format,
          shape: s.model,
          rows: gemmRows,
          n: s.n,
          k: s.k,
          ms: r.ms,
          productMs: r.productMs,
          tflops,
          ...(tuning ? { tuning } : {}),
        });
        console.log(
          `gemm ${format.padEnd(16)} ${gemmRows}x${s.k}·(${s.n}x${s.k})ᵀ ${r.ms.toFixed(3)} ms ` +
            `${tflops.toFixed(2)} TFLOP/s` +
            (Number.isFinite(fmaTflops)
              ? ` ${(100 * tflops / fmaTflops).toFixed(1)}% of the FMA rate`
              : "") +
            (tuning ? ` ${JSON.stringify(tuning)}` : ""),
        );
      }
    }
  }
}

await save();

// --sweep: GEMV launch shapes per format at every shape (tuning the defaults on a new GPU):
// threads per row 16-256 (256: one row group per workgroup, long rows spread over the most
// workgroups), 128-thread workgroups, 8 rows per thread group for 4-bit, and the 4-bit f16
// variants (loads a step ahead, the per-bank table).
if (args.sweep) {
  const sweepShapes = shapes;
  for (const s of sweepShapes) {
    for (const format of args["sweep-formats"]!.split(",") as BenchFormat[]) {
      const fourBit = format === "nf4" || format === "nf4-dq";
      const tunings: QuantTuning[] = [];
      for (const tpr of fourBit ? [16, 32, 64, 128] : [16, 32, 64, 128, 256]) {
        tunings.push({ gemvWorkgroupSize: 256, gemvThreadsPerRow: tpr, gemvRowsPerThread: 4 });
      }
      for (const tpr of [32, 64]) {
        tunings.push({ gemvWorkgroupSize: 128, gemvThreadsPerRow: tpr, gemvRowsPerThread: 4 });
      }
      if (fourBit) {
        for (const tpr of [32, 64]) {
          tunings.push({ gemvWorkgroupSize: 256, gemvThreadsPerRow: tpr, gemvRowsPerThread: 8 });
        }
        for (const tpr of [16, 32, 64]) {
          tunings.push({ gemvWorkgroupSize: 256, gemvThreadsPerRow: tpr, gemvRowsPerThread: 2 });
          tunings.push({
            gemvWorkgroupSize: 256,
            gemvThreadsPerRow: tpr,
            gemvRowsPerThread: 2,
            gemvPrefetch: true,
          });
        }
        for (const tpr of [16, 32, 64]) {
          for (const rpt of [2, 4]) {
            tunings.push({
              gemvWorkgroupSize: 256,
              gemvThreadsPerRow: tpr,
              gemvRowsPerThread: rpt,
              gemvFullX: true,
            });
          }
        }
        for (const tpr of [32, 64, 128]) {
          for (
            const v of [
              { gemvPrefetch: true },
              { gemvTable: "banked" as const },
              { gemvPrefetch: true, gemvTable: "banked" as const },
            ]
          ) {
            tunings.push({
              gemvWorkgroupSize: 256,
              gemvThreadsPerRow: tpr,
              gemvRowsPerThread: 4,
              ...v,
            });
          }
        }
      }
      for (const t of tunings) {
        let r;
        try {
          r = await productCase(format, s.n, s.k, 1, t);
        } catch (err) {
          // e.g. more workgroup memory than this adapter allows
          console.log(`sweep ${format} ${s.n}x${s.k} ${JSON.stringify(t)}: ${err}`);
          continue;
        }
        const bytes = r.lin.weightBytes + s.k * 4;
        const gbps = bytes / r.ms / 1e6;
        const variant = [
          t.gemvFullX ? "fullx" : "",
          t.gemvPrefetch ? "prefetch" : "",
          t.gemvTable === "banked" ? "banked" : "",
        ]
          .filter((v) => v).join("+") || undefined;
        results.sweep.push({
          format,
          n: s.n,
          k: s.k,
          workgroupSize: t.gemvWorkgroupSize!,
          threadsPerRow: t.gemvThreadsPerRow!,
          rowsPerThread: fourBit ? t.gemvRowsPerThread! : 1,
          variant,
          ms: r.ms,
          gbps,
          ofReference: gbps / refGBps,
          flushGBps: r.flushGBps,
        });
        console.log(
          `sweep ${format} ${s.n}x${s.k} wg=${t.gemvWorkgroupSize} tpr=${t.gemvThreadsPerRow} ` +
            `rpt=${fourBit ? t.gemvRowsPerThread : 1}${variant ? " " + variant : ""}: ` +
            `${r.ms.toFixed(4)} ms ${gbps.toFixed(1)} GB/s ${(100 * gbps / refGBps).toFixed(1)}%` +
            ` (flush read ${r.flushGBps.toFixed(0)} GB/s)`,
        );
      }
    }
  }
  const again = await streamReference();
  console.log(`reference streaming read after the sweep: ${again.toFixed(1)} GB/s`);
}

await save();

// ---------------------------------------------------------------------------------------------
// End-to-end decode of random models

async function decode(preset: string, format: BenchFormat): Promise<void> {
  const config = benchConfig(preset, software);
  const tokens = Number(args.tokens ?? (software ? 8 : 64));
  const warm = software ? 2 : 8;
  gpu.ledger.resetPeak();
  const before = gpu.ledger.currentBytes;
  const t0 = performance.now();
  const model = await LlamaModel.fromCheckpoint(config, new RandomWeightSource(pools), {
    gpu,
    format,
    // FP16 takes the model's own layers (random f16 weights from the source), so q/k/v and
    // gate/up are stacked as in a loaded model; the other formats get random packed weights.
    // FP16 layers get --tuning too when it is given (their GEMM tiles, for instance).
    linear: format === "fp16" && !decodeTuning
      ? undefined
      : randomLinearFactory(pools, format, decodeTuning),
    stackLayers: args.stack === "all" || (args.stack === "fp16" && format === "fp16"),
    stackSwiglu: args["stack-swiglu"] !== "false",
    shortPromptTokens: args["short-prompt"] === undefined
      ? undefined
      : Number(args["short-prompt"]),
    // Prefill runs the whole prompt as one chunk, as llama-bench's pp512 (ubatch 512) does.
    maxSeqLen: 2 * prefillRows + 512,
    chunkSize: prefillRows,
  });
  const loadS = (performance.now() - t0) / 1000;
  try {
    // End-to-end prefill: `prefillRows` prompt tokens from an empty cache to the first token
    // (embeddings, every layer as GEMMs, the LM head of the last row, the readback). Wall clock,
    // median of three after one untimed run.
    const promptLong = Array.from({ length: prefillRows }, (_, i) => 1 + (i * 7919) % 1000);
    const prefillTimes: number[] = [];
    for (let i = 0; i < 4; i++) {
      model.reset();
      const p0 = performance.now();
      await model.forwardGreedy(promptLong);
      if (i > 0) prefillTimes.push(performance.now() - p0);
    }
    const prefillMs = median(prefillTimes);
    console.log(
      `  prefill ${prefillRows} tokens: ${(prefillRows * 1000 / prefillMs).toFixed(1)} tok/s ` +
        `(${prefillMs.toFixed(1)} ms)`,
    );
    // Time to the first token by prompt length (short prompts take the multi-row products up
    // to the model's shortPromptTokens, longer ones the GEMM): wall clock, median of three after
    // one untimed run.
    const firstToken: { tokens: number; ms: number }[] = [];
    for (const n of promptLengths) {
      const times: number[] = [];
      for (let i = 0; i < 4; i++) {
        model.reset();
        const p0 = performance.now();
        await model.forwardGreedy(promptLong.slice(0, n));
        if (i > 0) times.push(performance.now() - p0);
      }
      firstToken.push({ tokens: n, ms: median(times) });
    }
    if (firstToken.length) {
      console.log(
        "  first token after a prompt of " +
          firstToken.map((t) => `${t.tokens}: ${t.ms.toFixed(1)} ms`).join(", "),
      );
    }
    // Every mode starts from the same position: a reset, an 8-token prompt, `warm` steps.
    const prompt = [1, 2, 3, 4, 5, 6, 7, 8];
    const startAt = async (): Promise<number> => {
      model.reset();
      let t = await model.forwardGreedy(prompt);
      for (let i = 0; i < warm; i++) t = await model.forwardGreedy([t]);
      return t;
    };
    const modes: DecodeModeResult[] = [];
    let tok = 1;
    let startPos = 0;
    let sequence: number[] | null = null;
    for (const mode of decodeModes) {
      model.reuseBindGroups = !mode.endsWith("-fresh");
      tok = await startAt();
      startPos = model.position;
      let encodeMs = 0;
      const produced: number[] = [];
      const t1 = performance.now();
      if (mode === "sampled" || mode === "sampled-cpu") {
        // random weights make a flat distribution: the cuts keep 40 tokens, then the nucleus
        if (mode === "sampled") {
          const run = await model.decodeSampled([tok], {
            maxNewTokens: tokens,
            inFlight: "auto",
            sampling: SAMPLED_BENCH,
          });
          encodeMs = run.encodeMs ?? NaN;
          produced.push(...run.tokens);
        } else {
          encodeMs = NaN; // each step waits for its logits: no encoding figure apart
          const sample = createSampler(SAMPLED_BENCH);
          let next = tok;
          for (let i = 0; i < tokens; i++) {
            next = sample(await model.forward([next], "last"));
            produced.push(next);
          }
        }
        tok = produced[produced.length - 1];
      } else if (mode.startsWith("step")) {
        for (let i = 0; i < tokens; i++) {
          const e0 = performance.now();
          // Returns its promise after encoding, submit, and mapAsync's blocking wait (Deno).
          const pending = model.forwardGreedy([tok]);
          encodeMs += performance.now() - e0;
          tok = await pending;
          produced.push(tok);
        }
      } else {
        // "auto": decodeGreedy's own default on a GPU (groups of about 25 ms of steps)
        const inFlight = mode === "auto" ? "auto" : Number(mode.slice(4).replace("-fresh", ""));
        const run = await model.decodeGreedy([tok], { maxNewTokens: tokens, inFlight });
        encodeMs = run.encodeMs ?? NaN; // recording + encoding + submit, every step
        produced.push(...run.tokens);
        tok = produced[produced.length - 1];
      }
      const ms = (performance.now() - t1) / tokens;
      // Every greedy path must produce the same tokens (the weights are random, the argmax is not).
      if (mode.startsWith("sampled")) {
        // drawn tokens differ by path
      } else if (sequence && produced.join() !== sequence.join()) {
        throw new Error(`decode mode ${mode} produced other tokens than ${decodeModes[0]}`);
      }
      if (!mode.startsWith("sampled")) sequence ??= produced;
      modes.push({
        mode,
        msPerToken: ms,
        tokensPerSecond: 1000 / ms,
        encodeMs: encodeMs / tokens,
      });
      console.log(
        `  ${mode.padEnd(12)} ${(1000 / ms).toFixed(1)} tok/s (${ms.toFixed(2)} ms/token` +
          (mode.startsWith("step")
            ? `; sync part ${(encodeMs / tokens).toFixed(2)} ms)`
            : `; CPU encode+submit ${(encodeMs / tokens).toFixed(2)} ms/token)`),
      );
    }
    model.reuseBindGroups = true;
    const wallMs = modes[0].msPerToken;
    const midPos = startPos + tokens / 2;
    // GPU time of one decode step (no argmax), median of three
    const gpuTimes: number[] = [];
    let dispatches = 0;
    const byKernel: Record<string, { ms: number; count: number }> = {};
    for (let i = 0; i < 3; i++) {
      const t = await model.timeForward([tok]);
      dispatches = t.length;
      gpuTimes.push(t.reduce((s, d) => s + d.ms, 0));
      if (i === 2) {
        for (const d of t) {
          const e = byKernel[d.kernel] ??= { ms: 0, count: 0 };
          e.ms += d.ms;
          e.count++;
        }
      }
    }
    const gpuMs = median(gpuTimes);
    // the same step timed whole, in one compute pass as decoding runs it (no pass per kernel)
    const onePassTimes: number[] = [];
    for (let i = 0; i < 5; i++) {
      onePassTimes.push((await model.timeForward([tok], { whole: true }))[0].ms);
    }
    const onePassMs = median(onePassTimes);
    const c = config;
    const kvDim = c.numKvHeads * c.headDim;
    const linearBytes = model.layers.reduce(
      (s, l) => s + Object.values(l.linears).reduce((a, lin) => a + lin.weightBytes, 0),
      0,
    );
    const bytesPerToken = linearBytes + model.lmHead.weightBytes +
      (2 * c.numLayers + 1) * c.hiddenSize * 4 + c.hiddenSize * 2 +
      2 * c.numLayers * midPos * kvDim * 2;
    const rooflineTokS = refGBps * 1e9 / bytesPerToken;
    const tokS = 1000 / wallMs;
    const snap = gpu.ledger.snapshot();
    results.decode.push({
      model: preset,
      format,
      layers: c.numLayers,
      tokens,
      loadSeconds: loadS,
      msPerToken: wallMs,
      tokensPerSecond: tokS,
      prefillTokens: prefillRows,
      prefillMs,
      prefillTokensPerSecond: prefillRows * 1000 / prefillMs,
      firstToken,
      gpuMsPerToken: gpuMs,
      gpuOnePassMsPerToken: onePassMs,
      dispatchesPerToken: dispatches,
      bytesPerToken,
      rooflineTokensPerSecond: rooflineTokS,
      ofRoofline: tokS / rooflineTokS,
      gpuOfRoofline: (1000 / gpuMs) / rooflineTokS,
      ledgerPeakBytes: snap.peakBytes - before,
      ledger: snap.byCategory,
      kernels: byKernel,
      mode: modes[0].mode,
      modes,
    });
    const top = Object.entries(byKernel).sort((a, b) => b[1].ms - a[1].ms).slice(0, 6);
    console.log(
      "  GPU time by kernel: " +
        top.map(([k, v]) => `${k} ${v.ms.toFixed(2)} ms/${v.count}`).join("; "),
    );
    console.log(
      `decode ${preset} ${format.padEnd(16)} ${tokS.toFixed(1)} tok/s (${wallMs.toFixed(2)} ms; ` +
        `GPU ${gpuMs.toFixed(2)} ms, one pass ${onePassMs.toFixed(2)} ms, ${dispatches} ` +
        `dispatches) roofline ${rooflineTokS.toFixed(1)} tok/s → ${
          (100 * tokS / rooflineTokS).toFixed(1)
        }%; weights ${formatBytes(snap.byCategory.weights)}, peak ${
          formatBytes(snap.peakBytes - before)
        }; load ${loadS.toFixed(1)} s`,
    );
  } finally {
    model.dispose();
    await gpu.sync();
  }
}

if (sections.has("decode")) {
  for (const preset of args.models!.split(",")) {
    for (const format of formats) {
      await decode(preset, format);
      await save();
    }
  }
}

if (sections.has("speculative")) {
  await benchSpeculative({
    gpu,
    pools,
    formats,
    parts: args["spec-parts"]!.split(",") as ("verify" | "simulated" | "bundled")[],
    groups: args["spec-groups"]!.split(",").map((v) => v === "auto" ? "auto" : Number(v)),
    aloneInFlight: args["spec-alone"]!.split(",").map((v) => v === "auto" ? "auto" : Number(v)),
    draftLengths: args["spec-k"]?.split(",").map((v) => v === "adaptive" ? v : Number(v)),
    sampling: specSampling,
    simulatedTokens: specTokens,
    simulatedTargets: args["spec-targets"]?.split(","),
    pairs: args["spec-pairs"]?.split(",").map((v) => {
      const [t, d] = v.split("+");
      for (const f of [t, d]) {
        if (!QUANT_FORMATS.includes(f as QuantFormat)) {
          throw new Error(`--spec-pairs: unknown format "${f}" in "${v}" (${QUANT_FORMATS})`);
        }
      }
      return [t, d] as [BenchFormat, BenchFormat];
    }),
    onPart: async (r) => {
      speculative = r;
      await save();
    },
  });
}

if (sections.has("reference")) {
  const again = await streamReference();
  console.log(`reference streaming read, again: ${again.toFixed(1)} GB/s`);
  results.reference = {
    bytes: refBytes,
    gbps: Math.max(refGBps, again),
    first: refGBps,
    again,
    fmaTflops,
  };
}

// ---------------------------------------------------------------------------------------------
// Output

if (llamaBench && software) {
  console.log("no side by side with llama.cpp: a software adapter runs scaled-down models");
} else if (llamaBench) {
  results.sideBySide = sideBySide(results.decode, llamaBench);
  const md = sideBySideMarkdown(results.sideBySide);
  console.log(`\nside by side with llama.cpp (${args["llama-bench"]}):\n${md}`);
}
await save();
const gemvFormats = [...new Set(results.gemv.map((g) => g.format))];
const gemvShapes = [...new Set(results.gemv.map((g) => `${g.n}x${g.k}`))];
const decodeModels = [...new Set(results.decode.map((d) => d.model))];
try {
  await writeReport(`${out}/report.html`, {
    title: `qlab benchmarks — ${gpu.describe()}`,
    sections: reportSections(results, {
      gemv: results.gemv.length
        ? barFigure(
          gemvShapes,
          gemvFormats.map((f) => ({
            name: f,
            values: gemvShapes.map((s) =>
              100 *
              (results.gemv.find((g) => g.format === f && `${g.n}x${g.k}` === s)?.ofReference ??
                NaN)
            ),
          })),
          { title: "GEMV bandwidth, % of the streaming-read reference", valueTitle: "%" },
        )
        : null,
      decode: results.decode.length
        ? barFigure(
          [...new Set(results.decode.map((d) => d.format))],
          decodeModels.flatMap((m) => [
            {
              name: `${m} tokens/s`,
              values: results.decode.filter((d) => d.model === m).map((d) => d.tokensPerSecond),
            },
            {
              name: `${m} roofline`,
              values: results.decode.filter((d) => d.model === m).map((d) =>
                d.rooflineTokensPerSecond
              ),
            },
          ]),
          { title: "Greedy decode, random weights", valueTitle: "tokens/s" },
        )
        : null,
    }),
  });
  console.log(`wrote ${out}/results.json, results.md, report.html`);
} catch (err) {
  // plotly.js is an npm package: a machine without it still gets the JSON and markdown, and
  // `deno run -A tools/bench_report.ts DIR/results.json` draws the report elsewhere.
  console.log(`wrote ${out}/results.json, results.md; no report.html: ${(err as Error).message}`);
}
for (const t of [refSrc, refOut, flushSrc] as GpuTensor[]) t.destroy();
gpu.destroy();
