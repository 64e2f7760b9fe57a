"""LSTMCell, GRUCell, RNNCell: a hand-written loop of cell steps, and its backward by the tape, against the layers
(which are themselves checked against the reference and torch), and against torch's cells when torch is installed."""

import numpy as np
import pytest
from helpers import TOL, rel_err

import pylstm

KINDS = {  # name: (cell, layer, keyword arguments, states)
    "lstm": (pylstm.LSTMCell, pylstm.LSTM, {}, 2),
    "gru": (pylstm.GRUCell, pylstm.GRU, {}, 1),
    "gru-original": (pylstm.GRUCell, pylstm.GRU, {"linear_before_reset": False}, 1),
    "rnn-relu": (pylstm.RNNCell, pylstm.RNN, {"nonlinearity": "relu"}, 1),
    "rnn-sigmoid": (pylstm.RNNCell, pylstm.RNN, {"nonlinearity": "sigmoid"}, 1),
}


@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize("dt", ["float64", "float32"])
@pytest.mark.parametrize("unbatched", [False, True])
def test_cell_loop_and_tape_match_the_layer(rng, kind, dt, unbatched):
    cell_cls, layer_cls, kw, S = KINDS[kind]
    T, N, I, H = 5, (1 if unbatched else 3), 4, 7
    layer = layer_cls(I, H, dtype=dt, seed=3, **kw)
    cell = cell_cls(I, H, dtype=dt, **kw)
    cell.load_state_dict({k[:-3]: v for k, v in layer.state_dict().items()})  # weight_ih_l0 -> weight_ih
    x = rng.standard_normal((T, N, I)).astype(dt)
    s0 = [rng.standard_normal((1, N, H)).astype(dt) for _ in range(S)]
    dout = rng.standard_normal((T, N, H)).astype(dt)

    def sq(a):  # layer (T, N, .) / (1, N, H) arrays in the cell's layout
        return a[:, 0] if unbatched else a

    if S == 2:
        out, fin = layer(sq(x), tuple(sq(s) for s in s0))
        dx, ds0 = layer.backward(sq(dout))
    else:
        out, h_n = layer(sq(x), sq(s0[0]))
        dx, dh0 = layer.backward(sq(dout))
        fin, ds0 = [h_n], [dh0]

    state = [sq(s)[0] for s in s0]
    hs = []
    for t in range(T):
        state = list(cell(sq(x)[t], tuple(state))) if S == 2 else [cell(sq(x)[t], state[0])]
        hs.append(state[0])
    for t in range(T):  # the layer's results are already in the caller's layout
        assert rel_err(hs[t], out[t]) <= TOL[dt]
    for a, b in zip(state, fin):
        assert rel_err(a, b[0]) <= TOL[dt]

    d = [np.zeros_like(s) for s in state]
    dxs = []
    for t in reversed(range(T)):
        d[0] = d[0] + sq(dout)[t]
        if S == 2:
            dxt, (dh, dc) = cell.backward(d[0], d[1])
            d = [dh, dc]
        else:
            dxt, dh = cell.backward(d[0])
            d = [dh]
        dxs.append(dxt)
    assert rel_err(np.stack(dxs[::-1]), dx) <= TOL[dt]
    for a, b in zip(d, ds0):
        assert rel_err(a, b[0]) <= TOL[dt]
    for k, g in layer.grads.items():
        assert rel_err(cell.grads[k[:-3]], g) <= TOL[dt], k
    with pytest.raises(RuntimeError, match="forward"):
        cell.backward(d[0])


def test_cell_parameter_names_and_errors():
    c = pylstm.LSTMCell(3, 4)
    assert list(c.state_dict()) == ["weight_ih", "weight_hh", "bias_ih", "bias_hh"]
    assert c.state_dict()["weight_ih"].shape == (16, 3)
    assert pylstm.GRUCell(3, 4, bias=False).state_dict()["weight_hh"].shape == (12, 4)
    with pytest.raises(ValueError, match="^x must have 3 features"):
        c(np.zeros((2, 4), "f4"))
    with pytest.raises(ValueError, match="^h must have shape"):
        c(np.zeros((2, 3), "f4"), (np.zeros((3, 4), "f4"), np.zeros((2, 4), "f4")))
    with pytest.raises(TypeError, match="^state must be a pair"):
        c(np.zeros((2, 3), "f4"), np.zeros((2, 4), "f4"))
    with pytest.raises(ValueError, match="^nonlinearity"):
        pylstm.RNNCell(3, 4, nonlinearity="gelu")
    cell = pylstm.RNNCell(3, 4).eval()
    cell(np.zeros(3, "f4"))
    with pytest.raises(RuntimeError, match="forward"):
        cell.backward(np.zeros(4, "f4"))


@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn-relu"])
def test_cells_match_torch_cells(rng, kind):
    torch = pytest.importorskip("torch")
    cell_cls, _, kw, S = KINDS[kind]
    tcls = {"lstm": torch.nn.LSTMCell, "gru": torch.nn.GRUCell, "rnn-relu": torch.nn.RNNCell}[kind]
    tc = tcls(4, 6, dtype=torch.float64, **kw)
    c = cell_cls(4, 6, dtype="float64", **kw)
    c.load_state_dict(tc.state_dict())
    x = rng.standard_normal((3, 4))
    s = [rng.standard_normal((3, 6)) for _ in range(S)]
    tx, ts = torch.tensor(x, requires_grad=True), [torch.tensor(a, requires_grad=True) for a in s]
    tout = tc(tx, tuple(ts) if S == 2 else ts[0])
    tout = list(tout) if S == 2 else [tout]
    douts = [rng.standard_normal((3, 6)) for _ in range(S)]
    sum((o * torch.tensor(d)).sum() for o, d in zip(tout, douts)).backward()
    out = c(x, tuple(s) if S == 2 else s[0])
    out = list(out) if S == 2 else [out]
    if S == 2:
        dx, ds = c.backward(*douts)
    else:
        dx, ds = c.backward(douts[0])
        ds = [ds]
    for a, b in zip(out, tout):
        assert rel_err(a, b.detach().numpy()) < 1e-12
    assert rel_err(dx, tx.grad.numpy()) < 1e-12
    for a, b in zip(ds, ts):
        assert rel_err(a, b.grad.numpy()) < 1e-12
    for k, p in tc.named_parameters():
        assert rel_err(c.grads[k], p.grad.numpy()) < 1e-12, k


@pytest.mark.parametrize("kind", list(KINDS))
def test_a_failed_cell_backward_changes_nothing(kind, rng):
    """A cell backward that fails (here: a gradient array made read-only, which the kernel call refuses) leaves
    grads and the tape as they were: the next backward gives what it gives without the failure."""
    cell_cls, _, kw, n_states = KINDS[kind]
    cells = [cell_cls(3, 4, seed=0, **kw) for _ in range(2)]
    x = rng.standard_normal((2, 3)).astype("f4")
    dh = np.ones((2, 4), "f4")
    for cell in cells:
        cell(x)
        cell.grads["weight_hh"] += 0.5
    grads = cells[0].grads
    before = {k: v.copy() for k, v in grads.items()}
    grads["bias_hh"].flags.writeable = False
    with pytest.raises(ValueError, match="db_hh must be writable"):
        cells[0].backward(dh)
    grads["bias_hh"].flags.writeable = True
    for k in before:
        np.testing.assert_array_equal(grads[k], before[k])
    got, want = cells[0].backward(dh), cells[1].backward(dh)  # the tape entry is still there
    np.testing.assert_array_equal(got[0], want[0])
    for k in grads:
        np.testing.assert_array_equal(grads[k], cells[1].grads[k])
