D="deno run -A --no-lock --cached-only"
B="--sections decode --decode-modes pipe8 --tokens 128 --prompt-lengths 8"
OFF='{"gemvFoldNorm":false}'
nvidia-smi --query-gpu=name,clocks.sm,clocks.mem --format=csv > $OUT/gpu.txt 2>&1
for i in 1 2; do
  timeout 60 $D bench/run.ts --out $OUT/r --models llama-2-7b $B --formats int8-vectorwise > $OUT/i8-7b-fold-$i.txt 2>&1
  timeout 60 $D bench/run.ts --out $OUT/r --models llama-2-7b $B --formats int8-vectorwise --tuning "$OFF" > $OUT/i8-7b-nofold-$i.txt 2>&1
done
timeout 70 $D bench/run.ts --out $OUT/r --models llama-3-8b $B --formats int8-vectorwise > $OUT/i8-8b-fold.txt 2>&1
timeout 70 $D bench/run.ts --out $OUT/r --models llama-3-8b $B --formats int8-vectorwise --tuning "$OFF" > $OUT/i8-8b-nofold.txt 2>&1
timeout 60 $D bench/run.ts --out $OUT/r --models llama-2-7b $B --formats llm-int8 > $OUT/llm-7b-tpr32.txt 2>&1
timeout 60 $D bench/run.ts --out $OUT/r --models llama-2-7b $B --formats llm-int8 --tuning '{"gemvThreadsPerRow":16}' > $OUT/llm-7b-tpr16.txt 2>&1
timeout 60 $D bench/step_breakdown.ts int8-vectorwise > $OUT/i8-breakdown.txt 2>&1
echo done
