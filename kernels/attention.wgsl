// Causal grouped-query attention over an FP16 KV cache.
//
// Cache layout, per layer: K and V each [max_seq, num_kv_heads, HEAD_DIM] as f16 pairs (u32,
// element 2i in the low half). q and out are f32 [rows, num_heads, HEAD_DIM]; query row r sits
// at position start_pos + r and sees positions 0 ..= start_pos + r (with a sliding window of
// W > 0 positions, only the last W of them: Mistral). Query head h reads kv head
// h / (num_heads / num_kv_heads).
//
//   write_kv  converts k, v [rows, num_kv_heads, HEAD_DIM] (f32) to f16 into positions
//             start_pos .. start_pos + rows - 1. One thread per pair.
//   attend    one workgroup per (row, query head). Keys go by in blocks of ATT_WG, one key per
//             thread, with an online softmax (running max m and sum l, f32; the block's max and
//             sum by tree reductions): workgroup memory stays at HEAD_DIM + 2 * ATT_WG floats
//             whatever the sequence length.
//   attend_split + attend_combine
//             the same over `splits` ranges of split_keys positions each, one workgroup per
//             (row, head, range), then a merge of the partial (m, l, acc) — "flash decoding".
//             Decode has only num_heads workgroups otherwise, too few to fill a large GPU.
//             The partials go through a scratch buffer of rows * num_heads * splits *
//             (HEAD_DIM + 2) floats.
//
// Quantized caches (defines KVQ with KV8 or KV4; lib/kernels/kv_cache.ts has the layout): codes
// [max_seq, num_kv_heads, HEAD_DIM] packed in words, then from word scale_word the scales per
// group of 32. attend reads codes and dequantizes in registers: a key's score is the sum over
// groups of scale · (q · codes) (+ offset · sum of q over the group, for int4); a value is
// scale · code (+ offset). Where keys were turned by a Hadamard matrix (rope.wgsl), q arrives
// turned the same way.

struct Params {
  rows: u32,
  start_pos: u32,
  num_heads: u32,
  num_kv_heads: u32,
  scale: f32, // 1 / sqrt(HEAD_DIM)
  splits: u32, // attend_split / attend_combine: ranges per (row, head)
  split_keys: u32, // positions per range, a multiple of ATT_WG
  window: u32, // sliding window in positions; 0: none
  scale_word: u32, // quantized caches: the word where the scales begin
}

override HEAD_DIM: u32 = 64u; // even
override ATT_WG: u32 = 64u; // threads per workgroup = keys per block, a power of two; HEAD_DIM <= 8 * ATT_WG
// Value pairs per thread: one when the workgroup covers the head (PAIRS1, the usual case), so
// the per-thread sums are plain registers rather than an array indexed in a loop.
#if PAIRS1
const MAX_PAIRS: u32 = 1u;
#else
const MAX_PAIRS: u32 = 4u;
#endif

@group(0) @binding(0) var<uniform> p: Params;

// write_kv
@group(0) @binding(1) var<storage, read> k_in: array<vec2<f32>>;
@group(0) @binding(2) var<storage, read> v_in: array<vec2<f32>>;
@group(0) @binding(3) var<storage, read_write> k_cache_w: array<u32>;
@group(0) @binding(4) var<storage, read_write> v_cache_w: array<u32>;

@compute @workgroup_size(256)
fn write_kv(
  @builtin(global_invocation_id) gid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
) {
  let idx = gid.x + gid.y * nwg.x * 256u;
  let per_pos = p.num_kv_heads * (HEAD_DIM / 2u);
  if (idx >= p.rows * per_pos) {
    return;
  }
  // Input rows and cache positions share the [.., num_kv_heads, HEAD_DIM] layout.
  let dst = p.start_pos * per_pos + idx;
  k_cache_w[dst] = pack2x16float(k_in[idx]);
  v_cache_w[dst] = pack2x16float(v_in[idx]);
}

