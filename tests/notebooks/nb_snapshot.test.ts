/**
 * tools/nb_snapshot.ts, what `deno task notebooks` does before saving: plot outputs keep their
 * Plotly JSON and text, gain a PNG drawn in Chromium, and lose the HTML that inlines plotly.js;
 * outputs holding only a piece of plotly.js go; every other output is left alone, and the file
 * stays a valid notebook.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { barFigure, display, displayTable, JUPYTER_DISPLAY, resetPlotlyInline } from "../../mod.ts";
import { plotlyScriptParts } from "../../lib/plot/plotly_js.ts";
import { notebookJson, PLOTLY_MIME, snapshotNotebook } from "../../tools/nb_snapshot.ts";
import { jupyterPython } from "../../tools/jupyter.ts";
import { browserTestOptions } from "../helpers/browser.ts";

function decodeBase64(text: string): Uint8Array {
  return Uint8Array.from(atob(text), (c) => c.charCodeAt(0));
}

Deno.test({
  name: "nb_snapshot: plots become PNG + Plotly JSON + text, other outputs stay, nbformat valid",
  ...browserTestOptions(),
  async fn() {
    resetPlotlyInline(); // the first figure carries plotly.js, as in a kernel's first plot
    const plot = display(barFigure(["fp16", "nf4"], [{ name: "MiB", values: [14, 5.1] }]))
      [JUPYTER_DISPLAY]();
    assert.ok(String(plot["text/html"]).length > 1e6, "the first plot inlines plotly.js");
    const table = displayTable([{ format: "nf4", bits: 4.5 }])[JUPYTER_DISPLAY]();
    const notebook = {
      cells: [
        {
          cell_type: "code",
          execution_count: 1,
          id: "a",
          metadata: {},
          outputs: [
            { output_type: "stream", name: "stdout", text: ["hello\n"] },
            // pieces of plotly.js sent ahead of the first figure, as from the Deno kernel
            ...plotlyScriptParts().slice(0, 2).map((html) => ({
              output_type: "display_data",
              data: { "text/html": html },
              metadata: {},
            })),
            { output_type: "display_data", data: plot, metadata: {} },
          ],
          source: ["// expect: plot\n", "display(fig)"],
        },
        {
          cell_type: "code",
          execution_count: 2,
          id: "b",
          metadata: {},
          outputs: [{
            output_type: "execute_result",
            execution_count: 2,
            data: table,
            metadata: {},
          }],
          source: ["// expect: table\n", "displayTable(rows)"],
        },
      ],
      metadata: { kernelspec: { name: "deno", display_name: "Deno", language: "typescript" } },
      nbformat: 4,
      nbformat_minor: 5,
    };
    const dir = await Deno.makeTempDir({ prefix: "qlab-snapshot-" });
    try {
      const path = join(dir, "n.ipynb");
      await Deno.writeTextFile(path, notebookJson(notebook));
      const result = await snapshotNotebook(path);
      assert.equal(result.plots, 1);
      assert.deepEqual(result.failed, []);
      assert.ok(result.bytesAfter < 200_000, `${result.bytesAfter} bytes after`);
      assert.ok(result.bytesBefore > 1e6);

      const saved = JSON.parse(await Deno.readTextFile(path));
      assert.equal(saved.cells[0].outputs.length, 2, "the plotly.js pieces are dropped");
      const [stream, plotOut] = saved.cells[0].outputs;
      assert.deepEqual(stream, notebook.cells[0].outputs[0]);
      assert.deepEqual(Object.keys(plotOut.data).sort(), [PLOTLY_MIME, "image/png", "text/plain"]);
      assert.deepEqual(plotOut.data[PLOTLY_MIME], JSON.parse(JSON.stringify(plot[PLOTLY_MIME])));
      assert.equal(plotOut.data["text/plain"], plot["text/plain"]);
      const png = decodeBase64(plotOut.data["image/png"]);
      assert.deepEqual([...png.slice(1, 4)], [0x50, 0x4e, 0x47], "a PNG");
      const view = new DataView(png.buffer);
      assert.equal(view.getUint32(16), 860, "width");
      assert.equal(view.getUint32(20), 420, "height");
      assert.deepEqual(saved.cells[1].outputs[0].data, table);

      // Snapshotting again finds the same plot and changes nothing.
      const before = await Deno.readTextFile(path);
      const again = await snapshotNotebook(path);
      assert.equal(again.plots, 1);
      assert.equal(again.bytesAfter, again.bytesBefore);

      const python = jupyterPython();
      if (python) {
        const check = await new Deno.Command(python, {
          args: [
            "-c",
            "import nbformat, sys; nbformat.validate(nbformat.read(sys.argv[1], 4))",
            path,
          ],
          stderr: "piped",
        }).output();
        assert.ok(check.success, new TextDecoder().decode(check.stderr));
      }
      assert.ok(before.endsWith("}\n"));
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
