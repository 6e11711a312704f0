/**
 * Runs a notebook's code cells in order outside Jupyter, in one module scope, and writes what they
 * displayed to an offline HTML page:
 *
 * ```sh
 * deno task nb notebooks/01_webgpu_and_vram.ipynb [--html out.html]
 * ```
 *
 * The code is the notebook's own: the cells are read from the `.ipynb` file and joined into one
 * temporary module beside it (so relative imports and paths resolve as in the kernel, whose working
 * directory is the notebook's folder), with top-level await. As in the kernel, a cell's last
 * expression is displayed when it is one: a figure from `display(fig)`, a table, or any other
 * value as text. `Deno.jupyter.display(...)` works through a stand-in (see `nb_runtime.ts`).
 *
 * A cell that throws is reported with its number (1-based, counting markdown cells, as a reader
 * counts them) and the line within the cell; a cell whose first line declares what it shows
 * (`// expect: plot`, see notebooks/README.md) and shows less fails the run. Exit status 0 only
 * when every cell ran and showed what it declared.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { basename, dirname, join, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import katex from "katex";
import { escapeHtml, plotlyScriptTag } from "../lib/plot/plotly_js.ts";
import { type CellOutput, type MimeBundle, session } from "./nb_runtime.ts";

// deno-lint-ignore no-control-regex -- the escape character is what it removes
const ANSI_ESCAPE = /\x1b\[[0-9;]*m/g;

/** A notebook cell as the runner needs it. */
export interface NotebookCell {
  /** `code`, `markdown` or `raw`. */
  type: string;
  /** Its source text. */
  source: string;
}

/** Reads the cells of an `.ipynb` file (nbformat 4). */
export async function readNotebook(path: string): Promise<NotebookCell[]> {
  const nb = JSON.parse(await Deno.readTextFile(path)) as {
    cells?: { cell_type: string; source: string | string[] }[];
  };
  if (!Array.isArray(nb.cells)) throw new Error(`${path}: not a notebook (no cells)`);
  return nb.cells.map((c) => ({
    type: c.cell_type,
    source: Array.isArray(c.source) ? c.source.join("") : c.source,
  }));
}

// ---------------------------------------------------------------------------------------------
// Expect markers

/** What a cell can promise to show on its first line: `// expect: plot, table x2`. */
export const EXPECT_KINDS = ["plot", "table", "text", "output"] as const;
/** One of {@linkcode EXPECT_KINDS}. */
export type ExpectKind = typeof EXPECT_KINDS[number];

/**
 * The `expect:` marker on a cell's first line as kind → minimum count, or null when there is none.
 *
 * @throws {Error} on a marker it cannot read, so that a typo fails rather than checks nothing.
 */
