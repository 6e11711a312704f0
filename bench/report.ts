/**
 * The benchmark results' shape and their tables: markdown for BENCHMARKS.md, sections for the
 * HTML report. Used by `bench/run.ts` and `tools/bench_report.ts`.
 *
 * @module
 */

import { CommandBatch } from "../lib/gpu/batch.ts";
import type { Gpu } from "../lib/gpu/device.ts";
import type { Figure } from "../lib/plot/figure.ts";
import type { ReportSection } from "../lib/plot/report.ts";
import type { Table } from "../lib/plot/table.ts";
import { sideBySideMarkdown, type SideBySideRow } from "./llama_bench.ts";

/** One model and format of the decode section. */
export interface DecodeResult {
  model: string;
  format: string;
  layers: number;
  tokens: number;
  loadSeconds: number;
  msPerToken: number;
  tokensPerSecond: number;
  /** End-to-end prefill: prompt tokens, wall-clock ms to the first token, tokens/s. */
  prefillTokens?: number;
  prefillMs?: number;
  prefillTokensPerSecond?: number;
  /** Wall-clock ms from a reset to the first token, by prompt length (`--prompt-lengths`). */
  firstToken?: { tokens: number; ms: number }[];
  /** Sum of one step's per-dispatch timestamps (each kernel in a pass of its own). */
  gpuMsPerToken: number;
  /** One step timed whole, in one compute pass as decoding runs it (absent in older results). */
  gpuOnePassMsPerToken?: number;
  dispatchesPerToken: number;
  bytesPerToken: number;
  rooflineTokensPerSecond: number;
  ofRoofline: number;
  gpuOfRoofline: number;
  ledgerPeakBytes: number;
  ledger: Record<string, number>;
  /** GPU time of one timed decode step by kernel name: total ms and dispatches. */
  kernels?: Record<string, { ms: number; count: number }>;
  /** The decode mode of `msPerToken` and `tokensPerSecond` (older results: `step-fresh`). */
  mode?: string;
  /** Every decode mode timed (see bench/run.ts). */
  modes?: DecodeModeResult[];
}

/** One way of running the decode loop (see `DECODE_MODES` in bench/run.ts). */
export interface DecodeModeResult {
  /** A key of {@linkcode DECODE_MODE_NAMES}, e.g. `step` or `pipe8`. */
  mode: string;
  /** Wall-clock milliseconds per token. */
  msPerToken: number;
  /** Tokens per second. */
  tokensPerSecond: number;
  /**
   * Step modes: milliseconds per step until `forwardGreedy` returns its promise: encoding,
   * `submit`, and (in Deno) `mapAsync`'s blocking wait for the GPU to finish the step. Pipelined
   * modes: CPU milliseconds per step spent recording, encoding and submitting (no waits).
   */
  encodeMs?: number;
}

/** What each decode mode does. */
export const DECODE_MODE_NAMES: Record<string, string> = {
  "step-fresh": "forwardGreedy per token, new bind groups each step",
  step: "forwardGreedy per token, bind groups reused",
  pipe1: "decodeGreedy, each token read before the next step",
  sampled: "decodeSampled (T 0.8, top-k 40, top-p 0.95): drawn on the GPU, groups auto",
  "sampled-cpu": "forward per token, logits read back, createSampler (T 0.8, top-k 40, top-p 0.95)",
  pipe2: "decodeGreedy, tokens read in groups of 2, the next group running meanwhile",
  "pipe2-fresh": "decodeGreedy, groups of 2, new bind groups each step",
  pipe4: "decodeGreedy, tokens read in groups of 4, the next group running meanwhile",
  pipe8: "decodeGreedy, tokens read in groups of 8, the next group running meanwhile",
  pipe16: "decodeGreedy, tokens read in groups of 16, the next group running meanwhile",
  // Results recorded before tokens were read in groups: N steps in a sliding window.
  pipe3: "decodeGreedy (sliding window, before grouped readback), 3 steps in flight",
};

