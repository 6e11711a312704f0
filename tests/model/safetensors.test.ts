import assert from "node:assert/strict";
import { join } from "node:path";
import { openSafetensors, writeSafetensors } from "../../lib/model/safetensors.ts";
import { bf16BitsToF32, f16BitsToF32, f32ToF16Bits } from "../../lib/gpu/f16.ts";
import { randn } from "../helpers/random.ts";

async function withTempDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "qlab-st-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("safetensors: F32/F16/BF16 round trip is exact", () =>
  withTempDir(async (dir) => {
    const path = join(dir, "t.safetensors");
    const f32 = randn(6, 1);
    const f16Bits = new Uint16Array([0x3c00, 0xc000, 0x0001, 0x7bff, 0x8000, 0x3555]);
    const bf16Bits = new Uint16Array([0x3f80, 0xc040, 0x0001, 0x7f7f, 0x8000, 0x4049]);
    await writeSafetensors(path, {
      a: { dtype: "F32", shape: [2, 3], data: f32 },
      b: { dtype: "F16", shape: [3, 2], data: f16Bits },
      c: { dtype: "BF16", shape: [6], data: bf16Bits },
    }, { format: "pt", note: "test" });
    using st = await openSafetensors(path);
    assert.deepEqual(st.names(), ["a", "b", "c"]);
    assert.deepEqual(st.metadata, { format: "pt", note: "test" });
    assert.deepEqual(st.info("b").shape, [3, 2]);
    assert.equal(st.dataOffset % 8, 0);
    assert.deepEqual(await st.readF32("a"), f32);
    assert.deepEqual(await st.readF16Bits("b"), f16Bits);
    assert.deepEqual(await st.readF32("b"), Float32Array.from(f16Bits, f16BitsToF32));
    assert.deepEqual(await st.readF32("c"), Float32Array.from(bf16Bits, bf16BitsToF32));
    assert.deepEqual(await st.readRaw("c"), new Uint8Array(bf16Bits.buffer));
    // Conversions to f16 round to nearest even, element by element.
    assert.deepEqual(await st.readF16Bits("a"), Uint16Array.from(f32, f32ToF16Bits));
    assert.deepEqual(
      await st.readF16Bits("c"),
      Uint16Array.from(bf16Bits, (b) => f32ToF16Bits(bf16BitsToF32(b))),
    );
  }));

Deno.test("safetensors: f32 data written as F16/BF16 is rounded to nearest even", () =>
  withTempDir(async (dir) => {
    const path = join(dir, "t.safetensors");
    // 1 + 2^-8 is a tie between bf16 1 and 1 + 2^-7: even mantissa wins (1).
    const values = new Float32Array([1 + 2 ** -8, 1 + 3 * 2 ** -8, 0.1, -2.5]);
    await writeSafetensors(path, {
      h: { dtype: "F16", shape: [4], data: values },
      b: { dtype: "BF16", shape: [4], data: values },
    });
    using st = await openSafetensors(path);
    assert.deepEqual(await st.readF16Bits("h"), Uint16Array.from(values, f32ToF16Bits));
    const b = await st.readF32("b");
    assert.deepEqual([...b], [1, 1 + 2 ** -6, 0.10009765625, -2.5]);
  }));

Deno.test("safetensors: concurrent reads of one file do not interleave", () =>
  withTempDir(async (dir) => {
    const path = join(dir, "t.safetensors");
    const tensors: Record<string, { dtype: string; shape: number[]; data: Float32Array }> = {};
    for (let i = 0; i < 8; i++) {
      tensors[`t${i}`] = { dtype: "F32", shape: [1000], data: randn(1000, i) };
    }
    await writeSafetensors(path, tensors);
    using st = await openSafetensors(path);
    const got = await Promise.all(st.names().map((n) => st.readF32(n)));
    got.forEach((g, i) => assert.deepEqual(g, tensors[`t${i}`].data));
  }));

