"""The NumPy reference: the same LSTM, GRU and RNN math as the C++ core, written plainly, one step at a time.

Each function has the name, arguments and return values of its compiled twin in ``pylstm._core``, so either
reads as the specification of the other. Shapes follow the core's conventions: x is (T, N, I), states are
(N, H), W_ih is (4H, I), W_hh is (4H, H), biases are (4H,), gate order i, f, g, o (PyTorch's).

The training caches have the core's layouts, flat. LSTM: activated gates (T, N, 4H), then c_t (T, N, H), then
tanh(c_t) (T, N, H). GRU: (T, N, 4H) rows [r, z, n, k], k = h W_hnᵀ + b_hn (linear before reset) or r ⊙ h
(original form). RNN: (T, N, H), slots for the pre-activation gradients. Backward consumes them, as the core's does.
"""

from __future__ import annotations

import numpy as np

__all__ = ["lstm_cache_size", "lstm_forward", "lstm_backward", "gru_cache_size", "gru_forward", "gru_backward",
           "rnn_cache_size", "rnn_forward", "rnn_backward", "sigmoid", "linear_forward", "linear_backward",
           "softmax_cross_entropy", "adam_step", "sgd_step", "grad_norm", "scale_grads", "quantize_weights_int8",
           "quantize_rows_u8", "int8_accumulate", "Int8Weights", "to_bfloat16", "Bf16Weights"]


def sigmoid(a):
    # exp(-a) overflows to inf for very negative a, which gives exactly 0; silence only that warning.
    with np.errstate(over="ignore"):
        return 1.0 / (1.0 + np.exp(-a))


def _steps(T, reverse):
    """The forward's time order, and for each step the one processed before it (None for the first)."""
    order = list(range(T - 1, -1, -1)) if reverse else list(range(T))
    return order, {t: (order[i - 1] if i else None) for i, t in enumerate(order)}


def _or_zeros(a, shape, dt):
    """An optional state (or state gradient): the array itself, or zeros. Copied, as the loops rebind it."""
    return np.zeros(shape, dt) if a is None else a.copy()


def _zone(d, t):
    """Zoneout's d at step t: the training masks' row [N][H] (an array [T][N][H]) or the expectation (a number)."""
    return d[t] if np.ndim(d) == 3 else d


def lstm_cache_size(T, N, H, *, layer_norm=False):
    """Elements of the training cache of one layer and direction (with layer norm: lstm_ln_cache_layout's)."""
    if layer_norm:
        return lstm_ln_cache_layout(None, T, N, H)
    return T * N * (4 * H + 2 * H)


def _cache_views(cache, T, N, H):
    gates = cache[: T * N * 4 * H].reshape(T, N, 4 * H)
    c = cache[T * N * 4 * H : T * N * 5 * H].reshape(T, N, H)
    tc = cache[T * N * 5 * H :].reshape(T, N, H)
    return gates, c, tc


