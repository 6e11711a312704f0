R="deno run -A --no-lock --cached-only"
echo "start $(date -u +%T)"
for v in after before; do
  if [ $v = before ]; then patch -R -p1 < .wt/rows1.patch > /dev/null && echo "reverted"; fi
  timeout 100 $R bench/run.ts --sections speculative --spec-parts verify --formats fp16 --out $OUT/v-$v > $OUT/verify-$v.txt 2>&1; echo "verify $v rc=$?"
  timeout 120 $R bench/run.ts --sections reference,decode --models llama-2-7b --formats fp16 --decode-modes pipe8 --tokens 64 --out $OUT/d-$v > $OUT/decode-$v.txt 2>&1; echo "decode $v rc=$?"
done
echo "end $(date -u +%T)"
