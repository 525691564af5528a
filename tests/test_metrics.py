"""Metrics against hand-computed values."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipeline import metrics as mt


def test_scale_seasonal_and_fallbacks():
    assert mt.scale_of(np.arange(24.0)) == 12.0  # every seasonal difference is 12
    assert mt.scale_of(np.array([1.0, 2, 4, 7])) == pytest.approx(2.0)  # short: naive, (1+2+3)/3
    assert mt.scale_of(np.array([5.0, 5, 5])) == 5.0  # constant: mean |y|
    assert mt.scale_of(np.array([0.0, 0.0])) == 1.0


def test_mase_wape_smape():
    ins = np.array([1.0, 2, 3, 4, 5])  # naive scale 1
    y, f = np.array([6.0, 8]), np.array([5.0, 9])
    assert mt.mase(y, f, ins) == pytest.approx(1.0)
    assert mt.wape(y, f) == pytest.approx(2 / 14)
    assert mt.smape(y, f) == pytest.approx(100 * (1 / 11 + 1 / 17))
    assert mt.smape(np.array([0.0]), np.array([0.0])) == 0.0


def test_pinball_coverage_msis():
    assert mt.pinball(np.array([10.0]), np.array([8.0]), 0.9) == pytest.approx(1.8)
    assert mt.pinball(np.array([10.0]), np.array([12.0]), 0.9) == pytest.approx(0.2)
    y = np.array([10.0, 20, 5])
    lo, hi = np.full(3, 8.0), np.full(3, 12.0)
    assert mt.coverage(y, lo, hi) == pytest.approx(1 / 3)
    # widths 4; 20 is 8 above: 4 + 40*8; 5 is 3 below: 4 + 40*3  (2/a = 40 at 95 %)
    terms = mt.interval_score_terms(y, lo, hi, 95)
    np.testing.assert_allclose(terms, [4, 324, 124])
    assert mt.msis(y, lo, hi, np.arange(24.0), 95) == pytest.approx(452 / 3 / 12)


def test_summarize_averages_per_forecast_then_overall():
    bt = pd.DataFrame(
        {
            "unique_id": ["a", "a", "a", "b"],
            "cutoff": pd.to_datetime(["2020-01-01"] * 3 + ["2020-01-01"]),
            "model": "m",
            "y": [10.0, 10.0, 10.0, 4.0],
            "mean": [9.0, 11.0, 13.0, 4.0],
            "scale": [2.0, 2.0, 2.0, 1.0],
            "lo_80": [8.0, 8.0, 8.0, 3.0],
            "hi_80": [12.0, 12.0, 12.0, 5.0],
        }
    )
    s = mt.summarize(bt, (80,)).iloc[0]
    # series a: |e| = 1, 1, 3 over scale 2 -> 5/6; series b: 0 -> mean 5/12
    assert s["MASE"] == pytest.approx(5 / 12)
    assert s["WAPE"] == pytest.approx(5 / 34)
    assert s["coverage_80"] == 1.0
    assert s["n"] == 4


def test_accuracy_table_is_cost_weighted() -> None:
    """A tiny series with a huge MASE cannot dominate the ``all`` row; typical errors by horizon."""
    from pipeline.metrics import accuracy_table

    rows = []
    for uid, level, err, scale in (("a/x", 1000.0, 0.10, 50.0), ("a/y", 10.0, 5.0, 0.1)):
        for h in range(1, 13):
            rows.append(
                {
                    "unique_id": uid,
                    "cutoff": pd.Timestamp("2026-01-01"),
                    "h": h,
                    "model": "m",
                    "y": level,
                    "mean": level * (1 + err),
                    "scale": scale,
                    "lo_80": level * 0.5,
                    "hi_80": level * 2.0,
                }
            )
    bt = pd.DataFrame(rows)
    acc = accuracy_table(bt, pd.Series({"a/x": "m", "a/y": "m"}), (80,)).set_index("unique_id")
    assert acc.loc["a/x", "typical_error_1m"] == pytest.approx(0.10)
    assert acc.loc["a/x", "typical_error_12m"] == pytest.approx(0.10)
    assert acc.loc["a/y", "MASE"] == pytest.approx(500.0)
    # cost-weighted: 1000 / 1010 of the weight on a/x (MASE 2)
    assert acc.loc["all", "MASE"] == pytest.approx((2.0 * 1000 + 500.0 * 10) / 1010)
    assert acc.loc["all", "WAPE"] == pytest.approx((100 * 12 + 50 * 12) / (1010 * 12))
    assert acc.loc["a/x", "cost_share"] == pytest.approx(1000 / 1010)


def test_accuracy_of_a_plan_driven_series_and_of_what_holds_it() -> None:
    """Pre-training's GPUs follow the plan's scheduled runs, which no backtest saw: their row has
    no figures and says why. Pre-training (and the total) publish the models' estimate of the
    rest plus the plan, so their figures are of the rest: actuals 110, 120 minus the GPUs' 100,
    100 is 10, 20; the models' 62, 68 minus their GPU forecast 50, 50 is 12, 18; misses 2 and 2
    over 30 (WAPE 0.133; one month ahead 2 / 10). Storage is a plain backtest: misses 1, 2 over
    30. By hand."""
    from pipeline.metrics import NOT_BACKTESTED, accuracy_table
    from pipeline.report import _model_words, error_words, typical_errors

    rows = []
    series = {
        ("pretraining", "ensemble"): ([110.0, 120.0], [62.0, 68.0]),
        ("total", "ensemble"): ([110.0, 120.0], [62.0, 68.0]),
        ("pretraining/compute_gpu", "ensemble"): ([100.0, 100.0], [50.0, 50.0]),
        ("pretraining/compute_gpu", "analytic_baseline"): ([100.0, 100.0], [0.0, 0.0]),
        ("pretraining/storage", "ensemble"): ([10.0, 20.0], [9.0, 22.0]),
    }
    for (uid, model), (ys, fs) in series.items():
        for h, (y, f) in enumerate(zip(ys, fs, strict=True), start=1):
            rows.append(
                {"unique_id": uid, "cutoff": pd.Timestamp("2026-01-01"),
                 "ds": pd.Timestamp("2026-01-01") + pd.DateOffset(months=h), "h": h,
                 "model": model, "y": y, "mean": f, "scale": 5.0, "lo_80": 0.0, "hi_80": 1e9}
            )  # fmt: skip
    bt = pd.DataFrame(rows)
    chosen = pd.Series(
        {"total": "ensemble", "pretraining": "ensemble", "pretraining/storage": "ensemble",
         "pretraining/compute_gpu": "analytic_baseline"}
    )  # fmt: skip
    acc = accuracy_table(bt, chosen, (80,), {"pretraining/compute_gpu": "ensemble"})
    acc = acc.set_index("unique_id")
    gpu = acc.loc["pretraining/compute_gpu"]
    assert (
        gpu["basis"] == NOT_BACKTESTED
        and np.isnan(gpu[["WAPE", "MASE", "coverage_80"]].astype(float)).all()
    )
    for node in ("pretraining", "total"):
        r = acc.loc[node]
        assert r["WAPE"] == pytest.approx(4 / 30) and r["typical_error_1m"] == pytest.approx(0.2)
        assert np.isnan(r["MASE"]) and np.isnan(r["coverage_80"])
        assert r["basis"] == "backtest of the cost beyond pretraining/compute_gpu (the plan)"
    assert acc.loc["pretraining/storage", "WAPE"] == pytest.approx(3 / 30)
    assert acc.loc["pretraining/storage", "basis"] == "backtest"
    assert acc.loc["all", "WAPE"] == pytest.approx(3 / 30)  # the bottom series with a backtest
    # shares of cost count every series: the GPUs' 200 and storage's 30
    assert acc.loc["total", "cost_share"] == pytest.approx(1.0)
    assert acc.loc["pretraining/compute_gpu", "cost_share"] == pytest.approx(200 / 230)
    # what the report says about them
    errors = typical_errors(acc.reset_index(), (1,))
    # the rest (storage, 30 of 230) is what the figures are of: 13 % of pre-training's cost
    assert acc.loc["pretraining", "measured_share"] == pytest.approx(30 / 230)
    assert acc.loc["pretraining/storage", "measured_share"] == 1.0
    assert np.isnan(acc.loc["pretraining/compute_gpu", "measured_share"])
    words = error_words(
        errors,
        "pretraining",
        acc.loc["pretraining", "basis"],
        acc.loc["pretraining", "measured_share"],
    )
    assert words == (
        "typical error ±20 % one month ahead on the 13 % of its cost the models forecast"
        " (the plan covers pretraining/compute gpu)"
    )
    from pipeline.report import _figures_of

    assert _figures_of(acc.loc["pretraining"]) == (
        " (figures: the 13 % of its cost the models forecast)"
    )
    assert _figures_of(acc.loc["pretraining/storage"]) == ""
    assert "not measurable (it follows the plan" in error_words(errors, "x", NOT_BACKTESTED)
    assert _model_words("ensemble", acc.loc["total", "basis"]) == (
        "the plan for pretraining/compute gpu, a blend of models for the rest"
    )
    assert _model_words("ensemble", "backtest") == "a blend of models"
    three = "backtest of the cost beyond a/x, b/y, c/z (the plan)"
    assert _model_words("ensemble", three) == (
        "the plan for 3 series, a blend of models for the rest"
    )
    # the GPUs' windows cut a month later (a shorter history): the rest is the sum of the
    # children's: storage alone at pre-training's cutoffs, then pre-training's rest at the total's
    moved = bt.assign(
        cutoff=np.where(bt["unique_id"] == "pretraining/compute_gpu", pd.Timestamp("2026-02-01"), bt["cutoff"])
    )  # fmt: skip
    acc = accuracy_table(moved, chosen, (80,), {"pretraining/compute_gpu": "ensemble"})
    acc = acc.set_index("unique_id")
    for node in ("pretraining", "total"):
        assert acc.loc[node, "WAPE"] == pytest.approx(3 / 30)
        assert acc.loc[node, "basis"].startswith("backtest of the cost beyond")
    # storage's windows elsewhere too: nothing to rebuild the rest from, so the aggregates keep
    # the models' own backtest (110, 120 against 62, 68: WAPE 100 / 230), said to be of them alone
    moved.loc[moved["unique_id"] == "pretraining/storage", "cutoff"] = pd.Timestamp("2026-02-01")
    acc = accuracy_table(moved, chosen, (80,), {"pretraining/compute_gpu": "ensemble"})
    acc = acc.set_index("unique_id")
    assert acc.loc["total", "WAPE"] == pytest.approx(100 / 230)
    assert acc.loc["total", "MASE"] == pytest.approx((48 / 5 + 52 / 5) / 2)
    assert acc.loc["total", "basis"].startswith("backtest of the models alone")
    words = error_words(typical_errors(acc.reset_index(), (1,)), "total", acc.loc["total", "basis"])
    assert words == (
        "typical error of the models alone ±44 % one month ahead (the figure takes "
        "pretraining/compute gpu from the plan, which no backtest saw)"
    )
    # a phase that is nothing but planned runs: the rest has no cost, nothing to measure
    only = bt[bt["unique_id"] != "pretraining/storage"].copy()
    only.loc[only["unique_id"].isin(["pretraining", "total"]), "y"] = [100.0, 100.0] * 2
    acc = accuracy_table(only, chosen, (80,), {"pretraining/compute_gpu": "ensemble"})
    acc = acc.set_index("unique_id")
    assert acc.loc["pretraining", "basis"] == NOT_BACKTESTED
    assert acc.loc["pretraining", "scope"] == "phase" and np.isnan(acc.loc["pretraining", "WAPE"])
    assert _model_words("ensemble", NOT_BACKTESTED) == "the plan"
    # sums of floats leave ~1e-13 of a phase that is two planned series: still nothing to measure
    two = bt[bt["unique_id"] != "pretraining/storage"].copy()
    gpu = two["unique_id"] == "pretraining/compute_gpu"
    two.loc[gpu, "y"] = np.tile([1000.1, 1000.7], 2)
    tpu = two[gpu].assign(unique_id="pretraining/compute_tpu", y=np.tile([2000.2, 2000.9], 2))
    two = pd.concat([two, tpu], ignore_index=True)
    two.loc[two["unique_id"].isin(["pretraining", "total"]), "y"] = [
        1000.1 + 2000.2,
        1000.7 + 2000.9,
    ] * 2
    plans = {"pretraining/compute_gpu": "ensemble", "pretraining/compute_tpu": "ensemble",
             "pretraining/new": "ensemble"}  # fmt: skip
    acc = accuracy_table(two, chosen, (80,), plans).set_index("unique_id")
    assert (acc.loc[["pretraining", "total"], "basis"] == NOT_BACKTESTED).all()
    # a planned series too short for any window still gets its row, and takes nothing out
    assert acc.loc["pretraining/new", "basis"] == NOT_BACKTESTED


def test_accuracy_all_row_is_the_metrics_cost_weighted_mase() -> None:
    """One cost-weighted MASE everywhere: the accuracy table's ``all`` row weights each forecast
    (series and cutoff) by its cost, as ``MASE_cost`` and the champion decisions do. a/x: a window
    at 1000 a month forecast 1100 (MASE 2, cost 2000), one at 3000 forecast 3150 (MASE 3, cost
    6000); a/y: 10 forecast 15 (scale 0.1: MASE 50, cost 20); two months each. Per forecast:
    (2 x 2000 + 3 x 6000 + 50 x 20) / 8020 = 2.868; per series (a/x's mean MASE 2.5 on its cost
    8000) it would be 2.618."""
    from pipeline.metrics import accuracy_table

    rows = []
    for uid, cutoff, y, f, scale in (
        ("a/x", "2025-01-01", 1000.0, 1100.0, 50.0),
        ("a/x", "2025-07-01", 3000.0, 3150.0, 50.0),
        ("a/y", "2025-07-01", 10.0, 15.0, 0.1),
    ):
        for h in (1, 2):
            rows.append(
                {"unique_id": uid, "cutoff": pd.Timestamp(cutoff), "h": h, "model": "m", "y": y,
                 "mean": f, "scale": scale}
            )  # fmt: skip
    bt = pd.DataFrame(rows)
    acc = accuracy_table(bt, pd.Series({"a/x": "m", "a/y": "m"}), ()).set_index("unique_id")
    assert acc.loc["all", "MASE"] == pytest.approx(23000 / 8020)
    assert acc.loc["all", "MASE"] == pytest.approx(mt.cost_weighted_mase(bt))


def test_cost_weighted_mase_lets_the_money_decide() -> None:
    """A $100k/month series forecast 2 % off (scale 10k: MASE 0.2) and a $1k/month one forecast
    at 3x (scale 50: MASE 40), two months each in one window. Plain mean of the forecasts' MASE:
    20.1; cost-weighted: (0.2 x 200k + 40 x 2k) / 202k = 0.594. The champion decisions use the
    latter, so the tiny series cannot choose the version."""
    from pipeline.registry import backtest_mase

    bt = pd.DataFrame(
        {
            "unique_id": ["big", "big", "tiny", "tiny"],
            "cutoff": pd.Timestamp("2026-01-01"),
            "model": "m",
            "y": [100e3, 100e3, 1e3, 1e3],
            "mean": [102e3, 98e3, 3e3, 3e3],
            "scale": [10e3, 10e3, 50.0, 50.0],
        }
    )
    want = (0.2 * 200e3 + 40.0 * 2e3) / 202e3
    assert mt.cost_weighted_mase(bt) == pytest.approx(want)
    assert backtest_mase(bt, model="m") == pytest.approx(want)
    s = mt.summarize(bt, levels=(), by=["model"]).iloc[0]
    assert s["MASE"] == pytest.approx(20.1) and s["MASE_cost"] == pytest.approx(want)
    assert np.isnan(mt.cost_weighted_mase(bt.assign(y=0.0)))  # no cost: nothing to weigh by
