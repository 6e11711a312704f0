// y[rows, N] = x[rows, K] · Wᵀ with W an FP16 matrix [N, K] (Hugging Face Linear layout), two
// f16 per u32 (element 2i in the low half). x and y are f32, accumulation is f32.
//
// Two entry points:
//   gemv  one activation row (decode). Memory-bound: GEMV_TPR threads share one output feature
//         and stride over its row so that neighbouring threads read neighbouring words.
//   gemm  several rows (prefill). TILE_M x TILE_N output tiles, K in steps of 16 through
//         workgroup memory, 4x4 outputs per thread.
//   gemv_rows  2 to 8 rows (the verify pass of speculative decoding): gemv's lanes and order,
//         each weight unit loaded once and multiplied with every row (see its section).
//
// Without F16 the weights are unpacked with unpack2x16float and multiplied in f32. With F16 the
// same words are reinterpreted as vec2/vec4<f16> and x is rounded to f16, so the products (and
// the 4-term dot products) are f16 arithmetic; each 4-term dot is added to an f32 accumulator.
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

// Output feature n (of the whole matrix) of the one activation row.
fn store_gemv(n: u32, v: f32) {
#if ROUTE2
  if (n >= p.split1) {
    y2[n - p.split1] = v;
    return;
  }
#endif
#if ROUTE3
  if (n >= p.split2) {
    y3[n - p.split2] = v;
    return;
  }
  if (n >= p.split1) {
    y2[n - p.split1] = v;
    return;
  }
#endif
  y[n] = v;
}

// ---------------------------------------------------------------------------------------------
// gemv

override GEMV_WG: u32 = 256u; // threads per workgroup
override GEMV_TPR: u32 = 32u; // threads per output feature: a power of two dividing GEMV_WG

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
  let n = (wid.x + wid.y * nwg.x) * (GEMV_WG / GEMV_TPR) + lid / GEMV_TPR;
  var acc = 0.0;
  if (n < p.n_count) {
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
  if (lane == 0u && n < p.n_count) {
    store_gemv(p.n_start + n, partial[lid]);
  }
}

// ---------------------------------------------------------------------------------------------
// gemm

override TILE_M: u32 = 64u; // activation rows per workgroup, multiple of 4
override TILE_N: u32 = 64u; // output features per workgroup, multiple of 4
const K4: u32 = 4u; // the K step is 16: four vec4 per tile row

// Tiles hold T, so the f16 path keeps its operands in f16 all the way to the dot product.
var<workgroup> xs: array<vec4<T>, TILE_M * K4>;
var<workgroup> ws: array<vec4<T>, TILE_N * K4>;

