/**
 * Every notebook in notebooks/, in the real Deno Jupyter kernel, the two ways a learner runs one:
 *
 * 1. **Run All** (tools/jupyter_run.py): every cell queued at once through jupyter_client, as
 *    Jupyter Notebook, JupyterLab and VS Code do it. Every output must carry its own cell's
 *    `parent_header.msg_id` and arrive between that cell's `busy` and `idle`; no cell may raise;
 *    `// expect:` markers must be met, with exactly the plots and tables declared.
 * 2. **Stock `jupyter nbconvert --to notebook --execute`**, then `--to html`: it must succeed,
 *    every cell must show the same plots and tables as under Run All, and in headless Chromium
 *    (network off) every plot of the page must draw, with no page errors.
 *
 * Runs when QLAB_NOTEBOOKS=1 (CI sets it), and then fails if Jupyter, the Deno kernel or Chromium
 * is missing; otherwise ignored with the reason printed. Each notebook runs twice, well under a
 * minute each on a software adapter.
 */

import assert from "node:assert/strict";
import { basename, join } from "node:path";
import {
  jupyterMissing,
  listNotebooks,
  runInJupyter,
  runNbconvert,
  shownPerCell,
} from "../../tools/jupyter.ts";
import { checkPageRenders, chromiumMissing } from "../helpers/browser.ts";

const wanted = Deno.env.get("QLAB_NOTEBOOKS") === "1";
if (!wanted) {
  console.warn("notebook tests ignored: set QLAB_NOTEBOOKS=1 to execute the notebooks in Jupyter");
}
const notebooks = listNotebooks();

Deno.test({
  name: "notebooks: Jupyter, the Deno kernel and Chromium are there",
  ignore: !wanted,
  fn() {
    assert.equal(jupyterMissing(), undefined);
    assert.equal(chromiumMissing(), undefined);
    assert.ok(notebooks.length > 0, "no notebooks found");
  },
});

async function assertDraws(html: string, plots: number, how: string): Promise<void> {
  const page = await checkPageRenders(html, { timeoutMs: 30_000 });
  assert.deepEqual(page.errors, [], `page errors in ${how}'s HTML ${html}`);
  assert.deepEqual(page.undrawn, [], `plots that did not draw in ${how}'s HTML ${html}`);
  assert.equal(page.plots, plots, `plots on ${how}'s page vs plot outputs in the notebook`);
  assert.equal(page.drawn, plots);
}

/** A notebook of `cells` (code cells unless given as ["markdown", source]). */
function notebookJson(cells: (string | [string, string])[]): string {
  return JSON.stringify({
    nbformat: 4,
    nbformat_minor: 5,
    metadata: { kernelspec: { name: "deno", display_name: "Deno", language: "typescript" } },
    cells: cells.map((cell, i) => {
      const [type, source] = typeof cell === "string" ? ["code", cell] : cell;
      return {
        id: `c${i}`,
        cell_type: type,
        metadata: {},
        source,
        ...(type === "code" ? { outputs: [], execution_count: null } : {}),
      };
    }),
  });
}

Deno.test({
  name: "Run All: outputs printed, shown or returned at the very end of a cell stay in that cell",
  ignore: !wanted,
  async fn() {
    // Without the library's flush at the end of each cell, the Deno kernel (2.9) publishes some
    // of these after the cell's idle, labelled with the next cell (the runner then fails).
    const cells: string[] = [
      'import { barFigure, display, show, showTable } from "../../../mod.ts";',
    ];
    for (let i = 0; i < 6; i++) {
      cells.push(
        `// expect: text\nfor (let i = 0; i < 100; i++) console.log("cell ${i} line " + i + "x".repeat(200));`,
        `// expect: plot\ndisplay(barFigure(["a${i}"], [{ name: "n", values: [${i}] }]))`,
        `// expect: plot, table, text\nawait show(barFigure(["b${i}"], [{ name: "n", values: [${i}] }]));\n` +
          `await showTable([{ i: ${i} }]);\nconsole.log("end ${i}")`,
        `// expect: text\nconsole.log("y".repeat(200_000))`,
        `// expect: text\n${i} * 2`,
      );
    }
    // Inside the repository, so that the kernel finds deno.json (the import map) from its folder.
    const dir = await Deno.makeTempDir({
      dir: new URL(".", import.meta.url).pathname,
      prefix: ".run-all-",
    });
    try {
      const path = join(dir, "late.ipynb");
      await Deno.writeTextFile(path, notebookJson(cells));
      const run = await runInJupyter([path], join(dir, "out"), { html: true });
      const [result] = run.results;
      assert.ok(run.code === 0 && result?.ok, `Run All failed:\n${run.output}`);
      assert.equal(result.plots, 12);
      assert.equal(result.tables, 6);
      await assertDraws(result.html!, 12, "Run All");
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

for (const notebook of notebooks) {
  const name = basename(notebook);
  Deno.test({
    name: `notebook ${name}: Run All puts every output under its own cell, stock nbconvert ` +
      "runs it, and its page draws offline",
    ignore: !wanted,
    async fn() {
      const missing = jupyterMissing();
      assert.equal(missing, undefined, `cannot execute notebooks: ${missing}`);
      const out = await Deno.makeTempDir({ prefix: "qlab-notebook-" });
      try {
        // 1. Run All, with the runner's checks.
        const runAll = join(out, "run-all");
        const run = await runInJupyter([notebook], runAll, { html: false });
        const [result] = run.results;
        assert.ok(run.code === 0 && result?.ok, `${name} failed under Run All:\n${run.output}`);
        // A kernel failure (not a cell's) reruns the notebook; say so loudly, never silently.
        for (const why of result.restarts) console.warn(`  KERNEL RESTARTED: ${why}`);

        // 2. Stock nbconvert, as a user runs it.
        const stock = join(out, "nbconvert");
        const started = performance.now();
        const converted = await runNbconvert(notebook, stock);
        const seconds = (performance.now() - started) / 1000;
        assert.equal(converted.code, 0, `${name} failed in stock nbconvert:\n${converted.output}`);
        assert.deepEqual(
          await shownPerCell(converted.executed),
          result.shown,
          "per cell, [plots, tables] under stock nbconvert vs under Run All",
        );
        await assertDraws(converted.html!, result.plots, "stock nbconvert");
        console.log(
          `${name}: Run All ${result.seconds} s, nbconvert ${seconds.toFixed(1)} s; ` +
            `${result.plots} plots and ${result.tables} tables, each under its own cell, ` +
            `${result.restarts.length} kernel restarts`,
        );
      } finally {
        await Deno.remove(out, { recursive: true });
      }
    },
  });
}
