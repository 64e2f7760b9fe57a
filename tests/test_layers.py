"""The layers (LSTM, GRU, RNN) against an independent composition of the reference, and the modules' API contract."""

import numpy as np
import pytest
from helpers import KINDS, TOL, layer_case, ref_model, rel_err

import pylstm
from pylstm import _core

CONFIGS = [  # (T, N, I, H, layers, bidirectional)
    (1, 1, 1, 1, 1, False),
    (5, 3, 4, 3, 1, True),
    (4, 1, 3, 17, 2, False),
    (3, 2, 6, 5, 3, True),
    (6, 4, 2, 16, 2, True),
]


@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize("dt", ["float64", "float32"])
@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: "T%d-N%d-I%d-H%d-L%d-bi%d" % c)
@pytest.mark.parametrize("layout", ["seq", "batch_first", "unbatched"])
@pytest.mark.parametrize("given_state", [False, True])
def test_layer_matches_reference(rng, kind, dt, cfg, layout, given_state):
    T, N, I, H, L, bi = cfg
    if layout == "unbatched":
        N = 1
    m, S, x, s0, dout, ds_n, (want_out, want_s_n, want_dx, want_ds0, want_g) = layer_case(
        rng, kind, T, N, I, H, L, bi, layout == "batch_first", given_state, dt, seed=7)

    def user(a):  # the (T, N, .) arrays in the layout the module is called with
        a = a.astype(dt)
        return a[:, 0] if layout == "unbatched" else a.transpose(1, 0, 2) if layout == "batch_first" else a

    def state(a):
        return a[:, 0].astype(dt) if layout == "unbatched" else a.astype(dt)

    if S == 2:
        out, s_n = m(user(x), tuple(state(s) for s in s0) if given_state else None)
        dx, ds0 = m.backward(user(dout), tuple(state(s) for s in ds_n))
    else:
        out, h_n = m(user(x), state(s0[0]) if given_state else None)
        dx, dh0 = m.backward(user(dout), state(ds_n[0]))
        s_n, ds0 = [h_n], [dh0]
    pairs = [("out", out, user(want_out)), ("dx", dx, user(want_dx))]
    pairs += [("state_n", a, state(b)) for a, b in zip(s_n, want_s_n)]
    pairs += [("dstate0", a, state(b)) for a, b in zip(ds0, want_ds0)]
    for name, got, exp in pairs:
        assert got.shape == exp.shape and got.dtype == np.dtype(dt), name
        assert rel_err(got, exp) <= TOL[dt], f"{name}: {rel_err(got, exp):.2e}"
    assert m.grads.keys() == want_g.keys()
    for k, gexp in want_g.items():
        assert rel_err(m.grads[k], gexp) <= TOL[dt], f"grad {k}: {rel_err(m.grads[k], gexp):.2e}"


def test_parameter_names_shapes_and_order_follow_torch():
    m = pylstm.LSTM(3, 5, num_layers=2, bidirectional=True)
    names = list(m.state_dict())
    assert names[:8] == ["weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0", "weight_ih_l0_reverse",
                         "weight_hh_l0_reverse", "bias_ih_l0_reverse", "bias_hh_l0_reverse"]
    assert m.state_dict()["weight_ih_l0"].shape == (20, 3)
    assert m.state_dict()["weight_ih_l1"].shape == (20, 10)
    assert m.state_dict()["weight_hh_l1_reverse"].shape == (20, 5)
    assert list(pylstm.LSTM(3, 5, bias=False).state_dict()) == ["weight_ih_l0", "weight_hh_l0"]


def test_initialisation_is_seeded_and_in_range():
    a, b, c = (pylstm.LSTM(4, 9, seed=s) for s in (3, 3, 4))
    for k in a.state_dict():
        np.testing.assert_array_equal(a.state_dict()[k], b.state_dict()[k])
        assert np.all(np.abs(a.state_dict()[k]) <= 1 / 3)
    assert not np.array_equal(a.state_dict()["weight_hh_l0"], c.state_dict()["weight_hh_l0"])
    assert a.state_dict()["weight_hh_l0"].dtype == np.float32
    assert pylstm.LSTM(4, 9, dtype="float64").state_dict()["bias_ih_l0"].dtype == np.float64


