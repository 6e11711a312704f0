/**
 * A standalone HTML report: headings, text, figures and tables in one file that opens offline,
 * plotly.js inlined once.
 *
 * @module
 */

import { dirname } from "node:path";
import { writeAtomic } from "../io/atomic.ts";
import type { Figure } from "./figure.ts";
import { escapeHtml, plotHtml, plotlyScriptTag } from "./plotly_js.ts";
import { type Table, tableHtml } from "./table.ts";

/** One section of a report. */
export interface ReportSection {
  /** Its heading. */
  heading: string;
  /** Plain text; blank lines separate paragraphs. */
  text?: string;
  /** Figures, drawn in order after the text. */
  figures?: Figure[];
  /** A table after the figures. */
  table?: Table;
}

/** A report's content. */
export interface Report {
  /** The page title and top heading. */
  title: string;
  /** The sections, in order. */
  sections: ReportSection[];
}

const STYLE = `
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0 auto;
  max-width: 1100px; padding: 1.5rem; color: #222; line-height: 1.45; }
h1 { font-size: 1.7rem; } h2 { font-size: 1.3rem; margin-top: 2.2rem;
  border-bottom: 1px solid #ddd; padding-bottom: .3rem; }
.qlab-plot { margin: 1rem 0; }
table.qlab-table { border-collapse: collapse; margin: 1rem 0; font-variant-numeric: tabular-nums; }
table.qlab-table th, table.qlab-table td { border: 1px solid #ccc; padding: .3rem .6rem; }
table.qlab-table th { background: #f4f4f4; }
`;

/**
 * The report as one self-contained HTML page: no network requests, plotly.js inlined once before
 * the first figure (and not at all when there is none).
 *
 * @example
 * ```ts
 * import { renderReport } from "./report.ts";
 * const html = renderReport({
 *   title: "qlab",
 *   sections: [{ heading: "Formats", table: { columns: ["format", "bits"], rows: [["nf4", 4.127]] } }],
 * });
 * html.startsWith("<!DOCTYPE html>"); // true
 * ```
 */
export function renderReport(report: Report): string {
  const hasFigures = report.sections.some((s) => (s.figures?.length ?? 0) > 0);
  let n = 0;
  const body = report.sections.map((section) => {
    const parts = [`<section>\n<h2>${escapeHtml(section.heading)}</h2>`];
    for (const paragraph of (section.text ?? "").split(/\n\s*\n/)) {
      if (paragraph.trim()) parts.push(`<p>${escapeHtml(paragraph.trim())}</p>`);
    }
    // Ids from a counter keep the page the same from run to run, for diffs.
    for (const figure of section.figures ?? []) {
      parts.push(plotHtml(figure, { id: `plot-${n++}`, waitMs: 5000 }));
    }
    if (section.table) parts.push(tableHtml(section.table));
    parts.push("</section>");
    return parts.join("\n");
  }).join("\n");
  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${escapeHtml(report.title)}</title>
<style>${STYLE}</style>
${hasFigures ? plotlyScriptTag() : ""}
</head>
<body>
<h1>${escapeHtml(report.title)}</h1>
${body}
</body>
</html>
`;
}

/**
 * Writes a report (or its rendered HTML) to `path` atomically: into a temporary file beside it,
 * then renamed over it, so a reader never sees half a report. Creates the parent folder.
 *
 * @example
 * ```ts ignore
 * import { writeReport } from "./report.ts";
 * await writeReport("out/report.html", { title: "qlab", sections: [] });
 * ```
 */
export async function writeReport(path: string, report: Report | string): Promise<void> {
  const html = typeof report === "string" ? report : renderReport(report);
  const dir = dirname(path);
  await Deno.mkdir(dir, { recursive: true });
  // Removed on an error or an interrupt; left over by a killed run, swept by the next write.
  await writeAtomic(path, html);
}
