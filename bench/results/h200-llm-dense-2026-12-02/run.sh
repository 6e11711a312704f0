#!/usr/bin/env bash
# LLM.int8() dense outlier sum, one lease: main's tree (base) and this branch (after, copied over
# it from .wt/perf) alternately, each twice, plus the branch with the dense sum never taken
# (llmDenseOutliers 1025: the list walk, as main) and taken wherever there are outliers (0).
set -u
O=${OUT:-/tmp/perf_out}; mkdir -p $O/tmp
R="deno run -A --no-lock --cached-only bench/run.ts --sections decode --decode-modes pipe8 --models llama-2-7b"
F=int8-vectorwise,llm-int8
files=$(cd .wt/perf && find . -type f)
tar cf /tmp/base.tar $(for f in $files; do [ -f "$f" ] && echo "$f"; done)
nvidia-smi --query-gpu=name,clocks.sm,clocks.mem,temperature.gpu,power.draw --format=csv > $O/smi.txt 2>&1
step() { local name=$1; shift; timeout 90 $R "$@" --out $O/tmp/$name > $O/$name.txt 2>&1; grep -h "^decode" $O/$name.txt; }
step base --formats $F
cp -r .wt/perf/. .
step after --formats $F
step dense-off --formats llm-int8 --tuning '{"llmDenseOutliers":1025}'
step dense-all --formats llm-int8 --tuning '{"llmDenseOutliers":0}'
if [ "${REPEAT:-1}" = 1 ]; then
  tar xf /tmp/base.tar
  step base2 --formats $F
  cp -r .wt/perf/. .
  step after2 --formats $F
fi
for r in base after base2 after2; do cp $O/tmp/$r/results.json $O/$r.json 2>/dev/null; done
rm -rf $O/tmp
grep -h -E "GPU time" $O/*.txt | cut -c1-400
