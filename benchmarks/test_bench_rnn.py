"""LSTM, GRU and RNN benchmarks: pylstm against the NumPy reference and, when installed, torch.nn and ONNX
Runtime (inference only), in one run.

    pytest benchmarks --benchmark-enable --benchmark-json=bench.json && python benchmarks/table.py bench.json

Each case is (T, N, I, H); pylstm runs in float32 and, as "pylstm64", in float64; "ptorch" is torch's benchmark with
pylstm.torch's module in place of torch.nn's. "infer" is an eval-mode forward; "train" is forward plus backward
through time with the gradients of the input and all weights. Without --benchmark-enable (as in the test suite)
each runs once, as a smoke test.
"""

import time

import numpy as np
import pytest
from timing import sgemm_call

import pylstm

CASES = {"latency": (100, 1, 256, 256), "small": (100, 16, 128, 128), "medium": (100, 32, 256, 256),
         "large": (50, 64, 1024, 1024), "tall": (400, 4, 64, 128), "wide": (20, 256, 512, 512),
         "speech": (63, 1, 24, 32)}
THREADS = 2


def _rounds(impl, case):
    if impl == "numpy":
        return 2 if case == "large" else 3
    return 5 if case == "large" else 20


# Calls per round for the shapes whose call takes well under a millisecond: a round of one call would time the first
# calls after the pause below (a core back from idle, a pool's threads waking), not the calls of a user who runs the
# model over and over; the table reports the time per call either way.
ITERATIONS = {"speech": 30, "latency": 3}


CELLS = {"lstm": ("LSTM", 4), "gru": ("GRU", 3), "rnn": ("RNN", 1)}
# Idle before timing each implementation, so that the previous one's threads (torch's OpenMP, ONNX Runtime's pool,
# NumPy's OpenBLAS all spin for a while after their last call) have gone to sleep and take no core from this one.
SETTLE_S = 0.5


def _pylstm(cell, T, N, I, H, train, dtype=np.float32):
    m = getattr(pylstm, CELLS[cell][0])(I, H, seed=0, dtype=dtype).train(train)
    x = np.random.default_rng(0).standard_normal((T, N, I)).astype(dtype)
    dout = np.ones((T, N, H), dtype)

    def run():
        m(x)
        if train:
            m.backward(dout)
    return run


