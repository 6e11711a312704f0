/**
 * Corrupt files are refused with a message naming the file (and the tensor or option): the
 * safetensors format's own rules, sharded indexes, config values by their meaning, and tensors
 * the config does not account for.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { openCheckpoint } from "../../lib/model/checkpoint.ts";
import { loadLlamaConfig, parseLlamaConfig } from "../../lib/model/config.ts";
import { excerpt, parseJsonStrict } from "../../lib/model/json.ts";
import { LlamaModel } from "../../lib/model/llama.ts";
import { loadTokenizer } from "../../lib/model/tokenizer.ts";
import { firstNonFinite, openSafetensors, writeSafetensors } from "../../lib/model/safetensors.ts";
import { companionClaim, unusedTensors } from "../../lib/model/unused_tensors.ts";
import { writeRandomLlama } from "../helpers/random_llama.ts";

async function withTempDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "qlab-valid-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** A safetensors file from a header object and a data section, exactly as given. */
function rawFile(header: unknown, data: Uint8Array, headerText?: string): Uint8Array {
  const json = new TextEncoder().encode(headerText ?? JSON.stringify(header));
  const out = new Uint8Array(8 + json.length + data.length);
  new DataView(out.buffer).setBigUint64(0, BigInt(json.length), true);
  out.set(json, 8);
  out.set(data, 8 + json.length);
  return out;
}

async function refused(
  dir: string,
  name: string,
  bytes: Uint8Array,
  pattern: RegExp,
): Promise<void> {
  const path = join(dir, name);
  await Deno.writeFile(path, bytes);
  await assert.rejects(openSafetensors(path), (e: Error) => {
    assert.ok(e.message.includes(path), `message names the file: ${e.message}`);
    assert.match(e.message, pattern);
    return true;
  });
}

const f32 = (offsets: [number, number], shape = [2]) => ({
  dtype: "F32",
  shape,
  data_offsets: offsets,
});

Deno.test("safetensors: byte ranges must tile the data section exactly", () =>
  withTempDir(async (dir) => {
    const data = new Uint8Array(16);
    // The well-formed file opens.
    const ok = join(dir, "ok.safetensors");
    await Deno.writeFile(ok, rawFile({ a: f32([0, 8]), b: f32([8, 16]) }, data));
    (await openSafetensors(ok)).close();
    // Header order need not follow byte order (the format sorts by offset).
    await Deno.writeFile(ok, rawFile({ b: f32([8, 16]), a: f32([0, 8]) }, data));
    (await openSafetensors(ok)).close();

    await refused(
      dir,
      "extra.safetensors",
      rawFile({ a: f32([0, 8]), b: f32([8, 16]) }, new Uint8Array(20)),
      /4 bytes after the last tensor, b/,
    );
    await refused(
      dir,
      "gap.safetensors",
      rawFile({ a: f32([0, 8]), b: f32([12, 20]) }, new Uint8Array(20)),
      /tensor b starts at byte 12 .* tensor a ends at 8: 4 bytes belong to no tensor/,
    );
    await refused(
      dir,
      "late.safetensors",
      rawFile({ a: f32([4, 12]) }, new Uint8Array(12)),
      /tensor a starts at byte 4/,
    );
    await refused(
      dir,
      "overlap.safetensors",
      rawFile({ a: f32([0, 8]), b: f32([4, 12]) }, new Uint8Array(12)),
      /tensor b \(bytes 4\.\.12\) overlaps tensor a \(bytes 0\.\.8\)/,
    );
    await refused(
      dir,
      "shared.safetensors",
      rawFile({ a: f32([0, 8]), b: f32([0, 8]) }, new Uint8Array(8)),
      /overlaps/,
    );
    await refused(
      dir,
      "empty.safetensors",
      rawFile({}, new Uint8Array(8)),
      /8 bytes after an empty header/,
    );
  }));

