"""The plain LSTM's loops split by rows (isa/row_split.inc) against the unit split and the reference: lengths in both
directions, kept packed weights, inference over several blocks of steps, the layers; the GRU's and the RNN's split
by rows (isa/single_fused.inc) the same way; and the rule that picks it for each cell."""

import numpy as np
import pytest

import pylstm
from pylstm import _core
from pylstm import reference as R


@pytest.fixture
def split():
    """Sets the split for one test (mode: 0 units, 1 rows, -1 the rule), restoring the rule after it."""
    yield _core._set_row_split
    _core._set_row_split(-1)


def _call(mode, x, h0, c0, W, dy, reverse, lengths=None, packed=None, rd=None, zone=None):
    _core._set_row_split(mode)
    T, N, _ = x.shape
    H = W[1].shape[1]
    bs = None if lengths is None else np.array([(np.asarray(lengths) > t).sum() for t in range(T)], np.int64)
    kw = dict(reverse=reverse, batch_sizes=bs)
    train = dict(kw)
    if rd is not None:
        train.update(rd_mask=rd, rd_masked=np.empty((T + 1, N, H), x.dtype))
    if zone is not None:
        train.update(zone_keep_c=zone[0], zone_keep_h=zone[1])
    y, h_n, c_n, cache = _core.lstm_forward(x, h0, c0, *W, packed=packed, **train)
    G = [np.zeros_like(w) for w in W]
    dx, dh0, dc0 = _core.lstm_backward(dy, h_n, c_n, x, h0, c0, W[0], W[1], y, cache, *G, **train)
    zi = {} if zone is None else dict(zone_c=0.3, zone_h=0.2)
    yi, hi, ci, _ = _core.lstm_forward(x, h0, c0, *W, training=False, packed=packed, **kw, **zi)
    return [y, h_n, c_n, dx, dh0, dc0, *G, yi, hi, ci]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("lengths", [None, [5, 5, 3, 3, 2, 1, 1]], ids=["full", "lengths"])
@pytest.mark.parametrize("options", ["plain", "recurrent_dropout", "zoneout", "both"])
def test_rows_equal_units(split, dtype, reverse, lengths, options):
    rng = np.random.default_rng(0)
    T, N, I, H = 5, 7, 4, 20  # a ragged unit block at every level; parts of 3 and 4 rows
    dt = np.dtype(dtype)
    W = [(rng.standard_normal(s) * 0.5).astype(dt) for s in ((4 * H, I), (4 * H, H), (4 * H,), (4 * H,))]
    x = rng.standard_normal((T, N, I)).astype(dt)
    if lengths is not None:
        x[np.arange(T)[:, None] >= np.array(lengths)[None, :]] = 0  # padding, as the layers zero it
    h0, c0 = rng.standard_normal((N, H)).astype(dt), rng.standard_normal((N, H)).astype(dt)
    dy = rng.standard_normal((T, N, H)).astype(dt)
    if lengths is not None:
        dy[np.arange(T)[:, None] >= np.array(lengths)[None, :]] = 0
    rd = ((rng.random((N, H)) >= 0.3) / 0.7).astype(dt) if options in ("recurrent_dropout", "both") else None
    zone = [(rng.random((T, N, H)) < 0.3).astype(dt) for _ in range(2)] if options in ("zoneout", "both") else None
    units = _call(0, x, h0, c0, W, dy, reverse, lengths, rd=rd, zone=zone)
    rows = _call(1, x, h0, c0, W, dy, reverse, lengths, rd=rd, zone=zone)
    tol = 1e-13 if dtype == "float64" else 2e-6
    for i, (a, b) in enumerate(zip(rows, units)):
        assert np.abs(a - b).max() <= tol * max(np.abs(b).max(), 1e-30), i
    if lengths is None:  # and the reference
        want = R.lstm_forward(x, h0, c0, *W, reverse=reverse, rd_mask=rd,
                              zoneout=None if zone is None else tuple(zone))[0]
        assert np.abs(rows[0] - want).max() <= 10 * tol * np.abs(want).max()


