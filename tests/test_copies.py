"""copy.deepcopy and pickle of every module kind, optimizer and stream (issue 24, bug 4).

A copy must compute what the original computes (outputs and gradients), and then change independently of it: new
arrays, its own packed weights, version and lock. An optimizer copied together with its modules must update the
copies' parameters."""

import copy
import pickle

import numpy as np
import pytest

import pylstm
from pylstm import nn, optim


def _roundtrips():
    return [("deepcopy", copy.deepcopy), ("pickle", lambda o: pickle.loads(pickle.dumps(o)))]


LAYERS = [
    ("LSTM", lambda: pylstm.LSTM(3, 5, 2, seed=0)),
    ("LSTM-bi-proj-f64", lambda: pylstm.LSTM(3, 5, bidirectional=True, proj_size=2, dtype="float64", seed=1)),
    ("LSTM-peepholes", lambda: pylstm.LSTM(3, 5, peepholes=True, batch_first=True, seed=2)),
    ("LSTM-dropout", lambda: pylstm.LSTM(3, 5, 3, dropout=0.3, seed=3)),
    ("GRU", lambda: pylstm.GRU(3, 5, 2, bidirectional=True, seed=4)),
    ("GRU-original", lambda: pylstm.GRU(3, 5, linear_before_reset=False, seed=5)),
    ("RNN-relu", lambda: pylstm.RNN(3, 5, nonlinearity="relu", dtype="float64", seed=6)),
]
CELLS = [
    ("LSTMCell", lambda: pylstm.LSTMCell(3, 5, seed=0)),
    ("LSTMCell-peepholes", lambda: pylstm.LSTMCell(3, 5, peepholes=True, seed=1)),
    ("GRUCell", lambda: pylstm.GRUCell(3, 5, seed=2)),
    ("GRUCell-original", lambda: pylstm.GRUCell(3, 5, linear_before_reset=False, seed=2)),
    ("RNNCell", lambda: pylstm.RNNCell(3, 5, nonlinearity="relu", dtype="float64", seed=3)),
]


def _x(m, T=4, N=2, seed=9):
    x = np.random.default_rng(seed).standard_normal((T, N, m.input_size)).astype(m.dtype)
    return x.transpose(1, 0, 2).copy() if getattr(m, "batch_first", False) else x


def _layer_run(m, x):
    """out, final states and (in training mode) every gradient of one forward + backward."""
    out, states = m(x)
    states = states if isinstance(states, tuple) else (states,)
    if not m.training:
        return [out, *states]
    m.zero_grad()
    dx, _ = m.backward(np.ones_like(out) * 0.5)
    return [out, *states, dx] + [m.grads[k].copy() for k in sorted(m.grads)]


def _cell_run(m, x):
    s = m(x[0])
    s = s if isinstance(s, tuple) else (s,)
    if not m.training:
        return list(s)
    m.zero_grad()
    dx, _ = m.backward(*[np.ones_like(v) for v in s[:1]])
    return [*s, dx] + [m.grads[k].copy() for k in sorted(m.grads)]


def _assert_same(a, b):
    assert len(a) == len(b)
    for u, v in zip(a, b):
        np.testing.assert_array_equal(u, v)


def _assert_independent(orig, dup):
    for name, p in orig._params.items():
        assert not np.shares_memory(p, dup._params[name]), name
        assert not np.shares_memory(orig.grads[name], dup.grads[name]), name
    assert dup._lock is not orig._lock
    with dup.edit_parameters() as params:  # changing the copy leaves the original as it was
        before = {k: v.copy() for k, v in orig._params.items()}
        for v in params.values():
            v += 1
    for k, v in orig._params.items():
        np.testing.assert_array_equal(v, before[k])


@pytest.mark.parametrize("how,roundtrip", _roundtrips())
@pytest.mark.parametrize("mode", ["train", "eval"])
@pytest.mark.parametrize("name,make", LAYERS)
def test_layer_copies(name, make, mode, how, roundtrip):
    m = make().train(mode == "train")
    x = _x(m)
    m(x)  # an eval call packs and keeps the fused LSTM's weights; a training call leaves a cache
    if mode == "train":
        m.backward(np.ones_like(m(x)[0]))
        opt = optim.Adam(m, lr=1e-2)
        opt.step()  # a trained module, parameters changed after packing
    dup = roundtrip(m)
    assert type(dup) is type(m) and repr(dup) == repr(m) and dup.training == m.training
    # The dropout stream is copied too: the next training forward of each draws the same masks.
    _assert_same(_layer_run(dup, x), _layer_run(m, x))
    _assert_independent(m, dup)
    # After its change the copy computes with its new weights (it repacked them), the original with its old ones.
    m.eval(), dup.eval()
    np.testing.assert_array_equal(dup(x)[0], copy.deepcopy(dup)(x)[0])
    assert not np.array_equal(dup(x)[0], m(x)[0])


