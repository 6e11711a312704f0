// y[rows, N] = x[rows, K] · Wᵀ with W an FP16 matrix [N, K] (Hugging Face Linear layout), two
// f16 per u32 (element 2i in the low half). x and y are f32, accumulation is f32.
//
// Two entry points:
//   gemv  one activation row (decode). Memory-bound: GEMV_TPR threads share one output feature
//         and stride over its row so that neighbouring threads read neighbouring words.
//   gemm_outer  several rows (prefill): 128-feature tiles, 8x8 outputs per thread, f32 sums
//         (common/gemm_outer.wgsl).
//   gemv_rows  2 to 8 rows (the verify pass of speculative decoding): gemv's lanes and order,
//         each weight unit loaded once and multiplied with every row (see its section).
//
// Without F16 the weights are unpacked with unpack2x16float and multiplied in f32. With F16 the
// same words are reinterpreted as vec2/vec4<f16> and x is rounded to f16, so the GEMVs' products
// (and their 4-term dot products) are f16 arithmetic; each 4-term dot is added to an f32
// accumulator. gemm_outer is f32 arithmetic on both paths.
//
// A weight larger than one storage binding is bound in chunks of output features: n_start and
// n_count select the chunk, and w is that chunk's slice only. With ROUTE2 or ROUTE3 the gemv
// writes features [0, split1) to y, [split1, split2) to y2 and the rest to y3 (ROUTE3).

#if F16
enable f16;
alias T = f16;
#else
alias T = f32;
#endif

struct Params {
  rows: u32,    // activation rows
  n_total: u32, // N: the row stride of y
  k: u32,       // K, even
  n_start: u32, // first output feature of this chunk
  n_count: u32, // output features in this chunk
  split1: u32,  // gemv with ROUTE2/ROUTE3: first feature that goes to y2
  split2: u32,  // gemv with ROUTE3: first feature that goes to y3
}

@group(0) @binding(0) var<uniform> p: Params;

// Pair view (any even K): one word = two weights, one vec2<f32> = two activations.
// Wide view (K % 8 == 0, gemv with K8): eight weights per step, as 16 bytes.
// The f16 path declares the weights as f16 vectors rather than bitcasting u32 words, which naga
// mistypes (bitcast<vec2<f16>>(u32) comes out as f32).
@group(0) @binding(1) var<storage, read> x2: array<vec2<f32>>;
@group(0) @binding(1) var<storage, read> x4: array<vec4<f32>>;
#if F16
@group(0) @binding(2) var<storage, read> wpair: array<vec2<f16>>;
@group(0) @binding(2) var<storage, read> wquad: array<vec4<f16>>;
#else
@group(0) @binding(2) var<storage, read> wpair: array<u32>;
@group(0) @binding(2) var<storage, read> woct: array<vec4<u32>>;
#endif

@group(0) @binding(3) var<storage, read_write> y: array<f32>;
// Several layers' weights stacked in one matrix (q, k, v; gate, up), one row of x: each
// output feature goes to its own layer's y, so one dispatch serves two or three products.
#if ROUTE2
@group(0) @binding(4) var<storage, read_write> y2: array<f32>;
#endif
#if ROUTE3
@group(0) @binding(4) var<storage, read_write> y2: array<f32>;
@group(0) @binding(5) var<storage, read_write> y3: array<f32>;
#endif

#include "common/stack_store.wgsl"

// ---------------------------------------------------------------------------------------------
// gemv

override GEMV_WG: u32 = 256u; // threads per workgroup
override GEMV_TPR: u32 = 32u; // threads per output feature: a power of two dividing GEMV_WG
override ROWS: u32 = 0u; // gemv_rows: the row count it was made for, or 0 (row_sums.wgsl)

var<workgroup> partial: array<f32, GEMV_WG>;

// A unit's weights are loaded by wunit/wpair_at and multiplied by dot8w/dot2w, so gemv and
// gemv_rows do the same arithmetic on them.
#if F16
struct WUnit {
  a: vec4<f16>,
  b: vec4<f16>,
}
alias WPair = vec2<f16>;