// attend, attend_split
@group(0) @binding(1) var<storage, read> q: array<vec2<f32>>;
#if HD8
// (quantized caches: the key codes, then the scales, 16 bytes at a time)
@group(0) @binding(2) var<storage, read> k_cache4: array<vec4<u32>>;
#else
@group(0) @binding(2) var<storage, read> k_cache: array<u32>;
#endif
@group(0) @binding(3) var<storage, read> v_cache: array<u32>;
@group(0) @binding(4) var<storage, read_write> out: array<vec2<f32>>;
// attend_split writes partials: per (item, split) one vec2 (m, l), then HEAD_DIM / 2 of acc.
@group(0) @binding(4) var<storage, read_write> partials_w: array<vec2<f32>>;
// attend_combine
@group(0) @binding(1) var<storage, read> partials: array<vec2<f32>>;
@group(0) @binding(2) var<storage, read_write> out_c: array<vec2<f32>>;

var<workgroup> q_s: array<vec2<f32>, HEAD_DIM / 2u>;
#if KVQ
const GROUP: u32 = 32u;
var<workgroup> q_gsum: array<f32, HEAD_DIM / 32u>; // int4: the query's sum per group
#endif
var<workgroup> p_s: array<f32, ATT_WG>;
var<workgroup> red: array<f32, ATT_WG>;

// The weighted sum of values is spread over keys as well as pairs: pair_span() threads cover the
// head's pairs (MAX_PAIRS each when the head is wider than the workgroup), and lanes() such groups
// take every lanes()-th key of a block, so a thread's dependent chain is n_here / lanes() keys long
// rather than n_here. The lanes' sums meet once, at the end, in lane_acc. (Functions rather than
// overrides derived from overrides, which naga 29 fails on.)
fn pair_span() -> u32 {
  return min(HEAD_DIM / 2u, ATT_WG);
}

fn lanes() -> u32 {
  return ATT_WG / pair_span();
}
var<workgroup> lane_acc: array<vec2<f32>, ATT_WG>;

// The first position a query that sees `len` positions attends to (its sliding window's start).
fn window_start(len: u32) -> u32 {
  if (p.window > 0u && len > p.window) {
    return len - p.window;
  }
  return 0u;
}

// Below any real score, yet finite: exp(NEG_BIG - m) is 0, never NaN from inf - inf.
const NEG_BIG: f32 = -3.0e38;

// Softmax state over a range of keys: running max, running sum, unnormalised output of this
// thread's pairs (pair_of(lid, c)) over this thread's lane of keys; lanes_total() adds the lanes.
struct Partial {
  m: f32,
  l: f32,
  acc: array<vec2<f32>, MAX_PAIRS>,
}

// Pair c of thread lid (≥ HEAD_DIM / 2: none).
fn pair_of(lid: u32, c: u32) -> u32 {
  if (lid >= lanes() * pair_span()) {
    return HEAD_DIM;
  }
  return lid % pair_span() + c * pair_span();
}