@compute @workgroup_size((TILE_M / 4u) * (TILE_N / 4u))
fn gemm(
  @builtin(local_invocation_index) lid: u32,
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
) {
  let threads = (TILE_M / 4u) * (TILE_N / 4u);
  let tiles_n = (p.n_count + TILE_N - 1u) / TILE_N;
  let tiles_m = (p.rows + TILE_M - 1u) / TILE_M;
  let tile = wid.x + wid.y * nwg.x;
  if (tile >= tiles_n * tiles_m) {
    return; // the whole workgroup leaves: no barrier is skipped by part of it
  }
  let m0 = (tile / tiles_n) * TILE_M;
  let n0 = (tile % tiles_n) * TILE_N;
  let half_k = p.k / 2u;
  // Neighbouring threads own neighbouring output columns, so y stores coalesce.
  let tx = lid % (TILE_N / 4u);
  let ty = lid / (TILE_N / 4u);

  // Sixteen outputs per thread in four vec4 registers, written out rather than an array indexed
  // in loops (which can end up in local memory: the FP16 GEMM ran 5-6x faster so on the H100).
  var acc0 = vec4<f32>(0.0);
  var acc1 = vec4<f32>(0.0);
  var acc2 = vec4<f32>(0.0);
  var acc3 = vec4<f32>(0.0);
  for (var k0 = 0u; k0 < p.k; k0 += 4u * K4) {
    for (var i = lid; i < TILE_M * K4; i += threads) {
      let m = m0 + i / K4;
      let kq = k0 + 4u * (i % K4); // first of four k; even, so it starts a pair
      var a = vec2<f32>(0.0);
      var b = vec2<f32>(0.0);
      if (m < p.rows && kq < p.k) {
        a = x2[m * half_k + kq / 2u];
        if (kq + 2u < p.k) {
          b = x2[m * half_k + kq / 2u + 1u];
        }
      }
      xs[i] = vec4<T>(vec4<f32>(a, b));
    }
    for (var i = lid; i < TILE_N * K4; i += threads) {
      let n = n0 + i / K4;
      let kq = k0 + 4u * (i % K4);
#if F16
      var a = vec2<f16>(0.0);
      var b = vec2<f16>(0.0);
#else
      var a = 0u;
      var b = 0u;
#endif
      if (n < p.n_count && kq < p.k) {
        a = wpair[n * half_k + kq / 2u];
        if (kq + 2u < p.k) {
          b = wpair[n * half_k + kq / 2u + 1u];
        }
      }
#if F16
      ws[i] = vec4<f16>(a, b);
#else
      ws[i] = vec4<f32>(unpack2x16float(a), unpack2x16float(b));
#endif
    }
    workgroupBarrier();
    for (var kk = 0u; kk < K4; kk++) {
      let xa0 = xs[ty * K4 + kk];
      let xa1 = xs[(ty + TILE_M / 4u) * K4 + kk];
      let xa2 = xs[(ty + 2u * (TILE_M / 4u)) * K4 + kk];
      let xa3 = xs[(ty + 3u * (TILE_M / 4u)) * K4 + kk];
      let wb0 = ws[tx * K4 + kk];
      let wb1 = ws[(tx + TILE_N / 4u) * K4 + kk];
      let wb2 = ws[(tx + 2u * (TILE_N / 4u)) * K4 + kk];
      let wb3 = ws[(tx + 3u * (TILE_N / 4u)) * K4 + kk];
      acc0 += dots(xa0, wb0, wb1, wb2, wb3);
      acc1 += dots(xa1, wb0, wb1, wb2, wb3);
      acc2 += dots(xa2, wb0, wb1, wb2, wb3);
      acc3 += dots(xa3, wb0, wb1, wb2, wb3);
    }
    workgroupBarrier();
  }
  store_row(m0 + ty, n0 + tx, acc0);
  store_row(m0 + ty + TILE_M / 4u, n0 + tx, acc1);
  store_row(m0 + ty + 2u * (TILE_M / 4u), n0 + tx, acc2);
  store_row(m0 + ty + 3u * (TILE_M / 4u), n0 + tx, acc3);
}

// dots (four dot products of one x row) and store_row (one thread's outputs).
#include "common/gemm_store.wgsl"

// ---------------------------------------------------------------------------------------------
// gemv_rows: 2 to MAX_ROWS activation rows (p.rows) with the weights read once for all of them,
// as llama.cpp's mat-vec kernels take up to 8 columns: verifying k + 1 draft tokens then costs
// about one decode step where a GEMV is memory-bound. Each lane group takes FPT output features,
// so each x load serves FPT features (with one feature per group, the rows' f32 x, re-read for
// every feature, was 10x the weight bytes at 5 rows). Each feature of each row is summed exactly
// as gemv sums it alone (same lanes, same unit order and grouping, same reduction tree), so a
// row's output is the one a decode step computes. The row loops have a constant bound
// (unrolled, accumulators in registers) and skip rows past p.rows.

const MAX_ROWS: u32 = 8u;
const FPT: u32 = 2u; // output features per lane group

