/**
 * Text generation with speculative decoding: {@linkcode generate}'s interface (a prompt string,
 * streamed text, end-of-sequence handling, speeds) over {@linkcode speculativeDecode}.
 *
 * @module
 */

import type { GenerateOptions, GenerateResult } from "./generate.ts";
import type { LlamaModel } from "./llama.ts";
import { speculativeDecode, type SpeculativeResult } from "./speculative.ts";
import { createStreamDecoder, type Tokenizer } from "./tokenizer.ts";

/** Options of {@linkcode generateSpeculative}: {@linkcode generate}'s, plus the draft length. */
export interface SpeculativeGenerateOptions extends Omit<GenerateOptions, "inFlight"> {
  /** Fixed draft tokens per round; absent: adaptive, starting at 4. */
  draftTokens?: number;
}

/** {@linkcode GenerateResult} plus how the draft did. */
export interface SpeculativeGenerateResult extends GenerateResult {
  /** Acceptance, target passes, draft lengths: see {@linkcode SpeculativeResult}. */
  speculative: SpeculativeResult;
}

/**
 * Generates a continuation of `prompt` with `draft` proposing and `target` verifying (both KV
 * caches are reset first). Greedy output is the target's greedy output token for token;
 * sampled output follows the target's distribution. The models must share `tokenizer`.
 *
 * @example
 * ```ts ignore
 * const r = await generateSpeculative(target, draft, tokenizer, "The state of the Union is", {
 *   maxNewTokens: 64,
 * });
 * console.log(r.decodeTokensPerSecond, r.speculative.acceptanceRate);
 * ```
 */
export async function generateSpeculative(
  target: LlamaModel,
  draft: LlamaModel,
  tokenizer: Tokenizer,
  prompt: string | number[],
  options: SpeculativeGenerateOptions = {},
): Promise<SpeculativeGenerateResult> {
  if (target.config.vocabSize !== draft.config.vocabSize) {
    throw new Error(
      `speculative: the draft's vocabulary (${draft.config.vocabSize}) is not the target's ` +
        `(${target.config.vocabSize}); the models must share a tokenizer`,
    );
  }
  const promptTokens = typeof prompt === "string" ? tokenizer.encode(prompt) : [...prompt];
  if (promptTokens.length === 0) throw new Error("generate: the prompt encodes to no tokens");
  const stream = createStreamDecoder(tokenizer);
  const eos = new Set(tokenizer.eosIds);
  let text = "";
  const emit = (piece: string) => {
    if (!piece) return;
    text += piece;
    options.onText?.(piece);
  };
  let hitEos = false;
  const run = await speculativeDecode(target, draft, promptTokens, {
    maxNewTokens: options.maxNewTokens ?? 64,
    draftTokens: options.draftTokens,
    temperature: options.temperature,
    topK: options.topK,
    topP: options.topP,
    seed: options.seed,
    onToken: (t) => {
      if (!options.ignoreEos && eos.has(t)) {
        hitEos = true;
        return false;
      }
      emit(stream.push(t));
    },
  });
  emit(stream.flush());
  const tokens = hitEos ? run.tokens.slice(0, -1) : run.tokens;
  const decodeSteps = Math.max(0, run.tokens.length - 1);
  return {
    text,
    promptTokens,
    tokens,
    prefillMs: run.prefillMs,
    decodeMs: run.decodeMs,
    prefillTokensPerSecond: promptTokens.length / (run.prefillMs / 1000),
    decodeTokensPerSecond: decodeSteps > 0 ? decodeSteps / (run.decodeMs / 1000) : 0,
    stoppedBy: hitEos ? "eos" : run.stoppedBy === "context" ? "context" : "max-tokens",
    speculative: run,
  };
}
