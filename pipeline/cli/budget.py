"""Commands: ``budget`` (quarterly plan with scenarios), ``flag`` (overrun risk), ``report``
(the HTML page of a run) and ``calibrate`` (how well ``p_overrun`` means what it says).

    phasecast budget --quarter 2027Q1 [--budgets FILE] [--scenario FILE]... [--quantile 0.8]
                     [--as-of DATE] [--plan FILE] [--output DIR]
    phasecast flag --budgets FILE [--as-of YYYY-MM-DD] [--fail-on-risk] [--watch 0.2]
                   [--at-risk 0.5] [--output DIR]
    phasecast report [--as-of DATE] [--budgets FILE] [--scenario FILE]... [--output DIR]
    phasecast calibrate [--series 60] [--method enkf|proportional]
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from pipeline.cli import cli
from pipeline.config import Paths
from pipeline.errors import EXIT_AT_RISK

if TYPE_CHECKING:
    from pipeline.budget import ForecastInputs

_models = click.option(
    "--model",
    "models",
    multiple=True,
    help="Restrict the forecast to these models (repeatable; default: all).",
)
_as_of = click.option(
    "--as-of",
    "as_of",
    default=None,
    help="Date the data is known up to (YYYY-MM-DD); default: after the last charge.",
)
_plan = click.option(
    "--plan",
    "plan",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Plan YAML (default: data/sample/plan.yaml when it exists).",
)
_paths = click.option(
    "--paths",
    "n_paths",
    type=int,
    default=1000,
    show_default=True,
    help="Sample paths drawn from the forecast.",
)


def _inputs(
    paths: Paths, as_of: str | None, plan: Path | None, models: tuple[str, ...], n_paths: int
) -> ForecastInputs:
    from pipeline.budget import ForecastInputs

    return ForecastInputs(
        warehouse=paths.warehouse,
        as_of=as_of,
        plan=plan if plan is not None else paths.plan,
        models=tuple(models) or None,
        n_paths=n_paths,
    )


def _out(paths: Paths, output: Path | None, label: str) -> Path:
    return output if output is not None else paths.outputs / label


@cli.command("budget")
@click.option("--quarter", required=True, help="Quarter to plan, e.g. 2027Q1.")
@click.option(
    "--budgets",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Budgets CSV (period,phase,amount,currency) to compare with.",
)
@click.option(
    "--scenario",
    "scenarios",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Scenario YAML (repeatable); see pipeline/scenarios.py.",
)
@click.option(
    "--quantile",
    type=click.FloatRange(0.5, 0.99),
    default=0.8,
    show_default=True,
    help="Quantile the recommended budget is set at.",
)
@_as_of
@_plan
@_models
@_paths
@click.option(
    "--output",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Folder for budget-<quarter>.csv/json (default: outputs/budget-<quarter>).",
)
@click.pass_obj
def budget_cmd(
    paths: Paths,
    quarter: str,
    budgets: Path | None,
    scenarios: tuple[Path, ...],
    quantile: float,
    as_of: str | None,
    plan: Path | None,
    models: tuple[str, ...],
    n_paths: int,
    output: Path | None,
) -> None:
    """Quarterly budget per phase: P50/P80/P95, baseline, recommendation, scenarios."""
    from pipeline.budget import (
        BudgetConfig,
        budget_job,
        format_budget,
        load_budgets,
        parse_period,
        write_budget,
    )
    from pipeline.scenarios import load_scenario

    period = parse_period(quarter)
    cfg = BudgetConfig(
        quarter=period.label, quantile=quantile, n_paths=n_paths, models=tuple(models) or None
    )
    bdf = load_budgets(budgets) if budgets else None
    scs = [load_scenario(s) for s in scenarios]
    bp, _, _ = budget_job(_inputs(paths, as_of, plan, models, n_paths), cfg, bdf, scs)
    files = write_budget(bp, _out(paths, output, f"budget-{period.label}"))
    click.echo(format_budget(bp))
    for f in files.values():
        click.echo(f"wrote {f}")


@cli.command("flag")
@click.option(
    "--budgets",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Budgets CSV: period,phase,amount,currency (period 2027-01 or 2027Q1; phase or total).",
)
@_as_of
@click.option(
    "--fail-on-risk",
    is_flag=True,
    help="Exit with status 3 when any line is at_risk or over_budget.",
)
@click.option(
    "--watch",
    type=click.FloatRange(0, 1),
    default=0.2,
    show_default=True,
    help="p_overrun from which a line is 'watch'.",
)
@click.option(
    "--at-risk",
    "at_risk",
    type=click.FloatRange(0, 1),
    default=0.5,
    show_default=True,
    help="p_overrun from which a line is 'at_risk'.",
)
@click.option(
    "--method",
    type=click.Choice(["enkf", "proportional"]),
    default="enkf",
    show_default=True,
    help="How the current month is conditioned on its month-to-date actuals.",
)
@_plan
@_models
@_paths
@click.option(
    "--output",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Folder for flags.csv/json and anomalies.csv (default: outputs/flags-<as-of>).",
)
@click.pass_obj
def flag_cmd(
    paths: Paths,
    budgets: Path,
    as_of: str | None,
    fail_on_risk: bool,
    watch: float,
    at_risk: float,
    method: str,
    plan: Path | None,
    models: tuple[str, ...],
    n_paths: int,
    output: Path | None,
) -> None:
    """P(period ends over budget) for every budget line, with a status; exit 3 on risk if asked."""
    from pipeline.flags import FlagConfig, flag_job, format_flags, write_flags

    cfg = FlagConfig(watch=watch, at_risk=at_risk, partial_method=method)
    res, _, _ = flag_job(_inputs(paths, as_of, plan, models, n_paths), budgets, cfg)
    files = write_flags(res, _out(paths, output, f"flags-{res.as_of}"))
    click.echo(f"budget lines as of {res.as_of} (watch >= {watch:g}, at_risk >= {at_risk:g}):")
    click.echo(format_flags(res.flags, color=sys.stdout.isatty()))
    if len(res.anomalies):
        click.echo(
            f"{len(res.anomalies)} month(s) outside their 95 % interval: see {files['anomalies_csv']}"
        )
    for f in files.values():
        click.echo(f"wrote {f}")
    if fail_on_risk and res.at_risk:
        n = int(res.flags["status"].isin(["at_risk", "over_budget"]).sum())
        click.echo(f"phasecast: {n} budget line(s) at risk or over budget", err=True)
        sys.exit(EXIT_AT_RISK)


@cli.command("report")
@_as_of
@click.option(
    "--budgets", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None
)
@click.option(
    "--scenario",
    "scenarios",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
)
@click.option(
    "--quarter", default=None, help="Quarter for the budget table (default: the next one)."
)
@click.option("--horizon", type=int, default=6, show_default=True)
@_plan
@_models
@_paths
@click.option(
    "--output",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Folder for report.html (default: outputs/<as-of>).",
)
@click.pass_obj
def report_cmd(
    paths: Paths,
    as_of: str | None,
    budgets: Path | None,
    scenarios: tuple[Path, ...],
    quarter: str | None,
    horizon: int,
    plan: Path | None,
    models: tuple[str, ...],
    n_paths: int,
    output: Path | None,
) -> None:
    """Forecast, budget and flags in one self-contained report.html."""
    from pipeline.report import report_job
    from pipeline.scenarios import load_scenario

    path = report_job(
        _inputs(paths, as_of, plan, models, n_paths),
        budgets_file=budgets,
        scenarios=[load_scenario(s) for s in scenarios],
        quarter=quarter,
        horizon=horizon,
        out_dir=output,
        outputs_root=paths.outputs,
    )
    click.echo(f"wrote {path}")


@cli.command("calibrate")
@click.option(
    "--series", "n_series", type=int, default=60, show_default=True, help="Generated histories."
)
@click.option(
    "--method", type=click.Choice(["enkf", "proportional"]), default="enkf", show_default=True
)
@click.option(
    "--model",
    default="ets",
    show_default=True,
    help="A registered model (its own paths) or pipeline (run_forecast, calibrated intervals).",
)
@click.option("--seed", type=int, default=0, show_default=True)
def calibrate_cmd(n_series: int, method: str, model: str, seed: int) -> None:
    """Reliability of p_overrun and precision/recall of at_risk on generated histories."""
    from pipeline.flags import CalibrationConfig, calibration_summary, simulate_calibration

    lines = simulate_calibration(
        CalibrationConfig(n_series=n_series, method=method, model=model, seed=seed)
    )
    s = calibration_summary(lines)
    click.echo(
        f"{s['lines']} budget-line checks ({s['already_over_budget']} already over budget, excluded)"
    )
    click.echo(s["reliability"].to_string(index=False, float_format=lambda x: f"{x:.3f}"))
    click.echo(
        f"at_risk (p >= 0.5): precision {s['precision']:.3f}, recall {s['recall']:.3f}; Brier {s['brier']:.4f}"
    )
    click.echo(s["by_checkpoint"].to_string(index=False, float_format=lambda x: f"{x:.3f}"))
