"""pylstm's LSTM, GRU and RNN against torch.nn's with the same weights: outputs and every gradient (skipped without
torch)."""

import numpy as np
import pytest
from helpers import rel_err

import pylstm

torch = pytest.importorskip("torch")

TORCH_TOL = {"float64": 1e-10, "float32": 2e-5}


KINDS = {  # name: (pylstm class, torch class, extra keyword arguments, has a cell state)
    "lstm": ("LSTM", "LSTM", {}, True),
    "gru": ("GRU", "GRU", {}, False),
    "rnn-tanh": ("RNN", "RNN", {"nonlinearity": "tanh"}, False),
    "rnn-relu": ("RNN", "RNN", {"nonlinearity": "relu"}, False),
}


@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize("dt", ["float64", "float32"])
@pytest.mark.parametrize("cfg", [
    dict(T=1, N=1, I=1, H=1, L=1, bi=False),
    dict(T=7, N=3, I=5, H=17, L=2, bi=True),
    dict(T=4, N=2, I=8, H=3, L=3, bi=False),
    dict(T=5, N=4, I=6, H=16, L=1, bi=True, bias=False),
], ids=lambda c: "-".join(f"{k}{int(v)}" for k, v in c.items()))
@pytest.mark.parametrize("layout", ["seq", "batch_first", "unbatched"])
@pytest.mark.parametrize("given_state", [False, True])
def test_matches_torch(rng, kind, dt, cfg, layout, given_state):
    ours, theirs, kw, lstm = KINDS[kind]
    cfg = dict(cfg)
    T, N, I, H, L, bi = (cfg.pop(k) for k in ("T", "N", "I", "H", "L", "bi"))
    bias = cfg.pop("bias", True)
    if layout == "unbatched":
        N = 1
    bf = layout == "batch_first"
    tm = getattr(torch.nn, theirs)(I, H, L, bias=bias, batch_first=bf, bidirectional=bi, dtype=getattr(torch, dt),
                                   **kw)
    m = getattr(pylstm, ours)(I, H, L, bias=bias, batch_first=bf, bidirectional=bi, dtype=dt, **kw)
    m.load_state_dict(tm.state_dict())
    D = 2 if bi else 1
    xshape = (T, I) if layout == "unbatched" else (N, T, I) if bf else (T, N, I)
    sshape = (L * D, H) if layout == "unbatched" else (L * D, N, H)
    x = rng.standard_normal(xshape).astype(dt)
    s0 = [rng.standard_normal(sshape).astype(dt) for _ in range(2 if lstm else 1)]
    dout = rng.standard_normal(xshape[:-1] + (D * H,)).astype(dt)
    ds_n = [rng.standard_normal(sshape).astype(dt) for _ in range(2 if lstm else 1)]

    tx = torch.tensor(x, requires_grad=True)
    ts0 = [torch.tensor(s, requires_grad=True) for s in s0]
    tstate = (tuple(ts0) if lstm else ts0[0]) if given_state else None
    tout, tfin = tm(tx, tstate)
    tfin = list(tfin) if lstm else [tfin]
    loss = (tout * torch.tensor(dout)).sum() + sum((f * torch.tensor(d)).sum() for f, d in zip(tfin, ds_n))
    loss.backward()

    if lstm:
        out, fin = m(x, tuple(s0) if given_state else None)
        dx, ds0 = m.backward(dout, tuple(ds_n))
    else:
        out, fin = m(x, s0[0] if given_state else None)
        dx, ds0 = m.backward(dout, ds_n[0])
        fin, ds0 = [fin], [ds0]
    tol = TORCH_TOL[dt]
    pairs = [("out", out, tout), ("dx", dx, tx.grad)] + [("state_n", a, b) for a, b in zip(fin, tfin)]
    if given_state:
        pairs += [("dstate0", a, b.grad) for a, b in zip(ds0, ts0)]
    pairs += [(k, m.grads[k], p.grad) for k, p in tm.named_parameters()]
    assert len(m.grads) == len(list(tm.parameters())) == L * D * (4 if bias else 2)
    for name, got, want in pairs:
        want = want.detach().numpy()
        assert got.shape == want.shape, name
        assert rel_err(got, want) <= tol, f"{name}: relative error {rel_err(got, want):.2e}"


def test_torch_state_dict_loads_directly():
    tm = torch.nn.LSTM(4, 6, 2, bidirectional=True)
    m = pylstm.LSTM(4, 6, 2, bidirectional=True)
    m.load_state_dict(tm.state_dict())
    for k, v in tm.state_dict().items():
        np.testing.assert_array_equal(m.state_dict()[k], v.numpy())
    assert list(m.state_dict()) == list(tm.state_dict())


@pytest.mark.parametrize("name,kw", [
    ("LSTM", dict(num_layers=2, bidirectional=True, batch_first=True, dropout=0.25)),
    ("GRU", dict(num_layers=1, bias=False)),
    ("RNN", dict(num_layers=3, nonlinearity="relu")),
    ("LSTMCell", {}), ("GRUCell", dict(bias=False)), ("RNNCell", dict(nonlinearity="relu")),
])
@pytest.mark.parametrize("dt", ["float32", "float64"])
def test_from_torch_and_to_torch_round_trip(name, kw, dt):
    tm = getattr(torch.nn, name)(3, 5, **kw, dtype=getattr(torch, dt))
    m = getattr(pylstm, name).from_torch(tm)
    assert m.dtype == np.dtype(dt)
    for k in ("bias", "batch_first", "bidirectional", "num_layers", "nonlinearity", "dropout"):
        if hasattr(tm, k):
            assert getattr(m, k) == getattr(tm, k), k
    back = m.to_torch()
    assert type(back) is type(tm)
    assert repr(back) == repr(tm)
    for k, v in tm.state_dict().items():
        np.testing.assert_array_equal(m.state_dict()[k], v.numpy())
        np.testing.assert_array_equal(back.state_dict()[k].numpy(), v.numpy())


def test_interop_refusals():
    with pytest.raises(TypeError, match="torch.nn.GRU"):
        pylstm.GRU.from_torch(torch.nn.LSTM(3, 4))
    with pytest.raises(ValueError, match="linear_before_reset"):
        pylstm.GRU(3, 4, linear_before_reset=False).to_torch()
