// The acceptance step of greedy speculative decoding, for rounds chained on the GPU: nothing
// goes back to the CPU between rounds, so this kernel does on the GPU what the CPU loop does
// after a verify pass (lib/kernels/speculative.ts has the CPU twin).
//
// Before it runs: target_ids = [last, d_1 .. d_k] (the verify pass's input: the newest token and
// the draft's proposals), best = the target's argmax after each of them. It keeps d_i while
// d_i == best[i - 1] (or, `forced` < FREE, the first `forced` proposals whatever they are: a
// benchmark's simulated acceptance), takes next = best[kept], and
//   - writes the round's record at word `slot` of `record`: kept, d_1 .. d_kept, next;
//   - leaves the next round's inputs: target_ids[0] = next; draft_ids = [the token before next,
//     next] (the draft re-feeds the token before next at its own position, so that its first
//     step has two rows whether or not every proposal was kept);
//   - advances the target's position by 1 + kept, and sets the draft's to one less.
// One thread: k ≤ 7, and the round's other kernels are far larger.

struct Params {
  k: u32,
  slot: u32,
  forced: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> target_ids: array<u32>;
@group(0) @binding(2) var<storage, read> best: array<u32>;
@group(0) @binding(3) var<storage, read_write> draft_ids: array<u32>;
@group(0) @binding(4) var<storage, read_write> target_pos: array<u32>;
@group(0) @binding(5) var<storage, read_write> draft_pos: array<u32>;
@group(0) @binding(6) var<storage, read_write> record: array<u32>;

const FREE: u32 = 0xffffffffu;

@compute @workgroup_size(1)
fn accept() {
  var kept = 0u;
  if (p.forced == FREE) {
    while (kept < p.k && target_ids[kept + 1u] == best[kept]) {
      kept++;
    }
  } else {
    kept = min(p.forced, p.k);
  }
  let next = best[kept];
  record[p.slot] = kept;
  for (var i = 1u; i <= kept; i++) {
    record[p.slot + i] = target_ids[i];
  }
  record[p.slot + kept + 1u] = next;
  draft_ids[0] = target_ids[kept];
  draft_ids[1] = next;
  target_ids[0] = next;
  let pos = target_pos[0] + 1u + kept;
  target_pos[0] = pos;
  draft_pos[0] = pos - 1u;
}
