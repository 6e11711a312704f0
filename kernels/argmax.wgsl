// Argmax over the last axis: logits f32 [rows, n] -> u32 [rows], the first index of the
// largest value (numpy/torch semantics without NaN: a NaN logit gives an unspecified index,
// since WGSL lets compilers assume finite math). One workgroup per row.

struct Params {
  rows: u32,
  n: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> logits: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<u32>;

override WG: u32 = 256u; // a power of two

const NONE: u32 = 0xffffffffu;

var<workgroup> best_v: array<f32, WG>;
var<workgroup> best_i: array<u32, WG>;

// Whether candidate (v, i) beats (bv, bi): larger, or equal with a smaller index; an empty
// candidate never wins, anything beats an empty slot.
fn beats(v: f32, i: u32, bv: f32, bi: u32) -> bool {
  return i != NONE && (bi == NONE || v > bv || (v == bv && i < bi));
}

@compute @workgroup_size(WG)
fn argmax(
  @builtin(local_invocation_index) lid: u32,
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
) {
  let row = wid.x + wid.y * nwg.x;
  if (row >= p.rows) {
    return; // uniform for the workgroup
  }
  let base = row * p.n;
  var bv = 0.0;
  var bi = NONE;
  for (var i = lid; i < p.n; i += WG) {
    let v = logits[base + i];
    // Indices rise within a thread, so strict > keeps the first of equal values.
    if (bi == NONE || v > bv) {
      bv = v;
      bi = i;
    }
  }
  best_v[lid] = bv;
  best_i[lid] = bi;
  workgroupBarrier();
  for (var stride = WG / 2u; stride > 0u; stride >>= 1u) {
    if (lid < stride) {
      let j = lid + stride;
      if (beats(best_v[j], best_i[j], best_v[lid], best_i[lid])) {
        best_v[lid] = best_v[j];
        best_i[lid] = best_i[j];
      }
    }
    workgroupBarrier();
  }
  if (lid == 0u) {
    out[row] = best_i[0];
  }
}
