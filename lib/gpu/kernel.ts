/**
 * Kernels: WGSL files in `kernels/`, specialised by a tiny preprocessor and override constants,
 * compiled once per device and cached.
 *
 * The preprocessor knows four directives, each on a line of its own:
 * `#if NAME` (or `#if !NAME`), `#else`, `#endif`, and `#include "path.wgsl"`. `NAME` is a define
 * given by the caller; the runtime adds `F16` when the device has `shader-f16` and the caller
 * asked for the f16 path. An include names a file relative to `kernels/` (helpers shared by
 * several kernels live in `kernels/common/`); each file is included at most once per shader, is
 * preprocessed with the same defines, and its text goes after the including file's, so the
 * kernel's own line numbers stay those of its file (WGSL declarations may come in any order).
 * Everything numeric (workgroup sizes, tile sizes) is an `override` constant instead.
 *
 * @module
 */

const KERNEL_DIR = new URL("../../kernels/", import.meta.url);
const sourceCache = new Map<string, string>();

/**
 * Reads `kernels/<name>.wgsl` relative to this module, so it works from any working directory.
 *
 * @example
 * ```ts
 * import { readKernelSource } from "./kernel.ts";
 * readKernelSource("elementwise").includes("@compute"); // true
 * ```
 */
export function readKernelSource(name: string): string {
  const cached = sourceCache.get(name);
  if (cached !== undefined) return cached;
  const url = new URL(`${name}.wgsl`, KERNEL_DIR);
  if (url.protocol !== "file:") {
    throw new Error(
      `kernel ${name}: kernels load from local files; ${url.href} is not one. ` +
        `Use a local copy of the module.`,
    );
  }
  let text: string;
  try {
    text = Deno.readTextFileSync(url);
  } catch (err) {
    throw new Error(`kernel ${name}: cannot read ${url.pathname}: ${(err as Error).message}`);
  }
  sourceCache.set(name, text);
  return text;
}

const INCLUDE = /^#include\s+"([^"]*)"\s*$/;

/**
 * Applies `#if NAME` / `#if !NAME` / `#else` / `#endif` to WGSL source. Removed lines become
 * blank so that compiler line numbers still match the file. `#include` lines in kept code are
 * blanked too and their paths pushed to `includes`; without that array an include is an error
 * (use {@linkcode expandKernelSource}).
 *
 * @example
 * ```ts
 * import { preprocessWgsl } from "./kernel.ts";
 * preprocessWgsl("#if F16\nenable f16;\n#endif\n", new Set(["F16"])); // "\nenable f16;\n\n"
 * ```
 */
export function preprocessWgsl(
  source: string,
  defines: ReadonlySet<string>,
  name = "wgsl",
  includes?: string[],
): string {
  const out: string[] = [];
  const stack: { active: boolean; parentActive: boolean; sawElse: boolean }[] = [];
  const lines = source.split("\n");
  lines.forEach((line, i) => {
    const trimmed = line.trim();
    const ifMatch = /^#if\s+(!?)([A-Za-z_][A-Za-z0-9_]*)\s*$/.exec(trimmed);
    const includeMatch = INCLUDE.exec(trimmed);
    const parentActive = stack.length === 0 || stack[stack.length - 1].active;
    if (ifMatch) {
      const value = defines.has(ifMatch[2]) !== (ifMatch[1] === "!");
      stack.push({ active: parentActive && value, parentActive, sawElse: false });
      out.push("");
    } else if (trimmed === "#else") {
      const top = stack[stack.length - 1];
      if (!top || top.sawElse) throw new Error(`${name}:${i + 1}: #else without #if`);
      top.sawElse = true;
      top.active = top.parentActive && !top.active;
      out.push("");
    } else if (trimmed === "#endif") {
      if (!stack.pop()) throw new Error(`${name}:${i + 1}: #endif without #if`);
      out.push("");
    } else if (includeMatch) {
      if (parentActive) {
        const path = includeMatch[1];
        if (!/^[A-Za-z0-9_]+(\/[A-Za-z0-9_]+)*\.wgsl$/.test(path)) {
          throw new Error(
            `${name}:${i + 1}: #include "${path}": expected a path like "common/x.wgsl" ` +
              `relative to kernels/`,
          );
        }
        if (!includes) {
          throw new Error(`${name}:${i + 1}: #include "${path}" needs expandKernelSource`);
        }
        includes.push(path);
      }
      out.push("");
    } else if (trimmed.startsWith("#")) {
      throw new Error(`${name}:${i + 1}: unknown directive ${trimmed}`);
    } else {
      out.push(parentActive ? line : "");
    }
  });
  if (stack.length) throw new Error(`${name}: unterminated #if`);
  return out.join("\n");
}

/** A kernel's preprocessed source with its includes, and where each line came from. */
export interface ExpandedSource {
  /** WGSL to compile: the kernel's own lines first, then each included file's. */
  readonly code: string;
  /** `file.wgsl:line` of a 1-based line of `code`. */
  origin(line: number): string;
}

