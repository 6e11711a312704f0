/**
 * What a notebook's cells see when `deno task nb` runs them outside Jupyter: a stand-in for
 * `Deno.jupyter` (which exists only in the kernel), and a record of every cell's outputs —
 * displays, console output and writes to `Deno.stdout` / `Deno.stderr`, passed through to the
 * terminal as well.
 *
 * The module that `tools/nb.ts` generates from a notebook imports {@linkcode session}, shadows
 * the global `Deno` with {@linkcode NotebookSession.deno}, and calls
 * {@linkcode NotebookSession.enter} before each cell and {@linkcode NotebookSession.show} on a
 * cell's last expression.
 *
 * @module
 */

/** The key under which the Deno kernel looks for a value's MIME bundle. */
export const JUPYTER_DISPLAY: unique symbol = Symbol.for("Jupyter.display");

/** Where the library's `show()` finds the runner (OUTPUT_HOOK in lib/plot/kernel_outputs.ts). */
const OUTPUT_HOOK = Symbol.for("qlab.notebook.output");

/** A MIME type → content map, as the kernel sends it. */
export type MimeBundle = Record<string, unknown>;

/** One output of a cell, in the order it was produced. */
export type CellOutput =
  | { kind: "stream"; name: "stdout" | "stderr"; text: string }
  | { kind: "display"; bundle: MimeBundle };

/** `Deno.jupyter.display`'s options (accepted and ignored here). */
export interface DisplayCallOptions {
  raw?: boolean;
  update?: boolean;
  display_id?: string;
}

/** The MIME bundle the kernel would show for `value`, or null for `undefined`. */
export async function bundleOf(value: unknown, raw = false): Promise<MimeBundle | null> {
  if (value === undefined) return null;
  const method = (value as { [JUPYTER_DISPLAY]?: unknown } | null)?.[JUPYTER_DISPLAY];
  if (typeof method === "function") return await method.call(value) as MimeBundle;
  if (raw && typeof value === "object" && value !== null) return value as MimeBundle;
  return { "text/plain": Deno.inspect(value, { colors: false, depth: 4 }) };
}

function tagged(mime: string, strings: TemplateStringsArray, values: unknown[]): {
  [JUPYTER_DISPLAY](): MimeBundle;
} {
  const text = String.raw({ raw: strings }, ...values);
  return { [JUPYTER_DISPLAY]: () => ({ [mime]: text }) };
}

/** The cells' outputs and the shims through which they are produced. */
export class NotebookSession {
  /** The cell running now: its 1-based position among all cells of the notebook; 0 before. */
  current = 0;
  /** Outputs per cell number. */
  readonly outputs: Map<number, CellOutput[]> = new Map();
  /** `Deno` as the cells see it: the real one, with `jupyter`, `stdout` and `stderr` replaced. */
  readonly deno: typeof Deno;
  #decoders = { stdout: new TextDecoder(), stderr: new TextDecoder() };
  #displays = new Map<string, (CellOutput & { kind: "display" })[]>();
  #restoreConsole: (() => void) | null = null;

  constructor() {
    const real = globalThis.Deno;
    const jupyter = {
      $display: JUPYTER_DISPLAY,
      // As in the kernel: raw by default (a plain object is a MIME bundle), a value with a
      // display method shows its bundle, and `update` replaces what an earlier display with the
      // same `display_id` showed.
      display: async (value: unknown, options: DisplayCallOptions = {}): Promise<void> => {
        const cell = this.current;
        const bundle = await bundleOf(value, options.raw ?? true);
        const id = options.display_id;
        if (!bundle) return;
        if (id && options.update) {
          for (const out of this.#displays.get(id) ?? []) out.bundle = bundle;
        } else {
          const out: CellOutput & { kind: "display" } = { kind: "display", bundle };
          if (id) this.#displays.set(id, [...(this.#displays.get(id) ?? []), out]);
          this.#add(out, cell);
        }
      },
      html: (s: TemplateStringsArray, ...v: unknown[]) => tagged("text/html", s, v),
      md: (s: TemplateStringsArray, ...v: unknown[]) => tagged("text/markdown", s, v),
      svg: (s: TemplateStringsArray, ...v: unknown[]) => tagged("image/svg+xml", s, v),
      format: async (value: unknown): Promise<MimeBundle> => await bundleOf(value) ?? {},
      // A display_data message is an output, as in the kernel; other messages are dropped.
      broadcast: (type: string, content: { data?: MimeBundle }): Promise<void> => {
        if (type === "display_data" && content?.data) {
          this.#add({ kind: "display", bundle: content.data }, this.current);
        }
        return Promise.resolve();
      },
    };
    const stream = (name: "stdout" | "stderr", target: typeof real.stdout) =>
      Object.create(target, {
        write: {
          value: (data: Uint8Array): Promise<number> => {
            this.#text(name, this.#decoders[name].decode(data, { stream: true }));
            return target.write(data);
          },
        },
        writeSync: {
          value: (data: Uint8Array): number => {
            this.#text(name, this.#decoders[name].decode(data, { stream: true }));
            return target.writeSync(data);
          },
        },
      });
    this.deno = Object.create(real, {
      jupyter: { value: jupyter, enumerable: true },
      stdout: { value: stream("stdout", real.stdout), enumerable: true },
      stderr: { value: stream("stderr", real.stderr), enumerable: true },
    });
  }

  /**
   * Marks the start of cell `n` (1-based, counting every cell). The first call also registers
   * the session where the library's `show()` looks for it (lib/plot/kernel_outputs.ts).
   */
  enter(n: number): void {
    (globalThis as Record<symbol, unknown>)[OUTPUT_HOOK] ??= (bundle: MimeBundle): void => {
      this.#add({ kind: "display", bundle }, this.current);
    };
    this.current = n;
    if (!this.outputs.has(n)) this.outputs.set(n, []);
  }

  /** Shows a cell's last expression, as the kernel does with its execute result. */
  async show(n: number, value: unknown): Promise<void> {
    this.enter(n);
    const bundle = await bundleOf(value);
    if (bundle) this.#add({ kind: "display", bundle }, n);
  }

  /** Records console output per cell while still printing it. */
  captureConsole(): void {
    const methods = ["log", "info", "debug", "warn", "error", "table", "dir"] as const;
    const saved = methods.map((m) => [m, console[m]] as const);
    for (const [name, original] of saved) {
      const stream = name === "warn" || name === "error" ? "stderr" : "stdout";
      console[name] = (...args: unknown[]): void => {
        const text = args.map((a) =>
          typeof a === "string" ? a : Deno.inspect(a, { colors: false, depth: 4 })
        ).join(" ");
        this.#text(stream, text + "\n");
        (original as (...a: unknown[]) => void).apply(console, args);
      };
    }
    this.#restoreConsole = () => {
      for (const [name, original] of saved) console[name] = original as never;
    };
  }

  /** Puts the console back. */
  releaseConsole(): void {
    this.#restoreConsole?.();
    this.#restoreConsole = null;
  }

  #text(name: "stdout" | "stderr", text: string): void {
    const list = this.#list();
    const last = list.at(-1);
    if (last?.kind === "stream" && last.name === name) last.text += text;
    else list.push({ kind: "stream", name, text });
  }

  #add(output: CellOutput, cell = this.current): void {
    this.#list(cell).push(output);
  }

  #list(cell = this.current): CellOutput[] {
    let list = this.outputs.get(cell);
    if (!list) this.outputs.set(cell, list = []);
    return list;
  }
}

/** The one session of this process, shared by the runner and the generated module. */
export const session: NotebookSession = new NotebookSession();
