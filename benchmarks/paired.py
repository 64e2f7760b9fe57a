"""The per-layer cases of test_bench_rnn.py with the peers timed in paired rounds.

    python benchmarks/paired.py                                   # every cell, case and pass
    python benchmarks/paired.py --cells lstm --cases large,wide --modes infer --rounds 9

pytest-benchmark times all the rounds of one implementation, then all those of the next. On a host whose speed
drifts by tens of percent over seconds (a shared cloud guest: benchmarks/README.md, "Noise"), a slow stretch then
lands on one contender only, and a ratio of two medians measures the host as much as the code. Here every round
times a block of calls of each implementation in turn (pylstm, torch.nn, ONNX Runtime for inference, and OpenBLAS's
2048³ sgemm when asked), after the same idle as the pytest benchmarks' (SETTLE_S), and each ratio is the median over
rounds of the ratios within a round, beside each implementation's median time per call. The builders, shapes and
threads are test_bench_rnn.py's; no thread limit and no environment variable is set. A peer that is not installed is
left out.
"""

from __future__ import annotations

import argparse
import statistics
import time

import pytest
import test_bench_rnn as B
from timing import sgemm_call

import pylstm

PEERS = ("torch", "ort")


def _block_ms(run, calls):
    """Median ms of `calls` calls of run, after SETTLE_S idle."""
    time.sleep(B.SETTLE_S)
    times = []
    for _ in range(calls):
        t0 = time.perf_counter()
        run()
        times.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(times)


def flops(cell, mode, T, N, I, H):
    """The products' flops of one call (table.py's count): forward, or forward and backward (three times)."""
    return 2 * T * N * (I + H) * B.CELLS[cell][1] * H * (3 if mode == "train" else 1)


def run_case(cell, case, mode, rounds, with_sgemm):
    """{impl: [ms per call, one per round]} for one case, the implementations taking turns within each round."""
    T, N, I, H = B.CASES[case]
    train = mode == "train"
    pylstm.set_num_threads(B.THREADS)
    runs = {"pylstm": B.IMPLS["pylstm"](cell, T, N, I, H, train)}
    for peer in PEERS:
        if peer == "ort" and train:
            continue
        try:
            runs[peer] = B.IMPLS[peer](cell, T, N, I, H, train)
        except pytest.skip.Exception:
            pass
    calls = max(3, B._rounds("pylstm", case) // 4) * B.ITERATIONS.get(case, 1)
    blocks = {name: (lambda run=run: _block_ms(run, calls)) for name, run in runs.items()}
    if with_sgemm:
        blocks["sgemm"] = _sgemm_block
    for run in runs.values():  # the first call of each (packing, pools, allocations)
        run()
    times = {k: [] for k in blocks}
    for _ in range(rounds):
        for name, block in blocks.items():
            times[name].append(block())
    return times


_SGEMM = []  # the sgemm call, made once (sgemm_call checks its result with NumPy's product)


def _sgemm_block():
    """ms of one 2048³ sgemm (median of 3) on OpenBLAS's own B.THREADS threads; pylstm's OpenBLAS goes back to one
    thread right after (pylstm's kernels call it from their own pool's threads)."""
    if not _SGEMM:
        _SGEMM.append(sgemm_call(2048, B.THREADS))
    run, restore = _SGEMM[0]
    pylstm._blas.scipy_openblas_set_num_threads(B.THREADS)
    try:
        return _block_ms(run, 3)
    finally:
        restore()


def paired(times, a, b):
    """Median over rounds of times[b] / times[a] (> 1: a is faster), and its range."""
    r = [tb / ta for ta, tb in zip(times[a], times[b])]
    return statistics.median(r), min(r), max(r)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cells", default=",".join(B.CELLS))
    p.add_argument("--cases", default=",".join(B.CASES))
    p.add_argument("--modes", default="infer,train")
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--sgemm", action="store_true",
                   help="time a 2048³ sgemm in every round too: the %% of sgemm is then paired as well")
    args = p.parse_args(argv)
    cfg = pylstm.config()
    print(f"pylstm isa {cfg['isa']}, {B.THREADS} threads; {args.rounds} rounds, the implementations in turn in each; "
          f"ratios: medians of the rounds' ratios (> 1: pylstm faster), [lowest, highest]")
    print()
    print("| cell | case (T, N, I, H) | pass | pylstm ms | torch ms | ORT ms | vs torch | vs ORT |"
          + (" % of sgemm |" if args.sgemm else ""))
    print("|---|---|---|---|---|---|---|---|" + ("---|" if args.sgemm else ""))
    for cell in args.cells.split(","):
        for case in args.cases.split(","):
            for mode in args.modes.split(","):
                times = run_case(cell, case, mode, args.rounds, args.sgemm)
                med = {k: statistics.median(v) for k, v in times.items()}
                cols = [f"{med[k]:.2f}" if k in med else "—" for k in ("pylstm", "torch", "ort")]
                for peer in PEERS:
                    if peer in times:
                        m, lo, hi = paired(times, "pylstm", peer)
                        cols.append(f"{m:.2f}x [{lo:.2f}, {hi:.2f}]")
                    else:
                        cols.append("—")
                if args.sgemm:
                    T, N, I, H = B.CASES[case]
                    f = flops(cell, mode, T, N, I, H)
                    share = [(f / tp) / (2 * 2048**3 / ts) for tp, ts in zip(times["pylstm"], times["sgemm"])]
                    cols.append(f"{100 * statistics.median(share):.0f}")
                print(f"| {cell} | {case} {B.CASES[case]} | {mode} | " + " | ".join(cols) + " |", flush=True)


if __name__ == "__main__":
    main()
