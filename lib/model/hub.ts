/**
 * Finding a model's files: a local directory as is, or a Hugging Face Hub id (`org/name`)
 * downloaded once into a cache. Downloads go to `<file>.part` and are renamed when complete, so
 * the cache never holds a half-written file under its real name; re-running resumes a `.part`
 * with an HTTP range request.
 *
 * @module
 */

import { dirname, join } from "node:path";
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
  /** Cache root (default `$QLAB_CACHE`, else `~/.cache/qlab/hub`). */
  cacheDir?: string;
  /** Branch, tag or commit (default `main`). */
  revision?: string;
  /** The fetch to use (tests inject one; default the global fetch). */
  fetch?: typeof fetch;
  /** Hub address (default `https://huggingface.co`). */
  endpoint?: string;
  /** No progress output on stderr. */
  quiet?: boolean;
}

/** Files fetched when present; config.json and the weights are required. */
const OPTIONAL_FILES = [
  "tokenizer.json",
  "tokenizer_config.json",
  "generation_config.json",
  "special_tokens_map.json",
];

/** Marks a cache directory whose download finished. */
const COMPLETE_MARKER = ".qlab-complete";

const HUB_ID = /^[A-Za-z0-9][\w.-]*\/[\w.-]+$/;

async function isDirectory(path: string): Promise<boolean> {
  try {
    return (await Deno.stat(path)).isDirectory;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return false;
    throw e;
  }
}

async function fileExists(path: string): Promise<boolean> {
  try {
    return (await Deno.stat(path)).isFile;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return false;
    throw e;
  }
}

/**
 * The default cache root: `$QLAB_CACHE`, else `~/.cache/qlab/hub`.
 *
 * @example
 * ```ts
 * import { defaultCacheDir } from "./hub.ts";
 * console.log(defaultCacheDir());
 * ```
 */
export function defaultCacheDir(): string {
  return Deno.env.get("QLAB_CACHE") ?? join(homedir(), ".cache", "qlab", "hub");
}

/**
 * The directory holding a model: `idOrPath` itself when it is an existing directory, else the
 * cache directory of Hub model `org/name`, downloading what is missing (`config.json`,
 * tokenizer files, `generation_config.json`, `model.safetensors` or the index and its shards).
 * `HF_TOKEN` is sent when set, for gated models.
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
  if (await fileExists(idOrPath)) throw new Error(`${idOrPath}: is a file, not a model directory`);
  if (await looksLikeLocalPath(idOrPath)) throw new Error(`${idOrPath}: no such directory`);
  if (!HUB_ID.test(idOrPath) || idOrPath.startsWith(".")) {
    throw new Error(
      `model "${idOrPath}" is neither a directory nor a Hugging Face id of the form org/name`,
    );
  }
  const revision = options.revision ?? "main";
  if (!/^[\w.-]+$/.test(revision)) throw new Error(`revision "${revision}" is not a valid name`);
  const root = options.cacheDir ?? defaultCacheDir();
  const dir = join(root, ...idOrPath.split("/"), revision);
  // Written last: a complete download needs no network at all (absent optional files included).
  const marker = join(dir, COMPLETE_MARKER);
  if (await fileExists(marker)) return dir;
  await Deno.mkdir(dir, { recursive: true });
  try {
    await download(idOrPath, revision, dir, marker, options);
  } catch (e) {
    // A download that got nothing leaves no empty folders behind.
    await removeEmptyDirs(dir, root);
    throw e;
  }
  return dir;
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

async function download(
  idOrPath: string,
  revision: string,
  dir: string,
  marker: string,
  options: ResolveOptions,
): Promise<void> {
  const hub = new HubDownloader(idOrPath, revision, dir, options);

  await hub.get("config.json", true);
  for (const file of OPTIONAL_FILES) await hub.get(file, false);
  if (await hub.get("model.safetensors.index.json", false)) {
    const index = JSON.parse(await Deno.readTextFile(join(dir, "model.safetensors.index.json")));
    const shards = [...new Set(Object.values(index.weight_map ?? {}) as string[])];
    if (shards.length === 0) {
      throw new Error(`${idOrPath}: model.safetensors.index.json lists no shards`);
    }
    for (const shard of shards) await hub.get(shard, true);
  } else {
    await hub.get("model.safetensors", true);
  }
  await Deno.writeTextFile(marker, `${idOrPath}@${revision}\n`);
}

/** Downloads single files of one model revision into its cache directory. */
class HubDownloader {
  #fetch: typeof fetch;
  #base: string;
  #headers: Record<string, string> = {};

  constructor(
    readonly id: string,
    readonly revision: string,
    readonly dir: string,
    readonly options: ResolveOptions,
  ) {
    this.#fetch = options.fetch ?? fetch;
    this.#base = `${options.endpoint ?? "https://huggingface.co"}/${id}/resolve/${revision}`;
    const token = Deno.env.get("HF_TOKEN");
    if (token) this.#headers.authorization = `Bearer ${token}`;
  }

  /** Fetches `file` unless already complete; false when it is optional and the Hub lacks it. */
  async get(file: string, required: boolean): Promise<boolean> {
    if (file.includes("..") || file.startsWith("/")) {
      throw new Error(`${this.id}: refusing file name "${file}" outside the model directory`);
    }
    const path = join(this.dir, file);
    if (await fileExists(path)) return true;
    await Deno.mkdir(dirname(path), { recursive: true });
    const part = `${path}.part`;
    let have = 0;
    try {
      have = (await Deno.stat(part)).size;
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) throw e;
    }

    const url = `${this.#base}/${file}`;
    const headers = { ...this.#headers };
    if (have > 0) headers.range = `bytes=${have}-`;
    const res = await this.#fetch(url, { headers });
    if (res.status === 404) {
      await res.body?.cancel();
      if (!required) return false;
      throw new Error(`${this.id} has no ${file} at revision ${this.revision} (${url}: HTTP 404)`);
    }
    if (res.status === 401 || res.status === 403) {
      await res.body?.cancel();
      throw new Error(
        `${url}: HTTP ${res.status}; the model may be gated: accept its licence on the Hub and ` +
          `set HF_TOKEN`,
      );
    }
    if (res.status === 416) {
      // The .part already holds every byte: the previous run died just before renaming.
      await res.body?.cancel();
      await Deno.rename(part, path);
      return true;
    }
    if (!res.ok || !res.body) {
      await res.body?.cancel();
      throw new Error(`${url}: HTTP ${res.status} ${res.statusText}`);
    }
    const resumed = res.status === 206;
    if (!resumed) have = 0; // the server ignored the range: start over
    const length = res.headers.get("content-length");
    const total = length === null ? undefined : have + Number(length);

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
      throw new Error(`${url}: got ${done} of ${total} bytes; run again to resume`);
    }
    await Deno.rename(part, path);
    return true;
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
