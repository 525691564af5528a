"""Commands: ``ingest`` (billing, usage, labor into the warehouse) and ``series`` (forecasting frames)."""

from __future__ import annotations

from pathlib import Path

import click

from pipeline.cli import cli
from pipeline.cli.options import DAY, outside_run_folders, scheduler_option
from pipeline.config import Paths

_FILE = click.Path(exists=False, dir_okay=False, path_type=Path)


@cli.command("ingest")
@click.option(
    "--billing",
    "billing",
    multiple=True,
    type=click.Path(path_type=Path),
    help="FOCUS export (CSV, CSV.gz, Parquet) or folder of them; repeatable, or list several after it.",
)
@click.argument("more_billing", nargs=-1, type=click.Path(path_type=Path))
@click.option(
    "--usage",
    type=_FILE,
    help="Usage metrics CSV: ts,phase,metric,value[,unit][,team][,gpu][,resource_id].",
)
@click.option("--labor", type=_FILE, help="Labor CSV: month,phase,team,hours,hourly_rate,currency.")
@click.option(
    "--report", type=_FILE, help="Write a JSON report (rows and exact totals, source vs warehouse)."
)
@click.option("--warehouse", type=_FILE, help="DuckDB file [default: HOME/data/phasecast.duckdb].")
@click.option(
    "--rules",
    type=_FILE,
    help="Attribution rules YAML [default: the shipped pipeline/attribution_rules.yaml].",
)
@click.option(
    "--no-allocate",
    is_flag=True,
    help="Do not split unallocated GPU cost across phases by usage gpu_hours (tags and rules only).",
)
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@scheduler_option
@click.pass_obj
def ingest_cmd(
    paths: Paths,
    billing: tuple[Path, ...],
    more_billing: tuple[Path, ...],
    usage: Path | None,
    labor: Path | None,
    report: Path | None,
    warehouse: Path | None,
    rules: Path | None,
    no_allocate: bool,
    no_progress: bool,
    scheduler: str | None,
) -> None:
    """Load billing exports (and usage, labor) into the warehouse, exactly and idempotently.

    Files delivered together (an AWS or Azure manifest's files, or one folder's) are one delivery; a
    newer delivery replaces its billing periods whole; a delivery already ingested is skipped; any bad
    file leaves the warehouse untouched (exit code 2).
    """
    from pipeline.errors import InputError
    from pipeline.ingest import IngestConfig, ingest

    all_billing = tuple(billing) + tuple(more_billing)
    if more_billing and not billing:
        raise InputError(
            "paths given without --billing", fix="write: phasecast ingest --billing PATH [PATH ...]"
        )
    cfg = IngestConfig(
        billing=all_billing,
        warehouse=warehouse or paths.warehouse,
        usage=usage,
        labor=labor,
        rules=rules,
        allocate=not no_allocate,
        report=report,
        progress=not no_progress,
        scheduler=scheduler or paths.settings().scheduler,
    )
    rep = ingest(cfg)
    done = [f for f in rep.files if f.status != "unchanged"]
    skipped = len(rep.files) - len(done)
    click.echo(
        f"ingested {len(done)} file(s), {rep.rows:,} billing rows into {cfg.warehouse} "
        f"in {rep.seconds:.2f}s ({skipped} unchanged, skipped)"
    )
    a = rep.allocation
    if a.get("enabled") and (a.get("rows_split") or a.get("rows_unmatched")):
        click.echo(
            f"  usage allocation: {a['rows_split']:,} unallocated GPU fact rows split by gpu_hours, "
            f"{a['rows_unmatched']:,} without usage that day (kept unallocated); see `phasecast attribution`"
        )
    for cur, cols in sorted(rep.warehouse_totals.items()):
        click.echo(
            f"  {cur}: "
            + ", ".join(f"{c} {v:,.2f}" for c, v in cols.items())
            + " (billing periods touched)"
        )
    curs = rep.currencies
    if len(curs) > 1:
        click.echo(
            f"  several currencies ({', '.join(curs)}), never converted: `phasecast series` and "
            f"`run-monthly` build {curs[0]} (most cost) unless given --currency "
            f"(e.g. `phasecast series --currency {curs[1]}`)"
        )


@cli.command("series")
@click.option(
    "--as-of",
    "as_of",
    type=DAY,
    help="Months before this date's month are complete [default: the day after the last charge].",
)
@click.option(
    "--output",
    type=click.Path(file_okay=False, path_type=Path),
    callback=outside_run_folders,
    help="Folder for monthly.csv, daily.csv, partial.csv [default: HOME/outputs/series].",
)
@click.option(
    "--cost",
    "cost",
    type=click.Choice(["EffectiveCost", "BilledCost", "ListCost"]),
    default="EffectiveCost",
    show_default=True,
    help="Which FOCUS cost column to forecast.",
)
@click.option(
    "--currency",
    help="Currency to build [default: the one with most cost; others are left out, never converted].",
)
@click.option("--team", "include_team", is_flag=True, help="Add a <phase>/<category>/<team> level.")
@click.option("--warehouse", type=_FILE, help="DuckDB file [default: HOME/data/phasecast.duckdb].")
@click.pass_obj
def series_cmd(
    paths: Paths,
    as_of,
    output: Path | None,
    cost: str,
    currency: str | None,
    include_team: bool,
    warehouse: Path | None,
) -> None:
    """Write the forecasting series (long unique_id, ds, y) built from the warehouse."""
    from pipeline.series import build_series

    frames = build_series(
        warehouse or paths.warehouse,
        as_of=as_of.date() if as_of else None,
        cost_column=cost,
        include_team=include_team,
        currency=currency,
    )
    if as_of is not None:  # as run-monthly: an as-of before the data is exit 2, not 0 series
        from pipeline.series import require_a_month

        require_a_month(frames.monthly, as_of.date(), warehouse or paths.warehouse)
    # the inference traffic the monthly run reads (a `requests` column), for forecast --plan
    import dataclasses

    import pandas as pd

    from features.drivers import TRAFFIC_DRIVER, TRAFFIC_PHASE, with_requests
    from pipeline.series import monthly_usage

    if not frames.monthly.empty:
        first = frames.monthly["ds"].max() + pd.DateOffset(months=1)
        req = monthly_usage(
            warehouse or paths.warehouse, TRAFFIC_DRIVER, TRAFFIC_PHASE, first.date()
        )
        frames = dataclasses.replace(frames, monthly=with_requests(frames.monthly, req))
    out = output or (paths.outputs / "series")
    written = frames.write(out)
    click.echo(
        f"{frames.monthly['unique_id'].nunique()} series, {len(frames.monthly)} monthly rows "
        f"(complete months before {frames.as_of}, {frames.currency}) -> "
        + ", ".join(str(p) for p in written)
    )
    if frames.partial_month is not None:
        click.echo(f"  partial month {frames.partial_month:%Y-%m}: {frames.partial_reason}")
    if frames.other_currencies:
        click.echo(
            f"  left out (never converted): costs in {', '.join(frames.other_currencies)}; "
            f"build them with --currency {frames.other_currencies[0]}"
        )
