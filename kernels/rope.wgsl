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
const GROUP: u32 = 32u;
const INV_SQRT_GROUP: f32 = 0.17677669529663687; // 1 / sqrt(32)
#if KV8
const UNIT: u32 = 2u; // groups per thread: the two f16 scales of one word
const CODE_WORDS: u32 = 8u; // words of codes per group
#else
const UNIT: u32 = 1u;
const CODE_WORDS: u32 = 4u;
#endif

// The orthonormal Hadamard transform of 32 values (Sylvester order), in place.
fn hadamard32(a: ptr<function, array<f32, 32>>) {
  for (var h = 1u; h < GROUP; h <<= 1u) {
    for (var i = 0u; i < GROUP; i++) {
      if ((i & h) == 0u) {
        let x = (*a)[i];
        let y = (*a)[i + h];
        (*a)[i] = x + y;
        (*a)[i + h] = x - y;
      }
    }
  }
  for (var i = 0u; i < GROUP; i++) {
    (*a)[i] *= INV_SQRT_GROUP;
  }
}

// A group's code words (the first CODE_WORDS used) and its f16-rounded (scale, offset).
struct Packed {
  w: array<u32, 8>,
  s: vec2<f32>,
}

fn to_f16(x: f32) -> f32 {
  return unpack2x16float(pack2x16float(vec2<f32>(x, 0.0))).x;
}

fn quantize(a: ptr<function, array<f32, 32>>) -> Packed {
  var r: Packed;
#if KV8
  // absmax / 127, codes -127..127, element 4w + b in byte b of word w
  var amax = 0.0;
  for (var i = 0u; i < GROUP; i++) {
    amax = max(amax, abs((*a)[i]));
  }
  let d = to_f16(amax / 127.0);
  let inv = select(0.0, 1.0 / d, d > 0.0);
  for (var w = 0u; w < 8u; w++) {
    let v = vec4<f32>((*a)[4u * w], (*a)[4u * w + 1u], (*a)[4u * w + 2u], (*a)[4u * w + 3u]);
    r.w[w] = pack4xI8(vec4<i32>(clamp(round(v * inv), vec4<f32>(-127.0), vec4<f32>(127.0))));
  }
  r.s = vec2<f32>(d, 0.0);
#else
  // (max - min) / 15 and min, codes 0..15; element 8w + b (b < 4) in the low nibble of byte b,
  // element 8w + 4 + b in its high nibble
  var lo = (*a)[0];
  var hi = (*a)[0];
  for (var i = 1u; i < GROUP; i++) {
    lo = min(lo, (*a)[i]);
    hi = max(hi, (*a)[i]);
  }
  let d = to_f16((hi - lo) / 15.0);
  let m = to_f16(lo);
  let inv = select(0.0, 1.0 / d, d > 0.0);
  for (var w = 0u; w < 4u; w++) {
    let v0 = vec4<f32>((*a)[8u * w], (*a)[8u * w + 1u], (*a)[8u * w + 2u], (*a)[8u * w + 3u]);
    let v1 = vec4<f32>((*a)[8u * w + 4u], (*a)[8u * w + 5u], (*a)[8u * w + 6u], (*a)[8u * w + 7u]);
    let c0 = vec4<u32>(clamp(round((v0 - m) * inv), vec4<f32>(0.0), vec4<f32>(15.0)));
    let c1 = vec4<u32>(clamp(round((v1 - m) * inv), vec4<f32>(0.0), vec4<f32>(15.0)));
    r.w[w] = pack4xU8(c0 | (c1 << vec4<u32>(4u)));
  }
  r.s = vec2<f32>(d, m);
#endif
  return r;
}

// Queries in place as in rope_qk; then one thread per UNIT groups of a key head and of the value
// head beside it.
@compute @workgroup_size(WG)
fn rope_qk_cache_q(
  @builtin(global_invocation_id) gid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
) {
  let idx = gid.x + gid.y * nwg.x * WG;
  let q_pairs = p.rows * p.heads * p.half_dim;
  if (idx < q_pairs) {
    turn_x(idx, p.heads);
    return;
  }
  let groups = p.half_dim / 16u; // per head
  let units = groups / UNIT;
  let t = idx - q_pairs;
  if (t >= p.rows * p.heads_k * units) {
    return;
  }
  let row_head = t / units;
  let pos = p.start_pos + row_head / p.heads_k;
  let head_base = row_head * 2u * p.half_dim; // of this head in x2 and v_in
  let rh = p.start_pos * p.heads_k + row_head; // (position, head) in the cache
  // keys' and values' scales (int8: of the unit's two groups; int4: scale and offset)
  var k_s: vec2<f32>;
  var v_s: vec2<f32>;
  for (var u = 0u; u < UNIT; u++) {
    let g = (t % units) * UNIT + u;
    var kk: array<f32, 32>;
    var vv: array<f32, 32>;
    for (var e = 0u; e < GROUP; e++) {
      kk[e] = turned_key(head_base, g * GROUP + e, pos);
      let vi = head_base + g * GROUP + e;
      vv[e] = v_in[vi / 2u][vi % 2u];
    }
#if KROT
    hadamard32(&kk);
#endif
    let pk = quantize(&kk);
    let pv = quantize(&vv);
    let cw = (rh * groups + g) * CODE_WORDS;
    for (var w = 0u; w < CODE_WORDS; w++) {
      k_cache[cw + w] = pk.w[w];
      v_cache[cw + w] = pv.w[w];
    }
#if KV8
    k_s[u] = pk.s.x;
    v_s[u] = pv.s.x;
#else
    k_s = pk.s;
    v_s = pv.s;
#endif
  }
  // int8: the two groups' scales; int4: the group's (scale, offset)
  let sw = p.scale_word + (rh * groups) / UNIT + t % units;
  k_cache[sw] = pack2x16float(k_s);
  v_cache[sw] = pack2x16float(v_s);
}
#endif
