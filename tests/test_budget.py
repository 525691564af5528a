"""Quarterly budgets and scenarios: period parsing, quantiles of sums, recommendations, and the
plan edits checked against hand-computed arithmetic."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pandas as pd
import pytest

from pipeline.budget import (
    Period,
    load_budgets,
    nice_ceil,
    parse_period,
    period_samples,
    quantiles_of_sums,
    quarter_table,
)
from pipeline.errors import InputError
from pipeline.plan import plan_from_dict
from pipeline.scenarios import (
    add_run,
    apply_scenario,
    baseline_by_phase,
    change_headcount,
    change_price,
    load_scenario,
    quantize,
    scale_traffic,
    scenario_deltas,
    scenario_from_dict,
)

IDS = ["total", "inference", "pretraining"]


def make_history(months: int = 12, start: str = "2026-01-01") -> pd.DataFrame:
    """Closed months for a three-node hierarchy (total = inference + pretraining)."""
    ds = pd.date_range(start, periods=months, freq="MS")
    inf = 100_000.0 + 1_000.0 * np.arange(months)
    pre = np.full(months, 20_000.0)
    rows = [
        (u, d, v)
        for u, ys in (("inference", inf), ("pretraining", pre), ("total", inf + pre))
        for d, v in zip(ds, ys, strict=True)
    ]
    return pd.DataFrame(rows, columns=["unique_id", "ds", "y"])


def make_paths(
    n_paths: int = 2000, h: int = 6, seed: int = 1, start: str = "2027-01-01"
) -> tuple[np.ndarray, list[str], pd.DatetimeIndex]:
    """Coherent paths: independent monthly noise for inference, skewed bursts for pretraining."""
    rng = np.random.default_rng(seed)
    inf = 110_000.0 + rng.normal(0, 8_000, (n_paths, h))
    pre = rng.gamma(2.0, 10_000.0, (n_paths, h))
    paths = np.stack([inf + pre, inf, pre])
    return paths, IDS, pd.date_range(start, periods=h, freq="MS")


PLAN = {
    "currency": "USD",
    "price_book": {
        "gpu_hour": {
            "H100": {"on_demand": 4.10, "committed": 2.90},
            "A10": {"on_demand": 1.10, "committed": 0.80},
        },
        "cpu_core_hour": 0.05,
        "storage_gb_month": 0.02,
    },
    "scheduled_runs": [
        {
            "name": "ranker",
            "phase": "pretraining",
            "gpu": "H100",
            "gpus": 64,
            "start": "2026-11-01",
            "days": 5,
            "pricing": "committed",
        }
    ],
    "traffic": {
        "gpu": "A10",
        "pricing": "committed",
        "gpu_hours_per_1k_requests": 0.02,
        "months": {"2027-01": 2.0e8, "2027-02": 1.5e8, "2027-03": 1.8e8},
    },
    "headcount": [
        {
            "phase": "operations",
            "team": "sre",
            "people": 6,
            "hours_per_month": 160,
            "hourly_rate": 95,
            "start": "2026-12",
        }
    ],
}
Q1 = list(pd.date_range("2027-01-01", periods=3, freq="MS"))


# --- periods and budgets ----------------------------------------------------------------------
def test_parse_period_quarter_month_and_previous() -> None:
    q = parse_period("2027Q1")
    assert q.kind == "quarter" and q.label == "2027Q1"
    assert list(q.months) == Q1
    assert q.end == pd.Timestamp("2027-03-31")
    assert parse_period("2027-q4").months[0] == pd.Timestamp("2027-10-01")
    assert q.previous().label == "2026Q4"
    m = parse_period("2027-01")
    assert m.kind == "month" and m.previous().label == "2026-12"
    for bad in ("2027Q5", "Q1-2027", "2027-13", "soon"):
        with pytest.raises(InputError):
            parse_period(bad)


def test_load_budgets_reports_every_bad_row(tmp_path) -> None:
    f = tmp_path / "budgets.csv"
    f.write_text(
        "period,phase,amount,currency\n2027Q1,total,1000000,USD\n2027-13,inference,5,USD\n2027-01,trainin,10,USD\n2027-02,total,-3,USD\n"
    )
    with pytest.raises(InputError) as e:
        load_budgets(f)
    msg = str(e.value)
    assert "3 problems" in msg
    assert "row 2" in msg and "'period'" in msg
    assert "row 3" in msg and "trainin" in msg
    assert "row 4" in msg and "'amount'" in msg
    f.write_text(
        'period,phase,amount,currency\n2027Q1,total,"1,000,000",USD\n2027-01,inference,5000,\n'
    )
    b = load_budgets(f)
    assert b["amount"].tolist() == [1_000_000.0, 5000.0]
    assert b["currency"].tolist() == [
        "USD",
        "",
    ]  # no currency: the forecast's, decided when compared

    def refused(text: str) -> str:
        f.write_text("period,phase,amount,currency\n" + text)
        with pytest.raises(InputError) as e:
            load_budgets(f)
        return str(e.value)

    # a decimal comma (a European export) is refused, not read as another amount: "574.500,00"
    # once lost its comma and became 574.5; a misspelled phase gets the nearest name
    msg = refused(
        '2027Q1,inference,"574.500,00",USD\n2027Q1,fine_tunning,10,USD\n'
        '2027Q1,total,"2,395,000.50",USD\n'
    )
    assert "2 problems" in msg and "'574.500,00'" in msg and "'amount'" in msg
    assert "did you mean fine_tuning?" in msg and "['" not in msg  # names, not a Python list
    # a second line for the same period and phase is told with the other problems, in row order
    msg = refused("2027Q1,total,5,USD\n2027Q1,inference,-3,USD\n2027Q1,total,6,USD\n")
    assert "2 problems" in msg and msg.index("data row 2") < msg.index("data row 3")
    assert "second budget for 2027Q1 / total (the first is data row 1)" in msg
    assert "cannot be negative" in msg


# --- quantiles of sums ------------------------------------------------------------------------
def _quantile_by_hand(values: list[float], q: float) -> float:
    """Linear interpolation between order statistics (numpy's default), written out."""
    s = sorted(values)
    pos = (len(s) - 1) * q
    lo = int(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def test_quarter_quantiles_are_quantiles_of_sums_not_sums_of_quantiles() -> None:
    paths, ids, pds = make_paths()
    t = quarter_table("2027Q1", make_history(), paths, ids, pds).set_index("phase")
    for phase, i in (("total", 0), ("inference", 1), ("pretraining", 2)):
        sums = [
            float(paths[i, j, 0] + paths[i, j, 1] + paths[i, j, 2]) for j in range(paths.shape[1])
        ]
        for col, q in (("p50", 0.5), ("p80", 0.8), ("p95", 0.95)):
            assert t.loc[phase, col] == pytest.approx(_quantile_by_hand(sums, q), rel=1e-12)
        # summing monthly quantiles overstates upper quantiles when months are not perfectly correlated
        sum_of_q = sum(np.quantile(paths[i, :, k], 0.95) for k in range(3))
        assert sum_of_q > t.loc[phase, "p95"] * 1.01
    assert quantiles_of_sums(paths, [0, 1, 2], (0.8,))[1, 0] == pytest.approx(
        t.loc["inference", "p80"]
    )


def test_closed_months_count_with_their_actuals() -> None:
    """A quarter whose first month is closed: actual + sums of the paths' remaining months."""
    hist = make_history(months=13, start="2026-01-01")  # up to 2027-01
    paths, ids, pds = make_paths(start="2027-02-01")
    actual_jan = float(hist[(hist.unique_id == "inference") & (hist.ds == "2027-01-01")].y.iloc[0])
    actual, rest, totals = period_samples(
        "inference",
        parse_period("2027Q1"),
        {("inference", pd.Timestamp("2027-01-01")): actual_jan},
        paths,
        ids,
        pds,
    )
    assert actual == actual_jan == 112_000.0
    np.testing.assert_allclose(totals, actual_jan + paths[1, :, 0] + paths[1, :, 1])
    assert rest == pytest.approx(float(np.mean(paths[1, :, 0] + paths[1, :, 1])))


def test_missing_months_are_an_input_error() -> None:
    paths, ids, pds = make_paths(h=2)
    with pytest.raises(InputError, match="--horizon"):
        period_samples("total", parse_period("2027Q1"), {}, paths, ids, pds)


def test_recommendation_baseline_budget_and_change_vs_last_quarter() -> None:
    hist = make_history(months=12, start="2026-01-01")  # 2026Q4 closed: inference 109k+110k+111k
    paths, ids, pds = make_paths()
    plan = plan_from_dict(PLAN)
    from pipeline.estimate import estimate_from_plan

    base = estimate_from_plan(plan, "2027-01", 3)
    budgets = pd.DataFrame(
        {"period": ["2027Q1"], "phase": ["inference"], "amount": [340_000.0], "currency": ["USD"]}
    )
    t = quarter_table(
        "2027Q1", hist, paths, ids, pds, baseline=base, budgets=budgets, quantile=0.9
    ).set_index("phase")
    inf = t.loc["inference"]
    assert inf["last_quarter"] == "2026Q4"
    assert inf["last_quarter_actual"] == 109_000 + 110_000 + 111_000
    # against the expected cost (the headline), not the median
    assert inf["change_vs_last_quarter"] == pytest.approx(inf["mean"] / 330_000 - 1)
    assert inf["mean"] != pytest.approx(inf["p50"], rel=1e-9)
    from pipeline.tables import relative_change

    assert relative_change(1e-10, 507_248.64) == 0.0  # no -0.0 or 2e-16 of float noise
    assert relative_change(10.0, 100.0) == pytest.approx(0.1)
    assert math.isnan(relative_change(1.0, float("nan")))
    # nor a -0 in a CSV or on a page: the changes table's pretraining row read -0.0 and "-0"
    from pipeline.formatting import signed
    from pipeline.tables import round_money

    cents = round_money(pd.DataFrame({"model_changes": [-1e-9, -0.004, -0.006]}))
    assert cents["model_changes"].tolist() == [0.0, 0.0, -0.01]
    assert not np.signbit(cents["model_changes"].to_numpy()[:2]).any()
    assert [signed(v) for v in (-0.3, 0.49, -0.5, 0.5, -1.5, 1234.4, float("nan"))] == [
        *("0", "0", "0", "0"),
        *("-2", "+1,234", "-"),
    ]
    sums = paths[1, :, :3].sum(axis=1)
    assert inf["p_overrun"] == pytest.approx(float(np.mean(sums > 340_000)))
    assert inf["recommended"] == nice_ceil(float(np.quantile(sums, 0.9)))
    assert inf["recommended"] >= np.quantile(sums, 0.9)
    # inference baseline: requests / 1000 x 0.02 GPU-h x $0.80
    assert inf["plan_estimate"] == pytest.approx((2.0e8 + 1.5e8 + 1.8e8) / 1000 * 0.02 * 0.80)
    assert np.isnan(inf["baseline"])  # no baseline model rows given
    bf = pd.DataFrame(
        {
            "unique_id": "inference",
            "ds": pd.date_range("2027-01-01", periods=3, freq="MS"),
            "mean": [1.0, 2.0, 4.0],
        }
    )
    t2 = quarter_table("2027Q1", hist, paths, ids, pds, baseline_forecast=bf).set_index("phase")
    assert t2.loc["inference", "baseline"] == 7.0 and np.isnan(t2.loc["total", "baseline"])
    assert np.isnan(t.loc["pretraining", "budget"])


def test_a_closed_quarter_is_its_actuals_without_a_recommendation() -> None:
    """2026Q3 of a history to 2026-12: every column is what was billed (inference 106k + 107k +
    108k, by hand), the plan's column too, and no budget is recommended for it."""
    from pipeline.estimate import estimate_from_plan
    from pipeline.formatting import format_budget

    hist = make_history(months=12, start="2026-01-01")
    paths, ids, pds = make_paths()
    base = estimate_from_plan(plan_from_dict(PLAN), "2026-07", 3)
    t = quarter_table("2026Q3", hist, paths, ids, pds, baseline=base).set_index("phase")
    inf = t.loc["inference"]
    for col in ("actual_to_date", "mean", "p50", "p95", "plan_estimate"):
        assert inf[col] == 106_000 + 107_000 + 108_000, col
    assert t.loc["total", "plan_estimate"] == 321_000 + 3 * 20_000
    assert t["recommended"].isna().all()
    text = format_budget(t.reset_index())
    assert "the quarter is closed" in text
    assert "recommend" in text.splitlines()[1]  # the column stays, with "-" in it
    inf_line = next(ln for ln in text.splitlines() if ln.startswith("inference"))
    assert inf_line.split()[9] == "-"  # no rounded-up actual posing as a recommendation
    # without a plan there is no plan column, closed or not
    no_plan = quarter_table("2026Q3", hist, paths, ids, pds)
    assert no_plan["plan_estimate"].isna().all() and no_plan["recommended"].isna().all()
    # a quarter still open keeps its recommendation and its header
    t1 = quarter_table("2027Q1", hist, paths, ids, pds)
    assert t1["recommended"].notna().all()
    assert "summed sample paths" in format_budget(t1)


def test_nice_ceil() -> None:
    assert nice_ceil(636_123.4) == 637_000
    assert nice_ceil(1234.5) == 1240
    assert nice_ceil(1000.0) == 1000
    assert nice_ceil(0.0) == 0.0


# --- scenarios --------------------------------------------------------------------------------
def test_oracle_added_run_adds_gpus_x_hours_x_price() -> None:
    """256 x H100 for 10 days at $2.90 adds exactly 256 x 240 x 2.90 = 178,176 to the quarter."""
    plan = plan_from_dict(PLAN)
    edited = add_run(plan, gpu="H100", gpus=256, days=10, start="2027-02-03", pricing="committed")
    before, after = baseline_by_phase(plan, Q1), baseline_by_phase(edited, Q1)
    assert after["pretraining"] - before.get("pretraining", 0.0) == pytest.approx(
        256 * 240 * 2.90, abs=1e-6
    )
    assert 256 * 240 * 2.90 == pytest.approx(178_176.0)
    assert after["total"] - before["total"] == pytest.approx(178_176.0, abs=1e-6)
    assert plan.scheduled_runs != edited.scheduled_runs  # pure: the input plan is unchanged
    assert len(plan.scheduled_runs) == 1


def test_oracle_through_scenario_file_and_deltas(tmp_path) -> None:
    f = tmp_path / "llm.yaml"
    f.write_text(
        "name: llm-run\nchanges:\n  - add_run: {gpu: H100, gpus: 256, days: 10, start: 2027-02-03, pricing: committed}\n"
    )
    sc = load_scenario(f)
    d = scenario_deltas(plan_from_dict(PLAN), [sc], Q1, "2027Q1").set_index(["phase"])
    assert d.loc["pretraining", "delta"] == pytest.approx(178_176.0)
    assert d.loc["total", "delta"] == pytest.approx(178_176.0)
    assert d.loc["inference", "delta"] == 0.0
    assert set(d["source"]) == {"analytic_baseline"}


def test_traffic_quantization_price_and_headcount_edits() -> None:
    plan = plan_from_dict(PLAN)
    inf_cost = lambda p: baseline_by_phase(p, Q1)["inference"]  # noqa: E731
    base = inf_cost(plan)
    per_month = {m: r / 1000 * 0.02 * 0.80 for m, r in plan.traffic.months.items()}
    # +30 % over the whole of January and the first 14 of February's 28 days (half: +15 %)
    up = scale_traffic(plan, change=0.30, start="2027-01-01", end="2027-02-14")
    expected = (
        per_month[pd.Timestamp("2027-01-01")] * 0.30 + per_month[pd.Timestamp("2027-02-01")] * 0.15
    )
    assert inf_cost(up) - base == pytest.approx(expected)
    down = scale_traffic(plan, change=-0.20, start="2027-03-01", end="2027-03-31")
    assert inf_cost(down) - base == pytest.approx(-0.20 * per_month[pd.Timestamp("2027-03-01")])
    # quantization -40 % from 1 March: March inference GPU cost x 0.6
    q = quantize(plan, cut=0.40, start="2027-03-01")
    assert inf_cost(q) - base == pytest.approx(-0.40 * per_month[pd.Timestamp("2027-03-01")])
    # A10 committed 0.80 -> 0.60 from 1 January: inference cost x 0.75
    pc = change_price(plan, gpu="A10", start="2027-01-01", prices={"committed": 0.60})
    assert inf_cost(pc) == pytest.approx(base * 0.75)
    rel = change_price(plan, gpu="A10", start="2027-01-01", change=-0.25)
    assert inf_cost(rel) == pytest.approx(base * 0.75)
    # two more SREs from February: 2 x 160 h x $95 for two months
    hc = change_headcount(plan, phase="operations", team="sre", change=2, start="2027-02")
    assert baseline_by_phase(hc, Q1)["operations"] - baseline_by_phase(plan, Q1)[
        "operations"
    ] == pytest.approx(2 * 160 * 95 * 2)
    # the rate in force at the start: the SRE line that starts in 2027 at $98.80, not the 2026 one
    raised = dataclasses.replace(
        plan.headcount[0], hourly_rate=98.8, start=pd.Timestamp("2027-01-01"), people=0.0
    )
    both = plan.with_changes(
        headcount=(dataclasses.replace(plan.headcount[0], end=pd.Timestamp("2026-12-01")), raised)
    )
    hc2 = change_headcount(both, phase="operations", team="sre", change=2, start="2027-02")
    assert hc2.headcount[-1].hourly_rate == 98.8
    assert (
        change_headcount(both, phase="operations", team="sre", change=2, start="2026-12")
        .headcount[-1]
        .hourly_rate
        == plan.headcount[0].hourly_rate
    )


def test_scenario_file_validation_and_fold_order() -> None:
    with pytest.raises(InputError) as e:
        scenario_from_dict({"changes": [{"add_rn": {}}, "x", {"traffic": 3}]})
    assert "3 problems" in str(e.value) and "add_rn" in str(e.value)
    with pytest.raises(InputError, match="no changes"):
        scenario_from_dict({"name": "empty"})
    sc = scenario_from_dict(
        {
            "name": "two",
            "changes": [
                {"price": {"gpu": "H100", "start": "2027-01-01", "committed": 3.0}},
                {"add_run": {"gpu": "H100", "gpus": 10, "days": 1, "start": "2027-01-10"}},
            ],
        }
    )
    edited = apply_scenario(plan_from_dict(PLAN), sc)
    delta = baseline_by_phase(edited, Q1)["pretraining"] - baseline_by_phase(
        plan_from_dict(PLAN), Q1
    ).get("pretraining", 0.0)
    assert delta == pytest.approx(10 * 24 * 3.0)  # the run is priced at the changed price
    with pytest.raises(InputError, match="price book"):
        add_run(plan_from_dict(PLAN), gpu="B200", gpus=8, days=1, start="2027-01-01")


def test_period_type_is_frozen() -> None:
    p = Period("2027-01", (pd.Timestamp("2027-01-01"),))
    with pytest.raises(AttributeError):
        p.label = "x"  # type: ignore[misc]


def test_a_month_budgeted_above_its_quarter_is_warned(tmp_path, caplog) -> None:
    """January pretraining at 634,100 and all of 2027Q1 at 497,200: the month would read ok and
    the quarter at risk for the same run; the file is read, with one warning naming both rows."""
    import logging

    f = tmp_path / "budgets.csv"
    f.write_text(
        "period,phase,amount,currency\n2027-01,pretraining,634100,USD\n"
        "2027Q1,pretraining,497200,USD\n2027-02,inference,10,USD\n2027Q1,inference,30,USD\n"
    )
    with caplog.at_level(logging.WARNING, logger="pipeline.budget"):
        b = load_budgets(f)
    assert len(b) == 4
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warned) == 1, warned
    assert "data row 1 budgets 2027-01 pretraining at 634,100" in warned[0]
    assert "2027Q1 (497,200, data row 2)" in warned[0]


def test_the_sample_budgets_never_put_a_month_above_its_quarter(tmp_path) -> None:
    from pipeline.synth import SynthConfig, generate

    generate(SynthConfig(out=tmp_path / "s", months=3))
    b = load_budgets(tmp_path / "s" / "budgets.csv").set_index(["period", "phase"])["amount"]
    months = [(p, ph) for p, ph in b.index if "Q" not in p]
    # nor a total below the sum of its phases (the reader would warn)
    for period in {p for p, _ in b.index}:
        phases = [b[(period, ph)] for p, ph in b.index if p == period and ph != "total"]
        assert sum(phases) <= b[(period, "total")], period
    for p, ph in months:
        m = pd.Period(p, freq="M")
        q = (f"{m.year}Q{m.quarter}", ph)
        if q in b.index:
            assert b[(p, ph)] <= b[q], (p, ph)


def test_a_budgets_file_without_currencies_is_read_with_a_warning(tmp_path, caplog) -> None:
    """Without a currency column the amounts are in the forecast's currency (the file is read),
    and the user is told so: a EUR budget would otherwise be compared with USD in silence."""
    import logging

    f = tmp_path / "budgets.csv"
    f.write_text("period,phase,amount\n2027Q1,total,2400000\n")
    with caplog.at_level(logging.WARNING, logger="pipeline.budget"):
        b = load_budgets(f)
    assert b["amount"].tolist() == [2400000.0]
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warned) == 1 and "has no currency column" in warned[0] and str(f) in warned[0]
    # and the fix for a missing column says the currency is optional, as it is
    f.write_text("period,amount\n2027Q1,2400000\n")
    with pytest.raises(InputError, match="currency, optional"):
        load_budgets(f)
    caplog.clear()
    f.write_text("period,phase,amount,currency\n2027Q1,total,2400000,USD\n")
    with caplog.at_level(logging.WARNING, logger="pipeline.budget"):
        load_budgets(f)
    assert not [r for r in caplog.records if r.levelno == logging.WARNING]


