/**
 * A local Hugging Face hub for tests: an HTTP server on 127.0.0.1 that answers `resolve` URLs as
 * huggingface.co does — `X-Repo-Commit` and `ETag` headers, LFS files (`*.safetensors`) as a 302
 * to a content URL with `X-Linked-Etag` (their sha256) and `X-Linked-Size`, range requests, 404
 * with `X-Error-Code: EntryNotFound` for missing files, 401 for gated repositories.
 *
 * @module
 */

import { join } from "node:path";

/** One request the hub saw. */
export interface HubRequest {
  method: string;
  path: string;
  range: string | null;
  authorization: string | null;
}

/** A running fake hub; `close()` stops it. */
export interface FakeHub {
  /** `http://127.0.0.1:PORT`, the endpoint to give `resolveModelDir` or `HF_ENDPOINT`. */
  endpoint: string;
  /** The commit every file is served at. */
  commit: string;
  /** Every request, in order. */
  requests: HubRequest[];
  /** Makes the next download of `file` break after `bytes` bytes. */
  failNext(file: string, bytes: number): void;
  /** Stops the server. */
  close(): Promise<void>;
}

async function hex(algorithm: "SHA-1" | "SHA-256", data: Uint8Array<ArrayBuffer>): Promise<string> {
  const digest = new Uint8Array(await crypto.subtle.digest(algorithm, data));
  return [...digest].map((b) => b.toString(16).padStart(2, "0")).join("");
}

/**
 * Serves the files of `dir` as repository `repo` (e.g. `org/tiny`), branch `main`.
 *
 * @example
 * ```ts ignore
 * const hub = await startFakeHub(dir, "org/tiny");
 * await resolveModelDir("org/tiny", { endpoint: hub.endpoint, cacheDir });
 * await hub.close();
 * ```
 */
export async function startFakeHub(
  dir: string,
  repo: string,
  options: { gated?: boolean } = {},
): Promise<FakeHub> {
  const files = new Map<string, { body: Uint8Array<ArrayBuffer>; etag: string; lfs: boolean }>();
  const byEtag = new Map<string, Uint8Array<ArrayBuffer>>();
  for (const e of Deno.readDirSync(dir)) {
    if (!e.isFile) continue;
    const body = await Deno.readFile(join(dir, e.name));
    const lfs = e.name.endsWith(".safetensors");
    // Git blob ids for plain files (sha1 here), sha256 for LFS files, as the Hub names them.
    const etag = lfs ? await hex("SHA-256", body) : await hex("SHA-1", body);
    files.set(e.name, { body, etag, lfs });
    byEtag.set(etag, body);
  }
  const commit = await hex("SHA-1", new TextEncoder().encode(repo + ":main"));
  const requests: HubRequest[] = [];
  const failures = new Map<string, number>();
  const prefix = `/${repo}/resolve/`;

  const serveBytes = (
    req: Request,
    body: Uint8Array<ArrayBuffer>,
    name: string,
    headers: Headers,
  ) => {
    let start = 0;
    let status = 200;
    const range = req.headers.get("range");
    if (range) {
      start = Number(/bytes=(\d+)-/.exec(range)![1]);
      if (start >= body.length) return new Response(null, { status: 416, headers });
      status = 206;
    }
    const rest = body.subarray(start);
    headers.set("content-length", String(rest.length));
    if (req.method === "HEAD") return new Response(null, { status, headers });
    const limit = failures.get(name);
    failures.delete(name);
    if (limit === undefined) return new Response(rest, { status, headers });
    let sent = false;
    const stream = new ReadableStream<Uint8Array>({
      pull(controller) {
        if (sent) return controller.error(new Error("connection reset"));
        sent = true;
        controller.enqueue(rest.slice(0, limit));
      },
    });
    return new Response(stream, { status, headers });
  };

  let port = 0;
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, (req) => {
    const url = new URL(req.url);
    requests.push({
      method: req.method,
      path: url.pathname,
      range: req.headers.get("range"),
      authorization: req.headers.get("authorization"),
    });
    if (url.pathname.startsWith("/cdn/")) {
      const etag = url.pathname.slice(5);
      const body = byEtag.get(etag);
      if (!body) return new Response("no such blob", { status: 404 });
      const name = [...files].find(([, f]) => f.etag === etag)![0];
      return serveBytes(req, body, name, new Headers());
    }
    if (!url.pathname.startsWith(prefix)) {
      return new Response("Repository not found", {
        status: 401,
        headers: { "x-error-code": "RepoNotFound" },
      });
    }
    if (options.gated && !req.headers.get("authorization")) {
      return new Response("Access to this model is restricted", {
        status: 401,
        headers: { "x-error-code": "GatedRepo" },
      });
    }
    const [revision, ...rest] = url.pathname.slice(prefix.length).split("/");
    const name = rest.join("/");
    const file = files.get(name);
    if ((revision !== "main" && revision !== commit) || !file) {
      return new Response("Entry not found", {
        status: 404,
        headers: { "x-error-code": "EntryNotFound", "x-repo-commit": commit },
      });
    }
    const headers = new Headers({ "x-repo-commit": commit });
    if (file.lfs) {
      headers.set("x-linked-etag", `"${file.etag}"`);
      headers.set("x-linked-size", String(file.body.length));
      headers.set("etag", `"${file.etag}"`);
      // To another host name, as the Hub's CDN redirects are (huggingface_hub follows redirects
      // that stay on the same host for metadata, and stops at others).
      headers.set("location", `http://localhost:${port}/cdn/${file.etag}`);
      return new Response(null, { status: 302, headers });
    }
    headers.set("etag", `"${file.etag}"`);
    return serveBytes(req, file.body, name, headers);
  });
  port = (server.addr as Deno.NetAddr).port;
  return {
    endpoint: `http://127.0.0.1:${port}`,
    commit,
    requests,
    failNext: (file, bytes) => failures.set(file, bytes),
    close: async () => {
      await server.shutdown();
    },
  };
}
