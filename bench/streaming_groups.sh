#!/usr/bin/env bash
# bench:streaming on a GPU machine in three groups of cases, each in its own process under its
# own time limit (a stuck case cannot take the others with it), each group's log and JSON
# written as it goes to $OUT (default bench/out): fp16, then int8-vectorwise/nf4/q8_0, then the
# other formats and Llama-3-8B.
#
#   bash bench/streaming_groups.sh            # OUT=bench/out
#   LIMIT=40 bash bench/streaming_groups.sh   # seconds per group before no new phase starts
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
group streaming-fp16 "$m:fp16:resident,$m:fp16:8GiB,$m:fp16:4GiB"
group streaming-int8-nf4-q8 "$m:int8-vectorwise:resident,$m:int8-vectorwise:4GiB,$m:nf4:resident,$m:nf4:2GiB,$m:q8_0:resident,$m:q8_0:4GiB"
group streaming-others "$m:nf4-dq:resident,$m:nf4-dq:2GiB,$m:llm-int8:resident,$m:llm-int8:4GiB,$m:int4:resident,$m:int4:2GiB,$m:fp4:resident,$m:fp4:2GiB,$m:int8-absmax:resident,$m:int8-absmax:4GiB,llama-3-8b:nf4:resident,llama-3-8b:nf4:3GiB"
