import { CommandBatch } from "../../lib/gpu/batch.ts";
import { cpuAdd, cpuSwiglu, createElementwise } from "../../lib/kernels/elementwise.ts";
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
