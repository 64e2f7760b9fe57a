"""Every output and gradient of the compiled LSTM kernels (pylstm._core) against the NumPy reference, per layer
direction."""

import numpy as np
import pytest
from helpers import TOL, assert_all_close, assert_lengths_match_single_rows, num_threads, rel_err

import pylstm
from pylstm import _core
from pylstm import reference as ref

pytestmark = pytest.mark.usefixtures("time_loops")  # every test under both loop forms

SHAPES = [  # (T, N, I, H): T=1, N=1, hidden sizes off the SIMD width, I != H
    (1, 1, 1, 1),
    (1, 3, 4, 3),
    (5, 1, 3, 17),
    (6, 4, 7, 3),
    (4, 2, 17, 16),
    (3, 5, 8, 33),
]


def _case(rng, dt, T, N, I, H, with_state=True, with_bias=True):
    d = dict(
        x=rng.standard_normal((T, N, I)),
        h0=rng.standard_normal((N, H)) if with_state else None,
        c0=rng.standard_normal((N, H)) if with_state else None,
        W_ih=rng.uniform(-0.6, 0.6, (4 * H, I)),
        W_hh=rng.uniform(-0.6, 0.6, (4 * H, H)),
        b_ih=rng.uniform(-0.6, 0.6, 4 * H) if with_bias else None,
        b_hh=rng.uniform(-0.6, 0.6, 4 * H) if with_bias else None,
    )
    return {k: None if v is None else v.astype(dt) for k, v in d.items()}


def _run(impl, c, reverse, dy, dh_n, dc_n, y=None, grad_start=0.0):
    args = [c[k] for k in ("x", "h0", "c0", "W_ih", "W_hh", "b_ih", "b_hh")]
    y, h_n, c_n, cache = impl.lstm_forward(*args, reverse=reverse, training=True, y=y)
    grads = [None if a is None else np.full_like(a, grad_start) for a in args[3:]]
    dx, dh0, dc0 = impl.lstm_backward(dy, dh_n, dc_n, c["x"], c["h0"], c["c0"], c["W_ih"], c["W_hh"], y, cache,
                                      *grads, reverse=reverse)
    out = dict(y=y, h_n=h_n, c_n=c_n, dx=dx, dh0=dh0, dc0=dc0, dW_ih=grads[0], dW_hh=grads[1])
    if grads[2] is not None:
        out.update(db_ih=grads[2], db_hh=grads[3])
    return out


