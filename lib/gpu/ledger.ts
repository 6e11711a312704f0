/**
 * The memory ledger: our "VRAM" figure. WebGPU has no memory-usage API, so every GPU buffer the
 * library creates is recorded here with a category and a label, and removed when destroyed.
 *
 * What it cannot see: the driver's own allocations (pipelines, command buffers, descriptor
 * pools), allocation granularity and alignment padding beyond our own 4-byte rounding, and
 * buffers created by code outside this library. On a real GPU expect the process to use more
 * than the ledger says; the ledger counts what the model itself asked for.
 *
 * @module
 */

/** What a GPU buffer holds. */
export type MemoryCategory = "weights" | "activations" | "kv-cache" | "scratch" | "staging";

/** Every category, in display order. */
export const MEMORY_CATEGORIES: readonly MemoryCategory[] = [
  "weights",
  "activations",
  "kv-cache",
  "scratch",
  "staging",
];

/** One live allocation. */
export interface LedgerEntry {
  /** Unique id, returned by {@linkcode MemoryLedger.record}. */
  readonly id: number;
  /** What the buffer holds. */
  readonly category: MemoryCategory;
  /** Human-readable name, e.g. `layers.3.mlp.down_proj.weight`. */
  readonly label: string;
  /** Bytes allocated. */
  readonly bytes: number;
}

/** A point-in-time copy of the ledger's totals. */
export interface LedgerSnapshot {
  /** Bytes live now. */
  currentBytes: number;
  /** Most bytes live at once since creation or the last {@linkcode MemoryLedger.resetPeak}. */
  peakBytes: number;
  /** Bytes live now, per category. */
  byCategory: Record<MemoryCategory, number>;
  /** Per category: bytes live in that category when the total peaked. */
  atPeak: Record<MemoryCategory, number>;
  /** Number of live buffers. */
  buffers: number;
}

function zeroByCategory(): Record<MemoryCategory, number> {
  return { weights: 0, activations: 0, "kv-cache": 0, scratch: 0, staging: 0 };
}

/**
 * Records GPU allocations by category, with current and peak totals.
 *
 * @example
 * ```ts
 * import { MemoryLedger } from "./ledger.ts";
 * const ledger = new MemoryLedger();
 * const id = ledger.record("weights", "embed", 1024);
 * ledger.currentBytes; // 1024
 * ledger.release(id);
 * ledger.currentBytes; // 0
 * ledger.peakBytes; // 1024
 * ```
 */
export class MemoryLedger {
  #entries = new Map<number, LedgerEntry>();
  #nextId = 1;
  #current = zeroByCategory();
  #currentTotal = 0;
  #peakTotal = 0;
  #atPeak = zeroByCategory();
  #closed: string | null = null;

  /**
   * Records an allocation and returns its id; throws once the ledger is closed (its device
   * lost), naming the allocation.
   */
  record(category: MemoryCategory, label: string, bytes: number): number {
    if (this.#closed !== null) {
      throw new Error(`memory ledger: cannot allocate ${label}: ${this.#closed}`);
    }
    const id = this.#nextId++;
    this.#entries.set(id, { id, category, label, bytes });
    this.#current[category] += bytes;
    this.#currentTotal += bytes;
    if (this.#currentTotal > this.#peakTotal) {
      this.#peakTotal = this.#currentTotal;
      this.#atPeak = { ...this.#current };
    }
    return id;
  }

  /**
   * Refuses every later {@linkcode record} with `reason` (the device is gone); releases still
   * work, so what was live can be disposed and the ledger read back to zero.
   */
  close(reason: string): void {
    this.#closed ??= reason;
  }

  /** Why the ledger refuses allocations, or null while it takes them. */
  get closed(): string | null {
    return this.#closed;
  }

  /** Removes an allocation; releasing an unknown or already-released id is an error. */
  release(id: number): void {
    const entry = this.#entries.get(id);
    if (!entry) throw new Error(`memory ledger: allocation ${id} is not live (released twice?)`);
    this.#entries.delete(id);
    this.#current[entry.category] -= entry.bytes;
    this.#currentTotal -= entry.bytes;
  }

  /** Bytes live now. */
  get currentBytes(): number {
    return this.#currentTotal;
  }

  /** Highest total since creation or the last {@linkcode resetPeak}. */
  get peakBytes(): number {
    return this.#peakTotal;
  }

  /** Bytes live now in one category. */
  bytesIn(category: MemoryCategory): number {
    return this.#current[category];
  }

  /** Starts a new peak measurement from the current total. */
  resetPeak(): void {
    this.#peakTotal = this.#currentTotal;
    this.#atPeak = { ...this.#current };
  }

  /** The live allocations, largest first. */
  entries(): LedgerEntry[] {
    return [...this.#entries.values()].sort((a, b) => b.bytes - a.bytes);
  }

  /** A copy of the totals. */
  snapshot(): LedgerSnapshot {
    return {
      currentBytes: this.#currentTotal,
      peakBytes: this.#peakTotal,
      byCategory: { ...this.#current },
      atPeak: { ...this.#atPeak },
      buffers: this.#entries.size,
    };
  }
}

/** A binary unit of bytes: its symbol and its size. */
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
 * The largest binary unit not larger than `bytes`.
 *
 * @example
 * ```ts
 * import { byteUnit } from "./ledger.ts";
 * byteUnit(5 * 2 ** 20).name; // "MiB"
 * ```
 */
export function byteUnit(bytes: number): ByteUnit {
  let unit = UNITS[0];
  for (const u of UNITS) if (Math.abs(bytes) >= u.bytes) unit = u;
  return unit;
}

/**
 * Formats a byte count with binary units and three significant digits, e.g. `12.5 MiB`; from 100
 * units up, whole units (`1000 MiB`, never `1.00e+3 MiB`), and a count that rounds to 1024 units
 * moves up to the next unit (`1.00 GiB`).
 *
 * @example
 * ```ts
 * import { formatBytes } from "./ledger.ts";
 * formatBytes(1536); // "1.50 KiB"
 * formatBytes(1000 * 2 ** 20); // "1000 MiB"
 * ```
 */
export function formatBytes(bytes: number): string {
  const unit = byteUnit(bytes);
  if (unit.bytes === 1) return `${bytes} B`;
  const value = bytes / unit.bytes;
  if (Math.abs(value) < 100) return `${value.toPrecision(3)} ${unit.name}`;
  const whole = Math.round(value);
  const next = UNITS[UNITS.indexOf(unit) + 1];
  if (Math.abs(whole) >= 1024 && next) return `${(bytes / next.bytes).toPrecision(3)} ${next.name}`;
  return `${whole} ${unit.name}`;
}
