/**
 * Chat templates rendered by @huggingface/jinja against transformers' `apply_chat_template`
 * (tests/fixtures/chat/, made by tools/make_chat_fixtures.py): the same strings, byte for byte,
 * and the same refusals; templates found where transformers saves them; `chat()` and
 * `generate --chat` feed the rendered text to the model.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { main } from "../../cli/main.ts";
import {
  chat,
  type ChatMessage,
  chatTemplateFromGguf,
  loadChatTemplate,
  renderChat,
} from "../../lib/model/chat.ts";
import { generate } from "../../lib/model/generate.ts";
import { LlamaModel } from "../../lib/model/llama.ts";
import { loadTokenizer } from "../../lib/model/tokenizer.ts";
import { requestGpu } from "../../lib/gpu/device.ts";
import { writeRandomLlama } from "../helpers/random_llama.ts";

const FIXTURES = new URL("../fixtures/chat/", import.meta.url).pathname;

interface Case {
  name: string;
  messages: ChatMessage[];
  add_generation_prompt: boolean;
  rendered?: string;
  error?: string;
  [variable: string]: unknown;
}

for (const family of ["qwen2", "qwen3", "mistral", "phi3"]) {
  Deno.test(`chat template of ${family} renders as transformers does`, async () => {
    const fixture = JSON.parse(await Deno.readTextFile(join(FIXTURES, `${family}.json`)));
    // Found where transformers saved it, with its special tokens.
    const template = await loadChatTemplate(join(FIXTURES, family));
    assert.ok(template);
    assert.equal(template.template, await Deno.readTextFile(join(FIXTURES, `${family}.jinja`)));
    assert.deepEqual(template.specialTokens, fixture.special_tokens);
    for (const c of fixture.cases as Case[]) {
      const { name: _, messages, add_generation_prompt, rendered, error, ...variables } = c;
      const draw = (): string =>
        renderChat(template, messages, { addGenerationPrompt: add_generation_prompt, variables });
      if (error !== undefined) {
        assert.throws(draw, (e: Error) => e.message.includes(error), `${c.name}: ${error}`);
      } else {
        assert.equal(draw(), rendered, c.name);
      }
    }
  });
}

Deno.test("chat templates: tokenizer_config.json string and named list, GGUF, none", async () => {
  const dir = await Deno.makeTempDir({ prefix: "qlab-chat-" });
  try {
    const config = join(dir, "tokenizer_config.json");
    assert.equal(await loadChatTemplate(dir), null);
    await Deno.writeTextFile(config, JSON.stringify({ eos_token: "</s>" }));
    assert.equal(await loadChatTemplate(dir), null);
    await Deno.writeTextFile(
      config,
      JSON.stringify({
        bos_token: { content: "<s>", lstrip: false },
        eos_token: "</s>",
        chat_template: "{{ bos_token }}{% for m in messages %}{{ m.content }}{{ eos_token }}" +
          "{% endfor %}",
      }),
    );
    const t = (await loadChatTemplate(dir))!;
    assert.equal(renderChat(t, [{ role: "user", content: "a" }]), "<s>a</s>");
    await Deno.writeTextFile(
      config,
      JSON.stringify({
        chat_template: [
          { name: "tool_use", template: "tools" },
          { name: "default", template: "plain {{ messages | length }}" },
        ],
      }),
    );
    assert.equal(renderChat((await loadChatTemplate(dir))!, []), "plain 0");
    await Deno.writeTextFile(config, JSON.stringify({ chat_template: 3 }));
    await assert.rejects(loadChatTemplate(dir), /chat_template must be a string/);
    const gguf = chatTemplateFromGguf({ "tokenizer.chat_template": "{{ messages[0].role }}" })!;
    assert.equal(renderChat(gguf, [{ role: "user", content: "" }]), "user");
    assert.equal(chatTemplateFromGguf({}), null);
    // A GGUF file's template, with its special tokens found by id in its vocabulary.
    const path = join(dir, "model.gguf");
    await Deno.writeFile(
      path,
      ggufWithMetadata({
        "tokenizer.chat_template": "{{ bos_token }}{{ messages[0].content }}{{ eos_token }}",
        "tokenizer.ggml.tokens": ["<unk>", "<s>", "</s>", "a"],
        "tokenizer.ggml.bos_token_id": 1,
        "tokenizer.ggml.eos_token_id": 2,
      }),
    );
    const fromFile = (await loadChatTemplate(path))!;
    assert.deepEqual(fromFile.specialTokens, { bos_token: "<s>", eos_token: "</s>" });
    assert.equal(renderChat(fromFile, [{ role: "user", content: "a" }]), "<s>a</s>");
    assert.throws(
      () => renderChat({ ...gguf, template: "{% for %}" }, []),
      /chat template from GGUF metadata/,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("chat() and generate --chat feed the rendered conversation to the model", async () => {
  const dir = await Deno.makeTempDir({ prefix: "qlab-chat-model-" });
  const gpu = await requestGpu();
  try {
    await writeRandomLlama(dir, { vocab: 300 });
    await Deno.writeTextFile(
      join(dir, "chat_template.jinja"),
      "{% for m in messages %}{{ m.role }}: {{ m.content }}\n{% endfor %}" +
        "{% if add_generation_prompt %}assistant:{% endif %}",
    );
    const template = (await loadChatTemplate(dir))!;
    const tokenizer = await loadTokenizer(dir);
    const model = await LlamaModel.load(dir, { gpu, maxSeqLen: 64 });
    try {
      const messages = [{ role: "user", content: "the state of" }];
      const reply = await chat(model, tokenizer, template, messages, { maxNewTokens: 4 });
      assert.equal(reply.prompt, "user: the state of\nassistant:");
      assert.deepEqual(reply.promptTokens, tokenizer.encode(reply.prompt, { addBos: false }));
      const direct = await generate(model, tokenizer, reply.promptTokens, { maxNewTokens: 4 });
      assert.deepEqual(reply.tokens, direct.tokens);
    } finally {
      model.dispose();
    }
    assert.equal(gpu.ledger.currentBytes, 0);

    const status = await main([
      "generate",
      "--model",
      dir,
      "--chat",
      "--prompt",
      "the state of",
      "--max-tokens",
      "2",
    ]);
    assert.equal(status, 0);
    await Deno.remove(join(dir, "chat_template.jinja"));
    const errors: string[] = [];
    const write = Deno.stderr.writeSync;
    Deno.stderr.writeSync = (p: Uint8Array) => {
      errors.push(new TextDecoder().decode(p));
      return p.length;
    };
    try {
      assert.notEqual(await main(["generate", "--model", dir, "--chat"]), 0);
    } finally {
      Deno.stderr.writeSync = write;
    }
    assert.match(errors.join(""), /--chat: .* has no chat template/);
  } finally {
    gpu.destroy();
    await Deno.remove(dir, { recursive: true });
  }
});

/** A GGUF v3 file with no tensors and these metadata keys (strings, u32, string arrays). */
function ggufWithMetadata(meta: Record<string, string | number | string[]>): Uint8Array {
  const parts: Uint8Array[] = [];
  const enc = new TextEncoder();
  const u32 = (n: number) => new Uint8Array(new Uint32Array([n]).buffer);
  const u64 = (n: number) => new Uint8Array(new BigUint64Array([BigInt(n)]).buffer);
  const str = (s: string) => {
    const b = enc.encode(s);
    parts.push(u64(b.length), b);
  };
  parts.push(enc.encode("GGUF"), u32(3), u64(0), u64(Object.keys(meta).length));
  for (const [key, value] of Object.entries(meta)) {
    str(key);
    if (typeof value === "number") parts.push(u32(4), u32(value));
    else if (typeof value === "string") {
      parts.push(u32(8));
      str(value);
    } else {
      parts.push(u32(9), u32(8), u64(value.length));
      for (const v of value) str(v);
    }
  }
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) out.set(p, (o += p.length) - p.length);
  return out;
}