def lstm_forward(x, h0, c0, W_ih, W_hh, b_ih, b_hh, *, W_hr=None, reverse=False, training=True, y=None, peep=None,
                 rd_mask=None, zoneout=None, ln=None):
    """One layer direction over a sequence; steps run T-1 … 0 when ``reverse``.

    h0, c0, b_ih, b_hh may be None (zeros / no bias). With ``W_hr`` (P, H), h_t = (o ⊙ tanh c_t) W_hrᵀ has P
    values (PyTorch's proj_size) and W_hh is (4H, P). ``y``, if given, is a (T, N, P) array to write the outputs
    into (it may be a column slice of a wider array). ``peep`` (3H: p_i, p_f, p_o), if given, adds peephole
    connections: i and f also see p ⊙ c_{t-1}, o sees p_o ⊙ c_t (not with W_hr). ``rd_mask`` (N, P), training
    only, is recurrent dropout: the recurrent product reads rd_mask ⊙ h_{t-1}; y holds the unmasked h_t.
    ``zoneout`` (d_c, d_h), each a (T, N, H) array of 0/1 masks (training) or a number (their expectation): the new
    state is c_t = d_c ⊙ c_{t-1} + (1 − d_c) ⊙ c̃_t, h_t likewise, with c̃_t, h̃_t the plain cell's; the cache keeps
    the zoned c_t and tanh(c̃_t) (not with W_hr or peep). ``ln`` (γ_ih, γ_hh, γ_c, β_c) makes it the layer-norm
    LSTM (lstm_ln_forward; not with W_hr or peep). Returns (y, h_n, c_n, cache); cache is None unless ``training``.
    """
    if ln is not None:
        return lstm_ln_forward(x, h0, c0, W_ih, W_hh, b_ih, b_hh, ln, reverse=reverse, training=training, y=y,
                               rd_mask=rd_mask, zoneout=zoneout)
    T, N, _ = x.shape
    H = W_hh.shape[0] // 4
    P = H if W_hr is None else W_hr.shape[0]
    dt = x.dtype
    if y is None:
        y = np.empty((T, N, P), dt)
    cache = np.empty(lstm_cache_size(T, N, H), dt) if training else None
    gates_all, c_all, tc_all = _cache_views(cache, T, N, H) if training else (None, None, None)
    h, c = _or_zeros(h0, (N, P), dt), _or_zeros(c0, (N, H), dt)
    for t in _steps(T, reverse)[0]:
        a = x[t] @ W_ih.T + (h if rd_mask is None else rd_mask * h) @ W_hh.T
        if b_ih is not None:
            a = a + b_ih + b_hh
        if peep is not None:  # i and f see c_{t-1}; o sees c_t, below
            a = a + np.concatenate([peep[:H] * c, peep[H:2 * H] * c, 0 * c, 0 * c], axis=1)
        i = sigmoid(a[:, :H])
        f = sigmoid(a[:, H : 2 * H])
        g = np.tanh(a[:, 2 * H : 3 * H])
        c_prev, h_prev = c, h
        c = f * c + i * g
        o = sigmoid(a[:, 3 * H :] + (0 if peep is None else peep[2 * H:] * c))
        tc = np.tanh(c)
        h = o * tc if W_hr is None else (o * tc) @ W_hr.T
        if zoneout is not None:  # c and h are the plain cell's c̃_t, h̃_t: each unit keeps its previous state where d
            d_c, d_h = _zone(zoneout[0], t), _zone(zoneout[1], t)
            c = d_c * c_prev + (1 - d_c) * c
            h = d_h * h_prev + (1 - d_h) * h
        y[t] = h
        if training:
            gates_all[t] = np.concatenate([i, f, g, o], axis=1)
            c_all[t] = c
            tc_all[t] = tc
    return y, h.copy(), c.copy(), cache


def lstm_backward(dy, dh_n, dc_n, x, h0, c0, W_ih, W_hh, y, cache, dW_ih, dW_hh, db_ih, db_hh, *,
                  W_hr=None, dW_hr=None, reverse=False, dx=None, peep=None, dpeep=None, rd_mask=None,
                  zoneout=None, ln=None, dln=None):
    """Backpropagates through one ``lstm_forward(training=True)``.

    dy, dh_n, dc_n may be None (zero gradient). Adds into dW_ih, dW_hh, db_ih, db_hh (the biases may be
    None), dW_hr (with a projection), dpeep (with peepholes peep) and dx (zeros when None); consumes ``cache``.
    ``rd_mask`` and ``zoneout`` as the forward had them; with ``ln``, dln receives the layer norm's gradients
    (lstm_ln_backward). Returns (dx, dh0, dc0).
    """
    if ln is not None:
        return lstm_ln_backward(dy, dh_n, dc_n, x, W_ih, W_hh, cache, dW_ih, dW_hh, db_ih, db_hh, ln, dln,
                                reverse=reverse, dx=dx, rd_mask=rd_mask, zoneout=zoneout)
    T, N, _ = x.shape
    H = W_hh.shape[0] // 4
    P = H if W_hr is None else W_hr.shape[0]
    dt = x.dtype
    if dx is None:
        dx = np.zeros(x.shape, dt)
    gates_all, c_all, tc_all = _cache_views(cache, T, N, H)
    dh, dc = _or_zeros(dh_n, (N, P), dt), _or_zeros(dc_n, (N, H), dt)
    h_first, c_first = _or_zeros(h0, (N, P), dt), _or_zeros(c0, (N, H), dt)
    order, prev = _steps(T, reverse)
    for t in reversed(order):  # the forward's steps, last first
        h_prev = h_first if prev[t] is None else y[prev[t]]
        c_prev = c_first if prev[t] is None else c_all[prev[t]]
        i, f, g, o = (gates_all[t][:, k * H : (k + 1) * H] for k in range(4))
        tc = tc_all[t]
        if dy is not None:
            dh = dh + dy[t]
        keep_h = keep_c = 0
        if zoneout is not None:  # d of each gradient goes straight to step t-1, 1 − d through the cell
            d_c, d_h = _zone(zoneout[0], t), _zone(zoneout[1], t)
            keep_h, dh = d_h * dh, (1 - d_h) * dh
            keep_c, dc = d_c * dc, (1 - d_c) * dc
        if W_hr is not None:  # back through the projection h = m W_hrᵀ, m = o ⊙ tanh c
            dW_hr += dh.T @ (o * tc)
            dh = dh @ W_hr
        dao = dh * tc * o * (1 - o)
        dct = dc + dh * o * (1 - tc * tc)
        if peep is not None:  # o's peephole reads c_t
            dct = dct + dao * peep[2 * H:]
        da = np.concatenate([
            dct * g * i * (1 - i),
            dct * c_prev * f * (1 - f),
            dct * i * (1 - g * g),
            dao,
        ], axis=1)
        dc = dct * f
        if peep is not None:  # i's and f's peepholes read c_{t-1}
            dc = dc + da[:, :H] * peep[:H] + da[:, H:2 * H] * peep[H:2 * H]
            dpeep[:H] += (da[:, :H] * c_prev).sum(axis=0)
            dpeep[H:2 * H] += (da[:, H:2 * H] * c_prev).sum(axis=0)
            dpeep[2 * H:] += (dao * c_all[t]).sum(axis=0)
        dh = (da @ W_hh if rd_mask is None else rd_mask * (da @ W_hh)) + keep_h
        dc = dc + keep_c
        dx[t] += da @ W_ih
        dW_ih += da.T @ x[t]
        dW_hh += da.T @ (h_prev if rd_mask is None else rd_mask * h_prev)
        if db_ih is not None:
            db_ih += da.sum(axis=0)
            db_hh += da.sum(axis=0)
        gates_all[t] = da  # consumed, as in the core
    return dx, dh, dc


