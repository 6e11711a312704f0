import assert from "node:assert/strict";
import {
  display,
  displayTable,
  JUPYTER_DISPLAY,
  type MimeBundle,
  plotlyJsPath,
  plotlyJsSource,
  resetPlotlyInline,
  show,
  showTable,
} from "../../lib/plot/mod.ts";
import { flushKernelOutputs, OUTPUT_HOOK } from "../../lib/plot/kernel_outputs.ts";
import { everyFigure } from "./_figures.ts";

const PLOTLY_MIME = "application/vnd.plotly.v1+json";
/** The banner at the top of plotly.min.js: one per inlined copy. */
const BANNER = /\* plotly\.js v\d+\.\d+\.\d+/g;

function count(text: string, pattern: RegExp): number {
  return [...text.matchAll(pattern)].length;
}

Deno.test("plotly.js is found in Deno's npm cache and read whole", () => {
  assert.match(plotlyJsPath(), /plotly\.js-dist-min[\\/].*plotly\.min\.js$/);
  const source = plotlyJsSource();
  assert.ok(source.length > 1_000_000);
  assert.equal(count(source, BANNER), 1);
});

Deno.test("display: plotly JSON, HTML fallback and text summary in one bundle", () => {
  resetPlotlyInline();
  const { quality } = everyFigure();
  const out = display(quality, { title: "Quality", summary: { "nf4 perplexity": 5.87 } });
  const bundle = out[JUPYTER_DISPLAY]();
  assert.deepEqual(Object.keys(bundle).sort(), [PLOTLY_MIME, "text/html", "text/plain"].sort());
  const plotly = bundle[PLOTLY_MIME] as { data: unknown; layout: unknown; config: unknown };
  assert.deepEqual(plotly.data, quality.data);
  assert.deepEqual(plotly.layout, quality.layout);
  assert.deepEqual(JSON.parse(JSON.stringify(plotly)), plotly, "the bundle is plain JSON");
  assert.equal(bundle["text/plain"], "Quality\n  nf4 perplexity: 5.87");
  const html = bundle["text/html"] as string;
  assert.match(html, /class="qlab-plot"/);
  assert.match(html, /Plotly\.newPlot/);
  // The kernel finds the method through the global symbol registry.
  assert.equal(
    typeof (out as unknown as Record<symbol, unknown>)[Symbol.for("Jupyter.display")],
    "function",
  );
  // Asked twice, the same bundle: asking again must not lose plotly.js from this output.
  assert.equal(out[JUPYTER_DISPLAY](), bundle);
});

Deno.test("display: plotly.js inlined exactly once per process, guarded against require.js", () => {
  resetPlotlyInline();
  const { memory, heatmap } = everyFigure();
  const first = display(memory)[JUPYTER_DISPLAY]()["text/html"] as string;
  const second = display(heatmap)[JUPYTER_DISPLAY]()["text/html"] as string;
  assert.equal(count(first + second, BANNER), 1);
  assert.equal(count(first, BANNER), 1);
  assert.ok(second.length < 100_000, "later plots reference the global Plotly");
  // The second waits for window.Plotly instead of assuming it.
  assert.match(second, /typeof window\.Plotly === "undefined"/);
  assert.match(second, /setTimeout\(draw/);
  // The guard: plotly.js runs with define/module/exports/require shadowed by undefined.
  // (assert.ok rather than assert.match: a failure would print all of plotly.js.)
  const opens = /\(function \(define, module, exports, require\) \{\n\/\*\*\n\* plotly\.js/;
  const closes = /\}\)\.call\([^)]*, undefined, undefined, undefined, undefined\);<\/script>/;
  assert.ok(opens.test(first), "plotly.js starts inside the guard function");
  assert.ok(closes.test(first), "the guard calls it with the loaders undefined");
  // The inlined script cannot be closed early by its own text.
  const body = first.slice(first.indexOf("<script"), first.indexOf("</script>"));
  assert.ok(body.length > 1_000_000, "plotly.js lies inside one script element");
});

