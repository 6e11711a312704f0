/**
 * What every command shares: output streams, usage errors, number options, JSON output.
 *
 * @module
 */

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

/** Parses a numeric option, or undefined when absent. */
export function numberOption(name: string, raw: string | undefined): number | undefined {
  if (raw === undefined) return undefined;
  const value = Number(raw);
  if (raw.trim() === "" || !Number.isFinite(value)) {
    throw new UsageError(`--${name} must be a number, got "${raw}"`);
  }
  return value;
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
  const tmp = `${path}.${crypto.randomUUID()}.tmp`;
  try {
    await Deno.writeTextFile(tmp, text + "\n");
    await Deno.rename(tmp, path);
  } catch (e) {
    await Deno.remove(tmp).catch(() => {});
    throw e;
  }
}

/** A stopwatch for progress lines: `[  12.3 s] message`. */
export function progressLogger(): (message: string) => void {
  const t0 = performance.now();
  return (message) =>
    err(`[${((performance.now() - t0) / 1000).toFixed(1).padStart(6)} s] ${message}\n`);
}