@pytest.mark.parametrize("options", ["plain", "both"])
def test_rows_equal_units_on_the_pool(split, options):
    """A case large enough (2·N·4H·H well over the 64 kflop below which a loop runs on the calling thread) for the
    row split's parts to run on the pool's threads at once, with lengths, in both directions."""
    rng = np.random.default_rng(5)
    T, N, I, H = 4, 16, 8, 64
    W = [(rng.standard_normal(s) * 0.3).astype(np.float64) for s in ((4 * H, I), (4 * H, H), (4 * H,), (4 * H,))]
    lengths = sorted(rng.integers(1, T + 1, N).tolist(), reverse=True)
    x = rng.standard_normal((T, N, I))
    x[np.arange(T)[:, None] >= np.array(lengths)[None, :]] = 0
    dy = rng.standard_normal((T, N, H))
    dy[np.arange(T)[:, None] >= np.array(lengths)[None, :]] = 0
    h0, c0 = rng.standard_normal((N, H)), rng.standard_normal((N, H))
    rd = (rng.random((N, H)) >= 0.3) / 0.7 if options == "both" else None
    zone = [(rng.random((T, N, H)) < 0.3).astype(float) for _ in range(2)] if options == "both" else None
    for reverse in (False, True):
        units = _call(0, x, h0, c0, W, dy, reverse, lengths, rd=rd, zone=zone)
        rows = _call(1, x, h0, c0, W, dy, reverse, lengths, rd=rd, zone=zone)
        for i, (a, b) in enumerate(zip(rows, units)):
            assert np.abs(a - b).max() <= 1e-12 * np.abs(b).max(), (reverse, i)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("H", [72, 136])
@pytest.mark.parametrize("threads", [1, 2])
def test_backward_column_groups(split, dtype, H, threads):
    """The row split's backward multiplies by its copy of W_hh packed by column groups (the wide tile's width: 64, 32,
    16 or 8 columns by level and dtype) and reads the columns past the last whole group in place: H = 72 and 136 leave
    whole groups and a remainder at every level (at AVX-512 in float32, part of a vector). With these lengths the
    second part runs one row at some steps (read in place too). Rows against units, which read W_hh in place."""
    rng = np.random.default_rng(6)
    T, N, I = 4, 6, 5
    dt = np.dtype(dtype)
    W = [(rng.standard_normal(s) * 0.3).astype(dt) for s in ((4 * H, I), (4 * H, H), (4 * H,), (4 * H,))]
    lengths = [4, 4, 4, 3, 1, 1]
    x = rng.standard_normal((T, N, I)).astype(dt)
    dy = rng.standard_normal((T, N, H)).astype(dt)
    for a in (x, dy):
        a[np.arange(T)[:, None] >= np.array(lengths)[None, :]] = 0
    h0, c0 = rng.standard_normal((N, H)).astype(dt), rng.standard_normal((N, H)).astype(dt)
    before = pylstm.config()["threads"]
    pylstm.set_num_threads(threads)
    try:
        for reverse in (False, True):
            for lens in (None, lengths):
                units = _call(0, x, h0, c0, W, dy, reverse, lens)
                rows = _call(1, x, h0, c0, W, dy, reverse, lens)
                tol = 1e-13 if dtype == "float64" else 2e-6
                for i, (a, b) in enumerate(zip(rows, units)):
                    assert np.abs(a - b).max() <= tol * np.abs(b).max(), (reverse, lens, i)
    finally:
        pylstm.set_num_threads(before)


def test_kept_packed_weights_serve_both_splits(split):
    rng = np.random.default_rng(1)
    T, N, I, H = 4, 6, 5, 24
    W = [(rng.standard_normal(s) * 0.5).astype(np.float32) for s in ((4 * H, I), (4 * H, H), (4 * H,), (4 * H,))]
    x = rng.standard_normal((T, N, I)).astype(np.float32)
    dy = np.ones((T, N, H), np.float32)
    plain = _call(0, x, None, None, W, dy, False)
    packed = _core.PackedLstm(I, H)
    for mode in (1, 0, 1):  # packed by the row split's call first, then read by either
        got = _call(mode, x, None, None, W, dy, False, packed=packed)
        assert packed.ready
        for a, b in zip(got, plain):
            np.testing.assert_allclose(a, b, rtol=2e-6, atol=2e-6)


