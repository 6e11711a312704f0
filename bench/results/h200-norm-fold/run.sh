R="deno run -A --no-lock --cached-only bench/run.ts"
for i in 1 2; do
timeout 140 $R --sections decode --models llama-2-7b --formats nf4,nf4-dq --decode-modes pipe8 --tokens 64 --tuning '{"gemvFoldNorm":false}' > $OUT/decode-off-$i.txt 2>&1
timeout 140 $R --sections decode --models llama-2-7b --formats nf4,nf4-dq --decode-modes pipe8 --tokens 64 > $OUT/decode-on-$i.txt 2>&1
done
timeout 200 $R --sections reference,decode --models llama-2-7b,llama-3-8b --formats nf4,nf4-dq --decode-modes pipe8 --tokens 64 --llama-bench bench/results/llama-bench-h200-2026-12-02.jsonl --out $OUT/side > $OUT/side.txt 2>&1
grep -E "^decode|pipe8" $OUT/decode-*.txt
grep -v "^\s*at " $OUT/side.txt | grep -E "^decode|pipe8|reference|llama" | tail -30
