# H200 call 2: quantized-cache attention variants (128-position ranges, 16 value elements, 32 key elements, 64 threads); whole steps.
R="deno run -A --no-lock --cached-only"
S=/tmp/o; mkdir -p $S
log() { echo "== $1 rc=$2 $(date -u +%T)"; }
echo "start $(date -u +%T)"
timeout 100 $R bench/kv_attention.ts --kv int4,int8 --variants 128/128,128/128/v16,128/128/k32,128/128/k32/v16,64/128,64/128/v16,128/256 --out $S/att 2>&1; log att $?
timeout 30 $R bench/kv_attention.ts --kv f16 --variants 128/256,128/128 --out $S/att-f16 2>&1; log att-f16 $?
timeout 60 $R bench/kv_cache.ts --weights fp16 --kv f16,int8,int4 --tokens 64 --out $S/fp16 2>&1; log cache-fp16 $?
timeout 60 $R bench/kv_cache.ts --weights nf4 --kv f16,int8,int4 --tokens 64 --out $S/nf4 2>&1; log cache-nf4 $?
sed -i 's/opts.valueElements === 16/(opts.valueElements ?? 16) === 16/' lib/kernels/attention.ts; grep -c 'valueElements ?? 16' lib/kernels/attention.ts
timeout 60 $R bench/kv_cache.ts --weights fp16 --kv int8,int4 --tokens 64 --out $S/fp16-v16 2>&1; log cache-fp16-v16 $?
timeout 60 $R bench/kv_cache.ts --weights nf4 --kv int8,int4 --tokens 64 --out $S/nf4-v16 2>&1; log cache-nf4-v16 $?
cp $S/att/kv-attention.json $OUT/kv-attention-q.json; cp $S/att-f16/kv-attention.json $OUT/kv-attention-f16.json
for d in fp16 nf4 fp16-v16 nf4-v16; do cp $S/$d/kv-cache.json $OUT/kv-cache-$d.json; done
echo "end $(date -u +%T)"
