/** Known answers for per-layer error, outlier statistics and the two sweeps. */
import assert from "node:assert/strict";
import { errorStats } from "../../lib/eval/layer_error.ts";
import { outlierStatistics } from "../../lib/eval/outliers.ts";
import { blockSizeSweep, thresholdSweep } from "../../lib/eval/sweeps.ts";
import { openCheckpoint } from "../../lib/model/checkpoint.ts";
import { loadLlamaConfig } from "../../lib/model/config.ts";
import { type Trace, TRACE_POINTS } from "../../lib/model/llama.ts";
import { writeRandomLlama } from "../helpers/random_llama.ts";
import { randn } from "../helpers/random.ts";

Deno.test("errorStats: identical, scaled and orthogonal outputs", () => {
  const ref = new Float32Array([1, 2, 3, 4]);
  assert.deepEqual(errorStats(ref, ref), { relativeError: 0, cosine: 1 });
  const doubled = errorStats(ref.map((v) => 2 * v), ref);
  assert.ok(Math.abs(doubled.relativeError - 1) < 1e-12 && Math.abs(doubled.cosine - 1) < 1e-12);
  const ortho = errorStats(new Float32Array([1, 0]), new Float32Array([0, 1]));
  assert.equal(ortho.cosine, 0);
  assert.ok(Math.abs(ortho.relativeError - Math.SQRT2) < 1e-12);
});

/** A trace of `tokens` rows with randn activations and injected outliers. */
function syntheticTrace(
  layers: number,
  tokens: number,
  widths: Record<string, number>,
  outliers: { layer: number; dim: number; rows: number[]; value: number }[],
): Trace {
  const t: Trace = {
    tokens,
    logits: new Float32Array(0),
    layers: Array.from({ length: layers }, (_, l) =>
      Object.fromEntries(
        TRACE_POINTS.map((p, i) => [p, randn(tokens * widths[p], 100 * l + i, 0.5)]),
      ) as Trace["layers"][number]),
  };
  for (const o of outliers) {
    const x = t.layers[o.layer].attn_in;
    for (const r of o.rows) x[r * widths.attn_in + o.dim] = o.value;
  }
  return t;
}

Deno.test("outlier statistics find the injected dimensions, their size and frequency", () => {
  const widths = { attn_in: 64, o_in: 64, mlp_in: 64, down_in: 128, block_out: 64 };
  const trace = syntheticTrace(2, 10, widths, [
    { layer: 1, dim: 7, rows: [0, 3, 4], value: 12 },
    { layer: 1, dim: 40, rows: [3], value: -9 },
  ]);
  const stats = outlierStatistics(trace, 6);
  const l1 = stats.find((s) => s.layer === 1 && s.point === "attn_in")!;
  assert.deepEqual(l1.dims, [7, 40]);
  assert.deepEqual(l1.dimMaxAbs, [12, 9]);
  assert.deepEqual(l1.dimTokenFraction, [0.3, 0.1]);
  assert.equal(l1.tokenFraction, 0.3); // rows 0, 3, 4
  assert.equal(l1.maxAbs, 12);
  assert.equal(l1.columnFraction, 2 / 64);
  // randn(0.5) never reaches 6: no outliers anywhere else.
  assert.ok(stats.filter((s) => s !== l1).every((s) => s.dims.length === 0));
});

Deno.test("sweeps: lower thresholds send more columns to FP16 and cut the error; smaller blocks cost bits and save error", async () => {
  const dir = await Deno.makeTempDir({ prefix: "qlab-sweep-" });
  try {
    await writeRandomLlama(dir, { layers: 2, hidden: 64, heads: 4, kvHeads: 2, intermediate: 128 });
    const config = await loadLlamaConfig(dir);
    const widths = { attn_in: 64, o_in: 64, mlp_in: 64, down_in: 128, block_out: 64 };
    const trace = syntheticTrace(2, 16, widths, [
      { layer: 0, dim: 5, rows: [1, 2, 9], value: 25 },
      { layer: 1, dim: 33, rows: [4, 8], value: -30 },
    ]);
    const ckpt = await openCheckpoint(dir);
    try {
      const points = await thresholdSweep(ckpt, config, trace, [Infinity, 6, 3, 1], {
        linears: ["self_attn.q_proj"],
      });
      for (let i = 1; i < points.length; i++) {
        assert.ok(points[i].outlierColumnFraction >= points[i - 1].outlierColumnFraction);
      }
      assert.equal(points[0].outlierColumnFraction, 0);
      // Injected outliers wreck the int8 row scales; decomposing them recovers accuracy.
      assert.ok(points[1].error < points[0].error / 2, JSON.stringify(points));

      const sweep = await blockSizeSweep(ckpt, config, [32, 64, 256]);
      const at = (b: number, dq: boolean) =>
        sweep.find((p) => p.blockSize === b && p.doubleQuant === dq)!;
      assert.equal(at(64, false).bitsPerParam, 4.5);
      // 4.127 on large tensors; these 64-wide ones pay a partial 256-block and the offset more.
      const dq = at(64, true).bitsPerParam;
      assert.ok(dq > 4.126 && dq < 4.2, `nf4-dq bits ${dq}`);
      assert.ok(
        at(32, false).error < at(64, false).error && at(64, false).error < at(256, false).error,
      );
      assert.ok(at(32, false).bitsPerParam > at(64, false).bitsPerParam);
    } finally {
      ckpt.close();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
