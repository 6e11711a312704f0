/**
 * Reading the JSON of model files strictly and describing bad values briefly.
 *
 * `JSON.parse` keeps the last of two equal keys without a word and has no bound on nesting, so a
 * corrupt `config.json` or safetensors header can mean something other than it says, or cost
 * minutes. {@link parseJsonStrict} refuses both, in time linear in the text. {@link excerpt}
 * quotes a value in a few dozen characters, however large it is, and writes `NaN` and
 * `Infinity` as such.
 *
 * @module
 */

/**
 * Options of {@link parseJsonStrict}.
 *
 * @example
 * ```ts
 * import type { StrictJsonOptions } from "./json.ts";
 * const o: StrictJsonOptions = { maxDepth: 8 };
 * ```
 */
export interface StrictJsonOptions {
  /** Deepest nesting of arrays and objects accepted (default 64). */
  maxDepth?: number;
}

/** Thrown by {@link parseJsonStrict}; the message names the source and the character offset. */
class JsonError extends Error {}

/**
 * Parses JSON text like `JSON.parse`, but refuses duplicate keys in an object and nesting deeper
 * than `maxDepth`. Errors name `source` (a file name) and the offset of the fault.
 *
 * @example
 * ```ts
 * import { parseJsonStrict } from "./json.ts";
 * parseJsonStrict('{"a": [1, 2]}', "x.json"); // { a: [1, 2] }
 * // parseJsonStrict('{"a": 1, "a": 2}', "x.json") throws: duplicate key "a"
 * ```
 */
