import assert from "node:assert/strict";
import {
  barFigure,
  blockSizeSweepFigure,
  byteUnit,
  figureTitle,
  formatBytes,
  klFrontier,
  layerErrorGridsFigure,
  layerErrorHeatmapFigure,
  lineFigure,
  memoryBarsFigure,
  outlierHistogramFigure,
  outlierMagnitudeFigure,
  qualityVsBitsFigure,
  thresholdSweepFigure,
  type Trace,
} from "../../lib/plot/mod.ts";
import { everyFigure } from "./_figures.ts";

const GiB = 1024 ** 3;
const MiB = 1024 ** 2;

/** Loosely typed view of a trace's or layout's attributes, for assertions. */
// deno-lint-ignore no-explicit-any
type Any = any;

Deno.test("units: binary prefixes, three significant digits", () => {
  assert.equal(byteUnit(512).name, "B");
  assert.equal(byteUnit(3 * MiB).name, "MiB");
  assert.equal(byteUnit(8e9).name, "GiB");
  assert.equal(formatBytes(1536 * MiB), "1.50 GiB");
  assert.equal(formatBytes(100), "100 B");
  // Never exponent notation: from 100 units, whole units; rounding to 1024 moves up a unit.
  assert.equal(formatBytes(999.7 * MiB), "1000 MiB");
  assert.equal(formatBytes(1000.4 * MiB), "1000 MiB");
  assert.equal(formatBytes(1023.9 * MiB), "1.00 GiB");
  assert.equal(formatBytes(123.4 * MiB), "123 MiB");
  assert.equal(formatBytes(99.94 * MiB), "99.9 MiB");
  assert.equal(formatBytes(2000 * 1024 ** 4), "2000 TiB");
  for (let bytes = 1; bytes < 2 ** 45; bytes = Math.ceil(bytes * 1.37)) {
    assert.doesNotMatch(formatBytes(bytes), /e\+/, String(bytes));
  }
});

Deno.test("memoryBarsFigure: one stacked trace per component, values in the axis unit", () => {
  const fig = memoryBarsFigure([
    {
      format: "fp16",
      weights: 12 * GiB,
      activations: 1 * GiB,
      kvCache: 2 * GiB,
      scratch: 0.5 * GiB,
    },
    { format: "nf4", weights: 3 * GiB, activations: 1 * GiB, kvCache: 2 * GiB, scratch: 1 * GiB },
  ], { budgetBytes: 8e9, budgetLabel: "8 GB card" });
  const layout = fig.layout as Any;
  assert.equal(layout.barmode, "stack");
  assert.deepEqual(fig.data.map((t) => t.name), ["weights", "activations", "KV cache", "scratch"]);
  for (const t of fig.data) {
    assert.equal(t.type, "bar");
    assert.deepEqual(t.x, ["fp16", "nf4"]);
  }
  assert.deepEqual(fig.data[0].y, [12, 3]);
  assert.deepEqual(fig.data[3].y, [0.5, 1]);
  assert.match(layout.yaxis.title.text, /GiB/);
  // Budget: a dashed line across the plot at 8e9 bytes in GiB, with its label.
  assert.equal(layout.shapes.length, 1);
  assert.equal(layout.shapes[0].y0, 8e9 / GiB);
  assert.equal(layout.shapes[0].xref, "paper");
  const texts = layout.annotations.map((a: Any) => a.text);
  assert.ok(texts.includes("8 GB card"));
  // Totals on top of each bar.
  assert.ok(texts.includes("15.5 GiB"));
  assert.ok(texts.includes("7.00 GiB"));
});

