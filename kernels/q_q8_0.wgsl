// Q8_0 (llama.cpp): y[rows, N] = x[rows, K] · Wᵀ with W as int8 codes in groups of 32 along
// K, each group with an f16 scale d; W[n, k] = code · d. CPU twin: lib/quant/q8_0.ts.
//
// Layout: codes row-major, four per u32 (element 4i lowest byte), K a multiple of 32, so a
// group is 8 words (two vec4<u32>) and starts a new row at every K / 32 groups; scales are f16
// pairs, group 2i in the low half of word i. Activations stay f32 (as WebGPU ggml does; the CPU
// llama.cpp path quantizes them).
//
// gemv_rows (1 to 8 rows: the one-row product of decode too): GEMV_TPR threads per output
// feature stride over its groups: Σ x · code in f32 per group, times d. gemm_outer (prefill):
// common/gemm_outer.wgsl, weights dequantized (code · d) in f32. A stack of layers (q, k, v;
// gate, up) routes its features to each layer's output (ROUTE2/ROUTE3); a decode step's one-row
// products may read silu(x) · up or rmsnorm(x) · w as they stage x and add to the residual
// stream (SWIGLU, NORM, RESID below), as the 4-bit gemv does.
//
// With F16, gemv_rows takes code · d as f16 (d is an f16 value, codes are exact in f16) against
// x rounded to f16 in 4-term f16 dots, summed in f32. Scaling the codes before the dot keeps the
// f16 partial sums in range (Σ x · code could pass 65504).
//
// One row has no kernel of its own: on an H200 a 7B decode step's 224 products took 8.9 ms of GPU
// time in a one-row gemv that read each group's 32 activations as f32 in every lane, 5.7 ms in
// gemv_rows at one row, which stages each step's x in f16 once per workgroup.
//
// Weights larger than one binding come in chunks of whole rows: `codes` is that chunk's rows;
// the scales are bound whole.

#if F16
enable f16;
alias T = f16;
#else
alias T = f32;
#endif

struct Params {
  rows: u32,
  n_total: u32, // N: the row stride of y
  k: u32,       // K, a multiple of 32
  n_start: u32, // first output feature of this chunk
  n_count: u32, // output features in this chunk
  split1: u32,  // ROUTE2/ROUTE3: first feature that goes to y2
  split2: u32,  // ROUTE3: first feature that goes to y3
  eps: f32,     // NORM: RMSNorm's epsilon
}

@group(0) @binding(0) var<uniform> p: Params;

@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> x4: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> codes: array<u32>; // this chunk's rows
@group(0) @binding(2) var<storage, read> codes4: array<vec4<u32>>;
@group(0) @binding(3) var<storage, read> scales: array<u32>; // all groups, f16 pairs
@group(0) @binding(4) var<storage, read_write> y: array<f32>;

// Several layers' weights stacked in one matrix (q, k, v; gate, up): features [0, split1) go to
// y, [split1, split2) to y2 and the rest to y3 (ROUTE3), so one dispatch serves two or three
// products (stack_store.wgsl).
#if ROUTE2
@group(0) @binding(5) var<storage, read_write> y2: array<f32>;
#endif
#if ROUTE3
@group(0) @binding(5) var<storage, read_write> y2: array<f32>;
@group(0) @binding(6) var<storage, read_write> y3: array<f32>;
#endif

// The one-row variants of a decode step (ROWS = 1), as the 4-bit gemv's: SWIGLU and NORM read
// their input as x is staged (common/gemv_input.wgsl), RESID adds the product to y (the residual
// stream) in its epilogue (stack_store.wgsl). Not with each other but SWIGLU with RESID; NORM's
// weight follows the outputs.
#if SWIGLU
@group(0) @binding(5) var<storage, read> up4: array<vec4<f32>>;
#endif
#if NORM
#if ROUTE2
@group(0) @binding(6) var<storage, read> norm_w4: array<vec4<f32>>;
#else
#if ROUTE3
@group(0) @binding(7) var<storage, read> norm_w4: array<vec4<f32>>;
#else
@group(0) @binding(5) var<storage, read> norm_w4: array<vec4<f32>>;
#endif
#endif
var<private> norm_inv: f32;
// inverse_rms's sums (common/gemv_input.wgsl)
var<workgroup> partial: array<f32, GEMV_WG>;
#endif

