"""Scenarios evaluated on a stored run: the same paths, re-priced and re-sized by the plan's arithmetic.

A scenario (:mod:`pipeline.scenarios`) edits the plan. Its effect on the forecast is read off the
analytic baseline's arithmetic, change by change, for every bottom series (phase x category) and
month of the run's horizon: ``B0`` the plan's cost before the change, ``B1`` after it.

* **Usage and price changes** (``traffic``, ``quantization``, ``price``) scale cost: a series'
  cost is usage x price, so the run's forecast of it (every model's mean and every sample path) is
  multiplied by ``B1 / B0`` where the plan prices that series in that month. For a price change,
  months the plan leaves empty for a GPU series (``<phase>/compute_gpu``) are re-priced at the
  phase's GPU mix in the plan (its GPU-hours by GPU type and pricing). A GPU price cut of 20 % on
  the only GPU a phase uses moves every model's forecast of that phase's GPU cost by -20 %, the
  analytic baseline's included: arithmetic a user can check by hand.
* **Additions** (``add_run``, ``headcount``, and any change where the plan had no cost before)
  add ``B1 - B0`` to every path and every model's mean.

Nothing is re-fitted, re-backtested or re-selected: the base is the run's conditioned paths, the
scenario is the same paths transformed, parents are re-added from their bottom series (so every
scenario path is coherent), and the quarter's P50/P80/P95 and recommended budget come out of the
same functions as the base's. In the current month only the part not yet spent moves.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from pipeline.budget import (
    actual_costs,
    closed_months,
    nice_ceil,
    phases_in,
    plan_estimate_by_phase,
    quarter_closed,
)
from pipeline.conditioning import period_totals
from pipeline.errors import InputError
from pipeline.frames import DS, MEAN, MODEL, TOTAL, UID, parse_hierarchy_id
from pipeline.periods import Period, line_uid, parse_period
from pipeline.scenarios import EDITS, Scenario, apply_scenario
from pipeline.tables import relative_change

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from pipeline.plan import Plan
    from pipeline.runstore import ForecastRun

SCALING = ("traffic", "quantization", "price")

SUMMARY_COLUMNS = [
    "scenario",
    "period",
    "phase",
    "base_mean",
    "base_p50",
    "base_p80",
    "base_p95",
    "scenario_mean",
    "scenario_p50",
    "scenario_p80",
    "scenario_p95",
    "delta_mean",
    "delta_pct",
    "base_recommended",
    "scenario_recommended",
    "plan_base",
    "plan_scenario",
    "currency",
]


def _bottom(ids: Sequence[str]) -> tuple[np.ndarray, list[str]]:
    from pipeline.reconcile import summing_matrix

    return summing_matrix(list(ids))


def _plan_costs(plan: Plan, bottom: list[str], path_ds: pd.DatetimeIndex) -> np.ndarray:
    """The plan's cost per bottom series and month: (n_bottom, h)."""
    from pipeline.estimate import estimate_from_plan

    est = estimate_from_plan(plan, path_ds[0], len(path_ds))
    out = np.zeros((len(bottom), len(path_ds)))
    if not len(est):
        return out
    est = est.assign(**{DS: pd.to_datetime(est[DS])})
    col = {pd.Timestamp(d): k for k, d in enumerate(path_ds)}
    by_phase = est.groupby(["phase", DS])["cost"].sum()
    by_pc = est.groupby(["phase", "category", DS])["cost"].sum()
    for j, uid in enumerate(bottom):
        phase, category = parse_hierarchy_id(uid)
        src = by_phase.get(phase) if category is None else by_pc.get((phase, category))
        if src is None or not isinstance(src, pd.Series):
            continue
        for d, v in src.items():
            if pd.Timestamp(d) in col:
                out[j, col[pd.Timestamp(d)]] = float(v)
    return out


def gpu_mix(plan: Plan) -> dict[str, dict[tuple[str, str], float]]:
    """GPU-hours the plan puts on each ``(gpu, pricing)`` per phase, over everything it plans."""
    mix: dict[str, dict[tuple[str, str], float]] = {}

    def add(phase: str, gpu: str, pricing: str, hours: float) -> None:
        by = mix.setdefault(phase, {})
        by[(gpu, pricing)] = by.get((gpu, pricing), 0.0) + max(float(hours), 0.0)

    for r in plan.scheduled_runs:
        add(r.phase, r.gpu, r.pricing, r.gpus * r.duration_days() * 24.0)
    for j in plan.recurring:
        if j.resource == "gpu" and j.gpu is not None:
            add(j.phase, j.gpu, j.pricing, j.quantity * j.hours_per_month)
    if plan.traffic is not None:
        t = plan.traffic
        add("inference", t.gpu, t.pricing, sum(t.months.values()) or 1.0)
    return mix


