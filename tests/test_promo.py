"""Promotion effects: estimated from a series' own history and carried into the forecast."""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.calendar import promotion_intensity
from pipeline.evaluate import monthly_traffic_factor
from pipeline.models import make_model, promo


def _promoted(seed: int, n: int = 30, growth: float = 0.02) -> tuple[pd.DatetimeIndex, np.ndarray]:
    rng = np.random.default_rng(seed)
    ds = pd.date_range("2022-01-01", periods=n + 12, freq="MS")
    y = 100e3 * (1 + growth) ** np.arange(n + 12) * monthly_traffic_factor(ds)
    return ds, y * np.exp(rng.normal(0, 0.02, n + 12))


def test_promotion_intensity_is_one_in_the_event_months() -> None:
    ds = pd.Series(pd.date_range("2025-01-01", periods=12, freq="MS"))
    x = promotion_intensity(ds)
    assert x.loc[5, "p618"] == 1.0 and x["p618"].sum() == 1.0
    assert 0.9 < x.loc[10, "pnov"] <= 1.0  # BFCM 2025 spills one day into December
    assert x["pfestival"].sum() == 1.0  # 2025: 28 Jan - 4 Feb


def test_uplift_estimated_on_promoted_series_and_not_on_plain_ones() -> None:
    ds, y = _promoted(0)
    beta = promo.estimate(y[:30], ds[:30])
    assert beta is not None
    truth = monthly_traffic_factor(ds)
    assert abs(beta[1] - np.log(truth[10] / np.median(truth))) < 0.06  # November
    rng = np.random.default_rng(1)
    plain = 50e3 * np.exp(rng.normal(0, 0.05, 30))
    assert promo.estimate(plain, ds[:30]) is None


def test_forecast_carries_the_promotions() -> None:
    """The forecast's error in promotion months is no worse than its error around them."""
    rough = {True: [], False: []}
    for seed in range(4):
        ds, y = _promoted(seed)
        df = pd.DataFrame({"unique_id": "inference", "ds": ds[:30], "y": y[:30]})
        for cal in (True, False):
            f = make_model("theta", calendar=cal).fit(df).predict(12)
            r = np.log(f["mean"].to_numpy() / y[30:])  # smooth in h unless events are missed
            rough[cal].append(float(np.mean(np.abs(np.diff(r, 2)))))
    assert np.mean(rough[True]) < 0.5 * np.mean(rough[False])
