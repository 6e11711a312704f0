/**
 * `generate`: stream a continuation of a prompt, then speed and peak memory.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { formatBytes } from "../lib/gpu/ledger.ts";
import { type Gpu, requestGpu } from "../lib/gpu/device.ts";
import { type ChatMessage, loadChatTemplate, renderChat } from "../lib/model/chat.ts";
import { generate } from "../lib/model/generate.ts";
import { generateSpeculative } from "../lib/model/speculative_generate.ts";
import { loadLlamaConfig } from "../lib/model/config.ts";
import { LlamaModel } from "../lib/model/llama.ts";
import { MAX_GEMV_ROWS } from "../lib/kernels/linear.ts";
import { loadTokenizer, type Tokenizer } from "../lib/model/tokenizer.ts";
import { resolveModelDir } from "../lib/model/hub.ts";
import { QUANT_FORMATS, type QuantFormat } from "../lib/quant/formats.ts";
import { KV_CACHE_FORMATS, parseKvCacheFormat } from "../lib/kernels/kv_cache.ts";
import { byteSizeOption, err, numberOption, out, UsageError } from "./common.ts";

const DEFAULT_MODEL = new URL("../models/sotu-llama", import.meta.url).pathname;

const GENERATE_HELP = `Usage: deno task generate [options]

Generates text from a Llama model on WebGPU, streaming it as it comes, then prints
prefill and decode speed and the memory ledger's peak.

Options:
  --model DIR|ID      model directory or Hugging Face id (default: the bundled sotu-llama)
  --prompt TEXT       the prompt (default: "The state of the Union is")
  --chat              send the prompt as a user message through the model's chat template
                      (chat_template.jinja or tokenizer_config.json); prints the reply
  --system TEXT       with --chat: a system message first
  --max-tokens N      most new tokens (default 64)
  --temperature T     0 = greedy (default 0)
  --top-k K           sample from the K most likely tokens (default 0 = all)
  --top-p P           nucleus sampling threshold (default 1)
  --seed N            sampler seed (default 0)
  --max-seq N         KV cache length (default: the model's context, at most 4096)
  --format F          weight format of the linear layers (default fp16, or the stored
                      format of a quantized checkpoint; see below)
  --vram-budget SIZE  keep GPU memory within SIZE (e.g. 2GiB): decoder layers that do not fit
                      are kept in host memory and streamed to the GPU per forward
  --kv-cache F        KV cache storage: f16 (default), int8 or int4 (8.5 / 5 bits per value;
                      int8-plain, int4-plain: without turning the keys first)
  --no-f16            use the packed-u32 kernels even where shader-f16 exists
  --draft DIR|ID      speculative decoding: this smaller model (same tokenizer) proposes tokens
                      that the model checks several at a time; prints the acceptance rate, tokens
                      per target pass, and tokens/s with and without the draft
  --draft-tokens K    draft tokens per round, 1-7 (default: adaptive, starting at 4)
  --draft-format F    the draft's weight format (default: the model's --format, or fp16)
  -h, --help          this text

Formats: ${QUANT_FORMATS.join(", ")}
`;

/** Runs `generate`. */
export async function generateCommand(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      model: { type: "string", default: DEFAULT_MODEL },
      prompt: { type: "string", default: "The state of the Union is" },
      chat: { type: "boolean", default: false },
      system: { type: "string" },
      "max-tokens": { type: "string", default: "64" },
      temperature: { type: "string", default: "0" },
      "top-k": { type: "string", default: "0" },
      "top-p": { type: "string", default: "1" },
      seed: { type: "string", default: "0" },
      "max-seq": { type: "string" },
      format: { type: "string" },
      "vram-budget": { type: "string" },
      "kv-cache": { type: "string", default: "f16" },
      "no-f16": { type: "boolean", default: false },
      draft: { type: "string" },
      "draft-tokens": { type: "string" },
      "draft-format": { type: "string" },
      help: { type: "boolean", short: "h", default: false },
    },
    strict: true,
  });
  if (values.help) {
    out(GENERATE_HELP);
    return 0;
  }
  // No --format: FP16, or the format a quantized checkpoint is stored in.
  const format = values.format as QuantFormat | undefined;
  if (format !== undefined && !QUANT_FORMATS.includes(format)) {
    throw new UsageError(`unknown format "${format}" (known: ${QUANT_FORMATS.join(", ")})`);
  }
  let kvCache;
  try {
    kvCache = parseKvCacheFormat(values["kv-cache"]!);
  } catch {
    throw new UsageError(
      `unknown --kv-cache "${values["kv-cache"]}" (known: ${KV_CACHE_FORMATS.join(", ")})`,
    );
  }
  // Every number is checked before any work starts.
  const maxSeqLen = numberOption("max-seq", values["max-seq"], { integer: true, min: 1 });
  const sampling = {
    maxNewTokens: numberOption("max-tokens", values["max-tokens"], { integer: true, min: 1 }),
    temperature: numberOption("temperature", values.temperature, { min: 0 }),
    topK: numberOption("top-k", values["top-k"], { integer: true, min: 0 }),
    topP: numberOption("top-p", values["top-p"], { above: 0, max: 1 }),
    seed: numberOption("seed", values.seed, { integer: true, min: 0 }),
  };
  if (values.system !== undefined && !values.chat) {
    throw new UsageError("--system needs --chat");
  }
  const draftFormat = (values["draft-format"] ?? format) as QuantFormat | undefined;
  if (draftFormat !== undefined && !QUANT_FORMATS.includes(draftFormat)) {
    throw new UsageError(
      `unknown draft format "${draftFormat}" (known: ${QUANT_FORMATS.join(", ")})`,
    );
  }
  const draftRequest: DraftRequest | null = values.draft === undefined ? null : {
    dir: values.draft,
    format: draftFormat,
    tokens: numberOption("draft-tokens", values["draft-tokens"], {
      integer: true,
      min: 1,
      max: MAX_GEMV_ROWS - 1,
    }),
  };
  if (!draftRequest && (values["draft-tokens"] ?? values["draft-format"]) !== undefined) {
    throw new UsageError("--draft-tokens and --draft-format need --draft");
  }
  const gpu = await requestGpu({ f16: !values["no-f16"] });
  err(`adapter: ${gpu.describe()}\n`);
  // A GGUF file is loaded as it is; anything else is a directory or a Hugging Face id.
  const dir = values.model!.endsWith(".gguf")
    ? values.model!
    : await resolveModelDir(values.model!);
  const tokenizer = await loadTokenizer(dir);
  let prompt: string | number[] = values.prompt!;
  if (values.chat) {
    try {
      prompt = await chatPrompt(dir, tokenizer, values.prompt!, values.system);
    } catch (e) {
      gpu.destroy();
      throw e;
    }
  }
  const t0 = performance.now();
  const model = await LlamaModel.load(dir, {
    gpu,
    format,
    maxSeqLen,
    vramBudget: byteSizeOption("vram-budget", values["vram-budget"]),
    kvCache,
    onProgress: (done, total) => {
      if (Deno.stderr.isTerminal()) err(`\rloading ${dir}: ${done}/${total} tensors`);
    },
  });
  err(
    `${Deno.stderr.isTerminal() ? "\r" : ""}loaded ${dir} ` +
      `(${((performance.now() - t0) / 1000).toFixed(1)} s)\n`,
  );
  const s = model.streaming;
  if (s) {
    err(
      `vram budget ${formatBytes(s.budgetBytes)}: ${s.residentLayers} layers resident, ` +
        `${s.streamedLayers} streamed through ${s.slots} slots of ${formatBytes(s.layerBytes)} ` +
        `(${formatBytes(s.streamedBytesPerForward)} uploaded per token, ` +
        `${formatBytes(s.hostBytes)} in host memory, ${s.upload} uploads)\n`,
    );
  }
  if (draftRequest) {
    try {
      return await speculativeCommand(draftRequest, gpu, model, tokenizer, prompt, sampling);
    } finally {
      model.dispose();
      gpu.destroy();
    }
  }
  try {
    gpu.ledger.resetPeak();
    if (!values.chat) out(values.prompt!);
    const result = await generate(model, tokenizer, prompt, {
      ...sampling,
      onText: out,
    });
    out("\n");
    const snap = gpu.ledger.snapshot();
    err(
      `\nprefill: ${result.promptTokens.length} tokens, ` +
        `${result.prefillTokensPerSecond.toFixed(1)} tokens/s\n` +
        `decode:  ${result.tokens.length} tokens, ` +
        `${result.decodeTokensPerSecond.toFixed(1)} tokens/s (stopped by ${result.stoppedBy})\n` +
        `memory:  peak ${formatBytes(snap.peakBytes)} (weights ${
          formatBytes(snap.atPeak.weights)
        }, ` +
        `kv-cache ${formatBytes(snap.atPeak["kv-cache"])}, activations ` +
        `${formatBytes(snap.atPeak.activations)}, scratch ${formatBytes(snap.atPeak.scratch)}, ` +
        `staging ${formatBytes(snap.atPeak.staging)})\n`,
    );
  } finally {
    model.dispose();
    gpu.destroy();
  }
  return 0;
}

