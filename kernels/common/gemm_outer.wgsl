// gemm_outer: y[rows, N] = x[rows, K] · Wᵀ for prefill-sized products (K % 16 == 0), as a
// register-blocked outer product. Shared by the weight formats, which differ only in how eight
// weights are read: the including kernel declares `p` (rows, n_count, n_total, n_start, k),
// `y`, the activations' vec4 view `x4`, and
//   fn outer_w8(n: u32, k: u32) -> OuterW8     W[n, k .. k + 7] (n < n_count, k % 8 == 0),
//                                               zeros past K
//   fn outer_prologue(lid: u32)                 what the workgroup sets up first (a code table)
// and, with ANYK (K % 8 != 0, where x4 does not fit), also
//   fn outer_x4(m: u32, k: u32) -> vec4<f32>   x[m, k .. k + 3] (m < rows, k % 4 == 0), zeros
//                                               past K
// with the struct OuterW8 { lo: vec4<f32>, hi: vec4<f32> } declared here.
//
// Why this shape. The older `gemm` gives each thread 4x4 outputs from 4-term dot products; per
// multiply-add it spends a conversion and an add on every dot (f16 dots into f32 sums) and
// reloads its operands from workgroup memory every K step of 16 with nothing in flight. Here:
// - A 256-thread workgroup computes OUTER_M x 128 outputs (OUTER_M = 128, or 64 with OUTER_M64
//   where fewer, taller tiles would leave SMs idle); each thread owns 8 (or 4) rows x 8 features,
//   in two blocks of four features 64 apart, so that workgroup-memory reads of a K step are one
//   broadcast x vector and two conflict-free weight vectors per thread.
// - Tiles are stored K-major in f32 (x and the decoded weights), so the inner step is an outer
//   product: every value read from workgroup memory feeds 8 fused multiply-adds, in f32. The sums
//   are f32 all the way (only the weights' own rounding: an f16 weight is exact in f32), so the
//   result matches the f32 reference as closely as the f32 `gemm` does.
// - The next K step's x and weights are loaded into registers while this one computes (one
//   workgroup-memory buffer, register double-buffering): the global loads are in flight during the
//   arithmetic, with two barriers per step of 16.
//
// Measured on the H200 (512-token prefill shapes of Llama-2-7B and Llama-3-8B, one run,
// bench/results/h200-gemm-outer-2026-12-02): FP16 15.2-19.7 TFLOP/s against gemm's 14.5-16.2,
// NF4 15.4-20.1 against 10.6-11.8 (gemm decodes every weight with its own code and scale loads),
// Q8_0 14.7-19.2 against 14.6-16.4; 64-row tiles were slower at four of five shapes. Tiles in f16
// with each K step summed in f16 ran another 10-20% faster but missed the f16 tolerance of the
// tests (16-term f16 sums), so they are not offered. With OUTER_KSPLIT where tiles are few
// (bench/results/h200-gemm-split-2026-12-04): FP16 16.6-19.5, NF4 16.8-19.8, Q8_0 16.1-19.4,
// 24-31% of the FMA-rate reference. Stripped copies there: storing each K step and its two
// barriers cost the most; the arithmetic alone, nothing loaded or stored, reaches about half the
// FMA rate.

struct OuterW8 {
  lo: vec4<f32>,
  hi: vec4<f32>,
}

#if OUTER_M64
const OUTER_M: u32 = 64u;
#else
const OUTER_M: u32 = 128u;
#endif
const OUTER_N: u32 = 128u;
// One load slice spans 16 of K; a tile holds OUTER_SLICES of them (OUTER_K32: two, so a K step
// of 32 and half the barriers per multiply-add).
const OUTER_K: u32 = 16u;
#if OUTER_K32
const OUTER_SLICES: u32 = 2u;
#else
const OUTER_SLICES: u32 = 1u;
#endif
const OUTER_KT: u32 = OUTER_K * OUTER_SLICES;
// OUTER_DB: two tiles, the next K step stored into one while the other is read, so one barrier
// per step instead of two.
#if OUTER_DB
const OUTER_BUFS: u32 = 2u;
#else
const OUTER_BUFS: u32 = 1u;
#endif
// OUTER_KSPLIT: a workgroup of two halves of 256 threads, each with tiles of its own, which sum
// alternate K steps of the same outputs and add them up at the end: twice the threads in flight
// for the same tiles (at 4096 features a 512-token product has 128 tiles, under one per SM of
// the H200), with the same work per thread.
#if OUTER_KSPLIT
const OUTER_HALVES: u32 = 2u;
#else
const OUTER_HALVES: u32 = 1u;
#endif
const OUTER_THREADS: u32 = 256u;
// x values each thread loads per slice (8 at OUTER_M 128, 4 at 64), from consecutive k.
const OUTER_XPT: u32 = OUTER_M * OUTER_K / OUTER_THREADS;
const OUTER_GX: u32 = OUTER_KT * OUTER_M / 4u;
const OUTER_GW: u32 = OUTER_KT * OUTER_N / 4u;

