"""The forecasting protocol and its honest baselines (for `pylstm forecast`): rolling origins over a held-out tail,
the naive, seasonal-naive and least-squares autoregressive forecasts from the same origins, and the scores.

The held-out tail is cut into consecutive blocks of `horizon` steps; each block is forecast from the true history
before it, so every held-out step has exactly one forecast, made at most `horizon` steps ahead. Nothing here looks
at the tail except the history before each origin, which is the truth a forecaster would have had by then.
"""

from __future__ import annotations

import numpy as np


def default_test_size(n, horizon):
    """The held-out tail: the larger of 2 × horizon and 10 % of the series."""
    return max(2 * horizon, int(np.ceil(0.1 * n)))


def origins(n, test, horizon):
    """[(origin, steps)]: each block of the last `test` of n steps starts at `origin` (the index of its first
    forecast step) and forecasts `steps` ≤ horizon steps from the history y[:origin]."""
    if not 0 < test < n:
        raise ValueError(f"test must be between 1 and n - 1 = {n - 1}, got {test}")
    return [(o, min(horizon, n - o)) for o in range(n - test, n, horizon)]


def naive(history, steps, season=None):
    """The origin's value, repeated."""
    return np.full(steps, history[-1], dtype=np.float64)


def seasonal_naive(history, steps, season):
    """The value one season before each forecast step (from the history; a step more than a season ahead repeats
    the last season)."""
    last = np.asarray(history[-season:], dtype=np.float64)
    return np.array([last[k % season] for k in range(steps)])


def fit_ar(train, order):
    """Least-squares coefficients (intercept first) of y_t = c + Σ_k a_k y_{t−k}, k = 1..order, on `train`."""
    y = np.asarray(train, dtype=np.float64)
    if len(y) <= 2 * order:
        raise ValueError(f"an AR({order}) needs more than {2 * order} training values, got {len(y)}")
    X = np.column_stack([np.ones(len(y) - order)] + [y[order - k:len(y) - k] for k in range(1, order + 1)])
    coef, *_ = np.linalg.lstsq(X, y[order:], rcond=None)
    return coef


def ar_forecast(coef, history, steps):
    """Iterated forecasts of a fitted AR: each step feeds the previous forecasts back."""
    order = len(coef) - 1
    window = list(np.asarray(history[-order:], dtype=np.float64))
    out = []
    for _ in range(steps):
        f = coef[0] + sum(coef[k] * window[-k] for k in range(1, order + 1))
        out.append(f)
        window.append(f)
    return np.array(out)


def mase_scale(train, season):
    """The in-sample mean absolute error of the seasonal-naive forecast (season 1: the naive one) on `train`: MASE's
    denominator. ValueError when it is 0 (the training part does not change at the season's lag)."""
    train = np.asarray(train, dtype=np.float64)
    m = max(1, season or 1)
    if len(train) <= m:
        raise ValueError(f"the training part ({len(train)} steps) must be longer than the season ({m})")
    scale = np.mean(np.abs(train[m:] - train[:-m]))
    if not scale > 0:
        raise ValueError(f"the training part does not change over the season's lag ({m}): MASE is undefined")
    return float(scale)


def mase(truth, forecast, train, season):
    """Mean absolute scaled error (Hyndman & Koehler 2006): the forecast's mean absolute error over the in-sample
    mean absolute error of the seasonal-naive forecast on the training part (season 1: the naive one)."""
    return float(np.mean(np.abs(np.asarray(truth) - np.asarray(forecast))) / mase_scale(train, season))


def smape(truth, forecast):
    """Symmetric mean absolute percentage error, in percent: mean of 200 |f − y| / (|y| + |f|) (0 where both are 0)."""
    y, f = np.asarray(truth, dtype=np.float64), np.asarray(forecast, dtype=np.float64)
    den = np.abs(y) + np.abs(f)
    terms = np.where(den > 0, 200 * np.abs(f - y) / np.where(den > 0, den, 1), 0.0)
    return float(np.mean(terms))


def ar_order(season):
    """The AR baseline's order: one season of lags (at least 3)."""
    return max(season or 0, 3)


def baseline_labels(season, order=None):
    """The baselines' names as printed, by the keys `baselines` returns."""
    return {"naive": "naive", "seasonal_naive": f"seasonal naive ({season or 1})",
            "linear_ar": f"linear AR({order or ar_order(season)})"}


