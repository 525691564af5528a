"""Plan-driven selection: a series the plan covers with scheduled runs is forecast at the plan's
cost, whatever the backtest says; without a plan nothing changes."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipeline.forecast import ForecastConfig, run_forecast
from pipeline.plan import plan_from_dict
from pipeline.plan_driven import HEADCOUNT_REASON

PRICE = 6.0  # H100 on demand
GPUS, DAYS = 64, 10.0
PLANNED = GPUS * DAYS * 24 * PRICE  # 92,160: the whole run inside 2027-02

PLAN = {
    "currency": "USD",
    "price_book": {
        "gpu_hour": {"H100": {"on_demand": PRICE, "committed": 4.0}},
        "cpu_core_hour": 0.04,
        "storage_gb_month": 0.02,
    },
    "scheduled_runs": [
        {
            "name": "burst",
            "phase": "pretraining",
            "gpu": "H100",
            "gpus": GPUS,
            "start": "2027-02-03",
            "days": DAYS,
            "pricing": "on_demand",
        }
    ],
}


def hierarchy() -> pd.DataFrame:
    """36 months to 2026-12: steady inference, pretraining bursts every 6 months in history."""
    ds = pd.date_range("2024-01-01", periods=36, freq="MS")
    rng = np.random.default_rng(1)
    inf = 1000 + 20 * np.arange(36) + rng.normal(0, 15, 36)
    pre = np.where(np.arange(36) % 6 == 2, 300_000.0, 0.0)
    rows = []
    for d, a, b in zip(ds, inf, pre, strict=True):
        rows += [
            ("inference/compute_gpu", d, a),
            ("inference", d, a),
            ("pretraining/compute_gpu", d, b),
            ("pretraining", d, b),
            ("total", d, a + b),
        ]
    return pd.DataFrame(rows, columns=["unique_id", "ds", "y"])


CFG = ForecastConfig(
    horizon=6,
    models=("analytic_baseline", "seasonal_naive", "theta"),
    n_windows=2,
    n_paths=400,
    reconcile=True,
)


@pytest.mark.parametrize("reconcile", [True, False])
def test_scheduled_burst_forecast_at_plan_cost(reconcile: bool) -> None:
    cfg = ForecastConfig(**{**CFG.__dict__, "reconcile": reconcile})
    res = run_forecast(hierarchy(), cfg, plan_from_dict(PLAN), progress=False)
    fc = res.forecast.set_index(["unique_id", "ds"])
    feb = pd.Timestamp("2027-02-01")
    assert fc.loc[("pretraining/compute_gpu", feb), "mean"] == pytest.approx(PLANNED, rel=1e-9)
    for m in ("2027-01-01", "2027-03-01", "2027-06-01"):  # nothing scheduled: nothing forecast
        assert fc.loc[("pretraining/compute_gpu", pd.Timestamp(m)), "mean"] == pytest.approx(
            0.0, abs=1e-6
        )
    sel = res.selection.set_index("unique_id")
    assert sel.loc["pretraining/compute_gpu", "model"] == "analytic_baseline"
    assert "plan-driven: scheduled runs" in sel.loc["pretraining/compute_gpu", "reason"]
    assert "plan" not in sel.loc["inference/compute_gpu", "reason"]
    # intervals nest around the plan, widen honestly, and the phase follows its only child
    row = fc.loc[("pretraining/compute_gpu", feb)]
    assert row["lo_95"] <= row["lo_80"] <= row["mean"] <= row["hi_80"] <= row["hi_95"]
    assert 0.05 * PLANNED < row["hi_95"] - row["lo_95"] < 0.8 * PLANNED
    assert fc.loc[("pretraining", feb), "mean"] == pytest.approx(PLANNED, rel=1e-6)
    # a phase that is only its plan-driven line says so (reconciled, it is exactly their sum);
    # its model stays the backtest's choice (what the published score reads); the total, which
    # holds a modelled line too, keeps its reason
    model = sel.loc["pretraining", "model"]
    assert model != "analytic_baseline"
    if reconcile:
        assert sel.loc["pretraining", "reason"] == (
            "the sum of its lines, every one plan-driven pretraining/compute_gpu: its own "
            f"{model} forecast is not used"
        )
    else:  # unreconciled, the phase's own model still sets it beside the plan's run
        assert sel.loc["pretraining", "reason"].startswith(("combination kept", "lowest"))
    assert "includes plan-driven pretraining/compute_gpu" in sel.loc["total", "reason"]
    if reconcile:  # coherent means and paths: total = sum of the bottom series
        ids = res.path_ids
        tot = res.paths[ids.index("total")]
        kids = (
            res.paths[ids.index("inference/compute_gpu")]
            + res.paths[ids.index("pretraining/compute_gpu")]
        )
        np.testing.assert_allclose(tot, kids, rtol=1e-9, atol=1e-6)
        quarter = res.paths[ids.index("pretraining/compute_gpu")][:, :3].sum(axis=1)
        assert np.median(quarter) == pytest.approx(PLANNED, rel=0.03)


def test_without_plan_unchanged() -> None:
    """No plan, or a plan that covers none of the series: identical forecasts and selection."""
    df = hierarchy()
    a = run_forecast(df, CFG, None, progress=False)
    other = {**PLAN, "scheduled_runs": [{**PLAN["scheduled_runs"][0], "phase": "optimization"}]}
    b = run_forecast(df, CFG, plan_from_dict(other), progress=False)
    pd.testing.assert_frame_equal(a.forecast, b.forecast)
    pd.testing.assert_frame_equal(a.selection, b.selection)
    np.testing.assert_array_equal(a.paths, b.paths)
    assert not a.selection["reason"].str.contains("plan").any()


def test_headcount_checked_against_history() -> None:
    """Steady labor follows the plan only when the plan agrees with the last actual month."""
    from pipeline.forecast import plan_overrides

    ds = pd.date_range("2025-01-01", periods=24, freq="MS")
    hist = pd.DataFrame({"unique_id": "operations/labor", "ds": ds, "y": 5 * 160 * 100.0})
    raw = {
        **PLAN,
        "scheduled_runs": [],
        "headcount": [
            {
                "phase": "operations",
                "team": "sre",
                "people": 5,
                "hours_per_month": 160,
                "hourly_rate": 100.0,
                "start": "2027-01",
            }
        ],
    }
    got = plan_overrides(hist, plan_from_dict(raw), 6)
    assert got["operations/labor"][0] is True
    raw["headcount"][0]["people"] = 9  # 80 % off the last actual: the models stay
    got = plan_overrides(hist, plan_from_dict(raw), 6)
    assert got["operations/labor"][0] is False and "models kept" in got["operations/labor"][1]
    # a plan that begins two months after the history: checked at its first month, not at the
    # month before it (which it prices at 0, "100 % off"); versions stored before: as they ran
    raw["headcount"][0].update(people=5, start="2027-03")
    got = plan_overrides(hist, plan_from_dict(raw), 6)
    assert got["operations/labor"] == (
        True,
        f"{HEADCOUNT_REASON} (first month within 0.0% of the last actual)",
    )
    old = plan_overrides(hist, plan_from_dict(raw), 6, from_start=False)
    assert old["operations/labor"][0] is False and "100.0% off" in old["operations/labor"][1]


def test_no_scheduled_run_before_the_plan_begins() -> None:
    """The plan begins in March 2027 (``start``) and schedules one run then; the history's last
    burst was in November 2026, so the run-rate (October to December) is 100k. January and
    February are before the plan: it says nothing of them, and a scheduled-runs series has no run
    there, only what it cost between runs (nothing, here). A version stored before the rule
    re-runs with the run-rate."""
    import dataclasses

    ds = pd.date_range("2024-01-01", periods=36, freq="MS")
    h = hierarchy()
    pre = np.where(np.arange(36) % 6 == 4, 300_000.0, 0.0)  # bursts up to 2026-11
    for uid in ("pretraining/compute_gpu", "pretraining"):
        h.loc[h["unique_id"] == uid, "y"] = pre
    h.loc[h["unique_id"] == "total", "y"] = (
        h.loc[h["unique_id"] == "inference", "y"].to_numpy() + pre
    )
    assert h["ds"].max() == ds[-1]
    plan = {**PLAN, "start": "2027-03"}
    plan["scheduled_runs"] = [{**PLAN["scheduled_runs"][0], "start": "2027-03-03"}]
    res = run_forecast(h, CFG, plan_from_dict(plan), progress=False)
    fc = res.forecast.set_index(["unique_id", "ds"])["mean"]
    for m in ("2027-01-01", "2027-02-01"):
        assert fc.loc[("pretraining/compute_gpu", pd.Timestamp(m))] == pytest.approx(0.0, abs=1e-6)
    assert fc.loc[("pretraining/compute_gpu", pd.Timestamp("2027-03-01"))] == pytest.approx(
        PLANNED, rel=1e-9
    )
    old = run_forecast(
        h, dataclasses.replace(CFG, plan_from_its_start=False), plan_from_dict(plan), progress=False
    )
    fo = old.forecast.set_index(["unique_id", "ds"])["mean"]
    assert fo.loc[("pretraining/compute_gpu", pd.Timestamp("2027-01-01"))] == pytest.approx(
        100_000.0, rel=1e-6
    )
