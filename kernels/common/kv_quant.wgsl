// Quantizing keys and values into an int8 or int4 KV cache (defines KV8 or KV4; layout and CPU
// twin in lib/kernels/kv_cache.ts), shared by rope.wgsl (rope_qk_cache_q) and attention.wgsl
// (decode with RoPE folded in), so that both write the same codes. The including shader declares
// the workgroup arrays kx (keys) and vx (values) that pack_word reads.

const GROUP: u32 = 32u;
const INV_SQRT_GROUP: f32 = 0.17677669529663687; // 1 / sqrt(32)

fn to_f16(v: f32) -> f32 {
  return unpack2x16float(pack2x16float(vec2<f32>(v, 0.0))).x;
}

// A group's (scale, offset) from its absmax (int8: hi) or its max and min (int4), in f16.
fn group_scale(hi: f32, lo: f32) -> vec2<f32> {
#if KV8
  return vec2<f32>(to_f16(hi / 127.0), 0.0);
#else
  return vec2<f32>(to_f16((hi - lo) / 15.0), to_f16(lo));
#endif
}

// The code of value v under (scale, offset) so.
fn code(v: f32, so: vec2<f32>) -> i32 {
  let inv = select(0.0, 1.0 / so.x, so.x > 0.0);
#if KV8
  return i32(clamp(round(v * inv), -127.0, 127.0));
#else
  return i32(clamp(round((v - so.y) * inv), 0.0, 15.0));
#endif
}

// The word of codes whose first element is element l of kx (keys) or vx (values): int8 4 codes,
// int4 8.
fn pack_word(l: u32, so: vec2<f32>, is_key: bool) -> u32 {
#if KV8
  var c: vec4<i32>;
  for (var t = 0u; t < 4u; t++) {
    c[t] = code(select(vx[l + t], kx[l + t], is_key), so);
  }
  return pack4xI8(c);
#else
  var w = 0u;
  for (var t = 0u; t < 4u; t++) {
    let lo = u32(code(select(vx[l + t], kx[l + t], is_key), so));
    let hi = u32(code(select(vx[l + 4u + t], kx[l + 4u + t], is_key), so));
    w |= (lo | (hi << 4u)) << (8u * t);
  }
  return w;
#endif
}
