/**
 * Command-line arguments are checked before any work: bad numbers and unusable output paths are
 * usage errors (exit status 2) that say what is allowed.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { UsageError } from "../../cli/common.ts";
import { compareCommand } from "../../cli/compare.ts";
import { estimateCommand } from "../../cli/estimate.ts";
import { generateCommand } from "../../cli/generate.ts";

const usage = (pattern: RegExp) => (e: Error) => {
  assert.ok(e instanceof UsageError, `a UsageError, got ${e}`);
  assert.match(e.message, pattern);
  return true;
};

Deno.test("generate: bad numbers are refused before the model loads", async () => {
  const cases: [string[], RegExp][] = [
    [["--max-tokens=-5"], /--max-tokens must be a whole number at least 1, got "-5"/],
    [["--max-tokens=2.5"], /--max-tokens must be a whole number/],
    [["--temperature=-1"], /--temperature must be a number at least 0, got "-1"/],
    [["--temperature=Infinity"], /--temperature must be a number/],
    [["--top-p=0"], /--top-p must be a number greater than 0 and at most 1, got "0"/],
    [["--top-p=1.5"], /--top-p must be/],
    [["--top-k=-3"], /--top-k must be a whole number at least 0/],
    [["--seed=x"], /--seed must be a whole number at least 0, got "x"/],
    [["--max-seq=0"], /--max-seq must be a whole number at least 1/],
  ];
  for (const [args, pattern] of cases) {
    // A model that does not exist: the arguments must fail first.
    await assert.rejects(generateCommand([...args, "--model", "/nonexistent"]), usage(pattern));
  }
});

Deno.test("compare and estimate: bad numbers and output paths are refused before the work", async () => {
  const dir = await Deno.makeTempDir({ prefix: "qlab-args-" });
  await Deno.writeTextFile(join(dir, "file"), "");
  try {
    const cases: [string[], RegExp][] = [
      [["--max-tokens=-1"], /--max-tokens must be a whole number at least 2, got "-1"/],
      [["--context=0"], /--context must be a whole number at least 2/],
      [["--stride=-4"], /--stride must be a whole number at least 1/],
      [["--blocksize=48"], /--blocksize must be a power of two from 32 to 4096, got 48/],
      [["--threshold=0"], /--threshold must be a number greater than 0/],
      [[`--report=${dir}`], /--report .* is a directory, not a file/],
      [[`--report=${join(dir, "file", "x.html")}`], /--report .*file is not a directory/],
      [[`--json=${join(dir, "no", "x.json")}`], /--json .*: no such directory/],
    ];
    for (const [args, pattern] of cases) {
      await assert.rejects(compareCommand([...args, "--model", "/nonexistent"]), usage(pattern));
    }
    // --text is read once the (bundled) model is found, still before the GPU is touched.
    await assert.rejects(
      compareCommand([`--text=${dir}`]),
      usage(/--text: .* is a directory, not a file/),
    );
    await assert.rejects(
      compareCommand([`--text=${join(dir, "none.txt")}`]),
      usage(/--text: .*none\.txt: no such file/),
    );
    const estimates: [string[], RegExp][] = [
      [["--context=0"], /--context must be a whole number at least 1, got "0"/],
      [["--context=-1"], /--context must be a whole number at least 1/],
      [["--batch=0"], /--batch must be a whole number at least 1/],
      [["--batch=-1"], /--batch must be a whole number at least 1/],
      [["--budgets=8,-2"], /--budgets must be a number greater than 0, got "-2"/],
      [[`--json=${join(dir, "no", "x.json")}`], /--json .*: no such directory/],
    ];
    for (const [args, pattern] of estimates) {
      await assert.rejects(estimateCommand(args), usage(pattern));
    }
    assert.deepEqual([...Deno.readDirSync(dir)].map((e) => e.name), ["file"], "nothing written");
    // estimate --config names the file at fault.
    const config = join(dir, "config.json");
    await Deno.writeTextFile(config, '{"model_type": "llama", "hidden_size": -1}');
    await assert.rejects(estimateCommand(["--config", config]), new RegExp(`${config}: `));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("generate: a negative number after a space is a usage error too", async () => {
  // node:util parseArgs takes "-5" for an option: it refuses the pair, also with status 2.
  await assert.rejects(
    generateCommand(["--max-tokens", "-5"]),
    (e: Error & { code?: string }) => e.code === "ERR_PARSE_ARGS_INVALID_OPTION_VALUE",
  );
});

Deno.test("a usage error exits with status 2 and a one-line message", async () => {
  const main = new URL("../../cli/main.ts", import.meta.url).pathname;
  const { code, stderr, stdout } = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", main, "estimate", "--context=-1"],
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.equal(code, 2);
  assert.equal(new TextDecoder().decode(stdout), "");
  assert.match(
    new TextDecoder().decode(stderr),
    /error: --context must be a whole number at least 1, got "-1"/,
  );
});
