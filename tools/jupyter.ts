/**
 * Executes notebooks in the real Deno Jupyter kernel through `tools/jupyter_run.py`, which queues
 * every cell at once as "Run All" does (jupyter_client), files each output under the cell its
 * `parent_header` names, and fails on an output that arrives outside its cell, on errors and on
 * unmet `// expect:` markers:
 *
 * ```sh
 * deno task notebooks                       # every notebooks/*.ipynb, outputs saved in place
 * deno task notebooks notebooks/02_*.ipynb  # some of them
 * deno task notebooks --check               # run and check only, into a temporary folder
 * deno task notebooks --keep-html           # save the outputs exactly as the kernel sent them
 * ```
 *
 * Saved in place, every plot output is slimmed for committing (`tools/nb_snapshot.ts`): its
 * Plotly JSON and text stay, a PNG snapshot drawn in headless Chromium replaces its HTML (which
 * in the first plot inlines all of plotly.js), so a notebook is hundreds of kilobytes instead of
 * five megabytes and a code host shows its plots as images. `--check` and the tests leave the
 * outputs as the kernel sent them.
 *
 * Needs Python 3 with nbclient and nbconvert (Debian: `jupyter-nbconvert python3-nbclient
 * jupyter-client`) and the Deno kernel (`deno jupyter --install`). `$QLAB_PYTHON` picks the
 * Python; otherwise Debian's `/usr/bin/python3` is tried before `python3` on the PATH, because a
 * version manager's `python3` often lacks the Debian packages.
 *
 * @module
 */

import { basename, join, resolve } from "node:path";
import { fileURLToPath as fromFileUrl } from "node:url";
import { sizeChange, snapshotNotebooks } from "./nb_snapshot.ts";

/** The Python runner beside this file. */
export const JUPYTER_RUNNER: string = fromFileUrl(new URL("./jupyter_run.py", import.meta.url));

/** The project's notebooks folder. */
export const NOTEBOOK_DIR: string = fromFileUrl(new URL("../notebooks/", import.meta.url));

function canRun(command: string, args: string[]): { ok: boolean; out: string } {
  try {
    const r = new Deno.Command(command, { args, stdout: "piped", stderr: "piped" }).outputSync();
    const out = new TextDecoder().decode(r.stdout).trim();
    return { ok: r.success, out };
  } catch {
    return { ok: false, out: "" };
  }
}

/** A Python that can import nbclient and nbconvert, or undefined. */
export function jupyterPython(): string | undefined {
  const candidates = [Deno.env.get("QLAB_PYTHON"), "/usr/bin/python3", "python3"];
  for (const python of candidates) {
    if (python && canRun(python, ["-c", "import nbclient, nbconvert, jupyter_client"]).ok) {
      return python;
    }
  }
  return undefined;
}

/**
 * Why notebooks cannot be executed here (no suitable Python, no Deno kernelspec, or a
 * kernelspec whose program does not run), or undefined when they can.
 */
export function jupyterMissing(): string | undefined {
  const python = jupyterPython();
  if (!python) {
    return "no Python with nbclient and nbconvert (apt-get install jupyter-nbconvert " +
      "python3-nbclient jupyter-client, or set QLAB_PYTHON)";
  }
  const spec = canRun(python, [
    "-c",
    "from jupyter_client.kernelspec import KernelSpecManager as M; " +
    "print(M().get_kernel_spec('deno').argv[0])",
  ]);
  if (!spec.ok) return "no Deno Jupyter kernel (run: npx --yes deno@2.9.6 jupyter --install)";
  const version = canRun(spec.out, ["--version"]);
  if (!version.ok) {
    return `the Deno kernelspec starts ${spec.out}, which does not run ` +
      "(reinstall it: npx --yes deno@2.9.6 jupyter --install --force)";
  }
  return undefined;
}

/** The notebooks in `notebooks/`, sorted by name. */
export function listNotebooks(dir: string = NOTEBOOK_DIR): string[] {
  return [...Deno.readDirSync(dir)]
    .filter((e) => e.isFile && e.name.endsWith(".ipynb"))
    .map((e) => join(dir, e.name))
    .sort();
}

/** One notebook's result, as `jupyter_run.py --summary` writes it. */
export interface JupyterResult {
  notebook: string;
  ok: boolean;
  problems: string[];
  seconds: number;
  cells: number;
  plots: number;
  tables: number;
  /** Per code cell (its 1-based position among all cells): [plots, tables] it showed. */
  shown: Record<string, [number, number]>;
  /** Why each earlier attempt's kernel failed, when the notebook had to run again. */
  restarts: string[];
  executed?: string;
  html?: string;
}

/** What a run of the Python runner produced. */
export interface JupyterRun {
  /** Its exit status: 0 when every notebook passed. */
  code: number;
  /** Its output, stdout and stderr together. */
  output: string;
  /** Per notebook, when the runner got as far as writing its summary. */
  results: JupyterResult[];
}

/**
 * Runs `tools/jupyter_run.py` on `notebooks`, writing executed copies and their HTML into
 * `outDir` (or over the sources when `outDir` is "inplace").
 */
