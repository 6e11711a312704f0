/**
 * Speculative decoding measured against the target alone, for `compare`/`demo`'s speculative
 * row: the same prompt decoded greedily by the target, then with the draft proposing.
 *
 * @module
 */

import type { Gpu } from "../gpu/device.ts";
import { LlamaModel } from "../model/llama.ts";
import { speculativeDecode } from "../model/speculative.ts";
import type { QuantFormat } from "../quant/formats.ts";

/** What {@linkcode measureSpeculative} found. */
export interface SpeculativeMeasurement {
  /** Weight format of both models. */
  format: QuantFormat;
  /** Fixed draft length, or "adaptive". */
  draftTokens: number | "adaptive";
  /** Draft tokens kept / drafted. */
  acceptanceRate: number;
  /** Tokens after the first per verify pass. */
  tokensPerTargetPass: number;
  /** Decode tokens/s with the draft. */
  tokensPerSecond: number;
  /** Decode tokens/s of the target alone (pipelined greedy decoding). */
  baselineTokensPerSecond: number;
  /** tokensPerSecond / baselineTokensPerSecond. */
  speedup: number;
  /** Whether the tokens equal the target's own greedy tokens (they must). */
  sameTokens: boolean;
}

/**
 * Loads the target and the draft in `format`, decodes `prompt` greedily with the target alone
 * and then speculatively (each once untimed first), and compares.
 *
 * @example
 * ```ts ignore
 * const m = await measureSpeculative({ gpu, targetDir, draftDir, prompt: [1, 450], tokens: 64 });
 * console.log(m.acceptanceRate, m.speedup);
 * ```
 */
export async function measureSpeculative(o: {
  gpu: Gpu;
  targetDir: string;
  draftDir: string;
  prompt: number[];
  tokens: number;
  format?: QuantFormat;
  draftTokens?: number;
}): Promise<SpeculativeMeasurement> {
  const format = o.format ?? "fp16";
  const target = await LlamaModel.load(o.targetDir, { gpu: o.gpu, format });
  try {
    const draft = await LlamaModel.load(o.draftDir, { gpu: o.gpu, format });
    try {
      if (draft.config.vocabSize !== target.config.vocabSize) {
        throw new Error(
          `speculative: the draft's vocabulary (${draft.config.vocabSize}) is not the ` +
            `target's (${target.config.vocabSize})`,
        );
      }
      const alone = async () => {
        target.reset();
        const t0 = performance.now();
        const run = await target.decodeGreedy(o.prompt, { maxNewTokens: o.tokens });
        return { tokens: run.tokens, ms: performance.now() - t0 };
      };
      const spec = () =>
        speculativeDecode(target, draft, o.prompt, {
          maxNewTokens: o.tokens,
          draftTokens: o.draftTokens,
        });
      await alone();
      await spec();
      const a = await alone();
      const s = await spec();
      const tokS = s.tokens.length / ((s.prefillMs + s.decodeMs) / 1000);
      const baseTokS = a.tokens.length / (a.ms / 1000);
      return {
        format,
        draftTokens: o.draftTokens ?? "adaptive",
        acceptanceRate: s.acceptanceRate,
        tokensPerTargetPass: s.tokensPerTargetPass,
        tokensPerSecond: tokS,
        baselineTokensPerSecond: baseTokS,
        speedup: tokS / baseTokS,
        sameTokens: s.tokens.join() === a.tokens.join(),
      };
    } finally {
      draft.dispose();
    }
  } finally {
    target.dispose();
  }
}
