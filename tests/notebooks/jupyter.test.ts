/**
 * Every notebook in notebooks/ executed in the real Deno Jupyter kernel (tools/jupyter_run.py,
 * which keeps outputs sent after a cell's idle and fails on errors and unmet `// expect:`
 * markers), then its nbconvert HTML export opened in headless Chromium with the network off:
 * every plot must draw and the page must show no errors.
 *
 * Runs when QLAB_NOTEBOOKS=1 (CI sets it), and then fails if Jupyter, the Deno kernel or Chromium
 * is missing; otherwise ignored with the reason printed. Each notebook takes up to a minute or
 * two on a software adapter.
 */

import assert from "node:assert/strict";
import { basename } from "node:path";
import { jupyterMissing, listNotebooks, runInJupyter } from "../../tools/jupyter.ts";
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

for (const notebook of notebooks) {
  Deno.test({
    name: `notebook ${basename(notebook)}: runs in the Deno kernel, and its HTML draws offline`,
    ignore: !wanted,
    async fn() {
      const missing = jupyterMissing();
      assert.equal(missing, undefined, `cannot execute notebooks: ${missing}`);
      const out = await Deno.makeTempDir({ prefix: "qlab-notebook-" });
      try {
        const run = await runInJupyter([notebook], out, { html: true });
        const [result] = run.results;
        assert.ok(
          run.code === 0 && result?.ok,
          `${basename(notebook)} failed in Jupyter:\n${run.output}`,
        );
        console.log(
          `${basename(notebook)}: ${result.seconds} s in the kernel, ${result.plots} plots, ` +
            `${result.tables} tables, ` +
            `${result.late_after_idle + result.late_in_later_cell} outputs arrived after idle, ` +
            `${result.restarts.length} kernel restarts`,
        );
        // A kernel failure (not a cell's) reruns the notebook; say so loudly, never silently.
        for (const why of result.restarts) console.warn(`  KERNEL RESTARTED: ${why}`);
        const page = await checkPageRenders(result.html!, { timeoutMs: 30_000 });
        assert.deepEqual(page.errors, [], `page errors in ${result.html}`);
        assert.deepEqual(page.undrawn, [], `plots that did not draw in ${result.html}`);
        assert.equal(page.plots, result.plots, "plots on the page vs plot outputs in the notebook");
        assert.equal(page.drawn, result.plots);
      } finally {
        await Deno.remove(out, { recursive: true });
      }
    },
  });
}
