// Causal grouped-query attention over a KV cache (f16, or int8/int4 codes with scales).
//
// Cache layout, per layer: K and V each [max_seq, num_kv_heads, HEAD_DIM] as f16 pairs (u32,
// element 2i in the low half). q and out are f32 [rows, num_heads, HEAD_DIM]; query row r sits
// at position start_pos + r and sees positions 0 ..= start_pos + r (with a sliding window of
// W > 0 positions, only the last W of them: Mistral). Query head h reads kv head
// h / (num_heads / num_kv_heads).
//
//   write_kv  converts k, v [rows, num_kv_heads, HEAD_DIM] (f32) to f16 into positions
//             start_pos .. start_pos + rows - 1. One thread per pair.
//   attend    one workgroup per (row, query head). Keys go by in blocks, several threads per
//             key and several keys per thread (below), with an online softmax (running max m
//             and sum l, f32): workgroup memory stays at 10 · ATT_WG floats whatever the
//             sequence length.
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
//
// Decode with RoPE folded in (FUSE_NEW: one query row, head_dim a multiple of 8): q, k and v
// arrive as the q/k/v products left them, before RoPE (rope.wgsl's rope_qk_cache or
// rope_qk_cache_q otherwise runs first). Each workgroup turns its query itself, with rope.wgsl's
// arithmetic (common/rope_angle.wgsl); the range holding the new position also turns the new key
// and rounds or quantizes it and the value exactly as rope.wgsl would (common/kv_quant.wgsl), and
// attends to that position in its place, the last of the last block, reading its key and value
// from workgroup memory (they are not in the cache yet); the first query head of each kv head's
// group stores them in the cache for later steps. No workgroup of the dispatch reads that
// position from the cache, so the order of the stores does not matter. The cache gets the same
// words as from rope.wgsl and the output comes from the same sums in the same order as RoPE +
// attend's: bit for bit with f16 and int8 caches, so a decode step leaves what a verify pass's
// row leaves, which speculative decoding's greedy output depends on. (With int4 caches a shader
// compiler may round this kernel's query arithmetic otherwise than rope.wgsl's and attend's: GL's
// does, in the last bits; lavapipe's Vulkan does not.)
//
// attend and attend_split see query row r at position start_pos + pos_base[0] + r: pos_base is a
// word on the GPU, zero unless speculative rounds chained on the GPU keep the position there.
// Their grids are sized on the CPU for the most the position can reach: ranges past a row's
// length are empty.

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

override HEAD_DIM: u32 = 64u; // even; ≤ 8 · ATT_WG (≤ 2 · ATT_WG when not a multiple of 8)
override ATT_WG: u32 = 64u; // threads per workgroup, a power of two

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
//
// Threads work on a block of nb() keys in two layouts. Scores: tpk() threads per key, each
// dotting KD elements of it with its part of the query, held in registers (qr), so that
// neighbouring threads read neighbouring bytes of one key; kgroups() keys at a time, every
// thread taking keys g, g + kgroups(), ... of the block, their loads issued together. The parts
// meet in workgroup memory (sh), where thread j adds up key j's score. Values: tpv() threads per
// value, VD elements each, lanes() such lanes taking every lanes()-th key of the block, with
// the softmax weights from p_s; a lane's running sum of weights (the softmax denominator) rides
// along with its outputs. The lanes meet once, at the end, in sh. Per block: four barriers (the
// parts, the scores, their max in two levels, the weights).
#if HD8
@group(0) @binding(1) var<storage, read> q: array<vec4<f32>>;
#else
@group(0) @binding(1) var<storage, read> q: array<vec2<f32>>;
#endif
#if FUSE_NEW
@group(0) @binding(2) var<storage, read_write> k_cache4: array<vec4<u32>>;
#else
#if HD8
// (quantized caches: the key codes, then the scales, 16 bytes at a time)
@group(0) @binding(2) var<storage, read> k_cache4: array<vec4<u32>>;
#else
@group(0) @binding(2) var<storage, read> k_cache: array<u32>;
#endif
#endif
#if FUSE_NEW
// (a decode step with RoPE folded in also stores the new position: the same arrays, writable)
#if KV8
#if V16
@group(0) @binding(3) var<storage, read_write> v_cache: array<vec4<u32>>;
#else
@group(0) @binding(3) var<storage, read_write> v_cache: array<vec2<u32>>;
#endif
#else
#if KV4
#if V16
@group(0) @binding(3) var<storage, read_write> v_cache: array<vec2<u32>>;
#else
@group(0) @binding(3) var<storage, read_write> v_cache: array<u32>;
#endif
#else
@group(0) @binding(3) var<storage, read_write> v_cache: array<vec4<u32>>;
#endif
#endif
#else
#if KV8
#if V16
@group(0) @binding(3) var<storage, read> v_cache: array<vec4<u32>>; // 16 codes at a time
#else
@group(0) @binding(3) var<storage, read> v_cache: array<vec2<u32>>; // 8 codes at a time
#endif
#else
#if KV4
#if V16
@group(0) @binding(3) var<storage, read> v_cache: array<vec2<u32>>; // 16 codes at a time
#else
@group(0) @binding(3) var<storage, read> v_cache: array<u32>; // 8 codes at a time
#endif
#else
#if HD8
@group(0) @binding(3) var<storage, read> v_cache: array<vec4<u32>>; // 8 f16 at a time
#else
@group(0) @binding(3) var<storage, read> v_cache: array<u32>;
#endif
#endif
#endif
#endif
@group(0) @binding(4) var<storage, read_write> out: array<f32>;
// attend_split writes partials: per (item, split) m, l, then HEAD_DIM of acc.
@group(0) @binding(4) var<storage, read_write> partials_w: array<f32>;
@group(0) @binding(5) var<storage, read> pos_base: array<u32>;
#if FUSE_NEW
// the new key and value [num_kv_heads, HEAD_DIM] before RoPE, and RoPE's frequencies
@group(0) @binding(6) var<storage, read> k_new: array<f32>;
@group(0) @binding(7) var<storage, read> v_new: array<f32>;
@group(0) @binding(8) var<storage, read> inv_freq: array<f32>;

