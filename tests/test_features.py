"""Features checked against independent computations (plain loops, SQLite window queries, numpy)."""

from __future__ import annotations

import datetime as dt
import sqlite3

import numpy as np
import pandas as pd
import pytest

from features.baseline import baseline_forecast, baseline_run_rate
from features.calendar import (
    black_friday,
    business_days_in_month,
    calendar_features,
    days_in_month,
    promo_618_days,
    promo_bfcm_days,
    promo_double11_days,
    spring_festival_days,
)
from features.drivers import driver_ratio, gpu_hours, planned_gpu_hours, tokens, usage_monthly
from features.lags import lag, lag_features, rolling_mean, rolling_std
from pipeline.plan import plan_from_dict


def _frame(seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    parts = []
    for uid, n in (("a", 20), ("b", 7), ("c", 1)):
        parts.append(
            pd.DataFrame(
                {
                    "unique_id": uid,
                    "ds": pd.date_range("2024-01-01", periods=n, freq="MS"),
                    "y": rng.normal(100, 10, n).round(3),
                }
            )
        )
    return pd.concat(parts, ignore_index=True)


# --- calendar ---------------------------------------------------------------------------------
def test_black_friday_by_hand() -> None:
    assert black_friday(2023) == dt.date(2023, 11, 24)
    assert black_friday(2024) == dt.date(2024, 11, 29)
    assert black_friday(2025) == dt.date(2025, 11, 28)
    assert black_friday(2026) == dt.date(2026, 11, 27)
    assert black_friday(2019) == dt.date(2019, 11, 29)


def test_business_days_and_days_in_month_vs_numpy() -> None:
    ds = pd.Series(pd.date_range("2015-01-01", "2035-12-01", freq="MS"))
    bd = business_days_in_month(ds).to_numpy()
    for m, got in zip(ds, bd, strict=True):
        end = (m + pd.offsets.MonthBegin(1)).date()
        expect = sum(1 for d in pd.date_range(m, end, inclusive="left") if d.weekday() < 5)
        assert got == expect
    assert days_in_month(pd.Series([pd.Timestamp("2024-02-01")])).iloc[0] == 29
    assert business_days_in_month(pd.Series([pd.Timestamp("2024-06-01")])).iloc[0] == 20


def test_promotion_windows_split_across_months() -> None:
    ds = pd.Series(
        pd.to_datetime(
            [
                "2025-01-01",
                "2025-02-01",
                "2025-06-01",
                "2025-11-01",
                "2025-12-01",
                "2024-02-01",
                "2024-11-01",
                "2024-12-01",
                "2026-02-01",
            ]
        )
    )
    assert promo_618_days(ds).tolist() == [0, 0, 18, 0, 0, 0, 0, 0, 0]
    assert promo_double11_days(ds).tolist() == [0, 0, 0, 11, 0, 0, 11, 0, 0]
    # BFCM 2025: Fri 28 Nov .. Mon 1 Dec -> 3 days + 1; 2024: 29 Nov .. 2 Dec -> 2 + 2
    assert promo_bfcm_days(ds).tolist() == [0, 0, 0, 3, 1, 0, 2, 2, 0]
    # Spring Festival 2025-01-29: eve 28 Jan, 8 days -> 28-31 Jan (4) and 1-4 Feb (4);
    # 2024-02-10: 9-16 Feb (8); 2026-02-17: 16-23 Feb (8)
    assert spring_festival_days(ds).tolist() == [4, 4, 0, 0, 0, 8, 0, 0, 8]
    cal = calendar_features(ds)
    assert list(cal.columns)[:4] == ["month", "quarter", "days_in_month", "business_days_in_month"]


# --- lags -------------------------------------------------------------------------------------
@pytest.mark.parametrize("gap", [1, 3])
def test_rolling_features_vs_sqlite_window(gap: int) -> None:
    df = _frame()
    feats = lag_features(df["y"], df["unique_id"], lags=(1, 2), windows=(3,), gap=gap)
    con = sqlite3.connect(":memory:")
    df.assign(ds=df["ds"].dt.strftime("%Y-%m-%d")).to_sql("s", con, index=False)
    w0, w1 = gap + 2, gap  # rows between (gap + window - 1) and gap preceding
    q = f"""
        select avg(y) over w, min(y) over w, max(y) over w, count(y) over w,
               lag(y, {gap}) over (partition by unique_id order by ds),
               lag(y, {gap + 1}) over (partition by unique_id order by ds)
        from s window w as (partition by unique_id order by ds rows between {w0} preceding and {w1} preceding)
        order by unique_id, ds"""
    rows = np.array(con.execute(q).fetchall(), dtype=float)
    has = rows[:, 3] > 0
    np.testing.assert_allclose(feats["rolling_mean_3"].to_numpy()[has], rows[has, 0])
    np.testing.assert_allclose(feats["rolling_min_3"].to_numpy()[has], rows[has, 1])
    np.testing.assert_allclose(feats["rolling_max_3"].to_numpy()[has], rows[has, 2])
    assert feats["rolling_mean_3"].isna().to_numpy()[~has].all()
    np.testing.assert_allclose(feats["lag_1"].to_numpy(), rows[:, 4])
    np.testing.assert_allclose(feats["lag_2"].to_numpy(), rows[:, 5])


def test_rolling_std_vs_python_loop() -> None:
    df = _frame(1)
    got = rolling_std(df["y"], df["unique_id"], 4, gap=2).to_numpy()
    for _uid, g in df.groupby("unique_id"):
        y = g["y"].to_list()
        for t, i in enumerate(g.index):
            window = y[max(0, t - 2 - 3) : max(0, t - 2 + 1)]
            if len(window) >= 2:
                assert got[i] == pytest.approx(float(np.std(window, ddof=1)))
            else:
                assert np.isnan(got[i])


def test_gap_must_be_positive() -> None:
    df = _frame()
    with pytest.raises(ValueError, match="gap must be >= 1"):
        rolling_mean(df["y"], df["unique_id"], 3, gap=0)
    with pytest.raises(ValueError):
        lag(df["y"], df["unique_id"], 0)


@pytest.mark.parametrize("gap", [1, 4])
def test_no_leakage_after_cutoff(gap: int) -> None:
    """Features of months <= cutoff + gap (known at cutoff) ignore every value after the cutoff."""
    df = _frame(2)
    cutoff = pd.Timestamp("2024-06-01")
    perturbed = df.copy()
    after = perturbed["ds"] > cutoff
    perturbed.loc[after, "y"] = perturbed.loc[after, "y"] * 1000 + 7
    f0 = lag_features(df["y"], df["unique_id"], gap=gap)
    f1 = lag_features(perturbed["y"], perturbed["unique_id"], gap=gap)
    known = df["ds"] <= cutoff + pd.DateOffset(months=gap)
    pd.testing.assert_frame_equal(f0[known], f1[known])
    b0 = baseline_run_rate(df["y"], df["unique_id"], gap=gap)
    b1 = baseline_run_rate(perturbed["y"], perturbed["unique_id"], gap=gap)
    pd.testing.assert_series_equal(b0[known], b1[known])
    # and the check has teeth: a month after the cutoff + gap does change
    assert not f0[~known & (df["unique_id"] == "a")].equals(f1[~known & (df["unique_id"] == "a")])


# --- drivers and baseline ---------------------------------------------------------------------
def test_usage_monthly_and_drivers() -> None:
    usage = pd.DataFrame(
        {
            "ts": [
                "2027-01-03",
                "2027-01-20",
                "2027-02-01",
                "2027-01-05",
                "2027-01-06",
                "2027-01-07",
            ],
            "phase": ["inference"] * 3 + ["inference", "inference", "pretraining"],
            "metric": [
                "gpu_hours",
                "gpu_hours",
                "gpu_hours",
                "tokens_in",
                "tokens_out",
                "gpu_util",
            ],
            "value": [10.0, 5.0, 7.0, 100.0, 50.0, 0.4],
        }
    )
    um = usage_monthly(usage)
    assert gpu_hours(um)[("inference", pd.Timestamp("2027-01-01"))] == 15.0
    assert gpu_hours(um)[("inference", pd.Timestamp("2027-02-01"))] == 7.0
    assert tokens(um)[("inference", pd.Timestamp("2027-01-01"))] == 150.0
    assert um.loc[("pretraining", pd.Timestamp("2027-01-01")), "gpu_util"] == 0.4


def test_planned_gpu_hours_split_by_days() -> None:
    plan = plan_from_dict(
        {
            "price_book": {"gpu_hour": {"H100": {"on_demand": 1.0}}},
            "scheduled_runs": [
                {
                    "name": "r",
                    "phase": "pretraining",
                    "gpu": "H100",
                    "gpus": 10,
                    "start": "2027-01-30",
                    "days": 4,
                }
            ],
        }
    )
    g = planned_gpu_hours(plan, "2027-01", 3)
    assert g[("pretraining", pd.Timestamp("2027-01-01"))] == pytest.approx(10 * 24 * 2)
    assert g[("pretraining", pd.Timestamp("2027-02-01"))] == pytest.approx(10 * 24 * 2)
    assert ("pretraining", pd.Timestamp("2027-03-01")) not in g.index


def test_driver_ratio_and_baseline_feature() -> None:
    uid = pd.Series(["a"] * 4 + ["b"] * 2)
    drv = pd.Series([1.0, 2.0, 4.0, 4.0, 0.0, 5.0])
    r = driver_ratio(drv, uid, gap=1)
    assert r.iloc[1] == 2.0 and r.iloc[2] == 2.0 and r.iloc[3] == 1.0
    assert (
        np.isnan(r.iloc[0]) and np.isnan(r.iloc[4]) and np.isnan(r.iloc[5])
    )  # no base / zero base
    y = pd.Series([3.0, 6.0, 9.0, 12.0, 1.0, 2.0])
    rr = baseline_run_rate(y, uid, gap=1, window=2)
    assert rr.tolist()[1:4] == [3.0, 4.5, 7.5]
    planned = pd.Series([np.nan, np.nan, 100.0, np.nan, np.nan, np.nan])
    assert baseline_forecast(rr, planned).tolist()[1:4] == [3.0, 100.0, 7.5]
