// A small draft model's greedy proposals in one dispatch: one workgroup runs the whole forward
// pass, token after token, with every activation in workgroup memory. For drafts so small that a
// step of the layer-by-layer path is mostly dispatch overhead (the bundled 0.87M-parameter draft:
// ~22 dispatches a token), this makes a round's proposals one dispatch whatever their number.
// CPU twin: the reference forward (lib/model/reference.ts), whose greedy tokens the tests compare.
//
// Per call: the rows ids_in[0] at position pos[0] and ids_in[1] at pos[0] + 1, then count - 1
// steps that feed each argmax back; the count argmaxes go to out[out_word ..]. Every row's keys
// and values go into the draft's own f16 caches (attention.wgsl's layout: [max_seq, kv_heads,
// head_dim] as f16 pairs per u32), which its layer-by-layer path shares.
//
// Weights (w, u32 words): matrices transposed and in f16 pairs along the output features, so that
// thread n of a product reads word k · (N / 2) + n / 2 for input k: neighbouring threads,
// neighbouring words. RMSNorm weights and RoPE's inverse frequencies as f32 bits. The embedding
// is looked up in the LM head's table when they are tied (Params.embed == Params.head).
// Arithmetic is f32 throughout.

struct Params {
  hidden: u32,
  heads: u32,
  kv_heads: u32,
  head_dim: u32,
  ffn: u32,
  vocab: u32,
  layers: u32,
  count: u32, // proposals to make
  eps: f32,
  scale: f32, // 1 / sqrt(head_dim)
  out_word: u32, // where in `out` the proposals start
  embed: u32, // word offsets in w: embedding (transposed pairs), final norm, LM head, RoPE
  norm: u32,
  head: u32,
  inv_freq: u32,
  layer0: u32, // layer 0's block; layer l's is layer0 + l · layer_words
  layer_words: u32,
  // offsets within a layer's block
  attn_norm: u32,
  wq: u32,
  wk: u32,
  wv: u32,
  wo: u32,
  mlp_norm: u32,
  wgate: u32,
  wup: u32,
  wdown: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> w: array<u32>;
@group(0) @binding(2) var<storage, read> ids_in: array<u32>;
@group(0) @binding(3) var<storage, read> pos_in: array<u32>;
@group(0) @binding(4) var<storage, read_write> out: array<u32>;
@group(0) @binding(5) var<storage, read_write> k0: array<u32>;
@group(0) @binding(6) var<storage, read_write> v0: array<u32>;
#if L2
@group(0) @binding(7) var<storage, read_write> k1: array<u32>;
@group(0) @binding(8) var<storage, read_write> v1: array<u32>;
#endif
#if L3
@group(0) @binding(9) var<storage, read_write> k2: array<u32>;
@group(0) @binding(10) var<storage, read_write> v2: array<u32>;
#endif
#if L4
@group(0) @binding(11) var<storage, read_write> k3: array<u32>;
@group(0) @binding(12) var<storage, read_write> v3: array<u32>;
#endif

override WG: u32 = 256u; // threads, a power of two
// Workgroup memory, in f32: the residual stream, the normed input, q, k, v, attention's output,
// the MLP's hidden, a product's output, the scores (heads · positions), a reduction's WG slots
// and the partial sums of products split over K.
override WS: u32 = 4096u;
override X: u32 = 0u; // [hidden]
override XN: u32 = 0u; // [max(hidden, ffn)]: a product's input
override Q: u32 = 0u; // [heads · head_dim]
override KV: u32 = 0u; // [2 · kv_heads · head_dim]: k, then v
override ATT: u32 = 0u; // [heads · head_dim]
override HID: u32 = 0u; // [ffn]
override TMP: u32 = 0u; // [max(hidden, ffn)]
override SC: u32 = 0u; // [heads · max_seq]
override RED: u32 = 0u; // [WG]
override PART: u32 = 0u; // [2 · WG]: partial sums of a product's slices

var<workgroup> ws: array<f32, WS>;
var<workgroup> best_i: array<u32, WG>;

fn wf(i: u32) -> f32 {
  return bitcast<f32>(w[i]);
}

fn k_store(l: u32, i: u32, v: u32) {
  switch l {
#if L2
    case 1u: { k1[i] = v; }
#endif
#if L3
    case 2u: { k2[i] = v; }
#endif
#if L4
    case 3u: { k3[i] = v; }
#endif
    default: { k0[i] = v; }
  }
}

fn v_store(l: u32, i: u32, v: u32) {
  switch l {
#if L2
    case 1u: { v1[i] = v; }
#endif
#if L3
    case 2u: { v2[i] = v; }
#endif
#if L4
    case 3u: { v3[i] = v; }
#endif
    default: { v0[i] = v; }
  }
}

fn k_load(l: u32, i: u32) -> vec2<f32> {
  switch l {
#if L2
    case 1u: { return unpack2x16float(k1[i]); }
#endif
#if L3
    case 2u: { return unpack2x16float(k2[i]); }
#endif
#if L4
    case 3u: { return unpack2x16float(k3[i]); }
#endif
    default: { return unpack2x16float(k0[i]); }
  }
}

fn v_load(l: u32, i: u32) -> vec2<f32> {
  switch l {
#if L2
    case 1u: { return unpack2x16float(v1[i]); }
#endif
#if L3
    case 2u: { return unpack2x16float(v2[i]); }
#endif
#if L4
    case 3u: { return unpack2x16float(v3[i]); }
#endif
    default: { return unpack2x16float(v0[i]); }
  }
}

// The sum (or max) of every thread's v, in every thread. Call in uniform control flow.
fn reduce(lid: u32, v: f32, take_max: bool) -> f32 {
  workgroupBarrier(); // the slots' last readers are done
  ws[RED + lid] = v;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s >>= 1u) {
    if (lid < s) {
      let a = ws[RED + lid];
      let b = ws[RED + lid + s];
      ws[RED + lid] = select(a + b, max(a, b), take_max);
    }
    workgroupBarrier();
  }
  return ws[RED];
}

