/**
 * Side by side with llama.cpp: reads `llama-bench -o jsonl` output (one JSON object per test,
 * `n_prompt` > 0 for prefill, `n_gen` > 0 for decode) and puts qlab's end-to-end prefill and
 * decode tokens/s from a bench run next to it, format by format.
 *
 * The formats are paired by bits per weight and role: FP16 with llama.cpp's F16, the 8-bit
 * formats (int8-vectorwise, LLM.int8()) with Q8_0 (8.5 bits), the 4-bit formats (NF4 4.5 bits,
 * NF4-DQ 4.127) with Q4_0 (4.5 bits). A model pairs with llama.cpp's `model_type` by size
 * ("7B" for llama-2-7b, "8B" for llama-3-8b).
 *
 * ```sh
 * deno task bench --llama-bench bench/results/llama-bench-h200-2026-12-02.jsonl
 * deno run -A bench/llama_bench.ts bench/out/results.json bench/results/llama-bench-h200-2026-12-02.jsonl
 * ```
 *
 * @module
 */

import type { BenchResults } from "./report.ts";

/** One llama-bench test, the fields used here. */
export interface LlamaBenchRecord {
  /** llama.cpp backend, e.g. `CUDA` or `Vulkan`. */
  backend: string;
  /** llama.cpp's model type, e.g. `llama 7B Q4_0`. */
  modelType: string;
  /** Prompt tokens (prefill test) or 0. */
  nPrompt: number;
  /** Generated tokens (decode test) or 0. */
  nGen: number;
  /** Mean tokens/s. */
  tokensPerSecond: number;
}

/** qlab format → llama.cpp weight type it is compared with. */
export const LLAMA_CPP_TYPE: Record<string, string> = {
  "fp16": "F16",
  "int8-vectorwise": "Q8_0",
  "llm-int8": "Q8_0",
  "nf4": "Q4_0",
  "nf4-dq": "Q4_0",
  "q8_0": "Q8_0",
};

/** qlab model preset → the size word of llama.cpp's `model_type`. */
export const LLAMA_CPP_SIZE: Record<string, string> = {
  "llama-2-7b": "7B",
  "llama-3-8b": "8B",
};

/**
 * Parses `llama-bench -o jsonl` text. Throws on a line that is not JSON or lacks the fields.
 *
 * @example
 * ```ts
 * import { parseLlamaBench } from "./llama_bench.ts";
 * const r = parseLlamaBench(
 *   '{"backends":"CUDA","model_type":"llama 7B F16","n_prompt":0,"n_gen":128,"avg_ts":222.7}',
 * );
 * console.log(r[0].tokensPerSecond); // 222.7
 * ```
 */
export function parseLlamaBench(text: string, file = "llama-bench output"): LlamaBenchRecord[] {
  const out: LlamaBenchRecord[] = [];
  text.split("\n").forEach((line, i) => {
    if (!line.trim()) return;
    let o: Record<string, unknown>;
    try {
      o = JSON.parse(line);
    } catch (err) {
      throw new Error(`${file}:${i + 1}: not JSON: ${(err as Error).message}`);
    }
    const need = ["backends", "model_type", "n_prompt", "n_gen", "avg_ts"];
    const missing = need.filter((k) => o[k] === undefined);
    if (missing.length) {
      throw new Error(`${file}:${i + 1}: missing ${missing.join(", ")} (llama-bench -o jsonl?)`);
    }
    out.push({
      backend: String(o.backends),
      modelType: String(o.model_type),
      nPrompt: Number(o.n_prompt),
      nGen: Number(o.n_gen),
      tokensPerSecond: Number(o.avg_ts),
    });
  });
  return out;
}

/** One row of the side-by-side table. */
export interface SideBySideRow {
  model: string;
  format: string;
  /** llama.cpp weight type compared with. */
  llamaType: string;
  /** llama.cpp backend. */
  backend: string;
  /** Which test: `decode` (llama-bench tgN) or `prefill` (ppN). */
  test: "decode" | "prefill";
  /** qlab tokens/s. */
  qlab: number;
  /** llama.cpp tokens/s. */
  llamaCpp: number;
  /** qlab ÷ llama.cpp. */
  ratio: number;
}

/**
 * Pairs qlab's decode and prefill results with llama.cpp's tests of the same model size and
 * weight type, one row per backend and test.
 *
 * @example
 * ```ts
 * import { sideBySide } from "./llama_bench.ts";
 * const rows = sideBySide(
 *   [{ model: "llama-2-7b", format: "nf4", tokensPerSecond: 300 }],
 *   [{ backend: "CUDA", modelType: "llama 7B Q4_0", nPrompt: 0, nGen: 128, tokensPerSecond: 350 }],
 * );
 * console.log(rows[0].ratio.toFixed(2)); // 0.86
 * ```
 */
export function sideBySide(
  qlab: {
    model: string;
    format: string;
    tokensPerSecond: number;
    prefillTokensPerSecond?: number;
  }[],
  llama: LlamaBenchRecord[],
): SideBySideRow[] {
  const rows: SideBySideRow[] = [];
  for (const q of qlab) {
    const type = LLAMA_CPP_TYPE[q.format];
    const size = LLAMA_CPP_SIZE[q.model];
    if (!type || !size) continue;
    for (const l of llama) {
      const words = l.modelType.split(/\s+/);
      if (!words.includes(size) || !words.includes(type)) continue;
      const test = l.nGen > 0 ? "decode" : "prefill";
      const mine = test === "decode" ? q.tokensPerSecond : q.prefillTokensPerSecond;
      if (mine === undefined || !Number.isFinite(mine)) continue;
      rows.push({
        model: q.model,
        format: q.format,
        llamaType: type,
        backend: l.backend,
        test,
        qlab: mine,
        llamaCpp: l.tokensPerSecond,
        ratio: mine / l.tokensPerSecond,
      });
    }
  }
  return rows;
}

/**
 * The side-by-side rows as a markdown table.
 *
 * @example
 * ```ts
 * import { sideBySideMarkdown } from "./llama_bench.ts";
 * console.log(sideBySideMarkdown([]));
 * ```
 */
export function sideBySideMarkdown(rows: SideBySideRow[]): string {
  const lines = [
    "| model | format | test | llama.cpp | backend | qlab tok/s | llama.cpp tok/s | qlab ÷ llama.cpp |",
    "| --- | --- | --- | --- | --- | --- | --- | --- |",
  ];
  for (const r of rows) {
    lines.push(
      `| ${r.model} | ${r.format} | ${r.test} | ${r.llamaType} | ${r.backend} | ` +
        `${r.qlab.toFixed(1)} | ${r.llamaCpp.toFixed(1)} | ${r.ratio.toFixed(2)}× |`,
    );
  }
  return lines.join("\n") + "\n";
}

if (import.meta.main) {
  const [resultsFile, jsonlFile] = Deno.args;
  if (!resultsFile || !jsonlFile) {
    console.log("deno run -A bench/llama_bench.ts RESULTS.json LLAMA_BENCH.jsonl");
    Deno.exit(2);
  }
  const results = JSON.parse(await Deno.readTextFile(resultsFile)) as BenchResults;
  const llama = parseLlamaBench(await Deno.readTextFile(jsonlFile), jsonlFile);
  console.log(sideBySideMarkdown(sideBySide(results.decode, llama)));
}