# ---- layer-norm LSTM (Ba et al. 2016, as haste parameterises it): lstm_forward / lstm_backward with ln= ----

LN_EPS = 1e-5


def layer_norm(v, gamma):
    """LN(v; γ) = γ ⊙ (v − mean v) / √(var v + 1e−5) over each row of v (the biased variance; no β). Returns
    (LN(v; γ), v̂, 1/σ), the last two for layer_norm_backward."""
    d = v - v.mean(axis=1, keepdims=True)
    rstd = 1.0 / np.sqrt((d * d).mean(axis=1, keepdims=True) + LN_EPS)
    vhat = d * rstd
    return gamma * vhat, vhat, rstd


def layer_norm_backward(dout, vhat, rstd, gamma):
    """(∂L/∂v, ∂L/∂γ) of layer_norm, given ∂L/∂out: ∂v = (1/σ)(ĝ − mean ĝ − v̂ mean(ĝ ⊙ v̂)) with ĝ = γ ⊙ ∂out."""
    g = dout * gamma
    dv = rstd * (g - g.mean(axis=1, keepdims=True) - vhat * (g * vhat).mean(axis=1, keepdims=True))
    return dv, (dout * vhat).sum(axis=0)


_LN_SLOTS = (("xa", 4), ("ha", 4), ("gates", 4), ("c_prev", 1), ("cn", 1), ("tn", 1), ("hp", 1))


def lstm_ln_cache_layout(cache, T, N, H):
    """The layer-norm cache's slots as views of the flat cache, in the core's order (detail::lstm_ln_cache_layout):
    xa, ha, gates (T, N, 4H): x̂, ĥ (the normalised products) and the activated gates; c_prev, cn, tn, hp (T, N, H):
    c_{t-1}, ĉ (the normalised c̃_t), tanh(γ_c ⊙ ĉ + β_c) and what the recurrent product read; rstd (T, N, 3): 1/σ of
    the two products and of c̃_t. With cache None, returns the number of elements."""
    views, at = {}, 0
    for name, width in _LN_SLOTS + (("rstd", None),):
        n = T * N * (3 if width is None else width * H)
        if cache is not None:
            views[name] = cache[at:at + n].reshape(T, N, -1)
        at += n
    return at if cache is None else views


