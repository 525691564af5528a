"""Plan-driven series: where the plan, not a backtested model, is the forecast.

Plan-driven series (:func:`plan_overrides`). The backtest cannot see what a plan knows: the plan
only describes months after the history, so a model chosen by backtest MASE ignores a scheduled
pre-training run (and forecasts the average of past bursts in months the plan leaves empty). When
a plan is given, a bottom series ``<phase>/<category>`` for which
:func:`pipeline.estimate.estimate_from_plan` yields cost in the series' forecast horizon is
classified by the plan items that cost comes from (:func:`pipeline.estimate.plan_sources`):

* **scheduled runs** (bursty, plan-only: pre-training, optimization jobs): the plan *is* the
  forecast. The published model is the analytic baseline (the plan's arithmetic, gpus x days x
  24 x price; run-rate for months the plan does not cover), reason ``plan-driven: scheduled runs
  in the plan``.
* **steady items** (recurring jobs, traffic, storage, headcount): the plan replaces the models
  only when it can be checked against the history and passes (``plan_tolerance``, default 10 %):
  where the plan covers closed months (its first dated item is before the series' last month),
  its WAPE over those months; otherwise, for headcount-only series (labor is billed as headcount x
  hours x rate, with no seasonality), the plan's first month against the last actual month.
  Metered usage (traffic, jobs, storage) without covered history keeps the models: the first
  planned month cannot be compared with the last actual one (promotion peaks, seasonality), and
  the models' backtest is the only evidence of accuracy there is. The reason says which.

Between its runs a scheduled-runs series still costs something the plan does not describe
(evaluation jobs, debugging GPUs, checkpoint copies): the published forecast adds it on top of the
plan, each month resampled from the months between runs of the last year (those at most twice
the median month; none for a series that cost nothing between its runs), so its mean is their mean
and its spread theirs. Measured on generated hierarchies whose pre-training series cost 1-3k a
month between runs (``phasecast evaluate``), the plan alone (zero between runs) put 80 % coverage
at 0.53-0.63.

Intervals of a plan-driven series are a relative error of the plan around its mean: relative sd
``plan_rel_sd x sqrt(h / 3)`` (10 % at 3 months, 17 % at 9, 24 % at 18), half of it common to all
months of a path (a plan that is wrong tends to be wrong throughout: price, run length) and half
month by month; paths are ``mean x max(0, 1 + e)``, so bounds nest and a month the plan leaves
empty stays empty. Reconciliation: plan-driven series are taken out of MinT (their base forecast
and paths set to zero and their residuals shrunk, so MinT leaves them at zero; each ancestor's base
forecast and paths lose what the model would have forecast for them, leaving the ancestor's own
estimate of the rest), the rest of the hierarchy is reconciled as before, and the plan paths are
added back through the summing matrix, so every level stays coherent path by path. Without
reconciliation the ancestors are shifted by (plan - model) of their plan-driven descendants.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipeline.estimate import (
    COST,
    HEADCOUNT,
    SCHEDULED_RUNS,
    estimate_from_plan,
    plan_sources,
    plan_start,
)
from pipeline.frames import CATEGORY, DS, PHASE, UID, Y, parse_hierarchy_id
from pipeline.plan import Plan

RUNS_REASON = "plan-driven: scheduled runs in the plan (bursts no backtest can see)"
# checked against the last actual month only: the backtest's windows saw no headcount plan either
HEADCOUNT_REASON = "plan-driven: headcount in the plan"


def _next_month(ts: pd.Timestamp) -> pd.Timestamp:
    return pd.Timestamp(ts) + pd.DateOffset(months=1)


def plan_overrides(
    hist: pd.DataFrame,
    plan: Plan | None,
    horizon: int,
    tolerance: float = 0.10,
    from_start: bool = True,
) -> dict[str, tuple[bool, str]]:
    """``unique_id -> (plan_driven, note)`` for the bottom series the plan covers in their horizon
    (the rule is in the module docstring). Series the plan does not cover are absent.

    ``from_start``: headcount is checked at the plan's first month on or after the month after
    the history, not at a month before the plan begins (which the plan prices at 0: the demo's run
    of 2026-10-15 found every labor line "100 % off" and kept the models, 94k over the plan in
    2027Q1); False for versions stored before 2026-12-02."""
    if plan is None or hist.empty:
        return {}
    last = hist.groupby(UID, sort=False)[DS].max()
    p0 = plan_start(plan)
    by_last: dict[pd.Timestamp, dict[tuple[str, str], set[str]]] = {}
    ahead: dict[pd.Timestamp, pd.DataFrame] = {}  # the plan's months after each history's end
    out: dict[str, tuple[bool, str]] = {}
    for uid, last_ds in last.items():
        phase, cat = parse_hierarchy_id(str(uid))
        if phase is None or cat is None:
            continue
        if last_ds not in by_last:
            by_last[last_ds] = plan_sources(plan, _next_month(last_ds), horizon)
        srcs = by_last[last_ds].get((phase, cat))
        if not srcs:
            continue
        names = ", ".join(sorted(s.replace("_", " ") for s in srcs))
        if SCHEDULED_RUNS in srcs:
            out[str(uid)] = (True, RUNS_REASON)
            continue
        y = hist.loc[hist[UID] == uid].set_index(DS)[Y].sort_index()
        if p0 is not None and p0 <= last_ds:
            n = (last_ds.year - p0.year) * 12 + last_ds.month - p0.month + 1
            est = estimate_from_plan(plan, p0, n)
            est = est[(est[PHASE] == phase) & (est[CATEGORY] == cat)].set_index(DS)[COST]
            both = pd.concat([est, y], axis=1, join="inner").dropna()
            if len(both):
                den = float(both[Y].abs().sum())
                wape = float((both[COST] - both[Y]).abs().sum()) / den if den > 0 else np.inf
                ok = wape <= tolerance
                out[str(uid)] = (
                    ok,
                    (f"plan-driven: {names} in the plan, " if ok else f"plan ({names}) ")
                    + f"{'matched' if ok else 'missed'} the {len(both)} closed month(s) it covers "
                    + f"(WAPE {wape:.1%}, tolerance {tolerance:.0%})"
                    + ("" if ok else ": models kept"),
                )
                continue
        if srcs == {HEADCOUNT} and len(y):
            if last_ds not in ahead:
                ahead[last_ds] = estimate_from_plan(plan, _next_month(last_ds), horizon)
            line = ahead[last_ds]
            line = line[(line[PHASE] == phase) & (line[CATEGORY] == cat)].sort_values(DS)
            if from_start:  # the first month the plan prices this line (within the horizon)
                line = line[line[COST] != 0]
            first = line[COST].iloc[:1]
            ref = float(y.iloc[-1])
            if len(first) and ref != 0:
                rel = abs(float(first.iloc[0]) - ref) / abs(ref)
                ok = rel <= tolerance
                out[str(uid)] = (
                    ok,
                    (f"{HEADCOUNT_REASON} (first month within {rel:.1%} of the last actual)")
                    if ok
                    else (
                        f"plan (headcount) is {rel:.1%} off the last actual month "
                        f"(tolerance {tolerance:.0%}): models kept"
                    ),
                )
                continue
        out[str(uid)] = (
            False,
            f"plan ({names}) covers no closed month to check it against: models kept",
        )
    return out