Deno.test("safetensors: duplicate keys, bad metadata and deep nesting are refused", () =>
  withTempDir(async (dir) => {
    const data = new Uint8Array(8);
    await refused(
      dir,
      "dup.safetensors",
      rawFile(null, data, '{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"a":{}}'),
      /duplicate key "a"/,
    );
    await refused(
      dir,
      "meta.safetensors",
      rawFile({ __metadata__: { format: "pt", n: 3 }, a: f32([0, 8]) }, data),
      /__metadata__ value of "n" must be a string, got 3/,
    );
    await refused(
      dir,
      "meta2.safetensors",
      rawFile({ __metadata__: ["pt"], a: f32([0, 8]) }, data),
      /__metadata__ must be an object of strings/,
    );
    // 20 million levels of nesting (40 MB): refused at once, not after minutes.
    const deep = `{"a":{"dtype":"F32","shape":${"[".repeat(20_000_000)}`;
    const t0 = performance.now();
    await refused(dir, "deep.safetensors", rawFile(null, data, deep), /nesting deeper than 8/);
    assert.ok(performance.now() - t0 < 5000, "deep nesting refused within 5 s");
    // A 10-million-character dtype is quoted in a few dozen characters.
    const long = rawFile({ a: { dtype: "F".repeat(1e7), shape: [2], data_offsets: [0, 8] } }, data);
    const path = join(dir, "long.safetensors");
    await Deno.writeFile(path, long);
    await assert.rejects(openSafetensors(path), (e: Error) => {
      assert.match(e.message, /unknown dtype "FFFF.*… \(10000000 characters\)/);
      assert.ok(e.message.length < 400, `short message: ${e.message.length} characters`);
      return true;
    });
  }));

Deno.test("safetensors: a header one byte short or bytes inserted in the data are caught", () =>
  withTempDir(async (dir) => {
    const good = join(dir, "good.safetensors");
    await writeSafetensors(good, {
      a: { dtype: "F16", shape: [3], data: new Float32Array([1, 2, 3]) },
      b: { dtype: "F16", shape: [5], data: new Float32Array([4, 5, 6, 7, 8]) },
    }, { format: "pt" });
    const bytes = await Deno.readFile(good);
    const headerLen = Number(new DataView(bytes.buffer).getBigUint64(0, true));
    // The writer pads the header with spaces: one byte less still parses, but shifts the data.
    assert.equal(bytes[8 + headerLen - 1], 0x20);
    const short = bytes.slice();
    new DataView(short.buffer).setBigUint64(0, BigInt(headerLen - 1), true);
    await refused(dir, "short.safetensors", short, /1 bytes after the last tensor/);

    const inserted = new Uint8Array(bytes.length + 2);
    const at = 8 + headerLen + 4;
    inserted.set(bytes.subarray(0, at));
    inserted.set(bytes.subarray(at), at + 2);
    await refused(dir, "inserted.safetensors", inserted, /2 bytes after the last tensor, b/);
  }));

Deno.test("safetensors: NaN and infinity in weights are refused as they are read", () =>
  withTempDir(async (dir) => {
    const path = join(dir, "nan.safetensors");
    const w = new Float32Array(12).fill(0.5);
    w[7] = NaN;
    w[9] = NaN;
    const inf = new Float32Array(5).fill(1);
    inf[4] = -Infinity;
    await writeSafetensors(path, {
      "layer.weight": { dtype: "F16", shape: [3, 4], data: w },
      "norm.weight": { dtype: "BF16", shape: [5], data: inf },
      "ok.weight": { dtype: "F32", shape: [2], data: new Float32Array([1, 2]) },
      "ids": { dtype: "U8", shape: [2], data: new Uint8Array([255, 255]) },
    });
    using st = await openSafetensors(path);
    await assert.rejects(
      st.readF16Bits("layer.weight"),
      new RegExp(
        `${path.replaceAll(".", "\\.")}: tensor layer\\.weight holds 2 non-finite values ` +
          `\\(first: NaN at index \\[1, 3\\] of shape \\[3, 4\\]\\)`,
      ),
    );
    await assert.rejects(
      st.readF32("norm.weight"),
      /norm\.weight holds 1 non-finite value \(first: -Infinity at index \[4\]/,
    );
    assert.deepEqual([...await st.readF32("ok.weight")], [1, 2]);
    assert.deepEqual([...await st.readRaw("ids")], [255, 255]); // not floating point: not checked
    using unchecked = await openSafetensors(path, { checkFinite: false });
    assert.ok(Number.isNaN((await unchecked.readF32("layer.weight"))[7]));
  }));

Deno.test("firstNonFinite finds the first bad value of every float dtype, at any position", () => {
  const asBytes = (a: ArrayBufferView) => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
  for (const n of [1, 2, 3, 4097, 9000]) {
    for (const at of [0, Math.floor(n / 2), n - 1]) {
      const f32 = new Float32Array(n).fill(65504);
      f32[at] = Infinity;
      assert.equal(firstNonFinite(asBytes(f32), "F32"), at, `F32 n=${n} at=${at}`);
      const f64 = new Float64Array(n).fill(-1e300);
      f64[at] = NaN;
      assert.equal(firstNonFinite(asBytes(f64), "F64"), at, `F64 n=${n} at=${at}`);
      const f16 = new Uint16Array(n).fill(0x7bff); // largest finite f16
      f16[at] = 0xfc00; // -Infinity
      assert.equal(firstNonFinite(asBytes(f16), "F16"), at, `F16 n=${n} at=${at}`);
      const bf16 = new Uint16Array(n).fill(0xff7f); // most negative finite bf16
      bf16[at] = 0x7fc1; // NaN
      assert.equal(firstNonFinite(asBytes(bf16), "BF16"), at, `BF16 n=${n} at=${at}`);
    }
    assert.equal(firstNonFinite(asBytes(new Uint16Array(n).fill(0x7bff)), "F16"), -1);
    assert.equal(firstNonFinite(asBytes(new Uint16Array(n).fill(0xff7f)), "BF16"), -1);
  }
  assert.equal(firstNonFinite(new Uint8Array([0xff, 0xff]), "I16"), -1);
});

Deno.test("index: weight_map is checked entry by entry, and shards hold only what it lists", () =>
  withTempDir(async (dir) => {
    await writeRandomLlama(dir, { layers: 1, sharded: true });
    const indexPath = join(dir, "model.safetensors.index.json");
    const index = JSON.parse(await Deno.readTextFile(indexPath));
    const write = (value: unknown) => Deno.writeTextFile(indexPath, JSON.stringify(value));
    const names = Object.keys(index.weight_map);

    await write({ ...index, weight_map: { ...index.weight_map, [names[0]]: 7 } });
    await assert.rejects(
      openCheckpoint(dir),
      new RegExp(`index\\.json: weight_map entry of tensor ${names[0]} must be a shard file name`),
    );
    await write({ ...index, weight_map: { ...index.weight_map, [names[0]]: "../x.safetensors" } });
    await assert.rejects(openCheckpoint(dir), /index\.json: .*not a file name in the model dir/);
    await write({ metadata: {} });
    await assert.rejects(openCheckpoint(dir), /index\.json: weight_map must be an object/);
    await write({ weight_map: {} });
    await assert.rejects(openCheckpoint(dir), /index\.json: weight_map lists no tensors/);
    const { [names[0]]: _dropped, ...rest } = index.weight_map;
    await write({ ...index, weight_map: rest });
    await assert.rejects(
      openCheckpoint(dir),
      new RegExp(`index\\.json: shard .* holds tensor ${names[0]}, which the index does not list`),
    );
    await Deno.writeTextFile(indexPath, `{"weight_map": {"a": "x", "a": "y"}}`);
    await assert.rejects(openCheckpoint(dir), /index\.json: invalid JSON .*duplicate key "a"/);
    await write(index);
    (await openCheckpoint(dir)).close();
  }));

Deno.test("directories: missing ones and files say so plainly", () =>
  withTempDir(async (dir) => {
    const missing = join(dir, "nope");
    await assert.rejects(openCheckpoint(missing), new RegExp(`${missing}: no such directory`));
    await assert.rejects(loadLlamaConfig(missing), new RegExp(`${missing}: no such directory`));
    const file = join(dir, "file");
    await Deno.writeTextFile(file, "x");
    await assert.rejects(openCheckpoint(file), /is a file, not a model directory/);
    await Deno.mkdir(join(dir, "model.safetensors"));
    await assert.rejects(openCheckpoint(dir), /model\.safetensors: is a directory/);
  }));

const BASE = {
  model_type: "llama",
  hidden_size: 64,
  intermediate_size: 128,
  num_hidden_layers: 2,
  num_attention_heads: 4,
  vocab_size: 300,
};

Deno.test("config: values are checked by their meaning, and bad ones quoted briefly", () => {
  const bad: [Record<string, unknown>, RegExp][] = [
    [{ rms_norm_eps: 0 }, /rms_norm_eps must be a number between 1e-30 and 1, got 0/],
    [{ rms_norm_eps: -1e-5 }, /rms_norm_eps .* got -0\.00001/],
    [{ rms_norm_eps: Infinity }, /rms_norm_eps .* got Infinity/],
    [{ rope_theta: 0 }, /rope_theta must be a number greater than 1/],
    [{ rope_theta: -10000 }, /rope_theta .* got -10000/],
    [{ rope_theta: NaN }, /rope_theta .* got NaN/],
    [
      { rope_parameters: { rope_type: "default", rope_theta: -1 } },
      /rope_parameters\.rope_theta must/,
    ],
    [{
      rope_scaling: {
        rope_type: "llama3",
        factor: 1e-300,
        low_freq_factor: 1,
        high_freq_factor: 4,
        original_max_position_embeddings: 8192,
      },
    }, /rope_scaling\.factor must be a number of at least 1.*got 1e-300/],
    [{ rope_scaling: [] }, /rope_scaling must be an object or null/],
    [{ tie_word_embeddings: "true" }, /tie_word_embeddings must be true or false, got "true"/],
    [{ attention_bias: 0 }, /attention_bias must be true or false, got 0/],
    [{ num_hidden_layers: 2.5 }, /num_hidden_layers must be a positive integer/],
    [{ num_hidden_layers: "2" }, /num_hidden_layers must be a positive integer .*got "2"/],
    [{ vocab_size: 1e12 }, /vocab_size must be a positive integer \(at most 2147483647\)/],
    [{ eos_token_id: -1 }, /eos_token_id -1 is not a token id/],
    [{ torch_dtype: 16 }, /torch_dtype must be a string/],
    [{ architectures: "LlamaForCausalLM" }, /architectures must be a list of names/],
    [{ hidden_act: "x".repeat(1e7) }, /hidden_act "xxx.*… \(10000000 characters\) is not/],
  ];
  for (const [patch, pattern] of bad) {
    assert.throws(() => parseLlamaConfig({ ...BASE, ...patch }, "m/config.json"), (e: Error) => {
      assert.match(e.message, /^m\/config\.json: /);
      assert.match(e.message, pattern);
      assert.ok(e.message.length < 300, `short: ${e.message.slice(0, 300)}`);
      return true;
    }, JSON.stringify(patch).slice(0, 80));
  }
  assert.equal(parseLlamaConfig({ ...BASE, tie_word_embeddings: true }).tieWordEmbeddings, true);
  assert.equal(parseLlamaConfig({ ...BASE, tie_word_embeddings: null }).tieWordEmbeddings, false);
});

Deno.test("config.json: duplicate keys and deep nesting are refused, naming the file", () =>
  withTempDir(async (dir) => {
    const path = join(dir, "config.json");
    await Deno.writeTextFile(path, '{"num_hidden_layers": 2, "num_hidden_layers": 20}');
    await assert.rejects(loadLlamaConfig(dir), /config\.json: invalid JSON .*duplicate key/);
    await Deno.writeTextFile(path, `{"x": ${"[".repeat(1_000_000)}`);
    await assert.rejects(loadLlamaConfig(dir), /config\.json: invalid JSON .*nesting deeper/);
    // A 1e400 in the file reads as Infinity, and is printed as such.
    await Deno.writeTextFile(path, JSON.stringify(BASE).replace("}", `,"rope_theta":1e400}`));
    await assert.rejects(loadLlamaConfig(path), /config\.json: rope_theta .* got Infinity/);
  }));

Deno.test("checkpoint tensors the config does not account for are refused unless allowed", () =>
  withTempDir(async (dir) => {
    await writeRandomLlama(dir, { layers: 3, hidden: 32, heads: 2, kvHeads: 1, intermediate: 64 });
    const configPath = join(dir, "config.json");
    const config = JSON.parse(await Deno.readTextFile(configPath));
    await Deno.writeTextFile(configPath, JSON.stringify({ ...config, num_hidden_layers: 2 }));
    await assert.rejects(LlamaModel.load(dir), (e: Error) => {
      assert.match(e.message, new RegExp(`^${dir}: 9 tensors are not used by the model`));
      assert.match(e.message, /model\.layers\.2\.input_layernorm\.weight/);
      assert.match(e.message, /num_hidden_layers 2, but the checkpoint has layers up to 2/);
      assert.match(e.message, /allowUnusedTensors/);
      return true;
    });
    // Companion tensors of another format are claimed by extending the claims, not a list.
    const used = new Set(["a.weight"]);
    assert.deepEqual(
      unusedTensors(["a.weight", "a.weight.absmax", "b.weight.absmax"], [
        (n) => used.has(n),
        companionClaim(used, [".absmax", ".quant_map"]),
      ]),
      ["b.weight.absmax"],
    );
  }));

Deno.test("parseJsonStrict agrees with JSON.parse on valid text and excerpt is bounded", () => {
  for (
    const text of [
      '{"a":[1,-2.5e-3,{"b":null}],"c":"x\\u00e9\\n\\"","d":true,"e":false,"f":{}}',
      "[]",
      ' "s" ',
      "0",
      '{"__proto__": 1}',
    ]
  ) {
    assert.deepEqual(parseJsonStrict(text, "t"), JSON.parse(text));
  }
  for (const text of ["[1,]", "{", "01", '"\\x"', "[1 2]", "", "nul", '"a', "1.", "{'a':1}"]) {
    assert.throws(() => parseJsonStrict(text, "t.json"), /^Error: t\.json: invalid JSON/);
  }
  assert.equal(
    excerpt([Infinity, -Infinity, NaN, undefined]),
    "[Infinity, -Infinity, NaN, undefined]",
  );
  assert.ok(excerpt(new Array(1e6).fill("abc")).length < 120);
  assert.ok(excerpt({ a: { b: { c: { d: { e: { f: 1 } } } } } }).length < 60);
});

Deno.test("tokenizer.json: ids are bounded by the file's size, and entries are typed", () =>
  withTempDir(async (dir) => {
    await writeRandomLlama(dir, { layers: 1 });
    const path = join(dir, "tokenizer.json");
    const good = JSON.parse(await Deno.readTextFile(path));
    const write = (json: unknown) => Deno.writeTextFile(path, JSON.stringify(json));
    const withModel = (patch: Record<string, unknown>) => ({
      ...good,
      model: { ...good.model, ...patch },
    });
    const vocab = good.model.vocab as Record<string, number>;
    const cases: [unknown, RegExp][] = [
      // One id of 1e9 used to cost 95 s; now it is refused at once.
      [withModel({ vocab: { ...vocab, "x": 1e9 } }), /id of token "x" must be an integer from 0/],
      [withModel({ vocab: { ...vocab, "x": -1 } }), /got -1/],
      [withModel({ vocab: { ...vocab, "x": 1.5 } }), /got 1\.5/],
      [withModel({ vocab: { ...vocab, "x": "3" } }), /got "3"/],
      [withModel({ vocab: { ...vocab, "x": 5 } }), /gives id 5 to both/],
      [withModel({ vocab: [] }), /model\.vocab must be an object of token ids/],
      [withModel({ merges: [3] }), /model\.merges entry 0 must be/],
      [{ ...good, added_tokens: [{ id: 1e9, content: "<s>" }] }, /added_tokens entry 0/],
      [{ ...good, added_tokens: {} }, /added_tokens must be a list/],
      [{ ...good, model: null }, /model must be an object/],
    ];
    for (const [json, pattern] of cases) {
      await write(json);
      const t0 = performance.now();
      await assert.rejects(loadTokenizer(dir), (e: Error) => {
        assert.ok(e.message.startsWith(`${path}: `), e.message);
        assert.match(e.message, pattern);
        return true;
      });
      assert.ok(performance.now() - t0 < 2000, "refused within 2 s");
    }
    await Deno.writeTextFile(path, '{"model": {"vocab": {"a": 0, "a": 1}}}');
    await assert.rejects(loadTokenizer(dir), /tokenizer\.json: invalid JSON .*duplicate key "a"/);
    await write(good);
    assert.equal((await loadTokenizer(dir)).vocabSize, 300);
    await assert.rejects(loadTokenizer(join(dir, "nope")), /nope: no such directory/);
  }));
