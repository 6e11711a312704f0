/**
 * `estimate` for every model family: from a config directory (the families' fixtures) and from
 * the presets, the estimate equals estimateMemory on the parsed config (whose ledger agreement
 * tests/eval/memory.test.ts checks); an unknown architecture is refused naming the supported ones.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { estimateCommand } from "../../cli/estimate.ts";
import { estimateMemory } from "../../lib/eval/memory.ts";
import { loadLlamaConfig } from "../../lib/model/config.ts";

const FIXTURES = new URL("../fixtures/families/", import.meta.url).pathname;

async function quietly<T>(fn: () => Promise<T>): Promise<T> {
  const write = Deno.stdout.writeSync;
  Deno.stdout.writeSync = (p: Uint8Array) => p.length;
  try {
    return await fn();
  } finally {
    Deno.stdout.writeSync = write;
  }
}

Deno.test("estimate --config works for every family, and names the supported ones otherwise", async () => {
  const dir = await Deno.makeTempDir({ prefix: "qlab-estimate-" });
  try {
    for (const family of ["mistral", "qwen2", "qwen3", "phi3"]) {
      const json = join(dir, `${family}.json`);
      const config = join(FIXTURES, family);
      const args = ["--config", config, "--formats", "fp16,nf4", "--context", "256"];
      assert.equal(await quietly(() => estimateCommand([...args, "--json", json])), 0);
      const rows = JSON.parse(await Deno.readTextFile(json)).rows;
      const parsed = await loadLlamaConfig(config);
      assert.deepEqual(
        rows.map((r: { peakBytes: number }) => r.peakBytes),
        ["fp16", "nf4"].map((format) =>
          estimateMemory(parsed, { format: format as "fp16" | "nf4", contextLength: 256 })
            .peakBytes
        ),
      );
    }
    const presets = "mistral-7b-v0.1,qwen2.5-7b,qwen3-8b,phi-3-mini-4k";
    const json = join(dir, "presets.json");
    await quietly(() => estimateCommand(["--preset", presets, "--formats", "nf4", "--json", json]));
    const rows = JSON.parse(await Deno.readTextFile(json)).rows;
    assert.deepEqual(rows.map((r: { model: string }) => r.model), presets.split(","));
    const gemma = join(dir, "config.json");
    await Deno.writeTextFile(
      gemma,
      JSON.stringify({ architectures: ["Gemma2ForCausalLM"], num_hidden_layers: 2 }),
    );
    await assert.rejects(
      estimateCommand(["--config", gemma]),
      /\["Gemma2ForCausalLM"\] is not supported \(supported: LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM, Phi3ForCausalLM\)/,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
