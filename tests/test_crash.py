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


def aliases(paths: Paths) -> dict[str, int]:
    con = sqlite3.connect(paths.mlflow_dir / "mlflow.db")
    try:
        return {
            f"{n}@{a}": v
            for n, a, v in con.execute("SELECT name, alias, version FROM registered_model_aliases")
        }
    finally:
        con.close()


def digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_sigkill_during_registration_moves_nothing(tmp_path, small_home) -> None:
    home = tmp_path / "home"
    shutil.copytree(small_home.data, home / "data")
    paths = Paths(home=home)
    first = phasecast(home, *ARGS, "--models", "seasonal_naive")
    assert first.wait(timeout=600) == 0, first.stdout.read() if first.stdout else ""
    before_aliases = aliases(paths)
    out = paths.outputs / "2026-11-15"
    before_out = digest(out)
    n0 = len(versions(paths))

    # a different model set: new versions to register; kill the process once the first lands
    run = phasecast(home, *ARGS, "--models", "seasonal_naive", "--models", "ets")
    deadline = time.monotonic() + 600
    while len(versions(paths)) == n0 and run.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert run.poll() is None, "the run finished before any version was registered"
    os.kill(run.pid, signal.SIGKILL)
    run.wait()
    assert len(versions(paths)) > n0  # killed in the middle of registration
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

    # equal to an uninterrupted run on a fresh copy
    ref_home = tmp_path / "ref"
    shutil.copytree(small_home.data, ref_home / "data")
    for models in (["seasonal_naive"], ["seasonal_naive", "ets"]):
        ref = phasecast(ref_home, *ARGS, *[a for m in models for a in ("--models", m)])
        assert ref.wait(timeout=600) == 0
    for name in ("forecast.parquet", "paths.parquet", "flags.parquet"):
        if (out / name).exists():
            pd.testing.assert_frame_equal(
                pd.read_parquet(out / name), pd.read_parquet(ref_home / "outputs/2026-11-15" / name)
            )
    assert aliases(paths).keys() == aliases(Paths(home=ref_home)).keys()
