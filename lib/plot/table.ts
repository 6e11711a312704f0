/**
 * Tables of results as HTML and as aligned plain text, shared by the notebook display and the
 * HTML report.
 *
 * @module
 */

import { escapeHtml } from "./plotly_js.ts";

/** A cell's value; numbers are printed with {@linkcode formatCell}. */
export type Cell = string | number | boolean | null | undefined;

/** A table: rows as objects keyed by column, or as arrays in column order. */
export interface Table {
  /** Column names, left to right. */
  columns: string[];
  /** The rows. */
  rows: (Record<string, Cell> | Cell[])[];
}

/**
 * A cell as text: integers in full, other numbers with four significant digits, empty for
 * missing values.
 *
 * @example
 * ```ts
 * import { formatCell } from "./table.ts";
 * formatCell(5.678912); // "5.679"
 * ```
 */
export function formatCell(value: Cell): string {
  if (value === null || value === undefined) return "";
  if (typeof value === "number") {
    if (!Number.isFinite(value)) return String(value);
    if (Number.isInteger(value)) return String(value);
    const abs = Math.abs(value);
    if (abs !== 0 && (abs < 1e-3 || abs >= 1e6)) return value.toExponential(3);
    return String(Number(value.toPrecision(4)));
  }
  return String(value);
}

/**
 * The table's cells as text, row by row, in column order.
 *
 * @example
 * ```ts
 * import { tableCells } from "./table.ts";
 * tableCells({ columns: ["a"], rows: [{ a: 1 }, [2]] }); // [["1"], ["2"]]
 * ```
 */
export function tableCells(table: Table): string[][] {
  return table.rows.map((row) =>
    table.columns.map((column, i) => formatCell(Array.isArray(row) ? row[i] : row[column]))
  );
}

/**
 * A `<table>` element; numeric columns are right-aligned.
 *
 * @example
 * ```ts
 * import { tableHtml } from "./table.ts";
 * tableHtml({ columns: ["format"], rows: [["nf4"]] }).startsWith("<table"); // true
 * ```
 */
export function tableHtml(table: Table): string {
  const cells = tableCells(table);
  const numeric = table.columns.map((_, c) =>
    cells.length > 0 && cells.every((row) => row[c] === "" || !Number.isNaN(Number(row[c])))
  );
  const align = (c: number): string => (numeric[c] ? ' style="text-align:right"' : "");
  const head = table.columns.map((name, c) => `<th${align(c)}>${escapeHtml(name)}</th>`).join("");
  const body = cells.map((row) =>
    `<tr>${row.map((cell, c) => `<td${align(c)}>${escapeHtml(cell)}</td>`).join("")}</tr>`
  ).join("\n");
  return `<table class="qlab-table">\n<thead><tr>${head}</tr></thead>\n<tbody>\n${body}\n` +
    `</tbody>\n</table>`;
}

/**
 * The table as aligned Markdown-style text, for terminals and plain-text notebook outputs.
 *
 * @example
 * ```ts
 * import { tableText } from "./table.ts";
 * tableText({ columns: ["a", "b"], rows: [[1, 2]] }); // "| a | b |\n| - | - |\n| 1 | 2 |"
 * ```
 */
export function tableText(table: Table): string {
  const cells = tableCells(table);
  const widths = table.columns.map((name, c) =>
    Math.max(1, name.length, ...cells.map((row) => row[c].length))
  );
  const line = (row: string[]): string =>
    `| ${row.map((cell, c) => cell.padEnd(widths[c])).join(" | ")} |`;
  return [
    line(table.columns),
    line(widths.map((w) => "-".repeat(w))),
    ...cells.map(line),
  ].join("\n");
}
