// The int8 weight formats: y[rows, N] = x[rows, K] · Wᵀ with W stored as int8 codes [N, K],
// four per u32 (element 4i in the lowest byte), K a multiple of 4. CPU twins:
// lib/quant/int8_vectorwise.ts, int8_absmax.ts, llm_int8.ts (integer steps in int8_codes.ts).
//
// The activations are quantized on the GPU too, and the product is int8·int8 with i32
// accumulation (dot4I8Packed), rescaled as y = f32(acc) · (sx[m] · sw[n]) · (1/127²).
//
// Entry points, in the order one product dispatches them:
//   outlier_mask  (LLM)        column k is an outlier if any |x[m, k]| ≥ threshold over the rows
//   absmax_all    (PER_TENSOR) one absmax over all of x, written to sx[0..rows)
//   quantize                   one workgroup per row: absmax (or the per-tensor one), codes;
//                              with LLM, workgroup 0 also compacts the outlier mask to a list
//   gemv / gemm                the int8 product, plus (LLM) the outlier columns in 16-bit:
//                              Σ_{k outlier} f16(x[m, k]) · f16(code[n, k] · sw[n] / 127)
//
// Defines: PER_TENSOR (int8-absmax: one activation scale; the products read the one weight
// scale through sw_stride = 0, so both int8 formats share gemv and gemm), LLM (outlier
// decomposition), LLM_FP16 (outlier columns read FP16 copies where the weight keeps them), F16
// (outlier products in f16 arithmetic; the int8 part is integer either way), K16 (K % 16 == 0:
// gemv reads 16 codes per load).
//
// The outlier buffer `outl` (u32, 1 + 3K words): [0] count, [1, 1+K) the outlier columns in
// ascending order, [1+K, 1+2K) for each listed column its index among the weight's FP16
// columns (or 0xffffffff), [1+2K, 1+3K) the mask, one word per column.

#if F16
enable f16;
#endif

struct Params {
  rows: u32,       // activation rows M
  n_total: u32,    // N: the row stride of y
  k: u32,          // K, a multiple of 4
  n_start: u32,    // first output feature of this weight chunk
  n_count: u32,    // output features in this chunk
  threshold: f32,  // LLM: outlier threshold on |x|; ≤ 0 turns the decomposition off
  n_kept: u32,     // LLM_FP16: number of FP16 columns the weight keeps
  sw_stride: u32,  // 1: a weight scale per output feature; 0: one for the tensor
}

@group(0) @binding(0) var<uniform> p: Params;

const INV_127 = 1.0 / 127.0;
const INV_127_SQ = 1.0 / (127.0 * 127.0);
const NONE = 0xffffffffu;

// --- activation side: bindings of outlier_mask, absmax_all, quantize ---------------------------

@group(0) @binding(1) var<storage, read> x: array<f32>;
#if LLM
@group(0) @binding(2) var<storage, read_write> outl_rw: array<u32>;
@group(0) @binding(3) var<storage, read_write> sx_rw: array<f32>;
@group(0) @binding(4) var<storage, read_write> xq_out: array<u32>;
#if LLM_FP16
@group(0) @binding(5) var<storage, read> kept_cols: array<u32>;
#endif
#else
@group(0) @binding(2) var<storage, read_write> sx_rw: array<f32>;
@group(0) @binding(3) var<storage, read_write> xq_out: array<u32>;
#endif

override QWG: u32 = 256u; // threads per workgroup of the activation kernels, a power of two

var<workgroup> red: array<f32, QWG>;
var<workgroup> scan: array<u32, QWG>;

// 127 / a rounded to the nearest f32, exactly as the CPU twin's Math.fround(127 / absmax).
// WGSL allows division to be 2.5 ulp off (GPUs use a reciprocal), which would move the codes
// of values lying near a rounding boundary; dividing the mantissas as integers costs ~40 steps
// once per row.
fn scale127(a: f32) -> f32 {
  if (!(a > 0.0)) {
    return 0.0; // an all-zero row gets all-zero codes
  }
  let bits = bitcast<u32>(a);
  let e = (bits >> 23u) & 0xffu;
  if (e == 0u || e == 0xffu) {
    return 127.0 / a; // subnormal or infinite absmax: not worth exactness
  }
  let m = (bits & 0x7fffffu) | 0x800000u; // a = m · 2^(e - 150)
  // 127 / a = 127 · 2^(150 - e) / m; take 24 significant bits of 127 · 2^steps / m.
  let steps = select(41u, 40u, m <= (127u << 17u));
  var r = 127u;
  var q = 0u;
  for (var i = 0u; i < steps; i++) {
    r <<= 1u;
    q <<= 1u;
    if (r >= m) {
      r -= m;
      q |= 1u;
    }
  }
  if (2u * r > m || (2u * r == m && (q & 1u) == 1u)) {
    q += 1u; // round half to even
  }
  return ldexp(f32(q), 150 - i32(e) - i32(steps));
}