@pytest.mark.parametrize("reverse", [False, True])
def test_inference_over_several_blocks(split, reverse):
    rng = np.random.default_rng(2)
    T, N, I, H = 11, 4096, 5, 64  # blocks of 4 steps of input projections: three
    assert -(-T // _core._lstm_projection_block_steps("rows", T, N, I, H)) == 3
    W = [(rng.standard_normal(s) * 0.5).astype(np.float64) for s in ((4 * H, I), (4 * H, H), (4 * H,), (4 * H,))]
    x = rng.standard_normal((T, N, I))
    split(1)
    y, h, c, _ = _core.lstm_forward(x, None, None, *W, reverse=reverse, training=False)
    want = R.lstm_forward(x, None, None, *W, reverse=reverse, training=False)
    for a, b in zip((y, h, c), want[:3]):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-13)


def test_a_bidirectional_layer_with_lengths_trains_the_same_either_way(split):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((6, 8, 3)).astype(np.float32)
    lengths = [6, 2, 5, 6, 1, 3, 4, 6]
    out = {}
    for mode in (0, 1):
        split(mode)
        m = pylstm.LSTM(3, 10, num_layers=2, bidirectional=True, seed=4)
        y, (h, c) = m(x, lengths=lengths)
        dx, _ = m.backward(np.ones_like(y))
        out[mode] = [y, h, c, dx] + [m.grads[k] for k in sorted(m.grads)]
    for a, b in zip(out[1], out[0]):
        np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-5)


def test_the_rule(split):
    """The LSTM's rows where every thread has at least two rows and W_hh is at most 4 MiB; the GRU's where it has
    eight and W_hh is at most 3 MiB, the RNN's two and 2 MiB; forced either way by the mode."""
    split(-1)
    assert _core._row_split() == -1
    threads = pylstm.config()["threads"]
    assert _core._split("lstm", 2 * threads, 512) == "rows"  # W_hh 4 MiB in float32
    assert _core._split("lstm", 2 * threads, 1024) == "units"  # 16 MiB
    assert _core._split("lstm", 2 * threads, 512, float64=True) == "units"  # 8 MiB
    assert _core._split("lstm", 2 * threads, 362, float64=True) == "rows"
    assert _core._split("lstm", 1, 64) == "units"
    if threads > 1:
        assert _core._split("lstm", 2 * threads - 1, 64) == "units"
    assert _core._split("gru", 8 * threads, 512) == "rows"  # W_hh 3·512² floats: 3 MiB
    assert _core._split("gru", 8 * threads, 513) == "units"
    assert _core._split("gru", 8 * threads, 362, float64=True) == "rows"
    assert _core._split("gru", 8 * threads, 363, float64=True) == "units"
    assert _core._split("gru", 8 * threads - 1, 64) == "units"
    assert _core._split("rnn", 2 * threads, 724) == "rows"  # 724² floats: just under 2 MiB
    assert _core._split("rnn", 2 * threads, 725) == "units"
    assert _core._split("rnn", 1, 64) == "units"
    if threads > 1:
        assert _core._split("rnn", 2 * threads - 1, 64) == "units"
    split(1)
    for cell in ("lstm", "gru", "rnn"):
        assert _core._split(cell, 2, 1024) == "rows"
    split(0)
    for cell in ("lstm", "gru", "rnn"):
        assert _core._split(cell, 64, 64) == "units"
    with pytest.raises(TypeError):
        _core._set_row_split("rows")
    with pytest.raises(ValueError, match="cell must be"):
        _core._split("lstmp", 8, 8)


ONE_STATE = {  # name: (kernel prefix, gates, keyword arguments); the original GRU keeps the unit split
    "gru": ("gru", 3, dict(linear_before_reset=True)),
    "gru-original": ("gru", 3, dict(linear_before_reset=False)),
    "rnn-tanh": ("rnn", 1, dict(nonlinearity="tanh")),
    "rnn-relu": ("rnn", 1, dict(nonlinearity="relu")),
}


