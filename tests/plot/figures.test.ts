import assert from "node:assert/strict";
import {
  barFigure,
  blockSizeSweepFigure,
  byteUnit,
  figureTitle,
  formatBytes,
  layerErrorHeatmapFigure,
  lineFigure,
  memoryBarsFigure,
  outlierHistogramFigure,
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

Deno.test("qualityVsBitsFigure: labelled points; KL in a second panel, log when it spans decades", () => {
  const rows = [
    { format: "fp16", bitsPerParam: 16, perplexity: 5.68, kl: 0.00002 },
    { format: "int8", bitsPerParam: 8.06, perplexity: 5.69, kl: 0.0004 },
    { format: "nf4", bitsPerParam: 4.127, perplexity: 5.87, kl: 0.021 },
  ];
  const fig = qualityVsBitsFigure(rows);
  assert.equal(fig.data.length, 2);
  const [ppl, kl] = fig.data as Any[];
  assert.deepEqual(ppl.x, [16, 8.06, 4.127]);
  assert.deepEqual(ppl.y, [5.68, 5.69, 5.87]);
  assert.deepEqual(ppl.text, ["fp16", "int8", "nf4"]);
  assert.match(ppl.mode, /text/);
  assert.equal(kl.yaxis, "y2");
  assert.deepEqual(kl.y, [0.00002, 0.0004, 0.021]);
  const layout = fig.layout as Any;
  assert.equal(layout.yaxis2.type, "log");
  assert.equal(layout.xaxis.title.text, "bits per parameter");

  // A zero KL (the reference against itself) cannot go on a log axis.
  const withZero = qualityVsBitsFigure(rows.map((r, i) => ({ ...r, kl: i === 0 ? 0 : r.kl })));
  assert.equal((withZero.layout as Any).yaxis2.type, "linear");

  const noKl = qualityVsBitsFigure(rows.map(({ kl: _, ...r }) => r));
  assert.equal(noKl.data.length, 1);
  assert.equal((noKl.layout as Any).yaxis2, undefined);
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
  assert.match(layout.annotations[0].text, /threshold 6/);

  const two = outlierHistogramFigure([
    { name: "a", magnitudes: [1, 2] },
    { name: "b", magnitudes: new Float32Array([3, 4, 20]) },
  ], 3.5);
  assert.equal(two.data.length, 2);
  assert.equal(two.data[1].name, "b (2 ≥ 3.5)");
  assert.deepEqual((two.data[0] as Any).x, (two.data[1] as Any).x, "series share their bins");
});

Deno.test("thresholdSweepFigure: error against FP16 column share, in threshold order", () => {
  const fig = thresholdSweepFigure([
    { threshold: 4, outlierColumnFraction: 0.004, error: 0.011 },
    { threshold: 8, outlierColumnFraction: 0.0005, error: 0.031 },
    { threshold: 6, outlierColumnFraction: 0.0012, error: 0.018 },
  ], "relative error");
  const t = fig.data[0] as Any;
  assert.deepEqual(t.x, [0.0005, 0.0012, 0.004]);
  assert.deepEqual(t.y, [0.031, 0.018, 0.011]);
  assert.deepEqual(t.text, ["t=8", "t=6", "t=4"]);
  const layout = fig.layout as Any;
  assert.equal(layout.yaxis.title.text, "relative error");
  assert.equal(layout.xaxis.tickformat, ".2%");
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
