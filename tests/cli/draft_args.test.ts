/** `--draft`, `--draft-tokens` and `--draft-format` are checked before any model loads. */
import assert from "node:assert/strict";
import { UsageError } from "../../cli/common.ts";
import { compareCommand } from "../../cli/compare.ts";
import { generateCommand } from "../../cli/generate.ts";

const usage = (pattern: RegExp) => (e: Error) => {
  assert.ok(e instanceof UsageError, `a UsageError, got ${e}`);
  assert.match(e.message, pattern);
  return true;
};

Deno.test("generate --draft: the draft options are refused before the models load", async () => {
  const cases: [string[], RegExp][] = [
    [["--draft=/x", "--draft-tokens=8"], /--draft-tokens must be a whole number .*7/],
    [["--draft=/x", "--draft-tokens=0"], /--draft-tokens must be a whole number/],
    [["--draft=/x", "--draft-format=nf5"], /unknown draft format "nf5"/],
    [["--draft-tokens=2"], /--draft-tokens and --draft-format need --draft/],
    [["--draft-format=nf4"], /need --draft/],
  ];
  for (const [args, pattern] of cases) {
    await assert.rejects(generateCommand([...args, "--model", "/nonexistent"]), usage(pattern));
  }
});

Deno.test("compare --draft: --draft-tokens is checked before the work", async () => {
  await assert.rejects(
    compareCommand(["--draft=/x", "--draft-tokens=9", "--model", "/nonexistent"]),
    usage(/--draft-tokens must be a whole number .*7/),
  );
  await assert.rejects(
    compareCommand(["--draft-tokens=3", "--model", "/nonexistent"]),
    usage(/--draft-tokens needs --draft/),
  );
});
