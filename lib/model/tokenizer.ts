/**
 * Text to token ids and back, from a Hugging Face `tokenizer.json` (through the pure-JS
 * `@huggingface/tokenizers`), plus a streaming decoder that prints generated text as soon as it
 * is complete.
 *
 * BOS is handled here, not by the tokenizer's post-processor: we always encode without special
 * tokens and prepend BOS ourselves, so `addBos` means the same for every model (Llama 2 and
 * TinyLlama ask for it with `add_bos_token`; Llama 3 through its post-processor). EOS is never
 * appended on encode.
 *
 * @module
 */

import { join } from "node:path";
import { Tokenizer as HfTokenizer } from "@huggingface/tokenizers";
import { expectDirectory } from "./checkpoint.ts";
import { excerpt, readJsonStrict } from "./json.ts";
import { ggufTokenizerJson, openGguf } from "./gguf.ts";
import { isLlama2cFile, Llama2cSource, llama2cTokenizerFiles } from "./llama2c.ts";
import { Llama2cTokenizer } from "./llama2c_tokenizer.ts";

/**
 * Options of {@link Tokenizer.encode}.
 *
 * @example
 * ```ts
 * import type { EncodeOptions } from "./tokenizer.ts";
 * const o: EncodeOptions = { addBos: false };
 * ```
 */
export interface EncodeOptions {
  /** Prepend the BOS token. Default: what the model's tokenizer files ask for. */
  addBos?: boolean;
}

/**
 * Options of {@link Tokenizer.decode}.
 *
 * @example
 * ```ts
 * import type { DecodeOptions } from "./tokenizer.ts";
 * const o: DecodeOptions = { skipSpecialTokens: false };
 * ```
 */
export interface DecodeOptions {
  /** Leave out special tokens such as `<s>` and `</s>`. Default true. */
  skipSpecialTokens?: boolean;
}

/**
 * A model's tokenizer.
 *
 * @example
 * ```ts ignore
 * import { loadTokenizer } from "./tokenizer.ts";
 * const tok = await loadTokenizer("models/sotu-llama");
 * tok.decode(tok.encode("Hello")); // "Hello"
 * ```
 */
export interface Tokenizer {
  /** Token ids of `text`, with BOS first when asked (or by the model's default). */
  encode(text: string, options?: EncodeOptions): number[];
  /**
   * The text of `ids`. Ids outside the tokenizer's vocabulary (padding rows some models add to
   * the embedding) decode to nothing.
   */
  decode(ids: readonly number[], options?: DecodeOptions): string;
  /** One more than the largest token id the tokenizer knows. */
  readonly vocabSize: number;
  /** The beginning-of-sequence token, if the model has one. */
  readonly bosId?: number;
  /** Tokens that end generation. */
  readonly eosIds: readonly number[];
  /** Whether {@link encode} adds BOS when `addBos` is not given. */
  readonly addBosByDefault: boolean;
  /** The vocabulary string of a token id. */
  idToToken(id: number): string | undefined;
  /** The id of a vocabulary string. */
  tokenToId(token: string): number | undefined;
}

/**
 * Extra facts about a model that live outside the tokenizer files.
 *
 * @example
 * ```ts
 * import type { TokenizerExtras } from "./tokenizer.ts";
 * const x: TokenizerExtras = { eosIds: [128001, 128009] };
 * ```
 */
export interface TokenizerExtras {
  /** More end-of-sequence ids, e.g. from `generation_config.json`. */
  eosIds?: readonly number[];
  /** BOS id to use when `tokenizer_config.json` names none. */
  bosId?: number;
  /** Where the tokenizer came from (a file path), named in errors; default "tokenizer". */
  source?: string;
}

/** Text every tokenizer must get through at load: letters, digits, punctuation, spaces. */
const PROBE = "The quick brown fox, 42 times: café!";

/** `tokenizer_config.json` writes special tokens as strings or as `{ content }` objects. */
function tokenContent(raw: unknown): string | undefined {
  if (typeof raw === "string") return raw;
  if (
    raw && typeof raw === "object" && typeof (raw as { content?: unknown }).content === "string"
  ) {
    return (raw as { content: string }).content;
  }
  return undefined;
}

/**
 * Builds a tokenizer from parsed `tokenizer.json` and `tokenizer_config.json` objects.
 *
 * @example
 * ```ts ignore
 * import { createTokenizer } from "./tokenizer.ts";
 * const tok = createTokenizer(tokenizerJson, { bos_token: "<s>", eos_token: "</s>" });
 * ```
 */
