/**
 * Byte units for axes and summaries: binary prefixes, as GPU memory is counted.
 *
 * @module
 */

/** A byte unit picked for a range of values. */
export interface ByteUnit {
  /** Its symbol, as printed on an axis. */
  name: "B" | "KiB" | "MiB" | "GiB" | "TiB";
  /** Bytes in one unit. */
  bytes: number;
}

const UNITS: readonly ByteUnit[] = [
  { name: "B", bytes: 1 },
  { name: "KiB", bytes: 1024 },
  { name: "MiB", bytes: 1024 ** 2 },
  { name: "GiB", bytes: 1024 ** 3 },
  { name: "TiB", bytes: 1024 ** 4 },
];

/**
 * The largest unit in which `bytes` is at least 1, so that an axis reads "3.2 GiB", not "3276 MiB".
 *
 * @example
 * ```ts
 * import { byteUnit } from "./units.ts";
 * byteUnit(3 * 1024 ** 3).name; // "GiB"
 * ```
 */
export function byteUnit(bytes: number): ByteUnit {
  let unit = UNITS[0];
  for (const u of UNITS) if (Math.abs(bytes) >= u.bytes) unit = u;
  return unit;
}

/**
 * `bytes` in its own unit with three significant digits.
 *
 * @example
 * ```ts
 * import { formatBytes } from "./units.ts";
 * formatBytes(1536 * 1024 ** 2); // "1.50 GiB"
 * ```
 */
export function formatBytes(bytes: number): string {
  const unit = byteUnit(bytes);
  if (unit.bytes === 1) return `${bytes} B`;
  return `${(bytes / unit.bytes).toPrecision(3)} ${unit.name}`;
}
