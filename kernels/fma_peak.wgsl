// The f32 FMA-rate reference, the arithmetic twin of stream_read.wgsl: every thread runs eight
// independent vec4<f32> chains a = fma(a, m, c), so the kernel is nothing but FMAs with enough
// independent ones in flight to hide their latency. Its GPU time gives the f32 arithmetic rate a
// compute-bound kernel of ours can hope for on this adapter (bench/run.ts). CPU twin:
// lib/kernels/fma_peak.ts (cpuFmaPeak).
//
// The trip count and m, c come from the uniform, so the compiler can neither fold the loop nor
// evaluate the chains; |m| < 1 keeps them bounded (they tend to c / (1 - m)), so no value grows
// into infinities or decays into denormals, either of which some GPUs handle slowly.
//
// A trip is 4 steps of the 8 chains of 4 lanes (128 FMAs per thread), or 16 steps (512 FMAs)
// with LONG_TRIP. The longer trip leaves the loop's own instructions a smaller share of those
// issued: on the H200, 64.8 TFLOP/s against 59.8 (its f32 peak at 1980 MHz: 66.9). Lavapipe goes
// the other way (82 GFLOP/s against 147 on two cores; LLVM's code for the longer body is slower),
// so software adapters keep the short trip.
//
// out[t] is the sum of thread t's 32 lanes at the end: the store keeps every chain alive.

struct Params {
  trips: u32, // loop trips, 128 or 512 FMAs each
  m: f32,
  c: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;

override WG: u32 = 256u;

@compute @workgroup_size(WG)
fn main(
  @builtin(local_invocation_index) lid: u32,
  @builtin(workgroup_id) wid: vec3<u32>,
) {
  let t = wid.x * WG + lid;
  let m = vec4<f32>(p.m);
  let c = vec4<f32>(p.c);
  // Lane k of the 32 starts at (t mod 1024) / 1024 + k / 32: distinct per lane, exact in f32.
  let b = f32(t & 1023u) / 1024.0 + vec4<f32>(0.0, 1.0, 2.0, 3.0) / 32.0;
  var a0 = b;
  var a1 = b + 0.125;
  var a2 = b + 0.25;
  var a3 = b + 0.375;
  var a4 = b + 0.5;
  var a5 = b + 0.625;
  var a6 = b + 0.75;
  var a7 = b + 0.875;
  // Four steps per line rather than an inner loop: the driver need not unroll anything to keep
  // loop overhead a small share of the issued instructions.
  for (var i = 0u; i < p.trips; i++) {
    a0 = fma(fma(fma(fma(a0, m, c), m, c), m, c), m, c);
    a1 = fma(fma(fma(fma(a1, m, c), m, c), m, c), m, c);
    a2 = fma(fma(fma(fma(a2, m, c), m, c), m, c), m, c);
    a3 = fma(fma(fma(fma(a3, m, c), m, c), m, c), m, c);
    a4 = fma(fma(fma(fma(a4, m, c), m, c), m, c), m, c);
    a5 = fma(fma(fma(fma(a5, m, c), m, c), m, c), m, c);
    a6 = fma(fma(fma(fma(a6, m, c), m, c), m, c), m, c);
    a7 = fma(fma(fma(fma(a7, m, c), m, c), m, c), m, c);
#if LONG_TRIP
    a0 = fma(fma(fma(fma(a0, m, c), m, c), m, c), m, c);
    a1 = fma(fma(fma(fma(a1, m, c), m, c), m, c), m, c);
    a2 = fma(fma(fma(fma(a2, m, c), m, c), m, c), m, c);
    a3 = fma(fma(fma(fma(a3, m, c), m, c), m, c), m, c);
    a4 = fma(fma(fma(fma(a4, m, c), m, c), m, c), m, c);
    a5 = fma(fma(fma(fma(a5, m, c), m, c), m, c), m, c);
    a6 = fma(fma(fma(fma(a6, m, c), m, c), m, c), m, c);
    a7 = fma(fma(fma(fma(a7, m, c), m, c), m, c), m, c);
    a0 = fma(fma(fma(fma(a0, m, c), m, c), m, c), m, c);
    a1 = fma(fma(fma(fma(a1, m, c), m, c), m, c), m, c);
    a2 = fma(fma(fma(fma(a2, m, c), m, c), m, c), m, c);
    a3 = fma(fma(fma(fma(a3, m, c), m, c), m, c), m, c);
    a4 = fma(fma(fma(fma(a4, m, c), m, c), m, c), m, c);
    a5 = fma(fma(fma(fma(a5, m, c), m, c), m, c), m, c);
    a6 = fma(fma(fma(fma(a6, m, c), m, c), m, c), m, c);
    a7 = fma(fma(fma(fma(a7, m, c), m, c), m, c), m, c);
    a0 = fma(fma(fma(fma(a0, m, c), m, c), m, c), m, c);
    a1 = fma(fma(fma(fma(a1, m, c), m, c), m, c), m, c);
    a2 = fma(fma(fma(fma(a2, m, c), m, c), m, c), m, c);
    a3 = fma(fma(fma(fma(a3, m, c), m, c), m, c), m, c);
    a4 = fma(fma(fma(fma(a4, m, c), m, c), m, c), m, c);
    a5 = fma(fma(fma(fma(a5, m, c), m, c), m, c), m, c);
    a6 = fma(fma(fma(fma(a6, m, c), m, c), m, c), m, c);
    a7 = fma(fma(fma(fma(a7, m, c), m, c), m, c), m, c);
#endif
  }
  let s = ((a0 + a1) + (a2 + a3)) + ((a4 + a5) + (a6 + a7));
  out[t] = (s.x + s.y) + (s.z + s.w);
}