Deno.test("memoryBarsFigure: small models in MiB; budgets from rows, deduplicated", () => {
  const fig = memoryBarsFigure([
    {
      format: "fp16",
      weights: 30 * MiB,
      activations: MiB,
      kvCache: 2 * MiB,
      scratch: MiB,
      budgetBytes: 64 * MiB,
    },
    {
      format: "nf4",
      weights: 8 * MiB,
      activations: MiB,
      kvCache: 2 * MiB,
      scratch: MiB,
      budgetBytes: 64 * MiB,
    },
  ]);
  const layout = fig.layout as Any;
  assert.match(layout.yaxis.title.text, /MiB/);
  assert.deepEqual(fig.data[0].y, [30, 8]);
  assert.equal(layout.shapes.length, 1);
  assert.equal(layout.shapes[0].y0, 64);
  assert.ok(layout.annotations.some((a: Any) => a.text === "budget 64.0 MiB"));
  const card = memoryBarsFigure([], { budgetBytes: 8e9 }).layout as Any;
  assert.equal(card.annotations[0].text, "budget 8 GB (7.45 GiB)");
  assert.equal((memoryBarsFigure([]).layout as Any).shapes.length, 0);
});

Deno.test("qualityVsBitsFigure: one legend entry per format in both panels, no point labels, the KL frontier", () => {
  const rows = [
    { format: "fp16", bitsPerParam: 16, perplexity: 5.68 },
    { format: "int8", bitsPerParam: 8.06, perplexity: 5.69, kl: 0.0004 },
    { format: "fp4", bitsPerParam: 4.5, perplexity: 5.95, kl: 0.03 },
    { format: "nf4", bitsPerParam: 4.5, perplexity: 5.87, kl: 0.021 },
    { format: "nf4-dq", bitsPerParam: 4.127, perplexity: 5.87, kl: 0.021 },
  ];
  const fig = qualityVsBitsFigure(rows);
  const traces = fig.data as Any[];
  const ppl = traces.filter((t) => t.yaxis === undefined);
  assert.deepEqual(ppl.map((t) => t.name), rows.map((r) => r.format));
  assert.deepEqual(ppl.map((t) => t.x[0]), [16, 8.06, 4.5, 4.5, 4.127]);
  for (const t of traces) assert.doesNotMatch(t.mode, /text/, "no labels to collide");
  const kl = traces.filter((t) => t.yaxis === "y2" && t.name !== "frontier");
  assert.deepEqual(kl.map((t) => t.name), ["int8", "fp4", "nf4", "nf4-dq"]);
  assert.ok(kl.every((t) => t.showlegend === false && t.legendgroup === t.name));
  const frontier = traces.find((t) => t.name === "frontier");
  assert.deepEqual(frontier.x, [4.127, 8.06], "nf4-dq and int8; nf4 and fp4 are dominated");
  assert.deepEqual(klFrontier(rows.slice(1)).map((r) => r.format), ["nf4-dq", "int8"]);
  const layout = fig.layout as Any;
  assert.equal(layout.yaxis2.type, "log");
  assert.equal(layout.xaxis.title.text, "bits per parameter");

  const noKl = qualityVsBitsFigure(rows.map(({ kl: _, ...r }) => r as typeof rows[0]));
  assert.equal(noKl.data.length, rows.length);
  assert.equal((noKl.layout as Any).yaxis2, undefined);
});

Deno.test("layerErrorGridsFigure: small multiples on one colour axis from 0 to the largest error", () => {
  const grid = (format: string, values: number[][]) => ({
    rows: ["layer 0", "layer 1"],
    columns: ["q_proj", "down_proj"],
    values,
    metric: "relative error",
    format,
  });
  const fig = layerErrorGridsFigure([
    grid("llm-int8", [[0.01, 0.03], [0.02, NaN]]),
    grid("nf4", [[0.05, 0.07], [0.06, 0.08]]),
  ]);
  const [a, b] = fig.data as Any[];
  assert.equal(a.coloraxis, "coloraxis");
  assert.equal(b.coloraxis, "coloraxis");
  assert.equal(b.xaxis, "x2");
  const layout = fig.layout as Any;
  assert.equal(layout.coloraxis.cmin, 0);
  assert.equal(layout.coloraxis.cmax, 0.08);
  assert.ok(layout.xaxis.domain[1] <= layout.xaxis2.domain[0], "side by side");
  assert.throws(() => layerErrorGridsFigure([grid("x", [[1]])]), RangeError);
});

