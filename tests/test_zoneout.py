"""Zoneout (issue 27; Krueger et al. 2016), `zoneout=z` or `(z_c, z_h)`: in training each unit keeps its previous
state with probability z, per step, row and unit, c_t = d_c ⊙ c_{t−1} + (1 − d_c) ⊙ c̃_t and h_t likewise (c̃_t, h̃_t
the plain cell's new state); in eval d is replaced by its expectation z. The LSTM zones both states, the GRU h.

The kernels (the fused loops, both GRU forms, both directions, lengths, float32 and float64, alone and with recurrent
dropout) against the NumPy reference with the same masks; the reference's backward against finite differences; the
layers' masks, eval's expectation, stream, p = 0 and the checks."""

import numpy as np
import pytest
from helpers import numerical_gradient, parameter_gradient

import pylstm
from pylstm import _core
from pylstm import reference as R

CASES = [("lstm", {}), ("gru", {"linear_before_reset": True}), ("gru", {"linear_before_reset": False})]
G = {"lstm": 4, "gru": 3}


def _setup(rng, cell, T, N, I, H, dt, with_state, z=0.4):
    W = {"W_ih": rng.standard_normal((G[cell] * H, I)) * 0.5, "W_hh": rng.standard_normal((G[cell] * H, H)) * 0.5,
         "b_ih": rng.standard_normal(G[cell] * H) * 0.1, "b_hh": rng.standard_normal(G[cell] * H) * 0.1}
    W = {k: v.astype(dt) for k, v in W.items()}
    x = rng.standard_normal((T, N, I)).astype(dt)
    n_states = 2 if cell == "lstm" else 1
    s0 = [rng.standard_normal((N, H)).astype(dt) if with_state else None for _ in range(n_states)]
    ds = [rng.standard_normal((N, H)).astype(dt) for _ in range(n_states)]
    dy = rng.standard_normal((T, N, H)).astype(dt)
    keep = [(rng.random((T, N, H)) < z).astype(dt) for _ in range(n_states)]
    return W, x, s0, ds, dy, keep


def _run(mod, cell, opts, x, s0, W, keep, reverse, dy, ds, rd=None):
    """Training forward and backward of one layer direction through `mod` (_core or the reference) with zoneout
    masks `keep` ([d_c, d_h] or [d_h]) and optionally recurrent dropout's mask rd."""
    T, N, _ = x.shape
    H = W["W_hh"].shape[1]
    grads = {"d" + k: np.zeros_like(v) for k, v in W.items()}
    if mod is R:
        zf = {"zoneout": tuple(keep) if cell == "lstm" else keep[0], "rd_mask": rd}
    else:
        zf = {"zone_keep_h": keep[-1]}
        if cell == "lstm":
            zf["zone_keep_c"] = keep[0]
        if rd is not None:
            zf.update(rd_mask=rd, rd_masked=np.empty((T + 1, N, H), x.dtype))
    if cell == "lstm":
        y, h_n, c_n, cache = mod.lstm_forward(x, s0[0], s0[1], W["W_ih"], W["W_hh"], W["b_ih"], W["b_hh"],
                                              reverse=reverse, training=True, **zf)
        dx, dh0, dc0 = mod.lstm_backward(dy, ds[0], ds[1], x, s0[0], s0[1], W["W_ih"], W["W_hh"], y, cache,
                                         grads["dW_ih"], grads["dW_hh"], grads["db_ih"], grads["db_hh"],
                                         reverse=reverse, dx=np.zeros_like(x), **zf)
        return [y, h_n, c_n, dx, dh0, dc0], grads
    y, h_n, cache = mod.gru_forward(x, s0[0], W["W_ih"], W["W_hh"], W["b_ih"], W["b_hh"], reverse=reverse,
                                    training=True, **opts, **zf)
    dx, dh0 = mod.gru_backward(dy, ds[0], x, s0[0], W["W_ih"], W["W_hh"], y, cache, grads["dW_ih"], grads["dW_hh"],
                               grads["db_ih"], grads["db_hh"], reverse=reverse, dx=np.zeros_like(x), **opts, **zf)
    return [y, h_n, dx, dh0], grads


