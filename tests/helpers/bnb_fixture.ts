/**
 * Rebuilds the bitsandbytes checkpoints of tests/fixtures/bnb (see make_fixtures.ts there):
 * our writer's `bnb-*` output of models/sotu-llama, with the tensors it does not reproduce
 * taken from `slim.safetensors`, every tensor checked against the SHA-256 of bitsandbytes' own
 * file. What comes out is bitsandbytes' file byte for byte (tensor data; header order too).
 *
 * @module
 */

import { join } from "node:path";
import { quantizeCheckpoint } from "../../lib/model/quantize_checkpoint.ts";
import { openSafetensors, writeSafetensors } from "../../lib/model/safetensors.ts";

/** The fixture directory of one format. */
export const BNB_FIXTURES = new URL("../fixtures/bnb/", import.meta.url).pathname;

/** The four fixtures. */
export type BnbFixture = "nf4" | "nf4-dq" | "fp4" | "int8";

/** One tensor of bitsandbytes' file, as the manifest lists it. */
export interface ManifestTensor {
  name: string;
  dtype: string;
  shape: number[];
  sha256: string;
  from: "writer" | "patch" | "stored";
  differingBytes?: number;
}

/** The manifest of a fixture. */
export interface BnbManifest {
  source: string;
  tensors: ManifestTensor[];
  dequant: Record<string, string>;
}

/** SHA-256 of bytes, hex. */
export async function sha256(bytes: Uint8Array): Promise<string> {
  const d = await crypto.subtle.digest("SHA-256", bytes as Uint8Array<ArrayBuffer>);
  return Array.from(new Uint8Array(d), (b) => b.toString(16).padStart(2, "0")).join("");
}

/** Reads a fixture's manifest. */
export async function bnbManifest(fixture: BnbFixture): Promise<BnbManifest> {
  return JSON.parse(await Deno.readTextFile(join(BNB_FIXTURES, fixture, "manifest.json")));
}

/**
 * Writes bitsandbytes' checkpoint `fixture` to `outDir` (config, weights, tokenizer files) and
 * returns its manifest; throws if any tensor's SHA-256 differs from bitsandbytes'.
 */
export async function rebuildBnbFixture(fixture: BnbFixture, outDir: string): Promise<BnbManifest> {
  const model = new URL("../../models/sotu-llama", import.meta.url).pathname;
  const manifest = await bnbManifest(fixture);
  const work = join(outDir, ".writer");
  await quantizeCheckpoint(model, work, `bnb-${fixture}` as "bnb-nf4");
  using ours = await openSafetensors(join(work, "model.safetensors"));
  using slim = await openSafetensors(join(BNB_FIXTURES, fixture, "slim.safetensors"));
  const tensors: Record<string, { dtype: string; shape: number[]; data: Uint8Array }> = {};
  for (const t of manifest.tensors) {
    let data: Uint8Array;
    if (t.from === "stored") data = await slim.readRaw(t.name);
    else {
      data = (await ours.readRaw(t.name)).slice();
      if (t.from === "patch") {
        const at = new Uint32Array((await slim.readRaw(`patch.${t.name}.at`)).slice().buffer);
        const bytes = await slim.readRaw(`patch.${t.name}.bytes`);
        at.forEach((p, i) => data[p] = bytes[i]);
      }
    }
    const got = await sha256(data);
    if (got !== t.sha256) {
      throw new Error(`${fixture}: tensor ${t.name} (${t.from}) does not match bitsandbytes' file`);
    }
    tensors[t.name] = { dtype: t.dtype, shape: t.shape, data };
  }
  await writeSafetensors(join(outDir, "model.safetensors"), tensors, { format: "pt" });
  await Deno.copyFile(join(BNB_FIXTURES, fixture, "config.json"), join(outDir, "config.json"));
  for (const f of ["tokenizer.json", "tokenizer_config.json", "generation_config.json"]) {
    await Deno.copyFile(join(work, f), join(outDir, f));
  }
  await Deno.remove(work, { recursive: true });
  return manifest;
}