// K-major tiles: element (k, m) of x is gx[k · OUTER_M / 4 + m / 4][m % 4] (plus OUTER_GX in the
// second buffer).
var<workgroup> gx: array<vec4<f32>, OUTER_GX * OUTER_BUFS * OUTER_HALVES>;
var<workgroup> gw: array<vec4<f32>, OUTER_GW * OUTER_BUFS * OUTER_HALVES>;

#if !ANYK
// x[m, k .. k + 3] (K % 8 == 0, so a vec4 never straddles K), zeros past K.
fn outer_x4(m: u32, k: u32) -> vec4<f32> {
  if (k >= p.k) {
    return vec4<f32>(0.0);
  }
  return x4[(m * p.k + k) / 4u];
}
#endif

// One thread's slice of the next K step, held in registers while the current step computes.
struct OuterLoad {
  x0: vec4<f32>,
  x1: vec4<f32>, // OUTER_M 128 only
  w: OuterW8,
}

fn outer_load(m0: u32, n0: u32, k0: u32, lid: u32) -> OuterLoad {
  var l: OuterLoad;
  let xm = m0 + lid % OUTER_M;
  let xk = k0 + (lid / OUTER_M) * OUTER_XPT;
  if (xm < p.rows) {
    l.x0 = outer_x4(xm, xk);
#if !OUTER_M64
    l.x1 = outer_x4(xm, xk + 4u);
#endif
  }
  let wn = n0 + lid % OUTER_N;
  let wk = k0 + (lid / OUTER_N) * 8u;
  // Past K (a K-split half's last step) the weights stay zero: x is zero there, but a weight
  // read past its row could be anything.
  if (wn < p.n_count && wk < p.k) {
    l.w = outer_w8(wn, wk);
  }
  return l;
}

// Writes a thread's loaded slice into the tiles, transposed (consecutive threads own consecutive
// rows or features, so each store instruction of a warp hits 32 different banks).
// `ox` and `ow` place the slice: its K offset within the tile and the buffer.
fn outer_store(l: OuterLoad, lid: u32, ox: u32, ow: u32) {
  let xm = lid % OUTER_M;
  let xk = (lid / OUTER_M) * OUTER_XPT;
  for (var j = 0u; j < 4u; j++) {
    gx[ox + (xk + j) * (OUTER_M / 4u) + xm / 4u][xm % 4u] = l.x0[j];
#if !OUTER_M64
    gx[ox + (xk + 4u + j) * (OUTER_M / 4u) + xm / 4u][xm % 4u] = l.x1[j];
#endif
  }
  let wn = lid % OUTER_N;
  let wk = (lid / OUTER_N) * 8u;
  for (var j = 0u; j < 4u; j++) {
    gw[ow + (wk + j) * (OUTER_N / 4u) + wn / 4u][wn % 4u] = l.w.lo[j];
    gw[ow + (wk + 4u + j) * (OUTER_N / 4u) + wn / 4u][wn % 4u] = l.w.hi[j];
  }
}

// A tile's slices, loaded (one or two: OUTER_K32).
struct OuterTile {
  s0: OuterLoad,
#if OUTER_K32
  s1: OuterLoad,
#endif
}

fn outer_load_tile(m0: u32, n0: u32, k0: u32, lid: u32) -> OuterTile {
  var t: OuterTile;
  t.s0 = outer_load(m0, n0, k0, lid);
#if OUTER_K32
  t.s1 = outer_load(m0, n0, k0 + OUTER_K, lid);
#endif
  return t;
}

// `buf` counts tiles: a half's buffers follow each other, then the other half's.
fn outer_store_tile(t: OuterTile, lid: u32, buf: u32) {
  outer_store(t.s0, lid, buf * OUTER_GX, buf * OUTER_GW);
#if OUTER_K32
  outer_store(t.s1, lid, buf * OUTER_GX + OUTER_K * OUTER_M / 4u, buf * OUTER_GW + OUTER_K * OUTER_N / 4u);
#endif
}