#include "common/gemv_input.wgsl"

fn scale_of(g: u32) -> f32 {
  return unpack2x16float(scales[g / 2u])[g % 2u];
}

override GEMV_WG: u32 = 256u; // threads per workgroup
override GEMV_TPR: u32 = 32u; // threads per output feature: a power of two dividing GEMV_WG
override ROWS: u32 = 0u; // gemv_rows: the row count it was made for, or 0 (row_sums.wgsl)

// ---------------------------------------------------------------------------------------------
// gemm (several rows, prefill): the register-blocked outer product of common/gemm_outer.wgsl,
// f32 arithmetic on either path (K % 32 == 0 always holds). Eight weights are two code words of one group and its scale, as code · d in f32.

fn outer_prologue(lid: u32) {}

fn outer_w8(n: u32, k: u32) -> OuterW8 {
  let i = (n * p.k + k) / 4u;
  let d = scale_of(((p.n_start + n) * p.k + k) / 32u);
  return OuterW8(vec4<f32>(unpack4xI8(codes[i])) * d, vec4<f32>(unpack4xI8(codes[i + 1u])) * d);
}

#include "common/gemm_outer.wgsl"

// ---------------------------------------------------------------------------------------------
// gemv_rows: 1 to MAX_ROWS activation rows (p.rows), each group's codes and scale read once for
// all rows, FPT output features per lane group (4, or 2 with FPT2) so that each x load serves
// FPT weight rows. Each feature of each row is summed as if it were alone (same lanes, group
// order, word order and reduction tree at any p.rows), so a row's output is the one a decode
// step computes. A row's sums are one vector (acc0..acc7 written out, not a private array
// indexed in loops).
//
// With F16, the codes of a group are turned into code · d in f16 once for all rows, and each
// step's x of every row (GEMV_TPR groups of 32) is rounded to f16 once per workgroup into
// workgroup memory.

const MAX_ROWS: u32 = 8u;

// FPT, RowSums, row_sums_store; rows_red, rows_pass_begin, lane_tree.
#include "common/stack_store.wgsl"
#include "common/row_sums.wgsl"
#include "common/gemv_rows_store.wgsl"

// One row's 32 activations of a group.
struct XS {
  x0: vec4<T>,
  x1: vec4<T>,
  x2: vec4<T>,
  x3: vec4<T>,
  x4: vec4<T>,
  x5: vec4<T>,
  x6: vec4<T>,
  x7: vec4<T>,
}

#if F16
// Vec4 q (0..7) of group j of the step, row r, at xq[(8r + q) · GEMV_TPR + j].
var<workgroup> xq: array<vec4<f16>, 8u * MAX_ROWS * GEMV_TPR>;

fn xs_at(r: u32, j: u32, g: u32) -> XS {
  let i = 8u * r * GEMV_TPR + j;
  let t = GEMV_TPR;
  return XS(xq[i], xq[i + t], xq[i + 2u * t], xq[i + 3u * t], xq[i + 4u * t], xq[i + 5u * t],
    xq[i + 6u * t], xq[i + 7u * t]);
}

// One feature's group as the product takes it: code · d in f16.
struct QF {
  w0: vec4<f16>,
  w1: vec4<f16>,
  w2: vec4<f16>,
  w3: vec4<f16>,
  w4: vec4<f16>,
  w5: vec4<f16>,
  w6: vec4<f16>,
  w7: vec4<f16>,
}

fn cw(word: u32, h: f16) -> vec4<f16> {
  return vec4<f16>(vec4<f32>(unpack4xI8(word))) * h;
}

fn qf(a: vec4<u32>, c: vec4<u32>, d: f32) -> QF {
  let h = f16(d);
  return QF(cw(a.x, h), cw(a.y, h), cw(a.z, h), cw(a.w, h), cw(c.x, h), cw(c.y, h), cw(c.z, h),
    cw(c.w, h));
}

