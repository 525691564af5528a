"""Options several commands share."""

from __future__ import annotations

import click

scheduler_option = click.option(
    "--scheduler",
    default=None,
    metavar="ADDRESS",
    help="Run on a Dask cluster: a running scheduler's address (tcp://HOST:8786) or 'local' "
    "(a cluster of this machine's cores) [default: the config file's scheduler:, else serial].",
)
