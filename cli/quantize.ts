/**
 * `quantize`: writes a quantized copy of a checkpoint, in our packed layout or bitsandbytes'.
 *
 * @module
 */

import { parseArgs } from "node:util";
import {
  CHECKPOINT_FORMATS,
  type CheckpointFormat,
  quantizeCheckpoint,
} from "../lib/model/quantize_checkpoint.ts";
import { resolveModelDir } from "../lib/model/hub.ts";
import { listOption, numberOption, out, UsageError } from "./common.ts";

const HELP = `Usage: deno task quantize --model DIR --format FORMAT --out DIR2 [options]

Quantizes the decoder blocks' linear layers of a Hugging Face Llama checkpoint once and writes
DIR2 (model.safetensors, config.json with its quantization_config, the tokenizer files).
Loading DIR2 skips quantization; the logits are the same bit for bit as quantizing at load.

Formats:
  ${CHECKPOINT_FORMATS.filter((f) => !f.startsWith("bnb-")).join(", ")}
      our packed layout (quant_method "qlab"): the arrays the kernels bind, as stored
  bnb-nf4, bnb-nf4-dq, bnb-fp4, bnb-int8
      bitsandbytes' layout, as transformers' save_pretrained writes it (loads in
      transformers + bitsandbytes, and here)

Options:
  --model DIR        the FP16/BF16/F32 checkpoint (default models/sotu-llama)
  --format FORMAT    output format (required)
  --out DIR2         output directory (required; created)
  --blocksize N      4-bit block size of our layout (default 64; bitsandbytes: 64)
  --threshold T      LLM.int8() outlier threshold recorded in the config (default 6)
  --skip LIST        linear layers kept in FP16: names containing any entry, e.g.
                     mlp.down_proj or layers.0. (bitsandbytes' llm_int8_skip_modules)
  -h, --help         this text
`;

/** Runs `quantize`. */
export async function quantizeCommand(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      model: { type: "string", default: "models/sotu-llama" },
      format: { type: "string" },
      out: { type: "string" },
      blocksize: { type: "string" },
      threshold: { type: "string" },
      skip: { type: "string" },
      help: { type: "boolean", short: "h", default: false },
    },
    strict: true,
  });
  if (values.help) {
    out(HELP);
    return 0;
  }
  if (!values.format) throw new UsageError("--format is required (--help lists them)");
  if (!CHECKPOINT_FORMATS.includes(values.format as CheckpointFormat)) {
    throw new UsageError(
      `unknown format "${values.format}" (one of ${CHECKPOINT_FORMATS.join(", ")})`,
    );
  }
  if (!values.out) throw new UsageError("--out DIR is required");
  const model = await resolveModelDir(values.model);
  const started = performance.now();
  const result = await quantizeCheckpoint(model, values.out, values.format as CheckpointFormat, {
    blocksize: numberOption("blocksize", values.blocksize, { integer: true, min: 1 }),
    threshold: numberOption("threshold", values.threshold, { above: 0 }),
    skipModules: values.skip ? listOption(values.skip) : undefined,
  });
  const seconds = (performance.now() - started) / 1000;
  out(
    `wrote ${result.path}: ${result.quantized} linear layers as ${values.format}, ` +
      `${(result.bytes / 2 ** 20).toFixed(2)} MiB, in ${seconds.toFixed(1)} s\n`,
  );
  return 0;
}
