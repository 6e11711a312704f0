import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { CommandBatch } from "../../lib/gpu/batch.ts";
import { cpuEmbedding, createEmbedding } from "../../lib/kernels/embedding.ts";
import { randomInts } from "../helpers/random.ts";
import { randomF16, withGpu } from "./_gpu.ts";

// Exact: a lookup decodes f16 to f32 with no rounding.
Deno.test("embedding matches cpuEmbedding; ids ≥ vocab give zeros; chunked tables", () =>
  withGpu({}, async (gpu) => {
    const vocab = 300;
    const hidden = 66;
    const { bits } = randomF16(vocab * hidden, 7);
    const shared = gpu.tensor({ label: "shared table", category: "weights", data: bits });
    const ids = randomInts(37, 8, vocab);
    ids.set([0, vocab - 1, vocab, 0xffffffff, 299], 0); // edges and out-of-range ids
    const tIds = gpu.tensor({ label: "ids", category: "activations", data: ids });
    const want = cpuEmbedding(ids, bits, vocab, hidden);
    for (
      const opts of [{ table: bits }, { table: shared }, { table: bits, maxBindingBytes: 20_000 }]
    ) {
      // fill out with garbage first so zeros must be written, not inherited
      const out = gpu.tensor({
        label: "out",
        category: "activations",
        data: new Float32Array(ids.length * hidden).fill(7),
      });
      const embed = await createEmbedding(gpu, { ...opts, vocab, hidden });
      const batch = new CommandBatch(gpu);
      embed.encode(batch, tIds, out, ids.length);
      batch.submit();
      assertEquals(await gpu.readF32(out), want);
      embed.destroy();
      out.destroy();
    }
    assert(!shared.destroyed);
    shared.destroy();
    tIds.destroy();
  }));