// round(v · s) half to even (WGSL round), clamped to ±127, as int8Code.
fn code_of(v: f32, s: f32) -> i32 {
  return i32(clamp(round(v * s), -127.0, 127.0));
}

fn is_outlier_value(v: f32) -> bool {
#if LLM
  return p.threshold > 0.0 && abs(v) >= p.threshold;
#else
  return false;
#endif
}

#if LLM
// One thread per column: the outlier mask over the current rows.
@compute @workgroup_size(QWG)
fn outlier_mask(
  @builtin(global_invocation_id) gid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
) {
  let c = gid.x + gid.y * nwg.x * QWG;
  if (c >= p.k) {
    return;
  }
  var flag = 0u;
  for (var m = 0u; m < p.rows; m++) {
    if (is_outlier_value(x[m * p.k + c])) {
      flag = 1u;
      break;
    }
  }
  outl_rw[1u + 2u * p.k + c] = flag;
}

// Workgroup 0 of quantize: the mask becomes an ascending list (a prefix sum over contiguous
// runs of columns keeps it deterministic and in the CPU twin's order).
fn compact_outliers(lid: u32) {
  let per = (p.k + QWG - 1u) / QWG;
  let c0 = min(lid * per, p.k);
  let c1 = min(c0 + per, p.k);
  var count = 0u;
  for (var c = c0; c < c1; c++) {
    count += outl_rw[1u + 2u * p.k + c];
  }
  scan[lid] = count;
  workgroupBarrier();
  for (var s = 1u; s < QWG; s <<= 1u) {
    var add = 0u;
    if (lid >= s) {
      add = scan[lid - s];
    }
    workgroupBarrier();
    scan[lid] += add;
    workgroupBarrier();
  }
  var j = scan[lid] - count;
  for (var c = c0; c < c1; c++) {
    if (outl_rw[1u + 2u * p.k + c] != 0u) {
      outl_rw[1u + j] = c;
      outl_rw[1u + p.k + j] = kept_index(c);
      j++;
    }
  }
  if (lid == QWG - 1u) {
    outl_rw[0] = scan[lid];
  }
}

fn kept_index(c: u32) -> u32 {
#if LLM_FP16
  // kept_cols is ascending: binary search.
  var lo = 0u;
  var hi = p.n_kept;
  while (lo < hi) {
    let mid = (lo + hi) / 2u;
    let v = kept_cols[mid];
    if (v == c) {
      return mid;
    }
    if (v < c) {
      lo = mid + 1u;
    } else {
      hi = mid;
    }
  }
#endif
  return NONE;
}
#endif

#if PER_TENSOR
// One workgroup: the absmax of the whole activation tensor, copied to every row's scale.
@compute @workgroup_size(QWG)
fn absmax_all(@builtin(local_invocation_index) lid: u32) {
  let total = p.rows * p.k;
  var a = 0.0;
  for (var i = lid; i < total; i += QWG) {
    a = max(a, abs(x[i]));
  }
  red[lid] = a;
  workgroupBarrier();
  for (var s = QWG / 2u; s > 0u; s >>= 1u) {
    if (lid < s) {
      red[lid] = max(red[lid], red[lid + s]);
    }
    workgroupBarrier();
  }
  for (var m = lid; m < p.rows; m += QWG) {
    sx_rw[m] = red[0];
  }
}
#endif

// One workgroup per activation row: its absmax (outlier values left out), then its codes,
// four per word; outlier columns get code 0.
@compute @workgroup_size(QWG)
fn quantize(
  @builtin(local_invocation_index) lid: u32,
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
) {
  let m = wid.x + wid.y * nwg.x;
#if LLM
  if (m == 0u) {
    compact_outliers(lid);
  }
#endif
  if (m >= p.rows) {
    return; // uniform per workgroup
  }
  let base = m * p.k;
#if PER_TENSOR
  let amax = sx_rw[m];
#else
  var a = 0.0;
  for (var i = lid; i < p.k; i += QWG) {
    let v = x[base + i];
    if (!is_outlier_value(v)) {
      a = max(a, abs(v));
    }
  }
  red[lid] = a;
  workgroupBarrier();
  for (var s = QWG / 2u; s > 0u; s >>= 1u) {
    if (lid < s) {
      red[lid] = max(red[lid], red[lid + s]);
    }
    workgroupBarrier();
  }
  let amax = red[0];
  if (lid == 0u) {
    sx_rw[m] = amax;
  }
#endif
  let s = scale127(amax);
  let words = p.k / 4u;
  for (var w = lid; w < words; w += QWG) {
    let k0 = 4u * w;
    var q = vec4<i32>(
      code_of(x[base + k0], s),
      code_of(x[base + k0 + 1u], s),
      code_of(x[base + k0 + 2u], s),
      code_of(x[base + k0 + 3u], s),
    );
#if LLM
    let mask = 1u + 2u * p.k + k0;
    q *= vec4<i32>(
      i32(outl_rw[mask] == 0u),
      i32(outl_rw[mask + 1u] == 0u),
      i32(outl_rw[mask + 2u] == 0u),
      i32(outl_rw[mask + 3u] == 0u),
    );
#endif
    xq_out[m * words + w] = pack4xI8(q);
  }
}