def test_phase_budgets_above_their_total_are_said_once_per_period(tmp_path, caplog) -> None:
    import logging

    f = tmp_path / "budgets.csv"
    f.write_text(
        "period,phase,amount,currency\n2026Q4,inference,600,USD\n2026Q4,operations,500,USD\n"
        "2026Q4,total,1000,USD\n2027Q1,inference,600,USD\n2027Q1,total,1000,USD\n"
        "2027-01,inference,10,USD\n"
    )
    with caplog.at_level(logging.WARNING, logger="pipeline.budget"):
        load_budgets(f)
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warned) == 1, warned  # 2027Q1's phases (600) stay under its total; 2027-01 has none
    assert (
        "the phase budgets of 2026Q4 add up to 1,100, more than its total budget 1,000"
        in (warned[0])
    )


def test_plan_estimate_of_a_phase_the_plan_does_not_price() -> None:
    """The plan column by hand: October closed at its actual, the plan for November and December;
    a phase the plan does not price has no figure while a month is open (October's actual alone
    would read as a plan for the quarter), and its actuals once every month is closed."""
    from pipeline.budget import plan_estimate_by_phase
    from pipeline.periods import parse_period

    q4 = parse_period("2026Q4")
    months = list(q4.months)
    est = pd.DataFrame(
        {"phase": "pretraining", "category": "compute_gpu", "ds": months, "cost": [5.0, 7.0, 11.0]}
    )
    actuals = {
        ("total", months[0]): 300.0,
        ("pretraining", months[0]): 100.0,
        ("inference", months[0]): 200.0,
    }
    one_closed = plan_estimate_by_phase(est, q4, actuals, months[:1])
    assert one_closed == {"total": 300.0 + 7 + 11, "pretraining": 100.0 + 7 + 11}
    actuals |= {(u, m): v for m in months[1:] for u, v in (("total", 1.0), ("inference", 1.0))}
    all_closed = plan_estimate_by_phase(est, q4, actuals, months)
    assert all_closed == {"total": 302.0, "pretraining": 100.0, "inference": 202.0}
