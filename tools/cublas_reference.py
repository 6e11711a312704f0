#!/usr/bin/env python3
"""cuBLAS side of the benchmark table: torch fp16 GEMV (F.linear, batch 1) and a 512-row GEMM
at the shapes of bench/run.ts, timed with CUDA events (median of many after a warm-up; the L2 is
flushed by writing a 256 MiB buffer before each timed GEMV, as bench/run.ts does with a read).

    python3 tools/cublas_reference.py [--out results.json]
"""
import argparse
import json
import statistics

import torch
import torch.nn.functional as F

SHAPES = [
    ("7B q/k/v/o", 4096, 4096),
    ("7B gate/up", 11008, 4096),
    ("7B down", 4096, 11008),
    ("8B gate/up", 14336, 4096),
    ("8B down", 4096, 14336),
]


def time_op(op, reps, flush=None):
    times = []
    for i in range(reps + 3):
        if flush is not None:
            flush.zero_()
        start = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)
        start.record()
        op()
        end.record()
        torch.cuda.synchronize()
        if i >= 3:
            times.append(start.elapsed_time(end))
    return statistics.median(times)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="cublas.json")
    ap.add_argument("--rows", type=int, default=512)
    args = ap.parse_args()
    dev = torch.device("cuda")
    flush = torch.empty(256 * 2**20 // 4, dtype=torch.float32, device=dev)
    out = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "gemv": [],
           "gemm": []}
    for name, n, k in SHAPES:
        w = torch.randn(n, k, dtype=torch.float16, device=dev) * 0.02
        x = torch.randn(1, k, dtype=torch.float16, device=dev)
        ms = time_op(lambda: F.linear(x, w), 50, flush)
        nbytes = n * k * 2 + k * 2
        out["gemv"].append({"shape": name, "n": n, "k": k, "ms": ms, "gbps": nbytes / ms / 1e6})
        xm = torch.randn(args.rows, k, dtype=torch.float16, device=dev)
        ms = time_op(lambda: F.linear(xm, w), 20)
        out["gemm"].append({"shape": name, "rows": args.rows, "n": n, "k": k, "ms": ms,
                            "tflops": 2 * args.rows * n * k / ms / 1e9})
        print(f"{name:12s} {n}x{k}: gemv {out['gemv'][-1]['ms']*1000:.1f} us "
              f"{out['gemv'][-1]['gbps']:.0f} GB/s; gemm {args.rows} rows "
              f"{out['gemm'][-1]['tflops']:.1f} TFLOP/s", flush=True)
    # the same streaming-read idea in torch: a sum over 1 GiB
    big = torch.empty(2**30 // 2, dtype=torch.float16, device=dev).fill_(1)
    ms = time_op(lambda: big.sum(dtype=torch.float32), 20)
    out["stream_sum_gbps"] = 2**30 / ms / 1e6
    print(f"torch sum of 1 GiB: {out['stream_sum_gbps']:.0f} GB/s")
    with open(args.out, "w") as f:
        json.dump(out, f, indent=2)


if __name__ == "__main__":
    main()
