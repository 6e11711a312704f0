import { deepStrictEqual as assertEquals } from "node:assert/strict";
import { CommandBatch } from "../../lib/gpu/batch.ts";
import { ARGMAX_NONFINITE, cpuArgmax, createArgmax } from "../../lib/kernels/argmax.ts";
import { randn } from "../helpers/random.ts";
import { f32Tensor, withGpu } from "./_gpu.ts";

Deno.test("argmax matches cpuArgmax: first of ties, all-negative rows, a 128256 vocab", () =>
  withGpu({}, async (gpu) => {
    const argmax = await createArgmax(gpu);
    const cases: [number, number][] = [[1, 1], [3, 7], [5, 1000], [2, 128_256], [1, 200_003]];
    for (const [rows, n] of cases) {
      const logits = randn(rows * n, n);
      if (rows > 2) logits.fill(-5, n, 2 * n); // a row of equal values: index 0
      if (n > 3) {
        // ties between threads' stripes and inside one: the first index must win
        const row = rows - 1;
        logits[row * n + n - 1] = 100;
        logits[row * n + 3] = 100;
        logits[row * n + n - 2] = 100;
      }
      if (rows > 1) {
        for (let i = 0; i < n; i++) logits[i] = -1000 - i; // all negative, max at 0
      }
      const tl = f32Tensor(gpu, "logits", logits);
      const to = gpu.tensor({ label: "ids", category: "activations", byteSize: rows * 4 });
      const batch = new CommandBatch(gpu);
      argmax.encode(batch, tl, to, rows, n);
      batch.submit();
      assertEquals(await gpu.readU32(to), cpuArgmax(logits, rows, n), `rows=${rows} n=${n}`);
      tl.destroy();
      to.destroy();
    }
  }));

Deno.test("argmax flags a row holding NaN or an infinity, anywhere in the row", () =>
  withGpu({}, async (gpu) => {
    const argmax = await createArgmax(gpu);
    const rows = 6;
    const n = 3000;
    const logits = randn(rows * n, 7);
    logits[0 * n + 0] = NaN; // first element
    logits[1 * n + n - 1] = NaN; // last element
    logits[2 * n + 1234] = Infinity;
    logits[3 * n + 17] = -Infinity;
    // rows 4 and 5 stay finite
    const tl = f32Tensor(gpu, "logits", logits);
    const to = gpu.tensor({ label: "ids", category: "activations", byteSize: rows * 4 });
    const batch = new CommandBatch(gpu);
    argmax.encode(batch, tl, to, rows, n);
    batch.submit();
    const got = await gpu.readU32(to);
    const want = cpuArgmax(logits, rows, n);
    assertEquals([...want.slice(0, 4)], [
      ARGMAX_NONFINITE,
      ARGMAX_NONFINITE,
      ARGMAX_NONFINITE,
      ARGMAX_NONFINITE,
    ]);
    assertEquals(got, want);
    tl.destroy();
    to.destroy();
  }));
