"""What changed since last month: two monthly runs, and ``changes.csv`` adds up to the difference
of their forecasts, phase by phase, with a plan change (an H100 price cut) found where it is."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest
import yaml

from pipeline.config import Paths
from pipeline.frames import TOTAL
from tests.test_one_answer import MODELS, cli


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory, small_home):  # type: ignore[no-untyped-def]
    """2026-10-15 on the synth plan, then 2026-11-15 with H100 cheaper by 25 % from 2027-01."""
    import shutil

    home = tmp_path_factory.mktemp("changes")
    shutil.copytree(small_home.data, home / "data")
    paths = Paths(home=home)
    budgets = str(paths.sample / "budgets.csv")
    common = ("--budgets", budgets, "--windows", "2", "--no-progress", "--no-report", *MODELS)
    r = cli(paths, "run-monthly", "--as-of", "2026-10-15", *common)
    assert r.exit_code == 0, r.output
    plan = yaml.safe_load(paths.plan.read_text())
    plan["price_book"]["price_changes"].append(
        {"gpu": "H100", "start": "2027-01-01", "on_demand": 5.16, "committed": 3.612}
    )
    cheaper = home / "plan-h100-cut.yaml"
    cheaper.write_text(yaml.safe_dump(plan))
    r = cli(paths, "run-monthly", "--as-of", "2026-11-15", "--plan", str(cheaper), *common)
    assert r.exit_code == 0, r.output
    return paths.outputs / "2026-10-15", paths.outputs / "2026-11-15"


def test_changes_add_up_to_the_difference_of_the_two_forecasts(two_runs) -> None:
    before, now = two_runs
    assert not (before / "changes.csv").exists()  # the first run has nothing to compare with
    ch = pd.read_parquet(now / "changes.parquet")
    assert set(ch["period"]) == {"2026Q4", "2027Q1"}
    assert (ch["previous_as_of"] == "2026-10-15").all()
    parts = ch["new_actuals"] + ch["plan_changes"] + ch["model_changes"]
    pd.testing.assert_series_equal(
        ch["previous_mean"] + parts, ch["current_mean"], check_names=False, rtol=1e-12
    )
    for q in ("2026Q4", "2027Q1"):
        c = ch[ch["period"] == q].set_index("phase")
        # the two forecasts are the two runs' own budget tables
        b_now = pd.read_parquet(now / f"budget-{q}.parquet").set_index("phase")["mean"]
        b_before = pd.read_parquet(before / f"budget-{q}.parquet").set_index("phase")["mean"]
        for phase in b_now.index:
            assert c.loc[phase, "current_mean"] == pytest.approx(b_now[phase], rel=1e-12)
            assert c.loc[phase, "previous_mean"] == pytest.approx(b_before[phase], rel=1e-12)
            assert c.loc[phase, "change"] == pytest.approx(
                b_now[phase] - b_before[phase], rel=1e-9, abs=1e-6
            )
        # less than half a cent is no change, not a ratio of float noise (2e-16 in a workbook)
        tiny = c["change"].abs() < 0.005
        assert (c.loc[tiny & c["change_pct"].notna(), "change_pct"] == 0.0).all()
        # the total is the sum of the phases, part by part
        for col in ("previous_mean", "new_actuals", "plan_changes", "model_changes", "change"):
            assert c.loc[TOTAL, col] == pytest.approx(c.drop(TOTAL)[col].sum(), rel=1e-9, abs=1e-6)
    # the CSV for people: rounded to cents, and still adds up to the cent (up to rounding)
    csv = pd.read_csv(now / "changes.csv")
    assert (csv["current_mean"] * 100).round(6).mod(1).eq(0).all()
    err = (
        csv["previous_mean"]
        + csv["new_actuals"]
        + csv["plan_changes"]
        + csv["model_changes"]
        - csv["current_mean"]
    ).abs()
    assert err.max() <= 0.03


def test_new_actuals_and_plan_changes_are_where_they_happened(two_runs) -> None:
    before, now = two_runs
    ch = pd.read_parquet(now / "changes.parquet").set_index(["period", "phase"])
    # October closed between the runs: it is the only month of 2026Q4 behind "new actuals"
    q4 = ch.loc["2026Q4"]
    assert (q4["months_closed_since"] == "2026-10").all()
    series_now = pd.read_parquet(now / "series.parquet")
    fc_before = pd.read_parquet(before / "paths.parquet")
    oct_ = pd.Timestamp("2026-10-01")
    for phase in ("inference", "operations"):
        actual = series_now[(series_now.unique_id == phase) & (series_now.ds == oct_)]["y"].sum()
        f = fc_before[(fc_before.unique_id == phase) & (fc_before.ds == oct_)]["conditioned"]
        assert q4.loc[phase, "new_actuals"] == pytest.approx(actual - f.mean(), rel=1e-9)
    # nothing of 2027Q1 has closed; the H100 cut is a plan change of the phases running on H100
    q1 = ch.loc["2027Q1"]
    assert (q1["new_actuals"] == 0).all()
    assert q1.loc["pretraining", "plan_changes"] < 0
    assert q1.loc[TOTAL, "plan_changes"] < 0
    assert q1.loc["operations", "plan_changes"] == 0
    assert q4.loc[TOTAL, "plan_changes"] == pytest.approx(0.0, abs=1e-6)  # the cut starts in 2027


def test_budget_workbook_and_flags_workbook(two_runs) -> None:
    from openpyxl import load_workbook

    _, now = two_runs
    wb = load_workbook(now / "budget-2027Q1.xlsx")
    assert wb.sheetnames == ["budget", "what changed"]
    ws = wb["budget"]
    assert ws.freeze_panes == "A2"
    head = [c.value for c in ws[1]]
    t = pd.read_parquet(now / "budget-2027Q1.parquet")
    assert head == list(t.columns)
    p50 = ws.cell(row=2, column=head.index("p50") + 1)
    assert p50.value == pytest.approx(t["p50"].iloc[0], rel=1e-12)  # full value, formatted
    assert p50.number_format == "#,##0.00"
    assert ws.cell(row=2, column=head.index("p_overrun") + 1).number_format == "0.0%"
    fl = load_workbook(now / "flags.xlsx")
    assert fl.sheetnames[0] == "flags" and fl["flags"].freeze_panes == "A2"
    assert fl["flags"].max_row == len(pd.read_parquet(now / "flags.parquet")) + 1


def test_formula_like_text_stays_text_in_a_workbook(tmp_path: Path) -> None:
    from openpyxl import load_workbook

    from pipeline.spreadsheets import write_workbook

    df = pd.DataFrame({"phase": ['=HYPERLINK("x")', "ok"], "amount": [1.005, math.nan]})
    write_workbook({"t": df}, tmp_path / "t.xlsx")
    ws = load_workbook(tmp_path / "t.xlsx")["t"]
    assert ws["A2"].data_type == "s" and ws["A2"].value == '=HYPERLINK("x")'
    assert ws["B3"].value is None  # NaN is an empty cell


def test_budget_and_report_show_the_run_folders_changes(two_runs, tmp_path: Path) -> None:
    before, now = two_runs
    paths = Paths(home=now.parent.parent)
    out = tmp_path / "b"
    r = cli(paths, "budget", "--as-of", "2026-11-15", "--output", str(out))
    assert r.exit_code == 0, r.output
    assert "what changed in 2027Q1 since the run of 2026-10-15" in r.output
    pd.testing.assert_frame_equal(
        pd.read_csv(out / "changes.csv"), pd.read_csv(now / "changes.csv")
    )  # one answer: the same table from the budget command
    r = cli(paths, "report", "--as-of", "2026-11-15", "--output", str(tmp_path / "r"))
    assert r.exit_code == 0, r.output
    html = (tmp_path / "r" / "report.html").read_text()
    c = pd.read_parquet(now / "changes.parquet").set_index(["period", "phase"])
    total = c.loc[("2027Q1", TOTAL)]
    assert "What changed since the last run" in html and "run of 2026-10-15" in html
    assert f"{total.current_mean:,.0f}" in html and f"{total.change:+,.0f}" in html
    # the first run's report has nothing to compare with, and says so
    r = cli(paths, "report", "--as-of", "2026-10-15", "--output", str(tmp_path / "r0"))
    assert "No earlier run" in (tmp_path / "r0" / "report.html").read_text()