def price_ratio(
    before: Plan, after: Plan, bottom: list[str], path_ds: pd.DatetimeIndex
) -> np.ndarray:
    """Per GPU series (``<phase>/compute_gpu``) and month: the GPU-hour price after / before, at
    the phase's GPU mix in the plan (1 for other series and phases the plan gives no GPU)."""
    from pipeline.estimate import gpu_month_price

    mix = gpu_mix(before)
    out = np.ones((len(bottom), len(path_ds)))
    for j, uid in enumerate(bottom):
        phase, category = parse_hierarchy_id(uid)
        weights = mix.get(str(phase))
        if category != "compute_gpu" or not weights:
            continue
        for k, m in enumerate(path_ds):
            m = pd.Timestamp(m)
            p0 = sum(
                w * gpu_month_price(before.price_book, g, c, m) for (g, c), w in weights.items()
            )
            p1 = sum(
                w * gpu_month_price(after.price_book, g, c, m) for (g, c), w in weights.items()
            )
            out[j, k] = p1 / p0 if p0 > 0 else 1.0
    return out


def transform(
    plan: Plan, scenario: Scenario, bottom: list[str], path_ds: pd.DatetimeIndex
) -> tuple[np.ndarray, np.ndarray]:
    """``(a, c)`` per bottom series and month: the scenario's cost is ``a * base + c``."""
    a = np.ones((len(bottom), len(path_ds)))
    c = np.zeros((len(bottom), len(path_ds)))
    before = plan
    b0 = _plan_costs(before, bottom, path_ds)
    for kind, args in scenario.changes:
        after = apply_scenario(before, Scenario(scenario.name, ((kind, args),)))
        b1 = _plan_costs(after, bottom, path_ds)
        if kind in SCALING:
            scale = b0 > 0
            f = np.where(scale, b1 / np.where(scale, b0, 1.0), 1.0)
            add = np.where(scale, 0.0, b1 - b0)
            if kind == "price":  # months the plan leaves empty: priced at the phase's GPU mix
                f = np.where(scale, f, price_ratio(before, after, bottom, path_ds))
            a, c = a * f, c * f + add
        else:
            c = c + (b1 - b0)
        before, b0 = after, b1
    return a, c


def scenario_paths(
    run: ForecastRun, a: np.ndarray, c: np.ndarray, bottom: list[str], S: np.ndarray
) -> np.ndarray:
    """The run's conditioned paths under the transform, coherent (parents = sums of bottoms)."""
    pos = {u: i for i, u in enumerate(run.path_ids)}
    b = run.conditioned[[pos[u] for u in bottom]].copy()  # (n_bottom, n_paths, h)
    mtd = np.zeros((len(bottom), len(run.path_ds)))
    cols = {pd.Timestamp(d): k for k, d in enumerate(run.path_ds)}
    for j, uid in enumerate(bottom):
        pm = run.partial.get(uid)
        if pm is not None and pm.month in cols:
            mtd[j, cols[pm.month]] = pm.mtd  # spent already: never re-priced
    new = mtd[:, None, :] + a[:, None, :] * (b - mtd[:, None, :]) + c[:, None, :]
    return np.einsum("ib,bph->iph", S, new)


def _quantiles(totals: np.ndarray, quantile: float) -> dict[str, float]:
    q = np.quantile(totals, [0.5, 0.8, 0.95, quantile])
    return {
        "mean": float(np.mean(totals)),
        "p50": float(q[0]),
        "p80": float(q[1]),
        "p95": float(q[2]),
        "rec": nice_ceil(float(q[3])),
    }


