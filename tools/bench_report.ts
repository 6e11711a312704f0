/**
 * Renders a `deno task bench` results.json as markdown (stdout) and, with `--html FILE`, as the
 * offline HTML report with plots — for runs made on a machine without plotly.js.
 *
 * ```sh
 * deno run -A tools/bench_report.ts bench/results/h100.json --html /tmp/h100.html
 * ```
 *
 * @module
 */

import { parseArgs } from "node:util";
import { barFigure } from "../lib/plot/generic.ts";
import { writeReport } from "../lib/plot/report.ts";
import { type BenchResults, markdownReport, reportSections } from "../bench/report.ts";

const { values, positionals } = parseArgs({
  args: Deno.args,
  allowPositionals: true,
  options: { html: { type: "string" }, level: { type: "string", default: "2" } },
});
if (positionals.length !== 1) {
  console.error("usage: deno run -A tools/bench_report.ts RESULTS.json [--html FILE]");
  Deno.exit(2);
}
const r = JSON.parse(await Deno.readTextFile(positionals[0])) as BenchResults;
console.log(markdownReport(r, Number(values.level)));
if (values.html) {
  const shapes = [...new Set(r.gemv.map((g) => `${g.n}x${g.k}`))];
  const formats = [...new Set(r.gemv.map((g) => g.format))];
  const models = [...new Set(r.decode.map((d) => d.model))];
  await writeReport(values.html, {
    title: `qlab benchmarks — ${r.meta.adapter}`,
    sections: reportSections(r, {
      gemv: r.gemv.length
        ? barFigure(
          shapes,
          formats.map((f) => ({
            name: f,
            values: shapes.map((s) =>
              100 *
              (r.gemv.find((g) => g.format === f && `${g.n}x${g.k}` === s)?.ofReference ?? NaN)
            ),
          })),
          { title: "GEMV bandwidth, % of the streaming-read reference", valueTitle: "%" },
        )
        : null,
      decode: r.decode.length
        ? barFigure(
          [...new Set(r.decode.map((d) => d.format))],
          models.flatMap((m) => [
            {
              name: `${m} tokens/s`,
              values: r.decode.filter((d) => d.model === m).map((d) => d.tokensPerSecond),
            },
            {
              name: `${m} roofline`,
              values: r.decode.filter((d) => d.model === m).map((d) => d.rooflineTokensPerSecond),
            },
          ]),
          { title: "Greedy decode, random weights", valueTitle: "tokens/s" },
        )
        : null,
    }),
  });
}
