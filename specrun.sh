R="deno run -A --no-lock --cached-only"
for t in fp16 nf4; do
  timeout 100 $R bench/spec_round.ts --target $t --draft fp16 --out $OUT/round-$t > $OUT/round-$t.txt 2>&1; echo "round $t rc=$?" >> $OUT/round-$t.txt
done