def lstm_ln_forward(x, h0, c0, W_ih, W_hh, b_ih, b_hh, ln, *, reverse=False, training=True, y=None, rd_mask=None,
                    zoneout=None):
    """One layer-norm LSTM layer direction, ln = (γ_ih, γ_hh (4H), γ_c, β_c (H)):
        a_t = LN(x_t W_ihᵀ; γ_ih) + LN(h̄_{t−1} W_hhᵀ; γ_hh) + b_ih + b_hh     (each LN over a row's whole 4H)
        c̃_t = f ⊙ c_{t−1} + i ⊙ g,    h̃_t = o ⊙ tanh(LN(c̃_t; γ_c) + β_c)     (LN over the row's H)
    h̄_{t−1} is h_{t−1}, or rd_mask ⊙ h_{t−1} with recurrent dropout. Zoneout, when given, zones the normalised
    cell's new state: c_t = d_c ⊙ c_{t−1} + (1 − d_c) ⊙ c̃_t, h_t = d_h ⊙ h_{t−1} + (1 − d_h) ⊙ h̃_t. Arguments and
    returns as lstm_forward's; the cache has lstm_ln_cache_layout's slots."""
    T, N, _ = x.shape
    H = W_hh.shape[0] // 4
    dt = x.dtype
    g_ih, g_hh, g_c, b_c = ln
    if y is None:
        y = np.empty((T, N, H), dt)
    cache = np.empty(lstm_ln_cache_layout(None, T, N, H), dt) if training else None
    C = lstm_ln_cache_layout(cache, T, N, H) if training else None
    h, c = _or_zeros(h0, (N, H), dt), _or_zeros(c0, (N, H), dt)
    b = 0 if b_ih is None else b_ih + b_hh
    for t in _steps(T, reverse)[0]:
        hp = h if rd_mask is None else rd_mask * h
        ax, xhat, rx = layer_norm(x[t] @ W_ih.T, g_ih)
        ah, hhat, rh = layer_norm(hp @ W_hh.T, g_hh)
        a = ax + ah + b
        i, f = sigmoid(a[:, :H]), sigmoid(a[:, H:2 * H])
        g, o = np.tanh(a[:, 2 * H:3 * H]), sigmoid(a[:, 3 * H:])
        c_prev, h_prev = c, h
        c = f * c + i * g
        nc, chat, rc = layer_norm(c, g_c)
        tn = np.tanh(nc + b_c)
        h = o * tn
        if zoneout is not None:
            d_c, d_h = _zone(zoneout[0], t), _zone(zoneout[1], t)
            c = d_c * c_prev + (1 - d_c) * c
            h = d_h * h_prev + (1 - d_h) * h
        y[t] = h
        if training:
            C["xa"][t], C["ha"][t], C["gates"][t] = xhat, hhat, np.concatenate([i, f, g, o], axis=1)
            C["c_prev"][t], C["cn"][t], C["tn"][t], C["hp"][t] = c_prev, chat, tn, hp
            C["rstd"][t] = np.concatenate([rx, rh, rc], axis=1)
    return y, h.copy(), c.copy(), cache


def lstm_ln_backward(dy, dh_n, dc_n, x, W_ih, W_hh, cache, dW_ih, dW_hh, db_ih, db_hh, ln, dln, *, reverse=False,
                     dx=None, rd_mask=None, zoneout=None):
    """Backpropagates through one lstm_ln_forward(training=True), as lstm_backward does; adds the layer norm's
    gradients into dln (four arrays, in ln's order) and consumes the cache. Returns (dx, dh0, dc0)."""
    T, N, _ = x.shape
    H = W_hh.shape[0] // 4
    dt = x.dtype
    g_ih, g_hh, g_c, _ = ln
    if dx is None:
        dx = np.zeros(x.shape, dt)
    C = lstm_ln_cache_layout(cache, T, N, H)
    dh, dc = _or_zeros(dh_n, (N, H), dt), _or_zeros(dc_n, (N, H), dt)
    for t in reversed(_steps(T, reverse)[0]):
        i, f, g, o = (C["gates"][t][:, k * H:(k + 1) * H] for k in range(4))
        tn, rstd = C["tn"][t], C["rstd"][t]
        dh = dh if dy is None else dh + dy[t]
        kept_h = kept_c = 0
        if zoneout is not None:  # d of each state's gradient goes straight to the previous state
            kept_h, kept_c = _zone(zoneout[1], t) * dh, _zone(zoneout[0], t) * dc
            dh, dc = dh - kept_h, dc - kept_c
        do = dh * tn
        du = dh * o * (1 - tn * tn)  # ∂ of LN(c̃_t; γ_c) + β_c
        dln[3] += du.sum(axis=0)
        dct, dgc = layer_norm_backward(du, C["cn"][t], rstd[:, 2:3], g_c)
        dln[2] += dgc
        dct = dct + dc
        da = np.concatenate([dct * g * i * (1 - i), dct * C["c_prev"][t] * f * (1 - f),
                             dct * i * (1 - g * g), do * o * (1 - o)], axis=1)
        dc = dct * f + kept_c
        if db_ih is not None:
            db_ih += da.sum(axis=0)
            db_hh += da.sum(axis=0)
        dpx, dgx = layer_norm_backward(da, C["xa"][t], rstd[:, 0:1], g_ih)
        dph, dgh = layer_norm_backward(da, C["ha"][t], rstd[:, 1:2], g_hh)
        dln[0] += dgx
        dln[1] += dgh
        dx[t] += dpx @ W_ih
        dW_ih += dpx.T @ x[t]
        dW_hh += dph.T @ C["hp"][t]
        dh = dph @ W_hh
        if rd_mask is not None:
            dh = dh * rd_mask
        dh = dh + kept_h
        C["gates"][t], C["xa"][t], C["ha"][t] = da, dpx, dph  # consumed, as in the core
    return dx, dh, dc


