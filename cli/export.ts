/**
 * `export`: a Hugging Face Llama directory to llama2.c's model file (version 0, legacy f32, or
 * version 2, Q8_0) and its `tokenizer.bin`, tensor by tensor, with the peak memory measured.
 *
 * @module
 */

import { basename, dirname, join } from "node:path";
import { parseArgs } from "node:util";
import { formatBytes } from "../lib/gpu/ledger.ts";
import { resolveModelDir } from "../lib/model/hub.ts";
import { exportLlama2c } from "../lib/model/llama2c.ts";
import { llama2cTokenizerBytes } from "../lib/model/llama2c_tokenizer.ts";
import { loadTokenizer } from "../lib/model/tokenizer.ts";
import { err, out, progressLogger, UsageError } from "./common.ts";

const HELP = `Usage: deno task export --format llama2c-v0|llama2c-v2 --model DIR --out FILE.bin

Writes a Hugging Face Llama model as a llama2.c model file, one tensor at a time (read,
permute or quantize, write), plus tokenizer.bin in llama2.c's format beside it, and prints the
peak memory the conversion took (measured: the process's resident set size).

  llama2c-v0   legacy layout of llama2.c's run.c: header of seven int32, f32 weights
  llama2c-v2   llama2.c's runq.c: 256-byte header, Q8_0 weights (int8 + f32 scale per group;
               group size the largest of 64, 32, ... dividing the model width)

Options:
  --model DIR|ID     model directory or Hugging Face id (default: the bundled sotu-llama)
  --format F         llama2c-v0 or llama2c-v2 (required)
  --out FILE         output model file (required); tokenizer.bin goes beside it
  --no-tokenizer     skip tokenizer.bin
  -h, --help         this text

Read it back with: deno task generate --model FILE.bin (a tokenizer.json beside the file is
preferred to tokenizer.bin). See how much memory each way of converting needs:
deno task estimate --export.
`;

const BUNDLED = new URL("../models/sotu-llama", import.meta.url).pathname;

/** Runs `export`. */
export async function exportCommand(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      model: { type: "string", default: BUNDLED },
      format: { type: "string" },
      out: { type: "string" },
      "no-tokenizer": { type: "boolean", default: false },
      help: { type: "boolean", short: "h", default: false },
    },
    strict: true,
  });
  if (values.help) {
    out(HELP);
    return 0;
  }
  const format = values.format;
  if (format !== "llama2c-v0" && format !== "llama2c-v2") {
    throw new UsageError(`--format must be llama2c-v0 or llama2c-v2, got ${format ?? "nothing"}`);
  }
  if (!values.out) throw new UsageError("--out FILE.bin is required");
  const dir = await resolveModelDir(values.model!);
  const log = progressLogger();
  const t0 = performance.now();
  const result = await exportLlama2c(dir, values.out, {
    format,
    onProgress: (done, total, name) => {
      if (Deno.stderr.isTerminal()) err(`\r${done}/${total} ${name}`.padEnd(70));
    },
  });
  if (Deno.stderr.isTerminal()) err("\n");
  for (const w of result.warnings) log(`note: ${w}`);
  const h = result.header;
  out(
    `wrote ${values.out}: llama2.c version ${h.version}, ${formatBytes(result.bytes)} ` +
      `(${result.bytes} bytes), ${result.tensors} tensors` +
      (h.version === 2 ? `, group size ${h.groupSize}` : "") +
      `, in ${((performance.now() - t0) / 1000).toFixed(1)} s\n` +
      `memory: peak resident set ${formatBytes(result.peakRssBytes)}, ` +
      `${formatBytes(result.peakRssBytes - result.baselineRssBytes)} above the ` +
      `${formatBytes(result.baselineRssBytes)} the process held before; the largest tensor ` +
      `is ${formatBytes(result.largestTensorBytes)} as f32\n`,
  );
  if (!values["no-tokenizer"]) {
    const tokPath = join(dirname(values.out), "tokenizer.bin");
    const json = JSON.parse(await Deno.readTextFile(join(dir, "tokenizer.json")));
    const tok = await loadTokenizer(dir);
    const file = llama2cTokenizerBytes(json, h.vocabSize, {
      bosId: tok.bosId,
      eosId: tok.eosIds.find((id) => id !== tok.bosId),
    });
    await Deno.writeFile(tokPath, file.bytes);
    out(
      `wrote ${tokPath}: ${file.count} pieces, longest ${file.maxTokenLength} bytes` +
        (basename(values.out) === "tokenizer.bin" ? " (overwrote --out!)" : "") + "\n",
    );
  }
  return 0;
}