export function parseExpect(source: string): Partial<Record<ExpectKind, number>> | null {
  const first = source.replace(/^\n+/, "").split("\n", 1)[0];
  const match = /^\s*(?:\/\/|#)\s*expect:\s*(.+?)\s*$/.exec(first);
  if (!match) return null;
  const wanted: Partial<Record<ExpectKind, number>> = {};
  for (const item of match[1].split(",")) {
    const parts = item.trim().split(/\s+/);
    const kind = parts[0] as ExpectKind;
    if (
      !EXPECT_KINDS.includes(kind) || parts.length > 2 ||
      (parts[1] && !/^x[1-9]\d*$/.test(parts[1]))
    ) {
      throw new Error(`unreadable expect marker: ${JSON.stringify(first.trim())}`);
    }
    wanted[kind] = (wanted[kind] ?? 0) + (parts[1] ? Number(parts[1].slice(1)) : 1);
  }
  return wanted;
}

/** Counts what outputs show, as the Jupyter runner counts them. */
export function countShown(outputs: CellOutput[]): Record<ExpectKind, number> {
  const found: Record<ExpectKind, number> = { plot: 0, table: 0, text: 0, output: 0 };
  for (const out of outputs) {
    found.output++;
    if (out.kind === "stream") {
      found.text++;
      continue;
    }
    const html = out.bundle["text/html"];
    if ("application/vnd.plotly.v1+json" in out.bundle) found.plot++;
    else if (typeof html === "string" && html.includes("<table")) found.table++;
    else if ("text/plain" in out.bundle) found.text++;
  }
  return found;
}

// ---------------------------------------------------------------------------------------------
// The last statement of a cell

interface Scan {
  /** Offsets where a top-level statement may start. */
  starts: number[];
  /** Whether the scan ended in normal code (not inside a string, comment or bracket). */
  balanced: boolean;
  /** The offset just after the last character of code (not comment, not space). */
  codeEnd: number;
}

const CONTINUES_LINE =
  /^(\.(?!\.\.)|\?\.|\?\?|[,)\]}+\-*/%&|^?:=<>(\[`]|as\b|satisfies\b|instanceof\b|in\b)/;
const ENDS_INCOMPLETE =
  /([,([{=+\-*/%&|^!?:<>.~]|=>|\b(?:return|typeof|await|new|in|of|instanceof|delete|void|yield|as|satisfies))$/;
const REGEX_AFTER =
  /(^|[(,=:[!&|?{};+\-*%<>~^]|\b(?:return|typeof|case|do|else|in|of|new|delete|void|throw|await|yield))\s*$/;

/**
 * Finds where top-level statements may start: after a `;` at depth 0, and at a line at depth 0
 * that begins a new statement by JavaScript's line rules (the previous line is complete and this
 * one does not continue it). Strings, template literals, comments and regular expressions are
 * skipped. A heuristic, not a parser: the runner falls back to not displaying a cell's last
 * expression if what it finds does not parse.
 */
export function scanStatements(src: string): Scan {
  const starts = [0];
  const stack: string[] = []; // open brackets; "`" for a template literal's text
  let i = 0;
  let lineStart = true;
  let lastCode = ""; // code of the current line so far, comments and literals elided
  let prevLine = ""; // the last line that had code, as elided
  let codeEnd = 0;
  const code = (s: string) => (lastCode += s);
  const endLine = () => {
    if (lastCode.trim()) prevLine = lastCode.trim();
    lastCode = "";
    lineStart = true;
  };
  while (i < src.length) {
    const c = src[i];
    const inTemplate = stack.at(-1) === "`";
    if (inTemplate) {
      if (c === "\\") i += 2;
      else if (c === "`") stack.pop(), code("`"), i++, codeEnd = i;
      else if (c === "$" && src[i + 1] === "{") stack.push("${"), i += 2;
      else {
        if (c === "\n") lineStart = false; // a line inside a template starts nothing
        i++;
      }
      continue;
    }
    if (c === "\n") {
      endLine();
      i++;
      continue;
    }
    if (c === " " || c === "\t" || c === "\r") {
      i++;
      continue;
    }
    if (c === "/" && src[i + 1] === "/") {
      while (i < src.length && src[i] !== "\n") i++;
      continue;
    }
    if (c === "/" && src[i + 1] === "*") {
      const end = src.indexOf("*/", i + 2);
      i = end < 0 ? src.length : end + 2;
      continue;
    }
    if (lineStart) {
      lineStart = false;
      const rest = src.slice(i, i + 40);
      if (
        stack.length === 0 && prevLine && !ENDS_INCOMPLETE.test(prevLine) &&
        !CONTINUES_LINE.test(rest)
      ) {
        starts.push(i);
      } else if (
        stack.length === 0 && prevLine && /[;}]$/.test(prevLine) && !/^[.)\]]/.test(rest)
      ) {
        starts.push(i);
      }
    }
    if (c === '"' || c === "'") {
      let j = i + 1;
      while (j < src.length && src[j] !== c && src[j] !== "\n") j += src[j] === "\\" ? 2 : 1;
      code("0");
      i = j + 1;
      codeEnd = i;
      continue;
    }
    if (c === "`") {
      stack.push("`");
      i++;
      continue;
    }
    if (c === "/" && REGEX_AFTER.test(lastCode)) {
      let j = i + 1;
      let inClass = false;
      while (j < src.length && src[j] !== "\n") {
        if (src[j] === "\\") j++;
        else if (src[j] === "[") inClass = true;
        else if (src[j] === "]") inClass = false;
        else if (src[j] === "/" && !inClass) break;
        j++;
      }
      j++;
      while (j < src.length && /[a-z]/.test(src[j])) j++;
      code("0");
      i = j;
      codeEnd = i;
      continue;
    }
    if (c === "(" || c === "[" || c === "{") stack.push(c);
    else if (c === ")" || c === "]" || c === "}") {
      const open = stack.pop();
      if (open === "${") {
        i++; // back into the template's text, whose "`" is still on the stack
        continue;
      }
    }
    code(c);
    i++;
    codeEnd = i;
    if (c === ";" && stack.length === 0) starts.push(i);
  }
  return { starts, balanced: stack.length === 0, codeEnd };
}

