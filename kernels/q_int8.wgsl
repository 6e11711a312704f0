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
//   quantize_row               one activation row (decode) over ⌈K / 4·QWG⌉ workgroups: replaces
//                              the three above when rows = 1
//   quantize_rows              2-8 rows, each exactly as quantize_row codes it alone (its own
//                              scale and outlier list): the verify pass of speculative decoding
//   gemv / gemm                the int8 product, plus (LLM) the outlier columns in 16-bit:
//                              (Σ_{k outlier} f16(x[m, k]) · code[n, k]) · sw[n] / 127 (kept
//                              FP16 columns: f16(x) · their f16 weight)
//   gemv_rows                  gemv over 2-8 rows quantized by quantize_rows, the weights read
//                              once for all rows
//
// Dispatches per product: rows = 1 quantize_row + gemv (2, all three formats); more rows
// [outlier_mask | absmax_all] + quantize + gemm (2 or 3). A layer whose caller promises the same
// x as the previous layer's (`reuseInput`) skips the activation side: 1 dispatch at rows = 1.
//
// Why quantize_row. In decode, quantize had one workgroup for the whole row: a loop of K / QWG
// dependent load round trips (16 at K = 4096, 56 at K = 14336) on one SM, 15 to 33 µs on an
// H100 (absmax_all, one workgroup too, another 12 to 29; outlier_mask 6), as long as the gemv it
// feeds. A row cannot be coded before its absmax is known, and WGSL has no grid-wide barrier,
// so a split needs either a second dispatch (partial absmaxes, then the codes) or each
// workgroup computing the absmax itself. quantize_row does the latter: every workgroup reads
// the whole row (vec4 loads, four in flight per thread, so ⌈K / 4096⌉ steps plus a remainder),
// reduces it, then codes only its own 4·QWG values, which it loaded first. The redundant reads,
// ⌈K / 4·QWG⌉ × 4K bytes (0.8 MB at K = 14336), come from L2, where the previous kernel left x:
// far cheaper than a dispatch (~27 µs of CPU each in the decode loop). At one row an outlier
// column is just an outlier value and the per-tensor absmax is the row's, so outlier_mask and
// absmax_all go too; each workgroup also counts the outliers before its segment, so it writes
// its part of the ascending outlier list itself (a scan over its own threads). Measured on an
// H100 (x evicted from L2 first, timestamps around each dispatch, where an empty-ish dispatch
// such as outlier_mask takes 6 µs): 7.5 to 8.4 µs at K = 4096 to 14336, 10.2 to 10.8 µs with
// LLM; a whole 4096x14336 product 38 µs instead of 62.5 (vector-wise), 45 instead of 75
// (LLM.int8()).
//
// Folding the coding into gemv instead would leave one dispatch, but every gemv workgroup (N / 8
// of them at the default shape, each streaming 8K bytes of W) would read the row in f32,
// twice (absmax, then codes): 8K bytes instead of the K bytes of xq, in the kernel that must
// stream W at full bandwidth. So the gemv is unchanged. For more rows the per-row workgroups of quantize already fill the GPU,
// and a workgroup per (row, segment) re-reading its row would cost ⌈K / 4·QWG⌉ times the reads,
// so those products keep the kernels above.
//
// The dense outlier sum (LLM.int8() gemv, K % 16 == 0, no FP16 columns). Walking the outlier
// list costs each lane a dependent chain of loads per listed column (the column, then its
// scattered weight code): with many outliers (~6% of down_proj's columns on random weights) that
// was 3.8 of 8.5 ms of a 7B decode step. But f16(x) of an outlier is a multiple of 2^-shift
// (digit_shift), so I = f16(x) · 2^shift is an integer, and Σ_k I_k · code[n, k] is an integer
// product over the same 16-byte weight loads the int8 part makes: quantize_row writes I as three
// int8 digit planes (0 at the other columns) after the codes, and gemv adds three dot16 per unit
// (exact in i32), then one multiply by 2^-shift · sw / 127. That is the outlier part with the
// weight scale applied to the sum, the semantics lib/quant/llm_int8.ts states for both paths. The
// choice is uniform per product (outlier count against LLM_DENSE, and the digits must fit: the
// scale quantize_row leaves in sx[rows] is 0 otherwise), so neither path diverges.
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
  split1: u32,     // gemv with ROUTE2/ROUTE3: first feature that goes to y2
  split2: u32,     // gemv with ROUTE3: first feature that goes to y3
}

@group(0) @binding(0) var<uniform> p: Params;

const INV_127 = 1.0 / 127.0;
const INV_127_SQ = 1.0 / (127.0 * 127.0);
const NONE = 0xffffffffu;

// --- activation side: bindings of outlier_mask, absmax_all, quantize ---------------------------

@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> x4: array<vec4<f32>>; // quantize_row: K % 4 == 0
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
#if SWIGLU
@group(0) @binding(4) var<storage, read> up4: array<vec4<f32>>;
#endif
#endif

