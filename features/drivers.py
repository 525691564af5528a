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


def driven_ids(hist: pd.DataFrame) -> list[str]:
    """Series with a driver column above zero somewhere in their history."""
    cols = [c for c in driver_columns(hist) if c not in (PHASE, "category")]
    if not cols:
        return []
    on = (hist[cols].fillna(0.0) > 0).any(axis=1)
    return [str(u) for u in pd.unique(hist.loc[on, UID])]


def driver_ratio(driver: pd.Series, unique_id: pd.Series, gap: int = 1) -> pd.Series:
    """Driver at the row's month over its value ``gap`` months before (scale-free, so one global
    model can use drivers of series of very different sizes). A driver is known in the future, so
    its own month is allowed; the denominator respects the cutoff."""
    if gap < 1:
        raise ValueError(f"gap must be >= 1. Got {gap} instead.")
    before = driver.groupby(unique_id.to_numpy(), sort=False).shift(gap)
    return (driver / before.where(before.abs() > 0)).astype(float)


def extend_driver(known: pd.Series, months: pd.DatetimeIndex) -> np.ndarray:
    """The driver over ``months`` (monthly, indexed by ``ds``): its known value where there is one
    (history, then the plan), else its value a year before grown by the last year's change (the sum
    of the last 12 known months over the 12 before them, kept within 0.5-2), else the last known
    value. Filled month by month, so a month filled once can seed the one a year later."""
    s = known.dropna()
    s = s[~s.index.duplicated(keep="last")].sort_index()
    if s.empty:
        return np.zeros(len(months))
    growth = 1.0
    if len(s) >= 24:
        a, b = float(s.iloc[-12:].sum()), float(s.iloc[-24:-12].sum())
        growth = float(np.clip(a / b, 0.5, 2.0)) if b > 0 else 1.0
    vals = dict(zip(pd.DatetimeIndex(s.index), s.to_numpy(float), strict=True))
    out = np.empty(len(months))
    for k, m in enumerate(months):
        if m not in vals:
            before = m - pd.DateOffset(months=12)
            vals[m] = vals[before] * growth if before in vals else float(s.iloc[-1])
        out[k] = vals[m]
    return out


TRAFFIC_DRIVER = "requests"
TRAFFIC_PHASE = "inference"


def plan_unit_change(plan: Plan, months: pd.DatetimeIndex, ref: pd.Timestamp) -> np.ndarray:
    """The plan's GPU cost per request in each month over that of month ``ref``: GPU-hours per 1k
    requests (after its quantizations) x the price book's GPU price, day-weighted. 1 everywhere
    when neither changes."""
    from pipeline.estimate import day_weighted

    t = plan.traffic
    if t is None:
        return np.ones(len(months))
    book = plan.price_book
    breaks = [q.start for q in t.quantization] + [
        c.start for c in book.price_changes if c.gpu == t.gpu
    ]

    def unit(m: pd.Timestamp) -> float:
        return day_weighted(
            lambda d: t.gpu_hours_per_1k(d) * book.gpu_price(t.gpu, t.pricing, d), m, breaks
        )

    base = unit(ref)
    if base <= 0:
        return np.ones(len(months))
    return np.array([unit(m) / base for m in months])


def with_requests(monthly: pd.DataFrame, requests_hist: pd.Series) -> pd.DataFrame:
    """The series frame with the month's requests on the ``inference`` series (0 elsewhere): what
    ``phasecast series`` writes, so that ``forecast --series --plan`` can build the same driver as
    the monthly run (:func:`requests_of`, :func:`traffic_frames`). Unchanged without requests."""
    from pipeline.frames import parse_hierarchy_id

    if requests_hist is None or not (requests_hist > 0).any() or monthly.empty:
        return monthly
    req = requests_hist.copy()
    req.index = pd.DatetimeIndex(req.index)
    on = monthly[UID].map(lambda u: parse_hierarchy_id(str(u))[0] == TRAFFIC_PHASE).to_numpy(bool)
    out = monthly.copy()
    out[TRAFFIC_DRIVER] = np.where(on, pd.to_datetime(out[DS]).map(req).fillna(0.0), 0.0)
    return out


