// Rotary position embedding, in place on x [rows, heads, head_dim] (f32), Hugging Face Llama
// "rotate half" convention: for i < head_dim / 2 the pair (x[i], x[i + head_dim/2]) turns by
// angle (start_pos + row) * inv_freq[i]. One thread per pair. `rope_qk` turns queries and keys
// (heads_k heads per row, in x2) in one dispatch: threads past the queries' pairs take the keys'.

struct Params {
  rows: u32,
  heads: u32,
  half_dim: u32, // head_dim / 2
  start_pos: u32,
  heads_k: u32, // rope_qk: heads per row of x2
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> x: array<f32>;
@group(0) @binding(2) var<storage, read> inv_freq: array<f32>;
@group(0) @binding(3) var<storage, read_write> x2: array<f32>;

override WG: u32 = 256u;

// Two-part 2π (Cody-Waite). TWO_PI_HI has 8 significant bits, so k * TWO_PI_HI is exact for
// k < 2^16, i.e. angles below ~411,000 rad (positions up to 411k at inv_freq 1).
const TWO_PI_HI: f32 = 6.28125;
const TWO_PI_LO: f32 = 0.0019353071795864769;
const INV_TWO_PI: f32 = 0.15915494309189535;

// The rotation of pair i of a head at position pos: (cos, sin) of the reduced angle.
fn turn(pos: u32, i: u32) -> vec2<f32> {
  // The angle is one f32 product, as in Hugging Face (inv_freq @ position_ids in f32).
  let angle = f32(pos) * inv_freq[i];
  // sin/cos are only accurate near [-π, π] (Vulkan guarantees nothing beyond): reduce first.
  let k = round(angle * INV_TWO_PI);
  let r = (angle - k * TWO_PI_HI) - k * TWO_PI_LO;
  return vec2<f32>(cos(r), sin(r));
}

// Pair `idx` of a [rows, heads, head_dim] tensor: the indices of its two halves and its angle.
struct Pair {
  lo: u32,
  hi: u32,
  cs: vec2<f32>,
}

fn pair(idx: u32, heads: u32) -> Pair {
  let i = idx % p.half_dim;
  let row_head = idx / p.half_dim;
  let lo = row_head * 2u * p.half_dim + i;
  return Pair(lo, lo + p.half_dim, turn(p.start_pos + row_head / heads, i));
}

// (a, b) rotated by the angle whose cosine and sine are cs.
fn rotate(a: f32, b: f32, cs: vec2<f32>) -> vec2<f32> {
  return vec2<f32>(a * cs.x - b * cs.y, b * cs.x + a * cs.y);
}

@compute @workgroup_size(WG)
fn rope(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let idx = gid.x + gid.y * nwg.x * WG;
  if (idx >= p.rows * p.heads * p.half_dim) {
    return;
  }
  let q = pair(idx, p.heads);
  let r = rotate(x[q.lo], x[q.hi], q.cs);
  x[q.lo] = r.x;
  x[q.hi] = r.y;
}

// Queries (x) and keys (x2) in one dispatch: the first rows·heads·half_dim invocations rotate
// queries, the next rows·heads_k·half_dim keys.
@compute @workgroup_size(WG)
fn rope_qk(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let idx = gid.x + gid.y * nwg.x * WG;
  let q_pairs = p.rows * p.heads * p.half_dim;
  if (idx < q_pairs) {
    let q = pair(idx, p.heads);
    let r = rotate(x[q.lo], x[q.hi], q.cs);
    x[q.lo] = r.x;
    x[q.hi] = r.y;
    return;
  }
  let kdx = idx - q_pairs;
  if (kdx >= p.rows * p.heads_k * p.half_dim) {
    return;
  }
  let k = pair(kdx, p.heads_k);
  let r = rotate(x2[k.lo], x2[k.hi], k.cs);
  x2[k.lo] = r.x;
  x2[k.hi] = r.y;
}
