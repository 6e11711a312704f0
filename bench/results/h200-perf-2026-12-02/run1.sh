#!/usr/bin/env bash
# perf round, device run 1: quantized stacks before/after in one lease, XFULL 4-bit GEMV.
set -u
O=${OUT:-/tmp/perf_out}; mkdir -p $O
LB=bench/results/llama-bench-h200-2026-12-02.jsonl
F=fp16,int8-vectorwise,llm-int8,nf4,nf4-dq
R="deno run -A --no-lock bench/run.ts --decode-modes pipe8 --models llama-2-7b"
nvidia-smi --query-gpu=name,clocks.sm,clocks.mem,temperature.gpu,power.draw --format=csv > $O/smi.txt 2>&1
$R --sections reference,decode --formats $F --stack fp16 --out $O/before --llama-bench $LB > $O/before.log 2>&1
$R --sections decode --formats $F --stack all --out $O/stacked --llama-bench $LB > $O/stacked.log 2>&1
$R --sections decode --formats nf4,nf4-dq --stack all --tuning '{"gemvFullX":true}' --out $O/fullx > $O/fullx.log 2>&1
$R --sections decode,reference --formats $F --stack fp16 --out $O/before2 > $O/before2.log 2>&1
grep -h -E "^decode|^reference|streaming" $O/*.log
