"""Commands: ``run-monthly`` (the scheduled job), ``reproduce`` (re-forecast a registered version)
and ``ui`` (the MLflow UI on the local store).

``MLFLOW_TRACKING_URI`` is read here, at the edge, and nowhere else.
"""

from __future__ import annotations

import datetime as dt
import os
import sys
from pathlib import Path
from typing import Any

import click

from pipeline.cli import cli, quiet, quiet_mlflow
from pipeline.cli.options import DAY, outside_run_folders, scheduler_option, table_file
from pipeline.config import Paths

_FILE = click.Path(dir_okay=False, path_type=Path)


def _tracking(paths: Paths) -> Any:
    from pipeline.tracking import ENV_TRACKING_URI, TrackingConfig

    return TrackingConfig.for_paths(paths, os.environ.get(ENV_TRACKING_URI) or None)


@cli.command("run-monthly")
@click.option(
    "--as-of",
    "as_of",
    required=True,
    type=DAY,
    help="Run date: months before its month are complete and forecast from.",
)
@click.option(
    "--horizon",
    type=click.IntRange(1, 60),
    default=None,
    help="Months ahead [default: 18, or as far as the furthest budget period or quarter needs].",
)
@click.option(
    "--budgets",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Budgets CSV (period,phase,amount,currency): flags are computed when given.",
)
@click.option(
    "--output",
    type=click.Path(file_okay=False, path_type=Path),
    callback=outside_run_folders,
    help="Outputs root [default: HOME/outputs]; the run writes <output>/<as-of>/.",
)
@click.option(
    "--inbox",
    type=click.Path(file_okay=False, path_type=Path),
    help="Billing inbox to ingest new files from [default: HOME/data/inbox/billing].",
)
@click.option(
    "--plan",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Plan YAML for the analytic baseline [default: HOME/data/sample/plan.yaml if present].",
)
@click.option(
    "--models", "models", multiple=True, help="Models to run (repeatable) [default: all]."
)
@click.option(
    "--level",
    "levels",
    multiple=True,
    type=int,
    default=(80, 95),
    show_default=True,
    help="Interval levels (repeatable).",
)
@click.option(
    "--windows", type=click.IntRange(1, 12), default=3, show_default=True, help="Backtest windows."
)
@click.option(
    "--quarter",
    "quarters",
    multiple=True,
    help="Quarter to plan (repeatable) [default: the as-of's quarter and the next].",
)
@click.option(
    "--scenario",
    "scenarios",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Scenario YAML evaluated on the run for each planned quarter (repeatable).",
)
@click.option(
    "--currency",
    default=None,
    help="Currency to forecast when the data holds several (ISO 4217, e.g. USD).",
)
@click.option(
    "--rules",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Attribution rules YAML for the inbox ingest [default: the shipped rules].",
)
@click.option(
    "--notify",
    "notify",
    default=None,
    metavar="URL",
    help="POST a JSON alert (Slack-compatible) here for budget lines newly at risk or over budget "
    "[default: notify: in phasecast.yaml]. A failed delivery is logged; the exit code is unchanged.",
)
@click.option("--no-report", is_flag=True, help="Skip the HTML report.")
@click.option("--no-progress", is_flag=True, help="No progress bars.")
@scheduler_option
@click.pass_obj
def run_monthly_cmd(
    paths: Paths,
    as_of: dt.datetime,
    horizon: int | None,
    budgets: Path | None,
    output: Path | None,
    inbox: Path | None,
    plan: Path | None,
    models: tuple[str, ...],
    levels: tuple[int, ...],
    windows: int,
    quarters: tuple[str, ...],
    scenarios: tuple[Path, ...],
    currency: str | None,
    rules: Path | None,
    notify: str | None,
    no_report: bool,
    no_progress: bool,
    scheduler: str | None,
) -> None:
    """The scheduled monthly job: ingest, backtest, forecast, flag, report, register models.

    Exit codes: 0 done; 2 bad input (the message says which file, row and column); 4 another run
    holds the lock (nothing done); 5 a step failed (previous outputs untouched, re-run is safe).
    """
    from pipeline.forecast import DEFAULT_MODELS, ForecastConfig
    from pipeline.monthly import MonthlyConfig, run_monthly
    from pipeline.periods import parse_period
    from pipeline.scenarios import load_scenario

    st = paths.settings()
    st = st.override(
        budgets=budgets.resolve() if budgets else None,
        plan=plan.resolve() if plan else None,
        quarters=tuple(parse_period(q).label for q in quarters),
        scenarios=tuple(load_scenario(f) for f in scenarios),
        currency=currency.strip().upper() if currency else None,
        horizon=horizon,
        output=output.resolve() if output else None,
        rules=rules.resolve() if rules else None,
        notify=notify,
        scheduler=scheduler,
    )
    plan = st.plan
    if plan is None and paths.plan.exists():
        plan = paths.plan.resolve()
    fc = ForecastConfig(
        horizon=st.horizon,
        levels=tuple(sorted(set(levels))),
        models=tuple(models) or DEFAULT_MODELS,
        n_windows=windows,
        reconcile=True,
    )
    cfg = MonthlyConfig(
        as_of=as_of.date(),
        paths=paths,
        tracking=_tracking(paths),
        forecast=fc,
        inbox=inbox.resolve() if inbox else None,
        budgets=st.budgets,
        plan=plan,
        output_root=st.output,
        progress=not (no_progress or quiet()),
        report=not no_report,
        settings=st,
        currency=st.currency,
    )
    quiet_mlflow()
    res = run_monthly(cfg)
    click.echo(f"outputs: {res.output_dir}")
    click.echo(
        f"MLflow run: {res.run_id}{' (reused: same data and configuration)' if res.reused_run else ''}"
    )
    for role, d in res.manifest["champion_decisions"].items():
        click.echo(f"  phasecast-{role} v{d['version']} [{d['alias'] or '-'}]: {d['decision']}")
    if st.notify:
        from pipeline.notify import notify_run, outcome

        sent = notify_run(res.output_dir, st.notify)
        said = outcome(sent)
        if said:
            click.echo(said)
    click.echo(f"done in {res.seconds:.1f} s")