@pytest.mark.parametrize("how,roundtrip", _roundtrips())
@pytest.mark.parametrize("name,make", LAYERS[:1] + LAYERS[4:5])
def test_layer_copy_keeps_pending_backward(name, make, how, roundtrip):
    """A copy taken between forward and backward carries the forward's cache: its backward equals the original's."""
    m = make()
    x = _x(m)
    out, _ = m(x)
    dup = roundtrip(m)
    dx_dup, _ = dup.backward(np.ones_like(out))
    dx, _ = m.backward(np.ones_like(out))
    np.testing.assert_array_equal(dx_dup, dx)
    for k in m.grads:
        np.testing.assert_array_equal(dup.grads[k], m.grads[k])


@pytest.mark.parametrize("how,roundtrip", _roundtrips())
@pytest.mark.parametrize("mode", ["train", "eval"])
@pytest.mark.parametrize("name,make", CELLS)
def test_cell_copies(name, make, mode, how, roundtrip):
    m = make().train(mode == "train")
    x = _x(m)
    m(x[0])  # a pending tape entry in training mode
    dup = roundtrip(m)
    assert len(dup._tape) == len(m._tape)
    _assert_same(_cell_run(dup, x), _cell_run(m, x))
    _assert_independent(m, dup)


@pytest.mark.parametrize("how,roundtrip", _roundtrips())
def test_linear_copies(how, roundtrip):
    head = nn.Linear(5, 3, seed=0)
    x = np.random.default_rng(0).standard_normal((4, 5)).astype(np.float32)
    head(x)
    dup = roundtrip(head)
    np.testing.assert_array_equal(dup.backward(np.ones((4, 3), np.float32)), head.backward(np.ones((4, 3), np.float32)))
    np.testing.assert_array_equal(dup.grads["weight"], head.grads["weight"])
    _assert_independent(head, dup)


@pytest.mark.parametrize("how,roundtrip", _roundtrips())
@pytest.mark.parametrize("opt_cls", [optim.Adam, optim.SGD])
def test_optimizer_copies_with_its_modules(opt_cls, how, roundtrip):
    """As torch's: copying (model, optimizer) together gives an optimizer that updates the copied model."""
    layer, head = nn.recurrent_model("lstm", 4, 6, 3, seed=0)
    opt = opt_cls([layer, head], lr=0.05)
    x = np.random.default_rng(0).standard_normal((5, 2, 4)).astype(np.float32)
    targets = np.random.default_rng(1).integers(0, 3, (5, 2))

    def step(layer, head, opt):
        opt.zero_grad()
        out, _ = layer(x)
        loss, d = nn.softmax_cross_entropy(head(out), targets)
        layer.backward(head.backward(d))
        opt.step()
        return loss

    step(layer, head, opt)  # optimizer state (moments) exists
    layer2, head2, opt2 = roundtrip((layer, head, opt))
    for _ in range(3):
        assert step(layer2, head2, opt2) == step(layer, head, opt)
    for k, v in layer._params.items():
        np.testing.assert_array_equal(layer2._params[k], v)
        assert not np.shares_memory(layer2._params[k], v)
    for k, v in opt.state.items():
        np.testing.assert_array_equal(opt2.state[k], v)
    assert opt2.steps == opt.steps


@pytest.mark.parametrize("how,roundtrip", _roundtrips())
@pytest.mark.parametrize("make", [lambda: pylstm.LSTM(3, 5, 2, seed=0), lambda: pylstm.GRU(3, 5, seed=0)],
                         ids=["LSTM-fused", "GRU"])
def test_stream_copies(make, how, roundtrip):
    """A stream copies with its layer and carried state; both then go on alone, the copy packing its own weights."""
    layer = make().eval()
    xs = np.random.default_rng(0).standard_normal((6, 2, 3)).astype(np.float32)
    s = layer.stream()
    for t in range(3):
        s.step(xs[t])
    s2 = roundtrip(s)
    for t in range(3, 6):
        np.testing.assert_array_equal(s2.step(xs[t]), s.step(xs[t]))
    assert s2._layer is not s._layer


def test_a_shallow_copy_is_refused_clearly():
    """copy.copy would share the parameters while each module kept its own packed copy of them (and its own version
    counter): after a step on one, the other would compute with stale packed weights. It is refused with a message."""
    for make in (lambda: pylstm.LSTM(3, 5, seed=0), lambda: pylstm.GRUCell(3, 5, seed=0), lambda: nn.Linear(3, 2)):
        with pytest.raises(TypeError, match="use copy.deepcopy"):
            copy.copy(make())