#include "common/rope_angle.wgsl"

var<private> new_pos: u32;
// The query turned by RoPE (and by the Hadamard matrix per group of 32 with KROT), in f32:
// load_query reads it. The new key turned the same way and the new value, in f32.
var<workgroup> qx: array<f32, HEAD_DIM>;
var<workgroup> kx: array<f32, HEAD_DIM>;
var<workgroup> vx: array<f32, HEAD_DIM>;
#if KROT
var<workgroup> qx2: array<f32, HEAD_DIM>; // the Hadamard butterflies' other half
var<workgroup> kx2: array<f32, HEAD_DIM>;
#endif
#if KVQ
#include "common/kv_quant.wgsl"

// Their code words and scale words, as the cache holds them for one (position, kv head): int8
// four codes a word and two groups' scales a word (head_dim a multiple of 64, so that no word is
// shared with the next head), int4 eight codes and one group's (scale, offset) a word.
#if KV8
const CODES_PER_WORD: u32 = 4u;
#else
const CODES_PER_WORD: u32 = 8u;
#endif
var<workgroup> kwn: array<u32, HEAD_DIM / 4u>;
var<workgroup> vwn: array<u32, HEAD_DIM / 4u>;
var<workgroup> ksn: array<u32, HEAD_DIM / 32u>;
var<workgroup> vsn: array<u32, HEAD_DIM / 32u>;
var<workgroup> gso: array<vec4<f32>, HEAD_DIM / 32u>; // per group: key (scale, offset), value's

fn code_words() -> u32 {
  return HEAD_DIM / CODES_PER_WORD;
}

fn scale_words() -> u32 {
#if KV8
  return HEAD_DIM / 64u;
#else
  return HEAD_DIM / 32u;
#endif
}

// Word w of v_cache, whatever its element type.
fn v_store(w: u32, value: u32) {
#if V16
#if KV8
  v_cache[w / 4u][w % 4u] = value;
#else
  v_cache[w / 2u][w % 2u] = value;
#endif
#else
#if KV8
  v_cache[w / 2u][w % 2u] = value;
#else
  v_cache[w] = value;
#endif
#endif
}
#else
var<workgroup> knew: array<vec4<u32>, HEAD_DIM / 8u>;
var<workgroup> vnew: array<vec4<u32>, HEAD_DIM / 8u>;
#endif

// Element e of a head after RoPE at new_pos, from its pair's halves: rope.wgsl's products.
fn turned(x_lo: f32, x_hi: f32, e: u32) -> f32 {
  let r = rotate(x_lo, x_hi, rotation(new_pos, inv_freq[e % (HEAD_DIM / 2u)]));
  return select(r.x, r.y, e >= HEAD_DIM / 2u);
}

