/**
 * Layer streaming at real model shapes: decode and prefill tokens/s of random Llama-2-7B and
 * Llama-3-8B models fully resident and under GPU memory budgets (`vramBudget`), per weight
 * format, next to the bound the host→GPU bandwidth sets (streamed bytes per token ÷ bandwidth),
 * measured on the same adapter. Streamed and resident runs must produce the same tokens.
 * Writes `streaming.json` and `streaming.md` to `--out` (default `bench/out`).
 *
 * ```sh
 * deno task bench:streaming                                  # the default cases
 * deno task bench:streaming --cases llama-2-7b:nf4:resident,llama-2-7b:nf4:2GiB --tokens 16
 * ```
 *
 * On a software adapter the models are scaled down (dimensions ÷8, layers ÷4, vocabulary ÷8)
 * and budgets with them, so the run finishes in a minute.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { requestGpu } from "../lib/gpu/device.ts";
import { formatBytes } from "../lib/gpu/ledger.ts";
import { LlamaModel } from "../lib/model/llama.ts";
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
  "llama-2-7b:nf4:resident",
  "llama-2-7b:nf4:2GiB",
  "llama-2-7b:q8_0:resident",
  "llama-2-7b:q8_0:3GiB",
  "llama-2-7b:fp16:resident",
  "llama-2-7b:fp16:8GiB",
  "llama-2-7b:fp16:4GiB",
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
const gpu = await requestGpu();
const software = gpu.isSoftware;
const pools = new RandomPools();
const started = performance.now();
console.log(`adapter: ${gpu.describe()}`);

function parseBudget(raw: string): number | null {
  if (raw === "resident") return null;
  const m = /^([0-9.]+)(GiB|MiB)$/.exec(raw);
  if (!m) throw new Error(`budget ${raw}: use e.g. 4GiB, 512MiB or resident`);
  const bytes = Number(m[1]) * (m[2] === "GiB" ? GiB : 2 ** 20);
  // scaled models: dims ÷8 make weights ÷64, layers ÷4 on top; budgets shrink with the embeddings
  return software ? bytes / 64 : bytes;
}

const out = args.out!;
await Deno.mkdir(out, { recursive: true });

// Host→GPU bandwidth from the kind of buffer streamed layers live in.
const bwBytes = software ? 64 * 2 ** 20 : 512 * 2 ** 20;
const bandwidth = await measureUploadBandwidth(gpu, { bytes: bwBytes, reps: 5 });
console.log(`host→GPU copy: ${(bandwidth / 1e9).toFixed(2)} GB/s (${formatBytes(bwBytes)} copies)`);

// How fast the CPU fills a mapped host buffer ("mapped" pays this once per load), and
// queue.writeBuffer's rate into a GPU buffer ("write" pays it per token).
const fillBytes = software ? 64 * 2 ** 20 : 256 * 2 ** 20;
const fillData = new Uint8Array(fillBytes).fill(1);
let t = performance.now();
const mappedBuf = gpu.device.createBuffer({
  size: fillBytes,
  usage: GPUBufferUsage.MAP_WRITE | GPUBufferUsage.COPY_SRC,
  mappedAtCreation: true,
});
new Uint8Array(mappedBuf.getMappedRange()).set(fillData);
mappedBuf.unmap();
const fillRate = fillBytes / ((performance.now() - t) / 1000);
mappedBuf.destroy();
const target = gpu.device.createBuffer({ size: fillBytes, usage: GPUBufferUsage.COPY_DST });
const writeTimes: number[] = [];
for (let i = 0; i < 4; i++) {
  t = performance.now();
  gpu.device.queue.writeBuffer(target, 0, fillData);
  await gpu.device.queue.onSubmittedWorkDone();
  writeTimes.push(performance.now() - t);
}
target.destroy();
writeTimes.sort((a, b) => a - b);
const writeRate = fillBytes / (writeTimes[1] / 1000);
const upload = args.upload === "auto"
  ? (fillRate >= 1e9 ? "mapped" : "write")
  : args.upload as "mapped" | "write";
console.log(
  `mapped-buffer fill: ${(fillRate / 1e9).toFixed(2)} GB/s; queue.writeBuffer: ` +
    `${(writeRate / 1e9).toFixed(2)} GB/s; streaming upload mode: ${upload}`,
);
const streamBandwidth = upload === "mapped" ? bandwidth : writeRate;

interface CaseResult {
  model: string;
  format: BenchFormat;
  budget: string;
  budgetBytes: number | null;
  residentLayers: number;
  streamedLayers: number;
  layerBytes: number;
  streamedBytesPerToken: number;
  hostBytes: number;
  peakBytes: number;
  loadS: number;
  decodeTokensPerSecond: number;
  prefillTokensPerSecond: number;
  /** bandwidth ÷ streamed bytes per token (null when nothing streams). */
  busBoundTokensPerSecond: number | null;
  /** decode time per token ÷ (resident decode time + streamed bytes ÷ bandwidth). */
  tokens: number[];
  sameTokensAsResident: boolean | null;
  error?: string;
}

const results: CaseResult[] = [];
const residentTokens = new Map<string, number[]>();

