#!/usr/bin/env bash
# perf round, device run 3: LLM.int8() GEMV with the outlier mask (OMASK, default) against the
# list walk (gemvOutlierMask false: the code as landed at 09cabb2), same tree, same lease.
set -u
O=${OUT:-/tmp/perf_out}; mkdir -p $O/tmp
D="--sections decode --decode-modes pipe8 --formats llm-int8 --models llama-2-7b"
deno run -A --no-lock bench/run.ts $D --tuning '{"gemvOutlierMask":false}' --out $O/tmp/b > $O/omask-off.txt 2>&1
deno run -A --no-lock bench/run.ts $D --out $O/tmp/a > $O/omask-on.txt 2>&1
rm -rf $O/tmp
grep -h -E "^decode|pipe8|GPU time" $O/*.txt
