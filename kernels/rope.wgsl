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
// Both cache forms start at start_pos + pos_base[0]: a word on the GPU (zero unless speculative
// rounds chained on the GPU keep the position there, where no CPU sees it between rounds).

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
@group(0) @binding(7) var<storage, read> pos_base: array<u32>;

override WG: u32 = 256u;

#include "common/rope_angle.wgsl"

// The rotation of pair i of a head at position pos: (cos, sin) of the reduced angle.
fn turn(pos: u32, i: u32) -> vec2<f32> {
  return rotation(pos, inv_freq[i]);
}

// Pair `idx` of a [rows, heads, head_dim] tensor: the indices of its two halves and its angle.
struct Pair {
  lo: u32,
  hi: u32,
  cs: vec2<f32>,
}

fn pair(idx: u32, heads: u32, start: u32) -> Pair {
  let i = idx % p.half_dim;
  let row_head = idx / p.half_dim;
  let lo = row_head * 2u * p.half_dim + i;
  return Pair(lo, lo + p.half_dim, turn(start + row_head / heads, i));
}

// Turns pair `idx` of x ([rows, heads, head_dim]) in place.
fn turn_x(idx: u32, heads: u32, start: u32) {
  let q = pair(idx, heads, start);
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
  turn_x(idx, p.heads, p.start_pos);
}

// Queries (x) and keys (x2) in one dispatch: the first rows·heads·half_dim invocations rotate
// queries, the next rows·heads_k·half_dim keys.
@compute @workgroup_size(WG)
fn rope_qk(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let idx = gid.x + gid.y * nwg.x * WG;
  let q_pairs = p.rows * p.heads * p.half_dim;
  if (idx < q_pairs) {
    turn_x(idx, p.heads, p.start_pos);
    return;
  }
  let kdx = idx - q_pairs;
  if (kdx >= p.rows * p.heads_k * p.half_dim) {
    return;
  }
  let k = pair(kdx, p.heads_k, p.start_pos);
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
  let start = p.start_pos + pos_base[0];
  let q_pairs = p.rows * p.heads * p.half_dim;
  if (idx < q_pairs) {
    turn_x(idx, p.heads, start);
    return;
  }
  let w = idx - q_pairs; // word index within the new rows' [rows, heads_k, half_dim] words
  if (w >= p.rows * p.heads_k * p.half_dim) {
    return;
  }
  let row_head = w / p.half_dim;
  let e = 2u * (w % p.half_dim); // first of the word's two elements in its head
  let pos = start + row_head / p.heads_k;
  let head_base = row_head * 2u * p.half_dim;
  let k0 = turned_key(head_base, e, pos);
  let k1 = turned_key(head_base, e + 1u, pos);
  let dst = start * p.heads_k * p.half_dim + w;
  k_cache[dst] = pack2x16float(vec2<f32>(k0, k1));
  v_cache[dst] = pack2x16float(v_in[w]);
}

#if KVQ
// rope_qk_cache_q: one thread per element, heads whole in a workgroup (HEAD_DIM divides WG).
// Workgroups [0, q_wgs) turn the queries' elements, the rest the keys' and values'. Each thread
// turns its element (reading its pair's other half, written back only after a barrier), the
// workgroup turns each group of 32 by the Hadamard matrix in workgroup memory (KROT: queries as
// well as keys, so q · k is unchanged), reduces each group to its scale (and offset), and every
// 4th (int8) or 8th (int4) thread packs a word of codes.
var<workgroup> kx: array<f32, WG>; // the workgroup's queries or keys
var<workgroup> vx: array<f32, WG>; // its values
var<workgroup> khi: array<f32, WG>; // per group: keys' absmax (int8) or max (int4)
var<workgroup> klo: array<f32, WG>; // keys' min (int4)
var<workgroup> vhi: array<f32, WG>;
var<workgroup> vlo: array<f32, WG>;

#include "common/kv_quant.wgsl"

@compute @workgroup_size(WG)
fn rope_qk_cache_q(
  @builtin(local_invocation_index) lid: u32,
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
) {
  let w = wid.x + wid.y * nwg.x;
  let start = p.start_pos + pos_base[0];
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
  let live = e < n;
  let ee = min(e, n - 1u);
  let i = ee % hd;
  let row_head = ee / hd;
  let j = i % p.half_dim;
  let lo_at = row_head * hd + j;
  let cs = turn(start + row_head / heads, j);
  var r: vec2<f32>;
  if (is_q) {
    r = rotate(x[lo_at], x[lo_at + p.half_dim], cs);
  } else {
    r = rotate(x2[lo_at], x2[lo_at + p.half_dim], cs);
    vx[lid] = v_in[ee / 2u][ee % 2u];
  }
  kx[lid] = select(r.x, r.y, i >= p.half_dim);
  workgroupBarrier();
#if KROT
  for (var h = 1u; h < GROUP; h <<= 1u) {
    let mine = kx[lid];
    let other = kx[lid ^ h];
    workgroupBarrier();
    kx[lid] = select(other - mine, mine + other, (lid & h) == 0u);
    workgroupBarrier();
  }
  kx[lid] *= INV_SQRT_GROUP;
#endif
  if (is_q) {
    if (live) {
      x[e] = kx[lid];
    }
    return;
  }
#if KV8
  khi[lid] = abs(kx[lid]);
  vhi[lid] = abs(vx[lid]);
#else
  khi[lid] = kx[lid];
  klo[lid] = kx[lid];
  vhi[lid] = vx[lid];
  vlo[lid] = vx[lid];
#endif
  workgroupBarrier();
  for (var h = GROUP / 2u; h > 0u; h >>= 1u) {
    if (lid % GROUP < h) {
      khi[lid] = max(khi[lid], khi[lid + h]);
      vhi[lid] = max(vhi[lid], vhi[lid + h]);
#if KV4
      klo[lid] = min(klo[lid], klo[lid + h]);
      vlo[lid] = min(vlo[lid], vlo[lid + h]);
#endif
    }
    workgroupBarrier();
  }
  if (!live) {
    return;
  }
  let g0 = lid - lid % GROUP;
  let ks = group_scale(khi[g0], klo[g0]);
  let vs = group_scale(vhi[g0], vlo[g0]);
  let ce = start * p.heads_k * hd + e; // element index in the cache
#if KV8
  if (ce % 4u == 0u) {
    k_cache[ce / 4u] = pack_word(lid, ks, true);
    v_cache[ce / 4u] = pack_word(lid, vs, false);
  }
  if (ce % (2u * GROUP) == 0u) {
    // this group's scale and the next one's, in one word
    let ks1 = group_scale(khi[g0 + GROUP], 0.0);
    let vs1 = group_scale(vhi[g0 + GROUP], 0.0);
    k_cache[p.scale_word + ce / (2u * GROUP)] = pack2x16float(vec2<f32>(ks.x, ks1.x));
    v_cache[p.scale_word + ce / (2u * GROUP)] = pack2x16float(vec2<f32>(vs.x, vs1.x));
  }
#else
  if (ce % 8u == 0u) {
    k_cache[ce / 8u] = pack_word(lid, ks, true);
    v_cache[ce / 8u] = pack_word(lid, vs, false);
  }
  if (ce % GROUP == 0u) {
    k_cache[p.scale_word + ce / GROUP] = pack2x16float(ks);
    v_cache[p.scale_word + ce / GROUP] = pack2x16float(vs);
  }
#endif
}
#endif
