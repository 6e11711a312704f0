/**
 * `deno task nb` (tools/nb.ts): finding a cell's last expression, expect markers, and whole runs
 * of small notebooks in a subprocess — displays, `Deno.jupyter.display` outside the kernel,
 * errors reported by cell and line, and the offline page (drawn in Chromium when it is there).
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { parseExpect, splitLastExpression } from "../../tools/nb.ts";
import { browserTestOptions, checkPageRenders } from "../helpers/browser.ts";

Deno.test("nb: the last statement of a cell, when it is an expression", () => {
  const cases: [string, string | null][] = [
    ["const x = 1;\nx + 1", "x + 1"],
    ["x", "x"],
    ["const x = 1;", null],
    ['console.log("a"); display(fig)', "display(fig)"],
    [
      "display(lineFigure([\n  { x: [1] },\n], { title: 'T' }))",
      "display(lineFigure([\n  { x: [1] },\n], { title: 'T' }))",
    ],
    ["const a = {\n  b: 1\n}\na", "a"],
    ["foo()\n  .then(x)", "foo()\n  .then(x)"],
    ["for (const v of vs) {\n  f(v)\n}", null],
    ["const t = `a ${b}\n c`\nt", "t"],
    ["x // a comment", "x"],
    ["x;\n// trailing comment\n", "x"],
    ["const r = /a;b/g; r", "r"],
    ["let s = 0\nfor (const v of [1, 2]) s += v\ns", "s"],
    ["const s = `${[1].map((v) => `${v}`)}`\ns", "s"],
    ["// only a comment", null],
    ["await Deno.jupyter.display(x); 1 + 1", "1 + 1"],
    ["if (a) {\n  b\n}", null],
  ];
  for (const [source, expression] of cases) {
    assert.equal(splitLastExpression(source)?.expression ?? null, expression, source);
  }
  const split = splitLastExpression("const a = 1;\nconst b = 2; a + b")!;
  assert.equal(split.before, "const a = 1;\nconst b = 2; ");
});

Deno.test("nb: expect markers", () => {
  assert.deepEqual(parseExpect("// expect: plot\nx"), { plot: 1 });
  assert.deepEqual(parseExpect("\n  // expect: plot x2, table\n"), { plot: 2, table: 1 });
  assert.deepEqual(parseExpect("// expect: text, output"), { text: 1, output: 1 });
  assert.equal(parseExpect("// a plot\n// expect: plot"), null); // first line only
  assert.throws(() => parseExpect("// expect: plots"), /unreadable expect marker/);
  assert.throws(() => parseExpect("// expect: plot 2"), /unreadable expect marker/);
});

const MOD = new URL("../../mod.ts", import.meta.url).href;
const NB = new URL("../../tools/nb.ts", import.meta.url).pathname;

function notebook(cells: [string, string][]): string {
  return JSON.stringify({
    nbformat: 4,
    nbformat_minor: 5,
    metadata: { kernelspec: { name: "deno", display_name: "Deno", language: "typescript" } },
    cells: cells.map(([type, source], i) => ({
      id: `c${i}`,
      cell_type: type,
      metadata: {},
      source,
      ...(type === "code" ? { outputs: [], execution_count: null } : {}),
    })),
  });
}

async function runNb(dir: string, cells: [string, string][]) {
  const path = join(dir, "t.ipynb");
  await Deno.writeTextFile(path, notebook(cells));
  const html = join(dir, "t.html");
  const r = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-all", NB, path, "--html", html],
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).output();
  const dec = new TextDecoder();
  return { code: r.code, stdout: dec.decode(r.stdout), stderr: dec.decode(r.stderr), html };
}

Deno.test({
  name: "nb: a notebook's displays land on an offline page that draws",
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "qlab-nb-" });
    try {
      const run = await runNb(dir, [
        ["markdown", "# A test\n\nSome *prose*, $x^2$ inline and\n\n$$\\frac{a}{b}$$"],
        ["code", `import { barFigure, display, displayTable, show } from "${MOD}";`],
        [
          "code",
          '// expect: plot\ndisplay(barFigure(["a", "b"], [{ name: "n", values: [1, 2] }]))',
        ],
        [
          "code",
          '// expect: table, text\nconsole.log("hello from cell 4");\ndisplayTable([{ format: "nf4", bits: 4.127 }])',
        ],
        [
          "code",
          "// expect: plot, text\n" +
          'await Deno.jupyter.display(display(barFigure(["c"], [{ name: "m", values: [3] }])));\n' +
          'await Deno.jupyter.display({ "text/plain": "qlab-draft-text" }, { raw: true, display_id: "d" });\n' +
          'await Deno.jupyter.display({ "text/plain": "qlab-final-text" }, { raw: true, update: true, display_id: "d" });',
        ],
        [
          "code",
          "// a wrapped last expression that does not parse falls back to the cell as written\nconst z = 2;\nz;;",
        ],
        ["code", "// expect: text\nconst n = 6 * 7;\nn"],
        [
          "code",
          "// expect: plot x2\nfor (const v of [1, 2]) {\n" +
          '  await show(barFigure(["in a loop"], [{ name: "v", values: [v] }]));\n}',
        ],
      ]);
      assert.equal(run.code, 0, run.stderr);
      assert.match(run.stdout, /hello from cell 4/);
      assert.match(run.stderr, /last expression not displayed in cell\(s\) 6/);
      const page = await Deno.readTextFile(run.html);
      const has = (text: string | RegExp) =>
        typeof text === "string" ? page.includes(text) : text.test(page);
      assert.ok(has("<h1>A test</h1>"), "the markdown heading");
      // Math as MathML, which the browser draws with no script or font from the network.
      assert.ok(
        has(/<math xmlns="http:\/\/www.w3.org\/1998\/Math\/MathML"><semantics><mrow><msup>/),
      );
      assert.ok(has(/<math [^>]*display="block"><semantics><mrow><mfrac>/));
      assert.ok(has('<table class="qlab-table">'), "the table");
      // Outputs, not the cells' source (which the page shows too).
      const output = (text: string) => has(`<pre class="out">${text}</pre>`);
      assert.ok(output("qlab-final-text") && !output("qlab-draft-text"), "the updated display");
      assert.ok(output("42"), "the last expression's value");
      assert.equal(page.split('data-qlab-inline="plotly"').length - 1, 1, "plotly.js inlined once");
      if (!browserTestOptions().ignore) {
        const drawn = await checkPageRenders(run.html);
        assert.deepEqual(drawn.errors, []);
        assert.equal(drawn.plots, 4);
        assert.equal(drawn.drawn, 4);
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test("nb: an error names its cell and line, and unmet expect markers fail the run", async () => {
  const dir = await Deno.makeTempDir({ prefix: "qlab-nb-" });
  try {
    const run = await runNb(dir, [
      ["markdown", "text"],
      ["code", "// expect: plot\nconst a = 1;\na"],
      ["code", 'const b = 2;\nthrow new Error("boom in the third cell");'],
      ["code", "// expect: plot\nconsole.log('never runs')"],
    ]);
    assert.equal(run.code, 1);
    assert.match(run.stderr, /cell 3, line 2 threw:\n\s+Error: boom in the third cell/);
    assert.match(run.stderr, /cell 2 \(\/\/ expect: plot\) should show 1 plot\(s\) and showed 0/);
    assert.doesNotMatch(run.stderr, /cell 4 .*should show/); // it never ran
    assert.doesNotMatch(run.stdout, /never runs/);
    assert.ok((await Deno.readTextFile(run.html)).includes("boom in the third cell"));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("nb: an error thrown in a function an earlier cell defined names the running cell", async () => {
  const dir = await Deno.makeTempDir({ prefix: "qlab-nb-" });
  try {
    const run = await runNb(dir, [
      ["code", 'function fail(): never {\n  throw new Error("from a helper");\n}'],
      ["code", "const before = 1;\n\nfail();"],
    ]);
    assert.equal(run.code, 1);
    assert.match(
      run.stderr,
      /cell 2, line 3 threw:\n\s+Error: from a helper\n\s+at fail \(cell 1, line 2/,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("nb: a syntax error is reported with its cell", async () => {
  const dir = await Deno.makeTempDir({ prefix: "qlab-nb-" });
  try {
    const run = await runNb(dir, [["code", "const ok = 1;"], ["code", "const x = ;\nx"]]);
    assert.equal(run.code, 1);
    assert.match(run.stderr, /cell 2, line 1 threw/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
