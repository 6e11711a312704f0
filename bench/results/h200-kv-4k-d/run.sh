# H200 call 6: confirmation at main (a2ea4a6, working tree sent as is), three rounds, the cache formats in both orders.
R="deno run -A --no-lock --cached-only"
S=/tmp/o; mkdir -p $S
log() { echo "== $1 rc=$2 $(date -u +%T)"; }
echo "start $(date -u +%T) $(git log --oneline -1 2>/dev/null)"
timeout 60 $R bench/kv_cache.ts --weights fp16 --kv int4,int8,f16 --tokens 64 --out $S/fp16-1 2>&1 | grep -v "^|\|^$\|^Decode"; log fp16-1 $?
timeout 60 $R bench/kv_cache.ts --weights nf4 --kv int4,int8,f16 --tokens 64 --out $S/nf4-1 2>&1 | grep -v "^|\|^$\|^Decode"; log nf4-1 $?
timeout 60 $R bench/kv_cache.ts --weights fp16 --kv f16,int8,int4 --tokens 64 --out $S/fp16-2 2>&1 | grep -v "^|\|^$\|^Decode"; log fp16-2 $?
timeout 60 $R bench/kv_cache.ts --weights nf4 --kv f16,int8,int4 --tokens 64 --out $S/nf4-2 2>&1 | grep -v "^|\|^$\|^Decode"; log nf4-2 $?
timeout 60 $R bench/kv_cache.ts --weights fp16 --kv int8,f16,int4 --tokens 64 --out $S/fp16-3 2>&1 | grep -v "^|\|^$\|^Decode"; log fp16-3 $?
for d in fp16-1 nf4-1 fp16-2 nf4-2 fp16-3; do cp $S/$d/kv-cache.json $OUT/kv-cache-$d.json; done
echo "end $(date -u +%T)"
