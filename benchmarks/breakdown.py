"""Where one layer call's time goes, beside OpenBLAS's sgemm rate on the same shapes.

    pip install . -C cmake.define.PYLSTM_PROFILE=ON -C install.strip=false   # the profiling build
    python benchmarks/breakdown.py --cell lstm --T 64 --N 32 --I 96 --H 256 --mode train

With the profiling build (csrc/profile.h), the fused loops time their phases on every thread: packing the weights,
the input projection, the per-step recurrent products, the per-step gate math, the waits at the per-step barrier,
and (training) the gradient GEMMs after the backward loop. The table gives each phase's thread-time per call, its
share of all threads' time, and the rate its flops ran at per second of thread-time (a core's rate: compare it with
the sgemm rate divided by the threads). Beside it, the same shapes as single GEMMs through
pylstm's BLAS (split across its pool as the kernels split theirs): what the input projection, the recurrent
products (T products of N rows) and the gradient GEMMs would take at OpenBLAS's rate, and a 2048² product for the
machine's sgemm rate. In an ordinary build only the call's total and the GEMM rates are printed.

Wall time per call is the median of --rounds calls after one warm-up; no thread limit is set.
"""

from __future__ import annotations

import argparse

import numpy as np
from timing import median_s

import pylstm
from pylstm import _core

GATES = {"lstm": 4, "gru": 3, "rnn": 1}
LAYERS = {"lstm": pylstm.LSTM, "gru": pylstm.GRU, "rnn": pylstm.RNN}


def gemm_s(M, K, Nc, rounds):
    """Seconds of one (M × K)·(K × Nc) float32 product through pylstm's BLAS (split across its pool)."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((M, K)).astype(np.float32)
    w = rng.standard_normal((Nc, K)).astype(np.float32)
    return median_s(lambda: _core.linear_forward(a, w, None), rounds)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cell", choices=list(GATES), default="lstm")
    p.add_argument("--T", type=int, default=64)
    p.add_argument("--N", type=int, default=32)
    p.add_argument("--I", type=int, default=96)
    p.add_argument("--H", type=int, default=256)
    p.add_argument("--mode", choices=["infer", "train"], default="train")
    p.add_argument("--rounds", type=int, default=20)
    args = p.parse_args(argv)
    T, N, I, H, G = args.T, args.N, args.I, args.H, GATES[args.cell]
    cfg = pylstm.config()
    print(f"{args.cell} (T, N, I, H) = ({T}, {N}, {I}, {H}), {args.mode}, float32; isa {cfg['isa']}, "
          f"{cfg['threads']} threads, pool: {cfg['pool']}")

    train = args.mode == "train"
    m = LAYERS[args.cell](I, H, seed=0).train(train)
    x = np.random.default_rng(1).standard_normal((T, N, I)).astype(np.float32)
    dy = np.ones((T, N, H), np.float32)

    def call():
        m(x)
        if train:
            m.backward(dy, input_grad=False)

    call()
    wall = median_s(call, args.rounds)
    flops = {"projection": 2.0 * T * N * I * G * H, "recurrent": 2.0 * T * N * H * G * H * (2 if train else 1),
             "gradient_gemm": (2.0 * T * N * G * H * (I + H)) if train else 0.0}
    total = sum(flops.values())
    print(f"wall time per call: {1e3 * wall:.2f} ms, {total / wall / 1e9:.0f} GFLOP/s over the products' flops")

    prof = _core._profile()
    if prof is None:
        print("(an ordinary build: the phases need the profiling build, see the top of this file)")
    else:
        _core._profile_reset()
        for _ in range(args.rounds):
            call()
        prof = {k: v / args.rounds for k, v in _core._profile().items()}
        threads = cfg["threads"] * wall
        print(f"\nthread-time per call by phase ({cfg['threads']} threads x {1e3 * wall:.2f} ms wall = "
              f"{1e3 * threads:.2f} ms)")
        print(f"{'phase':15} {'ms':>8} {'share':>7} {'GFLOP/s':>9}")
        for k, v in prof.items():
            rate = f"{flops[k] / v / 1e9:9.0f}" if flops.get(k) and v > 0 else f"{'':9}"
            print(f"{k:15} {1e3 * v:8.3f} {100 * v / threads:6.1f}% {rate}")
        rest = threads - sum(prof.values())
        print(f"{'(not timed)':15} {1e3 * rest:8.3f} {100 * rest / threads:6.1f}%")

    print("\nthe same shapes as single GEMMs through pylstm's BLAS:")
    rows = [("input projection", T * N, I, G * H, 1),
            (f"recurrent, {T}{' x 2' if train else ''} steps", N, H, G * H, T * (2 if train else 1))]
    if train:
        rows += [("dW_hh = daᵀ h", G * H, T * N, H, 1), ("dW_ih = daᵀ x", G * H, T * N, I, 1)]
    for name, M, K, Nc, times in rows:
        s = gemm_s(M, K, Nc, args.rounds) * times
        print(f"  {name:24} ({M} x {K})·({K} x {Nc}){' x ' + str(times) if times > 1 else ''}: {1e3 * s:8.3f} ms, "
              f"{2.0 * M * K * Nc * times / s / 1e9:5.0f} GFLOP/s")
    s = gemm_s(2048, 2048, 2048, 5)
    print(f"  sgemm 2048 x 2048 x 2048: {1e3 * s:.2f} ms, {2 * 2048**3 / s / 1e9:.0f} GFLOP/s (the machine's rate)")


if __name__ == "__main__":
    main()
