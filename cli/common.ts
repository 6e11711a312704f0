/**
 * What every command shares: output streams, usage errors, number options, JSON output.
 *
 * @module
 */

import { basename, dirname, join } from "node:path";
import { writeAtomic } from "../lib/io/atomic.ts";

const encoder = new TextEncoder();

/** Writes to standard output. */
export function out(text: string): void {
  Deno.stdout.writeSync(encoder.encode(text));
}

/** Writes to standard error. */
export function err(text: string): void {
  Deno.stderr.writeSync(encoder.encode(text));
}

/** A mistake in how a command was called: printed without a stack trace, exit status 2. */
export class UsageError extends Error {}

/** What a numeric option may hold (see {@linkcode numberOption}). */
export interface NumberRange {
  /** Only whole numbers. */
  integer?: boolean;
  /** Smallest value allowed. */
  min?: number;
  /** Values must be greater than this. */
  above?: number;
  /** Largest value allowed. */
  max?: number;
}

/**
 * Parses a numeric option, or undefined when absent; a value outside `range` is a usage error
 * (exit status 2) that says what is allowed.
 */
export function numberOption(
  name: string,
  raw: string | undefined,
  range: NumberRange = {},
): number | undefined {
  if (raw === undefined) return undefined;
  const value = Number(raw);
  const shown = raw.length > 40 ? `${raw.slice(0, 40)}…` : raw;
  const kind = range.integer ? "a whole number" : "a number";
  const limits = [
    range.min !== undefined ? `at least ${range.min}` : "",
    range.above !== undefined ? `greater than ${range.above}` : "",
    range.max !== undefined ? `at most ${range.max}` : "",
  ].filter((x) => x).join(" and ");
  const ok = raw.trim() !== "" && Number.isFinite(value) &&
    (!range.integer || Number.isSafeInteger(value)) &&
    (range.min === undefined || value >= range.min) &&
    (range.above === undefined || value > range.above) &&
    (range.max === undefined || value <= range.max);
  if (!ok) {
    throw new UsageError(`--${name} must be ${kind}${limits ? ` ${limits}` : ""}, got "${shown}"`);
  }
  return value;
}

/**
 * Throws a usage error unless `path` can be written as an output file: its folder exists (or,
 * with `createDirs`, can be created) and takes a new file, and it is not itself a folder.
 * Called before the work, so a bad `--report` or `--json` costs nothing.
 */
export async function checkOutputPath(
  option: string,
  path: string,
  { createDirs = false } = {},
): Promise<void> {
  const stat = await Deno.stat(path).catch(() => null);
  if (stat?.isDirectory) throw new UsageError(`--${option} ${path} is a directory, not a file`);
  let dir = dirname(path);
  let dirStat = await Deno.stat(dir).catch(() => null);
  // Folders the writer would create: the nearest existing one must take them.
  while (!dirStat && createDirs && dirname(dir) !== dir) {
    dir = dirname(dir);
    dirStat = await Deno.stat(dir).catch(() => null);
  }
  if (!dirStat) throw new UsageError(`--${option} ${path}: no such directory ${dir}`);
  if (!dirStat.isDirectory) throw new UsageError(`--${option} ${path}: ${dir} is not a directory`);
  // The writers put a temporary file beside the target and rename it: try exactly that.
  const probe = join(dir, `.${basename(path)}.${crypto.randomUUID()}.probe`);
  try {
    await Deno.writeFile(probe, new Uint8Array(0), { createNew: true });
  } catch (e) {
    throw new UsageError(`--${option} ${path}: cannot write in ${dir} (${(e as Error).message})`);
  }
  await Deno.remove(probe).catch(() => {});
}

const BYTE_UNITS: Record<string, number> = {
  "": 1,
  b: 1,
  kib: 2 ** 10,
  mib: 2 ** 20,
  gib: 2 ** 30,
  kb: 1e3,
  mb: 1e6,
  gb: 1e9,
};

/**
 * Parses a byte size such as `2GiB`, `1536MiB`, `8GB` (decimal) or `1000000` (bytes), or
 * undefined when absent.
 */
export function byteSizeOption(name: string, raw: string | undefined): number | undefined {
  if (raw === undefined) return undefined;
  const m = /^\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*$/.exec(raw);
  const unit = m ? BYTE_UNITS[m[2].toLowerCase()] : undefined;
  if (!m || unit === undefined || !(Number(m[1]) > 0)) {
    throw new UsageError(
      `--${name} must be a size such as 2GiB, 512MiB, 8GB or a byte count, got "${raw}"`,
    );
  }
  return Math.floor(Number(m[1]) * unit);
}

/** Splits a comma-separated option. */
export function listOption(raw: string | undefined): string[] {
  return (raw ?? "").split(",").map((s) => s.trim()).filter((s) => s.length > 0);
}

/**
 * Writes `value` as JSON to `path` atomically (a temp file renamed over the target), so a
 * failed run never leaves a half-written file.
 */
export async function writeJson(path: string, value: unknown): Promise<void> {
  const text = JSON.stringify(
    value,
    (_key, v) => ArrayBuffer.isView(v) ? undefined : v === Infinity ? "Infinity" : v,
    2,
  );
  await writeAtomic(path, text + "\n");
}

/** A stopwatch for progress lines: `[  12.3 s] message`. */
export function progressLogger(): (message: string) => void {
  const t0 = performance.now();
  return (message) =>
    err(`[${((performance.now() - t0) / 1000).toFixed(1).padStart(6)} s] ${message}\n`);
}
