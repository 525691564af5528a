"""Overrun flags: p_overrun and expected overrun by hand, statuses, the partial month, anomalies,
outputs, and the ``flag`` command's exit code."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from pipeline.conditioning import (
    PartialMonth,
    condition_partial_month,
    pace_error,
    partial_months,
)
from pipeline.errors import InputError
from pipeline.flags import (
    FlagConfig,
    find_anomalies,
    flag_budgets,
    flag_lines,
    status_for,
)
from pipeline.formatting import format_flags
from pipeline.jobs import WRITTEN, Derived, write_derived

PDS = pd.date_range("2027-01-01", periods=3, freq="MS")


def _budgets(*rows: tuple[str, str, float]) -> pd.DataFrame:
    return pd.DataFrame(
        [{"period": p, "phase": ph, "amount": a, "currency": "USD"} for p, ph, a in rows]
    )


def _hist(values: dict[str, list[float]], start: str = "2026-10-01") -> pd.DataFrame:
    ds = pd.date_range(start, periods=len(next(iter(values.values()))), freq="MS")
    return pd.DataFrame(
        [(u, d, v) for u, ys in values.items() for d, v in zip(ds, ys, strict=True)],
        columns=["unique_id", "ds", "y"],
    )


def test_p_overrun_and_expected_overrun_by_hand() -> None:
    # four paths; January totals 90, 100, 110, 120; budget 105 -> two of four over, by 5 and 15
    jan = np.array([90.0, 100.0, 110.0, 120.0])
    paths = np.stack([np.column_stack([jan, jan, jan])])
    f = flag_lines(
        _budgets(("2027-01", "total", 105)), _hist({"total": [80, 85, 88]}), paths, ["total"], PDS
    ).iloc[0]
    assert f["p_overrun"] == 0.5
    assert f["expected_overrun"] == pytest.approx((5 + 15) / 4)
    assert f["status"] == "at_risk"
    assert f["actual_to_date"] == 0.0 and f["forecast_total"] == pytest.approx(105.0)
    # a quarter: per-path sums 270, 300, 330, 360 against 320 -> two over, by 10 and 40
    q = flag_lines(
        _budgets(("2027Q1", "total", 320)), _hist({"total": [80, 85, 88]}), paths, ["total"], PDS
    ).iloc[0]
    assert q["p_overrun"] == 0.5 and q["expected_overrun"] == pytest.approx(50 / 4)


def test_statuses_and_thresholds() -> None:
    cfg = FlagConfig()
    assert status_for(0.19, 0, 100, cfg) == "ok"
    assert status_for(0.2, 0, 100, cfg) == "watch"
    assert status_for(0.5, 0, 100, cfg) == "at_risk"
    assert status_for(0.0, 101, 100, cfg) == "over_budget"
    strict = FlagConfig(watch=0.05, at_risk=0.3)
    assert (
        status_for(0.1, 0, 100, strict) == "watch" and status_for(0.3, 0, 100, strict) == "at_risk"
    )
    with pytest.raises(InputError):
        FlagConfig(watch=0.6, at_risk=0.5)
    with pytest.raises(InputError):
        FlagConfig(partial_method="magic")


def test_closed_months_and_over_budget() -> None:
    """As of mid-February: January is closed (actual 150); the quarter's budget is already spent."""
    paths = np.full((1, 5, 2), 60.0)  # Feb, Mar
    pds = pd.date_range("2027-02-01", periods=2, freq="MS")
    hist = _hist({"total": [100, 120, 150]}, start="2026-11-01")  # Nov, Dec, Jan
    b = _budgets(("2027Q1", "total", 140), ("2027Q1", "total", 400), ("2027-01", "total", 200))
    b = b.assign(period=["2027Q1", "2027Q1", "2027-01"])
    out = flag_lines(b.iloc[[0]], hist, paths, ["total"], pds)
    assert out.iloc[0]["status"] == "over_budget" and out.iloc[0]["actual_to_date"] == 150
    assert out.iloc[0]["p_overrun"] == 1.0 and out.iloc[0]["expected_overrun"] == pytest.approx(
        150 + 120 - 140
    )
    ok = flag_lines(b.iloc[[1]], hist, paths, ["total"], pds).iloc[0]
    assert ok["status"] == "ok" and ok["forecast_total"] == 270 and ok["months_closed"] == 1
    closed = flag_lines(b.iloc[[2]], hist, paths, ["total"], pds).iloc[0]  # a past month: certain
    assert closed["p_overrun"] == 0.0 and closed["forecast_rest"] == 0.0


