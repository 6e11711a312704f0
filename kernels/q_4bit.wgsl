// The blockwise 4-bit formats (NF4, FP4, INT4, and NF4 with double quantization):
// y[rows, N] = x[rows, K] · Wᵀ with W decoded inside the product as table[code] · absmax[block].
// CPU twins: lib/quant/blockwise4.ts (matmulBlockwise4bit) and nf4_dq.ts.
//
// Layout (blockwise4.ts): the flattened row-major W is cut into blocks of `blocksize` values
// (a power of two ≥ 32; a block may span rows). Codes are two per byte, flat element 2j in the
// HIGH nibble of byte j, bytes little-endian in each u32, so element e sits in word e / 8 at
// bit 8·((e / 2) % 4) + 4·(1 - e % 2). A word's 8 elements always share one block.
//
// The 16-entry table comes in the parameters. With DQ the block absmax is decoded here as
// dmap[qabsmax[b]] · absmax2[b / 256] + offset (nf4_dq.ts).
//
// Entry points: gemv (one activation row: GEMV_TPR threads per group of RPT output features
// stride over their codes; with K32, K % 32 == 0, a row is whole vec4<u32> units of 32 codes,
// one block each), gemv_rows (2 to 8 rows) and gemm_outer (prefill: common/gemm_outer.wgsl).
//
// Without F16 all arithmetic is f32, and so is the gemv without K32 (odd K) either way, and
// gemm_outer on both paths. With F16 the gemv with K32 is the f16 path below.
//
// The f16 gemv with K32 (F16 and K32: the decode hot path). In step t, lane l of a thread group
// takes units ua = 2·GEMV_TPR·t + l and ub = ua + GEMV_TPR of each of its RPT rows.
// - Loads: per row, both units' 16-byte code loads and block absmax loads are independent of
//   everything before them (rows past the chunk are clamped to its last row, units past K to the
//   row's last unit: no branch separates them), so the compiler can issue them ahead. The rows
//   are written out one call each (row_step), not as a loop over per-row arrays: with the loop
//   and arrays (ca[r], sa[r], ...) the same kernel read 400-585 GB/s on the H100, written out
//   527-1064 GB/s (NF4, the five Llama shapes, one run) — private arrays indexed in loops can
//   end up in slow local memory. The block index is a shift (blocksize is a power of two).
// - x: the workgroup loads the step's 2·GEMV_TPR·32 activations once with coalesced vec4<f32>
//   loads, rounds them to f16 into workgroup memory (xt, zero past K) and each lane reads its
//   two units from there (8-byte reads, padded against bank conflicts) for all RPT rows. A lane
//   loading its own unit's 32 x from global memory would read 16 bytes at a 128-byte stride
//   across the warp: ~32 L1 wavefronts per load instead of 4.
// - Codes: one lookup per byte in a 256-entry table of vec2<f16> pairs (pairs[b] = the values
//   of b's high and low nibble), then 16 vec2<f16> multiply-adds per 32 codes (a chain of 4 per
//   word), 3 vec2 adds, both halves to f32 and added, one f32 multiply-add by the absmax.
// - Pair table or 16-entry table: the 16 f16 values (32 bytes, 8 banks) never conflict but take
//   twice the lookups and a pack per pair; the pair table's 4-byte entries sit 8 to a bank, so a
//   warp's random byte lookups conflict (~3.2 wavefronts each for NF4 codes of normal weights).
//   On the H100 the pair table was faster at all five Llama shapes (NF4 GEMV, same run:
//   391/570/495/567/554 GB/s against 366/533/477/519/538 for the 16-entry table and
//   265/510/314/546/326 before this design) — instruction issue, not workgroup memory, is what
//   binds here.
// - Sums: f16 products, up to 16 terms per half and unit summed in f16, then f32 (error ~25%
//   above that of 4-term f16 dots summed in f32, far within the tests' 5e-3·σ_y).
//
// Weights larger than one binding come in chunks of whole rows (K % 8 == 0): `codes` holds
// words [code_base, ...) of the full array; the absmax arrays are always bound whole.

#if F16
enable f16;
alias T = f16;
#else
alias T = f32;
#endif

struct Params {
  rows: u32,
  n_total: u32,   // N: the row stride of y
  k: u32,
  n_start: u32,   // first output feature of this chunk
  n_count: u32,   // output features in this chunk
  blocksize: u32,
  code_base: u32, // first word of this chunk's codes in the whole array
  split1: u32,    // gemv with ROUTE2/ROUTE3: first feature that goes to y2
  split2: u32,    // gemv with ROUTE3: first feature that goes to y3
  eps: f32,      // gemv with NORM: RMSNorm's epsilon
  pad1: u32,
  pad2: u32,
  table: array<vec4<f32>, 4>,
}

@group(0) @binding(0) var<uniform> p: Params;

