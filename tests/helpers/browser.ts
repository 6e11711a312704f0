/**
 * Opens pages in headless Chromium with the network off and reports whether their Plotly figures
 * drew: for the plot tests, the demo's report and the notebooks' HTML.
 *
 * Chromium is Debian's (`apt-get install chromium`), driven through playwright-core, which talks
 * to it over the DevTools protocol and downloads nothing itself.
 */

import { chromium } from "playwright-core";
import { pathToFileURL } from "node:url";
import { resolve } from "node:path";

/** Where Chromium is looked for: `$QLAB_CHROMIUM`, else Debian's path. */
export const CHROMIUM_PATH: string = Deno.env.get("QLAB_CHROMIUM") ?? "/usr/bin/chromium";

/**
 * Flags for a quiet, sandbox-free headless browser with no way out: every request goes to a
 * proxy on the discard port, every host name fails to resolve, and the background services that
 * phone home are off. On top of that the page's context is set offline.
 */
export const CHROMIUM_ARGS: readonly string[] = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--disable-dev-shm-usage",
  "--proxy-server=127.0.0.1:9",
  "--host-resolver-rules=MAP * ~NOTFOUND",
];

/** Whether Chromium can be run here, and if not, why. */
export function chromiumMissing(): string | undefined {
  try {
    const info = Deno.statSync(CHROMIUM_PATH);
    return info.isFile ? undefined : `${CHROMIUM_PATH} is not a file`;
  } catch {
    return `no Chromium at ${CHROMIUM_PATH} (apt-get install chromium, or set QLAB_CHROMIUM)`;
  }
}

/**
 * Options for a `Deno.test` that needs the browser: ignored, with the reason printed, when
 * Chromium is missing, unless `QLAB_REQUIRE_BROWSER=1` (CI), where the test runs and fails.
 */
export function browserTestOptions(): { ignore: boolean } {
  const missing = chromiumMissing();
  if (!missing) return { ignore: false };
  if (Deno.env.get("QLAB_REQUIRE_BROWSER") === "1") return { ignore: false };
  console.warn(`browser tests ignored: ${missing}`);
  return { ignore: true };
}

// Page-side code as source text: it runs in the browser, and this module is checked without the
// DOM types.
const PLOTS = `[...new Set(document.querySelectorAll(".qlab-plot, .js-plotly-plot"))]`;

/** True when every plot has drawn something or says why it could not. */
const ALL_SETTLED = `${PLOTS}.every((el) =>
  el.querySelector(".main-svg") !== null || el.textContent.trim() !== "")`;

/**
 * Counts plots, and those drawn: plotly.js marks a plot's div `js-plotly-plot`, puts its SVG in
 * `.main-svg` and each trace in a `.trace` group (a heatmap in `.hm`).
 */
const COUNT_PLOTS = `(() => {
  const plots = ${PLOTS};
  const undrawn = [];
  let drawn = 0;
  for (const el of plots) {
    const traces = el.querySelectorAll(".main-svg .trace, .main-svg .hm");
    if (el.classList.contains("js-plotly-plot") && traces.length > 0) drawn++;
    else {
      const text = el.textContent.trim().slice(0, 120);
      undrawn.push((el.id || el.className) + (text ? ": " + text : ""));
    }
  }
  return { plots: plots.length, drawn, undrawn };
})()`;

/** What {@linkcode checkPageRenders} found. */
export interface PageRenders {
  /** Plot containers on the page (`.qlab-plot` or `.js-plotly-plot`). */
  plots: number;
  /** Those that plotly.js drew, with at least one trace on screen. */
  drawn: number;
  /** Uncaught exceptions, console errors and attempted network requests. */
  errors: string[];
  /** The plots that did not draw: id (or class), then any text they show instead. */
  undrawn: string[];
}

/** Options of {@linkcode checkPageRenders}. */
export interface CheckPageOptions {
  /** How long to wait for every plot to draw, in milliseconds. */
  timeoutMs?: number;
  /** Save a PNG of the full page here, to look at. */
  screenshot?: string;
}

/**
 * Opens `htmlPath` in headless Chromium with the network off, waits until every plot has drawn
 * (or the timeout passes) and counts the plots, the drawn ones and the page's errors.
 *
 * @throws {Error} when Chromium is missing or does not start.
 */
export async function checkPageRenders(
  htmlPath: string,
  options: CheckPageOptions = {},
): Promise<PageRenders> {
  const missing = chromiumMissing();
  if (missing) throw new Error(`cannot check ${htmlPath}: ${missing}`);
  const browser = await chromium.launch({
    executablePath: CHROMIUM_PATH,
    args: [...CHROMIUM_ARGS],
    timeout: 30_000,
  });
  const errors: string[] = [];
  try {
    const context = await browser.newContext({ offline: true });
    const page = await context.newPage();
    page.on("pageerror", (error) => errors.push(`uncaught: ${error.message}`));
    page.on("console", (message) => {
      if (message.type() !== "error") return;
      // "Failed to load resource" names no resource: the location does.
      const where = message.location().url;
      errors.push(`console: ${message.text()}${where ? ` (${where})` : ""}`);
    });
    page.on("request", (request) => {
      const url = request.url();
      if (!/^(file|data|blob|about):/.test(url)) errors.push(`network request: ${url}`);
    });
    await page.goto(pathToFileURL(resolve(htmlPath)).href, { waitUntil: "load" });
    const timeout = options.timeoutMs ?? 15_000;
    await page.waitForFunction(ALL_SETTLED, undefined, { timeout, polling: 100 })
      .catch(() => {/* counted below: the undrawn plots say what was missing */});
    const result = await page.evaluate(COUNT_PLOTS) as Omit<PageRenders, "errors">;
    if (options.screenshot) await page.screenshot({ path: options.screenshot, fullPage: true });
    await context.close();
    return { ...result, errors };
  } finally {
    await browser.close();
  }
}
