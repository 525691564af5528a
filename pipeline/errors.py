"""Errors that reach the user, each with the exit code the CLI maps it to.

Exit codes (documented in the README):
    0  success
    1  unexpected internal error (a bug: please report it)
    2  bad input or usage: the message names the file, row and column and says how to fix it
    3  ``flag --fail-on-risk``: at least one budget line is at_risk or over_budget
    4  another run holds the lock; nothing was done
    5  a pipeline step failed; previous outputs are untouched and a re-run is safe
"""

from __future__ import annotations

from dataclasses import dataclass

EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_BAD_INPUT = 2
EXIT_AT_RISK = 3
EXIT_LOCKED = 4
EXIT_RUN_FAILED = 5


class PhasecastError(Exception):
    """Base class for errors shown to the user without a traceback."""

    exit_code = EXIT_INTERNAL


@dataclass(frozen=True)
class Problem:
    """One offending place in an input: file, 1-based data row (header excluded, and said so: an
    editor or a spreadsheet counts the header as line 1) and column."""

    message: str
    file: str | None = None
    row: int | None = None
    column: str | None = None
    key: str | None = None  # a key path in a YAML file, e.g. scheduled_runs[2].gpus

    def __str__(self) -> str:
        where = []
        if self.file:
            where.append(str(self.file))
        if self.row is not None:
            where.append(f"data row {self.row}")  # the header not counted: say so
        if self.column:
            where.append(f"column {self.column!r}")
        if self.key:
            where.append(f"key {self.key}")
        prefix = ", ".join(where)
        return f"{prefix}: {self.message}" if prefix else self.message


class InputError(PhasecastError):
    """Bad input: collects every problem found, shows a few, and says how to fix it."""

    exit_code = EXIT_BAD_INPUT
    max_shown = 5

    def __init__(self, problems: list[Problem] | Problem | str, fix: str = "") -> None:
        if isinstance(problems, str):
            problems = [Problem(problems)]
        elif isinstance(problems, Problem):
            problems = [problems]
        self.problems = list(problems)
        self.fix = fix
        super().__init__(self._render())

    def _render(self) -> str:
        n = len(self.problems)
        head = "1 problem" if n == 1 else f"{n} problems"
        lines = [f"{head} in the input:"]
        lines += [f"  - {p}" for p in self.problems[: self.max_shown]]
        if n > self.max_shown:
            lines.append(f"  ... and {n - self.max_shown} more")
        if self.fix:
            lines.append(f"How to fix: {self.fix}")
        return "\n".join(lines)


class LockHeldError(PhasecastError):
    exit_code = EXIT_LOCKED


class RunFailedError(PhasecastError):
    exit_code = EXIT_RUN_FAILED


def from_environment(exc: BaseException) -> PhasecastError | None:
    """The user-facing error for an environmental fault (a path, the disk, a lock held by another
    process), or None for anything else (a bug). Looks through the exception's causes."""
    import errno

    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, PhasecastError):
            return seen
        text = str(seen)
        if "duckdb" in type(seen).__module__ and "lock" in text.lower():
            return LockHeldError(
                "the warehouse is in use by another process; nothing was done. Run again when it "
                f"has finished ({text.splitlines()[0][:300]})"
            )
        if isinstance(seen, OSError):
            where = seen.filename or ""
            if seen.errno in (errno.ENOSPC, errno.EDQUOT):
                return RunFailedError(
                    f"no space left on the device writing {where}: nothing was published or "
                    "changed. Free some space and run again"
                )
            if isinstance(seen, PermissionError) or seen.errno in (errno.EACCES, errno.EROFS):
                return InputError(
                    Problem(f"permission denied ({seen.strerror})", str(where) or None),
                    fix="make the path readable (inputs) or writable (outputs) for this user, "
                    "or pass another path",
                )
            if isinstance(seen, FileNotFoundError | NotADirectoryError | IsADirectoryError):
                return InputError(
                    Problem(f"{seen.strerror}", str(where) or None),
                    fix="check the path, or pass another one",
                )
        seen = seen.__cause__ or seen.__context__
    return None
