"""The layer-norm LSTM (issue 27; Ba et al. 2016 in haste's parameterisation), `layer_norm=True`:
    a_t = LN(x_t W_ihᵀ; γ_ih) + LN(h_{t−1} W_hhᵀ; γ_hh) + b_ih + b_hh,  c_t = f ⊙ c_{t−1} + i ⊙ g,
    h_t = o ⊙ tanh(LN(c_t; γ_c) + β_c).

The reference's backward against finite differences (with recurrent dropout and zoneout too); the kernels (both
directions, float32 and float64, with and without states and biases, several blocks of inference steps) against the
reference; the layers and cells: parameters, finite differences of every gradient with lengths and every other
regularizer, lengths against rows run alone, eval's zoneout expectation, stream; and the checks."""

import numpy as np
import pytest
from helpers import numerical_gradient, parameter_gradient

import pylstm
from pylstm import _core
from pylstm import reference as R

LN_NAMES = ("ln_weight_ih", "ln_weight_hh", "ln_weight_c", "ln_bias_c")


def _weights(rng, I, H, dt, bias=True):
    W = {"W_ih": rng.standard_normal((4 * H, I)) * 0.5, "W_hh": rng.standard_normal((4 * H, H)) * 0.5,
         "b_ih": rng.standard_normal(4 * H) * 0.1 if bias else None,
         "b_hh": rng.standard_normal(4 * H) * 0.1 if bias else None}
    ln = [1 + 0.2 * rng.standard_normal(4 * H), 1 + 0.2 * rng.standard_normal(4 * H),
          1 + 0.2 * rng.standard_normal(H), 0.1 * rng.standard_normal(H)]
    return {k: None if v is None else v.astype(dt) for k, v in W.items()}, [g.astype(dt) for g in ln]


def up(a):
    """a in float64 (None stays None)."""
    return None if a is None else a.astype(np.float64)


def _run(mod, x, s0, W, ln, reverse, dy, ds, rd=None, zone=None):
    """Training forward and backward of one layer direction through `mod` (_core or the reference)."""
    T, N, _ = x.shape
    H = W["W_hh"].shape[1]
    kw = {}
    if mod is R:
        kw = {"rd_mask": rd, "zoneout": zone}
    else:
        if rd is not None:
            kw.update(rd_mask=rd, rd_masked=np.empty((T + 1, N, H), x.dtype))
        if zone is not None:
            kw.update(zone_keep_c=zone[0], zone_keep_h=zone[1])
    y, h_n, c_n, cache = mod.lstm_forward(x, s0[0], s0[1], W["W_ih"], W["W_hh"], W["b_ih"], W["b_hh"],
                                          reverse=reverse, training=True, ln=ln, **kw)
    grads = {k: np.zeros_like(v) for k, v in W.items() if v is not None}
    dln = [np.zeros_like(g) for g in ln]
    dx, dh0, dc0 = mod.lstm_backward(dy, ds[0], ds[1], x, s0[0], s0[1], W["W_ih"], W["W_hh"], y, cache,
                                     grads["W_ih"], grads["W_hh"], grads.get("b_ih"), grads.get("b_hh"),
                                     reverse=reverse, dx=np.zeros_like(x), ln=ln, dln=dln, **kw)
    return {"y": y, "h_n": h_n, "c_n": c_n, "x": dx, "h0": dh0, "c0": dc0,
            **{"d" + k: v for k, v in grads.items()}, **{f"d{n}": g for n, g in zip(LN_NAMES, dln)}}


# ---- the reference ----

