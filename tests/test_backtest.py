"""Rolling-origin backtest: window rule, no leakage, fallback visible."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipeline.backtest import WindowSpec, backtest, plan_windows
from pipeline.models.base import Forecaster, SeriesForecast, series_arrays
from pipeline.models.baseline import AnalyticBaseline
from pipeline.models.naive import SeasonalNaive


def frame(lengths: dict[str, int]) -> pd.DataFrame:
    parts = []
    for uid, n in lengths.items():
        ds = pd.date_range(end="2026-10-01", periods=n, freq="MS")
        parts.append(pd.DataFrame({"unique_id": uid, "ds": ds, "y": np.arange(1.0, n + 1) * 10}))
    return pd.concat(parts, ignore_index=True)


def test_window_rule():
    w = plan_windows(
        pd.Series({"long": 100, "four_years": 48, "mid": 30, "short": 10, "tiny": 3}),
        WindowSpec(18, 3, 3),
    )
    got = {u: list(zip(g["train_len"], g["h"], strict=True)) for u, g in w.groupby("unique_id")}
    # min_train 24, span 76: the whole 18 months, cutoffs a year apart (the cap)
    assert got["long"] == [(82, 18), (70, 18), (58, 18)]
    # span 24: three windows of 12 months, 6 apart (half-overlapping), not three of 18 months
    # 3 apart that would score almost the same stretch
    assert got["four_years"] == [(36, 12), (30, 12), (24, 12)]
    # min_train 15, span 15: spread h = floor(30 / 4) = 7, raised to 15 - 2 x 3 = 9 (towards a
    # year ahead), step floor(6 / 2) = 3
    assert got["mid"] == [(21, 9), (18, 9), (15, 9)]
    assert got["short"] == [(5, 5)]  # spread would leave 2 months: one window of all 5
    assert "tiny" not in got  # 3 months: min_train 3, nothing left to test


def test_window_rule_short_horizon_windows_touch_but_leave_no_gap():
    w = plan_windows(pd.Series({"x": 48, "y": 20}), WindowSpec(6, 2, 3))
    got = {u: list(zip(g["train_len"], g["h"], strict=True)) for u, g in w.groupby("unique_id")}
    assert got["x"] == [(42, 6), (36, 6)]  # span 24 would allow 18 apart: at most h
    assert got["y"] == [(14, 6), (10, 6)]  # span 10: step floor(4 / 1) = 4, at least 3


def test_window_rule_keeps_every_window_when_the_least_step_is_larger_or_the_history_short():
    def shapes(spec: WindowSpec, n: int) -> list[tuple[int, int]]:
        w = plan_windows(pd.Series({"x": n}), spec)
        return list(zip(w["train_len"], w["h"], strict=True))

    # a least step of 6 on 36 months (span 18): the spread's 9-month windows 4 apart would not
    # honour it; windows of 18 - 2 x 6 = 6 months, 6 apart, keep all three
    assert shapes(WindowSpec(18, 3, 6), 36) == [(30, 6), (24, 6), (18, 6)]
    # 20 months (span 10) is too short to spread; step 2 leaves three windows of 10 - 4 = 6
    # months, not one of 10
    assert shapes(WindowSpec(18, 3, 2), 20) == [(14, 6), (12, 6), (10, 6)]
    assert shapes(WindowSpec(18, 3, 3), 20) == [(10, 10)]  # 10 - 6 = 4 months: one window
    assert shapes(WindowSpec(18, 1, 3), 48) == [(30, 18)]  # one window: the whole horizon
    # 36 months (span 18): three windows 3 apart reach a year ahead, so 12 months, not the
    # spread's 9; 44 months (span 22): 12 months, floor(10 / 2) = 5 apart
    assert shapes(WindowSpec(18, 3, 3), 36) == [(24, 12), (21, 12), (18, 12)]
    assert shapes(WindowSpec(18, 3, 3), 44) == [(32, 12), (27, 12), (22, 12)]


class Spy(Forecaster):
    """Records what it was trained on; forecasts the last value."""

    name = "spy"
    seen: list[pd.Timestamp] = []

    def __init__(self) -> None:
        pass

    def _fit(self, df):
        Spy.seen.append(df["ds"].max())
        self.y_ = series_arrays(df)

    def _predict(self, h, X_future):
        m = np.array([[self.y_[str(u)][-1]] * h for u in self.ids_])
        return SeriesForecast(m, np.ones_like(m))


class Broken(Spy):
    name = "broken"

    def _fit(self, df):
        raise RuntimeError("cannot fit")


def make(name):
    return {
        "spy": Spy,
        "broken": Broken,
        "seasonal_naive": SeasonalNaive,
        "analytic_baseline": AnalyticBaseline,
    }[name]()


def test_no_leakage_and_values():
    df = frame({"a": 40})
    Spy.seen = []
    bt, events = backtest(df, ["spy"], make, WindowSpec(6, 3, 2))
    assert not events
    # every forecast starts after its training data and uses only the value at the cutoff
    for cutoff, g in bt.groupby("cutoff"):
        assert (g["ds"] > cutoff).all()
        assert (g["mean"] == df.loc[df["ds"] == cutoff, "y"].item()).all()
    assert sorted(Spy.seen) == sorted(bt["cutoff"].unique())
    # 40 months, h 6: cutoffs after 34, 32, 30 months
    assert sorted(bt.groupby("cutoff").size().tolist()) == [6, 6, 6]
    assert bt["h"].max() == 6 and bt["scale"].iloc[0] == pytest.approx(
        120.0
    )  # seasonal diff of 10*t


def test_seasonal_naive_backtest_is_exact():
    df = frame({"a": 30})
    bt, _ = backtest(df, ["seasonal_naive"], make, WindowSpec(3, 1, 1))
    # trained on 27 months (10..270), forecasts y[t-12]: 160, 170, 180
    np.testing.assert_allclose(bt["mean"], [160, 170, 180])
    np.testing.assert_allclose(bt["y"], [280, 290, 300])


def test_failed_model_falls_back_to_baseline_visibly():
    df = frame({"a": 30, "b": 20})
    bt, events = backtest(df, ["broken"], make, WindowSpec(4, 2, 2))
    assert len(events) == 2 and all("fallback: broken failed" in e["reason"] for e in events)
    assert bt["fallback"].all() and (bt["model"] == "broken").all()
    # run-rate of the last 3 months at the cutoff
    g = bt[(bt["unique_id"] == "a") & (bt["h"] == 1)].sort_values("cutoff").iloc[-1]
    assert g["mean"] == pytest.approx(np.mean([240.0, 250.0, 260.0]))