// Turns the query of `item` (one query row: item is the head) and, with `with_new`, stages the
// new key and value of its kv head, as rope.wgsl's rope_qk_cache (f16) or rope_qk_cache_q
// (int8/int4) would write them; the first query head of the group also stores them in the cache
// at new_pos. Called by the whole workgroup with uniform arguments (it has barriers).
fn stage_new(lid: u32, item: u32, with_new: bool) {
  let half = HEAD_DIM / 2u;
  let qb = item * HEAD_DIM;
  let group = p.num_heads / p.num_kv_heads;
  let kv_head = item / group;
  let kb = kv_head * HEAD_DIM;
  for (var e = lid; e < HEAD_DIM; e += ATT_WG) {
    let i = e % half;
    qx[e] = turned(q[(qb + i) / 4u][(qb + i) % 4u], q[(qb + i + half) / 4u][(qb + i + half) % 4u], e);
    if (with_new) {
      kx[e] = turned(k_new[kb + i], k_new[kb + i + half], e);
      vx[e] = v_new[kb + e];
    }
  }
  workgroupBarrier();
#if KROT
  // the Hadamard matrix on each group of 32, rope_qk_cache_q's butterflies (the same sums),
  // between two workgroup arrays: the odd stages write qx2/kx2, the even ones qx/kx; with K16
  // load_query turns the query itself, in registers
#if K16
  let turn_q = false;
#else
  let turn_q = true;
#endif
  if (!turn_q && !with_new) {
    return;
  }
  for (var h = 1u; h < GROUP; h <<= 1u) {
    let odd = (firstTrailingBit(h) & 1u) == 0u;
    for (var e = lid; e < HEAD_DIM; e += ATT_WG) {
      let low = (e & h) == 0u;
      if (odd) {
        if (turn_q) {
          qx2[e] = select(qx[e ^ h] - qx[e], qx[e] + qx[e ^ h], low);
        }
        if (with_new) {
          kx2[e] = select(kx[e ^ h] - kx[e], kx[e] + kx[e ^ h], low);
        }
      } else {
        if (turn_q) {
          qx[e] = select(qx2[e ^ h] - qx2[e], qx2[e] + qx2[e ^ h], low);
        }
        if (with_new) {
          kx[e] = select(kx2[e ^ h] - kx2[e], kx2[e] + kx2[e ^ h], low);
        }
      }
    }
    workgroupBarrier();
  }
  // five stages: the last wrote qx2 and kx2
  for (var e = lid; e < HEAD_DIM; e += ATT_WG) {
    if (turn_q) {
      qx[e] = qx2[e] * INV_SQRT_GROUP;
    }
    if (with_new) {
      kx[e] = kx2[e] * INV_SQRT_GROUP;
    }
  }
  workgroupBarrier();
#endif
  if (!with_new) {
    return;
  }
#if KVQ
  // each group's scale (and offset) from its absmax (int8) or max and min (int4)
  for (var g = lid; g < HEAD_DIM / GROUP; g += ATT_WG) {
#if KV8
    var khi = 0.0;
    var vhi = 0.0;
    for (var j = 0u; j < GROUP; j++) {
      khi = max(khi, abs(kx[GROUP * g + j]));
      vhi = max(vhi, abs(vx[GROUP * g + j]));
    }
    gso[g] = vec4<f32>(group_scale(khi, 0.0), group_scale(vhi, 0.0));
#else
    var khi = kx[GROUP * g];
    var klo = khi;
    var vhi = vx[GROUP * g];
    var vlo = vhi;
    for (var j = 1u; j < GROUP; j++) {
      khi = max(khi, kx[GROUP * g + j]);
      klo = min(klo, kx[GROUP * g + j]);
      vhi = max(vhi, vx[GROUP * g + j]);
      vlo = min(vlo, vx[GROUP * g + j]);
    }
    gso[g] = vec4<f32>(group_scale(khi, klo), group_scale(vhi, vlo));
#endif
  }
  workgroupBarrier();
  for (var w = lid; w < code_words(); w += ATT_WG) {
    let so = gso[(w * CODES_PER_WORD) / GROUP];
    kwn[w] = pack_word(w * CODES_PER_WORD, so.xy, true);
    vwn[w] = pack_word(w * CODES_PER_WORD, so.zw, false);
  }
  for (var w = lid; w < scale_words(); w += ATT_WG) {
#if KV8
    ksn[w] = pack2x16float(vec2<f32>(gso[2u * w].x, gso[2u * w + 1u].x));
    vsn[w] = pack2x16float(vec2<f32>(gso[2u * w].z, gso[2u * w + 1u].z));
#else
    ksn[w] = pack2x16float(gso[w].xy);
    vsn[w] = pack2x16float(gso[w].zw);
#endif
  }
  workgroupBarrier();
  if (item % group == 0u) {
    let rh = new_pos * p.num_kv_heads + kv_head;
    for (var w = lid; w < code_words(); w += ATT_WG) {
      let c = rh * code_words() + w;
      k_cache4[c / 4u][c % 4u] = kwn[w];
      v_store(c, vwn[w]);
    }
    for (var w = lid; w < scale_words(); w += ATT_WG) {
      let c = p.scale_word + rh * scale_words() + w;
      k_cache4[c / 4u][c % 4u] = ksn[w];
      v_store(c, vsn[w]);
    }
  }
#else
  for (var j = lid; j < HEAD_DIM / 8u; j += ATT_WG) {
    var kw = vec4<u32>();
    var vw = vec4<u32>();
    for (var c = 0u; c < 4u; c++) {
      let e = 8u * j + 2u * c;
      kw[c] = pack2x16float(vec2<f32>(kx[e], kx[e + 1u]));
      vw[c] = pack2x16float(vec2<f32>(vx[e], vx[e + 1u]));
    }
    knew[j] = kw;
    vnew[j] = vw;
  }
  workgroupBarrier();
  if (item % group == 0u) {
    let rh = new_pos * p.num_kv_heads + kv_head;
    for (var j = lid; j < HEAD_DIM / 8u; j += ATT_WG) {
      k_cache4[rh * (HEAD_DIM / 8u) + j] = knew[j];
      v_cache[rh * (HEAD_DIM / 8u) + j] = vnew[j];
    }
  }
#endif
}
#endif
// attend_combine
@group(0) @binding(1) var<storage, read> partials: array<vec2<f32>>;
@group(0) @binding(2) var<storage, read_write> out_c: array<vec2<f32>>;

// Key elements per thread in the scores: 32 (K32) or 16 (K16) as chosen, when HEAD_DIM allows,
// else 8 (one 16-byte load of f16), else 2. A quantized cache's group is 32.
#if K32
const KD: u32 = 32u;
#else
#if K16
const KD: u32 = 16u;
#else
#if HD8
const KD: u32 = 8u;
#else
const KD: u32 = 2u;
#endif
#endif
#endif
// Value elements per thread: 16 (V16, quantized caches: one load of 16 codes) or 8 when the
// head allows, else 2.
#if V16
const VD: u32 = 16u;
#else
#if HD8
const VD: u32 = 8u;
#else
const VD: u32 = 2u;
#endif
#endif
#if KVQ
#if !FUSE_NEW
const GROUP: u32 = 32u; // (with FUSE_NEW: from common/kv_quant.wgsl)
#endif
#endif

// (Functions rather than overrides derived from overrides, which naga 29 fails on.)
fn tpk() -> u32 {
  return HEAD_DIM / KD;
}

fn kgroups() -> u32 {
  return ATT_WG / tpk();
}

// Keys per block: one score per thread, and their parts must fit in sh.
fn nb() -> u32 {
  return min(ATT_WG, (8u * ATT_WG) / tpk());
}

fn tpv() -> u32 {
  return HEAD_DIM / VD;
}

fn lanes() -> u32 {
  return ATT_WG / tpv();
}

// Threads that take part in the block max's first level.
fn red_n() -> u32 {
  return min(16u, ATT_WG);
}

// score parts [nb][tpk]; at the end [lanes][HEAD_DIM] (lanes · HEAD_DIM = ATT_WG · VD floats)
#if V16
var<workgroup> sh: array<vec4<f32>, 4u * ATT_WG>;
#else
var<workgroup> sh: array<vec4<f32>, 2u * ATT_WG>;
#endif
fn sh_set(i: u32, v: f32) {
  sh[i / 4u][i % 4u] = v;
}

fn sh_get(i: u32) -> f32 {
  return sh[i / 4u][i % 4u];
}

var<workgroup> p_s: array<vec4<f32>, ATT_WG / 4u>; // scores, then weights
var<workgroup> red: array<f32, 16>;
var<workgroup> l_s: array<vec4<f32>, ATT_WG / 4u>; // the lanes' sums of weights

// This thread's part of the query (elements t·KD ..), scaled by 1/sqrt(HEAD_DIM).
var<private> qr: array<vec4<f32>, 8>;
#if KV4
var<private> qsum: f32; // the sum of this thread's query part (its group), for the offset
#endif

