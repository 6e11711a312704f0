// Causal grouped-query attention over an FP16 KV cache.
//
// Cache layout, per layer: K and V each [max_seq, num_kv_heads, HEAD_DIM] as f16 pairs (u32,
// element 2i in the low half). q and out are f32 [rows, num_heads, HEAD_DIM]; query row r sits
// at position start_pos + r and sees positions 0 ..= start_pos + r. Query head h reads kv head
// h / (num_heads / num_kv_heads).
//
//   write_kv  converts k, v [rows, num_kv_heads, HEAD_DIM] (f32) to f16 into positions
//             start_pos .. start_pos + rows - 1. One thread per pair.
//   attend    one workgroup per (row, query head). Keys go by in blocks of ATT_WG, one key per
//             thread, with an online softmax (running max m and sum l, f32): workgroup memory
//             stays at HEAD_DIM + ATT_WG floats whatever the sequence length, and there is no
//             scratch buffer.

struct Params {
  rows: u32,
  start_pos: u32,
  num_heads: u32,
  num_kv_heads: u32,
  scale: f32, // 1 / sqrt(HEAD_DIM)
}

override HEAD_DIM: u32 = 64u; // even
override ATT_WG: u32 = 64u; // threads per workgroup = keys per block; HEAD_DIM <= 8 * ATT_WG
const MAX_PAIRS: u32 = 4u; // value pairs per thread

@group(0) @binding(0) var<uniform> p: Params;

// write_kv
@group(0) @binding(1) var<storage, read> k_in: array<vec2<f32>>;
@group(0) @binding(2) var<storage, read> v_in: array<vec2<f32>>;
@group(0) @binding(3) var<storage, read_write> k_cache_w: array<u32>;
@group(0) @binding(4) var<storage, read_write> v_cache_w: array<u32>;

@compute @workgroup_size(256)
fn write_kv(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let idx = gid.x + gid.y * nwg.x * 256u;
  let per_pos = p.num_kv_heads * (HEAD_DIM / 2u);
  if (idx >= p.rows * per_pos) {
    return;
  }
  // Input rows and cache positions share the [.., num_kv_heads, HEAD_DIM] layout.
  let dst = p.start_pos * per_pos + idx;
  k_cache_w[dst] = pack2x16float(k_in[idx]);
  v_cache_w[dst] = pack2x16float(v_in[idx]);
}

// attend
@group(0) @binding(1) var<storage, read> q: array<vec2<f32>>;
@group(0) @binding(2) var<storage, read> k_cache: array<u32>;
@group(0) @binding(3) var<storage, read> v_cache: array<u32>;
@group(0) @binding(4) var<storage, read_write> out: array<vec2<f32>>;

var<workgroup> q_s: array<vec2<f32>, HEAD_DIM / 2u>;
var<workgroup> p_s: array<f32, ATT_WG>;

// Below any real score, yet finite: exp(NEG_BIG - m) is 0, never NaN from inf - inf.
const NEG_BIG: f32 = -3.0e38;

@compute @workgroup_size(ATT_WG)
fn attend(
  @builtin(local_invocation_index) lid: u32,
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
) {
  let item = wid.x + wid.y * nwg.x; // row * num_heads + head
  if (item >= p.rows * p.num_heads) {
    return; // uniform for the workgroup
  }
  let hp = HEAD_DIM / 2u;
  let row = item / p.num_heads;
  let kv_head = (item % p.num_heads) / (p.num_heads / p.num_kv_heads);
  let len = p.start_pos + row + 1u;
  let kv_stride = p.num_kv_heads * hp; // words per position
  let kv_off = kv_head * hp;

  for (var i = lid; i < hp; i += ATT_WG) {
    q_s[i] = q[item * hp + i] * p.scale;
  }
  workgroupBarrier();

  var m = NEG_BIG;
  var l = 0.0;
  var acc: array<vec2<f32>, MAX_PAIRS>;
  for (var j0 = 0u; j0 < len; j0 += ATT_WG) {
    let n_here = min(ATT_WG, len - j0);
    var s = NEG_BIG;
    if (lid < n_here) {
      let kb = (j0 + lid) * kv_stride + kv_off;
      var d = 0.0;
      for (var i = 0u; i < hp; i++) {
        d += dot(q_s[i], unpack2x16float(k_cache[kb + i]));
      }
      s = d;
    }
    p_s[lid] = s;
    workgroupBarrier();
    var m_new = m;
    for (var t = 0u; t < n_here; t++) {
      m_new = max(m_new, p_s[t]);
    }
    workgroupBarrier(); // all have read the scores before they become probabilities
    p_s[lid] = exp(s - m_new);
    workgroupBarrier();
    let alpha = exp(m - m_new);
    m = m_new;
    var sum = 0.0;
    for (var t = 0u; t < n_here; t++) {
      sum += p_s[t];
    }
    l = l * alpha + sum;
    for (var c = 0u; c < MAX_PAIRS; c++) {
      let i = lid + c * ATT_WG;
      if (i < hp) {
        var a = acc[c] * alpha;
        for (var t = 0u; t < n_here; t++) {
          a += p_s[t] * unpack2x16float(v_cache[(j0 + t) * kv_stride + kv_off + i]);
        }
        acc[c] = a;
      }
    }
    workgroupBarrier(); // the next block overwrites p_s
  }
  for (var c = 0u; c < MAX_PAIRS; c++) {
    let i = lid + c * ATT_WG;
    if (i < hp) {
      out[item * hp + i] = acc[c] / l;
    }
  }
}
