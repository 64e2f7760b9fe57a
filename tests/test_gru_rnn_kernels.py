"""GRU (both forms) and RNN (tanh, relu): the reference's backward against finite differences, and every output
and gradient of the compiled kernels against the reference."""

import numpy as np
import pytest
from helpers import TOL, assert_all_close, assert_lengths_match_single_rows, num_threads, numerical_gradient, rel_err

import pylstm
from pylstm import _core
from pylstm import reference as ref

pytestmark = pytest.mark.usefixtures("time_loops")  # every test under both loop forms

VARIANTS = {  # name: (kernel prefix, gates, keyword arguments)
    "gru": ("gru", 3, dict(linear_before_reset=True)),
    "gru-original": ("gru", 3, dict(linear_before_reset=False)),
    "rnn-tanh": ("rnn", 1, dict(nonlinearity="tanh")),
    "rnn-relu": ("rnn", 1, dict(nonlinearity="relu")),
    "rnn-sigmoid": ("rnn", 1, dict(nonlinearity="sigmoid")),  # not in torch: pylstm activations' comparison
}
SHAPES = [(1, 1, 1, 1), (1, 3, 4, 3), (5, 1, 3, 17), (6, 4, 7, 3), (4, 2, 17, 16), (3, 5, 8, 33)]


def _case(rng, G, dt, T, N, I, H, with_state=True, with_bias=True):
    d = dict(x=rng.standard_normal((T, N, I)), h0=rng.standard_normal((N, H)) if with_state else None,
             W_ih=rng.uniform(-0.6, 0.6, (G * H, I)), W_hh=rng.uniform(-0.6, 0.6, (G * H, H)),
             b_ih=rng.uniform(-0.6, 0.6, G * H) if with_bias else None,
             b_hh=rng.uniform(-0.6, 0.6, G * H) if with_bias else None)
    return {k: None if v is None else v.astype(dt) for k, v in d.items()}


def _wide_case(rng, G, dt, T, N, I, H):
    """_case with sums of about H terms, its weights scaled so that float32's rounding stays within TOL at H = 200,
    and the output gradients dy and dh_n."""
    c = _case(rng, G, dt, T, N, I, H)
    for k in ("W_ih", "W_hh"):
        c[k] = c[k] * np.asarray(0.25, dt)
    return c, rng.standard_normal((T, N, H)).astype(dt), rng.standard_normal((N, H)).astype(dt)


def _run(impl, prefix, kw, c, reverse, dy, dh_n, y=None, grad_start=0.0):
    fwd, bwd = getattr(impl, prefix + "_forward"), getattr(impl, prefix + "_backward")
    args = [c[k] for k in ("x", "h0", "W_ih", "W_hh", "b_ih", "b_hh")]
    y, h_n, cache = fwd(*args, reverse=reverse, training=True, y=y, **kw)
    grads = [None if a is None else np.full_like(a, grad_start) for a in args[2:]]
    dx, dh0 = bwd(dy, dh_n, c["x"], c["h0"], c["W_ih"], c["W_hh"], y, cache, *grads, reverse=reverse, **kw)
    out = dict(y=y, h_n=h_n, dx=dx, dh0=dh0, dW_ih=grads[0], dW_hh=grads[1])
    if grads[2] is not None:
        out.update(db_ih=grads[2], db_hh=grads[3])
    return out


@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("with_state,with_bias", [(True, True), (False, True), (True, False)])
def test_reference_backward_matches_finite_differences(rng, variant, reverse, with_state, with_bias):
    prefix, G, kw = VARIANTS[variant]
    T, N, I, H = 4, 2, 3, 3
    c = _case(rng, G, "float64", T, N, I, H, with_state, with_bias)
    if c["h0"] is None:  # the gradient for an absent state is the one at zero: check it there
        c["h0"] = np.zeros((N, H))
    Ry, Rh = rng.standard_normal((T, N, H)), rng.standard_normal((N, H))
    fwd = getattr(ref, prefix + "_forward")

    def loss():
        y, h_n, _ = fwd(*(c[k] for k in ("x", "h0", "W_ih", "W_hh", "b_ih", "b_hh")), reverse=reverse,
                        training=False, **kw)
        return np.sum(y * Ry) + np.sum(h_n * Rh)

    got = _run(ref, prefix, kw, c, reverse, Ry, Rh)
    names = dict(x="dx", h0="dh0", W_ih="dW_ih", W_hh="dW_hh", b_ih="db_ih", b_hh="db_hh")
    checked = 0
    for name, gname in names.items():
        value = c[name]
        if value is None:
            continue
        num = numerical_gradient(loss, value)
        err = np.max(np.abs(num - got[gname])) / max(np.max(np.abs(num)), 1e-12)
        assert err < 1e-7, f"{gname}: relative error {err:.2e}"
        checked += 1
    assert checked == (6 if with_bias else 4)


