// Tiled GEMM helpers shared by matmul_f16, q_4bit and q_q8_0 (included after their gemm). The
// including kernel declares `T` (f16 with F16, else f32), the params `p` (rows, n_count,
// n_total, n_start), the output `y` and the override `TILE_N`.

// One activation row's four dot products against four weight rows (f16 dots with F16).
fn dots(a: vec4<T>, b0: vec4<T>, b1: vec4<T>, b2: vec4<T>, b3: vec4<T>) -> vec4<f32> {
  return vec4<f32>(f32(dot(a, b0)), f32(dot(a, b1)), f32(dot(a, b2)), f32(dot(a, b3)));
}

// Outputs (m, n0 + j · TILE_N / 4) for j = 0..3 of one thread.
fn store_row(m: u32, n0: u32, v: vec4<f32>) {
  if (m >= p.rows) {
    return;
  }
  for (var j = 0u; j < 4u; j++) {
    let n = n0 + j * (TILE_N / 4u);
    if (n < p.n_count) {
      y[m * p.n_total + p.n_start + n] = v[j];
    }
  }
}