// The first position a query that sees `len` positions attends to (its sliding window's start).
fn window_start(len: u32) -> u32 {
  if (p.window > 0u && len > p.window) {
    return len - p.window;
  }
  return 0u;
}

// Below any real score, yet finite: exp(NEG_BIG - m) is 0, never NaN from inf - inf.
const NEG_BIG: f32 = -3.0e38;

// Butterflies of the Hadamard matrix within four neighbouring elements: pairs 1 apart (h = 1),
// then 2 apart (h = 2); the lower element of a pair gets the sum, the upper one lower - upper.
fn butterfly1(v: vec4<f32>) -> vec4<f32> {
  return vec4<f32>(v.x + v.y, v.x - v.y, v.z + v.w, v.z - v.w);
}

fn butterfly2(v: vec4<f32>) -> vec4<f32> {
  return vec4<f32>(v.xy + v.zw, v.xy - v.zw);
}

// This thread's part t of query `item` into qr (lid: the thread; FUSE_NEW with KROT and K16 has
// a barrier, so the whole workgroup calls it).
fn load_query(item: u32, t: u32, lid: u32) {
#if FUSE_NEW
#if KROT
#if K16
  // The query as stage_new turned it by RoPE, then by the Hadamard matrix here: this thread's 16
  // elements are half of a group, so four of the five butterfly stages stay in registers and the
  // last pairs it with the other half, thread t ^ 1 (one exchange through qx2, not five rounds
  // through workgroup memory in every workgroup). The same sums as rope_qk_cache_q's.
  let e0 = t * 16u;
  var a0 = vec4<f32>(qx[e0], qx[e0 + 1u], qx[e0 + 2u], qx[e0 + 3u]);
  var a1 = vec4<f32>(qx[e0 + 4u], qx[e0 + 5u], qx[e0 + 6u], qx[e0 + 7u]);
  var a2 = vec4<f32>(qx[e0 + 8u], qx[e0 + 9u], qx[e0 + 10u], qx[e0 + 11u]);
  var a3 = vec4<f32>(qx[e0 + 12u], qx[e0 + 13u], qx[e0 + 14u], qx[e0 + 15u]);
  a0 = butterfly2(butterfly1(a0));
  a1 = butterfly2(butterfly1(a1));
  a2 = butterfly2(butterfly1(a2));
  a3 = butterfly2(butterfly1(a3));
  let b0 = a0 + a1; // h = 4
  let b1 = a0 - a1;
  let b2 = a2 + a3;
  let b3 = a2 - a3;
  a0 = b0 + b2; // h = 8
  a2 = b0 - b2;
  a1 = b1 + b3;
  a3 = b1 - b3;
  // h = 16: the even thread of a group keeps mine + other, the odd one other - mine
  if (lid < tpk()) {
    for (var c = 0u; c < 4u; c++) {
      qx2[e0 + c] = a0[c];
      qx2[e0 + 4u + c] = a1[c];
      qx2[e0 + 8u + c] = a2[c];
      qx2[e0 + 12u + c] = a3[c];
    }
  }
  workgroupBarrier();
  let o0 = (t ^ 1u) * 16u;
  let low = (t & 1u) == 0u;
  let p0 = vec4<f32>(qx2[o0], qx2[o0 + 1u], qx2[o0 + 2u], qx2[o0 + 3u]);
  let p1 = vec4<f32>(qx2[o0 + 4u], qx2[o0 + 5u], qx2[o0 + 6u], qx2[o0 + 7u]);
  let p2 = vec4<f32>(qx2[o0 + 8u], qx2[o0 + 9u], qx2[o0 + 10u], qx2[o0 + 11u]);
  let p3 = vec4<f32>(qx2[o0 + 12u], qx2[o0 + 13u], qx2[o0 + 14u], qx2[o0 + 15u]);
  qr[0] = (select(p0 - a0, a0 + p0, low) * INV_SQRT_GROUP) * p.scale;
  qr[1] = (select(p1 - a1, a1 + p1, low) * INV_SQRT_GROUP) * p.scale;
  qr[2] = (select(p2 - a2, a2 + p2, low) * INV_SQRT_GROUP) * p.scale;
  qr[3] = (select(p3 - a3, a3 + p3, low) * INV_SQRT_GROUP) * p.scale;
#else
  for (var i = 0u; i < KD / 4u; i++) {
    let e = t * KD + 4u * i;
    qr[i] = vec4<f32>(qx[e], qx[e + 1u], qx[e + 2u], qx[e + 3u]) * p.scale;
  }
#endif
#else
  // the query as stage_new turned it
  for (var i = 0u; i < KD / 4u; i++) {
    let e = t * KD + 4u * i;
    qr[i] = vec4<f32>(qx[e], qx[e + 1u], qx[e + 2u], qx[e + 3u]) * p.scale;
  }
#endif
#else
#if HD8
  let base = (item * HEAD_DIM + t * KD) / 4u;
  for (var i = 0u; i < KD / 4u; i++) {
    qr[i] = q[base + i] * p.scale;
  }
#else
  qr[0] = vec4<f32>(q[(item * HEAD_DIM + t * KD) / 2u] * p.scale, 0.0, 0.0);
#endif
#endif
#if KV4
  var s = 0.0;
  for (var i = 0u; i < KD / 4u; i++) {
    s += dot(qr[i], vec4<f32>(1.0));
  }
  qsum = s;
#endif
}

#if FASTCVT
// Bytes to floats without integer-to-float conversions (a quarter of the arithmetic rate on
// some GPUs): 2^23 + b has b in its low mantissa bits, and subtracting 2^23 is exact.
fn bytes_f32(w: u32) -> vec4<f32> {
  let b = vec4<u32>(w & 0xFFu, (w >> 8u) & 0xFFu, (w >> 16u) & 0xFFu, w >> 24u);
  return bitcast<vec4<f32>>(b | vec4<u32>(0x4B000000u)) - vec4<f32>(8388608.0);
}

