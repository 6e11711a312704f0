import assert from "node:assert/strict";
import { CommandBatch } from "../../lib/gpu/batch.ts";
import { cpuAdd, cpuAddBias, cpuSwiglu, createElementwise } from "../../lib/kernels/elementwise.ts";
import { assertClose, uniform } from "../helpers/random.ts";
import { f32Tensor, withGpu } from "./_gpu.ts";

// add is exact in both (one f32 rounding); SwiGLU differs by the f32 exp and division: rtol 1e-5.
Deno.test("residual add and SwiGLU match their twins (sizes across the grid split)", () =>
  withGpu({}, async (gpu) => {
    const ew = await createElementwise(gpu);
    for (const n of [1, 1000, 65535 * 256 + 300]) {
      // uniform rather than normal: the 16.7M-element case (beyond one grid row) stays quick
      const a = uniform(n, n, -8, 8);
      const b = uniform(n, n + 1, -2, 2);
      const ta = f32Tensor(gpu, "a", a);
      const tb = f32Tensor(gpu, "b", b);
      const tg = f32Tensor(gpu, "gate", a);
      const batch = new CommandBatch(gpu);
      ew.add(batch, ta, tb, n);
      ew.swiglu(batch, tg, tb, n);
      batch.submit();
      assertClose(await gpu.readF32(ta), cpuAdd(a, b), { atol: 0 }, `add n=${n}`);
      assertClose(
        await gpu.readF32(tg),
        cpuSwiglu(a, b),
        { atol: 1e-7, rtol: 1e-5 },
        `swiglu n=${n}`,
      );
      for (const t of [ta, tb, tg]) t.destroy();
    }
  }));

// One f32 add per element: exact.
Deno.test("bias add matches its twin (rows of several widths)", () =>
  withGpu({}, async (gpu) => {
    const ew = await createElementwise(gpu);
    for (const [rows, width] of [[1, 7], [5, 64], [130, 96]]) {
      const n = rows * width;
      const a = uniform(n, n + 7, -8, 8);
      const bias = uniform(width, width + 3, -2, 2);
      const ta = f32Tensor(gpu, "a", a);
      const tb = f32Tensor(gpu, "bias", bias);
      const batch = new CommandBatch(gpu);
      ew.addBias(batch, ta, tb, n, width);
      batch.submit();
      assertClose(await gpu.readF32(ta), cpuAddBias(a, bias), { atol: 0 }, `${rows}x${width}`);
      ta.destroy();
      tb.destroy();
    }
    const z = f32Tensor(gpu, "z", new Float32Array(12));
    assert.throws(() => ew.addBias(new CommandBatch(gpu), z, z, 10, 3), /whole rows of 3/);
    z.destroy();
  }));
