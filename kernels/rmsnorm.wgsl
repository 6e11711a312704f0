// RMSNorm: out[r, :] = x[r, :] / sqrt(mean(x[r, :]²) + eps) * weight, one workgroup per row.
// x, weight and out are f32; out must not alias x (WebGPU forbids a buffer bound both
// read-only and writable in one dispatch).
//
// `add_rmsnorm` first adds a residual branch in place, x[r, :] += delta[r, :], then normalises
// the sum: the residual add that ends one half of a Llama block and the norm that starts the next
// in one dispatch. Each thread re-reads only the sums it wrote itself.
//
// `rmsnorm_inplace` normalises x itself (Qwen3's per-head q/k norm: rows of head_dim).
//
// `add_rmsnorm_q8` (one row) and `add_rmsnorm_q8_rows` (dim % 4 == 0) are add_rmsnorm, then the
// int8 activation codes of each output row for the int8 products that read it: row r's absmax to q8_absmax[r] and its codes, four per
// word, to row r of q8_codes (dim / 4 words a row), exactly as q_int8.wgsl's quantize_row (one
// row) and quantize_rows (each row alone) code the rows they read back (the same f32 values,
// absmax, scale127 and code_of). A decode step's and a verify pass's int8 layers then skip that
// dispatch.

struct Params {
  rows: u32,
  dim: u32,
  eps: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> weight: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
// add_rmsnorm: x is updated in place
@group(0) @binding(1) var<storage, read_write> x_rw: array<f32>;
@group(0) @binding(4) var<storage, read> delta: array<f32>;
// add_rmsnorm_q8
@group(0) @binding(5) var<storage, read_write> q8_absmax: array<f32>;
@group(0) @binding(6) var<storage, read_write> q8_codes: array<u32>;

#include "common/int8_code.wgsl"

override WG: u32 = 256u; // a power of two

var<workgroup> partial: array<f32, WG>;

@compute @workgroup_size(WG)
fn rmsnorm(
  @builtin(local_invocation_index) lid: u32,
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
) {
  let row = wid.x + wid.y * nwg.x;
  if (row >= p.rows) {
    return; // uniform for the workgroup
  }
  let base = row * p.dim;
  var s = 0.0;
  for (var i = lid; i < p.dim; i += WG) {
    let v = x[base + i];
    s += v * v;
  }
  let inv = inverse_rms(lid, s);
  for (var i = lid; i < p.dim; i += WG) {
    out[base + i] = x[base + i] * inv * weight[i];
  }
}

// 1 / sqrt(mean square + eps) of the row whose per-thread sums of squares are `s`.
fn inverse_rms(lid: u32, s: f32) -> f32 {
  partial[lid] = s;
  workgroupBarrier();
  for (var stride = WG / 2u; stride > 0u; stride >>= 1u) {
    if (lid < stride) {
      partial[lid] += partial[lid + stride];
    }
    workgroupBarrier();
  }
  // 1 / sqrt rather than inverseSqrt: the latter may be a low-precision approximation.
  return 1.0 / sqrt(partial[0] / f32(p.dim) + p.eps);
}

@compute @workgroup_size(WG)
fn add_rmsnorm(
  @builtin(local_invocation_index) lid: u32,
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
) {
  let row = wid.x + wid.y * nwg.x;
  if (row >= p.rows) {
    return; // uniform for the workgroup
  }
  add_norm_row(lid, row);
}

// add_rmsnorm_q8's short rows: the output staged here for packing four neighbours per word.
var<workgroup> row_s: array<f32, 4u * WG>;

// One row (a decode step): row 0, a constant the compiler folds into the addressing.
@compute @workgroup_size(WG)
fn add_rmsnorm_q8(@builtin(local_invocation_index) lid: u32) {
  add_norm_q8_row(lid, 0u);
}

// Several rows, each coded alone (a verify pass, a short prompt's pass): a workgroup per row.
@compute @workgroup_size(WG)
fn add_rmsnorm_q8_rows(
  @builtin(local_invocation_index) lid: u32,
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
) {
  let row = wid.x + wid.y * nwg.x;
  if (row >= p.rows) {
    return; // uniform for the workgroup
  }
  add_norm_q8_row(lid, row);
}

fn add_norm_q8_row(lid: u32, row: u32) {
  let words = p.dim / 4u;
  let cw = row * words; // the row's first word of codes
  if (p.dim <= 4u * WG) {
    // The output stays in registers: its absmax from them, its codes from workgroup memory.
    let o = add_norm_short_row(lid, row);
    // (zeros past the row: no effect on the absmax; written out, as add_norm_short_row's stores)
    row_s[lid] = o.x;
    row_s[lid + WG] = o.y;
    row_s[lid + 2u * WG] = o.z;
    row_s[lid + 3u * WG] = o.w;
    workgroupBarrier(); // also: inverse_rms's last read of `partial` is done
    let amax = max_of(lid, max(max(abs(o.x), abs(o.y)), max(abs(o.z), abs(o.w))));
    if (lid == 0u) {
      q8_absmax[row] = amax;
    }
    let s = scale127(amax);
    if (lid < words) {
      let v = vec4<f32>(row_s[4u * lid], row_s[4u * lid + 1u], row_s[4u * lid + 2u],
        row_s[4u * lid + 3u]);
      q8_codes[cw + lid] = codes4(v, s);
    }
    return;
  }
  add_norm_row(lid, row);
  // Every thread's writes of `out` are visible to the others, and inverse_rms's last read of
  // `partial` is done, before the absmax reuses it.
  storageBarrier();
  workgroupBarrier();
  let base = row * p.dim;
  var a = 0.0;
  for (var w = lid; w < words; w += WG) {
    let e = base + 4u * w;
    let v = abs(vec4<f32>(out[e], out[e + 1u], out[e + 2u], out[e + 3u]));
    a = max(a, max(max(v.x, v.y), max(v.z, v.w)));
  }
  let amax = max_of(lid, a);
  if (lid == 0u) {
    q8_absmax[row] = amax;
  }
  let s = scale127(amax);
  for (var w = lid; w < words; w += WG) {
    let e = base + 4u * w;
    let v = vec4<f32>(out[e], out[e + 1u], out[e + 2u], out[e + 3u]);
    q8_codes[cw + w] = codes4(v, s);
  }
}

// Four neighbouring outputs' int8 codes in one word (quantize_row's packing).
fn codes4(v: vec4<f32>, s: f32) -> u32 {
  return pack4xI8(vec4<i32>(code_of(v.x, s), code_of(v.y, s), code_of(v.z, s), code_of(v.w, s)));
}

// The largest of the workgroup's values `a`, one per thread (the caller has finished with
// `partial`).
fn max_of(lid: u32, a: f32) -> f32 {
  partial[lid] = a;
  workgroupBarrier();
  for (var stride = WG / 2u; stride > 0u; stride >>= 1u) {
    if (lid < stride) {
      partial[lid] = max(partial[lid], partial[lid + stride]);
    }
    workgroupBarrier();
  }
  return partial[0];
}

// add_rmsnorm of one row.
fn add_norm_row(lid: u32, row: u32) {
  if (p.dim <= 4u * WG) {
    _ = add_norm_short_row(lid, row);
    return;
  }
  let base = row * p.dim;
  // Four elements per step, their loads issued together: a row of 4096 is 16 elements per
  // thread, and one load in flight at a time made this one-workgroup kernel latency-bound.
  var s = vec4<f32>(0.0);
  var i = lid;
  for (; i + 3u * WG < p.dim; i += 4u * WG) {
    let a = x_rw[base + i] + delta[base + i];
    let b = x_rw[base + i + WG] + delta[base + i + WG];
    let c = x_rw[base + i + 2u * WG] + delta[base + i + 2u * WG];
    let d = x_rw[base + i + 3u * WG] + delta[base + i + 3u * WG];
    x_rw[base + i] = a;
    x_rw[base + i + WG] = b;
    x_rw[base + i + 2u * WG] = c;
    x_rw[base + i + 3u * WG] = d;
    s += vec4<f32>(a, b, c, d) * vec4<f32>(a, b, c, d);
  }
  for (; i < p.dim; i += WG) {
    let v = x_rw[base + i] + delta[base + i];
    x_rw[base + i] = v;
    s.x += v * v;
  }
  let inv = inverse_rms(lid, (s.x + s.y) + (s.z + s.w));
  i = lid;
  for (; i + 3u * WG < p.dim; i += 4u * WG) {
    let a = x_rw[base + i] * inv * weight[i];
    let b = x_rw[base + i + WG] * inv * weight[i + WG];
    let c = x_rw[base + i + 2u * WG] * inv * weight[i + 2u * WG];
    let d = x_rw[base + i + 3u * WG] * inv * weight[i + 3u * WG];
    out[base + i] = a;
    out[base + i + WG] = b;
    out[base + i + 2u * WG] = c;
    out[base + i + 3u * WG] = d;
  }
  for (; i < p.dim; i += WG) {
    out[base + i] = x_rw[base + i] * inv * weight[i];
  }
}

// add_rmsnorm of a row of at most 4 · WG elements: a thread's (up to) four elements, their x,
// delta and weight loaded at once and kept in registers through the reduction, so that the
// kernel waits on one round of loads rather than one per step of four (then a re-read of x).
// Sums in the same order as add_norm_row's loop, which takes one step at these widths. The stores
// are written out per component: as loops over the components they measured slower on the H200.
// Returns this thread's outputs, elements lid + c · WG (zeros past the row).
fn add_norm_short_row(lid: u32, row: u32) -> vec4<f32> {
  let base = row * p.dim;
  let i = vec4<u32>(lid, lid + WG, lid + 2u * WG, lid + 3u * WG);
  let inside = i < vec4<u32>(p.dim);
  let j = select(vec4<u32>(0u), i, inside); // a valid index where the element is past the row
  let xv = vec4<f32>(x_rw[base + j.x], x_rw[base + j.y], x_rw[base + j.z], x_rw[base + j.w]);
  let dv = vec4<f32>(delta[base + j.x], delta[base + j.y], delta[base + j.z], delta[base + j.w]);
  let wv = vec4<f32>(weight[j.x], weight[j.y], weight[j.z], weight[j.w]);
  let v = select(vec4<f32>(0.0), xv + dv, inside);
  if (inside.x) {
    x_rw[base + i.x] = v.x;
  }
  if (inside.y) {
    x_rw[base + i.y] = v.y;
  }
  if (inside.z) {
    x_rw[base + i.z] = v.z;
  }
  if (inside.w) {
    x_rw[base + i.w] = v.w;
  }
  let sq = v * v;
  let inv = inverse_rms(lid, (sq.x + sq.y) + (sq.z + sq.w));
  let o = v * inv * wv;
  if (inside.x) {
    out[base + i.x] = o.x;
  }
  if (inside.y) {
    out[base + i.y] = o.y;
  }
  if (inside.z) {
    out[base + i.z] = o.z;
  }
  if (inside.w) {
    out[base + i.w] = o.w;
  }
  return select(vec4<f32>(0.0), o, inside);
}

@compute @workgroup_size(WG)
fn rmsnorm_inplace(
  @builtin(local_invocation_index) lid: u32,
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
) {
  let row = wid.x + wid.y * nwg.x;
  if (row >= p.rows) {
    return; // uniform for the workgroup
  }
  let base = row * p.dim;
  var s = 0.0;
  for (var i = lid; i < p.dim; i += WG) {
    let v = x_rw[base + i];
    s += v * v;
  }
  // Each thread rewrites only the elements it read; inverse_rms's barriers order the reads
  // before every write.
  let inv = inverse_rms(lid, s);
  for (var i = lid; i < p.dim; i += WG) {
    x_rw[base + i] = x_rw[base + i] * inv * weight[i];
  }
}
