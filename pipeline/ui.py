"""Serve a child web server (the MLflow UI) in a process group of its own, say where it listens
once it answers, and stop the whole group (server, uvicorn, workers) on Ctrl-C, SIGTERM or exit.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from types import FrameType

log = logging.getLogger(__name__)


def answers(url: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return bool(200 <= r.status < 500)
    except urllib.error.HTTPError as exc:
        return exc.code < 500
    except OSError:
        return False


def stop_group(proc: subprocess.Popen[bytes], grace: float = 10.0) -> None:
    """SIGTERM to the child's process group, SIGKILL to it after ``grace`` seconds."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        try:
            os.killpg(proc.pid, 0)  # anyone of the group still alive?
        except ProcessLookupError:
            break
        proc.poll()
        time.sleep(0.1)
    else:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        pass


def port_free(host: str, port: int) -> bool:
    """Whether this machine can listen on ``host:port`` now (a server already there would answer
    the readiness check in the UI's place: the user would be sent to someone else's server)."""
    import socket

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError:
        return True  # an unknown host: the server says so itself
    import errno

    for family, kind, proto, _name, addr in infos:
        try:
            s = socket.socket(family, kind, proto)
        except OSError:
            continue  # a family this machine lacks (no IPv6): not a server in the way
        with s:
            # as the server will: a port whose old connections wait out TIME_WAIT is free
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(addr)
            except OSError as exc:
                if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                    return False
    return True


def serve_ui(
    cmd: Sequence[str],
    url: str,
    *,
    on_ready: Callable[[str], None],
    wait: float = 120.0,
    poll: float = 0.3,
) -> int | None:
    """Run ``cmd`` in a new session until it exits or we are stopped; ``on_ready(url)`` once
    ``url`` answers. Returns the exit code (0 when stopped by a signal), None when it never
    answered within ``wait`` seconds (the group is stopped)."""
    stopping: list[int] = []

    def stop(signum: int, _frame: FrameType | None) -> None:
        stopping.append(signum)

    import os

    # the UI server's own deprecation warnings are not the user's business
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    proc = subprocess.Popen(list(cmd), start_new_session=True, env=env)
    old = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        ready = False
        deadline = time.monotonic() + wait
        while not stopping:
            code = proc.poll()
            if code is not None:
                return code
            if not ready:
                if answers(url):
                    ready = True
                    on_ready(url)
                elif time.monotonic() > deadline:
                    log.error("%s did not answer within %.0f s: stopping it", url, wait)
                    return None
            time.sleep(poll)
        log.info("signal %d: stopping the UI and its workers", stopping[0])
        return 0
    finally:
        stop_group(proc)
        for s, h in old.items():
            signal.signal(s, h)
