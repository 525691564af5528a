"""Command ``phasecast forecast``: forecast any monthly series file with the full job."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import click

from pipeline.cli import cli
from pipeline.cli.options import outside_run_folders, scheduler_option
from pipeline.config import Paths
from pipeline.tables import spreadsheet_safe

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger("phasecast.forecast")

GAPS_HELP = (
    "What a month missing inside a series (or an empty y there) becomes: 'zero' (default: a month "
    "without a charge costs nothing), 'interpolate' (linear between neighbours) or 'error' (exit 2 "
    "naming the series). Rows after a series' last observed y carry future values of the drivers."
)


MIN_MONTHS = 3


def check_lengths(df: pd.DataFrame, source: str) -> None:
    """Every series needs at least ``MIN_MONTHS`` observed months (the help says so)."""
    import pandas as pd

    from pipeline.errors import InputError, Problem
    from pipeline.frames import validate_frame

    validate_frame(df, source=source)  # bad rows first: they name the row and column
    n = pd.to_numeric(df["y"], errors="coerce").notna().groupby(df["unique_id"]).sum()
    short = n[n < MIN_MONTHS]
    if len(short):
        raise InputError(
            [
                Problem(f"series {u!r} has {int(k)} observed month(s)", source, column="y")
                for u, k in short.items()
            ],
            fix=f"give every series at least {MIN_MONTHS} months with a value, or leave it out",
        )


def say_gaps(df: pd.DataFrame, source: str, gaps: str) -> list[str]:
    """Log the empty (or ``NA``) ``y`` cells inside a series' span (before its last value: the rows after it
    carry future drivers) and what ``--gaps`` makes of them; their ``series month`` labels."""
    import pandas as pd

    df = df.assign(_ds=pd.to_datetime(df["ds"], errors="coerce")).sort_values(
        ["unique_id", "_ds"], kind="stable"
    )
    y = pd.to_numeric(df["y"], errors="coerce")
    seen = y.notna().groupby(df["unique_id"]).cumsum()
    last = seen.groupby(df["unique_id"]).transform("max")
    inside = y.isna() & (seen < last) & (seen > 0)
    labels = [
        f"{u} {pd.Timestamp(d):%Y-%m} (data row {int(i) + 1})"
        for i, u, d in zip(df.index[inside], df["unique_id"][inside], df["ds"][inside], strict=True)
    ]
    if labels and gaps != "error":
        what = {"zero": "read as 0", "interpolate": "interpolated"}.get(gaps, gaps)
        shown = ", ".join(labels[:5]) + (f" and {len(labels) - 5} more" if len(labels) > 5 else "")
        log.warning(
            "%s: %d empty (or NA) y cell(s) inside a series, %s (--gaps %s): %s",
            source,
            len(labels),
            what,
            gaps,
            shown,
        )
    return labels


def read_series(path: Path) -> pd.DataFrame:
    """A long ``unique_id, ds, y`` table from CSV (optionally gzipped) or Parquet."""
    import pandas as pd

    from pipeline.errors import InputError, Problem

    name = path.name.lower()
    try:
        if name.endswith((".parquet", ".pq")):
            return pd.read_parquet(path)
        # only an empty cell or R's NA is missing (a gap, see --gaps; the rows after a series'
        # last value): "n/a", "NaN", "null", "-" are text, and text in y is an error naming the
        # row, never a silent gap read as 0
        return pd.read_csv(
            path, dtype={"unique_id": str}, keep_default_na=False, na_values=["", "NA"]
        )
    except (ValueError, OSError, pd.errors.ParserError) as exc:
        raise InputError(
            Problem(f"cannot read the file: {exc}", str(path)),
            fix="give a CSV or Parquet file with columns unique_id, ds, y",
        ) from exc


def write_table(df: pd.DataFrame, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    if path.name.lower().endswith((".parquet", ".pq")):
        df.to_parquet(tmp, index=False)
    else:
        spreadsheet_safe(df).to_csv(tmp, index=False, date_format="%Y-%m-%d")
    tmp.replace(path)  # atomic: a crash never leaves half a table


def sidecar(path: Path, what: str) -> Path:
    """``out.csv`` -> ``out.<what>.csv`` (always CSV, human-readable)."""
    stem = path.name.split(".")[0]
    return path.with_name(f"{stem}.{what}.csv")


@cli.command("forecast")
@click.option(
    "--series",
    "series",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Long table unique_id, ds, y (CSV, CSV.gz or Parquet); ds the first day of a month; "
    "extra columns are drivers.",
)
@click.option(
    "--horizon",
    type=click.IntRange(1, 120),
    default=18,
    show_default=True,
    help="Months to forecast.",
)
@click.option(
    "--level",
    "levels",
    type=click.IntRange(50, 99),
    multiple=True,
    default=(80, 95),
    show_default=True,
    help="Interval level in percent (repeat for several).",
)
@click.option(
    "--output",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    callback=outside_run_folders,
    help="Forecast table, CSV or Parquet by extension; the backtest metrics go beside it as "
    "<stem>.metrics.csv and the per-series model choice as <stem>.selection.csv.",
)
@click.option(
    "--models",
    "models",
    multiple=True,
    help="Models to run (repeat; default: all registered). The analytic baseline always runs.",
)
@click.option(
    "--n-windows",
    type=click.IntRange(1, 24),
    default=3,
    show_default=True,
    help="Backtest cutoffs.",
)
@click.option(
    "--step",
    type=click.IntRange(1, 24),
    default=3,
    show_default=True,
    help="Least months between cutoffs (the windows spread over the history; see the README).",
)
@click.option(
    "--executor",
    type=click.Choice(["serial", "processes", "dask"]),
    default="serial",
    show_default=True,
    help="Where per-series fits run.",
)
@click.option(
    "--gaps",
    type=click.Choice(["zero", "interpolate", "error"]),
    default="zero",
    show_default=True,
    help=GAPS_HELP,
)
@click.option(
    "--reconcile/--no-reconcile",
    default=None,
    help="Make total = sum of phases = sum of phase x category (default: on when a 'total' series is present).",
)
@click.option(
    "--plan",
    "plan_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Plan YAML for the analytic baseline (run-rate without it).",
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--quiet", is_flag=True, help="No progress bar.")
@scheduler_option
@click.pass_obj
def forecast_cmd(
    paths: Paths,
    series: Path,
    horizon: int,
    levels: tuple[int, ...],
    output: Path,
    models: tuple[str, ...],
    n_windows: int,
    step: int,
    executor: str,
    gaps: str,
    reconcile: bool | None,
    plan_path: Path | None,
    seed: int,
    quiet: bool,
    scheduler: str | None,
) -> None:
    """Forecast every series in --series: one row per series and future month with
    unique_id, ds, model, mean, lo_L, hi_L, from the model the backtest selects for that series.

    Series may be 3 months to decades long; zeros, negatives and constants are fine. Exit 2 on bad
    input (the message names the file, row and column).
    """
    from features.drivers import TRAFFIC_DRIVER, requests_of, traffic_frames
    from pipeline.distributed import engine, executor_for
    from pipeline.forecast import DEFAULT_MODELS, ForecastConfig, run_forecast
    from pipeline.frames import TOTAL, UID, check_levels

    scheduler = scheduler or paths.settings().scheduler

    df = read_series(series)
    if {"unique_id", "y"} <= set(df.columns):
        check_lengths(df, str(series))
        say_gaps(df, str(series), gaps)
    plan = None
    if plan_path is not None:
        from pipeline.plan import load_plan

        plan = load_plan(plan_path)
    if reconcile is None:
        reconcile = UID in df.columns and (df[UID].astype(str) == TOTAL).any()
    config = ForecastConfig(
        horizon=horizon,
        levels=check_levels(levels),
        models=tuple(models) if models else DEFAULT_MODELS,
        n_windows=n_windows,
        step=step,
        n_paths=1000 if reconcile else 200,
        seed=seed,
        reconcile=bool(reconcile),
        executor=executor_for(scheduler, executor),
        gaps=gaps,
    )
    from pipeline.frames import validate_frame

    validate_frame(df, source=str(series))  # file-named errors before any work
    X_future = None
    req = requests_of(df)
    if req is not None:
        # requests per month (`phasecast series` writes them): with a traffic plan, the driver the
        # monthly run builds, so both commands forecast the inference series alike; without one,
        # no driver, as in the monthly run
        import pandas as pd

        df = df.drop(columns=[TRAFFIC_DRIVER]).assign(ds=lambda d: pd.to_datetime(d["ds"]))
        if plan is not None:
            df, X_future = traffic_frames(df, req, plan, horizon)
    with engine(scheduler):
        res = run_forecast(df, config, plan=plan, X_future=X_future, progress=not quiet)
    write_table(res.forecast, output)
    write_table(res.metrics, sidecar(output, "metrics"))
    write_table(res.selection, sidecar(output, "selection"))
    m = res.metrics
    if len(m):
        top = m[m["scope"] == "model"].sort_values("MASE")
        cols = [
            "model",
            "MASE",
            *(["MASE_cost"] if "MASE_cost" in top.columns else []),
            "sMAPE",
            "WAPE",
            *[c for c in top.columns if c.startswith("coverage_")],
        ]
        # results on stdout, like every command's (log lines go to stderr)
        click.echo("backtest accuracy (rolling origin, out-of-sample calibrated intervals):")
        click.echo(top[cols].to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    counts = res.selection["model"].value_counts()
    chosen = ", ".join(f"{m} {n}" for m, n in counts.items())
    click.echo(
        f"wrote {len(res.forecast)} rows for {res.forecast[UID].nunique()} series to {output}; "
        f"series per selected model: {chosen}"
    )