const NOT_EXPRESSION =
  /^(?:const|let|var|function|class|import|export|if|for|while|do|return|throw|try|switch|type|interface|enum|declare|namespace|module|abstract|break|continue|debugger|using|await\s+using|async\s+function)\b|^[{;]|^[A-Za-z_$][\w$]*\s*:(?!:)/;

/**
 * Splits a cell into the code before its last statement and that statement, when the last
 * statement is an expression; null otherwise (or when the cell could not be scanned).
 *
 * @example
 * ```ts
 * import { splitLastExpression } from "./nb.ts";
 * splitLastExpression("const x = 1;\nx + 1"); // { before: "const x = 1;\n", expression: "x + 1" }
 * ```
 */
export function splitLastExpression(
  source: string,
): { before: string; expression: string } | null {
  const { starts, balanced, codeEnd } = scanStatements(source);
  if (!balanced) return null;
  // The last statement: the last start with code between it and the end of the code.
  const code = source.slice(0, codeEnd).replace(/;$/, "");
  for (let k = starts.length - 1; k >= 0; k--) {
    if (starts[k] >= code.length) continue;
    const tail = code.slice(starts[k]);
    const expression = stripComments(tail).trim();
    if (!expression) continue;
    if (NOT_EXPRESSION.test(expression)) return null;
    const lead = tail.length - tail.trimStart().length;
    return { before: source.slice(0, starts[k] + lead), expression: tail.trim() };
  }
  return null;
}

/** The code with `//` and block comments removed (strings are not protected; used on tails). */
function stripComments(code: string): string {
  return code.replace(/\/\*[\s\S]*?\*\//g, "").replace(/(^|[^:\\])\/\/.*$/gm, "$1");
}

// ---------------------------------------------------------------------------------------------
// The generated module

/** A notebook's code cells as one module, and where each of its lines came from. */
export interface NotebookModule {
  /** The module's source. */
  code: string;
  /** Per module line (index 0 is line 1): the cell and line within it, or null for glue. */
  lines: ({ cell: number; line: number } | null)[];
}

/**
 * Joins the code cells into one module: the runtime's import, `Deno` shadowed by the stand-in,
 * then for each cell a marker and its code, with the last expression passed to `show` unless the
 * cell's number is in `plain`.
 */
export function buildModule(
  cells: NotebookCell[],
  runtimeUrl: string,
  plain: ReadonlySet<number> = new Set(),
): NotebookModule {
  const parts = [
    `import { session as __nb } from ${JSON.stringify(runtimeUrl)};`,
    `const Deno = __nb.deno;`,
  ];
  const lines: NotebookModule["lines"] = [null, null];
  cells.forEach((cell, index) => {
    if (cell.type !== "code" || !cell.source.trim()) return;
    const n = index + 1;
    parts.push(`__nb.enter(${n});`);
    lines.push(null);
    const split = plain.has(n) ? null : splitLastExpression(cell.source);
    if (!split) {
      parts.push(cell.source);
      cell.source.split("\n").forEach((_, k) => lines.push({ cell: n, line: k + 1 }));
      return;
    }
    // "before" may end mid-line (after a ";"): the expression then starts on that same line.
    const body = `${split.before}await __nb.show(${n}, (\n${split.expression}\n));`;
    parts.push(body);
    // The expression starts on the last line of "before" (which may end mid-line, after a ";")
    // and moves down one line in the module, after "__nb.show(n, (".
    const b = split.before.split("\n").length;
    const e = split.expression.split("\n").length;
    for (let k = 1; k <= b; k++) lines.push({ cell: n, line: k });
    for (let k = 0; k < e; k++) lines.push({ cell: n, line: b + k });
    lines.push({ cell: n, line: b + e - 1 });
  });
  return { code: parts.join("\n") + "\n", lines };
}

/** A module line as cell and line of the notebook. */
function cellLine(mod: NotebookModule, moduleLine: number): { cell: number; line: number } | null {
  return mod.lines[moduleLine - 1] ?? null;
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

/** Rewrites `file:///…/.nb-run-….ts:L:C` in a message or stack into `cell N, line L`. */
function mapLocations(text: string, moduleUrl: string, mod: NotebookModule): string {
  return text.replace(new RegExp(`${escapeRegExp(moduleUrl)}:(\\d+):(\\d+)`, "g"), (all, l, c) => {
    const at = cellLine(mod, Number(l));
    return at ? `cell ${at.cell}, line ${at.line}:${c}` : all;
  });
}

// ---------------------------------------------------------------------------------------------
// Running

/** What a run found. */
export interface NotebookRun {
  /** Outputs per cell number. */
  outputs: Map<number, CellOutput[]>;
  /** The cell that threw, its line when known, and the error as text; null when none did. */
  error: { cell: number; line: number | null; message: string } | null;
  /** Unmet expect markers and unreadable ones. */
  problems: string[];
  /** Cells for which the last expression was not displayed because it did not parse wrapped. */
  plainCells: number[];
  /** Seconds the cells took. */
  seconds: number;
}

/**
 * Runs the notebook at `path` in this process: working directory its folder for the duration,
 * console captured per cell. Call it once per process (the module scope and the display state of
 * plotly.js are the process's).
 */
export async function runNotebook(path: string): Promise<NotebookRun> {
  const cells = await readNotebook(path);
  const dir = dirname(resolve(path));
  const runtimeUrl = new URL("./nb_runtime.ts", import.meta.url).href;
  const plain = new Set<number>();
  const problems: string[] = [];
  const before = Deno.cwd();
  let error: NotebookRun["error"] = null;
  const started = performance.now();
  session.captureConsole();
  Deno.chdir(dir);
  try {
    for (;;) {
      const mod = buildModule(cells, runtimeUrl, plain);
      const file = join(dir, `.nb-run-${crypto.randomUUID().slice(0, 8)}.ts`);
      const url = pathToFileURL(file).href;
      await Deno.writeTextFile(file, mod.code);
      try {
        await import(url);
        break;
      } catch (e) {
        const runner = new URL(".", import.meta.url).href;
        const text = (e instanceof Error ? `${e.stack ?? e.message}` : String(e))
          .replace(ANSI_ESCAPE, "")
          .split("\n")
          .filter((line) => !(line.trimStart().startsWith("at ") && line.includes(runner)))
          .join("\n");
        const parse = /could not be parsed|SyntaxError/.test(text) && session.current === 0;
        // Where in the notebook: for an error while loading (parsing, imports) the first
        // location in the message; while running, the running cell and the first frame in it
        // (the first frame may be in a function an earlier cell defined).
        const places = [...text.matchAll(new RegExp(`${escapeRegExp(url)}:(\\d+):\\d+`, "g"))]
          .map((m) => cellLine(mod, Number(m[1])))
          .filter((p) => p !== null);
        const at = session.current === 0
          ? places[0] ?? null
          : places.find((p) => p.cell === session.current) ?? { cell: session.current, line: 0 };
        // A parse error in a cell whose last expression was wrapped: try that cell as written.
        if (parse && at && !plain.has(at.cell) && splitLastExpression(cells[at.cell - 1].source)) {
          plain.add(at.cell);
          continue;
        }
        error = {
          cell: at?.cell ?? session.current,
          line: at?.line || null,
          message: mapLocations(text, url, mod),
        };
        break;
      } finally {
        await Deno.remove(file).catch(() => {});
      }
    }
  } finally {
    Deno.chdir(before);
    session.releaseConsole();
  }
  cells.forEach((cell, index) => {
    if (cell.type !== "code") return;
    const n = index + 1;
    let wanted: ReturnType<typeof parseExpect>;
    try {
      wanted = parseExpect(cell.source);
    } catch (e) {
      problems.push(`cell ${n}: ${(e as Error).message}`);
      return;
    }
    if (!wanted || (error && n >= error.cell)) return;
    const found = countShown(session.outputs.get(n) ?? []);
    for (const [kind, count] of Object.entries(wanted) as [ExpectKind, number][]) {
      if (found[kind] < count) {
        problems.push(
          `cell ${n} (${firstLine(cell.source)}) should show ${count} ${kind}(s) and showed ` +
            `${found[kind]}`,
        );
      }
    }
  });
  return {
    outputs: session.outputs,
    error,
    problems,
    plainCells: [...plain],
    seconds: (performance.now() - started) / 1000,
  };
}

function firstLine(source: string): string {
  const line = source.trim().split("\n", 1)[0];
  return line.length <= 80 ? line : line.slice(0, 77) + "...";
}

// ---------------------------------------------------------------------------------------------
// The page

const STYLE = `
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0 auto;
  max-width: 1100px; padding: 1.5rem; color: #222; line-height: 1.45; }
pre { background: #f6f6f6; padding: .6rem .8rem; overflow-x: auto; font-size: .85rem; }
details > summary { color: #666; cursor: pointer; font-size: .85rem; }
.out { margin: .5rem 0 1.2rem; }
.stderr { background: #fff0f0; }
.error { background: #fdd; border-left: 4px solid #c00; }
.cell-no { color: #999; font-size: .8rem; }
table.qlab-table { border-collapse: collapse; margin: 1rem 0; font-variant-numeric: tabular-nums; }
table.qlab-table th, table.qlab-table td { border: 1px solid #ccc; padding: .3rem .6rem; }
table.qlab-table th { background: #f4f4f4; }
`;

/**
 * TeX math rendered to MathML with KaTeX (npm `katex`): browsers draw MathML natively, so the page
 * needs no script, stylesheet or font from the network. `$$…$$` is display math, `$…$` inline;
 * a formula KaTeX cannot parse is shown as its source.
 */
export function mathHtml(tex: string, display: boolean): string {
  return katex.renderToString(tex, { displayMode: display, output: "mathml", throwOnError: false });
}

/**
 * A little Markdown: headings, paragraphs, lists, fenced code, inline code, bold, italics, links,
 * and TeX math (see {@linkcode mathHtml}).
 */
export function markdownHtml(md: string): string {
  // Math first, out of the way of the Markdown rules; fenced code keeps its dollars.
  const formulas: string[] = [];
  const hold = (html: string) => `\uE000${formulas.push(html) - 1}\uE000`;
  md = md.split(/(\n```[^]*?\n```)/).map((part, k) =>
    k % 2 === 1 ? part : part
      .replace(/\$\$([^]+?)\$\$/g, (_, tex: string) => hold(mathHtml(tex.trim(), true)))
      .replace(/\$([^$\n]+?)\$/g, (_, tex: string) => hold(mathHtml(tex, false)))
  ).join("");
  const restore = (html: string) =>
    html.replace(/\uE000(\d+)\uE000/g, (_, i: string) => formulas[Number(i)]);
  return restore(markdownBlocks(md));
}

function markdownBlocks(md: string): string {
  const inline = (s: string) =>
    escapeHtml(s)
      .replace(/`([^`]+)`/g, "<code>$1</code>")
      .replace(/\*\*([^*]+)\*\*/g, "<strong>$1</strong>")
      .replace(/(^|[^*])\*([^*\s][^*]*)\*/g, "$1<em>$2</em>")
      .replace(/\[([^\]]+)\]\(([^)\s]+)\)/g, '<a href="$2">$1</a>');
  const out: string[] = [];
  const blocks = md.split(/\n```/);
  blocks.forEach((block, k) => {
    if (k % 2 === 1) {
      const body = block.replace(/^[^\n]*\n/, "").replace(/```\s*$/, "");
      out.push(`<pre><code>${escapeHtml(body)}</code></pre>`);
      return;
    }
    for (const para of block.split(/\n\s*\n/)) {
      const text = para.trim();
      if (!text) continue;
      const heading = /^(#{1,6})\s+(.*)$/.exec(text);
      if (heading && !text.includes("\n")) {
        out.push(`<h${heading[1].length}>${inline(heading[2])}</h${heading[1].length}>`);
      } else if (/^([-*]|\d+\.)\s/.test(text)) {
        const items = text.split(/\n(?=[-*]\s|\d+\.\s)/).map((item) =>
          `<li>${inline(item.replace(/^([-*]|\d+\.)\s+/, ""))}</li>`
        );
        out.push(`<ul>${items.join("")}</ul>`);
      } else {
        out.push(`<p>${inline(text)}</p>`);
      }
    }
  });
  return out.join("\n");
}

function outputHtml(out: CellOutput): string {
  if (out.kind === "stream") {
    const text = out.text.replace(ANSI_ESCAPE, "");
    return `<pre class="out ${out.name}">${escapeHtml(text)}</pre>`;
  }
  const b: MimeBundle = out.bundle;
  if (typeof b["text/html"] === "string") return `<div class="out">${b["text/html"]}</div>`;
  if (typeof b["image/svg+xml"] === "string") return `<div class="out">${b["image/svg+xml"]}</div>`;
  if (typeof b["text/markdown"] === "string") {
    return `<div class="out">${markdownHtml(b["text/markdown"])}</div>`;
  }
  if (typeof b["text/plain"] === "string") {
    return `<pre class="out">${escapeHtml(b["text/plain"])}</pre>`;
  }
  return `<pre class="out">${escapeHtml(Object.keys(b).join(", "))}</pre>`;
}

/** The notebook with its outputs as one offline page; plotly.js is inlined once if needed. */
export function notebookHtml(title: string, cells: NotebookCell[], run: NotebookRun): string {
  const body: string[] = [];
  let plots = 0;
  let carried = false;
  cells.forEach((cell, index) => {
    const n = index + 1;
    if (cell.type === "markdown") {
      body.push(markdownHtml(cell.source));
      return;
    }
    if (cell.type !== "code") return;
    body.push(
      `<details><summary>cell ${n}</summary><pre><code>${escapeHtml(cell.source)}</code></pre>` +
        `</details>`,
    );
    for (const out of run.outputs.get(n) ?? []) {
      if (out.kind === "display" && "application/vnd.plotly.v1+json" in out.bundle) plots++;
      const html = outputHtml(out);
      if (html.includes('data-qlab-inline="plotly"')) carried = true;
      body.push(html);
    }
    if (run.error?.cell === n) {
      body.push(`<pre class="out error">${escapeHtml(run.error.message)}</pre>`);
    }
  });
  const head = plots > 0 && !carried ? plotlyScriptTag() : "";
  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${escapeHtml(title)}</title>
<style>${STYLE}</style>
${head}
</head>
<body>
<p class="cell-no">${escapeHtml(title)} — run with deno task nb</p>
${body.join("\n")}
</body>
</html>
`;
}

// ---------------------------------------------------------------------------------------------
// The command

const USAGE = `usage: deno task nb NOTEBOOK.ipynb [--html OUT.html]

Runs the notebook's code cells in order outside Jupyter and reports any cell that throws or does
not show what its "// expect:" line says. --html writes the outputs to an offline page.`;

async function main(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    options: { html: { type: "string" }, help: { type: "boolean", short: "h" } },
    allowPositionals: true,
  });
  if (values.help || positionals.length !== 1) {
    console.log(USAGE);
    return values.help ? 0 : 2;
  }
  // `deno task` runs in the project root; paths on the command line are the caller's.
  const base = Deno.env.get("INIT_CWD") ?? Deno.cwd();
  const path = resolve(base, positionals[0]);
  const html = values.html ? resolve(base, values.html) : undefined;
  const cells = await readNotebook(path);
  const run = await runNotebook(path);
  const code = cells.filter((c) => c.type === "code").length;
  if (html) {
    await Deno.mkdir(dirname(html), { recursive: true });
    await Deno.writeTextFile(html, notebookHtml(basename(path), cells, run));
  }
  const status = run.error || run.problems.length ? "FAILED" : "ok";
  console.error(
    `\n${basename(path)}: ${status} in ${run.seconds.toFixed(1)} s (${code} code cells)` +
      (html ? `; page: ${html}` : ""),
  );
  if (run.plainCells.length) {
    console.error(`  last expression not displayed in cell(s) ${run.plainCells.join(", ")}`);
  }
  if (run.error) {
    console.error(
      `  cell ${run.error.cell}${run.error.line ? `, line ${run.error.line}` : ""} threw:\n` +
        run.error.message.replace(/^/gm, "    "),
    );
  }
  for (const problem of run.problems) console.error(`  ${problem}`);
  return status === "ok" ? 0 : 1;
}

if (import.meta.main) Deno.exit(await main(Deno.args));