@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("dt", ["float64", "float32"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "T%d-N%d-I%d-H%d" % s)
@pytest.mark.parametrize("reverse", [False, True])
def test_kernels_match_reference(rng, variant, dt, shape, reverse):
    prefix, G, kw = VARIANTS[variant]
    T, N, I, H = shape
    c = _case(rng, G, dt, T, N, I, H)
    dy, dh_n = rng.standard_normal((T, N, H)).astype(dt), rng.standard_normal((N, H)).astype(dt)
    assert_all_close(_run(_core, prefix, kw, c, reverse, dy, dh_n), _run(ref, prefix, kw, c, reverse, dy, dh_n), dt)


@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("dt", ["float64", "float32"])
@pytest.mark.parametrize("with_state,with_bias,with_dout", [(False, True, True), (True, False, False),
                                                            (False, False, False)])
def test_optional_arguments_and_strided_output(rng, variant, dt, with_state, with_bias, with_dout):
    prefix, G, kw = VARIANTS[variant]
    T, N, I, H = 4, 3, 5, 6
    c = _case(rng, G, dt, T, N, I, H, with_state, with_bias)
    wide, dwide = np.zeros((T, N, 2 * H), dt), rng.standard_normal((T, N, 2 * H)).astype(dt)
    dy = dwide[:, :, H:] if with_dout else None
    dh_n = None if with_dout else rng.standard_normal((N, H)).astype(dt)
    for reverse in (False, True):
        got = _run(_core, prefix, kw, c, reverse, dy, dh_n, y=wide[:, :, H:], grad_start=1.0)
        want = _run(ref, prefix, kw, c, reverse, None if dy is None else dy.copy(), dh_n, grad_start=1.0)
        assert_all_close(got, want, dt)
        assert not wide[:, :, :H].any()


@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("reverse", [False, True])
def test_inference_in_blocks_matches_reference(rng, variant, reverse):
    prefix, G, kw = VARIANTS[variant]
    c = _case(rng, G, "float64", 40, 9, 5, 4)
    args = [c[k] for k in ("x", "h0", "W_ih", "W_hh", "b_ih", "b_hh")]
    got = getattr(_core, prefix + "_forward")(*args, reverse=reverse, training=False, **kw)
    want = getattr(ref, prefix + "_forward")(*args, reverse=reverse, training=False, **kw)
    assert got[2] is None
    for a, b in zip(got[:2], want[:2]):
        assert rel_err(a, b) <= TOL["float64"]


def test_unknown_nonlinearity_is_a_value_error():
    x = np.zeros((2, 1, 3))
    with pytest.raises(ValueError, match="nonlinearity"):
        _core.rnn_forward(x, None, np.zeros((2, 3)), np.zeros((2, 2)), None, None, nonlinearity="softplus")


def test_relu_gradient_is_zero_where_the_unit_is_off(rng):
    c = _case(rng, 1, "float64", 5, 4, 3, 6)
    got = _run(_core, "rnn", dict(nonlinearity="relu"), c, False, np.ones((5, 4, 6)), None)
    assert (got["y"] == 0).any() and (got["y"] > 0).any()


@pytest.mark.parametrize("dtype, H", [(np.float32, 1024), (np.float64, 512)])
def test_gru_long_rows_use_a_dense_buffer(dtype, H):
    """A GRU whose recurrent-term rows lie a multiple of 4 KB apart over a long reduction takes the fused forward's
    dense buffer (kernels.inc); forward and backward match the reference, and variable lengths match each sequence
    run alone (one row: the in-place path)."""
    rng = np.random.default_rng(5)
    T, N, I = 4, 9, 24
    m = pylstm.GRU(I, H, seed=0, dtype=np.dtype(dtype).name).train()
    p = m.state_dict()
    W = [p[k] for k in ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0")]
    x = rng.standard_normal((T, N, I)).astype(dtype)
    h0 = rng.standard_normal((1, N, H)).astype(dtype)
    tol = 2e-5 if dtype == np.float32 else 1e-11
    y, h_n = m(x, h0)
    ry, rh, cache = ref.gru_forward(x, h0[0], *W, training=True)
    np.testing.assert_allclose(y, ry, rtol=tol, atol=tol)
    np.testing.assert_allclose(h_n[0], rh, rtol=tol, atol=tol)
    dy = rng.standard_normal(y.shape).astype(dtype)
    dx, _ = m.backward(dy)
    G = [np.zeros_like(w) for w in W]
    rdx, _ = ref.gru_backward(dy, None, x, h0[0], W[0], W[1], ry, cache, *G)
    np.testing.assert_allclose(dx, rdx, rtol=tol * 10, atol=tol * 10)
    np.testing.assert_allclose(m.grads["weight_hh_l0"], G[1], rtol=tol * 10, atol=tol * 10)
    assert_lengths_match_single_rows(m.eval(), x, h0, np.array([4, 1, 3, 4, 2, 4, 1, 3, 2]), tol)


@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
@pytest.mark.parametrize("dt", ["float64", "float32"])
@pytest.mark.parametrize("H", [130, 200])
@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("reverse", [False, True])
def test_rnn_block_groups_match_reference(rng, nonlinearity, dt, H, threads, reverse):
    """The RNN's fused loop packs each thread's runs of four whole unit blocks as one block (isa/pack.inc,
    rnn_groups): with H = 130 and 200 at every level's lane count there are groups, blocks left over after a group
    and a ragged last block, over 1, 2 and 3 threads' splits; inputs small enough for the loop's own projection (its
    W_ih in groups too). Training forward and backward, and inference, against the reference."""
    kw = dict(nonlinearity=nonlinearity)
    c, dy, dh_n = _wide_case(rng, 1, dt, 4, 7, 9, H)
    with num_threads(threads):
        assert_all_close(_run(_core, "rnn", kw, c, reverse, dy, dh_n), _run(ref, "rnn", kw, c, reverse, dy, dh_n),
                         dt)
        args = [c[k] for k in ("x", "h0", "W_ih", "W_hh", "b_ih", "b_hh")]
        y, h_n, _ = _core.rnn_forward(*args, reverse=reverse, training=False, **kw)
        ry, rh, _ = ref.rnn_forward(*args, reverse=reverse, training=False, **kw)
        assert_all_close(dict(y=y, h_n=h_n), dict(y=ry, h_n=rh), dt)


@pytest.mark.parametrize("variant", ["gru", "gru-original", "rnn-tanh"])
@pytest.mark.parametrize("dt", ["float64", "float32"])
@pytest.mark.parametrize("H", [64, 130, 200])
@pytest.mark.parametrize("threads", [1, 2, 3])
def test_backward_column_groups_match_reference(rng, variant, dt, H, threads):
    """The fused backward reads W_hh by column groups that each thread packs for its own columns (isa/tiles.inc,
    pack_own_groups; the GRU's n rows from the same copy): with H = 64, 130 and 200 over 1, 2 and 3 threads, some
    threads have whole groups and some none. Forward and backward against the reference, both directions."""
    prefix, G, kw = VARIANTS[variant]
    c, dy, dh_n = _wide_case(rng, G, dt, 3, 7, 5, H)
    with num_threads(threads):
        for reverse in (False, True):
            assert_all_close(_run(_core, prefix, kw, c, reverse, dy, dh_n), _run(ref, prefix, kw, c, reverse, dy, dh_n),
                             dt)
