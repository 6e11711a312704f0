/**
 * Seeded fuzzing of the loaders: safetensors files, sharded indexes, config.json and
 * tokenizer.json, mutated a few thousand times in all.
 *
 * Two kinds of mutation:
 * - targeted ones that certainly make the file corrupt (a shifted offset, bytes inserted in the
 *   data, a duplicate key, a negative size, an id past the vocabulary, truncation, ...): each
 *   must be refused, with an `Error` whose message names the mutated file;
 * - random byte edits (flips, insertions, deletions, digit changes), which may or may not leave
 *   a valid file: each is either refused as above, or accepted and then holds every guarantee
 *   the README states for an accepted file.
 *
 * Nothing may fail in another way (a bare TypeError or RangeError, a message without the file),
 * and no input may take longer than PER_INPUT_MS. Set QLAB_FUZZ_SEED to explore other inputs;
 * the counts keep the whole test within about 20 s on the CI machine's two cores.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { openCheckpoint } from "../../lib/model/checkpoint.ts";
import { loadLlamaConfig, ropeInverseFrequencies } from "../../lib/model/config.ts";
import { openSafetensors, writeSafetensors } from "../../lib/model/safetensors.ts";
import { loadTokenizer } from "../../lib/model/tokenizer.ts";
import { makeRng } from "../helpers/random.ts";
import { writeRandomLlama } from "../helpers/random_llama.ts";

const SEED = Number(Deno.env.get("QLAB_FUZZ_SEED") ?? 20261202);
/** No single input may take longer than this (the slowest seen is a few tens of ms). */
const PER_INPUT_MS = 2000;
const COUNTS = { safetensors: 2000, index: 400, config: 1000, tokenizer: 500 };

type Rng = () => number;
/** The targeted mutation last made, for failure messages. */
let kind = "";
const pick = <T>(rng: Rng, xs: readonly T[]): T => xs[Math.floor(rng() * xs.length)];
const int = (rng: Rng, n: number): number => Math.floor(rng() * n);

/** Random byte-level edits: what a bad disk, a bad download or a bad editor does. */
function mutateBytes(rng: Rng, bytes: Uint8Array, from = 0, to = bytes.length): Uint8Array {
  const at = from + int(rng, Math.max(1, to - from));
  const b = bytes.slice();
  switch (int(rng, 7)) {
    case 0: // flip a bit
      b[at] ^= 1 << int(rng, 8);
      return b;
    case 1: // any byte
      b[at] = int(rng, 256);
      return b;
    case 2: { // a digit for another (valid JSON, other numbers)
      for (let i = 0; i < 64; i++) {
        const j = from + int(rng, Math.max(1, to - from));
        if (b[j] >= 0x30 && b[j] <= 0x39) {
          b[j] = 0x30 + int(rng, 10);
          break;
        }
      }
      return b;
    }
    case 3: { // insert bytes
      const n = 1 + int(rng, 4);
      const out = new Uint8Array(b.length + n);
      out.set(b.subarray(0, at));
      for (let i = 0; i < n; i++) out[at + i] = pick(rng, [0x20, 0x22, 0x30, 0x2c, 0x7b, 0x5b, 0]);
      out.set(b.subarray(at), at + n);
      return out;
    }
    case 4: { // delete bytes
      const n = 1 + int(rng, 4);
      return new Uint8Array([...b.subarray(0, at), ...b.subarray(at + n)]);
    }
    case 5: // truncate
      return b.slice(0, at);
    default: { // swap two bytes
      const j = from + int(rng, Math.max(1, to - from));
      [b[at], b[j]] = [b[j], b[at]];
      return b;
    }
  }
}

/** The three slowest inputs of the current test, for its summary line. */
let slowest: [number, string][] = [];
function slowestText(): string {
  const text = `slowest ${
    slowest.map(([ms, label]) => `${ms.toFixed(0)} ms (${label})`).join(", ")
  }`;
  slowest = [];
  return text;
}

/** JSON text cut short somewhere before its end. */
function truncated(rng: Rng, text: string): string {
  return text.slice(0, int(rng, text.length - 1));
}

