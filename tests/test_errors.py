"""One table of bad inputs for every public entry point: the exception type, and a message that starts with the
argument's name (or names it, for pairs and mappings)."""

import numpy as np
import pytest

import pylstm

f4 = np.float32


def _lstm():
    return pylstm.LSTM(3, 4, 2)


def _trained(cls, **kw):
    m = cls(3, 4, **kw)
    out, _ = m(np.zeros((2, 1, 3), f4))
    return m, out


def _huge(T, N):
    return np.broadcast_to(f4(0), (T, N, 1))


def _w(G, H=4):
    return np.zeros((G * H, 1), f4), np.zeros((G * H, H), f4), None, None


ROWS = [
    # constructors
    ("LSTM input_size 0", lambda: pylstm.LSTM(0, 4), ValueError, "^input_size must be >= 1"),
    ("GRU hidden_size float", lambda: pylstm.GRU(3, 4.0), TypeError, "^hidden_size must be an int"),
    ("RNN num_layers 0", lambda: pylstm.RNN(3, 4, 0), ValueError, "^num_layers must be >= 1"),
    ("RNN num_layers bool", lambda: pylstm.RNN(3, 4, True), TypeError, "^num_layers must be an int"),
    ("dropout 1", lambda: pylstm.LSTM(3, 4, dropout=1.0), ValueError, "^dropout must be in"),
    ("dropout -0.1", lambda: pylstm.GRU(3, 4, dropout=-0.1), ValueError, "^dropout must be in"),
    ("dropout str", lambda: pylstm.GRU(3, 4, dropout="0.5"), TypeError, "^dropout must be a number"),
    ("proj_size >= hidden", lambda: pylstm.LSTM(3, 4, proj_size=4), ValueError, "^proj_size must be smaller"),
    ("proj_size negative", lambda: pylstm.LSTM(3, 4, proj_size=-1), ValueError, "^proj_size must be >= 0"),
    ("nonlinearity", lambda: pylstm.RNN(3, 4, nonlinearity="softplus"), ValueError, "^nonlinearity must be"),
    ("dtype", lambda: pylstm.GRU(3, 4, dtype="int32"), ValueError, "^dtype must be"),
    ("seed", lambda: pylstm.LSTM(3, 4, seed="x"), TypeError, "^seed must be"),
    ("cell input_size", lambda: pylstm.LSTMCell(-1, 4), ValueError, "^input_size must be >= 1"),
    ("cell nonlinearity", lambda: pylstm.RNNCell(3, 4, nonlinearity="gelu"), ValueError, "^nonlinearity must be"),
    # forward
    ("x dtype", lambda: _lstm()(np.zeros((2, 1, 3))), TypeError, "^x must have dtype float32"),
    ("x ints", lambda: _lstm()(np.zeros((2, 1, 3), np.int32)), TypeError, "^x must have dtype"),
    ("x ndim", lambda: _lstm()(np.zeros(3, f4)), ValueError, "^x must be 3-D"),
    ("x features", lambda: _lstm()(np.zeros((2, 1, 5), f4)), ValueError, "^x must have 3 features"),
    ("x empty", lambda: _lstm()(np.zeros((0, 1, 3), f4)), ValueError, "^x must have at least one"),
    ("state not a pair", lambda: _lstm()(np.zeros((2, 1, 3), f4), np.zeros((2, 1, 4), f4)), TypeError,
     "^state must be a pair"),
    ("h0 batch", lambda: _lstm()(np.zeros((2, 1, 3), f4), (np.zeros((2, 2, 4), f4),) * 2), ValueError,
     "^h0 must have shape"),
    ("c0 layers", lambda: _lstm()(np.zeros((2, 1, 3), f4), (np.zeros((2, 1, 4), f4), np.zeros((1, 1, 4), f4))),
     ValueError, "^c0 must have shape"),
    ("GRU h0 dtype", lambda: pylstm.GRU(3, 4)(np.zeros((2, 1, 3), f4), np.zeros((1, 1, 4))), TypeError,
     "^h0 must have dtype"),
    ("lengths size", lambda: pylstm.GRU(3, 4)(np.zeros((2, 2, 3), f4), lengths=[2]), ValueError,
     r"^lengths must have shape \(2,\)"),
    ("lengths range", lambda: pylstm.RNN(3, 4)(np.zeros((2, 2, 3), f4), lengths=[2, 3]), ValueError,
     "^lengths must be between 1 and T"),
    ("lengths type", lambda: pylstm.LSTM(3, 4)(np.zeros((2, 2, 3), f4), lengths=[1.0, 2.0]), TypeError,
     "^lengths must hold integers"),
    ("cell x", lambda: pylstm.GRUCell(3, 4)(np.zeros((2, 2, 3), f4)), ValueError, "^x must be 2-D"),
    ("cell h", lambda: pylstm.GRUCell(3, 4)(np.zeros((2, 3), f4), np.zeros((3, 4), f4)), ValueError,
     "^h must have shape"),
    # backward
    ("backward first", lambda: _lstm().backward(np.zeros((2, 1, 4), f4)), RuntimeError, "forward"),
    ("dout shape", lambda: _trained(pylstm.GRU)[0].backward(np.zeros((2, 1, 5), f4)), ValueError,
     "^dout must have the shape"),
    ("dout dtype", lambda: _trained(pylstm.RNN)[0].backward(np.zeros((2, 1, 4))), TypeError,
     "^dout must have dtype"),
    ("dstate", lambda: _trained(pylstm.LSTM)[0].backward(np.zeros((2, 1, 4), f4), np.zeros((1, 1, 4), f4)),
     TypeError, "^dstate must be a pair"),
    ("dh_n shape", lambda: _trained(pylstm.GRU)[0].backward(np.zeros((2, 1, 4), f4), np.zeros((2, 1, 4), f4)),
     ValueError, "^dh_n must have shape"),
    ("cell backward first", lambda: pylstm.LSTMCell(3, 4).backward(np.zeros((1, 4), f4)), RuntimeError, "forward"),
    # state dicts and settings
    ("state_dict type", lambda: _lstm().load_state_dict([1, 2]), TypeError, "^state_dict must be a mapping"),
    ("state_dict missing", lambda: _lstm().load_state_dict({}), ValueError, "missing keys"),
    ("state_dict shape", lambda: _lstm().load_state_dict({**_lstm().state_dict(), "bias_ih_l1": np.zeros(3)}),
     ValueError, r"^state_dict\['bias_ih_l1'\] must have shape"),
    ("state_dict strings", lambda: _lstm().load_state_dict({**_lstm().state_dict(),
                                                             "bias_ih_l1": np.array(["a"] * 16)}),
     TypeError, r"^state_dict\['bias_ih_l1'\] must hold real numbers"),
    # sizes no cache could hold: broadcast inputs occupy no memory, so only the size checks stand in the way
    ("lstm sizes overflow", lambda: pylstm._core.lstm_forward(_huge(2**30, 2**30), None, None, *_w(4)),
     ValueError, "overflow 64-bit index arithmetic"),
    ("gru sizes overflow", lambda: pylstm._core.gru_forward(_huge(2**40, 2**20), None, *_w(3)),
     ValueError, "overflow 64-bit index arithmetic"),
    ("rnn backward sizes overflow", lambda: pylstm._core.rnn_backward(
        None, None, _huge(2**59, 2), None, *_w(1)[:2], *(np.zeros(1, f4),) * 4, None, None),
     ValueError, "overflow 64-bit index arithmetic"),
    ("lstm beyond memory", lambda: pylstm._core.lstm_forward(_huge(10**6, 10**4), None, None, *_w(4)),
     MemoryError, "needs about .* GB, more than this machine's"),
    ("rnn beyond memory", lambda: pylstm._core.rnn_forward(_huge(10**6, 10**4), None, *_w(1), training=False),
     MemoryError, "needs about .* GB, more than this machine's"),
    ("threads 0", lambda: pylstm.set_num_threads(0), ValueError, "^n must be >= 1"),
    ("threads float", lambda: pylstm.set_num_threads(1.5), TypeError, "^n must be an int"),
]


