// gemm_outer: y[rows, N] = x[rows, K] · Wᵀ for prefill-sized products (K % 16 == 0), as a
// register-blocked outer product. Shared by the weight formats, which differ only in how eight
// weights are read: the including kernel declares `p` (rows, n_count, n_total, n_start, k),
// `y`, and
//   fn outer_x4(m: u32, k: u32) -> vec4<f32>   x[m, k .. k + 3] (m < rows, k % 4 == 0)
//   fn outer_w8(n: u32, k: u32) -> OuterW8     W[n, k .. k + 7] (n < n_count, k % 8 == 0)
//   fn outer_prologue(lid: u32)                 what the workgroup sets up first (a code table)
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
// - OUTER_H (with F16): the tiles hold f16 (x rounded to f16, the weights as f16) and each K step
//   of 16 is summed in f16 multiply-adds (two per instruction), then added to f32 totals: twice
//   the arithmetic rate and half the workgroup memory, at the error of 16-term f16 sums.
// - The next K step's x and weights are loaded into registers while this one computes (one
//   workgroup-memory buffer, register double-buffering): the global loads are in flight during the
//   arithmetic, with two barriers per step of 16.

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
const OUTER_K: u32 = 16u;
const OUTER_THREADS: u32 = 256u;
// x values each thread loads per K step (8 at OUTER_M 128, 4 at 64), from consecutive k.
const OUTER_XPT: u32 = OUTER_M * OUTER_K / OUTER_THREADS;

#if OUTER_H
alias OT = f16;
#else
alias OT = f32;
#endif

// K-major tiles: element (k, m) of x is gx[k · OUTER_M / 4 + m / 4][m % 4].
var<workgroup> gx: array<vec4<OT>, OUTER_K * OUTER_M / 4u>;
var<workgroup> gw: array<vec4<OT>, OUTER_K * OUTER_N / 4u>;

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
  if (wn < p.n_count) {
    l.w = outer_w8(wn, k0 + (lid / OUTER_N) * 8u);
  }
  return l;
}

// Writes a thread's loaded slice into the tiles, transposed (consecutive threads own consecutive
// rows or features, so each store instruction of a warp hits 32 different banks).
fn outer_store(l: OuterLoad, lid: u32) {
  let xm = lid % OUTER_M;
  let xk = (lid / OUTER_M) * OUTER_XPT;
  for (var j = 0u; j < 4u; j++) {
    gx[(xk + j) * (OUTER_M / 4u) + xm / 4u][xm % 4u] = OT(l.x0[j]);
#if !OUTER_M64
    gx[(xk + 4u + j) * (OUTER_M / 4u) + xm / 4u][xm % 4u] = OT(l.x1[j]);
#endif
  }
  let wn = lid % OUTER_N;
  let wk = (lid / OUTER_N) * 8u;
  for (var j = 0u; j < 4u; j++) {
    gw[(wk + j) * (OUTER_N / 4u) + wn / 4u][wn % 4u] = OT(l.w.lo[j]);
    gw[(wk + 4u + j) * (OUTER_N / 4u) + wn / 4u][wn % 4u] = OT(l.w.hi[j]);
  }
}

// Four outputs (m, n .. n + 3), the ones past the product left out.
fn outer_store_y(m: u32, n: u32, v: vec4<f32>) {
  if (m >= p.rows) {
    return;
  }
  for (var j = 0u; j < 4u; j++) {
    if (n + j < p.n_count) {
      y[m * p.n_total + p.n_start + n + j] = v[j];
    }
  }
}

#if OUTER_H
// A K step's f16 sums into the f32 totals.
fn flush(t: ptr<function, vec4<f32>>, c: ptr<function, vec4<f16>>) {
  *t += vec4<f32>(*c);
  *c = vec4<f16>(0.0);
}
#endif