// Four outputs (m, n .. n + 3), the ones past the product left out. `slab`: the split's copy
// of y (0 unsplit; see gemm_outer).
fn outer_store_y(slab: u32, m: u32, n: u32, v: vec4<f32>) {
  if (m >= p.rows) {
    return;
  }
  for (var j = 0u; j < 4u; j++) {
    if (n + j < p.n_count) {
      y[(slab * p.rows + m) * p.n_total + p.n_start + n + j] = v[j];
    }
  }
}

#if OUTER_KSPLIT
// Half 1 adds four of its sums into half 0's (gw holds at least 4 · OUTER_THREADS vec4).
fn outer_hand(
  half: u32,
  lid: u32,
  a: ptr<function, vec4<f32>>,
  b: ptr<function, vec4<f32>>,
  c: ptr<function, vec4<f32>>,
  d: ptr<function, vec4<f32>>,
) {
  if (half == 1u) {
    gw[lid] = *a;
    gw[OUTER_THREADS + lid] = *b;
    gw[2u * OUTER_THREADS + lid] = *c;
    gw[3u * OUTER_THREADS + lid] = *d;
  }
  workgroupBarrier();
  if (half == 0u) {
    *a += gw[lid];
    *b += gw[OUTER_THREADS + lid];
    *c += gw[2u * OUTER_THREADS + lid];
    *d += gw[3u * OUTER_THREADS + lid];
  }
  workgroupBarrier();
}
#endif

