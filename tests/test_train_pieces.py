"""The training step's pieces in the core (Linear, softmax cross-entropy, Adam, SGD, clipping) against their NumPy
twins in pylstm.reference, through the public modules and the core directly; and their errors."""

import numpy as np
import pytest

import pylstm
from pylstm import _core, nn, optim
from pylstm import reference as ref

TOL = {np.float32: 2e-5, np.float64: 1e-12}


def _close(got, want, dtype):
    np.testing.assert_allclose(got, want, rtol=TOL[dtype], atol=TOL[dtype] * max(1.0, float(np.abs(want).max())))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(3, 5), (2048, 256), (7, 4, 33)])
@pytest.mark.parametrize("bias", [True, False])
def test_linear_matches_the_reference(rng, dtype, shape, bias):
    I, O = shape[-1], 19
    W = rng.standard_normal((O, I)).astype(dtype)
    b = rng.standard_normal(O).astype(dtype) if bias else None
    x = rng.standard_normal(shape).astype(dtype)
    x2 = x.reshape(-1, I)
    _close(_core.linear_forward(x2, W, b), ref.linear_forward(x2, W, b), dtype)
    dy = rng.standard_normal((x2.shape[0], O)).astype(dtype)
    dW0 = rng.standard_normal((O, I)).astype(dtype)
    db0 = rng.standard_normal(O).astype(dtype) if bias else None
    dW, db = dW0.copy(), None if db0 is None else db0.copy()
    rdW, rdb = dW0.copy(), None if db0 is None else db0.copy()
    dx = _core.linear_backward(dy, x2, W, dW, db)
    rdx = ref.linear_backward(dy, x2, W, rdW, rdb)
    _close(dx, rdx, dtype)
    _close(dW, rdW, dtype)
    if bias:
        _close(db, rdb, dtype)
    assert _core.linear_backward(dy, x2, W, dW, db, input_grad=False) is None


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_linear_module_on_any_layout(rng, dtype):
    head = nn.Linear(12, 7, dtype=np.dtype(dtype).name, seed=0)
    x = rng.standard_normal((12, 9, 5)).astype(dtype).transpose(2, 1, 0)  # (5, 9, 12), not C-ordered
    y = head(x)
    W, b = head.state_dict()["weight"], head.state_dict()["bias"]
    _close(y, x @ W.T + b, dtype)
    dy = rng.standard_normal(y.shape).astype(dtype)
    dx = head.backward(dy)
    _close(dx, dy @ W, dtype)
    _close(head.grads["weight"], dy.reshape(-1, 7).T @ x.reshape(-1, 12), dtype)
    _close(head.grads["bias"], dy.reshape(-1, 7).sum(0), dtype)
    with pytest.raises(ValueError, match="dy must have shape"):
        head.backward(dy[:, :3])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("N, C, scale", [(1, 1, 1.0), (5, 3, 1.0), (2048, 96, 3.0), (64, 1000, 40.0), (3, 4, 1e4)])
def test_softmax_cross_entropy_matches_the_reference(rng, dtype, N, C, scale):
    logits = (scale * rng.standard_normal((N, C))).astype(dtype)
    targets = rng.integers(0, C, N)
    loss, d = _core.softmax_cross_entropy(logits, targets)
    rloss, rd = ref.softmax_cross_entropy(logits, targets)
    assert d.dtype == dtype
    assert loss == pytest.approx(rloss, rel=1e-6 if dtype == np.float32 else 1e-12, abs=1e-6)
    _close(d, rd, dtype)
    assert np.isfinite(d).all()


