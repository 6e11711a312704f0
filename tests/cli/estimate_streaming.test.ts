/**
 * `estimate --vram-budget`: rows agree with estimateStreaming, the decode bound is the streamed
 * bytes per token at `--bandwidth` (default 5 GB/s), and a budget too small for the model prints
 * the model's layer count with "too small".
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { estimateCommand } from "../../cli/estimate.ts";
import { estimateStreaming } from "../../lib/eval/memory.ts";
import { presetConfig } from "../../lib/model/presets.ts";

async function printed(args: string[]): Promise<string> {
  const write = Deno.stdout.writeSync;
  let text = "";
  Deno.stdout.writeSync = (p: Uint8Array) => {
    text += new TextDecoder().decode(p);
    return p.length;
  };
  try {
    assert.equal(await estimateCommand(args), 0);
  } finally {
    Deno.stdout.writeSync = write;
  }
  return text;
}

Deno.test("estimate --vram-budget: resident layers, bytes per token and the bound", async () => {
  const dir = await Deno.makeTempDir({ prefix: "qlab-estimate-stream-" });
  try {
    const json = join(dir, "s.json");
    const args = ["--preset", "llama-2-7b", "--formats", "nf4", "--context", "512"];
    const text = await printed([...args, "--vram-budget", "2GiB", "--json", json]);
    const want = estimateStreaming(presetConfig("llama-2-7b"), 2 * 2 ** 30, {
      format: "nf4",
      contextLength: 512,
    });
    const [row] = JSON.parse(await Deno.readTextFile(json)).rows;
    assert.equal(row.residentLayers, want.residentLayers);
    assert.equal(row.streamedBytesPerToken, want.streamedBytesPerToken);
    const bound = (5e9 / want.streamedBytesPerToken).toFixed(1);
    const line = text.split("\n").find((l) => l.startsWith("| llama-2-7b"))!;
    assert.match(
      line,
      new RegExp(`\\| ${want.residentLayers} +\\| ${want.streamedLayers} .*\\| ${bound} +\\|$`),
    );

    const small = await printed([...args, "--vram-budget", "512MiB"]);
    const tooSmall = small.split("\n").find((l) => l.startsWith("| llama-2-7b"))!;
    assert.match(tooSmall, /\| 32 +\| too small \|/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
