#!/usr/bin/env bash
# bench:streaming on a GPU machine in groups of cases, each in its own process under its own time
# limit (a stuck case cannot take the others with it), each group's log and JSON written as it
# goes to $OUT (default bench/out).
#
#   bash bench/streaming_groups.sh              # all groups, 40 s each
#   LIMIT=45 bash bench/streaming_groups.sh rest # one group
set -u
out=${OUT:-bench/out}
limit=${LIMIT:-40}
mkdir -p "$out"
group() {
  local name=$1 cases=$2
  timeout -k 5 $((limit + 20)) deno run -A --no-lock bench/streaming.ts --out "/tmp/$name" \
    --time-limit "$limit" --cases "$cases" 2>&1 | tee "$out/$name.log"
  cp "/tmp/$name/streaming.json" "$out/$name.json" 2>/dev/null
}
m=llama-2-7b
want=${1:-all}
[ "$want" = all ] || [ "$want" = fp16 ] &&
  group streaming-fp16 "$m:fp16:resident,$m:fp16:8GiB,$m:fp16:4GiB"
[ "$want" = all ] || [ "$want" = main ] &&
  group streaming-int8-nf4-q8 "$m:int8-vectorwise:resident,$m:int8-vectorwise:4GiB,$m:nf4:resident,$m:nf4:2GiB,$m:q8_0:resident,$m:q8_0:4GiB"
[ "$want" = all ] || [ "$want" = others ] &&
  group streaming-others "$m:nf4-dq:resident,$m:nf4-dq:2GiB,$m:llm-int8:resident,$m:llm-int8:4GiB,$m:int4:resident,$m:int4:2GiB,$m:fp4:resident,$m:fp4:2GiB,$m:int8-absmax:resident,$m:int8-absmax:4GiB,llama-3-8b:nf4:resident,llama-3-8b:nf4:3GiB"
# what the runs of 2026-12-02 left out, fp16 at 4 GiB last
[ "$want" = rest ] &&
  group streaming-rest "$m:int4:resident,$m:int4:2GiB,$m:fp4:resident,$m:fp4:2GiB,$m:int8-absmax:resident,$m:int8-absmax:4GiB,llama-3-8b:nf4:resident,llama-3-8b:nf4:3GiB,$m:fp16:resident,$m:fp16:4GiB"
exit 0
