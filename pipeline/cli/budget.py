"""Commands that read a stored run: ``budget`` (quarterly plan with scenarios), ``flag`` (overrun
risk), ``report`` (the HTML page); and ``calibrate`` (how well ``p_overrun`` means what it says).

    phasecast budget --quarter 2027Q1 [--budgets FILE] [--scenario FILE]... [--quantile 0.8]
                     [--as-of DATE | --run DIR] [--output DIR]
    phasecast flag --budgets FILE [--as-of YYYY-MM-DD | --run DIR] [--fail-on-risk]
                   [--watch 0.2] [--at-risk 0.5] [--output DIR]
    phasecast report [--as-of DATE | --run DIR] [--budgets FILE] [--scenario FILE]...
                     [--quarter Q]... [--output DIR]
    phasecast calibrate [--series 60] [--method enkf|proportional]

``budget``, ``flag`` and ``report`` never fit a model: they read the run that ``run-monthly`` stored
for the as-of (default: the newest run under the outputs root) and write into folders of their
own (``outputs/budget-<quarter>-<as-of>``, ``outputs/flags-<as-of>``, ``outputs/report-<as-of>``),
never into the run folder. Options left out come from ``phasecast.yaml`` when it exists.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from pipeline.cli import cli, progress_steps
from pipeline.cli.options import DAY
from pipeline.config import Paths
from pipeline.errors import EXIT_AT_RISK, InputError

_as_of = click.option(
    "--as-of",
    "as_of",
    default=None,
    type=DAY,
    help="Read the stored run of this as-of (YYYY-MM-DD); default: the newest run.",
)
_run = click.option(
    "--run",
    "run_dir",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=None,
    help="Read the stored run in this folder (outputs/<as-of>) instead.",
)
_budgets = click.option(
    "--budgets",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Budgets CSV: period,phase,amount,currency (period 2027-01 or 2027Q1; phase or total).",
)
_scenario = click.option(
    "--scenario",
    "scenarios",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Scenario YAML (repeatable); see pipeline/scenarios.py.",
)
_output = click.option(
    "--output",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Folder for the files (default: a folder of its own under the outputs root).",
)


def _open(paths: Paths, as_of: Any, run_dir: Path | None) -> Any:
    from pipeline.jobs import open_run

    settings = paths.settings()
    root = settings.output or paths.outputs
    return open_run(root, as_of.date().isoformat() if as_of else None, run_dir), settings


def _scenarios(files: tuple[Path, ...], settings: Any, run: Any) -> tuple[Any, ...]:
    """``--scenario`` files, else the configuration file's, else the run's own."""
    from pipeline.scenarios import load_scenario

    if files:
        return tuple(load_scenario(f) for f in files)
    return tuple(settings.scenarios) or run.scenarios()


def _budget_frame(path: Path | None, settings: Any, run: Any) -> Any:
    """``--budgets``, else the configuration file's, else the budgets the run was given."""
    from pipeline.budget import load_budgets

    path = path or settings.budgets
    return load_budgets(path) if path is not None else run.budgets


def _recorded(settings: Any, run: Any) -> dict[str, float]:
    """Thresholds and quantile: the configuration file's, else those the run was made with."""
    if settings.source is not None:
        return {"watch": settings.watch, "at_risk": settings.at_risk, "quantile": settings.quantile}
    th = run.settings.get("thresholds") or {}
    return {
        "watch": float(th.get("watch", settings.watch)),
        "at_risk": float(th.get("at_risk", settings.at_risk)),
        "quantile": float(run.settings.get("quantile", settings.quantile)),
    }


def _quarters(given: tuple[str, ...], settings: Any, run: Any) -> tuple[str, ...]:
    from pipeline.periods import parse_period

    if given:
        return tuple(parse_period(q).label for q in given)
    return tuple(settings.quarters) or tuple(run.settings.get("quarters") or ())