def gru_cache_size(T, N, H):
    """Elements of the GRU training cache of one layer and direction."""
    return T * N * 4 * H


def gru_forward(x, h0, W_ih, W_hh, b_ih, b_hh, *, linear_before_reset=True, reverse=False, training=True, y=None,
                rd_mask=None, zoneout=None):
    """One GRU layer direction (gates r, z, n). Returns (y, h_n, cache); cache is None unless ``training``.
    ``rd_mask`` (N, H), training only, is recurrent dropout: every recurrent product (all three gate blocks) reads
    rd_mask ⊙ h_{t-1}; the carry z ⊙ h_{t-1} reads h_{t-1}. ``zoneout`` d_h as lstm_forward's (h only)."""
    T, N, _ = x.shape
    H = W_hh.shape[1]
    dt = x.dtype
    if y is None:
        y = np.empty((T, N, H), dt)
    cache = np.empty(gru_cache_size(T, N, H), dt) if training else None
    rows = cache.reshape(T, N, 4 * H) if training else None
    zero = np.zeros(3 * H, dt)
    bi = zero if b_ih is None else b_ih
    bh = zero if b_hh is None else b_hh
    h = _or_zeros(h0, (N, H), dt)
    for t in _steps(T, reverse)[0]:
        hq = h if rd_mask is None else rd_mask * h  # what the products read
        ax = x[t] @ W_ih.T + bi
        ah = hq @ W_hh[: 2 * H].T + bh[: 2 * H]
        r = sigmoid(ax[:, :H] + ah[:, :H])
        z = sigmoid(ax[:, H : 2 * H] + ah[:, H:])
        if linear_before_reset:
            k = hq @ W_hh[2 * H :].T + bh[2 * H :]
            n = np.tanh(ax[:, 2 * H :] + r * k)
        else:
            k = r * hq
            n = np.tanh(ax[:, 2 * H :] + k @ W_hh[2 * H :].T + bh[2 * H :])
        h_new = (1 - z) * n + z * h
        h = h_new if zoneout is None else _zone(zoneout, t) * h + (1 - _zone(zoneout, t)) * h_new
        y[t] = h
        if training:
            rows[t] = np.concatenate([r, z, n, k], axis=1)
    return y, h.copy(), cache


def gru_backward(dy, dh_n, x, h0, W_ih, W_hh, y, cache, dW_ih, dW_hh, db_ih, db_hh, *, linear_before_reset=True,
                 reverse=False, dx=None, rd_mask=None, zoneout=None):
    """Backpropagates through one ``gru_forward(training=True)``; accumulates like ``lstm_backward``.
    ``rd_mask`` and ``zoneout`` as the forward had them. Returns (dx, dh0)."""
    T, N, _ = x.shape
    H = W_hh.shape[1]
    dt = x.dtype
    if dx is None:
        dx = np.zeros(x.shape, dt)
    rows = cache.reshape(T, N, 4 * H)
    dh, h_first = _or_zeros(dh_n, (N, H), dt), _or_zeros(h0, (N, H), dt)
    order, prev = _steps(T, reverse)
    m = 1 if rd_mask is None else rd_mask
    for t in reversed(order):
        h_prev = h_first if prev[t] is None else y[prev[t]]
        hq = m * h_prev  # what the forward's products read
        r, z, n, k = (rows[t][:, j * H : (j + 1) * H] for j in range(4))
        if dy is not None:
            dh = dh + dy[t]
        keep = 0
        if zoneout is not None:  # d straight to h_{t-1}, 1 − d through the cell
            keep, dh = _zone(zoneout, t) * dh, (1 - _zone(zoneout, t)) * dh
        da_n = dh * (1 - z) * (1 - n * n)
        da_z = dh * (h_prev - n) * z * (1 - z)
        dh_prev = dh * z
        if linear_before_reset:
            dk = da_n * r                       # gradient of k = h W_hnᵀ + b_hn
            da_r = da_n * k * r * (1 - r)
            da_h = np.concatenate([da_r, da_z, dk], axis=1)   # the recurrent side's pre-activation gradients
            dh_prev = dh_prev + m * (da_h @ W_hh)
            dW_hh += da_h.T @ hq
            if db_hh is not None:
                db_hh += da_h.sum(axis=0)
        else:
            dk = da_n @ W_hh[2 * H :]           # gradient of k = r ⊙ h
            da_r = dk * hq * r * (1 - r)
            dh_prev = dh_prev + m * (dk * r + np.concatenate([da_r, da_z], axis=1) @ W_hh[: 2 * H])
            dW_hh[: 2 * H] += np.concatenate([da_r, da_z], axis=1).T @ hq
            dW_hh[2 * H :] += da_n.T @ k
            if db_hh is not None:
                db_hh += np.concatenate([da_r, da_z, da_n], axis=1).sum(axis=0)
        da_x = np.concatenate([da_r, da_z, da_n], axis=1)
        dx[t] += da_x @ W_ih
        dW_ih += da_x.T @ x[t]
        if db_ih is not None:
            db_ih += da_x.sum(axis=0)
        rows[t] = 0  # consumed, as in the core
        dh = dh_prev + keep
    return dx, dh