def test_backward_adds_into_grads_and_zero_grad_clears(rng):
    m = pylstm.LSTM(3, 4, seed=0, dtype="float64")
    x = rng.standard_normal((5, 2, 3))
    out, _ = m(x)
    m.backward(np.ones_like(out))
    once = {k: v.copy() for k, v in m.grads.items()}
    out, _ = m(x)
    m.backward(np.ones_like(out))
    for k in once:
        np.testing.assert_allclose(m.grads[k], 2 * once[k], rtol=1e-12)
    m.zero_grad()
    assert all(not v.any() for v in m.grads.values())


def test_backward_needs_a_training_forward(rng):
    m = pylstm.LSTM(3, 4)
    x = rng.standard_normal((2, 1, 3)).astype("f4")
    with pytest.raises(RuntimeError, match="forward"):
        m.backward(np.ones((2, 1, 4), "f4"))
    out, _ = m(x)
    m.backward(np.ones_like(out))
    with pytest.raises(RuntimeError, match="forward"):  # the cache was consumed
        m.backward(np.ones_like(out))
    m(x)
    m.eval()
    assert not m.training
    out_eval, _ = m(x)  # an eval forward ends the training forward's claim
    with pytest.raises(RuntimeError, match="forward"):
        m.backward(np.ones_like(out_eval))
    m.train()
    np.testing.assert_array_equal(m(x)[0], out_eval)


def test_eval_and_train_forward_agree(rng):
    m = pylstm.LSTM(5, 6, num_layers=2, bidirectional=True, seed=1)
    x = rng.standard_normal((4, 3, 5)).astype("f4")
    y_train, (h_train, c_train) = m(x)
    y_eval, (h_eval, c_eval) = m.eval()(x)
    np.testing.assert_array_equal(y_train, y_eval)
    np.testing.assert_array_equal(h_train, h_eval)
    np.testing.assert_array_equal(c_train, c_eval)


def test_load_state_dict_round_trip_and_atomic_failure():
    a, b = pylstm.LSTM(3, 4, num_layers=2, seed=1), pylstm.LSTM(3, 4, num_layers=2, seed=2)
    b.load_state_dict({k: v.astype(np.float64).tolist() for k, v in a.state_dict().items()})
    for k in a.state_dict():
        np.testing.assert_array_equal(a.state_dict()[k], b.state_dict()[k])
    c = pylstm.LSTM(3, 4, num_layers=2, seed=3)
    before = {k: v.copy() for k, v in c.state_dict().items()}
    bad = dict(a.state_dict())
    bad["weight_hh_l1"] = np.zeros((3, 3))
    with pytest.raises(ValueError, match="weight_hh_l1"):
        c.load_state_dict(bad)
    with pytest.raises(ValueError, match="missing"):
        c.load_state_dict({"weight_ih_l0": a.state_dict()["weight_ih_l0"]})
    with pytest.raises(ValueError, match="unexpected"):
        c.load_state_dict({**a.state_dict(), "extra": np.zeros(1)})
    for k in before:
        np.testing.assert_array_equal(c.state_dict()[k], before[k])


@pytest.mark.parametrize("call,exc,word", [
    (lambda m: m(np.zeros((2, 1, 3), "f8")), TypeError, "^x must have dtype float32"),
    (lambda m: m(np.zeros((2, 1, 4), "f4")), ValueError, r"^x must have 3 features \(input_size\)"),
    (lambda m: m(np.zeros((2, 1, 1, 3), "f4")), ValueError, "^x must be 3-D"),
    (lambda m: m(np.zeros((2, 1, 3), "f4"), (np.zeros((1, 2, 4), "f4"),) * 2), ValueError,
     "^h0 must have shape"),
    (lambda m: m(np.zeros((2, 1, 3), "f4"), np.zeros((1, 1, 4), "f4")), TypeError, "^state must be a pair"),
    (lambda m: pylstm.LSTM(0, 4), ValueError, "^input_size must be >= 1"),
    (lambda m: pylstm.LSTM(3, 2.5), TypeError, "^hidden_size must be an int"),
    (lambda m: pylstm.LSTM(3, 4, dtype="float16"), ValueError, "^dtype must be"),
])
def test_bad_arguments_name_the_argument(call, exc, word):
    with pytest.raises(exc, match=word):
        call(pylstm.LSTM(3, 4))