@cli.command("budget")
@click.option(
    "--quarter",
    "quarters",
    multiple=True,
    help="Quarter to plan, e.g. 2027Q1 (repeatable; default: the as-of's and the next).",
)
@_budgets
@_scenario
@click.option(
    "--quantile",
    type=click.FloatRange(0.5, 0.99),
    default=None,
    help="Quantile the recommended budget is set at [default: 0.8].",
)
@_as_of
@_run
@_output
@click.pass_obj
def budget_cmd(
    paths: Paths,
    quarters: tuple[str, ...],
    budgets: Path | None,
    scenarios: tuple[Path, ...],
    quantile: float | None,
    as_of: Any,
    run_dir: Path | None,
    output: Path | None,
) -> None:
    """Quarterly budget per phase from the stored run: P50/P80/P95, baseline, recommendation, scenarios."""
    from pipeline.formatting import format_budget, format_changes
    from pipeline.jobs import derive, output_folder, write_derived

    with progress_steps("budget", 3) as tick:
        run, settings = _open(paths, as_of, run_dir)
        tick("stored run read")
        d = derive(
            run,
            budgets=_budget_frame(budgets, settings, run),
            quarters=_quarters(quarters, settings, run),
            scenarios=_scenarios(scenarios, settings, run),
            quantile=quantile if quantile is not None else _recorded(settings, run)["quantile"],
        )
        d.flags = None  # the budget command writes quarter tables only
        tick("quarters computed")
        label = "-".join(q.label for q in d.quarters)
        folder = output_folder(paths.outputs, output, f"budget-{label}", run)
        files = write_derived(d, folder)
        tick("written")
    click.echo(f"stored run {run.folder} (as of {run.as_of})")
    for q in d.quarters:
        click.echo(format_budget(d.budgets[q.label], d.scenarios.get(q.label)))
        if d.changes is not None and len(d.changes):
            click.echo(format_changes(d.changes, q.label))
        click.echo("")
    _wrote(folder, files)


def _wrote(folder: Path, files: list[str]) -> None:
    """One line per kind of file: ``wrote DIR: budget-2027Q1 .csv .parquet .json .xlsx``."""
    kinds: dict[str, list[str]] = {}
    for f in files:
        stem, dot, ext = f.partition(".")
        kinds.setdefault(stem, []).append(dot + ext)
    click.echo(f"wrote {folder}:")
    for stem, exts in kinds.items():
        click.echo(f"  {stem} {' '.join(exts)}")


@cli.command("flag")
@_budgets
@_as_of
@_run
@click.option(
    "--fail-on-risk",
    is_flag=True,
    help="Exit with status 3 when any line is at_risk or over_budget.",
)
@click.option(
    "--watch",
    type=click.FloatRange(0, 1),
    default=None,
    help="p_overrun from which a line is 'watch' [default: 0.2].",
)
@click.option(
    "--at-risk",
    "at_risk",
    type=click.FloatRange(0, 1),
    default=None,
    help="p_overrun from which a line is 'at_risk' [default: 0.5].",
)
@_output
@click.option(
    "--notify",
    default=None,
    metavar="URL",
    help="POST a JSON alert for lines newly at risk against the previous run "
    "[default: notify: in phasecast.yaml]; a failed delivery never changes the exit code.",
)
@click.pass_obj
def flag_cmd(
    paths: Paths,
    budgets: Path | None,
    as_of: Any,
    run_dir: Path | None,
    fail_on_risk: bool,
    watch: float | None,
    at_risk: float | None,
    output: Path | None,
    notify: str | None,
) -> None:
    """P(period ends over budget) for every budget line, from the stored run; exit 3 on risk if asked."""
    from pipeline.errors import InputError
    from pipeline.flags import FlagConfig, flag_run
    from pipeline.formatting import format_flags
    from pipeline.jobs import Derived, output_folder, write_derived
    from pipeline.tables import write_csv

    with progress_steps("flag", 3) as tick:
        run, settings = _open(paths, as_of, run_dir)
        tick("stored run read")
        bdf = _budget_frame(budgets, settings, run)
        if bdf is None:
            raise InputError(
                f"no budgets to flag: the run of {run.as_of} was made without budgets",
                fix="pass --budgets FILE (or set budgets: in phasecast.yaml)",
            )
        rec = _recorded(settings, run)
        cfg = FlagConfig(
            watch=watch if watch is not None else rec["watch"],
            at_risk=at_risk if at_risk is not None else rec["at_risk"],
        )
        res = flag_run(run, bdf, cfg)
        tick("lines flagged")
        folder = output_folder(paths.outputs, output, "flags", run)
        files = write_derived(Derived(flags=res, quarters=[]), folder)
        write_csv(res.anomalies, folder / "anomalies.csv")
        files.append("anomalies.csv")
        tick("written")
    click.echo(
        f"budget lines as of {res.as_of} (stored run {run.folder}; watch >= {cfg.watch:g}, at_risk >= {cfg.at_risk:g}):"
    )
    click.echo(format_flags(res.flags, color=sys.stdout.isatty()))
    if len(res.anomalies):
        click.echo(
            f"{len(res.anomalies)} closed month(s) outside the 95 % interval forecast for them: see {folder / 'anomalies.csv'}"
        )
    _wrote(folder, files)
    url = notify or settings.notify
    if url:
        from pipeline.notify import notify_run, outcome
        from pipeline.runstore import stored_runs

        root = Path(run.folder).parent if run.folder is not None else paths.outputs
        earlier = [p for p in stored_runs(root) if p.name < run.as_of]
        sent = notify_run(
            folder,
            url,
            as_of=run.as_of,
            previous=earlier[-1] if earlier else None,
            runs_root=root,
        )
        said = outcome(sent)
        if said:
            click.echo(said)
    if fail_on_risk and res.at_risk:
        n = int(res.flags["status"].isin(["at_risk", "over_budget"]).sum())
        click.echo(f"phasecast: {n} budget line(s) at risk or over budget", err=True)
        sys.exit(EXIT_AT_RISK)


