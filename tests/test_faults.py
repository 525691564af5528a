"""The exit-code contract under environmental faults: 2 for an unusable path, 4 when another process
holds the warehouse (and no MLflow run is recorded), 5 for a full disk; never 1 with a traceback."""

from __future__ import annotations

import errno
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from pipeline.config import Paths
from pipeline.errors import (
    EXIT_BAD_INPUT,
    EXIT_LOCKED,
    EXIT_RUN_FAILED,
    from_environment,
)


def cli(home: Path, *args: str):  # type: ignore[no-untyped-def]
    from pipeline.cli import cli as phasecast

    return CliRunner().invoke(phasecast, ["--home", str(home), *args], catch_exceptions=False)


def no_runs(paths: Paths) -> bool:
    if not paths.mlflow_dir.joinpath("mlflow.db").exists():
        return True
    from mlflow import MlflowClient

    c = MlflowClient(tracking_uri=paths.tracking_uri)
    exp = c.get_experiment_by_name("phasecast/monthly")
    return exp is None or not c.search_runs([exp.experiment_id])


def test_environmental_faults_map_to_their_exit_codes() -> None:
    full = OSError(errno.ENOSPC, "No space left on device", "/data/out.parquet")
    assert from_environment(full).exit_code == EXIT_RUN_FAILED  # type: ignore[union-attr]
    assert "/data/out.parquet" in str(from_environment(full))
    denied = PermissionError(errno.EACCES, "Permission denied", "/data/billing/x.csv")
    err = from_environment(denied)
    assert err is not None and err.exit_code == EXIT_BAD_INPUT and "x.csv" in str(err)
    wrapped = RuntimeError("step failed")
    wrapped.__cause__ = full
    assert from_environment(wrapped).exit_code == EXIT_RUN_FAILED  # type: ignore[union-attr]
    assert from_environment(ValueError("a bug")) is None


def test_output_path_that_is_not_a_folder_is_exit_2(tmp_path, small_home) -> None:
    home = tmp_path / "home"
    shutil.copytree(small_home.data, home / "data")
    (tmp_path / "afile").write_text("x")
    r = cli(home, "run-monthly", "--as-of", "2026-11-15", "--models", "seasonal_naive",
            "--output", str(tmp_path / "afile" / "sub"), "--no-progress")  # fmt: skip
    assert r.exit_code == EXIT_BAD_INPUT, r.output
    assert "afile/sub" in r.output and "not writable" in r.output
    assert no_runs(Paths(home=home))  # nothing recorded


def test_warehouse_held_by_another_process_is_exit_4_without_a_run(tmp_path, small_home) -> None:
    home = tmp_path / "home"
    shutil.copytree(small_home.data, home / "data")
    paths = Paths(home=home)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import duckdb, sys, time; c = duckdb.connect(sys.argv[1]); print('held', flush=True); "
            "time.sleep(120)",
            str(paths.warehouse),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        r = cli(home, "run-monthly", "--as-of", "2026-11-15", "--models", "seasonal_naive",
                "--no-progress")  # fmt: skip
        assert r.exit_code == EXIT_LOCKED, r.output
        assert "in use by another process" in r.output
        r = cli(home, "series", "--output", str(tmp_path / "s"))
        assert r.exit_code == EXIT_LOCKED, r.output
    finally:
        holder.kill()
        holder.wait()
    assert no_runs(paths)
    time.sleep(0.1)
    r = cli(home, "run-monthly", "--as-of", "2026-11-15", "--models", "seasonal_naive",
            "--horizon", "3", "--no-progress", "--no-report")  # fmt: skip
    assert r.exit_code == 0, r.output


@pytest.mark.parametrize("bad", ["2026-02-30", "2026-13-01", "soon"])
def test_impossible_as_of_is_exit_2(tmp_path, bad: str) -> None:
    r = cli(tmp_path, "flag", "--budgets", str(tmp_path / "none.csv"), "--as-of", bad)
    assert r.exit_code == EXIT_BAD_INPUT
