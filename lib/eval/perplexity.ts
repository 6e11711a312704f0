/**
 * Perplexity over a long text with a sliding window, as Hugging Face documents it: windows of
 * `context` tokens start every `stride` tokens, and each window scores only the tokens that no
 * earlier window scored, so every scored token sees up to `context - stride` tokens of history.
 * The first token of the text is never scored (nothing predicts it); nor, as in Hugging Face's
 * recipe, is a window's first token when `stride` equals `context` (no overlap gives it history).
 *
 * @module
 */

/** Something that returns next-token logits for a token sequence from an empty cache. */
export interface LogitsModel {
  /** Vocabulary size (length of one logits row). */
  readonly vocabSize: number;
  /** Logits `[tokens.length, vocab]` for `tokens`, starting from an empty KV cache. */
  logits(tokens: readonly number[]): Promise<Float32Array>;
}

/** Options for {@linkcode perplexity}. */
export interface PerplexityOptions {
  /** Window length in tokens (default 256). */
  context?: number;
  /** Step between window starts (default context / 2). */
  stride?: number;
  /** Called after each window with the tokens scored so far and in total. */
  onProgress?: (scored: number, total: number) => void;
  /**
   * Receives the NLL of every scored token, in text order, with the logits row that predicted
   * it (valid only during the call), for per-token comparisons between models.
   */
  onTokenNll?: (position: number, nll: number, logits: Float32Array) => void;
}

/** The result of {@linkcode perplexity}. */
export interface PerplexityResult {
  /** exp(mean NLL). */
  perplexity: number;
  /** Sum of the negative log-likelihoods, in nats. */
  nllSum: number;
  /** How many tokens were scored (the text's length minus one). */
  scoredTokens: number;
  /** Window length used. */
  context: number;
  /** Stride used. */
  stride: number;
}

/**
 * Log-softmax value of `row[target]`, computed stably.
 *
 * @example
 * ```ts
 * import { logProbability } from "./perplexity.ts";
 * logProbability(new Float32Array([0, 0]), 1); // -Math.LN2
 * ```
 */
export function logProbability(row: ArrayLike<number>, target: number): number {
  return row[target] - logSumExp(row);
}

/**
 * log(Σ exp(row)), computed stably.
 *
 * @example
 * ```ts
 * import { logSumExp } from "./perplexity.ts";
 * logSumExp([0, 0]); // Math.LN2
 * ```
 */
export function logSumExp(row: ArrayLike<number>): number {
  let max = -Infinity;
  for (let i = 0; i < row.length; i++) if (row[i] > max) max = row[i];
  let sum = 0;
  for (let i = 0; i < row.length; i++) sum += Math.exp(row[i] - max);
  return max + Math.log(sum);
}

/**
 * Sliding-window perplexity of `tokens` under `model`.
 *
 * @example
 * ```ts ignore
 * import { perplexity } from "./perplexity.ts";
 * const { perplexity: ppl } = await perplexity(model, tokens, { context: 256, stride: 128 });
 * ```
 */
export async function perplexity(
  model: LogitsModel,
  tokens: readonly number[],
  options: PerplexityOptions = {},
): Promise<PerplexityResult> {
  const context = options.context ?? 256;
  const stride = options.stride ?? Math.max(1, Math.floor(context / 2));
  if (!Number.isInteger(context) || context < 2) {
    throw new RangeError(`context must be ≥ 2, got ${context}`);
  }
  if (!Number.isInteger(stride) || stride < 1 || stride > context) {
    throw new RangeError(`stride must be in 1..context (${context}), got ${stride}`);
  }
  if (tokens.length < 2) {
    throw new RangeError(`perplexity needs at least 2 tokens, got ${tokens.length}`);
  }
  const vocab = model.vocabSize;
  const total = tokens.length - 1;
  let nllSum = 0;
  let scored = 0;
  let prevEnd = 0;
  for (let begin = 0; begin < tokens.length; begin += stride) {
    const end = Math.min(begin + context, tokens.length);
    const window = tokens.slice(begin, end);
    // Score absolute positions max(prevEnd, 1) .. end-1: each is predicted by the row before it.
    const firstTarget = Math.max(prevEnd, begin + 1);
    if (firstTarget < end) {
      const logits = await model.logits(window);
      for (let p = firstTarget; p < end; p++) {
        const row = logits.subarray((p - 1 - begin) * vocab, (p - begin) * vocab);
        const nll = -logProbability(row, tokens[p]);
        nllSum += nll;
        scored++;
        options.onTokenNll?.(p, nll, row);
      }
      options.onProgress?.(scored, total);
    }
    prevEnd = end;
    if (end === tokens.length) break;
  }
  return { perplexity: Math.exp(nllSum / scored), nllSum, scoredTokens: scored, context, stride };
}
