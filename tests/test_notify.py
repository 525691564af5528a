"""Alerts: a real local HTTP server receives the JSON message (Slack-compatible ``text`` and the
structured lines) for the lines that became at risk; a failing server (500 then refusing) is
retried, logged, and changes neither the run's result nor its exit code."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pandas as pd
import pytest

from pipeline.notify import Delivery, alert_lines, alert_message, notify_run, post_json
from tests.test_one_answer import AS_OF, cli

FAST = Delivery(timeout=2.0, attempts=3, backoff=0.05)


class Hook:
    """A local webhook: records every POST; answers ``codes`` in turn (then 200)."""

    def __init__(self, codes: tuple[int, ...] = ()) -> None:
        self.bodies: list[dict] = []
        self.codes = list(codes)
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # http.server's name for the POST handler
                n = int(self.headers.get("Content-Length", 0))
                hook.bodies.append(json.loads(self.rfile.read(n)))
                code = hook.codes.pop(0) if hook.codes else 200
                self.send_response(code)
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/services/T000/B000/secret"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Hook:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture()
def hook() -> Iterator[Hook]:
    with Hook() as h:
        yield h


def _flags(statuses: dict[tuple[str, str], str]) -> pd.DataFrame:
    rows = [
        {"period": p, "phase": ph, "status": s, "p_overrun": {"ok": 0.0, "watch": 0.3}.get(s, 0.7),
         "budget": 100.0, "actual_to_date": 10.0, "forecast_total": 130.0, "p80": 140.0,
         "expected_overrun": 30.0, "currency": "USD"}
        for (p, ph), s in statuses.items()
    ]  # fmt: skip
    return pd.DataFrame(rows)


def test_only_lines_that_became_at_risk_are_sent() -> None:
    now = _flags(
        {("2027Q1", "inference"): "at_risk", ("2027Q1", "total"): "at_risk",
         ("2026-12", "pretraining"): "over_budget", ("2027Q1", "operations"): "watch"}
    )  # fmt: skip
    before = _flags(
        {("2027Q1", "inference"): "watch", ("2027Q1", "total"): "at_risk",
         ("2026-12", "pretraining"): "at_risk"}
    )  # fmt: skip
    lines = alert_lines(now, before)
    assert list(zip(lines.phase, lines.previous_status, strict=True)) == [
        ("inference", "watch"),
        ("pretraining", "at_risk"),  # at_risk -> over_budget is worse: sent again
    ]
    assert len(alert_lines(now, None)) == 3  # no previous run: every line at risk is new
    msg = alert_message(lines, "2026-11-15", "USD", "/srv/outputs/2026-11-15/report.html")
    assert msg["text"].startswith("phasecast 2026-11-15: 2 budget lines newly at risk")
    assert "2027Q1 inference: at risk, 70% chance of overrun" in msg["text"]
    assert msg["lines"][0]["p_overrun"] == 0.7 and msg["lines"][1]["status"] == "over_budget"
    json.dumps(msg)  # plain JSON


def test_post_reaches_a_real_local_server(hook: Hook) -> None:
    assert post_json(hook.url, {"text": "hello", "lines": []}, FAST)
    assert hook.bodies == [{"text": "hello", "lines": []}]


def test_a_failing_server_is_retried_then_given_up_without_raising(caplog) -> None:
    with Hook(codes=(500, 503)) as h:  # two failures, then 200: delivered on the third try
        assert post_json(h.url, {"text": "x"}, FAST)
        assert len(h.bodies) == 3
    with Hook(codes=(500, 500, 500, 500)) as h, caplog.at_level(logging.WARNING):
        assert not post_json(h.url, {"text": "x"}, FAST)
        assert len(h.bodies) == 3  # attempts, no more
    assert "not delivered after 3 attempt(s)" in caplog.text
    assert "secret" not in caplog.text  # the webhook's path is a secret: never logged
    with Hook(codes=(404,)) as h:  # a 4xx is not retried
        assert not post_json(h.url, {"text": "x"}, FAST)
        assert len(h.bodies) == 1
    # nobody listening: connection refused, retried, False
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert not post_json(f"http://127.0.0.1:{port}/hook", {"text": "x"}, FAST)


def test_run_monthly_notify_posts_and_a_dead_hook_changes_nothing(
    home_copy, hook: Hook, tmp_path: Path
) -> None:
    from tests.test_one_answer import MODELS

    paths = home_copy
    tight = tmp_path / "tight.csv"  # the current month's total budget: certainly over
    tight.write_text("period,phase,amount,currency\n2026-11,total,1,USD\n2027Q1,total,1e12,USD\n")
    args = ("run-monthly", "--as-of", AS_OF, "--budgets", str(tight), "--windows", "2",
            "--no-progress", "--no-report", *MODELS)  # fmt: skip
    r = cli(paths, *args, "--notify", hook.url)
    assert r.exit_code == 0, r.output
    assert "alert for 1 budget line(s): delivered" in r.output
    (body,) = hook.bodies
    assert body["lines"][0]["period"] == "2026-11" and body["lines"][0]["status"] == "over_budget"
    assert "2026-11 total: over budget" in body["text"]
    flags = (paths.outputs / AS_OF / "flags.csv").read_bytes()
    # the same as-of again (a retried schedule), or its flag command: nothing sent twice
    r = cli(paths, *args, "--notify", hook.url)
    assert r.exit_code == 0, r.output
    assert "alert for 1 budget line(s): delivered at " in r.output
    assert "already, not sent again" in r.output
    r = cli(paths, "flag", "--budgets", str(tight), "--as-of", AS_OF, "--notify", hook.url)
    assert "already, not sent again" in r.output, r.output
    elsewhere = tmp_path / "flags-elsewhere"  # its own --output: the record is the runs' one
    r = cli(paths, "flag", "--budgets", str(tight), "--as-of", AS_OF, "--output", str(elsewhere),
            "--notify", hook.url)  # fmt: skip
    assert "already, not sent again" in r.output, r.output
    assert not (tmp_path / ".alerts").exists()
    assert len(hook.bodies) == 1
    # the same hook on a run whose lines changed sends again: new news
    tighter = tmp_path / "tighter.csv"
    tighter.write_text(tight.read_text() + "2026-12,total,1,USD\n")
    r = cli(paths, "flag", "--budgets", str(tighter), "--as-of", AS_OF, "--notify", hook.url)
    assert "alert for 2 budget line(s): delivered" in r.output, r.output
    assert len(hook.bodies) == 2
    hook.bodies.pop()
    # the same run with a hook that is down (configured in phasecast.yaml): same outputs, exit 0
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    (paths.home / "phasecast.yaml").write_text(f"notify: http://127.0.0.1:{port}/hook\n")
    r = cli(paths, *args)
    assert r.exit_code == 0, r.output
    assert "NOT delivered" in r.output
    assert (paths.outputs / AS_OF / "flags.csv").read_bytes() == flags
    # nothing new at risk against the previous run: no message at all
    res = notify_run(paths.outputs / AS_OF, hook.url, FAST, previous=paths.outputs / AS_OF)
    assert res.delivered is None and len(hook.bodies) == 1