// ws[dst + i] = ws[src + i] · norm weight[i] / rms(ws[src ..]) for i < hidden.
fn rmsnorm(lid: u32, src: u32, dst: u32, weight: u32) {
  var s = 0.0;
  for (var i = lid; i < p.hidden; i += WG) {
    let v = ws[src + i];
    s += v * v;
  }
  let inv = inverseSqrt(reduce(lid, s, false) / f32(p.hidden) + p.eps);
  for (var i = lid; i < p.hidden; i += WG) {
    ws[dst + i] = ws[src + i] * inv * wf(weight + i);
  }
  workgroupBarrier();
}

// Σ_k W[2j .. 2j + 1, k] · ws[src + k] over k in [k0, k1): eight loads in flight at a time,
// in named values (the loop is bound by the latency of its loads, not their bandwidth; a private
// array indexed in the loop can land in local memory).
fn pair_dot(at: u32, half: u32, j: u32, src: u32, k0: u32, k1: u32) -> vec2<f32> {
  var a = vec2<f32>(0.0);
  var b = vec2<f32>(0.0);
  var k = k0;
  for (; k + 8u <= k1; k += 8u) {
    let i = at + k * half + j;
    let w0 = w[i];
    let w1 = w[i + half];
    let w2 = w[i + 2u * half];
    let w3 = w[i + 3u * half];
    let w4 = w[i + 4u * half];
    let w5 = w[i + 5u * half];
    let w6 = w[i + 6u * half];
    let w7 = w[i + 7u * half];
    a += unpack2x16float(w0) * ws[src + k] + unpack2x16float(w2) * ws[src + k + 2u] +
      unpack2x16float(w4) * ws[src + k + 4u] + unpack2x16float(w6) * ws[src + k + 6u];
    b += unpack2x16float(w1) * ws[src + k + 1u] + unpack2x16float(w3) * ws[src + k + 3u] +
      unpack2x16float(w5) * ws[src + k + 5u] + unpack2x16float(w7) * ws[src + k + 7u];
  }
  for (; k < k1; k++) {
    a += unpack2x16float(w[at + k * half + j]) * ws[src + k];
  }
  return a + b;
}