def test_partial_month_proportional_by_hand() -> None:
    pm = PartialMonth(
        pd.Timestamp("2027-01-01"), mtd=50.0, days_covered=10, days_in_month=30, pace_error=None
    )
    remaining, later = condition_partial_month(
        np.array([150.0, 300.0]), np.array([[1.0], [2.0]]), pm
    )
    np.testing.assert_allclose(remaining, [100.0, 200.0])  # 20/30 of the month's path
    np.testing.assert_allclose(later, [[1.0], [2.0]])
    paths = np.array([[[150.0, 10.0], [300.0, 20.0]]])
    f = flag_lines(
        _budgets(("2027-01", "total", 200)),
        _hist({"total": [1.0]}, "2026-12-01"),
        paths,
        ["total"],
        pd.date_range("2027-01-01", periods=2, freq="MS"),
        partial={"total": pm},
        config=FlagConfig(partial_method="proportional"),
    ).iloc[0]
    assert f["actual_to_date"] == 50 and f["forecast_total"] == pytest.approx((150 + 250) / 2)
    assert f["p_overrun"] == 0.5 and f["days_covered"] == 10


def test_a_line_forecast_at_zero_that_bills_again_goes_on_at_its_pace() -> None:
    """A line no longer billed is forecast at exactly 0 in every path: no spread for the update to
    move. Billing again (8,000 in 15 of 30 days) the month goes on at its pace, 8,000 more; a
    credit in the month (negative) is the month's whole cost; nothing billed stays 0."""
    zero, later = np.zeros(200), np.zeros((200, 2))
    for method in ("enkf", "proportional"):
        for err in (None, 0.1):
            pm = PartialMonth(pd.Timestamp("2027-01-01"), 8000.0, 15, 30, pace_error=err)
            rem, adj = condition_partial_month(zero, later, pm, method=method)
            np.testing.assert_allclose(rem, 8000.0)
            np.testing.assert_array_equal(adj, 0.0)
    for mtd in (-500.0, 0.0):
        pm = PartialMonth(pd.Timestamp("2027-01-01"), mtd, 15, 30, pace_error=0.1)
        rem, _ = condition_partial_month(zero, later, pm)
        np.testing.assert_array_equal(rem, 0.0)


def test_partial_month_enkf_limits_and_regression_of_later_months() -> None:
    rng = np.random.default_rng(3)
    month = 1000.0 + rng.normal(0, 100, 4000)
    later = np.column_stack(
        [2 * month, 5.0 + 0 * month]
    )  # one month perfectly correlated, one constant
    pm = PartialMonth(
        pd.Timestamp("2027-01-01"), mtd=600.0, days_covered=15, days_in_month=30, pace_error=1e-9
    )
    # a (floored 2 %) tiny pace error: the month total follows the pace, 600 / 0.5 = 1200
    rem, adj = condition_partial_month(month, later, pm)
    k = 100**2 / (100**2 + (0.02 * 1200) ** 2)
    assert np.mean(rem + 600) == pytest.approx(1000 + k * 200, rel=0.01)
    # the posterior sd of a Gaussian update: sqrt(k) * r
    assert np.std(rem + 600) == pytest.approx(np.sqrt(k) * 0.02 * 1200, rel=0.05)
    # later months move by their regression on this month: beta = 2 for the first, 0 for the second
    np.testing.assert_allclose(
        adj[:, 0] - later[:, 0], 2 * (rem + 600 - month), rtol=1e-6, atol=1e-6
    )
    np.testing.assert_allclose(adj[:, 1], 5.0)
    # a huge pace error: the prior stands, remaining = path - mtd
    rem2, _ = condition_partial_month(
        month, later, PartialMonth(pm.month, 600.0, 15, 30, pace_error=1e3)
    )
    assert np.mean(rem2) == pytest.approx(np.mean(month) - 600, rel=0.01)


def test_pace_error_by_hand() -> None:
    # two complete 30-day months: uniform (pace exact) and front-loaded (first 10 days = 50 %)
    nov = pd.Series(1.0, index=pd.date_range("2026-11-01", "2026-11-30"))
    jun = pd.Series(
        np.r_[np.full(10, 3.0), np.full(20, 1.5)], index=pd.date_range("2026-06-01", "2026-06-30")
    )
    # at day 10: Nov pace 10*3 = 30 (exact); Jun pace 30*3 = 90 vs 60 -> +50 %
    err = pace_error(pd.concat([jun, nov]), 10, min_months=2)
    assert err == pytest.approx(np.sqrt((0.0**2 + 0.5**2) / 2))
    assert pace_error(nov, 10) is None  # fewer than 3 months: unknown
    partial = pd.DataFrame(
        {
            "unique_id": ["total"],
            "ds": ["2026-12-01"],
            "y": [7.0],
            "days_covered": [10],
            "days_in_period": [31],
        }
    )
    daily = pd.DataFrame(
        {
            "unique_id": "total",
            "ds": pd.concat([jun, nov]).index,
            "y": pd.concat([jun, nov]).to_numpy(),
        }
    )
    pm = partial_months(partial, daily)["total"]
    assert (pm.mtd, pm.days_covered, pm.days_in_month, pm.pace_error) == (7.0, 10, 31, None)


