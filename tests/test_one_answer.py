"""One answer to one question: every command reads the as-of's stored run.

On one generated history and one as-of, the run folder written by ``run-monthly``, ``flag``,
``budget`` and ``report`` give the same ``p_overrun``, status and P50/P80/P95; ``report`` leaves
the run folder byte for byte as it was; phases add up to the total in every table and every path;
a GPU price scenario moves every model's GPU cost by the hand-computed amount. Exact sums are
checked on the Parquet tables (full precision); the CSVs beside them are rounded to cents.
"""

from __future__ import annotations

import hashlib
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from pipeline.conditioning import PartialMonth, condition_paths, period_totals
from pipeline.config import Paths
from pipeline.estimate import estimate_from_plan
from pipeline.formatting import fixed
from pipeline.frames import PHASES, TOTAL
from pipeline.metrics import ALONE, BEYOND, NOT_BACKTESTED
from pipeline.periods import parse_period
from pipeline.reconcile import summing_matrix
from pipeline.runstore import load_run

AS_OF = "2026-11-15"
MODELS = ("--models", "seasonal_naive", "--models", "ets", "--models", "analytic_baseline")
PRICE_CUT = "name: h100-cut\nchanges:\n  - price: {gpu: H100, start: 2027-01-01, change: -0.2}\n"


def cli(paths: Paths, *args: str):  # type: ignore[no-untyped-def]
    from pipeline.cli import cli as phasecast

    return CliRunner().invoke(phasecast, ["--home", str(paths.home), *args], catch_exceptions=False)


def digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def stored(tmp_path_factory, small_home):  # type: ignore[no-untyped-def]
    """A home with one stored run for AS_OF (budgets, a price-cut scenario, default quarters)."""
    home = tmp_path_factory.mktemp("one_answer")
    shutil.copytree(small_home.data, home / "data")
    paths = Paths(home=home)
    sc = home / "h100-cut.yaml"
    sc.write_text(PRICE_CUT)
    r = cli(
        paths,
        "run-monthly",
        "--as-of",
        AS_OF,
        "--budgets",
        str(paths.sample / "budgets.csv"),
        "--scenario",
        str(sc),
        "--windows",
        "2",
        "--no-progress",
        "--no-report",
        *MODELS,
    )
    assert r.exit_code == 0, r.output
    return paths, paths.outputs / AS_OF, sc


