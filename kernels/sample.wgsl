// Draws the next token from one row of logits on the GPU, from the distribution that
// lib/model/sampling.ts's createSampler draws from: softmax(logits / temperature), cut to the
// top_k most likely (0: no cut; ties at the cut: lower index first), then to the smallest set of
// most likely tokens whose mass reaches top_p (ties: lower index first). The uniform u in [0, 1)
// times the kept mass is walked over the kept tokens in index order (createSampler walks them
// most likely first: the same distribution, another token for the same u when a cut is made).
//
// One workgroup. The weights exp((l - max) / temperature) lie in [0, 1] and order like their f32
// bits, so each cut is a binary search on the bits (a fixed 31 rounds: barriers stay in uniform
// control flow). The weights overwrite the row: the logits are not needed after. Each thread
// owns a contiguous range of indices, so walking the ranges in thread order is index order. A
// row holding a NaN or an infinity gives 0xffffffff, as argmax.wgsl does.

struct Params {
  n: u32,
  row: u32, // the logits are w[row * n .. row * n + n]
  out: u32, // the word of `next` written
  top_k: u32,
  temperature: f32,
  top_p: f32,
  u: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> w: array<f32>;
@group(0) @binding(2) var<storage, read_write> next: array<u32>;

override WG: u32 = 256u; // a power of two

const NONE: u32 = 0xffffffffu;
const ONE_BITS: u32 = 0x3f800000u; // 1.0, the largest weight
const SEARCH_ROUNDS: u32 = 31u; // 2^31 > ONE_BITS + 1

var<workgroup> red_f: array<f32, WG>;
var<workgroup> red_u: array<u32, WG>;
var<workgroup> nonfinite: atomic<u32>; // zero at the start
var<workgroup> first_pick: atomic<u32>; // NONE - the first index whose running mass passes r
var<workgroup> last_kept: atomic<u32>; // 1 + the last kept index with a weight above zero

fn max_all(lid: u32, v: f32) -> f32 {
  red_f[lid] = v;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s >>= 1u) {
    if (lid < s) {
      red_f[lid] = max(red_f[lid], red_f[lid + s]);
    }
    workgroupBarrier();
  }
  let r = red_f[0];
  workgroupBarrier();
  return r;
}

fn sum_all(lid: u32, v: f32) -> f32 {
  red_f[lid] = v;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s >>= 1u) {
    if (lid < s) {
      red_f[lid] += red_f[lid + s];
    }
    workgroupBarrier();
  }
  let r = red_f[0];
  workgroupBarrier();
  return r;
}

fn count_all(lid: u32, v: u32) -> u32 {
  red_u[lid] = v;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s >>= 1u) {
    if (lid < s) {
      red_u[lid] += red_u[lid + s];
    }
    workgroupBarrier();
  }
  let r = red_u[0];
  workgroupBarrier();
  return r;
}

// The sum of v over the threads before this one (Hillis-Steele on workgroup memory).
fn count_before(lid: u32, v: u32) -> u32 {
  red_u[lid] = v;
  workgroupBarrier();
  for (var s = 1u; s < WG; s <<= 1u) {
    let earlier = red_u[select(0u, lid - s, lid >= s)];
    workgroupBarrier();
    if (lid >= s) {
      red_u[lid] += earlier;
    }
    workgroupBarrier();
  }
  let r = select(0u, red_u[select(0u, lid - 1u, lid > 0u)], lid > 0u);
  workgroupBarrier();
  return r;
}

fn sum_before(lid: u32, v: f32) -> f32 {
  red_f[lid] = v;
  workgroupBarrier();
  for (var s = 1u; s < WG; s <<= 1u) {
    let earlier = red_f[select(0u, lid - s, lid >= s)];
    workgroupBarrier();
    if (lid >= s) {
      red_f[lid] += earlier;
    }
    workgroupBarrier();
  }
  let r = select(0.0, red_f[select(0u, lid - 1u, lid > 0u)], lid > 0u);
  workgroupBarrier();
  return r;
}

