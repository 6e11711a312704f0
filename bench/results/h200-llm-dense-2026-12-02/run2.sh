#!/usr/bin/env bash
# Second call: main's tree (base2) against this branch (after2) again, now with Q8_0 and the
# verify pass of speculative decoding (multi-row GEMVs), then Llama-3-8B decode on the branch.
set -u
O=${OUT:-/tmp/perf_out}; mkdir -p $O/tmp
R="deno run -A --no-lock --cached-only bench/run.ts"
D="--sections decode --decode-modes pipe8"
V="--sections speculative --spec-parts verify --formats int8-vectorwise,llm-int8,q8_0"
files=$(cd .wt/perf && find . -type f)
tar cf /tmp/base.tar $(for f in $files; do [ -f "$f" ] && echo "$f"; done)
nvidia-smi --query-gpu=name,clocks.sm,clocks.mem,temperature.gpu,power.draw --format=csv > $O/smi2.txt 2>&1
step() { local name=$1; shift; timeout 100 $R "$@" --out $O/tmp/$name > $O/$name.txt 2>&1; grep -h -E "^decode|^verify" $O/$name.txt; }
step base2 $D --models llama-2-7b --formats int8-vectorwise,llm-int8,q8_0
step verify-base $V
cp -r .wt/perf/. .
step after2 $D --models llama-2-7b --formats int8-vectorwise,llm-int8,q8_0
step verify-after $V
step after-8b $D --models llama-3-8b --formats int8-vectorwise,llm-int8
for r in base2 after2 verify-base verify-after after-8b; do cp $O/tmp/$r/results.json $O/$r.json 2>/dev/null; done
rm -rf $O/tmp
grep -h -E "GPU time|GPU ms by" $O/*.txt | cut -c1-400
