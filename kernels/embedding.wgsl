// Embedding lookup: out[r, :] = table[ids[r], :], the table FP16 [vocab, hidden] packed two per
// u32 (hidden even), out f32. One thread per output pair.
//
// A table larger than one storage binding is bound in chunks of rows: each dispatch sees rows
// [row_start, row_start + row_count) and fills only the outputs whose id falls there. Ids
// >= vocab read nothing and produce zeros, written by the dispatch with zero_oob = 1.

struct Params {
  rows: u32,
  half_hidden: u32,
  vocab: u32,
  row_start: u32,
  row_count: u32,
  zero_oob: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> ids: array<u32>;
@group(0) @binding(2) var<storage, read> table: array<u32>;
@group(0) @binding(3) var<storage, read_write> out: array<vec2<f32>>;

override WG: u32 = 256u;

@compute @workgroup_size(WG)
fn embedding(
  @builtin(global_invocation_id) gid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
) {
  let idx = gid.x + gid.y * nwg.x * WG;
  if (idx >= p.rows * p.half_hidden) {
    return;
  }
  let id = ids[idx / p.half_hidden];
  let j = idx % p.half_hidden;
  if (id >= p.vocab) {
    if (p.zero_oob != 0u) {
      out[idx] = vec2<f32>(0.0);
    }
    return;
  }
  let local = id - p.row_start; // wraps to a huge value below this chunk
  if (local < p.row_count) {
    out[idx] = unpack2x16float(table[local * p.half_hidden + j]);
  }
}
