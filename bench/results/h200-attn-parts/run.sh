# H200 call 3: int4 with 32 key elements per thread in whole steps; where attention's time goes (split alone, merge alone).
R="deno run -A --no-lock --cached-only"
S=/tmp/o; mkdir -p $S
log() { echo "== $1 rc=$2 $(date -u +%T)"; }
echo "start $(date -u +%T)"
timeout 60 $R bench/kv_cache.ts --weights fp16 --kv f16,int4 --tokens 64 --out $S/fp16 2>&1; log cache-fp16 $?
timeout 60 $R bench/kv_cache.ts --weights nf4 --kv f16,int4 --tokens 64 --out $S/nf4 2>&1; log cache-nf4 $?
cp lib/kernels/attention.ts /tmp/att.ts
sed -i 's/const keyElements = opts.keyElements ?? 16;/const keyElements = opts.keyElements ?? (kvCache === "int4" ? 32 : 16);/' lib/kernels/attention.ts; grep -c 'kvCache === "int4" ? 32' lib/kernels/attention.ts
timeout 60 $R bench/kv_cache.ts --weights fp16 --kv int4,f16 --tokens 64 --out $S/fp16-k32 2>&1; log cache-fp16-k32 $?
timeout 60 $R bench/kv_cache.ts --weights nf4 --kv int4,f16 --tokens 64 --out $S/nf4-k32 2>&1; log cache-nf4-k32 $?
cp /tmp/att.ts lib/kernels/attention.ts
timeout 30 $R bench/kv_attention.ts --kv int4,int8,f16 --variants 128/256,128/128 --out $S/att 2>&1; log att $?
sed -i 's/^        batch.dispatch(combine, \[scratch, out\], grid(items), p);/        \/\/ merge left out/' lib/kernels/attention.ts; grep -c "merge left out" lib/kernels/attention.ts
timeout 30 $R bench/kv_attention.ts --kv int4,int8,f16 --variants 128/256,128/128 --out $S/att-split 2>&1; log att-split-only $?
cp /tmp/att.ts lib/kernels/attention.ts
sed -i 's/^        batch.dispatch(split, \[q, cacheK, cacheV, scratch, pos\], grid(items \* splits), p);/        \/\/ split left out/' lib/kernels/attention.ts; grep -c "split left out" lib/kernels/attention.ts
timeout 30 $R bench/kv_attention.ts --kv int4,f16 --variants 128/256,128/128 --out $S/att-merge 2>&1; log att-merge-only $?
cp /tmp/att.ts lib/kernels/attention.ts
for d in fp16 nf4 fp16-k32 nf4-k32; do cp $S/$d/kv-cache.json $OUT/kv-cache-$d.json; done
for d in att att-split att-merge; do cp $S/$d/kv-attention.json $OUT/kv-$d.json; done
echo "end $(date -u +%T)"
