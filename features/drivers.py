"""Cost drivers per phase and month, from usage metrics and from the plan. No I/O.

Usage metrics arrive long (``ts, phase, metric, value``, see PRODUCT.md); :func:`usage_monthly`
sums them per phase and month (``gpu_util`` is averaged: it is a ratio). The named functions
below pick one driver each, as a Series indexed by ``(phase, ds)``. Planned drivers come from the
plan's schedule and are known in the future, which is what makes them useful to a direct forecast.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from pipeline.estimate import month_range
from pipeline.frames import DS, PHASE, UID, Y
from pipeline.plan import Plan

MEAN_METRICS = frozenset({"gpu_util"})


def usage_monthly(usage: pd.DataFrame) -> pd.DataFrame:
    """``ts, phase, metric, value`` -> one row per ``phase, ds`` and one column per metric."""
    u = usage.assign(**{DS: pd.to_datetime(usage["ts"]).dt.to_period("M").dt.to_timestamp()})
    agg = u.groupby([PHASE, DS, "metric"])["value"]
    summed, mean = agg.sum(), agg.mean()
    is_mean = summed.index.get_level_values("metric").isin(MEAN_METRICS)
    vals = summed.where(~is_mean, mean)
    return vals.unstack("metric").sort_index()


def _metric(usage_monthly: pd.DataFrame, *names: str) -> pd.Series:
    cols = [c for c in names if c in usage_monthly.columns]
    if not cols:
        return pd.Series(0.0, index=usage_monthly.index)
    return usage_monthly[cols].fillna(0.0).sum(axis=1)


def gpu_hours(usage_monthly: pd.DataFrame) -> pd.Series:
    return _metric(usage_monthly, "gpu_hours")


def requests(usage_monthly: pd.DataFrame) -> pd.Series:
    return _metric(usage_monthly, "requests")


def tokens(usage_monthly: pd.DataFrame) -> pd.Series:
    """Tokens in plus tokens out."""
    return _metric(usage_monthly, "tokens_in", "tokens_out", "tokens")


def storage_gb(usage_monthly: pd.DataFrame) -> pd.Series:
    return _metric(usage_monthly, "storage_gb")


def unit_price(cost: pd.Series, quantity: pd.Series) -> pd.Series:
    """Effective unit price per ``(phase, ds)``: cost / quantity (NaN where nothing was used)."""
    q = quantity.reindex(cost.index)
    return (cost / q.where(q > 0)).astype(float)


def planned_gpu_hours(plan: Plan, start: Any, months: int) -> pd.Series:
    """GPU-hours the plan schedules per ``(phase, ds)``: runs split by the days each month covers,
    recurring GPU jobs, and inference traffic (after quantization, day-weighted)."""
    idx = month_range(start, months)
    acc: dict[tuple[str, pd.Timestamp], float] = {}

    def add(phase: str, m: pd.Timestamp, v: float) -> None:
        if v:
            acc[(phase, m)] = acc.get((phase, m), 0.0) + v

    for run in plan.scheduled_runs:
        t0 = pd.Timestamp(run.start)
        t1 = t0 + pd.Timedelta(days=run.duration_days())
        for m in idx:
            a, b = max(t0, m), min(t1, m + pd.offsets.MonthBegin(1))
            if b > a:
                add(run.phase, m, run.gpus * 24.0 * ((b - a) / pd.Timedelta(days=1)))
    for job in plan.recurring:
        if job.resource != "gpu":
            continue
        for m in idx:
            if (job.start is None or m >= job.start) and (job.end is None or m <= job.end):
                add(job.phase, m, job.quantity * job.hours_per_month)
    t = plan.traffic
    if t is not None:
        from pipeline.estimate import day_weighted

        for m in idx:
            if m in t.months:
                rate = day_weighted(t.gpu_hours_per_1k, m, [q.start for q in t.quantization])
                add("inference", m, t.months[m] / 1000.0 * rate)
    s = pd.Series(acc, dtype=float)
    if len(s):
        s.index = s.index.set_names([PHASE, DS])
    return s.sort_index()


def planned_requests(plan: Plan, start: Any, months: int) -> pd.Series:
    """Requests the traffic plan expects per month (inference), indexed by ``ds``."""
    idx = month_range(start, months)
    months_plan = plan.traffic.months if plan.traffic is not None else {}
    return pd.Series(
        [months_plan.get(m, np.nan) for m in idx], index=pd.Index(idx, name=DS), dtype=float
    )


def driver_columns(df: pd.DataFrame) -> list[str]:
    """Extra numeric columns of a series frame: the exogenous drivers."""
    return [c for c in df.columns if c not in (UID, DS, Y) and pd.api.types.is_numeric_dtype(df[c])]


def driver_ratio(driver: pd.Series, unique_id: pd.Series, gap: int = 1) -> pd.Series:
    """Driver at the row's month over its value ``gap`` months before (scale-free, so one global
    model can use drivers of series of very different sizes). A driver is known in the future, so
    its own month is allowed; the denominator respects the cutoff."""
    if gap < 1:
        raise ValueError(f"gap must be >= 1. Got {gap} instead.")
    before = driver.groupby(unique_id.to_numpy(), sort=False).shift(gap)
    return (driver / before.where(before.abs() > 0)).astype(float)
