import assert from "node:assert/strict";
import { createStreamDecoder, createTokenizer, loadTokenizer } from "../../lib/model/tokenizer.ts";
import { randomTokenizerJson, writeRandomLlama } from "../helpers/random_llama.ts";

const TEXTS = [
  "The quick brown fox jumps over the lazy dog.",
  "café — 日本",
  "  leading spaces, tabs\tand\nnewlines  ",
  "emoji 🎉🦙 and accents: naïve résumé, ümlaut",
  "",
];

async function withModel<T>(
  fn: (dir: string) => Promise<T>,
  opts: Parameters<typeof writeRandomLlama>[1] = {},
): Promise<T> {
  const dir = await Deno.makeTempDir({ prefix: "qlab-tok-" });
  try {
    await writeRandomLlama(dir, opts);
    return await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("tokenizer: encode then decode gives the text back", () =>
  withModel(async (dir) => {
    const tok = await loadTokenizer(dir);
    assert.equal(tok.vocabSize, 300);
    assert.equal(tok.bosId, 0);
    assert.deepEqual(tok.eosIds, [1]);
    for (const text of TEXTS) {
      const ids = tok.encode(text, { addBos: false });
      assert.ok(ids.every((id) => id >= 2 && id < 300), text);
      assert.equal(tok.decode(ids), text);
    }
    // Merges make common words shorter than their bytes.
    assert.ok(tok.encode(" the", { addBos: false }).length === 1);
    assert.equal(tok.idToToken(tok.tokenToId("<s>")!), "<s>");
  }));

Deno.test("tokenizer: BOS from add_bos_token, from the post-processor, or on request", async () => {
  await withModel(async (dir) => {
    const tok = await loadTokenizer(dir);
    assert.equal(tok.addBosByDefault, true);
    assert.deepEqual(tok.encode("hi"), [0, ...tok.encode("hi", { addBos: false })]);
    assert.deepEqual(tok.encode(""), [0]);
    // Special tokens are left out of decoded text unless asked for.
    assert.equal(tok.decode(tok.encode("hi")), "hi");
    assert.equal(tok.decode([...tok.encode("hi"), 1], { skipSpecialTokens: false }), "<s>hi</s>");
  });
  await withModel(async (dir) => {
    const tok = await loadTokenizer(dir);
    assert.equal(tok.addBosByDefault, true); // Llama 3 style: probed from the post-processor
    assert.equal(tok.encode("hi")[0], 0);
  }, { bosFromPostProcessor: true });
  const json = randomTokenizerJson(300);
  const noFlag = createTokenizer(json, { bos_token: "<s>", add_bos_token: false });
  assert.equal(noFlag.addBosByDefault, false);
  assert.equal(noFlag.encode("hi", { addBos: true })[0], 0);
  const noBos = createTokenizer({ ...json, post_processor: null }, {});
  assert.equal(noBos.bosId, undefined);
  assert.throws(() => noBos.encode("hi", { addBos: true }), /has no BOS token/);
});

Deno.test("tokenizer: ids outside the vocabulary decode to nothing", () =>
  withModel(async (dir) => {
    const tok = await loadTokenizer(dir);
    const ids = tok.encode("abc", { addBos: false });
    assert.equal(tok.decode([...ids, 300, 511, -1]), "abc");
    assert.equal(tok.decode([]), "");
  }));

Deno.test("tokenizer: streamed pieces concatenate to the whole decode, without U+FFFD", () =>
  withModel(async (dir) => {
    const tok = await loadTokenizer(dir);
    for (const text of TEXTS) {
      const ids = tok.encode(text);
      const stream = createStreamDecoder(tok);
      const pieces = ids.map((id) => stream.push(id));
      pieces.push(stream.flush());
      for (const p of pieces) assert.ok(!p.includes("\uFFFD"), `${JSON.stringify(p)} in ${text}`);
      assert.equal(pieces.join(""), tok.decode(ids));
      assert.equal(pieces.join(""), text);
    }
    // A 3-byte character arrives as 3 byte tokens: nothing until the last one, then all of it.
    const ids = tok.encode("日", { addBos: false });
    assert.equal(ids.length, 3);
    const stream = createStreamDecoder(tok);
    assert.deepEqual(ids.map((id) => stream.push(id)), ["", "", "日"]);
    assert.equal(stream.flush(), "");
  }));

Deno.test("tokenizer: flush releases an unfinished character", () =>
  withModel(async (dir) => {
    const tok = await loadTokenizer(dir);
    const ids = tok.encode("a日", { addBos: false });
    const stream = createStreamDecoder(tok);
    let out = "";
    for (const id of ids.slice(0, -1)) out += stream.push(id);
    assert.equal(out, "a");
    assert.equal(stream.flush(), "\uFFFD");
  }));

Deno.test("tokenizer: a missing tokenizer.json is named", async () => {
  const dir = await Deno.makeTempDir({ prefix: "qlab-tok-" });
  try {
    await assert.rejects(loadTokenizer(dir), /tokenizer\.json: not found/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