def test_dout_shape_is_checked_and_cache_survives(rng):
    m = pylstm.LSTM(3, 4, seed=0)
    out, _ = m(rng.standard_normal((2, 5, 3)).astype("f4"))
    with pytest.raises(ValueError, match="dout"):
        m.backward(np.ones((2, 4, 4), "f4"))
    m.backward(np.ones_like(out))  # the failed call left the cache usable


@pytest.mark.parametrize("kind", ["LSTM", "GRU", "RNN"])
@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("weight_drop", [0.0, 0.5])
def test_backward_adds_into_grads_and_a_failed_one_leaves_them(rng, kind, layers, weight_drop):
    """One layer direction adds into grads directly, more go through fresh buffers first: either way a backward adds
    its gradients to what grads held, and a refused one changes nothing."""
    m = getattr(pylstm, kind)(3, 4, num_layers=layers, seed=0, dtype="float64", weight_drop=weight_drop)
    x = rng.standard_normal((5, 2, 3))
    dout = rng.standard_normal((5, 2, 4))
    out, _ = m(x)
    masks = m.masks
    m.backward(dout)
    once = {k: v.copy() for k, v in m.grads.items()}
    assert any(np.abs(v).max() > 0 for v in once.values())
    m(x, masks=masks)
    m.backward(dout)
    for k in once:
        np.testing.assert_allclose(m.grads[k], 2 * once[k], rtol=1e-12, atol=1e-14)
    m(x, masks=masks)
    with pytest.raises(ValueError):
        m.backward(dout, np.ones((layers, 3, 4)) if kind != "LSTM" else (np.ones((layers, 3, 4)),) * 2)
    for k in once:
        np.testing.assert_allclose(m.grads[k], 2 * once[k], rtol=1e-12, atol=1e-14)


def test_writing_into_inputs_or_outputs_after_forward_leaves_gradients_alone(rng):
    m = pylstm.LSTM(3, 4, num_layers=2, seed=0, dtype="float64")
    x = rng.standard_normal((5, 2, 3))
    state = (rng.standard_normal((2, 2, 4)), rng.standard_normal((2, 2, 4)))
    out, _ = m(x, state)
    dx_clean, _ = m.backward(np.ones_like(out))
    clean = {k: v.copy() for k, v in m.grads.items()}
    m.zero_grad()
    out, _ = m(x, state)
    x[...] = 0
    state[0][...] = 0
    out[...] = 0
    dx, _ = m.backward(np.ones_like(out))
    np.testing.assert_array_equal(dx, dx_clean)
    for k in clean:
        np.testing.assert_array_equal(m.grads[k], clean[k])


def test_example_from_the_issue():
    m = pylstm.LSTM(8, 16, num_layers=2, bidirectional=True)
    y, (h, c) = m(np.random.rand(5, 3, 8).astype("f4"))
    dx, (dh0, dc0) = m.backward(np.ones_like(y))
    assert y.shape == (5, 3, 32) and h.shape == c.shape == (4, 3, 16)
    assert dx.shape == (5, 3, 8) and dh0.shape == dc0.shape == (4, 3, 16)
    assert m.grads["weight_hh_l0"].shape == (64, 16)


def test_threads_default_to_the_cpus_available_to_the_process():
    import os
    assert pylstm.get_num_threads() == len(os.sched_getaffinity(0))


def test_threads_setting_round_trips():
    n = pylstm.get_num_threads()
    try:
        pylstm.set_num_threads(1)
        assert pylstm.get_num_threads() == 1
    finally:
        pylstm.set_num_threads(n)
    with pytest.raises(ValueError, match="n"):
        pylstm.set_num_threads(0)


