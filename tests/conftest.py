"""Shared test setup: make sure the suite exercises the installed pylstm, not the source tree beside it."""

import importlib.util
import os
import pathlib

import numpy as np
import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]


def _check_installed():
    spec = importlib.util.find_spec("pylstm")
    if spec is None:
        raise pytest.UsageError("pylstm is not installed: run `pip install \".[test]\"` first")
    origin = pathlib.Path(spec.origin).resolve()
    if REPO / "pylstm" in origin.parents and not os.environ.get("PYLSTM_ALLOW_SOURCE_TREE"):
        raise pytest.UsageError(
            f"tests would import pylstm from the source tree ({origin}), which has no compiled extension; "
            "run `pytest` (not `python -m pytest`) from the repository after `pip install .`, "
            "or set PYLSTM_ALLOW_SOURCE_TREE=1 for an editable install")


_check_installed()


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.fixture(autouse=True)
def _seed_torch():
    """torch initialises its modules from its own generator: seed it, so that every run compares the same weights
    (a relu unit whose pre-activation sits at ~1e-7 from 0 may flip sides between two float32 computations)."""
    try:
        import torch
    except ImportError:
        return
    torch.manual_seed(0)


@pytest.fixture(params=["fused", "fused-rows", "blas-per-step"])
def time_loops(request):
    """Runs a test under every form of the time loops: the fused loops with the plain LSTM's batch split by units
    ("fused") and by rows ("fused-rows"; by default a rule picks one per call), and the BLAS-per-step reference shape
    they replaced, which stays as the documented fallback and must stay correct."""
    from pylstm import _core

    _core._set_fused_loops(request.param != "blas-per-step")
    _core._set_row_split(1 if request.param == "fused-rows" else 0)
    try:
        yield request.param
    finally:
        _core._set_fused_loops(True)
        _core._set_row_split(-1)
