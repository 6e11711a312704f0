// Draws the next token from one row of logits on the GPU, from the distribution that
// lib/model/sampling.ts's createSampler draws from: softmax(logits / temperature), cut to the
// top_k most likely (0: no cut; ties at the cut: lower index first), then to the smallest set of
// most likely tokens whose mass reaches top_p (ties: lower index first). The uniform u in [0, 1)
// times the kept mass is walked over the kept tokens in index order (createSampler walks them
// most likely first: the same distribution, another token for the same u when a cut is made).
//
// One workgroup. The weights exp((l - max) / temperature) lie in [0, 1] and order like their f32
// bits, so each cut is a search on the bits: top-k a radix select, top-p a search with three
// thresholds a round (a fixed 16 rounds: barriers stay in uniform control flow). Up to CAP
// candidates are gathered into workgroup memory first; with top-p alone and more of them, the
// first rounds run over the row, counting, until the tokens at or above the search's lower bound
// fit, and those are gathered then (a peaked row of 32,000: 4.5 -> 1.0 ms on lavapipe,
// bench/sample_time.ts). The weights overwrite the row: the logits
// are not needed after. Each thread owns a contiguous range of indices, so walking the ranges in
// thread order is index order. A row holding a NaN or an infinity gives 0xffffffff, as
// argmax.wgsl does.

struct Params {
  n: u32,
  row: u32, // the logits are w[row * n .. row * n + n]
  out: u32, // the word of `next` written
  top_k: u32,
  temperature: f32,
  top_p: f32,
  u: f32,
}

#if CHOOSE
// `choose`: speculative sampling's accept/reject step for k rows at once (below).
struct ChooseParams {
  n: u32,
  k: u32,
  // row i: x the acceptance's uniform, y the residual draw's
  us: array<vec4<f32>, 8>,
}

@group(0) @binding(0) var<uniform> c: ChooseParams;
@group(0) @binding(1) var<storage, read> pw: array<f32>; // the target's kept distributions
@group(0) @binding(2) var<storage, read> qw: array<f32>; // the draft's, one row per proposal
@group(0) @binding(3) var<storage, read> ids: array<u32>; // [last, d_1 .. d_k]
@group(0) @binding(4) var<storage, read_write> best: array<u32>;
#else
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> w: array<f32>;
@group(0) @binding(2) var<storage, read_write> next: array<u32>;
#endif

override WG: u32 = 256u; // a power of two

const NONE: u32 = 0xffffffffu;
const ONE_BITS: u32 = 0x3f800000u; // 1.0, the largest weight
const SEARCH_ROUNDS: u32 = 16u; // top-p's search: 4^16 > ONE_BITS + 1

var<workgroup> red_f: array<vec4<f32>, WG>; // .x for one sum, .xyz for three
var<workgroup> red_u: array<u32, WG>;
var<workgroup> nonfinite: atomic<u32>; // zero at the start
var<workgroup> first_pick: atomic<u32>; // NONE - the first index whose running mass passes r
var<workgroup> last_kept: atomic<u32>; // 1 + the last kept index with a weight above zero
var<workgroup> digits: array<atomic<u32>, 256>; // radix select: how many weights have each digit
var<workgroup> found_digit: u32;
var<workgroup> found_need: u32;
var<workgroup> gathered_count: u32;

const CAP: u32 = 1024u; // the most candidates gathered into workgroup memory
var<workgroup> cand_i: array<u32, CAP>;
var<workgroup> cand_w: array<f32, CAP>;

#if !CHOOSE
// Element j of what is walked: the gathered candidates, or the row itself.
fn weight_at(base: u32, j: u32, compact: bool) -> f32 {
  if (compact) {
    return cand_w[j];
  }
  return w[base + j];
}

fn index_at(j: u32, compact: bool) -> u32 {
  if (compact) {
    return cand_i[j];
  }
  return j;
}
#endif

