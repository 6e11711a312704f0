/**
 * `estimate`: GPU memory for any Llama config in any format, without loading weights, and which
 * cards it fits.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { estimateMemory, estimateStreaming, type MemoryEstimate } from "../lib/eval/memory.ts";
import { formatBytes } from "../lib/gpu/ledger.ts";
import { llama2cExportMemory } from "../lib/model/llama2c.ts";
import { type LlamaConfig, loadLlamaConfig } from "../lib/model/config.ts";
import { PRESET_NAMES, presetConfig } from "../lib/model/presets.ts";
import { QUANT_FORMATS, type QuantFormat } from "../lib/quant/formats.ts";
import { KV_CACHE_FORMATS, type KvCacheFormat } from "../lib/kernels/kv_cache.ts";
import { tableText } from "../lib/plot/table.ts";
import {
  byteSizeOption,
  checkOutputPath,
  listOption,
  numberOption,
  out,
  UsageError,
  writeJson,
} from "./common.ts";

const HELP = `Usage: deno task estimate [options]

GPU memory (the ledger's figure: weights, activations, KV cache, scratch, staging) for a Llama-style
model in each weight format, computed from its config alone, and which cards it fits.

Options:
  --preset LIST      named configs, comma-separated (default: llama-2-7b,llama-3-8b)
                     known: ${PRESET_NAMES.join(", ")}
  --config FILE      a Hugging Face config.json (or a model directory) instead of presets
  --formats LIST     formats (default: fp16,int8-vectorwise,llm-int8,q8_0,nf4,nf4-dq)
  --context N        KV cache positions (default 4096)
  --batch N          sequences at once (default 1)
  --kv-cache LIST    KV cache formats, comma-separated: f16 (default), int8, int4 (the
                     runtime's; int8-plain and int4-plain take as much), or f32; one row each
  --kv F             the same, for one format (older spelling)
  --budgets LIST     card sizes in GB as vendors state them, which are GiB (default 8,12,16,24)
  --vram-budget SIZE with layer streaming under a GPU memory budget (e.g. 2GiB): how many
                     decoder layers stay resident, how many stream, and the bytes each decoded
                     token uploads
  --bandwidth GB/s   host-to-GPU upload rate for the decode bound of --vram-budget (default 5:
                     what Deno's queue.writeBuffer reached on an NVIDIA H200)
  --export           RAM each way of converting to llama2.c's files needs (our streaming
                     export vs whole-model, as llama2.c's export.py), and the output size
  --json FILE        also write the estimates as JSON
  -h, --help         this text
`;

// A "16 GB" card has 16 GiB of memory (vendors count GPU memory in binary units).
const GiB = 2 ** 30;
const CARD_GB = GiB;

/** One row of the estimate table. */
interface Row {
  model: string;
  kvCache: KvCacheFormat | "f32";
  estimate: MemoryEstimate;
}

async function configFrom(path: string): Promise<LlamaConfig> {
  const stat = await Deno.stat(path).catch(() => null);
  if (!stat) throw new UsageError(`--config ${path} does not exist`);
  // A directory's config.json, or the file itself; errors name the file.
  return await loadLlamaConfig(path);
}

