/**
 * Elementwise kernels on f32 activations (`kernels/elementwise.wgsl`): the residual add, a
 * linear layer's bias add, and SwiGLU, with CPU twins.
 *
 * @module
 */

import { type Binding, type CommandBatch, grid, params } from "../gpu/batch.ts";
import type { Gpu } from "../gpu/device.ts";
import { requireBytes } from "./chunks.ts";

/**
 * Reference residual add: returns `a + b`, rounded to f32.
 *
 * @example
 * ```ts
 * import { cpuAdd } from "./elementwise.ts";
 * cpuAdd(new Float32Array([1, 2]), new Float32Array([3, 4])); // [4, 6]
 * ```
 */
export function cpuAdd(a: Float32Array, b: Float32Array): Float32Array {
  return a.map((v, i) => v + b[i]);
}

/**
 * Reference bias add: returns `a` `[rows, width]` with `bias` `[width]` added to every row.
 *
 * @example
 * ```ts
 * import { cpuAddBias } from "./elementwise.ts";
 * cpuAddBias(new Float32Array([1, 2, 3, 4]), new Float32Array([10, 20])); // [11, 22, 13, 24]
 * ```
 */
export function cpuAddBias(a: Float32Array, bias: Float32Array): Float32Array {
  return a.map((v, i) => v + bias[i % bias.length]);
}

/**
 * Reference SwiGLU: returns `silu(gate) * up`, `silu(g) = g / (1 + exp(-g))`.
 *
 * @example
 * ```ts
 * import { cpuSwiglu } from "./elementwise.ts";
 * cpuSwiglu(new Float32Array([0]), new Float32Array([5])); // [0]
 * ```
 */
export function cpuSwiglu(gate: Float32Array, up: Float32Array): Float32Array {
  return gate.map((g, i) => g / (1 + Math.exp(-g)) * up[i]);
}

/** The elementwise kernels; see {@linkcode createElementwise}. */
export interface Elementwise {
  /** Records `a += b` over `n` elements (the residual connection). */
  add(batch: CommandBatch, a: Binding, b: Binding, n: number): void;
  /** Records `a[r, :] += bias` for the `n / width` rows of `a` (a linear layer's bias). */
  addBias(batch: CommandBatch, a: Binding, bias: Binding, n: number, width: number): void;
  /** Records `gate = silu(gate) * up` over `n` elements. */
  swiglu(batch: CommandBatch, gate: Binding, up: Binding, n: number): void;
}

/**
 * Compiles the residual add and SwiGLU kernels.
 *
 * @example
 * ```ts ignore
 * const ew = await createElementwise(gpu);
 * ew.swiglu(batch, gate, up, rows * intermediate);
 * ew.add(batch, hidden, mlpOut, rows * dim);
 * ```
 */
export async function createElementwise(gpu: Gpu): Promise<Elementwise> {
  const [add, addBias, swiglu] = await Promise.all([
    gpu.kernel({ file: "elementwise", entry: "add" }),
    gpu.kernel({ file: "elementwise", entry: "add_bias" }),
    gpu.kernel({ file: "elementwise", entry: "swiglu" }),
  ]);
  const record = (
    batch: CommandBatch,
    kernel: typeof add,
    a: Binding,
    b: Binding,
    n: number,
    width = n,
  ) => {
    requireBytes(a, n * 4, `${kernel.name} a`);
    requireBytes(b, width * 4, `${kernel.name} b`);
    batch.dispatch(kernel, [a, b], grid(Math.ceil(n / 256)), params().u32(n).u32(width).build());
  };
  return {
    add: (batch, a, b, n) => record(batch, add, a, b, n),
    addBias: (batch, a, bias, n, width) => {
      if (!(width > 0) || n % width !== 0) {
        throw new RangeError(`add_bias: ${n} elements are not whole rows of ${width}`);
      }
      record(batch, addBias, a, bias, n, width);
    },
    swiglu: (batch, gate, up, n) => record(batch, swiglu, gate, up, n),
  };
}