export function createTokenizer(
  tokenizerJson: Record<string, unknown>,
  tokenizerConfig: Record<string, unknown> = {},
  extras: TokenizerExtras = {},
): Tokenizer {
  const hf = new HfTokenizer(tokenizerJson, tokenizerConfig);
  const vocab = hf.get_vocab(true);
  let vocabSize = 0;
  for (const id of vocab.values()) vocabSize = Math.max(vocabSize, id + 1);

  const idOf = (raw: unknown): number | undefined => {
    const content = tokenContent(raw);
    return content === undefined ? undefined : hf.token_to_id(content);
  };
  const bosId = idOf(tokenizerConfig.bos_token) ?? extras.bosId;
  const eos = new Set<number>();
  const eosFromConfig = idOf(tokenizerConfig.eos_token);
  if (eosFromConfig !== undefined) eos.add(eosFromConfig);
  for (const id of extras.eosIds ?? []) eos.add(id);

  // A file can be well-formed JSON and still describe a pipeline that fails (a post-processor
  // with a piece missing, say): find out now, not at the first prompt.
  for (const add_special_tokens of [false, true]) {
    hf.decode(hf.encode(PROBE, { add_special_tokens }).ids, { skip_special_tokens: false });
  }
  const source = extras.source ?? "tokenizer";
  const guard = <T>(what: string, f: () => T): T => {
    try {
      return f();
    } catch (e) {
      const message = e instanceof Error ? e.message : String(e);
      throw new Error(`${source}: ${what} failed (${message.slice(0, 300)})`);
    }
  };

  let addBosByDefault: boolean;
  if (typeof tokenizerConfig.add_bos_token === "boolean") {
    addBosByDefault = tokenizerConfig.add_bos_token && bosId !== undefined;
  } else {
    // No explicit flag (Llama 3 style): the post-processor decides; ask it.
    const probe = hf.encode("a", { add_special_tokens: true }).ids;
    addBosByDefault = bosId !== undefined && probe[0] === bosId;
  }

  return {
    vocabSize,
    bosId,
    eosIds: [...eos],
    addBosByDefault,
    encode(text: string, options: EncodeOptions = {}): number[] {
      const ids = text.length === 0
        ? []
        : guard("encode", () => hf.encode(text, { add_special_tokens: false }).ids);
      const addBos = options.addBos ?? addBosByDefault;
      if (addBos) {
        if (bosId === undefined) {
          throw new Error("encode: addBos is set but the tokenizer has no BOS token");
        }
        ids.unshift(bosId);
      }
      return ids;
    },
    decode(ids: readonly number[], options: DecodeOptions = {}): string {
      const known = ids.filter((id) => hf.id_to_token(id) !== undefined);
      if (known.length === 0) return "";
      // Never clean up spaces: it would break encode/decode round trips and make streamed text
      // differ from the whole decode.
      return guard("decode", () =>
        hf.decode(known, {
          skip_special_tokens: options.skipSpecialTokens ?? true,
          clean_up_tokenization_spaces: false,
        }));
    },
    idToToken: (id: number): string | undefined => hf.id_to_token(id),
    tokenToId: (token: string): number | undefined => hf.token_to_id(token),
  };
}

async function readJson(path: string): Promise<Record<string, unknown> | undefined> {
  try {
    await Deno.stat(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return undefined;
    throw e;
  }
  const raw = await readJsonStrict(path);
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) {
    throw new Error(`${path}: expected a JSON object, got ${excerpt(raw)}`);
  }
  return raw as Record<string, unknown>;
}

/**
 * Checks the parts of a `tokenizer.json` whose faults would otherwise cost time or give wrong
 * ids: the model's vocabulary (token strings to distinct non-negative integer ids, or Unigram's
 * list of `[token, score]`), the merges, and the added tokens. Every id must be below the number
 * of entries the file holds, so that no work or memory grows past the file's own size. Throws
 * naming `path` and the entry at fault.
 *
 * @example
 * ```ts
 * import { validateTokenizerJson } from "./tokenizer.ts";
 * validateTokenizerJson({ model: { type: "WordLevel", vocab: { a: 0, b: 1 } } }, "t.json");
 * ```
 */
