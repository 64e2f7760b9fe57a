"""Streaming (layer.stream()) and the packed weights the fused LSTM keeps between calls: every way the parameters
can change must show in the next call, and a stream must equal the whole-sequence forward."""

import numpy as np
import pytest
from helpers import num_threads

import pylstm
from pylstm import _core, nn, optim

LAYERS = [
    (pylstm.LSTM, {}),
    (pylstm.LSTM, {"num_layers": 3}),
    (pylstm.LSTM, {"proj_size": 3}),
    (pylstm.LSTM, {"dtype": "float64"}),
    (pylstm.LSTM, {"batch_first": True}),
    (pylstm.GRU, {}),
    (pylstm.GRU, {"linear_before_reset": False}),
    (pylstm.RNN, {"nonlinearity": "relu"}),
]


def _states(st):
    return st if isinstance(st, tuple) else (st,)


@pytest.mark.parametrize("cls,kw", LAYERS)
@pytest.mark.parametrize("N", [1, 7])
@pytest.mark.parametrize("with_state", [False, True])
def test_stream_equals_forward(rng, cls, kw, N, with_state):
    kw = dict({"num_layers": 2}, **kw)
    m = cls(5, 9, seed=3, **kw).eval()
    dt = m.dtype
    T, L = 6, m.num_layers
    x = rng.standard_normal((T, N, 5)).astype(dt)
    state = None
    if with_state:
        widths = m._widths()
        state = tuple(rng.standard_normal((L, N, w)).astype(dt) for w in widths)
        state = state if len(state) == 2 else state[0]
    y, st = m(x.transpose(1, 0, 2) if m.batch_first else x, state)
    if m.batch_first:
        y = y.transpose(1, 0, 2)
    s = m.stream(state)
    ys = np.stack([s.step(x[t]) for t in range(T)])
    tol = 1e-12 if dt == np.float64 else 1e-6
    np.testing.assert_allclose(ys, y, rtol=tol, atol=tol)
    for a, b in zip(_states(s.state), _states(st)):
        np.testing.assert_allclose(a, b, rtol=tol, atol=tol)