fn wunit(unit: u32) -> WUnit {
  return WUnit(wquad[2u * unit], wquad[2u * unit + 1u]);
}

fn dot8w(xa: vec4<f32>, xb: vec4<f32>, w: WUnit) -> f32 {
  let da = dot(vec4<f16>(xa), w.a);
  let db = dot(vec4<f16>(xb), w.b);
  return f32(da) + f32(db);
}

fn dot2w(xv: vec2<f32>, w: WPair) -> f32 {
  return f32(dot(vec2<f16>(xv), w));
}
#else
alias WUnit = vec4<u32>;
alias WPair = u32;

fn wunit(unit: u32) -> WUnit {
  return woct[unit];
}

fn dot8w(xa: vec4<f32>, xb: vec4<f32>, w: WUnit) -> f32 {
  let wa = vec4<f32>(unpack2x16float(w.x), unpack2x16float(w.y));
  let wb = vec4<f32>(unpack2x16float(w.z), unpack2x16float(w.w));
  return dot(xa, wa) + dot(xb, wb);
}

fn dot2w(xv: vec2<f32>, w: WPair) -> f32 {
  return dot(xv, unpack2x16float(w));
}
#endif

fn dot8(xa: vec4<f32>, xb: vec4<f32>, unit: u32) -> f32 {
  return dot8w(xa, xb, wunit(unit));
}

fn dot2(xv: vec2<f32>, i: u32) -> f32 {
  return dot2w(xv, wpair[i]);
}

@compute @workgroup_size(GEMV_WG)
fn gemv(
  @builtin(local_invocation_index) lid: u32,
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
) {
  let lane = lid % GEMV_TPR;
#if SWIGLU_OUT
  // A [gate; up] stack of two layers of split1 rows each (ROUTE2): the workgroup's first half of
  // thread groups takes gate rows, the second half the same rows of up, so that the epilogue
  // writes silu(gate) · up (elementwise.wgsl's swiglu, the same f32 expression) instead of both.
  let half = GEMV_WG / GEMV_TPR / 2u;
  let grp = lid / GEMV_TPR;
  let pair = (wid.x + wid.y * nwg.x) * half + grp % half; // the gate row
  let n = select(pair, p.split1 + pair, grp >= half);
  let live = pair < p.split1;
#else
  let n = (wid.x + wid.y * nwg.x) * (GEMV_WG / GEMV_TPR) + lid / GEMV_TPR;
  let live = n < p.n_count;
#endif
  var acc = 0.0;
  if (live) {
#if K8
    let units = p.k / 8u;
    let base = n * units;
    // With UNROLL4 (hardware adapters) four units per step, their loads issued together: at
    // 4096x4096 the whole grid fits in one wave at half occupancy on an H100, so each thread
    // must keep several loads in flight for the memory system to see enough requests. llvmpipe
    // ran that 10-25% slower than the plain loop, so software adapters keep the plain loop.
    var u = lane;
#if UNROLL4
    for (; u + 3u * GEMV_TPR < units; u += 4u * GEMV_TPR) {
      let a = dot8(x4[2u * u], x4[2u * u + 1u], base + u);
      let v = u + GEMV_TPR;
      let b = dot8(x4[2u * v], x4[2u * v + 1u], base + v);
      let w = v + GEMV_TPR;
      let c = dot8(x4[2u * w], x4[2u * w + 1u], base + w);
      let z = w + GEMV_TPR;
      let d = dot8(x4[2u * z], x4[2u * z + 1u], base + z);
      acc += (a + b) + (c + d);
    }
#endif
    for (; u < units; u += GEMV_TPR) {
      acc += dot8(x4[2u * u], x4[2u * u + 1u], base + u);
    }
#else
    let units = p.k / 2u;
    let base = n * units;
    for (var u = lane; u < units; u += GEMV_TPR) {
      acc += dot2(x2[u], base + u);
    }
#endif
  }
  // No subgroup operations on the adapters we target: reduce through workgroup memory.
  partial[lid] = acc;
  workgroupBarrier();
  for (var s = GEMV_TPR / 2u; s > 0u; s >>= 1u) {
    if (lane < s) {
      partial[lid] += partial[lid + s];
    }
    workgroupBarrier();
  }
#if SWIGLU_OUT
  if (lane == 0u && grp < half && live) {
    let g = partial[lid];
    y[pair] = g / (1.0 + exp(-g)) * partial[lid + half * GEMV_TPR];
  }
#else
  if (lane == 0u && n < p.n_count) {
    store_gemv(p.n_start + n, partial[lid]);
  }
#endif
}