def test_layer_norm_normalises_each_row_and_its_backward_is_the_derivative():
    rng = np.random.default_rng(0)
    v, gamma = rng.standard_normal((3, 8)) * 3 + 1, rng.standard_normal(8)
    out, vhat, rstd = R.layer_norm(v, gamma)
    np.testing.assert_allclose(vhat.mean(axis=1), 0, atol=1e-12)
    np.testing.assert_allclose((vhat ** 2).mean(axis=1), 1 - R.LN_EPS * rstd[:, 0] ** 2, rtol=1e-12)  # var/(var+ε)
    dout = rng.standard_normal((3, 8))
    dv, dg = R.layer_norm_backward(dout, vhat, rstd, gamma)

    def loss():
        return float((R.layer_norm(v, gamma)[0] * dout).sum())

    np.testing.assert_allclose(dv, numerical_gradient(loss, v), rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(dg, numerical_gradient(loss, gamma), rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("options", ["plain", "recurrent_dropout", "zoneout"])
def test_the_reference_backward_against_finite_differences(reverse, options):
    rng = np.random.default_rng(1)
    T, N, I, H = 4, 2, 3, 5
    W, ln = _weights(rng, I, H, np.float64)
    x, s0 = rng.standard_normal((T, N, I)), [rng.standard_normal((N, H)), rng.standard_normal((N, H))]
    dy, ds = rng.standard_normal((T, N, H)), [rng.standard_normal((N, H)), rng.standard_normal((N, H))]
    rd = (rng.random((N, H)) >= 0.3) / 0.7 if options == "recurrent_dropout" else None
    zone = [(rng.random((T, N, H)) < 0.4).astype(float) for _ in range(2)] if options == "zoneout" else None

    def loss():
        y, h_n, c_n, _ = R.lstm_forward(x, s0[0], s0[1], W["W_ih"], W["W_hh"], W["b_ih"], W["b_hh"], reverse=reverse,
                                        ln=ln, rd_mask=rd, zoneout=zone)
        return float((y * dy).sum() + (h_n * ds[0]).sum() + (c_n * ds[1]).sum())

    got = _run(R, x, s0, W, ln, reverse, dy, ds, rd, zone)
    arrays = dict({k: W[k] for k in W}, x=x, h0=s0[0], c0=s0[1], **dict(zip(LN_NAMES, ln)))
    for name, arr in arrays.items():
        analytic = got[name if name in ("x", "h0", "c0") else "d" + name]
        np.testing.assert_allclose(analytic, numerical_gradient(loss, arr), rtol=1e-6, atol=1e-8, err_msg=name)


def test_the_reference_is_the_lstm_around_its_normalisations():
    # one step from the zero state (LN(0) = 0), γ = 1, β = 0, no bias: the gates read LN(x W_ihᵀ) and h reads
    # tanh(LN(c)), written out by hand here from the plain cell's equations
    rng = np.random.default_rng(2)
    N, I, H = 2, 3, 4
    W_ih, W_hh = rng.standard_normal((4 * H, I)), rng.standard_normal((4 * H, H))
    ln = [np.ones(4 * H), np.ones(4 * H), np.ones(H), np.zeros(H)]
    x = rng.standard_normal((1, N, I))
    y, h, c, _ = R.lstm_forward(x, None, None, W_ih, W_hh, None, None, ln=ln)
    a = R.layer_norm(x[0] @ W_ih.T, ln[0])[0]
    i, g, o = R.sigmoid(a[:, :H]), np.tanh(a[:, 2 * H:3 * H]), R.sigmoid(a[:, 3 * H:])  # (f meets c0 = 0)
    np.testing.assert_allclose(c, i * g, rtol=1e-12)
    np.testing.assert_allclose(h, o * np.tanh(R.layer_norm(i * g, ln[2])[0]), rtol=1e-12)
    assert R.lstm_cache_size(3, 2, H, layer_norm=True) == _core.lstm_cache_size(3, 2, H, layer_norm=True)


# ---- the kernels ----

@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("with_state", [False, True])
@pytest.mark.parametrize("options", ["plain", "no-bias", "recurrent_dropout", "zoneout", "both"])
def test_kernels_equal_the_reference(dtype, reverse, with_state, options):
    rng = np.random.default_rng(11)
    T, N, I, H = 5, 3, 4, 20  # a whole unit block and a ragged one at every level
    dt = np.dtype(dtype)
    W, ln = _weights(rng, I, H, dt, bias=options != "no-bias")
    x = rng.standard_normal((T, N, I)).astype(dt)
    s0 = [rng.standard_normal((N, H)).astype(dt) if with_state else None for _ in range(2)]
    dy = rng.standard_normal((T, N, H)).astype(dt)
    ds = [rng.standard_normal((N, H)).astype(dt) for _ in range(2)]
    rd = ((rng.random((N, H)) >= 0.3) / 0.7).astype(dt) if options in ("recurrent_dropout", "both") else None
    zone = [(rng.random((T, N, H)) < 0.3).astype(dt) for _ in range(2)] if options in ("zoneout", "both") else None
    got = _run(_core, x, s0, W, ln, reverse, dy, ds, rd, zone)
    # float32 against the float64 reference of the same values: each side's own rounding, not two
    want = _run(R, up(x), [up(s) for s in s0], {k: up(v) for k, v in W.items()}, [up(g) for g in ln], reverse,
                up(dy), [up(d) for d in ds], up(rd), None if zone is None else [up(z) for z in zone])
    tol = 1e-12 if dtype == "float64" else 1e-5  # relative to each array's largest value
    for k in want:
        assert got[k].dtype == dt, k
        # From the zero state the first product is 0, whose normalisation has 1/σ = 1/√ε ≈ 316: the gradients
        # through that step carry the float32 rounding times that (measured up to 1.3e-5 of ∂L/∂h0's and 1.02e-5 of
        # ∂L/∂c0's largest value at the sse2 level); from a nonzero state everything is within 1e-5.
        grad = k not in ("y", "h_n", "c_n")
        t = tol * 10 if grad and not with_state and dtype == "float32" else tol
        assert np.abs(got[k] - want[k]).max() <= t * max(np.abs(want[k]).max(), 1e-30), k


@pytest.mark.parametrize("reverse", [False, True])
def test_kernels_on_the_pool_equal_the_reference(reverse):
    """Rows enough (2·N·4H·H over the 64 kflop below which a loop runs on the calling thread) for the row parts to
    run on the pool's threads at once and their γ/β sums to be added up across parts; with every option."""
    rng = np.random.default_rng(14)
    T, N, I, H = 4, 16, 6, 64
    W, ln = _weights(rng, I, H, np.float64)
    x = rng.standard_normal((T, N, I))
    s0 = [rng.standard_normal((N, H)), rng.standard_normal((N, H))]
    dy, ds = rng.standard_normal((T, N, H)), [rng.standard_normal((N, H)), rng.standard_normal((N, H))]
    rd = (rng.random((N, H)) >= 0.3) / 0.7
    zone = [(rng.random((T, N, H)) < 0.3).astype(float) for _ in range(2)]
    got = _run(_core, x, s0, W, ln, reverse, dy, ds, rd, zone)
    want = _run(R, x, s0, W, ln, reverse, dy, ds, rd, zone)
    for k in want:
        assert np.abs(got[k] - want[k]).max() <= 1e-12 * np.abs(want[k]).max(), k


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("reverse", [False, True])
def test_inference_equals_the_reference_over_several_blocks_of_steps(dtype, reverse):
    rng = np.random.default_rng(12)
    T, N, I, H = 11, 4096, 5, 64  # blocks of 4 steps of input projections: three blocks
    assert -(-T // _core._lstm_projection_block_steps("rows", T, N, I, H)) == 3
    dt = np.dtype(dtype)
    W, ln = _weights(rng, I, H, dt)
    x = rng.standard_normal((T, N, I)).astype(dt)
    s0 = [rng.standard_normal((N, H)).astype(dt) for _ in range(2)]
    got = _core.lstm_forward(x, *s0, *W.values(), reverse=reverse, training=False, ln=ln, zone_c=0.3, zone_h=0.2)
    want = R.lstm_forward(up(x), *map(up, s0), *map(up, W.values()), reverse=reverse, training=False,
                          ln=[up(g) for g in ln], zoneout=(0.3, 0.2))
    tol = 1e-12 if dtype == "float64" else 1e-5
    for a, b in zip(got[:3], want[:3]):
        assert np.abs(a - b).max() <= tol * np.abs(b).max()
    assert got[3] is None


def test_the_kernels_refuse_what_layer_norm_is_not_combined_with():
    rng = np.random.default_rng(13)
    W, ln = _weights(rng, 3, 4, np.float32)
    x = rng.standard_normal((2, 1, 3)).astype(np.float32)
    args = (x, None, None, *W.values())
    with pytest.raises(ValueError, match=r"ln\[1\] \(ln_weight_hh\) must have shape \(16,\)"):
        _core.lstm_forward(*args, ln=[ln[0], ln[0][:4], ln[2], ln[3]])
    with pytest.raises(TypeError, match="ln must be a sequence of four arrays"):
        _core.lstm_forward(*args, ln=ln[:3])
    with pytest.raises(ValueError, match="peep"):
        _core.lstm_forward(*args, ln=ln, peep=np.zeros(12, np.float32))
    with pytest.raises(ValueError, match="packed must be None"):
        _core.lstm_forward(*args, ln=ln, packed=_core.PackedLstm(3, 4))
    y, _, _, cache = _core.lstm_forward(*args, ln=ln)
    G = [np.zeros_like(W[k]) for k in ("W_ih", "W_hh", "b_ih", "b_hh")]
    with pytest.raises(ValueError, match="both or neither"):
        _core.lstm_backward(None, None, None, x, None, None, W["W_ih"], W["W_hh"], y, cache, *G, ln=ln)
    with pytest.raises(ValueError, match="cache must have shape"):  # a plain cache is not a layer-norm one
        _core.lstm_backward(None, None, None, x, None, None, W["W_ih"], W["W_hh"], y, cache[:10], *G, ln=ln,
                            dln=[np.zeros_like(g) for g in ln])
    assert all(not g.any() for g in G)


# ---- the layers and cells ----

def test_parameters_names_shapes_and_start():
    m = pylstm.LSTM(3, 5, num_layers=2, bidirectional=True, layer_norm=True, seed=0)
    plain = pylstm.LSTM(3, 5, num_layers=2, bidirectional=True, seed=0)
    sd = m.state_dict()
    for sfx in ("_l0", "_l0_reverse", "_l1", "_l1_reverse"):
        assert sd["ln_weight_ih" + sfx].shape == sd["ln_weight_hh" + sfx].shape == (20,)
        assert sd["ln_weight_c" + sfx].shape == sd["ln_bias_c" + sfx].shape == (5,)
        assert np.all(sd["ln_weight_ih" + sfx] == 1) and np.all(sd["ln_weight_c" + sfx] == 1)
        assert np.all(sd["ln_bias_c" + sfx] == 0)
    # the other parameters are the plain module's: the layer norm's are not drawn
    assert all(np.array_equal(sd[k], v) for k, v in plain.state_dict().items())
    assert list(sd)[:8] == ["weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0", "ln_weight_ih_l0",
                            "ln_weight_hh_l0", "ln_weight_c_l0", "ln_bias_c_l0"]
    assert "layer_norm=True" in repr(m)
    cell = pylstm.LSTMCell(3, 5, layer_norm=True)
    assert sorted(k for k in cell.state_dict() if k.startswith("ln_")) == sorted(LN_NAMES)


@pytest.mark.parametrize("kw", [{}, {"zoneout": (0.5, 0.2)}, {"recurrent_dropout": 0.4, "weight_drop": 0.3},
                                {"zoneout": 0.3, "recurrent_dropout": 0.3, "weight_drop": 0.2}])
def test_module_gradients_against_finite_differences_with_lengths(kw):
    m = pylstm.LSTM(2, 3, num_layers=2, bidirectional=True, layer_norm=True, dtype="float64", seed=6, **kw)
    rng = np.random.default_rng(7)
    with m.edit_parameters() as p:  # γ and β away from their start, so that their gradients are general
        for k in p:
            if k.startswith("ln_"):
                p[k] += 0.3 * rng.standard_normal(p[k].shape)
    x = rng.standard_normal((4, 3, 2))
    lengths = [2, 4, 3]
    Rr = rng.standard_normal((4, 3, 6))
    state = (rng.standard_normal((4, 3, 3)), rng.standard_normal((4, 3, 3)))
    m(x, state, lengths=lengths)
    masks = m.masks

    def loss():
        return float((m(x, state, lengths=lengths, masks=masks or None)[0] * Rr).sum())

    m.zero_grad()
    m(x, state, lengths=lengths, masks=masks or None)
    dx, dstate = m.backward(Rr)
    grads = {k: v.copy() for k, v in m.grads.items()}
    assert any(k.startswith("ln_bias_c") for k in grads)
    for name in grads:
        num = parameter_gradient(m, name, loss)
        np.testing.assert_allclose(grads[name], num, rtol=1e-6, atol=1e-8, err_msg=name)
    for arr, analytic in [(x, dx), (state[0], dstate[0]), (state[1], dstate[1])]:
        np.testing.assert_allclose(analytic, numerical_gradient(loss, arr), rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_lengths_equal_each_row_run_alone(dtype):
    m = pylstm.LSTM(3, 6, bidirectional=True, layer_norm=True, dtype=dtype, seed=3)
    rng = np.random.default_rng(8)
    x = rng.standard_normal((5, 4, 3)).astype(dtype)
    lengths = [3, 5, 1, 4]
    y, (h, c) = m(x, lengths=lengths)
    dy = rng.standard_normal(y.shape).astype(dtype)
    dx, _ = m.backward(dy)
    grads = {k: v.copy() for k, v in m.grads.items()}
    tol = 1e-12 if dtype == "float64" else 2e-5
    total = {k: np.zeros_like(v) for k, v in grads.items()}
    for n, L in enumerate(lengths):
        m.zero_grad()
        yn, (hn, cn) = m(x[:L, n:n + 1])
        np.testing.assert_allclose(y[:L, n:n + 1], yn, rtol=tol, atol=tol)
        assert not y[L:, n].any()
        np.testing.assert_allclose(h[:, n], hn[:, 0], rtol=tol, atol=tol)
        dxn, _ = m.backward(dy[:L, n:n + 1])
        np.testing.assert_allclose(dx[:L, n:n + 1], dxn, rtol=tol, atol=tol)
        for k in total:
            total[k] += m.grads[k]
    for k in grads:
        np.testing.assert_allclose(grads[k], total[k], rtol=10 * tol, atol=10 * tol, err_msg=k)


def test_eval_zoneout_is_the_expectation_and_streams():
    m = pylstm.LSTM(3, 5, num_layers=2, layer_norm=True, zoneout=(0.3, 0.6), dtype="float64", seed=4).eval()
    x = np.random.default_rng(5).standard_normal((6, 2, 3))
    y, _ = m(x)
    inp = x
    for layer in range(2):
        W, _ = m._layer_params(layer, 0)
        inp = R.lstm_forward(inp, None, None, *W[:4], training=False, zoneout=(0.3, 0.6), ln=W[6:10])[0]
    np.testing.assert_allclose(y, inp, rtol=1e-12, atol=1e-14)
    assert m.masks == {}
    for module in (m, pylstm.LSTM(3, 5, num_layers=2, layer_norm=True, seed=4).eval()):
        ref, _ = module(x.astype(module.dtype))
        s = module.stream()
        ys = np.stack([s.step(x[t].astype(module.dtype)) for t in range(6)])
        np.testing.assert_allclose(ys, ref, rtol=1e-6, atol=1e-7)


def test_the_cell_is_one_step_of_the_layer_and_its_gradients_are_right():
    layer = pylstm.LSTM(3, 4, layer_norm=True, dtype="float64", seed=9)
    cell = pylstm.LSTMCell(3, 4, layer_norm=True, dtype="float64", seed=0)
    cell.load_state_dict({k[:-3]: v for k, v in layer.state_dict().items()})
    rng = np.random.default_rng(9)
    with cell.edit_parameters() as p:
        for k in LN_NAMES:
            p[k] += 0.3 * rng.standard_normal(p[k].shape)
    layer.load_state_dict({k + "_l0": v for k, v in cell.state_dict().items()})
    x, h0, c0 = rng.standard_normal((2, 3)), rng.standard_normal((2, 4)), rng.standard_normal((2, 4))
    h, c = cell(x, (h0, c0))
    y, (hl, cl) = layer(x[None], (h0[None], c0[None]))
    np.testing.assert_allclose(h, hl[0], rtol=1e-13, atol=1e-14)
    np.testing.assert_allclose(c, cl[0], rtol=1e-13, atol=1e-14)
    dh, dc = rng.standard_normal((2, 4)), rng.standard_normal((2, 4))

    def loss():
        hh, cc = cell(x, (h0, c0))
        cell._tape.clear()
        return float((hh * dh).sum() + (cc * dc).sum())

    cell.zero_grad()
    cell(x, (h0, c0))
    dx, _ = cell.backward(dh, dc)
    for name in cell.grads:
        num = parameter_gradient(cell, name, loss)
        np.testing.assert_allclose(cell.grads[name], num, rtol=1e-6, atol=1e-8, err_msg=name)
    np.testing.assert_allclose(dx, numerical_gradient(loss, x), rtol=1e-6, atol=1e-8)


def test_options_are_checked_and_what_has_no_form_refuses():
    with pytest.raises(TypeError, match="layer_norm must be a bool"):
        pylstm.LSTM(3, 4, layer_norm=1)
    with pytest.raises(ValueError, match="layer_norm is not combined with peepholes or proj_size"):
        pylstm.LSTM(3, 4, layer_norm=True, proj_size=2)
    with pytest.raises(ValueError, match="layer_norm is not combined"):
        pylstm.LSTMCell(3, 4, layer_norm=True, peepholes=True)
    m = pylstm.LSTM(3, 4, layer_norm=True)
    with pytest.raises(ValueError, match="layer_norm"):
        pylstm.quantize(m, "int8")
    with pytest.raises(ValueError, match="torch.nn.LSTM has no layer norm"):
        m._torch_config()
    with pytest.raises(ValueError, match="torch.nn.LSTMCell has no layer norm"):
        pylstm.LSTMCell(3, 4, layer_norm=True)._torch_config()


def test_from_pylstm_torch_keeps_the_layer_norm():
    torch = pytest.importorskip("torch")
    import pylstm.torch as pt

    t = pt.LSTM(3, 4, layer_norm=True, dtype=torch.float64)
    with torch.no_grad():
        t.ln_bias_c_l0.add_(0.5)
    m = pylstm.LSTM.from_torch(t)
    assert m.layer_norm and m.dtype == np.float64
    x = np.random.default_rng(0).standard_normal((5, 2, 3))
    np.testing.assert_allclose(m.eval()(x)[0], t(torch.from_numpy(x))[0].detach().numpy(), rtol=1e-12, atol=1e-14)


def test_onnx_export_refuses_layer_norm():
    onnx = pytest.importorskip("pylstm.onnx", exc_type=ImportError)
    with pytest.raises(ValueError, match="layer_norm has no ONNX form"):
        onnx.export(pylstm.LSTM(3, 4, layer_norm=True), "/nonexistent/never-written.onnx")
