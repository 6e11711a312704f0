/**
 * The demo command end to end on the bundled model (a short run: two quantized formats, few
 * tokens), its JSON, and its HTML report drawn in headless Chromium with the network off.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { main } from "../../cli/main.ts";
import { browserTestOptions, checkPageRenders } from "../helpers/browser.ts";

Deno.test({
  name: "demo prints the table, writes JSON, and its report draws every plot offline",
  ...browserTestOptions(),
  fn: async () => {
    const dir = await Deno.makeTempDir({ prefix: "qlab-demo-" });
    try {
      const report = join(dir, "report.html");
      const json = join(dir, "results.json");
      const status = await main([
        "demo",
        "--formats",
        "int8-absmax,llm-int8,nf4-dq",
        "--max-tokens",
        "96",
        "--context",
        "64",
        "--sample-tokens",
        "4",
        "--timing-runs",
        "2",
        "--timing-tokens",
        "2",
        "--report",
        report,
        "--json",
        json,
      ]);
      assert.equal(status, 0);
      const results = JSON.parse(await Deno.readTextFile(json));
      assert.deepEqual(
        results.results.map((r: { format: string }) => r.format),
        ["fp16", "int8-absmax", "llm-int8", "nf4-dq"],
      );
      const byFormat = Object.fromEntries(
        results.results.map((r: { format: string }) => [r.format, r]),
      );
      // What the issue promises the numbers show on the bundled model.
      assert.ok(byFormat["llm-int8"].klMean < byFormat["int8-absmax"].klMean, "LLM.int8() closer");
      assert.ok(Math.abs(byFormat["nf4-dq"].bitsPerParameter - 4.127) < 0.01);
      assert.ok(results.thresholdSweep.length > 0 && results.blockSizeSweep.length > 0);
      // Speeds: the median of the timed runs after a warm-up, and where they ran.
      assert.equal(results.timingRepeats, 2);
      assert.equal(typeof results.software, "boolean");
      for (const r of results.results) {
        assert.equal(r.decodeTokensPerSecondRuns.length, 2);
        const [a, b] = r.decodeTokensPerSecondRuns;
        assert.ok(Math.abs(r.decodeTokensPerSecond - (a + b) / 2) < 1e-9);
        assert.ok(Number.isFinite(r.nllDeltaStdErr) && Number.isFinite(r.klStdErr));
      }

      const page = await checkPageRenders(report, { timeoutMs: 60_000 });
      assert.deepEqual(page.errors, []);
      assert.ok(page.plots >= 9, `plots: ${page.plots}`);
      assert.equal(page.drawn, page.plots, `undrawn: ${page.undrawn.join("; ")}`);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test("compare refuses an unknown format and a missing text file with a clear message", async () => {
  const errors: string[] = [];
  const write = Deno.stderr.writeSync;
  Deno.stderr.writeSync = (p: Uint8Array) => {
    errors.push(new TextDecoder().decode(p));
    return p.length;
  };
  try {
    assert.equal(await main(["compare", "--formats", "int3"]), 2);
    assert.equal(await main(["compare", "--text", "/nonexistent/text.txt"]), 2);
    assert.equal(await main(["estimate", "--preset", "llama-9"]), 2);
  } finally {
    Deno.stderr.writeSync = write;
  }
  const all = errors.join("");
  assert.match(all, /unknown format "int3"/);
  assert.match(all, /--text: \/nonexistent\/text.txt: no such file/);
  assert.match(all, /unknown preset "llama-9"/);
});
