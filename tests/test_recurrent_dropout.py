"""Recurrent (variational) dropout (issue 27; Gal & Ghahramani 2016), `recurrent_dropout=p`: one mask m of shape
(N, P) per training call, layer and direction (0 or 1/(1 − p)), the same at every step; every recurrent product reads
m ⊙ h_{t−1} (the GRU's three gate blocks; its carry z ⊙ h_{t−1} reads h itself); the layer's output is not masked.

The kernels (the fused loops, every cell and form, both directions, lengths, float32 and float64) against the NumPy
reference with the same masks; the reference's backward against finite differences; the layers' masks, seeds, p = 0,
eval, lengths and the checks."""

import numpy as np
import pytest
from helpers import numerical_gradient, parameter_gradient

import pylstm
from pylstm import _core
from pylstm import reference as R

KINDS = {"lstm": pylstm.LSTM, "gru": pylstm.GRU, "rnn": pylstm.RNN}
# (cell, kernel options): every cell form the fused loops run
CASES = [("lstm", {}), ("lstm", {"proj": 3}), ("lstm", {"peep": True}), ("gru", {"linear_before_reset": True}),
         ("gru", {"linear_before_reset": False}), ("rnn", {"nonlinearity": "tanh"}),
         ("rnn", {"nonlinearity": "relu"}), ("rnn", {"nonlinearity": "sigmoid"})]
G = {"lstm": 4, "gru": 3, "rnn": 1}


def _weights(rng, cell, opts, I, H, dt):
    P = opts.get("proj", H)
    W = {"W_ih": rng.standard_normal((G[cell] * H, I)) * 0.5, "W_hh": rng.standard_normal((G[cell] * H, P)) * 0.5,
         "b_ih": rng.standard_normal(G[cell] * H) * 0.1, "b_hh": rng.standard_normal(G[cell] * H) * 0.1}
    if "proj" in opts:
        W["W_hr"] = rng.standard_normal((P, H)) * 0.5
    if opts.get("peep"):
        W["peep"] = rng.standard_normal(3 * H) * 0.5
    return {k: v.astype(dt) for k, v in W.items()}, P


def _run(mod, cell, opts, x, s0, W, mask, masked, reverse, dy, ds):
    """Forward (training) and backward of one layer direction through `mod` (_core or the reference): returns
    (y, final states, dx, state gradients, weight gradients)."""
    dt = x.dtype
    variant = {k: v for k, v in opts.items() if k in ("linear_before_reset", "nonlinearity")}
    rd_f = {"rd_mask": mask} if mod is R else {"rd_mask": mask, "rd_masked": masked}
    grads = {"d" + k: np.zeros_like(v) for k, v in W.items()}
    if cell == "lstm":
        y, h_n, c_n, cache = mod.lstm_forward(x, s0[0], s0[1], W["W_ih"], W["W_hh"], W["b_ih"], W["b_hh"],
                                              W_hr=W.get("W_hr"), peep=W.get("peep"), reverse=reverse,
                                              training=True, **rd_f)
        dx, dh0, dc0 = mod.lstm_backward(dy, ds[0], ds[1], x, s0[0], s0[1], W["W_ih"], W["W_hh"], y, cache,
                                         grads["dW_ih"], grads["dW_hh"], grads["db_ih"], grads["db_hh"],
                                         W_hr=W.get("W_hr"), dW_hr=grads.get("dW_hr"), peep=W.get("peep"),
                                         dpeep=grads.get("dpeep"), reverse=reverse, dx=np.zeros_like(x), **rd_f)
        return y, (h_n, c_n), dx, (dh0, dc0), grads
    fwd, bwd = (mod.gru_forward, mod.gru_backward) if cell == "gru" else (mod.rnn_forward, mod.rnn_backward)
    y, h_n, cache = fwd(x, s0[0], W["W_ih"], W["W_hh"], W["b_ih"], W["b_hh"], reverse=reverse, training=True,
                        **variant, **rd_f)
    dx, dh0 = bwd(dy, ds[0], x, s0[0], W["W_ih"], W["W_hh"], y, cache, grads["dW_ih"], grads["dW_hh"],
                  grads["db_ih"], grads["db_hh"], reverse=reverse, dx=np.zeros_like(x), **variant, **rd_f)
    del dt
    return y, (h_n,), dx, (dh0,), grads


