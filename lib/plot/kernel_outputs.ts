/**
 * Sending notebook outputs from library code, and knowing they have left the Deno kernel before
 * the cell ends.
 *
 * In the Deno Jupyter kernel (2.9), `Deno.jupyter.broadcast` only queues a message: a separate
 * task publishes the queue on IOPub, and stamps each message with the request running *when it
 * publishes it*, not when it was queued. When a cell finishes, the kernel sends its `idle` status
 * at once, without waiting for that queue. An output still queued then (a large one, or one behind
 * large ones) reaches the front end after the cell's `idle`, and under "Run All", where the next
 * cell is already waiting, it is labelled with the next cell: it shows up there, or a client that
 * stopped listening drops it. Awaiting the broadcast does not help (it returns at once).
 *
 * {@linkcode flushKernelOutputs} closes that gap. It subscribes to the kernel's own IOPub socket
 * (a plain ZMTP SUB connection to the port in the kernel's connection file), queues a marker
 * message behind everything queued so far, and waits until the marker comes out of the socket:
 * the queue is first in, first out, and the kernel writes each message to the front end before
 * it writes it to this later subscriber, so everything queued before the call has reached the
 * front end under the right cell. The marker is a `status: busy` message, which front ends
 * ignore while a cell runs. Where the connection file cannot be found (no `/proc`), it waits for
 * a time that grows with the bytes queued instead.
 *
 * {@linkcode show} flushes after each output it sends. So that console output and a cell's
 * result cannot come late either, loading this module in the kernel also makes **every cell end
 * with a flush**: the kernel shows a cell's result through
 * `Deno[Deno.internal].jupyter.broadcastResult`, which it looks up and awaits for every cell
 * before it replies and goes idle, and {@linkcode installCellEndFlush} wraps it. Nothing changes
 * outside the kernel, or in a kernel without that function.
 *
 * Outside the kernel, `tools/nb.ts` (the project's runner without Jupyter) registers a function
 * under {@linkcode OUTPUT_HOOK} that records outputs per cell; plain scripts have neither.
 *
 * @module
 */

/**
 * Where the project's notebook runner without Jupyter (`tools/nb.ts`) registers the function that
 * records an output for the cell running now (a global, so that every copy of this module agrees).
 *
 * @example
 * ```ts
 * import { OUTPUT_HOOK } from "./kernel_outputs.ts";
 * typeof OUTPUT_HOOK; // "symbol"
 * ```
 */
export const OUTPUT_HOOK: unique symbol = Symbol.for("qlab.notebook.output");

/** A function that records a MIME bundle as an output of the running cell. */
export type OutputHook = (bundle: Record<string, unknown>) => void | Promise<void>;

type Broadcast = (type: string, content: Record<string, unknown>) => unknown;

/** Where outputs go in this process. */
export type OutputTarget =
  | { kind: "kernel"; broadcast: Broadcast }
  | { kind: "hook"; hook: OutputHook }
  | { kind: "none" };

/**
 * The Deno kernel's `Deno.jupyter.broadcast`, the runner's hook, or neither (a plain script).
 *
 * @example
 * ```ts
 * import { outputTarget } from "./kernel_outputs.ts";
 * outputTarget().kind; // "none" in a script
 * ```
 */
export function outputTarget(): OutputTarget {
  const hook = (globalThis as Record<symbol, unknown>)[OUTPUT_HOOK];
  if (typeof hook === "function") return { kind: "hook", hook: hook as OutputHook };
  try {
    // Outside `deno jupyter`, reading Deno.jupyter throws.
    const jupyter = (Deno as unknown as { jupyter?: { broadcast?: Broadcast } }).jupyter;
    if (typeof jupyter?.broadcast === "function") {
      return { kind: "kernel", broadcast: jupyter.broadcast.bind(jupyter) };
    }
  } catch { /* not in the kernel */ }
  return { kind: "none" };
}

/** Bytes queued by {@linkcode broadcastDisplay} since the last flush (for the timed fallback). */
let queuedBytes = 0;