export function validateTokenizerJson(json: unknown, path: string): void {
  const fail = (message: string): never => {
    throw new Error(`${path}: ${message}`);
  };
  if (typeof json !== "object" || json === null || Array.isArray(json)) {
    fail(`expected a JSON object, got ${excerpt(json)}`);
  }
  const t = json as Record<string, unknown>;
  const model = t.model;
  if (typeof model !== "object" || model === null || Array.isArray(model)) {
    fail(`model must be an object, got ${excerpt(model)}`);
  }
  const m = model as Record<string, unknown>;
  const added = t.added_tokens ?? [];
  if (!Array.isArray(added)) fail(`added_tokens must be a list, got ${excerpt(added)}`);
  const addedList = added as unknown[];
  const vocab = m.vocab;
  const isUnigram = m.type === "Unigram";
  const entries = isUnigram
    ? (Array.isArray(vocab) ? vocab.length : -1)
    : (typeof vocab === "object" && vocab !== null && !Array.isArray(vocab)
      ? Object.keys(vocab).length
      : -1);
  if (entries < 0) {
    fail(
      `model.vocab must be ${isUnigram ? "a list of [token, score]" : "an object of token ids"}, ` +
        `got ${excerpt(vocab)}`,
    );
  }
  // Ids index tables as long as the largest id: bound them by what the file holds.
  const limit = entries + addedList.length;
  const idOk = (id: unknown): boolean =>
    Number.isSafeInteger(id) && (id as number) >= 0 && (id as number) < limit;
  if (isUnigram) {
    (vocab as unknown[]).forEach((entry, i) => {
      if (
        !Array.isArray(entry) || entry.length !== 2 || typeof entry[0] !== "string" ||
        typeof entry[1] !== "number" || !Number.isFinite(entry[1])
      ) {
        fail(`model.vocab entry ${i} must be [token, score], got ${excerpt(entry)}`);
      }
    });
  } else {
    const seen = new Map<number, string>();
    for (const [token, id] of Object.entries(vocab as Record<string, unknown>)) {
      if (!idOk(id)) {
        fail(
          `model.vocab id of token ${excerpt(token)} must be an integer from 0 to ${limit - 1} ` +
            `(the file holds ${limit} tokens), got ${excerpt(id)}`,
        );
      }
      const other = seen.get(id as number);
      if (other !== undefined) {
        fail(`model.vocab gives id ${id} to both ${excerpt(other)} and ${excerpt(token)}`);
      }
      seen.set(id as number, token);
    }
  }
  if (m.merges !== undefined && m.merges !== null) {
    if (!Array.isArray(m.merges)) fail(`model.merges must be a list, got ${excerpt(m.merges)}`);
    (m.merges as unknown[]).forEach((merge, i) => {
      const ok = typeof merge === "string"
        ? merge.includes(" ")
        : Array.isArray(merge) && merge.length === 2 &&
          merge.every((part) => typeof part === "string");
      if (!ok) fail(`model.merges entry ${i} must be "a b" or ["a", "b"], got ${excerpt(merge)}`);
    });
  }
  addedList.forEach((token, i) => {
    const a = token as { id?: unknown; content?: unknown };
    if (typeof token !== "object" || token === null || typeof a.content !== "string") {
      fail(`added_tokens entry ${i} must have a string content, got ${excerpt(token)}`);
    }
    if (!idOk(a.id)) {
      fail(
        `added_tokens entry ${i} (${excerpt(a.content)}) has id ${excerpt(a.id)}; ids must be ` +
          `integers from 0 to ${limit - 1} (the file holds ${limit} tokens)`,
      );
    }
  });
}

function idList(raw: unknown): number[] {
  if (Number.isSafeInteger(raw)) return [raw as number];
  if (Array.isArray(raw)) return raw.filter((x) => Number.isSafeInteger(x));
  return [];
}

/**
 * Loads the tokenizer of a model directory: `tokenizer.json` (required), and when present
 * `tokenizer_config.json` (special tokens, `add_bos_token`), `generation_config.json` and
 * `config.json` (more EOS ids, a fallback BOS id).
 *
 * @example
 * ```ts ignore
 * import { loadTokenizer } from "./tokenizer.ts";
 * const tok = await loadTokenizer("models/sotu-llama");
 * tok.encode("Hello", { addBos: true });
 * ```
 */
