R="deno run -A --no-lock --cached-only bench/run.ts"
for i in 1 2; do
timeout 100 $R --sections decode --models llama-2-7b --formats fp16 --decode-modes pipe8 --tokens 64 --stack-swiglu false > $OUT/fp16-off-$i.txt 2>&1
timeout 100 $R --sections decode --models llama-2-7b --formats fp16 --decode-modes pipe8 --tokens 64 > $OUT/fp16-on-$i.txt 2>&1
done
timeout 240 $R --sections reference,decode --models llama-2-7b,llama-3-8b --formats fp16,int8-vectorwise,llm-int8,nf4,nf4-dq --decode-modes pipe8 --tokens 64 --llama-bench bench/results/llama-bench-h200-2026-12-02.jsonl --out $OUT/side > $OUT/side.txt 2>&1
grep -E "^decode" $OUT/fp16-*.txt
grep -v "^\s*at " $OUT/side.txt | grep -E "^decode|reference|\| llama" | grep -v prefill | tail -30