// ---------------------------------------------------------------------------------------------
// gemm (several rows, prefill): the register-blocked outer product of common/gemm_outer.wgsl,
// with x and the f16 weights widened to f32 in its tiles: f32 arithmetic on either path. K % 8 ==
// 0 reads eight weights as 16 bytes; with ANYK (any other, even, K) pairs of weights and of x,
// zeros past K (one entry point may not use two views of a binding).

fn outer_prologue(lid: u32) {}

#if ANYK
// Weights i, i + 1 (element k of a row, k even and below K).
fn w_pair(i: u32) -> vec2<f32> {
#if F16
  return vec2<f32>(wpair[i / 2u]);
#else
  return unpack2x16float(wpair[i / 2u]);
#endif
}

fn outer_x4(m: u32, k: u32) -> vec4<f32> {
  if (k >= p.k) {
    return vec4<f32>(0.0);
  }
  let i = m * p.k + k;
  return vec4<f32>(x2[i / 2u], select(vec2<f32>(0.0), x2[i / 2u + 1u], k + 2u < p.k));
}

fn outer_w8(n: u32, k: u32) -> OuterW8 {
  var w: OuterW8;
  if (k >= p.k) {
    return w;
  }
  let i = n * p.k + k;
  w.lo = vec4<f32>(w_pair(i), select(vec2<f32>(0.0), w_pair(i + 2u), k + 2u < p.k));
  if (k + 4u < p.k) {
    w.hi = vec4<f32>(w_pair(i + 4u), select(vec2<f32>(0.0), w_pair(i + 6u), k + 6u < p.k));
  }
  return w;
}
#else
fn outer_w8(n: u32, k: u32) -> OuterW8 {
  var w: OuterW8;
  if (k >= p.k) {
    return w;
  }
  let i = n * p.k + k;
#if F16
  return OuterW8(vec4<f32>(wquad[i / 4u]), vec4<f32>(wquad[i / 4u + 1u]));
#else
  let o = woct[i / 8u];
  return OuterW8(
    vec4<f32>(unpack2x16float(o.x), unpack2x16float(o.y)),
    vec4<f32>(unpack2x16float(o.z), unpack2x16float(o.w)),
  );
#endif
}
#endif

#include "common/gemm_outer.wgsl"

// ---------------------------------------------------------------------------------------------
// gemv_rows: 2 to MAX_ROWS activation rows (p.rows) with the weights read once for all of them,
// as llama.cpp's mat-vec kernels take up to 8 columns: verifying k + 1 draft tokens then costs
// about one decode step where a GEMV is memory-bound. Each feature of each row is summed exactly
// as gemv sums it alone (same lanes, same unit order and grouping, same reduction tree), so a
// row's output is the one a decode step computes.
//
// - FPT = 4 output features per lane group: each x load serves four weight rows, and a row's
//   sums are one vec4 (acc0..acc7, one per row, written out: private arrays indexed in loops can
//   end up in local memory).
// - XTILE (F16 with K8): each step's x of every row (STRIDES · GEMV_TPR units of 8) is rounded
//   to f16 once per workgroup into workgroup memory, where gemv rounds it in every lane: the
//   same values, converted once instead of once per feature group and row, read as 8 bytes.
// - The end: two rows at a time through gemv_rows_store.wgsl (two barriers per pair of rows).

const MAX_ROWS: u32 = 8u;

#if UNROLL4
const STRIDES: u32 = 4u; // a step is gemv's unrolled step: four strides of GEMV_TPR units
#else
const STRIDES: u32 = 1u;
#endif

// FPT, RowSums, row_sums_store; rows_red, rows_pass_begin, lane_tree.
#include "common/row_sums.wgsl"
#include "common/gemv_rows_store.wgsl"

