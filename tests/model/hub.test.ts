import assert from "node:assert/strict";
import { join } from "node:path";
import { resolveModelDir } from "../../lib/model/hub.ts";
import { openCheckpoint } from "../../lib/model/checkpoint.ts";
import { writeRandomLlama } from "../helpers/random_llama.ts";

async function withTempDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "qlab-hub-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

interface Request {
  url: string;
  headers: Record<string, string>;
}

/**
 * A fake Hub serving the files of `dir` under `https://huggingface.co/org/tiny/resolve/main/`.
 * `failAfter` makes the first download of a file break after that many bytes.
 */
async function fakeHub(dir: string, failAfter: Record<string, number> = {}) {
  const files = new Map<string, Uint8Array>();
  for (const e of Deno.readDirSync(dir)) files.set(e.name, await Deno.readFile(join(dir, e.name)));
  const requests: Request[] = [];
  const fakeFetch = (input: string | URL | globalThis.Request, init?: RequestInit) => {
    const url = String(input);
    const headers = { ...(init?.headers as Record<string, string>) };
    requests.push({ url, headers });
    const prefix = "https://huggingface.co/org/tiny/resolve/main/";
    const body = url.startsWith(prefix) ? files.get(url.slice(prefix.length)) : undefined;
    if (!body) return Promise.resolve(new Response("Entry not found", { status: 404 }));
    const name = url.slice(prefix.length);
    let start = 0;
    let status = 200;
    if (headers.range) {
      start = Number(/bytes=(\d+)-/.exec(headers.range)![1]);
      status = 206;
    }
    const rest = body.subarray(start);
    const limit = failAfter[name];
    delete failAfter[name];
    let sent = false;
    const stream = new ReadableStream<Uint8Array>({
      pull(controller) {
        if (!sent) {
          sent = true;
          controller.enqueue(rest.slice(0, limit ?? rest.length));
        } else if (limit === undefined) controller.close();
        else controller.error(new Error("connection reset"));
      },
    });
    return Promise.resolve(
      new Response(stream, { status, headers: { "content-length": String(rest.length) } }),
    );
  };
  return { fetch: fakeFetch as typeof fetch, requests };
}

Deno.test("hub: a local directory is used as is", () =>
  withTempDir(async (dir) => {
    assert.equal(await resolveModelDir(dir), dir);
    const missing = join(dir, "nope", "deeper", "still");
    await assert.rejects(resolveModelDir(missing), new RegExp(`${missing}: no such directory`));
    await Deno.writeTextFile(join(dir, "file"), "");
    await assert.rejects(resolveModelDir(join(dir, "file")), /is a file, not a model directory/);
  }));

Deno.test("hub: a mistyped local path is not sent to the Hub, and a failed download leaves no folders", () =>
  withTempDir(async (root) => {
    const cacheDir = join(root, "cache");
    let fetched = 0;
    const failing = ((_url: string) => {
      fetched++;
      return Promise.reject(new TypeError("fetch failed"));
    }) as typeof fetch;
    const opts = { cacheDir, fetch: failing, quiet: true };
    // "models" exists here (the bundled model's folder), so "models/typo" means a local path.
    const cwd = Deno.cwd();
    Deno.chdir(new URL("../..", import.meta.url).pathname);
    try {
      await assert.rejects(resolveModelDir("models/sotu-llamaa", opts), /no such directory/);
      await assert.rejects(resolveModelDir("./sotu", opts), /no such directory/);
      await assert.rejects(resolveModelDir("a/b/c", opts), /no such directory/);
    } finally {
      Deno.chdir(cwd);
    }
    assert.equal(fetched, 0);
    await assert.rejects(resolveModelDir("org/tiny", opts), /fetch failed/);
    assert.equal(fetched, 1);
    assert.deepEqual([...Deno.readDirSync(cacheDir)], [], "no empty cache folders left");
  }));

