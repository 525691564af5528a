"""A quiet, honest terminal: a real ``run-monthly`` process (new MLflow registrations included)
writes no third-party warnings, no ANSI codes and none of MLflow's "Successfully registered model"
lines; ``-q`` leaves only the results; ``-v`` shows library warnings as plain log lines."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd

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


def test_a_chance_reads_the_same_in_the_terminal_the_report_and_the_alert() -> None:
    """p_overrun is a share of paths: 30 of 2,000 is 0.015, which Python's formatting prints as
    0.01 (the binary value is 0.01499...) while 100 x 0.015 = 1.5 rounds to 2 %. Every place rounds
    the printed decimal half up: 0.02 and 2 %."""
    from pipeline.formatting import fixed, format_flags
    from pipeline.notify import alert_message
    from pipeline.report import chance_in_words

    p = 30 / 2000
    assert fixed(p, 2) == "0.02" and fixed(p, 0, 2) == "2" and fixed(0.145, 0, 2) == "15"
    assert fixed(0.125, 2) == "0.13" and fixed(-0.125, 2) == "-0.13" and fixed(0.004, 1, 2) == "0.4"
    assert fixed(float("nan"), 2) == "-" and fixed(float("inf"), 2) == "-" and fixed(1e30, 2)
    assert chance_in_words(p) == "unlikely (2 %)"
    row = {
        "period": "2027Q1", "phase": "fine_tuning", "budget": 372000.0, "actual_to_date": 0.0,
        "forecast_total": 310515.0, "p80": 334880.0, "p_overrun": p, "expected_overrun": 155.0,
        "status": "ok", "anomaly_months": "",
    }  # fmt: skip
    table = format_flags(pd.DataFrame([row]))
    assert " 0.02 " in table and "0.01" not in table
    body = alert_message(pd.DataFrame([{**row, "status": "at_risk"}]), "2026-11-15", "USD")
    assert "2% chance of overrun" in body["text"]
