# H200 call 7: RMSNorm folded into the FP16 GEMV (experiment, bench/fp16_normfold.ts), twice.
R="deno run -A --no-lock --cached-only"
echo "start $(date -u +%T)"
timeout 100 $R bench/fp16_normfold.ts --steps 32 2>&1
timeout 100 $R bench/fp16_normfold.ts --steps 32 2>&1
echo "end $(date -u +%T)"
