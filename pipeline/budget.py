"""Quarterly budget planning: P50/P80/P95 of a period's cost from the stored run's paths.

Pure functions: budgets in, tables out (files are written by :mod:`pipeline.jobs`, the terminal
table by :mod:`pipeline.formatting`).

A period's quantiles are quantiles of **sums over the period's months of each sample path**, never
sums of monthly quantiles. Closed months count with their actual cost; the current, partly observed
month and the months after it come from the run's conditioned paths
(:mod:`pipeline.conditioning`), so every path is coherent: for each path, total = sum of phases, and
the ``mean`` column adds up from the phases to the total.

    load_budgets(path) -> DataFrame[period, phase, amount, currency]
    quarter_table(quarter, monthly, paths, path_ids, path_ds, ...) -> DataFrame
    budget_table(run, quarter, budgets=None, quantile=0.8) -> DataFrame   # from a stored run

``quarter_table`` columns: ``period, phase, actual_to_date, mean, p50, p80, p95, baseline,
plan_estimate, budget, p_overrun, recommended, quantile, last_quarter, last_quarter_actual,
change_vs_last_quarter, currency`` (``phase`` is ``total`` for the whole). ``baseline`` is the
analytic baseline model's forecast summed over the period (closed months at their actual), the
figure to hold P50 against; ``plan_estimate`` is the plan's arithmetic alone
(:func:`pipeline.estimate.estimate_from_plan`) for the open months plus the closed months' actuals,
the number scenarios change exactly. A quarter whose every month is billed
(:func:`quarter_closed`) has its actuals in every column and no ``recommended`` (NaN).
"""

from __future__ import annotations

import difflib
import logging
import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from pipeline.conditioning import PartialMonth, condition_paths, period_totals
from pipeline.errors import InputError, Problem
from pipeline.frames import DS, PHASES, TOTAL, UID, Y, parse_hierarchy_id
from pipeline.periods import Period, line_uid, months_until, parse_period, quarter_of
from pipeline.tables import relative_change

if TYPE_CHECKING:
    from pipeline.runstore import ForecastRun

log = logging.getLogger(__name__)

__all__ = [
    "BUDGET_COLUMNS",
    "Period",
    "budget_table",
    "check_currency",
    "line_uid",
    "load_budgets",
    "months_until",
    "nice_ceil",
    "parse_period",
    "period_samples",
    "quantiles_of_sums",
    "quarter_table",
    "validate_budgets",
]

BUDGET_COLUMNS = ("period", "phase", "amount", "currency")
DEFAULT_QUANTILES: tuple[float, ...] = (0.5, 0.8, 0.95)


# --- budgets file -----------------------------------------------------------------------------
def load_budgets(path: str | Path) -> pd.DataFrame:
    """Read ``period,phase,amount,currency``; every bad row is reported at once (file, row, column)."""
    path = Path(path)
    _check_fields(path)
    try:
        raw = pd.read_csv(path, dtype=str, keep_default_na=False, index_col=False)
    except FileNotFoundError as exc:
        raise InputError(
            Problem("file not found", str(path)), fix="pass an existing budgets CSV"
        ) from exc
    except pd.errors.ParserError as exc:
        raise InputError(
            Problem(f"not a well-formed CSV: {str(exc).strip()}", str(path)),
            fix="one budget per row with exactly the header's columns: period,phase,amount,currency",
        ) from exc
    except pd.errors.EmptyDataError as exc:
        raise InputError(
            Problem("the file is empty", str(path)),
            fix="write a header period,phase,amount,currency",
        ) from exc
    return validate_budgets(raw, source=str(path))


def _check_fields(path: Path) -> None:
    """Every row has as many fields as the header (a ``1,000`` amount makes one more)."""
    import csv

    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            rows = list(csv.reader(fh))
    except FileNotFoundError:
        return  # reported by the reader below
    except (UnicodeDecodeError, csv.Error) as exc:
        raise InputError(
            Problem(f"not a readable CSV: {exc}", str(path)),
            fix="save the budgets as a UTF-8 CSV: period,phase,amount,currency",
        ) from exc
    rows = [r for r in rows if any(c.strip() for c in r)]
    if not rows:
        return
    head = rows[0]
    problems = []
    if len(head) == 1 and ";" in head[0]:
        problems.append(Problem("the columns are separated by ';'", str(path)))
    problems += [
        Problem(
            f"{len(r)} fields where the header has {len(head)}",
            str(path),
            i,
            hint_column(head, r),
        )
        for i, r in enumerate(rows[1:], start=1)
        if len(r) != len(head)
    ][:20]
    if problems:
        raise InputError(
            problems,
            fix="separate fields with commas and write amounts without thousands separators "
            "(1000, not 1,000) or quote them",
        )
    if len(rows) == 1:
        raise InputError(
            Problem("the file has a header but no budget lines", str(path)),
            fix="add one line per budget: period,phase,amount,currency (e.g. 2027Q1,total,2400000,USD)",
        )


