"""Registering a monthly run's models in MLflow: one version per role, champion / challenger.

A new version takes the alias ``champion`` only when it beats the current champion on the same
backtest: the champion's configuration is re-run on this run's backtest windows
(:func:`_rescore`) and both are scored by MASE on the same rows. Called by :mod:`pipeline.monthly`;
everything MLflow itself does goes through :mod:`pipeline.tracking`.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from typing import Any

import pandas as pd

from pipeline.flavor import encode_forms
from pipeline.forecast import ForecastResult
from pipeline.frames import MODEL, UID

log = logging.getLogger(__name__)

FORECASTER = "forecaster"


# --- scores -----------------------------------------------------------------------------------
def backtest_mase(
    bt: pd.DataFrame, selection: pd.DataFrame | None = None, model: str | None = None
) -> float | None:
    """Cost-weighted MASE of a role's backtest rows (:func:`pipeline.metrics.cost_weighted_mase`:
    per series and cutoff first, then weighted by each forecast's actual cost), so a tiny series
    cannot decide which version is champion.

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
    from pipeline.metrics import cost_weighted_mase

    score = cost_weighted_mase(rows)
    return None if math.isnan(score) else score  # NaN: no cost to weigh by


def register_models(
    cfg: Any,
    tracker: Any,
    run_id: str,
    reused: bool,
    res: ForecastResult,
    series: pd.DataFrame,
    plan: Any,
    checks: dict[str, Any],
    config: dict[str, Any],
    window: dict[str, Any],
    fp: str,
) -> tuple[list[Any], list[dict[str, Any]], float | None]:
    """Log the run's parameters and metrics, register every model, decide the aliases.

    Returns ``(records, versions, published_backtest_MASE_cost)``; a reused run registers nothing new
    and reports the versions it registered the first time."""
    from pipeline import tracking as tr

    as_of = cfg.as_of.isoformat()
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
            metrics["backtest.published.MASE_cost"] = published_score
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
    return records, versions, published_score


def _models_to_log(
    cfg: Any,
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
    # a version is the same model on the same data with the same code: the future drivers are data too
    drv = {"drivers": checks["drivers_sha256"]} if "drivers_sha256" in checks else {}
    code = tr.code_identity()
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
            "code": code,
            "window": {"horizon": fc.horizon, "n_windows": fc.n_windows, "step": fc.step},
        }
        forms = getattr(model, "forms_", None)
        if forms:  # what a refit needs to make the same fit (flavor.build_model)
            spec["forms"] = encode_forms(forms)
        spec["fingerprint"] = tr.fingerprint(
            {"conf": conf, "series": checks["series_sha256"], "as_of": as_of, "code": code, **drv}
        )
        forecast = tr.role_forecast(model, spec, res.drivers_future)
        items.append(
            tr.ModelToLog(
                role=name,
                spec=spec,
                series=series,
                forecast=forecast,
                score=scores.get(name),
                fitted=model,
                plan_path=cfg.plan if uses_plan else None,
                drivers=res.drivers_future,
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
        "code": code,
        "fingerprint": tr.fingerprint(
            {"conf": fconf, "series": checks["series_sha256"], "as_of": as_of, "code": code, **drv}
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
            drivers=res.drivers_future,
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
        decision=f"reused: this model on this data is version {v.version} (its decision when "
        f"registered: {v.tags.get('decision', 'n/a')})",
    )


def _rescore(
    cfg: Any,
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