/** The outcome of one input: refused (checked here) or accepted (the caller checks it). */
async function attempt<T>(
  path: string,
  label: string,
  load: () => Promise<T>,
  mustRefuse: boolean,
): Promise<T | undefined> {
  const t0 = performance.now();
  let result: T | undefined;
  let error: unknown;
  try {
    result = await load();
  } catch (e) {
    error = e;
  }
  const ms = performance.now() - t0;
  slowest.push([ms, label]);
  slowest.sort((a, b) => b[0] - a[0]).splice(3);
  assert.ok(ms < PER_INPUT_MS, `${label}: took ${ms.toFixed(0)} ms`);
  if (error === undefined) {
    assert.ok(!mustRefuse, `${label}: a corrupt input was accepted`);
    return result;
  }
  assert.ok(error instanceof Error, `${label}: threw a non-Error ${String(error)}`);
  assert.ok(
    !(error instanceof TypeError || error instanceof RangeError || error instanceof SyntaxError),
    `${label}: a bare ${error.name}: ${error.message}`,
  );
  assert.ok(
    error.message.includes(path),
    `${label}: message does not name ${path}: ${error.message}`,
  );
  assert.ok(error.message.length < 1000, `${label}: message of ${error.message.length} characters`);
  return undefined;
}

function headerOf(bytes: Uint8Array): { header: Record<string, unknown>; len: number } {
  const len = Number(new DataView(bytes.buffer, bytes.byteOffset).getBigUint64(0, true));
  return { header: JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + len))), len };
}

function fileWith(header: unknown, data: Uint8Array, rawHeader?: string): Uint8Array {
  const json = new TextEncoder().encode(rawHeader ?? JSON.stringify(header));
  const out = new Uint8Array(8 + json.length + data.length);
  new DataView(out.buffer).setBigUint64(0, BigInt(json.length), true);
  out.set(json, 8);
  out.set(data, 8 + json.length);
  return out;
}

type Entry = { dtype: string; shape: number[]; data_offsets: [number, number] };

/** Header edits that break one of the format's rules for certain. */
function corruptHeader(rng: Rng, bytes: Uint8Array): Uint8Array {
  const { header, len } = headerOf(bytes);
  const data = bytes.slice(8 + len);
  const names = Object.keys(header).filter((k) => k !== "__metadata__");
  const h = structuredClone(header) as Record<string, unknown>;
  const name = pick(rng, names);
  const e = h[name] as Entry;
  switch (int(rng, 12)) {
    case 0: { // shift one range (gap, overlap or overrun)
      kind = "0 shift one range (gap, overlap or overrun)";
      const d = pick(rng, [-4, -2, -1, 1, 2, 4, 1000]);
      e.data_offsets = [e.data_offsets[0] + d, e.data_offsets[1] + d];
      if (e.data_offsets[0] < 0) {
        e.data_offsets = [e.data_offsets[0] - 2 * d, e.data_offsets[1] - 2 * d];
      }
      return fileWith(h, data);
    }
    case 1: // two tensors share a range
      kind = "1 two tensors share a range";
      (h[names[(names.indexOf(name) + 1) % names.length]] as Entry).data_offsets = [
        ...e.data_offsets,
      ];
      return fileWith(h, data);
    case 2: // a size that disagrees with the bytes
      kind = "2 a size that disagrees with the bytes";
      e.shape = e.shape.includes(0) ? [1] : [...e.shape, 2];
      return fileWith(h, data);
    case 3: // bad shapes
      kind = "3 bad shapes";
      e.shape = pick(rng, [[-1], [1.5], ["2"], [[2]], null, [2 ** 60, 2 ** 60]]) as number[];
      return fileWith(h, data);
    case 4:
      kind = "4";
      e.dtype = pick(rng, ["F15", "f16", "", "BF16x"]);
      return fileWith(h, data);
    case 5: // metadata that is not string -> string
      kind = "5 metadata that is not string -> string";
      h.__metadata__ = pick(rng, [{ format: 1 }, { a: null }, ["pt"], "pt", { a: { b: "c" } }]);
      return fileWith(h, data);
    case 6: { // a duplicate key
      kind = "6 a duplicate key";
      const text = JSON.stringify(h);
      return fileWith(
        null,
        data,
        text.replace("{", `{${JSON.stringify(name)}:${JSON.stringify(e)},`),
      );
    }
    case 7: // bytes after the last tensor
      kind = "7 bytes after the last tensor";
      return fileWith(h, new Uint8Array([...data, ...new Uint8Array(1 + int(rng, 9))]));
    case 8: { // bytes inserted inside the data
      kind = "8 bytes inserted inside the data";
      const at = int(rng, data.length);
      const n = 1 + int(rng, 4);
      return fileWith(
        h,
        new Uint8Array([...data.subarray(0, at), ...new Uint8Array(n), ...data.subarray(at)]),
      );
    }
    case 9: { // the length field off by a few (one short leaves valid JSON, data shifted)
      kind = "9 the length field off by a few (one short leaves valid JSON, data shifted)";
      const out = bytes.slice();
      const d = pick(rng, [-3, -2, -1, 1, 2, 3]);
      new DataView(out.buffer).setBigUint64(0, BigInt(len + d), true);
      return out;
    }
    case 10: // a tensor removed (its bytes stay)
      kind = "10 a tensor removed (its bytes stay)";
      delete h[names.find((n) => n !== "empty" && n === name) ?? names[0]];
      return fileWith(h, data);
    default: // deep nesting
      kind = "default deep nesting";
      return fileWith(
        null,
        data,
        `{"a":{"dtype":"F32","shape":${"[".repeat(1000 + int(rng, 100000))}`,
      );
  }
}