// partial_rows and reduce_store_row (the row-by-row reduction and store).
#include "common/gemv_rows_store.wgsl"

@compute @workgroup_size(GEMV_WG)
fn gemv_rows(
  @builtin(local_invocation_index) lid: u32,
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
) {
  let lane = lid % GEMV_TPR;
  let n0 = ((wid.x + wid.y * nwg.x) * (GEMV_WG / GEMV_TPR) + lid / GEMV_TPR) * FPT;
  // A feature past the chunk reads the chunk's last row instead (in bounds, never stored).
  let n1 = min(n0 + 1u, p.n_count - 1u);
  var acc0 = array<f32, MAX_ROWS>(); // feature n0, per row
  var acc1 = array<f32, MAX_ROWS>(); // feature n0 + 1
  if (n0 < p.n_count) {
#if K8
    let units = p.k / 8u; // a row of x is 2 · units vec4
    let b0 = n0 * units;
    let b1 = n1 * units;
    var u = lane;
#if UNROLL4
    for (; u + 3u * GEMV_TPR < units; u += 4u * GEMV_TPR) {
      let v = u + GEMV_TPR;
      let w = v + GEMV_TPR;
      let z = w + GEMV_TPR;
      let wu0 = wunit(b0 + u);
      let wv0 = wunit(b0 + v);
      let ww0 = wunit(b0 + w);
      let wz0 = wunit(b0 + z);
      let wu1 = wunit(b1 + u);
      let wv1 = wunit(b1 + v);
      let ww1 = wunit(b1 + w);
      let wz1 = wunit(b1 + z);
      for (var r = 0u; r < MAX_ROWS; r++) {
        if (r < p.rows) {
          let xo = 2u * r * units;
          let xu0 = x4[xo + 2u * u];
          let xu1 = x4[xo + 2u * u + 1u];
          let xv0 = x4[xo + 2u * v];
          let xv1 = x4[xo + 2u * v + 1u];
          let xw0 = x4[xo + 2u * w];
          let xw1 = x4[xo + 2u * w + 1u];
          let xz0 = x4[xo + 2u * z];
          let xz1 = x4[xo + 2u * z + 1u];
          acc0[r] += (dot8w(xu0, xu1, wu0) + dot8w(xv0, xv1, wv0)) +
            (dot8w(xw0, xw1, ww0) + dot8w(xz0, xz1, wz0));
          acc1[r] += (dot8w(xu0, xu1, wu1) + dot8w(xv0, xv1, wv1)) +
            (dot8w(xw0, xw1, ww1) + dot8w(xz0, xz1, wz1));
        }
      }
    }
#endif
    for (; u < units; u += GEMV_TPR) {
      let wu0 = wunit(b0 + u);
      let wu1 = wunit(b1 + u);
      for (var r = 0u; r < MAX_ROWS; r++) {
        if (r < p.rows) {
          let xo = 2u * r * units;
          let xa = x4[xo + 2u * u];
          let xb = x4[xo + 2u * u + 1u];
          acc0[r] += dot8w(xa, xb, wu0);
          acc1[r] += dot8w(xa, xb, wu1);
        }
      }
    }
#else
    let units = p.k / 2u;
    let b0 = n0 * units;
    let b1 = n1 * units;
    for (var u = lane; u < units; u += GEMV_TPR) {
      let wu0 = wpair[b0 + u];
      let wu1 = wpair[b1 + u];
      for (var r = 0u; r < MAX_ROWS; r++) {
        if (r < p.rows) {
          let xv = x2[r * units + u];
          acc0[r] += dot2w(xv, wu0);
          acc1[r] += dot2w(xv, wu1);
        }
      }
    }
#endif
  }
  // Row by row through gemv's reduction tree, both features at once.
  for (var r = 0u; r < MAX_ROWS; r++) {
    if (r < p.rows) {
      reduce_store_row(lid, lane, n0, r, acc0[r], acc1[r]);
    }
  }
}