@compute @workgroup_size(OUTER_THREADS)
fn gemm_outer(
  @builtin(local_invocation_index) lid: u32,
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
) {
  outer_prologue(lid);
  let tiles_n = (p.n_count + OUTER_N - 1u) / OUTER_N;
  let tiles_m = (p.rows + OUTER_M - 1u) / OUTER_M;
  let tile = wid.x + wid.y * nwg.x;
  if (tile >= tiles_n * tiles_m) {
    return; // the whole workgroup leaves: no barrier is skipped by part of it
  }
  // Neighbouring workgroups share a row tile of x and walk the features.
  let m0 = (tile / tiles_n) * OUTER_M;
  let n0 = (tile % tiles_n) * OUTER_N;
  let tx = lid % 16u;
  let ty = lid / 16u;

  // Rows 4·ty + i (c0..c3) and 64 + 4·ty + i (c4..c7); features 4·tx + j (a) and 64 + 4·tx + j (b).
  // Written out, not an array indexed in loops (which can end up in local memory). With OUTER_H
  // the c's are one K step's f16 sums and the t's the f32 totals; else the c's are the totals.
  var c0a = vec4<OT>(0.0);
  var c0b = vec4<OT>(0.0);
  var c1a = vec4<OT>(0.0);
  var c1b = vec4<OT>(0.0);
  var c2a = vec4<OT>(0.0);
  var c2b = vec4<OT>(0.0);
  var c3a = vec4<OT>(0.0);
  var c3b = vec4<OT>(0.0);
#if !OUTER_M64
  var c4a = vec4<OT>(0.0);
  var c4b = vec4<OT>(0.0);
  var c5a = vec4<OT>(0.0);
  var c5b = vec4<OT>(0.0);
  var c6a = vec4<OT>(0.0);
  var c6b = vec4<OT>(0.0);
  var c7a = vec4<OT>(0.0);
  var c7b = vec4<OT>(0.0);
#endif
#if OUTER_H
  var t0a = vec4<f32>(0.0);
  var t0b = vec4<f32>(0.0);
  var t1a = vec4<f32>(0.0);
  var t1b = vec4<f32>(0.0);
  var t2a = vec4<f32>(0.0);
  var t2b = vec4<f32>(0.0);
  var t3a = vec4<f32>(0.0);
  var t3b = vec4<f32>(0.0);
#if !OUTER_M64
  var t4a = vec4<f32>(0.0);
  var t4b = vec4<f32>(0.0);
  var t5a = vec4<f32>(0.0);
  var t5b = vec4<f32>(0.0);
  var t6a = vec4<f32>(0.0);
  var t6b = vec4<f32>(0.0);
  var t7a = vec4<f32>(0.0);
  var t7b = vec4<f32>(0.0);
#endif
#endif

  var next = outer_load(m0, n0, 0u, lid);
  for (var k0 = 0u; k0 < p.k; k0 += OUTER_K) {
    outer_store(next, lid);
    workgroupBarrier();
    if (k0 + OUTER_K < p.k) {
      next = outer_load(m0, n0, k0 + OUTER_K, lid);
    }
    for (var kk = 0u; kk < OUTER_K; kk++) {
      let a0 = gx[kk * (OUTER_M / 4u) + ty];
      let b0 = gw[kk * (OUTER_N / 4u) + tx];
      let b1 = gw[kk * (OUTER_N / 4u) + 16u + tx];
      c0a = fma(vec4<OT>(a0.x), b0, c0a);
      c0b = fma(vec4<OT>(a0.x), b1, c0b);
      c1a = fma(vec4<OT>(a0.y), b0, c1a);
      c1b = fma(vec4<OT>(a0.y), b1, c1b);
      c2a = fma(vec4<OT>(a0.z), b0, c2a);
      c2b = fma(vec4<OT>(a0.z), b1, c2b);
      c3a = fma(vec4<OT>(a0.w), b0, c3a);
      c3b = fma(vec4<OT>(a0.w), b1, c3b);
#if !OUTER_M64
      let a1 = gx[kk * (OUTER_M / 4u) + 16u + ty];
      c4a = fma(vec4<OT>(a1.x), b0, c4a);
      c4b = fma(vec4<OT>(a1.x), b1, c4b);
      c5a = fma(vec4<OT>(a1.y), b0, c5a);
      c5b = fma(vec4<OT>(a1.y), b1, c5b);
      c6a = fma(vec4<OT>(a1.z), b0, c6a);
      c6b = fma(vec4<OT>(a1.z), b1, c6b);
      c7a = fma(vec4<OT>(a1.w), b0, c7a);
      c7b = fma(vec4<OT>(a1.w), b1, c7b);
#endif
    }
#if OUTER_H
    flush(&t0a, &c0a);
    flush(&t0b, &c0b);
    flush(&t1a, &c1a);
    flush(&t1b, &c1b);
    flush(&t2a, &c2a);
    flush(&t2b, &c2b);
    flush(&t3a, &c3a);
    flush(&t3b, &c3b);
#if !OUTER_M64
    flush(&t4a, &c4a);
    flush(&t4b, &c4b);
    flush(&t5a, &c5a);
    flush(&t5b, &c5b);
    flush(&t6a, &c6a);
    flush(&t6b, &c6b);
    flush(&t7a, &c7a);
    flush(&t7b, &c7b);
#endif
#endif
    workgroupBarrier();
  }

  let ma = m0 + 4u * ty;
  let na = n0 + 4u * tx;
#if OUTER_H
  outer_store_y(ma, na, t0a);
  outer_store_y(ma, na + 64u, t0b);
  outer_store_y(ma + 1u, na, t1a);
  outer_store_y(ma + 1u, na + 64u, t1b);
  outer_store_y(ma + 2u, na, t2a);
  outer_store_y(ma + 2u, na + 64u, t2b);
  outer_store_y(ma + 3u, na, t3a);
  outer_store_y(ma + 3u, na + 64u, t3b);
#if !OUTER_M64
  outer_store_y(ma + 64u, na, t4a);
  outer_store_y(ma + 64u, na + 64u, t4b);
  outer_store_y(ma + 65u, na, t5a);
  outer_store_y(ma + 65u, na + 64u, t5b);
  outer_store_y(ma + 66u, na, t6a);
  outer_store_y(ma + 66u, na + 64u, t6b);
  outer_store_y(ma + 67u, na, t7a);
  outer_store_y(ma + 67u, na + 64u, t7b);
#endif
#else
  outer_store_y(ma, na, c0a);
  outer_store_y(ma, na + 64u, c0b);
  outer_store_y(ma + 1u, na, c1a);
  outer_store_y(ma + 1u, na + 64u, c1b);
  outer_store_y(ma + 2u, na, c2a);
  outer_store_y(ma + 2u, na + 64u, c2b);
  outer_store_y(ma + 3u, na, c3a);
  outer_store_y(ma + 3u, na + 64u, c3b);
#if !OUTER_M64
  outer_store_y(ma + 64u, na, c4a);
  outer_store_y(ma + 64u, na + 64u, c4b);
  outer_store_y(ma + 65u, na, c5a);
  outer_store_y(ma + 65u, na + 64u, c5b);
  outer_store_y(ma + 66u, na, c6a);
  outer_store_y(ma + 66u, na + 64u, c6b);
  outer_store_y(ma + 67u, na, c7a);
  outer_store_y(ma + 67u, na + 64u, c7b);
#endif
#endif
}
