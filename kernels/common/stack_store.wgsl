// Output feature n of the one activation row of a stacked matrix (q, k, v; gate, up): features
// [0, split1) go to y, [split1, split2) to y2 and the rest to y3 (ROUTE3; ROUTE2: two layers),
// so one dispatch serves two or three products. The including kernel declares y, y2, y3 and p.
fn store_gemv(n: u32, v: f32) {
#if ROUTE2
  if (n >= p.split1) {
    y2[n - p.split1] = v;
    return;
  }
#endif
#if ROUTE3
  if (n >= p.split2) {
    y3[n - p.split2] = v;
    return;
  }
  if (n >= p.split1) {
    y2[n - p.split1] = v;
    return;
  }
#endif
#if RESID
  // the residual add in the product's epilogue: y is the residual stream, each feature one thread's
  y[n] = y[n] + v;
#else
  y[n] = v;
#endif
}

// Output feature n of activation row r in a multi-row product (gemv_rows): y[r · n_total + n],
// or with ROUTE2/ROUTE3 its layer's own [rows, width] output, as store_gemv routes one row.
fn store_rows_feature(r: u32, n: u32, v: f32) {
#if ROUTE2
  if (n >= p.split1) {
    y2[r * (p.n_total - p.split1) + n - p.split1] = v;
    return;
  }
  y[r * p.split1 + n] = v;
#else
#if ROUTE3
  if (n >= p.split2) {
    y3[r * (p.n_total - p.split2) + n - p.split2] = v;
    return;
  }
  if (n >= p.split1) {
    y2[r * (p.split2 - p.split1) + n - p.split1] = v;
    return;
  }
  y[r * p.split1 + n] = v;
#else
#if RESID
  // one row adding to the residual stream (q_q8_0's gemv_rows at ROWS = 1)
  y[r * p.n_total + n] = y[r * p.n_total + n] + v;
#else
  y[r * p.n_total + n] = v;
#endif
#endif
#endif
}