/**
 * Preprocesses `kernels/<file>.wgsl` and the files it includes (recursively, each once; a cycle
 * is an error). `read` maps a name without `.wgsl` to its text (tests pass their own).
 *
 * @example
 * ```ts
 * import { expandKernelSource } from "./kernel.ts";
 * const files: Record<string, string> = { k: '#include "common/h.wgsl"\nfn main() {}', "common/h": "fn h() {}" };
 * expandKernelSource("k", new Set(), (n) => files[n]).code; // "\nfn main() {}\nfn h() {}"
 * ```
 */
export function expandKernelSource(
  file: string,
  defines: ReadonlySet<string>,
  read: (name: string) => string = readKernelSource,
): ExpandedSource {
  const parts: string[] = [];
  const origins: { file: string; first: number }[] = [];
  const seen = new Set<string>([file]);
  let lineCount = 0;
  const visit = (name: string, chain: string[]) => {
    const includes: string[] = [];
    const text = preprocessWgsl(read(name), defines, `${name}.wgsl`, includes);
    origins.push({ file: `${name}.wgsl`, first: lineCount + 1 });
    lineCount += text.split("\n").length;
    parts.push(text);
    for (const path of includes) {
      const target = path.slice(0, -".wgsl".length);
      if (chain.includes(target)) {
        const cycle = [...chain.slice(chain.indexOf(target)), target].map((n) => `${n}.wgsl`);
        throw new Error(`kernel ${file}: #include cycle ${cycle.join(" -> ")}`);
      }
      if (seen.has(target)) continue;
      seen.add(target);
      try {
        read(target);
      } catch (err) {
        throw new Error(
          `kernel ${file}: ${name}.wgsl includes "${path}", which cannot be read: ` +
            (err as Error).message,
        );
      }
      visit(target, [...chain, target]);
    }
  };
  visit(file, [file]);
  return {
    code: parts.join("\n"),
    origin(line: number): string {
      let at = origins[0];
      for (const o of origins) if (o.first <= line) at = o;
      return `${at.file}:${line - at.first + 1}`;
    },
  };
}

/** How to specialise a kernel. */
export interface KernelSpec {
  /** File name in `kernels/` without `.wgsl`. */
  file: string;
  /** Entry point. */
  entry: string;
  /** Preprocessor defines. */
  defines?: readonly string[];
  /** Values for `override` constants. */
  constants?: Record<string, number>;
}

/** A compiled compute pipeline and the name it is timed under. */
export interface Kernel {
  /** `file:entry`, plus defines; used in timings and error messages. */
  readonly name: string;
  /** The pipeline (auto layout, bind group 0). */
  readonly pipeline: GPUComputePipeline;
  /** Bind group layout 0 of the pipeline. */
  readonly layout: GPUBindGroupLayout;
}

/**
 * Compiles a kernel, surfacing WGSL compilation errors with the file and line.
 *
 * @example
 * ```ts ignore
 * const kernel = await compileKernel(device, { file: "elementwise", entry: "add" });
 * ```
 */
export async function compileKernel(device: GPUDevice, spec: KernelSpec): Promise<Kernel> {
  const defines = [...(spec.defines ?? [])].sort();
  const name = `${spec.file}:${spec.entry}${defines.length ? `[${defines.join(",")}]` : ""}`;
  const source = expandKernelSource(spec.file, new Set(defines));
  const code = source.code;
  const module = device.createShaderModule({ label: name, code });
  const info = await module.getCompilationInfo();
  const errors = info.messages.filter((m) => m.type === "error");
  if (errors.length) {
    const detail = errors.map((m) =>
      `  kernels/${source.origin(m.lineNum)}:${m.linePos} ${m.message}`
    )
      .join("\n");
    throw new Error(`kernel ${name} failed to compile:\n${detail}`);
  }
  device.pushErrorScope("validation");
  const pipeline = await device.createComputePipelineAsync({
    label: name,
    layout: "auto",
    compute: { module, entryPoint: spec.entry, constants: spec.constants },
  }).catch((err: Error) => {
    throw new Error(`kernel ${name}: pipeline creation failed: ${err.message}`);
  });
  const scopeError = await device.popErrorScope();
  if (scopeError) throw new Error(`kernel ${name}: ${scopeError.message}`);
  return { name, pipeline, layout: pipeline.getBindGroupLayout(0) };
}

/** The cache key of a spec: equal specs share one pipeline. */
export function kernelKey(spec: KernelSpec): string {
  const defines = [...(spec.defines ?? [])].sort().join(",");
  const constants = Object.entries(spec.constants ?? {}).sort(([a], [b]) => a < b ? -1 : 1)
    .map(([k, v]) => `${k}=${v}`).join(",");
  return `${spec.file}|${spec.entry}|${defines}|${constants}`;
}