/** The token ids of `--prompt` (and `--system`) rendered with the model's chat template. */
async function chatPrompt(
  dir: string,
  tokenizer: Tokenizer,
  user: string,
  system?: string,
): Promise<number[]> {
  const template = await loadChatTemplate(dir);
  if (!template) {
    throw new UsageError(
      `--chat: ${dir} has no chat template (no chat_template.jinja, and no chat_template in ` +
        `tokenizer_config.json)`,
    );
  }
  const messages: ChatMessage[] = [];
  if (system !== undefined) messages.push({ role: "system", content: system });
  messages.push({ role: "user", content: user });
  err(`chat template: ${template.source}\n`);
  // Templates print BOS themselves where the model wants it.
  return tokenizer.encode(renderChat(template, messages), { addBos: false });
}

/** What `--draft` asks for, checked before any work. */
interface DraftRequest {
  dir: string;
  format: QuantFormat | undefined;
  tokens: number | undefined;
}

/** `generate --draft`: the target alone (timed, not printed), then speculative decoding. */
async function speculativeCommand(
  request: DraftRequest,
  gpu: Gpu,
  target: LlamaModel,
  tokenizer: Tokenizer,
  prompt: string | number[],
  sampling: {
    maxNewTokens?: number;
    temperature?: number;
    topK?: number;
    topP?: number;
    seed?: number;
  },
): Promise<number> {
  const draftDir = await resolveModelDir(request.dir);
  const draft = await LlamaModel.load(draftDir, {
    gpu,
    format: request.format,
    maxSeqLen: Math.min(target.maxSeqLen, (await loadLlamaConfig(draftDir)).maxPositionEmbeddings),
  });
  try {
    // Both paths once untimed, so that neither pays for compiling kernels.
    await generate(target, tokenizer, prompt, { ...sampling, maxNewTokens: 4 });
    await generateSpeculative(target, draft, tokenizer, prompt, { ...sampling, maxNewTokens: 4 });
    const alone = await generate(target, tokenizer, prompt, sampling);
    if (typeof prompt === "string") out(prompt);
    const spec = await generateSpeculative(target, draft, tokenizer, prompt, {
      ...sampling,
      draftTokens: request.tokens,
      onText: out,
    });
    out("\n");
    const r = spec.speculative;
    const greedy = (sampling.temperature ?? 0) === 0;
    const same = spec.tokens.join() === alone.tokens.join();
    const k = request.tokens === undefined
      ? "adaptive draft length"
      : `${request.tokens} draft tokens`;
    // Whole calls, prompt pass included: rounds chained in groups deliver the prompt's token with
    // the first group, so a rate counted from the first token would leave that group's time out.
    const perSecond = (g: { tokens: number[]; prefillMs: number; decodeMs: number }) =>
      g.tokens.length / ((g.prefillMs + g.decodeMs) / 1000);
    const withDraft = perSecond(spec);
    const without = perSecond(alone);
    err(
      `\ndraft:   ${draftDir} (${draft.format}), ${k}\n` +
        `accepted ${r.accepted} of ${r.drafted} draft tokens ` +
        `(${(100 * r.acceptanceRate).toFixed(1)}%), ` +
        `${r.tokensPerTargetPass.toFixed(2)} tokens per target pass (${r.targetPasses} passes)\n` +
        `decode:  ${spec.tokens.length} tokens, ` +
        `${withDraft.toFixed(1)} tokens/s with the draft, ` +
        `${without.toFixed(1)} tokens/s without ` +
        `(${(withDraft / without).toFixed(2)}x; whole calls, the prompt pass included)` +
        (greedy ? `; same tokens as the target alone: ${same ? "yes" : "NO"}` : "") + "\n",
    );
    return greedy && !same ? 1 : 0;
  } finally {
    draft.dispose();
  }
}