def _backtest() -> pd.DataFrame:
    rows = []
    for model in ("ets", "theta"):
        for h, (y, lo, hi) in enumerate([(100.0, 90.0, 110.0), (100.0, 95.0, 99.0)], start=1):
            rows.append(
                {
                    "unique_id": "inference",
                    "cutoff": pd.Timestamp("2026-09-01"),
                    "ds": pd.Timestamp("2026-10-01") if h == 1 else pd.Timestamp("2026-10-01"),
                    "h": h + (0 if model == "ets" else 0),
                    "model": model,
                    "y": y,
                    "mean": 100.0,
                    "lo_95": lo,
                    "hi_95": hi,
                }
            )
    rows.append(
        {
            "unique_id": "inference",
            "cutoff": pd.Timestamp("2026-08-01"),
            "ds": pd.Timestamp("2026-11-01"),
            "h": 3,
            "model": "ets",
            "y": 500.0,
            "mean": 100.0,
            "lo_95": 50.0,
            "hi_95": 150.0,
        }
    )
    rows.append(
        {
            "unique_id": "<script>x</script>",
            "cutoff": pd.Timestamp("2026-08-01"),
            "ds": pd.Timestamp("2026-11-01"),
            "h": 1,
            "model": "ets",
            "y": 1.0,
            "mean": 100.0,
            "lo_95": 50.0,
            "hi_95": 150.0,
        }
    )
    return pd.DataFrame(rows)


def test_anomalies_use_selected_model_at_the_shortest_horizon() -> None:
    bt = _backtest()
    a = find_anomalies(
        bt,
        selection=pd.DataFrame(
            {"unique_id": ["inference", "<script>x</script>"], "model": ["ets", "ets"]}
        ),
    )
    # 2026-10 at h=1 is inside [90, 110] (the h=2 row outside is ignored); 2026-11 is far above
    got = {
        (u, f"{d:%Y-%m}", k)
        for u, d, k in zip(a["unique_id"], a["ds"], a["direction"], strict=True)
    }
    assert got == {("inference", "2026-11", "above"), ("<script>x</script>", "2026-11", "below")}
    assert find_anomalies(None).empty


def test_an_unusual_cost_is_never_expected_below_zero() -> None:
    """A bursty cost's additive band can reach below 0; a series never negative is shown expected
    from 0, and what is unusual is unchanged (the month above the band)."""
    bt = pd.DataFrame(
        {
            "unique_id": "optimization", "model": "m", "h": [1, 1],
            "ds": pd.to_datetime(["2026-02-01", "2026-03-01"]), "y": [5.0, 30_000.0],
            "mean": [4_000.0, 5_000.0], "lo_95": [-9_000.0, -10_892.0], "hi_95": [17_000.0, 20_807.0],
        }
    )  # fmt: skip
    a = find_anomalies(bt)
    assert len(a) == 1 and a["direction"].iloc[0] == "above"
    assert a["lo_95"].iloc[0] == 0.0 and a["hi_95"].iloc[0] == 20_807.0
    neg = find_anomalies(bt.assign(y=[-5.0, 30_000.0]))  # a series with a credit: as forecast
    assert neg.loc[neg["y"] > 0, "lo_95"].iloc[0] == -10_892.0