Deno.test("layerErrorHeatmapFigure: values and labels in, layer 0 on top, shape checked", () => {
  const fig = layerErrorHeatmapFigure({
    rows: ["layer 0", "layer 1"],
    columns: ["q_proj", "down_proj", "block out"],
    values: [[0.1, 0.2, NaN], new Float32Array([0.5, 0.25, 0.125])],
    metric: "relative error",
    format: "nf4",
  });
  const t = fig.data[0] as Any;
  assert.equal(t.type, "heatmap");
  assert.deepEqual(t.x, ["q_proj", "down_proj", "block out"]);
  assert.deepEqual(t.y, ["layer 0", "layer 1"]);
  assert.deepEqual(t.z, [[0.1, 0.2, null], [0.5, 0.25, 0.125]]);
  assert.equal(t.colorbar.title.text, "relative error");
  assert.equal((fig.layout as Any).yaxis.autorange, "reversed");
  assert.match(figureTitle(fig), /relative error.*nf4/);
  assert.throws(
    () =>
      layerErrorHeatmapFigure({
        rows: ["a"],
        columns: ["x"],
        values: [[1, 2]],
        metric: "m",
        format: "f",
      }),
    RangeError,
  );
  assert.throws(
    () =>
      layerErrorHeatmapFigure({
        rows: ["a", "b"],
        columns: ["x"],
        values: [[1]],
        metric: "m",
        format: "f",
      }),
    RangeError,
  );
});

Deno.test("outlierHistogramFigure: binned counts of |x|, log counts, threshold line", () => {
  const values = [-0.5, 0.5, 1.5, -7, 9, 2.5];
  const fig = outlierHistogramFigure([{ name: "attn in", magnitudes: values }], 6, { bins: 10 });
  const t = fig.data[0] as Any;
  assert.equal(t.type, "bar");
  assert.equal(t.name, "attn in (2 ≥ 6)");
  assert.equal(t.x.length, 10);
  const counts = (t.y as (number | null)[]).map((c) => c ?? 0);
  assert.equal(counts.reduce((a, b) => a + b, 0), values.length);
  // Max 9 over 10 bins: 0.5 and -0.5 share the first bin, 9 lands in the last.
  assert.equal(counts[0], 2);
  assert.equal(counts[9], 1);
  assert.equal(t.y[5], null, "empty bins are gaps on a log axis");
  const layout = fig.layout as Any;
  assert.equal(layout.yaxis.type, "log");
  assert.equal(layout.shapes[0].x0, 6);
  assert.equal(layout.shapes[0].x1, 6);
  assert.ok(layout.annotations.some((a: Any) => /τ = 6/.test(a.text)));

  // Several series: small multiples, one panel each, on one shared x axis (no overlaid bars).
  const two = outlierHistogramFigure([
    { name: "a", magnitudes: [1, 2] },
    { name: "b", magnitudes: new Float32Array([3, 4, 20]) },
  ], 3.5);
  assert.equal(two.data.length, 2);
  assert.equal(two.data[1].name, "b (2 ≥ 3.5)");
  const [p, q] = two.data as Any[];
  assert.deepEqual(p.x, q.x, "series share their bins");
  assert.equal(p.yaxis, "y");
  assert.equal(q.yaxis, "y2");
  const l2 = two.layout as Any;
  assert.ok(l2.yaxis2.domain[1] < l2.yaxis.domain[0], "panel 2 below panel 1");
  assert.equal(l2.yaxis2.type, "log");
  assert.equal(l2.shapes[0].yref, "paper", "the threshold line runs through every panel");
});

Deno.test("outlierMagnitudeFigure: largest |x| per layer on a log axis, with the τ line", () => {
  const fig = outlierMagnitudeFigure([
    { name: "attention input", values: [2.1, 6.8, 7.2] },
    { name: "down_proj input", values: new Float32Array([9.5, 12, 30]) },
  ], 6);
  assert.deepEqual(fig.data.map((t) => t.name), ["attention input", "down_proj input"]);
  assert.deepEqual((fig.data[0] as Any).x, ["0", "1", "2"]);
  const layout = fig.layout as Any;
  assert.equal(layout.yaxis.type, "log");
  assert.equal(layout.shapes[0].y0, 6);
});

