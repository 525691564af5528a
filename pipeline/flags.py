"""Overrun flags: for every budget line, P(period total > budget) given the actuals so far.

Pure functions on plain data; files are written by :mod:`pipeline.jobs`, the terminal table by
:mod:`pipeline.formatting`.

    flag_run(run, budgets, config=FlagConfig()) -> FlagResult       # from a stored run
    flag_lines(budgets, monthly, paths, path_ids, path_ds, partial=..., config=...) -> DataFrame
    find_anomalies(backtest, selection, level=95) -> DataFrame

``FlagResult.flags`` has one row per budget line: ``period, phase, budget, currency,
actual_to_date, forecast_rest, forecast_total, p50, p80, p95, p_overrun, expected_overrun, status,
months_closed, days_covered, anomaly_months``.

A line's total, one value per path: closed months at their actual cost; the current month and the
months after it from the run's paths conditioned on the month-to-date actuals
(:mod:`pipeline.conditioning`: done once per run on the bottom series, so every line is read off
the same coherent paths and adding a line to the budgets file changes no other line).

``p_overrun`` is the share of paths whose total exceeds the budget; ``expected_overrun`` the mean of
``max(total - budget, 0)``. Status: ``over_budget`` when the actual to date already exceeds the
budget, else ``at_risk`` when ``p >= at_risk`` (0.5), ``watch`` when ``p >= watch`` (0.2), else
``ok``.

**Anomaly** (one definition, the same in every output): a closed month whose actual fell outside
the 95 % interval of the forecast the selected model made for it, at the shortest horizon the
rolling-origin backtest has for that month. Forecasts from failed fits (fallbacks) and intervals
that are not finite never count. The monthly run computes them once and stores ``anomalies``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from pipeline.conditioning import METHODS, PartialMonth, condition_paths, period_totals
from pipeline.errors import InputError, Problem
from pipeline.frames import DS, MODEL, UID, Y, hi_col, lo_col
from pipeline.periods import line_uid, parse_period

if TYPE_CHECKING:
    from pipeline.runstore import ForecastRun

STATUSES = ("ok", "watch", "at_risk", "over_budget")


@dataclass(frozen=True)
class FlagConfig:
    """Thresholds and the partial-month method (``enkf`` or ``proportional``)."""

    watch: float = 0.2
    at_risk: float = 0.5
    partial_method: str = "enkf"
    anomaly_level: int = 95
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0.0 <= self.watch <= self.at_risk <= 1.0:
            raise InputError(
                f"thresholds must satisfy 0 <= watch <= at_risk <= 1. Got watch={self.watch}, at_risk={self.at_risk} instead.",
                fix="e.g. --watch 0.2 --at-risk 0.5",
            )
        if self.partial_method not in METHODS:
            raise InputError(
                f"partial-month method must be one of {METHODS}. Got {self.partial_method!r} instead."
            )


def status_for(p: float, actual: float, budget: float, config: FlagConfig = FlagConfig()) -> str:
    if actual > budget:
        return "over_budget"
    if p >= config.at_risk:
        return "at_risk"
    if p >= config.watch:
        return "watch"
    return "ok"


def find_anomalies(
    backtest: pd.DataFrame | None,
    selection: Any = None,
    level: int = 95,
    previous: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Closed months whose actual fell outside the ``level`` % interval forecast for them.

    Uses the selected model per series (``selection``: a frame ``unique_id, model`` or a mapping)
    at the shortest horizon available for each month; ``previous`` (an earlier run's forecast
    table joined with actuals: ``unique_id, ds, model, y, lo_L, hi_L``) is used for months the
    backtest does not cover.
    """
    cols = [UID, DS, MODEL, "h", Y, MEAN_COL, lo_col(level), hi_col(level), "direction"]
    frames = []
    for src, frame in (("backtest", backtest), ("previous", previous)):
        if frame is None or not len(frame) or lo_col(level) not in frame.columns:
            continue
        f = frame.copy()
        if "h" not in f.columns:
            f["h"] = 0
        f["source"] = src
        frames.append(f)
    if not frames:
        return pd.DataFrame(columns=cols)
    bt = pd.concat(frames, ignore_index=True)
    bt[DS] = pd.to_datetime(bt[DS])
    chosen = _selection_map(selection)
    if chosen:
        bt = bt[[chosen.get(str(u)) == m for u, m in zip(bt[UID], bt[MODEL], strict=True)]]
    bt = bt.dropna(subset=[Y])
    if "fallback" in bt.columns:  # a failed fit's forecast says nothing about the month
        bt = bt[~bt["fallback"].fillna(False).astype(bool)]
    lo_v, hi_v = bt[lo_col(level)].to_numpy(float), bt[hi_col(level)].to_numpy(float)
    bt = bt[np.isfinite(lo_v) & np.isfinite(hi_v) & (lo_v <= hi_v)]
    bt = bt.sort_values([UID, DS, "source", "h"]).drop_duplicates([UID, DS], keep="first")
    lo, hi = bt[lo_col(level)], bt[hi_col(level)]
    out = bt[(bt[Y] < lo) | (bt[Y] > hi)].copy()
    out["direction"] = np.where(out[Y] > out[hi_col(level)], "above", "below")
    # a cost never negative in these months is never expected below 0: an additive band's lower
    # bound under 0 reads as 0 (which months are unusual does not change: no actual is below 0)
    nonneg = bt.groupby(UID)[Y].transform("min").reindex(out.index) >= 0
    out.loc[nonneg, lo_col(level)] = out.loc[nonneg, lo_col(level)].clip(lower=0.0)
    if MEAN_COL not in out.columns:
        out[MEAN_COL] = np.nan
    return out[cols].reset_index(drop=True)


