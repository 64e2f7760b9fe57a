"""pylstm: recurrent layers (LSTM, GRU, RNN) with C++/BLAS kernels behind a NumPy API shaped like torch.nn."""

from __future__ import annotations


def _load_blas():
    # The extension links libscipy_openblas.so by soname only (the copy seen at build time lived in a throwaway
    # build environment). Loading the runtime copy from the installed wheel first lets the dynamic loader resolve
    # the extension's dependency to it.
    import ctypes
    import os

    import scipy_openblas32

    path = os.path.join(scipy_openblas32.get_lib_dir(), scipy_openblas32.get_library(fullname=True))
    return ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL)


_blas = _load_blas()

try:
    from . import _core  # noqa: E402
except ImportError as e:  # most often: the source tree shadows the installed package
    import os as _os

    raise ImportError(
        f"pylstm's compiled extension is missing from {_os.path.dirname(__file__)}: this is probably the source "
        "tree, not the installed package. Install with `pip install .` and run from another directory."
    ) from e
from . import reference  # noqa: E402
from . import nn, optim  # noqa: E402
from . import tasks  # noqa: E402  (after nn and optim, which it uses)
from .cells import GRUCell, LSTMCell, RNNCell  # noqa: E402
from .layers import GRU, LSTM, RNN  # noqa: E402
from .optim import clip_grad_norm  # noqa: E402

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


__all__ = ["LSTM", "GRU", "RNN", "LSTMCell", "GRUCell", "RNNCell", "reference", "nn", "optim", "tasks",
           "clip_grad_norm", "get_num_threads", "set_num_threads", "__version__"]