def _inputs(rng, cell, opts, T, N, I, H, dt, with_state, p=0.4):
    W, P = _weights(rng, cell, opts, I, H, dt)
    x = rng.standard_normal((T, N, I)).astype(dt)
    widths = [P, H] if cell == "lstm" else [H]
    s0 = [rng.standard_normal((N, w)).astype(dt) if with_state else None for w in widths]
    ds = [rng.standard_normal((N, w)).astype(dt) for w in widths]
    dy = rng.standard_normal((T, N, P)).astype(dt)
    mask = ((rng.random((N, P)) >= p) / (1 - p)).astype(dt)
    mask[0, 0] = 0  # at least one dropped unit
    return W, P, x, s0, ds, dy, mask


@pytest.mark.parametrize("cell,opts", CASES, ids=[f"{c}-{'-'.join(f'{k}={v}' for k, v in o.items())}"
                                                   for c, o in CASES])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("with_state", [False, True])
def test_kernels_equal_the_reference(cell, opts, dtype, reverse, with_state):
    rng = np.random.default_rng(7)
    T, N, I, H = 5, 3, 4, 20  # H = 20: a whole unit block and a ragged one at every level
    W, P, x, s0, ds, dy, mask = _inputs(rng, cell, opts, T, N, I, H, np.dtype(dtype), with_state)
    masked = np.full((T + 1, N, P), np.nan, dtype)  # the kernels must write every slot they later read
    got = _run(_core, cell, opts, x, s0, W, mask, masked, reverse, dy, ds)
    want = _run(R, cell, opts, x, s0, W, mask, None, reverse, dy, ds)
    tol = 1e-12 if dtype == "float64" else 1e-5  # relative to the largest value of each array

    def close(a, b, what):
        assert np.abs(a - b).max() <= tol * max(np.abs(b).max(), 1e-30), what

    for i, (g, w) in enumerate(zip(got[:4], want[:4])):
        for j, (a, b) in enumerate(zip(g if isinstance(g, tuple) else (g,), w if isinstance(w, tuple) else (w,))):
            close(a, b, f"output {i}.{j}")
    for k in got[4]:
        close(got[4][k], want[4][k], k)
    # the recorded masked states: m ⊙ h_t per step and m ⊙ h0 in the last slot
    np.testing.assert_array_equal(masked[:T], mask * got[0])
    np.testing.assert_array_equal(masked[T], 0 if s0[0] is None else mask * s0[0])
    # and the mask changed something: the plain reference differs
    plain = _run(R, cell, opts, x, s0, W, None, None, reverse, dy, ds)
    assert np.abs(plain[0] - want[0]).max() > 1e-3


@pytest.mark.parametrize("cell,opts", CASES, ids=[c + str(i) for i, (c, _) in enumerate(CASES)])
def test_the_reference_backward_against_finite_differences(cell, opts):
    rng = np.random.default_rng(8)
    T, N, I, H = 4, 2, 3, 4
    W, P, x, s0, ds, dy, mask = _inputs(rng, cell, opts, T, N, I, H, np.float64, True, p=0.5)

    def loss():
        out = _run(R, cell, opts, x, s0, W, mask, None, False, dy, ds)
        return float((out[0] * dy).sum() + sum((f * d).sum() for f, d in zip(out[1], ds)))

    _, _, dx, dstates, grads = _run(R, cell, opts, x, s0, W, mask, None, False, dy, ds)
    arrays = dict(W, x=x, **{f"s{i}": s for i, s in enumerate(s0)})
    analytic = dict({k[1:]: v for k, v in grads.items()}, x=dx, **{f"s{i}": d for i, d in enumerate(dstates)})
    for name, arr in arrays.items():
        num = numerical_gradient(loss, arr)
        np.testing.assert_allclose(analytic[name], num, rtol=1e-6, atol=1e-8, err_msg=name)


def test_the_mask_reaches_the_gradient_of_h0():
    # a dropped unit of h0 gets no gradient through the recurrent products (the GRU's carry still passes one)
    rng = np.random.default_rng(9)
    W, P, x, s0, ds, dy, mask = _inputs(rng, "rnn", {"nonlinearity": "tanh"}, 3, 2, 3, 5, np.float64, True)
    mask[:] = 2.0
    mask[1, 2] = 0
    masked = np.empty((4, 2, 5))
    *_, dstates, _ = _run(_core, "rnn", {"nonlinearity": "tanh"}, x, s0, W, mask, masked, False, dy, ds)
    assert dstates[0][1, 2] == 0 and np.all(dstates[0][0] != 0)


# ---- the layers ----

