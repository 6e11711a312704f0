/**
 * Slims executed notebooks for committing: every output that carries a Plotly figure
 * (`application/vnd.plotly.v1+json`) is drawn in headless Chromium and saved as a PNG snapshot
 * beside its Plotly JSON and text summary, and its `text/html` — the drawing script, and in the
 * first plot of a run all of plotly.js inlined (about 4.6 MB) — is dropped:
 *
 * ```sh
 * deno run -A tools/nb_snapshot.ts notebooks/*.ipynb   # deno task notebooks does it for you
 * ```
 *
 * Outputs that only carry a piece of plotly.js (the Deno kernel gets it in pieces before the first
 * figure) are dropped with it. A saved plot output then holds `image/png` (what GitHub, nbconvert and any viewer without a
 * Plotly renderer show), `application/vnd.plotly.v1+json` (what JupyterLab with a Plotly renderer
 * and VS Code draw interactively) and `text/plain`. Outputs without a figure are left as they
 * are, and so is a plot that could not be drawn (it is reported, and the run fails).
 *
 * The file is written back in nbformat's layout (keys sorted, one-space indent, trailing
 * newline); it differs from what nbformat itself would write at most in how some numbers are
 * spelled (`1e-9` for `1e-09`).
 *
 * @module
 */

import { type Browser, chromium, type Page } from "playwright-core";
import { plotlyJsPath } from "../lib/plot/plotly_js.ts";
import { CHROMIUM_ARGS, CHROMIUM_PATH, chromiumMissing } from "../tests/helpers/browser.ts";

/** The MIME type of a Plotly figure. */
export const PLOTLY_MIME = "application/vnd.plotly.v1+json";

/** Width of a snapshot when the figure does not set one: about a notebook column. */
export const SNAPSHOT_WIDTH = 860;

/** Height of a snapshot when the figure does not set one (as `plotHtml`'s default). */
export const SNAPSHOT_HEIGHT = 420;

/** What {@linkcode snapshotNotebook} did to one notebook. */
export interface SnapshotResult {
  /** The notebook's path. */
  path: string;
  /** Plot outputs now carrying a PNG. */
  plots: number;
  /** Plot outputs that could not be drawn (left as they were), with the reason. */
  failed: string[];
  /** File size before and after, in bytes. */
  bytesBefore: number;
  bytesAfter: number;
}

interface NotebookOutput {
  output_type: string;
  data?: Record<string, unknown>;
  metadata?: Record<string, unknown>;
  [key: string]: unknown;
}

interface PlotlySpec {
  data?: unknown[];
  layout?: Record<string, unknown>;
  config?: Record<string, unknown>;
}

/** A headless Chromium page with plotly.js loaded, which turns figures into PNGs. */
export class PlotRenderer {
  #browser: Browser;
  #page: Page;

  private constructor(browser: Browser, page: Page) {
    this.#browser = browser;
    this.#page = page;
  }

  /**
   * Starts Chromium offline (no network at all: the page gets plotly.js from the npm package on
   * disk) and loads plotly.js into a blank page.
   *
   * @throws {Error} when Chromium is missing or does not start.
   */
  static async open(): Promise<PlotRenderer> {
    const missing = chromiumMissing();
    if (missing) throw new Error(`cannot draw plot snapshots: ${missing}`);
    const browser = await chromium.launch({
      executablePath: CHROMIUM_PATH,
      args: [...CHROMIUM_ARGS],
      timeout: 30_000,
    });
    try {
      const context = await browser.newContext({ offline: true, deviceScaleFactor: 1 });
      const page = await context.newPage();
      await page.setContent(
        `<!DOCTYPE html><html><head><meta charset="utf-8"></head>` +
          `<body style="margin:0;background:#fff"></body></html>`,
      );
      await page.addScriptTag({ path: plotlyJsPath() });
      return new PlotRenderer(browser, page);
    } catch (error) {
      await browser.close();
      throw error;
    }
  }

  /**
   * Draws one figure at its own size (or {@linkcode SNAPSHOT_WIDTH} ×
   * {@linkcode SNAPSHOT_HEIGHT}) and returns the PNG as base64, with its size in pixels.
   */
  async png(spec: PlotlySpec): Promise<{ base64: string; width: number; height: number }> {
    const layout = spec.layout ?? {};
    const width = typeof layout.width === "number" ? layout.width : SNAPSHOT_WIDTH;
    const height = typeof layout.height === "number" ? layout.height : SNAPSHOT_HEIGHT;
    const url = await this.#page.evaluate(
      async ({ data, layout, config, width, height }) => {
        // deno-lint-ignore no-explicit-any -- plotly.js in the page, untyped here
        const Plotly = (globalThis as any).Plotly;
        // deno-lint-ignore no-explicit-any
        const doc = (globalThis as any).document;
        const div = doc.createElement("div");
        doc.body.appendChild(div);
        try {
          await Plotly.newPlot(div, data, { ...layout, width, height }, {
            ...config,
            responsive: false,
            staticPlot: true,
          });
          return await Plotly.toImage(div, { format: "png", width, height, scale: 1 });
        } finally {
          Plotly.purge(div);
          div.remove();
        }
      },
      { data: spec.data ?? [], layout, config: spec.config ?? {}, width, height },
    ) as string;
    const prefix = "data:image/png;base64,";
    if (!url.startsWith(prefix)) throw new Error("plotly.js did not return a PNG");
    return { base64: url.slice(prefix.length), width, height };
  }

  /** Closes the browser. */
  async close(): Promise<void> {
    await this.#browser.close();
  }
}