def hint_column(head: list[str], row: list[str]) -> str | None:
    """The first column whose value does not fit, when the row has more fields than the header."""
    names = [h.strip().lower() for h in head]
    return "amount" if "amount" in names and len(row) > len(head) else None


# plain digits (a decimal point, an exponent: 1e12), or thousands grouped by commas in threes
_AMOUNT = re.compile(r"^(\d+(\.\d*)?([eE][+-]?\d+)?|\.\d+|\d{1,3}(,\d{3})+(\.\d+)?)$")


def _amount(text: object) -> float | None:
    """A budget amount, or None when it is not one. Only a comma between groups of three digits
    is dropped: "574.500,00" (a European export) used to lose its comma and read as 574.5."""
    if isinstance(text, int | float) and not isinstance(text, bool):
        v = float(text)
        return v if math.isfinite(v) and v >= 0 else None
    t = str(text).strip()
    if not _AMOUNT.match(t):
        return None
    return float(t.replace(",", ""))


def validate_budgets(raw: pd.DataFrame, source: str = "budgets") -> pd.DataFrame:
    """Check a budgets frame; return it with ``amount`` as float and ``period`` normalized."""
    raw = raw.rename(columns={c: c.strip().lower() for c in raw.columns})
    missing = [c for c in ("period", "phase", "amount") if c not in raw.columns]
    if missing:
        raise InputError(
            Problem(f"missing column(s) {missing}; found {list(raw.columns)}", source),
            fix="the budgets file needs the columns period,phase,amount (and currency, optional: "
            "left out, the amounts are in the forecast's currency)",
        )
    problems: list[Problem] = []
    periods: list[str | None] = []
    amounts: list[float] = []
    for i, row in enumerate(raw.itertuples(index=False), start=1):
        try:
            periods.append(parse_period(row.period).label)
        except InputError:
            periods.append(None)
            problems.append(
                Problem(
                    f"cannot read period {row.period!r} (YYYY-MM or YYYYQn)", source, i, "period"
                )
            )
        phase = str(row.phase).strip()
        if phase != TOTAL and phase not in PHASES:
            near = difflib.get_close_matches(phase.lower(), [TOTAL, *PHASES], n=1)
            problems.append(
                Problem(
                    f"unknown phase {phase!r}"
                    + (f" (did you mean {near[0]}?)" if near else "")
                    + f"; expected total or one of {', '.join(PHASES)}",
                    source,
                    i,
                    "phase",
                )
            )
        amount = _amount(row.amount)
        amounts.append(float("nan") if amount is None else amount)
        if amount is None:
            text = str(row.amount).strip()
            why = (
                "a budget cannot be negative"
                if text.startswith("-")
                else "a decimal comma such as 574.500,00 is not read: it would be another amount"
                if "," in text
                else "write it as 2395000, 2395000.50 or 2,395,000.50"
            )
            problems.append(
                Problem(
                    f"amount must be a non-negative number, got {row.amount!r} ({why})",
                    source,
                    i,
                    "amount",
                )
            )
    if "currency" not in raw.columns:
        log.warning(
            "%s has no currency column: its amounts are read in the forecast's currency "
            "(add a column currency, e.g. USD, to have each line checked against it)",
            source,
        )
    out = pd.DataFrame(
        {
            "period": periods,
            "phase": raw["phase"].astype(str).str.strip().to_numpy(),
            "amount": amounts,
            # a line without a currency is in the forecast's currency (checked when compared)
            "currency": raw["currency"].astype(str).str.strip().str.upper().to_numpy()
            if "currency" in raw.columns
            else "",
        }
    )
    # a second line for the same period and phase, told with the other problems (not after them)
    dup = out.duplicated(["period", "phase"], keep="first") & out["period"].notna()
    first_row = {
        key: int(k) + 1
        for k, key in reversed(list(enumerate(zip(out["period"], out["phase"], strict=True))))
    }
    for k, (per, ph) in zip(
        np.flatnonzero(dup.to_numpy()),
        out.loc[dup, ["period", "phase"]].itertuples(index=False),
        strict=False,
    ):
        problems.append(
            Problem(
                f"second budget for {per} / {ph} (the first is data row {first_row[(per, ph)]})",
                source,
                int(k) + 1,
            )
        )
    if problems:
        problems.sort(key=lambda pr: pr.row or 0)
        raise InputError(
            problems,
            fix="one budget per row and one row per period and phase: period (2027-01 or "
            "2027Q1), phase (or total), amount, currency",
        )
    _warn_month_above_quarter(out, source)
    _warn_phases_above_total(out, source)
    out.attrs["source"] = source
    return out


