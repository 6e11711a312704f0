set -u
D="deno run -A --no-lock --cached-only"
mkdir -p $OUT
T='[{},{"gemvEarlyLoads":true},{"gemvPrefetch":true},{}]'
timeout 200 $D bench/run.ts --sections reference,gemv --formats nf4 --extra-shapes 2048x2048,5632x2048,2048x5632,256x2048,12288x4096,22016x4096 --gemv-tunings "$T" > $OUT/gemv.txt 2>&1
B="--sections decode --decode-modes pipe8 --tokens 64 --prompt-lengths 8"
for i in 1 2; do
for t in '{}' '{"gemvEarlyLoads":true}' '{"gemvPrefetch":true}'; do
  echo "== tinyllama nf4 $t" >> $OUT/tiny.txt
  timeout 60 $D bench/run.ts --models tinyllama-1.1b --formats nf4 $B --tuning "$t" 2>&1 | grep -E "pipe8|decode |GPU time" >> $OUT/tiny.txt
done
done
for t in '{}' '{"gemvEarlyLoads":true}' '{"gemvPrefetch":true}' '{}' '{"gemvEarlyLoads":true}'; do
  echo "== 7b nf4 $t" >> $OUT/nf4-7b.txt
  timeout 80 $D bench/run.ts --models llama-2-7b --formats nf4 $B --tuning "$t" 2>&1 | grep -E "pipe8|decode |GPU time" >> $OUT/nf4-7b.txt
done