MEAN_COL = "mean"
ANOMALY_COLUMNS = [UID, DS, MODEL, "h", Y, MEAN_COL, lo_col(95), hi_col(95), "direction"]


def _selection_map(selection: Any) -> dict[str, str]:
    if selection is None:
        return {}
    if isinstance(selection, pd.DataFrame):
        if UID in selection.columns and MODEL in selection.columns:
            return {str(u): str(m) for u, m in zip(selection[UID], selection[MODEL], strict=True)}
        return {}
    if isinstance(selection, pd.Series):
        return {str(k): str(v) for k, v in selection.items()}
    if isinstance(selection, dict):
        return {str(k): str(v) for k, v in selection.items()}
    return {}


@dataclass
class FlagResult:
    flags: pd.DataFrame
    anomalies: pd.DataFrame
    as_of: str
    config: FlagConfig = field(default_factory=FlagConfig)

    @property
    def at_risk(self) -> bool:
        """True when any line is at_risk or over_budget (``--fail-on-risk`` exits 3)."""
        return (
            bool(self.flags["status"].isin(["at_risk", "over_budget"]).any())
            if len(self.flags)
            else False
        )


def flag_lines(
    budgets: pd.DataFrame,
    monthly: pd.DataFrame,
    paths: np.ndarray,
    path_ids: Sequence[str],
    path_ds: Sequence[Any],
    *,
    partial: Mapping[str, PartialMonth] | None = None,
    config: FlagConfig = FlagConfig(),
    conditioned: bool = False,
    rerun_hint: str = "phasecast run-monthly --horizon H",
) -> pd.DataFrame:
    """One row per budget line (see the module docstring for the columns). ``paths`` are the
    reconciled paths, conditioned here, or a stored run's conditioned paths (``conditioned``)."""
    partial = dict(partial or {})
    cond = (
        paths
        if conditioned
        else condition_paths(
            paths, path_ids, path_ds, partial, method=config.partial_method, seed=config.seed
        )
    )
    sums = {}
    problems: list[Problem] = []
    fix = ""
    source = budgets.attrs.get("source")
    for p in pd.unique(budgets["period"].astype(str)):
        try:
            sums[p] = period_totals(
                parse_period(p), monthly, cond, path_ids, path_ds, partial, rerun_hint=rerun_hint
            )
        except InputError as exc:  # name the budget lines that ask for it
            asking = np.flatnonzero((budgets["period"].astype(str) == p).to_numpy()) + 1
            problems += [Problem(str(exc.problems[0]), source, int(r), "period") for r in asking]
            fix = exc.fix
    if problems:
        raise InputError(problems, fix=fix)
    rows = []
    for b in budgets.itertuples(index=False):
        pt = sums[str(b.period)]
        actual, totals = pt.of(line_uid(str(b.phase)))
        budget = float(b.amount)
        p = float(np.mean(totals > budget))
        q50, q80, q95 = np.quantile(totals, [0.5, 0.8, 0.95])
        mean = float(np.mean(totals))
        rows.append(
            {
                "period": pt.period.label,
                "phase": str(b.phase),
                "budget": budget,
                "currency": getattr(b, "currency", "USD"),
                "actual_to_date": actual,
                "forecast_rest": mean - actual,
                "forecast_total": mean,
                "p50": float(q50),
                "p80": float(q80),
                "p95": float(q95),
                "p_overrun": p,
                "expected_overrun": float(np.mean(np.clip(totals - budget, 0.0, None))),
                "status": status_for(p, actual, budget, config),
                "months_closed": pt.months_closed,
                "days_covered": pt.days_covered,
            }
        )
    return pd.DataFrame(rows)


