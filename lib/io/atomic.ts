/**
 * Files written atomically: the bytes go to a hidden temporary file beside the target, renamed
 * over it once complete, so a reader never sees half a file. The temporary file is removed when
 * the write fails, when the process gets SIGINT or SIGTERM during the write, and — if the
 * process was killed outright — by the next atomic write into the same folder. (Inside the
 * Jupyter kernel SIGINT interrupts a cell and is left alone; the next write sweeps up.)
 *
 * This module imports nothing from the rest of the library; every layer may use it.
 *
 * @module
 */

import { basename, dirname, join } from "node:path";

/** Temporary files of this process now being written. */
const live = new Set<string>();

/** `.<target>.<pid>-<random>.qlab-tmp`: the pid tells a dead writer's file from a live one's. */
const TEMP = /^\.(.+)\.(\d+)-[0-9a-f]{8}\.qlab-tmp$/;

/**
 * Names of earlier versions' temporary files (no pid): `.<uuid>.tmp.html`,
 * `.<target>.<uuid>.tmp`, `<target>.<uuid>.tmp`. Removed once older than {@link LEGACY_AGE_MS}.
 */
const LEGACY = /^\.?.*[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\.tmp(\.html)?$/;
const LEGACY_AGE_MS = 10 * 60_000;

/** Where no process table can be read, a temporary file untouched this long is stale. */
const STALE_AGE_MS = 60 * 60_000;

const SIGNALS: [Deno.Signal, number][] = [["SIGINT", 130], ["SIGTERM", 143]];
const handlers = new Map<Deno.Signal, () => void>();

/** Inside `deno jupyter`, SIGINT interrupts a cell: the kernel's business, not ours. */
function inJupyterKernel(): boolean {
  try {
    return typeof Deno.jupyter === "object";
  } catch {
    return false; // outside the kernel, reading Deno.jupyter throws
  }
}

function listen(): void {
  if (handlers.size > 0) return;
  for (const [signal, status] of SIGNALS) {
    if (signal === "SIGINT" && inJupyterKernel()) continue;
    const handler = () => {
      for (const path of live) {
        try {
          Deno.removeSync(path);
        } catch { /* already gone */ }
      }
      Deno.exit(status);
    };
    try {
      Deno.addSignalListener(signal, handler);
      handlers.set(signal, handler);
    } catch { /* this platform has no such signal (Windows: SIGTERM) */ }
  }
}

function unlisten(): void {
  // Without our listener the signal's default action (ending the process) applies again.
  for (const [signal, handler] of handlers) Deno.removeSignalListener(signal, handler);
  handlers.clear();
}

function processAlive(pid: number): boolean | undefined {
  if (pid === Deno.pid) return true;
  try {
    Deno.statSync(`/proc/${pid}`);
    return true;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) {
      // No /proc at all (macOS, Windows): unknown.
      try {
        Deno.statSync("/proc/self");
        return false;
      } catch {
        return undefined;
      }
    }
    return undefined;
  }
}

/**
 * Removes temporary files that interrupted writes left in `dir`: ours whose writer process is
 * gone (or, where that cannot be told, untouched for an hour), and earlier versions' after ten
 * minutes. Returns the paths removed.
 *
 * @example
 * ```ts ignore
 * import { removeStaleTempFiles } from "./atomic.ts";
 * await removeStaleTempFiles("out");
 * ```
 */
export async function removeStaleTempFiles(dir: string): Promise<string[]> {
  const removed: string[] = [];
  let entries: Deno.DirEntry[];
  try {
    entries = [...Deno.readDirSync(dir)];
  } catch {
    return removed;
  }
  const now = Date.now();
  for (const entry of entries) {
    if (!entry.isFile) continue;
    const path = join(dir, entry.name);
    if (live.has(path)) continue;
    const ours = TEMP.exec(entry.name);
    let stale = false;
    if (ours) {
      const alive = processAlive(Number(ours[2]));
      if (alive === false) stale = true;
      else if (alive === undefined) stale = await olderThan(path, now - STALE_AGE_MS);
    } else if (LEGACY.test(entry.name)) {
      stale = await olderThan(path, now - LEGACY_AGE_MS);
    }
    if (stale) {
      try {
        await Deno.remove(path);
        removed.push(path);
      } catch { /* another process removed it first */ }
    }
  }
  return removed;
}

async function olderThan(path: string, time: number): Promise<boolean> {
  try {
    const mtime = (await Deno.stat(path)).mtime;
    return mtime !== null && mtime.getTime() < time;
  } catch {
    return false;
  }
}

/**
 * Writes `path` atomically: `write` fills a temporary file beside it, which is then renamed over
 * `path`. On an error, SIGINT or SIGTERM the temporary file is removed (a signal then ends the
 * process with status 130 or 143); stale ones from killed runs are swept from the folder first.
 * Returns what `write` returns.
 *
 * @example
 * ```ts ignore
 * import { writeFileAtomic } from "./atomic.ts";
 * await writeFileAtomic("out.txt", async (file) => {
 *   await file.write(new TextEncoder().encode("hello\n"));
 * });
 * ```
 */
export async function writeFileAtomic<T>(
  path: string,
  write: (file: Deno.FsFile) => Promise<T>,
): Promise<T> {
  const dir = dirname(path);
  await removeStaleTempFiles(dir);
  const random = crypto.getRandomValues(new Uint32Array(1))[0].toString(16).padStart(8, "0");
  const temp = join(dir, `.${basename(path)}.${Deno.pid}-${random}.qlab-tmp`);
  live.add(temp);
  listen();
  try {
    const file = await Deno.open(temp, { write: true, createNew: true });
    let result: T;
    try {
      result = await write(file);
    } finally {
      try {
        file.close();
      } catch { /* \`write\` closed it */ }
    }
    await Deno.rename(temp, path);
    return result;
  } catch (e) {
    await Deno.remove(temp).catch(() => {});
    throw e;
  } finally {
    live.delete(temp);
    if (live.size === 0) unlisten();
  }
}

/**
 * Writes bytes or text to `path` atomically (see {@link writeFileAtomic}).
 *
 * @example
 * ```ts ignore
 * import { writeAtomic } from "./atomic.ts";
 * await writeAtomic("report.html", "<html>…</html>");
 * ```
 */
export async function writeAtomic(path: string, data: Uint8Array | string): Promise<void> {
  const bytes = typeof data === "string" ? new TextEncoder().encode(data) : data;
  await writeFileAtomic(path, async (file) => {
    let done = 0;
    while (done < bytes.length) done += await file.write(bytes.subarray(done));
  });
}