def rnn_cache_size(T, N, H):
    """Elements of the RNN training cache of one layer and direction."""
    return T * N * H


def _phi(nonlinearity):
    if nonlinearity == "tanh":
        return np.tanh, lambda h: 1 - h * h
    if nonlinearity == "relu":
        return (lambda a: np.maximum(a, 0)), (lambda h: (h > 0).astype(h.dtype))
    if nonlinearity == "sigmoid":
        return sigmoid, lambda h: h * (1 - h)
    raise ValueError(f"nonlinearity must be 'tanh', 'relu' or 'sigmoid', got {nonlinearity!r}")


def rnn_forward(x, h0, W_ih, W_hh, b_ih, b_hh, *, nonlinearity="tanh", reverse=False, training=True, y=None,
                rd_mask=None):
    """One Elman RNN layer direction. Returns (y, h_n, cache); cache is None unless ``training``. ``rd_mask``
    (N, H), training only: recurrent dropout, the product reads rd_mask ⊙ h_{t-1}."""
    phi, _ = _phi(nonlinearity)
    T, N, _ = x.shape
    H = W_hh.shape[1]
    dt = x.dtype
    if y is None:
        y = np.empty((T, N, H), dt)
    h = _or_zeros(h0, (N, H), dt)
    for t in _steps(T, reverse)[0]:
        a = x[t] @ W_ih.T + (h if rd_mask is None else rd_mask * h) @ W_hh.T
        if b_ih is not None:
            a = a + b_ih + b_hh
        h = phi(a)
        y[t] = h
    return y, h.copy(), (np.zeros(rnn_cache_size(T, N, H), dt) if training else None)


def rnn_backward(dy, dh_n, x, h0, W_ih, W_hh, y, cache, dW_ih, dW_hh, db_ih, db_hh, *, nonlinearity="tanh",
                 reverse=False, dx=None, rd_mask=None):
    """Backpropagates through one ``rnn_forward(training=True)``, with φ' taken from the outputs. ``rd_mask`` as
    the forward had it. Returns (dx, dh0)."""
    _, dphi = _phi(nonlinearity)
    T, N, _ = x.shape
    H = W_hh.shape[1]
    dt = x.dtype
    if dx is None:
        dx = np.zeros(x.shape, dt)
    dh, h_first = _or_zeros(dh_n, (N, H), dt), _or_zeros(h0, (N, H), dt)
    order, prev = _steps(T, reverse)
    for t in reversed(order):
        h_prev = h_first if prev[t] is None else y[prev[t]]
        if dy is not None:
            dh = dh + dy[t]
        da = dh * dphi(y[t])
        dx[t] += da @ W_ih
        dW_ih += da.T @ x[t]
        dW_hh += da.T @ (h_prev if rd_mask is None else rd_mask * h_prev)
        if db_ih is not None:
            db_ih += da.sum(axis=0)
            db_hh += da.sum(axis=0)
        dh = da @ W_hh if rd_mask is None else rd_mask * (da @ W_hh)
    return dx, dh


# ---- the regularizers' masks (the core's train.h, bernoulli_fill) ----

def _mix32(h):
    """lowbias32: the integer mixer of the core's bernoulli_u32 (uint32 arithmetic, wrapping)."""
    h = h ^ (h >> np.uint32(16))
    h = h * np.uint32(0x7FEB352D)
    h = h ^ (h >> np.uint32(15))
    h = h * np.uint32(0x846CA68B)
    return h ^ (h >> np.uint32(16))


def bernoulli(shape, p, seed, below=1.0, above=0.0, dtype=np.float32):
    """A mask of `shape`: `below` where the 32-bit value keyed by (seed, i) is under ⌊p · 2^32⌋ (probability p),
    `above` elsewhere, i the flat index: the core's counter-based generator, value for value."""
    n = int(np.prod(shape))
    i = np.arange(n, dtype=np.uint64)
    s0, s1 = np.uint32(seed & 0xFFFFFFFF), np.uint32(seed >> 32)
    with np.errstate(over="ignore"):
        h = _mix32(i.astype(np.uint32) ^ s0)
        u = _mix32(h ^ (s1 + (i >> np.uint64(32)).astype(np.uint32) * np.uint32(0x9E3779B9)))
    if p >= 1:
        return np.full(shape, below, dtype)
    return np.where(u < np.uint32(int(p * 4294967296.0)), below, above).astype(dtype).reshape(shape)