@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> x4: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> codes: array<u32>;
@group(0) @binding(2) var<storage, read> codes4: array<vec4<u32>>;
#if DQ
@group(0) @binding(3) var<storage, read> qabsmax: array<u32>; // 8-bit map indices, 4 per word
@group(0) @binding(4) var<storage, read> absmax2: array<f32>; // per 256 blocks
@group(0) @binding(5) var<storage, read> offset: array<f32>; // [mean absmax]
@group(0) @binding(6) var<storage, read> dmap: array<f32>; // the 256-entry signed dynamic map
@group(0) @binding(7) var<storage, read_write> y: array<f32>;
#if SWIGLU
@group(0) @binding(8) var<storage, read> up4: array<vec4<f32>>;
#endif
#else
@group(0) @binding(3) var<storage, read> absmax: array<f32>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;
#if SWIGLU
@group(0) @binding(5) var<storage, read> up4: array<vec4<f32>>;
#endif
#endif

// Several layers' weights stacked in one matrix (q, k, v; gate, up), one row of x: gemv writes
// features [0, split1) to y, [split1, split2) to y2 and the rest to y3 (ROUTE3), so one dispatch
// serves two or three products. Not with SWIGLU.
#if DQ
#if ROUTE2
@group(0) @binding(8) var<storage, read_write> y2: array<f32>;
#endif
#if ROUTE3
@group(0) @binding(8) var<storage, read_write> y2: array<f32>;
@group(0) @binding(9) var<storage, read_write> y3: array<f32>;
#endif
#else
#if ROUTE2
@group(0) @binding(5) var<storage, read_write> y2: array<f32>;
#endif
#if ROUTE3
@group(0) @binding(5) var<storage, read_write> y2: array<f32>;
@group(0) @binding(6) var<storage, read_write> y3: array<f32>;
#endif
#endif

// NORM (f16 gemv with K32, one row): x is the residual stream and the product's input is
// rmsnorm(x) · norm_w (rmsnorm.wgsl's arithmetic: x · (1 / sqrt(mean(x²) + eps)) · w, in f32),
// which every workgroup computes as it stages its tiles: one dispatch less per norm. Not with
// SWIGLU. The weight's binding follows the outputs.
#if NORM
#if DQ
#if ROUTE2
@group(0) @binding(9) var<storage, read> norm_w4: array<vec4<f32>>;
#else
#if ROUTE3
@group(0) @binding(10) var<storage, read> norm_w4: array<vec4<f32>>;
#else
@group(0) @binding(8) var<storage, read> norm_w4: array<vec4<f32>>;
#endif
#endif
#else
#if ROUTE2
@group(0) @binding(6) var<storage, read> norm_w4: array<vec4<f32>>;
#else
#if ROUTE3
@group(0) @binding(7) var<storage, read> norm_w4: array<vec4<f32>>;
#else
@group(0) @binding(5) var<storage, read> norm_w4: array<vec4<f32>>;
#endif
#endif
#endif
var<private> norm_inv: f32;
#endif

#include "common/stack_store.wgsl"

// SWIGLU (f16 gemv with K32 only): the product reads silu(x) · up as it stages its x tile
// (common/gemv_input.wgsl), without SwiGLU's dispatch or the round trip of its result through
// memory.
#include "common/gemv_input.wgsl"

#if DQ
// The per-tensor offset of block b's layer: a stack's matrix (ROUTE2/ROUTE3) holds one per layer,
// each layer whole groups of 256 blocks.
fn block_offset(b: u32) -> f32 {
#if ROUTE2
  return offset[select(0u, 1u, b * p.blocksize >= p.split1 * p.k)];
#else
#if ROUTE3
  let e = b * p.blocksize;
  return offset[select(0u, 1u, e >= p.split1 * p.k) + select(0u, 1u, e >= p.split2 * p.k)];
#else
  return offset[0];
#endif
#endif
}
#endif

fn block_absmax(b: u32) -> f32 {
#if DQ
  let q = (qabsmax[b / 4u] >> (8u * (b % 4u))) & 0xffu;
  return dmap[q] * absmax2[b / 256u] + block_offset(b);
#else
  return absmax[b];
#endif
}

var<workgroup> tbl: array<f32, 16>;

fn load_table(lid: u32) {
  if (lid < 16u) {
    tbl[lid] = p.table[lid / 4u][lid % 4u];
  }
  workgroupBarrier();
}

// The code of element j (0..7) of a word.
fn nib(word: u32, j: u32) -> u32 {
  return (word >> (8u * (j / 2u) + 4u * (1u - j % 2u))) & 0xfu;
}

// Σ of 8 activations times the table values of one word's codes (elements 0-3 in xa, 4-7 in xb).
fn dot_word(word: u32, xa: vec4<f32>, xb: vec4<f32>) -> f32 {
  let ta = vec4<f32>(tbl[(word >> 4u) & 0xfu], tbl[word & 0xfu], tbl[(word >> 12u) & 0xfu],
    tbl[(word >> 8u) & 0xfu]);
  let tb = vec4<f32>(tbl[(word >> 20u) & 0xfu], tbl[(word >> 16u) & 0xfu], tbl[(word >> 28u)],
    tbl[(word >> 24u) & 0xfu]);
  return dot(xa, ta) + dot(xb, tb);
}