/** Runs `estimate`. */
export async function estimateCommand(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      preset: { type: "string" },
      config: { type: "string" },
      formats: { type: "string", default: "fp16,int8-vectorwise,llm-int8,q8_0,nf4,nf4-dq" },
      context: { type: "string", default: "4096" },
      batch: { type: "string", default: "1" },
      kv: { type: "string" },
      "kv-cache": { type: "string" },
      budgets: { type: "string", default: "8,12,16,24" },
      json: { type: "string" },
      "vram-budget": { type: "string" },
      export: { type: "boolean", default: false },
      bandwidth: { type: "string", default: "5" },
      help: { type: "boolean", short: "h", default: false },
    },
    strict: true,
  });
  if (values.help) {
    out(HELP);
    return 0;
  }
  const formats = listOption(values.formats) as QuantFormat[];
  for (const f of formats) {
    if (!QUANT_FORMATS.includes(f)) throw new UsageError(`unknown format "${f}"`);
  }
  const kvFormats = listOption(values["kv-cache"] ?? values.kv ?? "f16") as (
    | KvCacheFormat
    | "f32"
  )[];
  for (const k of kvFormats) {
    if (k !== "f32" && !KV_CACHE_FORMATS.includes(k)) {
      throw new UsageError(
        `unknown KV cache format "${k}" (known: ${KV_CACHE_FORMATS.join(", ")}, f32)`,
      );
    }
  }
  const budgets = listOption(values.budgets).map((b) => numberOption("budgets", b, { above: 0 })!);
  const contextLength = numberOption("context", values.context, { integer: true, min: 1 })!;
  const batch = numberOption("batch", values.batch, { integer: true, min: 1 })!;
  if (values.json) await checkOutputPath("json", values.json);
  const models: [string, LlamaConfig][] = [];
  if (values.config) {
    models.push([values.config, await configFrom(values.config)]);
  } else {
    for (const name of listOption(values.preset ?? "llama-2-7b,llama-3-8b")) {
      if (!PRESET_NAMES.includes(name)) {
        throw new UsageError(`unknown preset "${name}" (known: ${PRESET_NAMES.join(", ")})`);
      }
      models.push([name, presetConfig(name)]);
    }
  }
  if (values.export) {
    const exportRows = models.flatMap(([model, config]) =>
      llama2cExportMemory(config).map((m) => ({ model, ...m }))
    );
    const gib = (b: number) => Number((b / GiB).toFixed(2));
    out(
      tableText({
        columns: [
          "model",
          "llama2.c file",
          "output GiB",
          "largest tensor (values)",
          "RAM streaming GiB",
          "RAM whole-model GiB",
        ],
        rows: exportRows.map((r) => [
          r.model,
          r.version === 0 ? "v0 (f32)" : "v2 (Q8_0)",
          gib(r.outputBytes),
          r.largestTensorValues,
          gib(r.streamingBytes),
          gib(r.wholeModelBytes),
        ]),
      }) + "\n",
    );
    out(
      "\nstreaming: deno task export, one tensor at a time (about 8 bytes per value of the " +
        "largest tensor on top of the process; measured: 0.95B parameters, 568 MiB for v2); " +
        "whole-model: llama2.c's export.py, which loads the model in f32 (measured: 5.80 GiB for " +
        "the same 0.95B model; v0 adds struct.pack's Python floats for the largest tensor).\n",
    );
    if (values.json) await writeJson(values.json, { export: exportRows });
    return 0;
  }
  const vramBudget = byteSizeOption("vram-budget", values["vram-budget"]);
  if (vramBudget !== undefined) {
    const bandwidth = numberOption("bandwidth", values.bandwidth)! * 1e9;
    const streamRows = [];
    for (const [model, config] of models) {
      for (const format of formats) {
        const s = estimateStreaming(config, vramBudget, {
          format,
          contextLength: numberOption("context", values.context),
          batch: numberOption("batch", values.batch),
          kvCacheFormat: values.kv as "f16" | "f32",
        });
        streamRows.push({ model, format, layers: config.numLayers, ...s });
      }
    }
    const gib = (b: number) => Number((b / GiB).toFixed(2));
    out(
      tableText({
        columns: [
          "model",
          "format",
          "layers",
          "resident",
          "streamed",
          "layer MiB",
          "fixed GiB",
          "peak GiB",
          "streamed GiB/token",
          "host GiB",
          "tok/s bound",
        ],
        rows: streamRows.map((r) =>
          r.residentLayers < 0
            ? [
              r.model,
              r.format,
              r.layers,
              "too small",
              "-",
              Number(
                (r.layerBytes / 2 ** 20).toFixed(1),
              ),
              gib(r.fixedBytes),
              gib(r.peakBytes),
              "-",
              "-",
              "-",
            ]
            : [
              r.model,
              r.format,
              r.layers,
              r.residentLayers,
              r.streamedLayers,
              Number((r.layerBytes / 2 ** 20).toFixed(1)),
              gib(r.fixedBytes),
              gib(r.peakBytes),
              gib(r.streamedBytesPerToken),
              gib(r.hostBytes),
              r.streamedBytesPerToken > 0
                ? Number((bandwidth / r.streamedBytesPerToken).toFixed(1))
                : "resident",
            ]
        ),
      }) + "\n",
    );
    out(
      `\nlayer streaming under a ${formatBytes(vramBudget)} budget, context ${values.context}: ` +
        `resident layers stay on the GPU, streamed ones are uploaded every token through 2 ` +
        `slots; "too small" needs at least the peak shown. The bound is streamed bytes per ` +
        `token at ${values.bandwidth} GB/s host-to-GPU (measure yours: deno task ` +
        `bench:streaming).\n`,
    );
    if (values.json) await writeJson(values.json, { vramBudget, rows: streamRows });
    return 0;
  }
  const rows: Row[] = [];
  for (const [model, config] of models) {
    for (const format of formats) {
      for (const kvCache of kvFormats) {
        rows.push({
          model,
          kvCache,
          estimate: estimateMemory(config, {
            format,
            contextLength,
            batch,
            kvCacheFormat: kvCache,
          }),
        });
      }
    }
  }
  const gib = (b: number) => Number((b / GiB).toFixed(2));
  out(
    tableText({
      columns: [
        "model",
        "format",
        "KV cache",
        "bits/param",
        "weights GiB",
        "KV GiB",
        "after load GiB",
        "peak GiB",
        ...budgets.map((b) => `${b} GB`),
      ],
      rows: rows.map(({ model, kvCache, estimate: e }) => [
        model,
        e.format,
        kvCache,
        Number(e.linearBitsPerParameter.toFixed(3)),
        gib(e.afterLoad.weights),
        gib(e.afterLoad["kv-cache"]),
        gib(e.staticBytes),
        gib(e.peakBytes),
        ...budgets.map((b) => (e.peakBytes <= b * CARD_GB ? "fits" : "no")),
      ]),
    }) + "\n",
  );
  out(
    `\ncontext ${values.context} tokens, batch ${values.batch}; ` +
      `"fits" means the ledger's peak is within the card's memory (GB = GiB, as vendors count ` +
      `GPU memory; driver overhead not counted)\n`,
  );
  if (values.json) {
    await writeJson(values.json, {
      context: Number(values.context),
      batch: Number(values.batch),
      kvCacheFormats: kvFormats,
      budgetsGB: budgets,
      rows: rows.map(({ model, kvCache, estimate }) => ({
        model,
        kvCache,
        ...estimate,
        fits: Object.fromEntries(budgets.map((b) => [`${b}GB`, estimate.peakBytes <= b * CARD_GB])),
      })),
    });
  }
  return 0;
}