async function runCase(spec: string): Promise<void> {
  const [preset, format, budgetRaw] = spec.split(":") as [string, BenchFormat, string];
  const config = benchConfig(preset, software, 4);
  const budget = parseBudget(budgetRaw);
  const decodeTokens = Number(args.tokens ?? (software ? 4 : budget === null ? 32 : 6));
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
            pack: (r) =>
              format === "fp16"
                ? pools.f16(r.outFeatures * r.inFeatures)
                : randomPackedWeight(pools, format, r.outFeatures, r.inFeatures),
          },
        }),
    });
  } catch (e) {
    console.log(`${spec}: ${(e as Error).message}`);
    results.push({
      model: preset,
      format,
      budget: budgetRaw,
      budgetBytes: budget,
      error: (e as Error).message,
    } as CaseResult);
    return;
  }
  const loadS = (performance.now() - t0) / 1000;
  console.log(`${spec}: loaded in ${loadS.toFixed(1)} s`);
  try {
    const s = model.streaming;
    // prefill: one 128-token chunk (each streamed layer uploaded once)
    const prompt = Array.from({ length: 128 }, (_, i) => (i * 7 + 1) % config.vocabSize);
    await model.forward(prompt.slice(0, 8), "last"); // warm-up
    model.reset();
    const p0 = performance.now();
    await model.forward(prompt, "last");
    const prefillS = (performance.now() - p0) / 1000;
    console.log(`${spec}: prefill 128 tokens in ${prefillS.toFixed(2)} s`);
    // decode: 8-token prompt, a warm step, then decodeTokens greedy tokens
    model.reset();
    let tok = await model.forwardGreedy(prompt.slice(0, 8));
    tok = await model.forwardGreedy([tok]);
    const d0 = performance.now();
    const run = await model.decodeGreedy([tok], { maxNewTokens: decodeTokens });
    const decodeS = (performance.now() - d0) / 1000;
    const key = `${preset}:${format}`;
    if (budget === null) residentTokens.set(key, run.tokens);
    const want = residentTokens.get(key);
    const same = budget === null || !want
      ? null
      : want.slice(0, run.tokens.length).join() === run.tokens.join();
    const perToken = s?.streamedBytesPerForward ?? 0;
    const r: CaseResult = {
      model: preset,
      format,
      budget: budgetRaw,
      budgetBytes: budget,
      residentLayers: s?.residentLayers ?? config.numLayers,
      streamedLayers: s?.streamedLayers ?? 0,
      layerBytes: s?.layerBytes ?? 0,
      streamedBytesPerToken: perToken,
      hostBytes: s?.hostBytes ?? 0,
      peakBytes: gpu.ledger.peakBytes,
      loadS,
      decodeTokensPerSecond: run.tokens.length / decodeS,
      prefillTokensPerSecond: prompt.length / prefillS,
      busBoundTokensPerSecond: perToken > 0 ? streamBandwidth / perToken : null,
      tokens: run.tokens,
      sameTokensAsResident: same,
    };
    results.push(r);
    console.log(
      `${spec.padEnd(26)} resident ${r.residentLayers}/${config.numLayers}, peak ` +
        `${formatBytes(r.peakBytes)}, ${formatBytes(perToken)}/token streamed: decode ` +
        `${r.decodeTokensPerSecond.toFixed(2)} tok/s` +
        (r.busBoundTokensPerSecond ? ` (bus bound ${r.busBoundTokensPerSecond.toFixed(2)})` : "") +
        `, prefill ${r.prefillTokensPerSecond.toFixed(1)} tok/s, same tokens: ${same}, ` +
        `load ${loadS.toFixed(1)} s`,
    );
    if (budget !== null && r.peakBytes > budget) {
      throw new Error(`${spec}: ledger peak ${r.peakBytes} over the budget ${budget}`);
    }
    if (same === false) throw new Error(`${spec}: streamed tokens differ from resident ones`);
  } finally {
    model.dispose();
  }
}

const limitS = Number(args["time-limit"]);
for (const spec of args.cases!.split(",")) {
  if ((performance.now() - started) / 1000 > limitS) {
    console.log(`time limit reached: skipping ${spec}`);
    continue;
  }
  await runCase(spec);
  await save();
}

async function save(): Promise<void> {
  const meta = {
    date: new Date().toISOString(),
    command: `deno task bench:streaming${Deno.args.length ? " " + Deno.args.join(" ") : ""}`,
    adapter: gpu.describe(),
    software,
    uploadBandwidthBytesPerSecond: bandwidth,
    mappedFillBytesPerSecond: fillRate,
    writeBufferBytesPerSecond: writeRate,
    upload,
  };
  await Deno.writeTextFile(
    `${out}/streaming.json`,
    JSON.stringify({ meta, results }, null, 2) + "\n",
  );
  const rows = results.map((r) =>
    r.error
      ? `| ${r.model} | ${r.format} | ${r.budget} | - | - | - | - | - | - | ${r.error} |`
      : `| ${r.model} | ${r.format} | ${r.budget} | ${r.residentLayers}/${
        r.residentLayers + r.streamedLayers
      } | ${(r.peakBytes / GiB).toFixed(2)} | ${(r.streamedBytesPerToken / GiB).toFixed(2)} | ${
        r.decodeTokensPerSecond.toFixed(2)
      } | ${r.busBoundTokensPerSecond?.toFixed(2) ?? "-"} | ${
        r.prefillTokensPerSecond.toFixed(1)
      } | ${r.sameTokensAsResident ?? "-"} |`
  );
  await Deno.writeTextFile(
    `${out}/streaming.md`,
    `adapter: ${gpu.describe()}; host→GPU copy ${(bandwidth / 1e9).toFixed(2)} GB/s; ` +
      `queue.writeBuffer ${(writeRate / 1e9).toFixed(2)} GB/s; upload mode ${upload} ` +
      `(bound uses ${(streamBandwidth / 1e9).toFixed(2)} GB/s)\n\n` +
      "| model | format | budget | resident layers | peak GiB | streamed GiB/token | decode tok/s " +
      "| bus bound tok/s | prefill tok/s (128) | same tokens |\n" +
      "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n" + rows.join("\n") + "\n",
  );
}
await save();
gpu.destroy();