/** Everything one `deno task bench` run measured. */
export interface BenchResults {
  /** Where and how it ran. */
  meta: {
    date: string;
    command: string;
    adapter: string;
    software: boolean;
    f16: boolean;
    timestamps: boolean;
    deno: string;
    reps: number;
    scale: string;
  };
  /**
   * The streaming-read reference: the larger of a reading before and after the rest; with it
   * (absent in older results) the f32 FMA rate, lib/kernels/fma_peak.ts.
   */
  reference: {
    bytes: number;
    gbps: number;
    first: number;
    again: number;
    fmaTflops?: number;
  } | null;
  /** One activation row. `bytes`: weights, scales and x; `ms`: all dispatches of the product. */
  gemv: {
    format: string;
    shape: string;
    n: number;
    k: number;
    bytes: number;
    ms: number;
    productMs: number;
    dispatches: number;
    gbps: number;
    ofReference: number;
    /** GB/s of the cache-flush streaming read timed in the same submission (clock check). */
    flushGBps?: number;
    /** The layer's tuning, where `--gemv-tunings` gave one. */
    tuning?: object;
  }[];
  /** A prefill of `rows` activation rows. */
  gemm: {
    format: string;
    shape: string;
    rows: number;
    n: number;
    k: number;
    ms: number;
    productMs: number;
    tflops: number;
    /** The layer's tuning, where `--gemm-tunings` gave one. */
    tuning?: object;
  }[];
  /** Greedy decode of a random model. */
  decode: DecodeResult[];
  /** GEMV launch shapes (with `--sweep`). */
  sweep: {
    format: string;
    n: number;
    k: number;
    workgroupSize: number;
    threadsPerRow: number;
    rowsPerThread: number;
    /** 4-bit f16 GEMV variant: `fullx`, `prefetch`, `banked` (joined by `+`), or none. */
    variant?: string;
    ms: number;
    gbps: number;
    ofReference: number;
    /** GB/s of the cache-flush streaming read timed in the same submission (clock check). */
    flushGBps?: number;
  }[];
  /** With `--llama-bench`: qlab next to llama.cpp, per format, backend and test. */
  sideBySide?: SideBySideRow[];
}

const GiB = 2 ** 30;
const f = (v: number, digits: number) => Number.isFinite(v) ? v.toFixed(digits) : "–";
const gb = (v: number) => !Number.isFinite(v) ? "–" : v >= 100 ? v.toFixed(0) : v.toPrecision(3);
const pct = (v: number) => Number.isFinite(v) ? `${(100 * v).toFixed(1)}%` : "–";

