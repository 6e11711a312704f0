/**
 * Figures of what quantization costs and loses, as plain Plotly figures, and their displays: MIME
 * bundles for the Deno Jupyter kernel and standalone offline HTML reports.
 *
 * @example
 * ```ts
 * import { display, memoryBarsFigure } from "./mod.ts";
 * const MiB = 1024 ** 2;
 * display(memoryBarsFigure([
 *   { format: "fp16", weights: 500 * MiB, activations: 8 * MiB, kvCache: 64 * MiB, scratch: 4 * MiB },
 * ]));
 * ```
 *
 * @module
 */

export * from "./figure.ts";
export * from "./units.ts";
export * from "./memory.ts";
export * from "./quality.ts";
export * from "./heatmap.ts";
export * from "./outliers.ts";
export * from "./threshold_sweep.ts";
export * from "./block_size_sweep.ts";
export * from "./generic.ts";
export * from "./table.ts";
export * from "./plotly_js.ts";
export * from "./jupyter.ts";
export * from "./report.ts";