@pytest.mark.parametrize("cell,opts", CASES, ids=["lstm", "gru", "gru-orig"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("with_state", [False, True])
@pytest.mark.parametrize("with_rd", [False, True])
def test_kernels_equal_the_reference(cell, opts, dtype, reverse, with_state, with_rd):
    rng = np.random.default_rng(11)
    T, N, I, H = 5, 3, 4, 20  # a whole unit block and a ragged one at every level
    W, x, s0, ds, dy, keep = _setup(rng, cell, T, N, I, H, np.dtype(dtype), with_state)
    rd = ((rng.random((N, H)) >= 0.3) / 0.7).astype(dtype) if with_rd else None
    got, gg = _run(_core, cell, opts, x, s0, W, keep, reverse, dy, ds, rd)
    want, wg = _run(R, cell, opts, x, s0, W, keep, reverse, dy, ds, rd)
    tol = 1e-12 if dtype == "float64" else 1e-5  # relative to each array's largest value
    for i, (a, b) in enumerate(zip(got + list(gg.values()), want + list(wg.values()))):
        assert np.abs(a - b).max() <= tol * max(np.abs(b).max(), 1e-30), i
    plain, _ = _run(R, cell, opts, x, s0, W, [np.zeros_like(k) for k in keep], reverse, dy, ds, rd)
    assert np.abs(plain[0] - want[0]).max() > 1e-3  # the masks changed something


@pytest.mark.parametrize("cell,opts", CASES, ids=["lstm", "gru", "gru-orig"])
def test_the_reference_backward_against_finite_differences(cell, opts):
    rng = np.random.default_rng(12)
    W, x, s0, ds, dy, keep = _setup(rng, cell, 4, 2, 3, 4, np.float64, True, z=0.5)

    def loss():
        out, _ = _run(R, cell, opts, x, s0, W, keep, False, dy, ds)
        finals = out[1:3] if cell == "lstm" else out[1:2]
        return float((out[0] * dy).sum() + sum((f * d).sum() for f, d in zip(finals, ds)))

    out, grads = _run(R, cell, opts, x, s0, W, keep, False, dy, ds)
    dstates = out[4:6] if cell == "lstm" else out[3:4]
    analytic = dict({k[1:]: v for k, v in grads.items()}, x=out[3] if cell == "lstm" else out[2],
                    **{f"s{i}": d for i, d in enumerate(dstates)})
    for name, arr in dict(W, x=x, **{f"s{i}": s for i, s in enumerate(s0)}).items():
        num = numerical_gradient(loss, arr)
        np.testing.assert_allclose(analytic[name], num, rtol=1e-6, atol=1e-8, err_msg=name)


def test_a_unit_that_keeps_its_state_passes_it_on_exactly():
    rng = np.random.default_rng(13)
    W, x, s0, ds, dy, keep = _setup(rng, "lstm", 3, 2, 3, 5, np.float64, True)
    keep[0][:], keep[1][:] = 0, 0
    keep[0][:, 1, 2] = keep[1][:, 1, 2] = 1  # row 1, unit 2 keeps h0 and c0 at every step
    y, h_n, c_n, *_ = _core.lstm_forward(x, s0[0], s0[1], W["W_ih"], W["W_hh"], W["b_ih"], W["b_hh"],
                                         zone_keep_c=keep[0], zone_keep_h=keep[1])
    assert np.all(y[:, 1, 2] == s0[0][1, 2]) and c_n[1, 2] == s0[1][1, 2]


# ---- the layers ----

KINDS = {"lstm": pylstm.LSTM, "gru": pylstm.GRU}


@pytest.mark.parametrize("kind", KINDS)
def test_p_zero_is_the_plain_module_bit_for_bit(kind):
    a = KINDS[kind](3, 5, num_layers=2, bidirectional=True, dropout=0.2, recurrent_dropout=0.3, seed=1)
    b = KINDS[kind](3, 5, num_layers=2, bidirectional=True, dropout=0.2, recurrent_dropout=0.3, zoneout=0.0, seed=1)
    x = np.random.default_rng(0).standard_normal((4, 2, 3)).astype(np.float32)
    ya, _ = a(x)
    yb, _ = b(x)
    a.backward(np.ones_like(ya))
    b.backward(np.ones_like(yb))
    assert np.array_equal(ya, yb) and all(np.array_equal(a.grads[k], b.grads[k]) for k in a.grads)
    assert all("zoneout_h" not in v for v in b.masks.values())


@pytest.mark.parametrize("kind", KINDS)
def test_the_masks_are_drawn_per_step_layer_and_direction_and_seeded(kind):
    def make():
        return KINDS[kind](3, 40, num_layers=2, bidirectional=True, zoneout=0.25, recurrent_dropout=0.1, seed=2)
    m = make()
    x = np.random.default_rng(0).standard_normal((6, 20, 3)).astype(np.float32)
    m(x)
    want = ["zoneout_c", "zoneout_h"] if kind == "lstm" else ["zoneout_h"]
    assert all(sorted(k for k in v if k.startswith("zoneout")) == want for v in m.masks.values())
    d = m.masks["l1_reverse"]["zoneout_h"]
    assert d.shape == (6, 20, 40) and set(np.unique(d)) == {0, 1}
    assert abs(d.mean() - 0.25) < 0.03 and not np.array_equal(d[0], d[1])  # per step
    again = make()
    again(x)
    assert all(np.array_equal(m.masks[k]["zoneout_h"], again.masks[k]["zoneout_h"]) for k in m.masks)
    # its own stream: the recurrent-dropout masks are those of a module without zoneout
    rd = KINDS[kind](3, 40, num_layers=2, bidirectional=True, recurrent_dropout=0.1, seed=2)
    rd(x)
    assert all(np.array_equal(rd.masks[k]["recurrent_dropout"], m.masks[k]["recurrent_dropout"]) for k in m.masks)


@pytest.mark.parametrize("kind,kw", [("lstm", {}), ("lstm", {"zoneout": (0.5, 0.2)}), ("gru", {}),
                                     ("gru", {"linear_before_reset": False}),
                                     ("lstm", {"recurrent_dropout": 0.4, "weight_drop": 0.3})])
def test_module_gradients_against_finite_differences_with_lengths(kind, kw):
    kw = dict({"zoneout": 0.4}, **kw)
    m = KINDS[kind](2, 3, num_layers=2, bidirectional=True, dtype="float64", seed=6, **kw)
    rng = np.random.default_rng(7)
    x = rng.standard_normal((4, 3, 2))
    lengths = [2, 4, 3]
    Rr = rng.standard_normal((4, 3, 6))
    states = [rng.standard_normal((4, 3, 3)) for _ in m._states]
    state = tuple(states) if kind == "lstm" else states[0]
    m(x, state, lengths=lengths)
    masks = m.masks

    def loss():
        return float((m(x, state, lengths=lengths, masks=masks)[0] * Rr).sum())

    m.zero_grad()
    m(x, state, lengths=lengths, masks=masks)
    dx, dstate = m.backward(Rr)
    grads = {k: v.copy() for k, v in m.grads.items()}
    for name in grads:
        num = parameter_gradient(m, name, loss)
        np.testing.assert_allclose(grads[name], num, rtol=1e-6, atol=1e-8, err_msg=name)
    analytic_states = list(dstate) if kind == "lstm" else [dstate]
    for arr, analytic in [(x, dx)] + list(zip(states, analytic_states)):
        num = numerical_gradient(loss, arr)
        np.testing.assert_allclose(analytic, num, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("kind", KINDS)
def test_eval_is_the_expectation_formula_and_streams(kind):
    z = (0.3, 0.6) if kind == "lstm" else 0.6
    m = KINDS[kind](3, 5, num_layers=2, zoneout=z, dtype="float64", seed=4).eval()
    x = np.random.default_rng(5).standard_normal((6, 2, 3))
    y, _ = m(x)
    inp = x
    for layer in range(2):
        W, _ = m._layer_params(layer, 0)
        if kind == "lstm":
            inp = R.lstm_forward(inp, None, None, *W[:4], training=False, zoneout=z)[0]
        else:
            inp = R.gru_forward(inp, None, *W[:4], training=False, zoneout=z)[0]
    np.testing.assert_allclose(y, inp, rtol=1e-12, atol=1e-14)
    # d = z at every step: h_t = z h_{t-1} + (1 - z) h̃_t, nothing drawn
    assert m.masks == {}
    s = m.stream()
    ys = np.stack([s.step(x[t]) for t in range(6)])
    np.testing.assert_allclose(ys, y[:, :, :], rtol=1e-12, atol=1e-14)
    m32 = KINDS[kind](3, 5, zoneout=z, seed=4).eval()
    x32 = x.astype(np.float32)
    s32 = m32.stream()
    np.testing.assert_allclose(np.stack([s32.step(x32[t]) for t in range(6)]), m32(x32)[0], rtol=1e-5, atol=1e-6)


def test_with_lengths_each_row_equals_its_own_sequence():
    m = pylstm.LSTM(3, 6, zoneout=0.5, dtype="float64", seed=3)
    x = np.random.default_rng(4).standard_normal((5, 3, 3))
    lengths = [2, 5, 3]
    out, _ = m(x, lengths=lengths)
    masks = m.masks
    for n, length in enumerate(lengths):
        row = {"l0": {k: v[:length, n:n + 1] for k, v in masks["l0"].items()}}
        alone, _ = m(x[:length, n:n + 1], masks=row)
        np.testing.assert_allclose(out[:length, n:n + 1], alone, rtol=1e-12, atol=1e-14)


def test_the_checks():
    with pytest.raises(ValueError, match="zoneout is an option of the LSTM and the GRU"):
        pylstm.RNN(3, 4, zoneout=0.1)
    with pytest.raises(TypeError, match="zoneout must be a number, got"):
        pylstm.GRU(3, 4, zoneout=(0.1, 0.2))
    with pytest.raises(ValueError, match="zoneout must be in"):
        pylstm.LSTM(3, 4, zoneout=(0.1, 1.0))
    with pytest.raises(ValueError, match="not combined with peepholes or proj_size"):
        pylstm.LSTM(3, 4, zoneout=0.1, peepholes=True)
    with pytest.raises(ValueError, match="not combined with peepholes or proj_size"):
        pylstm.LSTM(3, 4, zoneout=0.1, proj_size=2)
    m = pylstm.LSTM(3, 4, zoneout=(0.2, 0.1), seed=0)
    assert "zoneout=(0.2, 0.1)" in repr(m) and "zoneout=0.3" in repr(pylstm.GRU(3, 4, zoneout=0.3))
    assert m.zoneout == (0.2, 0.1) and pylstm.LSTM(3, 4, zoneout=0.2).zoneout == 0.2
    x = np.zeros((2, 1, 3), np.float32)
    with pytest.raises(ValueError, match="zoneout_h.*zoneout is off"):
        pylstm.LSTM(3, 4)(x, masks={"l0": {"zoneout_h": np.ones((2, 1, 4))}})
    with pytest.raises(ValueError, match=r"masks\['l0'\]\['zoneout_c'\] must have shape \(2, 1, 4\)"):
        m(x, masks={"l0": {"zoneout_c": np.ones((2, 1, 3)), "zoneout_h": np.ones((2, 1, 4))}})
    with pytest.raises(ValueError, match="zoneout_c.*no cell state"):
        pylstm.GRU(3, 4, zoneout=0.2)(x, masks={"l0": {"zoneout_c": np.ones((2, 1, 4))}})
    with pytest.raises(ValueError, match="zoneout"):
        pylstm.quantize(m.eval(), "int8")
    pytest.importorskip("onnx")
    from pylstm import onnx as ponnx
    with pytest.raises(ValueError, match="zoneout has no ONNX form"):
        ponnx.export(m)


def test_to_torch_refuses_zoneout():
    pytest.importorskip("torch")
    for m in (pylstm.LSTM(3, 4, zoneout=0.1), pylstm.GRU(3, 4, zoneout=0.1), pylstm.LSTMCell(3, 4, zoneout=0.1),
              pylstm.GRUCell(3, 4, zoneout=0.1)):
        with pytest.raises(ValueError, match=r"torch.nn.\w+ has no zoneout"):
            m.to_torch()


def test_the_kernels_check_their_arguments():
    x = np.zeros((2, 1, 3), np.float32)
    W_ih, W_hh = np.zeros((16, 3), np.float32), np.zeros((16, 4), np.float32)
    keep = np.zeros((2, 1, 4), np.float32)
    with pytest.raises(ValueError, match="zone_keep_c and zone_keep_h must both be given"):
        _core.lstm_forward(x, None, None, W_ih, W_hh, None, None, zone_keep_h=keep)
    with pytest.raises(ValueError, match="training needs the masks"):
        _core.lstm_forward(x, None, None, W_ih, W_hh, None, None, zone_c=0.2, zone_h=0.2)
    with pytest.raises(ValueError, match="masks are for training calls"):
        _core.lstm_forward(x, None, None, W_ih, W_hh, None, None, training=False, zone_keep_c=keep, zone_keep_h=keep)
    with pytest.raises(ValueError, match=r"zone_c and zone_h must be in \[0, 1\)"):
        _core.lstm_forward(x, None, None, W_ih, W_hh, None, None, training=False, zone_c=1.5)
    with pytest.raises(TypeError, match="incompatible function arguments"):  # the GRU's kernels have no c
        _core.gru_forward(x, None, np.zeros((12, 3), np.float32), np.zeros((12, 4), np.float32), None, None,
                          training=False, zone_c=0.1)
    with pytest.raises(ValueError, match="not the RNN"):
        _core.rnn_forward(x, None, np.zeros((4, 3), np.float32), np.zeros((4, 4), np.float32), None, None,
                          training=False, zone_h=0.1)
    _core._set_fused_loops(False)
    try:
        with pytest.raises(ValueError, match="zoneout needs the fused loops"):
            _core.lstm_forward(x, None, None, W_ih, W_hh, None, None, zone_keep_c=keep, zone_keep_h=keep)
    finally:
        _core._set_fused_loops(True)


# ---- the cells: zoneout drawn per call, that is per step ----

@pytest.mark.parametrize("cls,kw", [(pylstm.LSTMCell, {"zoneout": (0.3, 0.5)}), (pylstm.GRUCell, {"zoneout": 0.4}),
                                    (pylstm.GRUCell, {"zoneout": 0.4, "linear_before_reset": False})])
def test_a_cell_equals_the_layer_with_the_same_masks_and_its_gradients(cls, kw):
    layer_cls = pylstm.LSTM if cls is pylstm.LSTMCell else pylstm.GRU
    cell = cls(3, 4, dtype="float64", seed=2, **kw)
    layer = layer_cls(3, 4, dtype="float64", seed=2, **kw)
    layer.load_state_dict({k + "_l0": v for k, v in cell.state_dict().items()})
    rng = np.random.default_rng(3)
    x = rng.standard_normal((5, 2, 3))
    lstm = cls is pylstm.LSTMCell
    state, steps, masks = None, [], {"zoneout_h": [], "zoneout_c": []}
    for t in range(5):
        state = cell(x[t], state)
        steps.append(state[0] if lstm else state)
        for k, v in cell.masks.items():
            masks[k].append(v)
    layer_masks = {"l0": {k: np.stack(v) for k, v in masks.items() if v}}
    y, _ = layer(x, masks=layer_masks)
    np.testing.assert_allclose(np.stack(steps), y, rtol=1e-12, atol=1e-14)
    assert set(np.unique(layer_masks["l0"]["zoneout_h"])) <= {0.0, 1.0}
    # gradients: the cell's backward, step by step, against the layer's
    dy = rng.standard_normal((5, 2, 4))
    layer.zero_grad()
    layer(x, masks=layer_masks)
    dx_layer, _ = layer.backward(dy)
    dh, dc, dxs = np.zeros((2, 4)), np.zeros((2, 4)), []
    for t in reversed(range(5)):
        if lstm:
            dx_t, (dh, dc) = cell.backward(dh + dy[t], dc)
        else:
            dx_t, dh = cell.backward(dh + dy[t])
        dxs.append(dx_t)
    np.testing.assert_allclose(np.stack(dxs[::-1]), dx_layer, rtol=1e-12, atol=1e-13)
    for k, v in cell.grads.items():
        np.testing.assert_allclose(v, layer.grads[k + "_l0"], rtol=1e-12, atol=1e-13)


def test_a_cell_in_eval_uses_the_expectation_and_the_checks():
    cell = pylstm.GRUCell(3, 4, zoneout=0.25, dtype="float64", seed=1)
    x, h = np.ones((2, 3)), np.full((2, 4), 0.5)
    cell.eval()
    got = cell(x, h)
    plain = pylstm.GRUCell(3, 4, dtype="float64", seed=1).eval()
    np.testing.assert_allclose(got, 0.25 * h + 0.75 * plain(x, h), rtol=1e-12)
    cell.train()
    given = {"zoneout_h": np.ones((2, 4))}
    np.testing.assert_array_equal(cell(x, h, masks=given), h)  # every unit keeps its state
    with pytest.raises(ValueError, match=r"masks\['zoneout_c'\] is given, but this cell draws no such mask"):
        cell(x, h, masks={"zoneout_c": np.ones((2, 4))})
    with pytest.raises(ValueError, match=r"masks\['zoneout_h'\] must have shape \(2, 4\)"):
        cell(x, h, masks={"zoneout_h": np.ones((3, 4))})
    with pytest.raises(ValueError, match="zoneout is an option of the LSTM and the GRU"):
        pylstm.RNNCell(3, 4, zoneout=0.1)
    with pytest.raises(ValueError, match="not combined with peepholes"):
        pylstm.LSTMCell(3, 4, zoneout=0.1, peepholes=True)
    assert "zoneout=0.25" in repr(cell)


# ---- after a second reading ----

def test_a_backward_runs_as_its_forward_did_whatever_the_option_is_now():
    for make in (lambda: pylstm.LSTM(3, 4, zoneout=0.5, dtype="float64", seed=1),
                 lambda: pylstm.GRUCell(3, 4, zoneout=0.5, dtype="float64", seed=1)):
        a, b = make(), make()
        x = np.random.default_rng(0).standard_normal((4, 2, 3))
        if isinstance(a, pylstm.GRUCell):
            x = x[0]
        out = a(x)
        b(x, masks=a.masks)
        a.zoneout = 0.0  # switched off between the forward and its backward
        dout = np.ones_like(out[0] if isinstance(out, tuple) else out)
        a.backward(dout)
        b.backward(dout)
        assert all(np.array_equal(a.grads[k], b.grads[k]) for k in a.grads)
    m = pylstm.LSTM(3, 4, seed=1)
    m(np.zeros((2, 1, 3), np.float32))
    m.zoneout = 0.3  # switched on between them: the forward drew nothing, so the backward zones nothing
    m.backward(np.ones((2, 1, 4), np.float32))


def test_zoneout_settings_are_checked_when_set():
    pylstm.LSTM(3, 4, proj_size=2, zoneout=(0.0, 0.0))  # off is fine with a projection
    m = pylstm.LSTM(3, 4, peepholes=True)
    with pytest.raises(ValueError, match="not combined with peepholes"):
        m.zoneout = 0.2
    assert m.zoneout == 0.0
    q = pylstm.quantize(pylstm.LSTM(3, 4), "int8")
    with pytest.raises(ValueError, match="a quantized module has no zoneout"):
        q.zoneout = 0.1


def test_a_stream_carries_its_state_when_zoneout_is_switched_on_midway():
    m = pylstm.LSTM(3, 4, seed=2).eval()
    x = np.random.default_rng(1).standard_normal((6, 1, 3)).astype(np.float32)
    s = m.stream()
    for t in range(3):
        s.step(x[t])
    m.zoneout = 0.4
    ys = [s.step(x[t]) for t in range(3, 6)]
    ref = pylstm.LSTM(3, 4, seed=2).eval()
    _, state = ref(x[:3])
    ref.zoneout = 0.4
    want, _ = ref(x[3:], state)
    np.testing.assert_allclose(np.stack(ys), want, rtol=1e-5, atol=1e-6)


def test_the_cells_masks_must_have_their_shape_and_a_failed_step_keeps_the_last():
    cell = pylstm.LSTMCell(3, 4, zoneout=0.5, seed=3)
    x = np.ones((2, 3), np.float32)
    cell(x)
    last = {k: v.copy() for k, v in cell.masks.items()}
    with pytest.raises(ValueError, match=r"must have shape \(2, 4\)"):
        cell(x, masks={"zoneout_c": np.ones((4, 2)), "zoneout_h": np.ones((4, 2))})
    with pytest.raises(ValueError):
        cell(np.ones((2, 5), np.float32))
    assert all(np.array_equal(cell.masks[k], last[k]) for k in last)


def test_the_kernels_refuse_masks_that_share_memory_with_an_output():
    x = np.zeros((2, 1, 3), np.float32)
    W_ih, W_hh = np.zeros((12, 3), np.float32), np.zeros((12, 4), np.float32)
    y = np.zeros((2, 1, 4), np.float32)
    with pytest.raises(ValueError, match="y must not share memory with zone_keep_h"):
        _core.gru_forward(x, None, W_ih, W_hh, None, None, y=y, zone_keep_h=y)
    with pytest.raises(ValueError, match="out must have at least one dimension"):
        _core.bernoulli(np.empty((), np.float32), 0.5, 1)
