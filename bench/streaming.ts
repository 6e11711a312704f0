/**
 * Layer streaming at real model shapes: decode and prefill tokens/s of random Llama-2-7B and
 * Llama-3-8B models fully resident and under GPU memory budgets (`vramBudget`), per weight
 * format, next to the bounds the upload paths set (streamed bytes per token ÷ their rates, both
 * measured in the same run): a copy from a `MAP_WRITE | COPY_SRC` buffer ("mapped" mode), and
 * `queue.writeBuffer` ("write" mode), with the upload rate the streamed decode reached. (On a
 * GPU with resizable BAR, such as the H200, `MAP_WRITE` buffers live in GPU memory: the copy rate
 * is then a GPU-memory rate, and writeBuffer — the CPU writing through the BAR — is the bus.)
 * Every streamed case must give the resident model's logits (the last
 * position of a 128-token prefill, bit for bit) and its greedy tokens, and keep the ledger's
 * peak within the budget. Writes `streaming.json` and `streaming.md` to `--out` (default
 * `bench/out`) after every case, and prints each phase with the seconds since the start.
 *
 * ```sh
 * deno task bench:streaming                                  # every format, one budget each
 * deno task bench:streaming --cases llama-2-7b:nf4:resident,llama-2-7b:nf4:2GiB --tokens 16
 * deno task bench:streaming --upload write --time-limit 60   # force an upload mode; stop early
 * ```
 *
 * A case is `preset:format:budget`, the budget `resident` or a size such as `2GiB`. Streamed
 * cases compare with the resident case of the same preset and format, which must run first.
 * `--time-limit` (seconds) is checked before every case and every phase: a case cut short is
 * recorded as such. On a software adapter the models are scaled down (dimensions ÷8, layers ÷4,
 * vocabulary ÷8) and each budget becomes the one that keeps the same share of layers resident
 * (at most all but three), so the run finishes in a minute or two.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { requestGpu } from "../lib/gpu/device.ts";
import { formatBytes } from "../lib/gpu/ledger.ts";
import { estimateStreaming } from "../lib/eval/memory.ts";
import { LlamaModel } from "../lib/model/llama.ts";
import { presetConfig } from "../lib/model/presets.ts";
import { measureUploadBandwidth } from "../lib/model/streaming.ts";
import {
  benchConfig,
  type BenchFormat,
  randomLinearFactory,
  randomPackedWeight,
  RandomPools,
  RandomWeightSource,
} from "./random_weights.ts";

const DEFAULT_CASES = [
  "llama-2-7b:fp16:resident",
  "llama-2-7b:fp16:8GiB",
  "llama-2-7b:fp16:4GiB",
  "llama-2-7b:int8-vectorwise:resident",
  "llama-2-7b:int8-vectorwise:4GiB",
  "llama-2-7b:nf4:resident",
  "llama-2-7b:nf4:2GiB",
  "llama-2-7b:q8_0:resident",
  "llama-2-7b:q8_0:4GiB",
  "llama-2-7b:llm-int8:resident",
  "llama-2-7b:llm-int8:4GiB",
  "llama-2-7b:int8-absmax:resident",
  "llama-2-7b:int8-absmax:4GiB",
  "llama-2-7b:nf4-dq:resident",
  "llama-2-7b:nf4-dq:2GiB",
  "llama-2-7b:fp4:resident",
  "llama-2-7b:fp4:2GiB",
  "llama-2-7b:int4:resident",
  "llama-2-7b:int4:2GiB",
  "llama-3-8b:nf4:resident",
  "llama-3-8b:nf4:3GiB",
].join(",");

const { values: args } = parseArgs({
  args: Deno.args,
  options: {
    out: { type: "string", default: "bench/out" },
    cases: { type: "string", default: DEFAULT_CASES },
    tokens: { type: "string" },
    "time-limit": { type: "string", default: "170" },
    upload: { type: "string", default: "auto" },
  },
});

const GiB = 2 ** 30;
const MiB = 2 ** 20;
const started = performance.now();
const limitS = Number(args["time-limit"]);
const elapsed = () => (performance.now() - started) / 1000;
const say = (line: string) => console.log(`[${elapsed().toFixed(1).padStart(6)} s] ${line}`);
const overTime = () => elapsed() > limitS;
if (!["auto", "mapped", "write"].includes(args.upload!)) {
  throw new Error(`--upload ${args.upload}: use auto, mapped or write`);
}

const gpu = await requestGpu();
const software = gpu.isSoftware;
const pools = new RandomPools();
say(`adapter: ${gpu.describe()}`);
const out = args.out!;
await Deno.mkdir(out, { recursive: true });

// Host→GPU bandwidth from the kind of buffer streamed layers live in ("mapped" mode).
const bwBytes = software ? 32 * MiB : 256 * MiB;
const bandwidth = await measureUploadBandwidth(gpu, { bytes: bwBytes, reps: 3, copies: 4 });
say(`host→GPU copy: ${(bandwidth / 1e9).toFixed(2)} GB/s (${formatBytes(bwBytes)} copies)`);

// What each upload mode pays on the CPU: "mapped" fills mapped host buffers once per load
// (create, getMappedRange, copy, unmap: each step timed), "write" calls queue.writeBuffer for
// every streamed layer of every forward.
const probeBytes = 4 * MiB;
const probeData = new Uint8Array(64 * MiB).fill(1);
let t = performance.now();
const lap = () => {
  const now = performance.now();
  const ms = now - t;
  t = now;
  return ms;
};
const mapped = gpu.device.createBuffer({
  label: "bench mapped fill",
  size: probeBytes,
  usage: GPUBufferUsage.MAP_WRITE | GPUBufferUsage.COPY_SRC,
  mappedAtCreation: true,
});
const createMs = lap();
const range = mapped.getMappedRange();
const rangeMs = lap();
new Uint8Array(range).set(probeData.subarray(0, probeBytes));
const setMs = lap();
mapped.unmap();
const unmapMs = lap();
mapped.destroy();
const fillRate = probeBytes / ((createMs + rangeMs + setMs + unmapMs) / 1000);
say(
  `mapped-buffer fill of ${formatBytes(probeBytes)}: ${(fillRate / 1e9).toFixed(2)} GB/s ` +
    `(create ${createMs.toFixed(1)} ms, getMappedRange ${rangeMs.toFixed(1)} ms, copy ` +
    `${setMs.toFixed(1)} ms, unmap ${unmapMs.toFixed(1)} ms)`,
);
// queue.writeBuffer in the 16 MiB pieces "write" mode uses: 16 MiB against 64 MiB, each
// waited for, so the fixed cost of waiting cancels out.
const target = gpu.device.createBuffer({
  size: probeData.byteLength,
  usage: GPUBufferUsage.COPY_DST,
});
const writes = async (bytes: number) => {
  lap();
  for (let at = 0; at < bytes; at += 16 * MiB) {
    gpu.device.queue.writeBuffer(target, at, probeData, at, 16 * MiB);
  }
  await gpu.device.queue.onSubmittedWorkDone();
  return lap();
};
await writes(probeData.byteLength);
const writeRates: number[] = [];
for (let i = 0; i < 3; i++) {
  const one = await writes(16 * MiB);
  const four = await writes(64 * MiB);
  writeRates.push(48 * MiB / (Math.max(four - one, 1e-3) / 1000));
}
target.destroy();
writeRates.sort((a, b) => a - b);
const writeRate = writeRates[1];
const upload = args.upload === "auto"
  ? (fillRate >= 1e9 ? "mapped" : "write")
  : args.upload as "mapped" | "write";
say(
  `queue.writeBuffer in 16 MiB pieces: ${(writeRate / 1e9).toFixed(2)} GB/s; streaming upload ` +
    `mode: ${upload}` + (args.upload === "auto" ? " (auto)" : ""),
);

interface CaseResult {
  model: string;
  format: BenchFormat;
  budget: string;
  budgetBytes: number | null;
  upload: string;
  residentLayers: number;
  streamedLayers: number;
  layerBytes: number;
  streamedBytesPerToken: number;
  hostBytes: number;
  peakBytes: number;
  withinBudget: boolean | null;
  loadS: number;
  prefillTokensPerSecond: number | null;
  decodeTokensPerSecond: number | null;
  /** The resident case's decode tok/s, same preset and format. */
  residentDecodeTokensPerSecond: number | null;
  /** Host→GPU copy bandwidth ÷ streamed bytes per token (null when nothing streams). */
  busBoundTokensPerSecond: number | null;
  /** Streamed bytes per token × decode tok/s: the upload rate the streamed decode reached. */
  uploadedBytesPerSecond: number | null;
  /** queue.writeBuffer rate ÷ streamed bytes per token, in "write" mode. */
  writeBoundTokensPerSecond: number | null;
  tokens: number[];
  sameLogitsAsResident: boolean | null;
  sameTokensAsResident: boolean | null;
  /** Why the case stopped early, if it did. */
  error?: string;
}

