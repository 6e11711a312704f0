#!/usr/bin/env bash
# GEMM tunings, then end-to-end prefill with and without gemm_outer, on the H200.
set -u
T='[{"gemmOuterRows":0},{},{"gemmOuterRows":64},{"gemmOuterF16":true},{"gemmOuterRows":64,"gemmOuterF16":true}]'
timeout 240 deno run -A --no-lock --cached-only bench/run.ts --sections reference,gemm \
  --formats fp16,nf4,q8_0 --gemm-tunings "$T" --reps 20 --out "$OUT/gemm" > "$OUT/gemm.txt" 2>&1
echo "gemm rc=$?" >> "$OUT/gemm.txt"
for t in '{"gemmOuterRows":0}' '{}'; do
  timeout 120 deno run -A --no-lock --cached-only bench/run.ts --sections decode --models llama-2-7b \
    --formats fp16,nf4 --decode-modes pipe8 --tokens 16 --tuning "$t" \
    --out "$OUT/prefill-$t" >> "$OUT/prefill.txt" 2>&1
  echo "prefill $t rc=$?" >> "$OUT/prefill.txt"
done
