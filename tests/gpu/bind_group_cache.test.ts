/**
 * BindGroupCache: a bind group is reused only when every binding (buffer, offset, size, the
 * uniform range included) is the same, and parameter values still change between submissions.
 */
import { deepStrictEqual as assertEquals } from "node:assert/strict";
import { BindGroupCache, CommandBatch } from "../../lib/gpu/batch.ts";
import { requestGpu } from "../../lib/gpu/device.ts";
import { createElementwise } from "../../lib/kernels/elementwise.ts";

Deno.test("bind groups are reused across batches only when the bindings are identical", async () => {
  const gpu = await requestGpu();
  try {
    const ew = await createElementwise(gpu);
    // 128 floats, so a range at byte 256 (the storage offset alignment) can be bound.
    const ones = new Float32Array(128).fill(1);
    const a = gpu.tensor({ label: "a", category: "scratch", byteSize: 32 });
    const b = gpu.tensor({ label: "b", category: "scratch", data: ones });
    const c = gpu.tensor({ label: "c", category: "scratch", data: ones.map((x) => 10 * x) });
    const cache = new BindGroupCache();
    const run = (n: number, bb: typeof b, offsetOf?: number) => {
      const batch = new CommandBatch(gpu, { bindGroups: cache });
      batch.clear(a);
      const second = offsetOf === undefined ? b : { tensor: b, offset: offsetOf, size: 16 };
      ew.add(batch, a, bb, n); // dispatch 0
      ew.add(batch, a, second, 4); // dispatch 1
      batch.submit();
      return gpu.readF32(a, 0, 8);
    };
    // First batch creates both groups; the next one reuses them, with a different n that the
    // kernel still sees (parameters live in the uniform buffer, not in the group).
    assertEquals([...await run(8, b)], [2, 2, 2, 2, 1, 1, 1, 1]);
    assertEquals([cache.hits, cache.misses], [0, 2]);
    assertEquals([...await run(4, b)], [2, 2, 2, 2, 0, 0, 0, 0]);
    assertEquals([cache.hits, cache.misses], [2, 2]);
    // Another buffer at dispatch 0, a byte range at dispatch 1: both are created again.
    assertEquals([...await run(8, c, 256)], [11, 11, 11, 11, 10, 10, 10, 10]);
    assertEquals([cache.hits, cache.misses], [2, 4]);
    // Same range, other offset: created again; then identical: reused.
    await run(8, c, 0);
    assertEquals([cache.hits, cache.misses], [3, 5]);
    await run(8, c, 0);
    assertEquals([cache.hits, cache.misses], [5, 5]);
    assertEquals(cache.size, 2);
    // A batch without the cache never touches it.
    const plain = new CommandBatch(gpu);
    ew.add(plain, a, b, 8);
    plain.submit();
    assertEquals([cache.hits, cache.misses], [5, 5]);
    cache.clear();
    assertEquals(cache.size, 0);
    for (const t of [a, b, c]) t.destroy();
  } finally {
    gpu.destroy();
  }
});
