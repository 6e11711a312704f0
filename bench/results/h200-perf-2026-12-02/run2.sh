#!/usr/bin/env bash
# perf round, device run 2: main (before) and this branch (after) in one lease, Llama-2-7B and
# Llama-3-8B decode + prefill, side by side with llama.cpp.
set -u
O=${OUT:-/tmp/perf_out}; mkdir -p $O/tmp
LB=bench/results/llama-bench-h200-2026-12-02.jsonl
F=fp16,int8-vectorwise,llm-int8,nf4,nf4-dq
D="--sections decode --decode-modes pipe8 --formats $F"
nvidia-smi --query-gpu=name,clocks.sm,clocks.mem,temperature.gpu,power.draw --format=csv > $O/smi.txt 2>&1
(cd ../perf-base && deno run -A --no-lock bench/run.ts --sections reference $D --models llama-2-7b \
  --out $O/tmp/base > $O/base.log 2>&1)
deno run -A --no-lock bench/run.ts $D --models llama-2-7b,llama-3-8b --llama-bench $LB \
  --out $O/tmp/after > $O/after.log 2>&1
(cd ../perf-base && deno run -A --no-lock bench/run.ts $D --models llama-2-7b \
  --out $O/tmp/base2 > $O/base2.log 2>&1)
deno run -A --no-lock bench/run.ts --sections decode,reference --decode-modes pipe8 \
  --formats int8-vectorwise,nf4,nf4-dq --models llama-2-7b --out $O/tmp/after2 > $O/after2.log 2>&1
for r in base after base2 after2; do cp $O/tmp/$r/results.json $O/$r.json 2>/dev/null; done
rm -rf $O/tmp
grep -h -E "^decode|^reference" $O/*.log
