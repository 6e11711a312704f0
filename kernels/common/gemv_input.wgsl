// How a decode step's one-row products read their input (q_4bit.wgsl's gemv and q_q8_0.wgsl's
// gemv_rows at one row): SWIGLU reads silu(x) · up (x holds gate_proj's output, up4 up_proj's:
// elementwise.wgsl's swiglu, the same f32 expression), NORM reads rmsnorm(x) · norm_w (x is the
// residual stream: rmsnorm.wgsl's x · (1 / sqrt(mean(x²) + eps)) · w in f32, its sum of squares
// in this workgroup's order), as the product stages x. The including kernel declares x4, up4
// (SWIGLU), norm_w4 and the private norm_inv (NORM), p.k, p.eps and GEMV_WG, and with NORM the
// workgroup array `partial` (at least GEMV_WG f32) that inverse_rms sums through (q_4bit reuses
// its product's), and sets norm_inv from inverse_rms before it stages x.

// Activations i .. i + 3 (of row 0 with SWIGLU or NORM, which serve one row).
fn x_at(i: u32) -> vec4<f32> {
#if SWIGLU
  let g = x4[i];
  return g / (1.0 + exp(-g)) * up4[i];
#else
#if NORM
  return x4[i] * norm_inv * norm_w4[i];
#else
  return x4[i];
#endif
#endif
}

#if NORM
// 1 / sqrt(mean(x²) + eps) of the row, summed through partial[0 .. GEMV_WG). Has barriers: call
// it in uniform control flow, and put a barrier after it before partial is written again.
fn inverse_rms(lid: u32) -> f32 {
  var ss = 0.0;
  for (var i = lid; i < p.k / 4u; i += GEMV_WG) {
    let v = x4[i];
    ss += dot(v, v);
  }
  partial[lid] = ss;
  workgroupBarrier();
  for (var st = GEMV_WG / 2u; st > 0u; st >>= 1u) {
    if (lid < st) {
      partial[lid] += partial[lid + st];
    }
    workgroupBarrier();
  }
  return 1.0 / sqrt(partial[0] / f32(p.k) + p.eps);
}
#endif
