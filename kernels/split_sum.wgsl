// split_sum: y[i] = part[i] + part[count + i] + ... + part[(splits - 1) · count + i], the copies
// of a product that gemm_outer split across workgroups (each summed a share of K), added in
// order. CPU twin: cpuSplitSum (lib/kernels/gemm_spread.ts).

struct Params {
  count: u32,  // values in one copy (rows · N)
  splits: u32, // copies
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> part: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;

@compute @workgroup_size(256)
fn main(
  @builtin(global_invocation_id) gid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
) {
  let i = gid.x + gid.y * nwg.x * 256u;
  if (i >= p.count) {
    return;
  }
  var s = part[i];
  for (var j = 1u; j < p.splits; j++) {
    s += part[j * p.count + i];
  }
  y[i] = s;
}
