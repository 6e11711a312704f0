/**
 * Chat templates: a model's `chat_template` (Jinja, from `chat_template.jinja`,
 * `tokenizer_config.json` or GGUF metadata) rendered with `@huggingface/jinja`, the engine
 * transformers.js uses, with the variables transformers' `apply_chat_template` passes
 * (`messages`, `add_generation_prompt`, the special tokens, any extra such as `enable_thinking`),
 * and {@linkcode chat}, which renders a conversation and generates the reply.
 *
 * @module
 */

import { join } from "node:path";
import { Template } from "@huggingface/jinja";
import { generate, type GenerateOptions, type GenerateResult } from "./generate.ts";
import { openGguf } from "./gguf.ts";
import type { LlamaModel } from "./llama.ts";
import type { Tokenizer } from "./tokenizer.ts";

/**
 * One turn of a conversation: a role (`system`, `user`, `assistant`, ...) and its text; other
 * fields are passed to the template as they are.
 *
 * @example
 * ```ts
 * import type { ChatMessage } from "./chat.ts";
 * const m: ChatMessage = { role: "user", content: "What is NF4?" };
 * ```
 */
export interface ChatMessage {
  /** Who speaks. */
  role: string;
  /** What is said. */
  content: string;
  /** Anything else the template reads. */
  [key: string]: unknown;
}

/**
 * A model's chat template and the special tokens it may print.
 *
 * @example
 * ```ts
 * import type { ChatTemplate } from "./chat.ts";
 * const t: ChatTemplate = {
 *   template: "{% for m in messages %}{{ m.content }}{% endfor %}",
 *   specialTokens: { eos_token: "</s>" },
 *   source: "inline",
 * };
 * ```
 */
export interface ChatTemplate {
  /** The Jinja source. */
  template: string;
  /** `bos_token`, `eos_token`, `unk_token`, `pad_token` as strings, where the model has them. */
  specialTokens: Record<string, string>;
  /** Where the template came from (a file path, or `GGUF metadata`). */
  source: string;
}

/** Options of {@linkcode renderChat}. */
export interface RenderChatOptions {
  /** End with the opening of an assistant turn (default true). */
  addGenerationPrompt?: boolean;
  /** More template variables, e.g. `{ enable_thinking: false }` for Qwen3. */
  variables?: Record<string, unknown>;
}

const SPECIAL_TOKENS = ["bos_token", "eos_token", "unk_token", "pad_token"];

/** A special token as `tokenizer_config.json` writes it: a string or `{ content }`. */
function tokenText(v: unknown): string | undefined {
  if (typeof v === "string") return v;
  if (v && typeof v === "object" && typeof (v as { content?: unknown }).content === "string") {
    return (v as { content: string }).content;
  }
  return undefined;
}

/**
 * Renders a conversation with a chat template, as transformers' `apply_chat_template(messages,
 * tokenize=False, add_generation_prompt=...)` does: the template sees `messages`,
 * `add_generation_prompt`, the special tokens and `variables`; `raise_exception` in the template
 * throws with its message.
 *
 * @example
 * ```ts
 * import { renderChat } from "./chat.ts";
 * const t = {
 *   template: "{% for m in messages %}<|{{ m.role }}|>{{ m.content }}{% endfor %}" +
 *     "{% if add_generation_prompt %}<|assistant|>{% endif %}",
 *   specialTokens: {},
 *   source: "inline",
 * };
 * renderChat(t, [{ role: "user", content: "Hi" }]); // "<|user|>Hi<|assistant|>"
 * ```
 */
export function renderChat(
  template: ChatTemplate,
  messages: readonly ChatMessage[],
  options: RenderChatOptions = {},
): string {
  let compiled: Template;
  try {
    compiled = new Template(template.template);
  } catch (e) {
    throw new Error(`chat template from ${template.source}: ${(e as Error).message}`);
  }
  return compiled.render({
    ...template.specialTokens,
    ...options.variables,
    messages: messages.map((m) => ({ ...m })),
    add_generation_prompt: options.addGenerationPrompt ?? true,
  });
}

/**
 * The chat template stored in GGUF metadata (`tokenizer.chat_template`), with the special tokens
 * its `tokenizer.ggml.*_token_id` keys name, or null.
 *
 * @example
 * ```ts
 * import { chatTemplateFromGguf } from "./chat.ts";
 * chatTemplateFromGguf({ "tokenizer.chat_template": "{{ messages[0].content }}" })?.template;
 * ```
 */
