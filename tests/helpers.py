"""What the tests share: error measures and tolerances, finite differences, and the layer cases that the layer and
property tests compare with a composition of the NumPy reference's kernels. (Test set-up and fixtures are in
conftest.py; the browser helpers for the page tests in browser.py.)"""

import contextlib

import numpy as np

import pylstm
from pylstm import reference as ref


def rel_err(a, b):
    """max |a - b| / max |b|: one number per array, robust to entries near zero."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    assert a.shape == b.shape, (a.shape, b.shape)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))


TOL = {"float64": 1e-10, "float32": 1e-5}


def assert_all_close(got, want, dt):
    """Two dicts of results have the same keys, `got` has dtype `dt`, and each entry is within TOL[dt] of `want`."""
    assert got.keys() == want.keys()
    for k in want:
        assert got[k].dtype == np.dtype(dt), k
        err = rel_err(got[k], want[k])
        assert err <= TOL[dt], f"{k}: relative error {err:.2e} > {TOL[dt]:.0e}"


def numerical_gradient(loss, value, eps=1e-6):
    """Central finite differences of loss() with respect to every element of `value`, which is perturbed in place
    and restored."""
    num = np.zeros_like(value)
    for idx in np.ndindex(value.shape):
        orig = value[idx]
        value[idx] = orig + eps
        up = loss()
        value[idx] = orig - eps
        down = loss()
        value[idx] = orig
        num[idx] = (up - down) / (2 * eps)
    return num


def parameter_gradient(module, name, loss, eps=1e-6):
    """Central finite differences of loss() with respect to every element of the module's parameter `name`, each
    perturbed through edit_parameters() and restored."""
    num = np.zeros(module.state_dict()[name].shape)
    for idx in np.ndindex(num.shape):
        vals = []
        for sign in (1, -1):
            with module.edit_parameters() as params:
                params[name][idx] += sign * eps
            vals.append(loss())
            with module.edit_parameters() as params:
                params[name][idx] -= sign * eps
        num[idx] = (vals[0] - vals[1]) / (2 * eps)
    return num


KINDS = {  # name: (constructor, reference kernel prefix, keyword arguments for the kernels, number of states)
    "lstm": (pylstm.LSTM, "lstm", {}, 2),
    "gru": (pylstm.GRU, "gru", {"linear_before_reset": True}, 1),
    "gru-original": (lambda *a, **k: pylstm.GRU(*a, linear_before_reset=False, **k), "gru",
                     {"linear_before_reset": False}, 1),
    "rnn-relu": (lambda *a, **k: pylstm.RNN(*a, nonlinearity="relu", **k), "rnn", {"nonlinearity": "relu"}, 1),
    "rnn-sigmoid": (lambda *a, **k: pylstm.RNN(*a, nonlinearity="sigmoid", **k), "rnn", {"nonlinearity": "sigmoid"},
                    1),
}


def ref_model(m, prefix, kw, x, s0, dout, ds_n, masks=()):
    """A multi-layer, bidirectional model from reference.<prefix>_forward/backward, all in (T, N, .) layout. The
    reverse direction is run forwards on the time-flipped sequence, so the layer's `reverse` path is checked too.
    s0 and ds_n are lists with one (D*L, N, H) array per state."""
    fwd, bwd = getattr(ref, prefix + "_forward"), getattr(ref, prefix + "_backward")
    p = {k: v.astype(np.float64) for k, v in m.state_dict().items()}
    H, D, L = m.hidden_size, m.num_directions, m.num_layers
    T, N, _ = x.shape
    g = {k: np.zeros_like(v) for k, v in p.items()}
    inp, saved, s_n = x, [], [np.zeros((L * D, N, H)) for _ in s0]
    for layer in range(L):
        outs = []
        for d in range(D):
            k, sfx = layer * D + d, f"_l{layer}" + ("_reverse" if d else "")
            xi = inp[::-1].copy() if d else inp
            W = [p.get(n + sfx) for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
            y, *fin, cache = fwd(xi, *[s[k] for s in s0], *W, **kw)
            for dst, src in zip(s_n, fin):
                dst[k] = src
            saved.append((xi, W, y, cache, sfx))
            outs.append(y[::-1] if d else y)
        inp = np.concatenate(outs, axis=2)
        if layer < len(masks):
            inp = inp * masks[layer]
    out = inp
    dy, ds0 = dout, [np.zeros_like(s) for s in s_n]
    for layer in reversed(range(L)):
        dx = 0
        for d in range(D):
            k = layer * D + d
            xi, W, y, cache, sfx = saved[k]
            dyk = dy[:, :, d * H:(d + 1) * H]
            dyk = dyk[::-1].copy() if d else dyk.copy()
            gd = [g.get(n + sfx) for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
            dxk, *firsts = bwd(dyk, *[s[k] for s in ds_n], xi, *[s[k] for s in s0], W[0], W[1], y, cache, *gd, **kw)
            for dst, src in zip(ds0, firsts):
                dst[k] = src
            dx = dx + (dxk[::-1] if d else dxk)
        dy = dx * masks[layer - 1] if 0 < layer <= len(masks) else dx
    return out, s_n, dy, ds0, g


def layer_case(rng, kind, T, N, I, H, L, bi, batch_first, given_state, dtype, seed):
    """A layer of `kind` and random (T, N, .) inputs, states and output gradients, with what the reference composition
    gives for them: (module, number of states, x, s0, dout, ds_n, (out, s_n, dx, ds0, grads))."""
    make, prefix, kw, S = KINDS[kind]
    m = make(I, H, L, bidirectional=bi, batch_first=batch_first, dtype=dtype, seed=seed)
    D = 2 if bi else 1
    x = rng.standard_normal((T, N, I))
    s0 = [rng.standard_normal((L * D, N, H)) if given_state else np.zeros((L * D, N, H)) for _ in range(S)]
    dout = rng.standard_normal((T, N, D * H))
    ds_n = [rng.standard_normal((L * D, N, H)) for _ in range(S)]
    return m, S, x, s0, dout, ds_n, ref_model(m, prefix, kw, x, s0, dout, ds_n)


@contextlib.contextmanager
def _setting(get, put, value):
    """Runs the block with a setting (read by get, written by put) at value, then puts it back."""
    was = get()
    put(value)
    try:
        yield
    finally:
        put(was)


def num_threads(n):
    """Runs the block on n of pylstm's threads (its loops split their work n ways)."""
    return _setting(pylstm.get_num_threads, pylstm.set_num_threads, n)


def fused_loops():
    """Runs the block with the fused time loops, the only ones that take lengths, whichever loop form the test runs
    under (the time_loops fixture): the BLAS-per-step reference shape has no lengths and refuses them."""
    from pylstm import _core

    return _setting(_core._fused_loops, _core._set_fused_loops, True)


def assert_lengths_match_single_rows(m, x, state, lens, tol):
    """m(x, state, lengths=lens) against each row run alone at its own length (one row: no batching path), for the
    output and the final h; `state` is h0 (GRU, RNN) or the pair (h0, c0) (LSTM)."""
    pair = isinstance(state, tuple)
    with fused_loops():
        y_len, s_len = m(x, state, lengths=lens)
    h_len = s_len[0] if pair else s_len
    for n in range(x.shape[1]):
        s_n = tuple(s[:, n : n + 1] for s in state) if pair else state[:, n : n + 1]
        y1, s1 = m(x[: lens[n], n : n + 1], s_n)
        h1 = s1[0] if pair else s1
        np.testing.assert_allclose(y_len[: lens[n], n], y1[:, 0], rtol=tol, atol=tol)
        np.testing.assert_allclose(h_len[0, n], h1[0, 0], rtol=tol, atol=tol)
