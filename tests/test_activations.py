"""The kernels' vectorised float32 sigmoid and tanh against float64 NumPy, and their exact edge behaviour."""

import numpy as np
import pytest

from pylstm import _core


def test_float32_sigmoid_within_1e6_relative():
    x = np.linspace(-87, 30, 2_000_001, dtype=np.float32)
    exact = 1 / (1 + np.exp(-x.astype(np.float64)))
    got = _core.sigmoid(x).astype(np.float64)
    assert np.max(np.abs(got - exact) / exact) < 1e-6


def test_float32_tanh_within_1e6_relative():
    x = np.concatenate([np.linspace(-25, 25, 2_000_000), np.geomspace(1e-30, 1, 10_001)]).astype(np.float32)
    assert np.all(x != 0)
    exact = np.tanh(x.astype(np.float64))
    got = _core.tanh(x).astype(np.float64)
    assert np.max(np.abs(got - exact) / np.abs(exact)) < 1e-6


@pytest.mark.parametrize("dt", ["float32", "float64"])
def test_edges_are_exact(dt):
    x = np.array([np.inf, -np.inf, np.nan, 0.0, -0.0, -1000.0, 1000.0], dt)
    s, t = _core.sigmoid(x), _core.tanh(x)
    with np.errstate(over="ignore"):
        assert s[0] == 1 and s[1] == 0 and np.isnan(s[2]) and s[3] == 0.5 and s[5] == 0 and s[6] == 1
    assert t[0] == 1 and t[1] == -1 and np.isnan(t[2]) and t[3] == 0 and t[5] == -1 and t[6] == 1
    assert not np.signbit(t[3]) and np.signbit(t[4])


def test_float32_sigmoid_tail_below_minus_88_is_subnormal_or_zero():
    x = np.linspace(-200, -87, 1001, dtype=np.float32)
    s = _core.sigmoid(x)
    assert np.all(s >= 0) and np.all(s < 2e-38)


def test_float64_matches_numpy():
    x = np.linspace(-50, 50, 100_001)
    np.testing.assert_allclose(_core.sigmoid(x), 1 / (1 + np.exp(-x)), rtol=1e-15)
    np.testing.assert_allclose(_core.tanh(x), np.tanh(x), rtol=1e-15)
