"""pylstm: recurrent layers (LSTM, GRU, RNN) with C++/BLAS kernels behind a NumPy API shaped like torch.nn."""

from __future__ import annotations

# PYLSTM_ISA caps OpenBLAS too, so that a capped run does on this CPU what a CPU of that level would do: OpenBLAS
# reads OPENBLAS_CORETYPE once, when it is loaded. A coretype the user set wins.
_ISA_BLAS_CORE = {"avx2": "Haswell", "sse2": "Prescott"}


def _cpu_runs(level):
    # Force no OpenBLAS core the CPU cannot run: the extension's own check comes later, with the error message.
    try:
        from numpy._core._multiarray_umath import __cpu_features__ as f
    except ImportError:
        try:
            from numpy.core._multiarray_umath import __cpu_features__ as f
        except ImportError:
            return True
    need = {"avx2": ["AVX2", "FMA3"], "sse2": ["SSE3"]}[level]
    return all(f.get(name, False) for name in need)


def _load_blas():
    # The extension links libscipy_openblas.so by soname only (the copy seen at build time lived in a throwaway
    # build environment). Loading the runtime copy from the installed wheel first lets the dynamic loader resolve
    # the extension's dependency to it. (Importing scipy_openblas32 already loads it.)
    import ctypes
    import os

    level = os.environ.get("PYLSTM_ISA", "").strip().lower()
    set_here = []
    core = _ISA_BLAS_CORE.get(level)
    if core is not None and "OPENBLAS_CORETYPE" not in os.environ and _cpu_runs(level):
        os.environ["OPENBLAS_CORETYPE"] = core
        set_here.append("OPENBLAS_CORETYPE")
    # pylstm runs its OpenBLAS single-threaded (its own pool does the parallel work), but the library starts its
    # worker threads when it loads, and they spin for about 2^28 cycles (0.1 s) before they sleep: measured, the
    # first ~20 LSTM calls after import ran 6x slower while they held the second core. 2^4 cycles makes them sleep
    # at once; steady-state timings were unchanged.
    if "OPENBLAS_THREAD_TIMEOUT" not in os.environ:
        os.environ["OPENBLAS_THREAD_TIMEOUT"] = "4"
        set_here.append("OPENBLAS_THREAD_TIMEOUT")
    try:
        import scipy_openblas32

        path = os.path.join(scipy_openblas32.get_lib_dir(), scipy_openblas32.get_library(fullname=True))
        return ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL)
    finally:  # only for this library: not for numpy's own OpenBLAS loaded later, nor for child processes
        for name in set_here:
            del os.environ[name]


_ISA_CAP = __import__("os").environ.get("PYLSTM_ISA") or None  # the extension reads the same variable at import
_blas = _load_blas()

try:
    from . import _core  # noqa: E402
except ImportError as e:
    import importlib.machinery as _machinery
    import os as _os

    if any(_os.path.exists(_os.path.join(_os.path.dirname(__file__), "_core" + suffix))
           for suffix in _machinery.EXTENSION_SUFFIXES):
        raise  # the extension is there and refused to load (an invalid PYLSTM_ISA, say): its message says why
    # most often: the source tree shadows the installed package
    raise ImportError(
        f"pylstm's compiled extension is missing from {_os.path.dirname(__file__)}: this is probably the source "
        "tree, not the installed package. Install with `pip install .` and run from another directory."
    ) from e
from . import nn, optim, reference, tasks  # noqa: E402  (tasks uses nn and optim: alphabetical order suits it)
from .cells import GRUCell, LSTMCell, RNNCell  # noqa: E402
from .layers import GRU, LSTM, RNN  # noqa: E402
from .optim import clip_grad_norm  # noqa: E402
from .quantized import (  # noqa: E402
    QuantizedGRU,
    QuantizedGRUCell,
    QuantizedLSTM,
    QuantizedLSTMCell,
    QuantizedRNN,
    QuantizedRNNCell,
    quantize,
)

__version__ = "0.1.0"


def _available_cpus():
    import os

    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


# OpenBLAS sizes its pool from the machine's CPUs; a process confined to fewer (taskset, containers) should not
# run more threads than it has cores.
_core.set_num_threads(_available_cpus())


def _env_off(name):
    return __import__("os").environ.get(name, "").strip().lower() in ("0", "false", "no", "off")


# NumPy's OpenBLAS runs its multi-threaded products on pylstm's pool (csrc/neighbours.cpp says why); the variable
# PYLSTM_SHARE_NUMPY_THREADS=0, or share_threads_with_numpy(False), leaves NumPy its own threads.
_numpy_blas_on_pool = [] if _env_off("PYLSTM_SHARE_NUMPY_THREADS") else list(_core.share_pool_with_openblas(True))


def share_threads_with_torch(on: bool = True) -> str:
    """Whether pylstm's parallel work runs on the threads of the OpenMP runtime torch loaded (on) or on pylstm's
    own pool. ``import pylstm.torch`` turns it on, and so does ``import pylstm`` when torch is already imported;
    the environment variable ``PYLSTM_SHARE_TORCH_THREADS=0`` keeps it off.

    torch runs its operations on an OpenMP team whose workers spin for milliseconds after each parallel operation
    before they sleep. Beside them, a pool of pylstm's own, whose threads meet once per time step, lost its cores to
    them: a small model's training step through pylstm.torch took 6 times as long. On torch's team, the threads
    that spin are the ones that run pylstm's next step. Returns the runtime's path, or ``""`` when it is off or no
    OpenMP runtime is loaded."""
    if not isinstance(on, bool):
        raise TypeError(f"on must be a bool, got {type(on).__name__}")
    return _core.share_pool_with_openmp(on)