def _loss_and_grads(m, x, Rr, masks=None, **kw):
    m.zero_grad()
    out, _ = m(x, masks=masks, **kw)
    m.backward(Rr)
    return float((out * Rr).sum()), {k: v.copy() for k, v in m.grads.items()}


@pytest.mark.parametrize("kind", KINDS)
def test_p_zero_is_the_plain_module_bit_for_bit(kind):
    a = KINDS[kind](3, 5, num_layers=2, bidirectional=True, dropout=0.2, weight_drop=0.3, seed=1)
    b = KINDS[kind](3, 5, num_layers=2, bidirectional=True, dropout=0.2, weight_drop=0.3, recurrent_dropout=0.0,
                    seed=1)
    x, Rr = np.random.default_rng(0).standard_normal((4, 2, 3)).astype(np.float32), np.ones((4, 2, 10), np.float32)
    la, ga = _loss_and_grads(a, x, Rr)
    lb, gb = _loss_and_grads(b, x, Rr)
    assert la == lb and all(np.array_equal(ga[k], gb[k]) for k in ga)
    assert all(sorted(v) == ["weight_drop"] for v in b.masks.values())


@pytest.mark.parametrize("kind", KINDS)
def test_the_masks_are_drawn_per_layer_and_direction_recorded_and_seeded(kind):
    def make():
        return KINDS[kind](3, 40, num_layers=2, bidirectional=True, recurrent_dropout=0.3, weight_drop=0.2, seed=2)
    m = make()
    x = np.random.default_rng(0).standard_normal((4, 50, 3)).astype(np.float32)
    m(x)
    assert sorted(m.masks) == ["l0", "l0_reverse", "l1", "l1_reverse"]
    values = np.concatenate([v["recurrent_dropout"].ravel() for v in m.masks.values()])
    assert set(np.unique(values)) <= {0.0, np.float32(1 / 0.7)}
    assert abs((values == 0).mean() - 0.3) < 0.03  # 4 · 50 · 40 draws
    assert m.masks["l0"]["recurrent_dropout"].shape == (50, 40)
    assert not np.array_equal(m.masks["l0"]["recurrent_dropout"], m.masks["l0_reverse"]["recurrent_dropout"])
    first = {k: v["recurrent_dropout"].copy() for k, v in m.masks.items()}
    m(x)
    assert not np.array_equal(first["l0"], m.masks["l0"]["recurrent_dropout"])  # a new draw per call
    again = make()
    again(x)
    assert all(np.array_equal(first[k], again.masks[k]["recurrent_dropout"]) for k in first)
    # its own stream: the weight-drop masks are those of a module without recurrent dropout
    wd = KINDS[kind](3, 40, num_layers=2, bidirectional=True, weight_drop=0.2, seed=2)
    wd(x)
    assert all(np.array_equal(wd.masks[k]["weight_drop"], again.masks[k]["weight_drop"]) for k in first)


@pytest.mark.parametrize("kind,kw", [("lstm", {}), ("lstm", {"proj_size": 2}), ("lstm", {"peepholes": True}),
                                     ("gru", {}), ("gru", {"linear_before_reset": False}), ("rnn", {})])