override GEMV_WG: u32 = 256u; // threads per workgroup
override GEMV_TPR: u32 = 32u; // threads per output feature: a power of two dividing GEMV_WG
override ROWS: u32 = 0u; // gemv_rows: the row count it was made for, or 0 (row_sums.wgsl)
// Output features per thread. A 4-bit word stands for 8 activations (32 bytes of f32 x per 4
// bytes of codes), so reading x, not the weights, bounds a one-row-per-thread GEMV; each x load
// here serves RPT rows (4, or 8 with RPT8). The f16 path's workgroup memory: 72·2·GEMV_TPR bytes
// of x, 4·GEMV_WG·RPT of partial sums and 32 of table (13.6 KiB at 32 threads per row, 256
// threads, RPT 8: GEMV_TPR 64 with RPT 8 needs more than 16 KiB).
#if RPT8
const RPT: u32 = 8u;
#else
#if RPT2
const RPT: u32 = 2u; // RPT2: f16 gemv with K32 only (more thread groups for a short N)
#else
const RPT: u32 = 4u;
#endif
#endif

var<workgroup> partial: array<f32, GEMV_WG * RPT>;

#if F16
#if K32
// The f16 gemv with K32 (the header says why it is laid out so).

#if TBL16R
// TBL16R: the 16 values once per bank, lane l reading copy l % 32 (entry e of copy c at 32e + c),
// so no two lanes of a warp ever meet in a bank: two conflict-free lookups per byte instead of
// one pair lookup that conflicts (~3.2 wavefronts). Both halves of an entry hold the value.
var<workgroup> t16: array<vec2<f16>, 512>;
var<private> bank: u32;

fn load_pairs(lid: u32) {
  bank = lid % 32u;
  for (var i = lid; i < 512u; i += GEMV_WG) {
    let e = i / 32u;
    let v = f16(p.table[e / 4u][e % 4u]);
    t16[i] = vec2<f16>(v, v);
  }
  workgroupBarrier();
}

fn byte_values(b: u32) -> vec2<f16> {
  return vec2<f16>(t16[32u * ((b >> 4u) & 0xfu) + bank].x, t16[32u * (b & 0xfu) + bank].y);
}
#else
// pairs[b] = (table[b >> 4], table[b & 15]): the values of the two codes of byte b, one lookup.
var<workgroup> pairs: array<vec2<f16>, 256>;

fn load_pairs(lid: u32) {
  for (var i = lid; i < 256u; i += GEMV_WG) {
    let hi = i >> 4u;
    let lo = i & 15u;
    pairs[i] = vec2<f16>(f16(p.table[hi / 4u][hi % 4u]), f16(p.table[lo / 4u][lo % 4u]));
  }
  workgroupBarrier();
}

fn byte_values(b: u32) -> vec2<f16> {
  return pairs[b & 0xffu];
}
#endif

// One x tile: the 2·GEMV_TPR units (32 activations each) that a thread group's lanes work on in
// one step, in f16. Unit j's 8 vec4 are xt[XT_STRIDE·j ..]: the 72-byte stride puts the 16 lanes
// of a half-warp, each reading the i-th vec4 (8 bytes) of its unit, on 16 different bank pairs.
const XT_STRIDE: u32 = 9u;
#if XFULL
// XFULL: the whole row of x staged once (K / 32 units and one unit of zeros after them, where
// lanes past K read), so the loop over K has no barriers. Sized for K ≤ 4096 (XF4K), K ≤ 11264
// (XF11K) or K ≤ 16384: naga 2.9.6 panics on a workgroup array sized by an override here.
#if XF4K
const XF_LEN: u32 = 129u * XT_STRIDE;
#else
#if XF11K
const XF_LEN: u32 = 353u * XT_STRIDE;
#else
const XF_LEN: u32 = 513u * XT_STRIDE;
#endif
#endif
var<workgroup> xf: array<vec4<f16>, XF_LEN>;
#else
var<workgroup> xt: array<vec4<f16>, 2u * GEMV_TPR * XT_STRIDE>;
#endif

// x · table[code] over one word's 8 codes (xa: elements 0-3, xb: 4-7), summed in f16: the even
// elements in .x, the odd ones in .y. Byte j holds elements 2j and 2j + 1.
fn word_sum(w: u32, xa: vec4<f16>, xb: vec4<f16>) -> vec2<f16> {
  var s = xa.xy * byte_values(w);
  s = fma(xa.zw, byte_values(w >> 8u), s);
  s = fma(xb.xy, byte_values(w >> 16u), s);
  return fma(xb.zw, byte_values(w >> 24u), s);
}

// One row's two units of a step: both code loads and both block scales, then the sums.
fn row_step(
  row_unit: u32,
  row_elem: u32,
  ua: u32,
  ub: u32,
  sh: u32,
  xa: array<vec4<f16>, 8>,
  xb: array<vec4<f16>, 8>,
) -> f32 {
  let ca = codes4[row_unit + ua];
  let cb = codes4[row_unit + ub];
  let sa = block_absmax((row_elem + 32u * ua) >> sh);
  let sb = block_absmax((row_elem + 32u * ub) >> sh);
  return unit_sum(ca, xa) * sa + unit_sum(cb, xb) * sb;
}

// PREFETCH: a row's loads for the next step, issued before this step's barriers and sums.
struct RowLoad {
  ca: vec4<u32>,
  cb: vec4<u32>,
  sa: f32,
  sb: f32,
}

fn row_load(row_unit: u32, row_elem: u32, ua: u32, ub: u32, sh: u32) -> RowLoad {
  return RowLoad(codes4[row_unit + ua], codes4[row_unit + ub],
    block_absmax((row_elem + 32u * ua) >> sh), block_absmax((row_elem + 32u * ub) >> sh));
}