def test_gru_and_rnn_parameters_follow_torch():
    g = pylstm.GRU(3, 5, num_layers=2, bidirectional=True)
    assert g.state_dict()["weight_ih_l0"].shape == (15, 3)
    assert g.state_dict()["weight_hh_l1_reverse"].shape == (15, 5)
    assert g.state_dict()["bias_hh_l1"].shape == (15,)
    r = pylstm.RNN(3, 5, bias=False)
    assert list(r.state_dict()) == ["weight_ih_l0", "weight_hh_l0"]
    assert r.state_dict()["weight_hh_l0"].shape == (5, 5)


@pytest.mark.parametrize("call,exc,word", [
    (lambda: pylstm.RNN(3, 4, nonlinearity="softplus"), ValueError, "^nonlinearity must be"),
    (lambda: pylstm.GRU(3, 4)(np.zeros((2, 1, 3), "f4"), np.zeros((2, 1, 4), "f4")), ValueError, "^h0 must have"),
    (lambda: pylstm.GRU(3, 4).backward(np.zeros((2, 1, 4), "f4")), RuntimeError, "forward"),
    (lambda: pylstm.RNN(3, 4)(np.zeros((2, 1, 3), "i8")), TypeError, "^x must have dtype"),
])
def test_gru_rnn_bad_arguments(call, exc, word):
    with pytest.raises(exc, match=word):
        call()


def test_reprs():
    assert repr(pylstm.LSTM(3, 4)) == "LSTM(3, 4)"
    assert repr(pylstm.GRU(3, 4, 2, linear_before_reset=False)) == "GRU(3, 4, num_layers=2, linear_before_reset=False)"
    assert repr(pylstm.RNN(3, 4, nonlinearity="relu", dtype="float64")) == \
        "RNN(3, 4, nonlinearity='relu', dtype='float64')"


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_dropout_between_layers_matches_reference_with_the_same_masks(rng, kind):
    make, prefix, kw, S = KINDS[kind]
    T, N, I, H, L = 4, 3, 5, 6, 3
    m = make(I, H, L, bidirectional=True, dropout=0.4, dtype="float64", seed=11)
    x = rng.standard_normal((T, N, I))
    dout = rng.standard_normal((T, N, 2 * H))
    out, _ = m(x)
    masks = [mk.copy() for mk in m._cache["masks"]]
    assert len(masks) == L - 1
    assert all(set(np.unique(mk)) <= {0.0, 1 / 0.6} for mk in masks)
    assert 0.2 < np.mean([(mk == 0).mean() for mk in masks]) < 0.6
    dx, _ = m.backward(dout)
    zeros = [np.zeros((2 * L, N, H))] * S
    want_out, _, want_dx, _, want_g = ref_model(m, prefix, kw, x, zeros, dout, zeros, masks)
    assert rel_err(out, want_out) < 1e-10 and rel_err(dx, want_dx) < 1e-10
    for k, g in want_g.items():
        assert rel_err(m.grads[k], g) < 1e-10, k


def test_dropout_is_reproducible_from_the_seed_and_off_in_eval(rng):
    x = rng.standard_normal((4, 2, 3)).astype("f4")
    a, b = (pylstm.LSTM(3, 5, 2, dropout=0.5, seed=4) for _ in range(2))
    np.testing.assert_array_equal(a(x)[0], b(x)[0])
    plain = pylstm.LSTM(3, 5, 2, seed=4)
    assert not np.array_equal(a(x)[0], plain(x)[0])
    np.testing.assert_array_equal(a.eval()(x)[0], plain.eval()(x)[0])
    with pytest.raises(ValueError, match="^dropout must be in"):
        pylstm.GRU(3, 4, dropout=1.0)
    with pytest.raises(TypeError, match="^seed must be"):
        pylstm.RNN(3, 4, seed=1.5)


@pytest.mark.parametrize("make", [lambda: pylstm.LSTM(3, 5, 2, bidirectional=True, seed=0),
                                  lambda: pylstm.LSTM(3, 5, layer_norm=True, seed=0),
                                  lambda: pylstm.GRU(3, 5, seed=0), lambda: pylstm.RNN(3, 5, seed=0)],
                         ids=["lstm", "lstm-ln", "gru", "rnn"])