export function parseJsonStrict(
  text: string,
  source: string,
  options: StrictJsonOptions = {},
): unknown {
  const maxDepth = options.maxDepth ?? 64;
  let i = 0;
  const n = text.length;
  const fail = (message: string): never => {
    throw new JsonError(`${source}: invalid JSON at character ${i}: ${message}`);
  };
  const ws = () => {
    while (i < n) {
      const c = text.charCodeAt(i);
      if (c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09) i++;
      else break;
    }
  };
  // A run of plain string characters: no quote, backslash or control character.
  // deno-lint-ignore no-control-regex
  const PLAIN = /[^"\\\x00-\x1f]*/y;
  const str = (): string => {
    // text[i] is the opening quote.
    i++;
    let out = "";
    while (true) {
      PLAIN.lastIndex = i;
      PLAIN.exec(text);
      out += text.slice(i, PLAIN.lastIndex);
      i = PLAIN.lastIndex;
      if (i >= n) fail("unterminated string");
      const c = text.charCodeAt(i);
      if (c === 0x22) {
        i++;
        return out;
      }
      if (c < 0x20) fail("control character in a string");
      // A backslash escape.
      const e = text.charCodeAt(i + 1);
      switch (e) {
        case 0x22:
          out += '"';
          break;
        case 0x5c:
          out += "\\";
          break;
        case 0x2f:
          out += "/";
          break;
        case 0x62:
          out += "\b";
          break;
        case 0x66:
          out += "\f";
          break;
        case 0x6e:
          out += "\n";
          break;
        case 0x72:
          out += "\r";
          break;
        case 0x74:
          out += "\t";
          break;
        case 0x75: {
          const hex = text.slice(i + 2, i + 6);
          if (!/^[0-9a-fA-F]{4}$/.test(hex)) fail("bad \\u escape");
          out += String.fromCharCode(parseInt(hex, 16));
          i += 4;
          break;
        }
        default:
          fail("bad escape");
      }
      i += 2;
    }
  };
  const NUMBER = /-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?/y;
  const num = (): number => {
    NUMBER.lastIndex = i;
    const m = NUMBER.exec(text);
    if (!m || m[0].length === 0 || m[0] === "-") fail("bad number");
    i += m![0].length;
    return Number(m![0]);
  };
  const literal = (word: string, value: unknown): unknown => {
    if (text.startsWith(word, i)) {
      i += word.length;
      return value;
    }
    return fail("unexpected character");
  };
  // Iterative, so that nesting costs no stack: each open container is a frame.
  type Frame = { kind: "array"; value: unknown[] } | {
    kind: "object";
    value: Record<string, unknown>;
    keys: Set<string>;
    key: string;
  };
  const stack: Frame[] = [];
  let result: unknown;
  ws();
  outer: while (true) {
    // Parse one value; containers push a frame and continue with their first element.
    let value: unknown;
    const c = text.charCodeAt(i);
    if (c === 0x7b || c === 0x5b) {
      if (stack.length >= maxDepth) fail(`nesting deeper than ${maxDepth} levels`);
      i++;
      ws();
      if (c === 0x5b) {
        if (text.charCodeAt(i) === 0x5d) {
          i++;
          value = [];
        } else {
          stack.push({ kind: "array", value: [] });
          continue;
        }
      } else {
        if (text.charCodeAt(i) === 0x7d) {
          i++;
          value = {};
        } else {
          if (text.charCodeAt(i) !== 0x22) fail("expected a key string");
          const key = str();
          ws();
          if (text.charCodeAt(i) !== 0x3a) fail("expected ':'");
          i++;
          ws();
          stack.push({ kind: "object", value: {}, keys: new Set([key]), key });
          continue;
        }
      }
    } else if (c === 0x22) value = str();
    else if (c === 0x2d || (c >= 0x30 && c <= 0x39)) value = num();
    else if (c === 0x74) value = literal("true", true);
    else if (c === 0x66) value = literal("false", false);
    else if (c === 0x6e) value = literal("null", null);
    else fail(i >= n ? "unexpected end of text" : "unexpected character");

    // Hand the value to the enclosing containers, closing those that end here.
    while (true) {
      const top = stack[stack.length - 1];
      if (!top) {
        result = value;
        break outer;
      }
      if (top.kind === "array") top.value.push(value);
      else setOwn(top.value, top.key, value);
      ws();
      const d = text.charCodeAt(i);
      if (d === 0x2c) {
        i++;
        ws();
        if (top.kind === "object") {
          if (text.charCodeAt(i) !== 0x22) fail("expected a key string");
          const key = str();
          if (top.keys.has(key)) fail(`duplicate key ${excerpt(key)}`);
          top.keys.add(key);
          top.key = key;
          ws();
          if (text.charCodeAt(i) !== 0x3a) fail("expected ':'");
          i++;
          ws();
        }
        continue outer;
      }
      if ((top.kind === "array" && d === 0x5d) || (top.kind === "object" && d === 0x7d)) {
        i++;
        stack.pop();
        value = top.value;
        continue;
      }
      fail(top.kind === "array" ? "expected ',' or ']'" : "expected ',' or '}'");
    }
  }
  ws();
  if (i < n) fail("unexpected text after the end");
  return result;
}

/** Sets a key as `JSON.parse` does: `__proto__` becomes an own property, not the prototype. */
function setOwn(target: Record<string, unknown>, key: string, value: unknown): void {
  if (key === "__proto__") {
    Object.defineProperty(target, key, {
      value,
      enumerable: true,
      writable: true,
      configurable: true,
    });
  } else target[key] = value;
}

/**
 * A short description of any value for an error message: JSON-like, at most about `max`
 * characters (long strings, arrays and objects are cut with `…` and their size), `NaN`,
 * `Infinity` and `undefined` written as such. Its cost is bounded by `max`, not by the value.
 *
 * @example
 * ```ts
 * import { excerpt } from "./json.ts";
 * excerpt(Infinity); // "Infinity"
 * excerpt("x".repeat(1e6)); // '"xxxx…" (1000000 characters)'
 * ```
 */
export function excerpt(value: unknown, max = 60): string {
  let budget = max;
  const walk = (v: unknown, depth: number): string => {
    if (typeof v === "string") {
      if (v.length <= Math.max(budget, 8)) {
        budget -= v.length + 2;
        return JSON.stringify(v);
      }
      const cut = Math.max(8, budget);
      budget = 0;
      return `${JSON.stringify(v.slice(0, cut))}… (${v.length} characters)`;
    }
    if (typeof v === "number") {
      const s = Object.is(v, -0) ? "-0" : String(v);
      budget -= s.length;
      return s;
    }
    if (v === null || typeof v !== "object") {
      const s = String(v);
      budget -= s.length;
      return s;
    }
    const isArray = Array.isArray(v);
    const [open, close] = isArray ? ["[", "]"] : ["{", "}"];
    const entries = isArray ? null : Object.keys(v);
    const count = isArray ? (v as unknown[]).length : entries!.length;
    if (count === 0) return open + close;
    if (depth >= 4 || budget <= 0) {
      return `${open}…${close} (${count} ${isArray ? "items" : "keys"})`;
    }
    const parts: string[] = [];
    budget -= 2;
    for (let k = 0; k < count; k++) {
      if (k > 0) budget -= 2;
      if (budget <= 0) {
        parts.push(`… (${count} ${isArray ? "items" : "keys"})`);
        break;
      }
      if (isArray) parts.push(walk((v as unknown[])[k], depth + 1));
      else {
        const key = entries![k];
        budget -= key.length + 4;
        parts.push(
          `${JSON.stringify(key.slice(0, 40))}: ${
            walk((v as Record<string, unknown>)[key], depth + 1)
          }`,
        );
      }
    }
    return `${open}${parts.join(", ")}${close}`;
  };
  return walk(value, 0);
}

/**
 * A name (of a tensor, a key) as a message prints it: as is when short and made of ordinary
 * characters, else quoted and cut by {@link excerpt}.
 *
 * @example
 * ```ts
 * import { nameOf } from "./json.ts";
 * nameOf("model.norm.weight"); // "model.norm.weight"
 * nameOf("a\nb"); // '"a\nb"'
 * ```
 */
export function nameOf(name: string): string {
  return name.length <= 200 && /^[\w.\-/:]+$/.test(name) ? name : excerpt(name, 120);
}

/**
 * Reads a text file, with errors that name the file and say what is wrong in plain words
 * (missing, a directory, unreadable, not UTF-8).
 *
 * @example
 * ```ts ignore
 * import { readTextFileNamed } from "./json.ts";
 * const text = await readTextFileNamed("models/x/config.json");
 * ```
 */
export async function readTextFileNamed(path: string): Promise<string> {
  let bytes: Uint8Array;
  try {
    const stat = await Deno.stat(path);
    if (stat.isDirectory) throw new Error(`${path}: is a directory, not a file`);
    bytes = await Deno.readFile(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) throw new Error(`${path}: no such file`);
    if (e instanceof Deno.errors.PermissionDenied) {
      throw new Error(`${path}: permission denied`);
    }
    throw e;
  }
  try {
    return new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    throw new Error(`${path}: not UTF-8 text`);
  }
}

/**
 * Reads and strictly parses a JSON file ({@link parseJsonStrict}); every error names the file.
 *
 * @example
 * ```ts ignore
 * import { readJsonStrict } from "./json.ts";
 * const config = await readJsonStrict("models/x/config.json");
 * ```
 */
export async function readJsonStrict(
  path: string,
  options: StrictJsonOptions = {},
): Promise<unknown> {
  return parseJsonStrict(await readTextFileNamed(path), path, options);
}
