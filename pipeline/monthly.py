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

Idempotent: the run's fingerprint covers the input series, configuration, plan, budgets and as-of.
A FINISHED run with the same fingerprint is reused (the numbers are recomputed, identical, and the
outputs rewritten; no new run, no new registry versions). A failure is recorded as a FAILED run.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import os
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipeline.config import Paths
from pipeline.errors import PhasecastError, RunFailedError
from pipeline.forecast import ForecastConfig, ForecastResult
from pipeline.frames import CUTOFF, MEAN, MODEL, UID, Y
from pipeline.runlock import run_lock

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
    currency: str | None = (
        None  # None: the warehouse's currency with most cost (others logged, left out)
    )
    progress: bool = True
    report: bool = True

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


# --- scores -----------------------------------------------------------------------------------
def backtest_mase(
    bt: pd.DataFrame, selection: pd.DataFrame | None = None, model: str | None = None
) -> float | None:
    """MASE of a role's backtest rows: per series and cutoff first, then the mean (M4).

    ``model``: that model's rows; ``selection`` (``unique_id, model``): each series' selected model."""
    if bt is None or not len(bt):
        return None
    if model is not None:
        rows = bt[bt[MODEL] == model]
    else:
        assert selection is not None
        sel = selection.set_index(UID)[MODEL]
        rows = bt[bt[MODEL].to_numpy() == bt[UID].map(sel).to_numpy()]
    if not len(rows):
        return None
    e = (rows[Y] - rows[MEAN]).abs() / rows["scale"]
    return float(e.groupby([rows[UID], rows[CUTOFF]]).mean().mean())


# --- outputs ----------------------------------------------------------------------------------
def write_table(df: pd.DataFrame, folder: Path, name: str) -> list[Path]:
    """``name.csv`` and ``name.parquet``."""
    folder.mkdir(parents=True, exist_ok=True)
    csv, pq = folder / f"{name}.csv", folder / f"{name}.parquet"
    df.to_csv(csv, index=False)
    df.reset_index(drop=True).to_parquet(pq, index=False)
    return [csv, pq]


def publish(tmp: Path, final: Path) -> None:
    """Replace ``final`` by ``tmp`` with renames (same filesystem): the old folder is moved aside
    first and removed only after the new one is in place."""
    old = final.with_name(f".{final.name}.old-{os.getpid()}")
    if final.exists():
        os.replace(final, old)
    try:
        os.replace(tmp, final)
    except BaseException:
        if old.exists() and not final.exists():
            os.replace(old, final)
        raise
    shutil.rmtree(old, ignore_errors=True)


@contextmanager
def staging_dir(root: Path, as_of: str) -> Iterator[Path]:
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / f".{as_of}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # gone after publish; removed on failure


def plot_metrics(metrics: pd.DataFrame, path: Path) -> Path | None:
    """Bar chart of backtest MASE and 80 / 95 % coverage per model."""
    if metrics is None or not len(metrics):
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    m = metrics[metrics["scope"] == "model"].sort_values("MASE")
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    axes[0].barh(m[MODEL], m["MASE"], color="#3b6fd6")
    axes[0].set_title("backtest MASE (lower is better)")
    covs = [c for c in m.columns if c.startswith("coverage_")]
    for i, c in enumerate(covs):
        axes[1].barh(np.arange(len(m)) + i * 0.4, m[c], height=0.4, label=c)
        axes[1].axvline(int(c.split("_")[1]) / 100, color="grey", lw=0.8, ls="--")
    axes[1].set_yticks(np.arange(len(m)) + 0.2, m[MODEL])
    axes[1].set_title("interval coverage (dashed: nominal)")
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


# --- the job ----------------------------------------------------------------------------------
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
        )
    )
    return {
        "inbox": str(inbox),
        "new_files": [str(p.path) for p in pending],
        "ingested": len(rep.ingested),
        "rows": rep.rows,
        "conserved": rep.conserved,
    }


