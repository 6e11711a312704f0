set -u
D="deno run -A --no-lock --cached-only"
mkdir -p $OUT
P="--spec-groups auto --spec-alone 64,auto --spec-pairs fp16+fp16,int8-vectorwise+fp16,nf4+fp16"
timeout 200 $D bench/run.ts --sections speculative --spec-parts bundled $P --spec-k adaptive,7,adaptive,6 --out /tmp/b1 > $OUT/bundled-greedy.txt 2>&1
timeout 120 $D bench/run.ts --sections speculative --spec-parts bundled $P --spec-k adaptive,2,3 --spec-sampling 0.8,40,0.95 --out /tmp/b2 > $OUT/bundled-sampled.txt 2>&1
timeout 250 $D bench/run.ts --sections speculative --spec-parts simulated --spec-targets llama-2-7b --spec-tokens 192 --out /tmp/o4 > $OUT/simulated-7b.txt 2>&1
