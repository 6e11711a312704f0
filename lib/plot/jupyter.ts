/**
 * Figures and tables in Jupyter notebooks on the Deno kernel.
 *
 * {@linkcode show} is the call to use: `await show(fig)` shows a figure (or a table from
 * {@linkcode displayTable}) where it is called — in the middle of a cell, in a loop, in a
 * function — and returns once the output has left the kernel, so it lands under its own cell in
 * every front end (see kernel_outputs.ts for why that needs care in the Deno kernel).
 * {@linkcode display} returns a value the kernel shows when it is a cell's last expression.
 *
 * A figure's bundle holds the Plotly JSON (JupyterLab and VS Code draw it natively), an HTML
 * fallback for everything else (nbconvert's HTML export, classic notebooks), and a plain-text
 * summary. The fallback needs plotly.js on the page: the first figure shown in a process sends it,
 * in the same cell, ahead of itself; later figures use the `window.Plotly` it defined.
 *
 * @module
 */

import { type Figure, figureTitle } from "./figure.ts";
import {
  broadcastDisplay,
  flushKernelOutputs,
  type OutputTarget,
  outputTarget,
} from "./kernel_outputs.ts";
import { plotHtml, plotlyScriptParts, plotlyScriptTag } from "./plotly_js.ts";
import { type Table, tableHtml, tableText } from "./table.ts";

/**
 * The key under which the Deno kernel looks for a value's MIME bundle (`Deno.jupyter.$display`,
 * which exists only inside the kernel).
 *
 * @example
 * ```ts
 * import { displayTable, JUPYTER_DISPLAY } from "./jupyter.ts";
 * const bundle = displayTable([{ format: "nf4" }])[JUPYTER_DISPLAY]();
 * Object.keys(bundle).length; // 2
 * ```
 */
export const JUPYTER_DISPLAY: unique symbol = Symbol.for("Jupyter.display");

/**
 * Whether this process has already sent plotly.js; a global, so that copies of this module loaded
 * through different URLs still agree.
 */
const INLINED = Symbol.for("qlab.plot.plotlyInlined");

/** A Jupyter MIME bundle: MIME type → content. */
export type MimeBundle = Record<string, unknown>;

/** A value the Deno Jupyter kernel displays through its MIME bundle. */
export interface Displayable {
  /** Returns the bundle; the same one every time for a given value. */
  [JUPYTER_DISPLAY](): MimeBundle;
}

/** Options of {@linkcode display} and {@linkcode show}. */
export interface DisplayOptions {
  /** A title for the text summary (and the figure, if it has none). */
  title?: string;
  /** The text summary's body: a line, or named numbers. Derived from the traces by default. */
  summary?: string | Record<string, string | number>;
}

/**
 * Shows a figure or a table in the notebook now, wherever it is called, and returns once the
 * output has left the kernel (so it lands under the cell that called it, in every front end).
 * Outside Jupyter it prints the output's text summary; under `deno task nb` it goes on the page.
 *
 * @example
 * ```ts
 * import { displayTable, show } from "./jupyter.ts";
 * import { barFigure } from "./generic.ts";
 * await show(barFigure(["fp16", "nf4"], [{ name: "GiB", values: [13, 3.9] }]), {
 *   title: "Weights",
 * });
 * await show(displayTable([{ format: "nf4", bits: 4.127 }]));
 * ```
 */
export async function show(
  item: Figure | Displayable,
  options: DisplayOptions = {},
): Promise<void> {
  const target = outputTarget();
  const displayable = isDisplayable(item) ? item : display(item, options);
  await send(target, displayable[JUPYTER_DISPLAY]());
}

/**
 * Shows a table now, as {@linkcode show} does: `showTable(rows)` is
 * `show(displayTable(rows))`.
 *
 * @example
 * ```ts
 * import { showTable } from "./jupyter.ts";
 * await showTable([{ format: "nf4", bits: 4.127 }], ["format", "bits"]);
 * ```
 */
export async function showTable(rows: Table["rows"], columns?: string[]): Promise<void> {
  await show(displayTable(rows, columns));
}

async function send(target: OutputTarget, bundle: MimeBundle): Promise<void> {
  if (target.kind === "kernel") {
    broadcastDisplay(target.broadcast, bundle);
    await flushKernelOutputs();
  } else if (target.kind === "hook") {
    await target.hook(bundle);
  } else {
    console.log(String(bundle["text/plain"] ?? ""));
  }
}

function isDisplayable(item: Figure | Displayable): item is Displayable {
  return typeof (item as Partial<Displayable>)[JUPYTER_DISPLAY] === "function";
}

