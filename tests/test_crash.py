"""A monthly run killed with SIGKILL during model registration moves nothing, and the next start
cleans up after it: the MLflow run left RUNNING is marked KILLED, its candidate versions are
removed, its staging folder is deleted, and the re-run equals an uninterrupted run."""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from pipeline.config import Paths

pytestmark = pytest.mark.slow

ARGS = [
    "run-monthly",
    "--as-of",
    "2026-11-15",
    "--horizon",
    "6",
    "--windows",
    "2",
    "--no-progress",
    "--no-report",
]


def phasecast(home: Path, *args: str) -> subprocess.Popen:
    exe = Path(sys.executable).with_name("phasecast")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    return subprocess.Popen(
        [str(exe), "--home", str(home), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )


def versions(paths: Paths) -> list[tuple[str, int, str]]:
    db = paths.mlflow_dir / "mlflow.db"
    if not db.exists():
        return []
    con = sqlite3.connect(db)
    try:
        return con.execute("SELECT name, version, run_id FROM model_versions").fetchall()
    except sqlite3.OperationalError:
        return []
    finally:
        con.close()


def aliases(paths: Paths) -> dict[str, str]:
    """``model@alias -> version`` through MLflow's own client (no assumptions on its tables)."""
    from mlflow import MlflowClient

    c = MlflowClient(tracking_uri=paths.tracking_uri, registry_uri=paths.tracking_uri)
    return {
        f"{m.name}@{a}": str(v) for m in c.search_registered_models() for a, v in m.aliases.items()
    }


def digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.mark.parametrize("when", ["forecasting", "registration"])
def test_sigkill_moves_nothing_and_the_next_start_cleans_up(tmp_path, small_home, when) -> None:
    home = tmp_path / "home"
    shutil.copytree(small_home.data, home / "data")
    paths = Paths(home=home)
    first = phasecast(home, *ARGS, "--models", "seasonal_naive")
    out_first = first.communicate(timeout=600)[0]
    assert first.returncode == 0, out_first
    before_aliases = aliases(paths)
    assert before_aliases, out_first  # the first run registered its champions
    out = paths.outputs / "2026-11-15"
    before_out = digest(out)
    n0 = len(versions(paths))

    # a different model set: new versions to register; kill the process while it forecasts
    # (its staging folder exists) or once the first new version lands
    run = phasecast(home, *ARGS, "--models", "seasonal_naive", "--models", "ets")

    def reached() -> bool:
        if when == "forecasting":
            return bool(list(paths.outputs.glob(".2026-11-15.tmp-*")))
        return len(versions(paths)) > n0

    deadline = time.monotonic() + 600
    while not reached() and run.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert run.poll() is None, f"the run finished before {when}"
    os.kill(run.pid, signal.SIGKILL)
    run.wait()
    assert aliases(paths) == before_aliases  # no alias moved
    assert digest(out) == before_out  # the previous outputs are as they were
    assert list(paths.outputs.glob(".2026-11-15.tmp-*"))  # the dead run's staging folder

    # the next start cleans up, then completes
    again = phasecast(home, *ARGS, "--models", "seasonal_naive", "--models", "ets")
    log = again.communicate(timeout=600)[0]
    assert again.returncode == 0, log
    assert "marked KILLED" in log
    assert not list(paths.outputs.glob(".2026-11-15.*"))
    from mlflow import MlflowClient

    c = MlflowClient(tracking_uri=paths.tracking_uri, registry_uri=paths.tracking_uri)
    exp = c.get_experiment_by_name("phasecast/monthly")
    killed = c.search_runs([exp.experiment_id], filter_string="attributes.status = 'KILLED'")
    assert len(killed) == 1
    assert not c.search_model_versions(f"run_id = '{killed[0].info.run_id}'")
    leftover = [v for v in c.search_model_versions("") if v.tags.get("candidate") == "true"]
    assert leftover == []

    if when != "registration":
        return
    # equal to an uninterrupted run on a fresh copy
    ref_home = tmp_path / "ref"
    shutil.copytree(small_home.data, ref_home / "data")
    for models in (["seasonal_naive"], ["seasonal_naive", "ets"]):
        ref = phasecast(ref_home, *ARGS, *[a for m in models for a in ("--models", m)])
        ref.communicate(timeout=600)
        assert ref.returncode == 0
    for name in ("forecast.parquet", "paths.parquet", "flags.parquet"):
        if (out / name).exists():
            pd.testing.assert_frame_equal(
                pd.read_parquet(out / name), pd.read_parquet(ref_home / "outputs/2026-11-15" / name)
            )
    assert aliases(paths).keys() == aliases(Paths(home=ref_home)).keys()


def _warehouse_state(db: Path) -> tuple:
    import duckdb

    con = duckdb.connect(str(db), read_only=True)
    try:
        return (
            con.execute(
                "SELECT count(*), sum(effective_cost), sum(billed_cost) FROM daily_facts"
            ).fetchone()
            + con.execute("SELECT count(*) FROM manifest").fetchone()
        )
    finally:
        con.close()


@pytest.fixture(scope="module")
def ingest_reference(tmp_path_factory, small_sample):  # type: ignore[no-untyped-def]
    """The first three billing periods alone, and the warehouse state after an uninterrupted
    ingest of them followed by the whole history."""
    tmp = tmp_path_factory.mktemp("ingest_ref")
    first = tmp / "first"
    first.mkdir()
    for p in sorted((small_sample / "billing").iterdir())[:3]:
        (shutil.copytree if p.is_dir() else shutil.copy)(p, first / p.name)
    for src in (first, small_sample / "billing"):
        r = phasecast(tmp / "ref", "ingest", "--billing", str(src))
        r.communicate(timeout=300)
        assert r.returncode == 0
    return first, _warehouse_state(tmp / "ref" / "data" / "phasecast.duckdb")


@pytest.mark.parametrize("delay", [0.5, 2.0])
def test_sigkill_during_ingest_leaves_the_warehouse_before_or_after(
    tmp_path, small_sample, ingest_reference, delay
) -> None:
    first, after = ingest_reference
    home = tmp_path / "home"
    db = home / "data" / "phasecast.duckdb"
    ok = phasecast(home, "ingest", "--billing", str(first))
    ok.communicate(timeout=300)
    assert ok.returncode == 0
    before = _warehouse_state(db)
    run = phasecast(home, "ingest", "--billing", str(small_sample / "billing"))
    time.sleep(delay)
    if run.poll() is None:
        os.kill(run.pid, signal.SIGKILL)
    run.wait()
    assert _warehouse_state(db) in (before, after)  # never half-written
    again = phasecast(home, "ingest", "--billing", str(small_sample / "billing"))
    again.communicate(timeout=300)
    assert again.returncode == 0
    assert _warehouse_state(db) == after


def test_runs_back_to_back_with_overlapping_attempts(tmp_path) -> None:
    """The load benchmark in small: three monthly runs back to back, each with a second attempt
    started while the first holds the lock (exit 4 at once); the stores stay sound."""
    import json

    out = tmp_path / "load.json"
    r = subprocess.run(
        [sys.executable, "-m", "tests.benchmarks.load_bench", "--runs", "3", "--out", str(out)],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[1],
        timeout=900,
    )
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    summary = json.loads(out.read_text())["summary"]
    assert summary["runs"] == 3 and summary["overlapping_exit_codes"] == [4]
    assert summary["sqlite_integrity"] == "ok" and summary["run_folders_loaded"] == 3
