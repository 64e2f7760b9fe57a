"""LSTM peephole connections (ONNX's P): the reference's backward against finite differences, the kernels (both loop
forms, every ISA level CI runs) against the reference, lengths, the layers and the cell, and the refusals."""

import numpy as np
import pytest
from helpers import TOL, numerical_gradient, rel_err

import pylstm
from pylstm import _core
from pylstm import reference as ref


def case(rng, dt, T, N, I, H, with_state=True, with_bias=True):
    d = dict(x=rng.standard_normal((T, N, I)), h0=rng.standard_normal((N, H)) if with_state else None,
             c0=rng.standard_normal((N, H)) if with_state else None, W_ih=rng.uniform(-0.6, 0.6, (4 * H, I)),
             W_hh=rng.uniform(-0.6, 0.6, (4 * H, H)), b_ih=rng.uniform(-0.6, 0.6, 4 * H) if with_bias else None,
             b_hh=rng.uniform(-0.6, 0.6, 4 * H) if with_bias else None, peep=rng.uniform(-0.8, 0.8, 3 * H))
    return {k: None if v is None else v.astype(dt) for k, v in d.items()}


ARGS = ("x", "h0", "c0", "W_ih", "W_hh", "b_ih", "b_hh")


def run(impl, c, reverse, dy, dh_n, dc_n, batch_sizes=None):
    kw = {} if batch_sizes is None else dict(batch_sizes=batch_sizes)
    y, h_n, c_n, cache = impl.lstm_forward(*[c[k] for k in ARGS], reverse=reverse, training=True, peep=c["peep"], **kw)
    grads = [None if c[k] is None else np.zeros_like(c[k]) for k in ("W_ih", "W_hh", "b_ih", "b_hh")]
    dpeep = np.zeros_like(c["peep"])
    dx, dh0, dc0 = impl.lstm_backward(dy, dh_n, dc_n, c["x"], c["h0"], c["c0"], c["W_ih"], c["W_hh"], y, cache,
                                      *grads, reverse=reverse, peep=c["peep"], dpeep=dpeep, **kw)
    out = dict(y=y, h_n=h_n, c_n=c_n, dx=dx, dh0=dh0, dc0=dc0, dW_ih=grads[0], dW_hh=grads[1], dpeep=dpeep)
    if grads[2] is not None:
        out.update(db_ih=grads[2], db_hh=grads[3])
    return out


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("with_state", [True, False])
def test_reference_backward_matches_finite_differences(rng, reverse, with_state):
    c = case(rng, "float64", 4, 2, 3, 3, with_state=with_state)
    Ry, Rh, Rc = rng.standard_normal((4, 2, 3)), rng.standard_normal((2, 3)), rng.standard_normal((2, 3))

    def loss():
        y, h_n, c_n, _ = ref.lstm_forward(*[c[k] for k in ARGS], reverse=reverse, training=False, peep=c["peep"])
        return np.sum(y * Ry) + np.sum(h_n * Rh) + np.sum(c_n * Rc)

    got = run(ref, c, reverse, Ry, Rh, Rc)
    names = {"x": "dx", "W_ih": "dW_ih", "W_hh": "dW_hh", "b_ih": "db_ih", "b_hh": "db_hh", "peep": "dpeep"}
    if with_state:
        names.update(h0="dh0", c0="dc0")
    for name, gname in names.items():
        num = numerical_gradient(loss, c[name])
        err = np.max(np.abs(num - got[gname])) / max(np.max(np.abs(num)), 1e-12)
        assert err < 1e-7, f"{gname}: {err:.2e}"
    # and the peepholes matter: zero P is another function
    base, _, _, _ = ref.lstm_forward(*[c[k] for k in ARGS], reverse=reverse, training=False)
    with_p, _, _, _ = ref.lstm_forward(*[c[k] for k in ARGS], reverse=reverse, training=False, peep=c["peep"])
    assert np.max(np.abs(base - with_p)) > 1e-2


@pytest.mark.usefixtures("time_loops")
@pytest.mark.parametrize("dt", ["float64", "float32"])
@pytest.mark.parametrize("shape", [(1, 1, 1, 1), (5, 1, 3, 17), (6, 4, 7, 3), (3, 5, 8, 33), (4, 3, 16, 48)],
                         ids=lambda s: "T%d-N%d-I%d-H%d" % s)
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("with_state", [True, False])
def test_kernels_match_reference(rng, dt, shape, reverse, with_state):
    T, N, I, H = shape
    c = case(rng, dt, T, N, I, H, with_state=with_state)
    dy, dh_n, dc_n = (rng.standard_normal(s).astype(dt) for s in ((T, N, H), (N, H), (N, H)))
    got, want = run(_core, c, reverse, dy, dh_n, dc_n), run(ref, c, reverse, dy, dh_n, dc_n)
    for k in want:
        err = rel_err(got[k], want[k])
        assert err <= TOL[dt] * (5 if dt == "float32" else 1), f"{k}: {err:.2e}"
    inference = _core.lstm_forward(*[c[k] for k in ARGS], reverse=reverse, training=False, peep=c["peep"])
    assert rel_err(inference[0], want["y"]) <= TOL[dt] and rel_err(inference[2], want["c_n"]) <= TOL[dt]


