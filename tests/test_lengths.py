"""Variable-length batches: a batch with lengths= against each sequence run alone at its own length, and against
torch's packed sequences when torch is installed."""

import numpy as np
import pytest
from helpers import rel_err

import pylstm

# Lengths run in the fused loops only: the BLAS-per-step reference shape refuses them (test_errors).

KINDS = {"lstm": (pylstm.LSTM, {}, 2), "gru": (pylstm.GRU, {}, 1), "gru-original":
         (pylstm.GRU, {"linear_before_reset": False}, 1), "rnn": (pylstm.RNN, {"nonlinearity": "tanh"}, 1),
         "rnn-sigmoid": (pylstm.RNN, {"nonlinearity": "sigmoid"}, 1)}


def _call(m, S, x, s0, lengths=None):
    if S == 2:
        out, fin = m(x, None if s0 is None else tuple(s0), lengths=lengths)
        return out, list(fin)
    out, h = m(x, None if s0 is None else s0[0], lengths=lengths)
    return out, [h]


def _back(m, S, dout, ds):
    if S == 2:
        dx, d0 = m.backward(dout, tuple(ds))
        return dx, list(d0)
    dx, d0 = m.backward(dout, ds[0])
    return dx, [d0]


@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize("lengths", [[5, 5, 5], [5, 3, 1], [2, 5, 4, 2, 1], [1]], ids=str)
@pytest.mark.parametrize("given_state", [False, True])
def test_batch_with_lengths_equals_each_sequence_alone(rng, kind, lengths, given_state):
    cls, kw, S = KINDS[kind]
    T, N, I, H, L = 5, len(lengths), 3, 4, 2
    m = cls(I, H, L, bidirectional=True, dtype="float64", seed=5, **kw)
    x = rng.standard_normal((T, N, I))
    s0 = [rng.standard_normal((2 * L, N, H)) for _ in range(S)] if given_state else None
    dout = rng.standard_normal((T, N, 2 * H))
    ds = [rng.standard_normal((2 * L, N, H)) for _ in range(S)]
    out, fin = _call(m, S, x, s0, lengths)
    dx, ds0 = _back(m, S, dout, ds)
    grads = {k: v.copy() for k, v in m.grads.items()}

    m.zero_grad()
    for n, ln in enumerate(lengths):
        one_s0 = None if s0 is None else [s[:, n:n + 1] for s in s0]
        o, f = _call(m, S, x[:ln, n:n + 1], one_s0)
        assert rel_err(out[:ln, n:n + 1], o) < 1e-12
        assert not out[ln:, n].any(), "outputs past a sequence's end must be zero"
        for a, b in zip(fin, f):
            assert rel_err(a[:, n:n + 1], b) < 1e-12
        d, d0 = _back(m, S, dout[:ln, n:n + 1], [s[:, n:n + 1] for s in ds])
        assert rel_err(dx[:ln, n:n + 1], d) < 1e-12
        assert not dx[ln:, n].any()
        for a, b in zip(ds0, d0):
            assert rel_err(a[:, n:n + 1], b) < 1e-12
    for k, g in grads.items():
        assert rel_err(g, m.grads[k]) < 1e-12, k


@pytest.mark.parametrize("bad,exc,word", [
    ([3, 2], ValueError, r"^lengths must have shape \(3,\)"),
    ([3, 0, 1], ValueError, "^lengths must be between 1 and T"),
    ([3, 9, 1], ValueError, "^lengths must be between 1 and T"),
    ([3.0, 2.0, 1.0], TypeError, "^lengths must hold integers"),
    (3, ValueError, r"^lengths must have shape"),
])
def test_bad_lengths(bad, exc, word):
    m = pylstm.GRU(2, 3)
    with pytest.raises(exc, match=word):
        m(np.zeros((4, 3, 2), "f4"), lengths=bad)


def test_lengths_with_batch_first_and_dropout(rng):
    m = pylstm.LSTM(3, 4, 2, batch_first=True, dropout=0.3, seed=2, dtype="float64")
    x = rng.standard_normal((3, 6, 3))
    out, (h, c) = m(x, lengths=[6, 2, 4])
    assert out.shape == (3, 6, 4) and not out[1, 2:].any() and not out[2, 4:].any()
    dx, _ = m.backward(np.ones_like(out))
    assert not dx[1, 2:].any() and dx[1, :2].any()


@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn"])
@pytest.mark.parametrize("bi", [False, True])
def test_lengths_match_torch_packed_sequences(rng, kind, bi):
    torch = pytest.importorskip("torch")
    cls, kw, S = KINDS[kind]
    T, N, I, H, L = 6, 4, 3, 5, 2
    lengths = [4, 6, 1, 3]
    tm = getattr(torch.nn, cls.__name__)(I, H, L, bidirectional=bi, dtype=torch.float64)
    m = cls.from_torch(tm)
    D = 2 if bi else 1
    x = rng.standard_normal((T, N, I))
    s0 = [rng.standard_normal((L * D, N, H)) for _ in range(S)]
    dout = rng.standard_normal((T, N, D * H))
    ds = [rng.standard_normal((L * D, N, H)) for _ in range(S)]
    tx = torch.tensor(x, requires_grad=True)
    ts0 = [torch.tensor(s, requires_grad=True) for s in s0]
    packed = torch.nn.utils.rnn.pack_padded_sequence(tx, torch.tensor(lengths), enforce_sorted=False)
    tout, tfin = tm(packed, tuple(ts0) if S == 2 else ts0[0])
    tout, _ = torch.nn.utils.rnn.pad_packed_sequence(tout, total_length=T)
    tfin = list(tfin) if S == 2 else [tfin]
    loss = (tout * torch.tensor(dout)).sum() + sum((f * torch.tensor(d)).sum() for f, d in zip(tfin, ds))
    loss.backward()
    out, fin = _call(m, S, x, s0, lengths)
    dx, ds0 = _back(m, S, dout, ds)
    assert rel_err(out, tout.detach().numpy()) < 1e-10
    assert rel_err(dx, tx.grad.numpy()) < 1e-10
    for a, b in zip(fin, tfin):
        assert rel_err(a, b.detach().numpy()) < 1e-10
    for a, b in zip(ds0, ts0):
        assert rel_err(a, b.grad.numpy()) < 1e-10
    for k, p in tm.named_parameters():
        assert rel_err(m.grads[k], p.grad.numpy()) < 1e-10, k
