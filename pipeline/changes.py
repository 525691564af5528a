"""What changed since the previous run: a quarter's forecast, this run against the last one, split
into the parts a finance team asks about. Pure functions on two stored runs; no I/O.

For a quarter Q and a phase (and the total), with E[.] the mean over a run's stored conditioned
paths (closed months at their actual; the same number as the ``mean`` column of ``budget-<Q>.csv``):

    change = E_now[Q] - E_prev[Q] = new_actuals + plan_changes + model_changes

* ``new_actuals``: over the months of Q that are **closed in this run**, the actual now minus what
  the previous run had for that month (its forecast mean when the month was still open then, its
  actual when it was closed already: a restated bill shows up here too);
* ``plan_changes``: over the months of Q still open in this run, the plan's own arithmetic
  (:func:`pipeline.estimate.estimate_from_plan`, usage x unit price) of this run's plan minus the
  previous run's plan: new prices, new scheduled runs, traffic and headcount plans. Zero when either
  run has no plan;
* ``model_changes``: the rest, ``change - new_actuals - plan_changes``: what the models now say
  about the open months beyond the plan's arithmetic (re-fitted on the new month, another model
  selected, the month to date).

So the three parts add up to the change exactly (the last is defined as the remainder), per phase;
the total's row is the sum of the phases' rows.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from pipeline.conditioning import period_totals
from pipeline.errors import InputError
from pipeline.frames import DS, PHASE, PHASES, TOTAL, UID, Y
from pipeline.periods import Period
from pipeline.tables import relative_change

COLUMNS = (
    "period",
    "phase",
    "previous_as_of",
    "previous_mean",
    "new_actuals",
    "plan_changes",
    "model_changes",
    "current_mean",
    "change",
    "change_pct",
    "months_closed_since",
    "currency",
)


def _closed(run: Any) -> set[pd.Timestamp]:
    current = {pm.month for pm in run.partial.values()}
    return {pd.Timestamp(m) for m in pd.to_datetime(run.monthly[DS]).unique()} - current


def _month_means(run: Any, uid: str, months: Sequence[pd.Timestamp]) -> dict[pd.Timestamp, float]:
    """Per month of ``months``: the run's actual when closed, else its conditioned path mean."""
    closed = _closed(run)
    m = run.monthly
    act = m[m[UID] == uid]
    actual = dict(zip(pd.to_datetime(act[DS]), act[Y].astype(float), strict=True))
    pos = {pd.Timestamp(d): k for k, d in enumerate(run.path_ds)}
    out = {}
    i = run.path_ids.index(uid) if uid in run.path_ids else None
    for month in months:
        if month in closed:
            out[month] = actual.get(month, 0.0)
        elif i is not None and month in pos:
            out[month] = float(np.mean(run.conditioned[i, :, pos[month]]))
        else:
            out[month] = float("nan")
    return out


def _plan_by_phase(plan: Any, months: Sequence[pd.Timestamp], start: pd.Timestamp) -> pd.Series:
    """The plan's cost per phase over ``months`` (estimated from ``start``, the quarter's start, so
    that both plans' storage stock grows from the same month)."""
    from pipeline.estimate import estimate_from_plan

    if plan is None or not months:
        return pd.Series(dtype=float)
    n = int((max(months).year - start.year) * 12 + max(months).month - start.month + 1)
    est = estimate_from_plan(plan, start, n)
    est = est[pd.to_datetime(est[DS]).isin(list(months))]
    return est.groupby(PHASE)["cost"].sum()


def quarter_changes(current: Any, previous: Any, period: Period) -> pd.DataFrame:
    """The rows of ``changes.csv`` for one quarter (see the module docstring); empty when the
    previous run does not reach the quarter."""
    try:
        now = period_totals(
            period,
            current.monthly,
            current.conditioned,
            current.path_ids,
            current.path_ds,
            current.partial,
        )
        before = period_totals(
            period,
            previous.monthly,
            previous.conditioned,
            previous.path_ids,
            previous.path_ds,
            previous.partial,
        )
    except InputError:
        return pd.DataFrame(columns=list(COLUMNS))
    closed_now, closed_before = _closed(current), _closed(previous)
    newly = [m for m in period.months if m in closed_now]
    open_now = [m for m in period.months if m not in closed_now]
    since = [m for m in period.months if m in closed_now and m not in closed_before]
    both = current.plan_text is not None and previous.plan_text is not None
    plan_now = _plan_by_phase(current.plan() if both else None, open_now, period.start)
    plan_before = _plan_by_phase(previous.plan() if both else None, open_now, period.start)
    ids = set(current.path_ids) | set(previous.path_ids)
    rows = []
    for phase in [p for p in PHASES if p in ids]:
        prev_mean = float(np.mean(before.of(phase)[1]))
        cur_mean = float(np.mean(now.of(phase)[1]))
        a_now = _month_means(current, phase, newly)
        a_before = _month_means(previous, phase, newly)
        actuals = float(sum(a_now[m] - a_before[m] for m in newly if math.isfinite(a_before[m])))
        plan = float(plan_now.get(phase, 0.0) - plan_before.get(phase, 0.0)) if both else 0.0
        rows.append(
            {
                "period": period.label,
                "phase": phase,
                "previous_as_of": previous.as_of,
                "previous_mean": prev_mean,
                "new_actuals": actuals,
                "plan_changes": plan,
                "model_changes": cur_mean - prev_mean - actuals - plan,
                "current_mean": cur_mean,
                "change": cur_mean - prev_mean,
                "months_closed_since": ";".join(f"{m:%Y-%m}" for m in since),
            }
        )
    out = pd.DataFrame(rows)
    if len(out):
        parts = ["previous_mean", "new_actuals", "plan_changes", "model_changes", "current_mean"]
        total = {c: float(out[c].sum()) for c in parts}
        total["change"] = total["current_mean"] - total["previous_mean"]
        head = {
            "period": period.label,
            "phase": TOTAL,
            "previous_as_of": previous.as_of,
            **total,
            "months_closed_since": ";".join(f"{m:%Y-%m}" for m in since),
        }
        out = pd.concat([pd.DataFrame([head]), out], ignore_index=True)
        out["change_pct"] = [
            relative_change(c, p) for c, p in zip(out["change"], out["previous_mean"], strict=True)
        ]
        out["currency"] = current.currency
    return out.reindex(columns=list(COLUMNS))


def run_changes(current: Any, previous: Any, quarters: Sequence[Period]) -> pd.DataFrame:
    """``changes.csv``: :func:`quarter_changes` for every planned quarter the previous run reaches."""
    frames = [quarter_changes(current, previous, q) for q in quarters]
    frames = [f for f in frames if len(f)]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=list(COLUMNS))


def largest_reason(row: Any) -> str:
    """The biggest of the three parts of a row, in words (for the report's first screen)."""
    parts = {
        "new actuals": float(row["new_actuals"]),
        "price and plan changes": float(row["plan_changes"]),
        "the models' update": float(row["model_changes"]),
    }
    name, value = max(parts.items(), key=lambda kv: abs(kv[1]))
    if abs(value) < 0.5:
        return "no change"
    return f"mostly {name} ({value:+,.0f})"
