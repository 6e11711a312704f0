set -u
D="deno run -A --no-lock --cached-only"
mkdir -p $OUT
L="--llama-bench bench/results/llama-bench-h200-2026-12-02.jsonl"
B="--sections decode --decode-modes pipe8 --tokens 128 --prompt-lengths 8"
timeout 170 $D bench/run.ts --sections reference,decode --decode-modes pipe8 --tokens 128 --prompt-lengths 8 --models llama-2-7b --formats fp16,int8-vectorwise,llm-int8,nf4,nf4-dq,q8_0 $L --out /tmp/o1 > $OUT/decode-7b.txt 2>&1
timeout 100 $D bench/run.ts $B --models llama-3-8b --formats fp16,int8-vectorwise,nf4 $L --out /tmp/o2 > $OUT/decode-8b.txt 2>&1
timeout 120 $D bench/run.ts --sections speculative --spec-parts verify --formats fp16,int8-vectorwise,nf4,q8_0,llm-int8 --out /tmp/o3 > $OUT/verify.txt 2>&1
timeout 190 $D bench/run.ts --sections speculative --spec-parts simulated --spec-targets llama-2-7b --spec-tokens 192 --out /tmp/o4 > $OUT/simulated-7b.txt 2>&1
