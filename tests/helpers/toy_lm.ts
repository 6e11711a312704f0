/**
 * A tiny CPU language model with the methods speculative decoding calls on a model: its logits
 * after a token depend on that token and the one before it, through a seeded random table. A
 * draft is the same table plus noise. Cheap enough for many thousands of seeded runs.
 */

import type { SpeculativeModel } from "../../lib/model/speculative.ts";
import { seededRandom } from "../../lib/model/sampling.ts";

export class ToyLm implements SpeculativeModel {
  readonly maxSeqLen: number;
  readonly maxVerifyTokens = 8;
  readonly vocab: number;
  #table: Float32Array; // [vocab * vocab, vocab]: logits after (previous, current)
  #ctx: number[] = [];
  /** Forward passes run (verify passes included), decodeGreedy steps counted one each. */
  passes = 0;

  constructor(
    vocab: number,
    seed: number,
    opts: { maxSeqLen?: number; base?: ToyLm; noise?: number } = {},
  ) {
    this.vocab = vocab;
    this.maxSeqLen = opts.maxSeqLen ?? 256;
    const rng = seededRandom(seed);
    this.#table = new Float32Array(vocab * vocab * vocab);
    for (let i = 0; i < this.#table.length; i++) {
      const noise = (rng() + rng() + rng() - 1.5) * 2 * (opts.noise ?? 1);
      this.#table[i] = (opts.base ? opts.base.#table[i] : 0) + noise;
    }
  }

  get position(): number {
    return this.#ctx.length;
  }

  reset(): void {
    this.#ctx = [];
  }

  rollback(position: number): void {
    if (position < 0 || position > this.#ctx.length) throw new RangeError(`rollback ${position}`);
    this.#ctx.length = position;
  }

  /** Logits after the context ending at index i. */
  logitsAt(i: number): Float32Array {
    const prev = i > 0 ? this.#ctx[i - 1] : 0;
    const cur = this.#ctx[i];
    const o = (prev * this.vocab + cur) * this.vocab;
    return this.#table.slice(o, o + this.vocab);
  }

  #push(tokens: readonly number[]): void {
    if (this.#ctx.length + tokens.length > this.maxSeqLen) throw new RangeError("context full");
    this.#ctx.push(...tokens);
  }

  // deno-lint-ignore require-await
  async forward(tokens: readonly number[], _logits?: unknown): Promise<Float32Array> {
    this.passes++;
    this.#push(tokens);
    return this.logitsAt(this.#ctx.length - 1);
  }

  verify(tokens: readonly number[], want: "logits"): Promise<Float32Array>;
  verify(tokens: readonly number[], want: "argmax"): Promise<Uint32Array>;
  // deno-lint-ignore require-await
  async verify(
    tokens: readonly number[],
    want: "logits" | "argmax",
  ): Promise<Float32Array | Uint32Array> {
    this.passes++;
    const start = this.#ctx.length;
    this.#push(tokens);
    const rows = tokens.map((_, r) => this.logitsAt(start + r));
    if (want === "argmax") return Uint32Array.from(rows, argmax);
    const out = new Float32Array(rows.length * this.vocab);
    rows.forEach((r, i) => out.set(r, i * this.vocab));
    return out;
  }

  // deno-lint-ignore require-await
  async decodeGreedy(
    prompt: readonly number[],
    options: { maxNewTokens: number },
  ): Promise<{ tokens: number[]; stoppedBy: "max-tokens"; overshoot: number; groups: number[] }> {
    const tokens: number[] = [];
    let input = [...prompt];
    for (let i = 0; i < options.maxNewTokens; i++) {
      this.passes++;
      this.#push(input);
      const t = argmax(this.logitsAt(this.#ctx.length - 1));
      tokens.push(t);
      input = [t];
    }
    // as LlamaModel: the last token is not in the cache
    return { tokens, stoppedBy: "max-tokens", overshoot: 0, groups: [tokens.length] };
  }
}

function argmax(v: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < v.length; i++) if (v[i] > v[best]) best = i;
  return best;
}