/**
 * Replaces, in every output of `notebook` that carries a Plotly figure, the HTML with a PNG
 * snapshot; returns how many it replaced and which it could not draw.
 */
export async function snapshotOutputs(
  notebook: { cells?: { outputs?: NotebookOutput[] }[] },
  renderer: PlotRenderer,
): Promise<{ plots: number; failed: string[] }> {
  let plots = 0;
  const failed: string[] = [];
  for (const [index, cell] of (notebook.cells ?? []).entries()) {
    // The outputs that only carry a piece of plotly.js (see plotlyScriptParts) feed the HTML
    // that is dropped below: they go too.
    if (cell.outputs) cell.outputs = cell.outputs.filter((o) => !isPlotlyPart(o));
    for (const output of cell.outputs ?? []) {
      const data = output.data;
      if (!data || !(PLOTLY_MIME in data)) continue;
      try {
        const png = await renderer.png(data[PLOTLY_MIME] as PlotlySpec);
        const { "text/plain": text } = data;
        output.data = {
          "image/png": png.base64,
          [PLOTLY_MIME]: data[PLOTLY_MIME],
          ...(text !== undefined ? { "text/plain": text } : {}),
        };
        plots++;
      } catch (error) {
        failed.push(`cell ${index + 1}: ${error instanceof Error ? error.message : error}`);
      }
    }
  }
  return { plots, failed };
}

/** Whether an output is only a piece of plotly.js sent ahead of a notebook's first figure. */
function isPlotlyPart(output: NotebookOutput): boolean {
  const html = output.data?.["text/html"];
  const text = Array.isArray(html) ? html.join("") : html;
  return typeof text === "string" && Object.keys(output.data ?? {}).length === 1 &&
    /^<script type="text\/javascript" data-qlab-inline="plotly \d+\/\d+">[^]*<\/script>$/.test(
      text,
    );
}

/** A value with object keys sorted at every level, as nbformat writes notebooks. */
function sortKeys(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(sortKeys);
  if (value && typeof value === "object") {
    return Object.fromEntries(
      Object.keys(value).sort().map((k) => [k, sortKeys((value as Record<string, unknown>)[k])]),
    );
  }
  return value;
}

/** A notebook as nbformat writes it: sorted keys, one-space indent, a final newline. */
export function notebookJson(notebook: unknown): string {
  return JSON.stringify(sortKeys(notebook), null, 1) + "\n";
}

/**
 * Snapshots the plots of the notebook at `path` and writes it back (only when something changed).
 * Pass a `renderer` to share one browser between notebooks.
 */
export async function snapshotNotebook(
  path: string,
  renderer?: PlotRenderer,
): Promise<SnapshotResult> {
  const text = await Deno.readTextFile(path);
  const notebook = JSON.parse(text);
  const own = renderer ?? await PlotRenderer.open();
  try {
    const { plots, failed } = await snapshotOutputs(notebook, own);
    const out = plots > 0 ? notebookJson(notebook) : text;
    if (out !== text) await Deno.writeTextFile(path, out);
    const bytes = (s: string) => new TextEncoder().encode(s).length;
    return { path, plots, failed, bytesBefore: bytes(text), bytesAfter: bytes(out) };
  } finally {
    if (!renderer) await own.close();
  }
}

/** Snapshots several notebooks with one browser. */
export async function snapshotNotebooks(paths: string[]): Promise<SnapshotResult[]> {
  const renderer = await PlotRenderer.open();
  try {
    const results: SnapshotResult[] = [];
    for (const path of paths) results.push(await snapshotNotebook(path, renderer));
    return results;
  } finally {
    await renderer.close();
  }
}

/** "5.0 MB → 312 kB". */
export function sizeChange(r: SnapshotResult): string {
  const f = (b: number) => b >= 1e6 ? `${(b / 1e6).toFixed(2)} MB` : `${(b / 1e3).toFixed(0)} kB`;
  return `${f(r.bytesBefore)} → ${f(r.bytesAfter)}`;
}

if (import.meta.main) {
  const paths = Deno.args;
  if (paths.length === 0 || paths.includes("-h") || paths.includes("--help")) {
    console.log("usage: deno run -A tools/nb_snapshot.ts NOTEBOOK.ipynb...");
    Deno.exit(paths.length === 0 ? 2 : 0);
  }
  let ok = true;
  for (const r of await snapshotNotebooks(paths)) {
    console.log(`${r.path}: ${r.plots} plots as PNG, ${sizeChange(r)}`);
    for (const f of r.failed) console.log(`  could not draw ${f}`);
    ok &&= r.failed.length === 0;
  }
  Deno.exit(ok ? 0 : 1);
}
