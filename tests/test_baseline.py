"""Oracle tests for the analytic baseline: every expected number is worked out by hand."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from pipeline.estimate import (
    energy_kwh,
    estimate_from_plan,
    labor_cost,
    resource_cost,
    storage_cost,
)
from pipeline.models.baseline import AnalyticBaseline, run_rate
from pipeline.plan import plan_from_dict, training_gpu_hours

PLAN = {
    "currency": "USD",
    "price_book": {
        "gpu_hour": {
            "H100": {"on_demand": 4.0, "committed": 3.0},
            "A10": {"on_demand": 1.0, "committed": 0.8},
        },
        "cpu_core_hour": 0.05,
        "storage_gb_month": 0.02,
        "tokens_million": 2.0,
        "price_changes": [{"gpu": "H100", "start": "2027-04-01", "committed": 2.0}],
    },
    "scheduled_runs": [
        {
            "name": "r1",
            "phase": "pretraining",
            "gpu": "H100",
            "gpus": 100,
            "start": "2027-03-29",
            "days": 5,
            "pricing": "committed",
        }
    ],
    "recurring": [
        {
            "name": "ft",
            "phase": "fine_tuning",
            "resource": "gpu",
            "gpu": "A10",
            "quantity": 8,
            "hours_per_month": 100,
            "start": "2027-02",
        },
        {
            "name": "etl",
            "phase": "data_preprocessing",
            "resource": "cpu",
            "quantity": 10,
            "hours_per_month": 100,
        },
    ],
    "traffic": {
        "gpu": "A10",
        "pricing": "committed",
        "gpu_hours_per_1k_requests": 0.02,
        "tokens_per_request": 100,
        "months": {"2027-01": 1.0e6, "2027-02": 2.0e6},
        "quantization": [{"start": "2027-02-15", "cut": 0.5}],
    },
    "storage": {"phase": "data_preprocessing", "gb": 1000, "growth_per_month": 0.1},
    "headcount": [
        {
            "phase": "operations",
            "team": "sre",
            "people": 2,
            "hours_per_month": 160,
            "hourly_rate": 100,
            "start": "2027-02",
            "end": "2027-03",
        }
    ],
}


def test_product_worked_example_total_is_1_595_000() -> None:
    compute = resource_cost(20, 1, 1_000) + resource_cost(10, 1, 5_000) + resource_cost(50, 1, 100)
    storage = resource_cost(20, 1, 500) + resource_cost(10, 1, 1_000)
    labor = resource_cost(10, 1, 150_000)
    assert compute == 75_000
    assert storage == 20_000
    assert labor == 1_500_000
    assert compute + storage + labor == 1_595_000


def test_energy_is_a_quantity_and_storage_price_is_per_gb() -> None:
    assert energy_kwh(10, 100, 100) == pytest.approx(100.0)
    assert storage_cost(150, 0.5) == pytest.approx(75.0)
    assert labor_cost(6, 160, 95) == pytest.approx(91_200.0)


def test_training_gpu_hours_from_flops() -> None:
    # 6 * 7e9 * 1e12 = 4.2e22 FLOPs; H100 989e12 FLOP/s * 0.35 = 3.4615e14 FLOP/s effective
    # 4.2e22 / 3.4615e14 = 1.2133468e8 s, / 3600 = 33,704.08 GPU-hours
    assert training_gpu_hours(7e9, 1e12, "H100", 0.35) == pytest.approx(33_704.08, rel=1e-6)


def test_estimate_from_plan_hand_numbers() -> None:
    est = estimate_from_plan(plan_from_dict(PLAN), "2027-01", 4)
    got = {(r.phase, r.category, r.ds.strftime("%Y-%m")): r.cost for r in est.itertuples()}
    # run: 100 GPUs from 29 March for 5 days: 3 days in March at 3.0, 2 in April at the new 2.0
    assert got[("pretraining", "compute_gpu", "2027-03")] == pytest.approx(
        100 * 24 * 3 * 3.0
    )  # 21,600
    assert got[("pretraining", "compute_gpu", "2027-04")] == pytest.approx(
        100 * 24 * 2 * 2.0
    )  # 9,600
    assert got[("pretraining", "compute_gpu", "2027-01")] == 0.0
    # recurring: 8 A10 x 100 h x 1.0 from February; 10 cores x 100 h x 0.05 every month
    assert got[("fine_tuning", "compute_gpu", "2027-01")] == 0.0
    assert got[("fine_tuning", "compute_gpu", "2027-02")] == pytest.approx(800.0)
    assert got[("data_preprocessing", "compute_cpu", "2027-03")] == pytest.approx(50.0)
    # traffic: Jan 1e6 req -> 20 GPU-h x 0.8 = 16; Feb 2e6 req -> 40 GPU-h, half the 28 days cut by
    # half -> 30 GPU-h x 0.8 = 24. Tokens: 1e8 tokens x 2/1M = 200, then 400
    assert got[("inference", "compute_gpu", "2027-01")] == pytest.approx(16.0)
    assert got[("inference", "compute_gpu", "2027-02")] == pytest.approx(24.0)
    assert got[("inference", "ai_services", "2027-02")] == pytest.approx(400.0)
    assert ("inference", "compute_gpu", "2027-03") not in got  # no traffic plan: run-rate later
    # storage 1000 GB x 1.1^k x 0.02
    assert got[("data_preprocessing", "storage", "2027-03")] == pytest.approx(1000 * 1.21 * 0.02)
    # labor 2 x 160 x 100 in Feb and March only
    assert got[("operations", "labor", "2027-02")] == pytest.approx(32_000.0)
    assert got[("operations", "labor", "2027-04")] == 0.0


def test_run_from_flops_spreads_over_its_estimated_days() -> None:
    raw = {
        "price_book": {"gpu_hour": {"H100": {"on_demand": 2.0}}},
        "scheduled_runs": [
            {
                "name": "llm",
                "phase": "pretraining",
                "gpu": "H100",
                "gpus": 100,
                "start": "2027-01-01",
                "params": 7e9,
                "tokens": 1e12,
                "utilization": 0.35,
            }
        ],
    }
    est = estimate_from_plan(plan_from_dict(raw), "2027-01", 1)
    # 33,704.08 GPU-hours on 100 GPUs = 14.04 days, all in January, at 2.0
    assert est["cost"].sum() == pytest.approx(2.0 * 33_704.08, rel=1e-6)


def _hist(uids: dict[str, list[float]], end: str = "2026-12") -> pd.DataFrame:
    rows = []
    for uid, ys in uids.items():
        ds = pd.date_range(end=pd.Timestamp(end + "-01"), periods=len(ys), freq="MS")
        rows.append(pd.DataFrame({"unique_id": uid, "ds": ds, "y": ys}))
    return pd.concat(rows, ignore_index=True)


def test_run_rate_without_plan() -> None:
    assert run_rate(np.array([1.0, 2.0, 3.0, 10.0])) == pytest.approx(5.0)
    assert run_rate(np.array([4.0])) == 4.0
    fc = AnalyticBaseline().fit(_hist({"a": [1, 2, 3, 10], "b": [-3, 0, 3]})).predict(2)
    assert fc["mean"].tolist() == pytest.approx([5.0, 5.0, 0.0, 0.0])
    # sigma: one-step run-rate errors of a = [2-1, 3-1.5, 10-2] -> RMS = sqrt((1+2.25+64)/3)
    s = np.sqrt((1 + 2.25 + 64) / 3)
    from scipy.stats import norm

    assert fc["hi_80"].iloc[0] - 5.0 == pytest.approx(norm.ppf(0.9) * s)


def test_plan_driven_with_hierarchy_and_run_rate_elsewhere() -> None:
    df = _hist(
        {
            "pretraining/compute_gpu": [5.0, 5.0, 5.0],
            "pretraining/storage": [1.0, 2.0, 3.0],
            "pretraining": [6.0, 7.0, 8.0],
            "inference/compute_gpu": [10.0, 20.0, 30.0],
            "total": [1.0, 1.0, 1.0],
        }
    )
    m = AnalyticBaseline(plan=plan_from_dict(PLAN)).fit(df)
    fc = m.predict(4).set_index(["unique_id", "ds"])["mean"]
    ts = pd.Timestamp
    assert fc[("pretraining/compute_gpu", ts("2027-03-01"))] == pytest.approx(21_600.0)
    assert fc[("pretraining/compute_gpu", ts("2027-01-01"))] == 0.0
    assert fc[("pretraining/storage", ts("2027-01-01"))] == pytest.approx(2.0)  # not in the plan
    assert fc[("pretraining", ts("2027-03-01"))] == pytest.approx(21_602.0)  # sum of its children
    assert fc[("inference/compute_gpu", ts("2027-02-01"))] == pytest.approx(24.0)
    assert fc[("inference/compute_gpu", ts("2027-03-01"))] == pytest.approx(20.0)  # run-rate
    assert fc[("total", ts("2027-04-01"))] == pytest.approx(9_600.0 + 2.0 + 20.0)
    assert "pretraining/compute_gpu" in m.plan_driven_ids_


def test_estimate_cli(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import yaml

    from pipeline.cli import cli

    plan = tmp_path / "plan.yaml"
    plan.write_text(yaml.safe_dump(PLAN))
    out = tmp_path / "est.csv"
    res = CliRunner().invoke(
        cli,
        [
            "estimate",
            "--plan",
            str(plan),
            "--start",
            "2027-01",
            "--months",
            "4",
            "--output",
            str(out),
        ],
    )
    assert res.exit_code == 0, res.output
    est = pd.read_csv(out)
    # 21,600 + 9,600 run; 3 x 800 ft; 200 + 12 x ... : total printed equals the file's sum
    assert est["cost"].sum() == pytest.approx(98_532.82, abs=0.01)
    assert "98,532.82" in res.output
    # the months the figures are for, said before them
    assert "of 2027-01 to 2027-04 (4 months), per phase" in res.output
    assert f"wrote {out}" in res.output
    bad = CliRunner().invoke(cli, ["estimate", "--plan", str(tmp_path / "missing.yaml")])
    assert bad.exit_code == 2
    # months before the plan begins (its earliest dated line): estimated, with a warning
    early = CliRunner().invoke(
        cli, ["estimate", "--plan", str(plan), "--start", "2020-01", "--months", "2"]
    )
    assert early.exit_code == 0 and "describes costs from" in early.output, early.output
    assert "describes costs from" not in res.output  # 2027-01 is inside the plan
    assert "lines it does not price" in res.output  # the total is the plan's, said so
    # a thousand months compounded storage to 1.6e18 USD; an .xlsx got CSV text
    for args, says in (
        (("--months", "1000"), "--months must be between 1 and 120"),
        (("--output", str(tmp_path / "est.xlsx")), "a .csv or .parquet file, not .xlsx"),
    ):
        r = CliRunner().invoke(cli, ["estimate", "--plan", str(plan), "--start", "2027-01", *args])
        assert r.exit_code == 2 and says in r.output, r.output
    assert not (tmp_path / "est.xlsx").exists()
    gz = tmp_path / "est.csv.gz"  # a compressed CSV is a CSV
    r = CliRunner().invoke(
        cli, ["estimate", "--plan", str(plan), "--start", "2027-01", "--output", str(gz)]
    )
    assert r.exit_code == 0 and pd.read_csv(gz)["cost"].sum() > 0, r.output


def test_plan_sources_and_start() -> None:
    from pipeline.estimate import plan_sources, plan_start

    plan = plan_from_dict(PLAN)
    src = plan_sources(plan, "2027-01", 4)
    assert all(isinstance(v, set) and v for v in src.values())
    assert plan_start(plan) is not None


def test_months_before_the_plan_start_get_the_run_rate() -> None:
    """A backtest window ends before the plan begins: the plan says nothing about those months, so
    the run-rate stands there (not the plan's zeros), and the plan from its start month on."""
    df = _hist({"pretraining/compute_gpu": [5.0, 5.0, 5.0]})
    m = AnalyticBaseline(plan=plan_from_dict({**PLAN, "start": "2027-03"})).fit(df)
    fc = m.predict(4).set_index(["unique_id", "ds"])["mean"]
    ts = pd.Timestamp
    assert fc[("pretraining/compute_gpu", ts("2027-01-01"))] == pytest.approx(5.0)
    assert fc[("pretraining/compute_gpu", ts("2027-02-01"))] == pytest.approx(5.0)
    assert fc[("pretraining/compute_gpu", ts("2027-03-01"))] == pytest.approx(21_600.0)


def test_estimate_starts_after_the_newest_stored_run(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Without --start, the months after the newest stored run's as-of month (the run budget, flag
    and report read), whatever day it is; with no stored run, the month after today."""
    from pipeline.cli.estimate import default_start
    from pipeline.runstore import RUN_FILE

    out = tmp_path / "outputs"
    for as_of in ("2026-10-15", "2026-11-15"):
        (out / as_of).mkdir(parents=True)
        (out / as_of / RUN_FILE).write_text("{}")
    (out / "2027-05-01").mkdir()  # not a run: no run.json
    assert default_start(out) == pd.Timestamp("2026-12-01")
    today = pd.Timestamp.today().to_period("M").to_timestamp()
    assert default_start(tmp_path / "none") == today + pd.DateOffset(months=1)
    assert default_start(None) == today + pd.DateOffset(months=1)


def test_a_months_storage_cost_does_not_depend_on_where_the_window_starts() -> None:
    """The plan's storage stock (``gb`` at the plan's start, growing 3 % a month) costs the same in
    2027-02 whether the estimate starts at the plan's start, at 2027-01 or at the history's first
    month: 1000 x 1.03^3 GB x 0.02 in 2027-02 for a plan starting 2026-11. Versions stored before
    grew it from each window's first month."""
    from pipeline.estimate import estimate_from_plan
    from pipeline.plan import plan_from_dict

    raw = {
        "currency": "USD",
        "start": "2026-11",
        "price_book": {"gpu_hour": {}, "storage_gb_month": 0.02},
        "storage": {"phase": "data_preprocessing", "gb": 1000, "growth_per_month": 0.03},
    }
    plan = plan_from_dict(raw)
    feb = pd.Timestamp("2027-02-01")

    def cost(start: str, n: int, how: str = "plan") -> float:
        e = estimate_from_plan(plan, start, n, how)
        return float(e.loc[e["ds"] == feb, "cost"].iloc[0])

    want = 1000 * 1.03**3 * 0.02
    for start, n in (("2026-11", 6), ("2027-01", 3), ("2024-01", 40), ("2027-02", 1)):
        assert cost(start, n) == pytest.approx(want, rel=1e-12), start
    assert cost("2027-01", 3, "window") == pytest.approx(1000 * 1.03 * 0.02, rel=1e-12)
    e = estimate_from_plan(plan, "2026-10", 1)  # a month before the plan: the stock it grew from
    assert float(e["cost"].iloc[0]) == pytest.approx(1000 / 1.03 * 0.02, rel=1e-12)
    with pytest.raises(ValueError, match="storage_from"):
        estimate_from_plan(plan, "2027-01", 1, "later")


