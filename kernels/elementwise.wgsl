// Elementwise kernels on f32 activations: residual add, bias add and SwiGLU.

struct Params {
  n: u32,
  width: u32, // add_bias: the bias length (row width of a)
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;

override WG: u32 = 256u;

fn flat_index(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
  return gid.x + gid.y * nwg.x * WG;
}

// a += b: the residual connection.
@compute @workgroup_size(WG)
fn add(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = flat_index(gid, nwg);
  if (i < p.n) {
    a[i] = a[i] + b[i];
  }
}

// a[r, :] += b: a linear layer's bias (b has `width` values) added to each row of its output.
@compute @workgroup_size(WG)
fn add_bias(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = flat_index(gid, nwg);
  if (i < p.n) {
    a[i] = a[i] + b[i % p.width];
  }
}

// a = silu(a) * b, with a holding gate_proj(x) and b up_proj(x).
@compute @workgroup_size(WG)
fn swiglu(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = flat_index(gid, nwg);
  if (i < p.n) {
    let g = a[i];
    a[i] = g / (1.0 + exp(-g)) * b[i];
  }
}