// Word i (four values) of the row quantize_row codes. With SWIGLU (quantize_row and
// quantize_rows, not LLM)
// x holds gate_proj's output and up4 up_proj's, and the row is silu(x) · up, computed as
// elementwise.wgsl's swiglu computes it (the same f32 expression): down_proj's input without the
// SwiGLU dispatch or the round trip of its result through memory.
fn x_word(i: u32) -> vec4<f32> {
#if SWIGLU
  let g = x4[i];
  return g / (1.0 + exp(-g)) * up4[i];
#else
  return x4[i];
#endif
}

override QWG: u32 = 256u; // threads per workgroup of the activation kernels, a power of two

var<workgroup> red: array<f32, QWG>;
var<workgroup> scan: array<u32, QWG>;
var<workgroup> counts: array<vec2<u32>, QWG>; // quantize_row: outliers before / in the segment
#if LLM
var<workgroup> red_big: array<f32, QWG>; // quantize_row: the largest |outlier|
#endif

// scale127 (127 / absmax, correctly rounded) and code_of (one activation code), shared with
// rmsnorm.wgsl's add_rmsnorm_q8.
#include "common/int8_code.wgsl"

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

// quantize_row: which of four values are outliers, and the absmax candidates among them.
fn outliers4(v: vec4<f32>) -> vec4<bool> {
#if LLM
  if (p.threshold > 0.0) {
    return abs(v) >= vec4<f32>(p.threshold);
  }
#endif
  return vec4<bool>(false);
}

fn kept_abs4(v: vec4<f32>) -> vec4<f32> {
  return select(abs(v), vec4<f32>(0.0), outliers4(v));
}

fn outlier_abs4(v: vec4<f32>) -> vec4<f32> {
  return select(vec4<f32>(0.0), abs(v), outliers4(v));
}

#if LLM
// Digit planes. An outlier |x| ≥ threshold rounds to an f16 whose ulp is at least 2^-shift, so
// f16(x) · 2^shift is an integer I, split into three signed base-256 digits (I = d0 + 256 d1 +
// 65536 d2). DIGITS_MAX keeps |I| ≤ 2^22, where d2 stays within int8.
const DIGITS_MAX = 4194304.0;

fn digit_shift() -> i32 {
  let e = i32((bitcast<u32>(p.threshold) >> 23u) & 0xffu) - 127; // ⌊log2 threshold⌋
  return 10 - clamp(e, -14, 15); // f16 keeps 10 bits after the leading one; subnormals 2^-24
}

fn digits(v: f32, outlier: bool, shift: i32) -> vec3<i32> {
  let i = select(0i, i32(f16_round(v) * exp2(f32(shift))), outlier);
  let d0 = (i << 24u) >> 24u;
  let i1 = (i - d0) >> 8u;
  let d1 = (i1 << 24u) >> 24u;
  return vec3<i32>(d0, d1, (i1 - d1) >> 8u);
}
#endif

fn count4(b: vec4<bool>) -> u32 {
  return dot(select(vec4<u32>(0u), vec4<u32>(1u), b), vec4<u32>(1u));
}

// Outliers among the four values v of word i, if i is before word w0.
fn count_before(v: vec4<f32>, i: u32, w0: u32) -> u32 {
#if LLM
  return select(0u, count4(outliers4(v)), i < w0);
#else
  return 0u;
#endif
}

// Row 0 of x (rows = 1) over ⌈K / 4·QWG⌉ workgroups: workgroup g codes words [g·QWG, g·QWG +
// QWG), one per thread, after computing the absmax of the whole row itself (see the header).
// The same absmax, scale127 and code_of steps as quantize, so the same codes and scale; with
// LLM, the outlier list of outlier_mask + compact_outliers (at one row a column is an outlier
// exactly when its one value is), written by the workgroups that code those columns.
@compute @workgroup_size(QWG)
fn quantize_row(
  @builtin(local_invocation_index) lid: u32,
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
) {
  quantize_row_of(lid, wid.x + wid.y * nwg.x, 0u);
}

// quantize_rows: workgroup (g, m) does quantize_row's workgroup g for row m, which writes its
// scale to sx[m], its codes to row m of xq, and its outlier list to the m-th list of `outl`
// (lists OUTL_ROW words apart).
@compute @workgroup_size(QWG)
fn quantize_rows(
  @builtin(local_invocation_index) lid: u32,
  @builtin(workgroup_id) wid: vec3<u32>,
) {
  quantize_row_of(lid, wid.x, wid.y);
}

// Words between the outlier lists of consecutive rows in quantize_rows / gemv_rows: a count and
// two words per column (quantize_row never writes the mask part).
fn outl_row_words() -> u32 {
  return 1u + 2u * p.k;
}

