# H200 call 5: main's defaults (int4 keys 16 elements, ranges to the nearest whole blocks); whole steps twice; speculative rounds on the bundled pair.
R="deno run -A --no-lock --cached-only"
S=/tmp/o; mkdir -p $S
log() { echo "== $1 rc=$2 $(date -u +%T)"; }
echo "start $(date -u +%T)"
timeout 40 $R bench/kv_attention.ts --kv int4,int8,f16 --variants 128/128,128/256 --out $S/att 2>&1; log att $?
for i in 1 2; do
timeout 60 $R bench/kv_cache.ts --weights fp16 --kv f16,int8,int4 --tokens 64 --out $S/fp16-$i 2>&1; log cache-fp16-$i $?
timeout 60 $R bench/kv_cache.ts --weights nf4 --kv f16,int8,int4 --tokens 64 --out $S/nf4-$i 2>&1; log cache-nf4-$i $?
done
timeout 90 $R bench/spec_round.ts --out $S/spec 2>&1 | tail -40; log spec $?
cp $S/att/kv-attention.json $OUT/kv-attention.json
for d in fp16-1 nf4-1 fp16-2 nf4-2; do cp $S/$d/kv-cache.json $OUT/kv-cache-$d.json; done
cp $S/spec/*.json $OUT/ 2>/dev/null
echo "end $(date -u +%T)"
