/**
 * The acceptance kernel of chained speculative rounds against its CPU twin: every number of
 * kept proposals (none, some, all), forced counts (simulated acceptance), records at an offset,
 * and the next round's inputs and positions.
 */
import { deepStrictEqual as assertEquals, throws } from "node:assert/strict";
import { CommandBatch } from "../../lib/gpu/batch.ts";
import { cpuAccept, createAccept } from "../../lib/kernels/speculative.ts";
import { withGpu } from "./_gpu.ts";

Deno.test("accept kernel = cpuAccept: kept counts 0..k, forced counts, records at an offset", () =>
  withGpu({}, async (gpu) => {
    const accept = await createAccept(gpu);
    const u32 = (label: string, words: number[] | Uint32Array) =>
      gpu.tensor({ label, category: "activations", data: Uint32Array.from(words) });
    const cases: { ids: number[]; best: number[]; forced?: number }[] = [
      { ids: [9, 1, 2, 3, 4], best: [5, 2, 3, 4, 8] }, // none kept
      { ids: [9, 1, 2, 3, 4], best: [1, 2, 7, 4, 8] }, // two kept
      { ids: [9, 1, 2, 3, 4], best: [1, 2, 3, 4, 8] }, // all kept
      { ids: [9, 6], best: [6, 0] }, // k = 1, kept
      { ids: [9, 1, 2, 3], best: [5, 5, 5, 5], forced: 2 }, // simulated: kept whatever
      { ids: [9, 1, 2, 3], best: [1, 2, 3, 7], forced: 9 }, // forced past k: all
      { ids: [4000, 1, 4095, 3, 4, 5, 6, 7], best: [1, 4095, 3, 4, 5, 6, 0, 2] },
    ];
    for (const [c, { ids, best, forced }] of cases.entries()) {
      const k = ids.length - 1;
      const slot = 3 + c;
      const want = cpuAccept(Uint32Array.from(ids), Uint32Array.from(best), k, 40, forced);
      const b = {
        targetIds: u32("target ids", [...ids, 77]),
        best: u32("best", best),
        draftIds: u32("draft ids", [11, 12, 13]),
        targetPos: u32("target pos", [40]),
        draftPos: u32("draft pos", [0]),
        record: u32("record", new Uint32Array(slot + 10).fill(0xdead)),
      };
      const batch = new CommandBatch(gpu);
      accept.encode(batch, b, k, slot, forced);
      batch.submit();
      const what = `case ${c}`;
      const record = await gpu.readU32(b.record);
      assertEquals(record.slice(slot, slot + want.record.length), want.record, what);
      assertEquals(record[slot + want.record.length], 0xdead, `${what}: nothing past the record`);
      assertEquals(record[slot - 1], 0xdead, `${what}: nothing before it`);
      assertEquals(await gpu.readU32(b.targetIds), Uint32Array.from([...want.targetIds, 77]), what);
      assertEquals(await gpu.readU32(b.draftIds), Uint32Array.from([...want.draftIds, 13]), what);
      assertEquals((await gpu.readU32(b.targetPos))[0], want.targetPos, what);
      assertEquals((await gpu.readU32(b.draftPos))[0], want.draftPos, what);
      throws(() => accept.encode(batch, b, k, slot + 20), /record/, "a record past the end");
      for (const t of Object.values(b)) t.destroy();
    }
    // the twin on its own: two of three kept
    const s = cpuAccept(new Uint32Array([7, 3, 4, 5]), new Uint32Array([3, 4, 9, 1]), 3, 10);
    assertEquals([s.kept, [...s.record], s.draftIds, s.targetPos, s.draftPos], [
      2,
      [2, 3, 4, 9],
      [4, 9],
      13,
      12,
    ]);
  }));