// --- the product: bindings of gemv and gemm -------------------------------------------------

@group(0) @binding(1) var<storage, read> xq: array<u32>;
@group(0) @binding(1) var<storage, read> xq4: array<vec4<u32>>;
@group(0) @binding(2) var<storage, read> sx: array<f32>;
@group(0) @binding(3) var<storage, read> w: array<u32>; // this chunk's rows only
@group(0) @binding(3) var<storage, read> w4: array<vec4<u32>>;
@group(0) @binding(4) var<storage, read> sw: array<f32>; // all N (or 1) weight scales
@group(0) @binding(5) var<storage, read_write> y: array<f32>;
#if LLM
@group(0) @binding(6) var<storage, read> xf: array<f32>;
@group(0) @binding(7) var<storage, read> outl: array<u32>;
#if LLM_FP16
@group(0) @binding(8) var<storage, read> kept_w: array<u32>; // FP16 columns, column-major pairs
#endif
#endif

// sw_stride 0 reads the one per-tensor scale: int8-absmax and int8-vectorwise share the product.
fn weight_scale(gn: u32) -> f32 {
  return sw[gn * p.sw_stride];
}

// Word i of this chunk's codes, through whichever view the entry point binds.
fn weight_word(i: u32) -> u32 {
#if K16
  return w4[i / 4u][i % 4u];
#else
  return w[i];
#endif
}

fn rescale(acc: i32, m: u32, gn: u32) -> f32 {
  return f32(acc) * (sx[m] * weight_scale(gn)) * INV_127_SQ;
}

#if LLM
// Weight of outlier column c (the j-th listed) for local output n: the kept FP16 copy, or the
// int8 code dequantized as code · sw / 127 and rounded to f16, as bitsandbytes.
fn outlier_weight(j: u32, c: u32, n: u32) -> f32 {
  let gn = p.n_start + n;
#if LLM_FP16
  let kept = outl[1u + p.k + j];
  if (kept != NONE) {
    let i = kept * p.n_total + gn;
    return unpack2x16float(kept_w[i / 2u])[i % 2u];
  }
#endif
  let word = weight_word(n * (p.k / 4u) + c / 4u);
  let code = bitcast<i32>(word << (24u - 8u * (c % 4u))) >> 24u;
  return f16_round(f32(code) * weight_scale(gn) * INV_127);
}

// v rounded to the nearest f16 (ties to even), as an f32. pack2x16float and f32 -> f16
// conversions may round either way (NVIDIA's truncate), so we round the bits ourselves.
fn f16_round(v: f32) -> f32 {
  let a = abs(v);
  if (a < 6.103515625e-5) {
    return round(v * 16777216.0) / 16777216.0; // subnormal f16: multiples of 2^-24, exact
  }
  let b = bitcast<u32>(v);
  if (a >= 65520.0) {
    return bitcast<f32>((b & 0x80000000u) | 0x7f800000u); // past the largest f16: infinity
  }
  // keep 10 mantissa bits: add just under half an ulp, plus one when the kept lsb is odd
  return bitcast<f32>((b + 0xfffu + ((b >> 13u) & 1u)) & 0xffffe000u);
}

// f16(x) · w with w already an f16 value: exact in f32, or an f16 multiply with F16.
fn outlier_product(xv: f32, wv: f32) -> f32 {
#if F16
  return f32(f16(f16_round(xv)) * f16(wv)); // both exact conversions
#else
  return f16_round(xv) * wv;
#endif
}
#endif

override GEMV_WG: u32 = 256u; // threads per workgroup
override GEMV_TPR: u32 = 32u; // threads per output feature: a power of two dividing GEMV_WG

var<workgroup> ipart: array<i32, GEMV_WG>;
var<workgroup> fpart: array<f32, GEMV_WG>;