def _warn_phases_above_total(budgets: pd.DataFrame, source: str) -> None:
    """A period whose phase budgets add up to more than its total budget (the demo's 2026Q4:
    1,828,600 against 1,750,800) can have every phase ``ok`` and the total ``at_risk`` on the
    same forecast: legal (the total may be the binding one), but said once per period. Phases
    adding up to less is normal (a phase without a line, a reserve)."""
    for period, g in budgets.groupby("period", sort=False):
        total = g.loc[g["phase"] == TOTAL, "amount"]
        parts = g.loc[g["phase"] != TOTAL, "amount"]
        if len(total) and len(parts) and float(parts.sum()) > float(total.iloc[0]) + 0.5:
            log.warning(
                "%s: the phase budgets of %s add up to %s, more than its total budget %s; the "
                "total's flag reads against the smaller figure",
                source,
                period,
                f"{float(parts.sum()):,.0f}",
                f"{float(total.iloc[0]):,.0f}",
            )


def _warn_month_above_quarter(budgets: pd.DataFrame, source: str) -> None:
    """A month budgeted above its whole quarter (same phase) reads ``ok`` for the month and
    ``at_risk`` for the quarter on the same money: legal, but almost surely a mistake, said once."""
    rows = list(budgets[["period", "phase", "amount"]].itertuples(index=False))
    quarters = {(p, ph): (a, i + 1) for i, (p, ph, a) in enumerate(rows) if "Q" in p}
    for i, (p, ph, a) in enumerate(rows):
        q = quarter_of(parse_period(p).start)
        limit = quarters.get((q.label, ph)) if "Q" not in p else None
        if limit is not None and a > limit[0]:
            log.warning(
                "%s: data row %d budgets %s %s at %s, more than the whole %s (%s, data row %d);"
                " one of the two is likely a mistake",
                source,
                i + 1,
                p,
                ph,
                f"{a:,.0f}",
                q.label,
                f"{limit[0]:,.0f}",
                limit[1],
            )


# --- sample-path arithmetic -------------------------------------------------------------------
def check_currency(budgets: pd.DataFrame, currency: str, source: str = "budgets") -> None:
    """Budgets are compared with costs of one currency: a line in another one is an input error
    (:func:`pipeline.currency.check_budget_currency`)."""
    from pipeline.currency import check_budget_currency

    if budgets is not None and len(budgets) and "currency" in budgets.columns:
        given = budgets["currency"].astype(str).str.strip()
        check_budget_currency(
            given.where(given != "", currency), currency, budgets.attrs.get("source", source)
        )


def quantiles_of_sums(
    paths: np.ndarray, cols: Sequence[int], qs: Sequence[float] = DEFAULT_QUANTILES
) -> np.ndarray:
    """Quantiles over paths of the sum over ``cols`` (months): shape (n_series, len(qs))."""
    sums = paths[:, :, list(cols)].sum(axis=2)
    return np.quantile(sums, list(qs), axis=1).T


def period_samples(
    uid: str,
    period: Period,
    actuals: Mapping[tuple[str, pd.Timestamp], float],
    paths: np.ndarray,
    path_ids: Sequence[str],
    path_ds: Sequence[Any],
    partial: PartialMonth | None = None,
    *,
    method: str = "enkf",
    seed: int = 0,
) -> tuple[float, float, np.ndarray]:
    """One node's period totals, one per path: ``(actual_to_date, forecast_rest_mean, totals)``
    (a convenience over :func:`pipeline.conditioning.period_totals` for one series)."""
    monthly = pd.DataFrame(
        [(u, m, v) for (u, m), v in actuals.items()], columns=[UID, DS, Y]
    ).astype({Y: float})
    pm = {uid: partial} if partial is not None else {}
    cond = condition_paths(paths, path_ids, path_ds, pm, method=method, seed=seed)
    pt = period_totals(period, monthly, cond, path_ids, path_ds, pm)
    actual, totals = pt.of(uid)
    return actual, float(np.mean(totals) - actual), totals


def _last_closed(period: Period, actuals: set[pd.Timestamp]) -> Period:
    """The latest closed period of the same kind before this one."""
    prev = period.previous()
    for _ in range(4):
        if all(m in actuals for m in prev.months):
            break
        prev = prev.previous()
    return prev