Deno.test("display: default summary names the traces and their ranges; title fills an untitled figure", () => {
  resetPlotlyInline();
  const bundle: MimeBundle = display(
    { data: [{ type: "bar", name: "decode", x: ["a", "b"], y: [40, 70] }], layout: {} },
    { title: "Speed" },
  )[JUPYTER_DISPLAY]();
  assert.equal(bundle["text/plain"], "Speed\n  decode: 2 values, 40 … 70");
  const layout = (bundle[PLOTLY_MIME] as { layout: { title: { text: string } } }).layout;
  assert.equal(layout.title.text, "Speed");
});

Deno.test("display: figure text cannot break out of the HTML fallback", () => {
  resetPlotlyInline();
  display(everyFigure().bar)[JUPYTER_DISPLAY]();
  const html = display({
    data: [{ type: "bar", name: "</script><script>alert(1)</script>", x: ["<b>"], y: [1] }],
    layout: { title: { text: "<img src=x onerror=alert(1)>" } },
  })[JUPYTER_DISPLAY]()["text/html"] as string;
  assert.equal(count(html, /<script/g), 1);
  assert.equal(count(html, /<\/script>/g), 1);
  assert.ok(!html.includes("<img"));
});

Deno.test("displayTable: HTML and aligned text, from objects or arrays", () => {
  const bundle = displayTable([
    { format: "fp16", bits: 16, perplexity: 5.6789123 },
    { format: "nf4 <b>", bits: 4.127, perplexity: 5.87 },
  ])[JUPYTER_DISPLAY]();
  assert.deepEqual(Object.keys(bundle).sort(), ["text/html", "text/plain"]);
  assert.equal(
    bundle["text/plain"],
    [
      "| format  | bits  | perplexity |",
      "| ------- | ----- | ---------- |",
      "| fp16    | 16    | 5.679      |",
      "| nf4 <b> | 4.127 | 5.87       |",
    ].join("\n"),
  );
  const html = bundle["text/html"] as string;
  assert.match(html, /<th style="text-align:right">bits<\/th>/);
  assert.match(html, /<td>nf4 &lt;b&gt;<\/td>/);
  const arrays = displayTable([["a", 1e-5, null]], ["x", "y", "z"])[JUPYTER_DISPLAY]();
  assert.ok((arrays["text/plain"] as string).endsWith("| a | 1.000e-5 |   |"));
});

Deno.test("show: outside Jupyter prints the text summary; under a runner's hook, sends the bundle", async () => {
  const { bar } = everyFigure();
  const printed: string[] = [];
  const log = console.log;
  console.log = (...args: unknown[]) => printed.push(args.join(" "));
  try {
    await show(bar, { title: "Bars", summary: "two bars" });
    await showTable([{ format: "nf4", bits: 4.127 }]);
  } finally {
    console.log = log;
  }
  assert.deepEqual(printed, [
    "Bars\ntwo bars",
    "| format | bits  |\n| ------ | ----- |\n| nf4    | 4.127 |",
  ]);
  assert.equal(await flushKernelOutputs(), "none");

  const sent: MimeBundle[] = [];
  const hooks = globalThis as Record<symbol, unknown>;
  hooks[OUTPUT_HOOK] = (bundle: MimeBundle) => void sent.push(bundle);
  try {
    resetPlotlyInline();
    await show(bar);
    await show(display(bar));
    await show(displayTable([{ a: 1 }]));
  } finally {
    delete hooks[OUTPUT_HOOK];
  }
  assert.equal(sent.length, 3);
  assert.ok(PLOTLY_MIME in sent[0] && PLOTLY_MIME in sent[1]);
  assert.equal(count(String(sent[0]["text/html"]), BANNER), 1, "plotly.js with the first figure");
  assert.equal(count(String(sent[1]["text/html"]), BANNER), 0);
  assert.match(String(sent[2]["text/html"]), /<table/);
});
