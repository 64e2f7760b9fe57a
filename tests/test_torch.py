"""pylstm.LSTM against torch.nn.LSTM with the same weights: outputs and every gradient (skipped without torch)."""

import numpy as np
import pytest
from conftest import rel_err

import pylstm

torch = pytest.importorskip("torch")

TORCH_TOL = {"float64": 1e-10, "float32": 2e-5}


@pytest.mark.parametrize("dt", ["float64", "float32"])
@pytest.mark.parametrize("cfg", [
    dict(T=1, N=1, I=1, H=1, L=1, bi=False),
    dict(T=7, N=3, I=5, H=17, L=2, bi=True),
    dict(T=4, N=2, I=8, H=3, L=3, bi=False),
    dict(T=5, N=4, I=6, H=16, L=1, bi=True, bias=False),
], ids=lambda c: "-".join(f"{k}{int(v)}" for k, v in c.items()))
@pytest.mark.parametrize("layout", ["seq", "batch_first", "unbatched"])
@pytest.mark.parametrize("given_state", [False, True])
def test_matches_torch(rng, dt, cfg, layout, given_state):
    cfg = dict(cfg)
    T, N, I, H, L, bi = (cfg.pop(k) for k in ("T", "N", "I", "H", "L", "bi"))
    bias = cfg.pop("bias", True)
    if layout == "unbatched":
        N = 1
    bf = layout == "batch_first"
    tdt = getattr(torch, dt)
    tm = torch.nn.LSTM(I, H, L, bias=bias, batch_first=bf, bidirectional=bi, dtype=tdt)
    m = pylstm.LSTM(I, H, L, bias=bias, batch_first=bf, bidirectional=bi, dtype=dt)
    m.load_state_dict(tm.state_dict())
    D = 2 if bi else 1
    xshape = (T, I) if layout == "unbatched" else (N, T, I) if bf else (T, N, I)
    sshape = (L * D, H) if layout == "unbatched" else (L * D, N, H)
    x = rng.standard_normal(xshape).astype(dt)
    h0, c0 = rng.standard_normal(sshape).astype(dt), rng.standard_normal(sshape).astype(dt)
    dout = rng.standard_normal(xshape[:-1] + (D * H,)).astype(dt)
    dh_n, dc_n = rng.standard_normal(sshape).astype(dt), rng.standard_normal(sshape).astype(dt)

    tx = torch.tensor(x, requires_grad=True)
    th0, tc0 = torch.tensor(h0, requires_grad=True), torch.tensor(c0, requires_grad=True)
    tout, (th, tc) = tm(tx, (th0, tc0)) if given_state else tm(tx)
    loss = (tout * torch.tensor(dout)).sum() + (th * torch.tensor(dh_n)).sum() + (tc * torch.tensor(dc_n)).sum()
    loss.backward()

    out, (h_n, c_n) = m(x, (h0, c0) if given_state else None)
    dx, (dh0, dc0) = m.backward(dout, (dh_n, dc_n))
    tol = TORCH_TOL[dt]
    pairs = [("out", out, tout), ("h_n", h_n, th), ("c_n", c_n, tc), ("dx", dx, tx.grad)]
    if given_state:
        pairs += [("dh0", dh0, th0.grad), ("dc0", dc0, tc0.grad)]
    pairs += [(k, m.grads[k], p.grad) for k, p in tm.named_parameters()]
    assert len(m.grads) == L * D * (4 if bias else 2) == len(list(tm.parameters()))
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