fn row_sum(l: RowLoad, xa: array<vec4<f16>, 8>, xb: array<vec4<f16>, 8>) -> f32 {
  return unit_sum(l.ca, xa) * l.sa + unit_sum(l.cb, xb) * l.sb;
}

// x · table[code] over one unit (4 words, 32 codes): the four word sums added pairwise in f16,
// then the two halves in f32.
fn unit_sum(c: vec4<u32>, xv: array<vec4<f16>, 8>) -> f32 {
  let s = (word_sum(c.x, xv[0], xv[1]) + word_sum(c.y, xv[2], xv[3])) +
    (word_sum(c.z, xv[4], xv[5]) + word_sum(c.w, xv[6], xv[7]));
  return f32(s.x) + f32(s.y);
}
#endif
#endif

@compute @workgroup_size(GEMV_WG)
fn gemv(
  @builtin(local_invocation_index) lid: u32,
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
) {
  let lane = lid % GEMV_TPR;
  let n0 = ((wid.x + wid.y * nwg.x) * (GEMV_WG / GEMV_TPR) + lid / GEMV_TPR) * RPT;
  var acc: array<f32, RPT>;
#if K32
  let units = p.k / 32u;
#if F16
  load_pairs(lid);
#if NORM
  // The norm's 1 / rms from the whole row (each workgroup computes the same value), summed
  // through `partial`, which the products reuse after it.
  norm_inv = inverse_rms(lid);
  workgroupBarrier(); // every thread has read partial[0] before the sums reuse it
#endif
  // Rows past the chunk stand in for its last row, so that every load is in bounds and no branch
  // separates them; their sums are not stored.
  let sh = firstTrailingBit(p.blocksize); // blocksize is a power of two
  var row_unit: array<u32, RPT>; // the row's first unit in this binding's codes
  var row_elem: array<u32, RPT>; // the row's first flat element (for its blocks)
  for (var r = 0u; r < RPT; r++) {
    let n = p.n_start + min(n0 + r, p.n_count - 1u);
    row_unit[r] = n * units - p.code_base / 4u;
    row_elem[r] = n * p.k;
  }
  // Each step a lane takes units ua and ub = ua + GEMV_TPR of its RPT rows: 2·RPT independent
  // 16-byte code loads in flight. Units past the row load the row's last unit again and meet
  // x = 0 in the tile, adding 0. The step count is uniform, so every thread reaches the barriers.
  let steps = (units + 2u * GEMV_TPR - 1u) / (2u * GEMV_TPR);
#if XFULL
  for (var i = lid; i < 8u * (units + 1u); i += GEMV_WG) {
    var v = vec4<f32>(0.0);
    if (i < 8u * units) {
      v = x_at(i);
    }
    xf[XT_STRIDE * (i / 8u) + i % 8u] = vec4<f16>(v);
  }
  workgroupBarrier();
#endif
#if PREFETCH
  let ua0 = min(lane, units - 1u);
  let ub0 = min(GEMV_TPR + lane, units - 1u);
  var l0 = row_load(row_unit[0], row_elem[0], ua0, ub0, sh);
  var l1 = row_load(row_unit[1], row_elem[1], ua0, ub0, sh);
#if !RPT2
  var l2 = row_load(row_unit[2], row_elem[2], ua0, ub0, sh);
  var l3 = row_load(row_unit[3], row_elem[3], ua0, ub0, sh);
#endif
#if RPT8
  var l4 = row_load(row_unit[4], row_elem[4], ua0, ub0, sh);
  var l5 = row_load(row_unit[5], row_elem[5], ua0, ub0, sh);
  var l6 = row_load(row_unit[6], row_elem[6], ua0, ub0, sh);
  var l7 = row_load(row_unit[7], row_elem[7], ua0, ub0, sh);
#endif
#endif
  for (var t = 0u; t < steps; t++) {
    let ua = min(2u * GEMV_TPR * t + lane, units - 1u);
    let ub = min(2u * GEMV_TPR * t + GEMV_TPR + lane, units - 1u);
#if XFULL
    let ja = XT_STRIDE * min(2u * GEMV_TPR * t + lane, units);
    let jb = XT_STRIDE * min(2u * GEMV_TPR * t + GEMV_TPR + lane, units);
    let xa = array<vec4<f16>, 8>(xf[ja], xf[ja + 1u], xf[ja + 2u], xf[ja + 3u], xf[ja + 4u],
      xf[ja + 5u], xf[ja + 6u], xf[ja + 7u]);
    let xb = array<vec4<f16>, 8>(xf[jb], xf[jb + 1u], xf[jb + 2u], xf[jb + 3u], xf[jb + 4u],
      xf[jb + 5u], xf[jb + 6u], xf[jb + 7u]);
#else
    // The tile of x: coalesced f32 loads by the whole workgroup, rounded to f16 once.
    workgroupBarrier(); // the previous tile has been read
    let x0 = 16u * GEMV_TPR * t; // the tile's first vec4 of x
    for (var i = lid; i < 16u * GEMV_TPR; i += GEMV_WG) {
      var v = vec4<f32>(0.0);
      if (x0 + i < 8u * units) {
        v = x_at(x0 + i);
      }
      xt[XT_STRIDE * (i / 8u) + i % 8u] = vec4<f16>(v);
    }
    workgroupBarrier();
    let xa = array<vec4<f16>, 8>(
      xt[XT_STRIDE * lane], xt[XT_STRIDE * lane + 1u], xt[XT_STRIDE * lane + 2u],
      xt[XT_STRIDE * lane + 3u], xt[XT_STRIDE * lane + 4u], xt[XT_STRIDE * lane + 5u],
      xt[XT_STRIDE * lane + 6u], xt[XT_STRIDE * lane + 7u],
    );
    let lb = lane + GEMV_TPR;
    let xb = array<vec4<f16>, 8>(
      xt[XT_STRIDE * lb], xt[XT_STRIDE * lb + 1u], xt[XT_STRIDE * lb + 2u],
      xt[XT_STRIDE * lb + 3u], xt[XT_STRIDE * lb + 4u], xt[XT_STRIDE * lb + 5u],
      xt[XT_STRIDE * lb + 6u], xt[XT_STRIDE * lb + 7u],
    );
#endif
#if PREFETCH
    // The next step's loads first (past the last step: the row's last unit again, unused).
    let na = min(2u * GEMV_TPR * (t + 1u) + lane, units - 1u);
    let nb = min(2u * GEMV_TPR * (t + 1u) + GEMV_TPR + lane, units - 1u);
    let m0 = row_load(row_unit[0], row_elem[0], na, nb, sh);
    let m1 = row_load(row_unit[1], row_elem[1], na, nb, sh);
#if !RPT2
    let m2 = row_load(row_unit[2], row_elem[2], na, nb, sh);
    let m3 = row_load(row_unit[3], row_elem[3], na, nb, sh);
#endif
    acc[0] += row_sum(l0, xa, xb);
    acc[1] += row_sum(l1, xa, xb);
    l0 = m0;
    l1 = m1;
#if !RPT2
    acc[2] += row_sum(l2, xa, xb);
    acc[3] += row_sum(l3, xa, xb);
    l2 = m2;
    l3 = m3;
#endif
#if RPT8
    let m4 = row_load(row_unit[4], row_elem[4], na, nb, sh);
    let m5 = row_load(row_unit[5], row_elem[5], na, nb, sh);
    let m6 = row_load(row_unit[6], row_elem[6], na, nb, sh);
    let m7 = row_load(row_unit[7], row_elem[7], na, nb, sh);
    acc[4] += row_sum(l4, xa, xb);
    acc[5] += row_sum(l5, xa, xb);
    acc[6] += row_sum(l6, xa, xb);
    acc[7] += row_sum(l7, xa, xb);
    l4 = m4;
    l5 = m5;
    l6 = m6;
    l7 = m7;
#endif
#else
    acc[0] += row_step(row_unit[0], row_elem[0], ua, ub, sh, xa, xb);
    acc[1] += row_step(row_unit[1], row_elem[1], ua, ub, sh, xa, xb);
#if !RPT2
    acc[2] += row_step(row_unit[2], row_elem[2], ua, ub, sh, xa, xb);
    acc[3] += row_step(row_unit[3], row_elem[3], ua, ub, sh, xa, xb);
#endif
#if RPT8
    acc[4] += row_step(row_unit[4], row_elem[4], ua, ub, sh, xa, xb);
    acc[5] += row_step(row_unit[5], row_elem[5], ua, ub, sh, xa, xb);
    acc[6] += row_step(row_unit[6], row_elem[6], ua, ub, sh, xa, xb);
    acc[7] += row_step(row_unit[7], row_elem[7], ua, ub, sh, xa, xb);
#endif
#endif
  }
#else
  load_table(lid);
  for (var u = lane; u < units; u += GEMV_TPR) {
    let xb = 8u * u;
    var xv: array<vec4<f32>, 8>;
    for (var i = 0u; i < 8u; i++) {
      xv[i] = x4[xb + i];
    }
    for (var r = 0u; r < RPT; r++) {
      let n = n0 + r;
      if (n < p.n_count) {
        let e0 = (p.n_start + n) * p.k; // first flat element of the row
        let c = codes4[e0 / 32u - p.code_base / 4u + u];
        let s = dot_word(c.x, xv[0], xv[1]) + dot_word(c.y, xv[2], xv[3]) +
          dot_word(c.z, xv[4], xv[5]) + dot_word(c.w, xv[6], xv[7]);
        acc[r] += s * block_absmax((e0 + 32u * u) / p.blocksize);
      }
    }
  }
#endif
#else
  load_table(lid);
  // Any K: the words overlapping each row, elements outside it masked out.
  for (var r = 0u; r < RPT; r++) {
    let n = n0 + r;
    if (n < p.n_count) {
      let e0 = (p.n_start + n) * p.k;
      let e1 = e0 + p.k;
      let w1 = (e1 + 7u) / 8u;
      for (var wi = e0 / 8u + lane; wi < w1; wi += GEMV_TPR) {
        let word = codes[wi - p.code_base];
        var s = 0.0;
        for (var j = 0u; j < 8u; j++) {
          let e = 8u * wi + j;
          if (e >= e0 && e < e1) {
            s += x[e - e0] * tbl[nib(word, j)];
          }
        }
        acc[r] += s * block_absmax(8u * wi / p.blocksize);
      }
    }
  }
#endif
  for (var r = 0u; r < RPT; r++) {
    partial[r * GEMV_WG + lid] = acc[r];
  }
  workgroupBarrier();
  for (var s = GEMV_TPR / 2u; s > 0u; s >>= 1u) {
    if (lane < s) {
      for (var r = 0u; r < RPT; r++) {
        partial[r * GEMV_WG + lid] += partial[r * GEMV_WG + lid + s];
      }
    }
    workgroupBarrier();
  }
  if (lane < RPT && n0 + lane < p.n_count) {
    store_gemv(p.n_start + n0 + lane, partial[lane * GEMV_WG + lid - lane]);
  }
}

