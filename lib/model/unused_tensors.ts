/**
 * Which tensors of a checkpoint the loader does not read. A tensor nobody reads usually means
 * the config and the weights disagree (`num_hidden_layers` smaller than the checkpoint, a
 * different architecture), so the loader refuses it unless asked not to.
 *
 * What counts as used is a list of {@link TensorClaim}s, so a checkpoint format with companion
 * tensors (quantization scales and the like) adds a claim instead of editing a list here.
 *
 * @module
 */

import { familyOf, type LlamaConfig } from "./config.ts";
import { type BlockLinear, LINEAR_NAMES, linearSource } from "./family.ts";

/**
 * Says whether a tensor name is accounted for: read by the loader, or known to be safe to skip.
 *
 * @example
 * ```ts
 * import type { TensorClaim } from "./unused_tensors.ts";
 * const scales: TensorClaim = (name) => name.endsWith(".weight.absmax");
 * ```
 */
export type TensorClaim = (name: string) => boolean;

/**
 * Every tensor the Llama loader reads for `config` (the LM head only when not tied), with the
 * family's fused tensors, biases and q/k norms.
 *
 * @example
 * ```ts ignore
 * import { llamaTensorNames } from "./unused_tensors.ts";
 * llamaTensorNames(config).has("model.norm.weight"); // true
 * ```
 */
export function llamaTensorNames(config: LlamaConfig): Set<string> {
  const names = new Set(["model.embed_tokens.weight", "model.norm.weight"]);
  if (!config.tieWordEmbeddings) names.add("lm_head.weight");
  const family = familyOf(config);
  const widths = {
    q: config.numHeads * config.headDim,
    kv: config.numKvHeads * config.headDim,
    intermediate: config.intermediateSize,
  };
  for (let l = 0; l < config.numLayers; l++) {
    const p = `model.layers.${l}`;
    names.add(`${p}.input_layernorm.weight`);
    names.add(`${p}.post_attention_layernorm.weight`);
    // The family says where the weights are (Phi-3 fuses some) and what else a block has.
    for (const linear of LINEAR_NAMES) {
      names.add(`${p}.${linearSource(family, linear as BlockLinear, widths).tensor}.weight`);
    }
    for (const linear of family.biases) names.add(`${p}.${linear}.bias`);
    if (family.qkNorm) {
      names.add(`${p}.self_attn.q_norm.weight`);
      names.add(`${p}.self_attn.k_norm.weight`);
    }
  }
  return names;
}

/**
 * The claims of a plain Llama checkpoint: the tensors {@link llamaTensorNames} lists, the
 * rotary `inv_freq` buffers older exports carry (recomputed from the config), and, when the
 * embeddings are tied, an `lm_head.weight` copy (transformers ignores it the same way).
 *
 * @example
 * ```ts ignore
 * import { llamaTensorClaims } from "./unused_tensors.ts";
 * const claims = llamaTensorClaims(config);
 * ```
 */
export function llamaTensorClaims(config: LlamaConfig): TensorClaim[] {
  const names = llamaTensorNames(config);
  const claims: TensorClaim[] = [
    (name) => names.has(name),
    (name) => /^model\.layers\.\d+\.self_attn\.rotary_emb\.inv_freq$/.test(name),
  ];
  if (config.tieWordEmbeddings) claims.push((name) => name === "lm_head.weight");
  return claims;
}

/**
 * A claim on companion tensors stored beside a used one: `${base}${suffix}` for each `base` in
 * `used` and each suffix, e.g. the `.absmax` and `.quant_map` of a bitsandbytes 4-bit weight.
 *
 * @example
 * ```ts
 * import { companionClaim } from "./unused_tensors.ts";
 * const claim = companionClaim(new Set(["w.weight"]), [".absmax", ".quant_map"]);
 * claim("w.weight.absmax"); // true
 * claim("v.weight.absmax"); // false
 * ```
 */
export function companionClaim(
  used: ReadonlySet<string>,
  suffixes: readonly string[],
): TensorClaim {
  return (name) => suffixes.some((s) => name.endsWith(s) && used.has(name.slice(0, -s.length)));
}

/**
 * The names no claim accepts, in the order given.
 *
 * @example
 * ```ts
 * import { unusedTensors } from "./unused_tensors.ts";
 * unusedTensors(["a", "b"], [(n) => n === "a"]); // ["b"]
 * ```
 */
export function unusedTensors(
  names: Iterable<string>,
  claims: readonly TensorClaim[],
): string[] {
  const out: string[] = [];
  for (const name of names) if (!claims.some((claim) => claim(name))) out.push(name);
  return out;
}

/**
 * Throws when a checkpoint holds tensors no claim accepts, naming a few of them, the source,
 * and (when layers beyond `num_hidden_layers` are the cause) the layer counts.
 *
 * @example
 * ```ts ignore
 * import { checkUnusedTensors, llamaTensorClaims } from "./unused_tensors.ts";
 * checkUnusedTensors("models/x", ckpt.names(), llamaTensorClaims(config), config);
 * ```
 */
export function checkUnusedTensors(
  source: string,
  names: Iterable<string>,
  claims: readonly TensorClaim[],
  config?: LlamaConfig,
): void {
  const unused = unusedTensors(names, claims);
  if (unused.length === 0) return;
  let why = "";
  if (config) {
    let deepest = -1;
    for (const name of unused) {
      const m = /^model\.layers\.(\d+)\./.exec(name);
      if (m) deepest = Math.max(deepest, Number(m[1]));
    }
    if (deepest >= config.numLayers) {
      why = `; config.json says num_hidden_layers ${config.numLayers}, but the checkpoint has ` +
        `layers up to ${deepest}`;
    }
  }
  const shown = unused.slice(0, 5).map((n) => n.length > 120 ? `${n.slice(0, 120)}…` : n);
  throw new Error(
    `${source}: ${unused.length} tensor${unused.length === 1 ? " is" : "s are"} not used by ` +
      `the model: ${shown.join(", ")}${unused.length > 5 ? ", …" : ""}${why} ` +
      `(load with allowUnusedTensors to ignore them)`,
  );
}