def _config_dict(cfg: MonthlyConfig) -> dict[str, Any]:
    return {
        "as_of": cfg.as_of.isoformat(),
        "cost_column": cfg.cost_column,
        "forecast": dataclasses.asdict(cfg.forecast),
        "budgets": str(cfg.budgets) if cfg.budgets else None,
        "plan": str(cfg.plan) if cfg.plan else None,
        "inbox": str(cfg.inbox_dir),
    }


def run_monthly(cfg: MonthlyConfig) -> MonthlyResult:
    """The whole job under the lock (raises :class:`LockHeldError` when another run holds it)."""
    with run_lock(cfg.paths.lock):
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
        **{f"version.{k}": v for k, v in tr.package_versions().items()},
    }

    # 1-2: inputs. A failure here is recorded as a FAILED run before the error goes up.
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
        if series.empty:
            raise RunFailedError(
                f"no complete month of cost before {as_of} in {cfg.paths.warehouse}"
            )
        plan = None
        if cfg.plan is not None:
            from pipeline.plan import load_plan

            plan = load_plan(cfg.plan)
        budgets = None
        if cfg.budgets is not None:
            from pipeline.budget import load_budgets

            budgets = load_budgets(cfg.budgets)
    except BaseException as exc:
        rid = tracker.record_failure(
            JOB_KIND, as_of, {**base_tags, "failed_step": "inputs"}, _config_dict(cfg), exc
        )
        log.error(
            "monthly run %s failed while reading inputs; MLflow run %s marked FAILED", as_of, rid
        )
        raise _wrap(exc) from exc

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
    config = _config_dict(cfg)
    config_no_paths = {k: v for k, v in config.items() if k not in ("budgets", "plan", "inbox")}
    fp = tr.fingerprint({"config": config_no_paths, "checks": checks})
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
            publish(tmp, out)
        except PhasecastError:
            raise
        except Exception as exc:
            raise RunFailedError(
                f"monthly run {as_of} failed: {type(exc).__name__}: {exc}. "
                f"Previous outputs are untouched; MLflow run {run_id} is marked FAILED"
            ) from exc
    seconds = time.perf_counter() - t0
    log.info("monthly run %s done in %.1f s: %s (MLflow run %s)", as_of, seconds, out, run_id)
    return MonthlyResult(out, run_id, bool(existing), manifest, manifest.pop("_result"), seconds)


@contextmanager
def _reuse(run_id: str) -> Iterator[str]:
    yield run_id


def _wrap(exc: BaseException) -> BaseException:
    if isinstance(exc, PhasecastError) or not isinstance(exc, Exception):
        return exc
    return RunFailedError(f"{type(exc).__name__}: {exc}")