// The decoded weight W[n, k] of local row n (k < K).
fn weight_at(n: u32, k: u32) -> f32 {
  let e = (p.n_start + n) * p.k + k;
  return tbl[nib(codes[e / 8u - p.code_base], e % 8u)] * block_absmax(e / p.blocksize);
}

// ---------------------------------------------------------------------------------------------
// gemm (several rows, prefill): the register-blocked outer product of common/gemm_outer.wgsl,
// f32 arithmetic on either path. With K % 8 == 0 eight weights are one code word and one block
// scale (a word never spans blocks), decoded through the 16-entry table as weight_at does, one
// load of each instead of one per weight; with ANYK (any other K) weight by weight, x value by
// value, zeros past K (one entry point may not use two views of a binding).

fn outer_prologue(lid: u32) {
  load_table(lid);
}

#if ANYK
fn outer_x4(m: u32, k: u32) -> vec4<f32> {
  var v = vec4<f32>(0.0);
  for (var j = 0u; j < 4u; j++) {
    if (k + j < p.k) {
      v[j] = x[m * p.k + k + j];
    }
  }
  return v;
}

fn outer_w8(n: u32, k: u32) -> OuterW8 {
  var o: OuterW8;
  for (var j = 0u; j < 4u; j++) {
    if (k + j < p.k) {
      o.lo[j] = weight_at(n, k + j);
    }
    if (k + 4u + j < p.k) {
      o.hi[j] = weight_at(n, k + 4u + j);
    }
  }
  return o;
}
#else
fn outer_w8(n: u32, k: u32) -> OuterW8 {
  var o: OuterW8;
  if (k >= p.k) {
    return o;
  }
  let e = (p.n_start + n) * p.k + k;
  let w = codes[e / 8u - p.code_base];
  let s = block_absmax(e / p.blocksize);
  return OuterW8(
    vec4<f32>(tbl[(w >> 4u) & 0xfu], tbl[w & 0xfu], tbl[(w >> 12u) & 0xfu], tbl[(w >> 8u) & 0xfu]) *
      s,
    vec4<f32>(tbl[(w >> 20u) & 0xfu], tbl[(w >> 16u) & 0xfu], tbl[w >> 28u], tbl[(w >> 24u) & 0xfu]) *
      s,
  );
}
#endif

