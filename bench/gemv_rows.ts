/**
 * The multi-row GEMVs alone: GPU time of one product over 2-8 activation rows (`perRow`, the
 * verify pass's products, each row as decode computes it) against the one-row GEMV, per weight
 * format, at the Llama-2-7B shapes, and the sum over one layer's seven products. The int8 formats
 * include the activation quantization each product dispatches (`quantize_row` or
 * `quantize_rows`).
 *
 * ```sh
 * deno run -A bench/gemv_rows.ts [--formats fp16,nf4] [--rows 2,5,8] [--reps 30] [--rounds 3]
 *   [--out FILE]
 * ```
 *
 * A format may name a variant after a colon, parts joined by `-`: `f1` (FP16) / `f2` / `f4`
 * (features per lane group, `gemvRowsFeatures`), `pf0` (weights loaded after x is staged,
 * `gemvRowsPrefetch: false`), `w128` (threads per workgroup, `gemvRowsWorkgroupSize`),
 * `stagex0` (FP16: x read in every lane, `gemvRowsStageX: false`), `any` (one pipeline for any row
 * count, `gemvRowsPerCount: false`), e.g. `fp16:f2-w128`. Shape by shape, the variants take
 * turns, `--rounds` times over (medians), so that the GPU's clocks, which move within a run on the
 * H200, weigh on all of them alike. On a software adapter the shapes are divided by 8 (one
 * round).
 *
 * @module
 */

import { parseArgs } from "node:util";
import { CommandBatch } from "../lib/gpu/batch.ts";
import { requestGpu } from "../lib/gpu/device.ts";
import type { Fp16Tuning, Linear } from "../lib/kernels/linear.ts";
import type { QuantTuning } from "../lib/kernels/quant_linear.ts";
import { type BenchFormat, median, randomLinear, RandomPools } from "./random_weights.ts";

const args = parseArgs({
  args: Deno.args,
  options: {
    formats: { type: "string", default: "fp16,int8-vectorwise,llm-int8,nf4,q8_0" },
    rows: { type: "string", default: "5" },
    reps: { type: "string", default: "30" },
    rounds: { type: "string", default: "3" },
    out: { type: "string" },
  },
});

const gpu = await requestGpu();
const software = gpu.isSoftware;
const d = software ? 8 : 1;
const pools = new RandomPools();
const reps = software ? 3 : Number(args.values.reps);
const rowCounts = args.values.rows!.split(",").map(Number);
const rounds = software ? 1 : Number(args.values.rounds);

// The products of one layer, with how many of each shape it has.
const SHAPES = [
  { name: "q/k/v/o", n: 4096 / d, k: 4096 / d, perLayer: 4 },
  { name: "gate/up", n: 11008 / d, k: 4096 / d, perLayer: 2 },
  { name: "down", n: 4096 / d, k: 11008 / d, perLayer: 1 },
];
const LM_HEAD = { name: "lm head", n: 32000 / d, k: 4096 / d, perLayer: 0 };

/** x: N(0,1)-ish with an outlier column (|x| 8..12) every 200. */
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

interface Case {
  format: string;
  shape: string;
  n: number;
  k: number;
  rows: number;
  /** Median GPU ms of one product (all its dispatches). */
  ms: number;
}

const results: Case[] = [];

/** Median GPU ms of one product of `lin` over `rows` rows (untimed work first, for the clocks). */
async function time(lin: Linear, rows: number): Promise<number> {
  const k = lin.inFeatures;
  const x = gpu.tensor({ label: "x", category: "activations", data: activations(rows, k) });
  const y = gpu.tensor({
    label: "y",
    category: "activations",
    byteSize: rows * lin.outFeatures * 4,
  });
  try {
    const encode = (b: CommandBatch) => lin.encode(b, x, y, rows, { perRow: rows > 1 });
    // Untimed work just before the timed submission keeps the clocks up (BENCHMARKS.md, H200).
    const warm = new CommandBatch(gpu);
    for (let i = 0; i < (software ? 1 : 300); i++) encode(warm);
    warm.submit();
    const per: number[] = [];
    const b = new CommandBatch(gpu);
    const starts: number[] = [];
    for (let i = 0; i < reps; i++) {
      starts.push(b.dispatchCount);
      encode(b);
    }
    const t = await b.submitTimed();
    if (t.length === 1) return t[0].ms / reps; // no timestamps: wall clock of the batch
    starts.push(t.length);
    for (let i = 0; i < reps; i++) {
      per.push(t.slice(starts[i], starts[i + 1]).reduce((s, e) => s + e.ms, 0));
    }
    return median(per.slice(1));
  } finally {
    x.destroy();
    y.destroy();
    await gpu.sync();
  }
}