def test_module_gradients_against_finite_differences_with_lengths(kind, kw):
    # float64, two layers, both directions, variable lengths and an initial state: every parameter, x and h0
    m = KINDS[kind](2, 3, num_layers=2, bidirectional=True, recurrent_dropout=0.5, dtype="float64", seed=6, **kw)
    rng = np.random.default_rng(7)
    x = rng.standard_normal((4, 3, 2))
    lengths = [2, 4, 3]
    P = m._out
    Rr = rng.standard_normal((4, 3, 2 * P))
    states = [rng.standard_normal((4, 3, w)) for w in m._widths()]
    state = tuple(states) if kind == "lstm" else states[0]
    m(x, state, lengths=lengths)
    masks = m.masks

    def loss():
        out, _ = m(x, state, lengths=lengths, masks=masks)
        return float((out * Rr).sum())

    m.zero_grad()
    out, _ = m(x, state, lengths=lengths, masks=masks)
    dx, dstate = m.backward(Rr)
    grads = {k: v.copy() for k, v in m.grads.items()}
    for name in grads:
        num = parameter_gradient(m, name, loss)
        np.testing.assert_allclose(grads[name], num, rtol=1e-6, atol=1e-8, err_msg=name)
    for arr, analytic in [(x, dx), (states[0], dstate[0] if kind == "lstm" else dstate)]:
        num = numerical_gradient(loss, arr)
        np.testing.assert_allclose(analytic, num, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("kind", KINDS)
def test_with_lengths_each_row_equals_its_own_sequence(kind):
    # the masks are in the caller's row order, whatever order the kernels run the rows in
    m = KINDS[kind](3, 6, recurrent_dropout=0.5, dtype="float64", seed=3)
    rng = np.random.default_rng(4)
    x = rng.standard_normal((5, 3, 3))
    lengths = [2, 5, 3]
    out, _ = m(x, lengths=lengths)
    masks = m.masks
    for n, length in enumerate(lengths):
        row = {"l0": {"recurrent_dropout": masks["l0"]["recurrent_dropout"][n:n + 1]}}
        alone, _ = m(x[:length, n:n + 1], masks=row)
        np.testing.assert_allclose(out[:length, n:n + 1], alone, rtol=1e-12, atol=1e-14)


def test_eval_stream_and_the_checks():
    m = pylstm.LSTM(3, 4, recurrent_dropout=0.5, seed=9)
    plain = pylstm.LSTM(3, 4, seed=9).eval()
    x = np.random.default_rng(0).standard_normal((3, 2, 3)).astype(np.float32)
    m.eval()
    np.testing.assert_array_equal(m(x)[0], plain(x)[0])
    np.testing.assert_allclose(m.stream().step(x[0]), plain(x[:1])[0][0], rtol=1e-6, atol=1e-7)
    m.train()
    with pytest.raises(ValueError, match=r"must have shape \(2, 4\)"):
        m(x, masks={"l0": {"recurrent_dropout": np.ones((3, 4))}})
    with pytest.raises(ValueError, match="recurrent_dropout is off"):
        pylstm.GRU(3, 4, seed=0)(x, masks={"l0": {"recurrent_dropout": np.ones((2, 4))}})
    with pytest.raises(ValueError, match="recurrent_dropout must be in"):
        pylstm.RNN(3, 4, recurrent_dropout=1.0)
    with pytest.raises(TypeError, match="recurrent_dropout must be a number"):
        pylstm.LSTM(3, 4, recurrent_dropout=None)
    assert "recurrent_dropout=0.5" in repr(m)
    q = pylstm.quantize(m.eval(), "int8")  # eval-mode recurrent dropout is the plain model
    assert q(x)[0].shape == (3, 2, 4)
    unbatched = pylstm.RNN(3, 4, recurrent_dropout=0.5, seed=1)
    unbatched(x[:, 0])
    assert unbatched.masks["l0"]["recurrent_dropout"].shape == (1, 4)


def test_the_cells_refuse_it_and_point_to_the_layers():
    for cls in (pylstm.LSTMCell, pylstm.GRUCell, pylstm.RNNCell):
        name = cls.__name__[:-4]
        with pytest.raises(ValueError, match=rf"belongs to a sequence.*pylstm\.{name}\(.*recurrent_dropout"):
            cls(3, 4, recurrent_dropout=0.2)
        cls(3, 4, recurrent_dropout=0.0)  # 0 is the plain cell
        with pytest.raises(TypeError, match="unexpected keyword argument 'zoneout_typo'"):
            cls(3, 4, zoneout_typo=0.1)


def test_the_kernels_refuse_it_outside_training_and_the_fused_loops():
    x = np.zeros((2, 1, 3), np.float32)
    W_ih, W_hh = np.zeros((4, 3), np.float32), np.zeros((4, 4), np.float32)
    mask, masked = np.ones((1, 4), np.float32), np.empty((3, 1, 4), np.float32)
    with pytest.raises(ValueError, match="rd_mask .* is for training calls"):
        _core.rnn_forward(x, None, W_ih, W_hh, None, None, training=False, rd_mask=mask, rd_masked=masked)
    with pytest.raises(ValueError, match="rd_mask and rd_masked must both be given"):
        _core.rnn_forward(x, None, W_ih, W_hh, None, None, rd_mask=mask)
    with pytest.raises(ValueError, match=r"rd_masked must have shape \(3, 1, 4\)"):
        _core.rnn_forward(x, None, W_ih, W_hh, None, None, rd_mask=mask, rd_masked=masked[:2])
    _core._set_fused_loops(False)
    try:
        with pytest.raises(ValueError, match="recurrent dropout needs the fused loops"):
            _core.rnn_forward(x, None, W_ih, W_hh, None, None, rd_mask=mask, rd_masked=masked)
    finally:
        _core._set_fused_loops(True)