#if XTILE
// Half h (elements 4h..4h + 3) of unit j of the step, row r, at xt[(2r + h) · STEP + j]: a warp's
// lanes read consecutive 8-byte entries.
var<workgroup> xt: array<vec4<f16>, 2u * MAX_ROWS * STRIDES * GEMV_TPR>;
alias XV = vec4<f16>;

// gemv's dot8w with x already in f16 (the same conversion, done at staging).
fn fdot(xa: vec4<f16>, xb: vec4<f16>, w: WUnit) -> f32 {
  return f32(dot(xa, w.a)) + f32(dot(xb, w.b));
}
#else
alias XV = vec4<f32>;

fn fdot(xa: vec4<f32>, xb: vec4<f32>, w: WUnit) -> f32 {
  return dot8w(xa, xb, w);
}
#endif

// One unit (8 weights) of each of the FPT features, and one row's unit against them.
#if FPT1
struct WF {
  f0: WUnit,
}

fn wf_at(b: vec4<u32>, u: u32) -> WF {
  return WF(wunit(b.x + u));
}

fn sums(xa: XV, xb: XV, w: WF) -> RowSums {
  return fdot(xa, xb, w.f0);
}

fn pair_sums(xv: vec2<f32>, b: vec4<u32>, u: u32) -> RowSums {
  return dot2w(xv, wpair[b.x + u]);
}
#else
#if FPT2
struct WF {
  f0: WUnit,
  f1: WUnit,
}

fn wf_at(b: vec4<u32>, u: u32) -> WF {
  return WF(wunit(b.x + u), wunit(b.y + u));
}

fn sums(xa: XV, xb: XV, w: WF) -> RowSums {
  return RowSums(fdot(xa, xb, w.f0), fdot(xa, xb, w.f1));
}

// Odd K: one pair of weights of each feature against one pair of x.
fn pair_sums(xv: vec2<f32>, b: vec4<u32>, u: u32) -> RowSums {
  return RowSums(dot2w(xv, wpair[b.x + u]), dot2w(xv, wpair[b.y + u]));
}
#else
struct WF {
  f0: WUnit,
  f1: WUnit,
  f2: WUnit,
  f3: WUnit,
}

fn wf_at(b: vec4<u32>, u: u32) -> WF {
  return WF(wunit(b.x + u), wunit(b.y + u), wunit(b.z + u), wunit(b.w + u));
}

fn sums(xa: XV, xb: XV, w: WF) -> RowSums {
  return RowSums(fdot(xa, xb, w.f0), fdot(xa, xb, w.f1), fdot(xa, xb, w.f2), fdot(xa, xb, w.f3));
}

fn pair_sums(xv: vec2<f32>, b: vec4<u32>, u: u32) -> RowSums {
  return RowSums(dot2w(xv, wpair[b.x + u]), dot2w(xv, wpair[b.y + u]),
    dot2w(xv, wpair[b.z + u]), dot2w(xv, wpair[b.w + u]));
}
#endif
#endif

// Row r's unit u (j: its index in the step's tile) against the features' units.
fn unit_row(r: u32, j: u32, u: u32, w: WF) -> RowSums {
#if XTILE
  let step = STRIDES * GEMV_TPR;
  return sums(xt[2u * r * step + j], xt[(2u * r + 1u) * step + j], w);
#else
  let i = 2u * (r * (p.k / 8u) + u);
  return sums(x4[i], x4[i + 1u], w);
#endif
}

// gemv's unrolled step for row r: units u + s · GEMV_TPR (s = 0..3), grouped as gemv groups them.
fn quad(r: u32, lane: u32, u: u32, wa: WF, wb: WF, wc: WF, wd: WF) -> RowSums {
  let t = GEMV_TPR;
  return (unit_row(r, lane, u, wa) + unit_row(r, lane + t, u + t, wb)) +
    (unit_row(r, lane + 2u * t, u + 2u * t, wc) + unit_row(r, lane + 3u * t, u + 3u * t, wd));
}

