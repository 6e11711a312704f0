/**
 * `demo` and `compare`: run several weight formats over the same held-out text and report what
 * each costs and loses — a table, a sample per format, an offline HTML report, optional JSON.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { requestGpu } from "../lib/gpu/device.ts";
import { compareFormats, type Comparison, resultName } from "../lib/eval/compare.ts";
import { measureSpeculative, type SpeculativeMeasurement } from "../lib/eval/speculative.ts";
import { MAX_GEMV_ROWS } from "../lib/kernels/linear.ts";
import { blockSizeSweep, thresholdSweep } from "../lib/eval/sweeps.ts";
import { openCheckpoint } from "../lib/model/checkpoint.ts";
import { loadLlamaConfig } from "../lib/model/config.ts";
import { resolveModelDir } from "../lib/model/hub.ts";
import { readTextFileNamed } from "../lib/model/json.ts";
import { loadTokenizer } from "../lib/model/tokenizer.ts";
import { QUANT_FORMATS, type QuantFormat } from "../lib/quant/formats.ts";
import { KV_CACHE_FORMATS, type KvCacheFormat } from "../lib/kernels/kv_cache.ts";
import { comparisonLegend, comparisonReport, comparisonTable } from "../lib/plot/comparison.ts";
import { writeReport } from "../lib/plot/report.ts";
import { tableText } from "../lib/plot/table.ts";
import {
  byteSizeOption,
  checkOutputPath,
  err,
  listOption,
  numberOption,
  out,
  progressLogger,
  UsageError,
  writeJson,
} from "./common.ts";

const BUNDLED = new URL("../models/sotu-llama", import.meta.url).pathname;
const BUNDLED_TEXT = `${BUNDLED}/eval/sotu-heldout.txt`;

/** The formats `demo` runs: FP16, the three INT8 schemes, NF4 with and without double quant. */
export const DEMO_FORMATS: QuantFormat[] = [
  "fp16",
  "int8-absmax",
  "int8-vectorwise",
  "llm-int8",
  "nf4",
  "nf4-dq",
];

const COMPARE_HELP = `Usage: deno task compare [options]

Runs a model in several weight formats over the same held-out text and reports, per format:
bits per parameter, weight and peak GPU memory (the ledger), perplexity, KL divergence and
top-1 agreement against FP16, decode speed, per-layer error and a sample continuation.

Options:
  --model DIR|ID     model directory or Hugging Face id (default: the bundled sotu-llama)
  --formats LIST     comma-separated, from: ${QUANT_FORMATS.join(", ")}
                     (default: ${DEMO_FORMATS.join(",")}; fp16 always runs, as the reference);
                     an entry may also be a GGUF file or a quantized checkpoint directory
                     (bitsandbytes, or written by quantize) of the same model: one more row
  --kv-cache LIST    KV cache formats, comma-separated, from: ${KV_CACHE_FORMATS.join(", ")}
                     (default f16); every weight format runs with each
  --text FILE        held-out text (default: the bundled model's held-out SOTU excerpt)
  --max-tokens N     tokens of the text to score (default 384)
  --context N        perplexity window (default 256)
  --stride N         perplexity stride (default context/2)
  --threshold T      LLM.int8() outlier threshold (default 6)
  --blocksize B      4-bit block size, a power of two 32..4096 (default 64)
  --prompt TEXT      prompt of the sample continuations
  --sample-tokens N  tokens per sample (default 24)
  --timing-runs N    timed runs behind each speed, after a warm-up; the median is shown (default 3)
  --timing-tokens N  tokens decoded per timed run (default 16)
  --report FILE      HTML report (default: qlab-report.html)
  --json FILE        also write the results as JSON
  --budget GB        draw a memory budget line in the report (e.g. 8)
  --vram-budget SIZE keep GPU memory within SIZE (e.g. 2GiB): decoder layers that do not fit
                     are kept in host memory and streamed to the GPU per forward
  --no-sweeps        skip the threshold and block-size sweeps
  --draft DIR|ID     add a speculative-decoding row: this draft model (same tokenizer) proposes,
                     the model in FP16 verifies; acceptance, tokens per target pass and tokens/s
                     with and without the draft, over --sample-tokens (at least 32) tokens
  --draft-tokens K   draft tokens per round, 1-7 (default: adaptive)
  --no-f16           use the packed-u32 kernels even where shader-f16 exists
  -h, --help         this text
`;