@pytest.mark.parametrize("call,exc,pattern", [r[1:] for r in ROWS], ids=[r[0] for r in ROWS])
def test_bad_input(call, exc, pattern):
    with pytest.raises(exc, match=pattern):
        call()


@pytest.mark.parametrize("bs,exc,word", [
    (np.array([2, 2, 1], np.int32), TypeError, "int64"),
    (np.array([2, 1], np.int64), ValueError, "shape"),
    (np.array([1, 1, 1], np.int64), ValueError, "batch_sizes\\[0\\]"),
    (np.array([2, 1, 2], np.int64), ValueError, "non-increasing"),
    (np.array([2, 2, -1], np.int64), ValueError, "non-increasing"),
])
@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_batch_sizes_are_checked(cell, bs, exc, word):
    from pylstm import _core
    G = {"lstm": 4, "gru": 3, "rnn": 1}[cell]
    x = np.zeros((3, 2, 3), np.float32)
    W = [np.zeros((G * 4, 3), np.float32), np.zeros((G * 4, 4), np.float32), None, None]
    fwd = getattr(_core, cell + "_forward")
    args = (x, None, None, *W) if cell == "lstm" else (x, None, *W)
    with pytest.raises(exc, match=word):
        fwd(*args, batch_sizes=bs)


def test_batch_sizes_need_the_fused_loops():
    from pylstm import _core
    x = np.zeros((3, 2, 3), np.float32)
    _core._set_fused_loops(False)
    try:
        with pytest.raises(ValueError, match="fused loops"):
            _core.rnn_forward(x, None, np.zeros((4, 3), np.float32), np.zeros((4, 4), np.float32), None, None,
                              batch_sizes=np.array([2, 2, 1], np.int64))
    finally:
        _core._set_fused_loops(True)


