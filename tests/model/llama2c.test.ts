/**
 * llama2.c files: the exporter writes what llama2.c's own run.c / runq.c ran on (fixture made by
 * tests/fixtures/llama2c/make_fixture.sh), headers follow the layout's rules, and reading an
 * export back gives the source model's logits (exactly for f32, within Q8_0's error for v2) and
 * run.c's greedy continuation.
 */

import { deepStrictEqual as assertEquals, ok as assert, rejects, throws } from "node:assert/strict";
import { createHash } from "node:crypto";
import { join } from "node:path";
import { requestGpu } from "../../lib/gpu/device.ts";
import { loadLlamaConfig } from "../../lib/model/config.ts";
import { LlamaModel } from "../../lib/model/llama.ts";
import {
  exportLlama2c,
  LLAMA2C_MAGIC,
  llama2cExportMemory,
  llama2cFileBytes,
  llama2cGroupSize,
  Llama2cSource,
  parseLlama2cHeader,
  permuteRopeRows,
  quantizeLlama2cQ8,
} from "../../lib/model/llama2c.ts";
import { Llama2cTokenizer, llama2cTokenizerBytes } from "../../lib/model/llama2c_tokenizer.ts";
import { loadTokenizer } from "../../lib/model/tokenizer.ts";
import { writeRandomLlama } from "../helpers/random_llama.ts";

const BUNDLED = new URL("../../models/sotu-llama", import.meta.url).pathname;
const FIXTURE = JSON.parse(
  await Deno.readTextFile(new URL("../fixtures/llama2c/run_c.json", import.meta.url)),
);
const sha256 = async (path: string) =>
  createHash("sha256").update(await Deno.readFile(path)).digest("hex");

function logSoftmax(row: Float32Array): Float64Array {
  let max = -Infinity;
  for (const v of row) max = Math.max(max, v);
  let sum = 0;
  for (const v of row) sum += Math.exp(v - max);
  const lse = max + Math.log(sum);
  return Float64Array.from(row, (v) => v - lse);
}

/** Mean KL(p ‖ q) over rows of `[rows, vocab]` logits. */
function meanKl(p: Float32Array, q: Float32Array, vocab: number): number {
  let total = 0;
  const rows = p.length / vocab;
  for (let r = 0; r < rows; r++) {
    const lp = logSoftmax(p.subarray(r * vocab, (r + 1) * vocab));
    const lq = logSoftmax(q.subarray(r * vocab, (r + 1) * vocab));
    for (let i = 0; i < vocab; i++) total += Math.exp(lp[i]) * (lp[i] - lq[i]);
  }
  return total / rows;
}

Deno.test("group size, Q8_0 and the RoPE row order follow llama2.c's export", () => {
  assertEquals([4096, 5120, 8192, 288, 256, 100].map((d) => llama2cGroupSize(d)), [
    64,
    64,
    64,
    32,
    64,
    4,
  ]);
  // scale = max|w| / 127, values rounded half to even (torch.round)
  const { q, s } = quantizeLlama2cQ8(new Float32Array([127, -63.5, 0.5, 1.5, 0, 0, 0, 0]), 4);
  assertEquals([...q], [127, -64, 0, 2, 0, 0, 0, 0]);
  assertEquals([...s], [1, 0]);
  // two heads of size 4: HF pairs (0,2), (1,3) become adjacent; the inverse undoes it
  const w = Float32Array.from({ length: 8 }, (_, i) => i);
  const l2c = permuteRopeRows(w, 2, 1, true);
  assertEquals([...l2c], [0, 2, 1, 3, 4, 6, 5, 7]);
  assertEquals([...permuteRopeRows(l2c, 2, 1, false)], [...w]);
});

