// Rows r0 and r0 + 1 (a, b: this lane's sums) of a float multi-row GEMV reduced and stored; nw is
// the workgroup's first output feature. Shared by gemv_rows in matmul_f16, q_q8_0 and q_4bit (the
// int8 kernel reduces integer sums its own way). The including kernel includes
// gemv_rows_store.wgsl and defines row_sums_store.
fn rows_pass(lid: u32, nw: u32, r0: u32, a: RowSums, b: RowSums) {
  rows_pass_begin(lid, a, b);
  let lane_groups = GEMV_WG / GEMV_TPR;
  if (lid < 2u * lane_groups) {
    let q = lid / lane_groups;
    let lg = lid % lane_groups;
    let n0 = nw + lg * FPT;
    if (r0 + q < nrows()) {
      let v = lane_tree(q * GEMV_WG + lg * GEMV_TPR);
      row_sums_store(r0 + q, n0, v);
    }
  }
}