def test_every_command_gives_the_run_folders_numbers(stored, tmp_path) -> None:
    paths, run_dir, sc = stored
    budgets = str(paths.sample / "budgets.csv")
    run_flags = pd.read_csv(run_dir / "flags.csv")
    assert len(run_flags) > 10
    # flag: the same lines, and a single line alone gets the same numbers (no line moves another)
    r = cli(paths, "flag", "--budgets", budgets, "--as-of", AS_OF, "--output", str(tmp_path / "f"))
    assert r.exit_code in (0, 3), r.output
    got = pd.read_csv(tmp_path / "f" / "flags.csv")
    cols = ["period", "phase", "p_overrun", "status", "p50", "p80", "p95", "forecast_total"]
    pd.testing.assert_frame_equal(got[cols], run_flags[cols])
    one = tmp_path / "one.csv"
    line = run_flags.iloc[len(run_flags) // 2]
    one.write_text(f"period,phase,amount,currency\n{line.period},{line.phase},{line.budget},USD\n")
    r = cli(paths, "flag", "--budgets", str(one), "--output", str(tmp_path / "f1"))  # newest run
    assert r.exit_code in (0, 3), r.output
    alone = pd.read_csv(tmp_path / "f1" / "flags.csv").iloc[0]
    assert (alone.p_overrun, alone.status, alone.p80) == (line.p_overrun, line.status, line.p80)
    # budget: the planned quarters' P50/P80/P95 and p_overrun, and the scenarios
    for q in ("2026Q4", "2027Q1"):
        out = tmp_path / f"b{q}"
        r = cli(paths, "budget", "--quarter", q, "--budgets", budgets, "--scenario", str(sc),
                "--as-of", AS_OF, "--output", str(out))  # fmt: skip
        assert r.exit_code == 0, r.output
        pd.testing.assert_frame_equal(
            pd.read_csv(out / f"budget-{q}.csv"), pd.read_csv(run_dir / f"budget-{q}.csv")
        )
        # the terminal shows the expected (mean) the flags use beside the quantiles
        mean = pd.read_csv(run_dir / f"budget-{q}.csv").set_index("phase").loc[TOTAL, "mean"]
        assert re.search(rf"total +{mean:,.0f} ", r.output), r.output
        pd.testing.assert_frame_equal(
            pd.read_csv(out / f"scenarios-{q}.csv"), pd.read_csv(run_dir / f"scenarios-{q}.csv")
        )
    # report: its own folder; the run folder is untouched; it shows the same numbers
    before = digest(run_dir)
    r = cli(
        paths, "report", "--as-of", AS_OF, "--budgets", budgets, "--output", str(tmp_path / "r")
    )
    assert r.exit_code == 0, r.output
    assert digest(run_dir) == before
    html = (tmp_path / "r" / "report.html").read_text()
    q1 = pd.read_csv(run_dir / "budget-2027Q1.csv").set_index("phase")
    for col in ("p50", "p80", "p95"):
        assert f"{q1.loc[TOTAL, col]:,.0f}" in html
    at_risk = run_flags[run_flags.status != "ok"]
    for row in at_risk.itertuples():
        phase = row.phase.replace("_", " ")  # the report's words, as on its first screen
        assert re.search(rf"{row.period}</td><td class=\"l\">{phase}</td>", html)
        assert fixed(row.p_overrun, 2) in html
    # accuracy: stored once (accuracy.csv / .parquet), read back whole, shown by the report; its
    # typical errors recomputed here from the stored backtest of the models in use
    acc = pd.read_parquet(run_dir / "accuracy.parquet")
    pd.testing.assert_frame_equal(load_run(run_dir).accuracy, acc)
    assert (run_dir / "accuracy.csv").exists()
    acc = acc.set_index("unique_id")
    bt = pd.read_parquet(run_dir / "backtest.parquet")
    chosen = pd.read_parquet(run_dir / "selection.parquet").set_index("unique_id")["model"]
    mine = bt[bt["model"] == bt["unique_id"].map(chosen)]
    shown = [TOTAL, *[p for p in PHASES if p in acc.index]]
    planned = [
        u for u, r in chosen.items() if u in acc.index and acc.loc[u, "basis"] == NOT_BACKTESTED
    ]
    assert planned, "the demo plans pre-training runs: some series follow the plan"
    for uid in shown:
        basis = acc.loc[uid, "basis"]
        if basis == NOT_BACKTESTED:  # nothing but the plan's runs: no figure to show
            assert acc.loc[uid, ["typical_error_1m", "typical_error_3m"]].isna().all()
            continue
        if basis.startswith(BEYOND):  # the rest beyond plan-driven series: by hand in test_metrics
            assert np.isfinite(acc.loc[uid, "typical_error_1m"])
            continue
        assert basis == "backtest" or basis.startswith(ALONE), basis  # the models' own backtest
        for h in (1, 3):
            g = mine[(mine["unique_id"] == uid) & (mine["h"] == h)]
            den = float(g["y"].abs().sum())
            if den > 0:  # a phase with no cost in those months has no share to miss by
                err = float((g["y"] - g["mean"]).abs().sum()) / den
                assert acc.loc[uid, f"typical_error_{h}m"] == pytest.approx(err, rel=1e-9)
    row = re.search(r"<td>total</td><td>±([\d.]+) %</td><td>±([\d.]+) %</td>", html)
    assert row is not None, "the report shows the total's typical error at 1 and 3 months"
    for k, h in ((1, 1), (2, 3)):
        assert float(row.group(k)) == pytest.approx(
            100 * acc.loc[TOTAL, f"typical_error_{h}m"], abs=0.51
        )
    assert "all backtested series (cost-weighted)" in html
    assert "not measurable (it follows the plan" in html


def test_phases_add_up_in_every_table_and_every_path(stored) -> None:
    paths, run_dir, _ = stored
    run = load_run(run_dir)
    S, bottom = summing_matrix(run.path_ids)
    pos = {u: i for i, u in enumerate(run.path_ids)}
    phases = [p for p in PHASES if p in pos]
    for arr in (run.paths, run.conditioned):
        b = arr[[pos[u] for u in bottom]]
        np.testing.assert_allclose(arr[pos[TOTAL]], b.sum(axis=0), rtol=1e-9, atol=1e-6)
        np.testing.assert_allclose(
            arr[pos[TOTAL]], arr[[pos[p] for p in phases]].sum(axis=0), rtol=1e-9, atol=1e-6
        )
    for q in ("2026Q4", "2027Q1"):
        pt = period_totals(
            parse_period(q), run.monthly, run.conditioned, run.path_ids, run.path_ds, run.partial
        )
        total = pt.of(TOTAL)[1]
        np.testing.assert_allclose(total, sum(pt.of(p)[1] for p in phases), rtol=1e-9)
        np.testing.assert_allclose(pt.of(TOTAL)[0], sum(pt.of(p)[0] for p in phases), rtol=1e-9)
        t = pd.read_parquet(run_dir / f"budget-{q}.parquet").set_index("phase")
        assert t.loc[TOTAL, "mean"] == pytest.approx(t.drop(TOTAL)["mean"].sum(), rel=1e-9)
        assert t.loc[TOTAL, "actual_to_date"] == pytest.approx(
            t.drop(TOTAL)["actual_to_date"].sum(), rel=1e-9
        )
        s = pd.read_parquet(run_dir / f"scenarios-{q}.parquet").set_index("phase")
        for col in ("base_mean", "scenario_mean", "delta_mean"):
            assert s.loc[TOTAL, col] == pytest.approx(s.drop(TOTAL)[col].sum(), rel=1e-9, abs=1e-6)
    f = pd.read_parquet(run_dir / "flags.parquet")
    for period, g in f.groupby("period"):
        g = g.set_index("phase")
        if set(phases) <= set(g.index):
            assert g.loc[TOTAL, "forecast_total"] == pytest.approx(
                g.loc[phases, "forecast_total"].sum(), rel=1e-9
            ), period


def test_gpu_price_scenario_moves_every_models_gpu_cost_by_hand(stored) -> None:
    """H100 -20 % from 2027-01: pretraining runs on H100 only in the plan, so every model's
    pretraining GPU cost in 2027Q1 falls by exactly 20 %; in 2026Q4 nothing moves."""
    _, run_dir, _ = stored
    run = load_run(run_dir)
    plan = run.plan()
    assert {r.gpu for r in plan.scheduled_runs if r.phase == "pretraining"} == {"H100"}
    m = pd.read_csv(run_dir / "scenario-models-2027Q1.csv")
    gpu = m[m.unique_id == "pretraining/compute_gpu"].set_index("model")
    assert set(gpu.index) == {"seasonal_naive", "ets", "analytic_baseline"}
    for model, row in gpu.iterrows():
        assert row.delta == pytest.approx(-0.2 * row.base, rel=1e-9), model
    # the plan's own arithmetic: the runs' GPU-hours x (new - old) price
    from pipeline.estimate import gpu_month_price

    q1 = parse_period("2027Q1")
    by_hand = sum(
        r.gpus * 24 * _days_in(r, m) * -0.2 * gpu_month_price(plan.price_book, "H100", r.pricing, m)
        for r in plan.scheduled_runs
        if r.phase == "pretraining"
        for m in q1.months
    )
    s = pd.read_parquet(run_dir / "scenarios-2027Q1.parquet").set_index("phase")
    pre = s.loc["pretraining"]
    assert pre.plan_scenario - pre.plan_base == pytest.approx(by_hand, rel=1e-6)
    assert pre.delta_mean == pytest.approx(-0.2 * pre.base_mean, rel=1e-9)
    q4 = pd.read_csv(run_dir / "scenarios-2026Q4.csv")
    assert (q4["delta_mean"].abs() < 1e-6).all()


def test_the_scenario_tables_plan_is_the_budget_tables(stored) -> None:
    """One 'plan' figure per quarter and phase: the scenario table's ``plan_base`` is the budget
    table's ``plan_estimate`` (October, closed, at its actual in both; the plan for the rest), and
    a scenario changes the plan's months only. Before, ``plan_base`` priced all of 2026Q4 from the
    plan, which has next to nothing in October: 1,009,084 against 1,471,184 for the total."""
    _, run_dir, _ = stored
    run = load_run(run_dir)
    for q in ("2026Q4", "2027Q1"):
        b = pd.read_csv(run_dir / f"budget-{q}.csv").set_index("phase")
        s = pd.read_csv(run_dir / f"scenarios-{q}.csv").set_index("phase")
        assert set(s.index) == set(b.index), q
        for phase in b.index:
            assert s.loc[phase, "plan_base"] == pytest.approx(
                b.loc[phase, "plan_estimate"], rel=1e-12, abs=1e-9
            ), (q, phase)
    s = pd.read_csv(run_dir / "scenarios-2026Q4.csv").set_index("phase")
    october = run.monthly[pd.to_datetime(run.monthly["ds"]) == pd.Timestamp("2026-10-01")]
    actual = october.set_index("unique_id")["y"]
    assert actual["total"] > 100_000
    est = estimate_from_plan(run.plan(), pd.Timestamp("2026-11-01"), 2)
    by_hand = actual["total"] + est["cost"].sum()  # October billed, November-December planned
    assert s.loc["total", "plan_base"] == pytest.approx(by_hand, abs=0.005)  # CSV: cents
    assert (s["plan_scenario"] == s["plan_base"]).all()  # the cut starts in 2027


def _days_in(run, month: pd.Timestamp) -> float:  # type: ignore[no-untyped-def]
    start = pd.Timestamp(run.start)
    end = start + pd.Timedelta(days=run.duration_days())
    lo, hi = max(start, month), min(end, month + pd.offsets.MonthBegin(1))
    return max((hi - lo) / pd.Timedelta(days=1), 0.0)


def test_no_stored_run_names_the_command(stored) -> None:
    paths, _, _ = stored
    r = cli(paths, "flag", "--budgets", str(paths.sample / "budgets.csv"), "--as-of", "2026-10-15")
    assert r.exit_code == 2
    assert "no stored forecast run for as-of 2026-10-15" in r.output
    assert "phasecast run-monthly --as-of 2026-10-15" in r.output


def test_readers_never_write_into_a_run_folder(stored) -> None:
    paths, run_dir, _ = stored
    before = digest(run_dir)
    r = cli(paths, "report", "--output", str(run_dir))
    assert r.exit_code == 2 and "never writes into a run folder" in r.output
    # nor into a folder inside one (it would ride along with the run's files)
    r = cli(paths, "budget", "--output", str(run_dir / "sub"))
    assert r.exit_code == 2 and f"in the stored run {run_dir.resolve()}" in r.output, r.output
    assert digest(run_dir) == before and not (run_dir / "sub").exists()
    # nor any other command that writes a file: only the run writes in its folder
    for args in (
        ("series", "--output", str(run_dir)),
        ("estimate", "--plan", str(paths.sample / "plan.yaml"), "--output", str(run_dir / "e.csv")),
        ("reproduce", "--model", "seasonal_naive", "--output", str(run_dir / "r.csv")),
        ("attribution", "--json", str(run_dir / "a.json")),
        ("forecast", "--series", str(run_dir / "series.csv"), "--output", str(run_dir / "f.csv")),
        ("run-monthly", "--as-of", AS_OF, "--output", str(run_dir)),
    ):
        r = cli(paths, *args)
        assert r.exit_code == 2 and "only the run writes there" in r.output, (args, r.output)
    assert digest(run_dir) == before
    r = cli(
        paths, "reproduce", "--model", "seasonal_naive", "--output", str(run_dir.parent / "r.xlsx")
    )
    assert r.exit_code == 2 and "a .csv or .parquet file, not .xlsx" in r.output, r.output


def test_conditioning_is_coherent_and_line_independent() -> None:
    """Bottom series conditioned one by one, parents re-added: total = a + b on every path after
    conditioning, and each bottom series' result does not depend on the others."""
    rng = np.random.default_rng(0)
    ids = ["total", "inference", "inference/compute_gpu", "inference/storage", "pretraining"]
    h, n = 3, 2000
    bottom = {u: 100.0 + rng.normal(0, 10, (n, h)) for u in ids if u not in ("total", "inference")}
    S, b_ids = summing_matrix(ids)
    paths = np.einsum("ib,bph->iph", S, np.stack([bottom[u] for u in b_ids]))
    ds = pd.date_range("2026-11-01", periods=h, freq="MS")
    pm = {
        u: PartialMonth(ds[0], mtd=80.0, days_covered=15, days_in_month=30, pace_error=0.05)
        for u in b_ids
    }
    pm["total"] = PartialMonth(ds[0], mtd=1.0, days_covered=15, days_in_month=30, pace_error=0.05)
    cond = condition_paths(paths, ids, ds, pm)
    np.testing.assert_allclose(cond[0], cond[2] + cond[3] + cond[4], rtol=1e-12)
    np.testing.assert_allclose(cond[1], cond[2] + cond[3], rtol=1e-12)
    # pace 80 / 0.5 = 160 against a prior N(100, 10^2), pace sd 0.05 x 160 = 8: the Kalman gain
    # K = 100 / (100 + 64) moves each bottom month to 100 + K x 60; later months are independent
    k = 100 / (100 + 8.0**2)
    np.testing.assert_allclose(cond[2:, :, 0].mean(axis=1), 100 + k * 60, rtol=0.02)
    np.testing.assert_allclose(
        cond[2:, :, 1:].mean(axis=1), paths[2:, :, 1:].mean(axis=1), rtol=0.02
    )
    alone = condition_paths(
        paths[[2]], ["inference/compute_gpu"], ds, {"inference/compute_gpu": pm[b_ids[0]]}
    )
    np.testing.assert_allclose(alone[0], cond[2])


def test_flag_exit_codes_and_current_month(stored, tmp_path) -> None:
    paths, _, _ = stored
    tight = tmp_path / "tight.csv"  # a tiny current-month budget: certainly over
    tight.write_text("period,phase,amount,currency\n2026-11,total,1,USD\n2027Q1,total,1e12,USD\n")
    r = cli(
        paths, "flag", "--budgets", str(tight), "--fail-on-risk", "--output", str(tmp_path / "a")
    )
    assert r.exit_code == 3, r.output
    f = pd.read_csv(tmp_path / "a" / "flags.csv").set_index("period")
    assert f.loc["2026-11", "status"] == "over_budget" and f.loc["2026-11", "days_covered"] == 14
    assert f.loc["2027Q1", "status"] == "ok" and f.loc["2027Q1", "p_overrun"] == 0.0
    loose = tmp_path / "loose.csv"
    loose.write_text("period,phase,amount,currency\n2027Q1,total,1e12,USD\n")
    r = cli(
        paths, "flag", "--budgets", str(loose), "--fail-on-risk", "--output", str(tmp_path / "b")
    )
    assert r.exit_code == 0, r.output
    bad = tmp_path / "bad.csv"
    bad.write_text("period,phase,amount\n2027Q9,total,5\n")
    r = cli(paths, "flag", "--budgets", str(bad))
    assert r.exit_code == 2 and "row 1" in r.output
    eur = tmp_path / "eur.csv"
    eur.write_text("period,phase,amount,currency\n2027Q1,total,5,EUR\n")
    r = cli(paths, "flag", "--budgets", str(eur))
    assert r.exit_code == 2 and "EUR" in r.output and "USD" in r.output
    far = tmp_path / "far.csv"
    far.write_text("period,phase,amount,currency\n2029Q1,total,5,USD\n")
    r = cli(paths, "flag", "--budgets", str(far))
    assert r.exit_code == 2 and "--horizon" in r.output


def test_added_run_adds_gpus_x_hours_x_price_to_every_model(stored, tmp_path) -> None:
    paths, run_dir, _ = stored
    plan = load_run(run_dir).plan()
    price = plan.price_book.gpu_price("H100", "committed", pd.Timestamp("2027-02-04").date())
    sc = tmp_path / "big-run.yaml"
    sc.write_text(
        "name: big-run\nchanges:\n  - add_run: {gpu: H100, gpus: 256, days: 10, "
        "start: 2027-02-04, pricing: committed, phase: pretraining}\n"
    )
    out = tmp_path / "out"
    r = cli(paths, "budget", "--quarter", "2027Q1", "--scenario", str(sc), "--output", str(out))
    assert r.exit_code == 0, r.output
    assert "big-run" in r.output
    s = pd.read_parquet(out / "scenarios-2027Q1.parquet").set_index("phase")
    added = 256 * 240 * price
    assert s.loc["pretraining", "delta_mean"] == pytest.approx(added, rel=1e-9)
    assert s.loc[TOTAL, "delta_mean"] == pytest.approx(added, rel=1e-9)
    assert s.loc["pretraining", "plan_scenario"] - s.loc["pretraining", "plan_base"] == (
        pytest.approx(added, rel=1e-9)
    )
    m = pd.read_csv(out / "scenario-models-2027Q1.csv")
    m = m[m.unique_id == "pretraining/compute_gpu"]
    assert len(m) == 3 and np.allclose(m["delta"], added, rtol=1e-9)


def test_booked_labor_is_never_extrapolated_by_pace() -> None:
    """A labor row is the hours booked so far, possibly the whole month's already: it counts, but no
    pace is extrapolated from it (a whole month booked by day 14 must not become 31/14 months)."""
    ids = ["total", "operations", "operations/labor", "operations/compute_cpu"]
    S, bottom = summing_matrix(ids)
    b = {
        "operations/labor": np.full((500, 2), 100.0),
        "operations/compute_cpu": np.full((500, 2), 50.0),
    }
    paths = np.einsum("ib,bph->iph", S, np.stack([b[u] for u in bottom]))
    ds = pd.date_range("2026-10-01", periods=2, freq="MS")
    pm = {
        "operations/labor": PartialMonth(
            ds[0], mtd=100.0, days_covered=14, days_in_month=31, pace_error=1e-16
        ),
        "operations/compute_cpu": PartialMonth(
            ds[0], mtd=14 * 50 / 31, days_covered=14, days_in_month=31, pace_error=0.02
        ),
    }
    cond = condition_paths(paths, ids, ds, pm, booked=["operations/labor"])
    pos = {u: i for i, u in enumerate(ids)}
    np.testing.assert_allclose(cond[pos["operations/labor"]], 100.0)  # not 100 x 31 / 14
    assert cond[pos["operations/compute_cpu"], :, 0].mean() == pytest.approx(50.0, rel=0.01)
    np.testing.assert_allclose(cond[pos[TOTAL]], cond[pos["operations"]])
    half = dict(pm, **{"operations/labor": PartialMonth(ds[0], 45.0, 14, 31, 1e-16)})
    cond = condition_paths(paths, ids, ds, half, booked=["operations/labor"])
    np.testing.assert_allclose(cond[pos["operations/labor"], :, 0], 100.0)  # the forecast month


def test_a_closed_quarter_has_no_scenario_and_no_recommendation(stored, tmp_path) -> None:
    """A quarter whose every month is billed: its budget is its actuals, nothing recommended, and
    a scenario (a plan change) cannot alter it: no scenario files, a warning that says why."""
    paths, run_dir, _ = stored
    sc = tmp_path / "big-run.yaml"
    sc.write_text(
        "name: big-run\nchanges:\n  - add_run: {gpu: H100, gpus: 8, days: 2, "
        "start: 2027-02-04, pricing: committed, phase: pretraining}\n"
    )
    closed = pd.Period(AS_OF, freq="Q") - 1  # the quarter before the as-of's: all billed
    out = tmp_path / "closed"
    r = cli(paths, "budget", "--quarter", str(closed), "--scenario", str(sc), "--output", str(out))
    assert r.exit_code == 0, r.output
    assert "the quarter is closed" in r.output and "no scenario for" in r.output
    assert not list(out.glob("scenario*"))
    b = pd.read_csv(out / f"budget-{closed}.csv")
    assert b["recommended"].isna().all() and (b["p95"] == b["actual_to_date"]).all()
