// Rotary position embedding, in place on x [rows, heads, head_dim] (f32), Hugging Face Llama
// "rotate half" convention: for i < head_dim / 2 the pair (x[i], x[i + head_dim/2]) turns by
// angle (start_pos + row) * inv_freq[i]. One thread per pair. `rope_qk` turns queries and keys
// (heads_k heads per row, in x2) in one dispatch: threads past the queries' pairs take the keys'.
// `rope_qk_cache` turns the queries in place and stores the turned keys and the values straight
// into a layer's f16 KV cache (attention.wgsl's layout: [max_seq, heads_k, head_dim], two f16
// per u32, element 2j in the low half) at positions start_pos .., so a decode step needs one
// dispatch between the q/k/v products and attention instead of two.
// `rope_qk_cache_q` does the same for a quantized cache (defines KV8 or KV4, and KROT to turn
// keys by a Hadamard matrix per group of 32 first; lib/kernels/kv_cache.ts has the layout and
// the CPU twin): one thread per (row, kv head, UNIT groups of 32) quantizes its keys and values
// and writes their codes and scales.

struct Params {
  rows: u32,
  heads: u32,
  half_dim: u32, // head_dim / 2
  start_pos: u32,
  heads_k: u32, // rope_qk: heads per row of x2
  scale_word: u32, // rope_qk_cache_q: the word where the cache's scales begin
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> x: array<f32>;
@group(0) @binding(2) var<storage, read> inv_freq: array<f32>;
@group(0) @binding(3) var<storage, read_write> x2: array<f32>;
// rope_qk_cache: x2 holds the keys (read only), then
@group(0) @binding(4) var<storage, read> v_in: array<vec2<f32>>;
@group(0) @binding(5) var<storage, read_write> k_cache: array<u32>;
@group(0) @binding(6) var<storage, read_write> v_cache: array<u32>;

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

// Turns pair `idx` of x ([rows, heads, head_dim]) in place.
fn turn_x(idx: u32, heads: u32) {
  let q = pair(idx, heads);
  let r = rotate(x[q.lo], x[q.hi], q.cs);
  x[q.lo] = r.x;
  x[q.hi] = r.y;
}

@compute @workgroup_size(WG)
fn rope(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let idx = gid.x + gid.y * nwg.x * WG;
  if (idx >= p.rows * p.heads * p.half_dim) {
    return;
  }
  turn_x(idx, p.heads);
}

// Queries (x) and keys (x2) in one dispatch: the first rows·heads·half_dim invocations rotate
// queries, the next rows·heads_k·half_dim keys.
@compute @workgroup_size(WG)
fn rope_qk(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let idx = gid.x + gid.y * nwg.x * WG;
  let q_pairs = p.rows * p.heads * p.half_dim;
  if (idx < q_pairs) {
    turn_x(idx, p.heads);
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

// Element e of a key head at position pos after the turn (the lo or hi half of its pair, with the
// same products as `rotate`).
fn turned_key(head_base: u32, e: u32, pos: u32) -> f32 {
  let i = e % p.half_dim;
  let cs = turn(pos, i);
  let a = x2[head_base + i];
  let b = x2[head_base + i + p.half_dim];
  let r = rotate(a, b, cs);
  return select(r.x, r.y, e >= p.half_dim);
}

// Queries in place as in rope_qk; then one thread per cache word (two neighbouring elements of
// a key head and of a value head): rows · heads_k · half_dim words, the same thread count as the
// keys' pairs.
@compute @workgroup_size(WG)
fn rope_qk_cache(
  @builtin(global_invocation_id) gid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
) {
  let idx = gid.x + gid.y * nwg.x * WG;
  let q_pairs = p.rows * p.heads * p.half_dim;
  if (idx < q_pairs) {
    turn_x(idx, p.heads);
    return;
  }
  let w = idx - q_pairs; // word index within the new rows' [rows, heads_k, half_dim] words
  if (w >= p.rows * p.heads_k * p.half_dim) {
    return;
  }
  let row_head = w / p.half_dim;
  let e = 2u * (w % p.half_dim); // first of the word's two elements in its head
  let pos = p.start_pos + row_head / p.heads_k;
  let head_base = row_head * 2u * p.half_dim;
  let k0 = turned_key(head_base, e, pos);
  let k1 = turned_key(head_base, e + 1u, pos);
  let dst = p.start_pos * p.heads_k * p.half_dim + w;
  k_cache[dst] = pack2x16float(vec2<f32>(k0, k1));
  v_cache[dst] = pack2x16float(v_in[w]);
}

#if KVQ
// rope_qk_cache_q: one thread per element; a workgroup holds whole heads (HEAD_DIM divides WG,
// since queries turn in place and a thread reads its pair's other half before anyone writes), and
// a group of 32 elements is 32 neighbouring threads. Workgroups [0, q_wgs) take the queries'
// elements, the rest the keys' and values'. Each thread turns its element into workgroup memory;
// after one barrier every thread reads its whole group back (eight vec4, the same words for the
// group's threads) and does the rest in registers, with no further exchange: the Hadamard turn of
// the group (KROT: queries as well as keys, so q · k is unchanged), the group's scale (and
// offset), and, every 4th (int8) or 8th (int4) thread, a word of codes. Int8's two f16 scales of
// a word come from two groups: one more barrier. Passing partial results through workgroup memory
// at every butterfly stage and reduction step instead (16 barriers) made the chain of dependent
// steps, not the bytes, this dispatch's time at decode.
const GROUP: u32 = 32u;
const INV_SQRT_GROUP: f32 = 0.17677669529663687; // 1 / sqrt(32)

var<workgroup> kx: array<vec4<f32>, WG / 4u>; // the workgroup's queries or keys
var<workgroup> vx: array<vec4<f32>, WG / 4u>; // its values
#if KV8
var<workgroup> gscale: array<vec2<f32>, WG / GROUP>; // per group: (key scale, value scale)
#endif

// A group of 32 in registers, element 4m + c in v<m>[c]: eight named vectors rather than an
// array, so that nothing is indexed at run time and the group stays in registers.
struct Group {
  v0: vec4<f32>,
  v1: vec4<f32>,
  v2: vec4<f32>,
  v3: vec4<f32>,
  v4: vec4<f32>,
  v5: vec4<f32>,
  v6: vec4<f32>,
  v7: vec4<f32>,
}

fn keys_of_group(g4: u32) -> Group {
  return Group(
    kx[g4],
    kx[g4 + 1u],
    kx[g4 + 2u],
    kx[g4 + 3u],
    kx[g4 + 4u],
    kx[g4 + 5u],
    kx[g4 + 6u],
    kx[g4 + 7u],
  );
}

fn values_of_group(g4: u32) -> Group {
  return Group(
    vx[g4],
    vx[g4 + 1u],
    vx[g4 + 2u],
    vx[g4 + 3u],
    vx[g4 + 4u],
    vx[g4 + 5u],
    vx[g4 + 6u],
    vx[g4 + 7u],
  );
}

// Butterfly stages 1 and 2 inside one vector: (a + b, a - b) on pairs 1 apart, then 2 apart.
fn h4(v: vec4<f32>) -> vec4<f32> {
  let u = vec4<f32>(v.x + v.y, v.x - v.y, v.z + v.w, v.z - v.w);
  return vec4<f32>(u.x + u.z, u.y + u.w, u.x - u.z, u.y - u.w);
}

// The group turned by the orthonormal 32×32 Hadamard matrix: the butterfly stages of
// lib/kernels/kv_cache.ts's hadamard32 in its order (stages 4, 8, 16 pair whole vectors), so
// every sum is the twin's.
fn hadamard(g: Group) -> Group {
  let a0 = h4(g.v0);
  let a1 = h4(g.v1);
  let a2 = h4(g.v2);
  let a3 = h4(g.v3);
  let a4 = h4(g.v4);
  let a5 = h4(g.v5);
  let a6 = h4(g.v6);
  let a7 = h4(g.v7);
  let b0 = a0 + a1;
  let b1 = a0 - a1;
  let b2 = a2 + a3;
  let b3 = a2 - a3;
  let b4 = a4 + a5;
  let b5 = a4 - a5;
  let b6 = a6 + a7;
  let b7 = a6 - a7;
  let c0 = b0 + b2;
  let c1 = b1 + b3;
  let c2 = b0 - b2;
  let c3 = b1 - b3;
  let c4 = b4 + b6;
  let c5 = b5 + b7;
  let c6 = b4 - b6;
  let c7 = b5 - b7;
  let s = INV_SQRT_GROUP;
  return Group(
    (c0 + c4) * s,
    (c1 + c5) * s,
    (c2 + c6) * s,
    (c3 + c7) * s,
    (c0 - c4) * s,
    (c1 - c5) * s,
    (c2 - c6) * s,
    (c3 - c7) * s,
  );
}

// Vector m (elements 4m ..) of a group, m < 8, by selects: no run-time index into registers.
fn pick(g: Group, m: u32) -> vec4<f32> {
  let odd = (m & 1u) != 0u;
  let a = select(g.v0, g.v1, odd);
  let b = select(g.v2, g.v3, odd);
  let c = select(g.v4, g.v5, odd);
  let d = select(g.v6, g.v7, odd);
  let e = select(a, b, (m & 2u) != 0u);
  let f = select(c, d, (m & 2u) != 0u);
  return select(e, f, (m & 4u) != 0u);
}

fn group_max(g: Group) -> f32 {
  let m = max(max(max(g.v0, g.v1), max(g.v2, g.v3)), max(max(g.v4, g.v5), max(g.v6, g.v7)));
  return max(max(m.x, m.y), max(m.z, m.w));
}

fn group_min(g: Group) -> f32 {
  let m = min(min(min(g.v0, g.v1), min(g.v2, g.v3)), min(min(g.v4, g.v5), min(g.v6, g.v7)));
  return min(min(m.x, m.y), min(m.z, m.w));
}

fn group_absmax(g: Group) -> f32 {
  let m = max(
    max(max(abs(g.v0), abs(g.v1)), max(abs(g.v2), abs(g.v3))),
    max(max(abs(g.v4), abs(g.v5)), max(abs(g.v6), abs(g.v7))),
  );
  return max(max(m.x, m.y), max(m.z, m.w));
}

fn to_f16(v: f32) -> f32 {
  return unpack2x16float(pack2x16float(vec2<f32>(v, 0.0))).x;
}

// (scale, offset) of a group: int8 from its absmax, int4 from its max and min.
fn group_scale(g: Group) -> vec2<f32> {
#if KV8
  return vec2<f32>(to_f16(group_absmax(g) / 127.0), 0.0);
#else
  let hi = group_max(g);
  let lo = group_min(g);
  return vec2<f32>(to_f16((hi - lo) / 15.0), to_f16(lo));
#endif
}

// The codes of four values under (scale, offset) so.
fn codes4(v: vec4<f32>, so: vec2<f32>) -> vec4<i32> {
  let inv = select(0.0, 1.0 / so.x, so.x > 0.0);
#if KV8
  return vec4<i32>(clamp(round(v * inv), vec4<f32>(-127.0), vec4<f32>(127.0)));
#else
  return vec4<i32>(clamp(round((v - so.y) * inv), vec4<f32>(0.0), vec4<f32>(15.0)));
#endif
}

// The word of codes starting at element `lane` of the group (int8: 4 codes; int4: 8, elements
// lane + b in the low nibble of byte b and lane + 4 + b in its high nibble).
fn code_word(g: Group, lane: u32, so: vec2<f32>) -> u32 {
#if KV8
  return pack4xI8(codes4(pick(g, lane / 4u), so));
#else
  let lo = vec4<u32>(codes4(pick(g, lane / 4u), so));
  let hi = vec4<u32>(codes4(pick(g, lane / 4u + 1u), so));
  let c = lo | (hi << vec4<u32>(4u));
  return c.x | (c.y << 8u) | (c.z << 16u) | (c.w << 24u);
#endif
}

@compute @workgroup_size(WG)
fn rope_qk_cache_q(
  @builtin(local_invocation_index) lid: u32,
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
) {
  let w = wid.x + wid.y * nwg.x;
  let hd = 2u * p.half_dim;
  let q_n = p.rows * p.heads * hd;
  let q_wgs = (q_n + WG - 1u) / WG;
  let kv_n = p.rows * p.heads_k * hd;
  if (w >= q_wgs + (kv_n + WG - 1u) / WG) {
    return; // a whole workgroup past the end (grid padding)
  }
  let is_q = w < q_wgs;
  let n = select(kv_n, q_n, is_q);
  let heads = select(p.heads_k, p.heads, is_q);
  let e = select(w - q_wgs, w, is_q) * WG + lid; // element of [rows, heads, hd]
  let live = e < n; // a group (of 32, and int8's pair of groups) is live or dead as a whole
  let ee = min(e, n - 1u);
  let i = ee % hd;
  let row_head = ee / hd;
  let j = i % p.half_dim;
  let lo_at = row_head * hd + j;
  let cs = turn(p.start_pos + row_head / heads, j);
  var r: vec2<f32>;
  if (is_q) {
    r = rotate(x[lo_at], x[lo_at + p.half_dim], cs);
  } else {
    r = rotate(x2[lo_at], x2[lo_at + p.half_dim], cs);
    vx[lid / 4u][lid % 4u] = v_in[ee / 2u][ee % 2u];
  }
  let mine = select(r.x, r.y, i >= p.half_dim);
  kx[lid / 4u][lid % 4u] = mine;
  workgroupBarrier(); // queries: every read of x before the first write
#if !KROT
  if (is_q) {
    if (live) {
      x[e] = mine;
    }
    return;
  }
#endif
  let lane = lid % GROUP;
  let g4 = (lid - lane) / 4u; // the group's first vector in kx, vx
#if KROT
  let kg = hadamard(keys_of_group(g4));
  if (is_q) {
    if (live) {
      let v = pick(kg, lane / 4u);
      let c = lane % 4u;
      x[e] = select(select(v.x, v.y, c == 1u), select(v.z, v.w, c == 3u), c >= 2u);
    }
    return;
  }
#else
  let kg = keys_of_group(g4);
#endif
  let vg = values_of_group(g4);
  let ks = group_scale(kg);
  let vs = group_scale(vg);
  let ce = p.start_pos * p.heads_k * hd + e; // element index in the cache
#if KV8
  if (live && ce % 4u == 0u) {
    k_cache[ce / 4u] = code_word(kg, lane, ks);
    v_cache[ce / 4u] = code_word(vg, lane, vs);
  }
  if (lane == 0u) {
    gscale[lid / GROUP] = vec2<f32>(ks.x, vs.x);
  }
  workgroupBarrier();
  if (live && ce % (2u * GROUP) == 0u) {
    // this group's scale and the next one's, in one word
    let next = gscale[lid / GROUP + 1u];
    k_cache[p.scale_word + ce / (2u * GROUP)] = pack2x16float(vec2<f32>(ks.x, next.x));
    v_cache[p.scale_word + ce / (2u * GROUP)] = pack2x16float(vec2<f32>(vs.x, next.y));
  }
#else
  if (live && ce % 8u == 0u) {
    k_cache[ce / 8u] = code_word(kg, lane, ks);
    v_cache[ce / 8u] = code_word(vg, lane, vs);
  }
  if (live && ce % GROUP == 0u) {
    k_cache[p.scale_word + ce / GROUP] = pack2x16float(ks);
    v_cache[p.scale_word + ce / GROUP] = pack2x16float(vs);
  }
#endif
}
#endif
