"""NumPy's OpenBLAS runs its multi-threaded products on pylstm's pool (pylstm.share_threads_with_numpy): the
results stay NumPy's, from any number of Python threads at once, beside pylstm's own calls, after a fork, and with
the sharing turned off again."""

import os
import subprocess
import sys
import threading

import numpy as np
import pytest
from threadpoolctl import threadpool_info, threadpool_limits

import pylstm
from pylstm import _core


def _numpy_openblas():
    """threadpoolctl's record of NumPy's OpenBLAS, or None."""
    for lib in threadpool_info():
        if lib.get("internal_api") == "openblas" and "numpy" in lib.get("filepath", ""):
            return lib
    return None


def _takes_callback(lib):
    parts = [int(p) for p in lib["version"].split(".")[:3] if p.isdigit()]
    return tuple(parts) >= (0, 3, 27)


@pytest.fixture
def shared():
    lib = _numpy_openblas()
    if lib is None or not _takes_callback(lib):
        pytest.skip(f"NumPy's BLAS takes no threading callback here ({lib and lib['version']})")
    if lib["num_threads"] < 2:
        pytest.skip("NumPy's OpenBLAS runs one thread here: it has no parallel work to share")
    pylstm.share_threads_with_numpy(True)
    yield lib
    pylstm.share_threads_with_numpy(True)


def _products(rng):
    """Products large enough for OpenBLAS to split them across threads, in every real and complex type."""
    out = []
    for dtype in (np.float32, np.float64, np.complex64, np.complex128):
        for m, k, n in ((2048, 256, 96), (517, 333, 1023), (1000, 1000, 7)):
            a = rng.standard_normal((m, k)).astype(dtype)
            b = rng.standard_normal((k, n)).astype(dtype)
            if np.issubdtype(dtype, np.complexfloating):
                a = a + 1j * rng.standard_normal((m, k)).astype(dtype)
            out.append((a, b))
    return out


def _serial(products):
    with threadpool_limits(1, user_api="blas"):  # one thread: OpenBLAS calls no callback at all
        return [a @ b for a, b in products]


def test_config_names_numpys_openblas(shared):
    cfg = pylstm.config()
    assert cfg["numpy_blas_threads"] == "pylstm pool"
    assert os.path.realpath(shared["filepath"]) in [os.path.realpath(p) for p in cfg["numpy_blas_on_pool"]]


def test_numpy_products_run_on_the_pool_and_equal_one_threads(shared, rng):
    products = _products(rng)
    expected = _serial(products)
    before = _core._openblas_products_on_pool()
    got = [a @ b for a, b in products]
    assert _core._openblas_products_on_pool() > before  # the pool ran them
    for g, e in zip(got, expected):
        tol = 1e-4 if g.dtype in (np.float32, np.complex64) else 1e-10
        np.testing.assert_allclose(g, e, rtol=tol, atol=tol * np.abs(e).max())


def test_turned_off_numpy_uses_its_own_threads_again(shared, rng):
    a, b = rng.standard_normal((2048, 256)), rng.standard_normal((256, 300))
    assert pylstm.share_threads_with_numpy(False) == []
    assert pylstm.config()["numpy_blas_threads"] == "own"
    before = _core._openblas_products_on_pool()
    np.testing.assert_allclose(a @ b, _serial([(a, b)])[0], rtol=1e-10, atol=1e-10)
    assert _core._openblas_products_on_pool() == before
    assert pylstm.share_threads_with_numpy(True)
    with pytest.raises(TypeError, match="on must be a bool"):
        pylstm.share_threads_with_numpy(1)


def test_numpy_from_many_threads_beside_pylstm_calls(shared, rng):
    """Products from four Python threads at once (each takes its own OpenBLAS thread slots; the pool serves one
    and threads of their own serve the others) while a fifth runs LSTM calls on the pool."""
    products = _products(rng)[:6]
    expected = _serial(products)
    lstm = pylstm.LSTM(32, 64, seed=0).train()
    x = rng.standard_normal((20, 8, 32)).astype(np.float32)
    y_ref, _ = lstm(x)
    g_ref = lstm.backward(np.ones_like(y_ref))[0]
    errors, stop = [], threading.Event()

    def numpy_worker(seed):
        try:
            order = np.random.default_rng(seed).permutation(len(products))
            for _ in range(3):
                for i in order:
                    a, b = products[i]
                    g = a @ b
                    tol = 1e-4 if g.dtype in (np.float32, np.complex64) else 1e-10
                    np.testing.assert_allclose(g, expected[i], rtol=tol, atol=tol * np.abs(expected[i]).max())
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    def lstm_worker():
        try:
            while not stop.is_set():
                y, _ = lstm(x)
                np.testing.assert_array_equal(y, y_ref)
                np.testing.assert_array_equal(lstm.backward(np.ones_like(y))[0], g_ref)
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    workers = [threading.Thread(target=numpy_worker, args=(s,)) for s in range(4)]
    looper = threading.Thread(target=lstm_worker)
    looper.start()
    for w in workers:
        w.start()
    for w in workers:
        w.join(120)
    stop.set()
    looper.join(120)
    assert not any(w.is_alive() for w in workers + [looper]), "a thread hung"
    assert not errors, errors[0]


