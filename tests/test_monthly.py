"""The monthly job end to end on the small sample, with a real SQLite MLflow store per test.

Reduced configuration (a few models, 6 months, 2 windows) keeps each run to seconds; the full
default job runs in ``test_mlflow_server.py`` (against a real tracking server) and ``make demo``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import gzip
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from pipeline.config import Paths
from pipeline.errors import EXIT_BAD_INPUT, EXIT_LOCKED, InputError
from pipeline.forecast import ForecastConfig
from pipeline.monthly import MonthlyConfig, run_monthly

AS_OF = dt.date(2026, 11, 15)
SMALL = ForecastConfig(
    horizon=6, models=("seasonal_naive",), n_windows=2, n_paths=200, reconcile=True
)


def config(paths: Paths, fc: ForecastConfig = SMALL, **kw) -> MonthlyConfig:
    from pipeline.tracking import TrackingConfig

    kw.setdefault("plan", paths.sample / "plan.yaml")
    kw.setdefault("report", False)
    return MonthlyConfig(
        as_of=AS_OF,
        paths=paths,
        tracking=TrackingConfig.for_paths(paths),
        forecast=fc,
        progress=False,
        **kw,
    )


def client(paths: Paths):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=paths.tracking_uri, registry_uri=paths.tracking_uri)


def tree_digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def warehouse_rows(paths: Paths) -> tuple[int, int]:
    import duckdb

    con = duckdb.connect(str(paths.warehouse), read_only=True)
    try:
        facts = con.execute("SELECT count(*) FROM daily_facts").fetchone()
        files = con.execute("SELECT count(*) FROM manifest").fetchone()
        assert facts is not None and files is not None
        return int(facts[0]), int(files[0])
    finally:
        con.close()


def cli(paths: Paths, *args: str):
    from pipeline.cli import cli as phasecast

    return CliRunner().invoke(phasecast, ["--home", str(paths.home), *args], catch_exceptions=False)


def test_monthly_outputs_mlflow_rerun_and_reproduce(
    home_copy: Paths, monkeypatch: pytest.MonkeyPatch
) -> None:
    paths = home_copy
    # a billing inbox holding files already in the warehouse: ingested idempotently (nothing changes)
    shutil.copytree(paths.sample / "billing", paths.inbox)
    rows_before = warehouse_rows(paths)
    budgets = paths.sample / "budgets.csv"
    res = run_monthly(config(paths, budgets=budgets, report=True))
    out = paths.outputs / AS_OF.isoformat()
    assert res.output_dir == out and not res.reused_run
    for name in ("forecast", "backtest", "metrics", "selection", "flags"):
        assert (out / f"{name}.csv").exists() and (out / f"{name}.parquet").exists(), name
    assert (out / "report.html").stat().st_size > 1000
    assert not list(paths.outputs.glob(".*tmp*")), "staging folder left behind"

    fc = pd.read_parquet(out / "forecast.parquet")
    assert {
        "unique_id",
        "ds",
        "model",
        "mean",
        "lo_80",
        "hi_80",
        "lo_95",
        "hi_95",
        "phase",
        "category",
    } <= set(fc.columns)
    assert (
        fc["ds"].min() == pd.Timestamp("2026-11-01") and fc.groupby("unique_id").size().eq(6).all()
    )

    manifest = json.loads((out / "run.json").read_text())
    assert manifest["data_window"]["last_month"] == "2026-10"
    assert manifest["mlflow"]["run_id"] == res.run_id
    assert len(manifest["input_checksums"]["series_sha256"]) == 64
    roles = manifest["champion_decisions"]
    assert set(roles) == {"analytic_baseline", "seasonal_naive", "forecaster"}
    assert all(d["alias"] == "champion" for d in roles.values())

    c = client(paths)
    run = c.get_run(res.run_id)
    assert run.info.status == "FINISHED" and run.info.run_name == AS_OF.isoformat()
    assert run.data.params["checks.series_sha256"] == manifest["input_checksums"]["series_sha256"]
    assert run.data.params["config.forecast.horizon"] == "6"
    assert (
        "backtest.seasonal_naive.MASE" in run.data.metrics
        and "backtest.seasonal_naive.coverage_95" in run.data.metrics
    )
    assert run.data.tags["git_commit"] and run.data.tags["version.mlflow"]
    arts = {a.path for a in c.list_artifacts(res.run_id, "outputs")}
    assert {"outputs/forecast.parquet", "outputs/run.json", "outputs/report.html"} <= arts
    # the artifacts live under the local artifact root, not in the working directory
    assert any(paths.artifact_root.rglob("forecast.parquet"))
    assert str(c.get_model_version_by_alias("phasecast-forecaster", "champion").version) == "1"

    # same as-of, same data: same numbers, no new run, no new versions, no new warehouse rows
    first = (out / "forecast.parquet").read_bytes()
    res2 = run_monthly(config(paths, budgets=budgets))
    assert res2.reused_run and res2.run_id == res.run_id
    assert (out / "forecast.parquet").read_bytes() == first
    assert warehouse_rows(paths) == rows_before
    for role in ("analytic_baseline", "seasonal_naive", "forecaster"):
        assert len(c.search_model_versions(f"name = 'phasecast-{role}'")) == 1, role
    runs = c.search_runs([run.info.experiment_id])
    assert len(runs) == 1

    # exact re-forecast from the registry, by alias and by version number
    r = cli(
        paths,
        "reproduce",
        "--model",
        "forecaster",
        "--alias",
        "champion",
        "--output",
        str(paths.home / "re.parquet"),
    )
    assert r.exit_code == 0, r.output
    assert "exactly" in r.output
    model_fc = pd.read_parquet(out / "model_forecast.parquet")  # before the month to date
    pd.testing.assert_frame_equal(
        pd.read_parquet(paths.home / "re.parquet"), model_fc, check_exact=True
    )
    r = cli(paths, "reproduce", "--model", "phasecast-seasonal_naive", "--version", "1")
    assert r.exit_code == 0, r.output
    r = cli(paths, "reproduce", "--model", "analytic_baseline")
    assert r.exit_code == 0, r.output
    r = cli(paths, "reproduce", "--model", "no_such_model")
    assert r.exit_code == EXIT_BAD_INPUT

    # other code on the same data (an upgrade, a fix): a run and versions of its own, recorded with
    # that code; the first release's run and versions stay as they were
    from pipeline import tracking

    first_code = tracking.code_identity()
    assert run.data.tags["code"] == first_code
    monkeypatch.setattr(tracking, "code_identity", lambda: "0123456789abcdef")
    res3 = run_monthly(config(paths, budgets=budgets))
    assert not res3.reused_run and res3.run_id != res.run_id
    assert c.get_run(res3.run_id).data.tags["code"] == "0123456789abcdef"
    for role in ("analytic_baseline", "seasonal_naive", "forecaster"):
        name = f"phasecast-{role}"
        codes = {
            str(v.version): v.tags["code"] for v in c.search_model_versions(f"name = '{name}'")
        }
        assert codes == {"1": first_code, "2": "0123456789abcdef"}, role
        decision = c.get_model_version(name, "2").tags["decision"]
        assert f"other code ({first_code} -> 0123456789abcdef)" in decision, decision
        assert "newer data" not in decision, decision
    assert warehouse_rows(paths) == rows_before


def test_lock_held_exits_4(home_copy: Paths) -> None:
    from pipeline.runlock import run_lock

    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "1"}
    exe = Path(sys.executable).with_name("phasecast")
    with run_lock(home_copy.lock):
        p = subprocess.run(
            [
                str(exe),
                "--home",
                str(home_copy.home),
                "run-monthly",
                "--as-of",
                "2026-11-15",
                "--horizon",
                "3",
                "--models",
                "seasonal_naive",
            ],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        )
    assert p.returncode == EXIT_LOCKED, p.stderr
    assert "lock" in p.stderr and "nothing was done" in p.stderr
    assert not home_copy.outputs.exists()
    # released: the next run takes the lock (the lock itself, without a whole job)
    with run_lock(home_copy.lock):
        pass


def _corrupt_copy(src: Path, dst: Path) -> None:
    data = gzip.open(src).read() if src.suffix == ".gz" else src.read_bytes()
    raw = gzip.compress(data)
    dst.write_bytes(raw[: len(raw) // 2])  # a truncated gzip, as a failed upload leaves it


def test_failure_is_recorded_previous_outputs_kept_and_rerun_completes(home_copy: Paths) -> None:
    paths = home_copy
    res = run_monthly(config(paths))
    out = paths.outputs / AS_OF.isoformat()
    before = tree_digest(out)
    rows = warehouse_rows(paths)

    # a corrupt export lands in the inbox: the run fails (bad input), is FAILED in MLflow,
    # the warehouse and the previous outputs are untouched
    paths.inbox.mkdir(parents=True)
    good = sorted((paths.sample / "billing").glob("*.csv*"))[-1]
    bad = paths.inbox / ("zz-" + good.name + ("" if good.suffix == ".gz" else ".gz"))
    _corrupt_copy(good, bad)
    with pytest.raises(InputError) as err:
        run_monthly(config(paths))
    assert bad.name in str(err.value)
    assert tree_digest(out) == before and warehouse_rows(paths) == rows
    c = client(paths)
    exp = c.get_experiment_by_name("phasecast/monthly")
    failed = c.search_runs([exp.experiment_id], filter_string="attributes.status = 'FAILED'")
    assert len(failed) == 1 and "InputError" in failed[0].data.tags["error"]
    assert failed[0].info.run_name == AS_OF.isoformat()

    # the same through the CLI: exit code 2, a second FAILED run
    r = cli(
        paths,
        "run-monthly",
        "--as-of",
        "2026-11-15",
        "--horizon",
        "6",
        "--models",
        "seasonal_naive",
        "--no-progress",
    )
    assert r.exit_code == EXIT_BAD_INPUT

    # a step failing after the run started (an unknown model): FAILED too, outputs untouched
    with pytest.raises(InputError):
        run_monthly(
            config(
                paths,
                ForecastConfig(horizon=6, models=("no_such_model",), n_windows=2),
                inbox=paths.home / "empty",
            )
        )
    failed = c.search_runs([exp.experiment_id], filter_string="attributes.status = 'FAILED'")
    assert len(failed) == 3
    assert tree_digest(out) == before

    # fix the file (the good export instead of the broken one): the re-run completes
    bad.unlink()
    shutil.copyfile(good, paths.inbox / good.name)
    res2 = run_monthly(config(paths))
    assert res2.run_id == res.run_id and res2.reused_run  # same data: the finished run is reused
    assert pd.read_parquet(out / "forecast.parquet").equals(
        pd.read_parquet(res.output_dir / "forecast.parquet")
    )
    assert warehouse_rows(paths) == rows


def test_champion_moves_only_when_beaten_on_the_same_backtest(home_copy: Paths) -> None:
    paths = home_copy
    c = client(paths)
    # v1: seasonal naive (+ the baseline) -> first champion
    r1 = run_monthly(
        config(
            paths,
            ForecastConfig(
                horizon=6, models=("seasonal_naive",), n_windows=2, n_paths=200, reconcile=True
            ),
        )
    )
    d1 = r1.manifest["champion_decisions"]["forecaster"]
    assert d1["alias"] == "champion" and d1["version"] == "1"
    # v2: adds ETS: per series the better of three models, on the same windows -> beats v1
    r2 = run_monthly(
        config(
            paths,
            ForecastConfig(
                horizon=6,
                models=("seasonal_naive", "ets"),
                n_windows=2,
                n_paths=200,
                reconcile=True,
            ),
        )
    )
    d2 = r2.manifest["champion_decisions"]["forecaster"]
    assert d2["version"] == "2" and d2["champion_version"] == "1"
    assert d2["new_MASE"] < d2["champion_MASE"], d2
    assert d2["alias"] == "champion" and d2["decision"].startswith("champion: beats")
    # v1's configuration re-run on v2's windows is v1's own backtest here (same data, same windows)
    assert d2["champion_MASE"] == pytest.approx(d1["new_MASE"], rel=1e-12)
    # v3: the analytic baseline alone -> worse on the same backtest -> challenger, champion stays v2
    r3 = run_monthly(
        config(
            paths,
            ForecastConfig(
                horizon=6, models=("analytic_baseline",), n_windows=2, n_paths=200, reconcile=True
            ),
        )
    )
    d3 = r3.manifest["champion_decisions"]["forecaster"]
    assert d3["version"] == "3" and d3["alias"] == "challenger", d3
    assert d3["new_MASE"] >= d3["champion_MASE"]
    assert str(c.get_model_version_by_alias("phasecast-forecaster", "champion").version) == "2"
    assert str(c.get_model_version_by_alias("phasecast-forecaster", "challenger").version) == "3"
    # the decision and its numbers are on the run and on the version
    run3 = c.get_run(r3.run_id)
    assert run3.data.tags["decision.forecaster"].startswith("v3 challenger")
    assert run3.data.metrics["decision.forecaster.promoted"] == 0.0
    assert run3.data.metrics["decision.forecaster.champion_MASE"] == pytest.approx(
        d3["champion_MASE"]
    )
    v3 = c.get_model_version("phasecast-forecaster", "3")
    assert v3.tags["compared_with_version"] == "2" and "challenger" in v3.tags["decision"]
    # the same model on the same data is never registered twice across the three runs
    assert len(c.search_model_versions("name = 'phasecast-seasonal_naive'")) == 1
    assert len(c.search_model_versions("name = 'phasecast-analytic_baseline'")) == 1
    assert len(c.search_model_versions("name = 'phasecast-ets'")) == 1


def test_newer_data_refreshes_champion_of_same_configuration(home_copy: Paths) -> None:
    """A month later, same configuration: the champion's configuration re-run on the new windows
    is the new backtest itself, so the newer version takes over (recorded as a refresh)."""
    paths = home_copy
    r1 = run_monthly(dataclasses.replace(config(paths), as_of=dt.date(2026, 10, 15)))
    r2 = run_monthly(config(paths))
    d = r2.manifest["champion_decisions"]["seasonal_naive"]
    assert r1.run_id != r2.run_id
    assert d["version"] == "2" and d["alias"] == "champion" and "refresh" in d["decision"]
    assert r2.manifest["data_window"]["last_month"] == "2026-10"
    assert r1.manifest["data_window"]["last_month"] == "2026-09"


def _all_runs(paths: Paths) -> int:
    exp = client(paths).get_experiment_by_name("phasecast/monthly")
    return 0 if exp is None else len(client(paths).search_runs([exp.experiment_id]))


def test_a_run_that_cannot_start_leaves_nothing_behind(home_copy: Paths, tmp_path: Path) -> None:
    """Bad arguments (an as-of still to come, an as-of before the first billed month, a budgets
    file without its phase column) exit 2 with the fix, and add no MLflow run, no output and no
    warehouse row: a FAILED run is for a run that started (a corrupt export in the inbox)."""
    from pipeline.monthly import check_not_future

    paths = home_copy
    rows = warehouse_rows(paths)
    tomorrow = dt.date(2026, 12, 3)
    check_not_future(tomorrow, today=dt.date(2026, 12, 2))  # a day's slack: time zones
    with pytest.raises(InputError, match=r"--as-of 2026-12-04 is after today \(2026-12-02\)"):
        check_not_future(dt.date(2026, 12, 4), today=dt.date(2026, 12, 2))
    future = (dt.date.today() + dt.timedelta(days=8)).isoformat()
    bad_budgets = tmp_path / "budgets.csv"
    bad_budgets.write_text("period,amount,currency\n2027Q1,100,USD\n")
    for args, says in (
        (("--as-of", future), "is after today"),
        (("--as-of", "2023-10-15"), "no complete month of cost before 2023-10-15"),
        (("--as-of", "2026-11-15", "--budgets", str(bad_budgets)), "phase"),
    ):
        r = cli(paths, "run-monthly", *args, "--models", "seasonal_naive", "--no-progress")
        assert r.exit_code == EXIT_BAD_INPUT, (args, r.output)
        assert says in r.output and "How to fix" in r.output, (args, r.output)
        assert _all_runs(paths) == 0, args
        assert not paths.outputs.exists() or not any(paths.outputs.iterdir()), args
        assert warehouse_rows(paths) == rows
    # the series command the same way (it wrote "0 series" and empty files, exit 0)
    r = cli(paths, "series", "--as-of", "2023-10-15", "--output", str(tmp_path / "s"))
    assert r.exit_code == EXIT_BAD_INPUT and "no complete month of cost before" in r.output
    assert not (tmp_path / "s").exists()


def test_a_run_that_replaces_a_stored_one_says_what_changed(
    home_copy: Paths, caplog, tmp_path: Path
) -> None:
    """A re-run of an as-of on other inputs (here a budgets file; a restatement shows as the
    series) replaces the folder the readers use: the log says so and names the inputs."""
    paths = home_copy
    run_monthly(config(paths))
    with caplog.at_level("INFO", logger="pipeline.monthly"):
        run_monthly(config(paths, budgets=paths.sample / "budgets.csv"))
    said = [r.getMessage() for r in caplog.records if "replacing the stored run" in r.getMessage()]
    assert said == [
        f"replacing the stored run {paths.outputs / AS_OF.isoformat()}: its inputs changed "
        "(budgets)"
    ], said
    # whatever an old run.json holds, the line never fails the run
    from pipeline.monthly import say_replaced

    for text in ('{"input_checksums": null}', "[1, 2]", "not json"):
        (tmp_path / "run.json").write_text(text)
        say_replaced(tmp_path, {"series_sha256": "x"})
