import { ok, strictEqual } from "node:assert/strict";
import { CommandBatch } from "../../lib/gpu/batch.ts";
import { cpuFmaPeak, createFmaPeak, measureFmaRate } from "../../lib/kernels/fma_peak.ts";
import { assertClose } from "../helpers/random.ts";
import { withGpu } from "./_gpu.ts";

// With no trips the output is a sum of multiples of 2^-10 below 64: exact. After S steps, WGSL
// lets each fma round once or twice (the twin rounds twice), so a lane may differ by about an ulp
// of a value below 2, 2^-22, per step; |m| < 1 shrinks earlier differences rather than growing
// them. The 32 lanes summed, and each of the 31 additions may round the other way, an ulp of a
// sum below 64 (2^-17): atol 32·S·2^-22 + 31·2^-17, at most 5e-4 here. One trip more or less
// moves every thread's value by 0.08 or more in each case below; rounding once in the twin
// instead moves none by as much as 1e-4.
Deno.test("fma peak: every thread's chains follow the CPU recurrence", () =>
  withGpu({}, async (gpu) => {
    for (const stepsPerTrip of [4, 16] as const) {
      for (const workgroupSize of [64, 256]) {
        const fma = await createFmaPeak(gpu, { workgroups: 2, workgroupSize, stepsPerTrip });
        const out = gpu.tensor({ label: "out", category: "scratch", byteSize: fma.outBytes });
        const threads = fma.outBytes / 4;
        for (
          const [trips, m, c] of [[0, 0.5, 0.5], [1, 0.9, 0.1], [2, 0.97, -0.3], [2, -0.95, 0.5]]
        ) {
          const batch = new CommandBatch(gpu);
          fma.encode(batch, out, trips, m, c);
          batch.submit();
          const steps = trips * stepsPerTrip;
          assertClose(
            await gpu.readF32(out),
            cpuFmaPeak(threads, steps, m, c),
            { atol: steps === 0 ? 0 : 32 * steps * 2 ** -22 + 31 * 2 ** -17 },
            `${stepsPerTrip} steps a trip, WG ${workgroupSize}, ${trips} trips, m ${m}, c ${c}`,
          );
        }
        strictEqual(fma.flops(3), 2 * 32 * stepsPerTrip * threads * 3);
        out.destroy();
      }
    }
  }));

Deno.test("fma peak: measureFmaRate gives a positive rate", () =>
  withGpu({}, async (gpu) => {
    const tflops = await measureFmaRate(gpu, { workgroups: 2, trips: 8, reps: 3, warmup: 1 });
    ok(Number.isFinite(tflops) && tflops > 0, `${tflops} TFLOP/s`);
  }));