// Four int8 codes: as bytes_f32 of code + 128, both subtractions in one.
fn i8x4(w: u32) -> vec4<f32> {
  let x = w ^ 0x80808080u;
  let b = vec4<u32>(x & 0xFFu, (x >> 8u) & 0xFFu, (x >> 16u) & 0xFFu, x >> 24u);
  return bitcast<vec4<f32>>(b | vec4<u32>(0x4B000000u)) - vec4<f32>(8388736.0);
}
#else
fn bytes_f32(w: u32) -> vec4<f32> {
  return vec4<f32>(unpack4xU8(w));
}

fn i8x4(w: u32) -> vec4<f32> {
  return vec4<f32>(unpack4xI8(w));
}
#endif

// Four f16 values from two words.
fn f16x4(a: u32, b: u32) -> vec4<f32> {
  return vec4<f32>(unpack2x16float(a), unpack2x16float(b));
}

// 16 bytes (8 f16) of a key or value row: word i of row rh in the cache, or of the new position
// staged in workgroup memory (FUSE_NEW; the hot loops pass staged = false, a constant).
fn kword(rh: u32, i: u32, staged: bool) -> vec4<u32> {
#if FUSE_NEW
#if !KVQ
  if (staged) {
    return knew[i];
  }
#endif
#endif
#if HD8
  return k_cache4[rh * (HEAD_DIM / 8u) + i];
#else
  return vec4<u32>();
#endif
}

#if HD8
#if !KVQ
fn vword(rh: u32, i: u32, staged: bool) -> vec4<u32> {
#if FUSE_NEW
  if (staged) {
    return vnew[i];
  }
#endif
  return v_cache[rh * (HEAD_DIM / 8u) + i];
}
#endif
#endif

#if KVQ
// Quantized caches: 16 bytes of key codes (vec4 i of head rh's code words) and key scale word i
// of head rh, from the cache or (staged) from the new position's words.
fn kq4(rh: u32, i: u32, staged: bool) -> vec4<u32> {
#if FUSE_NEW
  if (staged) {
    return vec4<u32>(kwn[4u * i], kwn[4u * i + 1u], kwn[4u * i + 2u], kwn[4u * i + 3u]);
  }
#endif
#if KV8
  return k_cache4[rh * (HEAD_DIM / 16u) + i];
#else
  return k_cache4[rh * (HEAD_DIM / 32u) + i];
#endif
}

fn kscale(rh: u32, i: u32, staged: bool) -> u32 {
#if FUSE_NEW
  if (staged) {
    return ksn[i];
  }
#endif
#if KV8
  let sw = p.scale_word + rh * (HEAD_DIM / 64u) + i;
#else
  let sw = p.scale_word + rh * (HEAD_DIM / 32u) + i;
#endif
  return k_cache4[sw / 4u][sw % 4u];
}
#endif

// Part t of the score of key (position, kv head) rh: elements t·KD .. of the key against qr.
fn key_part(rh: u32, t: u32) -> f32 {
  return key_part_of(rh, t, false);
}

fn key_part_of(rh: u32, t: u32, staged: bool) -> f32 {
#if KV8
#if K16
  // 16 codes (one 16-byte load) and their group's f16 scale (half of a word).
  let w = kq4(rh, t, staged);
  let s = unpack2x16float(kscale(rh, t / 4u, staged))[(t / 2u) % 2u];
  return s * ((dot(qr[0], i8x4(w.x)) + dot(qr[1], i8x4(w.y))) +
    (dot(qr[2], i8x4(w.z)) + dot(qr[3], i8x4(w.w))));
#else
  // 32 codes (two 16-byte loads) and their group's f16 scale (half of a word).
  let w0 = kq4(rh, 2u * t, staged);
  let w1 = kq4(rh, 2u * t + 1u, staged);
  let s = unpack2x16float(kscale(rh, t / 2u, staged))[t % 2u];
  let d = (dot(qr[0], i8x4(w0.x)) + dot(qr[1], i8x4(w0.y))) +
    (dot(qr[2], i8x4(w0.z)) + dot(qr[3], i8x4(w0.w))) +
    ((dot(qr[4], i8x4(w1.x)) + dot(qr[5], i8x4(w1.y))) +
      (dot(qr[6], i8x4(w1.z)) + dot(qr[7], i8x4(w1.w))));
  return s * d;
#endif
#else
#if KV4
#if K16
  // 16 nibbles (half of a 16-byte load) and the group's (scale, offset).
  let w4 = kq4(rh, t / 2u, staged);
  let w = select(w4.xy, w4.zw, (t & 1u) == 1u);
  let so = unpack2x16float(kscale(rh, t / 2u, staged));
  let m = 0x0F0F0F0Fu;
  let d = (dot(qr[0], bytes_f32(w.x & m)) + dot(qr[1], bytes_f32((w.x >> 4u) & m))) +
    (dot(qr[2], bytes_f32(w.y & m)) + dot(qr[3], bytes_f32((w.y >> 4u) & m)));
  return so.x * d + so.y * qsum;
#else
  // 32 nibbles (one 16-byte load) and the group's (scale, offset). Word i holds elements
  // 8i .. 8i+3 in its low nibbles and 8i+4 .. 8i+7 in its high ones.
  let w = kq4(rh, t, staged);
  let so = unpack2x16float(kscale(rh, t, staged));
  let m = 0x0F0F0F0Fu;
  let d = (dot(qr[0], bytes_f32(w.x & m)) + dot(qr[1], bytes_f32((w.x >> 4u) & m))) +
    (dot(qr[2], bytes_f32(w.y & m)) + dot(qr[3], bytes_f32((w.y >> 4u) & m))) +
    ((dot(qr[4], bytes_f32(w.z & m)) + dot(qr[5], bytes_f32((w.z >> 4u) & m))) +
      (dot(qr[6], bytes_f32(w.w & m)) + dot(qr[7], bytes_f32((w.w >> 4u) & m))));
  return so.x * d + so.y * qsum;
#endif
#else
#if K32
  // 32 f16: four 16-byte loads.
  let a = kword(rh, 4u * t, staged);
  let b = kword(rh, 4u * t + 1u, staged);
  let c = kword(rh, 4u * t + 2u, staged);
  let e = kword(rh, 4u * t + 3u, staged);
  return (dot(qr[0], f16x4(a.x, a.y)) + dot(qr[1], f16x4(a.z, a.w))) +
    (dot(qr[2], f16x4(b.x, b.y)) + dot(qr[3], f16x4(b.z, b.w))) +
    ((dot(qr[4], f16x4(c.x, c.y)) + dot(qr[5], f16x4(c.z, c.w))) +
      (dot(qr[6], f16x4(e.x, e.y)) + dot(qr[7], f16x4(e.z, e.w))));
#else
#if K16
  let a = kword(rh, 2u * t, staged);
  let b = kword(rh, 2u * t + 1u, staged);
  return (dot(qr[0], f16x4(a.x, a.y)) + dot(qr[1], f16x4(a.z, a.w))) +
    (dot(qr[2], f16x4(b.x, b.y)) + dot(qr[3], f16x4(b.z, b.w)));
#else
#if HD8
  let a = kword(rh, t, staged);
  return dot(qr[0], f16x4(a.x, a.y)) + dot(qr[1], f16x4(a.z, a.w));
#else
  return dot(qr[0].xy, unpack2x16float(k_cache[rh * (HEAD_DIM / 2u) + t]));
#endif
#endif
#endif
#endif
#endif
}