fn max_all(lid: u32, v: f32) -> f32 {
  red_f[lid].x = v;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s >>= 1u) {
    if (lid < s) {
      red_f[lid].x = max(red_f[lid].x, red_f[lid + s].x);
    }
    workgroupBarrier();
  }
  let r = red_f[0].x;
  workgroupBarrier();
  return r;
}

fn sum_all(lid: u32, v: f32) -> f32 {
  return sum3_all(lid, vec3<f32>(v, 0.0, 0.0)).x;
}

fn sum3_all(lid: u32, v: vec3<f32>) -> vec3<f32> {
  red_f[lid] = vec4<f32>(v, 0.0);
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s >>= 1u) {
    if (lid < s) {
      red_f[lid] += red_f[lid + s];
    }
    workgroupBarrier();
  }
  let r = red_f[0].xyz;
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
  red_f[lid].x = v;
  workgroupBarrier();
  for (var s = 1u; s < WG; s <<= 1u) {
    let earlier = red_f[select(0u, lid - s, lid >= s)].x;
    workgroupBarrier();
    if (lid >= s) {
      red_f[lid].x += earlier;
    }
    workgroupBarrier();
  }
  let r = select(0.0, red_f[select(0u, lid - 1u, lid > 0u)].x, lid > 0u);
  workgroupBarrier();
  return r;
}

// The three thresholds of a round of top-p's search, a quarter of [lo, hi) apart.
fn search_mids(lo: u32, hi: u32) -> vec3<u32> {
  let step = (hi - lo + 3u) / 4u;
  return vec3<u32>(min(lo + step, hi), min(lo + 2u * step, hi), min(lo + 3u * step, hi));
}

// [lo, hi) after a round: the highest threshold whose mass reaches the goal, and the next one.
fn search_narrow(lo: u32, hi: u32, mid: vec3<u32>, reach: vec3<bool>) -> vec2<u32> {
  if (reach.z) {
    return vec2<u32>(mid.z, hi);
  }
  if (reach.y) {
    return vec2<u32>(mid.y, mid.z);
  }
  if (reach.x) {
    return vec2<u32>(mid.x, mid.y);
  }
  return vec2<u32>(lo, mid.x);
}

#if !CHOOSE
// The cuts: weights above tk (top-k) are kept, and of those equal to it the first quota_k in index
// order; of those, the weights above tp (top-p) and the first quota_p equal to it.
struct Cuts {
  tk: u32,
  quota_k: u32,
  tp: u32,
  quota_p: u32,
}

// Whether the next token walked in index order, of weight bits b, is kept; `ties` counts, from
// where the walk starts, the ties at tk and (of the top-k) at tp.
fn kept_next(c: Cuts, b: u32, ties: ptr<function, vec2<u32>>) -> bool {
  let in_k = b > c.tk || (b == c.tk && (*ties).x < c.quota_k);
  let in_p = in_k && (b > c.tp || (b == c.tp && (*ties).y < c.quota_p));
  *ties += vec2<u32>(u32(b == c.tk), u32(in_k && b == c.tp));
  return in_p;
}