@pytest.mark.parametrize("cls", [pylstm.LSTM, pylstm.GRU, pylstm.RNN])
def test_nan_in_padding_reaches_no_gradient(rng, cls):
    """Padding past each sequence's end may hold anything; the gradients must be those of zero padding."""
    lens = [4, 2, 3]
    x = rng.standard_normal((4, 3, 2)).astype(np.float32)
    grads = []
    for fill in (0.0, np.nan):
        xp = x.copy()
        for n, ln in enumerate(lens):
            xp[ln:, n] = fill
        m = cls(2, 3, bidirectional=True, seed=0)
        out, _ = m(xp, lengths=lens)
        dx, _ = m.backward(np.ones_like(out))
        assert np.isfinite(out).all() and np.isfinite(dx).all()
        grads.append({k: v.copy() for k, v in m.grads.items()})
    for k in grads[0]:
        np.testing.assert_array_equal(grads[0][k], grads[1][k], err_msg=k)


def test_batch_sizes_zero_a_given_output_past_each_end():
    from pylstm import _core
    x = np.ones((3, 2, 3), np.float32)
    y = np.full((3, 2, 4), 7.0, np.float32)
    _core.rnn_forward(x, None, np.full((4, 3), 0.1, np.float32), np.zeros((4, 4), np.float32), None, None,
                      y=y, batch_sizes=np.array([2, 1, 1], np.int64))
    assert (y[1:, 1] == 0).all() and (y[:, 0] != 0).all() and (y[0, 1] != 0).all()


def test_packed_weights_are_refused_with_a_projection():
    from pylstm import _core
    m = pylstm.LSTM(3, 8, proj_size=4, seed=0)
    W, _ = m._layer_params(0, 0)
    with pytest.raises(ValueError, match="without projection"):
        _core.lstm_forward(np.zeros((2, 1, 3), np.float32), None, None, *W[:4], W_hr=W[4], training=False,
                           packed=_core.PackedLstm(3, 8))