def test_flag_budgets_marks_anomalies_and_writes_outputs(tmp_path) -> None:
    paths = np.stack([np.full((10, 3), 100.0), np.full((10, 3), 100.0)])
    hist = _hist(
        {"inference": [100, 100, 500, 100], "total": [100, 100, 500, 100]}, start="2026-09-01"
    )
    b = _budgets(
        ("2026Q4", "inference", 1000), ("2027-01", "total", 90), ("2027Q1", "inference", 400)
    )
    res = flag_budgets(
        b,
        hist,
        paths,
        ["inference", "total"],
        PDS,
        as_of="2027-01-01",
        anomalies=find_anomalies(_backtest(), {"inference": "ets"}),
    )
    f = res.flags.set_index(["period", "phase"])
    assert f.loc[("2026Q4", "inference"), "anomaly_months"] == "2026-11"
    assert (
        f.loc[("2027-01", "total"), "status"] == "at_risk"
        and f.loc[("2027-01", "total"), "p_overrun"] == 1.0
    )
    assert f.loc[("2027Q1", "inference"), "status"] == "ok"
    assert res.at_risk
    files = write_derived(Derived(flags=res, quarters=[]), tmp_path)
    assert {"flags.csv", "flags.parquet", "flags.json"} <= set(files)
    doc = json.loads((tmp_path / "flags.json").read_text())
    assert doc["thresholds"] == {"watch": 0.2, "at_risk": 0.5} and len(doc["lines"]) == 3
    assert pd.read_csv(tmp_path / "flags.csv").shape[0] == 3
    text = format_flags(res.flags)
    assert "at_risk" in text and "2027Q1" in text and "p_overrun" in text
    # the column holds the actual plus the rest: its head says it is the whole period's
    assert "expected total" in text.splitlines()[0]


def test_flag_paths_must_cover_the_period() -> None:
    paths = np.full((1, 4, 1), 1.0)
    with pytest.raises(InputError, match="no actuals and no forecast"):
        flag_lines(
            _budgets(("2027Q1", "total", 1)),
            _hist({"total": [1.0]}, "2026-12-01"),
            paths,
            ["total"],
            PDS[:1],
        )


def test_current_month_conditions_a_later_period() -> None:
    """Mid-January running hot raises February's forecast by the paths' regression with
    ``enkf-propagate``, not with the default or the proportional method; January's own spend does
    not count in February."""
    rng = np.random.default_rng(5)
    jan = 100.0 + rng.normal(0, 10, 5000)
    feb = 2.0 * jan  # perfectly correlated with January
    paths = np.stack([np.column_stack([jan, feb])])
    pds = pd.date_range("2027-01-01", periods=2, freq="MS")
    pm = {
        "total": PartialMonth(
            pd.Timestamp("2027-01-01"), mtd=60.0, days_covered=15, days_in_month=30, pace_error=0.05
        )
    }
    hist = _hist({"total": [100.0]}, "2026-12-01")
    b = _budgets(("2027-02", "total", 220.0))
    enkf = flag_lines(
        b,
        hist,
        paths,
        ["total"],
        pds,
        partial=pm,
        config=FlagConfig(partial_method="enkf-propagate"),
    ).iloc[0]
    # the default updates the current month only: February stays as forecast
    plain = flag_lines(b, hist, paths, ["total"], pds, partial=pm).iloc[0]
    assert plain["forecast_total"] == pytest.approx(200.0, rel=0.01)
    prop = flag_lines(
        b, hist, paths, ["total"], pds, partial=pm, config=FlagConfig(partial_method="proportional")
    ).iloc[0]
    assert (
        prop["forecast_total"] == pytest.approx(200.0, rel=0.01) and prop["actual_to_date"] == 0.0
    )
    # pace says January ends near 120: K = 100 / (100 + (0.05 * 120)^2) = 0.735; February moves by 2 K (120 - 100)
    k = 100 / (100 + (0.05 * 120) ** 2)
    assert enkf["forecast_total"] == pytest.approx(200 + 2 * k * 20, rel=0.02)
    assert enkf["actual_to_date"] == 0.0 and enkf["days_covered"] == 0
    assert enkf["p_overrun"] > prop["p_overrun"]


def test_nodes_that_started_late_or_never_count_zero() -> None:
    """optimization first cost in December: October and November are 0, not an error; a phase
    with no history at all (fine_tuning) has no paths and a zero forecast."""
    hist = pd.concat(
        [_hist({"total": [10.0, 20.0, 30.0]}), _hist({"optimization": [5.0]}, start="2026-12-01")]
    )
    paths = np.stack([np.full((4, 3), 7.0), np.full((4, 3), 1.0)])
    b = _budgets(
        ("2026Q4", "optimization", 4.0), ("2027Q1", "fine_tuning", 1.0), ("2026Q4", "total", 100.0)
    )
    f = flag_lines(b, hist, paths, ["total", "optimization"], PDS).set_index(["period", "phase"])
    assert f.loc[("2026Q4", "optimization"), "actual_to_date"] == 5.0
    assert f.loc[("2026Q4", "optimization"), "status"] == "over_budget"
    assert (
        f.loc[("2027Q1", "fine_tuning"), "forecast_total"] == 0.0
        and f.loc[("2027Q1", "fine_tuning"), "status"] == "ok"
    )
    assert f.loc[("2026Q4", "total"), "actual_to_date"] == 60.0
    with pytest.raises(InputError, match="2026-07"):  # before the data window
        flag_lines(_budgets(("2026Q3", "total", 1.0)), hist, paths, ["total", "optimization"], PDS)