/** Runs `compare` (or `demo`, which is `compare` with the bundled defaults). */
export async function compareCommand(args: string[], demo = false): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      model: { type: "string", default: BUNDLED },
      formats: { type: "string" },
      "kv-cache": { type: "string", default: "f16" },
      text: { type: "string" },
      "max-tokens": { type: "string", default: "384" },
      context: { type: "string", default: "256" },
      stride: { type: "string" },
      threshold: { type: "string" },
      blocksize: { type: "string" },
      prompt: { type: "string", default: "The state of the Union is" },
      "sample-tokens": { type: "string", default: "24" },
      "timing-runs": { type: "string", default: "3" },
      "timing-tokens": { type: "string", default: "16" },
      report: { type: "string", default: "qlab-report.html" },
      json: { type: "string" },
      budget: { type: "string" },
      "vram-budget": { type: "string" },
      "no-sweeps": { type: "boolean", default: false },
      draft: { type: "string" },
      "draft-tokens": { type: "string" },
      "no-f16": { type: "boolean", default: false },
      help: { type: "boolean", short: "h", default: false },
    },
    strict: true,
  });
  if (values.help) {
    out(demo ? COMPARE_HELP.replace("deno task compare", "deno task demo") : COMPARE_HELP);
    return 0;
  }
  const listed = values.formats ? listOption(values.formats) : DEMO_FORMATS;
  const formats: QuantFormat[] = [];
  const checkpoints: string[] = []; // GGUF files or quantized checkpoint directories
  for (const f of listed) {
    if (QUANT_FORMATS.includes(f as QuantFormat)) formats.push(f as QuantFormat);
    else if (await Deno.stat(f).then(() => true, () => false)) checkpoints.push(f);
    else {
      throw new UsageError(
        `unknown format "${f}" (known: ${QUANT_FORMATS.join(", ")}; or a GGUF file or ` +
          `quantized checkpoint of the same model)`,
      );
    }
  }
  const kvCaches = listOption(values["kv-cache"]!) as KvCacheFormat[];
  for (const k of kvCaches) {
    if (!KV_CACHE_FORMATS.includes(k)) {
      throw new UsageError(`unknown --kv-cache "${k}" (known: ${KV_CACHE_FORMATS.join(", ")})`);
    }
  }
  const threshold = numberOption("threshold", values.threshold, { above: 0 });
  const blocksize = numberOption("blocksize", values.blocksize, {
    integer: true,
    min: 32,
    max: 4096,
  });
  if (blocksize !== undefined && (blocksize & (blocksize - 1)) !== 0) {
    throw new UsageError(`--blocksize must be a power of two from 32 to 4096, got ${blocksize}`);
  }
  const budgetGb = numberOption("budget", values.budget, { above: 0 });
  const maxTokens = numberOption("max-tokens", values["max-tokens"], { integer: true, min: 2 });
  const context = numberOption("context", values.context, { integer: true, min: 2 });
  const stride = numberOption("stride", values.stride, { integer: true, min: 1 });
  const sampleTokens = numberOption("sample-tokens", values["sample-tokens"], {
    integer: true,
    min: 0,
  });
  const timingRepeats = numberOption("timing-runs", values["timing-runs"], {
    integer: true,
    min: 1,
  });
  const timingTokens = numberOption("timing-tokens", values["timing-tokens"], {
    integer: true,
    min: 1,
  });
  // Output paths are checked before the work, not after it.
  await checkOutputPath("report", values.report!, { createDirs: true });
  if (values.json) await checkOutputPath("json", values.json);
  const vramBudget = byteSizeOption("vram-budget", values["vram-budget"]);
  const draftTokens = numberOption("draft-tokens", values["draft-tokens"], {
    integer: true,
    min: 1,
    max: MAX_GEMV_ROWS - 1,
  });
  if (draftTokens !== undefined && values.draft === undefined) {
    throw new UsageError("--draft-tokens needs --draft");
  }
  const log = progressLogger();

  if (values.model!.endsWith(".gguf")) {
    throw new UsageError(
      "--model is the FP16/BF16/F32 checkpoint every row is compared with; give a GGUF file of " +
        "the same model in --formats, as one more row",
    );
  }
  const dir = await resolveModelDir(values.model!);
  const textPath = values.text ?? (dir === BUNDLED ? BUNDLED_TEXT : undefined);
  if (!textPath) {
    throw new UsageError("--text FILE is required for a model other than the bundled one");
  }
  let text: string;
  try {
    text = await readTextFileNamed(textPath);
  } catch (e) {
    throw new UsageError(`--text: ${(e as Error).message}`);
  }
  const gpu = await requestGpu({ f16: !values["no-f16"] });
  try {
    log(`adapter: ${gpu.describe()}`);
    const tokenizer = await loadTokenizer(dir);
    const comparison = await compareFormats({
      modelDir: dir,
      tokenizer,
      gpu,
      formats,
      checkpoints,
      kvCaches,
      quant: { threshold, blocksize },
      text,
      maxTokens,
      context,
      stride,
      prompt: values.prompt,
      sampleTokens,
      timingRepeats,
      timingTokens,
      vramBudget,
      onProgress: (format, stage) => log(`${format}: ${stage}`),
    });

    let sweeps = {};
    if (!values["no-sweeps"]) {
      log("sweeps: LLM.int8() threshold and NF4 block size (CPU references)");
      sweeps = await runSweeps(dir, comparison);
    }
    out("\n" + tableText(comparisonTable(comparison)) + "\n\n");
    out(comparisonLegend(comparison).map((line) => wrap(line, 100, "  ")).join("\n") + "\n\n");
    out(`Samples — continuations of "${comparison.prompt}":\n`);
    for (const r of comparison.results) out(`  ${resultName(r).padEnd(16)} ${r.sample.trim()}\n`);
    out("\n");
    let speculative: SpeculativeMeasurement | undefined;
    if (values.draft !== undefined && !dir.endsWith(".gguf")) {
      log(`speculative decoding: draft ${values.draft}`);
      speculative = await measureSpeculative({
        gpu,
        targetDir: dir,
        draftDir: await resolveModelDir(values.draft),
        prompt: tokenizer.encode(comparison.prompt),
        tokens: Math.max(32, sampleTokens ?? 24),
        draftTokens,
      });
      const m = speculative;
      out(
        `Speculative decoding (fp16 target, draft ${values.draft}, ${
          m.draftTokens === "adaptive" ? "adaptive draft length" : `${m.draftTokens} draft tokens`
        }): acceptance ${(100 * m.acceptanceRate).toFixed(1)}%, ` +
          `${m.tokensPerTargetPass.toFixed(2)} tokens per target pass, ` +
          `${m.tokensPerSecond.toFixed(1)} tokens/s vs ${m.baselineTokensPerSecond.toFixed(1)} ` +
          `alone (${m.speedup.toFixed(2)}x); same tokens as the target alone: ` +
          `${m.sameTokens ? "yes" : "NO"}\n\n`,
      );
    }
    const report = comparisonReport(comparison, {
      ...sweeps,
      budgetBytes: budgetGb ? budgetGb * 1e9 : undefined,
    });
    await writeReport(values.report!, report);
    log(`report: ${values.report}`);
    if (values.json) {
      const { trace: _trace, ...rest } = comparison;
      await writeJson(values.json, { ...rest, ...sweeps, ...(speculative ? { speculative } : {}) });
      log(`json: ${values.json}`);
    }
  } finally {
    gpu.destroy();
  }
  return 0;
}