// Workgroup g of quantize_row, for activation row m.
fn quantize_row_of(lid: u32, g: u32, m: u32) {
  let words = p.k / 4u;
  let groups = (words + QWG - 1u) / QWG;
  if (g >= groups) {
    return; // uniform per workgroup
  }
  let xo = m * words; // the row's first word (vec4) in x and in xq
  let ob = m * outl_row_words(); // the row's outlier list
  let w0 = g * QWG;
  let w = w0 + lid; // the word this thread codes
  // Its values, loaded first, in flight with the loads below: on an H100 0.3 µs (K = 4096) to
  // 1.3 µs (K = 14336) faster than loading them after the reduction, and faster than picking
  // them out of the loop's loads.
  var own = vec4<f32>(0.0);
  if (w < words) {
    own = x_word(xo + w);
  }
  // The whole row's absmax (outlier values left out), four independent loads per step. Thread
  // lid reads words lid + j·QWG, which lie in segment j: it counts the outliers of those before
  // this workgroup's segment (j < g).
  var a = vec4<f32>(0.0);
#if LLM
  var big = vec4<f32>(0.0); // the largest |outlier|, for the digit planes' range
#endif
  var before = 0u;
  var i = lid;
  for (; i + 3u * QWG < words; i += 4u * QWG) {
    let v0 = x_word(xo + i);
    let v1 = x_word(xo + i + QWG);
    let v2 = x_word(xo + i + 2u * QWG);
    let v3 = x_word(xo + i + 3u * QWG);
    a = max(a, max(max(kept_abs4(v0), kept_abs4(v1)), max(kept_abs4(v2), kept_abs4(v3))));
#if LLM
    big = max(big, max(max(outlier_abs4(v0), outlier_abs4(v1)), max(outlier_abs4(v2), outlier_abs4(v3))));
#endif
    before += count_before(v0, i, w0) + count_before(v1, i + QWG, w0) +
      count_before(v2, i + 2u * QWG, w0) + count_before(v3, i + 3u * QWG, w0);
  }
  for (; i < words; i += QWG) {
    let v = x_word(xo + i);
    a = max(a, kept_abs4(v));
#if LLM
    big = max(big, outlier_abs4(v));
#endif
    before += count_before(v, i, w0);
  }
  red[lid] = max(max(a.x, a.y), max(a.z, a.w));
  // this thread's outliers: none past the row's end, where own stayed 0
  let flags = outliers4(own);
  let mine = count4(flags);
#if LLM
  counts[lid] = vec2<u32>(before, mine);
  red_big[lid] = max(max(big.x, big.y), max(big.z, big.w));
#endif
  workgroupBarrier();
  for (var s = QWG / 2u; s > 0u; s >>= 1u) {
    if (lid < s) {
      red[lid] = max(red[lid], red[lid + s]);
#if LLM
      counts[lid] += counts[lid + s];
      red_big[lid] = max(red_big[lid], red_big[lid + s]);
#endif
    }
    workgroupBarrier();
  }
  let amax = red[0];
  if (g == 0u && lid == 0u) {
    sx_rw[m] = amax;
  }
  let s = scale127(amax);
  if (w < words) {
    let v = own;
    let q = vec4<i32>(code_of(v.x, s), code_of(v.y, s), code_of(v.z, s), code_of(v.w, s));
    xq_out[xo + w] = pack4xI8(q * vec4<i32>(!flags)); // outlier columns: code 0
  }
#if LLM
#if !LLM_FP16
  // The digit planes of the dense outlier sum (see the header), and their scale 2^-shift in
  // sx[rows + m], or 0 where the row's largest outlier does not fit three digits.
  let shift = digit_shift();
  let fits = f16_round(red_big[0]) * exp2(f32(shift)) <= DIGITS_MAX;
  if (g == 0u && lid == 0u) {
    sx_rw[p.rows + m] = select(0.0, exp2(-f32(shift)), fits);
  }
  if (fits && w < words) {
    let d0 = digits(own.x, flags.x, shift);
    let d1 = digits(own.y, flags.y, shift);
    let d2 = digits(own.z, flags.z, shift);
    let d3 = digits(own.w, flags.w, shift);
    let pb = (p.rows + 3u * m) * words + w; // plane 0 of row m, after all rows' codes
    xq_out[pb] = pack4xI8(vec4<i32>(d0.x, d1.x, d2.x, d3.x));
    xq_out[pb + words] = pack4xI8(vec4<i32>(d0.y, d1.y, d2.y, d3.y));
    xq_out[pb + 2u * words] = pack4xI8(vec4<i32>(d0.z, d1.z, d2.z, d3.z));
  }
#endif
  let seg = workgroupUniformLoad(&counts[0]); // (outliers before w0, outliers in this segment)
  if (g + 1u == groups && lid == 0u) {
    outl_rw[ob] = seg.x + seg.y;
  }
  if (seg.y > 0u) {
    // Exclusive scan of the threads' outlier counts: each writes its columns in order.
    scan[lid] = mine;
    workgroupBarrier();
    for (var d = 1u; d < QWG; d <<= 1u) {
      var add = 0u;
      if (lid >= d) {
        add = scan[lid - d];
      }
      workgroupBarrier();
      scan[lid] += add;
      workgroupBarrier();
    }
    var j = seg.x + scan[lid] - mine;
    for (var e = 0u; e < 4u; e++) {
      if (flags[e]) {
        let c = 4u * w + e;
        outl_rw[ob + 1u + j] = c;
        outl_rw[ob + 1u + p.k + j] = kept_index(c);
        j++;
      }
    }
  }
#endif
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

// Several layers' weights stacked in one matrix (q, k, v; gate, up) sharing one quantized row of
// x: gemv writes features [0, split1) to y, [split1, split2) to y2 and the rest to y3 (ROUTE3),
// so one dispatch serves two or three products. Not with LLM_FP16 (its columns are per layer).
#if LLM
#if ROUTE2
@group(0) @binding(8) var<storage, read_write> y2: array<f32>;
#endif
#if ROUTE3
@group(0) @binding(8) var<storage, read_write> y2: array<f32>;
@group(0) @binding(9) var<storage, read_write> y3: array<f32>;
#endif
#else
#if ROUTE2
@group(0) @binding(6) var<storage, read_write> y2: array<f32>;
#endif
#if ROUTE3
@group(0) @binding(6) var<storage, read_write> y2: array<f32>;
@group(0) @binding(7) var<storage, read_write> y3: array<f32>;
#endif
#endif

#include "common/stack_store.wgsl"

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
// int8 code dequantized as code · sw / 127 (with F16 rounded to f16, an operand of the f16
// multiply; bitsandbytes rounds it to f16 always, see lib/quant/llm_int8.ts).
fn outlier_weight(j: u32, c: u32, n: u32) -> f32 {
  return outlier_weight_kept(outl[1u + p.k + j], c, n);
}

// outlier_weight with the column's index among the kept FP16 columns given (NONE: not kept).
fn outlier_weight_kept(kept: u32, c: u32, n: u32) -> f32 {
  let gn = p.n_start + n;
#if LLM_FP16
  if (kept != NONE) {
    let i = kept * p.n_total + gn;
    return unpack2x16float(kept_w[i / 2u])[i % 2u];
  }
#endif
  let word = weight_word(n * (p.k / 4u) + c / 4u);
  let code = bitcast<i32>(word << (24u - 8u * (c % 4u))) >> 24u;
#if F16
  return f16_round(f32(code) * weight_scale(gn) * INV_127);
#else
  return f32(code) * weight_scale(gn) * INV_127;
#endif
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

// f16(x) · w: in f32, or with F16 an f16 multiply (w then already an f16 value).
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
override ROWS: u32 = 0u; // gemv_rows: the row count it was made for, or 0 (row_sums.wgsl)

// Σ of 16 int8 products: four words of x codes against four words of weight codes.
fn dot16(a: vec4<u32>, b: vec4<u32>) -> i32 {
  return (dot4I8Packed(a.x, b.x) + dot4I8Packed(a.y, b.y)) +
    (dot4I8Packed(a.z, b.z) + dot4I8Packed(a.w, b.w));
}

var<workgroup> ipart: array<i32, GEMV_WG>;
var<workgroup> fpart: array<f32, GEMV_WG>;

// The int8 sum of output feature n (local), this lane's units.
fn int8_sum(n: u32, lane: u32) -> i32 {
  var acc = 0i;
#if K16
  let units = p.k / 16u;
  let base = n * units;
  // With UNROLL4 four units per step, their loads issued together (as in the FP16 gemv): one
  // load in flight per thread leaves a small grid latency-bound on a GPU.
  var u = lane;
#if UNROLL4
  for (; u + 3u * GEMV_TPR < units; u += 4u * GEMV_TPR) {
    let b0 = w4[base + u];
    let b1 = w4[base + u + GEMV_TPR];
    let b2 = w4[base + u + 2u * GEMV_TPR];
    let b3 = w4[base + u + 3u * GEMV_TPR];
    acc += (dot16(xq4[u], b0) + dot16(xq4[u + GEMV_TPR], b1)) +
      (dot16(xq4[u + 2u * GEMV_TPR], b2) + dot16(xq4[u + 3u * GEMV_TPR], b3));
  }
#endif
  for (; u < units; u += GEMV_TPR) {
    acc += dot16(xq4[u], w4[base + u]);
  }
#else
  let words = p.k / 4u;
  let base = n * words;
  for (var u = lane; u < words; u += GEMV_TPR) {
    acc += dot4I8Packed(xq[u], weight_word(base + u));
  }
#endif
  return acc;
}

// LLM: this lane's part of the outlier products of feature n, walking the outlier list (each
// column's code loaded on its own); the weight scale is inside each term.
fn outlier_walk(n: u32, lane: u32) -> f32 {
  var extra = 0.0;
#if LLM
  let count = outl[0];
  for (var j = lane; j < count; j += GEMV_TPR) {
    let c = outl[1u + j];
    extra += outlier_product(xf[c], outlier_weight(j, c, n));
  }
#endif
  return extra;
}

// Minimum outliers per 1024 input columns for the dense outlier sum (LLM.int8(), K % 16 == 0,
// no FP16 columns); 0: whenever there are outliers, 1025: never.
override LLM_DENSE: u32 = 4u;

// Whether activation row r's product sums its outliers densely: uniform (one count and one
// scale per row). The outlier list of row r starts at ob.
fn use_dense(r: u32, ob: u32) -> bool {
#if LLM
#if !LLM_FP16
#if K16
  let count = outl[ob];
  return count > 0u && f32(count) * 1024.0 >= f32(LLM_DENSE) * f32(p.k) && sx[p.rows + r] > 0.0;
#endif
#endif
#endif
  return false;
}

// The multiplier of a dense outlier sum of row r, output feature gn: 2^-shift · sw / 127.
fn dense_scale(r: u32, gn: u32) -> f32 {
  return sx[p.rows + r] * weight_scale(gn) * INV_127;
}

// Σ f16(x) · code · 2^shift of a step from its three digit sums (exact i32), rounded here. The
// lanes of gemv and gemv_rows add these per step in the same order, so their sums agree bit for
// bit (the i32 sums of a step are exact in any order).
fn digits_value(d0: i32, d1: i32, d2: i32) -> f32 {
  return (f32(d0) + 256.0 * f32(d1)) + 65536.0 * f32(d2);
}

// The dense outlier sum: the int8 sum and, over the same 16-byte loads of weight codes, the
// three digit planes' sums (see the header), as (int8 sum, Σ digits_value per step).
struct DenseSums {
  acc: i32,
  extra: f32,
}

fn dense_sums(n: u32, lane: u32) -> DenseSums {
  var r = DenseSums(0, 0.0);
#if K16
  let units = p.k / 16u;
  let base = n * units;
  var u = lane;
#if UNROLL4
  for (; u + 3u * GEMV_TPR < units; u += 4u * GEMV_TPR) {
    let b0 = w4[base + u];
    let b1 = w4[base + u + GEMV_TPR];
    let b2 = w4[base + u + 2u * GEMV_TPR];
    let b3 = w4[base + u + 3u * GEMV_TPR];
    let s = (dense_unit(u, b0) + dense_unit(u + GEMV_TPR, b1)) +
      (dense_unit(u + 2u * GEMV_TPR, b2) + dense_unit(u + 3u * GEMV_TPR, b3));
    r.acc += s.x;
    r.extra += digits_value(s.y, s.z, s.w);
  }
#endif
  for (; u < units; u += GEMV_TPR) {
    let s = dense_unit(u, w4[base + u]);
    r.acc += s.x;
    r.extra += digits_value(s.y, s.z, s.w);
  }
#endif
  return r;
}

#if K16
// Plane d (0, 1, 2) of activation row r, unit u: the planes follow all p.rows rows of codes.
fn plane_at(r: u32, d: u32, u: u32) -> vec4<u32> {
  return xq4[(p.rows + 3u * r + d) * (p.k / 16u) + u];
}

// Unit u of the weight row b against row 0's codes and its three digit planes.
fn dense_unit(u: u32, b: vec4<u32>) -> vec4<i32> {
  return vec4<i32>(
    dot16(xq4[u], b),
    dot16(plane_at(0u, 0u, u), b),
    dot16(plane_at(0u, 1u, u), b),
    dot16(plane_at(0u, 2u, u), b),
  );
}
#endif

@compute @workgroup_size(GEMV_WG)
fn gemv(
  @builtin(local_invocation_index) lid: u32,
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
) {
  let lane = lid % GEMV_TPR;
  let n = (wid.x + wid.y * nwg.x) * (GEMV_WG / GEMV_TPR) + lid / GEMV_TPR;
  let dense = use_dense(0u, 0u);
  var acc = 0i;
  var extra = 0.0;
  if (n < p.n_count) {
    if (dense) {
      let s = dense_sums(n, lane);
      acc = s.acc;
      extra = s.extra;
    } else {
      acc = int8_sum(n, lane);
      extra = outlier_walk(n, lane);
    }
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
    var f = fpart[lid];
    if (dense) {
      f *= dense_scale(0u, gn);
    }
    store_gemv(gn, rescale(ipart[lid], 0u, gn) + f);
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

  // Sixteen outputs per thread in four vec4 registers, not an array indexed in loops (see
  // matmul_f16.wgsl's gemm).
  var acc0 = vec4<i32>(0);
  var acc1 = vec4<i32>(0);
  var acc2 = vec4<i32>(0);
  var acc3 = vec4<i32>(0);
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
      let wb = vec4<u32>(
        ws[tx * KW + kk],
        ws[(tx + TILE_N / 4u) * KW + kk],
        ws[(tx + 2u * (TILE_N / 4u)) * KW + kk],
        ws[(tx + 3u * (TILE_N / 4u)) * KW + kk],
      );
      acc0 += idots(xs[ty * KW + kk], wb);
      acc1 += idots(xs[(ty + TILE_M / 4u) * KW + kk], wb);
      acc2 += idots(xs[(ty + 2u * (TILE_M / 4u)) * KW + kk], wb);
      acc3 += idots(xs[(ty + 3u * (TILE_M / 4u)) * KW + kk], wb);
    }
    workgroupBarrier();
  }
  store_row(m0 + ty, n0 + tx, acc0);
  store_row(m0 + ty + TILE_M / 4u, n0 + tx, acc1);
  store_row(m0 + ty + 2u * (TILE_M / 4u), n0 + tx, acc2);
  store_row(m0 + ty + 3u * (TILE_M / 4u), n0 + tx, acc3);
}

// One activation row's word of codes against four weight rows' words.
fn idots(a: u32, b: vec4<u32>) -> vec4<i32> {
  return vec4<i32>(
    dot4I8Packed(a, b.x),
    dot4I8Packed(a, b.y),
    dot4I8Packed(a, b.z),
    dot4I8Packed(a, b.w),
  );
}

// Outputs (m, n0 + j · TILE_N / 4) for j = 0..3 of one thread, rescaled (plus the outlier part).
fn store_row(m: u32, n0: u32, acc: vec4<i32>) {
  if (m >= p.rows) {
    return;
  }
  for (var j = 0u; j < 4u; j++) {
    let n = n0 + j * (TILE_N / 4u);
    if (n < p.n_count) {
      let gn = p.n_start + n;
      var v = rescale(acc[j], m, gn);
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

// ---------------------------------------------------------------------------------------------
// gemv_rows: 2 to MAX_ROWS activation rows (p.rows), coded by quantize_rows, the weight codes
// read once for all rows, FPT output features per lane group (4, or 2 with FPT2) so that each
// load of x codes serves FPT weight rows; a row's sums are one vector (acc0..acc7 written out, not
// a private array indexed in loops). Each feature of each row is summed as gemv sums it alone (integer sums
// are exact in any order; the outlier part keeps gemv's lanes, order and reduction tree), so a
// row's output is the one a decode step computes. The end takes two rows at a time through
// workgroup memory: two barriers per pair of rows.

const MAX_ROWS: u32 = 8u;

// FPT (4, or 2 with FPT2), RowSums (the outlier sums), RowInts (the integer sums).
#include "common/row_sums.wgsl"
#if LLM
// rows_red and lane_tree: the outlier sums in gemv's tree.
#include "common/gemv_rows_store.wgsl"
#endif

var<workgroup> rows_ired: array<RowInts, 2u * GEMV_WG>;

// A unit of codes: 16 (K16, one vec4<u32>) or 4 (one word).
#if K16
alias IW = vec4<u32>;
const UNIT: u32 = 16u;

fn iw_at(i: u32) -> IW {
  return w4[i];
}

fn xq_at(r: u32, u: u32) -> IW {
  return xq4[r * (p.k / 16u) + u];
}

fn idot(a: IW, b: IW) -> i32 {
  return dot16(a, b);
}
#else
alias IW = u32;
const UNIT: u32 = 4u;

fn iw_at(i: u32) -> IW {
  return weight_word(i);
}

fn xq_at(r: u32, u: u32) -> IW {
  return xq[r * (p.k / 4u) + u];
}

fn idot(a: IW, b: IW) -> i32 {
  return dot4I8Packed(a, b);
}
#endif

// One unit of each of the FPT features, and row r's unit u against them.
#if FPT2
struct I4 {
  f0: IW,
  f1: IW,
}

fn i4_at(b: vec4<u32>, u: u32) -> I4 {
  return I4(iw_at(b.x + u), iw_at(b.y + u));
}

fn irow(r: u32, u: u32, w: I4) -> RowInts {
  let xv = xq_at(r, u);
  return RowInts(idot(xv, w.f0), idot(xv, w.f1));
}
#else
struct I4 {
  f0: IW,
  f1: IW,
  f2: IW,
  f3: IW,
}

fn i4_at(b: vec4<u32>, u: u32) -> I4 {
  return I4(iw_at(b.x + u), iw_at(b.y + u), iw_at(b.z + u), iw_at(b.w + u));
}

fn irow(r: u32, u: u32, w: I4) -> RowInts {
  let xv = xq_at(r, u);
  return RowInts(idot(xv, w.f0), idot(xv, w.f1), idot(xv, w.f2), idot(xv, w.f3));
}
#endif

// Row r's units u + s · GEMV_TPR (s = 0..3).
fn irow4(r: u32, u: u32, wa: I4, wb: I4, wc: I4, wd: I4) -> RowInts {
  let t = GEMV_TPR;
  return (irow(r, u, wa) + irow(r, u + t, wb)) +
    (irow(r, u + 2u * t, wc) + irow(r, u + 3u * t, wd));
}

#if K16
// The dense outlier sum of row r (use_dense): its digit planes against the FPT features' unit(s),
// each step's three digit sums turned into one value per feature by digits_value's expression,
// as gemv does for the same units, so the sums agree with a one-row gemv's bit for bit.
fn dplane(r: u32, d: u32, u: u32, w: I4) -> RowInts {
  let xv = plane_at(r, d, u);
#if FPT2
  return RowInts(idot(xv, w.f0), idot(xv, w.f1));
#else
  return RowInts(idot(xv, w.f0), idot(xv, w.f1), idot(xv, w.f2), idot(xv, w.f3));
#endif
}

fn digits_rows(d0: RowInts, d1: RowInts, d2: RowInts) -> RowSums {
  return (RowSums(d0) + 256.0 * RowSums(d1)) + 65536.0 * RowSums(d2);
}

fn drow(r: u32, u: u32, w: I4) -> RowSums {
  return digits_rows(dplane(r, 0u, u, w), dplane(r, 1u, u, w), dplane(r, 2u, u, w));
}

// Row r's units u + s · GEMV_TPR (s = 0..3), summed per plane before the conversion, as gemv.
fn drow4(r: u32, u: u32, wa: I4, wb: I4, wc: I4, wd: I4) -> RowSums {
  return digits_rows(dplane4(r, 0u, u, wa, wb, wc, wd), dplane4(r, 1u, u, wa, wb, wc, wd),
    dplane4(r, 2u, u, wa, wb, wc, wd));
}

fn dplane4(r: u32, d: u32, u: u32, wa: I4, wb: I4, wc: I4, wd: I4) -> RowInts {
  let t = GEMV_TPR;
  return (dplane(r, d, u, wa) + dplane(r, d, u + t, wb)) +
    (dplane(r, d, u + 2u * t, wc) + dplane(r, d, u + 3u * t, wd));
}
#endif

#if LLM
// This lane's part of row r's outlier products for the FPT (local) features nl, in gemv's order.
fn outl_row(r: u32, lane: u32, nl: vec4<u32>) -> RowSums {
  let ob = r * outl_row_words();
  let count = outl[ob];
  var e = RowSums();
  for (var j = lane; j < count; j += GEMV_TPR) {
    let c = outl[ob + 1u + j];
    let kept = outl[ob + 1u + p.k + j];
    let xv = xf[r * p.k + c];
#if FPT2
    e += RowSums(
      outlier_product(xv, outlier_weight_kept(kept, c, nl.x)),
      outlier_product(xv, outlier_weight_kept(kept, c, nl.y)),
    );
#else
    e += RowSums(
      outlier_product(xv, outlier_weight_kept(kept, c, nl.x)),
      outlier_product(xv, outlier_weight_kept(kept, c, nl.y)),
      outlier_product(xv, outlier_weight_kept(kept, c, nl.z)),
      outlier_product(xv, outlier_weight_kept(kept, c, nl.w)),
    );
#endif
  }
  return e;
}
#endif

// Row r's outputs for features n0 .. n0 + FPT - 1: gemv's rescale plus the outlier part (a
// dense sum times its scale, as gemv).
fn store_rows_out(r: u32, n0: u32, isum: RowInts, f: RowSums) {
  let gn = p.n_start + n0;
  let dense = use_dense(r, r * outl_row_words());
  for (var i = 0u; i < FPT; i++) {
    if (n0 + i < p.n_count) {
      var e = f[i];
      if (dense) {
        e *= dense_scale(r, gn + i);
      }
      store_rows_feature(r, gn + i, rescale(isum[i], r, gn + i) + e);
    }
  }
}

// Rows r0 and r0 + 1: integer sums a, b and outlier sums ea, eb of this lane, reduced and stored.
// Has barriers: call it in uniform control flow.
fn rows_pass(
  lid: u32,
  nw: u32,
  r0: u32,
  a: RowInts,
  b: RowInts,
  ea: RowSums,
  eb: RowSums,
) {
  workgroupBarrier(); // the previous pair's sums have been read
  rows_ired[lid] = a;
  rows_ired[GEMV_WG + lid] = b;
#if LLM
  rows_red[lid] = ea;
  rows_red[GEMV_WG + lid] = eb;
#endif
  workgroupBarrier();
  let lane_groups = GEMV_WG / GEMV_TPR;
  if (lid < 2u * lane_groups) {
    let q = lid / lane_groups;
    let lg = lid % lane_groups;
    if (r0 + q < nrows()) {
      let base = q * GEMV_WG + lg * GEMV_TPR;
      var isum = RowInts();
      for (var l = 0u; l < GEMV_TPR; l++) {
        isum += rows_ired[base + l];
      }
      var f = RowSums();
#if LLM
      f = lane_tree(base);
#endif
      store_rows_out(r0 + q, nw + lg * FPT, isum, f);
    }
  }
}

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
  let nl = vec4<u32>(min(n0, last), min(n0 + 1u, last), min(n0 + 2u, last), min(n0 + 3u, last));
  let units = p.k / UNIT;
  let b = nl * units;
  var acc0 = RowInts();
  var acc1 = RowInts();
  var acc2 = RowInts();
  var acc3 = RowInts();
  var acc4 = RowInts();
  var acc5 = RowInts();
  var acc6 = RowInts();
  var acc7 = RowInts();
  var e0 = RowSums();
  var e1 = RowSums();
  var e2 = RowSums();
  var e3 = RowSums();
  var e4 = RowSums();
  var e5 = RowSums();
  var e6 = RowSums();
  var e7 = RowSums();
  // Rows whose outliers are summed densely (bit r; uniform), in the loops below.
  var dm = 0u;
  for (var r = 0u; r < nrows(); r++) {
    dm |= select(0u, 1u << r, use_dense(r, r * outl_row_words()));
  }
  var u = lane;
#if UNROLL4
  // Four units per step, their loads issued together (integer sums: any grouping is exact).
  let t = GEMV_TPR;
  for (; live && u + 3u * t < units; u += 4u * t) {
    let wa = i4_at(b, u);
    let wb = i4_at(b, u + t);
    let wc = i4_at(b, u + 2u * t);
    let wd = i4_at(b, u + 3u * t);
    acc0 += irow4(0u, u, wa, wb, wc, wd);
    acc1 += irow4(1u, u, wa, wb, wc, wd);
    if (nrows() > 2u) {
      acc2 += irow4(2u, u, wa, wb, wc, wd);
    }
    if (nrows() > 3u) {
      acc3 += irow4(3u, u, wa, wb, wc, wd);
    }
    if (nrows() > 4u) {
      acc4 += irow4(4u, u, wa, wb, wc, wd);
    }
    if (nrows() > 5u) {
      acc5 += irow4(5u, u, wa, wb, wc, wd);
    }
    if (nrows() > 6u) {
      acc6 += irow4(6u, u, wa, wb, wc, wd);
    }
    if (nrows() > 7u) {
      acc7 += irow4(7u, u, wa, wb, wc, wd);
    }
#if LLM
#if K16
    if (dm != 0u) {
      if ((dm & 1u) != 0u) {
        e0 += drow4(0u, u, wa, wb, wc, wd);
      }
      if ((dm & 2u) != 0u) {
        e1 += drow4(1u, u, wa, wb, wc, wd);
      }
      if ((dm & 4u) != 0u) {
        e2 += drow4(2u, u, wa, wb, wc, wd);
      }
      if ((dm & 8u) != 0u) {
        e3 += drow4(3u, u, wa, wb, wc, wd);
      }
      if ((dm & 16u) != 0u) {
        e4 += drow4(4u, u, wa, wb, wc, wd);
      }
      if ((dm & 32u) != 0u) {
        e5 += drow4(5u, u, wa, wb, wc, wd);
      }
      if ((dm & 64u) != 0u) {
        e6 += drow4(6u, u, wa, wb, wc, wd);
      }
      if ((dm & 128u) != 0u) {
        e7 += drow4(7u, u, wa, wb, wc, wd);
      }
    }
#endif
#endif
  }
#endif
  for (; live && u < units; u += GEMV_TPR) {
    let w = i4_at(b, u);
    acc0 += irow(0u, u, w);
    acc1 += irow(1u, u, w);
    if (nrows() > 2u) {
      acc2 += irow(2u, u, w);
    }
    if (nrows() > 3u) {
      acc3 += irow(3u, u, w);
    }
    if (nrows() > 4u) {
      acc4 += irow(4u, u, w);
    }
    if (nrows() > 5u) {
      acc5 += irow(5u, u, w);
    }
    if (nrows() > 6u) {
      acc6 += irow(6u, u, w);
    }
    if (nrows() > 7u) {
      acc7 += irow(7u, u, w);
    }
#if LLM
#if K16
    if (dm != 0u) {
      if ((dm & 1u) != 0u) {
        e0 += drow(0u, u, w);
      }
      if ((dm & 2u) != 0u) {
        e1 += drow(1u, u, w);
      }
      if ((dm & 4u) != 0u) {
        e2 += drow(2u, u, w);
      }
      if ((dm & 8u) != 0u) {
        e3 += drow(3u, u, w);
      }
      if ((dm & 16u) != 0u) {
        e4 += drow(4u, u, w);
      }
      if ((dm & 32u) != 0u) {
        e5 += drow(5u, u, w);
      }
      if ((dm & 64u) != 0u) {
        e6 += drow(6u, u, w);
      }
      if ((dm & 128u) != 0u) {
        e7 += drow(7u, u, w);
      }
    }
#endif
#endif
  }
#if LLM
  // The other rows walk their outlier lists: one copy of the loop, run for each row and its sums
  // put in that row's variable (the loop written out eight times made llvmpipe's shader compile
  // four times slower).
  for (var r = 0u; live && r < nrows(); r++) {
    if (((dm >> r) & 1u) != 0u) {
      continue;
    }
    let e = outl_row(r, lane, nl);
    switch r {
      case 0u: {
        e0 = e;
      }
      case 1u: {
        e1 = e;
      }
      case 2u: {
        e2 = e;
      }
      case 3u: {
        e3 = e;
      }
      case 4u: {
        e4 = e;
      }
      case 5u: {
        e5 = e;
      }
      case 6u: {
        e6 = e;
      }
      default: {
        e7 = e;
      }
    }
  }
#endif
  rows_pass(lid, nw, 0u, acc0, acc1, e0, e1);
  if (nrows() > 2u) {
    rows_pass(lid, nw, 2u, acc2, acc3, e2, e3);
  }
  if (nrows() > 4u) {
    rows_pass(lid, nw, 4u, acc4, acc5, e4, e5);
  }
  if (nrows() > 6u) {
    rows_pass(lid, nw, 6u, acc6, acc7, e6, e7);
  }
}