def _share_with_torch_unless_opted_out():
    if not _env_off("PYLSTM_SHARE_TORCH_THREADS"):
        share_threads_with_torch(True)


if "torch" in __import__("sys").modules:
    _share_with_torch_unless_opted_out()


def share_threads_with_numpy(on: bool = True) -> list:
    """Whether the OpenBLAS libraries already loaded besides pylstm's own (NumPy's, SciPy's) run their
    multi-threaded products on pylstm's thread pool (the default since import) or on their own worker threads.

    On their own threads, each NumPy product leaves its workers spinning for about 0.1 s, on the cores pylstm's pool
    needs: an LSTM step right after a NumPy product then ran at half speed on a 2-core machine. On pylstm's pool,
    NumPy keeps its thread count (``threadpoolctl`` and ``OPENBLAS_NUM_THREADS`` still set it) and its results; only
    the threads that run the work change; turning it on the first time (at import, by default) also stops their idle
    workers, which spin for about 0.1 s after they start, as NumPy's do at its import. Returns the paths of the
    libraries that now run on the pool (``[]`` when ``on`` is False, or when none takes a threading callback: OpenBLAS
    before 0.3.27, or NumPy over another BLAS).
    Setting the environment variable ``PYLSTM_SHARE_NUMPY_THREADS=0`` before import turns it off from the start."""
    if not isinstance(on, bool):
        raise TypeError(f"on must be a bool, got {type(on).__name__}")
    global _numpy_blas_on_pool
    _numpy_blas_on_pool = list(_core.share_pool_with_openblas(on))
    return list(_numpy_blas_on_pool)


def get_num_threads() -> int:
    """Threads the compiled kernels use."""
    return _core.get_num_threads()


def set_num_threads(n: int) -> None:
    """Sets the threads the compiled kernels use (an integer >= 1)."""
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError(f"n must be an int, got {type(n).__name__}")
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    _core.set_num_threads(n)


def config() -> dict:
    """What the compiled kernels run on: a dict with

    - ``isa``: the instruction-set level of the kernels in use (``avx512``, ``avx2``, ``sse2``; ``generic`` off x86),
      the best this CPU runs unless the environment variable ``PYLSTM_ISA`` capped it before import;
    - ``isa_available``: the levels this CPU runs, best first;
    - ``isa_lanes``: float32 lanes of the level's vectors;
    - ``isa_cap``: the value of ``PYLSTM_ISA`` at import, or None;
    - ``threads``: threads of pylstm's pool (see :func:`set_num_threads`);
    - ``blas``: OpenBLAS's own description of itself, with the core it dispatched to;
    - ``numpy_blas_threads``: ``"pylstm pool"`` when NumPy's OpenBLAS runs its parallel work on pylstm's pool (see
      :func:`share_threads_with_numpy`), else ``"own"``; ``numpy_blas_on_pool`` lists the libraries that do;
    - ``pool``: ``"own threads"``, or ``"OpenMP team of <path>"`` when the pool's work runs on torch's OpenMP
      threads (see :func:`share_threads_with_torch`);
    - ``int8``: the int8 dot form :func:`quantize` runs at this level (``avx512-vnni``, ``avx512``, ``avx-vnni``,
      ``avx2`` or ``portable``), and ``int8_available`` every form this CPU runs at this level, best first;
    - ``bf16``: the bfloat16 products ``quantize(module, "bfloat16")`` runs at this level (``avx512-bf16``), or
      ``"none"``.
    """
    return {"isa": _core.isa(), "isa_available": list(_core.isa_available()), "isa_lanes": _core.isa_lanes(),
            "isa_cap": _ISA_CAP, "threads": _core.get_num_threads(), "blas": _core.blas_config(),
            "numpy_blas_threads": "pylstm pool" if _numpy_blas_on_pool else "own",
            "numpy_blas_on_pool": list(_numpy_blas_on_pool),
            "pool": f"OpenMP team of {_core.openmp_team()}" if _core.openmp_team() else "own threads",
            "int8": _core.int8_paths()[0], "int8_available": list(_core.int8_paths()),
            "bf16": _core.bf16_path() or "none",
            "version": __version__}


def show_config(file=None) -> None:
    """Prints :func:`config`, one ``key: value`` line each."""
    import sys

    for key, value in config().items():
        if isinstance(value, list):
            value = ", ".join(value)
        print(f"{key}: {value}", file=sys.stdout if file is None else file)


__all__ = ["LSTM", "GRU", "RNN", "LSTMCell", "GRUCell", "RNNCell", "QuantizedLSTM", "QuantizedGRU", "QuantizedRNN",
           "QuantizedLSTMCell", "QuantizedGRUCell", "QuantizedRNNCell", "quantize", "reference", "nn", "optim", "tasks",
           "clip_grad_norm", "get_num_threads", "set_num_threads", "share_threads_with_numpy",
           "share_threads_with_torch", "config", "show_config", "__version__"]
