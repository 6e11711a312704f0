/**
 * The command line: `generate`, `demo`, `compare`, `estimate` and `quantize` (each is a
 * `deno task`).
 *
 * @module
 */

import { compareCommand, demoCommand } from "./compare.ts";
import { err, UsageError } from "./common.ts";
import { estimateCommand } from "./estimate.ts";
import { exportCommand } from "./export.ts";
import { generateCommand } from "./generate.ts";
import { quantizeCommand } from "./quantize.ts";

const COMMANDS: Record<string, (args: string[]) => Promise<number>> = {
  generate: generateCommand,
  demo: demoCommand,
  compare: compareCommand,
  estimate: estimateCommand,
  quantize: quantizeCommand,
  export: exportCommand,
};

/**
 * Runs a command line (`generate ...`) and returns the exit status.
 *
 * @example
 * ```ts ignore
 * import { main } from "./main.ts";
 * Deno.exit(await main(["generate", "--prompt", "Hello"]));
 * ```
 */
export async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  const run = command ? COMMANDS[command] : undefined;
  if (!run) {
    err(`usage: deno task <${Object.keys(COMMANDS).join("|")}> [options]  (--help for options)\n`);
    return 2;
  }
  try {
    return await run(rest);
  } catch (e) {
    const message = e instanceof Error ? e.message : String(e);
    const usage = e instanceof UsageError ||
      (e as { code?: string }).code?.startsWith("ERR_PARSE_ARGS");
    err(`\nerror: ${message}\n`);
    return usage ? 2 : 1;
  }
}

if (import.meta.main) Deno.exit(await main(Deno.args));
