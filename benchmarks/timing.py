"""The benchmarks' one timing helper."""

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