@pytest.mark.parametrize("dt", ["float64", "float32"])
@pytest.mark.parametrize("reverse", [False, True])
def test_lengths_match_each_sequence_alone(rng, dt, reverse):
    """The kernels' batch_sizes form: each row equals its own sequence run alone, to its own length."""
    T, N, I, H = 6, 4, 5, 9
    c = case(rng, dt, T, N, I, H)
    lens = np.array([6, 5, 3, 1])
    bs = (lens[None, :] > np.arange(T)[:, None]).sum(axis=1).astype(np.int64)
    c["x"][np.arange(T)[:, None] >= lens[None, :]] = 0
    dy = rng.standard_normal((T, N, H)).astype(dt)
    dy[np.arange(T)[:, None] >= lens[None, :]] = 0
    dh_n, dc_n = rng.standard_normal((N, H)).astype(dt), rng.standard_normal((N, H)).astype(dt)
    got = run(_core, c, reverse, dy, dh_n, dc_n, batch_sizes=bs)
    dpeep = np.zeros_like(c["peep"])
    for n, L in enumerate(lens):
        one = {k: None if v is None else v for k, v in c.items()}
        one["x"], one["h0"], one["c0"] = c["x"][:L, n:n + 1], c["h0"][n:n + 1], c["c0"][n:n + 1]
        want = run(ref, one, reverse, dy[:L, n:n + 1], dh_n[n:n + 1], dc_n[n:n + 1])
        for k, g in (("y", got["y"][:L, n:n + 1]), ("h_n", got["h_n"][n:n + 1]), ("c_n", got["c_n"][n:n + 1]),
                     ("dx", got["dx"][:L, n:n + 1]), ("dh0", got["dh0"][n:n + 1]), ("dc0", got["dc0"][n:n + 1])):
            assert rel_err(g, want[k]) <= TOL[dt] * 5, (n, k)
        dpeep += want["dpeep"]
    assert rel_err(got["dpeep"], dpeep) <= TOL[dt] * 5
    assert not got["y"][np.arange(T)[:, None] >= lens[None, :]].any()  # zero past each end


def test_layer_gradients_match_finite_differences(rng):
    m = pylstm.LSTM(3, 4, num_layers=2, bidirectional=True, peepholes=True, dtype="float64", seed=1)
    assert "weight_ch_l1_reverse" in m.state_dict() and m.state_dict()["weight_ch_l0"].shape == (12,)
    assert "peepholes=True" in repr(m)
    x = rng.standard_normal((5, 2, 3))
    lens = np.array([5, 3])
    R = rng.standard_normal((5, 2, 8))
    R[np.arange(5)[:, None] >= lens[None, :]] = 0

    def loss():
        m.eval()
        out, _ = m(x, lengths=lens)
        return float(np.sum(out * R))

    m.train()
    out, _ = m(x, lengths=lens)
    m.zero_grad()
    dx, _ = m.backward(R)
    for name in ("weight_ch_l0", "weight_ch_l1_reverse", "weight_hh_l0_reverse"):
        with m.edit_parameters() as p:
            value = p[name]
            num = numerical_gradient(loss, value)
        assert rel_err(m.grads[name], num) < 1e-6, name
    assert rel_err(dx, numerical_gradient(loss, x)) < 1e-6


@pytest.mark.parametrize("dt", ["float64", "float32"])
def test_cell_matches_the_layer(rng, dt):
    cell = pylstm.LSTMCell(3, 5, peepholes=True, dtype=dt, seed=2)
    layer = pylstm.LSTM(3, 5, peepholes=True, dtype=dt)
    layer.load_state_dict({k + "_l0": v for k, v in cell.state_dict().items()})
    x, h, c = (rng.standard_normal(s).astype(dt) for s in ((2, 3), (2, 5), (2, 5)))
    h1, c1 = cell(x, (h, c))
    out, (h_n, c_n) = layer(x[None], (h[None], c[None]))
    assert rel_err(h1, h_n[0]) <= TOL[dt] and rel_err(c1, c_n[0]) <= TOL[dt]
    dx, _ = cell.backward(np.ones_like(h1))
    layer.backward(np.ones_like(out))
    assert rel_err(cell.grads["weight_ch"], layer.grads["weight_ch_l0"]) <= TOL[dt] * 5


def test_streaming_with_peepholes_matches_the_layer(rng):
    m = pylstm.LSTM(4, 6, num_layers=2, peepholes=True, seed=3).eval()
    x = rng.standard_normal((5, 2, 4)).astype(np.float32)
    want, _ = m(x)
    s = m.stream()
    got = np.stack([s.step(x_t) for x_t in x])
    assert rel_err(got, want) <= 1e-5


def test_refusals():
    with pytest.raises(ValueError, match="peepholes and proj_size"):
        pylstm.LSTM(3, 4, proj_size=2, peepholes=True)
    with pytest.raises(TypeError, match="peepholes must be a bool"):
        pylstm.LSTM(3, 4, peepholes="yes")
    with pytest.raises(ValueError, match="no peephole"):
        pylstm.LSTM(3, 4, peepholes=True)._torch_config()
    x, W_ih = np.zeros((2, 1, 3), np.float32), np.zeros((16, 3), np.float32)
    with pytest.raises(ValueError, match=r"peep \(peepholes\) and W_hr"):  # H = 4 projected to 2
        _core.lstm_forward(x, None, None, W_ih, np.zeros((16, 2), np.float32), None, None,
                           W_hr=np.zeros((2, 4), np.float32), peep=np.zeros(12, np.float32))
    with pytest.raises(ValueError, match="peep must have shape"):
        _core.lstm_forward(x, None, None, W_ih, np.zeros((16, 4), np.float32), None, None, peep=np.zeros(5, np.float32))
