"""Odd but valid memory layouts, IEEE specials, determinism, threads, and failures that must leave a module intact."""

import dataclasses
import threading

import numpy as np
import pytest

import pylstm
from pylstm import _cells


def _layouts(a):
    """The same values as `a` (3-D) in unusual memory layouts."""
    wide = np.zeros(a.shape[:-1] + (2 * a.shape[-1],), a.dtype)
    wide[..., ::2] = a
    rev = np.ascontiguousarray(a[::-1])[::-1]
    ro = a.copy()
    ro.setflags(write=False)
    return {"strided": wide[..., ::2], "negative": rev, "fortran": np.asfortranarray(a), "readonly": ro,
            "list": a.tolist()}


@pytest.mark.parametrize("cls", [pylstm.LSTM, pylstm.GRU, pylstm.RNN])
def test_unusual_layouts_give_identical_results(rng, cls):
    m = cls(4, 5, 2, bidirectional=True, dtype="float64", seed=1)
    x = rng.standard_normal((6, 3, 4))
    h0 = rng.standard_normal((4, 3, 5))
    state = (h0, h0.copy()) if cls is pylstm.LSTM else h0
    want, _ = m(x, state)
    dwant, _ = m.backward(np.ones_like(want))
    for name, xv in _layouts(x).items():
        for sname, hv in _layouts(h0).items():
            st = (hv, hv) if cls is pylstm.LSTM else hv
            got, _ = m(xv, st)
            np.testing.assert_array_equal(got, want, err_msg=f"x {name}, state {sname}")
        dgot, _ = m.backward(_layouts(np.ones_like(want))[name])
        np.testing.assert_array_equal(dgot, dwant, err_msg=name)
    b = np.broadcast_to(x[:1], x.shape)  # zero stride along time
    got, _ = m(b)
    np.testing.assert_array_equal(got, m(np.ascontiguousarray(b))[0])


def test_nan_and_inf_propagate_per_row(rng):
    m = pylstm.LSTM(3, 4, seed=0)
    x = rng.standard_normal((5, 3, 3)).astype("f4")
    x[2, 0, 1] = np.nan
    x[1, 1, 2] = np.inf   # one infinite feature: every gate pre-activation is ±inf, and the gates saturate
    x[3, 2, 0] = -np.inf
    out, (h, c) = m(x)
    assert np.isnan(out[2:, 0]).all() and np.isfinite(out[:2, 0]).all()
    assert np.isfinite(out[:, 1:]).all(), "saturated gates stay finite"
    dx, _ = m.backward(np.ones_like(out))
    assert np.isfinite(dx[:, 1:]).all() and np.isnan(dx[:3, 0]).all()
    x[1, 1, :] = np.inf   # inf - inf in the input product is NaN, as IEEE says, and it propagates forward in time
    out, _ = m(x)
    assert np.isnan(out[1:, 1]).all() and np.isfinite(out[0, 1]).all()


@pytest.mark.parametrize("cls", [pylstm.LSTM, pylstm.GRU, pylstm.RNN])
def test_repeated_runs_are_bitwise_identical(rng, cls):
    m = cls(16, 32, 2, seed=3)
    x = rng.standard_normal((20, 8, 16)).astype("f4")
    results = []
    for _ in range(3):
        m.zero_grad()
        out, _ = m(x)
        dx, _ = m.backward(np.ones_like(out))
        results.append((out, dx, {k: v.copy() for k, v in m.grads.items()}))
    for out, dx, g in results[1:]:
        np.testing.assert_array_equal(out, results[0][0])
        np.testing.assert_array_equal(dx, results[0][1])
        for k in g:
            np.testing.assert_array_equal(g[k], results[0][2][k])


def test_separate_modules_in_threads_match_serial_runs(rng):
    xs = [rng.standard_normal((30, 4, 8)).astype("f4") for _ in range(4)]
    mods = [pylstm.GRU(8, 16, seed=i) for i in range(4)]
    serial = []
    for m, x in zip(mods, xs):
        out, _ = m(x)
        serial.append((out, m.backward(np.ones_like(out))[0]))
    got = [None] * 4

    def work(i):
        for _ in range(20):
            out, _ = mods[i](xs[i])
            got[i] = (out, mods[i].backward(np.ones_like(out))[0])

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for (a, b), (c, d) in zip(serial, got):
        np.testing.assert_array_equal(a, c)
        np.testing.assert_array_equal(b, d)