@pytest.mark.parametrize("dt", ["float64", "float32"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "T%d-N%d-I%d-H%d" % s)
@pytest.mark.parametrize("reverse", [False, True])
def test_forward_backward_match_reference(rng, dt, shape, reverse):
    T, N, I, H = shape
    c = _case(rng, dt, T, N, I, H)
    dy, dh_n, dc_n = (rng.standard_normal(s).astype(dt) for s in [(T, N, H), (N, H), (N, H)])
    assert_all_close(_run(_core, c, reverse, dy, dh_n, dc_n), _run(ref, c, reverse, dy, dh_n, dc_n), dt)


@pytest.mark.parametrize("dt", ["float64", "float32"])
@pytest.mark.parametrize("with_state,with_bias,with_dout", [
    (False, True, True), (True, False, True), (False, False, False), (True, True, False)])
def test_optional_arguments_match_reference(rng, dt, with_state, with_bias, with_dout):
    T, N, I, H = 4, 3, 5, 6
    c = _case(rng, dt, T, N, I, H, with_state, with_bias)
    dy = rng.standard_normal((T, N, H)).astype(dt) if with_dout else None
    dh_n, dc_n = (None, None) if with_dout else (rng.standard_normal((N, H)).astype(dt) for _ in range(2))
    for reverse in (False, True):
        assert_all_close(_run(_core, c, reverse, dy, dh_n, dc_n), _run(ref, c, reverse, dy, dh_n, dc_n), dt)


@pytest.mark.parametrize("dt", ["float64", "float32"])
def test_gradients_accumulate(rng, dt):
    T, N, I, H = 3, 2, 4, 5
    c = _case(rng, dt, T, N, I, H)
    dy = rng.standard_normal((T, N, H)).astype(dt)
    base = _run(_core, c, False, dy, None, None)
    shifted = _run(_core, c, False, dy, None, None, grad_start=2.0)
    for k in ("dW_ih", "dW_hh", "db_ih", "db_hh"):
        np.testing.assert_allclose(shifted[k], base[k] + 2.0, rtol=TOL[dt], atol=TOL[dt] * 4)


@pytest.mark.parametrize("dt", ["float64", "float32"])
def test_strided_output_and_output_gradient(rng, dt):
    # One direction of a bidirectional layer writes into, and reads its gradient from, a column slice.
    T, N, I, H = 5, 3, 4, 6
    c = _case(rng, dt, T, N, I, H)
    wide = np.full((T, N, 3 * H), 7.0, dt)
    dwide = rng.standard_normal((T, N, 3 * H)).astype(dt)
    for reverse in (False, True):
        got = _run(_core, c, reverse, dwide[:, :, H:2 * H], None, None, y=wide[:, :, H:2 * H])
        want = _run(ref, c, reverse, np.ascontiguousarray(dwide[:, :, H:2 * H]), None, None)
        assert_all_close(got, want, dt)
        assert np.all(wide[:, :, :H] == 7.0) and np.all(wide[:, :, 2 * H:] == 7.0)


def test_backward_consumes_the_cache(rng):
    c = _case(rng, "float64", 3, 2, 2, 2)
    args = [c[k] for k in ("x", "h0", "c0", "W_ih", "W_hh", "b_ih", "b_hh")]
    y, _, _, cache = _core.lstm_forward(*args)
    before = cache.copy()
    _core.lstm_backward(np.ones_like(y), None, None, *args[:5], y, cache, *[np.zeros_like(a) for a in args[3:]])
    assert not np.array_equal(before, cache)


def test_inference_keeps_no_cache(rng):
    c = _case(rng, "float32", 3, 2, 2, 2)
    args = [c[k] for k in ("x", "h0", "c0", "W_ih", "W_hh", "b_ih", "b_hh")]
    y, h_n, c_n, cache = _core.lstm_forward(*args, training=False)
    assert cache is None
    y2, h2, c2, _ = _core.lstm_forward(*args, training=True)
    np.testing.assert_array_equal(y, y2)
    np.testing.assert_array_equal(h_n, h2)
    np.testing.assert_array_equal(c_n, c2)


@pytest.mark.parametrize("dt", ["float64", "float32"])
@pytest.mark.parametrize("reverse", [False, True])
def test_inference_in_blocks_of_steps_matches_reference(rng, dt, reverse):
    # Inference projects the inputs ~256 rows at a time: T*N = 360 gives two blocks, the last one partial.
    c = _case(rng, dt, 40, 9, 5, 4)
    args = [c[k] for k in ("x", "h0", "c0", "W_ih", "W_hh", "b_ih", "b_hh")]
    got = _core.lstm_forward(*args, reverse=reverse, training=False)
    want = ref.lstm_forward(*args, reverse=reverse, training=False)
    for k, a, b in zip(("y", "h_n", "c_n"), got[:3], want[:3]):
        assert rel_err(a, b) <= TOL[dt], k


def _misaligned(shape):
    buf = np.zeros(int(np.prod(shape)) * 4 + 1, np.uint8)
    return np.frombuffer(buf.data, np.float32, count=int(np.prod(shape)), offset=1).reshape(shape)


@pytest.mark.parametrize("bad,exc,word", [
    (dict(x=np.zeros((2, 3), "f4")), ValueError, "^x must be 3-D"),
    (dict(x=np.zeros((2, 1, 3), "i4")), TypeError, "^x must have dtype"),
    (dict(h0=np.zeros((2, 2), "f4")), ValueError, "^h0 must have shape"),
    (dict(h0=np.zeros((1, 2), "f8")), TypeError, "^h0 must have dtype"),
    (dict(W_ih=np.zeros((8, 4), "f4")), ValueError, "^W_ih must have shape"),
    (dict(b_hh=None), ValueError, "b_hh"),
    (dict(y=np.zeros((2, 1, 2), "f4")[::-1]), ValueError, "^y must be C-contiguous"),
    (dict(h0=[[0.0, 0.0]]), TypeError, "^h0 must be a numpy.ndarray"),
    (dict(c0=_misaligned((1, 2))), ValueError, "^c0 must be aligned"),
    (dict(y="x"), ValueError, "^y must not share memory with x"),
])
def test_kernel_arguments_are_checked(bad, exc, word):
    T, N, I, H = 2, 1, 3, 2
    args = dict(x=np.zeros((T, N, I), "f4"), h0=None, c0=None, W_ih=np.zeros((4 * H, I), "f4"),
                W_hh=np.zeros((4 * H, H), "f4"), b_ih=np.zeros(4 * H, "f4"), b_hh=np.zeros(4 * H, "f4"))
    bad = dict(bad)  # the parameter's dict is shared by both loop forms: leave it whole
    y = bad.pop("y", None)
    args.update(bad)
    if isinstance(y, str):  # an output that aliases an input
        args["x"] = np.zeros((T, N, H), "f4")
        args["W_ih"] = np.zeros((4 * H, H), "f4")
        y = args["x"]
    with pytest.raises(exc, match=word):
        _core.lstm_forward(*args.values(), y=y)


def _backward_args(T=3, N=2, I=2, H=2):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((T, N, I))
    W_ih, W_hh = rng.standard_normal((4 * H, I)), rng.standard_normal((4 * H, H))
    b = np.zeros(4 * H)
    y, _, _, cache = _core.lstm_forward(x, None, None, W_ih, W_hh, b, b.copy())
    return dict(dy=np.ones_like(y), dh_n=None, dc_n=None, x=x, h0=None, c0=None, W_ih=W_ih, W_hh=W_hh, y=y,
                cache=cache, dW_ih=np.zeros_like(W_ih), dW_hh=np.zeros_like(W_hh), db_ih=np.zeros(4 * H),
                db_hh=np.zeros(4 * H))


@pytest.mark.parametrize("change,word", [
    (lambda a: a.update(cache=a["cache"][:-1]), "^cache must have shape"),
    (lambda a: a["dW_hh"].setflags(write=False), "^dW_hh must be writable"),
    (lambda a: a.update(db_hh=a["db_ih"]), "^db_ih must not share memory with db_hh"),
    (lambda a: a.update(dW_ih=a["W_ih"]), "^dW_ih must not share memory with W_ih"),
    (lambda a: a.update(dy=np.ones((3, 2, 4))[:, :, ::2]), "^dy must be C-contiguous"),
])
def test_backward_arguments_are_checked(change, word):
    a = _backward_args()
    change(a)
    with pytest.raises(ValueError, match=word):
        _core.lstm_backward(*a.values())


def test_equal_but_distinct_dtype_objects_are_accepted():
    # An unpickled array's dtype is equal to, but not the same object as, np.dtype("float32").
    import pickle
    a = _backward_args()
    x = pickle.loads(pickle.dumps(a["x"]))
    assert x.dtype == a["x"].dtype
    y, *_ = _core.lstm_forward(x, None, None, a["W_ih"], a["W_hh"], None, None, training=False)
    assert np.isfinite(y).all()


@pytest.mark.parametrize("dtype, H", [(np.float32, 1024), (np.float64, 512)])
def test_long_rows_accumulate_in_a_dense_copy(dtype, H):
    """Hidden sizes whose gate rows lie a multiple of 4 KB apart with a long reduction take the fused forward's dense
    accumulation (kernels.inc); forward and backward match the reference, and variable lengths match each sequence
    run alone (one row: the in-place path)."""
    rng = np.random.default_rng(3)
    T, N, I = 4, 9, 24
    m = pylstm.LSTM(I, H, seed=0, dtype=np.dtype(dtype).name).train()
    p = m.state_dict()
    W = [p[k] for k in ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0")]
    x = rng.standard_normal((T, N, I)).astype(dtype)
    h0 = rng.standard_normal((1, N, H)).astype(dtype)
    c0 = rng.standard_normal((1, N, H)).astype(dtype)
    tol = 2e-5 if dtype == np.float32 else 1e-11
    y, (h_n, c_n) = m(x, (h0, c0))
    ry, rh, rc, cache = ref.lstm_forward(x, h0[0], c0[0], *W, training=True)
    np.testing.assert_allclose(y, ry, rtol=tol, atol=tol)
    np.testing.assert_allclose(c_n[0], rc, rtol=tol, atol=tol)
    dy = rng.standard_normal(y.shape).astype(dtype)
    dx, _ = m.backward(dy)
    G = [np.zeros_like(w) for w in W]
    rdx, *_ = ref.lstm_backward(dy, None, None, x, h0[0], c0[0], W[0], W[1], ry, cache, *G)
    np.testing.assert_allclose(dx, rdx, rtol=tol * 10, atol=tol * 10)
    np.testing.assert_allclose(m.grads["weight_hh_l0"], G[1], rtol=tol * 10, atol=tol * 10)
    assert_lengths_match_single_rows(m.eval(), x, (h0, c0), np.array([4, 1, 3, 4, 2, 4, 1, 3, 2]), tol)


@pytest.mark.parametrize("dt", ["float64", "float32"])
@pytest.mark.parametrize("H", [64, 130, 200])
@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("reverse", [False, True])
def test_backward_column_groups_match_reference(rng, dt, H, threads, reverse):
    """The fused backwards read W_hh by column groups that each thread packs for its own columns (isa/tiles.inc,
    pack_own_groups): with H = 64, 130 and 200 over 1, 2 and 3 threads, some threads have whole groups and some
    none, and columns outside the groups read W_hh in place. Forward and backward against the reference."""
    T, N, I = 3, 7, 5
    c = _case(rng, dt, T, N, I, H)
    for k in ("W_ih", "W_hh"):  # sums of about 200 terms: scaled so that float32's rounding stays within TOL
        c[k] = c[k] * np.asarray(0.25, dt)
    dy, dh_n, dc_n = (rng.standard_normal(s).astype(dt) for s in [(T, N, H), (N, H), (N, H)])
    with num_threads(threads):
        got = _run(_core, c, reverse, dy, dh_n, dc_n)
    assert_all_close(got, _run(ref, c, reverse, dy, dh_n, dc_n), dt)