def mark_anomalies(flags: pd.DataFrame, anomalies: pd.DataFrame) -> pd.DataFrame:
    """``anomaly_months``: the line's anomalous months (``2026-10;2026-11``), empty when none."""
    flags = flags.copy()
    marks = []
    for row in flags.itertuples(index=False):
        months = parse_period(row.period).months
        uid = line_uid(row.phase)
        a = (
            anomalies[(anomalies[UID] == uid) & pd.to_datetime(anomalies[DS]).isin(months)]
            if len(anomalies)
            else anomalies
        )
        marks.append(";".join(f"{d:%Y-%m}" for d in pd.to_datetime(a[DS])) if len(a) else "")
    flags["anomaly_months"] = marks
    return flags


def flag_budgets(
    budgets: pd.DataFrame,
    monthly: pd.DataFrame,
    paths: np.ndarray,
    path_ids: Sequence[str],
    path_ds: Sequence[Any],
    *,
    as_of: Any = None,
    partial: Mapping[str, PartialMonth] | None = None,
    anomalies: pd.DataFrame | None = None,
    config: FlagConfig = FlagConfig(),
    conditioned: bool = False,
    rerun_hint: str = "phasecast run-monthly --horizon H",
) -> FlagResult:
    """Flag every budget line and mark its anomalous months. Plain data in, :class:`FlagResult` out."""
    anomalies = anomalies if anomalies is not None else pd.DataFrame(columns=ANOMALY_COLUMNS)
    flags = flag_lines(
        budgets,
        monthly,
        paths,
        path_ids,
        path_ds,
        partial=partial,
        config=config,
        conditioned=conditioned,
        rerun_hint=rerun_hint,
    )
    if len(flags):
        flags = mark_anomalies(flags, anomalies)
    label = str(pd.Timestamp(as_of).date()) if as_of is not None else ""
    return FlagResult(flags=flags, anomalies=anomalies, as_of=label, config=config)


def flag_run(
    run: ForecastRun, budgets: pd.DataFrame, config: FlagConfig = FlagConfig()
) -> FlagResult:
    """The flags of a stored run: its conditioned paths, its anomalies; thresholds from ``config``."""
    from pipeline.budget import check_currency

    check_currency(budgets, run.currency)
    if "currency" in budgets.columns:  # a line without a currency is in the forecast's
        source = budgets.attrs.get("source")
        budgets = budgets.assign(currency=budgets["currency"].replace("", run.currency))
        budgets.attrs["source"] = source
    return flag_budgets(
        budgets,
        run.monthly,
        run.conditioned,
        run.path_ids,
        run.path_ds,
        as_of=run.as_of,
        partial=run.partial,
        anomalies=run.anomalies,
        config=config,
        conditioned=True,
        rerun_hint=run.rerun_hint(),
    )
