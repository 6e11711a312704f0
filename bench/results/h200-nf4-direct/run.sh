R="deno run -A --no-lock --cached-only bench/run.ts"
D='"gemvDirect":true'
T="[{},{$D},{$D,\"gemvDirectUnroll\":4},{$D,\"gemvDirectUnroll\":1},{$D,\"gemvDirectWords\":1},{$D,\"gemvDirectWords\":1,\"gemvDirectUnroll\":4},{$D,\"gemvThreadsPerRow\":32},{$D,\"gemvThreadsPerRow\":64},{$D,\"gemvThreadsPerRow\":16},{$D,\"gemvRowsPerThread\":8},{$D,\"gemvRowsPerThread\":2},{$D,\"gemvRowsPerThread\":8,\"gemvThreadsPerRow\":32}]"
timeout 280 $R --sections reference,gemv --formats nf4 --reps 30 --gemv-tunings "$T" > $OUT/gemv.txt 2>&1
grep -E "^gemv|reference" $OUT/gemv.txt | sed -E 's/ \(product [0-9.]+\)//; s/; flush read [0-9]+ GB\/s//'
timeout 140 $R --sections decode --models llama-2-7b --formats nf4,nf4-dq --decode-modes pipe8 --tokens 64 > $OUT/decode-base.txt 2>&1
timeout 140 $R --sections decode --models llama-2-7b --formats nf4,nf4-dq --decode-modes pipe8 --tokens 64 --tuning "{$D}" > $OUT/decode-direct.txt 2>&1
grep -E "pipe8|tok/s" $OUT/decode-base.txt $OUT/decode-direct.txt | tail -20
