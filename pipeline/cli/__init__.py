"""The ``phasecast`` command: parse, build the configuration, call a plain function, map errors
to exit codes (see :mod:`pipeline.errors`). Every job here is a function a test or notebook calls.

Each command imports its job lazily so ``phasecast --help`` stays fast.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import click

from pipeline.config import Paths
from pipeline.errors import EXIT_INTERNAL, PhasecastError, from_environment

log = logging.getLogger("phasecast")


class _Cli(click.Group):
    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except PhasecastError as exc:
            click.echo(f"phasecast: error: {exc}", err=True)
            sys.exit(exc.exit_code)
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except Exception as exc:  # an environmental fault is not a bug: its own exit code
            mapped = from_environment(exc)
            if mapped is None:
                raise
            log.debug("environmental fault", exc_info=True)
            click.echo(f"phasecast: error: {mapped}", err=True)
            sys.exit(mapped.exit_code)


@click.group(cls=_Cli)
@click.option(
    "--home",
    type=click.Path(file_okay=False, path_type=Path),
    default=".",
    show_default=True,
    help="Folder holding data/, mlflow/ and outputs/.",
)
@click.option(
    "--config",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Configuration file [default: HOME/phasecast.yaml when it exists]; flags override it.",
)
@click.option(
    "-v",
    "--verbose",
    count=True,
    help="More detail: -v debug messages and library warnings, -vv the libraries' own logs too.",
)
@click.option(
    "-q", "--quiet", is_flag=True, help="Only warnings, errors and the results; no progress lines."
)
@click.version_option(package_name="phasecast")
@click.pass_context
def cli(ctx: click.Context, home: Path, config: Path | None, verbose: int, quiet: bool) -> None:
    """Forecast the cost of large AI models per lifecycle phase, plan budgets, flag overruns."""
    configure_output(verbose=verbose, quiet=quiet)
    ctx.obj = Paths(home=home.resolve(), config=config.resolve() if config else None)


# what the terminal shows: phasecast's own log lines; third-party libraries only when asked (-v)
THIRD_PARTY = ("mlflow", "alembic", "sqlalchemy", "urllib3", "matplotlib", "distributed", "numba")
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
QUIET: dict[str, int] = {"quiet": 0, "verbose": 0}


class _PlainFormatter(logging.Formatter):
    """Log lines without terminal escape codes (libraries colour their warnings)."""

    def format(self, record: logging.LogRecord) -> str:
        return ANSI.sub("", super().format(record))


def configure_output(verbose: int = 0, quiet: bool = False) -> None:
    """Levels and filters for a command run: phasecast at INFO (WARNING with ``-q``, DEBUG with
    ``-v``); third-party loggers at WARNING, their Python warnings silenced unless ``-v`` (then
    logged once each, without colour codes); MLflow's own console prints ("Successfully registered
    model ...") off unless ``-vv``."""
    QUIET["quiet"], QUIET["verbose"] = int(quiet), verbose
    own = logging.WARNING if quiet else logging.DEBUG if verbose else logging.INFO
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, "_phasecast", False)]:
        root.removeHandler(old)  # a handler per invocation: on the stderr of this one
    handler = logging.StreamHandler(sys.stderr)
    handler._phasecast = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    handler.setFormatter(_PlainFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.setLevel(logging.DEBUG if verbose >= 2 else logging.WARNING)
    for name in ("phasecast", "pipeline", "features"):
        logging.getLogger(name).setLevel(own)
    lib = logging.DEBUG if verbose >= 2 else logging.WARNING if verbose else logging.ERROR
    for name in THIRD_PARTY:
        logging.getLogger(name).setLevel(lib)
    logging.captureWarnings(True)
    logging.getLogger("py.warnings").setLevel(logging.WARNING if verbose else logging.ERROR)
    if not verbose:  # MLflow's advice to library authors, on every model logged
        warnings.filterwarnings("ignore", message=r".*Add type hints to the `predict` method")
    if verbose < 2:
        os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
        if "mlflow" in sys.modules:  # (commands that use MLflow call quiet_mlflow themselves)
            quiet_mlflow()


def quiet_mlflow() -> None:
    """MLflow's console prints (``eprint``: "Successfully registered model ...") off unless
    ``-vv``; called by the commands that use MLflow, after importing it."""
    if QUIET["verbose"] < 2:
        from mlflow.utils import logging_utils

        logging_utils.disable_logging()


def quiet() -> bool:
    """True under ``-q``: no progress lines, only results."""
    return bool(QUIET["quiet"])


@contextmanager
def progress_steps(desc: str, total: int) -> Iterator[Callable[[str], None]]:
    """A progress line on stderr for a job of ``total`` steps (hidden when stderr is not a terminal)."""
    from tqdm.auto import tqdm

    bar = tqdm(
        total=total, desc=desc, unit="step", disable=True if quiet() else None, file=sys.stderr
    )

    def tick(msg: str) -> None:
        bar.set_postfix_str(msg, refresh=False)
        bar.update(1)

    try:
        yield tick
    finally:
        bar.close()


def main() -> None:
    try:
        cli(standalone_mode=True)
    except SystemExit:
        raise
    except Exception:  # a bug: show it, exit 1
        log.exception("internal error")
        sys.exit(EXIT_INTERNAL)


# One module per command family, each registering its commands on ``cli`` when imported.
COMMAND_MODULES = (
    "data",
    "ingest",
    "attribution",
    "estimate",
    "forecast",
    "monthly",
    "budget",
    "evaluate",
)


def _register() -> None:
    import importlib

    for name in COMMAND_MODULES:
        importlib.import_module(f"pipeline.cli.{name}")


_register()
