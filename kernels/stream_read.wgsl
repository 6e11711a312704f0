// The streaming-read reference: every thread strides over a buffer with vec4<u32> loads and
// sums the words (wrapping), so the kernel reads each byte once and does almost nothing else.
// Its GPU time gives the read bandwidth a memory-bound kernel of ours can hope for on this
// adapter (bench/run.ts). CPU twin: lib/kernels/stream_read.ts (cpuStreamSum).
//
// out[t] is the sum of what thread t read; Σ out (mod 2³²) is the sum of all words of src.

struct Params {
  n4: u32, // vec4<u32> units to read
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<vec4<u32>>;
@group(0) @binding(2) var<storage, read_write> out: array<u32>;

override WG: u32 = 256u;

@compute @workgroup_size(WG)
fn main(
  @builtin(local_invocation_index) lid: u32,
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
) {
  let t = (wid.x + wid.y * nwg.x) * WG + lid;
  let stride = nwg.x * nwg.y * WG;
  var acc = vec4<u32>(0u);
  for (var i = t; i < p.n4; i += stride) {
    acc += src[i];
  }
  out[t] = acc.x + acc.y + acc.z + acc.w;
}