Deno.test("thresholdSweepFigure: error and FP16 columns in %, against τ on a log axis, ∞ included", () => {
  const fig = thresholdSweepFigure([
    { threshold: 4, outlierColumnFraction: 0.004, error: 0.011 },
    { threshold: Infinity, outlierColumnFraction: 0, error: 0.035 },
    { threshold: 8, outlierColumnFraction: 0.0005, error: 0.031 },
    { threshold: 6, outlierColumnFraction: 0.0012, error: 0.018 },
  ], "relative error");
  const [columns, error] = fig.data as Any[];
  assert.equal(error.x.length, 4);
  assert.deepEqual(error.x.slice(0, 3), [4, 6, 8]);
  assert.ok(error.x[3] > 8, "τ = ∞ drawn right of the largest threshold");
  assert.deepEqual(error.y.map((v: number) => Number(v.toFixed(6))), [1.1, 1.8, 3.1, 3.5]);
  assert.ok(Math.abs(error.y[3] - 3.5) < 1e-9, "in %");
  assert.ok(Math.abs(columns.y[0] - 0.4) < 1e-9, "in %");
  assert.equal(columns.yaxis, "y2");
  const layout = fig.layout as Any;
  assert.equal(layout.xaxis.type, "log");
  assert.equal(layout.xaxis.ticktext.at(-1), "∞");
  assert.equal(layout.yaxis.title.text, "relative error (%)");
});

Deno.test("blockSizeSweepFigure: one line per scale format, points in block order", () => {
  const fig = blockSizeSweepFigure([
    { blockSize: 128, bitsPerParam: 4.25, error: 0.1, doubleQuant: false },
    { blockSize: 64, bitsPerParam: 4.5, error: 0.09, doubleQuant: false },
    { blockSize: 64, bitsPerParam: 4.127, error: 0.09, doubleQuant: true },
  ]);
  assert.deepEqual(fig.data.map((t) => t.name), ["fp32 scales", "double quant"]);
  const [plain, dq] = fig.data as Any[];
  assert.deepEqual(plain.text, ["64", "128"]);
  assert.deepEqual(plain.x, [4.5, 4.25]);
  assert.deepEqual(dq.y, [0.09]);
  assert.equal(
    blockSizeSweepFigure([{ blockSize: 64, bitsPerParam: 4.5, error: 1, doubleQuant: false }]).data
      .length,
    1,
  );
});

Deno.test("lineFigure and barFigure: series in, axes as asked", () => {
  const line = lineFigure([{ name: "nf4", x: new Float64Array([1, 2]), y: [3, NaN] }], {
    logY: true,
    yTitle: "tok/s",
  });
  assert.deepEqual(line.data[0].x, [1, 2]);
  assert.deepEqual(line.data[0].y, [3, null]);
  assert.equal((line.layout as Any).yaxis.type, "log");
  const bars = barFigure(
    ["a", "b"],
    [{ name: "s", values: [1, 2] }, { name: "t", values: [3, 4] }],
    {
      stacked: true,
      horizontal: true,
    },
  );
  assert.equal((bars.layout as Any).barmode, "stack");
  assert.deepEqual(bars.data[1].x, [3, 4]);
  assert.deepEqual(bars.data[1].y, ["a", "b"]);
  assert.equal(bars.data[1].orientation, "h");
});

Deno.test("every figure is plain JSON, titled, with traces", () => {
  for (const [name, fig] of Object.entries(everyFigure())) {
    assert.deepEqual(JSON.parse(JSON.stringify(fig)), fig, name);
    assert.ok(fig.data.length > 0, name);
    assert.ok(figureTitle(fig).length > 0, name);
    for (const t of fig.data as Trace[]) assert.equal(typeof t.type, "string", name);
  }
});
