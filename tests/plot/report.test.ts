import assert from "node:assert/strict";
import { join } from "node:path";
import { renderReport, writeReport } from "../../lib/plot/mod.ts";
import { everyFigure } from "./_figures.ts";

const BANNER = /\* plotly\.js v\d+\.\d+\.\d+/g;

Deno.test("renderReport: self-contained, plotly.js once for many figures", () => {
  const figures = Object.values(everyFigure());
  const html = renderReport({
    title: "qlab <report>",
    sections: [
      { heading: "All figures", text: "First paragraph.\n\nSecond & last.", figures },
      { heading: "Again", figures: figures.slice(0, 2) },
      { heading: "Table", table: { columns: ["format", "bits"], rows: [["nf4", 4.127]] } },
    ],
  });
  assert.ok(html.startsWith("<!DOCTYPE html>"));
  assert.equal([...html.matchAll(BANNER)].length, 1);
  assert.equal([...html.matchAll(/class="qlab-plot"/g)].length, figures.length + 2);
  // Nothing is fetched: no external scripts, styles, images or frames.
  assert.doesNotMatch(
    html,
    /<(script|link|img|iframe)\b[^>]*\b(src|href)\s*=\s*["']?(https?:)?\/\//i,
  );
  assert.doesNotMatch(html, /@import|url\(\s*["']?https?:/i);
  assert.match(html, /<title>qlab &lt;report&gt;<\/title>/);
  assert.match(html, /<p>Second &amp; last\.<\/p>/);
  assert.match(html, /<td>nf4<\/td>/);
  // Ids are stable, so two renders of the same report are the same page.
  assert.equal(
    html,
    renderReport({
      title: "qlab <report>",
      sections: [
        { heading: "All figures", text: "First paragraph.\n\nSecond & last.", figures },
        { heading: "Again", figures: figures.slice(0, 2) },
        { heading: "Table", table: { columns: ["format", "bits"], rows: [["nf4", 4.127]] } },
      ],
    }),
  );
});

Deno.test("renderReport: no figures, no plotly.js", () => {
  const html = renderReport({ title: "t", sections: [{ heading: "h", text: "only text" }] });
  assert.equal([...html.matchAll(BANNER)].length, 0);
  assert.ok(html.length < 10_000);
});

Deno.test("writeReport: atomic write, creates the folder, replaces the old file, leaves no temp", async () => {
  const dir = await Deno.makeTempDir({ prefix: "qlab-report-" });
  try {
    const path = join(dir, "sub", "report.html");
    await writeReport(path, { title: "one", sections: [] });
    assert.match(await Deno.readTextFile(path), /<title>one<\/title>/);
    await writeReport(path, "<!DOCTYPE html><title>two</title>");
    assert.equal(await Deno.readTextFile(path), "<!DOCTYPE html><title>two</title>");
    const names = [];
    for await (const entry of Deno.readDir(join(dir, "sub"))) names.push(entry.name);
    assert.deepEqual(names, ["report.html"]);
    // A failed write leaves the old report as it was and no temp file.
    await Deno.mkdir(join(dir, "sub", "taken"));
    await assert.rejects(writeReport(join(dir, "sub", "taken"), "x"));
    const after = [];
    for await (const entry of Deno.readDir(join(dir, "sub"))) after.push(entry.name);
    assert.deepEqual(after.sort(), ["report.html", "taken"]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