def baselines(y, test, horizon, season, order=None):
    """The held-out forecasts of the three baselines from the same origins: {"naive", "seasonal_naive",
    "linear_ar"} → array over the tail (`baseline_labels` names them). The AR is fitted once, on the training part
    (order `ar_order(season)` unless given)."""
    y = np.asarray(y, dtype=np.float64)
    n = len(y)
    coef = fit_ar(y[:n - test], order or ar_order(season))
    out = {"naive": [], "seasonal_naive": [], "linear_ar": []}
    for o, steps in origins(n, test, horizon):
        history = y[:o]
        out["naive"].append(naive(history, steps))
        out["seasonal_naive"].append(seasonal_naive(history, steps, season or 1))
        out["linear_ar"].append(ar_forecast(coef, history, steps))
    return {k: np.concatenate(v) for k, v in out.items()}


class Forecaster:
    """A recurrent layer that reads `window` steps and writes the next `horizon` at once (the direct strategy: one
    Linear head on the last hidden state, one output per step ahead).

    Each window is made relative to its last value and divided by one scale fitted on the training part (the mean
    absolute step-to-step change), so the model learns the shape of what comes next, not the level: a series whose
    tail leaves the training range (a trend) is read the same way. When the series has a season the input also
    carries the season's phase as a sine and a cosine."""

    def __init__(self, train, *, season, window, horizon, cell="lstm", hidden=64, layers=1, lr=3e-3, clip=1.0,
                 batch=64, seed=0, dtype="float32"):
        from . import nn, optim

        train = np.asarray(train, dtype=np.float64)
        if window < 2 or horizon < 1:
            raise ValueError(f"window must be >= 2 and horizon >= 1, got {window} and {horizon}")
        if len(train) < window + horizon + 1:
            raise ValueError(f"the training part ({len(train)} steps) is shorter than window + horizon + 1 = "
                             f"{window + horizon + 1}")
        self.train_values, self.season, self.window, self.horizon = train, season or 1, window, horizon
        step = np.mean(np.abs(np.diff(train)))
        self.scale = float(step) if step > 0 else 1.0
        self.features = 1 + (2 if self.season > 1 else 0)
        self.rnn, self.head = nn.recurrent_model(cell, self.features, hidden, horizon, layers, seed=seed, dtype=dtype)
        self.opt = optim.Adam([self.rnn, self.head], lr=lr)
        self.clip, self.batch, self.dtype = clip, batch, np.dtype(dtype)
        self.rng = np.random.default_rng([seed, 7])
        # The training windows: every origin o whose window y[o - window:o] and targets y[o:o + horizon] lie in it.
        self.train_origins = np.arange(window, len(train) - horizon + 1)

    def inputs(self, series, origins):
        """(window, len(origins), features): each origin's window, relative to its last value, over the scale."""
        y = np.asarray(series, dtype=np.float64)
        idx = np.asarray(origins)[None, :] + np.arange(-self.window, 0)[:, None]  # (window, B)
        last = y[np.asarray(origins) - 1]
        x = np.empty((self.window, len(origins), self.features))
        x[..., 0] = (y[idx] - last) / self.scale
        if self.season > 1:
            phase = 2 * np.pi * (idx % self.season) / self.season
            x[..., 1], x[..., 2] = np.sin(phase), np.cos(phase)
        return x.astype(self.dtype)

    def targets(self, series, origins):
        y = np.asarray(series, dtype=np.float64)
        idx = np.asarray(origins)[:, None] + np.arange(self.horizon)[None, :]
        return ((y[idx] - y[np.asarray(origins) - 1][:, None]) / self.scale).astype(self.dtype)

    def gradients(self):
        """MSE of a random batch of training windows; the clipped gradients, not yet applied; (loss, norm)."""
        from . import optim

        o = self.rng.choice(self.train_origins, size=self.batch)
        self.opt.zero_grad()
        out, _ = self.rnn(self.inputs(self.train_values, o))
        pred = self.head(out[-1])
        err = pred - self.targets(self.train_values, o)
        self.rnn.backward(np.concatenate([np.zeros_like(out[:-1]), self.head.backward(2 * err / err.size)[None]]),
                          input_grad=False)
        return float(np.mean(err.astype(np.float64) ** 2)), optim.clip_grad_norm([self.rnn, self.head], self.clip)

    def forecast(self, history, steps):
        """The next `steps` ≤ horizon values after `history` (the true series up to the origin)."""
        history = np.asarray(history, dtype=np.float64)
        was = self.rnn.training
        self.rnn.eval()
        try:
            out, _ = self.rnn(self.inputs(history, [len(history)]))
        finally:
            self.rnn.train(was)
        return history[-1] + self.scale * self.head(out[-1])[0, :steps].astype(np.float64)