def _numpy(cell, T, N, I, H, train):
    m = getattr(pylstm, CELLS[cell][0])(I, H, seed=0)
    W = [m.state_dict()[k] for k in ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0")]
    x = np.random.default_rng(0).standard_normal((T, N, I)).astype(np.float32)
    dy = np.ones((T, N, H), np.float32)
    fwd = getattr(pylstm.reference, cell + "_forward")
    bwd = getattr(pylstm.reference, cell + "_backward")
    n_states = 2 if cell == "lstm" else 1

    def run():
        y, *_, cache = fwd(x, *[None] * n_states, *W, training=train)
        if train:
            g = [np.zeros_like(w) for w in W]
            bwd(dy, *[None] * n_states, x, *[None] * n_states, W[0], W[1], y, cache, *g)
    return run


def _torch(cell, T, N, I, H, train, modules=None):
    torch = pytest.importorskip("torch")
    torch.set_num_threads(THREADS)
    m = getattr(modules or torch.nn, CELLS[cell][0])(I, H).train(train)
    x = torch.randn(T, N, I, requires_grad=train)

    def run():
        if train:
            m.zero_grad()  # as a training loop does: gradients start from None
            out, _ = m(x)
            out.backward(torch.ones_like(out))
        else:
            with torch.inference_mode():
                m(x)
    return run


def _ort(cell, T, N, I, H, train):
    pytest.importorskip("onnxruntime")
    from pylstm.onnx import layer_model as onnx_model
    from pylstm.onnx import ort_session

    m = getattr(pylstm, CELLS[cell][0])(I, H, seed=0)
    p = m.state_dict()
    sess = ort_session(onnx_model(cell, p["weight_ih_l0"], p["weight_hh_l0"], p["bias_ih_l0"], p["bias_hh_l0"]),
                       threads=THREADS)
    x = np.random.default_rng(0).standard_normal((T, N, I)).astype(np.float32)

    def run():
        sess.run(None, {"X": x})
    return run


def _ptorch(cell, T, N, I, H, train):
    """torch's own benchmark with pylstm.torch's module in place of torch.nn's (autograd and all)."""
    pytest.importorskip("torch")
    import pylstm.torch

    return _torch(cell, T, N, I, H, train, modules=pylstm.torch)


def _pylstm64(cell, T, N, I, H, train):
    return _pylstm(cell, T, N, I, H, train, np.float64)


IMPLS = {"pylstm": _pylstm, "pylstm64": _pylstm64, "numpy": _numpy, "torch": _torch, "ptorch": _ptorch, "ort": _ort}
# ONNX Runtime only does inference.
RUNS = [(impl, mode) for mode in ("infer", "train") for impl in IMPLS if not (impl == "ort" and mode == "train")]


def test_sgemm(benchmark):
    """The machine's rate in this run (table.py's "% of sgemm"): a 2048³ float32 product through the OpenBLAS pylstm
    links, on as many threads as the cases use."""
    pylstm.set_num_threads(THREADS)
    run, restore = sgemm_call(2048, THREADS)
    benchmark.group = "sgemm"
    benchmark.extra_info.update(sgemm=2048, threads=THREADS)
    try:
        if benchmark.enabled:
            time.sleep(SETTLE_S)
        benchmark.pedantic(run, rounds=5, warmup_rounds=1)
    finally:
        restore()


@pytest.mark.parametrize("impl,mode", RUNS, ids=lambda v: v)
@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("cell", list(CELLS))
def test_rnn(benchmark, cell, impl, mode, case):
    T, N, I, H = CASES[case]
    pylstm.set_num_threads(THREADS)
    run = IMPLS[impl](cell, T, N, I, H, mode == "train")
    benchmark.group = f"{cell}-{mode}-{case}"
    benchmark.extra_info.update(cell=cell, impl=impl, mode=mode, case=case, T=T, N=N, I=I, H=H, G=CELLS[cell][1],
                                threads=THREADS, isa=pylstm.config()["isa"], blas=pylstm.config()["blas"])
    if benchmark.enabled:
        time.sleep(SETTLE_S)
    calls = ITERATIONS.get(case, 1) if benchmark.enabled else 1
    benchmark.pedantic(run, rounds=_rounds(impl, case), iterations=calls, warmup_rounds=1)


@pytest.mark.parametrize("lengths", ["full", "mixed"])
@pytest.mark.parametrize("mode", ["infer", "train"])
@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_lengths(benchmark, cell, mode, lengths):
    """Medium case with sequence lengths drawn from 1..T (the longest = T) against the same batch at full length:
    padding should cost nothing, so "mixed" should not be slower."""
    T, N, _, H = CASES["medium"]
    pylstm.set_num_threads(THREADS)
    rng = np.random.default_rng(0)
    lens = rng.integers(1, T + 1, N)
    lens[0] = T
    m = getattr(pylstm, CELLS[cell][0])(H, H, seed=0).train(mode == "train")
    x = rng.standard_normal((T, N, H)).astype(np.float32)
    dout = np.ones((T, N, H), np.float32)
    use = None if lengths == "full" else lens

    def run():
        m(x, lengths=use)
        if mode == "train":
            m.backward(dout)

    benchmark.group = f"lengths-{cell}-{mode}"
    benchmark.extra_info.update(cell=cell, mode=mode, lengths=lengths, mean_length=float(lens.mean()), T=T, N=N, H=H)
    benchmark.pedantic(run, rounds=10, warmup_rounds=1)
