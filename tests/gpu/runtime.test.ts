import {
  deepStrictEqual as assertEquals,
  ok as assert,
  rejects as assertRejects,
  throws as assertThrows,
} from "node:assert/strict";
import { CommandBatch, grid, params } from "../../lib/gpu/batch.ts";
import { type Gpu, requestGpu } from "../../lib/gpu/device.ts";
import { expandKernelSource, preprocessWgsl, readKernelSource } from "../../lib/gpu/kernel.ts";
import { MemoryLedger } from "../../lib/gpu/ledger.ts";

Deno.test("ledger tracks current, peak and per-category bytes", () => {
  const ledger = new MemoryLedger();
  const w = ledger.record("weights", "w", 1000);
  const a = ledger.record("activations", "a", 200);
  assertEquals(ledger.currentBytes, 1200);
  ledger.release(a);
  const k = ledger.record("kv-cache", "k", 100);
  assertEquals(ledger.peakBytes, 1200);
  assertEquals(ledger.snapshot().atPeak.activations, 200);
  ledger.resetPeak();
  assertEquals(ledger.peakBytes, 1100);
  ledger.release(w);
  ledger.release(k);
  assertEquals(ledger.currentBytes, 0);
  assertThrows(() => ledger.release(k), /not live/);
});

Deno.test("preprocessor keeps line numbers and nests", () => {
  const src = "a\n#if X\nb\n#if !Y\nc\n#else\nd\n#endif\n#endif\ne";
  assertEquals(preprocessWgsl(src, new Set(["X"])), "a\n\nb\n\nc\n\n\n\n\ne");
  assertEquals(preprocessWgsl(src, new Set(["Y"])), "a\n\n\n\n\n\n\n\n\ne");
  assertThrows(() => preprocessWgsl("#if X\n", new Set()), /unterminated/);
  assertThrows(() => preprocessWgsl("#pragma\n", new Set()), /unknown directive/);
});

Deno.test("#include appends each file once, after the kernel, with its defines", () => {
  const files: Record<string, string> = {
    k: 'a\n#include "common/h.wgsl"\n#if X\n#include "common/g.wgsl"\n#endif\nb',
    "common/h": '#include "common/g.wgsl"\n#if X\nhx\n#else\nh\n#endif',
    "common/g": '#include "common/h.wgsl"\ng',
  };
  const read = (n: string) => {
    if (!(n in files)) throw new Error(`cannot read ${n}.wgsl`);
    return files[n];
  };
  // g includes h again while h is being expanded: a cycle.
  assertThrows(
    () => expandKernelSource("k", new Set(), read),
    /kernel k: #include cycle common\/h\.wgsl -> common\/g\.wgsl -> common\/h\.wgsl/,
  );
  files["common/g"] = "g";
  const plain = expandKernelSource("k", new Set(), read);
  assertEquals(plain.code, "a\n\n\n\n\nb\n\n\n\n\nh\n\ng");
  assertEquals(plain.origin(6), "k.wgsl:6");
  assertEquals(plain.origin(11), "common/h.wgsl:5");
  assertEquals(plain.origin(13), "common/g.wgsl:1");
  // With X, k and h both include g: it comes once, where the first include reached it.
  const x = expandKernelSource("k", new Set(["X"]), read);
  assertEquals(x.code, "a\n\n\n\n\nb\n\n\nhx\n\n\n\ng");
  assertEquals(x.code.split("\n").filter((l) => l === "g").length, 1);
  files.k = 'a\n#include "common/missing.wgsl"';
  assertThrows(
    () => expandKernelSource("k", new Set(), read),
    /kernel k: k\.wgsl includes "common\/missing\.wgsl", which cannot be read/,
  );
  assertThrows(() => expandKernelSource("k", new Set(), read), /common\/missing/);
  assertThrows(
    () => preprocessWgsl('#include "../x.wgsl"', new Set(), "k.wgsl", []),
    /k\.wgsl:1: #include "\.\.\/x\.wgsl": expected a path/,
  );
  assertThrows(() => preprocessWgsl('#include "x.wgsl"', new Set()), /needs expandKernelSource/);
  // The real kernels: the shared files come once each, after the kernel's own lines, in the
  // order the kernel includes them (its first: the one-row input reads).
  const q8 = expandKernelSource("q_q8_0", new Set(["F16"]));
  assertEquals(q8.code.split("fn gemm_outer(").length, 2);
  assertEquals(q8.code.split("fn x_at(").length, 2);
  const own = readKernelSource("q_q8_0").split("\n").length;
  assertEquals(q8.origin(own + 1), "common/gemv_input.wgsl:1");
});

Deno.test("kernels load from files relative to the module", () => {
  assert(readKernelSource("elementwise").includes("fn add"));
  assertThrows(() => readKernelSource("no_such_kernel"), /cannot read/);
});

Deno.test("grid splits large dispatches", () => {
  assertEquals(grid(10), [10, 1, 1]);
  const [x, y] = grid(200_000);
  assert(x <= 65535 && x * y >= 200_000);
});

