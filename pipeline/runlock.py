"""A non-blocking lock so two scheduled runs never overlap.

The lock is an OS file lock (``filelock``) on ``Paths.lock``: it is released when the holder exits,
even if it crashes, so a stale lock file never blocks the next run.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock, Timeout

from pipeline.errors import LockHeldError


@contextmanager
def run_lock(path: Path, what: str = "run-monthly") -> Iterator[None]:
    """Hold the lock at ``path`` for the block, or raise :class:`LockHeldError` at once."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(path), timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise LockHeldError(
            f"another {what} holds the lock {path}; nothing was done. "
            "Wait for it to finish (the lock is released when it exits) and run again."
        ) from None
    try:
        # who holds it, for a human looking at the file (the OS lock is what counts)
        info = path.with_name(path.name + ".pid")
        info.write_text(f"{os.getpid()}\n")
        yield
    finally:
        lock.release()
