"""``phasecast estimate --plan FILE [--start YYYY-MM] [--months N] [--output FILE]``: the analytic
baseline's cost per phase, category and month from a plan, with no history needed."""

from __future__ import annotations

import logging
from pathlib import Path

import click
import pandas as pd

from pipeline.cli import cli
from pipeline.cli.options import table_file
from pipeline.config import Paths
from pipeline.errors import InputError

log = logging.getLogger(__name__)


def default_start(outputs: Path | None) -> pd.Timestamp:
    """The month after the newest stored run's as-of month (the run every other command reads), or
    after today's when there is none: the same command gives the same months whatever the day."""
    from pipeline.runstore import stored_runs

    runs = stored_runs(outputs) if outputs is not None else []
    ref = pd.Timestamp(runs[-1].name) if runs else pd.Timestamp.today()
    return ref.to_period("M").to_timestamp() + pd.DateOffset(months=1)


MAX_MONTHS = 120  # ten years; the forecast's own horizon stops at 60 months


def run_estimate(
    plan_path: Path,
    start: str | None,
    months: int,
    output: Path | None,
    outputs: Path | None = None,
) -> pd.DataFrame:
    """Load the plan, estimate ``months`` months from ``start`` (default: :func:`default_start`
    of the runs under ``outputs``), write it."""
    from pipeline.estimate import estimate_from_plan, plan_start
    from pipeline.plan import load_plan, month

    if not 1 <= months <= MAX_MONTHS:
        raise InputError(
            f"--months must be between 1 and {MAX_MONTHS}. Got {months} instead.",
            fix="pass e.g. --months 12 (a plan prices the months it describes: years, not decades)",
        )

    try:
        first = month(start) if start else default_start(outputs)
    except ValueError as exc:
        raise InputError(f"--start must be a month YYYY-MM. Got {start!r} instead.") from exc
    plan = load_plan(plan_path)
    begins = plan_start(plan)
    if begins is not None and first < begins:
        log.warning(
            "%s describes costs from %s on: the months before it (from %s) are estimated from "
            "whatever in the plan is undated (storage, a price book) and miss the rest",
            plan_path,
            f"{begins:%Y-%m}",
            f"{first:%Y-%m}",
        )
    est = estimate_from_plan(plan, first, months)
    est["currency"] = plan.currency
    last = first + pd.DateOffset(months=months - 1)
    est.attrs["months"] = (
        f"{first:%Y-%m} to {last:%Y-%m} ({months} months)" if months > 1 else f"{first:%Y-%m}"
    )
    if output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
        if output.suffix.lower() in (".parquet", ".pq"):
            est.to_parquet(output, index=False)
        else:
            est.assign(ds=est["ds"].dt.strftime("%Y-%m-%d")).to_csv(
                output, index=False, float_format="%.2f"
            )
    return est


@cli.command("estimate")
@click.option(
    "--plan",
    "plan_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Plan YAML (default: the sample plan under --home).",
)
@click.option(
    "--start",
    default=None,
    help="First month, YYYY-MM (default: the month after the newest stored run's as-of, or "
    "after today's without one).",
)
@click.option("--months", default=12, show_default=True, type=int, help="How many months.")
@click.option(
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    callback=table_file,
    help="CSV or .parquet to write; a per-phase summary is printed either way.",
)
@click.pass_obj
def estimate(
    paths: Paths, plan_path: Path | None, start: str | None, months: int, output: Path | None
) -> None:
    """The plan's arithmetic (usage x unit price) per phase, category and month: the budget
    table's `plan` column for the months it covers. Lines the plan does not price (the models
    forecast them) are not in it."""
    est = run_estimate(plan_path or paths.plan, start, months, output, paths.outputs)
    span = est.attrs["months"]
    if est.empty:
        click.echo(f"the plan schedules no cost in {span}")
        return
    click.echo(f"analytic estimate (usage x unit price) of {span}, per phase:")
    summary = est.groupby("phase")["cost"].sum().sort_values(ascending=False)
    for phase, cost in summary.items():
        click.echo(f"{phase:<20} {cost:>16,.2f}")
    click.echo(f"{'total':<20} {summary.sum():>16,.2f} {est['currency'].iloc[0]}")
    click.echo(
        "(what the plan prices: lines it does not price, forecast by the models, are not in it)"
    )
    if output is not None:
        click.echo(f"wrote {output} (per phase, category and month)")
