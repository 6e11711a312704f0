/**
 * llama2.c's `tokenizer.bin`: writing one from a Hugging Face `tokenizer.json`, and a
 * {@linkcode Tokenizer} that reads one and encodes as llama2.c's `run.c` does.
 *
 * The file (llama2.c's `tokenizer.py`): a uint32 `max_token_length`, then per token id in order
 * an f32 score, an int32 byte length and the piece's UTF-8 bytes. Sentencepiece's `▁` is
 * written as a space, BOS as `"\n<s>\n"` and EOS as `"\n</s>\n"`; pieces like `<0x0A>` stand
 * for raw bytes. `run.c` encodes by prepending a space (sentencepiece's dummy prefix), looking up
 * each UTF-8 character (unknown ones become byte tokens, id = byte + 3), then merging the adjacent
 * pair whose merged piece has the highest score until none is in the vocabulary; BOS is id 1
 * and EOS id 2.
 *
 * From a byte-level BPE `tokenizer.json` (GPT-2 style, like the bundled model's) the pieces are
 * written as the bytes they stand for and each merged token's score is minus its merge's rank,
 * so `run.c`'s highest-score-first merging follows the BPE's merge order; its encoder still
 * differs from the BPE's (no pre-tokenizer split, the dummy space), so a `tokenizer.json` beside
 * the model is preferred when both exist.
 *
 * @module
 */

import type { DecodeOptions, EncodeOptions, Tokenizer } from "./tokenizer.ts";

/** GPT-2's byte-level alphabet: the printable character each byte is written as. */
function byteLevelDecoder(): Map<string, number> {
  const bytes: number[] = [];
  for (let b = 33; b <= 126; b++) bytes.push(b);
  for (let b = 161; b <= 172; b++) bytes.push(b);
  for (let b = 174; b <= 255; b++) bytes.push(b);
  const chars = bytes.slice();
  let n = 0;
  for (let b = 0; b < 256; b++) {
    if (!bytes.includes(b)) {
      bytes.push(b);
      chars.push(256 + n++);
    }
  }
  return new Map(bytes.map((b, i) => [String.fromCodePoint(chars[i]), b]));
}

/**
 * What {@linkcode llama2cTokenizerBytes} made.
 *
 * @example
 * ```ts ignore
 * const { bytes, maxTokenLength } = llama2cTokenizerBytes(json, 32000);
 * ```
 */
export interface Llama2cTokenizerFile {
  /** The file's bytes. */
  bytes: Uint8Array;
  /** Longest piece in bytes. */
  maxTokenLength: number;
  /** Pieces written (the model's vocabulary size). */
  count: number;
}

/**
 * The `tokenizer.bin` of a Hugging Face `tokenizer.json` (parsed), with `vocabSize` entries
 * (ids the tokenizer lacks get an empty piece). `bosId`/`eosId` are written as llama2.c's
 * `"\n<s>\n"` and `"\n</s>\n"`.
 *
 * @example
 * ```ts ignore
 * const json = JSON.parse(await Deno.readTextFile("models/sotu-llama/tokenizer.json"));
 * const { bytes } = llama2cTokenizerBytes(json, 4096, { bosId: 0 });
 * await Deno.writeFile("tokenizer.bin", bytes);
 * ```
 */
export function llama2cTokenizerBytes(
  tokenizerJson: Record<string, unknown>,
  vocabSize: number,
  special: { bosId?: number; eosId?: number } = {},
): Llama2cTokenizerFile {
  const model = tokenizerJson.model as {
    type?: string;
    vocab?: Record<string, number> | [string, number][];
    merges?: (string | [string, string])[];
  };
  const pieces: (string | undefined)[] = new Array(vocabSize);
  const scores = new Float32Array(vocabSize);
  if (model.type === "Unigram" && Array.isArray(model.vocab)) {
    model.vocab.forEach(([piece, score], id) => {
      if (id < vocabSize) {
        pieces[id] = piece;
        scores[id] = score;
      }
    });
  } else if (model.vocab && !Array.isArray(model.vocab)) {
    for (const [piece, id] of Object.entries(model.vocab)) if (id < vocabSize) pieces[id] = piece;
    const idOf = model.vocab;
    (model.merges ?? []).forEach((m, rank) => {
      const [a, b] = typeof m === "string" ? m.split(" ") : m;
      const id = idOf[a + b];
      if (id !== undefined && id < vocabSize && scores[id] === 0) scores[id] = -(rank + 1);
    });
  } else {
    throw new Error(`tokenizer.json: model type ${model.type} has no vocabulary to export`);
  }
  for (const t of (tokenizerJson.added_tokens ?? []) as { id: number; content: string }[]) {
    if (t.id < vocabSize) pieces[t.id] = t.content;
  }
  const kinds = JSON.stringify([tokenizerJson.pre_tokenizer, tokenizerJson.decoder]);
  const byteLevel = kinds.includes('"ByteLevel"');
  const byteOf = byteLevel ? byteLevelDecoder() : null;
  const addedIds = new Set(
    ((tokenizerJson.added_tokens ?? []) as { id: number }[]).map((t) => t.id),
  );
  const encoder = new TextEncoder();
  const encoded = pieces.map((piece, id) => {
    if (id === special.bosId) return encoder.encode("\n<s>\n");
    if (id === special.eosId) return encoder.encode("\n</s>\n");
    if (piece === undefined) return new Uint8Array(0);
    if (byteOf && !addedIds.has(id)) {
      const out: number[] = [];
      for (const ch of piece) {
        const b = byteOf.get(ch);
        if (b === undefined) return encoder.encode(piece); // not a byte-level piece
        out.push(b);
      }
      return new Uint8Array(out);
    }
    return encoder.encode(piece.replaceAll("▁", " "));
  });
  const maxTokenLength = Math.max(0, ...encoded.map((b) => b.byteLength));
  const total = 4 + encoded.reduce((s, b) => s + 8 + b.byteLength, 0);
  const bytes = new Uint8Array(total);
  const view = new DataView(bytes.buffer);
  view.setUint32(0, maxTokenLength, true);
  let at = 4;
  encoded.forEach((b, id) => {
    view.setFloat32(at, scores[id], true);
    view.setInt32(at + 4, b.byteLength, true);
    bytes.set(b, at + 8);
    at += 8 + b.byteLength;
  });
  return { bytes, maxTokenLength, count: vocabSize };
}

