# H200 call 8: add_rmsnorm holding a row in registers (1,024 threads for 4096) before/after, decode at position 128.
R="deno run -A --no-lock --cached-only"
S=/tmp/o; mkdir -p $S
log() { echo "== $1 rc=$2 $(date -u +%T)"; }
echo "start $(date -u +%T)"
for w in fp16 nf4 int8-vectorwise; do
timeout 60 $R bench/kv_cache.ts --weights $w --kv f16 --positions 128 --tokens 64 --out $S/after-$w 2>&1 | grep -v "^|\|^$\|^Decode"; log after-$w $?
done
patch -R -p1 < .wt/norm.patch && echo reverted
for w in fp16 nf4 int8-vectorwise; do
timeout 60 $R bench/kv_cache.ts --weights $w --kv f16 --positions 128 --tokens 64 --out $S/before-$w 2>&1 | grep -v "^|\|^$\|^Decode"; log before-$w $?
done
patch -p1 < .wt/norm.patch && echo reapplied
for w in fp16 nf4; do
timeout 60 $R bench/kv_cache.ts --weights $w --kv f16 --positions 128 --tokens 64 --out $S/after2-$w 2>&1 | grep -v "^|\|^$\|^Decode"; log after2-$w $?
done
for d in after-fp16 after-nf4 after-int8-vectorwise before-fp16 before-nf4 before-int8-vectorwise after2-fp16 after2-nf4; do cp $S/$d/kv-cache.json $OUT/kv-cache-$d.json; done
echo "end $(date -u +%T)"
