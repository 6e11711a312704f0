// Q8_0 (llama.cpp): y[rows, N] = x[rows, K] · Wᵀ with W as int8 codes in groups of 32 along
// K, each group with an f16 scale d; W[n, k] = code · d. CPU twin: lib/quant/q8_0.ts.
//
// Layout: codes row-major, four per u32 (element 4i lowest byte), K a multiple of 32, so a
// group is 8 words (two vec4<u32>) and starts a new row at every K / 32 groups; scales are f16
// pairs, group 2i in the low half of word i. Activations stay f32 (as WebGPU ggml does; the CPU
// llama.cpp path quantizes them).
//
// gemv: GEMV_TPR threads per output feature stride over its groups: Σ x · code in f32 per group,
// times d. gemm: TILE_M x TILE_N tiles, weights dequantized (code · d) into workgroup memory
// 16 values of K at a time, 4x4 outputs per thread.
//
// With F16, gemv takes code · d as f16 (d is an f16 value, codes are exact in f16) against x
// rounded to f16 in 4-term f16 dots, summed in f32; gemm tiles hold f16. Scaling the codes
// before the dot keeps the f16 partial sums in range (Σ x · code could pass 65504).
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
}

@group(0) @binding(0) var<uniform> p: Params;

@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> x4: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> codes: array<u32>; // this chunk's rows
@group(0) @binding(2) var<storage, read> codes4: array<vec4<u32>>;
@group(0) @binding(3) var<storage, read> scales: array<u32>; // all groups, f16 pairs
@group(0) @binding(4) var<storage, read_write> y: array<f32>;

fn scale_of(g: u32) -> f32 {
  return unpack2x16float(scales[g / 2u])[g % 2u];
}

fn dot_word(word: u32, xv: vec4<f32>, d: f32) -> f32 {
  let c = vec4<f32>(unpack4xI8(word));
#if F16
  return f32(dot(vec4<f16>(xv), vec4<f16>(c) * f16(d)));
#else
  return dot(xv, c);
#endif
}

override GEMV_WG: u32 = 256u; // threads per workgroup
override GEMV_TPR: u32 = 32u; // threads per output feature: a power of two dividing GEMV_WG

var<workgroup> partial: array<f32, GEMV_WG>;

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
    let groups = p.k / 32u;
    let g0 = (p.n_start + n) * groups; // the row's first group in the whole tensor
    for (var g = lane; g < groups; g += GEMV_TPR) {
      let a = codes4[2u * (n * groups + g)];
      let b = codes4[2u * (n * groups + g) + 1u];
      let d = scale_of(g0 + g);
      let xb = 8u * g;
      let s = dot_word(a.x, x4[xb], d) + dot_word(a.y, x4[xb + 1u], d) +
        dot_word(a.z, x4[xb + 2u], d) + dot_word(a.w, x4[xb + 3u], d) +
        dot_word(b.x, x4[xb + 4u], d) + dot_word(b.y, x4[xb + 5u], d) +
        dot_word(b.z, x4[xb + 6u], d) + dot_word(b.w, x4[xb + 7u], d);
#if F16
      acc += s; // d is already inside
#else
      acc += s * d;
#endif
    }
  }
  partial[lid] = acc;
  workgroupBarrier();
  for (var s = GEMV_TPR / 2u; s > 0u; s >>= 1u) {
    if (lane < s) {
      partial[lid] += partial[lid + s];
    }
    workgroupBarrier();
  }
  if (lane == 0u && n < p.n_count) {
    y[p.n_start + n] = partial[lid];
  }
}

