// The end of gemv_rows in matmul_f16 and q_q8_0: one activation row's two features per lane
// group (FPT = 2) summed through gemv's reduction tree and stored. The including kernel declares
// the params `p` (n_count, n_total, n_start), the output `y`, the overrides `GEMV_WG` and
// `GEMV_TPR`, and `FPT`.

var<workgroup> partial_rows: array<f32, GEMV_WG * FPT>;

// Row r: a0 is this lane's sum for feature n0, a1 for n0 + 1; lanes 0 and 1 store y[r, n0 + lane].
// Has barriers: call it in uniform control flow.
fn reduce_store_row(lid: u32, lane: u32, n0: u32, r: u32, a0: f32, a1: f32) {
  workgroupBarrier(); // the previous row's sums have been read
  partial_rows[lid] = a0;
  partial_rows[GEMV_WG + lid] = a1;
  workgroupBarrier();
  for (var s = GEMV_TPR / 2u; s > 0u; s >>= 1u) {
    if (lane < s) {
      partial_rows[lid] += partial_rows[lid + s];
      partial_rows[GEMV_WG + lid] += partial_rows[GEMV_WG + lid + s];
    }
    workgroupBarrier();
  }
  if (lane < FPT && n0 + lane < p.n_count) {
    y[r * p.n_total + p.n_start + n0 + lane] = partial_rows[lane * GEMV_WG + lid - lane];
  }
}