def evaluate(
    run: ForecastRun,
    scenarios: Sequence[Scenario],
    quarter: str | Period,
    *,
    quantile: float = 0.8,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per scenario and phase: base vs scenario quantiles and recommended budget (``summary``), and
    per scenario, model and series: each model's period cost before and after (``models``)."""
    if not scenarios:
        return pd.DataFrame(columns=SUMMARY_COLUMNS), pd.DataFrame()
    plan = run.plan()
    if plan is None:
        raise InputError(
            f"scenarios edit the plan, but the run for {run.as_of} was made without one",
            fix=f"re-run phasecast run-monthly --as-of {run.as_of} --plan FILE",
        )
    for sc in scenarios:
        apply_scenario(plan, sc)  # bad arguments fail here, before any work
    period = parse_period(quarter)
    if quarter_closed(period, run.monthly, run.partial):
        log.warning(
            "no scenario for %s: every month of it is billed, and a plan change cannot alter it",
            period.label,
        )
        return pd.DataFrame(columns=SUMMARY_COLUMNS), pd.DataFrame()
    S, bottom = _bottom(run.path_ids)
    base_pt = period_totals(
        period,
        run.monthly,
        run.conditioned,
        run.path_ids,
        run.path_ds,
        run.partial,
        rerun_hint=run.rerun_hint(),
    )
    in_period = np.array([pd.Timestamp(d) in period.months for d in run.path_ds])
    from pipeline.estimate import estimate_from_plan

    # the budget table's plan_estimate: closed months at their actual, the plan for the open ones
    actuals = actual_costs(run.monthly)
    closed = closed_months(period, run.monthly, run.partial)

    def plan_figures(p: Plan) -> dict[str, float]:
        est = estimate_from_plan(p, period.start, len(period.months))
        return plan_estimate_by_phase(est, period, actuals, closed)

    plan_base = plan_figures(plan)
    rows, model_rows = [], []
    for sc in scenarios:
        a, c = transform(plan, sc, bottom, run.path_ds)
        sp = scenario_paths(run, a, c, bottom, S)
        pt = period_totals(
            period,
            run.monthly,
            sp,
            run.path_ids,
            run.path_ds,
            run.partial,
            rerun_hint=run.rerun_hint(),
        )
        plan_sc = plan_figures(apply_scenario(plan, sc))
        for phase in phases_in(run.path_ids):
            uid = line_uid(phase)
            qb = _quantiles(base_pt.of(uid)[1], quantile)
            qs = _quantiles(pt.of(uid)[1], quantile)
            rows.append(
                {
                    "scenario": sc.name,
                    "period": period.label,
                    "phase": phase,
                    **{f"base_{k}": qb[k] for k in ("mean", "p50", "p80", "p95")},
                    **{f"scenario_{k}": qs[k] for k in ("mean", "p50", "p80", "p95")},
                    "delta_mean": qs["mean"] - qb["mean"],
                    "delta_pct": relative_change(qs["mean"] - qb["mean"], qb["mean"]),
                    "base_recommended": qb["rec"],
                    "scenario_recommended": qs["rec"],
                    "plan_base": plan_base.get(phase, float("nan")),
                    "plan_scenario": plan_sc.get(phase, float("nan")),
                    "currency": run.currency,
                }
            )
        model_rows += _model_deltas(run, sc.name, period, a, c, bottom, in_period)
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS), pd.DataFrame(model_rows)


def _model_deltas(
    run: ForecastRun,
    name: str,
    period: Period,
    a: np.ndarray,
    c: np.ndarray,
    bottom: list[str],
    in_period: np.ndarray,
) -> list[dict[str, object]]:
    """Every model's forecast mean of each bottom series over the period's forecast months,
    before and after (phases and the total are sums of their bottom series)."""
    af = run.all_forecasts
    if not len(af):
        return []
    col = {pd.Timestamp(d): k for k, d in enumerate(run.path_ds)}
    pos = {u: j for j, u in enumerate(bottom)}
    f = af[af[UID].astype(str).isin(pos)].copy()
    f["_k"] = pd.to_datetime(f[DS]).map(col)
    f = f[f["_k"].notna()]
    f["_k"] = f["_k"].astype(int)
    f = f[in_period[f["_k"].to_numpy()]]
    j = f[UID].astype(str).map(pos).to_numpy()
    k = f["_k"].to_numpy()
    f["_base"] = f[MEAN].to_numpy(float)
    f["_scen"] = a[j, k] * f["_base"] + c[j, k]
    f["_phase"] = [parse_hierarchy_id(str(u))[0] for u in f[UID]]
    rows: list[dict[str, object]] = []
    for model, g in f.groupby(MODEL, sort=True):
        parts = [(str(u), h) for u, h in g.groupby(UID, sort=True)]
        parts += [(str(p), h) for p, h in g.groupby("_phase", sort=True)]
        parts += [(TOTAL, g)]
        for uid, h in parts:
            base, scen = float(h["_base"].sum()), float(h["_scen"].sum())
            rows.append(
                {
                    "scenario": name,
                    "period": period.label,
                    MODEL: model,
                    UID: uid,
                    "base": base,
                    "scenario_value": scen,
                    "delta": scen - base,
                    "currency": run.currency,
                }
            )
    return rows


__all__ = ["EDITS", "SCALING", "evaluate", "scenario_paths", "transform"]