def test_softmax_cross_entropy_module_shapes_and_errors(rng):
    logits = rng.standard_normal((4, 6, 10)).astype(np.float32)
    t = rng.integers(0, 10, (4, 6)).astype(np.int32)
    loss, d = nn.softmax_cross_entropy(logits, t)
    rloss, rd = ref.softmax_cross_entropy(logits.reshape(-1, 10), t.ravel().astype(np.int64))
    assert d.shape == logits.shape and loss == pytest.approx(rloss, rel=1e-6)
    with pytest.raises(ValueError, match="targets must be in"):
        nn.softmax_cross_entropy(logits, t + 10)
    with pytest.raises(TypeError, match="targets must hold integers"):
        nn.softmax_cross_entropy(logits, t.astype(np.float32))
    with pytest.raises(ValueError, match="targets must have shape"):
        nn.softmax_cross_entropy(logits, t[:2])
    with pytest.raises(TypeError, match="logits must have dtype"):
        nn.softmax_cross_entropy(logits.astype(np.float16), t)
    with pytest.raises(ValueError, match="targets must be in"):
        _core.softmax_cross_entropy(logits.reshape(-1, 10), np.full(24, -1, np.int64))
    with pytest.raises(TypeError, match="targets must have dtype int64"):
        _core.softmax_cross_entropy(logits.reshape(-1, 10), t.ravel())


def _tensors(rng, dtype, shapes=((40, 30), (17,), (600, 300), (1,))):
    return [rng.standard_normal(s).astype(dtype) for s in shapes]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_adam_and_sgd_steps_match_the_reference(rng, dtype):
    params, grads = _tensors(rng, dtype), _tensors(rng, dtype)
    m = [np.abs(a) for a in _tensors(rng, dtype)]
    v = [np.abs(a) for a in _tensors(rng, dtype)]
    rp, rm, rv = ([a.copy() for a in arrs] for arrs in (params, m, v))
    for step in (1, 2, 7):
        _core.adam_step(params, grads, m, v, lr=3e-3, b1=0.9, b2=0.999, eps=1e-8, step=step)
        ref.adam_step(rp, grads, rm, rv, lr=3e-3, b1=0.9, b2=0.999, eps=1e-8, step=step)
    for a, b in zip(params + m + v, rp + rm + rv):
        _close(a, b, dtype)
    bufs = _tensors(rng, dtype)
    rp, rb = [a.copy() for a in params], [a.copy() for a in bufs]
    _core.sgd_step(params, grads, bufs, lr=0.1, momentum=0.9)
    ref.sgd_step(rp, grads, rb, lr=0.1, momentum=0.9)
    _core.sgd_step(params, grads, None, lr=0.1, momentum=0.0)
    ref.sgd_step(rp, grads, None, lr=0.1, momentum=0.0)
    for a, b in zip(params + bufs, rp + rb):
        _close(a, b, dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_grad_norm_and_scale_match_the_reference(rng, dtype):
    grads = _tensors(rng, dtype)
    assert _core.grad_norm(grads) == pytest.approx(ref.grad_norm(grads), rel=1e-12)
    want = [g * dtype(0.25) for g in grads]
    _core.scale_grads(grads, 0.25)
    for g, w in zip(grads, want):
        _close(g, w, dtype)
    assert _core.grad_norm([]) == 0.0


def test_optimizer_lists_are_checked(rng):
    p, g = _tensors(rng, np.float32)[:2], _tensors(rng, np.float32)[:2]
    m, v = [np.zeros_like(a) for a in p], [np.zeros_like(a) for a in p]
    with pytest.raises(ValueError, match="grads must have as many arrays as params"):
        _core.adam_step(p, g[:1], m, v, lr=1e-3, b1=0.9, b2=0.999, eps=1e-8, step=1)
    with pytest.raises(ValueError, match=r"grads\[1\] must have shape"):
        _core.adam_step(p, [g[0], g[0]], m, v, lr=1e-3, b1=0.9, b2=0.999, eps=1e-8, step=1)
    with pytest.raises(TypeError, match=r"m\[0\] must have dtype float32"):
        _core.adam_step(p, g, [a.astype(np.float64) for a in m], v, lr=1e-3, b1=0.9, b2=0.999, eps=1e-8, step=1)
    with pytest.raises(ValueError, match="must not share memory"):
        _core.adam_step(p, p, m, v, lr=1e-3, b1=0.9, b2=0.999, eps=1e-8, step=1)
    ro = p[0].copy()
    ro.flags.writeable = False
    with pytest.raises(ValueError, match=r"params\[0\] must be writable"):
        _core.sgd_step([ro], [g[0]], None, lr=0.1, momentum=0.0)


@pytest.mark.parametrize("opt_cls, kwargs", [(optim.Adam, {"lr": 1e-2}), (optim.SGD, {"lr": 0.1, "momentum": 0.9}),
                                             (optim.SGD, {"lr": 0.1})])
def test_optimizers_over_mixed_dtype_modules_match_the_reference(rng, opt_cls, kwargs):
    """Three steps of clip_grad_norm and the optimizer on a float32 LSTM and a float64 head, against the reference
    functions run on copies of the same parameters, gradients and states."""
    lstm = pylstm.LSTM(6, 8, seed=0)
    head = nn.Linear(8, 3, dtype="float64", seed=1)
    mods = {"lstm": lstm, "head": head}
    opt = opt_cls([lstm, head], **kwargs)
    params = {(m, k): p.copy() for m, mod in mods.items() for k, p in mod.state_dict().items()}
    state = {key: (np.zeros_like(p), np.zeros_like(p)) for key, p in params.items()}
    mom = kwargs.get("momentum", 0.0)
    for step in range(1, 4):
        grads = {}
        for m, mod in mods.items():
            for k, gr in mod.grads.items():
                gr[...] = rng.standard_normal(gr.shape)
                grads[(m, k)] = gr.copy()
        norm = optim.clip_grad_norm([lstm, head], 0.5)
        want_norm = ref.grad_norm(list(grads.values()))
        assert norm == pytest.approx(want_norm, rel=1e-12)
        ref.scale_grads(list(grads.values()), 0.5 / (want_norm + 1e-6))
        opt.step()
        for key, p in params.items():
            m1, m2 = state[key]
            if opt_cls is optim.Adam:
                ref.adam_step([p], [grads[key]], [m1], [m2], lr=1e-2, b1=0.9, b2=0.999, eps=1e-8, step=step)
            else:
                ref.sgd_step([p], [grads[key]], [m1] if mom else None, lr=0.1, momentum=mom)
    for (m, k), p in params.items():
        _close(mods[m].state_dict()[k], p, p.dtype.type)


# ---- the regularizers' masks (train.h, bernoulli_fill) ----

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape,p,seed", [((100, 32, 64), 0.1, 12345), ((7,), 0.5, 2**63 - 1), ((3, 5), 0.0, 1),
                                          ((40000,), 0.999, 99), ((4, 4), 1.0, 3)])