def test_numpy_on_the_pool_in_a_forked_child(shared):
    code = (
        "import os, numpy as np, pylstm\n"
        "a = np.random.default_rng(0).standard_normal((1024, 512)); b = a.T.copy(); want = a @ b\n"
        "pid = os.fork()\n"
        "if pid == 0:\n"
        "    ok = np.allclose(a @ b, want) and np.allclose(pylstm.LSTM(4, 8, seed=0)(np.ones((3, 2, 4), 'f4'))[0],\n"
        "                                                   pylstm.LSTM(4, 8, seed=0)(np.ones((3, 2, 4), 'f4'))[0])\n"
        "    os._exit(0 if ok else 3)\n"
        "_, status = os.waitpid(pid, 0)\n"
        "raise SystemExit(os.waitstatus_to_exitcode(status))\n"
    )
    r = subprocess.run([sys.executable, "-c", code], cwd="/", timeout=120, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_numpys_idle_workers_stop_at_import(shared):
    """NumPy's OpenBLAS starts its workers when it loads, and they spin for about 0.1 s: importing pylstm stops them
    (its blas_thread_shutdown_, once per process), unless the sharing is opted out of; a product afterwards is still
    NumPy's."""
    code = ("import os, numpy as np\nn0 = len(os.listdir('/proc/self/task'))\nimport pylstm\n"
            "n1 = len(os.listdir('/proc/self/task'))\n"
            "a = np.random.default_rng(0).standard_normal((1024, 512))\n"
            "ok = np.allclose(a @ a.T, np.einsum('ij,kj->ik', a, a))\n"
            "print(n0, n1, pylstm.config()['threads'], ok)")
    runs = {}
    for opt_out in ("", "0"):
        env = {k: v for k, v in os.environ.items() if k != "PYLSTM_SHARE_NUMPY_THREADS"}
        if opt_out:
            env["PYLSTM_SHARE_NUMPY_THREADS"] = opt_out
        r = subprocess.run([sys.executable, "-c", code], cwd="/", env=env, timeout=120, capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        n0, n1, threads, ok = r.stdout.split()
        assert ok == "True"
        runs[opt_out] = (int(n0), int(n1), int(threads))
    n0, n1, threads = runs[""]
    m0, m1, _ = runs["0"]
    workers = shared["num_threads"] - 1
    assert n0 == m0 >= 1 + workers  # NumPy's workers run from its import
    assert n1 == m1 - workers  # sharing: NumPy's workers are gone (the rest, pylstm's own, as when opted out)


def test_opt_out_by_environment():
    code = "import pylstm; c = pylstm.config(); print(c['numpy_blas_threads'], len(c['numpy_blas_on_pool']))"
    env = dict(os.environ, PYLSTM_SHARE_NUMPY_THREADS="0")
    r = subprocess.run([sys.executable, "-c", code], cwd="/", env=env, timeout=120, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["own", "0"]


# ---- torch's OpenMP team runs pylstm's regions (pylstm.share_threads_with_torch) ----

def _run(code, **env):
    r = subprocess.run([sys.executable, "-c", code], cwd="/", env=dict(os.environ, **env), timeout=300,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return r.stdout.split()


_TORCH = "import importlib.util, sys\nif importlib.util.find_spec('torch') is None: print('no-torch'); sys.exit()\n"


def test_importing_pylstm_torch_moves_the_pool_onto_torchs_openmp_team():
    out = _run(_TORCH + "import pylstm\nprint(pylstm.config()['pool'].split()[0])\n"
               "import pylstm.torch\nprint(pylstm.config()['pool'].split()[0])\n")
    if out == ["no-torch"]:
        pytest.skip("torch is not installed")
    assert out == ["own", "OpenMP"]
    out = _run(_TORCH + "import pylstm.torch, pylstm\nprint(pylstm.config()['pool'].split()[0])",
               PYLSTM_SHARE_TORCH_THREADS="0")
    assert out == ["own"]


def test_results_on_torchs_team_equal_the_own_pools_bitwise_and_survive_fork():
    code = _TORCH + (
        "import os, numpy as np, pylstm, pylstm.torch\n"
        "rng = np.random.default_rng(0)\n"
        "def run():\n"
        "    outs = []\n"
        "    for cls in (pylstm.LSTM, pylstm.GRU, pylstm.RNN):\n"
        "        m = cls(24, 48, num_layers=2, bidirectional=True, seed=0).train()\n"
        "        x = np.random.default_rng(1).standard_normal((30, 8, 24)).astype('f4')\n"
        "        y, _ = m(x, lengths=[30, 29, 17, 30, 1, 5, 30, 8])\n"
        "        dx = m.backward(np.ones_like(y))[0]\n"
        "        outs += [y, dx] + [m.grads[k] for k in sorted(m.grads)]\n"
        "    return outs\n"
        "team = pylstm.config()['pool'].split()[0]\n"
        "a = run()\n"
        "pylstm.share_threads_with_torch(False)\n"
        "b = run()\n"
        "pylstm.share_threads_with_torch(True)\n"
        "pid = os.fork()\n"
        "if pid == 0:\n"
        "    c = run()\n"
        "    os._exit(0 if all(np.array_equal(u, v) for u, v in zip(a, c)) else 3)\n"
        "_, status = os.waitpid(pid, 0)\n"
        "print(team, all(np.array_equal(u, v) for u, v in zip(a, b)), os.waitstatus_to_exitcode(status))\n"
    )
    out = _run(code)
    if out == ["no-torch"]:
        pytest.skip("torch is not installed")
    assert out == ["OpenMP", "True", "0"]