#include "common/gemm_outer.wgsl"

// ---------------------------------------------------------------------------------------------
// gemv_rows: 2 to MAX_ROWS activation rows (p.rows), K % 32 == 0, the codes read once for all
// rows, FPT output features per lane group (4, or 2 with FPT2). Two versions:
//
// With F16 (the hot path on GPUs): GEMV_TPR = 32 lanes per group whatever the one-row gemv's, one
// unit (32 codes) per lane and step. Each step's x of every row is rounded to f16 once per
// workgroup into workgroup memory (xr, 72-byte units as in the gemv's tile); each lane decodes
// its four units' codes through the pair table once, into registers (16 vec2<f16> per unit),
// then multiplies them with every row's unit: the table lookups no longer grow with the rows.
// A lane's codes are loaded a step ahead (the next step's while this step's sums are made: 3-5%
// less time than loading each step's just before its x is staged, H200, 4 and 5 rows).
// The arithmetic per unit is the f16 gemv's (f16 products summed by word, pairwise, then f32,
// times the block absmax), but the lanes and order differ, so a row's output matches a decode
// step's within f16 rounding, not bit for bit (the f16 gemv varies its lanes by shape anyway).
//
// Without F16: the f32 gemv's arithmetic (table values in f32, four word sums added left to
// right, times the block absmax), in the same lanes and order, so a row's output is exactly what
// a decode step computes.

const MAX_ROWS: u32 = 8u;

#if F16
#if K32
// FPT, RowSums, row_sums_store; rows_red, rows_pass_begin, lane_tree.
#include "common/row_sums.wgsl"
#include "common/gemv_rows_store.wgsl"

// Unit j (of the step) of row r: 8 vec4<f16> at xr[(r · GEMV_TPR + j) · XT_STRIDE ..].
var<workgroup> xr: array<vec4<f16>, MAX_ROWS * 32u * XT_STRIDE>;

// One word's 8 codes as table values, pairs of elements (2i, 2i + 1).
struct WD {
  a: vec2<f16>,
  b: vec2<f16>,
  c: vec2<f16>,
  d: vec2<f16>,
}