/**
 * A tokenizer read from llama2.c's `tokenizer.bin`, encoding and decoding as `run.c` does.
 *
 * @example
 * ```ts ignore
 * const tok = Llama2cTokenizer.parse(await Deno.readFile("tokenizer.bin"), 32000);
 * tok.encode("Hello"); // [1, ...]
 * ```
 */
export class Llama2cTokenizer implements Tokenizer {
  /** Pieces written in the file. */
  readonly vocabSize: number;
  /** 1, as in `run.c`. */
  readonly bosId = 1;
  /** 2, as in `run.c`. */
  readonly eosIds: readonly number[] = [2];
  /** `run.c` prepends BOS. */
  readonly addBosByDefault = true;
  /** Longest piece in bytes, from the file. */
  readonly maxTokenLength: number;
  #pieces: Uint8Array[];
  #scores: Float32Array;
  #ids = new Map<string, number>();
  #latin1: string[];

  private constructor(pieces: Uint8Array[], scores: Float32Array, maxTokenLength: number) {
    this.#pieces = pieces;
    this.#scores = scores;
    this.vocabSize = pieces.length;
    this.maxTokenLength = maxTokenLength;
    // pieces compared as byte strings: one char per byte
    this.#latin1 = pieces.map((p) => String.fromCharCode(...p));
    this.#latin1.forEach((s, id) => {
      if (!this.#ids.has(s)) this.#ids.set(s, id);
    });
  }

  /** Reads a `tokenizer.bin` of `vocabSize` pieces (the model header's vocabulary size). */
  static parse(bytes: Uint8Array, vocabSize: number, source = "tokenizer.bin"): Llama2cTokenizer {
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    if (bytes.byteLength < 4) throw new Error(`${source}: too short`);
    const maxTokenLength = view.getUint32(0, true);
    const pieces: Uint8Array[] = [];
    const scores = new Float32Array(vocabSize);
    let at = 4;
    for (let id = 0; id < vocabSize; id++) {
      if (at + 8 > bytes.byteLength) {
        throw new Error(`${source}: ends at piece ${id} of the model's ${vocabSize}`);
      }
      scores[id] = view.getFloat32(at, true);
      const len = view.getInt32(at + 4, true);
      if (len < 0 || len > maxTokenLength || at + 8 + len > bytes.byteLength) {
        throw new Error(`${source}: piece ${id} has length ${len} (max ${maxTokenLength})`);
      }
      pieces.push(bytes.slice(at + 8, at + 8 + len));
      at += 8 + len;
    }
    return new Llama2cTokenizer(pieces, scores, maxTokenLength);
  }

  /** Encodes as `run.c`: dummy-prefix space, characters or byte tokens, best-score merges. */
  encode(text: string, options: EncodeOptions = {}): number[] {
    const tokens: number[] = [];
    if (text.length > 0) {
      const space = this.#ids.get(" ");
      if (space !== undefined) tokens.push(space);
    }
    for (const ch of text) {
      const utf8 = new TextEncoder().encode(ch);
      const id = this.#ids.get(String.fromCharCode(...utf8));
      if (id !== undefined) tokens.push(id);
      else for (const b of utf8) tokens.push(b + 3);
    }
    for (;;) {
      let best = -1e10;
      let at = -1;
      let merged = -1;
      for (let i = 0; i + 1 < tokens.length; i++) {
        const id = this.#ids.get(this.#latin1[tokens[i]] + this.#latin1[tokens[i + 1]]);
        if (id !== undefined && this.#scores[id] > best) {
          best = this.#scores[id];
          at = i;
          merged = id;
        }
      }
      if (at < 0) break;
      tokens.splice(at, 2, merged);
    }
    return (options.addBos ?? true) ? [this.bosId, ...tokens] : tokens;
  }

  /** Decodes as `run.c`: byte pieces `<0xXX>` become bytes; a space after BOS is dropped. */
  decode(ids: readonly number[], options: DecodeOptions = {}): string {
    const skip = options.skipSpecialTokens ?? true;
    const out: number[] = [];
    let prev = -1;
    for (const id of ids) {
      if (id < 0 || id >= this.vocabSize) continue;
      if (skip && (id === this.bosId || this.eosIds.includes(id))) {
        prev = id;
        continue;
      }
      let piece = this.#pieces[id];
      if (prev === this.bosId && piece[0] === 0x20) piece = piece.subarray(1);
      const m = /^<0x([0-9A-Fa-f]{2})>$/.exec(this.#latin1[id]);
      if (m) out.push(parseInt(m[1], 16));
      else out.push(...piece);
      prev = id;
    }
    return new TextDecoder().decode(new Uint8Array(out));
  }

  /** The piece of an id, as a string. */
  idToToken(id: number): string | undefined {
    const p = this.#pieces[id];
    return p === undefined ? undefined : new TextDecoder().decode(p);
  }

  /** The id of a piece. */
  tokenToId(token: string): number | undefined {
    return this.#ids.get(String.fromCharCode(...new TextEncoder().encode(token)));
  }
}