def _one_state_call(mode, prefix, kw, x, h0, W, dy, reverse, lengths=None, rd=None, keep_h=None):
    """Training forward and backward, and an inference forward, of the GRU or RNN kernels under split mode."""
    _core._set_row_split(mode)
    T, N, _ = x.shape
    H = W[1].shape[1]
    bs = None if lengths is None else np.array([(np.asarray(lengths) > t).sum() for t in range(T)], np.int64)
    fwd, bwd = getattr(_core, prefix + "_forward"), getattr(_core, prefix + "_backward")
    train = dict(kw, reverse=reverse, batch_sizes=bs)
    if rd is not None:
        train.update(rd_mask=rd, rd_masked=np.empty((T + 1, N, H), x.dtype))
    if keep_h is not None:
        train.update(zone_keep_h=keep_h)
    y, h_n, cache = fwd(x, h0, *W, training=True, **train)
    G = [np.zeros_like(w) for w in W]
    dx, dh0 = bwd(dy, None, x, h0, W[0], W[1], y, cache, *G, **train)
    infer = dict(kw, reverse=reverse, batch_sizes=bs, zone_h=0.0 if keep_h is None else 0.2)
    yi, hi, _ = fwd(x, h0, *W, training=False, **infer)
    return [y, h_n, dx, dh0, *G, yi, hi]


@pytest.mark.parametrize("variant", list(ONE_STATE))
@pytest.mark.parametrize("mode", [1, 0, -1])
def test_gru_rnn_drivers_take_the_split(split, variant, mode):
    """The drivers (gru.cpp, rnn.cpp) hand the loops the split the mode asks for: each forward loop run split by rows
    counts once (a training and an inference forward per call below), the original GRU never, and the rule (-1)
    takes the rows for 16 rows a thread of 16 units (_core._split agrees)."""
    prefix, g, kw = ONE_STATE[variant]
    rng = np.random.default_rng(3)
    T, N, I, H = 3, 16 * pylstm.config()["threads"], 5, 16
    W = [(rng.standard_normal(s) * 0.3) for s in ((g * H, I), (g * H, H), (g * H,), (g * H,))]
    x, h0, dy = rng.standard_normal((T, N, I)), rng.standard_normal((N, H)), rng.standard_normal((T, N, H))
    before = _core._row_split_runs()
    _one_state_call(mode, prefix, kw, x, h0, W, dy, False)
    rows = mode != 0 and variant != "gru-original"
    assert _core._row_split_runs() - before == (2 if rows else 0)
    if mode == -1 and variant != "gru-original":
        assert _core._split(prefix, N, H, float64=True) == "rows"