def _compute_and_log(
    cfg: MonthlyConfig,
    tracker: Any,
    run_id: str,
    reused: bool,
    tmp: Path,
    frames: Any,
    series: pd.DataFrame,
    plan: Any,
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
    from pipeline.forecast import run_forecast

    as_of = cfg.as_of.isoformat()
    fc = cfg.forecast
    log.info(
        "forecasting: models %s, horizon %d, levels %s, %d backtest windows",
        ",".join(fc.models),
        fc.horizon,
        fc.levels,
        fc.n_windows,
    )
    res = run_forecast(series, fc, plan, progress=cfg.progress)
    for ev in res.events:
        log.info("event: %s", ev)

    files: list[str] = []
    for name, df in (
        ("forecast", res.forecast),
        ("all_forecasts", res.all_forecasts),
        ("backtest", res.backtest),
        ("metrics", res.metrics),
        ("selection", res.selection),
        ("series", series),
    ):
        files += [p.name for p in write_table(df, tmp, name)]

    flag_result = None
    if budgets is not None:
        from pipeline.flags import flag_budgets, format_flags, write_flags

        flag_result = flag_budgets(
            budgets,
            frames.monthly,
            res.paths,
            res.path_ids,
            res.path_ds,
            as_of=cfg.as_of,
            mtd=frames.partial,
            daily=frames.daily,
            backtest=res.backtest,
            selection=res.selection,
        )
        files += [p.name for p in write_flags(flag_result, tmp).values()]
        files += [p.name for p in write_table(flag_result.flags, tmp, "flags")[1:]]
        log.info("budget flags:\n%s", format_flags(flag_result.flags))
    plot = plot_metrics(res.metrics, tmp / "plots" / "backtest_metrics.png")
    if plot:
        files.append("plots/backtest_metrics.png")

    # models: one version per role, champion / challenger on the same backtest
    scores = (
        {m: backtest_mase(res.backtest, model=m) for m in sorted(set(res.backtest[MODEL]))}
        if len(res.backtest)
        else {}
    )
    published_score = backtest_mase(res.backtest, selection=res.selection)
    items = _models_to_log(cfg, res, series, checks, as_of, scores, published_score)
    records = []
    if not reused:
        tracker.set_tags(
            {
                "fingerprint": fp,
                "data.first_month": window["first_month"],
                "data.last_month": window["last_month"],
            }
        )
        tracker.log_params({"config": config, "data": window, "checks": checks})
        metrics: dict[str, float] = {}
        if len(res.metrics):
            for row in res.metrics[res.metrics["scope"] == "model"].to_dict("records"):
                for k, v in row.items():
                    if k not in ("scope", MODEL, "h", UID) and isinstance(v, int | float):
                        metrics[f"backtest.{row[MODEL]}.{k}"] = float(v)
        if published_score is not None:
            metrics["backtest.published.MASE"] = published_score
        tracker.log_metrics(metrics)
    for item in items:
        rec = tracker.log_model(item, as_of) if not reused else _existing_record(tracker, item)
        if rec is None:
            continue
        rec = tracker.decide(
            rec, item.spec, lambda champ, it=item: _rescore(cfg, tracker, it, champ, series, plan)
        )
        log.info("%s v%s: %s", rec.name, rec.version, rec.decision)
        records.append(rec)
    if not reused:
        dm = {}
        for rec in records:
            if rec.score is not None:
                dm[f"decision.{rec.role}.new_MASE"] = rec.score
            if rec.champion_score is not None:
                dm[f"decision.{rec.role}.champion_MASE"] = rec.champion_score
            dm[f"decision.{rec.role}.promoted"] = 1.0 if rec.alias == tr.CHAMPION else 0.0
        tracker.log_metrics(dm)
        tracker.set_tags({f"decision.{r.role}": f"v{r.version} {r.decision}" for r in records})

    versions = [
        {
            "model": r.name,
            "version": r.version,
            "alias": r.alias or "",
            "state": r.state,
            "backtest_MASE": None if r.score is None else round(r.score, 4),
            "decision": r.decision,
            "run_id": run_id,
        }
        for r in records
    ]
    if cfg.report:
        from pipeline.report import fan_bands, write_report

        write_report(
            tmp,
            history=frames.monthly,
            fan=fan_bands(res.paths, res.path_ids, res.path_ds),
            forecast=res.forecast,
            budgets=budgets,
            flags=flag_result.flags if flag_result is not None else None,
            anomalies=flag_result.anomalies if flag_result is not None else None,
            metrics=res.metrics,
            model_versions=pd.DataFrame(versions),
            selection=res.selection,
            data_window=window,
            as_of=as_of,
            currency=frames.currency,
            levels=fc.levels,
        )
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
        "published_backtest_MASE": published_score,
        "events": [{k: str(v) for k, v in ev.items()} for ev in res.events],
        "flags": (
            flag_result.flags["status"].value_counts().to_dict()
            if flag_result is not None and len(flag_result.flags)
            else None
        ),
        "files": sorted(files) + ["run.json"],
        "seconds_to_publish": round(time.perf_counter() - t0, 2),
    }
    (tmp / "run.json").write_text(json.dumps(manifest, indent=2, default=str))
    if not reused:
        tracker.log_artifacts(tmp, "outputs")
    manifest["_result"] = res
    return manifest


