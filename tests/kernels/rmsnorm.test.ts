import { deepStrictEqual as assertEquals } from "node:assert/strict";
import { CommandBatch } from "../../lib/gpu/batch.ts";
import { absmaxOf, int8Code, int8Scale } from "../../lib/quant/int8_codes.ts";
import { cpuRmsNorm, createRmsNorm } from "../../lib/kernels/rmsnorm.ts";
import { assertClose, randn, uniform } from "../helpers/random.ts";
import { emptyF32, f32Tensor, withGpu } from "./_gpu.ts";

// f32 kernel vs f64 twin: a tree sum of squares and one sqrt, then two f32 products per
// element: a few ulps, so rtol 1e-5 (plus a tiny atol for values near zero).
Deno.test("RMSNorm matches cpuRmsNorm (rows 1, 3, 37; widths below, at and above the workgroup)", () =>
  withGpu({}, async (gpu) => {
    const norm = [await createRmsNorm(gpu, { dim: 4096, eps: 1e-5 })];
    for (const [rows, dim, eps] of [[1, 4096, 1e-5], [3, 66, 1e-6], [37, 300, 1e-5], [2, 7, 0.1]]) {
      const x = randn(rows * dim, rows + dim, 3);
      const w = uniform(dim, dim, 0.5, 1.5);
      const n = await createRmsNorm(gpu, { dim, eps });
      norm.push(n);
      const tx = f32Tensor(gpu, "x", x);
      const tw = f32Tensor(gpu, "w", w);
      const to = emptyF32(gpu, "out", rows * dim);
      const batch = new CommandBatch(gpu);
      n.encode(batch, tx, tw, to, rows);
      batch.submit();
      assertClose(
        await gpu.readF32(to),
        cpuRmsNorm(x, w, rows, dim, eps),
        { atol: 1e-6, rtol: 1e-5 },
        `rmsnorm rows=${rows} dim=${dim}`,
      );
      for (const t of [tx, tw, to]) t.destroy();
    }
  }));

// The fused residual add: x + delta is one f32 addition per element, as the add kernel does, so
// the updated x must equal the twin's sum exactly; the norm of it keeps the tolerance above.
// Rows of at most four elements a thread take the kernel's short path (held in registers): 66
// and 300 at the default 256 threads, 4096 and 4000 at 1,024 (a GPU's default for 4096), 250 at
// 64; 4096 at 256 takes the loop.
Deno.test("add + RMSNorm in one dispatch: x += delta exactly, then cpuRmsNorm of the sum", () =>
  withGpu({}, async (gpu) => {
    const wide = gpu.limits.maxComputeInvocationsPerWorkgroup >= 1024 &&
      gpu.limits.maxComputeWorkgroupSizeX >= 1024;
    if (!wide) console.log("this adapter allows fewer than 1,024 threads: those cases not run");
    const cases: [number, number, number, number | undefined][] = [
      [1, 4096, 1e-5, undefined],
      [3, 66, 1e-6, undefined],
      [37, 300, 1e-5, undefined],
      [3, 250, 1e-6, 64],
      ...(wide
        ? [[1, 4096, 1e-5, 1024], [2, 4000, 1e-5, 1024]] as [number, number, number, number][]
        : []),
    ];
    for (const [rows, dim, eps, workgroupSize] of cases) {
      const x = randn(rows * dim, 7 * rows + dim, 3);
      const delta = randn(rows * dim, 11 * rows + dim, 2);
      const w = uniform(dim, dim + 1, 0.5, 1.5);
      const n = await createRmsNorm(gpu, { dim, eps, workgroupSize });
      const [tx, td, tw] = [
        f32Tensor(gpu, "x", x),
        f32Tensor(gpu, "delta", delta),
        f32Tensor(gpu, "w", w),
      ];
      const to = emptyF32(gpu, "out", rows * dim);
      const batch = new CommandBatch(gpu);
      n.encodeAdd(batch, tx, td, tw, to, rows);
      batch.submit();
      const sum = x.map((v, i) => v + delta[i]);
      const at = `rows=${rows} dim=${dim} threads=${workgroupSize ?? "default"}`;
      assertClose(await gpu.readF32(tx), sum, { atol: 0 }, `x + delta ${at}`);
      assertClose(
        await gpu.readF32(to),
        cpuRmsNorm(sum, w, rows, dim, eps),
        { atol: 1e-6, rtol: 1e-5 },
        `add_rmsnorm ${at}`,
      );
      for (const t of [tx, td, tw, to]) t.destroy();
    }
  }));