@compute @workgroup_size(GEMV_WG)
fn gemv(
  @builtin(local_invocation_index) lid: u32,
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
) {
  let lane = lid % GEMV_TPR;
  let n = (wid.x + wid.y * nwg.x) * (GEMV_WG / GEMV_TPR) + lid / GEMV_TPR;
  var acc = 0i;
  var extra = 0.0;
  if (n < p.n_count) {
#if K16
    let units = p.k / 16u;
    let base = n * units;
    for (var u = lane; u < units; u += GEMV_TPR) {
      let a = xq4[u];
      let b = w4[base + u];
      acc += dot4I8Packed(a.x, b.x) + dot4I8Packed(a.y, b.y) + dot4I8Packed(a.z, b.z) +
        dot4I8Packed(a.w, b.w);
    }
#else
    let words = p.k / 4u;
    let base = n * words;
    for (var u = lane; u < words; u += GEMV_TPR) {
      acc += dot4I8Packed(xq[u], weight_word(base + u));
    }
#endif
#if LLM
    let count = outl[0];
    for (var j = lane; j < count; j += GEMV_TPR) {
      let c = outl[1u + j];
      extra += outlier_product(xf[c], outlier_weight(j, c, n));
    }
#endif
  }
  // No subgroup operations on the adapters we target: reduce through workgroup memory.
  ipart[lid] = acc;
  fpart[lid] = extra;
  workgroupBarrier();
  for (var s = GEMV_TPR / 2u; s > 0u; s >>= 1u) {
    if (lane < s) {
      ipart[lid] += ipart[lid + s];
      fpart[lid] += fpart[lid + s];
    }
    workgroupBarrier();
  }
  if (lane == 0u && n < p.n_count) {
    let gn = p.n_start + n;
    y[gn] = rescale(ipart[lid], 0u, gn) + fpart[lid];
  }
}

override TILE_M: u32 = 64u; // activation rows per workgroup, multiple of 4
override TILE_N: u32 = 64u; // output features per workgroup, multiple of 4
const KW: u32 = 4u; // words per tile row and K step: 16 codes

var<workgroup> xs: array<u32, TILE_M * KW>;
var<workgroup> ws: array<u32, TILE_N * KW>;

// TILE_M x TILE_N outputs per workgroup, 4x4 per thread; the int8 codes go through workgroup
// memory as they are (four per word), so a tile step is 16 values of K.
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
  let words = p.k / 4u;
  let tx = lid % (TILE_N / 4u);
  let ty = lid / (TILE_N / 4u);

  var acc: array<vec4<i32>, 4>;
  for (var w0 = 0u; w0 < words; w0 += KW) {
    for (var i = lid; i < TILE_M * KW; i += threads) {
      let m = m0 + i / KW;
      let kw = w0 + i % KW;
      var v = 0u;
      if (m < p.rows && kw < words) {
        v = xq[m * words + kw];
      }
      xs[i] = v;
    }
    for (var i = lid; i < TILE_N * KW; i += threads) {
      let n = n0 + i / KW;
      let kw = w0 + i % KW;
      var v = 0u;
      if (n < p.n_count && kw < words) {
        v = weight_word(n * words + kw);
      }
      ws[i] = v;
    }
    workgroupBarrier();
    for (var kk = 0u; kk < KW; kk++) {
      var xa: array<u32, 4>;
      var wb: array<u32, 4>;
      for (var i = 0u; i < 4u; i++) {
        xa[i] = xs[(ty + i * (TILE_M / 4u)) * KW + kk];
        wb[i] = ws[(tx + i * (TILE_N / 4u)) * KW + kk];
      }
      for (var i = 0u; i < 4u; i++) {
        for (var j = 0u; j < 4u; j++) {
          acc[i][j] += dot4I8Packed(xa[i], wb[j]);
        }
      }
    }
    workgroupBarrier();
  }
  for (var i = 0u; i < 4u; i++) {
    let m = m0 + ty + i * (TILE_M / 4u);
    for (var j = 0u; j < 4u; j++) {
      let n = n0 + tx + j * (TILE_N / 4u);
      if (m < p.rows && n < p.n_count) {
        let gn = p.n_start + n;
        var v = rescale(acc[i][j], m, gn);
#if LLM
        // Outlier columns are few (a handful of hidden dimensions): a plain loop per output.
        var extra = 0.0;
        let count = outl[0];
        for (var t = 0u; t < count; t++) {
          let c = outl[1u + t];
          extra += outlier_product(xf[m * p.k + c], outlier_weight(t, c, n));
        }
        v += extra;
#endif
        y[m * p.n_total + gn] = v;
      }
    }
  }
}
