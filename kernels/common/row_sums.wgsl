// Output features per lane group of the multi-row GEMVs (FPT): 2 with FPT2 (the default, see
// defaultRowsFeatures in lib/kernels/linear.ts), 1 with FPT1 (FP16 only), else 4 (each x load
// serves four weight rows, but with a quarter of the lane groups the grid has too few threads to
// keep a GPU's memory system busy).
#if FPT1
const FPT: u32 = 1u; // FPT1: matmul_f16 only
alias RowSums = f32;
alias RowInts = i32;
#else
#if FPT2
const FPT: u32 = 2u;
alias RowSums = vec2<f32>;
alias RowInts = vec2<i32>;
#else
const FPT: u32 = 4u;
alias RowSums = vec4<f32>;
alias RowInts = vec4<i32>;
#endif
#endif

// Sums v of activation row r for features n0 .. n0 + FPT - 1 (of this chunk) stored
// (stack_store.wgsl's store_rows_feature: routed in a stack), features past the chunk left out.
fn row_sums_store(r: u32, n0: u32, v: RowSums) {
#if FPT1
  if (n0 < p.n_count) {
    store_rows_feature(r, p.n_start + n0, v);
  }
#else
  for (var f = 0u; f < FPT; f++) {
    if (n0 + f < p.n_count) {
      store_rows_feature(r, p.n_start + n0 + f, v[f]);
    }
  }
#endif
}

// The activation rows of a multi-row GEMV: ROWS (an override the including kernel declares
// beside its others: naga 29 panics on one declared here) where the pipeline was made for one
// row count, so that the shader compiler drops the other rows' branches and schedules the rows'
// sums together; else the parameter.
fn nrows() -> u32 {
  return select(p.rows, ROWS, ROWS != 0u);
}