def test_threaded_stress_matches_serial_runs(rng):
    # Several Python threads, many calls each, every cell type and both passes, sizes large enough that the kernels
    # split their work across pylstm's pool; whichever caller finds the pool busy runs alone. Every result of every
    # call must equal the serial one bitwise.
    kinds = [(pylstm.LSTM, {}), (pylstm.GRU, {}), (pylstm.RNN, {"nonlinearity": "relu"}),
             (pylstm.LSTM, {"bidirectional": True}), (pylstm.GRU, {"num_layers": 2})]
    jobs = []
    for i, (cls, kw) in enumerate(kinds):
        m = cls(32, 96, seed=i, **kw)
        x = rng.standard_normal((40, 8, 32)).astype("f4")
        lengths = rng.integers(1, 41, 8) if i % 2 else None
        jobs.append((m, x, lengths))

    def run(m, x, lengths):
        m.zero_grad()
        out, _ = m(x, lengths=lengths)
        dx, _ = m.backward(np.ones_like(out))
        return out, dx, {k: v.copy() for k, v in m.grads.items()}

    serial = [run(*job) for job in jobs]
    # Each thread gets its own copy of every module, so that the threads really run concurrently.
    copies = [[(type(m)(32, 96, seed=i, **kinds[i][1]), x, lengths) for i, (m, x, lengths) in enumerate(jobs)]
              for _ in range(4)]
    mismatches, done = [], [0] * 4

    def work(t):
        for it in range(15):
            for i, job in enumerate(copies[t]):
                got = run(*job)
                want = serial[i]
                same = np.array_equal(got[0], want[0]) and np.array_equal(got[1], want[1]) and all(
                    np.array_equal(got[2][k], want[2][k]) for k in want[2])
                if not same:
                    mismatches.append((t, it, i))
                done[t] += 1

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert done == [15 * len(jobs)] * 4
    assert not mismatches, mismatches[:10]


def _child_run(queue):
    m = pylstm.LSTM(32, 96, seed=0).eval()
    out, _ = m(np.ones((10, 4, 32), "f4"))
    queue.put(out)


def test_the_pool_works_in_a_forked_child():
    import multiprocessing

    m = pylstm.LSTM(32, 96, seed=0).eval()
    want, _ = m(np.ones((10, 4, 32), "f4"))  # the parent's pool is running when the child is forked
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    p = ctx.Process(target=_child_run, args=(queue,))
    p.start()
    got = queue.get(timeout=60)
    p.join(60)
    assert p.exitcode == 0
    np.testing.assert_array_equal(got, want)


def test_a_shared_module_serialises_its_calls(rng):
    m = pylstm.LSTM(8, 16, seed=0).eval()
    x = rng.standard_normal((30, 4, 8)).astype("f4")
    want, _ = m(x)
    errors = []

    def work():
        for _ in range(30):
            out, _ = m(x)
            if not np.array_equal(out, want):
                errors.append("mismatch")

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors


def test_a_backward_that_fails_midway_adds_no_gradient(rng, monkeypatch):
    m = pylstm.LSTM(3, 4, num_layers=2, seed=0)
    out, _ = m(rng.standard_normal((5, 2, 3)).astype("f4"))
    m.grads["weight_hh_l0"] += 1.0
    before = {k: v.copy() for k, v in m.grads.items()}
    real, calls = _cells.LSTM.backward, []

    def fail_on_second(*a, **k):
        calls.append(1)
        if len(calls) == 2:
            raise MemoryError("simulated")
        return real(*a, **k)

    monkeypatch.setattr(pylstm.LSTM, "_kind", dataclasses.replace(_cells.LSTM, backward=fail_on_second))
    with pytest.raises(MemoryError):
        m.backward(np.ones_like(out))
    assert len(calls) == 2
    for k in before:
        np.testing.assert_array_equal(m.grads[k], before[k])
    with pytest.raises(RuntimeError, match="forward"):  # the cache is clearly gone
        m.backward(np.ones_like(out))


@pytest.mark.parametrize("counts", [(2, 2), (1, 2)], ids=["same-count", "changing-count"])
def test_set_num_threads_while_other_threads_run_layers(rng, counts):
    """A stress test (issue 24, bug 3): one Python thread calls set_num_threads over and over while four others run
    layers (with lengths, forward and backward). Setting the same count leaves every result bitwise equal to the
    serial run, as the README promises; switching between counts changes only the float rounding. The race this
    once had, on the pool's size, shows only under a thread sanitizer; here the results and the absence of a
    crash or hang are checked."""
    before = pylstm.get_num_threads()
    kinds = [(pylstm.LSTM, {}), (pylstm.GRU, {}), (pylstm.RNN, {}), (pylstm.LSTM, {"bidirectional": True})]
    jobs = [(cls(16, 64, seed=i, **kw), rng.standard_normal((30, 6, 16)).astype("f4"), rng.integers(1, 31, 6))
            for i, (cls, kw) in enumerate(kinds)]

    def run(m, x, lengths):
        m.zero_grad()
        out, _ = m(x, lengths=lengths)
        dx, _ = m.backward(np.ones_like(out))
        return [out, dx] + [m.grads[k].copy() for k in sorted(m.grads)]

    pylstm.set_num_threads(counts[-1])
    serial = [run(*job) for job in jobs]
    stop, problems = threading.Event(), []

    def flip():
        k = 0
        while not stop.is_set():
            pylstm.set_num_threads(counts[k % 2])
            k += 1

    def work(i):
        for _ in range(10):
            for a, b in zip(run(*jobs[i]), serial[i]):
                same = np.array_equal(a, b) if counts[0] == counts[1] else np.allclose(a, b, rtol=1e-4, atol=1e-5)
                if not same:
                    problems.append(i)

    flipper = threading.Thread(target=flip)
    workers = [threading.Thread(target=work, args=(i,)) for i in range(len(jobs))]
    try:
        flipper.start()
        for t in workers:
            t.start()
        for t in workers:
            t.join(300)
    finally:
        stop.set()
        flipper.join(60)
        pylstm.set_num_threads(before)
    assert not any(t.is_alive() for t in workers), "a worker hung"
    assert not problems, problems[:10]
