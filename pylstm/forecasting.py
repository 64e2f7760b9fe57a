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


def mase(truth, forecast, train, season):
    """Mean absolute scaled error (Hyndman & Koehler 2006): the forecast's mean absolute error over the in-sample
    mean absolute error of the seasonal-naive forecast on the training part (season 1: the naive one)."""
    train = np.asarray(train, dtype=np.float64)
    m = max(1, season or 1)
    scale = np.mean(np.abs(train[m:] - train[:-m]))
    if not scale > 0:
        raise ValueError("the training part is constant at the season's lag: MASE is undefined")
    return float(np.mean(np.abs(np.asarray(truth) - np.asarray(forecast))) / scale)


def smape(truth, forecast):
    """Symmetric mean absolute percentage error, in percent: mean of 200 |f − y| / (|y| + |f|) (0 where both are 0)."""
    y, f = np.asarray(truth, dtype=np.float64), np.asarray(forecast, dtype=np.float64)
    den = np.abs(y) + np.abs(f)
    terms = np.where(den > 0, 200 * np.abs(f - y) / np.where(den > 0, den, 1), 0.0)
    return float(np.mean(terms))


def baselines(y, test, horizon, season, order=None):
    """The held-out forecasts of the three baselines from the same origins: {"naive", "seasonal naive",
    "linear AR(p)"} → array over the tail. The AR is fitted once, on the training part (p = season, or 3, unless
    given)."""
    y = np.asarray(y, dtype=np.float64)
    n = len(y)
    order = order or max(season or 0, 3)
    coef = fit_ar(y[:n - test], order)
    out = {"naive": [], "seasonal naive": [], f"linear AR({order})": []}
    for o, steps in origins(n, test, horizon):
        history = y[:o]
        out["naive"].append(naive(history, steps))
        out["seasonal naive"].append(seasonal_naive(history, steps, season or 1))
        out[f"linear AR({order})"].append(ar_forecast(coef, history, steps))
    return {k: np.concatenate(v) for k, v in out.items()}