@compute @workgroup_size(OUTER_THREADS * OUTER_HALVES)
fn gemm_outer(
  @builtin(local_invocation_index) lid_all: u32,
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
) {
  outer_prologue(lid_all);
  // The half this thread belongs to, its place in it, and its first K step and tile.
  let half = lid_all / OUTER_THREADS;
  let lid = lid_all % OUTER_THREADS;
  let k_half = half * OUTER_KT;
  let buf0 = half * OUTER_BUFS;
  const K_STEP: u32 = OUTER_KT * OUTER_HALVES;
  let tiles_n = (p.n_count + OUTER_N - 1u) / OUTER_N;
  let tiles_m = (p.rows + OUTER_M - 1u) / OUTER_M;
  let tile = wid.x + wid.y * nwg.x;
  if (tile >= tiles_n * tiles_m) {
    return; // the whole workgroup leaves: no barrier is skipped by part of it
  }
  // Split across workgroups (nwg.z > 1, for products of fewer tiles than the GPU has room for):
  // workgroup z sums its share of the K steps into copy z of y (y is then the caller's scratch
  // of nwg.z copies, which split_sum.wgsl adds up). A share past K is empty: its copy gets zeros.
  let k_steps = (p.k + K_STEP - 1u) / K_STEP;
  let k_share = (k_steps + nwg.z - 1u) / nwg.z;
  let k_begin = min(p.k, wid.z * k_share * K_STEP);
  let k_end = min(p.k, k_begin + k_share * K_STEP);
  // Neighbouring workgroups share a row tile of x and walk the features.
  let m0 = (tile / tiles_n) * OUTER_M;
  let n0 = (tile % tiles_n) * OUTER_N;
  let tx = lid % 16u;
  let ty = lid / 16u;

  // Rows 4·ty + i (c0..c3) and 64 + 4·ty + i (c4..c7); features 4·tx + j (a) and 64 + 4·tx + j (b).
  // Written out, not an array indexed in loops (which can end up in local memory).
  var c0a = vec4<f32>(0.0);
  var c0b = vec4<f32>(0.0);
  var c1a = vec4<f32>(0.0);
  var c1b = vec4<f32>(0.0);
  var c2a = vec4<f32>(0.0);
  var c2b = vec4<f32>(0.0);
  var c3a = vec4<f32>(0.0);
  var c3b = vec4<f32>(0.0);
#if !OUTER_M64
  var c4a = vec4<f32>(0.0);
  var c4b = vec4<f32>(0.0);
  var c5a = vec4<f32>(0.0);
  var c5b = vec4<f32>(0.0);
  var c6a = vec4<f32>(0.0);
  var c6b = vec4<f32>(0.0);
  var c7a = vec4<f32>(0.0);
  var c7b = vec4<f32>(0.0);
#endif

  // Every thread runs the same steps (the barriers need it); a half whose K step lies past K
  // loads zeros.
  var next = outer_load_tile(m0, n0, k_begin + k_half, lid);
#if OUTER_DB
  outer_store_tile(next, lid, buf0);
  workgroupBarrier();
  var buf = 0u;
#endif
  for (var k0 = k_begin; k0 < k_end; k0 += K_STEP) {
#if OUTER_DB
    let bx = (buf0 + buf) * OUTER_GX;
    let bw = (buf0 + buf) * OUTER_GW;
#else
    outer_store_tile(next, lid, buf0);
    workgroupBarrier();
    let bx = buf0 * OUTER_GX;
    let bw = buf0 * OUTER_GW;
#endif
    if (k0 + K_STEP < k_end) {
      next = outer_load_tile(m0, n0, k0 + K_STEP + k_half, lid);
    }
    for (var kk = 0u; kk < OUTER_KT; kk++) {
      let a0 = gx[bx + kk * (OUTER_M / 4u) + ty];
      let b0 = gw[bw + kk * (OUTER_N / 4u) + tx];
      let b1 = gw[bw + kk * (OUTER_N / 4u) + 16u + tx];
      c0a = fma(vec4<f32>(a0.x), b0, c0a);
      c0b = fma(vec4<f32>(a0.x), b1, c0b);
      c1a = fma(vec4<f32>(a0.y), b0, c1a);
      c1b = fma(vec4<f32>(a0.y), b1, c1b);
      c2a = fma(vec4<f32>(a0.z), b0, c2a);
      c2b = fma(vec4<f32>(a0.z), b1, c2b);
      c3a = fma(vec4<f32>(a0.w), b0, c3a);
      c3b = fma(vec4<f32>(a0.w), b1, c3b);
#if !OUTER_M64
      let a1 = gx[bx + kk * (OUTER_M / 4u) + 16u + ty];
      c4a = fma(vec4<f32>(a1.x), b0, c4a);
      c4b = fma(vec4<f32>(a1.x), b1, c4b);
      c5a = fma(vec4<f32>(a1.y), b0, c5a);
      c5b = fma(vec4<f32>(a1.y), b1, c5b);
      c6a = fma(vec4<f32>(a1.z), b0, c6a);
      c6b = fma(vec4<f32>(a1.z), b1, c6b);
      c7a = fma(vec4<f32>(a1.w), b0, c7a);
      c7b = fma(vec4<f32>(a1.w), b1, c7b);
#endif
    }
#if OUTER_DB
    // The other buffer was last read in the step before this one, which every thread finished
    // before the last barrier.
    buf = 1u - buf;
    if (k0 + K_STEP < k_end) {
      outer_store_tile(next, lid, buf0 + buf);
    }
#endif
    workgroupBarrier();
  }

#if OUTER_KSPLIT
  // The second half's sums reach the first through gw, which nobody reads any more (the loop
  // ended on a barrier).
  outer_hand(half, lid, &c0a, &c0b, &c1a, &c1b);
  outer_hand(half, lid, &c2a, &c2b, &c3a, &c3b);
#if !OUTER_M64
  outer_hand(half, lid, &c4a, &c4b, &c5a, &c5b);
  outer_hand(half, lid, &c6a, &c6b, &c7a, &c7b);
#endif
  if (half == 1u) {
    return;
  }
#endif

  let ma = m0 + 4u * ty;
  let na = n0 + 4u * tx;
  outer_store_y(wid.z, ma, na, c0a);
  outer_store_y(wid.z, ma, na + 64u, c0b);
  outer_store_y(wid.z, ma + 1u, na, c1a);
  outer_store_y(wid.z, ma + 1u, na + 64u, c1b);
  outer_store_y(wid.z, ma + 2u, na, c2a);
  outer_store_y(wid.z, ma + 2u, na + 64u, c2b);
  outer_store_y(wid.z, ma + 3u, na, c3a);
  outer_store_y(wid.z, ma + 3u, na + 64u, c3b);
#if !OUTER_M64
  outer_store_y(wid.z, ma + 64u, na, c4a);
  outer_store_y(wid.z, ma + 64u, na + 64u, c4b);
  outer_store_y(wid.z, ma + 65u, na, c5a);
  outer_store_y(wid.z, ma + 65u, na + 64u, c5b);
  outer_store_y(wid.z, ma + 66u, na, c6a);
  outer_store_y(wid.z, ma + 66u, na + 64u, c6b);
  outer_store_y(wid.z, ma + 67u, na, c7a);
  outer_store_y(wid.z, ma + 67u, na + 64u, c7b);
#endif
}