export async function loadTokenizer(dir: string): Promise<Tokenizer> {
  if (await isLlama2cFile(dir)) {
    // a llama2.c model file: the tokenizer.json beside it, else its tokenizer.bin
    const files = await llama2cTokenizerFiles(dir);
    if (files.json) return await loadTokenizer(files.dir);
    if (!files.bin) {
      throw new Error(`${dir}: no tokenizer.json or tokenizer.bin beside this llama2.c file`);
    }
    const source = await Llama2cSource.open(dir);
    source.close();
    return Llama2cTokenizer.parse(
      await Deno.readFile(files.bin),
      source.header.vocabSize,
      files.bin,
    );
  }
  if (dir.endsWith(".gguf")) {
    // A llama.cpp file: its metadata vocabulary, or a tokenizer.json beside it.
    using file = await openGguf(dir);
    const { json, config } = await ggufTokenizerJson(dir, file.metadata);
    try {
      return createTokenizer(json, config, {
        eosIds: idList(file.metadata["tokenizer.ggml.eos_token_id"]),
        bosId: file.config.bosTokenId,
      });
    } catch (e) {
      throw new Error(`${dir}: cannot build the tokenizer (${(e as Error).message})`);
    }
  }
  await expectDirectory(dir);
  const path = join(dir, "tokenizer.json");
  const json = await readJson(path);
  if (!json) {
    throw new Error(`${path}: not found (only tokenizer.json is supported, not tokenizer.model)`);
  }
  validateTokenizerJson(json, path);
  const tokConfig = await readJson(join(dir, "tokenizer_config.json")) ?? {};
  const genConfig = await readJson(join(dir, "generation_config.json")) ?? {};
  const modelConfig = await readJson(join(dir, "config.json")) ?? {};
  const bos = genConfig.bos_token_id ?? modelConfig.bos_token_id;
  try {
    return createTokenizer(json, tokConfig, {
      eosIds: [...idList(genConfig.eos_token_id), ...idList(modelConfig.eos_token_id)],
      bosId: Number.isSafeInteger(bos) ? bos as number : undefined,
      source: path,
    });
  } catch (e) {
    const message = e instanceof Error ? e.message : String(e);
    const short = message.length > 300 ? `${message.slice(0, 300)}…` : message;
    throw new Error(`${path}: cannot build the tokenizer (${short})`);
  }
}

/**
 * Turns generated token ids into printable text one id at a time.
 *
 * @example
 * ```ts ignore
 * const stream = createStreamDecoder(tok);
 * for (const id of ids) Deno.stdout.writeSync(new TextEncoder().encode(stream.push(id)));
 * stream.flush();
 * ```
 */
export interface StreamDecoder {
  /** Adds one token; returns the text it completes (often "", e.g. mid-way through a character). */
  push(id: number): string;
  /** Returns whatever text is still held back (an unfinished character decodes to U+FFFD). */
  flush(): string;
}

/**
 * A streaming decoder. Byte-level tokens can end in the middle of a UTF-8 character, and some
 * decoders treat a token differently at the start of the text (Llama 2 strips a leading space),
 * so each step decodes a short window of recent tokens and emits only the part past what was
 * already printed, and only once it does not end in an unfinished character. The pieces
 * concatenate to `decode(allIds)`.
 *
 * @example
 * ```ts ignore
 * import { createStreamDecoder, loadTokenizer } from "./tokenizer.ts";
 * const tok = await loadTokenizer("models/sotu-llama");
 * const stream = createStreamDecoder(tok);
 * let text = "";
 * for (const id of tok.encode("café")) text += stream.push(id);
 * text += stream.flush(); // "café"
 * ```
 */
export function createStreamDecoder(
  tokenizer: Tokenizer,
  options: DecodeOptions = {},
): StreamDecoder {
  let ids: number[] = [];
  // ids[prefix, read) were printed already and give the decoder its context; ids[read..] are not.
  let prefix = 0;
  let read = 0;
  const decode = (from: number, to?: number) => tokenizer.decode(ids.slice(from, to), options);
  return {
    push(id: number): string {
      ids.push(id);
      const printed = decode(prefix, read);
      const text = decode(prefix);
      if (text.length <= printed.length || text.endsWith("\uFFFD")) return "";
      // Keep only the context window, so a long generation costs O(1) per token.
      ids = ids.slice(read);
      prefix = 0;
      read = ids.length;
      return text.slice(printed.length);
    },
    flush(): string {
      const printed = decode(prefix, read);
      const text = decode(prefix);
      ids = [];
      prefix = read = 0;
      return text.slice(printed.length);
    },
  };
}
