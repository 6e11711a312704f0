// Rotary position embedding, in place on x [rows, heads, head_dim] (f32), Hugging Face Llama
// "rotate half" convention: for i < head_dim / 2 the pair (x[i], x[i + head_dim/2]) turns by
// angle (start_pos + row) * inv_freq[i]. One thread per pair.

struct Params {
  rows: u32,
  heads: u32,
  half_dim: u32, // head_dim / 2
  start_pos: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> x: array<f32>;
@group(0) @binding(2) var<storage, read> inv_freq: array<f32>;

override WG: u32 = 256u;

// Two-part 2π (Cody-Waite). TWO_PI_HI has 8 significant bits, so k * TWO_PI_HI is exact for
// k < 2^16, i.e. angles below ~411,000 rad (positions up to 411k at inv_freq 1).
const TWO_PI_HI: f32 = 6.28125;
const TWO_PI_LO: f32 = 0.0019353071795864769;
const INV_TWO_PI: f32 = 0.15915494309189535;

@compute @workgroup_size(WG)
fn rope(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let idx = gid.x + gid.y * nwg.x * WG;
  if (idx >= p.rows * p.heads * p.half_dim) {
    return;
  }
  let i = idx % p.half_dim;
  let row_head = idx / p.half_dim;
  let row = row_head / p.heads;
  // The angle is one f32 product, as in Hugging Face (inv_freq @ position_ids in f32).
  let angle = f32(p.start_pos + row) * inv_freq[i];
  // sin/cos are only accurate near [-π, π] (Vulkan guarantees nothing beyond): reduce first.
  let k = round(angle * INV_TWO_PI);
  let r = (angle - k * TWO_PI_HI) - k * TWO_PI_LO;
  let c = cos(r);
  let s = sin(r);
  let lo = row_head * 2u * p.half_dim + i;
  let hi = lo + p.half_dim;
  let a = x[lo];
  let b = x[hi];
  x[lo] = a * c - b * s;
  x[hi] = b * c + a * s;
}
