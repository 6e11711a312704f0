#!/usr/bin/env bash
# The bundled pair against the target alone with 8/16/32 tokens in flight; then 7B decode and
# prefill in every main format, side by side with llama.cpp's llama-bench from the same machine type.
set -u
timeout 200 deno run -A --no-lock --cached-only bench/run.ts --sections speculative \
  --spec-parts bundled --spec-groups 8,16 --spec-alone 8,16,32 --out "$OUT/spec" > "$OUT/spec.txt" 2>&1
echo "spec rc=$?" >> "$OUT/spec.txt"
timeout 260 deno run -A --no-lock --cached-only bench/run.ts --sections reference,decode \
  --models llama-2-7b --formats fp16,int8-vectorwise,llm-int8,nf4,nf4-dq,q8_0 --decode-modes pipe8 \
  --tokens 64 --llama-bench bench/results/llama-bench-h200-2026-12-02.jsonl --out "$OUT/decode" \
  > "$OUT/decode.txt" 2>&1
echo "decode rc=$?" >> "$OUT/decode.txt"
