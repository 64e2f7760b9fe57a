"""The benchmarks' timing helpers: medians of calls, and the machine's sgemm rate."""

from __future__ import annotations

import time

import numpy as np


def median_s(fn, rounds, warmup=1):
    """Median seconds of `rounds` calls of fn, after `warmup` untimed calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def sgemm_call(n, threads):
    """A call of one n³ float32 product (row-major, no transposes) through the very OpenBLAS pylstm links
    (scipy-openblas32, with ctypes), on `threads` threads, and the function that puts OpenBLAS back.

    pylstm keeps its OpenBLAS single-threaded (its own pool does the threading); the machine's rate is OpenBLAS's own
    multithreaded sgemm with as many threads as pylstm uses."""
    import ctypes

    import pylstm

    a = np.random.default_rng(0).standard_normal((n, n)).astype(np.float32)
    b, c = a.copy(), np.empty_like(a)
    f = pylstm._blas.scipy_cblas_sgemm
    p = ctypes.POINTER(ctypes.c_float)
    args = (101, 111, 111, n, n, n, ctypes.c_float(1), a.ctypes.data_as(p), n, b.ctypes.data_as(p), n,
            ctypes.c_float(0), c.ctypes.data_as(p), n)
    pylstm._blas.scipy_openblas_set_num_threads(threads)
    f(*args)
    np.testing.assert_allclose(c[:4, :4], (a @ b)[:4, :4], rtol=1e-3)
    return (lambda: f(*args)), (lambda: pylstm._blas.scipy_openblas_set_num_threads(1))


def sgemm_gflops(n=2048, threads=2, rounds=5):
    """GFLOP/s of the median of `rounds` n³ products of sgemm_call."""
    run, restore = sgemm_call(n, threads)
    try:
        return 2 * n**3 / median_s(run, rounds) / 1e9
    finally:
        restore()