/**
 * Sends `bundle` as a `display_data` output of the running cell (queued in the kernel; see
 * {@linkcode flushKernelOutputs}).
 *
 * @example
 * ```ts
 * import { broadcastDisplay } from "./kernel_outputs.ts";
 * const sent: string[] = [];
 * broadcastDisplay((type) => sent.push(type), { "text/plain": "hello" });
 * sent; // ["display_data"]
 * ```
 */
export function broadcastDisplay(broadcast: Broadcast, bundle: Record<string, unknown>): void {
  broadcast("display_data", { data: bundle, metadata: {}, transient: {} });
  for (const value of Object.values(bundle)) {
    queuedBytes += typeof value === "string" ? value.length : JSON.stringify(value).length;
  }
}

/** Options of {@linkcode flushKernelOutputs}. */
export interface FlushOptions {
  /** Longest wait for the marker, in milliseconds (default 30 000). */
  timeoutMs?: number;
}

/**
 * Waits until the kernel has published every output queued so far in this process, so that they
 * reach the front end under the running cell. Returns how it knew: `"acknowledged"` when the
 * marker came back through IOPub, `"waited"` when it fell back to a timed wait, `"none"` outside
 * the kernel.
 *
 * @example
 * ```ts
 * import { flushKernelOutputs } from "./kernel_outputs.ts";
 * await flushKernelOutputs(); // "none" outside the kernel
 * ```
 */
export async function flushKernelOutputs(
  options: FlushOptions = {},
): Promise<"acknowledged" | "waited" | "none"> {
  const target = outputTarget();
  if (target.kind !== "kernel") return "none";
  const bytes = queuedBytes;
  queuedBytes = 0;
  const address = acknowledgementFailed ? null : iopubAddress();
  if (address) {
    try {
      if (await waitForMarker(target.broadcast, address, options.timeoutMs ?? 30_000)) {
        return "acknowledged";
      }
    } catch { /* the socket could not be used: fall back to waiting */ }
    acknowledgementFailed = true;
  }
  // About 10 MB/s of publishing (HMAC, JSON, socket writes), which a loaded software machine
  // still manages, and a floor for the request round trip.
  await sleep(50 + bytes / 10_000);
  return "waited";
}

interface IopubAddress {
  hostname: string;
  port: number;
}

let address: IopubAddress | null | undefined;

/** Set after an acknowledgement failed to come: later flushes wait instead of trying again. */
let acknowledgementFailed = false;

/**
 * The kernel's IOPub address from its connection file, named on its command line
 * (`deno jupyter --kernel --conn FILE`); null where that cannot be read (no `/proc`, or a
 * transport other than TCP).
 */
function iopubAddress(): IopubAddress | null {
  if (address !== undefined) return address;
  address = null;
  try {
    const argv = Deno.readTextFileSync("/proc/self/cmdline").split("\0");
    const at = argv.indexOf("--conn");
    if (at < 0 || !argv[at + 1]) return address;
    const info = JSON.parse(Deno.readTextFileSync(argv[at + 1])) as {
      ip?: string;
      iopub_port?: number;
      transport?: string;
    };
    if ((info.transport ?? "tcp") === "tcp" && info.ip && info.iopub_port) {
      address = { hostname: info.ip, port: info.iopub_port };
    }
  } catch { /* not readable here */ }
  return address;
}

/**
 * Subscribes to IOPub, queues a marker, and resolves true once the marker has come back (false
 * after `timeoutMs`). The marker is queued again every so often until the subscription is live:
 * the kernel adds a subscriber only after reading its handshake, and says nothing when it has.
 */
async function waitForMarker(
  broadcast: Broadcast,
  address: IopubAddress,
  timeoutMs: number,
): Promise<boolean> {
  const conn = await Deno.connect(address);
  const token = `qlab-flush-${crypto.randomUUID()}`;
  const needle = new TextEncoder().encode(token);
  let found = false;
  let closed = false;
  const close = () => {
    if (closed) return;
    closed = true;
    try {
      conn.close();
    } catch { /* already closed */ }
  };
  const reading = (async () => {
    const buffer = new Uint8Array(256 * 1024);
    let carry = new Uint8Array(0);
    while (!found) {
      const n = await conn.read(buffer);
      if (n === null) return;
      const chunk = concat(carry, buffer.subarray(0, n));
      if (indexOf(chunk, needle) >= 0) found = true;
      carry = chunk.slice(Math.max(0, chunk.length - needle.length + 1));
    }
  })().catch(() => {/* closed while reading */});
  try {
    await writeAll(conn, concat(zmtpGreeting(), zmtpReady("SUB"), new Uint8Array([0, 1, 1])));
    const deadline = performance.now() + timeoutMs;
    let pause = 20;
    while (!found && !closed && performance.now() < deadline) {
      broadcast("status", { execution_state: "busy", qlab_flush: token });
      const until = performance.now() + pause;
      while (!found && performance.now() < until) await sleep(2);
      pause = Math.min(pause * 2, 1000);
    }
    return found;
  } finally {
    close();
    await reading;
  }
}