// The score of one key, (position, kv head) rh, against the scaled query in q_s.
fn score(rh: u32) -> f32 {
  let hp = HEAD_DIM / 2u;
  var d = 0.0;
#if KVQ
  let groups = HEAD_DIM / GROUP;
#if KV8
  // Per two groups: four 16-byte loads of codes (64 int8) and one word of two f16 scales.
  let cw = rh * (HEAD_DIM / 16u);
  let sw = p.scale_word + rh * (groups / 2u);
  for (var g2 = 0u; g2 < groups / 2u; g2++) {
    let s = unpack2x16float(k_cache4[(sw + g2) / 4u][(sw + g2) % 4u]);
    let d0 = dot16_i8(32u * g2, k_cache4[cw + 4u * g2]) +
      dot16_i8(32u * g2 + 8u, k_cache4[cw + 4u * g2 + 1u]);
    let d1 = dot16_i8(32u * g2 + 16u, k_cache4[cw + 4u * g2 + 2u]) +
      dot16_i8(32u * g2 + 24u, k_cache4[cw + 4u * g2 + 3u]);
    d += s.x * d0 + s.y * d1;
  }
#else
  // Per group: one 16-byte load of codes (32 nibbles) and one word of (scale, offset).
  let cw = rh * groups;
  let sw = p.scale_word + rh * groups;
  for (var g = 0u; g < groups; g++) {
    let w = k_cache4[cw + g];
    let so = unpack2x16float(k_cache4[(sw + g) / 4u][(sw + g) % 4u]);
    let pb = 16u * g; // first pair of the group
    let a = dot8_u4(pb, w.x) + dot8_u4(pb + 4u, w.y) + dot8_u4(pb + 8u, w.z) +
      dot8_u4(pb + 12u, w.w);
    d += so.x * a + so.y * q_gsum[g];
  }
#endif
#else
  let kb = rh * hp; // first word of the key
#if HD8
  // 16-byte loads: eight f16 per step (kb is a multiple of 4 when HEAD_DIM % 8 == 0).
  for (var w = 0u; w < hp / 4u; w++) {
    let kw = k_cache4[kb / 4u + w];
    d += dot(q_s[4u * w], unpack2x16float(kw.x)) + dot(q_s[4u * w + 1u], unpack2x16float(kw.y)) +
      dot(q_s[4u * w + 2u], unpack2x16float(kw.z)) + dot(q_s[4u * w + 3u], unpack2x16float(kw.w));
  }
#else
  for (var i = 0u; i < hp; i++) {
    d += dot(q_s[i], unpack2x16float(k_cache[kb + i]));
  }
#endif
#endif
  return d;
}

#if KVQ
// q · 16 int8 codes starting at pair pb of the query.
fn dot16_i8(pb: u32, w: vec4<u32>) -> f32 {
  return dot4q(pb, vec4<f32>(unpack4xI8(w.x))) + dot4q(pb + 2u, vec4<f32>(unpack4xI8(w.y))) +
    dot4q(pb + 4u, vec4<f32>(unpack4xI8(w.z))) + dot4q(pb + 6u, vec4<f32>(unpack4xI8(w.w)));
}

// q · 8 int4 codes (one word: elements 0..3 in the low nibbles, 4..7 in the high) from pair pb.
fn dot8_u4(pb: u32, w: u32) -> f32 {
  let lo = vec4<f32>(unpack4xU8(w & 0x0F0F0F0Fu));
  let hi = vec4<f32>(unpack4xU8((w >> 4u) & 0x0F0F0F0Fu));
  return dot4q(pb, lo) + dot4q(pb + 2u, hi);
}

// Four query values from pair pb on, dotted with c.
fn dot4q(pb: u32, c: vec4<f32>) -> f32 {
  return dot(q_s[pb], c.xy) + dot(q_s[pb + 1u], c.zw);
}

// int4: the query's sum over each group (one thread per group). Called by the whole workgroup
// after q_s is written.
fn prepare_query(lid: u32) {
  workgroupBarrier();
  if (lid < HEAD_DIM / GROUP) {
    var sum = 0.0;
    for (var i = 16u * lid; i < 16u * lid + 16u; i++) {
      sum += q_s[i].x + q_s[i].y;
    }
    q_gsum[lid] = sum;
  }
}
#endif

