"""On a real Dask cluster, as a user runs it: ``dask scheduler`` and two ``dask worker`` processes on
localhost; ``run-monthly --scheduler tcp://127.0.0.1:PORT`` ingests the inbox on the workers, fits the
series there (LightGBM with ``lightgbm.dask``) and gives the serial run's warehouse (exactly) and
forecasts (to float tolerance). The processes are stopped by PID at the end."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pandas as pd
import pytest

pytestmark = pytest.mark.slow

ENV = {
    **os.environ,
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "MLFLOW_DISABLE_TELEMETRY": "true",
}
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
TABLES = ("forecast", "all_forecasts", "backtest", "metrics", "selection", "paths", "series")


def _exe(name: str) -> str:
    return str(Path(sys.executable).with_name(name))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _stop(procs: list[subprocess.Popen]) -> None:
    for p in reversed(procs):  # workers first, then the scheduler
        if p.poll() is None:
            os.kill(p.pid, signal.SIGTERM)
    for p in reversed(procs):
        try:
            p.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.kill(p.pid, signal.SIGKILL)
            p.wait(timeout=10)


@pytest.fixture(scope="module")
def scheduler(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    from distributed import Client

    logs = tmp_path_factory.mktemp("dask-logs")
    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    procs: list[subprocess.Popen] = []

    def start(name: str, *args: str) -> None:
        out = (logs / f"{name}.log").open("w")
        procs.append(
            subprocess.Popen(
                [_exe("dask"), *args], stdout=out, stderr=subprocess.STDOUT, env=ENV, cwd=logs
            )
        )

    try:
        start(
            "scheduler", "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"
        )
        for i in range(2):
            start(
                f"worker{i}",
                "worker",
                address,
                "--nthreads",
                "1",
                "--nworkers",
                "1",
                "--no-dashboard",
                "--name",
                f"w{i}",
            )
        deadline = time.monotonic() + 60
        while True:
            try:
                with Client(address, timeout="5s") as c:
                    c.wait_for_workers(2, timeout=60)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        yield address
    finally:
        _stop(procs)
        assert all(p.poll() is not None for p in procs)


def _home(root: Path, sample: Path) -> Path:
    home = root
    shutil.copytree(sample / "billing", home / "data" / "inbox" / "billing")
    return home


def _run(home: Path, *extra: str) -> subprocess.CompletedProcess:
    res = subprocess.run(
        [_exe("phasecast"), "--home", str(home), *ARGS, *extra],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=600,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    return res


def _task_prefixes(address: str) -> set[str]:
    """Key prefixes of the tasks the scheduler ran (its recent transition log)."""
    from distributed import Client

    def prefixes(dask_scheduler) -> list[str]:  # type: ignore[no-untyped-def]
        from dask.utils import key_split

        return sorted({key_split(t[0]) for t in dask_scheduler.transition_log})

    with Client(address, timeout="10s") as c:
        return set(c.run_on_scheduler(prefixes))


def test_run_monthly_on_a_cluster_equals_serial(
    scheduler: str, small_sample: Path, tmp_path: Path
) -> None:
    serial = _home(tmp_path / "serial", small_sample)
    dist = _home(tmp_path / "cluster", small_sample)
    _run(serial)
    _run(dist, "--scheduler", scheduler)

    ran = _task_prefixes(scheduler)
    assert "stage" in ran, ran  # ingest: one task per billing file
    assert "apply_chunk" in ran, ran  # per-series fits, in batches
    assert any("train_part" in p for p in ran), sorted(ran)  # lightgbm.dask

    # the warehouse: exactly the same rows, money to the last of 18 decimals
    for table in ("daily_facts", "allocated_facts"):
        q = f"SELECT * FROM {table} ORDER BY ALL"
        with (
            duckdb.connect(str(serial / "data" / "phasecast.duckdb"), read_only=True) as a,
            duckdb.connect(str(dist / "data" / "phasecast.duckdb"), read_only=True) as b,
        ):
            assert a.execute(q).fetchall() == b.execute(q).fetchall(), table
    # the forecasts: the same to float tolerance
    out_s, out_d = serial / "outputs" / "2026-11-15", dist / "outputs" / "2026-11-15"
    for name in TABLES:
        pd.testing.assert_frame_equal(
            pd.read_parquet(out_s / f"{name}.parquet"),
            pd.read_parquet(out_d / f"{name}.parquet"),
            check_exact=False,
            rtol=1e-9,
            atol=1e-9,
        )


def test_bad_file_on_a_worker_is_named(scheduler: str, small_sample: Path, tmp_path: Path) -> None:
    good = sorted((small_sample / "billing").rglob("*.csv.gz"))[0]
    bad = tmp_path / "in" / "truncated.csv.gz"
    bad.parent.mkdir()
    data = good.read_bytes()
    bad.write_bytes(data[: len(data) // 2])
    res = subprocess.run(
        [
            _exe("phasecast"),
            "--home",
            str(tmp_path / "home"),
            "ingest",
            "--billing",
            str(bad.parent),
            "--scheduler",
            scheduler,
            "--no-progress",
        ],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=300,
    )
    assert res.returncode == 2, res.stdout + res.stderr
    assert "truncated.csv.gz" in res.stderr
    assert "Traceback" not in res.stderr
