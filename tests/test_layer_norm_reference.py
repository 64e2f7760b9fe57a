"""The layer-norm LSTM's maths in the reference (issue 27; the kernels for it are not built yet): layer_norm's own
backward and the whole lstm_ln_backward against finite differences in float64, and the checks that it is the plain
LSTM's maths around the normalisations."""

import numpy as np
import pytest
from helpers import numerical_gradient

from pylstm import reference as R


def test_layer_norm_normalises_each_row_and_its_backward_is_the_derivative():
    rng = np.random.default_rng(0)
    v, gamma = rng.standard_normal((3, 8)) * 3 + 1, rng.standard_normal(8)
    out, vhat, rstd = R.layer_norm(v, gamma)
    np.testing.assert_allclose(vhat.mean(axis=1), 0, atol=1e-12)
    np.testing.assert_allclose((vhat ** 2).mean(axis=1), 1 - R.LN_EPS * rstd[:, 0] ** 2, rtol=1e-12)  # var/(var+ε)
    dout = rng.standard_normal((3, 8))
    dv, dg = R.layer_norm_backward(dout, vhat, rstd, gamma)

    def loss():
        return float((R.layer_norm(v, gamma)[0] * dout).sum())

    np.testing.assert_allclose(dv, numerical_gradient(loss, v), rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(dg, numerical_gradient(loss, gamma), rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("reverse", [False, True])
def test_lstm_ln_backward_against_finite_differences(reverse):
    rng = np.random.default_rng(1)
    T, N, I, H = 4, 2, 3, 5
    P = {"W_ih": rng.standard_normal((4 * H, I)) * 0.5, "W_hh": rng.standard_normal((4 * H, H)) * 0.5,
         "b_ih": rng.standard_normal(4 * H) * 0.1, "b_hh": rng.standard_normal(4 * H) * 0.1,
         "ln_ih": 1 + 0.2 * rng.standard_normal(4 * H), "ln_hh": 1 + 0.2 * rng.standard_normal(4 * H),
         "ln_c": 1 + 0.2 * rng.standard_normal(H), "ln_c_bias": 0.1 * rng.standard_normal(H)}
    x, h0, c0 = rng.standard_normal((T, N, I)), rng.standard_normal((N, H)), rng.standard_normal((N, H))
    dy, dh_n, dc_n = rng.standard_normal((T, N, H)), rng.standard_normal((N, H)), rng.standard_normal((N, H))

    def run():
        return R.lstm_ln_forward(x, h0, c0, P["W_ih"], P["W_hh"], P["b_ih"], P["b_hh"], P["ln_ih"], P["ln_hh"],
                                 P["ln_c"], P["ln_c_bias"], reverse=reverse)

    def loss():
        y, h_n, c_n, _ = run()
        return float((y * dy).sum() + (h_n * dh_n).sum() + (c_n * dc_n).sum())

    y, _, _, cache = run()
    dx, dh0, dc0, G = R.lstm_ln_backward(dy, dh_n, dc_n, x, P["W_ih"], P["W_hh"], P["ln_ih"], P["ln_hh"], P["ln_c"],
                                         cache, reverse=reverse)
    analytic = {"x": dx, "h0": dh0, "c0": dc0, "W_ih": G["dW_ih"], "W_hh": G["dW_hh"], "b_ih": G["db"],
                "b_hh": G["db"], "ln_ih": G["dln_ih"], "ln_hh": G["dln_hh"], "ln_c": G["dln_c"],
                "ln_c_bias": G["dln_c_bias"]}
    for name, arr in dict(P, x=x, h0=h0, c0=c0).items():
        np.testing.assert_allclose(analytic[name], numerical_gradient(loss, arr), rtol=1e-6, atol=1e-8,
                                   err_msg=name)


def test_lstm_ln_forward_is_the_lstm_around_its_normalisations():
    # one step from the zero state (LN(0) = 0), γ = 1, β = 0, no bias: the gates read LN(x W_ihᵀ) and h reads
    # tanh(LN(c)), written out by hand here from the plain cell's equations
    rng = np.random.default_rng(2)
    N, I, H = 2, 3, 4
    W_ih, W_hh = rng.standard_normal((4 * H, I)), rng.standard_normal((4 * H, H))
    ones4, ones, zeros = np.ones(4 * H), np.ones(H), np.zeros(H)
    x = rng.standard_normal((1, N, I))
    y, h, c, _ = R.lstm_ln_forward(x, None, None, W_ih, W_hh, None, None, ones4, ones4, ones, zeros)
    a = R.layer_norm(x[0] @ W_ih.T, ones4)[0]  # h0 = 0: LN(0) = 0
    i, g, o = R.sigmoid(a[:, :H]), np.tanh(a[:, 2 * H:3 * H]), R.sigmoid(a[:, 3 * H:])  # (f meets c0 = 0)
    c_want = i * g
    np.testing.assert_allclose(c, c_want, rtol=1e-12)
    np.testing.assert_allclose(h, o * np.tanh(R.layer_norm(c_want, ones)[0]), rtol=1e-12)
