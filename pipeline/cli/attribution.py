"""Command: ``attribution`` (how cost was attributed to phases, what is left unallocated, and rules to add)."""

from __future__ import annotations

from pathlib import Path

import click

from pipeline.cli import cli
from pipeline.cli.options import outside_run_folders
from pipeline.config import Paths

_FILE = click.Path(exists=False, dir_okay=False, path_type=Path)


@cli.command("attribution")
@click.option("--warehouse", type=_FILE, help="DuckDB file [default: HOME/data/phasecast.duckdb].")
@click.option(
    "--cost",
    "cost",
    type=click.Choice(["EffectiveCost", "BilledCost", "ListCost"]),
    default="EffectiveCost",
    show_default=True,
    help="Which FOCUS cost column to report.",
)
@click.option(
    "--currency", help="Currency to report (needed only when the warehouse holds several)."
)
@click.option(
    "--top",
    type=click.IntRange(1, None),
    default=10,
    show_default=True,
    help="Services listed and rules suggested.",
)
@click.option(
    "--json",
    "json_out",
    type=_FILE,
    callback=outside_run_folders,
    help="Also write the report as JSON here.",
)
@click.pass_obj
def attribution_cmd(
    paths: Paths,
    warehouse: Path | None,
    cost: str,
    currency: str | None,
    top: int,
    json_out: Path | None,
) -> None:
    """Show the cost attributed by tags, rules and usage allocation, per provider and service the cost
    left unallocated, the rules that matched, and suggested rules for the largest unallocated services."""
    import json

    from pipeline.attribution_report import attribution_report, format_report

    rep = attribution_report(
        warehouse or paths.warehouse, cost_column=cost, currency=currency, top=top
    )
    click.echo(format_report(rep, top=top), nl=False)
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(rep.to_dict(), indent=2) + "\n", encoding="utf-8")
