/**
 * Finding a model's files: a local directory as is, or a Hugging Face Hub id (`org/name`) in the
 * Hugging Face cache, downloaded into it when missing. The cache is the one Python's
 * `huggingface_hub` (and so transformers) uses, in its layout:
 *
 * ```
 * $HF_HUB_CACHE (else $HF_HOME/hub, else ~/.cache/huggingface/hub)
 *   models--org--name/
 *     refs/main                      the commit the branch pointed to, as text
 *     blobs/<etag>                   each file's bytes, named by its ETag (sha256 for LFS files)
 *     snapshots/<commit>/<file>      symlinks to ../../blobs/<etag>
 *     .no_exist/<commit>/<file>      empty: the Hub has no such file at that commit
 * ```
 *
 * so a model transformers downloaded is found here without network, and one downloaded here is
 * found by transformers (`local_files_only=True` / `HF_HUB_OFFLINE=1`). Downloads go to
 * `blobs/<etag>.incomplete` and are renamed when complete; re-running resumes with an HTTP range
 * request. Each file's commit and ETag come from a `HEAD` of its `resolve` URL without following
 * redirects (`X-Repo-Commit`, `X-Linked-Etag` / `ETag`), as `huggingface_hub` does.
 *
 * Why not npm `@huggingface/hub`'s cache download: it asks the Hub's JSON API (`paths-info`,
 * file trees) and its Xet storage for each file, and does not resume a partial file; this needs
 * only the `resolve` URLs that any mirror (`HF_ENDPOINT`) serves.
 *
 * @module
 */

import { dirname, join, relative } from "node:path";
import { homedir } from "node:os";

/**
 * Options of {@link resolveModelDir}.
 *
 * @example
 * ```ts
 * import type { ResolveOptions } from "./hub.ts";
 * const o: ResolveOptions = { revision: "main", quiet: true };
 * ```
 */
export interface ResolveOptions {
  /** Cache root (default {@linkcode defaultCacheDir}: `HF_HUB_CACHE`, `HF_HOME`, ...). */
  cacheDir?: string;
  /** Branch, tag or commit (default `main`). */
  revision?: string;
  /** The fetch to use (default the global fetch). */
  fetch?: typeof fetch;
  /** Hub address (default `$HF_ENDPOINT`, else `https://huggingface.co`). */
  endpoint?: string;
  /** Never use the network, only the cache (default: `HF_HUB_OFFLINE=1`). */
  offline?: boolean;
  /** No progress output on stderr. */
  quiet?: boolean;
}

/** Files fetched when present; config.json and the weights are required. */
const OPTIONAL_FILES = [
  "tokenizer.json",
  "tokenizer_config.json",
  "generation_config.json",
  "special_tokens_map.json",
  "chat_template.jinja",
];

const HUB_ID = /^[A-Za-z0-9][\w.-]*\/[\w.-]+$/;
const COMMIT = /^[0-9a-f]{40}$/;

async function isDirectory(path: string): Promise<boolean> {
  try {
    return (await Deno.stat(path)).isDirectory;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return false;
    throw e;
  }
}

/** Whether `path` is a file (following symlinks: a snapshot entry whose blob is gone is not). */
async function fileExists(path: string): Promise<boolean> {
  try {
    return (await Deno.stat(path)).isFile;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return false;
    throw e;
  }
}