// Pair i of the value at (position, kv head) rh.
fn value_pair(rh: u32, i: u32) -> vec2<f32> {
#if KVQ
  let gi = rh * (HEAD_DIM / GROUP) + i / 16u; // the pair's group
#if KV8
  let c = vec4<f32>(unpack4xI8(v_cache[rh * (HEAD_DIM / 4u) + i / 2u]));
  let s = unpack2x16float(v_cache[p.scale_word + gi / 2u])[gi % 2u];
  return select(c.xy, c.zw, (i & 1u) == 1u) * s;
#else
  let w = v_cache[rh * (HEAD_DIM / 8u) + i / 4u];
  // elements 2(i % 4) and 2(i % 4) + 1 of the word's eight
  let e = 2u * (i % 4u);
  let shift = select(8u * e, 8u * (e - 4u) + 4u, e >= 4u);
  let c = vec2<f32>(f32((w >> shift) & 15u), f32((w >> (shift + 8u)) & 15u));
  let so = unpack2x16float(v_cache[p.scale_word + gi]);
  return so.y + so.x * c;
#endif
#else
  return unpack2x16float(v_cache[rh * (HEAD_DIM / 2u) + i]);
#endif
}

// Attends query `item` (row * num_heads + head) to positions [j_begin, j_end). Called by the
// whole workgroup with uniform arguments (it has barriers).
fn attend_range(lid: u32, item: u32, j_begin: u32, j_end: u32) -> Partial {
  let hp = HEAD_DIM / 2u;
  let kv_head = (item % p.num_heads) / (p.num_heads / p.num_kv_heads);
  let kvh = p.num_kv_heads;
  let lane = lid / pair_span();

  for (var i = lid; i < hp; i += ATT_WG) {
    q_s[i] = q[item * hp + i] * p.scale;
  }
#if KV4
  prepare_query(lid);
#endif
  workgroupBarrier();

  var r: Partial;
  r.m = NEG_BIG;
  for (var j0 = j_begin; j0 < j_end; j0 += ATT_WG) {
    let n_here = min(ATT_WG, j_end - j0);
    var s = NEG_BIG;
    if (lid < n_here) {
      s = score((j0 + lid) * kvh + kv_head);
    }
    let m_new = max(r.m, block_max(lid, s));
    let e = exp(s - m_new); // 0 past n_here: s is NEG_BIG there
    p_s[lid] = e;
    let sum = block_sum(lid, e); // its barriers also publish p_s
    let alpha = exp(r.m - m_new);
    r.m = m_new;
    r.l = r.l * alpha + sum;
    for (var c = 0u; c < MAX_PAIRS; c++) {
      let i = pair_of(lid, c);
      if (i < hp) {
        var a = r.acc[c] * alpha;
        // Four of this lane's keys per step, their loads issued together.
        var t = lane;
        let step = lanes() * kvh;
        for (; t + 3u * lanes() < n_here; t += 4u * lanes()) {
          let rh = (j0 + t) * kvh + kv_head;
          let v0 = value_pair(rh, i);
          let v1 = value_pair(rh + step, i);
          let v2 = value_pair(rh + 2u * step, i);
          let v3 = value_pair(rh + 3u * step, i);
          a += (p_s[t] * v0 + p_s[t + lanes()] * v1) +
            (p_s[t + 2u * lanes()] * v2 + p_s[t + 3u * lanes()] * v3);
        }
        for (; t < n_here; t += lanes()) {
          a += p_s[t] * value_pair((j0 + t) * kvh + kv_head, i);
        }
        r.acc[c] = a;
      }
    }
    workgroupBarrier(); // the next block overwrites p_s
  }
  return r;
}

// Pair c of the head summed over the lanes, valid in the threads of lane 0 (the others get
// their own lane's part). Called by the whole workgroup.
fn lanes_total(lid: u32, r: Partial, c: u32) -> vec2<f32> {
  if (lanes() == 1u) {
    return r.acc[c];
  }
  lane_acc[lid] = r.acc[c];
  workgroupBarrier();
  var a = r.acc[c];
  if (lid < pair_span()) {
    for (var l = 1u; l < lanes(); l++) {
      a += lane_acc[lid + l * pair_span()];
    }
  }
  workgroupBarrier(); // lane_acc is reused for the next c
  return a;
}