def test_a_consumed_cache_is_filled_again_by_the_next_training_call(make):
    m, fresh = make(), make()
    rng = np.random.default_rng(0)
    x1, x2 = rng.standard_normal((4, 2, 3)).astype(np.float32), rng.standard_normal((4, 2, 3)).astype(np.float32)
    y, _ = m(x1)
    m.backward(np.ones_like(y))
    spares = dict(m._spare_caches)
    assert len(spares) == m.num_layers * m.num_directions
    m.zero_grad()
    y2, _ = m(x2)
    assert all(a is b for a, b in zip(m._cache["caches"], spares.values()))  # the same arrays, filled again
    m.backward(np.ones_like(y2))
    y3, _ = fresh(x2)
    fresh.backward(np.ones_like(y3))
    assert np.array_equal(y2, y3) and all(np.array_equal(m.grads[k], fresh.grads[k]) for k in m.grads)
    m(rng.standard_normal((6, 2, 3)).astype(np.float32))  # another size: a new cache, the spare left alone
    assert all(c is not s for c, s in zip(m._cache["caches"], spares.values()))


@pytest.mark.parametrize("make", [lambda: pylstm.LSTM(3, 16, bidirectional=True, seed=0),
                                  lambda: pylstm.LSTM(3, 16, bidirectional=True, layer_norm=True, seed=0),
                                  lambda: pylstm.GRU(3, 16, bidirectional=True, seed=0)],
                         ids=["lstm", "lstm-ln", "gru"])
@pytest.mark.parametrize("split", [0, 1], ids=["units", "rows"])
def test_a_reused_cache_with_lengths_holds_nothing_of_the_last_call(make, split):
    """With lengths the forward leaves cache rows past each row's end unwritten, and the backward zeroes what the
    gradient GEMMs read of them: a reused cache full of NaN (poisoned here) must give the fresh module's results."""
    m, fresh = make(), make()
    rng = np.random.default_rng(2)
    x = rng.standard_normal((5, 6, 3)).astype(np.float32)
    lengths = [5, 1, 3, 5, 2, 4]
    _core._set_row_split(split)
    try:
        y, _ = m(x, lengths=lengths)
        m.backward(np.ones_like(y))
        for c in m._spare_caches.values():
            c.fill(np.nan)
        m.zero_grad()
        y1, _ = m(x, lengths=lengths)
        dx1, _ = m.backward(np.ones_like(y1))
        y2, _ = fresh(x, lengths=lengths)
        dx2, _ = fresh.backward(np.ones_like(y2))
    finally:
        _core._set_row_split(-1)
    assert np.array_equal(y1, y2) and np.array_equal(dx1, dx2)
    assert all(np.array_equal(m.grads[k], fresh.grads[k]) for k in m.grads)
    m.eval()
    assert m._spare_caches == {}  # eval mode keeps no training memory


def test_the_kernels_check_a_given_cache():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((3, 2, 4)).astype(np.float32)
    W_ih, W_hh = rng.standard_normal((20, 4)).astype(np.float32), rng.standard_normal((20, 5)).astype(np.float32)
    n = _core.lstm_cache_size(3, 2, 5)
    with pytest.raises(ValueError, match=r"cache must have shape \(%d,\)" % n):
        _core.lstm_forward(x, None, None, W_ih, W_hh, None, None, cache=np.empty(n + 1, np.float32))
    with pytest.raises(ValueError, match="cache must be None in inference"):
        _core.lstm_forward(x, None, None, W_ih, W_hh, None, None, training=False, cache=np.empty(n, np.float32))
    y = np.empty((3, 2, 5), np.float32)
    big = np.empty(n + y.size, np.float32)
    with pytest.raises(ValueError, match="must not share memory"):
        _core.lstm_forward(x, None, None, W_ih, W_hh, None, None, y=big[:y.size].reshape(y.shape), cache=big[:n])
    given = np.full(n, np.nan, np.float32)
    out = _core.lstm_forward(x, None, None, W_ih, W_hh, None, None, cache=given)
    assert out[3] is given and np.isfinite(given).all()
    with pytest.raises(ValueError, match="cache must have shape"):
        _core.gru_forward(x, None, rng.standard_normal((15, 4)).astype(np.float32),
                          rng.standard_normal((15, 5)).astype(np.float32), None, None, cache=np.empty(1, np.float32))
