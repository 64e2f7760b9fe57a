"""`python -m pylstm` / `pylstm`: a short self-check of the compiled LSTM against the NumPy reference, with timings."""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np


def _max_rel(a, b):
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-30))


def _median_ms(fn, rounds, settle=0.15):
    # Idle first, so that the threads of whatever ran before (numpy's OpenBLAS spins for about 0.1 s after each
    # product, torch's OpenMP for less) have gone to sleep and do not compete with the calls being timed.
    time.sleep(settle)
    fn()  # warm-up
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1e3 * float(np.median(times))


def selfcheck(seed=0, rounds=5, out=None):
    """Checks every output and gradient of one small LSTM layer against the reference; times a larger one.
    Returns True when all checks pass."""
    from . import _core, reference, show_config

    out = sys.stdout if out is None else out
    show_config(file=out)
    print(file=out)
    rng = np.random.default_rng(seed)
    ok = True
    print("pylstm self-check: compiled kernels vs the NumPy reference", file=out)
    print(f"{'dtype':8} {'quantity':8} {'max rel err':>12} {'tol':>8}  result", file=out)
    for dt, tol in (("float64", 1e-10), ("float32", 1e-5)):
        T, N, I, H = 7, 3, 5, 6
        args = [rng.standard_normal(s).astype(dt) for s in
                [(T, N, I), (N, H), (N, H), (4 * H, I), (4 * H, H), (4 * H,), (4 * H,)]]
        dy, dh_n, dc_n = (rng.standard_normal(s).astype(dt) for s in [(T, N, H), (N, H), (N, H)])
        results = []
        for impl in (_core, reference):
            y, h_n, c_n, cache = impl.lstm_forward(*args, reverse=False, training=True)
            grads = [np.zeros_like(a) for a in args[3:]]
            dx, dh0, dc0 = impl.lstm_backward(dy, dh_n, dc_n, args[0], args[1], args[2], args[3], args[4], y, cache,
                                              *grads)
            results.append(dict(y=y, h_n=h_n, c_n=c_n, dx=dx, dh0=dh0, dc0=dc0, dW_ih=grads[0], dW_hh=grads[1],
                                db_ih=grads[2], db_hh=grads[3]))
        for key in results[0]:
            err = _max_rel(results[0][key], results[1][key])
            good = err <= tol
            ok &= good
            print(f"{dt:8} {key:8} {err:12.2e} {tol:8.0e}  {'ok' if good else 'FAIL'}", file=out)

    print("\nLSTM layer timings, median of %d rounds (ms)" % rounds, file=out)
    print(f"{'case (T, N, I=H)':20} {'pass':10} {'pylstm':>9} {'numpy':>9} {'speed-up':>9}", file=out)
    for (T, N, H) in ((100, 1, 256), (100, 32, 256)):
        x = rng.standard_normal((T, N, H)).astype("float32")
        W = [rng.uniform(-0.06, 0.06, s).astype("float32") for s in [(4 * H, H), (4 * H, H), (4 * H,), (4 * H,)]]
        dy = np.ones((T, N, H), "float32")

        def run(impl, train):
            def go():
                y, _, _, cache = impl.lstm_forward(x, None, None, *W, training=train)
                if train:
                    g = [np.zeros_like(w) for w in W]
                    impl.lstm_backward(dy, None, None, x, None, None, W[0], W[1], y, cache, *g)
            return go

        for name, train in (("inference", False), ("training", True)):
            a = _median_ms(run(_core, train), rounds)
            b = _median_ms(run(reference, train), max(1, rounds // 2))
            print(f"{str((T, N, H)):20} {name:10} {a:9.2f} {b:9.2f} {b / a:8.1f}x", file=out)
    print("\nself-check " + ("passed" if ok else "FAILED"), file=out)
    return ok


def main(argv=None):
    try:
        return _dispatch(sys.argv[1:] if argv is None else list(argv))
    except BrokenPipeError:
        # The reader went away (`pylstm sample | head`): stop quietly, and keep Python's exit flush from failing again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


def _dispatch(argv):
    if argv and argv[0] in ("train", "sample", "task", "gradflow", "bench", "seq2seq", "-h", "--help"):
        from .cli import main as cli_main

        return cli_main(argv)
    if argv and argv[0] == "selfcheck":
        argv = argv[1:]
    parser = argparse.ArgumentParser(prog="pylstm selfcheck", description=__doc__)
    parser.add_argument("--seed", type=int, default=0, help="seed of the random test data (default 0)")
    parser.add_argument("--rounds", type=int, default=5, help="timing rounds per case (default 5)")
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error("--rounds must be >= 1")
    return 0 if selfcheck(seed=args.seed, rounds=args.rounds) else 1


if __name__ == "__main__":
    sys.exit(main())
