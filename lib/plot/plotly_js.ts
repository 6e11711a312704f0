/**
 * plotly.js itself, for pages that must draw offline: where the npm package's bundle lies, the
 * `<script>` that inlines it, and the HTML of one plot that draws with it.
 *
 * @module
 */

import { createRequire } from "node:module";
import { type Figure, figureTitle } from "./figure.ts";

/** The npm package and file inlined; its version is pinned in deno.json. */
const PLOTLY_MODULE = "plotly.js-dist-min/plotly.min.js";

/**
 * The text of `plotly.min.js` through Deno's module loader (a text import).
 *
 * Beyond being the asynchronous way in, this import keeps the package in Deno's module graph, so
 * that `deno run`, `deno test`, `deno cache` and the Jupyter kernel fetch it into the npm cache,
 * where {@linkcode plotlyJsPath} then finds it synchronously. Importing the bundle as code would
 * run it, and it needs a `window`.
 *
 * @example
 * ```ts
 * import { importPlotlyJsText } from "./plotly_js.ts";
 * (await importPlotlyJsText()).length > 1e6; // true
 * ```
 */
export async function importPlotlyJsText(): Promise<string> {
  const mod = await import("plotly.js-dist-min/plotly.min.js", { with: { type: "text" } });
  return mod.default;
}

/**
 * The path of `plotly.min.js` on disk: `$QLAB_PLOTLY_JS` when set, else the npm package as Deno
 * resolves it (its global npm cache, or `node_modules` where the project has one), wherever the
 * process was started from.
 *
 * @throws {Error} when the package is not installed.
 *
 * @example
 * ```ts
 * import { plotlyJsPath } from "./plotly_js.ts";
 * plotlyJsPath().endsWith("plotly.min.js"); // true
 * ```
 */
export function plotlyJsPath(): string {
  const override = Deno.env.get("QLAB_PLOTLY_JS");
  if (override) return override;
  try {
    return createRequire(import.meta.url).resolve(PLOTLY_MODULE);
  } catch (cause) {
    throw new Error(
      `cannot find ${PLOTLY_MODULE}: run \`deno install\` in the project (or set QLAB_PLOTLY_JS)`,
      { cause },
    );
  }
}

let cached: string | undefined;

/**
 * The text of `plotly.min.js` (about 4.8 MB), read once per process.
 *
 * @example
 * ```ts
 * import { plotlyJsSource } from "./plotly_js.ts";
 * plotlyJsSource().includes("window.Plotly"); // true
 * ```
 */
export function plotlyJsSource(): string {
  cached ??= Deno.readTextFileSync(plotlyJsPath());
  return cached;
}

/**
 * A `<script>` element that defines `window.Plotly`, guarded against module loaders.
 *
 * On a page with require.js (classic Jupyter, some nbconvert templates) a UMD bundle sees
 * `define.amd` and registers itself as an AMD module instead of setting `window.Plotly`, and where
 * a CommonJS `module` global exists it exports into that. The bundle therefore runs inside a
 * function whose parameters `define`, `module`, `exports` and `require` are undefined: the page's
 * own loader is hidden for exactly as long as the bundle runs, and is never touched, so it keeps
 * working even if the bundle throws.
 *
 * @example
 * ```ts
 * import { plotlyScriptTag } from "./plotly_js.ts";
 * plotlyScriptTag().startsWith("<script"); // true
 * ```
 */
export function plotlyScriptTag(): string {
  return guardedScriptTag(plotlyJsSource(), "plotly");
}

/**
 * A `<script>` element running `source` with the page's module loaders hidden, as
 * {@linkcode plotlyScriptTag} runs plotly.js; `name` goes into its `data-qlab-inline` attribute.
 *
 * @example
 * ```ts
 * import { guardedScriptTag } from "./plotly_js.ts";
 * guardedScriptTag("window.answer = 42;", "answer").includes("(function (define,"); // true
 * ```
 */
export function guardedScriptTag(source: string, name: string): string {
  return `<script type="text/javascript" data-qlab-inline="${escapeHtml(name)}">` +
    `(function (define, module, exports, require) {\n` +
    escapeScript(source) +
    `\n}).call(typeof self !== "undefined" ? self : this, undefined, undefined, undefined, undefined);` +
    `</script>`;
}

/**
 * plotly.js as several `<script>` elements of at most about `partChars` characters of source each,
 * to be placed in order: all but the last collect their piece of the source in a page global, the
 * last adds its piece and runs the whole as {@linkcode plotlyScriptTag} does (module loaders
 * hidden). A notebook sends them as separate outputs, so that no single kernel message is
 * megabytes long (see `takePlotlyScript` in jupyter.ts for why).
 *
 * @example
 * ```ts
 * import { plotlyScriptParts } from "./plotly_js.ts";
 * plotlyScriptParts().length > 1; // true: plotly.js is ~4.8 MB
 * ```
 */
