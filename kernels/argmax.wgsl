// Argmax over the last axis: logits f32 [rows, n] -> u32 [rows], the first index of the
// largest value (numpy/torch semantics), or 0xffffffff for a row holding a NaN or an infinity.
// Float comparisons cannot see NaN (WGSL lets compilers assume finite math), so the test is on
// the exponent bits. One workgroup per row.

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
var<workgroup> nonfinite: atomic<u32>; // zero at the start of each workgroup

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
  var bad = 0u;
  for (var i = lid; i < p.n; i += WG) {
    let v = logits[base + i];
    bad |= u32((bitcast<u32>(v) & 0x7f800000u) == 0x7f800000u);
    // Indices rise within a thread, so strict > keeps the first of equal values.
    if (bi == NONE || v > bv) {
      bv = v;
      bi = i;
    }
  }
  best_v[lid] = bv;
  best_i[lid] = bi;
  if (bad != 0u) {
    atomicStore(&nonfinite, 1u);
  }
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
    out[row] = select(best_i[0], NONE, atomicLoad(&nonfinite) != 0u);
  }
}