async function readTextOrNull(path: string): Promise<string | null> {
  try {
    return await Deno.readTextFile(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return null;
    throw e;
  }
}

/**
 * The cache root, as `huggingface_hub` chooses it: `$HF_HUB_CACHE`, else `$HF_HOME/hub`, else
 * `$XDG_CACHE_HOME/huggingface/hub`, else `~/.cache/huggingface/hub`.
 *
 * @example
 * ```ts
 * import { defaultCacheDir } from "./hub.ts";
 * console.log(defaultCacheDir());
 * ```
 */
export function defaultCacheDir(): string {
  const env = (k: string) => Deno.env.get(k) || undefined;
  const hub = env("HF_HUB_CACHE");
  if (hub) return hub;
  const home = env("HF_HOME") ??
    join(env("XDG_CACHE_HOME") ?? join(homedir(), ".cache"), "huggingface");
  return join(home, "hub");
}

/**
 * The cache folder of a Hub model: `<cacheDir>/models--org--name`.
 *
 * @example
 * ```ts
 * import { repoCacheDir } from "./hub.ts";
 * repoCacheDir("Qwen/Qwen3-0.6B", "/cache"); // "/cache/models--Qwen--Qwen3-0.6B"
 * ```
 */
export function repoCacheDir(id: string, cacheDir: string = defaultCacheDir()): string {
  return join(cacheDir, `models--${id.split("/").join("--")}`);
}

/** Whether `dir` holds config.json and the complete weights (a single file or every shard). */
async function isComplete(dir: string): Promise<boolean> {
  if (!await fileExists(join(dir, "config.json"))) return false;
  if (await fileExists(join(dir, "model.safetensors"))) return true;
  const indexText = await readTextOrNull(join(dir, "model.safetensors.index.json"));
  if (indexText === null) return false;
  let shards: string[];
  try {
    shards = [...new Set(Object.values(JSON.parse(indexText).weight_map ?? {}) as string[])];
  } catch {
    return false;
  }
  if (shards.length === 0) return false;
  for (const shard of shards) if (!await fileExists(join(dir, shard))) return false;
  return true;
}

/**
 * The snapshot folder of a model revision already in the cache with its config and weights, or
 * null (no network is used).
 *
 * @example
 * ```ts ignore
 * import { cachedSnapshot } from "./hub.ts";
 * await cachedSnapshot("Qwen/Qwen3-0.6B"); // ".../models--Qwen--Qwen3-0.6B/snapshots/<commit>"
 * ```
 */
export async function cachedSnapshot(
  id: string,
  revision = "main",
  cacheDir: string = defaultCacheDir(),
): Promise<string | null> {
  const repo = repoCacheDir(id, cacheDir);
  let commit: string | null = revision;
  if (!COMMIT.test(revision)) {
    commit = (await readTextOrNull(join(repo, "refs", revision)))?.trim() ?? null;
  }
  if (!commit || !COMMIT.test(commit)) return null;
  const dir = join(repo, "snapshots", commit);
  return await isComplete(dir) ? dir : null;
}

/**
 * The directory holding a model: `idOrPath` itself when it is an existing directory, else the
 * snapshot of Hub model `org/name` in the Hugging Face cache ({@linkcode defaultCacheDir}),
 * downloading what is missing (`config.json`, tokenizer files and chat template,
 * `generation_config.json`, `model.safetensors` or the index and its shards). A snapshot that
 * already has its config and weights needs no network. `HF_TOKEN` is sent when set, for gated
 * models; `HF_HUB_OFFLINE=1` forbids the network.
 *
 * @example
 * ```ts ignore
 * import { resolveModelDir } from "./hub.ts";
 * const dir = await resolveModelDir("TinyLlama/TinyLlama-1.1B-Chat-v1.0");
 * ```
 */
export async function resolveModelDir(
  idOrPath: string,
  options: ResolveOptions = {},
): Promise<string> {
  if (await isDirectory(idOrPath)) return idOrPath;
  // a llama2.c model file (.bin) is read as it is
  if (idOrPath.endsWith(".bin") && await fileExists(idOrPath)) return idOrPath;
  if (await fileExists(idOrPath)) throw new Error(`${idOrPath}: is a file, not a model directory`);
  if (await looksLikeLocalPath(idOrPath)) throw new Error(`${idOrPath}: no such directory`);
  if (!HUB_ID.test(idOrPath) || idOrPath.startsWith(".")) {
    throw new Error(
      `model "${idOrPath}" is neither a directory nor a Hugging Face id of the form org/name`,
    );
  }
  const revision = options.revision ?? "main";
  if (!/^[\w.-]+$/.test(revision)) throw new Error(`revision "${revision}" is not a valid name`);
  const cacheDir = options.cacheDir ?? defaultCacheDir();
  const cached = await cachedSnapshot(idOrPath, revision, cacheDir);
  if (cached) return cached;
  const offline = options.offline ?? ["1", "true", "on", "yes"].includes(
    (Deno.env.get("HF_HUB_OFFLINE") ?? "").toLowerCase(),
  );
  if (offline) {
    throw new Error(
      `${idOrPath}@${revision} is not in the Hugging Face cache ${cacheDir} (config.json and ` +
        `weights), and the network is off (HF_HUB_OFFLINE)`,
    );
  }
  const repo = repoCacheDir(idOrPath, cacheDir);
  try {
    return await download(new HubDownloader(idOrPath, revision, repo, options));
  } catch (e) {
    // A download that got nothing leaves no empty folders behind.
    await removeEmptyDirs(repo, cacheDir);
    throw e;
  }
}

/**
 * Whether a model argument that is not an existing directory was still meant as a local path:
 * it starts with `/`, `.` or `~`, ends with a separator, has more than one `/` or a `\`, or
 * its first component is an existing local directory (`models/typo`).
 */
async function looksLikeLocalPath(idOrPath: string): Promise<boolean> {
  if (/^[/.~]|[/\\]$|\\/.test(idOrPath)) return true;
  const parts = idOrPath.split("/");
  if (parts.length > 2) return true;
  return parts.length === 2 && await isDirectory(parts[0]);
}

/** Removes `dir` and then its parents up to (not including) `root`, while they are empty. */
async function removeEmptyDirs(dir: string, root: string): Promise<void> {
  for (let d = dir; d.startsWith(root) && d !== root && d.length > root.length; d = dirname(d)) {
    try {
      await Deno.remove(d); // not recursive: fails, and stops, at the first non-empty folder
    } catch {
      return;
    }
  }
}

/** Fetches config, tokenizer files and weights of one revision; returns its snapshot folder. */
async function download(hub: HubDownloader): Promise<string> {
  const idOrPath = hub.id;
  await hub.get("config.json", true);
  for (const file of OPTIONAL_FILES) await hub.get(file, false);
  if (await hub.get("model.safetensors.index.json", false)) {
    const index = JSON.parse(
      await Deno.readTextFile(join(hub.snapshot, "model.safetensors.index.json")),
    );
    const shards = [...new Set(Object.values(index.weight_map ?? {}) as string[])];
    if (shards.length === 0) {
      throw new Error(`${idOrPath}: model.safetensors.index.json lists no shards`);
    }
    for (const shard of shards) await hub.get(shard, true);
  } else {
    await hub.get("model.safetensors", true);
  }
  return hub.snapshot;
}

/** A file's commit and blob name, from the headers of its `resolve` URL. */
interface FileMeta {
  commit: string;
  etag: string;
  /** Where to GET the bytes (the redirect target of LFS files). */
  url: string;
  size?: number;
}

/** Downloads single files of one model revision into the cache. */
class HubDownloader {
  #fetch: typeof fetch;
  #base: string;
  #headers: Record<string, string> = {};
  #commit: string | null = null;

  constructor(
    readonly id: string,
    readonly revision: string,
    readonly repo: string,
    readonly options: ResolveOptions,
  ) {
    this.#fetch = options.fetch ?? fetch;
    const endpoint = options.endpoint ?? Deno.env.get("HF_ENDPOINT") ?? "https://huggingface.co";
    this.#base = `${endpoint.replace(/\/+$/, "")}/${id}/resolve/${revision}`;
    const token = Deno.env.get("HF_TOKEN");
    if (token) this.#headers.authorization = `Bearer ${token}`;
  }

  /** The snapshot folder of the revision (known after the first file). */
  get snapshot(): string {
    if (!this.#commit) throw new Error(`${this.id}: no file fetched yet`);
    return join(this.repo, "snapshots", this.#commit);
  }

  /**
   * Makes `file` present in the snapshot unless it already is; false when it is optional and the
   * Hub lacks it (recorded under `.no_exist/<commit>/`, as `huggingface_hub` does).
   */
  async get(file: string, required: boolean): Promise<boolean> {
    if (file.includes("..") || file.startsWith("/")) {
      throw new Error(`${this.id}: refusing file name "${file}" outside the model directory`);
    }
    if (this.#commit) {
      if (await fileExists(join(this.snapshot, file))) return true;
      if (!required && await fileExists(join(this.repo, ".no_exist", this.#commit, file))) {
        return false;
      }
    }
    const meta = await this.#head(file);
    if (!meta) {
      if (!required) {
        if (this.#commit) {
          const marker = join(this.repo, ".no_exist", this.#commit, file);
          await Deno.mkdir(dirname(marker), { recursive: true });
          await Deno.writeFile(marker, new Uint8Array());
        }
        return false;
      }
      throw new Error(
        `${this.id} has no ${file} at revision ${this.revision} (${this.#base}/${file}: HTTP 404)`,
      );
    }
    if (!this.#commit) {
      this.#commit = meta.commit;
      // refs/<branch> names the commit, as huggingface_hub writes it (not for a commit itself).
      if (this.revision !== meta.commit) {
        const ref = join(this.repo, "refs", this.revision);
        await Deno.mkdir(dirname(ref), { recursive: true });
        await Deno.writeTextFile(ref, meta.commit);
      }
    } else if (meta.commit !== this.#commit) {
      throw new Error(
        `${this.id}: ${file} is at commit ${meta.commit}, the other files at ${this.#commit} ` +
          `(the branch moved during the download; run again)`,
      );
    }
    const blob = join(this.repo, "blobs", meta.etag);
    if (!await fileExists(blob)) await this.#download(file, meta, blob);
    const link = join(this.snapshot, file);
    await Deno.mkdir(dirname(link), { recursive: true });
    await Deno.remove(link).catch(() => {});
    try {
      await Deno.symlink(relative(dirname(link), blob), link);
    } catch {
      // No symlinks here (as on some Windows setups): huggingface_hub then copies the blob.
      await Deno.copyFile(blob, link);
    }
    return true;
  }

  /** HEAD of the resolve URL without following redirects; null on 404. */
  async #head(file: string): Promise<FileMeta | null> {
    let url = `${this.#base}/${file}`;
    for (let hop = 0; hop < 5; hop++) {
      const res = await this.#fetch(url, {
        method: "HEAD",
        headers: this.#headers,
        redirect: "manual",
      });
      await res.body?.cancel();
      if (res.status === 404) return null;
      if (res.status === 401 || res.status === 403) {
        if (res.headers.get("x-error-code") === "RepoNotFound") {
          throw new Error(
            `${this.id} is not on the Hub (${url}: HTTP ${res.status}); a private model needs ` +
              `HF_TOKEN`,
          );
        }
        throw new Error(
          `${url}: HTTP ${res.status}; the model may be gated: accept its licence on the Hub and ` +
            `set HF_TOKEN`,
        );
      }
      const commit = res.headers.get("x-repo-commit");
      const etag = (res.headers.get("x-linked-etag") ?? res.headers.get("etag"))
        ?.replace(/^W\//, "").replaceAll('"', "");
      const location = res.headers.get("location");
      const redirect = res.status >= 300 && res.status < 400 && location;
      if (commit && etag && (res.ok || redirect)) {
        if (!COMMIT.test(commit)) throw new Error(`${url}: X-Repo-Commit "${commit}" is no commit`);
        if (!/^[\w.-]+$/.test(etag)) throw new Error(`${url}: ETag "${etag}" is no blob name`);
        const size = res.headers.get("x-linked-size") ?? res.headers.get("content-length");
        return {
          commit,
          etag,
          url: redirect ? new URL(location, url).href : url,
          size: size === null ? undefined : Number(size),
        };
      }
      if (redirect) {
        url = new URL(location, url).href; // a renamed repository: follow it
        continue;
      }
      throw new Error(
        `${url}: HTTP ${res.status} ${res.statusText}` +
          (res.ok ? " without X-Repo-Commit and ETag headers (not a Hugging Face hub?)" : ""),
      );
    }
    throw new Error(`${url}: too many redirects`);
  }

  /** Downloads into `blob` through `blob.incomplete`, resuming what an earlier run left. */
  async #download(file: string, meta: FileMeta, blob: string): Promise<void> {
    await Deno.mkdir(dirname(blob), { recursive: true });
    const part = `${blob}.incomplete`;
    let have = 0;
    try {
      have = (await Deno.stat(part)).size;
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) throw e;
    }
    const headers = { ...this.#headers };
    if (have > 0) headers.range = `bytes=${have}-`;
    const res = await this.#fetch(meta.url, { headers });
    if (res.status === 416) {
      // The .incomplete already holds every byte: the previous run died just before renaming.
      await res.body?.cancel();
      await Deno.rename(part, blob);
      return;
    }
    if (!res.ok || !res.body) {
      await res.body?.cancel();
      throw new Error(`${meta.url}: HTTP ${res.status} ${res.statusText}`);
    }
    const resumed = res.status === 206;
    if (!resumed) have = 0; // the server ignored the range: start over
    const length = res.headers.get("content-length");
    const total = length === null ? meta.size : have + Number(length);

    const out = await Deno.open(part, {
      write: true,
      create: true,
      append: resumed,
      truncate: !resumed,
    });
    let done = have;
    const progress = this.#progress(file, total);
    try {
      for await (const chunk of res.body) {
        let written = 0;
        while (written < chunk.length) written += await out.write(chunk.subarray(written));
        done += chunk.length;
        progress(done, false);
      }
    } finally {
      out.close();
    }
    progress(done, true);
    if (total !== undefined && done !== total) {
      throw new Error(`${meta.url}: got ${done} of ${total} bytes; run again to resume`);
    }
    await Deno.rename(part, blob);
  }

  #progress(file: string, total?: number): (done: number, final: boolean) => void {
    if (this.options.quiet) return () => {};
    const enc = new TextEncoder();
    const tty = Deno.stderr.isTerminal();
    const mib = (n: number) => (n / 2 ** 20).toFixed(1);
    let last = 0;
    return (done, final) => {
      const now = Date.now();
      if (!final && now - last < (tty ? 200 : 5000)) return;
      last = now;
      const pct = total ? ` (${Math.floor((100 * done) / total)}%)` : "";
      const size = `${mib(done)}${total ? ` / ${mib(total)}` : ""} MiB${pct}`;
      const line = `${this.id}/${file}: ${size}`;
      Deno.stderr.writeSync(enc.encode(tty ? `\r${line}${final ? "\n" : ""}` : `${line}\n`));
    };
  }
}