/** What an accepted safetensors file guarantees: ranges tile the data, every tensor reads. */
async function checkAcceptedSafetensors(path: string, size: number): Promise<void> {
  using st = await openSafetensors(path);
  const infos = [...st.tensors.values()].sort((a, b) => a.begin - b.begin);
  let at = 0;
  for (const info of infos) {
    assert.equal(info.begin, at, `${path}: accepted with a gap or overlap at ${info.name}`);
    at = info.end;
  }
  assert.equal(st.dataOffset + at, size, `${path}: accepted with bytes left over`);
  for (const [key, value] of Object.entries(st.metadata)) {
    assert.equal(typeof value, "string", `${path}: metadata ${key} is not a string`);
  }
  for (const info of infos) {
    try {
      if (["F16", "BF16", "F32"].includes(info.dtype)) await st.readF32(info.name);
      else await st.readRaw(info.name);
    } catch (e) {
      // A mutated float may be NaN: refused when read, naming the file.
      assert.ok((e as Error).message.includes(path), (e as Error).message);
    }
  }
}

Deno.test("fuzz: safetensors files", async () => {
  const dir = await Deno.makeTempDir({ prefix: "qlab-fuzz-st-" });
  try {
    const rng = makeRng(SEED);
    const base = join(dir, "base.safetensors");
    await writeSafetensors(base, {
      "model.embed_tokens.weight": {
        dtype: "F16",
        shape: [6, 4],
        data: new Float32Array(24).map((_, i) => i / 8),
      },
      "model.norm.weight": { dtype: "F32", shape: [4], data: new Float32Array([1, 2, 3, 4]) },
      "lm_head.weight": { dtype: "BF16", shape: [3, 4], data: new Float32Array(12).fill(0.5) },
      "ids": { dtype: "I32", shape: [2], data: new Uint8Array(8) },
      "empty": { dtype: "F16", shape: [0, 4], data: new Uint16Array(0) },
    }, { format: "pt" });
    const bytes = await Deno.readFile(base);
    const headerEnd = 8 + headerOf(bytes).len;
    const path = join(dir, "m.safetensors");
    let refused = 0;
    for (let i = 0; i < COUNTS.safetensors; i++) {
      const targeted = rng() < 0.4;
      const mutated = targeted
        ? corruptHeader(rng, bytes)
        : rng() < 0.75
        ? mutateBytes(rng, bytes, 0, headerEnd)
        : mutateBytes(rng, bytes);
      await Deno.writeFile(path, mutated);
      const label = `safetensors #${i} (${targeted ? `targeted ${kind}` : "random"})`;
      const opened = await attempt(path, label, () => openSafetensors(path), targeted);
      if (opened) {
        opened.close();
        await checkAcceptedSafetensors(path, mutated.length);
      } else refused++;
    }
    console.log(`  ${COUNTS.safetensors} inputs, ${refused} refused; ${slowestText()}`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("fuzz: sharded indexes", async () => {
  const dir = await Deno.makeTempDir({ prefix: "qlab-fuzz-idx-" });
  try {
    const rng = makeRng(SEED + 1);
    await writeRandomLlama(dir, {
      layers: 1,
      hidden: 16,
      heads: 2,
      kvHeads: 1,
      intermediate: 32,
      sharded: true,
    });
    const path = join(dir, "model.safetensors.index.json");
    const text = await Deno.readTextFile(path);
    const index = JSON.parse(text);
    const names = Object.keys(index.weight_map);
    const shards = [...new Set(Object.values(index.weight_map))] as string[];
    const all = new Set(names);
    let refused = 0;
    for (let i = 0; i < COUNTS.index; i++) {
      const targeted = rng() < 0.5;
      let content: string | Uint8Array;
      if (targeted) {
        const x = structuredClone(index);
        const name = pick(rng, names);
        switch (int(rng, 8)) {
          case 0:
            kind = "0";
            x.weight_map[name] = pick(rng, [7, null, [], { a: 1 }, true]);
            break;
          case 1:
            kind = "1";
            x.weight_map[name] = pick(rng, [
              "missing.safetensors",
              "../" + shards[0],
              "/etc/passwd",
              "",
              ".",
            ]);
            break;
          case 2: // mapped to the other shard, which lacks it
            kind = "2 mapped to the other shard, which lacks it";
            x.weight_map[name] = shards.find((s) => s !== x.weight_map[name]);
            break;
          case 3: // left out of the map: its shard holds a tensor nobody lists
            kind = "3 left out of the map: its shard holds a tensor nobody lists";
            delete x.weight_map[name];
            break;
          case 4:
            kind = "4";
            x.weight_map = pick(rng, [null, [], "x", {}]);
            break;
          case 5:
            kind = "5";
            x.metadata = pick(rng, [[], "x", 3]);
            break;
          case 6: {
            kind = "6";
            const t = JSON.stringify(x);
            content = t.replace(`"weight_map":{`, `"weight_map":{${JSON.stringify(name)}:"x",`);
            break;
          }
          default:
            kind = "default";
            content = truncated(rng, JSON.stringify(x));
        }
        content ??= JSON.stringify(x);
      } else {
        content = mutateBytes(rng, new TextEncoder().encode(text));
      }
      if (typeof content === "string") await Deno.writeTextFile(path, content);
      else await Deno.writeFile(path, content);
      const label = `index #${i} (${targeted ? `targeted ${kind}` : "random"})`;
      const ckpt = await attempt(path, label, () => openCheckpoint(dir), targeted);
      if (ckpt) {
        // Accepted: exactly the tensors the shards hold, each where the index says.
        assert.deepEqual(new Set(ckpt.names()), all, `${label}: accepted with other tensors`);
        for (const n of names) ckpt.info(n);
        ckpt.close();
      } else refused++;
    }
    console.log(`  ${COUNTS.index} inputs, ${refused} refused; ${slowestText()}`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("fuzz: config.json", async () => {
  const dir = await Deno.makeTempDir({ prefix: "qlab-fuzz-cfg-" });
  try {
    const rng = makeRng(SEED + 2);
    const { config } = await writeRandomLlama(dir, {
      layers: 1,
      hidden: 16,
      heads: 2,
      kvHeads: 1,
      intermediate: 32,
      extraConfig: {
        rope_scaling: {
          rope_type: "llama3",
          factor: 8,
          low_freq_factor: 1,
          high_freq_factor: 4,
          original_max_position_embeddings: 64,
        },
      },
    });
    const path = join(dir, "config.json");
    const text = JSON.stringify(config, null, 2);
    const BAD: Record<string, unknown[]> = {
      hidden_size: [0, -16, 16.5, "16", null, 1e300, true],
      num_hidden_layers: [0, -1, 1.5, "1", 2 ** 53],
      num_attention_heads: [0, -2, 2.5, "2", 3],
      num_key_value_heads: [0, -1, 0.5, "1", 3],
      intermediate_size: [0, -32, "32", 1.25],
      vocab_size: [0, -300, "300", 3e9],
      rms_norm_eps: [0, -1e-5, "1e-5", 1, 1e-40, true],
      rope_theta: [0, -10000, 1, 0.5, "10000", 1e40],
      tie_word_embeddings: ["true", "false", 1, 0, []],
      attention_bias: ["false", 0],
      max_position_embeddings: [0, -1, 1.5],
      eos_token_id: [-1, "1", [1, "2"], 1.5],
      hidden_act: ["gelu", 3],
      model_type: [3],
    };
    const SCALING_BAD: Record<string, unknown[]> = {
      factor: [1e-300, 0, -8, 0.5, "8", 1e300],
      low_freq_factor: [0, -1, "1", 4],
      high_freq_factor: [0, 1, "4"],
      original_max_position_embeddings: [0, -64, "64"],
    };
    let refused = 0;
    for (let i = 0; i < COUNTS.config; i++) {
      const targeted = rng() < 0.5;
      let content: string | Uint8Array;
      if (targeted) {
        const x = structuredClone(config) as Record<string, unknown>;
        const k = int(rng, 6);
        kind = `kind ${k}`;
        if (k <= 2) {
          const key = pick(rng, Object.keys(BAD));
          x[key] = pick(rng, BAD[key]);
          kind = `${key}: ${JSON.stringify(x[key])}`;
        } else if (k === 3) {
          const key = pick(rng, Object.keys(SCALING_BAD));
          const v = pick(rng, SCALING_BAD[key]);
          (x.rope_scaling as Record<string, unknown>)[key] = v;
          kind = `rope_scaling.${key}: ${JSON.stringify(v)}`;
        } else if (k === 4) {
          // a duplicate key, or a value 1e400 (read as Infinity)
          content = rng() < 0.5
            ? JSON.stringify(x).replace("{", `{"vocab_size":300,`)
            : JSON.stringify(x).replace(/"rms_norm_eps":[^,]*/, `"rms_norm_eps":1e400`);
        } else {
          content = truncated(rng, JSON.stringify(x));
        }
        content ??= JSON.stringify(x);
      } else {
        content = mutateBytes(rng, new TextEncoder().encode(text));
      }
      if (typeof content === "string") await Deno.writeTextFile(path, content);
      else await Deno.writeFile(path, content);
      const label = `config #${i} (${targeted ? `targeted ${kind}` : "random"})`;
      const c = await attempt(path, label, () => loadLlamaConfig(dir), targeted);
      if (c) {
        // Accepted: every value means what the forward pass needs.
        for (
          const k of ["hiddenSize", "numLayers", "numHeads", "numKvHeads", "vocabSize"] as const
        ) {
          assert.ok(Number.isSafeInteger(c[k]) && c[k] > 0, `${label}: ${k} ${c[k]}`);
        }
        assert.ok(c.rmsNormEps > 0 && c.rmsNormEps < 1, `${label}: eps ${c.rmsNormEps}`);
        assert.ok(c.ropeTheta > 1 && Number.isFinite(c.ropeTheta), `${label}: theta`);
        assert.equal(typeof c.tieWordEmbeddings, "boolean");
        assert.equal(c.numHeads % c.numKvHeads, 0);
        assert.ok(ropeInverseFrequencies(c).every((f) => Number.isFinite(f) && f > 0), label);
      } else refused++;
    }
    console.log(`  ${COUNTS.config} inputs, ${refused} refused; ${slowestText()}`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("fuzz: tokenizer.json", async () => {
  const dir = await Deno.makeTempDir({ prefix: "qlab-fuzz-tok-" });
  try {
    const rng = makeRng(SEED + 3);
    await writeRandomLlama(dir, { layers: 1, hidden: 16, heads: 2, kvHeads: 1, intermediate: 32 });
    const path = join(dir, "tokenizer.json");
    const text = await Deno.readTextFile(path);
    const json = JSON.parse(text);
    const tokens = Object.keys(json.model.vocab);
    const limit = tokens.length + json.added_tokens.length; // ids must stay below
    let refused = 0;
    for (let i = 0; i < COUNTS.tokenizer; i++) {
      const targeted = rng() < 0.5;
      let content: string | Uint8Array;
      if (targeted) {
        const x = structuredClone(json);
        const token = pick(rng, tokens);
        switch (int(rng, 7)) {
          case 0:
            kind = "0";
            x.model.vocab[token] = pick(rng, [1e9, limit, 2 ** 40, -1, 1.5, "3", null]);
            break;
          case 1: // two tokens, one id
            kind = "1 two tokens, one id";
            x.model.vocab[token] = x.model.vocab[pick(rng, tokens.filter((t) => t !== token))];
            break;
          case 2:
            kind = "2";
            x.model.merges[int(rng, x.model.merges.length)] = pick(rng, [3, null, ["a"], "ab"]);
            break;
          case 3:
            kind = "3";
            x.added_tokens[0].id = pick(rng, [1e9, -1, "0", 0.5]);
            break;
          case 4:
            kind = "4";
            x.model.vocab = pick(rng, [[], "x", null]);
            break;
          case 5:
            kind = "5";
            content = JSON.stringify(x).replace(
              `"vocab":{`,
              `"vocab":{${JSON.stringify(token)}:0,`,
            );
            break;
          default:
            kind = "default";
            content = truncated(rng, JSON.stringify(x));
        }
        content ??= JSON.stringify(x);
      } else {
        content = mutateBytes(rng, new TextEncoder().encode(text));
      }
      if (typeof content === "string") await Deno.writeTextFile(path, content);
      else await Deno.writeFile(path, content);
      const label = `tokenizer #${i} (${targeted ? `targeted ${kind}` : "random"})`;
      const tok = await attempt(path, label, () => loadTokenizer(dir), targeted);
      if (tok) {
        // Accepted: ids stay within what the file holds, and text goes through.
        assert.ok(tok.vocabSize <= tokens.length + json.added_tokens.length, label);
        try {
          tok.decode(tok.encode("Über 42 quick brown foxes; \u{1F98A}!"));
        } catch (e) {
          assert.ok((e as Error).message.includes(path), `${label}: ${(e as Error).message}`);
        }
      } else refused++;
    }
    console.log(`  ${COUNTS.tokenizer} inputs, ${refused} refused; ${slowestText()}`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