// One unit's 32 codes as table values.
struct UD {
  w0: WD,
  w1: WD,
  w2: WD,
  w3: WD,
}

// One row's 32 activations of a unit.
struct XH {
  x0: vec4<f16>,
  x1: vec4<f16>,
  x2: vec4<f16>,
  x3: vec4<f16>,
  x4: vec4<f16>,
  x5: vec4<f16>,
  x6: vec4<f16>,
  x7: vec4<f16>,
}

fn word_dec(w: u32) -> WD {
  return WD(byte_values(w), byte_values(w >> 8u), byte_values(w >> 16u), byte_values(w >> 24u));
}

fn unit_dec(c: vec4<u32>) -> UD {
  return UD(word_dec(c.x), word_dec(c.y), word_dec(c.z), word_dec(c.w));
}

// word_sum with the codes decoded.
fn word_sum_dec(d: WD, xa: vec4<f16>, xb: vec4<f16>) -> vec2<f16> {
  var s = xa.xy * d.a;
  s = fma(xa.zw, d.b, s);
  s = fma(xb.xy, d.c, s);
  return fma(xb.zw, d.d, s);
}

// unit_sum with the codes decoded.
fn unit_sum_dec(u: UD, x: XH) -> f32 {
  let s = (word_sum_dec(u.w0, x.x0, x.x1) + word_sum_dec(u.w1, x.x2, x.x3)) +
    (word_sum_dec(u.w2, x.x4, x.x5) + word_sum_dec(u.w3, x.x6, x.x7));
  return f32(s.x) + f32(s.y);
}

// The FPT features' units, decoded, and their block absmax.
#if FPT2
struct UF {
  u0: UD,
  u1: UD,
  s: vec2<f32>,
}

// Each feature's unit of codes (the raw words, loaded ahead), decoded, with its block absmax.
struct Raw {
  c0: vec4<u32>,
  c1: vec4<u32>,
}

fn raw_at(row_unit: vec4<u32>, u: u32) -> Raw {
  return Raw(codes4[row_unit.x + u], codes4[row_unit.y + u]);
}

fn uf_of(w: Raw, row_elem: vec4<u32>, u: u32, sh: u32) -> UF {
  let e = row_elem + vec4<u32>(32u * u);
  return UF(unit_dec(w.c0), unit_dec(w.c1),
    vec2<f32>(block_absmax(e.x >> sh), block_absmax(e.y >> sh)));
}

fn usums(w: UF, x: XH) -> RowSums {
  return RowSums(unit_sum_dec(w.u0, x), unit_sum_dec(w.u1, x)) * w.s;
}
#else
struct UF {
  u0: UD,
  u1: UD,
  u2: UD,
  u3: UD,
  s: vec4<f32>,
}

struct Raw {
  c0: vec4<u32>,
  c1: vec4<u32>,
  c2: vec4<u32>,
  c3: vec4<u32>,
}

fn raw_at(row_unit: vec4<u32>, u: u32) -> Raw {
  return Raw(codes4[row_unit.x + u], codes4[row_unit.y + u], codes4[row_unit.z + u],
    codes4[row_unit.w + u]);
}

fn uf_of(w: Raw, row_elem: vec4<u32>, u: u32, sh: u32) -> UF {
  let e = row_elem + vec4<u32>(32u * u);
  return UF(unit_dec(w.c0), unit_dec(w.c1), unit_dec(w.c2), unit_dec(w.c3),
    vec4<f32>(block_absmax(e.x >> sh), block_absmax(e.y >> sh), block_absmax(e.z >> sh),
      block_absmax(e.w >> sh)));
}

fn usums(w: UF, x: XH) -> RowSums {
  return RowSums(unit_sum_dec(w.u0, x), unit_sum_dec(w.u1, x), unit_sum_dec(w.u2, x),
    unit_sum_dec(w.u3, x)) * w.s;
}
#endif

// Row r's unit (j in the step) against the features' decoded units, times their absmax.
fn row_unit_sums(r: u32, j: u32, w: UF) -> RowSums {
  let i = (r * 32u + j) * XT_STRIDE;
  return usums(w, XH(xr[i], xr[i + 1u], xr[i + 2u], xr[i + 3u], xr[i + 4u], xr[i + 5u],
    xr[i + 6u], xr[i + 7u]));
}

#include "common/rows_pass.wgsl"