export function chatTemplateFromGguf(
  metadata: Readonly<Record<string, unknown>>,
  source = "GGUF metadata",
): ChatTemplate | null {
  const template = metadata["tokenizer.chat_template"];
  if (typeof template !== "string") return null;
  // Special tokens by id into the vocabulary (tokenizer.ggml.tokens), as llama.cpp reads them.
  const tokens = metadata["tokenizer.ggml.tokens"];
  const specialTokens: Record<string, string> = {};
  for (const name of ["bos", "eos", "unknown", "padding"]) {
    const id = metadata[`tokenizer.ggml.${name}_token_id`];
    const text = Array.isArray(tokens) && typeof id === "number" ? tokens[id] : undefined;
    const key = { bos: "bos_token", eos: "eos_token", unknown: "unk_token", padding: "pad_token" }[
      name
    ]!;
    if (typeof text === "string") specialTokens[key] = text;
  }
  return { template, specialTokens, source };
}

async function readText(path: string): Promise<string | null> {
  try {
    return await Deno.readTextFile(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return null;
    throw e;
  }
}

/**
 * The chat template of a model directory (or GGUF file: its `tokenizer.chat_template`), or null
 * when it has none: `chat_template.jinja`
 * (where transformers 5 saves it), else `chat_template` in `tokenizer_config.json` (a string, or
 * a list of named templates, of which `default` is taken). Special tokens come from
 * `tokenizer_config.json`.
 *
 * @example
 * ```ts ignore
 * import { loadChatTemplate, renderChat } from "./chat.ts";
 * const t = await loadChatTemplate("path/to/Qwen2.5-0.5B-Instruct");
 * if (t) console.log(renderChat(t, [{ role: "user", content: "Hi" }]));
 * ```
 */
export async function loadChatTemplate(dir: string): Promise<ChatTemplate | null> {
  if (dir.endsWith(".gguf")) {
    using file = await openGguf(dir);
    return chatTemplateFromGguf(file.metadata, `${dir} (tokenizer.chat_template)`);
  }
  const configPath = join(dir, "tokenizer_config.json");
  const configText = await readText(configPath);
  let config: Record<string, unknown> = {};
  if (configText !== null) {
    try {
      config = JSON.parse(configText);
    } catch (e) {
      throw new Error(`${configPath}: not valid JSON (${(e as Error).message})`);
    }
  }
  const specialTokens: Record<string, string> = {};
  for (const key of SPECIAL_TOKENS) {
    const text = tokenText(config[key]);
    if (text !== undefined) specialTokens[key] = text;
  }
  const jinjaPath = join(dir, "chat_template.jinja");
  const jinja = await readText(jinjaPath);
  if (jinja !== null) return { template: jinja, specialTokens, source: jinjaPath };
  const t = config.chat_template;
  if (typeof t === "string") return { template: t, specialTokens, source: configPath };
  if (Array.isArray(t)) {
    const named = t.find((x) => x?.name === "default") ?? t[0];
    if (typeof named?.template === "string") {
      return { template: named.template, specialTokens, source: `${configPath} (${named.name})` };
    }
    throw new Error(`${configPath}: chat_template is a list without a usable template`);
  }
  if (t !== undefined && t !== null) {
    throw new Error(`${configPath}: chat_template must be a string or a list of named templates`);
  }
  return null;
}

/** Options of {@linkcode chat}: generation options plus the template's. */
export interface ChatOptions extends GenerateOptions, RenderChatOptions {}

/** What {@linkcode chat} produced: the generation result and the prompt it rendered. */
export interface ChatResult extends GenerateResult {
  /** The rendered conversation, as fed to the tokenizer. */
  prompt: string;
}

/**
 * Renders `messages` with the model's chat template and generates the assistant's reply. The
 * rendered text is encoded without an added BOS (templates print `bos_token` themselves where
 * the model wants it, as transformers' tokenization of a chat does).
 *
 * @example
 * ```ts ignore
 * import { chat, loadChatTemplate } from "./chat.ts";
 * const template = (await loadChatTemplate(dir))!;
 * const reply = await chat(model, tokenizer, template, [
 *   { role: "user", content: "What is NF4?" },
 * ], { maxNewTokens: 64 });
 * console.log(reply.text);
 * ```
 */
export async function chat(
  model: LlamaModel,
  tokenizer: Tokenizer,
  template: ChatTemplate,
  messages: readonly ChatMessage[],
  options: ChatOptions = {},
): Promise<ChatResult> {
  const prompt = renderChat(template, messages, options);
  const ids = tokenizer.encode(prompt, { addBos: false });
  const result = await generate(model, tokenizer, ids, options);
  return { ...result, prompt };
}