export async function runInJupyter(
  notebooks: string[],
  outDir: string | "inplace",
  options: { html?: boolean; python?: string } = {},
): Promise<JupyterRun> {
  const python = options.python ?? jupyterPython();
  if (!python) throw new Error(jupyterMissing());
  const summaryDir = await Deno.makeTempDir({ prefix: "qlab-nb-summary-" });
  const summary = join(summaryDir, "summary.json");
  const args = [JUPYTER_RUNNER, ...notebooks, "--summary", summary];
  args.push(...(outDir === "inplace" ? ["--inplace"] : ["--out", outDir]));
  if (options.html ?? outDir !== "inplace") args.push("--html");
  try {
    const r = await new Deno.Command(python, { args, stdout: "piped", stderr: "piped" }).output();
    const text = new TextDecoder().decode(r.stdout) + new TextDecoder().decode(r.stderr);
    let results: JupyterResult[] = [];
    try {
      results = JSON.parse(await Deno.readTextFile(summary));
    } catch { /* the runner failed before writing it: the output says why */ }
    return { code: r.code, output: text, results };
  } finally {
    await Deno.remove(summaryDir, { recursive: true });
  }
}

/** What stock `jupyter nbconvert --to notebook --execute` (and then `--to html`) produced. */
export interface NbconvertRun {
  /** Exit status of the execution: 0 when every cell ran. */
  code: number;
  /** Output of both commands. */
  output: string;
  /** The executed notebook. */
  executed: string;
  /** Its HTML export, when the execution succeeded. */
  html?: string;
}

/**
 * Executes `notebook` with stock nbconvert (`python -m nbconvert --to notebook --execute`, which
 * is `jupyter nbconvert`) into `outDir`, then exports the result to HTML, as a user would.
 */
export async function runNbconvert(
  notebook: string,
  outDir: string,
  options: { python?: string; timeoutS?: number } = {},
): Promise<NbconvertRun> {
  const python = options.python ?? jupyterPython();
  if (!python) throw new Error(jupyterMissing());
  const run = async (args: string[]) => {
    const r = await new Deno.Command(python, {
      args: ["-m", "nbconvert", ...args],
      stdout: "piped",
      stderr: "piped",
    }).output();
    return {
      code: r.code,
      text: new TextDecoder().decode(r.stdout) + new TextDecoder().decode(r.stderr),
    };
  };
  const name = basename(notebook);
  const executed = join(outDir, name);
  const exec = await run([
    "--to",
    "notebook",
    "--execute",
    `--ExecutePreprocessor.timeout=${options.timeoutS ?? 600}`,
    "--output-dir",
    outDir,
    notebook,
  ]);
  if (exec.code !== 0) return { code: exec.code, output: exec.text, executed };
  const html = await run(["--to", "html", "--output-dir", outDir, executed]);
  return {
    code: html.code,
    output: exec.text + html.text,
    executed,
    html: html.code === 0 ? executed.replace(/\.ipynb$/, ".html") : undefined,
  };
}

/**
 * Per code cell of an executed notebook (its 1-based position among all cells): the plots and
 * tables its outputs show, counted as `jupyter_run.py` counts them.
 */
export async function shownPerCell(path: string): Promise<Record<string, [number, number]>> {
  const nb = JSON.parse(await Deno.readTextFile(path)) as {
    cells: {
      cell_type: string;
      outputs?: { output_type: string; data?: Record<string, unknown> }[];
    }[];
  };
  const shown: Record<string, [number, number]> = {};
  nb.cells.forEach((cell, i) => {
    if (cell.cell_type !== "code") return;
    let plots = 0;
    let tables = 0;
    for (const out of cell.outputs ?? []) {
      if (out.output_type === "stream" || out.output_type === "error") continue;
      const data = out.data ?? {};
      const html = data["text/html"];
      const text = Array.isArray(html) ? html.join("") : String(html ?? "");
      if ("application/vnd.plotly.v1+json" in data) plots++;
      else if (text.includes("<table")) tables++;
    }
    shown[String(i + 1)] = [plots, tables];
  });
  return shown;
}

async function main(args: string[]): Promise<number> {
  const check = args.includes("--check");
  const keepHtml = args.includes("--keep-html");
  const base = Deno.env.get("INIT_CWD") ?? Deno.cwd();
  const named = args.filter((a) => !a.startsWith("--")).map((a) => resolve(base, a));
  const notebooks = named.length ? named : listNotebooks();
  const missing = jupyterMissing();
  if (missing) {
    console.error(`cannot run notebooks in Jupyter: ${missing}`);
    return 2;
  }
  const out = check ? await Deno.makeTempDir({ prefix: "qlab-notebooks-" }) : "inplace";
  const run = await runInJupyter(notebooks, out);
  console.log(run.output.trimEnd());
  if (check) {
    console.log(`executed copies and HTML: ${out}`);
    return run.code;
  }
  if (keepHtml) return run.code;
  const saved = run.results.filter((r) => r.executed).map((r) => r.executed!);
  if (saved.length === 0) return run.code;
  let code = run.code;
  for (const r of await snapshotNotebooks(saved)) {
    console.log(`${r.path}: ${r.plots} plots saved as PNG snapshots, ${sizeChange(r)}`);
    for (const f of r.failed) console.log(`    could not draw ${f}`);
    if (r.failed.length) code ||= 1;
  }
  return code;
}

if (import.meta.main) Deno.exit(await main(Deno.args));
