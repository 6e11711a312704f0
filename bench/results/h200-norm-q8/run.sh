# H200 call 11: add_rmsnorm_q8 short rows (absmax from registers, codes packed from workgroup memory) after/before/after, decode at position 128.
R="deno run -A --no-lock --cached-only"
S=/tmp/o; mkdir -p $S
run() { for w in int8-vectorwise llm-int8 fp16; do timeout 60 $R bench/kv_cache.ts --weights $w --kv f16 --positions 128 --tokens 64 --out $S/$1-$w 2>&1 | grep -v "^|\|^$\|^Decode"; cp $S/$1-$w/kv-cache.json $OUT/kv-cache-$1-$w.json; done; }
run after1
patch -R -p1 < .wt/q8.patch && echo before
run before
patch -p1 < .wt/q8.patch && echo after
run after2
