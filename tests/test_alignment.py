"""Every array the bindings create, and every buffer the layers allocate for the kernels, starts on a 64-byte cache
line (csrc/memory.h, alloc_array): NumPy promises 16 bytes, and a row boundary off a line puts that line in two
threads' writes at every step of a row-split loop."""

import gc

import numpy as np
import pytest

import pylstm
from pylstm import _core, nn


def aligned(a):
    return a.ctypes.data % 64 == 0


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(0,), (1,), (3,), (5, 7), (2, 3, 5), (64, 32, 256), (1 << 20, 2)])
def test_empty_is_aligned_and_writable(shape, dtype):
    a = _core.empty(shape, dtype)
    assert a.shape == shape and a.dtype == dtype and a.flags.c_contiguous and a.flags.writeable
    assert aligned(a)
    a.fill(3)
    assert np.all(a == 3)


def test_empty_refuses_bad_arguments():
    with pytest.raises(TypeError, match="dtype"):
        _core.empty((2, 3), np.int32)
    with pytest.raises(ValueError, match="shape"):
        _core.empty((2, -1), np.float32)
    with pytest.raises(ValueError, match="shape"):
        _core.empty((1 << 40, 1 << 40), np.float32)


def test_arrays_outlive_what_made_them():
    a = _core.empty((1000,), np.float32)
    a[:] = np.arange(1000)
    view = a[10:20]
    del a
    gc.collect()
    assert np.array_equal(view, np.arange(10, 20, dtype=np.float32))


@pytest.mark.parametrize("kind", ["LSTM", "GRU", "RNN"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_layer_buffers_are_aligned(kind, dtype):
    """The caches, the layers' outputs, dx and (one layer direction: the kernels' own arrays) the final states."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((7, 5, 3)).astype(dtype)
    deep = getattr(pylstm, kind)(3, 20, num_layers=2, bidirectional=True, dtype=dtype, seed=0)
    out, _ = deep(x)
    cache = deep._cache
    buffers = list(cache["caches"]) + list(cache["outputs"])
    dx, _ = deep.backward(np.ones_like(out))
    buffers.append(dx)
    single = getattr(pylstm, kind)(3, 20, dtype=dtype, seed=0)
    for training in (True, False):
        single.train(training)
        out, state = single(x)
        buffers += list(state) if isinstance(state, tuple) else [state]
    _, dstate = single.train().backward(np.ones_like(single(x)[0]))
    buffers += list(dstate) if isinstance(dstate, tuple) else [dstate]
    assert all(aligned(b) for b in buffers), [b.ctypes.data % 64 for b in buffers]


def test_training_pieces_outputs_are_aligned():
    rng = np.random.default_rng(1)
    head = nn.Linear(20, 7, seed=0)
    x = rng.standard_normal((9, 20)).astype(np.float32)
    y = head(x)
    loss, d = nn.softmax_cross_entropy(y, rng.integers(0, 7, 9))
    dx = head.backward(d)
    assert aligned(y) and aligned(d) and aligned(dx)


def test_stream_state_is_aligned():
    s = pylstm.LSTM(3, 20, num_layers=2, seed=0).eval().stream()
    y = s.step(np.ones((4, 3), np.float32))
    assert np.isfinite(y).all()
    assert aligned(s._h[0]) and aligned(s._h[1]) and aligned(s._c)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(0,), (7,), (3, 5), (64, 32, 256), (33, 1025)])
def test_copy_is_an_aligned_equal_private_copy(shape, dtype):
    a = np.random.default_rng(2).standard_normal(shape).astype(dtype)
    b = _core.copy(a)
    assert b.shape == a.shape and b.dtype == a.dtype and aligned(b) and not np.may_share_memory(a, b)
    np.testing.assert_array_equal(b, a)
    b[...] = 1
    assert a.size == 0 or not np.all(a == 1)


def test_copy_refuses_what_it_cannot_copy():
    with pytest.raises(ValueError, match="C-contiguous"):
        _core.copy(np.zeros((4, 4), np.float32)[:, ::2])
    with pytest.raises(TypeError, match="a"):
        _core.copy(np.zeros(4, np.int64))


@pytest.mark.parametrize("view", [lambda big: big[:, 1:3], lambda big: big[:, :2], lambda big: big[:, 0]])
def test_a_training_call_keeps_private_copies_of_its_input(view):
    """Writing into x after the forward leaves the backward's gradients alone, whether x is a C-contiguous view of
    the caller's array (the layer copies it), a strided one (made contiguous, a copy already) or unbatched."""
    rng = np.random.default_rng(3)
    big = rng.standard_normal((5, 4, 3))
    m = pylstm.LSTM(3, 4, seed=0, dtype="float64")
    out, _ = m(view(big))
    dx_clean, _ = m.backward(np.ones_like(out))
    clean = {k: v.copy() for k, v in m.grads.items()}
    m.zero_grad()
    out, _ = m(view(big))
    big[...] = 0
    dx, _ = m.backward(np.ones_like(out))
    np.testing.assert_array_equal(dx, dx_clean)
    for k in clean:
        np.testing.assert_array_equal(m.grads[k], clean[k])
