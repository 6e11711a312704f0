// The end of the multi-row GEMVs (gemv_rows in matmul_f16, q_q8_0, q_4bit and q_int8): every
// lane holds, per activation row, one RowSums (vec4<f32>, or vec2<f32> with FPT2) of sums, one per
// output feature of its lane group (FPT). Two rows at a time go through workgroup memory; then one thread per (row, lane
// group) adds that group's GEMV_TPR vec4 in gemv's reduction tree (the pairs gemv's loop over
// s = GEMV_TPR / 2, ..., 1 adds, in the same order, so each feature's sum rounds as gemv's), with
// two barriers per pair of rows instead of gemv's 2 + log2(GEMV_TPR) per row. The including
// kernel declares the overrides `GEMV_WG`, `GEMV_TPR`, FPT and RowSums (row_sums.wgsl), and calls
// rows_pass_begin then lane_tree.

var<workgroup> rows_red: array<RowSums, 2u * GEMV_WG>;

// Rows r and r + 1 of every lane into `rows_red`: a at [lid], b at [GEMV_WG + lid]. Has barriers:
// call it in uniform control flow. After it, the thread for (row q, lane group g) reads
// lane_tree(q · GEMV_WG + g · GEMV_TPR).
fn rows_pass_begin(lid: u32, a: RowSums, b: RowSums) {
  workgroupBarrier(); // the previous pair's sums have been read
  rows_red[lid] = a;
  rows_red[GEMV_WG + lid] = b;
  workgroupBarrier();
}

// The sum of rows_red[base .. base + GEMV_TPR) in gemv's tree: at GEMV_TPR = 32 in registers
// (16 + 8 + 4 + 2 + 1 vector adds), otherwise in place in `rows_red` (the thread owns that range).
fn lane_tree(base: u32) -> RowSums {
  if (GEMV_TPR == 32u) {
    let a0 = rows_red[base] + rows_red[base + 16u];
    let a1 = rows_red[base + 1u] + rows_red[base + 17u];
    let a2 = rows_red[base + 2u] + rows_red[base + 18u];
    let a3 = rows_red[base + 3u] + rows_red[base + 19u];
    let a4 = rows_red[base + 4u] + rows_red[base + 20u];
    let a5 = rows_red[base + 5u] + rows_red[base + 21u];
    let a6 = rows_red[base + 6u] + rows_red[base + 22u];
    let a7 = rows_red[base + 7u] + rows_red[base + 23u];
    let a8 = rows_red[base + 8u] + rows_red[base + 24u];
    let a9 = rows_red[base + 9u] + rows_red[base + 25u];
    let a10 = rows_red[base + 10u] + rows_red[base + 26u];
    let a11 = rows_red[base + 11u] + rows_red[base + 27u];
    let a12 = rows_red[base + 12u] + rows_red[base + 28u];
    let a13 = rows_red[base + 13u] + rows_red[base + 29u];
    let a14 = rows_red[base + 14u] + rows_red[base + 30u];
    let a15 = rows_red[base + 15u] + rows_red[base + 31u];
    let b0 = a0 + a8;
    let b1 = a1 + a9;
    let b2 = a2 + a10;
    let b3 = a3 + a11;
    let b4 = a4 + a12;
    let b5 = a5 + a13;
    let b6 = a6 + a14;
    let b7 = a7 + a15;
    let c0 = b0 + b4;
    let c1 = b1 + b5;
    let c2 = b2 + b6;
    let c3 = b3 + b7;
    return (c0 + c2) + (c1 + c3);
  }
  for (var s = GEMV_TPR / 2u; s > 0u; s >>= 1u) {
    for (var l = 0u; l < s; l++) {
      rows_red[base + l] += rows_red[base + l + s];
    }
  }
  return rows_red[base];
}