/** The 64-byte ZMTP 3.0 greeting with the NULL mechanism. */
function zmtpGreeting(): Uint8Array {
  const greeting = new Uint8Array(64);
  greeting[0] = 0xff;
  greeting[9] = 0x7f;
  greeting[10] = 3;
  greeting.set(new TextEncoder().encode("NULL"), 12);
  return greeting;
}

/** The ZMTP READY command naming the socket type. */
function zmtpReady(socketType: string): Uint8Array {
  const enc = new TextEncoder();
  const name = enc.encode("READY");
  const key = enc.encode("Socket-Type");
  const value = enc.encode(socketType);
  const body = new Uint8Array(1 + name.length + 1 + key.length + 4 + value.length);
  let at = 0;
  body[at++] = name.length;
  body.set(name, at);
  at += name.length;
  body[at++] = key.length;
  body.set(key, at);
  at += key.length;
  new DataView(body.buffer).setUint32(at, value.length);
  body.set(value, at + 4);
  return concat(new Uint8Array([0x04, body.length]), body);
}

async function writeAll(conn: Deno.Conn, bytes: Uint8Array): Promise<void> {
  for (let at = 0; at < bytes.length;) at += await conn.write(bytes.subarray(at));
}

function concat(...arrays: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(arrays.reduce((n, a) => n + a.length, 0));
  let at = 0;
  for (const a of arrays) {
    out.set(a, at);
    at += a.length;
  }
  return out;
}

function indexOf(haystack: Uint8Array, needle: Uint8Array): number {
  const first = needle[0];
  outer: for (let i = haystack.indexOf(first); i >= 0; i = haystack.indexOf(first, i + 1)) {
    if (i + needle.length > haystack.length) return -1;
    for (let j = 1; j < needle.length; j++) if (haystack[i + j] !== needle[j]) continue outer;
    return i;
  }
  return -1;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

const CELL_END_FLUSH = Symbol.for("qlab.notebook.cellEndFlush");

type BroadcastResult = (executionCount: number, result: unknown) => Promise<void>;

/**
 * In the Deno kernel, makes every cell end with {@linkcode flushKernelOutputs}, so that nothing a
 * cell printed or displayed reaches the front end after the cell's `idle`. Runs once per process
 * (this module calls it when it loads); returns whether the kernel's hook is wrapped.
 *
 * @example
 * ```ts
 * import { installCellEndFlush } from "./kernel_outputs.ts";
 * installCellEndFlush(); // false outside the kernel
 * ```
 */
export function installCellEndFlush(): boolean {
  const state = globalThis as Record<symbol, unknown>;
  if (state[CELL_END_FLUSH]) return true;
  if (outputTarget().kind !== "kernel") return false;
  try {
    const internal = (Deno as unknown as { internal?: symbol }).internal;
    const internals = internal &&
      (Deno as unknown as Record<symbol, { jupyter?: { broadcastResult?: BroadcastResult } }>)[
        internal
      ];
    const jupyter = internals?.jupyter;
    const original = jupyter?.broadcastResult;
    if (!jupyter || typeof original !== "function") return false;
    jupyter.broadcastResult = async (executionCount: number, result: unknown): Promise<void> => {
      try {
        await original.call(jupyter, executionCount, result);
      } finally {
        await flushKernelOutputs().catch(() => {});
      }
    };
    state[CELL_END_FLUSH] = true;
    return true;
  } catch {
    return false;
  }
}

installCellEndFlush();
