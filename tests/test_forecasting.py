"""pylstm.forecasting: the rolling-origin protocol, the baselines and the scores, on series whose answers are known."""

import numpy as np
import pytest

from pylstm import forecasting as fc


def test_every_held_out_step_is_forecast_once_at_most_horizon_ahead():
    assert fc.origins(20, 7, 3) == [(13, 3), (16, 3), (19, 1)]
    covered = [o + k for o, steps in fc.origins(100, 24, 5) for k in range(steps)]
    assert covered == list(range(76, 100))
    assert fc.default_test_size(100, 12) == 24 and fc.default_test_size(1000, 12) == 100
    with pytest.raises(ValueError, match="test must be between"):
        fc.origins(10, 10, 2)


def test_the_naive_forecasts():
    history = np.arange(1.0, 25.0)
    np.testing.assert_array_equal(fc.naive(history, 3), [24, 24, 24])
    np.testing.assert_array_equal(fc.seasonal_naive(history, 14, 12), list(range(13, 25)) + [13, 14])


def test_the_linear_ar_recovers_a_known_process():
    rng = np.random.default_rng(0)
    y = np.zeros(3000)
    for t in range(2, len(y)):
        y[t] = 0.5 + 0.6 * y[t - 1] - 0.2 * y[t - 2] + 0.01 * rng.standard_normal()
    np.testing.assert_allclose(fc.fit_ar(y, 2), [0.5, 0.6, -0.2], atol=0.02)
    coef = np.array([1.0, 0.5])
    np.testing.assert_allclose(fc.ar_forecast(coef, [2.0], 3), [2.0, 2.0, 2.0])  # the fixed point of 1 + 0.5 y
    np.testing.assert_allclose(fc.ar_forecast(coef, [0.0], 2), [1.0, 1.5])
    with pytest.raises(ValueError, match="needs more than"):
        fc.fit_ar([1.0, 2.0, 3.0], 2)


def test_the_scores():
    assert fc.mase([6, 7], [5, 5], [1, 2, 3, 4, 5], 1) == pytest.approx(1.5)
    assert fc.mase([6, 7], [6, 7], [1, 2, 3, 4, 5], 1) == 0
    assert fc.smape([100], [110]) == pytest.approx(200 * 10 / 210)
    assert fc.smape([0, 1], [0, 1]) == 0
    with pytest.raises(ValueError, match="MASE is undefined"):
        fc.mase([1], [1], [3, 3, 3], 1)


def test_baselines_come_from_the_same_origins():
    season, cycle = 12, np.sin(2 * np.pi * np.arange(12) / 12)
    y = np.tile(cycle, 10) + 0.01 * np.arange(120) + 5  # a season on a slow trend
    f = fc.baselines(y, test=24, horizon=6, season=season)
    assert set(f) == {"naive", "seasonal_naive", "linear_ar"} and all(len(v) == 24 for v in f.values())
    assert fc.baseline_labels(season) == {"naive": "naive", "seasonal_naive": "seasonal naive (12)",
                                          "linear_ar": "linear AR(12)"}
    truth, train = y[-24:], y[:-24]
    # The trend over one season is 0.12, the in-sample seasonal-naive error: forecasts one season back are off by it.
    assert fc.mase(truth, f["seasonal_naive"], train, season) == pytest.approx(1.0)
    assert fc.mase(truth, f["naive"], train, season) > 5
    assert fc.mase(truth, f["linear_ar"], train, season) < 0.1  # the AR captures season and trend