@pytest.mark.parametrize("variant,options", [(v, o) for v in ONE_STATE
                                             for o in ("plain", "recurrent_dropout", "zoneout", "both")
                                             if v.startswith("gru") or o == "plain" or o == "recurrent_dropout"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("lengths", [None, [5, 5, 3, 3, 2, 1, 1]], ids=["full", "lengths"])
@pytest.mark.parametrize("threads", [1, 2, 3])
def test_gru_rnn_rows_equal_units(split, variant, options, dtype, reverse, lengths, threads):
    """The GRU's and the RNN's fused forward split by rows (isa/single_fused.inc) against their unit split, with
    lengths, recurrent dropout and the GRU's zoneout, on 1-3 threads (one part of 7 rows, or parts of 3-4 or 2-3 rows;
    most of these cases are small enough to run all parts on the calling thread, one after the other: the test below
    runs them at once); H = 20 and 36 leave a ragged unit block, and the RNN's groups of four blocks and single ones,
    at every level; and the forward against the reference."""
    prefix, g, kw = ONE_STATE[variant]  # (zoneout is the LSTM's and the GRU's)
    rng = np.random.default_rng(1)
    T, N, I = 5, 7, 6
    H = 20 if prefix == "gru" else 36 if dtype == "float32" else 68
    dt = np.dtype(dtype)
    W = [(rng.standard_normal(s) * 0.4).astype(dt) for s in ((g * H, I), (g * H, H), (g * H,), (g * H,))]
    x = rng.standard_normal((T, N, I)).astype(dt)
    dy = rng.standard_normal((T, N, H)).astype(dt)
    if lengths is not None:
        for a in (x, dy):
            a[np.arange(T)[:, None] >= np.array(lengths)[None, :]] = 0  # padding, as the layers zero it
    h0 = rng.standard_normal((N, H)).astype(dt)
    rd = ((rng.random((N, H)) >= 0.3) / 0.7).astype(dt) if options in ("recurrent_dropout", "both") else None
    keep_h = (rng.random((T, N, H)) < 0.2).astype(dt) if options in ("zoneout", "both") else None
    before = pylstm.get_num_threads()
    pylstm.set_num_threads(threads)
    try:
        units = _one_state_call(0, prefix, kw, x, h0, W, dy, reverse, lengths, rd, keep_h)
        rows = _one_state_call(1, prefix, kw, x, h0, W, dy, reverse, lengths, rd, keep_h)
    finally:
        pylstm.set_num_threads(before)
    tol = 1e-13 if dtype == "float64" else 2e-6
    for i, (a, b) in enumerate(zip(rows, units)):
        assert np.abs(a - b).max() <= tol * max(np.abs(b).max(), 1e-30), i
    if lengths is None:  # and the reference
        ropts = {} if keep_h is None else {"zoneout": keep_h}
        want = getattr(R, prefix + "_forward")(x, h0, *W, reverse=reverse, rd_mask=rd, **kw, **ropts)[0]
        assert np.abs(rows[0] - want).max() <= 10 * tol * np.abs(want).max()


@pytest.mark.parametrize("prefix,g,kw", [ONE_STATE["gru"], ONE_STATE["rnn-tanh"]], ids=["gru", "rnn"])
def test_gru_rnn_rows_on_the_pool(split, prefix, g, kw):
    """GRU and RNN cases large enough for the row parts to run on the pool's threads at once (2·N·G·H·(H + I) far over
    the 64 kflop below which a loop runs on the calling thread), with N·I·8 bytes over the 256 KiB up to which a part
    projects with its own tiles (so that each thread projects its units' columns of all rows with OpenBLAS, between
    barriers), inference over two blocks of steps (16 + 4), lengths, both directions, recurrent dropout and the GRU's
    zoneout, and the rule's own choice."""
    rng = np.random.default_rng(7)
    T, N, I, H = 20, 64, 1100, 64
    W = [(rng.standard_normal(s) * 0.05) for s in ((g * H, I), (g * H, H), (g * H,), (g * H,))]
    lengths = sorted(rng.integers(1, T + 1, N).tolist(), reverse=True)
    x = rng.standard_normal((T, N, I))
    dy = rng.standard_normal((T, N, H))
    for a in (x, dy):
        a[np.arange(T)[:, None] >= np.array(lengths)[None, :]] = 0
    h0 = rng.standard_normal((N, H))
    rd = (rng.random((N, H)) >= 0.3) / 0.7
    keep_h = (rng.random((T, N, H)) < 0.2).astype(float) if prefix == "gru" else None
    for reverse, lens, opts in ((False, None, False), (True, lengths, False), (False, lengths, True),
                                (True, None, True)):
        extra = (rd, keep_h) if opts else (None, None)
        units = _one_state_call(0, prefix, kw, x, h0, W, dy, reverse, lens, *extra)
        rows = _one_state_call(1, prefix, kw, x, h0, W, dy, reverse, lens, *extra)
        rule = _one_state_call(-1, prefix, kw, x, h0, W, dy, reverse, lens, *extra)
        for i, (a, b, c) in enumerate(zip(rows, units, rule)):
            assert np.abs(a - b).max() <= 1e-12 * np.abs(b).max(), (reverse, lens, opts, i)
            assert np.abs(c - b).max() <= 1e-12 * np.abs(b).max(), (reverse, lens, opts, i)
