"""LSTM with projection (LSTMP, proj_size): the reference against finite differences, the kernels against the
reference, and the layer against torch.nn.LSTM(proj_size=...) when torch is installed."""

import contextlib

import numpy as np
import pytest
from helpers import TOL, fused_loops, numerical_gradient, rel_err

import pylstm
from pylstm import _core
from pylstm import reference as ref

pytestmark = pytest.mark.usefixtures("time_loops")  # every test under both loop forms


def _case(rng, dt, T, N, I, H, P):
    d = dict(x=rng.standard_normal((T, N, I)), h0=rng.standard_normal((N, P)), c0=rng.standard_normal((N, H)),
             W_ih=rng.uniform(-0.6, 0.6, (4 * H, I)), W_hh=rng.uniform(-0.6, 0.6, (4 * H, P)),
             b_ih=rng.uniform(-0.6, 0.6, 4 * H), b_hh=rng.uniform(-0.6, 0.6, 4 * H),
             W_hr=rng.uniform(-0.6, 0.6, (P, H)))
    return {k: v.astype(dt) for k, v in d.items()}


def _run(impl, c, reverse, dy, dh_n, dc_n):
    y, h_n, c_n, cache = impl.lstm_forward(c["x"], c["h0"], c["c0"], c["W_ih"], c["W_hh"], c["b_ih"], c["b_hh"],
                                           W_hr=c["W_hr"], reverse=reverse)
    g = {k: np.zeros_like(c[k]) for k in ("W_ih", "W_hh", "b_ih", "b_hh", "W_hr")}
    dx, dh0, dc0 = impl.lstm_backward(dy, dh_n, dc_n, c["x"], c["h0"], c["c0"], c["W_ih"], c["W_hh"], y, cache,
                                      g["W_ih"], g["W_hh"], g["b_ih"], g["b_hh"], W_hr=c["W_hr"], dW_hr=g["W_hr"],
                                      reverse=reverse)
    return dict(y=y, h_n=h_n, c_n=c_n, dx=dx, dh0=dh0, dc0=dc0, **{"d" + k: v for k, v in g.items()})


@pytest.mark.parametrize("reverse", [False, True])
def test_reference_backward_matches_finite_differences(rng, reverse):
    T, N, I, H, P = 4, 2, 3, 4, 2
    c = _case(rng, "float64", T, N, I, H, P)
    Ry, Rh, Rc = rng.standard_normal((T, N, P)), rng.standard_normal((N, P)), rng.standard_normal((N, H))

    def loss():
        y, h_n, c_n, _ = ref.lstm_forward(*(c[k] for k in ("x", "h0", "c0", "W_ih", "W_hh", "b_ih", "b_hh")),
                                          W_hr=c["W_hr"], reverse=reverse, training=False)
        return np.sum(y * Ry) + np.sum(h_n * Rh) + np.sum(c_n * Rc)

    got = _run(ref, c, reverse, Ry, Rh, Rc)
    for name, value in c.items():
        num = numerical_gradient(loss, value)
        g = got["d" + name] if "d" + name in got else got[{"x": "dx", "h0": "dh0", "c0": "dc0"}[name]]
        assert np.max(np.abs(num - g)) / np.max(np.abs(num)) < 1e-7, name


@pytest.mark.parametrize("dt", ["float64", "float32"])
@pytest.mark.parametrize("shape", [(1, 1, 1, 2, 1), (5, 3, 4, 17, 5), (3, 2, 6, 16, 15)], ids=str)
@pytest.mark.parametrize("reverse", [False, True])
def test_kernels_match_reference(rng, dt, shape, reverse):
    T, N, I, H, P = shape
    c = _case(rng, dt, T, N, I, H, P)
    args = [rng.standard_normal(s).astype(dt) for s in [(T, N, P), (N, P), (N, H)]]
    got, want = _run(_core, c, reverse, *args), _run(ref, c, reverse, *args)
    for k in want:
        assert got[k].shape == want[k].shape, k
        assert rel_err(got[k], want[k]) <= TOL[dt], f"{k}: {rel_err(got[k], want[k]):.2e}"


def test_projection_arguments_are_checked():
    x = np.zeros((2, 1, 3))
    W_ih, W_hh = np.zeros((16, 3)), np.zeros((16, 2))
    with pytest.raises(ValueError, match="without a projection"):
        _core.lstm_forward(x, None, None, W_ih, W_hh, None, None)
    with pytest.raises(ValueError, match="^W_hr must have shape"):
        _core.lstm_forward(x, None, None, W_ih, W_hh, None, None, W_hr=np.zeros((2, 3)))
    with pytest.raises(ValueError, match="^proj_size must be smaller"):
        pylstm.LSTM(3, 4, proj_size=4)


def test_layer_parameters_and_shapes():
    m = pylstm.LSTM(3, 6, 2, bidirectional=True, proj_size=2)
    sd = m.state_dict()
    assert list(sd)[:5] == ["weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0", "weight_hr_l0"]
    assert sd["weight_hh_l0"].shape == (24, 2) and sd["weight_hr_l0"].shape == (2, 6)
    assert sd["weight_ih_l1"].shape == (24, 4)
    out, (h, c) = m(np.zeros((5, 4, 3), "f4"))
    assert out.shape == (5, 4, 4) and h.shape == (4, 4, 2) and c.shape == (4, 4, 6)


@pytest.mark.parametrize("bi", [False, True])
@pytest.mark.parametrize("lengths", [None, [5, 2, 4]])
def test_layer_matches_torch(rng, bi, lengths):
    torch = pytest.importorskip("torch")
    T, N, I, H, P, L = 5, 3, 4, 7, 3, 2
    tm = torch.nn.LSTM(I, H, L, bidirectional=bi, proj_size=P, dtype=torch.float64)
    m = pylstm.LSTM.from_torch(tm)
    assert m.proj_size == P and list(m.state_dict()) == list(tm.state_dict())
    D = 2 if bi else 1
    x = rng.standard_normal((T, N, I))
    h0, c0 = rng.standard_normal((L * D, N, P)), rng.standard_normal((L * D, N, H))
    dout = rng.standard_normal((T, N, D * P))
    dh, dc = rng.standard_normal((L * D, N, P)), rng.standard_normal((L * D, N, H))
    tx, th0, tc0 = (torch.tensor(a, requires_grad=True) for a in (x, h0, c0))
    inp = tx if lengths is None else torch.nn.utils.rnn.pack_padded_sequence(tx, torch.tensor(lengths),
                                                                              enforce_sorted=False)
    tout, (th, tc) = tm(inp, (th0, tc0))
    if lengths is not None:
        tout, _ = torch.nn.utils.rnn.pad_packed_sequence(tout, total_length=T)
    ((tout * torch.tensor(dout)).sum() + (th * torch.tensor(dh)).sum() + (tc * torch.tensor(dc)).sum()).backward()
    with fused_loops() if lengths is not None else contextlib.nullcontext():  # lengths: fused loops only
        out, (h, c) = m(x, (h0, c0), lengths=lengths)
        dx, (dh0, dc0) = m.backward(dout, (dh, dc))
    for name, a, b in [("out", out, tout), ("h", h, th), ("c", c, tc), ("dx", dx, tx.grad), ("dh0", dh0, th0.grad),
                       ("dc0", dc0, tc0.grad)] + [(k, m.grads[k], p.grad) for k, p in tm.named_parameters()]:
        assert rel_err(a, b.detach().numpy()) < 1e-10, name