// The max over the workgroup of one value per thread (a tree in workgroup memory).
fn block_max(lid: u32, v: f32) -> f32 {
  red[lid] = v;
  workgroupBarrier();
  for (var stride = ATT_WG / 2u; stride > 0u; stride >>= 1u) {
    if (lid < stride) {
      red[lid] = max(red[lid], red[lid + stride]);
    }
    workgroupBarrier();
  }
  let m = red[0];
  workgroupBarrier(); // everyone has read red[0] before it is reused
  return m;
}

// The sum over the workgroup of one value per thread.
fn block_sum(lid: u32, v: f32) -> f32 {
  red[lid] = v;
  workgroupBarrier();
  for (var stride = ATT_WG / 2u; stride > 0u; stride >>= 1u) {
    if (lid < stride) {
      red[lid] += red[lid + stride];
    }
    workgroupBarrier();
  }
  let total = red[0];
  workgroupBarrier();
  return total;
}

@compute @workgroup_size(ATT_WG)
fn attend(
  @builtin(local_invocation_index) lid: u32,
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
) {
  let item = wid.x + wid.y * nwg.x;
  if (item >= p.rows * p.num_heads) {
    return; // uniform for the workgroup
  }
  let len = p.start_pos + item / p.num_heads + 1u;
  let r = attend_range(lid, item, window_start(len), len);
  let hp = HEAD_DIM / 2u;
  for (var c = 0u; c < MAX_PAIRS; c++) {
    let a = lanes_total(lid, r, c);
    let i = pair_of(lid, c);
    if (lid < pair_span() && i < hp) {
      out[item * hp + i] = a / r.l;
    }
  }
}

@compute @workgroup_size(ATT_WG)
fn attend_split(
  @builtin(local_invocation_index) lid: u32,
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
) {
  let flat = wid.x + wid.y * nwg.x;
  if (flat >= p.rows * p.num_heads * p.splits) {
    return;
  }
  let item = flat / p.splits;
  let len = p.start_pos + item / p.num_heads + 1u;
  let range_begin = (flat % p.splits) * p.split_keys;
  let j_begin = min(len, max(window_start(len), range_begin));
  let j_end = max(j_begin, min(len, range_begin + p.split_keys));
  // An empty range (a short row of a prefill) leaves m = NEG_BIG, l = 0: weight 0 when merged.
  let r = attend_range(lid, item, j_begin, j_end);
  let hp = HEAD_DIM / 2u;
  let base = flat * (hp + 1u);
  if (lid == 0u) {
    partials_w[base] = vec2<f32>(r.m, r.l);
  }
  for (var c = 0u; c < MAX_PAIRS; c++) {
    let a = lanes_total(lid, r, c);
    let i = pair_of(lid, c);
    if (lid < pair_span() && i < hp) {
      partials_w[base + 1u + i] = a;
    }
  }
}

@compute @workgroup_size(ATT_WG)
fn attend_combine(
  @builtin(local_invocation_index) lid: u32,
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
) {
  let item = wid.x + wid.y * nwg.x;
  if (item >= p.rows * p.num_heads) {
    return;
  }
  let hp = HEAD_DIM / 2u;
  let first = item * p.splits;
  var m = NEG_BIG;
  for (var s = 0u; s < p.splits; s++) {
    m = max(m, partials[(first + s) * (hp + 1u)].x);
  }
  var l = 0.0;
  for (var s = 0u; s < p.splits; s++) {
    let ml = partials[(first + s) * (hp + 1u)];
    l += ml.y * exp(ml.x - m);
  }
  for (var i = lid; i < hp; i += ATT_WG) {
    var a = vec2<f32>(0.0);
    for (var s = 0u; s < p.splits; s++) {
      let base = (first + s) * (hp + 1u);
      a += partials[base + 1u + i] * exp(partials[base].x - m);
    }
    out_c[item * hp + i] = a / l;
  }
}