// In place (Qwen3's per-head q/k norm: many short rows); same tolerance as the plain norm.
Deno.test("RMSNorm in place matches cpuRmsNorm (rows of one head)", () =>
  withGpu({}, async (gpu) => {
    for (const [rows, dim, eps] of [[1, 128, 1e-6], [48, 16, 1e-6], [300, 64, 1e-5]]) {
      const x = randn(rows * dim, 5 * rows + dim, 3);
      const w = uniform(dim, dim + 2, 0.5, 1.5);
      const n = await createRmsNorm(gpu, { dim, eps, workgroupSize: 64 });
      const tx = f32Tensor(gpu, "x", x);
      const tw = f32Tensor(gpu, "w", w);
      const batch = new CommandBatch(gpu);
      n.encodeInPlace(batch, tx, tw, rows);
      batch.submit();
      assertClose(
        await gpu.readF32(tx),
        cpuRmsNorm(x, w, rows, dim, eps),
        { atol: 1e-6, rtol: 1e-5 },
        `rmsnorm_inplace rows=${rows} dim=${dim}`,
      );
      for (const t of [tx, tw]) t.destroy();
    }
  }));

// add + RMSNorm with the int8 codes of its output (decode's int8 layers): `out` bit-equal to
// add_rmsnorm's, and the absmax and every code exactly the CPU twin's (int8Scale, int8Code) of
// that output — the values quantize_row would code, so one differing code is a failure.
Deno.test("add + RMSNorm + int8 codes of the output in one dispatch: exactly the CPU's codes", () =>
  withGpu({}, async (gpu) => {
    // 4096 and 4100 take the loop at 256 threads, 64 and 12 the short path (outputs held in
    // registers, codes packed from workgroup memory), as 4096 does at 1,024 threads
    // Under Mesa's OpenGL these 1,024-thread kernels take minutes each to compile (llvmpipe runs
    // a workgroup's barriers as coroutines); the Vulkan pass runs them, and software adapters
    // use 256 threads in any case.
    const gl = Deno.env.get("DENO_WEBGPU_BACKEND") === "gl";
    const wide = !gl && gpu.limits.maxComputeInvocationsPerWorkgroup >= 1024 &&
      gpu.limits.maxComputeWorkgroupSizeX >= 1024;
    if (!wide) {
      console.log(
        gl
          ? "GL: the 1,024-thread cases not run (minutes to compile; the Vulkan pass runs them)"
          : "this adapter allows fewer than 1,024 threads: those cases not run",
      );
    }
    // [dim, seed, workgroup size, rows]: several rows each coded alone (a verify pass's rows)
    const cases: [number, number, number | undefined, number][] = [
      [4096, 1, undefined, 1],
      [4100, 2, undefined, 1],
      [64, 3, undefined, 1],
      [12, 4, undefined, 1],
      [4100, 6, undefined, 3],
      [64, 7, undefined, 5],
      ...(wide
        ? [[4096, 5, 1024, 1], [4096, 8, 1024, 2]] as [number, number, number, number][]
        : []),
    ];
    for (const [dim, seed, workgroupSize, rows] of cases) {
      const x = randn(rows * dim, seed, 3);
      const delta = randn(rows * dim, seed + 10, 2);
      // one large value per row sets its scale, a different one in each row
      for (let r = 0; r < rows; r++) x[r * dim + seed + r] = 40 - 9 * r;
      const w = uniform(dim, seed + 20, 0.5, 1.5);
      const n = await createRmsNorm(gpu, { dim, eps: 1e-5, workgroupSize });
      const tx = f32Tensor(gpu, "x", x);
      const tx2 = f32Tensor(gpu, "x again", x);
      const [td, tw] = [f32Tensor(gpu, "delta", delta), f32Tensor(gpu, "w", w)];
      const [to, to2] = [emptyF32(gpu, "out", rows * dim), emptyF32(gpu, "out again", rows * dim)];
      const codes = emptyF32(gpu, "codes", rows * dim / 4);
      const absmax = emptyF32(gpu, "absmax", rows);
      const batch = new CommandBatch(gpu);
      n.encodeAdd(batch, tx, td, tw, to, rows);
      n.encodeAddQ8(batch, tx2, td, tw, to2, { codes, absmax }, rows);
      batch.submit();
      const what = `dim ${dim}, ${rows} rows`;
      const out = await gpu.readF32(to);
      assertEquals(await gpu.readF32(to2), out, `${what}: out as add_rmsnorm's`);
      assertEquals(await gpu.readF32(tx2), await gpu.readF32(tx), `${what}: x + delta`);
      const gotAbsmax = await gpu.readF32(absmax);
      const got = new Int8Array((await gpu.readU32(codes)).buffer);
      for (let r = 0; r < rows; r++) {
        const a = absmaxOf(out, r * dim, (r + 1) * dim);
        assertEquals(gotAbsmax[r], a, `${what}: row ${r}'s absmax`);
        const scale = int8Scale(a);
        const want = Int8Array.from(
          out.subarray(r * dim, (r + 1) * dim),
          (v) => int8Code(v, scale),
        );
        assertEquals(got.subarray(r * dim, (r + 1) * dim), want, `${what}: row ${r}'s codes`);
      }
      for (const t of [tx, tx2, td, tw, to, to2, codes, absmax]) t.destroy();
    }
  }));
