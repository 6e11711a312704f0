// The int8 activation code of q_int8.wgsl (quantize, quantize_row) and rmsnorm.wgsl
// (add_rmsnorm_q8): both must give the CPU twin's codes (lib/quant/int8_codes.ts) bit for bit.

// 127 / a rounded to the nearest f32, exactly as the CPU twin's Math.fround(127 / absmax).
// WGSL allows f32 division to be 2.5 ulp off (GPUs use a reciprocal), which would move the
// codes of values lying near a rounding boundary; dividing the mantissas as integers (exact in
// WGSL) is a long division of 40 or 41 quotient bits, once per row, done 8 bits per u32 division
// (five or six dependent steps rather than 40 or 41: ~0.7 µs less per quantize_row on an
// H100).
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
  // q = ⌊127 · 2^steps / m⌋, r the remainder: the dividend's low bits are all zero, so each step
  // brings down 8 (or 1) zero bits; r < m < 2^24 keeps r · 2^8 within a u32.
  var r = 127u;
  var q = 0u;
  if (steps == 41u) {
    r <<= 1u;
    q = r / m;
    r -= q * m;
  }
  for (var i = 0u; i < 5u; i++) {
    r <<= 8u;
    let d = r / m;
    r -= d * m;
    q = (q << 8u) | d;
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