# ---- the training step's pieces around the layers (the core's train.h) ----

def linear_forward(x, W, b):
    """y = x Wᵀ + b for x (N, I), W (O, I), b (O,) or None."""
    y = x @ W.T
    return y if b is None else y + b


def linear_backward(dy, x, W, dW, db, *, input_grad=True):
    """dW += dyᵀ x and db += Σ_rows dy (db may be None), in place; returns dx = dy W, or None."""
    dW += dy.T @ x
    if db is not None:
        db += dy.sum(axis=0)
    return dy @ W if input_grad else None


def softmax_cross_entropy(logits, targets):
    """(mean cross-entropy of softmax(logits) against integer targets, dL/dlogits) for logits (N, C), targets (N,).
    The loss is computed in float64, the gradient returned in the logits' dtype."""
    z = logits.astype(np.float64)
    z = z - z.max(axis=1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    rows = np.arange(targets.size)
    loss = -logp[rows, targets].mean()
    d = np.exp(logp)
    d[rows, targets] -= 1
    d /= targets.size
    return float(loss), d.astype(logits.dtype)


def adam_step(params, grads, m, v, *, lr, b1, b2, eps, step):
    """One Adam step (torch.optim.Adam, weight_decay = 0; `step` counted from 1) over lists of arrays, in place."""
    c1, c2 = 1 - b1**step, 1 - b2**step
    for p, g, mk, vk in zip(params, grads, m, v):
        mk *= b1
        mk += (1 - b1) * g
        vk *= b2
        vk += (1 - b2) * g * g
        p -= (lr / c1) * mk / (np.sqrt(vk / c2) + eps)


def sgd_step(params, grads, momentum_buffers, *, lr, momentum):
    """p -= lr · b with b = momentum · b + g (momentum_buffers None: b = g), over lists of arrays, in place."""
    for k, (p, g) in enumerate(zip(params, grads)):
        if momentum_buffers is not None:
            b = momentum_buffers[k]
            b *= momentum
            b += g
            g = b
        p -= p.dtype.type(lr) * g


def grad_norm(grads):
    """√(Σ g²) over a list of arrays, accumulated in float64."""
    return float(np.sqrt(sum(float(np.sum(g.astype(np.float64) ** 2)) for g in grads)))


def scale_grads(grads, scale):
    """g *= scale over a list of arrays, in place."""
    for g in grads:
        g *= g.dtype.type(scale)


# ---- int8 inference (issue 26): the math the int8 kernels are to compute ----
#
# Weights: symmetric int8 with one scale per output row (the per-channel form of fbgemm and oneDNN):
#     s_w[j] = max_k |W[j, k]| / 127 (1 for a row of zeros),   Wq[j, k] = round(W[j, k] / s_w[j]) ∈ [−127, 127]
# Each product's input (x_t, h_{t−1}, the GRU's r ⊙ h, the projection's m_t), quantized at every step, per row, as u8
# with a zero point (the unsigned operand of vpdpbusd and vpmaddubsw):
#     lo = min(0, min_k a[n, k]),  hi = max(0, max_k a[n, k]),  s_a[n] = (hi − lo) / 255 (1 when both are 0)
#     z[n] = round(−lo / s_a[n]) ∈ [0, 255],   aq[n, k] = clip(round(a[n, k] / s_a[n]) + z[n], 0, 255)
# (0 is exactly representable.) Products accumulate in int32, the zero point taken out with the weights' row sums:
#     acc[n, j] = Σ_k aq[n, k] · Wq[j, k] − z[n] · Σ_k Wq[j, k]        exact in int32 while K < 2³¹ / (255 · 127)
#     (a Wᵀ)[n, j] ≈ s_a[n] · s_w[j] · acc[n, j]                       in float32
# The gate maths, the cell state and the biases stay in float32: the float forward functions above run this math
# unchanged when their weights are Int8Weights, whose `a @ W.T` is the quantized product. round is to nearest, ties
# to even (np.rint; the kernels' cvtps2dq).

_INT8_MAX_K = (2**31 - 1) // (255 * 127)


def quantize_weights_int8(W):
    """(Wq int8 (J, K), s_w float32 (J,), row sums int32 (J,)) of W (J, K), as above."""
    W = np.asarray(W, dtype=np.float32)
    amax = np.abs(W).max(axis=1) if W.shape[1] else np.zeros(W.shape[0], np.float32)
    scale = np.where(amax > 0, amax / np.float32(127), np.float32(1)).astype(np.float32)
    q = np.clip(np.rint(W / scale[:, None]), -127, 127).astype(np.int8)
    return q, scale, q.astype(np.int32).sum(axis=1, dtype=np.int32)


def quantize_rows_u8(a):
    """(aq uint8 (N, K), s_a float32 (N,), z int32 (N,)) of a (N, K), one scale and zero point per row, as above."""
    a = np.asarray(a, dtype=np.float32)
    lo = np.minimum(a.min(axis=1), 0).astype(np.float32)
    hi = np.maximum(a.max(axis=1), 0).astype(np.float32)
    scale = np.where(hi > lo, (hi - lo) / np.float32(255), np.float32(1)).astype(np.float32)
    zero = np.clip(np.rint(-lo / scale), 0, 255).astype(np.int32)
    q = np.clip(np.rint(a / scale[:, None]) + zero[:, None], 0, 255).astype(np.uint8)
    return q, scale, zero


def int8_accumulate(aq, zero, Wq, rowsum):
    """acc int32 (N, J) = aq Wqᵀ − z · rowsum, exactly (computed in int64 and checked to fit int32)."""
    if Wq.shape[1] > _INT8_MAX_K:
        raise ValueError(f"an int8 product's reduction must be at most {_INT8_MAX_K} long, got {Wq.shape[1]}")
    acc = aq.astype(np.int64) @ Wq.astype(np.int64).T - zero.astype(np.int64)[:, None] * rowsum.astype(np.int64)
    return acc.astype(np.int32)


class Int8Weights:
    """A weight matrix W (J, K) quantized as above. It stands in for W in the float forward functions: `a @ W.T`
    is the int8 product of a (quantized per row at the call) with the int8 rows, `W[rows]` a block of its rows,
    and `shape`, `dtype` are W's. So `lstm_forward(x, h0, c0, Int8Weights(W_ih), Int8Weights(W_hh), b_ih, b_hh,
    training=False)` is the int8 LSTM."""

    def __init__(self, W=None, *, parts=None):
        self.q, self.scale, self.rowsum = parts if parts is not None else quantize_weights_int8(W)
        self.shape = self.q.shape
        self.dtype = np.dtype(np.float32)

    def __getitem__(self, rows):
        if not isinstance(rows, slice):
            raise TypeError("Int8Weights takes a slice of rows")
        return Int8Weights(parts=(self.q[rows], self.scale[rows], self.rowsum[rows]))

    def dequantized(self):
        """W as the int8 products see it: s_w[j] · Wq[j, k]."""
        return self.scale[:, None] * self.q.astype(np.float32)

    @property
    def T(self):
        return _Int8Transposed(self)


class _Int8Transposed:
    __array_ufunc__ = None  # `ndarray @ this` defers to __rmatmul__ instead of converting this to an array

    def __init__(self, w):
        self.w = w

    def __rmatmul__(self, a):
        aq, s_a, zero = quantize_rows_u8(a)
        acc = int8_accumulate(aq, zero, self.w.q, self.w.rowsum)
        return (s_a[:, None] * self.w.scale[None, :] * acc.astype(np.float32)).astype(np.float32)


# ---- bfloat16 inference (issue 26) ----
#
# Weights and each product's input rounded to bfloat16 (the top 16 bits of float32, rounded to nearest, ties to even:
# vcvtneps2bf16's rounding; a NaN stays a NaN), products summed in float32 (vdpbf16ps; here in float64 and rounded
# once, so the kernels' sums differ from these by float32 rounding only). Gate maths, cell state and biases in
# float32: the float forward functions above run this math unchanged when their weights are Bf16Weights.

def to_bfloat16(a):
    """a rounded to the nearest bfloat16 value (ties to even), as float32."""
    a = np.ascontiguousarray(a, dtype=np.float32)
    bits = a.view(np.uint32).astype(np.uint64)
    rounded = ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16 << 16).astype(np.uint32).view(np.float32)
    return np.where(np.isnan(a), a, rounded).astype(np.float32)


class Bf16Weights:
    """A weight matrix W (J, K) rounded to bfloat16, standing in for W as Int8Weights does: `a @ W.T` is the product
    of a rounded to bfloat16 with the rounded rows, summed in float64 and rounded to float32."""

    def __init__(self, W):
        self.w = to_bfloat16(W)
        self.shape = self.w.shape
        self.dtype = np.dtype(np.float32)

    def __getitem__(self, rows):
        if not isinstance(rows, slice):
            raise TypeError("Bf16Weights takes a slice of rows")
        return Bf16Weights(self.w[rows])

    @property
    def T(self):
        return _Bf16Transposed(self)


class _Bf16Transposed:
    __array_ufunc__ = None

    def __init__(self, w):
        self.w = w

    def __rmatmul__(self, a):
        return (to_bfloat16(a).astype(np.float64) @ self.w.w.astype(np.float64).T).astype(np.float32)
