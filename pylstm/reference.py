"""The NumPy reference: the same LSTM math as the C++ core, written plainly, one step at a time.

Each function has the name, arguments and return values of its compiled twin in ``pylstm._core``, so either
reads as the specification of the other. Shapes follow the core's conventions: x is (T, N, I), states are
(N, H), W_ih is (4H, I), W_hh is (4H, H), biases are (4H,), gate order i, f, g, o (PyTorch's).

The training cache has the core's layout, flat: activated gates (T, N, 4H), then c_t (T, N, H), then
tanh(c_t) (T, N, H). Backward consumes it, as the core's does.
"""

from __future__ import annotations

import numpy as np

__all__ = ["lstm_cache_size", "lstm_forward", "lstm_backward", "sigmoid"]


def sigmoid(a):
    # exp(-a) overflows to inf for very negative a, which gives exactly 0; silence only that warning.
    with np.errstate(over="ignore"):
        return 1.0 / (1.0 + np.exp(-a))


def lstm_cache_size(T, N, H):
    """Elements of the training cache of one layer and direction."""
    return T * N * (4 * H + 2 * H)


def _cache_views(cache, T, N, H):
    gates = cache[: T * N * 4 * H].reshape(T, N, 4 * H)
    c = cache[T * N * 4 * H : T * N * 5 * H].reshape(T, N, H)
    tc = cache[T * N * 5 * H :].reshape(T, N, H)
    return gates, c, tc


def lstm_forward(x, h0, c0, W_ih, W_hh, b_ih, b_hh, *, reverse=False, training=True, y=None):
    """One layer direction over a sequence; steps run T-1 … 0 when ``reverse``.

    h0, c0, b_ih, b_hh may be None (zeros / no bias). ``y``, if given, is a (T, N, H) array to write the
    outputs into (it may be a column slice of a wider array). Returns (y, h_n, c_n, cache); cache is None
    unless ``training``.
    """
    T, N, _ = x.shape
    H = W_hh.shape[1]
    dt = x.dtype
    if y is None:
        y = np.empty((T, N, H), dt)
    cache = np.empty(lstm_cache_size(T, N, H), dt) if training else None
    gates_all, c_all, tc_all = _cache_views(cache, T, N, H) if training else (None, None, None)
    h = np.zeros((N, H), dt) if h0 is None else h0
    c = np.zeros((N, H), dt) if c0 is None else c0
    for t in range(T - 1, -1, -1) if reverse else range(T):
        a = x[t] @ W_ih.T + h @ W_hh.T
        if b_ih is not None:
            a = a + b_ih + b_hh
        i = sigmoid(a[:, :H])
        f = sigmoid(a[:, H : 2 * H])
        g = np.tanh(a[:, 2 * H : 3 * H])
        o = sigmoid(a[:, 3 * H :])
        c = f * c + i * g
        tc = np.tanh(c)
        h = o * tc
        y[t] = h
        if training:
            gates_all[t] = np.concatenate([i, f, g, o], axis=1)
            c_all[t] = c
            tc_all[t] = tc
    return y, h.copy(), c.copy(), cache


def lstm_backward(dy, dh_n, dc_n, x, h0, c0, W_ih, W_hh, y, cache, dW_ih, dW_hh, db_ih, db_hh, *,
                  reverse=False, dx=None):
    """Backpropagates through one ``lstm_forward(training=True)``.

    dy, dh_n, dc_n may be None (zero gradient). Adds into dW_ih, dW_hh, db_ih, db_hh (the biases may be
    None) and into dx (zeros when None); consumes ``cache``. Returns (dx, dh0, dc0).
    """
    T, N, _ = x.shape
    H = W_hh.shape[1]
    dt = x.dtype
    if dx is None:
        dx = np.zeros(x.shape, dt)
    gates_all, c_all, tc_all = _cache_views(cache, T, N, H)
    dh = np.zeros((N, H), dt) if dh_n is None else dh_n.copy()
    dc = np.zeros((N, H), dt) if dc_n is None else dc_n.copy()
    zeros = np.zeros((N, H), dt)
    order = range(T) if reverse else range(T - 1, -1, -1)  # the forward's steps, last first
    first = T - 1 if reverse else 0
    for t in order:
        prev = t + 1 if reverse else t - 1
        h_prev = (zeros if h0 is None else h0) if t == first else y[prev]
        c_prev = (zeros if c0 is None else c0) if t == first else c_all[prev]
        i, f, g, o = (gates_all[t][:, k * H : (k + 1) * H] for k in range(4))
        tc = tc_all[t]
        if dy is not None:
            dh = dh + dy[t]
        do = dh * tc
        dct = dc + dh * o * (1 - tc * tc)
        da = np.concatenate([
            dct * g * i * (1 - i),
            dct * c_prev * f * (1 - f),
            dct * i * (1 - g * g),
            do * o * (1 - o),
        ], axis=1)
        dc = dct * f
        dh = da @ W_hh
        dx[t] += da @ W_ih
        dW_ih += da.T @ x[t]
        dW_hh += da.T @ h_prev
        if db_ih is not None:
            db_ih += da.sum(axis=0)
            db_hh += da.sum(axis=0)
        gates_all[t] = da  # consumed, as in the core
    return dx, dh, dc