@cli.command("report")
@_as_of
@_run
@_budgets
@_scenario
@click.option(
    "--quarter", "quarters", multiple=True, help="Quarter to plan (repeatable; default: the run's)."
)
@_output
@click.pass_obj
def report_cmd(
    paths: Paths,
    as_of: Any,
    run_dir: Path | None,
    budgets: Path | None,
    scenarios: tuple[Path, ...],
    quarters: tuple[str, ...],
    output: Path | None,
) -> None:
    """The stored run's report.html (forecast, budgets, flags, scenarios) in a folder of its own."""
    from pipeline.flags import FlagConfig
    from pipeline.jobs import derive, output_folder, report, run_versions

    with progress_steps("report", 3) as tick:
        run, settings = _open(paths, as_of, run_dir)
        tick("stored run read")
        bdf = _budget_frame(budgets, settings, run)
        d = derive(
            run,
            budgets=bdf,
            quarters=_quarters(quarters, settings, run),
            scenarios=_scenarios(scenarios, settings, run),
            flag_config=FlagConfig(
                watch=_recorded(settings, run)["watch"], at_risk=_recorded(settings, run)["at_risk"]
            ),
            quantile=_recorded(settings, run)["quantile"],
        )
        tick("budgets, flags and scenarios computed")
        folder = output_folder(paths.outputs, output, "report", run)
        path = report(
            run,
            d,
            folder,
            budgets=bdf,
            versions=run_versions(run),
            levels=tuple(run.settings.get("levels") or (80, 95)),
        )
        tick("written")
    click.echo(f"stored run {run.folder} (as of {run.as_of})")
    click.echo(f"wrote {path}")


@cli.command("calibrate")
@click.option(
    "--series",
    "n_series",
    type=click.IntRange(1, 10_000),
    default=60,
    show_default=True,
    help="Generated histories.",
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
    from pipeline.calibration import (
        CalibrationConfig,
        calibration_summary,
        simulate_calibration,
    )
    from pipeline.models import REGISTRY

    if model != "pipeline" and model not in REGISTRY:
        raise InputError(
            f"--model {model!r} is neither pipeline nor a registered model",
            fix=f"pass --model pipeline (what run-monthly publishes) or one of {', '.join(sorted(REGISTRY))}",
        )
    lines = simulate_calibration(
        CalibrationConfig(n_series=n_series, method=method, model=model, seed=seed)
    )
    s = calibration_summary(lines)
    what = (
        "the published pipeline (run_forecast: selection and calibrated paths)"
        if model == "pipeline"
        else f"the {model} model's own paths (run-monthly publishes the pipeline: --model pipeline)"
    )
    click.echo(f"p_overrun from {what}, {n_series} generated histories, seed {seed}")
    click.echo(
        f"{s['lines']} budget-line checks ({s['already_over_budget']} already over budget, excluded)"
    )
    click.echo(s["reliability"].to_string(index=False, float_format=lambda x: f"{x:.3f}"))
    click.echo(
        f"at_risk (p >= 0.5): precision {s['precision']:.3f}, recall {s['recall']:.3f}; Brier {s['brier']:.4f}"
    )
    click.echo(s["by_checkpoint"].to_string(index=False, float_format=lambda x: f"{x:.3f}"))
    click.echo(
        "checkpoint mKdD: day D of the quarter's month K (m1d0: the quarter's first day, nothing "
        "of it known yet)"
    )
