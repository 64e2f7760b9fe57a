"""The NumPy reference's backward checked against central finite differences of its forward, in float64."""

import numpy as np
import pytest
from helpers import numerical_gradient

from pylstm import reference as ref


def _loss_and_grads(rng, T, N, I, H, reverse, with_state, with_bias):
    x = rng.standard_normal((T, N, I))
    h0 = rng.standard_normal((N, H)) if with_state else None
    c0 = rng.standard_normal((N, H)) if with_state else None
    W_ih = rng.standard_normal((4 * H, I)) * 0.5
    W_hh = rng.standard_normal((4 * H, H)) * 0.5
    b_ih = rng.standard_normal(4 * H) * 0.5 if with_bias else None
    b_hh = rng.standard_normal(4 * H) * 0.5 if with_bias else None
    # Random weights for every output, so the loss reaches y, h_n and c_n.
    Ry, Rh, Rc = rng.standard_normal((T, N, H)), rng.standard_normal((N, H)), rng.standard_normal((N, H))
    inputs = dict(x=x, h0=h0, c0=c0, W_ih=W_ih, W_hh=W_hh, b_ih=b_ih, b_hh=b_hh)

    def loss(p):
        y, h_n, c_n, _ = ref.lstm_forward(p["x"], p["h0"], p["c0"], p["W_ih"], p["W_hh"], p["b_ih"], p["b_hh"],
                                          reverse=reverse, training=False)
        return np.sum(y * Ry) + np.sum(h_n * Rh) + np.sum(c_n * Rc)

    y, _, _, cache = ref.lstm_forward(x, h0, c0, W_ih, W_hh, b_ih, b_hh, reverse=reverse)
    g = {k: np.zeros_like(v) for k, v in dict(W_ih=W_ih, W_hh=W_hh).items()}
    g["b_ih"] = np.zeros(4 * H) if with_bias else None
    g["b_hh"] = np.zeros(4 * H) if with_bias else None
    dx, dh0, dc0 = ref.lstm_backward(Ry, Rh, Rc, x, h0, c0, W_ih, W_hh, y, cache, g["W_ih"], g["W_hh"], g["b_ih"],
                                     g["b_hh"], reverse=reverse)
    g.update(x=dx, h0=dh0, c0=dc0)
    return inputs, loss, g


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("with_state,with_bias", [(True, True), (False, True), (True, False)])
def test_backward_matches_finite_differences(rng, reverse, with_state, with_bias):
    inputs, loss, grads = _loss_and_grads(rng, T=4, N=2, I=3, H=3, reverse=reverse, with_state=with_state,
                                          with_bias=with_bias)
    eps = 1e-6
    checked = 0
    for name, value in inputs.items():
        if value is None:
            continue
        num = numerical_gradient(lambda: loss(inputs), value, eps)
        err = np.max(np.abs(num - grads[name])) / max(np.max(np.abs(num)), 1e-12)
        assert err < 1e-7, f"d{name}: relative error {err:.2e}"
        checked += 1
    assert checked == 7 - (0 if with_state else 2) - (0 if with_bias else 2)


def test_gradients_for_an_absent_state_are_those_at_a_zero_state(rng):
    # With h0 = c0 = None the backward still returns dh0, dc0: they must be the finite differences at zero.
    inputs, loss, grads = _loss_and_grads(rng, T=3, N=2, I=2, H=2, reverse=True, with_state=False, with_bias=True)
    eps = 1e-6
    for name in ("h0", "c0"):
        inputs["h0"], inputs["c0"] = np.zeros((2, 2)), np.zeros((2, 2))
        value = inputs[name]
        num = numerical_gradient(lambda: loss(inputs), value, eps)
        assert np.max(np.abs(num - grads[name])) / np.max(np.abs(num)) < 1e-7, name


def test_backward_accumulates_into_weight_gradients(rng):
    T, N, I, H = 3, 2, 2, 2
    args = [rng.standard_normal(s) for s in [(T, N, I), (N, H), (N, H), (4 * H, I), (4 * H, H), (4 * H,), (4 * H,)]]
    dy = rng.standard_normal((T, N, H))
    grads = []
    for start in (0.0, 1.5):
        y, _, _, cache = ref.lstm_forward(*args)
        g = [np.full_like(a, start) for a in args[3:]]
        ref.lstm_backward(dy, None, None, *args[:5], y, cache, *g)
        grads.append(g)
    for g0, g1 in zip(*grads):
        np.testing.assert_allclose(g1, g0 + 1.5, rtol=1e-12)
