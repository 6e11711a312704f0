import { strictEqual } from "node:assert/strict";
import { CommandBatch } from "../../lib/gpu/batch.ts";
import { cpuStreamSum, createStreamRead } from "../../lib/kernels/stream_read.ts";
import { withGpu } from "./_gpu.ts";

// Integer sums: exact.
Deno.test("streaming read sums every word once (fewer and more units than threads)", () =>
  withGpu({}, async (gpu) => {
    const reader = await createStreamRead(gpu, { workgroups: 8, workgroupSize: 64 });
    const out = gpu.tensor({ label: "out", category: "scratch", byteSize: reader.outBytes });
    for (const words of [4, 4 * 300, 4 * 8 * 64 * 3 + 8]) {
      const data = new Uint32Array(words);
      let s = 12345;
      for (let i = 0; i < words; i++) data[i] = s = (Math.imul(s, 1103515245) + 12345) >>> 0;
      const src = gpu.tensor({ label: "src", category: "scratch", data });
      const batch = new CommandBatch(gpu);
      reader.encode(batch, src, out);
      batch.submit();
      strictEqual(cpuStreamSum(await gpu.readU32(out)), cpuStreamSum(data), `${words} words`);
      src.destroy();
    }
    out.destroy();
  }));
