/**
 * The pages drawn for real: a report with every figure kind, and the HTML a notebook export holds
 * (two figure outputs, with and without a require.js-style loader on the page), in headless
 * Chromium with the network off. Ignored with a printed reason when Chromium is missing, unless
 * QLAB_REQUIRE_BROWSER=1.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import {
  display,
  guardedScriptTag,
  JUPYTER_DISPLAY,
  plotHtml,
  plotlyScriptParts,
  resetPlotlyInline,
  writeReport,
} from "../../lib/plot/mod.ts";
import { browserTestOptions, checkPageRenders } from "../helpers/browser.ts";
import { everyFigure } from "./_figures.ts";

const { ignore } = browserTestOptions();

/** A page laid out like nbconvert's HTML export, one output area per fallback. */
function notebookPage(head: string, outputs: string[], tail = ""): string {
  const cells = outputs.map((html, i) =>
    `<div class="jp-Cell"><div class="jp-InputArea">In [${i + 1}]</div>\n` +
    `<div class="jp-OutputArea-output" data-mime-type="text/html">\n${html}\n</div></div>`
  ).join("\n");
  return `<!DOCTYPE html>\n<html><head><meta charset="utf-8">${head}</head>\n<body>\n${cells}\n${tail}\n</body></html>\n`;
}

/** The text/html of a figure's bundle, as the kernel would send it. */
function fallback(figure: Parameters<typeof display>[0]): string {
  return display(figure)[JUPYTER_DISPLAY]()["text/html"] as string;
}

/**
 * A require.js stand-in: a global `define` with `define.amd`, which counts its calls, and a
 * CommonJS-style `module` global. Unguarded, a UMD bundle would hand itself to either of them
 * instead of setting its window global.
 */
const FAKE_LOADER = `<script>
window.__defineCalls = 0;
function define() { window.__defineCalls++; }
define.amd = {};
window.__pageDefine = define;
var module = { exports: {} };
</script>`;

/** A UMD library in the shape of plotly.js 2.x's wrapper: AMD first, then CommonJS, then window. */
const AMD_FIRST_UMD = `(function (root, factory) {
  if (typeof define === "function" && define.amd) define([], factory);
  else if (typeof module === "object" && module.exports) module.exports = factory();
  else root.FakeLib = factory();
})(this, function () { return { ok: true }; });`;

/** Turns a broken guard into a page error, which checkPageRenders reports. */
const GUARD_CHECK = `<script>
if (window.__defineCalls !== 0) throw new Error("the page's define was called " + window.__defineCalls + " times");
if (define !== window.__pageDefine || !define.amd) throw new Error("the page's define was replaced");
if (!window.FakeLib || !window.FakeLib.ok) throw new Error("the guarded UMD library did not set its window global");
if (!window.Plotly) throw new Error("plotly.js did not set window.Plotly");
</script>`;

Deno.test({
  name: "browser: a report with every figure kind draws offline without errors",
  ignore,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "qlab-plot-" });
    try {
      const figures = everyFigure();
      const path = join(dir, "report.html");
      await writeReport(path, {
        title: "Every figure",
        sections: [
          ...Object.entries(figures).map(([heading, figure]) => ({ heading, figures: [figure] })),
          { heading: "Table", table: { columns: ["format", "bits"], rows: [["nf4", 4.127]] } },
        ],
      });
      const result = await checkPageRenders(path);
      assert.deepEqual(result.errors, []);
      assert.equal(result.plots, Object.keys(figures).length);
      assert.equal(result.drawn, result.plots, `undrawn: ${result.undrawn.join(", ")}`);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

/**
 * Writes `outputs` as a notebook page twice — plain, and with a require.js-style loader plus a
 * guarded UMD library and the guard check — and asserts that both draw their two plots.
 */
async function assertBothPagesDraw(name: string, outputs: string[]): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "qlab-plot-" });
  try {
    const plain = join(dir, `${name}.html`);
    await Deno.writeTextFile(plain, notebookPage("", outputs));
    const amd = join(dir, `${name}-requirejs.html`);
    await Deno.writeTextFile(
      amd,
      notebookPage(FAKE_LOADER, [guardedScriptTag(AMD_FIRST_UMD, "fake"), ...outputs], GUARD_CHECK),
    );
    for (const path of [plain, amd]) {
      const result = await checkPageRenders(path);
      assert.deepEqual(result.errors, [], path);
      assert.equal(result.plots, 2, path);
      assert.equal(result.drawn, 2, `${path}: undrawn ${result.undrawn.join(", ")}`);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test({
  name:
    "browser: two notebook outputs draw from one inlined plotly.js, with and without require.js",
  ignore,
  async fn() {
    const { memory, heatmap } = everyFigure();
    resetPlotlyInline();
    await assertBothPagesDraw("notebook", [fallback(memory), fallback(heatmap)]);
  },
});

Deno.test({
  name: "browser: plotly.js sent as separate outputs (as in the kernel) draws, with and without " +
    "require.js",
  ignore,
  async fn() {
    const { memory, heatmap } = everyFigure();
    const parts = plotlyScriptParts();
    assert.ok(parts.length > 4, `${parts.length} parts`);
    // Each part its own output, the last one in front of the first figure, as the kernel gets
    // them; the second figure relies on the first's plotly.js.
    resetPlotlyInline();
    const plots = [fallback(memory), fallback(heatmap)].map((html) =>
      html.replace(/^<script[^>]*data-qlab-inline="plotly"[^]*?<\/script>/, "")
    );
    await assertBothPagesDraw("parts", [
      ...parts.slice(0, -1),
      parts[parts.length - 1] + plots[0],
      plots[1],
    ]);
  },
});

Deno.test({
  name: "browser: the checker sees a plot that cannot draw and a page that reaches for the network",
  ignore,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "qlab-plot-" });
    try {
      const path = join(dir, "broken.html");
      // No plotly.js on the page; the plot gives up after 300 ms and says why.
      await Deno.writeTextFile(
        path,
        notebookPage("", [
          plotHtml(everyFigure().bar, { waitMs: 300 }),
          `<img src="http://example.invalid/pixel.png" alt="">`,
        ]),
      );
      const result = await checkPageRenders(path, { timeoutMs: 5000 });
      assert.equal(result.plots, 1);
      assert.equal(result.drawn, 0);
      assert.match(result.undrawn[0], /plotly\.js is not loaded/);
      assert.ok(
        result.errors.some((e) => e.includes("network request: http://example.invalid/")),
        result.errors.join("\n"),
      );
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
