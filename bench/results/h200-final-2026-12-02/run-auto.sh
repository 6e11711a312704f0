#!/usr/bin/env bash
# decodeGreedy's inFlight "auto" against fixed groups: the bundled target (and the pair against
# it), then Llama-2-7B NF4.
set -u
timeout 75 deno run -A --no-lock --cached-only bench/run.ts --sections speculative \
  --spec-parts bundled --spec-groups 8 --spec-alone 8,32,auto --out "$OUT/spec" > "$OUT/spec.txt" 2>&1
echo "spec rc=$?" >> "$OUT/spec.txt"
timeout 60 deno run -A --no-lock --cached-only bench/run.ts --sections decode \
  --models llama-2-7b --formats nf4 --decode-modes pipe8,auto --tokens 64 --out "$OUT/decode" \
  > "$OUT/decode.txt" 2>&1
echo "decode rc=$?" >> "$OUT/decode.txt"