@compute @workgroup_size(WG)
fn sample(
  @builtin(local_invocation_index) lid: u32,
  @builtin(workgroup_id) wid: vec3<u32>,
) {
  // one workgroup a row: rows p.row + wid.x, their tokens into words p.out + wid.x
  let base = (p.row + wid.x) * p.n;
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

  // top-k: tk, the bits of the k-th largest weight, by radix select (8 bits a round, most
  // significant first); the weights above it are kept, and of those equal to it the first
  // quota_k in index order
  var tk = 0u;
  var quota_k = NONE;
  let cut_k = p.top_k > 0u && p.top_k < p.n;
  if (cut_k) {
    var need = p.top_k;
    for (var round = 0u; round < 4u; round++) {
      let shift = 24u - 8u * round;
      let known = select(0u, 0xffffffffu << (32u - 8u * round), round > 0u); // the bits found
      for (var d = lid; d < 256u; d += WG) {
        atomicStore(&digits[d], 0u);
      }
      workgroupBarrier();
      for (var i = start; i < end; i++) {
        let bits = bitcast<u32>(w[base + i]);
        if ((bits & known) == tk) {
          atomicAdd(&digits[(bits >> shift) & 255u], 1u);
        }
      }
      workgroupBarrier();
      if (lid == 0u) {
        // the digit where the count from the top reaches what is still needed
        var above = 0u;
        var d = 255u;
        loop {
          let here = atomicLoad(&digits[d]);
          if (above + here >= need || d == 0u) {
            break;
          }
          above += here;
          d -= 1u;
        }
        found_digit = d;
        found_need = need - above;
      }
      workgroupBarrier();
      tk |= found_digit << shift;
      need = found_need;
      workgroupBarrier();
    }
    quota_k = need;
  }
  var tie_k0 = 0u; // ties at tk before this thread's range
  if (cut_k) {
    var ties_k = 0u;
    for (var i = start; i < end; i++) {
      ties_k += u32(bitcast<u32>(w[base + i]) == tk);
    }
    tie_k0 = count_before(lid, ties_k);
  }

  // The candidates are gathered, in index order, into workgroup memory when at most CAP of them
  // are left: what follows then reads them instead of the vocabulary. With a top-k they are the
  // top-k; with top-p alone, the weights of at least (1 - top_p) / (n - 1) of the mass, as no
  // lighter token can be in the nucleus (those below that weigh less than 1 - top_p together).
  let cut_p_only = !cut_k && p.top_p < 1.0 && p.n > 1u;
  let lightest = bitcast<u32>((1.0 - p.top_p) * total / f32(max(p.n, 2u) - 1u));
  var mine = 0u;
  if (cut_k || cut_p_only) {
    var t = tie_k0;
    for (var i = start; i < end; i++) {
      let b = bitcast<u32>(w[base + i]);
      mine += u32(select(b >= lightest, b > tk || (b == tk && t < quota_k), cut_k));
      t += u32(b == tk);
    }
  }
  let gathered = count_all(lid, mine);
  if (lid == 0u) {
    gathered_count = gathered;
  }
  let candidates = workgroupUniformLoad(&gathered_count);
  var compact = (cut_k || cut_p_only) && candidates <= CAP;
  var vs = start;
  var ve = end;
  if (compact) {
    var at = count_before(lid, mine);
    var t = tie_k0;
    for (var i = start; i < end; i++) {
      let b = bitcast<u32>(w[base + i]);
      if (select(b >= lightest, b > tk || (b == tk && t < quota_k), cut_k)) {
        cand_i[at] = i;
        cand_w[at] = w[base + i];
        at += 1u;
      }
      t += u32(b == tk);
    }
    workgroupBarrier();
    let per_c = (candidates + WG - 1u) / WG;
    vs = min(lid * per_c, candidates);
    ve = min(vs + per_c, candidates);
    tk = 0u; // every entry is kept so far
    quota_k = NONE;
    tie_k0 = 0u;
  }
  let watch = cut_p_only && !compact;

  // top-p: of the top-k, the largest bits tp whose weights at or above it reach top_p of the
  // whole mass (none: all of the top-k); those above are kept, and of those equal to it, as
  // many in index order as the mass needs
  var tp = 0u;
  var quota_p = NONE;
  if (p.top_p < 1.0) {
    let goal = p.top_p * total;
    // three thresholds a round: mass(bits >= lo) reaches the goal (or lo = 0), mass(bits >= hi)
    // does not
    var lo = 0u;
    var hi = ONE_BITS + 1u;
    var round = 0u;
    // Top-p alone over more than CAP candidates: the first rounds run over the vocabulary and
    // also count the tokens at or above each threshold; once those at or above lo fit, they are
    // gathered (the nucleus lies among them) and the rounds left read the gathered ones.
    if (watch) {
      var at_lo = NONE; // the tokens at or above lo (NONE: not counted yet)
      var fits = NONE;
      loop {
        let mid = search_mids(lo, hi);
        var s = vec3<f32>(0.0);
        var c = vec3<f32>(0.0); // counts, exact in f32 below 2^24 tokens
        for (var j = start; j < end; j++) {
          let v = w[base + j]; // no top-k: every token is a candidate
          let above = vec3<u32>(bitcast<u32>(v)) >= mid;
          s += select(vec3<f32>(0.0), vec3<f32>(v), above);
          c += select(vec3<f32>(0.0), vec3<f32>(1.0), above);
        }
        let reach = sum3_all(lid, s) >= vec3<f32>(goal);
        let counted = sum3_all(lid, c);
        if (reach.z) {
          at_lo = u32(counted.z);
        } else if (reach.y) {
          at_lo = u32(counted.y);
        } else if (reach.x) {
          at_lo = u32(counted.x);
        }
        let bounds = search_narrow(lo, hi, mid, reach);
        lo = bounds.x;
        hi = bounds.y;
        round += 1u;
        // every thread holds the same at_lo; the load makes that known to the compiler
        if (lid == 0u) {
          gathered_count = at_lo;
        }
        fits = workgroupUniformLoad(&gathered_count);
        if (fits <= CAP || round == SEARCH_ROUNDS) {
          break;
        }
      }
      if (fits <= CAP) {
        var mine_lo = 0u;
        for (var i = start; i < end; i++) {
          mine_lo += u32(bitcast<u32>(w[base + i]) >= lo);
        }
        var at = count_before(lid, mine_lo);
        for (var i = start; i < end; i++) {
          if (bitcast<u32>(w[base + i]) >= lo) {
            cand_i[at] = i;
            cand_w[at] = w[base + i];
            at += 1u;
          }
        }
        workgroupBarrier();
        let per_c = (fits + WG - 1u) / WG;
        vs = min(lid * per_c, fits);
        ve = min(vs + per_c, fits);
        compact = true;
      }
    }
    for (; round < SEARCH_ROUNDS; round++) {
      let mid = search_mids(lo, hi);
      var s = vec3<f32>(0.0);
      var t = tie_k0;
      for (var j = vs; j < ve; j++) {
        let b = bitcast<u32>(weight_at(base, j, compact));
        let tie = b == tk;
        if (b > tk || (tie && t < quota_k)) {
          s += select(vec3<f32>(0.0), vec3<f32>(weight_at(base, j, compact)), vec3<u32>(b) >= mid);
        }
        t += u32(tie);
      }
      let bounds = search_narrow(lo, hi, mid, sum3_all(lid, s) >= vec3<f32>(goal));
      lo = bounds.x;
      hi = bounds.y;
    }
    tp = lo;
    var s = 0.0;
    var t = tie_k0;
    for (var j = vs; j < ve; j++) {
      let b = bitcast<u32>(weight_at(base, j, compact));
      let tie = b == tk;
      if ((b > tk || (tie && t < quota_k)) && b > tp) {
        s += weight_at(base, j, compact);
      }
      t += u32(tie);
    }
    let missing = goal - sum_all(lid, s);
    // tp = 0: the top-k's mass is missing of top_p, and all of it is kept
    quota_p = select(NONE, max(1u, u32(ceil(missing / bitcast<f32>(tp)))), tp > 0u);
  }
  var tie_p0 = 0u; // kept ties at tp before this thread's range
  if (p.top_p < 1.0) {
    var ties_p = 0u;
    var t = tie_k0;
    for (var j = vs; j < ve; j++) {
      let b = bitcast<u32>(weight_at(base, j, compact));
      let tie = b == tk;
      ties_p += u32((b > tk || (tie && t < quota_k)) && b == tp);
      t += u32(tie);
    }
    tie_p0 = count_before(lid, ties_p);
  }

  // the kept mass before this thread's range, and the draw
  let cuts = Cuts(tk, quota_k, tp, quota_p);
  var kept = 0.0;
  {
    var ties = vec2<u32>(tie_k0, tie_p0);
    for (var j = vs; j < ve; j++) {
      let v = weight_at(base, j, compact);
      if (kept_next(cuts, bitcast<u32>(v), &ties)) {
        kept += v;
      }
    }
  }
  let before = sum_before(lid, kept);
  let kept_mass = sum_all(lid, kept);
  let inv_kept = 1.0 / kept_mass;
  let r = p.u * kept_mass;
  {
    var ties = vec2<u32>(tie_k0, tie_p0);
    var acc = before;
    for (var j = vs; j < ve; j++) {
      let v = weight_at(base, j, compact);
      if (kept_next(cuts, bitcast<u32>(v), &ties) && v > 0.0) {
        acc += v;
        atomicMax(&last_kept, index_at(j, compact) + 1u);
        if (acc > r) {
          atomicMax(&first_pick, NONE - index_at(j, compact));
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
    next[p.out + wid.x] = select(token, NONE, atomicLoad(&nonfinite) != 0u);
  }
#if FILTER
  // The row becomes the kept distribution: each kept token's weight over the kept mass, every
  // other token 0 (what speculative sampling's acceptance reads, `choose` below).
  if (compact) {
    for (var i = start; i < end; i++) {
      w[base + i] = 0.0;
    }
    storageBarrier();
    workgroupBarrier();
  }
  {
    var ties = vec2<u32>(tie_k0, tie_p0);
    for (var j = vs; j < ve; j++) {
      let v = weight_at(base, j, compact);
      if (kept_next(cuts, bitcast<u32>(v), &ties)) {
        w[base + index_at(j, compact)] = v * inv_kept;
      } else if (!compact) {
        w[base + j] = 0.0;
      }
    }
  }
#endif
}
#endif

#if CHOOSE
// Speculative sampling's step for proposal d_{i+1} (workgroup i of k), from the kept
// distributions p_i (the target's row i, `FILTER`ed) and q_i (the draft's, from which d_{i+1} was
// drawn): keeps it with probability min(1, p(d) / q(d)), as u_x · q(d) < p(d); otherwise draws
// from max(0, p - q) (p where that has no mass: rounding), walked in index order with u_y, as
// lib/model/speculative.ts's acceptOrResample does. The choice goes to best[i], so that the
// greedy acceptance kernel (speculative.wgsl) keeps d_{i+1} while it equals best[i] and takes
// best[kept] next: a rejected d is never drawn again (its residual is 0), and best[k] is the
// target's own draw after the last proposal. A row the filter flagged (best[i] = 0xffffffff:
// NaN or an infinity) stays flagged.
@compute @workgroup_size(WG)
fn choose(
  @builtin(local_invocation_index) lid: u32,
  @builtin(workgroup_id) wid: vec3<u32>,
) {
  let i = wid.x;
  let base = i * c.n;
  let per = (c.n + WG - 1u) / WG;
  let start = min(lid * per, c.n);
  let end = min(start + per, c.n);
  var own = vec2<f32>(0.0); // residual, p
  for (var j = start; j < end; j++) {
    let pj = pw[base + j];
    own += vec2<f32>(max(0.0, pj - qw[base + j]), pj);
  }
  let mass = sum3_all(lid, vec3<f32>(own, 0.0)).xy;
  let use_p = !(mass.x > 0.0);
  let mine = select(own.x, own.y, use_p);
  let before = sum_before(lid, mine);
  let u = c.us[i];
  let r = u.y * select(mass.x, mass.y, use_p);
  var acc = before;
  for (var j = start; j < end; j++) {
    let pj = pw[base + j];
    let v = select(max(0.0, pj - qw[base + j]), pj, use_p);
    if (v > 0.0) {
      acc += v;
      atomicMax(&last_kept, j + 1u);
      if (acc > r) {
        atomicMax(&first_pick, NONE - j);
        break;
      }
    }
  }
  workgroupBarrier();
  if (lid == 0u) {
    let picked = atomicLoad(&first_pick);
    let drawn = select(atomicLoad(&last_kept) - 1u, NONE - picked, picked != 0u);
    let d = ids[1u + i];
    let inside = d < c.n;
    let at = base + select(0u, d, inside);
    let keep = inside && u.x * qw[at] < pw[at];
    best[i] = select(select(drawn, d, keep), NONE, best[i] == NONE);
  }
}
#endif