def test_a_misspelt_key_inside_a_section_is_an_error() -> None:
    """storage_gb_mnth was never read: storage priced at 0, exit 0. Every section's keys are
    checked, with the likely intent; x_ keys and notes are kept for people."""
    import copy

    from pipeline.errors import InputError

    raw = copy.deepcopy(PLAN)
    raw["price_book"]["storage_gb_mnth"] = raw["price_book"].pop("storage_gb_month")
    raw["scheduled_runs"][0]["gpu_count"] = 8
    raw["traffic"]["quantization"][0]["cutt"] = 0.1
    raw["headcount"][0]["x_owner"] = "ops"  # one's own: kept
    raw["recurring"][0]["notes"] = "nightly"
    with pytest.raises(InputError) as err:
        plan_from_dict(raw, "plan.yaml")
    said = [str(p) for p in err.value.problems]
    assert said == [
        "plan.yaml, key price_book.storage_gb_mnth: unknown key 'storage_gb_mnth' in price_book; "
        "did you mean 'storage_gb_month'?",
        "plan.yaml, key scheduled_runs[0].gpu_count: unknown key 'gpu_count' in "
        "scheduled_runs[0]; known: name, phase, gpu, gpus, start, days, pricing, params, tokens, "
        "utilization",
        "plan.yaml, key traffic.quantization[0].cutt: unknown key 'cutt' in "
        "traffic.quantization[0]; did you mean 'cut'?",
    ], said
    plan_from_dict(PLAN)  # the full example reads
    # a plan already stored (a run folder's, a model version's) still reads: logged, not refused
    stored = copy.deepcopy(PLAN)
    stored["recurring"][0]["team"] = "search"
    assert plan_from_dict(stored, "run", strict=False).recurring[0].name == "ft"
    with pytest.raises(InputError, match="unknown key 'team' in recurring"):
        plan_from_dict(stored, "plan.yaml")
