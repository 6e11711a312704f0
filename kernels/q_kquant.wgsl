// llama.cpp's K-quants: y[rows, N] = x[rows, K] · Wᵀ with W in Q4_K (default) or Q6_K (define
// Q6K), super-blocks of 256 values along K. CPU twins: lib/quant/ggml.ts (dequantizeQ4K,
// dequantizeQ6K, matmulKQuant).
//
// Layout (words, see lib/quant/ggml.ts): Q4_K 36 per block — word 0 `d | dmin << 16` (f16),
// words 1-3 the 12 bytes of 6-bit scales and mins, words 4-35 the 128 bytes of nibbles (byte
// 32c + l: value 64c + l in the low half, 64c + 32 + l in the high half). Q6_K 53 per block —
// words 0-31 `ql`, 32-47 `qh`, 48-51 the int8 scales, 52 `d` (low half).
//
// One unit of work is 64 values of a row: Q4_K two sub-blocks of 32 sharing 32 bytes of
// nibbles; Q6_K half a 128-value half (16 values of each of its four quarters, four scales).
// GPT threads per output feature stride over the row's units; each workgroup computes RPW
// output features for up to MT activation rows at once (a decode step is one row; a prefill
// chunk reads each weight once per MT rows). Per unit and row: the sums Σ q · x (and, for
// Q4_K, Σ x for the min) in f32, then scaled: Q4_K `d·sc · Σ q x - dmin·m · Σ x`, Q6_K
// `d·sc · Σ (q - 32) x`.
//
// With F16, the four-value dots of q and x are taken in f16 (x rounded to f16; q is exact),
// summed in f32 — as q_q8_0.wgsl; scales and sums stay f32.

#if F16
enable f16;
#endif