const results: CaseResult[] = [];
const residentRuns = new Map<string, { logits: Float32Array; tokens: number[]; tps: number }>();

/** The budget in bytes: as given on a GPU; on a software adapter, the same share of layers. */
function budgetFor(raw: string, preset: string, format: BenchFormat): number | null {
  if (raw === "resident") return null;
  const m = /^([0-9.]+)(GiB|MiB)$/.exec(raw);
  if (!m) throw new Error(`budget ${raw}: use e.g. 4GiB, 512MiB or resident`);
  const bytes = Number(m[1]) * (m[2] === "GiB" ? GiB : MiB);
  if (!software) return bytes;
  const options = { format, contextLength: 512 };
  const full = presetConfig(preset);
  const want = estimateStreaming(full, bytes, options);
  const scaled = benchConfig(preset, true, 4);
  const s = estimateStreaming(scaled, Number.MAX_SAFE_INTEGER, options);
  if (want.residentLayers < 0) return s.fixedBytes; // too small there, too small here
  if (want.streamedLayers === 0) return s.peakBytes + s.layerBytes / 2;
  const keep = Math.min(
    Math.round(want.residentLayers / full.numLayers * scaled.numLayers),
    scaled.numLayers - 3,
  );
  return s.fixedBytes + (keep + 2.5) * s.layerBytes;
}