// Odd K: row r's pair u.
fn pair_row(r: u32, u: u32, b: vec4<u32>) -> RowSums {
  return pair_sums(x2[r * (p.k / 2u) + u], b, u);
}

#include "common/rows_pass.wgsl"

#if SWIGLU_OUT
// gemv_rows over a [gate; up] stack (as gemv's SWIGLU_OUT): lane group g < half takes gate
// features, g + half the same up features; after rows_pass's reduction the two meet here and
// silu(gate) · up goes to row r's gate output (y, [rows, split1]).
var<workgroup> swig: array<RowSums, 2u * GEMV_WG / GEMV_TPR>;

fn swiglu_store(r: u32, n0: u32, v: RowSums) {
#if FPT1
  if (n0 < p.split1) {
    y[r * p.split1 + n0] = v;
  }
#else
  for (var f = 0u; f < FPT; f++) {
    if (n0 + f < p.split1) {
      y[r * p.split1 + n0 + f] = v[f];
    }
  }
#endif
}

fn rows_pass_swiglu(lid: u32, pw: u32, r0: u32, a: RowSums, b: RowSums) {
  rows_pass_begin(lid, a, b);
  let groups = GEMV_WG / GEMV_TPR;
  let half = groups / 2u;
  if (lid < 2u * groups) {
    swig[lid] = lane_tree((lid / groups) * GEMV_WG + (lid % groups) * GEMV_TPR);
  }
  workgroupBarrier();
  if (lid < 2u * groups && lid % groups < half && r0 + lid / groups < nrows()) {
    let g = swig[lid];
    swiglu_store(r0 + lid / groups, pw + (lid % groups) * FPT, g / (1.0 + exp(-g)) * swig[lid + half]);
  }
}
#endif

