"""The ``phasecast`` command: parse, build the configuration, call a plain function, map errors
to exit codes (see :mod:`pipeline.errors`). Every job here is a function a test or notebook calls.

Each command imports its job lazily so ``phasecast --help`` stays fast.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import click

from pipeline.config import Paths
from pipeline.errors import EXIT_INTERNAL, PhasecastError

log = logging.getLogger("phasecast")


class _Cli(click.Group):
    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except PhasecastError as exc:
            click.echo(f"phasecast: error: {exc}", err=True)
            sys.exit(exc.exit_code)


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
@click.option("-v", "--verbose", count=True, help="More log detail (-vv for debug).")
@click.version_option(package_name="phasecast")
@click.pass_context
def cli(ctx: click.Context, home: Path, config: Path | None, verbose: int) -> None:
    """Forecast the cost of large AI models per lifecycle phase, plan budgets, flag overruns."""
    level = logging.WARNING - 10 * min(verbose + 1, 2)
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    ctx.obj = Paths(home=home.resolve(), config=config.resolve() if config else None)


@contextmanager
def progress_steps(desc: str, total: int) -> Iterator[Callable[[str], None]]:
    """A progress line on stderr for a job of ``total`` steps (hidden when stderr is not a terminal)."""
    from tqdm.auto import tqdm

    bar = tqdm(total=total, desc=desc, unit="step", disable=None, file=sys.stderr, leave=False)

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
COMMAND_MODULES = ("data", "ingest", "estimate", "forecast", "monthly", "budget", "evaluate")


def _register() -> None:
    import importlib

    for name in COMMAND_MODULES:
        importlib.import_module(f"pipeline.cli.{name}")


_register()