// pair_dot for pairs j0 and j1 at once (.xy, .zw): sixteen loads in flight.
fn pair_dot2(at: u32, half: u32, j0: u32, j1: u32, src: u32, k_in: u32) -> vec4<f32> {
  var a = vec4<f32>(0.0);
  var b = vec4<f32>(0.0);
  var k = 0u;
  for (; k + 8u <= k_in; k += 8u) {
    let i = at + k * half;
    let x0 = ws[src + k];
    let x1 = ws[src + k + 1u];
    let x2 = ws[src + k + 2u];
    let x3 = ws[src + k + 3u];
    let x4 = ws[src + k + 4u];
    let x5 = ws[src + k + 5u];
    let x6 = ws[src + k + 6u];
    let x7 = ws[src + k + 7u];
    let u0 = w[i + j0];
    let u1 = w[i + half + j0];
    let u2 = w[i + 2u * half + j0];
    let u3 = w[i + 3u * half + j0];
    let u4 = w[i + 4u * half + j0];
    let u5 = w[i + 5u * half + j0];
    let u6 = w[i + 6u * half + j0];
    let u7 = w[i + 7u * half + j0];
    let v0 = w[i + j1];
    let v1 = w[i + half + j1];
    let v2 = w[i + 2u * half + j1];
    let v3 = w[i + 3u * half + j1];
    let v4 = w[i + 4u * half + j1];
    let v5 = w[i + 5u * half + j1];
    let v6 = w[i + 6u * half + j1];
    let v7 = w[i + 7u * half + j1];
    a += vec4<f32>(unpack2x16float(u0), unpack2x16float(v0)) * x0 +
      vec4<f32>(unpack2x16float(u2), unpack2x16float(v2)) * x2 +
      vec4<f32>(unpack2x16float(u4), unpack2x16float(v4)) * x4 +
      vec4<f32>(unpack2x16float(u6), unpack2x16float(v6)) * x6;
    b += vec4<f32>(unpack2x16float(u1), unpack2x16float(v1)) * x1 +
      vec4<f32>(unpack2x16float(u3), unpack2x16float(v3)) * x3 +
      vec4<f32>(unpack2x16float(u5), unpack2x16float(v5)) * x5 +
      vec4<f32>(unpack2x16float(u7), unpack2x16float(v7)) * x7;
  }
  for (; k < k_in; k++) {
    let i = at + k * half;
    a += vec4<f32>(unpack2x16float(w[i + j0]), unpack2x16float(w[i + j1])) * ws[src + k];
  }
  return a + b;
}

// ws[dst + n] (+)= Σ_k W[n, k] · ws[src + k] for n < n_out, W transposed in pairs at word `at`.
// Fewer output pairs than threads: the threads split K into slices, and the slices' sums meet in
// ws[PART ..].
fn product(lid: u32, at: u32, n_out: u32, k_in: u32, src: u32, dst: u32, accumulate: bool) {
  let half = n_out / 2u;
  let slices = max(1u, WG / half);
  let per = (k_in + slices - 1u) / slices;
  let j = lid % half;
  let sl = lid / half;
  if (slices > 1u) {
    var v = vec2<f32>(0.0);
    if (sl < slices) {
      v = pair_dot(at, half, j, src, min(k_in, sl * per), min(k_in, sl * per + per));
    }
    ws[PART + 2u * lid] = v.x;
    ws[PART + 2u * lid + 1u] = v.y;
    workgroupBarrier();
    if (lid < half) {
      var acc = vec2<f32>(0.0);
      for (var t = 0u; t < slices; t++) {
        acc += vec2<f32>(ws[PART + 2u * (t * half + lid)], ws[PART + 2u * (t * half + lid) + 1u]);
      }
      if (accumulate) {
        ws[dst + 2u * lid] += acc.x;
        ws[dst + 2u * lid + 1u] += acc.y;
      } else {
        ws[dst + 2u * lid] = acc.x;
        ws[dst + 2u * lid + 1u] = acc.y;
      }
    }
  } else {
    for (var jj = lid; jj < half; jj += WG) {
      let acc = pair_dot(at, half, jj, src, 0u, k_in);
      if (accumulate) {
        ws[dst + 2u * jj] += acc.x;
        ws[dst + 2u * jj + 1u] += acc.y;
      } else {
        ws[dst + 2u * jj] = acc.x;
        ws[dst + 2u * jj + 1u] = acc.y;
      }
    }
  }
  workgroupBarrier();
}

#include "common/rope_angle.wgsl"

// The rotation of pair i at pos, as rope.wgsl's `turn`.
fn turn(pos: u32, i: u32) -> vec2<f32> {
  return rotation(pos, wf(p.inv_freq + i));
}

// RoPE ("rotate half") on `heads` heads at ws[at ..].
fn rope(lid: u32, at: u32, heads: u32, pos: u32) {
  let hd2 = p.head_dim / 2u;
  for (var idx = lid; idx < heads * hd2; idx += WG) {
    let i = idx % hd2;
    let lo = at + (idx / hd2) * p.head_dim + i;
    let cs = turn(pos, i);
    let a = ws[lo];
    let b = ws[lo + hd2];
    ws[lo] = a * cs.x - b * cs.y;
    ws[lo + hd2] = b * cs.x + a * cs.y;
  }
}