async function runCase(spec: string): Promise<void> {
  const [preset, format, budgetRaw] = spec.split(":") as [string, BenchFormat, string];
  const config = benchConfig(preset, software, 4);
  const budget = budgetFor(budgetRaw, preset, format);
  const key = `${preset}:${format}`;
  const base = residentRuns.get(key);
  if (budget !== null && !base) {
    throw new Error(`${spec}: run ${key}:resident before its streamed cases`);
  }
  const decodeTokens = Number(args.tokens ?? (software ? 4 : budget === null ? 32 : 4));
  const r: CaseResult = {
    model: preset,
    format,
    budget: budgetRaw,
    budgetBytes: budget,
    upload: budget === null ? "none" : upload,
    residentLayers: config.numLayers,
    streamedLayers: 0,
    layerBytes: 0,
    streamedBytesPerToken: 0,
    hostBytes: 0,
    peakBytes: 0,
    withinBudget: null,
    loadS: 0,
    prefillTokensPerSecond: null,
    decodeTokensPerSecond: null,
    residentDecodeTokensPerSecond: base?.tps ?? null,
    busBoundTokensPerSecond: null,
    uploadedBytesPerSecond: null,
    writeBoundTokensPerSecond: null,
    tokens: [],
    sameLogitsAsResident: null,
    sameTokensAsResident: null,
  };
  results.push(r);
  say(`${spec}: loading` + (budget === null ? "" : ` under ${formatBytes(budget)}`));
  gpu.ledger.resetPeak();
  const t0 = performance.now();
  let model: LlamaModel;
  try {
    model = await LlamaModel.fromCheckpoint(config, new RandomWeightSource(pools), {
      gpu,
      format,
      maxSeqLen: 512,
      ...(budget === null
        ? { linear: format === "fp16" ? undefined : randomLinearFactory(pools, format) }
        : {
          vramBudget: budget,
          streaming: {
            upload,
            log: (line) => say(`${spec}: ${line}`),
            pack: (q) =>
              format === "fp16"
                ? pools.f16(q.outFeatures * q.inFeatures)
                : randomPackedWeight(pools, format, q.outFeatures, q.inFeatures),
          },
        }),
    });
  } catch (e) {
    r.error = (e as Error).message;
    say(`${spec}: ${r.error}`);
    return;
  }
  r.loadS = (performance.now() - t0) / 1000;
  const s = model.streaming;
  r.residentLayers = s?.residentLayers ?? config.numLayers;
  r.streamedLayers = s?.streamedLayers ?? 0;
  r.layerBytes = s?.layerBytes ?? 0;
  r.streamedBytesPerToken = s?.streamedBytesPerForward ?? 0;
  r.hostBytes = s?.hostBytes ?? 0;
  if (r.streamedBytesPerToken > 0) {
    r.busBoundTokensPerSecond = bandwidth / r.streamedBytesPerToken;
    if (upload === "write") r.writeBoundTokensPerSecond = writeRate / r.streamedBytesPerToken;
  }
  say(
    `${spec}: loaded in ${r.loadS.toFixed(1)} s: ${r.residentLayers}/${config.numLayers} ` +
      `layers resident, ${formatBytes(r.streamedBytesPerToken)} streamed per token` +
      (r.busBoundTokensPerSecond
        ? ` (bus bound ${r.busBoundTokensPerSecond.toFixed(2)} tok/s)`
        : ""),
  );
  try {
    const phase = (name: string) => {
      if (!overTime()) return true;
      r.error = `time limit reached before ${name}`;
      say(`${spec}: ${r.error}`);
      return false;
    };
    const prompt = Array.from({ length: 128 }, (_, i) => (i * 7 + 1) % config.vocabSize);
    if (!base) {
      // kernels compiled; a streamed case reuses them from its resident case
      if (!phase("warm-up")) return;
      await model.forward(prompt.slice(0, 8), "last");
      model.reset();
      say(`${spec}: warm-up done`);
    }
    // prefill: one 128-token chunk (each streamed layer uploaded once)
    if (!phase("prefill")) return;
    const p0 = performance.now();
    const logits = await model.forward(prompt, "last");
    const prefillS = (performance.now() - p0) / 1000;
    r.prefillTokensPerSecond = prompt.length / prefillS;
    if (base) {
      r.sameLogitsAsResident = logits.length === base.logits.length &&
        logits.every((v, i) => Object.is(v, base.logits[i]));
    }
    say(
      `${spec}: prefill of 128 tokens in ${prefillS.toFixed(2)} s` +
        (base ? `, same logits as resident: ${r.sameLogitsAsResident}` : ""),
    );
    // decode: 8-token prompt, a warm step, then decodeTokens greedy tokens
    if (!phase("decode")) return;
    model.reset();
    let tok = await model.forwardGreedy(prompt.slice(0, 8));
    tok = await model.forwardGreedy([tok]);
    const d0 = performance.now();
    const run = await model.decodeGreedy([tok], { maxNewTokens: decodeTokens });
    const decodeS = (performance.now() - d0) / 1000;
    r.tokens = run.tokens;
    r.decodeTokensPerSecond = run.tokens.length / decodeS;
    if (base) {
      r.sameTokensAsResident = base.tokens.slice(0, run.tokens.length).join() ===
        run.tokens.join();
    } else {
      residentRuns.set(key, { logits, tokens: run.tokens, tps: r.decodeTokensPerSecond });
    }
    if (r.streamedBytesPerToken > 0) {
      r.uploadedBytesPerSecond = r.streamedBytesPerToken * r.decodeTokensPerSecond;
    }
    r.peakBytes = gpu.ledger.peakBytes;
    r.withinBudget = budget === null ? null : r.peakBytes <= budget;
    say(
      `${spec}: decode ${r.decodeTokensPerSecond.toFixed(2)} tok/s` +
        (base
          ? ` (resident ${base.tps.toFixed(2)}` +
            (r.busBoundTokensPerSecond
              ? `, bus bound ${r.busBoundTokensPerSecond.toFixed(2)}`
              : "") +
            (r.writeBoundTokensPerSecond
              ? `, writeBuffer bound ${r.writeBoundTokensPerSecond.toFixed(2)}`
              : "") +
            (r.uploadedBytesPerSecond
              ? `; uploads ran at ${(r.uploadedBytesPerSecond / 1e9).toFixed(2)} GB/s`
              : "") +
            `), same tokens as resident: ${r.sameTokensAsResident}`
          : "") +
        `; ledger peak ${formatBytes(r.peakBytes)}` +
        (budget === null ? "" : ` of ${formatBytes(budget)}: within budget ${r.withinBudget}`),
    );
  } finally {
    model.dispose();
  }
}