struct Params {
  rows: u32,
  n_total: u32, // N: the row stride of y
  k: u32,       // K, a multiple of 256
  n_start: u32, // first output feature of this dispatch
  n_count: u32, // output features in this dispatch
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x4: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> w: array<u32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;

override GPT: u32 = 32u; // threads per output feature (power of two)
override RPW: u32 = 8u;  // output features per workgroup
override MT: u32 = 4u;   // activation rows per workgroup (at most 4)

var<workgroup> partial: array<f32, 1024>; // GPT * RPW * MT ≤ 1024

fn dot4(q: vec4<f32>, xv: vec4<f32>) -> f32 {
#if F16
  return f32(dot(vec4<f16>(q), vec4<f16>(xv)));
#else
  return dot(q, xv);
#endif
}

// The four nibbles (low or high halves) of a word, as values.
fn nibbles(word: u32, shift: u32) -> vec4<f32> {
  return vec4<f32>(vec4<u32>(word >> shift, word >> (shift + 8u), word >> (shift + 16u),
    word >> (shift + 24u)) & vec4<u32>(15u));
}

fn byte_of(word: u32, i: u32) -> u32 {
  return (word >> (8u * i)) & 255u;
}

#if Q6K
const BLOCK_WORDS: u32 = 53u;
#else
const BLOCK_WORDS: u32 = 36u;
#endif

@compute @workgroup_size(GPT * RPW)
fn gemv(
  @builtin(local_invocation_index) lid: u32,
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
) {
  let lane = lid % GPT;
  let groups = (p.n_count + RPW - 1u) / RPW;
  let tile = wid.x + wid.y * nwg.x;
  let m0 = (tile / groups) * MT;
  let n = (tile % groups) * RPW + lid / GPT;
  let blocks = p.k / 256u;
  var acc = vec4<f32>(0.0);
  if (n < p.n_count && m0 < p.rows) {
    let units = blocks * 4u;
    let row = (p.n_start + n) * blocks * BLOCK_WORDS;
    for (var u = lane; u < units; u += GPT) {
      let b = row + (u / 4u) * BLOCK_WORDS;
      let c = u % 4u;
#if Q6K
      // c: half h = c / 2, l-group g = c % 2 (l in 16g..16g+15); quarters qd = 0..3
      let h = c / 2u;
      let g = c % 2u;
      let d = unpack2x16float(w[b + 52u]).x;
      let scw0 = w[b + 48u + 2u * h];
      let scw1 = w[b + 49u + 2u * h];
      // scale index within the half's 8: g + 2 qd
      var sc: vec4<f32>;
      sc.x = f32(extractBits(bitcast<i32>(scw0), 8u * g, 8u));
      sc.y = f32(extractBits(bitcast<i32>(scw0), 8u * (g + 2u), 8u));
      sc.z = f32(extractBits(bitcast<i32>(scw1), 8u * g, 8u));
      sc.w = f32(extractBits(bitcast<i32>(scw1), 8u * (g + 2u), 8u));
      let base = (u / 4u) * 256u + 128u * h + 16u * g; // value index of l = 16g, quarter 0
      for (var i = 0u; i < 4u; i++) {
        let qla = w[b + 16u * h + 4u * g + i];        // ql bytes 64h + 16g + 4i .. +3
        let qlb = w[b + 16u * h + 8u + 4u * g + i];   // ql bytes 64h + 32 + 16g + 4i ..
        let qh = w[b + 32u + 8u * h + 4u * g + i];    // qh bytes 32h + 16g + 4i ..
        let hq = vec4<u32>(qh, qh >> 8u, qh >> 16u, qh >> 24u);
        let q1 = vec4<f32>(vec4<u32>(qla, qla >> 8u, qla >> 16u, qla >> 24u) & vec4<u32>(15u) |
          ((hq & vec4<u32>(3u)) << vec4<u32>(4u))) - 32.0;
        let q2 = vec4<f32>(vec4<u32>(qlb, qlb >> 8u, qlb >> 16u, qlb >> 24u) & vec4<u32>(15u) |
          (((hq >> vec4<u32>(2u)) & vec4<u32>(3u)) << vec4<u32>(4u))) - 32.0;
        let q3 = vec4<f32>((vec4<u32>(qla >> 4u, qla >> 12u, qla >> 20u, qla >> 28u) &
          vec4<u32>(15u)) | (((hq >> vec4<u32>(4u)) & vec4<u32>(3u)) << vec4<u32>(4u))) - 32.0;
        let q4 = vec4<f32>((vec4<u32>(qlb >> 4u, qlb >> 12u, qlb >> 20u, qlb >> 28u) &
          vec4<u32>(15u)) | (((hq >> vec4<u32>(6u)) & vec4<u32>(3u)) << vec4<u32>(4u))) - 32.0;
        for (var m = 0u; m < MT; m++) {
          if (m0 + m < p.rows) {
            let xo = ((m0 + m) * p.k + base + 4u * i) / 4u;
            let s = d * (sc.x * dot4(q1, x4[xo]) + sc.y * dot4(q2, x4[xo + 8u]) +
              sc.z * dot4(q3, x4[xo + 16u]) + sc.w * dot4(q4, x4[xo + 24u]));
            acc[m] += s;
          }
        }
      }
#else
      let dd = unpack2x16float(w[b]);
      // get_scale_min_k4 for sub-blocks j0 = 2c and j1 = 2c + 1
      let s0 = w[b + 1u];
      let s1 = w[b + 2u];
      let s2 = w[b + 3u];
      var sc: vec2<f32>;
      var mn: vec2<f32>;
      for (var t = 0u; t < 2u; t++) {
        let j = 2u * c + t;
        var scj: u32;
        var mj: u32;
        if (j < 4u) {
          scj = byte_of(s0, j) & 63u;
          mj = byte_of(s1, j) & 63u;
        } else {
          scj = (byte_of(s2, j - 4u) & 15u) | ((byte_of(s0, j - 4u) >> 6u) << 4u);
          mj = (byte_of(s2, j - 4u) >> 4u) | ((byte_of(s1, j - 4u) >> 6u) << 4u);
        }
        sc[t] = dd.x * f32(scj);
        mn[t] = dd.y * f32(mj);
      }
      let base = (u / 4u) * 256u + 64u * c;
      var sq = array<vec2<f32>, 4>();
      var sx = array<vec2<f32>, 4>();
      for (var i = 0u; i < 8u; i++) {
        let word = w[b + 4u + 8u * c + i];
        let lo = nibbles(word, 0u);
        let hi = nibbles(word, 4u);
        for (var m = 0u; m < MT; m++) {
          if (m0 + m < p.rows) {
            let xo = ((m0 + m) * p.k + base + 4u * i) / 4u;
            let xa = x4[xo];
            let xb = x4[xo + 8u];
            sq[m] += vec2<f32>(dot4(lo, xa), dot4(hi, xb));
            sx[m] += vec2<f32>(dot(xa, vec4<f32>(1.0)), dot(xb, vec4<f32>(1.0)));
          }
        }
      }
      for (var m = 0u; m < MT; m++) {
        acc[m] += dot(sc, sq[m]) - dot(mn, sx[m]);
      }
#endif
    }
  }
  for (var m = 0u; m < MT; m++) {
    partial[lid * MT + m] = acc[m];
  }
  workgroupBarrier();
  for (var s = GPT / 2u; s > 0u; s >>= 1u) {
    if (lane < s) {
      for (var m = 0u; m < MT; m++) {
        partial[lid * MT + m] += partial[(lid + s) * MT + m];
      }
    }
    workgroupBarrier();
  }
  if (lane == 0u && n < p.n_count) {
    for (var m = 0u; m < MT; m++) {
      if (m0 + m < p.rows) {
        y[(m0 + m) * p.n_total + p.n_start + n] = partial[lid * MT + m];
      }
    }
  }
}
