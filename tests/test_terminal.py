"""A quiet, honest terminal: a real ``run-monthly`` process (new MLflow registrations included)
writes no third-party warnings, no ANSI codes and none of MLflow's "Successfully registered model"
lines; ``-q`` leaves only the results; ``-v`` shows library warnings as plain log lines."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.test_one_answer import AS_OF, MODELS


def _phasecast(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    exe = str(Path(sys.executable).with_name("phasecast"))
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "1"}
    env.pop("MLFLOW_TRACKING_URI", None)
    env.pop("MLFLOW_LOGGING_LEVEL", None)
    return subprocess.run(
        [exe, "--home", str(home), *args], capture_output=True, text=True, env=env, timeout=600
    )


def test_normal_and_quiet_runs_are_clean(home_copy) -> None:
    budgets = str(home_copy.sample / "budgets.csv")
    run = ("run-monthly", "--as-of", AS_OF, "--budgets", budgets, "--windows", "2", *MODELS)
    r = _phasecast(home_copy.home, *run, "--no-progress")
    assert r.returncode == 0, r.stderr[-3000:]
    for noise in ("Warning", "\x1b[", "Successfully registered", "Created version", "Traceback"):
        assert noise not in r.stderr, (noise, r.stderr[-2000:])
        assert noise not in r.stdout, noise
    assert "INFO pipeline.monthly" in r.stderr  # phasecast's own log lines stay
    assert "done in" in r.stdout
    # -q: only the results on stdout, nothing on stderr (no progress line either)
    q = _phasecast(home_copy.home, "-q", *run)
    assert q.returncode == 0, q.stderr[-3000:]
    assert q.stderr.strip() == "", q.stderr[-2000:]
    assert "outputs:" in q.stdout and "done in" in q.stdout
    # the readers: quiet too
    b = _phasecast(home_copy.home, "-q", "budget", "--quarter", "2027Q1")
    assert b.returncode == 0 and b.stderr.strip() == "", b.stderr[-2000:]
    assert "total" in b.stdout


def test_verbose_shows_debug_without_colour_codes(home_copy) -> None:
    r = _phasecast(home_copy.home, "-v", "flag", "--budgets", str(home_copy.sample / "budgets.csv"))
    assert r.returncode == 2  # no stored run in this home: the error says which command makes one
    assert "run-monthly" in r.stderr and "\x1b[" not in r.stderr
