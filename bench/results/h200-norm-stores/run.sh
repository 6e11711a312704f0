# H200 call 10: add+RMSNorm short rows, stores written out per component (ifs) vs as loops over the components (loops), same call, twice each.
R="deno run -A --no-lock --cached-only"
S=/tmp/o; mkdir -p $S
run() { for w in fp16 nf4; do timeout 60 $R bench/kv_cache.ts --weights $w --kv f16 --positions 128 --tokens 64 --out $S/$1-$w 2>&1 | grep -v "^|\|^$\|^Decode"; cp $S/$1-$w/kv-cache.json $OUT/kv-cache-$1-$w.json; done; }
run ifs1
patch -p1 < .wt/loops.patch && echo loops
run loops1
patch -R -p1 < .wt/loops.patch && echo ifs
run ifs2
patch -p1 < .wt/loops.patch && echo loops
run loops2
