"""`pylstm selfcheck` (what `pylstm` alone runs) and `pylstm bench`: the compiled kernels checked against the NumPy
reference and timed, and a quick timing table against the NumPy reference, torch and ONNX Runtime."""

from __future__ import annotations

import sys
import time

import numpy as np

from .common import CELLS


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
    from pylstm import _core, reference, show_config

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

def bench(args):
    """A quick table on this machine: pylstm against the NumPy reference and, when installed, torch and ONNX
    Runtime (inference), for one layer of each cell type; medians of --rounds calls after one warm-up."""
    import pylstm
    from pylstm import nn, reference

    def ms(t):
        return f"{t:9.2f}" if t == t else f"{'-':>9}"

    def ratio(theirs, ours):
        return f"{theirs / ours:8.2f}x" if theirs == theirs else f"{'-':>9}"

    pylstm.show_config()
    print()
    rng = np.random.default_rng(args.seed)
    T, N, H = args.length, args.batch, args.hidden
    threads = pylstm.get_num_threads()
    try:
        import torch

        torch.set_num_threads(threads)
    except ImportError:
        torch = None
    try:
        import onnx  # noqa: F401  (the model builder needs it)
        import onnxruntime  # noqa: F401

        from pylstm.onnx import layer_model as onnx_model
        from pylstm.onnx import ort_session
        has_ort = True
    except ImportError:
        has_ort = False
    missing = [name for name, ok in (("torch", torch is not None), ("onnxruntime and onnx", has_ort)) if not ok]
    print(f"one layer, T={T}, N={N}, I=H={H}, float32, {threads} threads; median ms of {args.rounds} calls; "
          f"ratios are the other's time over pylstm's (above 1: pylstm is faster)"
          + (f"; not installed: {', '.join(missing)}" if missing else ""))
    print(f"{'cell':5} {'pass':6} {'pylstm':>9} {'numpy':>9} {'torch':>9} {'ORT':>9} {'vs numpy':>9} {'vs torch':>9} "
          f"{'vs ORT':>9}")
    x = rng.standard_normal((T, N, H)).astype(np.float32)
    nan = float("nan")
    for cell in CELLS:
        m = nn.LAYERS[cell](H, H, seed=args.seed)
        p = m.state_dict()
        W = [p["weight_ih_l0"], p["weight_hh_l0"], p["bias_ih_l0"], p["bias_hh_l0"]]
        fwd = getattr(reference, f"{cell}_forward")
        ref_state = (None, None) if cell == "lstm" else (None,)
        tm = getattr(torch.nn, cell.upper())(H, H) if torch else None
        sess = ort_session(onnx_model(cell, *W), threads) if has_ort else None
        for train in (False, True):
            m.train(train)

            def ours():
                out, _ = m(x)
                if train:
                    m.backward(np.ones_like(out))

            def numpy_ref():
                res = fwd(x, *ref_state, *W, training=train)
                if train:
                    bwd = getattr(reference, f"{cell}_backward")
                    g = [np.zeros_like(w) for w in W]
                    if cell == "lstm":
                        bwd(np.ones_like(res[0]), None, None, x, None, None, W[0], W[1], res[0], res[3], *g)
                    else:
                        bwd(np.ones_like(res[0]), None, x, None, W[0], W[1], res[0], res[2], *g)

            def theirs():
                xt = torch.from_numpy(x).requires_grad_(train)
                with torch.set_grad_enabled(train):
                    out, _ = tm(xt)
                    if train:
                        out.backward(torch.ones_like(out))

            a = _median_ms(ours, args.rounds)
            b = _median_ms(numpy_ref, max(1, args.rounds // 3))
            c = _median_ms(theirs, args.rounds) if torch else nan
            d = _median_ms(lambda: sess.run(None, {"X": x}), args.rounds) if sess and not train else nan

            print(f"{cell:5} {'train' if train else 'infer':6} {ms(a)} {ms(b)} {ms(c)} {ms(d)} {ratio(b, a)} "
                  f"{ratio(c, a)} {ratio(d, a)}")
    return 0



def selfcheck_command(args):
    return 0 if selfcheck(seed=args.seed, rounds=args.rounds) else 1