def _baseline_total(
    uid: str,
    period: Period,
    actuals: dict[tuple[str, pd.Timestamp], float],
    forecast: pd.DataFrame | None,
    partial: Mapping[str, PartialMonth] | None,
) -> float:
    """The analytic baseline model over the period: closed months' actuals plus its forecast mean."""
    if forecast is None or not len(forecast):
        return float("nan")
    f = forecast[forecast[UID].astype(str) == uid]
    means = dict(zip(pd.to_datetime(f[DS]), f["mean"].astype(float), strict=True))
    total = 0.0
    for m in period.months:
        if (uid, m) in actuals:
            total += actuals[(uid, m)]
        elif m in means:
            total += means[m]
        else:
            return float("nan")
    return total


def nice_ceil(x: float, digits: int = 3) -> float:
    """Round up to ``digits`` significant figures (a budget is a round number, never below the quantile)."""
    if not math.isfinite(x) or x <= 0:
        return max(float(x), 0.0) if math.isfinite(x) else float("nan")
    scale = 10 ** (math.floor(math.log10(x)) - digits + 1)
    return math.ceil(x / scale - 1e-9) * scale


def phases_in(path_ids: Sequence[str]) -> list[str]:
    """``total`` first, then the phases present among the path ids, in the canonical order."""
    ids = {str(u) for u in path_ids}
    return [TOTAL] + [p for p in PHASES if p in ids]


def quarter_closed(
    period: Period, monthly: pd.DataFrame, partial: Mapping[str, PartialMonth] | None = None
) -> bool:
    """Whether every month of ``period`` is billed (closed, none of it month-to-date): its
    figures are then actuals, and no budget is recommended for it (here and in the scenarios)."""
    return len(closed_months(period, monthly, partial)) == len(period.months)


def actual_costs(monthly: pd.DataFrame) -> dict[tuple[str, pd.Timestamp], float]:
    """``(unique_id, month) -> cost`` of the closed months' table."""
    return {
        (str(u), pd.Timestamp(d)): float(v)
        for u, d, v in zip(monthly[UID], pd.to_datetime(monthly[DS]), monthly[Y], strict=True)
    }


def closed_months(
    period: Period, monthly: pd.DataFrame, partial: Mapping[str, PartialMonth] | None = None
) -> list[pd.Timestamp]:
    """The period's months billed in full: the total has an actual and the month is not partial."""
    partial_months = {pm.month for pm in dict(partial or {}).values()}
    billed = set(pd.to_datetime(monthly.loc[monthly[UID].astype(str) == TOTAL, DS]))
    return [m for m in period.months if m in billed and m not in partial_months]


def plan_estimate_by_phase(
    estimate: pd.DataFrame,
    period: Period,
    actuals: Mapping[tuple[str, pd.Timestamp], float],
    closed: Sequence[pd.Timestamp],
) -> dict[str, float]:
    """``plan_estimate`` per phase and ``total``: the plan's arithmetic (``estimate``, from
    :func:`pipeline.estimate.estimate_from_plan`: ``phase, ds, cost``) for the period's open
    months, the ``closed`` months at their actual (``actuals``: ``(unique_id, month) -> cost``),
    like every other column. A phase the plan does not price has no figure (its actuals alone
    would read as a plan for the whole period) unless every month is closed: then the actuals
    are the figure, as in every column. The one figure the budget table and the scenario table
    (``plan_base``, ``plan_scenario``) show; a phase missing from it is NaN in both."""
    open_months = set(period.months) - set(closed)
    b = estimate[pd.to_datetime(estimate[DS]).isin(open_months)]
    by = {str(k): float(v) for k, v in b.groupby("phase")["cost"].sum().items()}
    by[TOTAL] = float(b["cost"].sum())
    priced = {str(p) for p in estimate["phase"]}
    billed = {p for (u, _m) in actuals if (p := parse_hierarchy_id(u)[0]) is not None}
    phases = billed if not open_months else priced
    out: dict[str, float] = {}
    for phase in [TOTAL, *sorted(set(by) | phases - {TOTAL})]:
        out[phase] = by.get(phase, 0.0) + sum(
            actuals.get((line_uid(phase), m), 0.0) for m in closed
        )
    return out


