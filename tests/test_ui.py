"""``phasecast ui``: says where it listens once the UI answers, and SIGTERM (or Ctrl-C) stops the
server with every worker it started: no process left behind, the port free again."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.test_mlflow_server import free_port

pytestmark = pytest.mark.slow


def _descendants(pid: int) -> list[int]:
    import psutil

    try:
        return [p.pid for p in psutil.Process(pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def _alive(pids: list[int]) -> list[int]:
    import psutil

    out = []
    for p in pids:
        try:
            if psutil.Process(p).status() != psutil.STATUS_ZOMBIE:
                out.append(p)
        except psutil.NoSuchProcess:
            pass
    return out


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_ui_announces_itself_and_leaves_nothing_behind(tmp_path: Path, sig: int) -> None:
    port = free_port()
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "1"}
    err = (tmp_path / "ui.err").open("w")
    proc = subprocess.Popen(
        [
            str(Path(sys.executable).with_name("phasecast")),
            "--home",
            str(tmp_path),
            "ui",
            "--port",
            str(port),
        ],
        stdout=subprocess.DEVNULL,
        stderr=err,
        env=env,
        start_new_session=True,  # the test's own handle on everything, should the command fail
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while f"listening on {url}" not in (tmp_path / "ui.err").read_text():
            assert proc.poll() is None, (tmp_path / "ui.err").read_text()
            assert time.monotonic() < deadline, "no 'listening' line in 120 s"
            time.sleep(0.3)
        with urllib.request.urlopen(url, timeout=5) as r:  # announced only once it answers
            assert r.status == 200
        children = _descendants(proc.pid)
        assert children  # the mlflow server and its workers
        proc.send_signal(sig)
        assert proc.wait(timeout=60) == 0
        deadline = time.monotonic() + 20
        while _alive(children) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _alive(children) == []
        with socket.socket() as s:  # the port is free again: nothing listens on it
            # (SO_REUSEADDR: a connection the server closed may linger in TIME_WAIT on the port,
            # which is not a listener; without it the bind failed about one run in ten)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("127.0.0.1", port))
            s.listen()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        err.close()
    text = (tmp_path / "ui.err").read_text()
    assert text.count("listening on") == 1 and "\x1b[" not in text


def test_a_port_in_use_is_refused_not_announced(tmp_path: Path) -> None:
    """Another server on the port answered the readiness check: the UI said it listened there and
    exited 0 when its own server could not bind. Now: exit 2 before starting anything."""
    from click.testing import CliRunner

    from pipeline.cli import cli
    from pipeline.ui import port_free

    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        assert not port_free("127.0.0.1", port)
        r = CliRunner().invoke(cli, ["--home", str(tmp_path), "ui", "--port", str(port)])
        assert r.exit_code == 2, r.output
        assert f"port {port} on 127.0.0.1 is in use" in r.output and "--port" in r.output
        assert "listening" not in r.output
    assert port_free("127.0.0.1", port)