async function save(): Promise<void> {
  const meta = {
    date: new Date().toISOString(),
    command: `deno task bench:streaming${Deno.args.length ? " " + Deno.args.join(" ") : ""}`,
    adapter: gpu.describe(),
    software,
    uploadBandwidthBytesPerSecond: bandwidth,
    mappedFillBytesPerSecond: fillRate,
    mappedFillMs: {
      create: createMs,
      getMappedRange: rangeMs,
      copy: setMs,
      unmap: unmapMs,
    },
    writeBufferBytesPerSecond: writeRate,
    upload,
    seconds: elapsed(),
  };
  await Deno.writeTextFile(
    `${out}/streaming.json`,
    JSON.stringify({ meta, results }, null, 2) + "\n",
  );
  const f = (v: number | null, digits = 2) => v === null ? "-" : v.toFixed(digits);
  const yes = (v: boolean | null) => v === null ? "-" : v ? "yes" : "**no**";
  const rows = results.map((r) =>
    [
      r.model,
      r.format,
      r.budget,
      r.error && r.loadS === 0 ? "-" : `${r.residentLayers}/${r.residentLayers + r.streamedLayers}`,
      r.upload,
      r.peakBytes ? (r.peakBytes / GiB).toFixed(3) : "-",
      yes(r.withinBudget),
      (r.streamedBytesPerToken / GiB).toFixed(3),
      f(r.decodeTokensPerSecond),
      r.budgetBytes === null ? "-" : f(r.residentDecodeTokensPerSecond),
      f(r.busBoundTokensPerSecond),
      f(r.writeBoundTokensPerSecond),
      r.uploadedBytesPerSecond === null ? "-" : (r.uploadedBytesPerSecond / 1e9).toFixed(2),
      f(r.prefillTokensPerSecond, 1),
      yes(r.sameLogitsAsResident),
      yes(r.sameTokensAsResident),
      r.loadS.toFixed(1),
      r.error ?? "",
    ].join(" | ")
  );
  await Deno.writeTextFile(
    `${out}/streaming.md`,
    `adapter: ${gpu.describe()}; host→GPU copy ${(bandwidth / 1e9).toFixed(2)} GB/s; ` +
      `mapped-buffer fill ${(fillRate / 1e9).toFixed(2)} GB/s; queue.writeBuffer ` +
      `${(writeRate / 1e9).toFixed(2)} GB/s; upload mode ${upload}\n\n` +
      "| model | format | budget | resident layers | upload | peak GiB | within budget " +
      "| streamed GiB/token | decode tok/s | resident tok/s | bus bound tok/s " +
      "| writeBuffer bound tok/s | uploaded GB/s " +
      "| prefill tok/s (128) | same logits | same tokens | load s | note |\n" +
      "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- " +
      "| --- | --- | --- | --- |\n" + rows.map((row) => `| ${row} |`).join("\n") + "\n",
  );
}

let failures = 0;
for (const spec of args.cases!.split(",")) {
  if (overTime()) {
    say(`time limit reached: skipping ${spec}`);
    continue;
  }
  await runCase(spec);
  const r = results.at(-1)!;
  if (r.withinBudget === false || r.sameLogitsAsResident === false) failures++;
  if (r.sameTokensAsResident === false) failures++;
  await save();
}
await save();
say(`done: ${results.length} cases, ${failures} failing a check; ${out}/streaming.md`);
gpu.destroy();
if (failures > 0) Deno.exit(1);