// One token through every layer: embeds `tok`, leaves the final residual in ws[X ..].
fn layers(lid: u32, tok: u32, pos: u32) {
  let hd = p.head_dim;
  let nq = p.heads * hd;
  let nkv = p.kv_heads * hd;
  // the embedding row: element k of feature `tok` in the transposed pairs
  let eh = p.vocab / 2u;
  for (var k = lid; k < p.hidden; k += WG) {
    ws[X + k] = unpack2x16float(w[p.embed + k * eh + tok / 2u])[tok % 2u];
  }
  workgroupBarrier();
  let len = pos + 1u;
  for (var l = 0u; l < p.layers; l++) {
    let b = p.layer0 + l * p.layer_words;
    rmsnorm(lid, X, XN, b + p.attn_norm);
    product(lid, b + p.wq, nq, p.hidden, XN, Q, false);
    product(lid, b + p.wk, nkv, p.hidden, XN, KV, false);
    product(lid, b + p.wv, nkv, p.hidden, XN, KV + nkv, false);
    rope(lid, Q, p.heads, pos);
    rope(lid, KV, p.kv_heads, pos);
    workgroupBarrier();
    // this position's key and value into the cache, as f16 pairs
    for (var i = lid; i < nkv / 2u; i += WG) {
      let dst = pos * (nkv / 2u) + i;
      k_store(l, dst, pack2x16float(vec2<f32>(ws[KV + 2u * i], ws[KV + 2u * i + 1u])));
      v_store(l, dst, pack2x16float(vec2<f32>(ws[KV + nkv + 2u * i], ws[KV + nkv + 2u * i + 1u])));
    }
    storageBarrier();
    workgroupBarrier();
    // scores of every head against positions 0 ..= pos
    let group = p.heads / p.kv_heads;
    for (var idx = lid; idx < p.heads * len; idx += WG) {
      let h = idx / len;
      let j = idx % len;
      let kb = (j * p.kv_heads + h / group) * (hd / 2u);
      var s0 = 0.0;
      var s1 = 0.0;
      let qb = Q + h * hd;
      // eight words of the key in flight, then their dot products
      var d = 0u;
      for (; d + 8u <= hd / 2u; d += 8u) {
        let k0 = k_load(l, kb + d);
        let k1 = k_load(l, kb + d + 1u);
        let k2 = k_load(l, kb + d + 2u);
        let k3 = k_load(l, kb + d + 3u);
        let k4 = k_load(l, kb + d + 4u);
        let k5 = k_load(l, kb + d + 5u);
        let k6 = k_load(l, kb + d + 6u);
        let k7 = k_load(l, kb + d + 7u);
        let q = qb + 2u * d;
        s0 += dot(vec2<f32>(ws[q], ws[q + 1u]), k0) + dot(vec2<f32>(ws[q + 4u], ws[q + 5u]), k2) +
          dot(vec2<f32>(ws[q + 8u], ws[q + 9u]), k4) + dot(vec2<f32>(ws[q + 12u], ws[q + 13u]), k6);
        s1 += dot(vec2<f32>(ws[q + 2u], ws[q + 3u]), k1) + dot(vec2<f32>(ws[q + 6u], ws[q + 7u]), k3) +
          dot(vec2<f32>(ws[q + 10u], ws[q + 11u]), k5) + dot(vec2<f32>(ws[q + 14u], ws[q + 15u]), k7);
      }
      for (; d < hd / 2u; d++) {
        s0 += dot(vec2<f32>(ws[qb + 2u * d], ws[qb + 2u * d + 1u]), k_load(l, kb + d));
      }
      ws[SC + idx] = (s0 + s1) * p.scale;
    }
    for (var h = 0u; h < p.heads; h++) {
      var m = -3.0e38;
      for (var j = lid; j < len; j += WG) {
        m = max(m, ws[SC + h * len + j]);
      }
      m = reduce(lid, m, true);
      var sum = 0.0;
      for (var j = lid; j < len; j += WG) {
        let e = exp(ws[SC + h * len + j] - m);
        ws[SC + h * len + j] = e;
        sum += e;
      }
      sum = reduce(lid, sum, false);
      // weights normalised here, so the value sums below need no more
      for (var j = lid; j < len; j += WG) {
        ws[SC + h * len + j] /= sum;
      }
    }
    workgroupBarrier();
    // each value pair's weighted sum over positions, in slices of positions as in `product`
    let pairs = nq / 2u;
    let vs = max(1u, WG / pairs);
    let vper = (len + vs - 1u) / vs;
    for (var t = lid; t < pairs * vs; t += WG) {
      let o = t % pairs;
      let sl = t / pairs;
      let h = (2u * o) / hd;
      let vb = (h / group) * (hd / 2u) + ((2u * o) % hd) / 2u;
      let j1 = min(len, sl * vper + vper);
      var acc = vec2<f32>(0.0);
      var acc2 = vec2<f32>(0.0);
      var j = min(len, sl * vper);
      let row = p.kv_heads * (hd / 2u); // words per position
      for (; j + 4u <= j1; j += 4u) {
        let v0 = v_load(l, j * row + vb);
        let v1 = v_load(l, (j + 1u) * row + vb);
        let v2 = v_load(l, (j + 2u) * row + vb);
        let v3 = v_load(l, (j + 3u) * row + vb);
        acc += ws[SC + h * len + j] * v0 + ws[SC + h * len + j + 2u] * v2;
        acc2 += ws[SC + h * len + j + 1u] * v1 + ws[SC + h * len + j + 3u] * v3;
      }
      for (; j < j1; j++) {
        acc += ws[SC + h * len + j] * v_load(l, j * row + vb);
      }
      acc += acc2;
      if (vs > 1u) {
        ws[PART + 2u * t] = acc.x;
        ws[PART + 2u * t + 1u] = acc.y;
      } else {
        ws[ATT + 2u * o] = acc.x;
        ws[ATT + 2u * o + 1u] = acc.y;
      }
    }
    workgroupBarrier();
    if (vs > 1u) {
      for (var o = lid; o < pairs; o += WG) {
        var acc = vec2<f32>(0.0);
        for (var t = 0u; t < vs; t++) {
          acc += vec2<f32>(ws[PART + 2u * (t * pairs + o)], ws[PART + 2u * (t * pairs + o) + 1u]);
        }
        ws[ATT + 2u * o] = acc.x;
        ws[ATT + 2u * o + 1u] = acc.y;
      }
      workgroupBarrier();
    }
    product(lid, b + p.wo, p.hidden, nq, ATT, X, true);
    rmsnorm(lid, X, XN, b + p.mlp_norm);
    product(lid, b + p.wgate, p.ffn, p.hidden, XN, HID, false);
    product(lid, b + p.wup, p.ffn, p.hidden, XN, TMP, false);
    for (var i = lid; i < p.ffn; i += WG) {
      let g = ws[HID + i];
      ws[HID + i] = g / (1.0 + exp(-g)) * ws[TMP + i];
    }
    workgroupBarrier();
    product(lid, b + p.wdown, p.hidden, p.ffn, HID, X, true);
  }
}