def _models_to_log(
    cfg: MonthlyConfig,
    res: ForecastResult,
    series: pd.DataFrame,
    checks: dict[str, Any],
    as_of: str,
    scores: dict[str, float | None],
    published: float | None,
) -> list[Any]:
    from pipeline import tracking as tr

    fc = cfg.forecast
    levels = list(fc.levels)
    items = []
    for name, model in res.fitted.items():
        params = tr.encode_params(model.get_params())
        uses_plan = any(isinstance(v, dict) and "__plan__" in v for v in params.values())
        conf = {
            "model": model.name,
            "params": params,
            "plan_sha256": checks["plan_sha256"] if uses_plan else None,
        }
        spec = {
            "role": name,
            "model": model.name,
            "params": params,
            "horizon": fc.horizon,
            "levels": levels,
            "config_fingerprint": tr.fingerprint(conf),
            "as_of": as_of,
            "series_sha256": checks["series_sha256"],
            "window": {"horizon": fc.horizon, "n_windows": fc.n_windows, "step": fc.step},
        }
        spec["fingerprint"] = tr.fingerprint(
            {"conf": conf, "series": checks["series_sha256"], "as_of": as_of}
        )
        forecast = model.predict(fc.horizon, level=fc.levels)
        items.append(
            tr.ModelToLog(
                role=name,
                spec=spec,
                series=series,
                forecast=forecast,
                score=scores.get(name),
                fitted=model,
                plan_path=cfg.plan if uses_plan else None,
            )
        )
    fconf = {"forecast_config": dataclasses.asdict(fc), "plan_sha256": checks["plan_sha256"]}
    spec = {
        "role": FORECASTER,
        "forecast_config": dataclasses.asdict(fc),
        "horizon": fc.horizon,
        "levels": levels,
        "config_fingerprint": tr.fingerprint(fconf),
        "as_of": as_of,
        "series_sha256": checks["series_sha256"],
        "fingerprint": tr.fingerprint(
            {"conf": fconf, "series": checks["series_sha256"], "as_of": as_of}
        ),
    }
    items.append(
        tr.ModelToLog(
            role=FORECASTER,
            spec=spec,
            series=series,
            forecast=res.forecast,
            score=published,
            plan_path=cfg.plan,
        )
    )
    return items


def _existing_record(tracker: Any, item: Any) -> Any:
    from pipeline import tracking as tr

    name = tr.registered_name(item.role)
    v = tracker.existing_version(name, item.spec["fingerprint"])
    if v is None:
        return None
    return tr.VersionRecord(
        item.role,
        name,
        str(v.version),
        f"models:/{name}/{v.version}",
        True,
        v.tags.get("state", ""),
        item.score,
        decision=f"existing version {v.version}: {v.tags.get('decision', '')}",
    )


def _rescore(
    cfg: MonthlyConfig,
    tracker: Any,
    item: Any,
    champ: dict[str, Any],
    series: pd.DataFrame,
    plan: Any,
) -> float | None:
    """The champion's configuration re-run on this run's backtest windows (its MASE)."""
    from pipeline import tracking as tr
    from pipeline.backtest import WindowSpec, backtest
    from pipeline.forecast import prepare, run_forecast
    from pipeline.models import make_model

    fc = cfg.forecast
    log.info("%s: re-running the champion's configuration on this backtest", item.role)
    if champ.get("role") == FORECASTER:
        ccfg = tr.forecast_config_from(champ["forecast_config"])
        ccfg = dataclasses.replace(
            ccfg,
            horizon=fc.horizon,
            n_windows=fc.n_windows,
            step=fc.step,
            levels=fc.levels,
            n_paths=min(ccfg.n_paths, 200),
        )
        r = run_forecast(series, ccfg, plan, progress=False)
        return backtest_mase(r.backtest, selection=r.selection)
    params = tr.decode_params(champ["params"], {"plan": str(cfg.plan)} if cfg.plan else {})
    hist, _, drivers = prepare(series, fc.gaps)
    bt, _ = backtest(
        hist,
        [champ["model"]],
        lambda n: make_model(champ["model"], **params),
        WindowSpec(fc.horizon, fc.n_windows, fc.step),
        drivers,
    )
    return backtest_mase(bt, model=champ["model"])
