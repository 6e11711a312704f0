// RMSNorm: out[r, :] = x[r, :] / sqrt(mean(x[r, :]²) + eps) * weight, one workgroup per row.
// x, weight and out are f32; out must not alias x (WebGPU forbids a buffer bound both
// read-only and writable in one dispatch).

struct Params {
  rows: u32,
  dim: u32,
  eps: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> weight: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

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
  partial[lid] = s;
  workgroupBarrier();
  for (var stride = WG / 2u; stride > 0u; stride >>= 1u) {
    if (lid < stride) {
      partial[lid] += partial[lid + stride];
    }
    workgroupBarrier();
  }
  // 1 / sqrt rather than inverseSqrt: the latter may be a low-precision approximation.
  let inv = 1.0 / sqrt(partial[0] / f32(p.dim) + p.eps);
  for (var i = lid; i < p.dim; i += WG) {
    out[base + i] = x[base + i] * inv * weight[i];
  }
}