export function plotlyScriptParts(partChars = 256 * 1024): string[] {
  const source = plotlyJsSource();
  const parts: string[] = [];
  for (let at = 0; at < source.length; at += partChars) {
    // "<" as \u003c keeps "</script>" and "<!--" out of the element, as JSON allows.
    const literal = JSON.stringify(source.slice(at, at + partChars)).replace(/</g, "\\u003c");
    parts.push(`(self.${PARTS_GLOBAL} = self.${PARTS_GLOBAL} || []).push(${literal});`);
  }
  parts[parts.length - 1] += `\nnew Function("define", "module", "exports", "require", ` +
    `self.${PARTS_GLOBAL}.join("")).call(self, undefined, undefined, undefined, undefined);` +
    `\ndelete self.${PARTS_GLOBAL};`;
  return parts.map((js, i) =>
    `<script type="text/javascript" data-qlab-inline="plotly ${
      i + 1
    }/${parts.length}">${js}</script>`
  );
}

/** The page global that collects {@linkcode plotlyScriptParts}' pieces until the last runs. */
const PARTS_GLOBAL = "__qlabPlotlyParts";

/** Options of {@linkcode plotHtml}. */
export interface PlotHtmlOptions {
  /** The div's id; a fresh one by default. */
  id?: string;
  /**
   * How long the drawing script waits for `window.Plotly` to appear, in milliseconds: a notebook's
   * later plots rely on the plotly.js that its first plot inlined.
   */
  waitMs?: number;
}

let counter = 0;

/**
 * The HTML of one plot: a `div.qlab-plot` and a script that draws `figure` into it once
 * `window.Plotly` exists (polling, so the order in which outputs load does not matter), or that
 * says in the div why it could not.
 *
 * @example
 * ```ts
 * import { plotHtml } from "./plotly_js.ts";
 * const html = plotHtml({ data: [{ type: "bar", x: ["a"], y: [1] }], layout: {} });
 * html.includes('class="qlab-plot"'); // true
 * ```
 */
export function plotHtml(figure: Figure, options: PlotHtmlOptions = {}): string {
  const id = options.id ??
    `qlab-plot-${Date.now().toString(36)}-${(counter++).toString(36)}-${
      Math.random().toString(36).slice(2, 8)
    }`;
  const height = typeof figure.layout.height === "number" ? figure.layout.height : 420;
  const spec = {
    data: figure.data,
    layout: figure.layout,
    config: { responsive: true, displaylogo: false, ...figure.config },
  };
  const tries = Math.max(1, Math.ceil((options.waitMs ?? 20000) / 50));
  const label = escapeHtml(figureTitle(figure) || "plot");
  return `<div id="${id}" class="qlab-plot" role="img" aria-label="${label}" ` +
    `style="width:100%;min-height:${height}px"></div>\n` +
    `<script type="text/javascript">(function () {\n` +
    `  var spec = ${scriptJson(spec)};\n` +
    `  var tries = ${tries};\n` +
    `  function draw() {\n` +
    `    var el = document.getElementById(${JSON.stringify(id)});\n` +
    `    if (!el) return;\n` +
    `    if (typeof window.Plotly === "undefined" || !window.Plotly.newPlot) {\n` +
    `      if (--tries > 0) { setTimeout(draw, 50); return; }\n` +
    `      el.textContent = "plotly.js is not loaded on this page: the first plot of a notebook ` +
    `carries it, so run the notebook from the top.";\n` +
    `      return;\n` +
    `    }\n` +
    `    window.Plotly.newPlot(el, spec.data, spec.layout, spec.config);\n` +
    `  }\n` +
    `  draw();\n` +
    `})();</script>`;
}

/**
 * JSON that is safe inside a `<script>` element: `<` is escaped, so no string in the data can
 * close the element or open a comment.
 *
 * @example
 * ```ts
 * import { scriptJson } from "./plotly_js.ts";
 * scriptJson({ t: "</script>" }); // '{"t":"\\u003c/script>"}'
 * ```
 */
export function scriptJson(value: unknown): string {
  return JSON.stringify(value)
    .replaceAll("<", "\\u003c")
    .replaceAll("\u2028", "\\u2028")
    .replaceAll("\u2029", "\\u2029");
}

/**
 * Escapes text for HTML element content and attribute values.
 *
 * @example
 * ```ts
 * import { escapeHtml } from "./plotly_js.ts";
 * escapeHtml('<a href="x">'); // "&lt;a href=&quot;x&quot;&gt;"
 * ```
 */
export function escapeHtml(text: string): string {
  return text.replaceAll("&", "&amp;").replaceAll("<", "&lt;").replaceAll(">", "&gt;")
    .replaceAll('"', "&quot;").replaceAll("'", "&#39;");
}

/**
 * Makes script text safe to inline: `</script` would end the element early and `<!--` can start
 * a state where it would not end at all, whatever JavaScript construct they sit in. They can only
 * occur inside strings, templates, regular expressions and comments, where `\x3C` means `<`.
 */
function escapeScript(source: string): string {
  return source.replace(/<(\/script|!--)/gi, "\\x3C$1");
}