Deno.test("hub: a download lands complete files only, and a second run needs no network", () =>
  withTempDir(async (root) => {
    const source = join(root, "source");
    await Deno.mkdir(source);
    await writeRandomLlama(source, { sharded: true });
    const hub = await fakeHub(source);
    const cacheDir = join(root, "cache");
    const dir = await resolveModelDir("org/tiny", { cacheDir, fetch: hub.fetch, quiet: true });
    assert.equal(dir, join(cacheDir, "org", "tiny", "main"));
    const names = [...Deno.readDirSync(dir)].map((e) => e.name).sort();
    assert.deepEqual(names, [
      ".qlab-complete",
      "config.json",
      "generation_config.json",
      "model-00001-of-00002.safetensors",
      "model-00002-of-00002.safetensors",
      "model.safetensors.index.json",
      "tokenizer.json",
      "tokenizer_config.json",
    ]);
    for (const name of names.filter((n) => !n.startsWith("."))) {
      assert.deepEqual(
        await Deno.readFile(join(dir, name)),
        await Deno.readFile(join(source, name)),
      );
    }
    using ckpt = await openCheckpoint(dir);
    assert.ok(ckpt.has("lm_head.weight"));
    const before = hub.requests.length;
    assert.equal(
      await resolveModelDir("org/tiny", { cacheDir, fetch: hub.fetch, quiet: true }),
      dir,
    );
    assert.equal(hub.requests.length, before);
  }));

Deno.test("hub: an interrupted download leaves no file under its real name and resumes", () =>
  withTempDir(async (root) => {
    const source = join(root, "source");
    await Deno.mkdir(source);
    await writeRandomLlama(source);
    const hub = await fakeHub(source, { "model.safetensors": 1000 });
    const cacheDir = join(root, "cache");
    const opts = { cacheDir, fetch: hub.fetch, quiet: true };
    await assert.rejects(resolveModelDir("org/tiny", opts), /connection reset/);
    const dir = join(cacheDir, "org", "tiny", "main");
    const names = [...Deno.readDirSync(dir)].map((e) => e.name);
    assert.ok(!names.includes("model.safetensors"));
    assert.ok(!names.includes(".qlab-complete"));
    assert.equal((await Deno.stat(join(dir, "model.safetensors.part"))).size, 1000);

    await resolveModelDir("org/tiny", opts);
    const last = hub.requests.findLast((r) => r.url.endsWith("/model.safetensors"))!;
    assert.equal(last.headers.range, "bytes=1000-");
    assert.deepEqual(
      await Deno.readFile(join(dir, "model.safetensors")),
      await Deno.readFile(join(source, "model.safetensors")),
    );
    assert.ok(![...Deno.readDirSync(dir)].some((e) => e.name.endsWith(".part")));
  }));

Deno.test("hub: HF_TOKEN is sent, and missing or gated models are explained", () =>
  withTempDir(async (root) => {
    const source = join(root, "source");
    await Deno.mkdir(source);
    await writeRandomLlama(source);
    const hub = await fakeHub(source);
    const saved = Deno.env.get("HF_TOKEN");
    Deno.env.set("HF_TOKEN", "hf_test");
    try {
      await resolveModelDir("org/tiny", {
        cacheDir: join(root, "c1"),
        fetch: hub.fetch,
        quiet: true,
      });
      assert.ok(hub.requests.every((r) => r.headers.authorization === "Bearer hf_test"));
    } finally {
      if (saved === undefined) Deno.env.delete("HF_TOKEN");
      else Deno.env.set("HF_TOKEN", saved);
    }
    await assert.rejects(
      resolveModelDir("org/other", { cacheDir: join(root, "c2"), fetch: hub.fetch, quiet: true }),
      /org\/other has no config\.json at revision main/,
    );
    const gated = (() => Promise.resolve(new Response("", { status: 401 }))) as typeof fetch;
    await assert.rejects(
      resolveModelDir("org/gated", { cacheDir: join(root, "c3"), fetch: gated, quiet: true }),
      /HTTP 401.*set HF_TOKEN/,
    );
  }));