def test_bernoulli_equals_the_reference_value_for_value(dtype, shape, p, seed):
    out = np.full(shape, np.nan, dtype)
    _core.bernoulli(out, p, seed, below=2.0, above=-1.0)
    np.testing.assert_array_equal(out, ref.bernoulli(shape, p, seed, below=2.0, above=-1.0, dtype=dtype))
    if out.size > 1000:
        assert abs((out == 2.0).mean() - p) < 4 * np.sqrt(p * (1 - p) / out.size) + 1e-12


def test_bernoulli_does_not_depend_on_the_threads_and_checks_its_arguments():
    a, b = np.empty(200_000, np.float32), np.empty(200_000, np.float32)
    _core.bernoulli(a, 0.3, 5)
    threads = pylstm.get_num_threads()
    try:
        pylstm.set_num_threads(1)
        _core.bernoulli(b, 0.3, 5)
    finally:
        pylstm.set_num_threads(threads)
    np.testing.assert_array_equal(a, b)
    c = np.empty_like(a)
    _core.bernoulli(c, 0.3, 6)
    assert not np.array_equal(a, c)  # another seed, other masks
    with pytest.raises(ValueError, match=r"p must be in \[0, 1\]"):
        _core.bernoulli(a, 1.5, 5)
    with pytest.raises(ValueError, match="out must be writable"):
        _core.bernoulli(np.frombuffer(b"\0" * 16, np.float32), 0.5, 1)
    with pytest.raises(TypeError, match="out must have dtype float32 or float64"):
        _core.bernoulli(np.zeros(4, np.int32), 0.5, 1)