/** The tables of a run, as rows of strings. */
export function benchTables(r: BenchResults): { title: string; table: Table }[] {
  const tables: { title: string; table: Table }[] = [];
  if (r.reference) {
    tables.push({
      title: "Streaming-read reference",
      table: {
        columns: ["bytes read", "GB/s (used)", "first", "at the end"],
        rows: [[
          `${(r.reference.bytes / 2 ** 20).toFixed(0)} MiB`,
          f(r.reference.gbps, 1),
          f(r.reference.first, 1),
          f(r.reference.again, 1),
        ]],
      },
    });
  }
  if (r.reference?.fmaTflops !== undefined) {
    tables.push({
      title: "f32 FMA-rate reference",
      table: { columns: ["TFLOP/s"], rows: [[f(r.reference.fmaTflops, 3)]] },
    });
  }
  if (r.gemv.length) {
    tables.push({
      title: "GEMV (one token)",
      table: {
        columns: [
          "shape",
          "N×K",
          "format",
          "GPU µs",
          "product kernel µs",
          "MB read",
          "GB/s",
          "of reference",
          "flush read GB/s",
        ],
        rows: r.gemv.map((g) => [
          g.shape,
          `${g.n}×${g.k}`,
          g.format + (g.tuning ? ` ${JSON.stringify(g.tuning)}` : ""),
          f(g.ms * 1000, 1),
          f(g.productMs * 1000, 1),
          f(g.bytes / 1e6, 1),
          gb(g.gbps),
          pct(g.ofReference),
          gb(g.flushGBps ?? NaN),
        ]),
      },
    });
  }
  if (r.gemm.length) {
    tables.push({
      title: new Set(r.gemm.map((g) => g.rows)).size === 1
        ? `GEMM (prefill of ${r.gemm[0].rows} tokens)`
        : "GEMM (prefill; M is the prompt's tokens)",
      table: {
        columns: ["shape", "M×N×K", "format", "GPU ms", "TFLOP/s"],
        rows: r.gemm.map((g) => [
          g.shape,
          `${g.rows}×${g.n}×${g.k}`,
          g.format + (g.tuning ? ` ${JSON.stringify(g.tuning)}` : ""),
          f(g.ms, 3),
          Number.isFinite(g.tflops) ? g.tflops.toPrecision(3) : "–",
        ]),
      },
    });
  }
  if (r.decode.length) {
    const mode = r.decode[0].mode ?? "step-fresh";
    tables.push({
      title: `Greedy decode, random weights (${mode}: ${DECODE_MODE_NAMES[mode] ?? mode})`,
      table: {
        columns: [
          "model",
          "format",
          "tokens/s",
          "prefill tok/s",
          "ms/token",
          "GPU ms/token",
          "one pass",
          "dispatches",
          "GB read/token",
          "roofline tok/s",
          "of roofline",
          "GPU time of roofline",
          "ledger weights GiB",
          "ledger peak GiB",
        ],
        rows: r.decode.map((d) => [
          d.model,
          d.format,
          f(d.tokensPerSecond, 1),
          d.prefillTokensPerSecond ? `${f(d.prefillTokensPerSecond, 0)} (${d.prefillTokens})` : "–",
          f(d.msPerToken, 2),
          f(d.gpuMsPerToken, 2),
          d.gpuOnePassMsPerToken === undefined ? "–" : f(d.gpuOnePassMsPerToken, 2),
          d.dispatchesPerToken,
          f(d.bytesPerToken / 1e9, 3),
          f(d.rooflineTokensPerSecond, 1),
          pct(d.ofRoofline),
          pct(d.gpuOfRoofline),
          f(d.ledger.weights / GiB, 2),
          f(d.ledgerPeakBytes / GiB, 2),
        ]),
      },
    });
  }
  const withModes = r.decode.filter((d) => d.modes?.length);
  if (withModes.length) {
    tables.push({
      title: "Decode paths (same model, same positions)",
      table: {
        columns: [
          "model",
          "format",
          "mode",
          "tokens/s",
          "ms/token",
          "CPU ms/step (step: sync part; pipe: encode+submit)",
        ],
        rows: withModes.flatMap((d) =>
          d.modes!.map((m) => [
            d.model,
            d.format,
            `${m.mode} (${DECODE_MODE_NAMES[m.mode] ?? ""})`,
            f(m.tokensPerSecond, 1),
            f(m.msPerToken, 2),
            m.encodeMs === undefined ? "–" : f(m.encodeMs, 2),
          ])
        ),
      },
    });
  }
  const withFirst = r.decode.filter((d) => d.firstToken?.length);
  if (withFirst.length) {
    tables.push({
      title: "Time to the first token, by prompt length (wall ms from an empty cache)",
      table: {
        columns: ["model", "format", ...withFirst[0].firstToken!.map((t) => `${t.tokens} tokens`)],
        rows: withFirst.map((d) => [d.model, d.format, ...d.firstToken!.map((t) => f(t.ms, 1))]),
      },
    });
  }
  if (r.sweep.length) {
    tables.push({
      title: "GEMV launch-shape sweep",
      table: {
        columns: [
          "format",
          "N×K",
          "workgroup",
          "threads/row",
          "rows/thread",
          "variant",
          "GPU µs",
          "GB/s",
          "of reference",
          "flush read GB/s",
        ],
        rows: r.sweep.map((s) => [
          s.format,
          `${s.n}×${s.k}`,
          s.workgroupSize,
          s.threadsPerRow,
          s.rowsPerThread,
          s.variant ?? "",
          f(s.ms * 1000, 1),
          gb(s.gbps),
          pct(s.ofReference),
          gb(s.flushGBps ?? NaN),
        ]),
      },
    });
  }
  return tables;
}