def requests_of(df: pd.DataFrame) -> pd.Series | None:
    """Requests per month back from a frame written by :func:`with_requests` (None without)."""
    if TRAFFIC_DRIVER not in df.columns:
        return None
    v = pd.to_numeric(df[TRAFFIC_DRIVER], errors="coerce").fillna(0.0)
    per_month = v.groupby(pd.to_datetime(df[DS]).to_numpy()).max()
    per_month.index = pd.DatetimeIndex(per_month.index, name=DS)
    return per_month[per_month > 0]


def traffic_frames(
    monthly: pd.DataFrame, requests_hist: pd.Series, plan: Plan | None, horizon: int
) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """The series frame with a ``requests`` driver on the inference series, and the future driver rows.

    ``requests_hist``: requests per month (``ds`` index) from the usage metrics; after its last
    month the traffic plan's months, and :func:`extend_driver` for months the plan does not cover.
    The ``inference`` series and its categories get it (others 0: no driver), on GPU categories
    (``gpu`` in the name) times the plan's change of GPU cost per request since the last history
    month (:func:`plan_unit_change`: quantizations, GPU price changes), on ``inference`` itself
    times that change weighted by the GPU categories' share of its last three months. Returns the
    frame with the column and the future rows (``unique_id, ds, requests``, the ``horizon`` months
    after each series' last); without a usage history of requests or a traffic plan, ``(monthly,
    None)``."""
    from pipeline.frames import parse_hierarchy_id

    req = requests_hist[requests_hist > 0] if requests_hist is not None else pd.Series(dtype=float)
    if plan is None or plan.traffic is None or not plan.traffic.months or req.empty:
        return monthly, None
    ids = pd.Series(pd.unique(monthly[UID]), dtype=object)
    parsed = ids.map(lambda u: parse_hierarchy_id(str(u)))
    driven = ids[parsed.map(lambda pc: pc[0] == TRAFFIC_PHASE)]
    if driven.empty:
        return monthly, None
    req = req.copy()
    req.index = pd.DatetimeIndex(req.index)
    planned = pd.Series(
        {pd.Timestamp(m): float(v) for m, v in plan.traffic.months.items()}, dtype=float
    )
    known = pd.concat([req, planned[planned.index > req.index.max()]]).sort_index()
    last = monthly.groupby(UID, sort=False)[DS].max()
    ref = pd.Timestamp(last.max())
    # share of the GPU categories in the phase's last three months (for the phase's own series)
    cats = monthly[UID].map(dict(zip(ids, parsed.map(lambda pc: pc[1]), strict=True)))
    in_phase = monthly[UID].isin(set(driven)) & cats.notna()
    recent = monthly[in_phase & (monthly[DS] > ref - pd.DateOffset(months=3))]
    gpu = cats[recent.index].astype(str).str.contains("gpu")
    total = float(recent[Y].sum())
    share = float(recent.loc[gpu, Y].sum()) / total if total > 0 else 0.0

    def weight(uid: str) -> float:
        cat = parse_hierarchy_id(uid)[1]
        return share if cat is None else float("gpu" in cat)

    out = monthly.copy()
    out[TRAFFIC_DRIVER] = 0.0
    rows = []
    for uid in driven:
        w = weight(str(uid))
        on = (out[UID] == uid).to_numpy()
        hist_ds = pd.DatetimeIndex(out.loc[on, DS])
        f_hist = 1.0 + w * (plan_unit_change(plan, hist_ds, ref) - 1.0)
        out.loc[on, TRAFFIC_DRIVER] = hist_ds.map(req).fillna(0.0).to_numpy(float) * f_hist
        months = pd.date_range(last[uid] + pd.DateOffset(months=1), periods=int(horizon), freq="MS")
        f = 1.0 + w * (plan_unit_change(plan, months, ref) - 1.0)
        rows.append(
            pd.DataFrame({UID: uid, DS: months, TRAFFIC_DRIVER: extend_driver(known, months) * f})
        )
    return out, pd.concat(rows, ignore_index=True)