// Elements t·VD .. of the value at rh: codes (or f16 values) c0, c1 (, c2, c3), and (scale,
// offset) so; the value is so.x · c + so.y.
struct Value {
  c0: vec4<f32>,
  c1: vec4<f32>,
#if V16
  c2: vec4<f32>,
  c3: vec4<f32>,
#endif
  so: vec2<f32>,
}

fn value(rh: u32, t: u32) -> Value {
  return value_of(rh, t, false);
}

fn value_of(rh: u32, t: u32, staged: bool) -> Value {
#if V16
#if KV8
  var w = v_cache[rh * (HEAD_DIM / 16u) + t];
  let sw = p.scale_word + rh * (HEAD_DIM / 64u) + t / 4u;
  var sword = v_cache[sw / 4u][sw % 4u];
#if FUSE_NEW
  if (staged) {
    w = vec4<u32>(vwn[4u * t], vwn[4u * t + 1u], vwn[4u * t + 2u], vwn[4u * t + 3u]);
    sword = vsn[t / 4u];
  }
#endif
  let s = unpack2x16float(sword)[(t / 2u) % 2u];
  return Value(i8x4(w.x), i8x4(w.y), i8x4(w.z), i8x4(w.w), vec2<f32>(s, 0.0));
#else
  var w = v_cache[rh * (HEAD_DIM / 16u) + t];
  let sw = p.scale_word + rh * (HEAD_DIM / 32u) + t / 2u;
  var sword = v_cache[sw / 2u][sw % 2u];
#if FUSE_NEW
  if (staged) {
    w = vec2<u32>(vwn[2u * t], vwn[2u * t + 1u]);
    sword = vsn[t / 2u];
  }
#endif
  let so = unpack2x16float(sword);
  let m = 0x0F0F0F0Fu;
  return Value(
    bytes_f32(w.x & m),
    bytes_f32((w.x >> 4u) & m),
    bytes_f32(w.y & m),
    bytes_f32((w.y >> 4u) & m),
    so,
  );
#endif
#else
#if KV8
  var w = v_cache[rh * (HEAD_DIM / 8u) + t];
  let sw = p.scale_word + rh * (HEAD_DIM / 64u) + t / 8u;
  var sword = v_cache[sw / 2u][sw % 2u];
#if FUSE_NEW
  if (staged) {
    w = vec2<u32>(vwn[2u * t], vwn[2u * t + 1u]);
    sword = vsn[t / 8u];
  }
#endif
  let s = unpack2x16float(sword)[(t / 4u) % 2u];
  return Value(i8x4(w.x), i8x4(w.y), vec2<f32>(s, 0.0));
#else
#if KV4
  var w = v_cache[rh * (HEAD_DIM / 8u) + t];
  var sword = v_cache[p.scale_word + rh * (HEAD_DIM / 32u) + t / 4u];
#if FUSE_NEW
  if (staged) {
    w = vwn[t];
    sword = vsn[t / 4u];
  }
#endif
  let so = unpack2x16float(sword);
  return Value(bytes_f32(w & 0x0F0F0F0Fu), bytes_f32((w >> 4u) & 0x0F0F0F0Fu), so);
#else
#if HD8
  let w = vword(rh, t, staged);
  return Value(f16x4(w.x, w.y), f16x4(w.z, w.w), vec2<f32>(1.0, 0.0));
#else
  let w = unpack2x16float(v_cache[rh * (HEAD_DIM / 2u) + t]);
  return Value(vec4<f32>(w, 0.0, 0.0), vec4<f32>(0.0), vec2<f32>(1.0, 0.0));
#endif
#endif
#endif
#endif
}

// Softmax state over a range of keys: the running max (the same in every thread), and this
// thread's lane's running sum of weights and unnormalised output (elements t·VD ..).
struct Partial {
  m: f32,
  l: f32,
  a0: vec4<f32>,
  a1: vec4<f32>,
#if V16
  a2: vec4<f32>,
  a3: vec4<f32>,
#endif
}

fn weight(j: u32) -> f32 {
  return p_s[j / 4u][j % 4u];
}