function markdownTable(t: Table): string {
  const rows = t.rows.map((row) =>
    Array.isArray(row) ? row.map(String) : t.columns.map((c) => String(row[c] ?? ""))
  );
  return [
    `| ${t.columns.join(" | ")} |`,
    `| ${t.columns.map(() => "---").join(" | ")} |`,
    ...rows.map((r) => `| ${r.join(" | ")} |`),
  ].join("\n");
}

/** The run as markdown: a header with the adapter and command, then every table. */
export function markdownReport(r: BenchResults, headingLevel = 2): string {
  const h = "#".repeat(headingLevel);
  const lines = [
    `${h} ${r.meta.adapter}`,
    "",
    `${r.meta.date.slice(0, 10)} · \`${r.meta.command}\` · Deno ${r.meta.deno} · ` +
    `${r.meta.timestamps ? "GPU timestamps" : "wall clock (no timestamp-query)"}, median of ` +
    `${r.meta.reps} · ${r.meta.f16 ? "shader-f16 kernels" : "f32 kernels"} · ${r.meta.scale}`,
    "",
  ];
  for (const { title, table } of benchTables(r)) {
    lines.push(`${h}# ${title}`, "", markdownTable(table), "");
  }
  if (r.sideBySide?.length) {
    lines.push(
      `${h}# Side by side with llama.cpp (llama-bench)`,
      "",
      sideBySideMarkdown(r.sideBySide),
    );
  }
  return lines.join("\n");
}

/** The HTML report's sections: each table, with the figures after the matching one. */
export function reportSections(
  r: BenchResults,
  figures: { gemv: Figure | null; decode: Figure | null },
): ReportSection[] {
  return benchTables(r).map(({ title, table }) => ({
    heading: title,
    figures: title.startsWith("GEMV (") && figures.gemv
      ? [figures.gemv]
      : title.startsWith("Greedy") && figures.decode
      ? [figures.decode]
      : [],
    table,
  }));
}

/**
 * Writes `{ meta, rows }` as `dir/file` (pretty JSON), `meta` led by the date, the adapter and
 * the command that ran (`deno run -A <script> <args>`): the raw file a BENCHMARKS.md table cites.
 *
 * @example
 * ```ts ignore
 * await writeBenchJson("bench/out", "kv-rope.json", "bench/kv_rope.ts", gpu.describe(), { layers }, rows);
 * ```
 */
/**
 * GPU ms (timestamps, summed over its dispatches) of the work `record` records, median of five
 * timed runs after one that compiles. Each timed run follows `warmCopies` copies of the same work
 * submitted right before it, so that it finds the GPU's clocks up (idle, the H200 lowers them
 * within milliseconds). With `whole`, each timed run is one compute pass, as decoding records its
 * work (a pass per dispatch otherwise, whose fixed cost each timed dispatch then includes).
 *
 * @example
 * ```ts ignore
 * const ms = await medianWarmGpuMs(gpu, (batch) => attn.attend(batch, q, k, v, out, 4096, 1), 64);
 * ```
 */
export async function medianWarmGpuMs(
  gpu: Gpu,
  record: (batch: CommandBatch) => void,
  warmCopies: number,
  whole = false,
): Promise<number> {
  const times: number[] = [];
  for (let rep = 0; rep < 6; rep++) {
    const warm = new CommandBatch(gpu);
    for (let i = 0; i < warmCopies; i++) record(warm);
    warm.submit();
    const batch = new CommandBatch(gpu);
    record(batch);
    const t = await batch.submitTimed({ whole });
    if (rep > 0) times.push(t.reduce((s, d) => s + d.ms, 0)); // the first compiles
  }
  times.sort((a, b) => a - b);
  return times[Math.floor(times.length / 2)];
}

export async function writeBenchJson(
  dir: string,
  file: string,
  script: string,
  adapter: string,
  meta: Record<string, unknown>,
  rows: unknown[],
  date = new Date(),
): Promise<void> {
  const head = {
    date: date.toISOString(),
    adapter,
    command: `deno run -A ${script} ${Deno.args.join(" ")}`.trim(),
  };
  await Deno.mkdir(dir, { recursive: true });
  await Deno.writeTextFile(
    `${dir}/${file}`,
    JSON.stringify({ meta: { ...head, ...meta }, rows }, null, 2) + "\n",
  );
}
