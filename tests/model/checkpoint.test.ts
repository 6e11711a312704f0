import assert from "node:assert/strict";
import { join } from "node:path";
import { openCheckpoint } from "../../lib/model/checkpoint.ts";
import { roundToF16 } from "../../lib/gpu/f16.ts";
import { writeRandomLlama } from "../helpers/random_llama.ts";

async function withTempDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "qlab-ckpt-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("checkpoint: sharded and single-file checkpoints hold the same tensors", () =>
  withTempDir(async (root) => {
    const single = join(root, "single");
    const sharded = join(root, "sharded");
    await Deno.mkdir(single);
    await Deno.mkdir(sharded);
    const { tensors } = await writeRandomLlama(single, { dtype: "F32", seed: 3 });
    await writeRandomLlama(sharded, { dtype: "F32", seed: 3, sharded: true });
    using a = await openCheckpoint(single);
    using b = await openCheckpoint(sharded);
    assert.equal(a.files.length, 1);
    assert.equal(b.files.length, 2);
    assert.deepEqual(a.names().sort(), b.names().sort());
    assert.deepEqual(a.names().sort(), Object.keys(tensors).sort());
    for (const name of a.names()) {
      assert.deepEqual(await b.readF32(name), tensors[name], name);
      assert.deepEqual(await a.readF16Bits(name), await b.readF16Bits(name), name);
    }
    assert.match(b.info("lm_head.weight").file, /model-0000[12]-of-00002\.safetensors$/);
    assert.ok(b.has("model.norm.weight"));
    assert.ok(!b.has("nope"));
  }));

Deno.test("checkpoint: F16 storage reads back as the f16-rounded weights", () =>
  withTempDir(async (dir) => {
    const { tensors } = await writeRandomLlama(dir, { seed: 5 });
    using ckpt = await openCheckpoint(dir);
    const name = "model.layers.1.mlp.up_proj.weight";
    assert.deepEqual(await ckpt.readF32(name), roundToF16(tensors[name]));
    assert.equal(ckpt.info(name).dtype, "F16");
  }));

Deno.test("checkpoint: a missing tensor names the tensor, the directory and the files checked", () =>
  withTempDir(async (dir) => {
    await writeRandomLlama(dir, { sharded: true });
    using ckpt = await openCheckpoint(dir);
    const name = "model.layers.3.mlp.up_proj.weight";
    await assert.rejects(ckpt.readF32(name), (e: Error) => {
      assert.equal(
        e.message,
        `tensor ${name} not found in ${dir} (checked: model-00001-of-00002.safetensors, ` +
          `model-00002-of-00002.safetensors)`,
      );
      return true;
    });
  }));

Deno.test("checkpoint: expectShape names the tensor and both shapes", () =>
  withTempDir(async (dir) => {
    await writeRandomLlama(dir, { hidden: 64 });
    using ckpt = await openCheckpoint(dir);
    ckpt.expectShape("model.norm.weight", [64]);
    assert.throws(
      () => ckpt.expectShape("model.norm.weight", [128]),
      /tensor model\.norm\.weight in .*model\.safetensors has shape \[64\], but the config implies \[128\]/,
    );
  }));

Deno.test("checkpoint: broken directories give clear errors", () =>
  withTempDir(async (dir) => {
    await assert.rejects(openCheckpoint(dir), /no weights in .*: expected model\.safetensors/);
    await writeRandomLlama(dir, { sharded: true });
    await Deno.remove(join(dir, "model-00002-of-00002.safetensors"));
    await assert.rejects(
      openCheckpoint(dir),
      /model\.safetensors\.index\.json: shard model-00002-of-00002\.safetensors \(holding tensor .*\) is missing/,
    );
    const index = JSON.parse(await Deno.readTextFile(join(dir, "model.safetensors.index.json")));
    for (const k of Object.keys(index.weight_map)) {
      index.weight_map[k] = "model-00001-of-00002.safetensors";
    }
    await Deno.writeTextFile(join(dir, "model.safetensors.index.json"), JSON.stringify(index));
    await assert.rejects(
      openCheckpoint(dir),
      /tensor .* is mapped to model-00001-of-00002\.safetensors, which lacks it/,
    );
  }));