// Adds weight pw of value v to r.
fn add_value(r: ptr<function, Partial>, pw: f32, v: Value) {
#if KVQ
  let ps = pw * v.so.x;
#if KV4
  let po = vec4<f32>(pw * v.so.y);
  (*r).a0 += ps * v.c0 + po;
  (*r).a1 += ps * v.c1 + po;
#if V16
  (*r).a2 += ps * v.c2 + po;
  (*r).a3 += ps * v.c3 + po;
#endif
#else
  (*r).a0 += ps * v.c0;
  (*r).a1 += ps * v.c1;
#if V16
  (*r).a2 += ps * v.c2;
  (*r).a3 += ps * v.c3;
#endif
#endif
#else
  (*r).a0 += pw * v.c0;
  (*r).a1 += pw * v.c1;
#endif
  (*r).l += pw;
}

#if FUSE_NEW
const NEWEST_STAGED: bool = true;
#else
const NEWEST_STAGED: bool = false;
#endif

// Attends query `item` (row * num_heads + head) to positions [j_begin, j_end). With `newest` the
// last of them (the query's own position, j_end - 1) is not in the cache yet: its key and value
// come from workgroup memory (FUSE_NEW's staging), in its place in the last block, so the sums
// run in the same order as when it is read from the cache. Called by the whole workgroup with
// uniform arguments (it has barriers).
fn attend_range(lid: u32, item: u32, j_begin: u32, j_end: u32, newest: bool) -> Partial {
  let kv_head = (item % p.num_heads) / (p.num_heads / p.num_kv_heads);
  let kvh = p.num_kv_heads;
  let tk = lid % tpk();
  let g = lid / tpk();
  let tv = lid % tpv();
  let lane = lid / tpv();
  let kg = kgroups();
  let nl = lanes();
  load_query(item, tk, lid);

  var r: Partial;
  r.m = NEG_BIG;
  let rh_new = (j_end - 1u) * kvh + kv_head;
  for (var j0 = j_begin; j0 < j_end; j0 += nb()) {
    let n_here = min(nb(), j_end - j0);
    // the keys and values read from the cache: all but the newest where it is staged
    let n_cached = select(n_here, n_here - 1u, newest && j0 + n_here == j_end);
    if (g < kg) {
      // Four of this thread's keys per step, their loads issued together.
      var j = g;
      for (; j + 3u * kg < n_cached; j += 4u * kg) {
        let rh = (j0 + j) * kvh + kv_head;
        let d0 = key_part(rh, tk);
        let d1 = key_part(rh + kg * kvh, tk);
        let d2 = key_part(rh + 2u * kg * kvh, tk);
        let d3 = key_part(rh + 3u * kg * kvh, tk);
        sh_set(j * tpk() + tk, d0);
        sh_set((j + kg) * tpk() + tk, d1);
        sh_set((j + 2u * kg) * tpk() + tk, d2);
        sh_set((j + 3u * kg) * tpk() + tk, d3);
      }
      for (; j < n_cached; j += kg) {
        sh_set(j * tpk() + tk, key_part((j0 + j) * kvh + kv_head, tk));
      }
      if (n_cached < n_here && g == 0u) {
        sh_set(n_cached * tpk() + tk, key_part_of(rh_new, tk, true));
      }
    }
    workgroupBarrier();
    var s = NEG_BIG;
    if (lid < n_here) {
      s = 0.0;
      for (var u = 0u; u < tpk(); u++) {
        s += sh_get(lid * tpk() + u);
      }
    }
    p_s[lid / 4u][lid % 4u] = s;
    workgroupBarrier();
    // The block's max: red_n() threads take a slice each, then every thread reads their maxima.
    let per = ATT_WG / red_n();
    if (lid < red_n()) {
      var mx = NEG_BIG;
      for (var i = lid * per; i < lid * per + per; i++) {
        mx = max(mx, p_s[i / 4u][i % 4u]);
      }
      red[lid] = mx;
    }
    workgroupBarrier();
    var m_new = r.m;
    for (var i = 0u; i < red_n(); i++) {
      m_new = max(m_new, red[i]);
    }
    p_s[lid / 4u][lid % 4u] = exp(s - m_new); // 0 past n_here: s is NEG_BIG there
    workgroupBarrier();
    let alpha = exp(r.m - m_new);
    r.m = m_new;
    if (lane < nl) {
      r.l *= alpha;
      r.a0 *= alpha;
      r.a1 *= alpha;
#if V16
      r.a2 *= alpha;
      r.a3 *= alpha;
#endif
      var j = lane;
      let step = nl * kvh;
      for (; j + 3u * nl < n_cached; j += 4u * nl) {
        let rh = (j0 + j) * kvh + kv_head;
        let v0 = value(rh, tv);
        let v1 = value(rh + step, tv);
        let v2 = value(rh + 2u * step, tv);
        let v3 = value(rh + 3u * step, tv);
        add_value(&r, weight(j), v0);
        add_value(&r, weight(j + nl), v1);
        add_value(&r, weight(j + 2u * nl), v2);
        add_value(&r, weight(j + 3u * nl), v3);
      }
      for (; j < n_cached; j += nl) {
        add_value(&r, weight(j), value((j0 + j) * kvh + kv_head, tv));
      }
      // a lane adds its positions in rising order: the newest, where it is this lane's, last
      if (j == n_cached && n_cached < n_here) {
        add_value(&r, weight(j), value_of(rh_new, tv, true));
      }
    }
  }
  return r;
}

// The lanes' outputs and sums of weights, added up: element d of the head is
// lane_sum(d) / weight_sum(), valid after the call for every d. Called by the whole workgroup
// after attend_range (its last block's barriers leave sh free).
fn gather_lanes(lid: u32, r: Partial) {
  let tv = lid % tpv();
  let lane = lid / tpv();
  if (lane < lanes()) {
    let base = lane * HEAD_DIM + tv * VD;
    for (var c = 0u; c < min(4u, VD); c++) {
      sh_set(base + c, r.a0[c]);
    }
    for (var c = 4u; c < min(8u, VD); c++) {
      sh_set(base + c, r.a1[c - 4u]);
    }
#if V16
    for (var c = 0u; c < 4u; c++) {
      sh_set(base + 8u + c, r.a2[c]);
      sh_set(base + 12u + c, r.a3[c]);
    }
#endif
    if (tv == 0u) {
      l_s[lane / 4u][lane % 4u] = r.l;
    }
  }
  workgroupBarrier();
}