/**
 * A figure as a notebook output, shown by the kernel when it is a cell's **last expression** (to
 * show one anywhere else, `await show(fig)`). The bundle is built when the kernel first asks for
 * it, so only a figure that is actually shown can be the one that carries plotly.js.
 *
 * @example
 * ```ts
 * import { display } from "./jupyter.ts";
 * import { barFigure } from "./generic.ts";
 * const out = display(barFigure(["fp16", "nf4"], [{ name: "GiB", values: [13, 3.9] }]), {
 *   title: "Weights",
 *   summary: { fp16: "13 GiB", nf4: "3.9 GiB" },
 * });
 * out; // as a cell's last expression, the kernel shows it
 * ```
 */
export function display(figure: Figure, options: DisplayOptions = {}): Displayable {
  let bundle: MimeBundle | undefined;
  const title = options.title ?? figureTitle(figure);
  const shown: Figure = options.title && !figureTitle(figure)
    ? { ...figure, layout: { ...figure.layout, title: { text: options.title } } }
    : figure;
  return {
    [JUPYTER_DISPLAY](): MimeBundle {
      bundle ??= {
        "application/vnd.plotly.v1+json": {
          data: shown.data,
          layout: shown.layout,
          config: { responsive: true, displaylogo: false, ...shown.config },
        },
        "text/html": takePlotlyScript() + plotHtml(shown),
        "text/plain": summaryText(shown, title, options.summary),
      };
      return bundle;
    },
  };
}

/**
 * A table as a notebook output: HTML, and aligned text for plain-text frontends.
 *
 * @example
 * ```ts
 * import { displayTable } from "./jupyter.ts";
 * displayTable([{ format: "nf4", bits: 4.127 }], ["format", "bits"]);
 * ```
 */
export function displayTable(rows: Table["rows"], columns?: string[]): Displayable {
  const table: Table = {
    columns: columns ?? Object.keys(rows.find((r) => !Array.isArray(r)) ?? {}),
    rows,
  };
  const bundle: MimeBundle = { "text/html": tableHtml(table), "text/plain": tableText(table) };
  return { [JUPYTER_DISPLAY]: (): MimeBundle => bundle };
}

/**
 * Makes the next figure displayed inline plotly.js again. Call it when the output that carried
 * plotly.js has been cleared (a re-run of the notebook's first plot cell in a live kernel).
 *
 * @example
 * ```ts
 * import { resetPlotlyInline } from "./jupyter.ts";
 * resetPlotlyInline();
 * ```
 */
export function resetPlotlyInline(): void {
  (globalThis as Record<symbol, unknown>)[INLINED] = false;
}

/**
 * plotly.js's script the first time in this process, then nothing.
 *
 * In the kernel it goes out as separate outputs of at most 256 KiB each, queued ahead of the
 * figure, whose own output carries only the last piece, which runs the whole. Deno's kernel (2.9)
 * writes IOPub messages from two tasks to one socket without keeping whole messages together,
 * and a message longer than the socket buffer (one ~4.8 MB output) can get another message's
 * bytes in between ("Invalid Signature" in jupyter_client). The pieces reach the front end before
 * the cell ends because `show` flushes after the figure, and in any case every cell ends with a
 * flush (kernel_outputs.ts).
 */
function takePlotlyScript(): string {
  const state = globalThis as Record<symbol, unknown>;
  if (state[INLINED]) return "";
  state[INLINED] = true;
  const target = outputTarget();
  if (target.kind !== "kernel") return plotlyScriptTag();
  const parts = plotlyScriptParts();
  for (const part of parts.slice(0, -1)) broadcastDisplay(target.broadcast, { "text/html": part });
  return parts[parts.length - 1];
}

function summaryText(
  figure: Figure,
  title: string,
  summary: DisplayOptions["summary"],
): string {
  const lines = title ? [title] : [];
  if (typeof summary === "string") {
    lines.push(summary);
  } else if (summary) {
    for (const [key, value] of Object.entries(summary)) lines.push(`  ${key}: ${value}`);
  } else {
    for (const trace of figure.data.slice(0, 8)) lines.push(`  ${traceSummary(trace)}`);
  }
  return lines.join("\n");
}

/** "name: N points, y a … b" for a trace, from whichever of y and z it has. */
function traceSummary(trace: Figure["data"][number]): string {
  const t = trace as { name?: string; type?: string; y?: unknown; z?: unknown };
  const values = (Array.isArray(t.z) ? t.z.flat() : Array.isArray(t.y) ? t.y : [])
    .filter((v): v is number => typeof v === "number" && Number.isFinite(v));
  const name = t.name ?? t.type ?? "trace";
  if (values.length === 0) return name;
  // A loop, not Math.min(...values): a large heatmap would overflow the argument list.
  let lo = Infinity;
  let hi = -Infinity;
  for (const v of values) {
    if (v < lo) lo = v;
    if (v > hi) hi = v;
  }
  const range = lo === hi ? fmt(lo) : `${fmt(lo)} … ${fmt(hi)}`;
  return `${name}: ${values.length} values, ${range}`;
}

function fmt(x: number): string {
  return Number.isInteger(x) ? String(x) : x.toPrecision(4);
}