// A group's sum: the eight 4-term f16 dots added left to right in f32.
fn gsum(x: XS, q: QF) -> f32 {
  return f32(dot(x.x0, q.w0)) + f32(dot(x.x1, q.w1)) + f32(dot(x.x2, q.w2)) +
    f32(dot(x.x3, q.w3)) + f32(dot(x.x4, q.w4)) + f32(dot(x.x5, q.w5)) + f32(dot(x.x6, q.w6)) +
    f32(dot(x.x7, q.w7));
}
#else
fn xs_at(r: u32, j: u32, g: u32) -> XS {
  let i = r * (p.k / 4u) + 8u * g;
  return XS(x4[i], x4[i + 1u], x4[i + 2u], x4[i + 3u], x4[i + 4u], x4[i + 5u], x4[i + 6u],
    x4[i + 7u]);
}

struct QF {
  a: vec4<u32>,
  c: vec4<u32>,
}

fn qf(a: vec4<u32>, c: vec4<u32>, d: f32) -> QF {
  return QF(a, c);
}

fn cv(word: u32) -> vec4<f32> {
  return vec4<f32>(unpack4xI8(word));
}

// A group's sum before the scale: Σ x · code left to right in f32.
fn gsum(x: XS, q: QF) -> f32 {
  return dot(x.x0, cv(q.a.x)) + dot(x.x1, cv(q.a.y)) + dot(x.x2, cv(q.a.z)) +
    dot(x.x3, cv(q.a.w)) + dot(x.x4, cv(q.c.x)) + dot(x.x5, cv(q.c.y)) + dot(x.x6, cv(q.c.z)) +
    dot(x.x7, cv(q.c.w));
}
#endif

// The group's codes (and scale) of each of the FPT features.
#if FPT2
struct QG {
  q0: QF,
  q1: QF,
  d: vec2<f32>,
}

struct Raw {
  a0: vec4<u32>,
  c0: vec4<u32>,
  a1: vec4<u32>,
  c1: vec4<u32>,
}

fn raw_at(cb: vec4<u32>, g: u32) -> Raw {
  return Raw(codes4[cb.x + 2u * g], codes4[cb.x + 2u * g + 1u], codes4[cb.y + 2u * g],
    codes4[cb.y + 2u * g + 1u]);
}

fn qg_of(w: Raw, sb: vec4<u32>, g: u32) -> QG {
  let d = vec2<f32>(scale_of(sb.x + g), scale_of(sb.y + g));
  return QG(qf(w.a0, w.c0, d.x), qf(w.a1, w.c1, d.y), d);
}

fn gsums(x: XS, q: QG) -> RowSums {
  return RowSums(gsum(x, q.q0), gsum(x, q.q1));
}
#else
struct QG {
  q0: QF,
  q1: QF,
  q2: QF,
  q3: QF,
  d: vec4<f32>,
}

struct Raw {
  a0: vec4<u32>,
  c0: vec4<u32>,
  a1: vec4<u32>,
  c1: vec4<u32>,
  a2: vec4<u32>,
  c2: vec4<u32>,
  a3: vec4<u32>,
  c3: vec4<u32>,
}

fn raw_at(cb: vec4<u32>, g: u32) -> Raw {
  return Raw(codes4[cb.x + 2u * g], codes4[cb.x + 2u * g + 1u], codes4[cb.y + 2u * g],
    codes4[cb.y + 2u * g + 1u], codes4[cb.z + 2u * g], codes4[cb.z + 2u * g + 1u],
    codes4[cb.w + 2u * g], codes4[cb.w + 2u * g + 1u]);
}

fn qg_of(w: Raw, sb: vec4<u32>, g: u32) -> QG {
  let d = vec4<f32>(scale_of(sb.x + g), scale_of(sb.y + g), scale_of(sb.z + g),
    scale_of(sb.w + g));
  return QG(qf(w.a0, w.c0, d.x), qf(w.a1, w.c1, d.y), qf(w.a2, w.c2, d.z), qf(w.a3, w.c3, d.w), d);
}