fn lane_sum(d: u32) -> f32 {
  var a = 0.0;
  for (var l = 0u; l < lanes(); l++) {
    a += sh_get(l * HEAD_DIM + d);
  }
  return a;
}

fn weight_sum() -> f32 {
  var s = 0.0;
  for (var l = 0u; l < lanes(); l++) {
    s += l_s[l / 4u][l % 4u];
  }
  return s;
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
  let len = p.start_pos + pos_base[0] + item / p.num_heads + 1u;
#if FUSE_NEW
  new_pos = len - 1u;
  stage_new(lid, item, true);
#endif
  let r = attend_range(lid, item, window_start(len), len, NEWEST_STAGED);
  gather_lanes(lid, r);
  let l = weight_sum();
  for (var d = lid; d < HEAD_DIM; d += ATT_WG) {
    out[item * HEAD_DIM + d] = lane_sum(d) / l;
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
  let len = p.start_pos + pos_base[0] + item / p.num_heads + 1u;
  let range_begin = (flat % p.splits) * p.split_keys;
  let j_begin = min(len, max(window_start(len), range_begin));
  let j_end = max(j_begin, min(len, range_begin + p.split_keys));
  // An empty range (a short row of a prefill) leaves m = NEG_BIG, l = 0: weight 0 when merged.
  let newest = NEWEST_STAGED && j_end == len && j_begin < j_end;
#if FUSE_NEW
  new_pos = len - 1u;
  stage_new(lid, item, newest); // every range turns its query
#endif
  let r = attend_range(lid, item, j_begin, j_end, newest);
  gather_lanes(lid, r);
  let base = flat * (HEAD_DIM + 2u);
  if (lid == 0u) {
    partials_w[base] = r.m;
    partials_w[base + 1u] = weight_sum();
  }
  for (var d = lid; d < HEAD_DIM; d += ATT_WG) {
    partials_w[base + 2u + d] = lane_sum(d);
  }
}

// attend_combine: one workgroup per (row, head). Every range's (m, l) is read at once, a range
// per thread, and merged by a tree in workgroup memory; then each output pair is summed over the
// ranges by combine_parts() threads, four ranges' loads issued together, and the parts meet in
// workgroup memory. (A loop of one load per range at a time cost one memory round trip per range,
// three times over: most of a layer's attention at long context.)
var<workgroup> cml: array<vec2<f32>, ATT_WG>;

// Two softmax partials (max, sum of weights) as one.
fn merge_ml(a: vec2<f32>, b: vec2<f32>) -> vec2<f32> {
  let m = max(a.x, b.x);
  return vec2<f32>(m, a.y * exp(a.x - m) + b.y * exp(b.x - m));
}

// Threads that share one output pair's sum over the ranges.
fn combine_parts() -> u32 {
  return max(1u, ATT_WG / (HEAD_DIM / 2u));
}

@compute @workgroup_size(ATT_WG)
fn attend_combine(
  @builtin(local_invocation_index) lid: u32,
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
) {
  let item = wid.x + wid.y * nwg.x;
  if (item >= p.rows * p.num_heads) {
    return; // uniform for the workgroup
  }
  let hp = HEAD_DIM / 2u;
  let stride = hp + 1u; // a range's partial: (m, l), then hp pairs of acc
  let first = item * p.splits;
  var ml = vec2<f32>(NEG_BIG, 0.0);
  for (var s = lid; s < p.splits; s += ATT_WG) {
    ml = merge_ml(ml, partials[(first + s) * stride]);
  }
  cml[lid] = ml;
  workgroupBarrier();
  for (var w = ATT_WG / 2u; w > 0u; w /= 2u) {
    if (lid < w) {
      cml[lid] = merge_ml(cml[lid], cml[lid + w]);
    }
    workgroupBarrier();
  }
  let total = cml[0];
  workgroupBarrier(); // every thread has read total before cml is reused
  let parts = combine_parts();
  if (parts == 1u) {
    for (var i = lid; i < hp; i += ATT_WG) {
      out_c[item * hp + i] = range_sum(first, i, 0u, 1u, total.x) / total.y;
    }
  } else {
    // ATT_WG / parts ≥ hp threads per part: one output pair each
    let slots = ATT_WG / parts;
    let i = lid % slots;
    var a = vec2<f32>(0.0);
    if (i < hp) {
      a = range_sum(first, i, lid / slots, parts, total.x);
    }
    cml[lid] = a;
    workgroupBarrier();
    if (lid < hp) {
      var sum = cml[lid];
      for (var q = 1u; q < parts; q++) {
        sum += cml[q * slots + lid];
      }
      out_c[item * hp + lid] = sum / total.y;
    }
  }
}

// Output pair i summed over ranges part, part + parts, .. of the item whose first range is
// `first`, each weighted by exp(its max - m).
fn range_sum(first: u32, i: u32, part: u32, parts: u32, m: f32) -> vec2<f32> {
  let stride = HEAD_DIM / 2u + 1u;
  let step = parts * stride;
  var a = vec2<f32>(0.0);
  var s = part;
  for (; s + 3u * parts < p.splits; s += 4u * parts) {
    let b = (first + s) * stride;
    let m0 = partials[b].x;
    let m1 = partials[b + step].x;
    let m2 = partials[b + 2u * step].x;
    let m3 = partials[b + 3u * step].x;
    let a0 = partials[b + 1u + i];
    let a1 = partials[b + step + 1u + i];
    let a2 = partials[b + 2u * step + 1u + i];
    let a3 = partials[b + 3u * step + 1u + i];
    a += (a0 * exp(m0 - m) + a1 * exp(m1 - m)) + (a2 * exp(m2 - m) + a3 * exp(m3 - m));
  }
  for (; s < p.splits; s += parts) {
    let b = (first + s) * stride;
    a += partials[b + 1u + i] * exp(partials[b].x - m);
  }
  return a;
}
