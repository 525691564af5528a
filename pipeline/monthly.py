"""The scheduled monthly job: ingest, series, backtest, forecast, flags, report, MLflow, publish.

    result = run_monthly(MonthlyConfig(as_of=date(2026, 11, 15), paths=Paths(), tracking=...))

Steps (each logged; the whole job holds a non-blocking lock, :mod:`pipeline.runlock`):

1. ingest what is new in the billing inbox (``Paths.inbox``; files already in the warehouse manifest
   are skipped, a restated billing period replaces the old one);
2. build the cost hierarchy's monthly series up to the last complete month before ``as_of``;
3. ``run_forecast``: backtest, calibrate, select, fit, forecast (18 months, 80 / 95 %), reconcile;
4. flags when budgets are given; the HTML report;
5. MLflow (:mod:`pipeline.tracking`): a run named by the as-of date, every model logged and
   registered, ``champion`` / ``challenger`` decided on the same backtest;
6. outputs written to ``outputs/.<as-of>.tmp-<pid>`` and renamed to ``outputs/<as-of>`` only when
   everything succeeded: a failure leaves the previous outputs as they were.

Idempotent: the run's fingerprint covers the input series, configuration, plan, budgets, as-of and
the code (:func:`pipeline.flavor.code_identity`: another release never reuses this one's run).
A FINISHED run with the same fingerprint is reused (the numbers are recomputed, identical, and the
outputs rewritten; no new run, no new registry versions). A failure is recorded as a FAILED run.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from features.drivers import TRAFFIC_DRIVER, TRAFFIC_PHASE
from pipeline.config import Paths
from pipeline.errors import (
    InputError,
    LockHeldError,
    PhasecastError,
    Problem,
    RunFailedError,
    from_environment,
)
from pipeline.forecast import ForecastConfig, ForecastResult
from pipeline.frames import UID, Y
from pipeline.runlock import run_lock
from pipeline.settings import Settings
from pipeline.tables import publish, remove_stale_staging, staging_dir

log = logging.getLogger(__name__)

JOB_KIND = "monthly"
FORECASTER = "forecaster"


@dataclass(frozen=True)
class MonthlyConfig:
    """One monthly run, built once at the edge (the CLI) and passed down."""

    as_of: dt.date
    paths: Paths
    tracking: Any  # pipeline.tracking.TrackingConfig (kept untyped so importing this is light)
    forecast: ForecastConfig = field(default_factory=lambda: ForecastConfig(reconcile=True))
    inbox: Path | None = None  # default: paths.inbox
    budgets: Path | None = None
    plan: Path | None = None
    output_root: Path | None = None  # default: paths.outputs
    cost_column: str = "EffectiveCost"
    progress: bool = True
    report: bool = True
    settings: Settings = field(default_factory=Settings)  # quarters, scenarios, thresholds, ...
    currency: str | None = None  # None: the warehouse's currency with most cost (others logged)

    @property
    def inbox_dir(self) -> Path:
        return self.inbox if self.inbox is not None else self.paths.inbox

    @property
    def out_root(self) -> Path:
        return self.output_root if self.output_root is not None else self.paths.outputs


@dataclass
class MonthlyResult:
    output_dir: Path
    run_id: str
    reused_run: bool
    manifest: dict[str, Any]
    forecast: ForecastResult
    seconds: float


# --- outputs ----------------------------------------------------------------------------------
def ingest_inbox(cfg: MonthlyConfig) -> dict[str, Any]:
    """Ingest new or changed billing files of the inbox; what happened, for run.json."""
    from pipeline.ingest import IngestConfig, ingest, new_files

    inbox = cfg.inbox_dir
    if not inbox.exists():
        log.info("billing inbox %s does not exist: nothing to ingest", inbox)
        return {"inbox": str(inbox), "new_files": [], "ingested": 0}
    pending = new_files(inbox, cfg.paths.warehouse)
    if not pending:
        log.info("billing inbox %s: no new files", inbox)
        return {"inbox": str(inbox), "new_files": [], "ingested": 0}
    log.info("billing inbox %s: %d new or changed file(s), ingesting", inbox, len(pending))
    # The whole inbox, not just the new files: a new file of a folder is read with its delivery (the
    # folder's other files of its periods); deliveries already ingested are skipped.
    rep = ingest(
        IngestConfig(
            billing=(inbox,),
            warehouse=cfg.paths.warehouse,
            progress=cfg.progress,
            rules=cfg.settings.rules,
            scheduler=cfg.settings.scheduler,
        )
    )
    return {
        "inbox": str(inbox),
        "new_files": [str(p.path) for p in pending],
        "ingested": len(rep.ingested),
        "rows": rep.rows,
        "conserved": rep.conserved,
        "allocation": rep.allocation,
    }


def _config_dict(cfg: MonthlyConfig) -> dict[str, Any]:
    return {
        "as_of": cfg.as_of.isoformat(),
        "cost_column": cfg.cost_column,
        # the engine (executor, scheduler) changes where the numbers are computed, not the numbers
        "forecast": {k: v for k, v in dataclasses.asdict(cfg.forecast).items() if k != "executor"},
        "budgets": str(cfg.budgets) if cfg.budgets else None,
        "plan": str(cfg.plan) if cfg.plan else None,
        "inbox": str(cfg.inbox_dir),
        "settings": cfg.settings.describe(),
        "currency": cfg.currency,
    }


def say_replaced(out: Path, checks: dict[str, Any]) -> None:
    """Log what a run that replaces a stored folder of the same as-of changes: the inputs whose
    checksums differ (a restatement shows as the series), or the same inputs (other code or
    settings). Budgets, flags and reports read the new folder from now on."""
    manifest = out / "run.json"
    if not manifest.is_file():
        return
    try:  # a log line: whatever the old run.json holds, it never fails the run
        doc = json.loads(manifest.read_text())
        before = doc.get("input_checksums") if isinstance(doc, dict) else None
        if not isinstance(before, dict):
            before = {}
    except Exception:
        before = {}
    changed = [
        k.removesuffix("_sha256")
        for k in sorted({*checks, *before})
        if before.get(k) != checks.get(k)  # a file given, dropped or changed
    ]
    log.info(
        "replacing the stored run %s: %s",
        out,
        f"its inputs changed ({', '.join(changed)})"
        if changed
        else "same inputs, other code or configuration",
    )


FUTURE_SLACK = dt.timedelta(days=1)  # a clock a time zone behind the user's


def check_not_future(as_of: dt.date, today: dt.date | None = None) -> None:
    """Refuse an as-of after today (with a day's slack for time zones): a run as of a day still
    to come would claim data it cannot have, and as the newest as-of its versions would take the
    ``champion`` aliases from every genuine run after it (the registry never lets an older as-of
    replace a newer champion)."""
    today = today or dt.date.today()
    if as_of > today + FUTURE_SLACK:
        raise InputError(
            Problem(f"--as-of {as_of} is after today ({today})"),
            fix=f"pass today's date ({today}) or an earlier one",
        )


def run_monthly(cfg: MonthlyConfig) -> MonthlyResult:
    """The whole job under the lock (raises :class:`LockHeldError` when another run holds it), on
    the engine of ``cfg.settings.scheduler`` (:func:`pipeline.distributed.engine`)."""
    from pipeline.distributed import engine, executor_for

    with run_lock(cfg.paths.lock), engine(cfg.settings.scheduler):
        if executor_for(cfg.settings.scheduler) == "dask" and cfg.forecast.executor == "serial":
            cfg = dataclasses.replace(
                cfg, forecast=dataclasses.replace(cfg.forecast, executor="dask")
            )
        return _run_locked(cfg)


def _run_locked(cfg: MonthlyConfig) -> MonthlyResult:
    from pipeline import tracking as tr

    t0 = time.perf_counter()
    as_of = cfg.as_of.isoformat()
    tracker = tr.Tracker(cfg.tracking)
    commit = tr.git_commit(cfg.paths.home)
    base_tags = {
        "as_of": as_of,
        "job": JOB_KIND,
        "git_commit": commit,
        "code": tr.code_identity(),
        **{f"version.{k}": v for k, v in tr.package_versions().items()},
    }

    check_writable(cfg.out_root)
    # 0: what a killed run left behind (we hold the lock: no other run is alive)
    tracker.recover(JOB_KIND)
    stale = remove_stale_staging(cfg.out_root)
    if stale:
        log.warning("removed staging folders of dead runs: %s", ", ".join(stale))

    # 1: the run's arguments. A run that cannot start (an as-of still to come, a plan or budgets
    # file that does not read) leaves nothing behind, in MLflow neither: exit 2, fix, re-run.
    check_not_future(cfg.as_of)
    plan = None
    if cfg.plan is not None:
        from pipeline.plan import load_plan

        plan = load_plan(cfg.plan)
    budgets = None
    if cfg.budgets is not None:
        from pipeline.budget import load_budgets

        budgets = load_budgets(cfg.budgets)

    # 2: the data. A failure here (an export in the inbox that does not read, billing that stops
    # more than a month before the as-of) is recorded as a FAILED run before the error goes up.
    try:
        ingest_info = ingest_inbox(cfg)
        from pipeline.series import build_series

        frames = build_series(
            cfg.paths.warehouse,
            as_of=cfg.as_of,
            cost_column=cfg.cost_column,
            currency=cfg.currency,
        )
        if frames.partial_month is not None:
            log.info(
                "partial month %s (%s); complete months end with %s",
                f"{frames.partial_month:%Y-%m}",
                frames.partial_reason,
                f"{frames.monthly['ds'].max():%Y-%m}" if not frames.monthly.empty else "none",
            )
        if frames.other_currencies:
            log.warning(
                "costs in %s are left out of this %s run (never converted); run again with "
                "--currency to forecast them",
                ", ".join(frames.other_currencies),
                frames.currency,
            )
        series = frames.monthly
    except BaseException as exc:
        env = from_environment(exc) if isinstance(exc, Exception) else None
        if isinstance(env, LockHeldError):  # another process writes the warehouse: not a failure
            raise env from exc
        rid = tracker.record_failure(
            JOB_KIND, as_of, {**base_tags, "failed_step": "inputs"}, _config_dict(cfg), exc
        )
        log.error(
            "monthly run %s failed while reading inputs; MLflow run %s marked FAILED", as_of, rid
        )
        raise _wrap(exc) from exc
    from pipeline.series import require_a_month

    require_a_month(series, as_of, cfg.paths.warehouse)  # an argument to fix, not a failure
    if budgets is not None:
        from pipeline.budget import check_currency

        check_currency(budgets, frames.currency, str(cfg.budgets))

    cfg = with_horizon(cfg, series, budgets)
    drivers = traffic_driver(cfg, series, plan)
    series_sum = tr.checksum_frame(series[[UID, "ds", Y]])
    window = {
        "first_month": f"{series['ds'].min():%Y-%m}",
        "last_month": f"{series['ds'].max():%Y-%m}",
        "n_months": int(series["ds"].nunique()),
        "n_series": int(series[UID].nunique()),
        "currency": frames.currency,
        "cost_column": cfg.cost_column,
    }
    checks = {
        "series_sha256": series_sum,
        "plan_sha256": tr.checksum_file(cfg.plan),
        "budgets_sha256": tr.checksum_file(cfg.budgets),
    }
    if drivers[1] is not None:  # the traffic the inference series are forecast from
        checks["drivers_sha256"] = tr.checksum_frame(
            pd.concat([drivers[0][[UID, "ds", TRAFFIC_DRIVER]], drivers[1]], ignore_index=True)
        )
    config = _config_dict(cfg)
    config_no_paths = {k: v for k, v in config.items() if k not in ("budgets", "plan", "inbox")}
    fp = tr.fingerprint({"config": config_no_paths, "checks": checks, "code": tr.code_identity()})
    existing = tracker.find_run(JOB_KIND, as_of, fp)
    if existing:
        log.info(
            "a FINISHED run (%s) for %s on the same data and configuration exists: reusing it "
            "(outputs recomputed, no new run or model versions)",
            existing,
            as_of,
        )
    log.info(
        "series: %d nodes, %s to %s (sha256 %s)",
        window["n_series"],
        window["first_month"],
        window["last_month"],
        series_sum[:12],
    )

    run_ctx = (
        _reuse(existing)
        if existing
        else tracker.run(JOB_KIND, as_of, {**base_tags, "fingerprint": fp})
    )
    with run_ctx as run_id, staging_dir(cfg.out_root, as_of) as tmp:
        try:
            manifest = _compute_and_log(
                cfg,
                tracker,
                run_id,
                bool(existing),
                tmp,
                frames,
                series,
                plan,
                drivers,
                budgets,
                window,
                checks,
                config,
                fp,
                ingest_info,
                commit,
                t0,
            )
            out = cfg.out_root / as_of
            if not existing:  # a reused run republishes what it is
                say_replaced(out, checks)
            publish(tmp, out)
            # the last step: aliases move only now that the outputs are in place
            tracker.promote(manifest.pop("_records"))
        except BaseException as exc:
            if not existing:
                gone = tracker.discard(run_id)
                if gone:
                    log.info("removed the failed run's candidate versions: %s", ", ".join(gone))
            if isinstance(exc, PhasecastError) or not isinstance(exc, Exception):
                raise
            raise RunFailedError(
                f"monthly run {as_of} failed: {type(exc).__name__}: {exc}. "
                f"Previous outputs are untouched; MLflow run {run_id} is marked FAILED"
            ) from exc
    seconds = time.perf_counter() - t0
    log.info("monthly run %s done in %.1f s: %s (MLflow run %s)", as_of, seconds, out, run_id)
    return MonthlyResult(out, run_id, bool(existing), manifest, manifest.pop("_result"), seconds)


def traffic_driver(
    cfg: MonthlyConfig, series: pd.DataFrame, plan: Any
) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """The series with the inference traffic driver and its future rows
    (:func:`features.drivers.traffic_frames`): requests per month from the usage metrics, the
    traffic plan after them; ``(series, None)`` when either is missing."""
    from features.drivers import traffic_frames
    from pipeline.series import monthly_usage

    if plan is None or plan.traffic is None or series.empty:
        return series, None
    first = pd.Timestamp(series["ds"].max()) + pd.DateOffset(months=1)
    req = monthly_usage(cfg.paths.warehouse, TRAFFIC_DRIVER, TRAFFIC_PHASE, first.date())
    out = traffic_frames(series, req, plan, cfg.forecast.horizon)
    if out[1] is None:
        log.warning(
            "the plan has traffic, but the usage metrics have no %s requests before %s: the "
            "inference forecast does not read the traffic plan (ingest usage with --usage)",
            TRAFFIC_PHASE,
            f"{first:%Y-%m}",
        )
        return out
    months = pd.DatetimeIndex(sorted(out[1]["ds"].unique()))
    planned = months.isin([pd.Timestamp(m) for m in plan.traffic.months])
    later = months[~planned]
    log.info(
        "inference series read traffic (models that use drivers: unit_cost, sarimax, lightgbm): "
        "requests %s to %s from usage, %d month(s) from the traffic plan%s",
        f"{req.index.min():%Y-%m}",
        f"{req.index.max():%Y-%m}",
        int(planned.sum()),
        f"; {len(later)} month(s) the plan does not cover ({later.min():%Y-%m} to "
        f"{later.max():%Y-%m}) from the same month a year before, grown like the last year"
        if len(later)
        else "",
    )
    return out


def check_writable(folder: Path) -> None:
    """The outputs root must be a writable folder, checked before anything is recorded."""
    import tempfile

    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise InputError(
            Problem(f"the outputs folder is not writable ({exc.strerror})", str(folder)),
            fix="make it writable for this user, or pass --output DIR",
        ) from exc


def with_horizon(
    cfg: MonthlyConfig, series: pd.DataFrame, budgets: pd.DataFrame | None
) -> MonthlyConfig:
    """The one horizon policy: the configured months (18 by default), or as far as the furthest
    budget period or planned quarter needs, whichever is longer. Decided here, once per run."""
    from pipeline.periods import default_quarters, horizon_for, parse_period

    last = pd.Timestamp(pd.to_datetime(series["ds"]).max())
    periods = [parse_period(q) for q in cfg.settings.quarters] or list(default_quarters(cfg.as_of))
    if budgets is not None and len(budgets):
        periods += [parse_period(p) for p in pd.unique(budgets["period"])]
    h = horizon_for(cfg.forecast.horizon, last, periods)
    if h != cfg.forecast.horizon:
        log.info("horizon %d months (to cover %s)", h, max(p.months[-1] for p in periods).date())
    return dataclasses.replace(cfg, forecast=dataclasses.replace(cfg.forecast, horizon=h))


def build_run(
    cfg: MonthlyConfig,
    frames: Any,
    res: ForecastResult,
    plan_text: str | None,
    budgets: pd.DataFrame | None = None,
) -> Any:
    """The :class:`~pipeline.runstore.ForecastRun` of this as-of: the forecast, its paths
    conditioned once on the month-to-date actuals, the anomalies, the settings."""
    from pipeline.conditioning import condition_paths, partial_months
    from pipeline.flags import find_anomalies
    from pipeline.frames import parse_hierarchy_id
    from pipeline.runstore import ForecastRun

    partial = partial_months(frames.partial, frames.daily)
    monthly = frames.monthly
    nonneg = monthly.groupby(UID)[Y].min()
    fc = cfg.forecast
    conditioned = condition_paths(
        res.paths,
        res.path_ids,
        res.path_ds,
        partial,
        nonneg=[str(u) for u in nonneg.index[nonneg.to_numpy() >= 0]],
        booked=[str(u) for u in res.path_ids if parse_hierarchy_id(str(u))[1] == "labor"],
        seed=fc.seed,
    )
    return ForecastRun(
        as_of=cfg.as_of.isoformat(),
        currency=frames.currency,
        monthly=monthly,
        partial=partial,
        forecast=published_table(res.forecast, conditioned, res.path_ids, res.path_ds, fc.levels),
        model_forecast=res.forecast,
        all_forecasts=res.all_forecasts,
        backtest=res.backtest,
        metrics=res.metrics,
        accuracy=res.accuracy,
        selection=res.selection,
        anomalies=find_anomalies(res.backtest, res.selection, 95),
        paths=res.paths,
        conditioned=conditioned,
        path_ids=[str(u) for u in res.path_ids],
        path_ds=pd.DatetimeIndex(res.path_ds),
        settings={
            "horizon": fc.horizon,
            "levels": list(fc.levels),
            "n_paths": fc.n_paths,
            "seed": fc.seed,
            **cfg.settings.describe(),
        },
        plan_text=plan_text,
        budgets=budgets,
    )


def published_table(
    table: pd.DataFrame,
    paths: np.ndarray,
    ids: list[str],
    ds: pd.DatetimeIndex,
    levels: tuple[int, ...],
) -> pd.DataFrame:
    """The run's forecast table read off its stored (conditioned) paths: ``mean`` is the paths'
    mean and ``lo_L`` / ``hi_L`` their quantiles, so forecast.csv, the fan charts, the flags and
    the budgets all describe the same distribution (the current month includes its month to date)."""
    from pipeline.frames import hi_col, lo_col

    out = table.copy()
    pos = {u: i for i, u in enumerate(ids)}
    col = {pd.Timestamp(d): k for k, d in enumerate(ds)}
    i = out[UID].astype(str).map(pos).to_numpy()
    k = pd.to_datetime(out["ds"]).map(col).to_numpy()
    ok = ~(pd.isna(i) | pd.isna(k))
    i, k = i[ok].astype(int), k[ok].astype(int)
    sample = paths[i, :, k]  # (rows, n_paths)
    mean = sample.mean(axis=1)
    out.loc[ok, "mean"] = mean
    for lv in levels:
        a = (1 - lv / 100) / 2
        out.loc[ok, lo_col(lv)] = np.minimum(np.quantile(sample, a, axis=1), mean)
        out.loc[ok, hi_col(lv)] = np.maximum(np.quantile(sample, 1 - a, axis=1), mean)
    return out


@contextmanager
def _reuse(run_id: str) -> Iterator[str]:
    yield run_id


def _wrap(exc: BaseException) -> BaseException:
    if isinstance(exc, PhasecastError) or not isinstance(exc, Exception):
        return exc
    return from_environment(exc) or RunFailedError(f"{type(exc).__name__}: {exc}")


def _compute_and_log(
    cfg: MonthlyConfig,
    tracker: Any,
    run_id: str,
    reused: bool,
    tmp: Path,
    frames: Any,
    series: pd.DataFrame,
    plan: Any,
    drivers: tuple[pd.DataFrame, pd.DataFrame | None],
    budgets: pd.DataFrame | None,
    window: dict[str, Any],
    checks: dict[str, Any],
    config: dict[str, Any],
    fp: str,
    ingest_info: dict[str, Any],
    commit: str,
    t0: float,
) -> dict[str, Any]:
    from pipeline import tracking as tr
    from pipeline.flags import FlagConfig
    from pipeline.forecast import run_forecast
    from pipeline.jobs import derive, report, write_derived
    from pipeline.registry import register_models
    from pipeline.runstore import RUN_FILE, load_run, save_run, store_manifest

    as_of = cfg.as_of.isoformat()
    fc = cfg.forecast
    models = [m for m in fc.models if m != "unit_cost" or drivers[1] is not None]
    log.info(
        "forecasting: models %s, horizon %d, levels %s, %d backtest windows",
        ",".join(models),
        fc.horizon,
        fc.levels,
        fc.n_windows,
    )
    res = run_forecast(drivers[0], fc, plan, X_future=drivers[1], progress=cfg.progress)
    for ev in res.events:
        log.info("event: %s", ", ".join(f"{k} {v}" for k, v in ev.items()))

    # the stored run: written once, then every derived table is computed from it as read back
    run = build_run(
        cfg, frames, res, plan_text=cfg.plan.read_text() if cfg.plan else None, budgets=budgets
    )
    files: list[str] = save_run(run, tmp, fitted=res.fitted)
    store = store_manifest(run)
    (tmp / RUN_FILE).write_text(json.dumps({"as_of": as_of, "store": store}))
    # what was built is dropped before it is read back: one copy of the paths at a time
    del run
    res.paths = np.empty((0, 0, 0))
    stored = load_run(tmp)
    st = cfg.settings
    derived = derive(
        stored,
        budgets=budgets,
        quarters=st.quarters,
        scenarios=st.scenarios,
        flag_config=FlagConfig(watch=st.watch, at_risk=st.at_risk),
        quantile=st.quantile,
    )
    files += write_derived(derived, tmp)
    if derived.flags is not None:
        from pipeline.formatting import format_flags

        log.info("budget flags:\n%s", format_flags(derived.flags.flags))
    log.info(
        "planned quarters %s%s; %d anomalous month(s)",
        ", ".join(q.label for q in derived.quarters),
        f" with {len(st.scenarios)} scenario(s)" if st.scenarios else "",
        len(stored.anomalies),
    )
    from pipeline.report import plot_metrics

    plot = plot_metrics(res.metrics, tmp / "plots" / "backtest_metrics.png")
    if plot:
        files.append("plots/backtest_metrics.png")

    # models: one version per role, champion / challenger on the same backtest
    records, versions, published_score = register_models(  # champions re-scored with the drivers
        cfg, tracker, run_id, reused, res, drivers[0], plan, checks, config, window, fp
    )
    if cfg.report:
        report(stored, derived, tmp, budgets=budgets, versions=versions, levels=fc.levels)
        files.append("report.html")

    manifest = {
        "as_of": as_of,
        "data_window": window,
        "input_checksums": checks,
        "ingest": ingest_info,
        "config": config,
        "fingerprint": fp,
        "mlflow": {
            "tracking_uri": cfg.tracking.tracking_uri,
            "experiment": tr.experiment_name(cfg.tracking.prefix, JOB_KIND),
            "run_id": run_id,
            "reused_existing_run": reused,
        },
        "git_commit": commit,
        "package_versions": tr.package_versions(),
        "models": [r.as_dict() for r in records],
        "champion_decisions": {
            r.role: {
                "version": r.version,
                "alias": r.alias,
                "decision": r.decision,
                "new_MASE": r.score,
                "champion_version": r.champion_version,
                "champion_MASE": r.champion_score,
                "method": r.method,
            }
            for r in records
        },
        "published_backtest_MASE_cost": published_score,
        "events": [{k: str(v) for k, v in ev.items()} for ev in res.events],
        "flags": (
            derived.flags.flags["status"].value_counts().to_dict()
            if derived.flags is not None and len(derived.flags.flags)
            else None
        ),
        "quarters": [q.label for q in derived.quarters],
        "anomalies": len(stored.anomalies),
        "versions": versions,
        "store": store,
        "files": sorted(files) + ["run.json"],
        "seconds_to_publish": round(time.perf_counter() - t0, 2),
    }
    (tmp / RUN_FILE).write_text(json.dumps(manifest, indent=2, default=str))
    if not reused:
        tracker.log_artifacts(tmp, "outputs")
    manifest["_result"] = res
    manifest["_records"] = records
    return manifest
