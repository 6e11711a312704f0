/**
 * Atomic writes leave no hidden partial files: not on an error, not on SIGINT or SIGTERM, and
 * what a killed run left is swept by the next write into the folder.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { removeStaleTempFiles, writeAtomic, writeFileAtomic } from "../../lib/io/atomic.ts";

const ATOMIC = new URL("../../lib/io/atomic.ts", import.meta.url).href;

async function withTempDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "qlab-atomic-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

const names = (dir: string) => [...Deno.readDirSync(dir)].map((e) => e.name).sort();

/** Starts a process that begins writing `target` and then waits; resolves once it is writing. */
async function startWriter(target: string): Promise<Deno.ChildProcess> {
  const script = `
    import { writeFileAtomic } from ${JSON.stringify(ATOMIC)};
    await writeFileAtomic(${JSON.stringify(target)}, async (file) => {
      await file.write(new Uint8Array(1 << 20));
      console.log("writing");
      await new Promise(() => setInterval(() => {}, 1000)); // never finishes
    });`;
  const child = new Deno.Command(Deno.execPath(), {
    args: ["eval", script],
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const reader = child.stdout.getReader();
  const { value } = await reader.read();
  assert.match(new TextDecoder().decode(value), /writing/);
  reader.releaseLock();
  return child;
}

for (const [signal, status] of [["SIGINT", 130], ["SIGTERM", 143]] as const) {
  Deno.test(`atomic write: ${signal} during the write removes the temporary file`, () =>
    withTempDir(async (dir) => {
      const target = join(dir, "report.html");
      const child = await startWriter(target);
      assert.equal(names(dir).length, 1, "the temporary file exists while writing");
      assert.match(names(dir)[0], /^\.report\.html\.\d+-[0-9a-f]{8}\.qlab-tmp$/);
      child.kill(signal);
      const { code } = await child.status;
      await child.stdout.cancel().catch(() => {});
      assert.equal(code, status);
      assert.deepEqual(names(dir), [], "nothing left behind");
    }));
}

Deno.test("atomic write: a killed run's temporary file is swept by the next write", () =>
  withTempDir(async (dir) => {
    const child = await startWriter(join(dir, "a.json"));
    child.kill("SIGKILL");
    await child.status;
    await child.stdout.cancel().catch(() => {});
    assert.equal(names(dir).length, 1, "SIGKILL cannot be caught: the file stays");
    // Earlier versions' names: swept once ten minutes old, not before.
    const old = join(dir, ".7f1c2a9e-1b2c-4d3e-8f90-123456789abc.tmp.html");
    const fresh = join(dir, "x.json.0a1b2c3d-1b2c-4d3e-8f90-123456789abc.tmp");
    await Deno.writeTextFile(old, "partial");
    await Deno.writeTextFile(fresh, "partial");
    const hourAgo = new Date(Date.now() - 3600_000);
    await Deno.utime(old, hourAgo, hourAgo);
    await writeAtomic(join(dir, "b.json"), "{}\n");
    assert.deepEqual(names(dir), ["b.json", "x.json.0a1b2c3d-1b2c-4d3e-8f90-123456789abc.tmp"]);
    assert.deepEqual(await removeStaleTempFiles(dir), []);
  }));

Deno.test("atomic write: an error leaves neither the target nor a temporary file", () =>
  withTempDir(async (dir) => {
    const target = join(dir, "out.bin");
    await assert.rejects(
      writeFileAtomic(target, async (file) => {
        await file.write(new Uint8Array(10));
        throw new Error("disk full");
      }),
      /disk full/,
    );
    assert.deepEqual(names(dir), []);
    await writeAtomic(target, new Uint8Array([1, 2, 3]));
    assert.deepEqual([...await Deno.readFile(target)], [1, 2, 3]);
    assert.deepEqual(names(dir), ["out.bin"]);
  }));