Deno.test("safetensors: writer leaves nothing behind on error", () =>
  withTempDir(async (dir) => {
    const path = join(dir, "bad.safetensors");
    await assert.rejects(
      writeSafetensors(path, { w: { dtype: "F32", shape: [3], data: new Float32Array(2) } }),
      /tensor w: 8 bytes of data, but shape \[3\] of F32 needs 12/,
    );
    assert.deepEqual([...Deno.readDirSync(dir)], []);
    // Failing at the final rename (the target is a directory) removes the temporary file too.
    const taken = join(dir, "taken.safetensors");
    await Deno.mkdir(taken);
    await assert.rejects(
      writeSafetensors(taken, { w: { dtype: "F32", shape: [1], data: new Float32Array(1) } }),
    );
    assert.deepEqual([...Deno.readDirSync(dir)].map((e) => e.name), ["taken.safetensors"]);
  }));

Deno.test("safetensors: truncated and corrupt files name the file and tensor", () =>
  withTempDir(async (dir) => {
    const good = join(dir, "good.safetensors");
    await writeSafetensors(good, {
      "model.norm.weight": { dtype: "F32", shape: [4], data: new Float32Array(4) },
      "lm_head.weight": { dtype: "F16", shape: [4, 4], data: new Uint16Array(16) },
    });
    const bytes = await Deno.readFile(good);

    const truncated = join(dir, "truncated.safetensors");
    await Deno.writeFile(truncated, bytes.subarray(0, bytes.length - 4));
    await assert.rejects(openSafetensors(truncated), (e: Error) => {
      assert.match(e.message, /truncated\.safetensors/);
      assert.match(e.message, /tensor lm_head\.weight/);
      assert.match(e.message, /truncated/);
      return true;
    });

    const tiny = join(dir, "tiny.safetensors");
    await Deno.writeFile(tiny, new Uint8Array(5));
    await assert.rejects(openSafetensors(tiny), /tiny\.safetensors: 5 bytes is too short/);

    const hugeHeader = join(dir, "huge.safetensors");
    const h = bytes.slice();
    new DataView(h.buffer).setBigUint64(0, 1n << 40n, true);
    await Deno.writeFile(hugeHeader, h);
    await assert.rejects(
      openSafetensors(hugeHeader),
      /huge\.safetensors: header length \d+ is not plausible/,
    );

    const shortHeader = join(dir, "short.safetensors");
    await Deno.writeFile(shortHeader, bytes.subarray(0, 20));
    await assert.rejects(openSafetensors(shortHeader), /short\.safetensors: header claims/);

    const garbage = join(dir, "garbage.safetensors");
    const g = bytes.slice();
    g[9] = 0x7b; // '{' twice: not JSON any more
    await Deno.writeFile(garbage, g);
    await assert.rejects(
      openSafetensors(garbage),
      /garbage\.safetensors: header: invalid JSON at character 1/,
    );

    // A header whose byte range disagrees with the shape.
    const mismatch = join(dir, "mismatch.safetensors");
    const header = JSON.stringify({ w: { dtype: "F32", shape: [2, 2], data_offsets: [0, 12] } });
    const enc = new TextEncoder().encode(header);
    const m = new Uint8Array(8 + enc.length + 16);
    new DataView(m.buffer).setBigUint64(0, BigInt(enc.length), true);
    m.set(enc, 8);
    await Deno.writeFile(mismatch, m);
    await assert.rejects(
      openSafetensors(mismatch),
      /mismatch\.safetensors: tensor w: 12 bytes stored, but shape \[2, 2\] of F32 needs 16/,
    );
  }));

Deno.test("safetensors: missing tensors and non-float dtypes name the tensor", () =>
  withTempDir(async (dir) => {
    const path = join(dir, "t.safetensors");
    await writeSafetensors(path, { q: { dtype: "I8", shape: [4], data: new Uint8Array(4) } });
    using st = await openSafetensors(path);
    await assert.rejects(st.readF32("q"), /t\.safetensors: tensor q has dtype I8/);
    assert.throws(() => st.info("nope"), /tensor nope not found in .*t\.safetensors/);
    assert.deepEqual(await st.readRaw("q"), new Uint8Array(4));
  }));