console.log(`adapter: ${gpu.describe()}`);
const variants = args.values.formats!.split(",").map((spec) => {
  const [format, variant] = spec.split(":") as [BenchFormat, string | undefined];
  const tuning: QuantTuning & Fp16Tuning = {};
  for (const part of variant?.split("-") ?? []) {
    if (part === "f1") tuning.gemvRowsFeatures = 1 as 2; // FP16 only (Fp16Tuning)
    else if (part === "f2" || part === "f4") tuning.gemvRowsFeatures = part === "f2" ? 2 : 4;
    else if (part === "pf0") tuning.gemvRowsPrefetch = false;
    else if (/^w\d+$/.test(part)) tuning.gemvRowsWorkgroupSize = Number(part.slice(1));
    else if (part === "stagex0") tuning.gemvRowsStageX = false;
    else if (part === "any") tuning.gemvRowsPerCount = false;
    else throw new Error(`--formats: unknown variant part ${part} in ${spec}`);
  }
  return { spec, format, tuning, layer: new Map<number, number>() };
});
// The clocks of an idle GPU take a while to come up (the H200's first shape read 3x slow with
// only each measurement's own warm-up): a second and a half of products first.
if (!software) {
  const v = variants[0];
  const lin = await randomLinear(gpu, pools, v.format, SHAPES[0].n, SHAPES[0].k, v);
  const x = gpu.tensor({
    label: "x",
    category: "activations",
    data: activations(1, lin.inFeatures),
  });
  const y = gpu.tensor({ label: "y", category: "activations", byteSize: lin.outFeatures * 4 });
  for (const t0 = performance.now(); performance.now() - t0 < 1500;) {
    const b = new CommandBatch(gpu);
    for (let i = 0; i < 200; i++) lin.encode(b, x, y, 1);
    b.submit();
    await gpu.sync();
  }
  for (const t of [x, y, lin]) t.destroy();
}
// Shape by shape, every variant's layer built once and timed in turn, `rounds` times over, so
// that the clocks (which move within a call on the H200) weigh on all variants alike; each figure
// is the median of its rounds.
for (const s of [...SHAPES, LM_HEAD]) {
  const here = variants.filter((v) => s !== LM_HEAD || v.format === "fp16");
  const lins = [];
  for (const v of here) lins.push(await randomLinear(gpu, pools, v.format, s.n, s.k, v));
  const counts = [1, ...rowCounts];
  const runs = here.map(() => counts.map(() => [] as number[]));
  try {
    for (let round = 0; round < rounds; round++) {
      for (let i = 0; i < here.length; i++) {
        for (let c = 0; c < counts.length; c++) runs[i][c].push(await time(lins[i], counts[c]));
      }
    }
  } finally {
    for (const lin of lins) lin.destroy();
  }
  here.forEach((v, i) => {
    const ms = runs[i].map(median);
    counts.forEach((rows, c) => {
      results.push({ format: v.spec, shape: s.name, n: s.n, k: s.k, rows, ms: ms[c] });
      v.layer.set(rows, (v.layer.get(rows) ?? 0) + s.perLayer * ms[c]);
    });
    const parts = counts.map((rows, c) =>
      rows === 1
        ? `1 row ${(1000 * ms[c]).toFixed(1)} us`
        : `${rows} rows ${(1000 * ms[c]).toFixed(1)} us (${(ms[c] / ms[0]).toFixed(2)}x)`
    );
    console.log(`${v.spec.padEnd(20)} ${s.name.padEnd(8)} ${s.n}x${s.k}: ${parts.join(", ")}`);
  });
}
for (const v of variants) {
  const one = v.layer.get(1)!;
  console.log(
    `${v.spec.padEnd(20)} one layer's 7 products: 1 row ${(1000 * one).toFixed(1)} us, ` +
      rowCounts.map((r) => `${r} rows ${(v.layer.get(r)! / one).toFixed(2)}x`).join(", "),
  );
}
if (args.values.out) {
  await Deno.writeTextFile(
    args.values.out,
    JSON.stringify({ adapter: gpu.describe(), date: new Date().toISOString(), results }, null, 2) +
      "\n",
  );
}
gpu.destroy();
