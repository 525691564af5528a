"""The full default monthly job against a real ``mlflow server`` (own SQLite store and artifact
folder, a free localhost port), selected by ``MLFLOW_TRACKING_URI`` exactly as in production."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.config import Paths

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture()
def mlflow_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    store = tmp_path / "server"
    store.mkdir()
    artifacts = store / "artifacts"
    port = free_port()
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "1"}
    log = (store / "server.log").open("w")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--backend-store-uri",
            f"sqlite:///{store / 'mlflow.db'}",
            "--artifacts-destination",
            str(artifacts),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,
    )
    uri = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{uri}/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    "mlflow server did not start:\n" + (store / "server.log").read_text()[-3000:]
                )
            time.sleep(0.5)
        yield uri, artifacts
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # the server and its workers: the group we started
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


def test_default_monthly_job_against_a_tracking_server(mlflow_server, home_copy: Paths) -> None:
    from mlflow import MlflowClient

    uri, artifacts = mlflow_server
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": uri,
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "DO_NOT_TRACK": "1",
    }
    exe = str(Path(sys.executable).with_name("phasecast"))
    home = str(home_copy.home)
    # the full default job: all models, 18 months, 80 / 95 %, flags and the report
    p = subprocess.run(
        [
            exe,
            "--home",
            home,
            "run-monthly",
            "--as-of",
            "2026-11-15",
            "--budgets",
            str(home_copy.sample / "budgets.csv"),
            "--no-progress",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
    )
    assert p.returncode == 0, p.stderr[-3000:]
    assert "phasecast-forecaster v1 [champion]" in p.stdout

    c = MlflowClient(tracking_uri=uri, registry_uri=uri)
    exp = c.get_experiment_by_name("phasecast/monthly")
    assert exp is not None
    runs = c.search_runs([exp.experiment_id])
    assert (
        len(runs) == 1
        and runs[0].info.status == "FINISHED"
        and runs[0].info.run_name == "2026-11-15"
    )
    assert runs[0].data.params["config.forecast.horizon"] == "18"
    names = {m.name for m in c.search_registered_models()}
    assert {
        "phasecast-forecaster",
        "phasecast-analytic_baseline",
        "phasecast-lightgbm",
        "phasecast-ets",
    } <= names
    assert str(c.get_model_version_by_alias("phasecast-forecaster", "champion").version) == "1"
    # artifacts went to the server's store, not to the local default store
    assert any(artifacts.rglob("forecast.parquet"))
    assert not home_copy.mlflow_dir.exists()
    out = home_copy.outputs / "2026-11-15"
    assert (out / "report.html").exists() and (out / "flags.parquet").exists()

    # exact re-forecast through the server, for the native-flavored LightGBM and the published selection
    for model in ("lightgbm", "forecaster"):
        r = subprocess.run(
            [exe, "--home", home, "reproduce", "--model", model, "--alias", "champion"],
            capture_output=True,
            text=True,
            env=env,
            timeout=600,
        )
        assert r.returncode == 0, r.stderr[-3000:]
        assert "exactly" in r.stdout
