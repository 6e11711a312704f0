// RoPE's rotation for an angle: (cos, sin) after reducing it to about [-π, π], where sin and cos
// are accurate (Vulkan guarantees nothing beyond). Shared by rope.wgsl, attention.wgsl (decode
// with RoPE folded in) and draft_fused.wgsl, so that all turn a pair by the same numbers.

// Two-part 2π (Cody-Waite). TWO_PI_HI has 8 significant bits, so k * TWO_PI_HI is exact for
// k < 2^16, i.e. angles below ~411,000 rad (positions up to 411k at inv_freq 1).
const TWO_PI_HI: f32 = 6.28125;
const TWO_PI_LO: f32 = 0.0019353071795864769;
const INV_TWO_PI: f32 = 0.15915494309189535;

// The angle is one f32 product, pos · inv_freq, as in Hugging Face (inv_freq @ position_ids in
// f32).
fn rotation(pos: u32, inv_freq: f32) -> vec2<f32> {
  let angle = f32(pos) * inv_freq;
  let k = round(angle * INV_TWO_PI);
  let r = (angle - k * TWO_PI_HI) - k * TWO_PI_LO;
  return vec2<f32>(cos(r), sin(r));
}

// (a, b) rotated by the angle whose cosine and sine are cs.
fn rotate(a: f32, b: f32, cs: vec2<f32>) -> vec2<f32> {
  return vec2<f32>(a * cs.x - b * cs.y, b * cs.x + a * cs.y);
}