/** a = zeros and b = ones, `n` each, and elementwise.wgsl's `add` (a += b over `p.n` values). */
async function zerosAndOnes(gpu: Gpu, n: number) {
  const ta = gpu.tensor({ label: "a", category: "activations", data: new Float32Array(n) });
  const tb = gpu.tensor({ label: "b", category: "activations", data: new Float32Array(n).fill(1) });
  const kernel = await gpu.kernel({ file: "elementwise", entry: "add" });
  return { ta, tb, kernel };
}

Deno.test("a batch timed whole runs every op in order and gives one GPU time", async () => {
  const gpu = await requestGpu();
  try {
    const n = 4096;
    const { ta, tb, kernel } = await zerosAndOnes(gpu, n);
    const add = (batch: CommandBatch) =>
      batch.dispatch(kernel, [ta, tb], grid(n / 256), params().u32(n).build());
    // two passes: a += b twice, b := a (a copy ends the first pass), a += b
    const batch = new CommandBatch(gpu);
    add(add(batch)).copy(ta, 0, tb, 0, n * 4);
    add(batch);
    const perDispatch = batch.dispatchCount;
    const timings = await batch.submitTimed({ whole: true });
    assertEquals(perDispatch, 3);
    assertEquals(timings.map((t) => t.kernel), [
      gpu.timestamps ? "batch (one pass)" : "batch (wall clock)",
    ]);
    assert(timings[0].ms >= 0 && Number.isFinite(timings[0].ms));
    const a = await gpu.readF32(ta);
    for (let i = 0; i < n; i += 511) assertEquals(a[i], 4); // 2, then 2 + 2
    ta.destroy();
    tb.destroy();
  } finally {
    gpu.destroy();
  }
});

Deno.test("held submissions run in order when released, each with its own parameters", async () => {
  const gpu = await requestGpu();
  try {
    const n = 4096;
    const { ta, tb, kernel } = await zerosAndOnes(gpu, n);
    const staging = gpu.device.createBuffer({
      size: 16,
      usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
    });
    const first = new CommandBatch(gpu);
    first.dispatch(kernel, [ta, tb], grid(n / 256), params().u32(n).build());
    first.copyToBuffer(ta, 0, staging, 0, 16);
    first.submit();
    // held: a += b over the first half, then b := a, then a += b over the first quarter; the
    // same batch object records all three, so each must keep its own parameters
    // every dispatch covers the whole row: only its `n` parameter limits it
    const addUpTo = (batch: CommandBatch, count: number) =>
      batch.dispatch(kernel, [ta, tb], grid(n / 256), params().u32(count).build());
    const batch = new CommandBatch(gpu);
    const held = gpu.holdSubmissions(() => {
      assert(gpu.holdingSubmissions);
      assertThrows(() => gpu.holdSubmissions(() => 0), /already held/);
      addUpTo(batch, n / 2).submit();
      batch.copy(ta, 0, tb, 0, n * 4).submit();
      addUpTo(batch, n / 4).submit();
      return new CommandBatch(gpu).submitTimed();
    });
    await assertRejects(() => held.value, /holding submissions/);
    assert(gpu.holdingSubmissions, "held until submitted");
    addUpTo(batch, n); // recorded, not submitted: its parameters overwrite the batch's
    const mapped = staging.mapAsync(GPUMapMode.READ);
    held.submit();
    assert(!gpu.holdingSubmissions);
    assertThrows(() => held.submit(), /already submitted/);
    await mapped;
    assertEquals([...new Float32Array(staging.getMappedRange())], [1, 1, 1, 1]);
    staging.unmap();
    staging.destroy();
    const a = await gpu.readF32(ta);
    // a: 1 everywhere, then 2 on the first half; b := a; a += b on the first quarter: 4
    for (let i = 0; i < n; i += 255) {
      assertEquals(a[i], i < n / 4 ? 4 : i < n / 2 ? 2 : 1, `a[${i}]`);
    }
    // a recording that throws: nothing is submitted, and the hold ends
    assertThrows(() =>
      gpu.holdSubmissions(() => {
        batch.submit();
        throw new Error("recording failed");
      }), /recording failed/);
    assert(!gpu.holdingSubmissions);
    assertEquals((await gpu.readF32(ta))[n - 1], 1);
    ta.destroy();
    tb.destroy();
  } finally {
    gpu.destroy();
  }
});

Deno.test("a dispatch runs, is timed, and the ledger returns to zero", async () => {
  const gpu = await requestGpu();
  try {
    const n = 100_000;
    const a = new Float32Array(n).map((_, i) => i);
    const b = new Float32Array(n).fill(0.5);
    const ta = gpu.tensor({ label: "a", category: "activations", data: a });
    const tb = gpu.tensor({ label: "b", category: "activations", data: b });
    const kernel = await gpu.kernel({ file: "elementwise", entry: "add" });
    const batch = new CommandBatch(gpu);
    batch.dispatch(kernel, [ta, tb], grid(Math.ceil(n / 256)), params().u32(n).build());
    const timings = await batch.submitTimed();
    assertEquals(timings.length, 1);
    assert(timings[0].ms >= 0);
    const out = await gpu.readF32(ta);
    for (let i = 0; i < n; i += 997) assertEquals(out[i], i + 0.5);
    assertEquals(out[n - 1], n - 1 + 0.5);
    ta.destroy();
    tb.destroy();
    gpu.trimScratch();
    assertEquals(gpu.ledger.currentBytes, 0);
  } finally {
    gpu.destroy();
  }
});