@compute @workgroup_size(GEMV_WG)
fn gemv_rows(
  @builtin(local_invocation_index) lid: u32,
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
) {
  let lane = lid % GEMV_TPR; // GEMV_TPR is 32 here
  let nw = (wid.x + wid.y * nwg.x) * (GEMV_WG / GEMV_TPR) * FPT;
  let n0 = nw + (lid / GEMV_TPR) * FPT;
  let live = n0 < p.n_count;
  load_pairs(lid);
  let units = p.k / 32u;
  let sh = firstTrailingBit(p.blocksize); // blocksize is a power of two
  // Features past the chunk read its last row (in bounds, never stored).
  let last = p.n_count - 1u;
  let n = vec4<u32>(p.n_start) +
    vec4<u32>(min(n0, last), min(n0 + 1u, last), min(n0 + 2u, last), min(n0 + 3u, last));
  let row_unit = n * units - vec4<u32>(p.code_base / 4u); // each feature's first unit of codes
  let row_elem = n * p.k; // and first flat element (for its blocks)
  var acc0 = RowSums();
  var acc1 = RowSums();
  var acc2 = RowSums();
  var acc3 = RowSums();
  var acc4 = RowSums();
  var acc5 = RowSums();
  var acc6 = RowSums();
  var acc7 = RowSums();
#if !NOPREFETCH
  // The codes one step ahead: step t + 1's are loaded while step t's x is staged and its sums
  // are made (past K: the row's last unit, never used). NOPREFETCH: each step's after its x.
  var raw = raw_at(row_unit, min(lane, units - 1u));
#endif
  for (var t0 = 0u; t0 < units; t0 += 32u) { // uniform: every thread reaches the barriers
    let u = t0 + lane;
    workgroupBarrier(); // the previous step's x has been read
    for (var i = lid; i < 8u * 32u * nrows(); i += GEMV_WG) {
      let r = i / 256u;
      let j = (i / 8u) % 32u;
      let q = i % 8u;
      var v = vec4<f32>(0.0);
      if (t0 + j < units) {
        v = x4[r * (p.k / 4u) + 8u * (t0 + j) + q];
      }
      xr[(r * 32u + j) * XT_STRIDE + q] = vec4<f16>(v);
    }
    workgroupBarrier();
#if NOPREFETCH
    let raw = raw_at(row_unit, min(u, units - 1u));
#else
    let next = raw_at(row_unit, min(u + 32u, units - 1u));
#endif
    if (live && u < units) {
      let w = uf_of(raw, row_elem, u, sh);
      acc0 += row_unit_sums(0u, lane, w);
      acc1 += row_unit_sums(1u, lane, w);
      if (nrows() > 2u) {
        acc2 += row_unit_sums(2u, lane, w);
      }
      if (nrows() > 3u) {
        acc3 += row_unit_sums(3u, lane, w);
      }
      if (nrows() > 4u) {
        acc4 += row_unit_sums(4u, lane, w);
      }
      if (nrows() > 5u) {
        acc5 += row_unit_sums(5u, lane, w);
      }
      if (nrows() > 6u) {
        acc6 += row_unit_sums(6u, lane, w);
      }
      if (nrows() > 7u) {
        acc7 += row_unit_sums(7u, lane, w);
      }
    }
#if !NOPREFETCH
    raw = next;
#endif
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
#endif
#else

@compute @workgroup_size(GEMV_WG)
fn gemv_rows(
  @builtin(local_invocation_index) lid: u32,
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
) {
  let lane = lid % GEMV_TPR;
  let n0 = ((wid.x + wid.y * nwg.x) * (GEMV_WG / GEMV_TPR) + lid / GEMV_TPR) * RPT;
  load_table(lid);
  var acc = array<f32, MAX_ROWS * RPT>(); // [row][feature]
  let units = p.k / 32u;
  let quads = p.k / 4u; // vec4 per row of x
  for (var u = lane; u < units; u += GEMV_TPR) {
    var c = array<vec4<u32>, RPT>();
    var s = array<f32, RPT>();
    for (var f = 0u; f < RPT; f++) {
      if (n0 + f < p.n_count) {
        let e0 = (p.n_start + n0 + f) * p.k; // first flat element of the row
        c[f] = codes4[e0 / 32u - p.code_base / 4u + u];
        s[f] = block_absmax((e0 + 32u * u) / p.blocksize);
      }
    }
    for (var r = 0u; r < MAX_ROWS; r++) {
      if (r < p.rows) {
        let xb = r * quads + 8u * u;
        let x0 = x4[xb];
        let x1 = x4[xb + 1u];
        let x2 = x4[xb + 2u];
        let x3 = x4[xb + 3u];
        let x4_ = x4[xb + 4u];
        let x5 = x4[xb + 5u];
        let x6 = x4[xb + 6u];
        let x7 = x4[xb + 7u];
        for (var f = 0u; f < RPT; f++) {
          if (n0 + f < p.n_count) {
            let cf = c[f];
            let sum = dot_word(cf.x, x0, x1) + dot_word(cf.y, x2, x3) + dot_word(cf.z, x4_, x5) +
              dot_word(cf.w, x6, x7);
            acc[r * RPT + f] += sum * s[f];
          }
        }
      }
    }
  }
  // Row by row through gemv's reduction tree (its `partial`, RPT features per lane group).
  for (var r = 0u; r < MAX_ROWS; r++) {
    if (r < p.rows) {
      workgroupBarrier(); // the previous row's sums have been read
      for (var f = 0u; f < RPT; f++) {
        partial[f * GEMV_WG + lid] = acc[r * RPT + f];
      }
      workgroupBarrier();
      for (var st = GEMV_TPR / 2u; st > 0u; st >>= 1u) {
        if (lane < st) {
          for (var f = 0u; f < RPT; f++) {
            partial[f * GEMV_WG + lid] += partial[f * GEMV_WG + lid + st];
          }
        }
        workgroupBarrier();
      }
      if (lane < RPT && n0 + lane < p.n_count) {
        store_rows_feature(r, p.n_start + n0 + lane, partial[lane * GEMV_WG + lid - lane]);
      }
    }
  }
}
#endif