def quarter_table(
    quarter: str | Period,
    monthly: pd.DataFrame,
    paths: np.ndarray,
    path_ids: Sequence[str],
    path_ds: Sequence[Any],
    *,
    baseline: pd.DataFrame | None = None,
    baseline_forecast: pd.DataFrame | None = None,
    budgets: pd.DataFrame | None = None,
    quantile: float = 0.8,
    partial: Mapping[str, PartialMonth] | None = None,
    currency: str = "USD",
    method: str = "enkf",
    conditioned: bool = False,
    rerun_hint: str = "phasecast run-monthly --horizon H",
) -> pd.DataFrame:
    """Per phase and total: P50/P80/P95 of the period's cost, baseline, budget, recommendation.

    ``paths`` are the reconciled paths (conditioned on the month-to-date actuals here), or already
    conditioned ones when ``conditioned`` (a stored run's). ``baseline`` is
    :func:`pipeline.estimate.estimate_from_plan` output (``phase, category, ds, cost``);
    ``baseline_forecast`` the analytic baseline model's rows of the forecast (``unique_id, ds,
    mean``); ``partial`` maps a unique_id to its month-to-date actual for the current month.
    """
    period = parse_period(quarter)
    partial = dict(partial or {})
    cond = (
        paths if conditioned else condition_paths(paths, path_ids, path_ds, partial, method=method)
    )
    pt = period_totals(period, monthly, cond, path_ids, path_ds, partial, rerun_hint=rerun_hint)
    actuals = actual_costs(monthly)
    prev = _last_closed(period, {m for (u, m) in actuals if u == TOTAL})
    qs = sorted({0.5, 0.8, 0.95, float(quantile)})
    closed = closed_months(period, monthly, partial)
    # a quarter whose every month is billed: its figures are what was billed, and a budget for it
    # is no longer to be set (no recommendation; the plan's column is the actual, like the rest)
    over = quarter_closed(period, monthly, partial)
    base_by_phase: dict[str, float] = {}
    if baseline is not None and (over or len(baseline)):
        base_by_phase = plan_estimate_by_phase(baseline, period, actuals, closed)
    budget_by_phase: dict[str, float] = {}
    if budgets is not None and len(budgets):
        bb = budgets[budgets["period"] == period.label]
        budget_by_phase = dict(zip(bb["phase"], bb["amount"].astype(float), strict=True))
    rows = []
    for phase in phases_in(path_ids):
        uid = line_uid(phase)
        actual, totals = pt.of(uid)
        qv = dict(zip(qs, np.quantile(totals, qs), strict=True))
        last = [actuals.get((uid, m)) for m in prev.months]
        last_actual = (
            float(sum(v for v in last if v is not None))
            if all(v is not None for v in last)
            else float("nan")
        )
        budget = budget_by_phase.get(phase, float("nan"))
        rows.append(
            {
                "period": period.label,
                "phase": phase,
                "actual_to_date": actual,
                "mean": float(np.mean(totals)),
                "p50": float(qv[0.5]),
                "p80": float(qv[0.8]),
                "p95": float(qv[0.95]),
                "baseline": _baseline_total(uid, period, actuals, baseline_forecast, partial),
                "plan_estimate": float(base_by_phase.get(phase, float("nan"))),
                "budget": budget,
                "p_overrun": float(np.mean(totals > budget))
                if math.isfinite(budget)
                else float("nan"),
                "recommended": float("nan") if over else nice_ceil(float(qv[float(quantile)])),
                "quantile": float(quantile),
                "last_quarter": prev.label,
                "last_quarter_actual": last_actual,
                # the expected cost, the figure the headline, the flags and the phases' sums use
                "change_vs_last_quarter": relative_change(
                    float(np.mean(totals)) - last_actual, last_actual
                ),
                "currency": currency,
            }
        )
    return pd.DataFrame(rows)


def budget_table(
    run: ForecastRun,
    quarter: str | Period,
    budgets: pd.DataFrame | None = None,
    quantile: float = 0.8,
) -> pd.DataFrame:
    """The quarter table of a stored run: its conditioned paths, its plan, its baseline model."""
    from pipeline.estimate import estimate_from_plan

    period = parse_period(quarter)
    plan = run.plan()
    if budgets is not None:
        check_currency(budgets, run.currency)
    baseline = (
        estimate_from_plan(plan, period.start, len(period.months)) if plan is not None else None
    )
    af = run.all_forecasts
    base_rows = af[af["model"] == "analytic_baseline"] if len(af) else None
    return quarter_table(
        period,
        run.monthly,
        run.conditioned,
        run.path_ids,
        run.path_ds,
        baseline=baseline,
        baseline_forecast=base_rows,
        budgets=budgets,
        quantile=quantile,
        partial=run.partial,
        currency=run.currency,
        conditioned=True,
        rerun_hint=run.rerun_hint(),
    )