@cli.command("reproduce")
@click.option(
    "--model",
    "model",
    required=True,
    help="Registered model: a role (forecaster, ets, ...) or its full name (phasecast-ets).",
)
@click.option("--alias", default=None, help="Alias to load [default: champion].")
@click.option("--version", "version", type=int, default=None, help="Version number to load.")
@click.option(
    "--output",
    type=_FILE,
    callback=table_file,
    help="Write the reproduced forecast here (.csv or .parquet).",
)
@click.pass_obj
def reproduce_cmd(
    paths: Paths, model: str, alias: str | None, version: int | None, output: Path | None
) -> None:
    """Load a registered version and reproduce its logged forecast exactly (exit 5 if it differs)."""
    from pipeline.errors import InputError, RunFailedError
    from pipeline.tracking import MODEL_PREFIX, Tracker, code_identity, same_frame

    if alias and version is not None:
        raise InputError(
            "give --alias or --version, not both", fix="e.g. --alias champion or --version 3"
        )
    name = model if model.startswith(MODEL_PREFIX) else MODEL_PREFIX + model
    quiet_mlflow()
    try:
        reproduced, logged, mv = Tracker(_tracking(paths)).reproduce(name, alias, version)
    except Exception as exc:
        from mlflow.exceptions import MlflowException  # noqa: F401  (only to name it in the message)

        raise InputError(
            f"cannot load {name} ({'version ' + str(version) if version else 'alias ' + (alias or 'champion')}): "
            f"{str(exc).splitlines()[0][:300]}",
            fix="list versions in the MLflow UI (phasecast ui)",
        ) from exc
    if output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
        if output.suffix.lower() in (".parquet", ".pq"):
            reproduced.to_parquet(output, index=False)
        else:
            reproduced.to_csv(output, index=False)
    ok, why = same_frame(reproduced, logged)
    if not ok:
        logged_by, now = mv.tags.get("code"), code_identity()
        other = (
            f"; it was logged by other code (code {logged_by or 'not recorded'}, this installation "
            f"{now}), and a version forecasts with the code installed now"
            if logged_by != now
            else ""
        )
        raise RunFailedError(
            f"{name} v{mv.version}: the reproduced forecast differs from the logged one: {why}{other}"
        )
    click.echo(
        f"{name} v{mv.version}: reproduced its logged forecast exactly ({len(reproduced)} rows)"
        + (f"; wrote {output}" if output is not None else "")
    )


@cli.command("ui")
@click.option("--port", type=int, default=5000, show_default=True)
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option(
    "--wait",
    "wait_s",
    type=float,
    default=120.0,
    show_default=True,
    help="Seconds to wait for the UI to answer before giving up.",
)
@click.option(
    "--workers",
    type=click.IntRange(1, 64),
    default=1,
    show_default=True,
    help="Server worker processes. One serves a person (it answers in about half the time of "
    "MLflow's default of 4 and stops at once); more for a UI shared by a team.",
)
@click.pass_obj
def ui_cmd(paths: Paths, port: int, host: str, wait_s: float, workers: int) -> None:
    """Open the MLflow UI on the local store (SQLite + artifact folder under HOME/mlflow).

    Says where it listens once it answers; Ctrl-C or SIGTERM stops the server and all its workers
    (it runs in a process group of its own, which is what gets stopped).
    """
    from pipeline.errors import InputError, RunFailedError
    from pipeline.ui import port_free, serve_ui

    if not port_free(host, port):
        raise InputError(
            f"port {port} on {host} is in use (another server listens there)",
            fix=f"pass another --port, e.g. --port {port + 1}, or stop what listens on {port}",
        )
    paths.artifact_root.mkdir(parents=True, exist_ok=True)
    cmd = [
        sys.executable,
        "-m",
        "mlflow",
        "ui",
        "--backend-store-uri",
        paths.tracking_uri,
        "--default-artifact-root",
        paths.artifact_root.resolve().as_uri(),
        "--host",
        host,
        "--port",
        str(port),
        "--workers",
        str(workers),
    ]
    code = serve_ui(
        cmd,
        f"http://{host}:{port}",
        on_ready=lambda url: click.echo(f"MLflow UI listening on {url} (Ctrl-C to stop)", err=True),
        wait=wait_s,
    )
    if code is None:
        raise RunFailedError(
            f"the MLflow UI did not answer on http://{host}:{port} in {wait_s:g} s"
        )
    raise SystemExit(code)