def test_pace_errors_of_many_series_equal_the_one_series_formula():
    from pipeline.conditioning import pace_errors

    rng = np.random.default_rng(0)
    frames, covered = [], {}
    for u in range(12):
        start = pd.Timestamp("2025-01-01") + pd.Timedelta(days=int(rng.integers(0, 300)))
        days = pd.date_range(start, "2026-11-14", freq="D")
        y = rng.gamma(2.0, 10.0, len(days))
        if u == 3:
            y[:] = 0.0  # no month with a positive total: unknown
        if u == 4:
            days, y = days[:70], y[:70]  # too few complete months: unknown
        frames.append(pd.DataFrame({"unique_id": f"s{u}", "ds": days, "y": y}))
        covered[f"s{u}"] = int(rng.integers(1, 20))
    daily = pd.concat(frames, ignore_index=True)
    before = dict.fromkeys(covered, pd.Timestamp("2026-11-01"))
    got = pace_errors(daily, covered, before)
    for u, d in covered.items():
        one = daily[(daily["unique_id"] == u) & (daily["ds"] < before[u])].set_index("ds")["y"]
        expect = pace_error(one, d)
        assert (expect is None) == (got[u] is None), u
        if expect is not None:
            assert got[u] == pytest.approx(expect, rel=1e-12)
    assert got["s3"] is None and got["s4"] is None


def test_a_second_call_leaves_no_file_of_the_first_behind(tmp_path) -> None:
    """`budget --quarter Q --scenario F` and then `budget --quarter Q` into the same folder: the
    second call's folder holds its own files only (the scenario tables of the first are removed),
    and a file that is not one of ours stays."""
    table = pd.DataFrame({"period": ["2027Q1"], "phase": ["total"], "p50": [100.0]})
    scen = pd.DataFrame(
        {"scenario": ["s"], "period": ["2027Q1"], "phase": ["total"], "value": [1.0]}
    )
    first = Derived(flags=None, quarters=[], budgets={"2027Q1": table})
    first.scenarios["2027Q1"], first.scenario_models["2027Q1"] = scen, scen
    first.changes = table
    write_derived(first, tmp_path)
    (tmp_path / "notes.txt").write_text("mine")
    assert (tmp_path / "scenarios-2027Q1.csv").exists() and (tmp_path / "changes.csv").exists()
    names = write_derived(Derived(flags=None, quarters=[], budgets={"2027Q1": table}), tmp_path)
    on_disk = {p.name for p in tmp_path.iterdir()}
    assert on_disk == set(names) | {"notes.txt", WRITTEN}
    assert "scenarios-2027Q1.parquet" not in on_disk and "changes.parquet" not in on_disk
    # a file of one of those names that no call of ours wrote stays (a folder the user chose)
    own = tmp_path / "own"
    own.mkdir()
    (own / "changes.csv").write_text("the user's")
    write_derived(Derived(flags=None, quarters=[], budgets={"2027Q1": table}), own)
    assert (own / "changes.csv").read_text() == "the user's"
    # flags written into the same folder are not a budget call's to remove
    flags_then_budget = tmp_path / "both"
    write_derived(first, flags_then_budget)
    (flags_then_budget / "flags.csv").write_text("flags")
    write_derived(Derived(flags=None, quarters=[], budgets={"2027Q1": table}), flags_then_budget)
    assert (flags_then_budget / "flags.csv").exists()


def test_the_flag_table_says_what_the_total_holds_beyond_its_phase_lines() -> None:
    """A budget file with lines for some phases and the total: the total's forecast holds the
    phases without a line too, so the table says by how much the lines fall short of it."""
    flags = pd.DataFrame(
        {
            "period": ["2027Q1"] * 3 + ["2027-01"] * 2,
            "phase": ["inference", "operations", "total", "inference", "total"],
            "budget": 100.0,
            "actual_to_date": 0.0,
            "forecast_total": [60.0, 30.0, 90.4, 20.0, 23.0],
            "p80": 1.0,
            "p_overrun": 0.0,
            "expected_overrun": 0.0,
            "status": "ok",
        }
    )
    text = format_flags(flags)
    assert text.splitlines()[-1] == (
        "the total holds phases without a budget line too (not flagged; the phases above add up "
        "to the total less these): 2027-01 3"
    )  # 2027Q1: 0.4 short, rounding
    assert "holds phases" not in format_flags(flags[flags["phase"] != "total"])
    assert "holds phases" not in format_flags(flags[flags["phase"] == "total"])  # no phase lines
