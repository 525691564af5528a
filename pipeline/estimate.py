"""Plan -> costs: the analytic baseline's arithmetic, as small pure functions.

    phase cost = sum over resources (quantity x duration x unit price)
               + storage GB-months x price + labor hours x hourly rate (+ energy kWh x price)

:func:`estimate_from_plan` turns a :class:`~pipeline.plan.Plan` into one row per phase, category
and month. The analytic baseline model, the ``phasecast estimate`` command and the budget
scenarios all call it, so they agree to the cent.

Conventions (documented because they decide numbers):

* A scheduled run occupies ``[start, start + days)`` continuously; its GPU-hours are split across
  months by the share of the run's time each month covers, each piece priced at the price in force
  on that day (price changes and quantization take effect at 00:00 of their start date).
* Recurring jobs, traffic and headcount are monthly amounts. A price change or quantization that
  starts inside a month applies to the days from its start on (day-weighted).
* Storage: ``gb`` is the stock in the first estimated month, growing by ``growth_per_month``
  (compounded) each month after.
* A pair (phase, category) the plan mentions gets a row for every estimated month (zero where the
  plan has nothing running); the inference traffic rows exist only for months the traffic plan
  lists, so months without a plan fall back to the run-rate in the baseline model.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from pipeline.frames import CATEGORY, DS, PHASE
from pipeline.plan import Plan, PriceBook, month

COST = "cost"
HOURS_PER_DAY = 24.0


# --- the worked-example arithmetic ------------------------------------------------------------
def resource_cost(quantity: float, duration: float, unit_price: float) -> float:
    """Quantity x duration x unit price (duration 1 for a price per unit)."""
    return float(quantity) * float(duration) * float(unit_price)


def energy_kwh(gpus: float, watts: float, hours: float) -> float:
    """Energy in kWh: a quantity (price it with :func:`resource_cost`). 10 x 100 W x 100 h = 100 kWh."""
    return float(gpus) * float(watts) * float(hours) / 1000.0


def storage_cost(gb_months: float, price_per_gb_month: float) -> float:
    """GB-months x price: 150 GB for a month at 0.5 = 75."""
    return float(gb_months) * float(price_per_gb_month)


def labor_cost(people: float, hours: float, hourly_rate: float) -> float:
    """Headcount x hours x rate (hours per person)."""
    return float(people) * float(hours) * float(hourly_rate)


def inference_gpu_hours(requests: float, gpu_hours_per_1k_requests: float) -> float:
    return float(requests) / 1000.0 * float(gpu_hours_per_1k_requests)


def token_cost(tokens: float, price_per_million: float) -> float:
    return float(tokens) / 1e6 * float(price_per_million)


def storage_gb_path(gb: float, growth_per_month: float, months: int) -> np.ndarray:
    """Stock per month: ``gb x (1 + growth)^k`` for k = 0 .. months-1."""
    return float(gb) * (1.0 + float(growth_per_month)) ** np.arange(months, dtype=float)


# --- time helpers ---------------------------------------------------------------------------
def month_range(start: Any, months: int) -> pd.DatetimeIndex:
    return pd.date_range(month(start), periods=int(months), freq="MS")


def _ts(d: dt.date | pd.Timestamp) -> pd.Timestamp:
    return pd.Timestamp(d)


def day_weighted(
    value_on: Callable[[dt.date], float], m: pd.Timestamp, breaks: list[dt.date]
) -> float:
    """Mean over the days of month ``m`` of a step function that changes only at ``breaks``."""
    start, end = m, m + pd.offsets.MonthBegin(1)
    cuts = sorted({start, end, *(_ts(b) for b in breaks if start < _ts(b) < end)})
    total = (end - start).days
    return (
        sum(value_on(a.date()) * (b - a).days for a, b in zip(cuts[:-1], cuts[1:], strict=True))
        / total
    )


def gpu_month_price(book: PriceBook, gpu: str, pricing: str, m: pd.Timestamp) -> float:
    """Day-weighted price per GPU-hour over month ``m`` (price changes apply from their day)."""
    breaks = [c.start for c in book.price_changes if c.gpu == gpu]
    return day_weighted(lambda d: book.gpu_price(gpu, pricing, d), m, breaks)


def run_month_costs(
    run_gpus: int,
    start: dt.date,
    days: float,
    book: PriceBook,
    gpu: str,
    pricing: str,
    months: pd.DatetimeIndex,
) -> np.ndarray:
    """Cost of a continuous run per month of ``months``: GPUs x 24 h x covered days x price."""
    t0 = _ts(start)
    t1 = t0 + pd.Timedelta(days=float(days))
    price_breaks = [_ts(c.start) for c in book.price_changes if c.gpu == gpu]
    out = np.zeros(len(months))
    for i, m in enumerate(months):
        a, b = max(t0, m), min(t1, m + pd.offsets.MonthBegin(1))
        if b <= a:
            continue
        cuts = sorted({a, b, *(p for p in price_breaks if a < p < b)})
        for lo, hi in zip(cuts[:-1], cuts[1:], strict=True):
            span_days = (hi - lo) / pd.Timedelta(days=1)
            out[i] += resource_cost(
                run_gpus, span_days * HOURS_PER_DAY, book.gpu_price(gpu, pricing, lo.date())
            )
    return out


def _active(m: pd.Timestamp, start: pd.Timestamp | None, end: pd.Timestamp | None) -> bool:
    return (start is None or m >= start) and (end is None or m <= end)


# --- the plan -------------------------------------------------------------------------------
STORAGE_FROM = ("plan", "window")


def storage_anchor(plan: Plan) -> pd.Timestamp | None:
    """The month the plan's storage ``gb`` is stocked at: the plan's ``start``, else its earliest
    dated line (:func:`plan_start`); None for a plan with neither."""
    if plan.start is not None:
        return month(plan.start)
    return plan_start(plan)


def estimate_from_plan(
    plan: Plan, start: Any, months: int, storage_from: str = "plan"
) -> pd.DataFrame:
    """Planned cost per ``phase, category, ds`` for ``months`` months from ``start`` (a month).

    The storage stock grows from :func:`storage_anchor` (``storage_from="plan"``), so a month
    costs the same whichever month a caller's window starts at; ``"window"`` grows it from
    ``start`` instead, as versions stored before 2026-12-02 did (the budget's plan column, the
    estimate command and the baseline model then gave three figures for one month's storage, and
    LightGBM's plan feature, read from the history's first month, grew it 36 months too early).

    Returns a frame with columns ``phase, category, ds, cost`` sorted by phase, category, ds.
    """
    if storage_from not in STORAGE_FROM:
        raise ValueError(f"storage_from must be one of {STORAGE_FROM}, got {storage_from!r}")
    idx = month_range(start, months)
    book = plan.price_book
    acc: dict[tuple[str, str], np.ndarray] = {}
    partial: dict[tuple[str, str], dict[pd.Timestamp, float]] = {}

    def add(phase: str, category: str, values: np.ndarray) -> None:
        key = (phase, category)
        acc[key] = acc.get(key, np.zeros(len(idx))) + values

    for run in plan.scheduled_runs:
        add(
            run.phase,
            "compute_gpu",
            run_month_costs(
                run.gpus, run.start, run.duration_days(), book, run.gpu, run.pricing, idx
            ),
        )

    for job in plan.recurring:
        vals = np.zeros(len(idx))
        for i, m in enumerate(idx):
            if not _active(m, job.start, job.end):
                continue
            if job.resource == "gpu":
                if job.gpu is None:
                    raise ValueError(f"recurring job {job.name!r} uses a GPU but names no gpu type")
                price = gpu_month_price(book, job.gpu, job.pricing, m)
            else:
                price = book.cpu_core_hour
            vals[i] = resource_cost(job.quantity, job.hours_per_month, price)
        add(job.phase, "compute_gpu" if job.resource == "gpu" else "compute_cpu", vals)

    t = plan.traffic
    if t is not None:
        gpu_part: dict[pd.Timestamp, float] = {}
        tok_part: dict[pd.Timestamp, float] = {}
        q_breaks = [q.start for q in t.quantization]
        p_breaks = [c.start for c in book.price_changes if c.gpu == t.gpu]
        for m in idx:
            if m not in t.months:
                continue
            req = t.months[m]
            # rate x price changes day by day; requests are spread evenly over the month
            unit = day_weighted(
                lambda d: t.gpu_hours_per_1k(d) * book.gpu_price(t.gpu, t.pricing, d),
                m,
                q_breaks + p_breaks,
            )
            gpu_part[m] = inference_gpu_hours(req, 1.0) * unit
            if t.tokens_per_request:
                tok_part[m] = token_cost(req * t.tokens_per_request, book.tokens_million)
        partial[("inference", "compute_gpu")] = gpu_part
        if t.tokens_per_request:
            partial[("inference", "ai_services")] = tok_part

    s = plan.storage
    if s is not None:
        anchor = storage_anchor(plan) if storage_from == "plan" else None
        if anchor is None:
            gb = storage_gb_path(s.gb, s.growth_per_month, len(idx))
        else:  # months since the anchor (negative before it: the stock it grew from)
            k = np.array([(m.year - anchor.year) * 12 + m.month - anchor.month for m in idx])
            gb = float(s.gb) * (1.0 + float(s.growth_per_month)) ** k.astype(float)
        add(s.phase, "storage", np.array([storage_cost(g, book.storage_gb_month) for g in gb]))

    for hc in plan.headcount:
        add(
            hc.phase,
            "labor",
            np.array(
                [
                    labor_cost(hc.people, hc.hours_per_month, hc.hourly_rate)
                    if _active(m, hc.start, hc.end)
                    else 0.0
                    for m in idx
                ]
            ),
        )

    rows: list[tuple[str, str, pd.Timestamp, float]] = []
    for (ph, cat), vals in acc.items():
        extra = partial.pop((ph, cat), None)
        for m, v in zip(idx, vals, strict=True):
            rows.append((ph, cat, m, float(v) + (extra or {}).get(m, 0.0)))
    for (ph, cat), part in partial.items():
        rows += [(ph, cat, m, float(v)) for m, v in part.items()]
    out = pd.DataFrame(rows, columns=[PHASE, CATEGORY, DS, COST])
    out[DS] = pd.to_datetime(out[DS])
    return out.sort_values([PHASE, CATEGORY, DS], kind="stable").reset_index(drop=True)


# --- what the plan covers -------------------------------------------------------------------
SCHEDULED_RUNS = "scheduled_runs"
RECURRING = "recurring"
TRAFFIC = "traffic"
STORAGE = "storage"
HEADCOUNT = "headcount"
PLAN_SOURCES = (SCHEDULED_RUNS, RECURRING, TRAFFIC, STORAGE, HEADCOUNT)


def _only(plan: Plan, source: str) -> Plan:
    """The plan restricted to one kind of item (same price book)."""
    keep: dict[str, Any] = {
        SCHEDULED_RUNS: (),
        RECURRING: (),
        TRAFFIC: None,
        STORAGE: None,
        HEADCOUNT: (),
    }
    keep[source] = getattr(plan, source)
    return plan.with_changes(**keep)


def plan_sources(plan: Plan, start: Any, months: int) -> dict[tuple[str, str], set[str]]:
    """Which kinds of plan item (:data:`PLAN_SOURCES`) put a non-zero cost on each ``(phase,
    category)`` in the ``months`` months from ``start``. A pair absent from the result is not
    covered by the plan in that window (a pair whose planned cost is zero throughout, e.g. a phase
    whose runs all lie outside the window, is absent too)."""
    out: dict[tuple[str, str], set[str]] = {}
    for src in PLAN_SOURCES:
        if not getattr(plan, src):
            continue
        est = estimate_from_plan(_only(plan, src), start, months)
        hit = est[est[COST].abs() > 0]
        for ph, cat in hit[[PHASE, CATEGORY]].drop_duplicates().itertuples(index=False):
            out.setdefault((str(ph), str(cat)), set()).add(src)
    return out


def plan_start(plan: Plan) -> pd.Timestamp | None:
    """The first month the plan describes: the earliest start of its runs, jobs, headcount lines
    and traffic months (None when nothing in it is dated, e.g. a storage-only plan). Months before
    it are history the plan says nothing about."""
    starts: list[pd.Timestamp] = [month(r.start) for r in plan.scheduled_runs]
    starts += [j.start for j in plan.recurring if j.start is not None]
    starts += [h.start for h in plan.headcount if h.start is not None]
    if plan.traffic is not None and plan.traffic.months:
        starts.append(min(pd.Timestamp(m) for m in plan.traffic.months))
    return min(starts) if starts else None