// The argmax of the LM head over the final norm of ws[X ..]: the first index of the largest
// logit (argmax.wgsl's order), in every thread.
fn head_argmax(lid: u32) -> u32 {
  rmsnorm(lid, X, XN, p.norm);
  let half = p.vocab / 2u;
  var bv = -3.0e38;
  var bi = 0u;
  // indices rise within a thread: strict > keeps the first of equals
  var j = lid;
  for (; j + WG < half; j += 2u * WG) {
    let acc = pair_dot2(p.head, half, j, j + WG, XN, p.hidden);
    if (acc.x > bv) {
      bv = acc.x;
      bi = 2u * j;
    }
    if (acc.y > bv) {
      bv = acc.y;
      bi = 2u * j + 1u;
    }
    if (acc.z > bv) {
      bv = acc.z;
      bi = 2u * (j + WG);
    }
    if (acc.w > bv) {
      bv = acc.w;
      bi = 2u * (j + WG) + 1u;
    }
  }
  for (; j < half; j += WG) {
    let acc = pair_dot(p.head, half, j, XN, 0u, p.hidden);
    if (acc.x > bv) {
      bv = acc.x;
      bi = 2u * j;
    }
    if (acc.y > bv) {
      bv = acc.y;
      bi = 2u * j + 1u;
    }
  }
  workgroupBarrier();
  ws[RED + lid] = bv;
  best_i[lid] = bi;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s >>= 1u) {
    if (lid < s) {
      let v = ws[RED + lid + s];
      let i = best_i[lid + s];
      if (v > ws[RED + lid] || (v == ws[RED + lid] && i < best_i[lid])) {
        ws[RED + lid] = v;
        best_i[lid] = i;
      }
    }
    workgroupBarrier();
  }
  let best = best_i[0];
  workgroupBarrier();
  return best;
}

@compute @workgroup_size(WG)
fn propose(@builtin(local_invocation_index) lid: u32) {
  let pos = pos_in[0];
  layers(lid, min(ids_in[0], p.vocab - 1u), pos);
  var tok = min(ids_in[1], p.vocab - 1u);
  for (var i = 0u; i < p.count; i++) {
    layers(lid, tok, pos + 1u + i);
    tok = head_argmax(lid);
    if (lid == 0u) {
      out[p.out_word + i] = tok;
    }
  }
}
