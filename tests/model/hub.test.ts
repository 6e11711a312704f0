/**
 * Hub downloads into the Hugging Face cache layout, against a local fake hub (an HTTP server on
 * 127.0.0.1, tests/helpers/fake_hub.ts) and fake cache directories: what lands where, resuming,
 * tokens and errors, a cache laid out by huggingface_hub found with no network, and — where
 * Python's transformers is installed (`QLAB_PYTHON`, else `python3`) — both directions with the
 * real huggingface_hub and transformers.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import {
  cachedSnapshot,
  defaultCacheDir,
  repoCacheDir,
  resolveModelDir,
} from "../../lib/model/hub.ts";
import { openCheckpoint } from "../../lib/model/checkpoint.ts";
import { writeRandomLlama } from "../helpers/random_llama.ts";
import { startFakeHub } from "../helpers/fake_hub.ts";

async function withTempDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "qlab-hub-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

const noNetwork = (() => {
  throw new Error("the network was used");
}) as typeof fetch;

const names = (dir: string) => [...Deno.readDirSync(dir)].map((e) => e.name).sort();

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
    const left = (() => {
      try {
        return [...Deno.readDirSync(cacheDir)];
      } catch {
        return [];
      }
    })();
    assert.deepEqual(left, [], "no empty cache folders left");
  }));

Deno.test("hub: the cache root follows HF_HUB_CACHE, then HF_HOME", () => {
  const saved = ["HF_HUB_CACHE", "HF_HOME"].map((k) => [k, Deno.env.get(k)] as const);
  try {
    Deno.env.set("HF_HOME", "/tmp/hf-home");
    Deno.env.delete("HF_HUB_CACHE");
    assert.equal(defaultCacheDir(), "/tmp/hf-home/hub");
    Deno.env.set("HF_HUB_CACHE", "/tmp/hf-hub");
    assert.equal(defaultCacheDir(), "/tmp/hf-hub");
    assert.equal(repoCacheDir("Qwen/Qwen3-0.6B", "/c"), "/c/models--Qwen--Qwen3-0.6B");
  } finally {
    for (const [k, v] of saved) v === undefined ? Deno.env.delete(k) : Deno.env.set(k, v);
  }
});

Deno.test("hub: a download lands in the Hugging Face layout, and a second run needs no network", () =>
  withTempDir(async (root) => {
    const source = join(root, "source");
    await Deno.mkdir(source);
    await writeRandomLlama(source, { sharded: true });
    const hub = await startFakeHub(source, "org/tiny");
    try {
      const cacheDir = join(root, "cache");
      const dir = await resolveModelDir("org/tiny", {
        cacheDir,
        endpoint: hub.endpoint,
        quiet: true,
      });
      const repo = join(cacheDir, "models--org--tiny");
      assert.equal(dir, join(repo, "snapshots", hub.commit));
      assert.equal(await Deno.readTextFile(join(repo, "refs", "main")), hub.commit);
      assert.deepEqual(names(dir), [
        "config.json",
        "generation_config.json",
        "model-00001-of-00002.safetensors",
        "model-00002-of-00002.safetensors",
        "model.safetensors.index.json",
        "tokenizer.json",
        "tokenizer_config.json",
      ]);
      for (const name of names(dir)) {
        const link = await Deno.lstat(join(dir, name));
        assert.ok(link.isSymlink, `${name} is a link into blobs/`);
        assert.match(await Deno.readLink(join(dir, name)), /^\.\.\/\.\.\/blobs\/[0-9a-f]{40,64}$/);
        assert.deepEqual(
          await Deno.readFile(join(dir, name)),
          await Deno.readFile(join(source, name)),
        );
      }
      // LFS files are stored under their sha256, as huggingface_hub names them.
      const shard = await Deno.readFile(join(source, "model-00001-of-00002.safetensors"));
      const sha = [...new Uint8Array(await crypto.subtle.digest("SHA-256", shard))]
        .map((b) => b.toString(16).padStart(2, "0")).join("");
      assert.ok(names(join(repo, "blobs")).includes(sha));
      // Files the hub lacks are remembered, as huggingface_hub does.
      assert.deepEqual(names(join(repo, ".no_exist", hub.commit)), [
        "chat_template.jinja",
        "special_tokens_map.json",
      ]);
      using ckpt = await openCheckpoint(dir);
      assert.ok(ckpt.has("lm_head.weight"));

      const before = hub.requests.length;
      const opts = { cacheDir, fetch: noNetwork, quiet: true };
      assert.equal(await resolveModelDir("org/tiny", opts), dir);
      assert.equal(await resolveModelDir("org/tiny", { ...opts, revision: hub.commit }), dir);
      assert.equal(await resolveModelDir("org/tiny", { ...opts, offline: true }), dir);
      assert.equal(await cachedSnapshot("org/tiny", "main", cacheDir), dir);
      assert.equal(hub.requests.length, before);
      await assert.rejects(
        resolveModelDir("org/other", { ...opts, offline: true }),
        /org\/other@main is not in the Hugging Face cache .* the network is off/,
      );
    } finally {
      await hub.close();
    }
  }));

Deno.test("hub: an interrupted download leaves only blobs/*.incomplete and resumes", () =>
  withTempDir(async (root) => {
    const source = join(root, "source");
    await Deno.mkdir(source);
    await writeRandomLlama(source);
    const hub = await startFakeHub(source, "org/tiny");
    try {
      hub.failNext("model.safetensors", 1000);
      const cacheDir = join(root, "cache");
      const opts = { cacheDir, endpoint: hub.endpoint, quiet: true };
      await assert.rejects(resolveModelDir("org/tiny", opts));
      const repo = join(cacheDir, "models--org--tiny");
      const snapshot = join(repo, "snapshots", hub.commit);
      assert.ok(!names(snapshot).includes("model.safetensors"));
      assert.equal(await cachedSnapshot("org/tiny", "main", cacheDir), null);
      const partial = names(join(repo, "blobs")).filter((n) => n.endsWith(".incomplete"));
      assert.equal(partial.length, 1);
      assert.equal((await Deno.stat(join(repo, "blobs", partial[0]))).size, 1000);

      assert.equal(await resolveModelDir("org/tiny", opts), snapshot);
      const last = hub.requests.findLast((r) => r.method === "GET" && r.path.startsWith("/cdn/"))!;
      assert.equal(last.range, "bytes=1000-");
      assert.deepEqual(
        await Deno.readFile(join(snapshot, "model.safetensors")),
        await Deno.readFile(join(source, "model.safetensors")),
      );
      assert.ok(!names(join(repo, "blobs")).some((n) => n.endsWith(".incomplete")));
    } finally {
      await hub.close();
    }
  }));

Deno.test("hub: HF_TOKEN is sent, and missing or gated models are explained", () =>
  withTempDir(async (root) => {
    const source = join(root, "source");
    await Deno.mkdir(source);
    await writeRandomLlama(source);
    const hub = await startFakeHub(source, "org/tiny", { gated: true });
    const saved = Deno.env.get("HF_TOKEN");
    try {
      const opts = (c: string) => ({
        cacheDir: join(root, c),
        endpoint: hub.endpoint,
        quiet: true,
      });
      Deno.env.delete("HF_TOKEN");
      await assert.rejects(resolveModelDir("org/tiny", opts("c0")), /HTTP 401.*set HF_TOKEN/);
      Deno.env.set("HF_TOKEN", "hf_test");
      await resolveModelDir("org/tiny", opts("c1"));
      const fromHub = hub.requests.filter((r) => !r.path.startsWith("/cdn/")).slice(1);
      assert.ok(fromHub.every((r) => r.authorization === "Bearer hf_test"));
      await assert.rejects(
        resolveModelDir("org/other", opts("c2")),
        /org\/other is not on the Hub .*HTTP 401.*HF_TOKEN/,
      );
    } finally {
      if (saved === undefined) Deno.env.delete("HF_TOKEN");
      else Deno.env.set("HF_TOKEN", saved);
      await hub.close();
    }
  }));

Deno.test("hub: a cache laid out by huggingface_hub is found by id without network", () =>
  withTempDir(async (root) => {
    // As huggingface_hub leaves it after transformers' from_pretrained: refs/main, blobs named
    // by ETag, snapshot entries as relative symlinks; no marker file of ours.
    const source = join(root, "source");
    await Deno.mkdir(source);
    await writeRandomLlama(source);
    const cacheDir = join(root, "hf", "hub");
    const repo = join(cacheDir, "models--someone--tiny-llama");
    const commit = "0123456789abcdef0123456789abcdef01234567";
    const snapshot = join(repo, "snapshots", commit);
    await Deno.mkdir(snapshot, { recursive: true });
    await Deno.mkdir(join(repo, "blobs"));
    await Deno.mkdir(join(repo, "refs"));
    await Deno.writeTextFile(join(repo, "refs", "main"), commit);
    for (const name of ["config.json", "model.safetensors", "tokenizer.json"]) {
      const blob = `blob${name.length}${name.replaceAll(".", "")}`;
      await Deno.copyFile(join(source, name), join(repo, "blobs", blob));
      await Deno.symlink(`../../blobs/${blob}`, join(snapshot, name));
    }
    const saved = Deno.env.get("HF_HUB_CACHE");
    Deno.env.set("HF_HUB_CACHE", cacheDir);
    try {
      assert.equal(await resolveModelDir("someone/tiny-llama", { fetch: noNetwork }), snapshot);
      using ckpt = await openCheckpoint(snapshot);
      assert.ok(ckpt.has("model.norm.weight"));
      // A snapshot without its weights is not complete: that needs the network.
      await Deno.remove(join(snapshot, "model.safetensors"));
      await assert.rejects(
        resolveModelDir("someone/tiny-llama", { fetch: noNetwork }),
        /the network was used/,
      );
    } finally {
      if (saved === undefined) Deno.env.delete("HF_HUB_CACHE");
      else Deno.env.set("HF_HUB_CACHE", saved);
    }
  }));

// Python with transformers, if any: both directions with the real huggingface_hub.
const PYTHON = Deno.env.get("QLAB_PYTHON") ?? "python3";
const hasTransformers = await new Deno.Command(PYTHON, {
  args: ["-c", "import transformers, huggingface_hub"],
  stdout: "null",
  stderr: "null",
}).output().then((o) => o.success, () => false);
if (!hasTransformers) {
  console.log(`hub tests with Python skipped: ${PYTHON} has no transformers (set QLAB_PYTHON)`);
}

Deno.test({
  name: "hub: transformers' downloads are found here offline, and ours by transformers",
  ignore: !hasTransformers,
  fn: () =>
    withTempDir(async (root) => {
      const source = join(root, "source");
      await Deno.mkdir(source);
      await writeRandomLlama(source, { sharded: true });
      const hub = await startFakeHub(source, "org/tiny");
      try {
        const python = async (code: string, env: Record<string, string>) => {
          const out = await new Deno.Command(PYTHON, { args: ["-c", code], env }).output();
          const text = new TextDecoder().decode(out.stdout);
          assert.ok(out.success, new TextDecoder().decode(out.stderr));
          return text.trim();
        };
        // huggingface_hub downloads (as from_pretrained does) into cache A; we find it offline.
        const cacheA = join(root, "a");
        await python(
          `from huggingface_hub import hf_hub_download as d
for f in ["config.json", "model.safetensors.index.json", "model-00001-of-00002.safetensors",
          "model-00002-of-00002.safetensors", "tokenizer.json"]:
    d("org/tiny", f, cache_dir="${cacheA}")`,
          { HF_ENDPOINT: hub.endpoint, HF_HUB_DISABLE_TELEMETRY: "1" },
        );
        const found = await resolveModelDir("org/tiny", { cacheDir: cacheA, fetch: noNetwork });
        assert.equal(found, join(cacheA, "models--org--tiny", "snapshots", hub.commit));

        // We download into cache B; transformers loads it with the network off.
        const cacheB = join(root, "b");
        await resolveModelDir("org/tiny", {
          cacheDir: cacheB,
          endpoint: hub.endpoint,
          quiet: true,
        });
        const params = await python(
          `from transformers import AutoModelForCausalLM as M
m = M.from_pretrained("org/tiny", cache_dir="${cacheB}", local_files_only=True)
print(sum(p.numel() for p in m.parameters()))`,
          { HF_HUB_OFFLINE: "1", HF_ENDPOINT: "http://127.0.0.1:9" },
        );
        using ckpt = await openCheckpoint(found);
        const stored = ckpt.names().reduce(
          (sum, n) => sum + ckpt.info(n).shape.reduce((a, b) => a * b, 1),
          0,
        );
        assert.equal(Number(params.split("\n").at(-1)), stored);
      } finally {
        await hub.close();
      }
    }),
});