override TILE_M: u32 = 64u; // activation rows per workgroup, multiple of 4
override TILE_N: u32 = 64u; // output features per workgroup, multiple of 4
const K4: u32 = 4u; // the K step is 16: four vec4 per tile row

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
  let quads = p.k / 4u; // K % 32 == 0: tile steps never run past a row
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
      var v = vec4<f32>(0.0);
      if (m < p.rows) {
        v = x4[m * quads + k0 / 4u + i % K4];
      }
      xs[i] = vec4<T>(v);
    }
    for (var i = lid; i < TILE_N * K4; i += threads) {
      let n = n0 + i / K4;
      let q = k0 / 4u + i % K4;
      var v = vec4<f32>(0.0);
      if (n < p.n_count) {
        let d = scale_of(((p.n_start + n) * p.k + 4u * q) / 32u);
        v = vec4<f32>(unpack4xI8(codes[n * quads + q])) * d;
      }
      ws[i] = vec4<T>(v);
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
// gemv_rows: 2 to MAX_ROWS activation rows (p.rows), each group's codes and scale read once for
// all rows, two output features per lane group (FPT) so that each f32 x load serves both. Each
// feature of each row is summed as gemv sums it alone (same lanes, group order, word order and
// reduction tree), so a row's output is the one a decode step computes. Row loops have a
// constant bound and skip rows past p.rows.

const MAX_ROWS: u32 = 8u;
const FPT: u32 = 2u;

// partial_rows and reduce_store_row (the row-by-row reduction and store).
#include "common/gemv_rows_store.wgsl"

// Σ x · code of one group (8 words) for one row's 8 vec4 of x; d is applied as gemv does.
fn group_sum(a: vec4<u32>, b: vec4<u32>, d: f32, xs: array<vec4<f32>, 8>) -> f32 {
  return dot_word(a.x, xs[0], d) + dot_word(a.y, xs[1], d) + dot_word(a.z, xs[2], d) +
    dot_word(a.w, xs[3], d) + dot_word(b.x, xs[4], d) + dot_word(b.y, xs[5], d) +
    dot_word(b.z, xs[6], d) + dot_word(b.w, xs[7], d);
}

@compute @workgroup_size(GEMV_WG)
fn gemv_rows(
  @builtin(local_invocation_index) lid: u32,
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
) {
  let lane = lid % GEMV_TPR;
  let n0 = ((wid.x + wid.y * nwg.x) * (GEMV_WG / GEMV_TPR) + lid / GEMV_TPR) * FPT;
  let n1 = min(n0 + 1u, p.n_count - 1u); // past the chunk: its last row, never stored
  var acc0 = array<f32, MAX_ROWS>();
  var acc1 = array<f32, MAX_ROWS>();
  if (n0 < p.n_count) {
    let groups = p.k / 32u;
    let quads = p.k / 4u; // vec4 per row of x
    for (var g = lane; g < groups; g += GEMV_TPR) {
      let a0 = codes4[2u * (n0 * groups + g)];
      let c0 = codes4[2u * (n0 * groups + g) + 1u];
      let a1 = codes4[2u * (n1 * groups + g)];
      let c1 = codes4[2u * (n1 * groups + g) + 1u];
      let d0 = scale_of((p.n_start + n0) * groups + g);
      let d1 = scale_of((p.n_start + n1) * groups + g);
      for (var r = 0u; r < MAX_ROWS; r++) {
        if (r < p.rows) {
          let xb = r * quads + 8u * g;
          let xs = array<vec4<f32>, 8>(
            x4[xb], x4[xb + 1u], x4[xb + 2u], x4[xb + 3u],
            x4[xb + 4u], x4[xb + 5u], x4[xb + 6u], x4[xb + 7u],
          );
          let s0 = group_sum(a0, c0, d0, xs);
          let s1 = group_sum(a1, c1, d1, xs);
#if F16
          acc0[r] += s0; // d is already inside
          acc1[r] += s1;
#else
          acc0[r] += s0 * d0;
          acc1[r] += s1 * d1;
#endif
        }
      }
    }
  }
  for (var r = 0u; r < MAX_ROWS; r++) {
    if (r < p.rows) {
      reduce_store_row(lid, lane, n0, r, acc0[r], acc1[r]);
    }
  }
}