fn gsums(x: XS, q: QG) -> RowSums {
  return RowSums(gsum(x, q.q0), gsum(x, q.q1), gsum(x, q.q2), gsum(x, q.q3));
}
#endif

// Row r's group g (j: its index in the step) against the features' groups.
fn row_group(r: u32, j: u32, g: u32, q: QG) -> RowSums {
  let s = gsums(xs_at(r, j, g), q);
#if F16
  return s; // d is already inside
#else
  return s * q.d;
#endif
}

#include "common/rows_pass.wgsl"


@compute @workgroup_size(GEMV_WG)
fn gemv_rows(
  @builtin(local_invocation_index) lid: u32,
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
) {
  let lane = lid % GEMV_TPR;
  let nw = (wid.x + wid.y * nwg.x) * (GEMV_WG / GEMV_TPR) * FPT;
  let n0 = nw + (lid / GEMV_TPR) * FPT;
  let live = n0 < p.n_count;
  let last = p.n_count - 1u; // features past the chunk read its last row, never stored
  let nf = vec4<u32>(min(n0, last), min(n0 + 1u, last), min(n0 + 2u, last), min(n0 + 3u, last));
  let groups = p.k / 32u;
  let cb = 2u * nf * groups; // each feature's first vec4 of codes
  let sb = (vec4<u32>(p.n_start) + nf) * groups; // and first scale
#if NORM
  norm_inv = inverse_rms(lid);
#endif
  var acc0 = RowSums();
  var acc1 = RowSums();
  var acc2 = RowSums();
  var acc3 = RowSums();
  var acc4 = RowSums();
  var acc5 = RowSums();
  var acc6 = RowSums();
  var acc7 = RowSums();
  for (var t0 = 0u; t0 < groups; t0 += GEMV_TPR) { // uniform: every thread reaches the barriers
    let g = t0 + lane;
    // The group's codes, loaded before x is staged so that both are in flight together (past K:
    // the row's last group, never used); turned into values after.
#if !NOPREFETCH
    let raw = raw_at(cb, min(g, groups - 1u));
#endif
#if F16
    workgroupBarrier(); // the previous step's x has been read
    for (var i = lid; i < 8u * nrows() * GEMV_TPR; i += GEMV_WG) {
      let r = i / (8u * GEMV_TPR);
      let j = (i / 8u) % GEMV_TPR;
      let q = i % 8u;
      var v = vec4<f32>(0.0);
      if (t0 + j < groups) {
        v = x_at(r * (p.k / 4u) + 8u * (t0 + j) + q);
      }
      xq[(8u * r + q) * GEMV_TPR + j] = vec4<f16>(v);
    }
    workgroupBarrier();
#endif
#if NOPREFETCH
    let raw = raw_at(cb, min(g, groups - 1u));
#endif
    if (live && g < groups) {
      let q = qg_of(raw, sb, g);
      acc0 += row_group(0u, lane, g, q);
      if (nrows() > 1u) {
        acc1 += row_group(1u, lane, g, q);
      }
      if (nrows() > 2u) {
        acc2 += row_group(2u, lane, g, q);
      }
      if (nrows() > 3u) {
        acc3 += row_group(3u, lane, g, q);
      }
      if (nrows() > 4u) {
        acc4 += row_group(4u, lane, g, q);
      }
      if (nrows() > 5u) {
        acc5 += row_group(5u, lane, g, q);
      }
      if (nrows() > 6u) {
        acc6 += row_group(6u, lane, g, q);
      }
      if (nrows() > 7u) {
        acc7 += row_group(7u, lane, g, q);
      }
    }
  }
  rows_pass(lid, nw, 0u, acc0, acc1);
  if (nrows() > 2u) {
    rows_pass(lid, nw, 2u, acc2, acc3);
  }
  if (nrows() > 4u) {
    rows_pass(lid, nw, 4u, acc4, acc5);
  }
  if (nrows() > 6u) {
    rows_pass(lid, nw, 6u, acc6, acc7);
  }
}
