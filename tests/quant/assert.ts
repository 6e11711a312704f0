/** Assertions for the quant tests, on top of `node:assert/strict`. */
import { ok } from "node:assert/strict";

/** Asserts that `fn` throws an Error whose message contains `part`. */
export function assertThrowsWith(fn: () => unknown, part: string): void {
  try {
    fn();
  } catch (e) {
    const msg = e instanceof Error ? e.message : String(e);
    ok(msg.includes(part), `error message "${msg}" does not contain "${part}"`);
    return;
  }
  throw new Error(`expected an error containing "${part}"`);
}