@compute @workgroup_size(WG)
fn sample(@builtin(local_invocation_index) lid: u32) {
  let base = p.row * p.n;
  let per = (p.n + WG - 1u) / WG;
  let start = min(lid * per, p.n);
  let end = min(start + per, p.n);

  // max, and whether the row is usable
  var m = -3.402823e38;
  var bad = 0u;
  for (var i = start; i < end; i++) {
    let v = w[base + i];
    bad |= u32((bitcast<u32>(v) & 0x7f800000u) == 0x7f800000u);
    m = max(m, v);
  }
  if (bad != 0u) {
    atomicStore(&nonfinite, 1u);
  }
  m = max_all(lid, m);

  // the weights, in place of the logits (each thread reads back only its own range)
  var own = 0.0;
  for (var i = start; i < end; i++) {
    let e = exp((w[base + i] - m) / p.temperature);
    w[base + i] = e;
    own += e;
  }
  let total = sum_all(lid, own);

  // top-k: the largest bits tk with at least k weights at or above it; the weights above it are
  // kept, and of those equal to it, the first quota_k in index order
  var tk = 0u;
  var quota_k = NONE;
  if (p.top_k > 0u && p.top_k < p.n) {
    var lo = 0u;
    var hi = ONE_BITS + 1u;
    for (var round = 0u; round < SEARCH_ROUNDS; round++) {
      let mid = lo + (hi - lo) / 2u;
      var c = 0u;
      for (var i = start; i < end; i++) {
        c += u32(bitcast<u32>(w[base + i]) >= mid);
      }
      if (count_all(lid, c) >= p.top_k) {
        lo = mid;
      } else {
        hi = mid;
      }
    }
    tk = lo;
    var above = 0u;
    for (var i = start; i < end; i++) {
      above += u32(bitcast<u32>(w[base + i]) > tk);
    }
    quota_k = p.top_k - count_all(lid, above);
  }
  var ties_k = 0u;
  for (var i = start; i < end; i++) {
    ties_k += u32(bitcast<u32>(w[base + i]) == tk);
  }
  let tie_k0 = count_before(lid, ties_k); // ties at tk before this thread's range

  // top-p: of the top-k, the largest bits tp whose weights at or above it reach top_p of the
  // whole mass (none: all of the top-k); those above are kept, and of those equal to it, as
  // many in index order as the mass needs
  var tp = 0u;
  var quota_p = NONE;
  if (p.top_p < 1.0) {
    let goal = p.top_p * total;
    var lo = 0u;
    var hi = ONE_BITS + 1u;
    for (var round = 0u; round < SEARCH_ROUNDS; round++) {
      let mid = lo + (hi - lo) / 2u;
      var s = 0.0;
      var t = tie_k0;
      for (var i = start; i < end; i++) {
        let b = bitcast<u32>(w[base + i]);
        let tie = b == tk;
        if ((b > tk || (tie && t < quota_k)) && b >= mid) {
          s += w[base + i];
        }
        t += u32(tie);
      }
      if (sum_all(lid, s) >= goal) {
        lo = mid;
      } else {
        hi = mid;
      }
    }
    tp = lo;
    var s = 0.0;
    var t = tie_k0;
    for (var i = start; i < end; i++) {
      let b = bitcast<u32>(w[base + i]);
      let tie = b == tk;
      if ((b > tk || (tie && t < quota_k)) && b > tp) {
        s += w[base + i];
      }
      t += u32(tie);
    }
    let missing = goal - sum_all(lid, s);
    // tp = 0: the top-k's mass is missing of top_p, and all of it is kept
    quota_p = select(NONE, max(1u, u32(ceil(missing / bitcast<f32>(tp)))), tp > 0u);
  }
  var ties_p = 0u;
  {
    var t = tie_k0;
    for (var i = start; i < end; i++) {
      let b = bitcast<u32>(w[base + i]);
      let tie = b == tk;
      ties_p += u32((b > tk || (tie && t < quota_k)) && b == tp);
      t += u32(tie);
    }
  }
  let tie_p0 = count_before(lid, ties_p); // kept ties at tp before this thread's range

  // the kept mass before this thread's range, and the draw
  var kept = 0.0;
  {
    var t = tie_k0;
    var q = tie_p0;
    for (var i = start; i < end; i++) {
      let b = bitcast<u32>(w[base + i]);
      let in_k = b > tk || (b == tk && t < quota_k);
      let in_p = in_k && (b > tp || (b == tp && q < quota_p));
      if (in_p) {
        kept += w[base + i];
      }
      t += u32(b == tk);
      q += u32(in_k && b == tp);
    }
  }
  let before = sum_before(lid, kept);
  let r = p.u * sum_all(lid, kept);
  {
    var t = tie_k0;
    var q = tie_p0;
    var acc = before;
    for (var i = start; i < end; i++) {
      let b = bitcast<u32>(w[base + i]);
      let in_k = b > tk || (b == tk && t < quota_k);
      let in_p = in_k && (b > tp || (b == tp && q < quota_p));
      t += u32(b == tk);
      q += u32(in_k && b == tp);
      if (in_p && b > 0u) {
        acc += w[base + i];
        atomicMax(&last_kept, i + 1u);
        if (acc > r) {
          atomicMax(&first_pick, NONE - i);
          break;
        }
      }
    }
  }
  workgroupBarrier();
  if (lid == 0u) {
    let picked = atomicLoad(&first_pick);
    // none passed r (rounding at the very end): the last kept token, as createSampler falls back
    let token = select(atomicLoad(&last_kept) - 1u, NONE - picked, picked != 0u);
    next[p.out] = select(token, NONE, atomicLoad(&nonfinite) != 0u);
  }
}
