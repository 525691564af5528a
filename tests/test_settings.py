"""phasecast.yaml: read once at the edge, every problem reported at once, flags override it, and the
scheduled run does the whole job from it (quarters, scenarios, thresholds)."""

from __future__ import annotations

import shutil

import pandas as pd
import pytest
from click.testing import CliRunner

from pipeline.config import Paths
from pipeline.errors import InputError
from pipeline.settings import Settings, load_settings


def test_every_problem_at_once_and_relative_paths(tmp_path) -> None:
    (tmp_path / "b.csv").write_text("period,phase,amount,currency\n")
    cfg = tmp_path / "phasecast.yaml"
    cfg.write_text(
        "budgets: b.csv\nquarters: [2027Q1, 2027-02, 2027Q5]\nquantile: 2\n"
        "thresholds: {watch: 0.7, at_risk: 0.5}\nplan: nowhere.yaml\nbogus: 1\n"
    )
    with pytest.raises(InputError) as err:
        load_settings(cfg)
    text = "\n".join(str(p) for p in err.value.problems)
    for needle in ("2027-02", "2027Q5", "quantile", "nowhere.yaml", "bogus"):
        assert needle in text, needle
    # the thresholds' order is the file's problem too, named there (not "--watch" flags)
    assert f"{cfg}, key thresholds: thresholds: watch (0.7) must not be above at_risk (0.5)" in (
        text
    ), text
    cfg.write_text(
        "budgets: b.csv\nquarters: [2027q1]\nthresholds: {watch: 0.3}\ncurrency: usd\n"
        "scenarios:\n  - name: cut\n    changes: [{price: {gpu: H100, start: 2027-01-01, change: -0.2}}]\n"
    )
    s = load_settings(cfg)
    assert s.budgets == tmp_path / "b.csv" and s.quarters == ("2027Q1",)
    # one threshold alone is checked against the other's flag where it is used, not the default
    cfg.write_text("thresholds: {watch: 0.6}\n")
    assert load_settings(cfg).watch == 0.6
    cfg.write_text(
        "budgets: b.csv\nquarters: [2027q1]\nthresholds: {watch: 0.3}\ncurrency: usd\n"
        "scenarios:\n  - name: cut\n    changes: [{price: {gpu: H100, start: 2027-01-01, change: -0.2}}]\n"
    )
    s = load_settings(cfg)
    assert (s.watch, s.at_risk, s.currency, s.horizon) == (0.3, 0.5, "USD", 18)
    assert s.scenarios[0].name == "cut"
    # flags override the file; flags not given keep it
    o = s.override(quarters=("2027Q2",), budgets=None, horizon=None)
    assert o.quarters == ("2027Q2",) and o.budgets == s.budgets and o.horizon == 18
    assert Settings().describe()["thresholds"] == {"watch": 0.2, "at_risk": 0.5}


@pytest.mark.slow
def test_scheduled_run_does_the_whole_job_from_the_file(tmp_path, small_home) -> None:
    home = tmp_path / "home"
    shutil.copytree(small_home.data, home / "data")
    paths = Paths(home=home)
    (home / "phasecast.yaml").write_text(
        "budgets: data/sample/budgets.csv\nquarters: [2027Q1]\nhorizon: 6\n"
        "thresholds: {watch: 0.01, at_risk: 0.9}\n"
        "scenarios:\n  - name: cut\n    changes: [{price: {gpu: H100, start: 2027-01-01, change: -0.2}}]\n"
    )
    from pipeline.cli import cli

    r = CliRunner().invoke(
        cli,
        [
            "--home",
            str(home),
            "run-monthly",
            "--as-of",
            "2026-11-15",
            "--models",
            "seasonal_naive",
            "--windows",
            "2",
            "--no-progress",
            "--no-report",
        ],  # fmt: skip
        catch_exceptions=False,
    )
    assert r.exit_code == 0, r.output
    run = paths.outputs / "2026-11-15"
    assert (run / "budget-2027Q1.csv").exists() and not (run / "budget-2026Q4.csv").exists()
    s = pd.read_csv(run / "scenarios-2027Q1.csv")
    assert set(s.scenario) == {"cut"}
    f = pd.read_csv(run / "flags.csv")
    # thresholds from the file: watch from p >= 0.01, at_risk only from 0.9
    live = f[f.status != "over_budget"]
    assert ((live.p_overrun >= 0.9) == (live.status == "at_risk")).all()
    assert ((live.p_overrun < 0.01) == (live.status == "ok")).all()
    # the horizon reaches the furthest budget period even though the file says 6
    from pipeline.periods import parse_period

    last = max(parse_period(p).months[-1] for p in f.period)
    paths_ds = pd.read_parquet(run / "paths.parquet", columns=["ds"]).ds.max()
    assert pd.Timestamp(paths_ds) >= last
