/**
 * Text generation: prefill the prompt, then decode one token at a time from the KV cache,
 * streaming text as it is produced.
 *
 * @module
 */

import type { LlamaModel } from "./llama.ts";
import { createStreamDecoder, type Tokenizer } from "./tokenizer.ts";

/** Options for {@linkcode generate}. */
export interface GenerateOptions {
  /** Most new tokens (default 64). Generation also stops at an end-of-sequence token. */
  maxNewTokens?: number;
  /** 0 (the default) is greedy decoding; higher values sample more freely. */
  temperature?: number;
  /** Keep only the k most likely tokens when sampling (0: all). */
  topK?: number;
  /** Keep the smallest set of tokens whose probabilities sum to at least p (1: all). */
  topP?: number;
  /**
   * Seed of the sampler, for reproducible samples. Tokens are drawn on the GPU
   * ({@linkcode LlamaModel.decodeSampled}): the same seed gives the same text.
   */
  seed?: number;
  /** Keep going past end-of-sequence tokens (default false). */
  ignoreEos?: boolean;
  /** Receives each piece of text as soon as it is complete. */
  onText?: (text: string) => void;
  /**
   * Tokens read back together, the next group running meanwhile (default
   * `"auto"` on a hardware adapter: about 25 ms of steps per group; 1 on a software one; see
   * {@linkcode LlamaModel.decodeGreedy}). 1 waits for every token before the next step.
   */
  inFlight?: number | "auto";
}

/** What {@linkcode generate} produced, and how fast. */
export interface GenerateResult {
  /** The generated text (without the prompt). */
  text: string;
  /** The prompt's token ids as fed to the model. */
  promptTokens: number[];
  /** The generated token ids. */
  tokens: number[];
  /** Wall-clock milliseconds of the prompt's forward pass (the first new token included). */
  prefillMs: number;
  /** Wall-clock milliseconds of the remaining decode steps. */
  decodeMs: number;
  /** Prompt tokens per second. */
  prefillTokensPerSecond: number;
  /** Generated tokens per second after the first. */
  decodeTokensPerSecond: number;
  /** Why generation stopped. */
  stoppedBy: "eos" | "max-tokens" | "context";
}

/**
 * Generates a continuation of `prompt`. The KV cache is reset first.
 *
 * @example
 * ```ts ignore
 * import { generate } from "./generate.ts";
 * const result = await generate(model, tokenizer, "The state of the Union is", {
 *   maxNewTokens: 32,
 *   onText: (t) => Deno.stdout.writeSync(new TextEncoder().encode(t)),
 * });
 * console.log(result.decodeTokensPerSecond);
 * ```
 */
export async function generate(
  model: LlamaModel,
  tokenizer: Tokenizer,
  prompt: string | number[],
  options: GenerateOptions = {},
): Promise<GenerateResult> {
  const maxNew = options.maxNewTokens ?? 64;
  const sampling = {
    temperature: options.temperature ?? 0,
    topK: options.topK,
    topP: options.topP,
    seed: options.seed,
  };
  const promptTokens = typeof prompt === "string" ? tokenizer.encode(prompt) : [...prompt];
  if (promptTokens.length === 0) throw new Error("generate: the prompt encodes to no tokens");
  const stream = createStreamDecoder(tokenizer);
  const eos = new Set(tokenizer.eosIds);

  model.reset();
  const tokens: number[] = [];
  let text = "";
  const emit = (piece: string) => {
    if (!piece) return;
    text += piece;
    options.onText?.(piece);
  };
  let stoppedBy: GenerateResult["stoppedBy"] = "max-tokens";
  const t0 = performance.now();
  let t1 = t0;
  // Takes one new token; false when generation stops before or after it.
  const accept = (next: number): boolean => {
    if (tokens.length === 0) t1 = performance.now();
    if (!options.ignoreEos && eos.has(next)) {
      stoppedBy = "eos";
      return false;
    }
    tokens.push(next);
    emit(stream.push(next));
    return tokens.length < maxNew;
  };
  if (maxNew > 0) {
    // The model chooses each token on the GPU (argmax, or a draw when sampling) and feeds it
    // back there, running ahead of the readbacks.
    const run = await model.decodeSampled(promptTokens, {
      maxNewTokens: maxNew,
      onToken: accept,
      inFlight: options.inFlight,
      sampling,
    });
    if (run.stoppedBy === "context") stoppedBy = "context";
  }
  emit(stream.flush());
  const t2 = performance.now();
  const decodeSteps = Math.max(0, tokens.length - 1);
  return {
    text,
    promptTokens,
    tokens,
    prefillMs: t1 - t0,
    decodeMs: t2 - t1,
    prefillTokensPerSecond: promptTokens.length / ((t1 - t0) / 1000),
    decodeTokensPerSecond: decodeSteps > 0 ? decodeSteps / ((t2 - t1) / 1000) : 0,
    stoppedBy,
  };
}