@compute @workgroup_size(GEMV_WG)
fn gemv_rows(
  @builtin(local_invocation_index) lid: u32,
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
) {
  let lane = lid % GEMV_TPR;
#if SWIGLU_OUT
  let half = GEMV_WG / GEMV_TPR / 2u;
  let grp = lid / GEMV_TPR;
  let nw = (wid.x + wid.y * nwg.x) * half * FPT; // the workgroup's first gate feature
  let pf = nw + (grp % half) * FPT; // this group's first gate feature
  let n0 = select(pf, p.split1 + pf, grp >= half);
  let live = pf < p.split1;
  // Features past gate's (up's) last row read that row instead (in bounds, never stored).
  let last = select(p.split1 - 1u, p.n_count - 1u, grp >= half);
#else
  let nw = (wid.x + wid.y * nwg.x) * (GEMV_WG / GEMV_TPR) * FPT; // the workgroup's first feature
  let n0 = nw + (lid / GEMV_TPR) * FPT;
  let live = n0 < p.n_count; // a group past the chunk still joins the barriers
  // Features past the chunk read its last row instead (in bounds, never stored).
  let last = p.n_count - 1u;
#endif
  let nf = vec4<u32>(min(n0, last), min(n0 + 1u, last), min(n0 + 2u, last), min(n0 + 3u, last));
  var acc0 = RowSums();
  var acc1 = RowSums();
  var acc2 = RowSums();
  var acc3 = RowSums();
  var acc4 = RowSums();
  var acc5 = RowSums();
  var acc6 = RowSums();
  var acc7 = RowSums();
#if K8
  let units = p.k / 8u;
  let b = nf * units;
  let step = STRIDES * GEMV_TPR;
  for (var t0 = 0u; t0 < units; t0 += step) { // uniform: every thread reaches the barriers
    let u = t0 + lane;
#if UNROLL4
#if !NOPREFETCH
    // The unrolled step's weights, loaded before x is staged so that both are in flight together
    // (units past K clamped to the last: loaded, never used). NOPREFETCH: after.
    let ul = units - 1u;
    let wa = wf_at(b, min(u, ul));
    let wb = wf_at(b, min(u + GEMV_TPR, ul));
    let wc = wf_at(b, min(u + 2u * GEMV_TPR, ul));
    let wd = wf_at(b, min(u + 3u * GEMV_TPR, ul));
#endif
#endif
#if XTILE
    workgroupBarrier(); // the previous step's x has been read
    for (var i = lid; i < 2u * nrows() * step; i += GEMV_WG) {
      let r = i / (2u * step);
      let j = (i / 2u) % step;
      let h = i % 2u;
      var v = vec4<f32>(0.0);
      if (t0 + j < units) {
        v = x4[2u * (r * units + t0 + j) + h];
      }
      xt[(2u * r + h) * step + j] = vec4<f16>(v);
    }
    workgroupBarrier();
#endif
#if UNROLL4
#if NOPREFETCH
    let ul = units - 1u;
    let wa = wf_at(b, min(u, ul));
    let wb = wf_at(b, min(u + GEMV_TPR, ul));
    let wc = wf_at(b, min(u + 2u * GEMV_TPR, ul));
    let wd = wf_at(b, min(u + 3u * GEMV_TPR, ul));
#endif
    let grouped = live && u + 3u * GEMV_TPR < units;
    if (grouped) {
      acc0 += quad(0u, lane, u, wa, wb, wc, wd);
      acc1 += quad(1u, lane, u, wa, wb, wc, wd);
      if (nrows() > 2u) {
        acc2 += quad(2u, lane, u, wa, wb, wc, wd);
      }
      if (nrows() > 3u) {
        acc3 += quad(3u, lane, u, wa, wb, wc, wd);
      }
      if (nrows() > 4u) {
        acc4 += quad(4u, lane, u, wa, wb, wc, wd);
      }
      if (nrows() > 5u) {
        acc5 += quad(5u, lane, u, wa, wb, wc, wd);
      }
      if (nrows() > 6u) {
        acc6 += quad(6u, lane, u, wa, wb, wc, wd);
      }
      if (nrows() > 7u) {
        acc7 += quad(7u, lane, u, wa, wb, wc, wd);
      }
    }
#else
    let grouped = false;
#endif
    // gemv's remainder loop (or, without UNROLL4, its only loop): one unit per stride.
    for (var s = 0u; !grouped && s < STRIDES; s++) {
      let us = u + s * GEMV_TPR;
      if (live && us < units) {
        let j = lane + s * GEMV_TPR;
        let w = wf_at(b, us);
        acc0 += unit_row(0u, j, us, w);
        acc1 += unit_row(1u, j, us, w);
        if (nrows() > 2u) {
          acc2 += unit_row(2u, j, us, w);
        }
        if (nrows() > 3u) {
          acc3 += unit_row(3u, j, us, w);
        }
        if (nrows() > 4u) {
          acc4 += unit_row(4u, j, us, w);
        }
        if (nrows() > 5u) {
          acc5 += unit_row(5u, j, us, w);
        }
        if (nrows() > 6u) {
          acc6 += unit_row(6u, j, us, w);
        }
        if (nrows() > 7u) {
          acc7 += unit_row(7u, j, us, w);
        }
      }
    }
  }
#else
  let units = p.k / 2u;
  let b = nf * units;
  for (var u = lane; live && u < units; u += GEMV_TPR) {
    acc0 += pair_row(0u, u, b);
    acc1 += pair_row(1u, u, b);
    if (nrows() > 2u) {
      acc2 += pair_row(2u, u, b);
    }
    if (nrows() > 3u) {
      acc3 += pair_row(3u, u, b);
    }
    if (nrows() > 4u) {
      acc4 += pair_row(4u, u, b);
    }
    if (nrows() > 5u) {
      acc5 += pair_row(5u, u, b);
    }
    if (nrows() > 6u) {
      acc6 += pair_row(6u, u, b);
    }
    if (nrows() > 7u) {
      acc7 += pair_row(7u, u, b);
    }
  }
#endif
#if SWIGLU_OUT
  rows_pass_swiglu(lid, nw, 0u, acc0, acc1);
  if (nrows() > 2u) {
    rows_pass_swiglu(lid, nw, 2u, acc2, acc3);
  }
  if (nrows() > 4u) {
    rows_pass_swiglu(lid, nw, 4u, acc4, acc5);
  }
  if (nrows() > 6u) {
    rows_pass_swiglu(lid, nw, 6u, acc6, acc7);
  }
#else
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
#endif
}
