# H200, 2026-12-02 ~18:50 UTC, one device call (from the repository root; .wt/combine.patch held the
# change to kernels/attention.wgsl: the merge of split ranges read all ranges at once).
R="deno run -A --no-lock --cached-only"
S=/tmp/o; mkdir -p $S
timeout 100 $R bench/kv_attention.ts --kv int4,int8,f16 --variants 128/256,128/128/w2048,128/256/w2048,128/256/w512,128/128/fixed --out $S/after
timeout 60 $R bench/kv_cache.ts --weights fp16 --kv f16,int8,int4 --tokens 64 --out $S/fp16
patch -R -p1 < .wt/combine.patch   # back to the one-range-at-a-time merge
timeout 60 $R bench/kv_attention.ts --kv int4,int8,f16 --variants 128/256,128/128/w2048 --out $S/before
timeout 60 $R bench/kv_cache.ts --weights fp16 --kv f16,int8,int4 --tokens 64 --out $S/fp16-before
# outputs: kv-attention-{after,before}.json, kv-cache-fp16{,-before}.json (the before/after runs'
# splitKeys were 256 for every format: the 128-position default for quantized caches came after)