@pytest.mark.parametrize("N", [1, 2])
@pytest.mark.parametrize("threads", [1, 2, 5])
def test_stream_whose_weights_exceed_l2_equals_forward(rng, N, threads):
    # 3 layers of 4·384·768 float32 weights, 14 MB: 2.8 MB or more per thread on up to 5 threads, more than any L2
    # keeps, so every second step runs each thread's unit blocks in descending order (lstm.h, lstm_stream_step; 5
    # threads split the 24 blocks unevenly) and, with N = 1, the single-row products prefetch their weights (kernels.h,
    # weights_beyond_l2).
    m = pylstm.LSTM(384, 384, 3, seed=5).eval()
    x = rng.standard_normal((5, N, 384)).astype(np.float32)
    y, (h, c) = m(x)
    s = m.stream()
    with num_threads(threads):
        ys = np.stack([s.step(x[t]) for t in range(5)])
    np.testing.assert_allclose(ys, y, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(s.state[0], h, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(s.state[1], c, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("cls", [pylstm.LSTM, pylstm.GRU])
def test_stream_unbatched_and_reset(rng, cls):
    m = cls(4, 6, 2, seed=0).eval()
    x = rng.standard_normal((5, 4)).astype(np.float32)
    y, st = m(x)
    s = m.stream()
    ys = np.stack([s.step(x[t]) for t in range(5)])
    np.testing.assert_allclose(ys, y, rtol=1e-6, atol=1e-6)
    for a, b in zip(_states(s.state), _states(st)):
        assert a.shape == b.shape
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)
    s.reset()
    assert s.state is None
    np.testing.assert_allclose(s.step(x[0]), y[0], rtol=1e-6, atol=1e-6)
    # restart from the state after step 2: the rest must match
    s.reset(tuple(a for a in _states(m(x[:2])[1])) if cls is pylstm.LSTM else m(x[:2])[1])
    np.testing.assert_allclose(np.stack([s.step(x[t]) for t in range(2, 5)]), y[2:], rtol=1e-6, atol=1e-6)


def test_stream_leaves_a_training_forward_and_the_mode_alone(rng):
    m = pylstm.GRU(3, 4, seed=0)  # training mode
    x = rng.standard_normal((5, 2, 3)).astype(np.float32)
    out, _ = m(x)
    s = m.stream()
    s.step(x[0])
    assert m.training
    dx, _ = m.backward(np.ones_like(out))  # the forward's cache survived the stream step
    assert dx.shape == x.shape


def test_stream_errors(rng):
    with pytest.raises(ValueError, match="unidirectional"):
        pylstm.LSTM(3, 4, bidirectional=True).stream()
    m = pylstm.LSTM(3, 4, 2, seed=0)
    s = m.stream()
    with pytest.raises(ValueError, match="features"):
        s.step(np.zeros((2, 5), np.float32))
    with pytest.raises(TypeError, match="dtype"):
        s.step(np.zeros((2, 3), np.float64))
    with pytest.raises(ValueError, match="one time step"):
        s.step(np.zeros((1, 2, 3), np.float32))
    s.step(np.zeros((2, 3), np.float32))
    with pytest.raises(ValueError, match="rows"):
        s.step(np.zeros((3, 3), np.float32))
    with pytest.raises(ValueError, match="unbatched"):
        s.step(np.zeros(3, np.float32))
    with pytest.raises(ValueError):
        m.stream((np.zeros((1, 2, 4), np.float32), np.zeros((2, 2, 4), np.float32)))  # one layer short


# ---- parameters change only through paths the module sees -------------------------------------------------------

def test_state_dict_is_read_only_and_edit_parameters_writes():
    m = pylstm.LSTM(3, 4, seed=0)
    sd = m.state_dict()
    with pytest.raises(ValueError, match="read-only"):
        sd["weight_hh_l0"][0, 0] = 1.0
    with pytest.raises(ValueError):
        sd["weight_hh_l0"].flags.writeable = True
    with m.edit_parameters() as p:
        p["weight_hh_l0"][0, 0] = 1.5
    assert sd["weight_hh_l0"][0, 0] == 1.5  # the views follow the module


def _fresh_copy(m):
    c = type(m)(m.input_size, m.hidden_size, m.num_layers, seed=99).eval()
    c.load_state_dict({k: v.copy() for k, v in m.state_dict().items()})
    return c


CHANGES = ["edit", "load_state_dict", "sgd", "adam", "edit_raises"]


def _change(m, how, rng):
    if how == "edit":
        with m.edit_parameters() as p:
            p["weight_hh_l1"] *= -1.0
            p["bias_ih_l0"] += 0.5
    elif how == "edit_raises":
        with pytest.raises(RuntimeError):
            with m.edit_parameters() as p:
                p["weight_ih_l0"][:] = 0.25
                raise RuntimeError("user code failed half way")
    elif how == "load_state_dict":
        m.load_state_dict({k: rng.standard_normal(v.shape) * 0.3 for k, v in m.state_dict().items()})
    else:
        for g in m.grads.values():
            g[...] = rng.standard_normal(g.shape)
        opt = optim.SGD(m, lr=0.1) if how == "sgd" else optim.Adam(m, lr=0.1)
        opt.step()


@pytest.mark.parametrize("how", CHANGES)
def test_a_call_after_any_change_uses_the_new_weights(rng, how):
    m = pylstm.LSTM(5, 16, 2, seed=0).eval()  # float32 without projection: the fused loop keeps packed weights
    x = rng.standard_normal((4, 3, 5)).astype(np.float32)
    before, _ = m(x)
    np.testing.assert_array_equal(m(x)[0], before)  # a second call reuses the packed copy: same result
    _change(m, how, rng)
    after, _ = m(x)
    want, _ = _fresh_copy(m)(x)
    np.testing.assert_array_equal(after, want)
    assert not np.array_equal(after, before)


@pytest.mark.parametrize("how", CHANGES)
def test_a_stream_step_after_any_change_uses_the_new_weights(rng, how):
    m = pylstm.LSTM(5, 16, 2, seed=0).eval()
    x = rng.standard_normal((3, 5)).astype(np.float32)
    s = m.stream()
    s.step(x)
    _change(m, how, rng)
    state = s.state
    got = s.step(x)
    ref = _fresh_copy(m).stream(state)
    np.testing.assert_array_equal(got, ref.step(x))


def test_calls_inside_edit_parameters_see_every_write(rng):
    m = pylstm.LSTM(4, 8, seed=0).eval()
    x = rng.standard_normal((3, 2, 4)).astype(np.float32)
    m(x)  # packs
    with m.edit_parameters() as p:
        p["weight_hh_l0"][:] = 0.0
        y1, _ = m(x)
        p["weight_ih_l0"][:] = 0.0
        y2, _ = m(x)  # must not reuse what the call above packed
    c = _fresh_copy(m)
    np.testing.assert_array_equal(y2, c(x)[0])
    assert not np.array_equal(y1, y2)


def test_training_loop_matches_a_module_rebuilt_each_step(rng):
    """Forward, backward and an optimizer step, repeated: the kept packed weights never lag a step behind."""
    m = pylstm.LSTM(4, 8, seed=1)
    opt = optim.Adam(m, lr=0.05)
    x = rng.standard_normal((5, 2, 4)).astype(np.float32)
    for _ in range(3):
        opt.zero_grad()
        y, _ = m(x)
        m.backward(np.ones_like(y))
        opt.step()
        want = _fresh_copy(m)(x)[0]
        np.testing.assert_array_equal(m.eval()(x)[0], want)
        m.train()


def test_packed_lstm_checks(rng):
    with pytest.raises(ValueError, match=">= 1"):
        _core.PackedLstm(0, 4)
    pk = _core.PackedLstm(3, 4)
    assert not pk.ready
    m = pylstm.LSTM(5, 4, seed=0)
    W, _ = m._layer_params(0, 0)
    with pytest.raises(ValueError, match="made for"):
        _core.lstm_forward(np.zeros((2, 1, 5), np.float32), None, None, *W[:4], training=False, packed=pk)
    with pytest.raises(TypeError, match="PackedLstm"):
        _core.lstm_forward(np.zeros((2, 1, 5), np.float32), None, None, *W[:4], training=False, packed=3)
    with pytest.raises(ValueError, match="no packed weights"):
        _core.lstm_stream_step(np.zeros((1, 3), np.float32), np.zeros((1, 1, 4), np.float32),
                               np.zeros((1, 1, 4), np.float32), np.zeros((1, 1, 4), np.float32), [pk])


def test_nn_save_and_load_round_trip_with_read_only_views(tmp_path, rng):
    rnn, head = nn.recurrent_model("lstm", 6, 8, 6, 1, seed=0)
    path = tmp_path / "m.npz"
    nn.save(path, {"rnn": rnn, "head": head})
    rnn2, head2 = nn.recurrent_model("lstm", 6, 8, 6, 1, seed=5)
    nn.load(path, {"rnn": rnn2, "head": head2})
    x = rng.standard_normal((3, 2, 6)).astype(np.float32)
    np.testing.assert_array_equal(rnn.eval()(x)[0], rnn2.eval()(x)[0])


# ---- backward without the input's gradient ------------------------------------------------------------------------

@pytest.mark.parametrize("cls,kw", [(pylstm.LSTM, {}), (pylstm.LSTM, {"proj_size": 3, "bidirectional": True}),
                                    (pylstm.GRU, {"num_layers": 2}), (pylstm.RNN, {"dropout": 0.0})])
@pytest.mark.parametrize("lengths", [None, [5, 2, 4]])
def test_backward_without_input_grad_gives_the_same_parameter_and_state_gradients(rng, cls, kw, lengths):
    x = rng.standard_normal((5, 3, 4)).astype(np.float32)
    runs = []
    for input_grad in (True, False):
        m = cls(4, 6, seed=1, **kw)
        out, _ = m(x, lengths=lengths)
        dx, dstate = m.backward(np.ones_like(out), input_grad=input_grad)
        runs.append((dx, dstate, {k: v.copy() for k, v in m.grads.items()}))
    (dx, ds_a, g_a), (none, ds_b, g_b) = runs
    assert dx is not None and dx.shape == x.shape and none is None
    for a, b in zip(_states(ds_a), _states(ds_b)):
        np.testing.assert_array_equal(a, b)
    for k in g_a:
        np.testing.assert_array_equal(g_a[k], g_b[k])


def test_kernel_refuses_dx_without_input_grad(rng):
    m = pylstm.RNN(3, 4, seed=0)
    W, G = m._layer_params(0, 0)
    x = np.zeros((2, 1, 3), np.float32)
    y, _, cache = _core.rnn_forward(x, None, *W[:4])
    with pytest.raises(ValueError, match="input_grad"):
        _core.rnn_backward(np.ones_like(y), None, x, None, W[0], W[1], y, cache, *[np.zeros_like(g) for g in G[:4]],
                           dx=np.zeros_like(x), input_grad=False)


def test_stream_step_refuses_none_for_a_pack():
    """_core.lstm_stream_step read packs[0] before checking it for None: a null dereference (issue 24, bug 2). Run
    in a child process, so that a crash fails this test instead of ending the run."""
    import subprocess
    import sys

    code = """if True:
        import numpy as np
        from pylstm import _core
        x, h, c = np.zeros((1, 3), np.float32), np.zeros((2, 1, 4), np.float32), np.zeros((2, 1, 4), np.float32)
        for packs in ([None], [None, None]):
            try:
                _core.lstm_stream_step(x, h, h.copy(), c, packs)
            except TypeError as e:
                assert "PackedLstm" in str(e), e
            else:
                raise AssertionError("no error")
        print("ok")
    """
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd="/")
    assert r.returncode == 0 and r.stdout.strip() == "ok", (r.returncode, r.stdout, r.stderr[-2000:])