Deno.test("the exporter writes the files llama2.c's run.c and runq.c ran on", async () => {
  const dir = await Deno.makeTempDir({ prefix: "qlab-l2c-" });
  try {
    for (const [format, name] of [["llama2c-v0", "v0.bin"], ["llama2c-v2", "v2.bin"]] as const) {
      const out = join(dir, name);
      const r = await exportLlama2c(BUNDLED, out, { format });
      // estimate --export's output size is the file's
      const est = llama2cExportMemory(await loadLlamaConfig(BUNDLED));
      assertEquals(est.find((e) => e.version === r.header.version)!.outputBytes, r.bytes);
      assertEquals(await sha256(out), FIXTURE.sha256[name], `${name} differs from the fixture's`);
      assertEquals(r.bytes, (await Deno.stat(out)).size);
      // The conversion holds about a tensor at a time: far less than the model.
      assert(r.peakRssBytes >= r.baselineRssBytes && r.largestTensorBytes === 4096 * 256 * 4);
    }
    const json = JSON.parse(await Deno.readTextFile(join(BUNDLED, "tokenizer.json")));
    const tok = llama2cTokenizerBytes(json, 4096, { bosId: 0 });
    await Deno.writeFile(join(dir, "tokenizer.bin"), tok.bytes);
    assertEquals(await sha256(join(dir, "tokenizer.bin")), FIXTURE.sha256["tokenizer.bin"]);

    // Headers by the layout's rules.
    const v0 = await Deno.readFile(join(dir, "v0.bin"));
    const h0 = parseLlama2cHeader(v0.subarray(0, 256), v0.byteLength);
    assertEquals(
      [h0.version, h0.dim, h0.hiddenDim, h0.nLayers, h0.nHeads, h0.nKvHeads, h0.vocabSize],
      [0, 256, 768, 8, 4, 2, 4096],
    );
    assertEquals([h0.seqLen, h0.sharedClassifier, h0.headerBytes], [512, true, 28]);
    const v2 = await Deno.readFile(join(dir, "v2.bin"));
    const view = new DataView(v2.buffer);
    assertEquals(view.getUint32(0, true), LLAMA2C_MAGIC);
    assertEquals(new TextDecoder().decode(v2.subarray(0, 4)), "24ka"); // "ak42" little-endian
    assertEquals(view.getInt32(4, true), 2);
    assertEquals(v2[36], 1); // shared classifier
    assertEquals(view.getInt32(37, true), 64); // group size
    assert(v2.subarray(41, 256).every((b) => b === 0), "padding is zeros");
    const h2 = parseLlama2cHeader(v2.subarray(0, 256), v2.byteLength);
    assertEquals(llama2cFileBytes(h2), v2.byteLength);
    // norms (f32) then Q8_0 embedding: int8 values then vocab·dim/64 f32 scales
    assertEquals(
      v2.byteLength,
      256 + (2 * 8 + 1) * 256 * 4 +
        [4096 * 256, ...Array(8).fill(256 * 256 + 2 * 128 * 256 + 256 * 256 + 3 * 768 * 256)]
          .reduce((s, n) => s + n + (n / 64) * 4, 0),
    );

    // Broken files fail with the field named.
    const bad = v2.slice(0, 256);
    bad[0] ^= 1;
    throws(
      () => parseLlama2cHeader(bad, v2.byteLength),
      /no "ak42" magic, so read as a version 0 header/,
    );
    const pad = v2.slice(0, 256);
    pad[200] = 7;
    throws(() => parseLlama2cHeader(pad, v2.byteLength), /header byte 200 is 7; the padding/);
    const gs = v2.slice(0, 256);
    new DataView(gs.buffer).setInt32(37, 48, true);
    throws(() => parseLlama2cHeader(gs, v2.byteLength), /not a multiple of the group size 48/);
    throws(
      () => parseLlama2cHeader(v2.subarray(0, 256), v2.byteLength - 4),
      /layout takes exactly/,
    );
    const short = join(dir, "short.bin");
    await Deno.writeFile(short, v0.subarray(0, v0.byteLength - 100));
    await rejects(Llama2cSource.open(short), /short\.bin: .* layout takes exactly/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("reading an export back gives the source's logits and run.c's continuation", async () => {
  const dir = await Deno.makeTempDir({ prefix: "qlab-l2c-" });
  const gpu = await requestGpu();
  try {
    const hfTok = await loadTokenizer(BUNDLED);
    const tokens = hfTok.encode("The state of the Union is strong, and the Congress must act.");
    const source = await LlamaModel.load(BUNDLED, { gpu, maxSeqLen: 64 });
    const want = await source.forward(tokens, "all");
    source.dispose();
    const vocab = 4096;

    await exportLlama2c(BUNDLED, join(dir, "v0.bin"), { format: "llama2c-v0" });
    await exportLlama2c(BUNDLED, join(dir, "v2.bin"), { format: "llama2c-v2" });
    const json = JSON.parse(await Deno.readTextFile(join(BUNDLED, "tokenizer.json")));
    await Deno.writeFile(join(dir, "tokenizer.bin"), llama2cTokenizerBytes(json, vocab).bytes);

    const v0 = await LlamaModel.load(join(dir, "v0.bin"), { gpu, maxSeqLen: 64 });
    assertEquals(await v0.forward(tokens, "all"), want, "f32 round trip is exact");

    // run.c's greedy continuation, from its tokenizer (BOS 1, dummy space) and decoder.
    const tok = await loadTokenizer(join(dir, "v0.bin")); // tokenizer.bin: no tokenizer.json here
    assert(tok instanceof Llama2cTokenizer);
    const run = async (model: LlamaModel): Promise<string> => {
      model.reset();
      const ids = tok.encode(FIXTURE.prompt);
      const out = [...ids];
      let next = await model.forwardGreedy(ids);
      // run.c prints one piece per position 0..steps-1: steps pieces after BOS
      while (out.length <= FIXTURE.steps && next !== 1) {
        out.push(next);
        next = await model.forwardGreedy([next]);
      }
      return tok.decode(out) + "\n";
    };
    assertEquals(await run(v0), FIXTURE.run_c_v0);
    v0.dispose();

    const v2 = await LlamaModel.load(join(dir, "v2.bin"), { gpu, maxSeqLen: 64 });
    const got = await v2.forward(tokens, "all");
    const kl = meanKl(want, got, vocab);
    assert(kl < 2e-3, `Q8_0 round trip KL ${kl}`);
    let agree = 0;
    for (let r = 0; r < tokens.length; r++) {
      const a = want.subarray(r * vocab, (r + 1) * vocab);
      const b = got.subarray(r * vocab, (r + 1) * vocab);
      if (a.indexOf(Math.max(...a)) === b.indexOf(Math.max(...b))) agree++;
    }
    assert(agree >= tokens.length - 1, `top-1 agreement ${agree}/${tokens.length}`);
    assertEquals(await run(v2), FIXTURE.runq_c_v2);
    v2.dispose();
    assertEquals(gpu.ledger.currentBytes, 0);
  } finally {
    gpu.destroy();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("untied, grouped-query random models round-trip through v0 exactly", async () => {
  const dir = await Deno.makeTempDir({ prefix: "qlab-l2c-" });
  const gpu = await requestGpu();
  try {
    await writeRandomLlama(dir, {
      layers: 2,
      hidden: 64,
      heads: 4,
      kvHeads: 2,
      intermediate: 96,
      tied: false,
      extraConfig: { rope_theta: 10000, rms_norm_eps: 1e-5 },
    });
    const config = await loadLlamaConfig(dir);
    const tokens = [5, 17, 3, 250, 42, 9];
    const source = await LlamaModel.load(dir, { gpu, maxSeqLen: 32 });
    const want = await source.forward(tokens, "all");
    source.dispose();
    const out = join(dir, "m.bin");
    await exportLlama2c(dir, out, { format: "llama2c-v0" });
    const h = parseLlama2cHeader((await Deno.readFile(out)).subarray(0, 28));
    assertEquals([h.sharedClassifier, h.nKvHeads], [false, 2]);
    // the legacy header says "not shared" with a negative vocabulary size
    assertEquals(
      new DataView((await Deno.readFile(out)).buffer).getInt32(20, true),
      -config.vocabSize,
    );
    const model = await LlamaModel.load(out, { gpu, maxSeqLen: 32 });
    assertEquals(await model.forward(tokens, "all"), want);
    model.dispose();
    // v2 needs the group size to divide hidden_dim's matrices too: 64 | 64·96
    const out2 = join(dir, "m2.bin");
    await exportLlama2c(dir, out2, { format: "llama2c-v2" });
    const m2 = await LlamaModel.load(out2, { gpu, maxSeqLen: 32 });
    assert(meanKl(want, await m2.forward(tokens, "all"), config.vocabSize) < 5e-3);
    m2.dispose();
  } finally {
    gpu.destroy();
    await Deno.remove(dir, { recursive: true });
  }
});