async function runSweeps(dir: string, comparison: Comparison) {
  const config = await loadLlamaConfig(dir);
  const ckpt = await openCheckpoint(dir);
  try {
    // Every layer's attention and MLP inputs on the traced tokens; the grid covers "no
    // decomposition" (Infinity) down to thresholds that move a third of the columns to FP16.
    const threshold = await thresholdSweep(ckpt, config, comparison.trace, [
      1,
      1.5,
      2,
      3,
      4,
      6,
      8,
      Infinity,
    ]);
    const blockSize = await blockSizeSweep(ckpt, config, [32, 64, 128, 256, 512, 1024, 2048, 4096]);
    return { thresholdSweep: threshold, blockSizeSweep: blockSize };
  } finally {
    ckpt.close();
  }
}

/** `demo`: `compare` on the bundled model with its held-out text. */
export function demoCommand(args: string[]): Promise<number> {
  return compareCommand(args, true);
}

if (import.meta.main) {
  err("run through cli/main.ts: deno task compare | deno task demo\n");
  Deno.exit(2);
}

/** `text` wrapped at `width` columns, continuation lines indented by `indent`. */
function wrap(text: string, width: number, indent: string): string {
  const lines: string[] = [];
  let line = "";
  for (const word of text.split(" ")) {
    const next = line ? `${line} ${word}` : word;
    if (next.length > width && line) {
      lines.push(line);
      line = indent + word;
    } else {
      line = next;
    }
  }
  if (line) lines.push(line);
  return lines.join("\n");
}
