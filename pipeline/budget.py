"""Quarterly budget planning: P50/P80/P95 of a period's cost from reconciled sample paths.

A period's quantiles are quantiles of **sums over the period's months of each sample path**, never
sums of monthly quantiles (the P80 of a quarter is smaller than the sum of three monthly P80s unless
the months are perfectly correlated). Months of the period that are already closed count with their
actual cost; the current, partly observed month is conditioned on its month-to-date actuals (see
:func:`pipeline.flags.condition_partial_month`).

Public API (used by ``phasecast budget``, ``run-monthly`` and the notebook)::

    parse_period("2027Q1") -> Period                 # also "2027-01" for a month
    load_budgets(path) -> DataFrame[period, phase, amount, currency]
    period_samples(...) -> (actual_to_date, samples)  # one budget line's totals, one per path
    quarter_table(quarter, monthly, paths, path_ids, path_ds, ...) -> DataFrame
    plan_budget(series, forecast_result, quarter, BudgetConfig, plan, budgets, scenarios) -> BudgetPlan
    write_budget(plan, out_dir) -> dict[str, Path]

``quarter_table`` columns: ``period, phase, actual_to_date, mean, p50, p80, p95, baseline,
plan_estimate, budget, p_overrun,
recommended, quantile, last_quarter, last_quarter_actual, change_vs_last_quarter, currency``
(``phase`` is ``total`` for the whole). ``baseline`` is the analytic baseline model's forecast
summed over the period (the plan's arithmetic where the plan covers a series, the run-rate
elsewhere; closed months at their actual), the figure to hold P50 against; ``plan_estimate`` is
the plan's arithmetic alone (:func:`pipeline.estimate.estimate_from_plan`), the number scenarios
change exactly.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from pipeline.errors import InputError, Problem
from pipeline.frames import DS, PHASES, TOTAL, UID, Y

if TYPE_CHECKING:
    from pipeline.flags import PartialMonth
    from pipeline.plan import Plan

BUDGET_COLUMNS = ("period", "phase", "amount", "currency")
DEFAULT_QUANTILES: tuple[float, ...] = (0.5, 0.8, 0.95)

_QUARTER = re.compile(r"^\s*(\d{4})\s*-?\s*[Qq]([1-4])\s*$")
_MONTH = re.compile(r"^\s*(\d{4})-(\d{1,2})\s*$")


# --- periods ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Period:
    """A budget period: a calendar month (``2027-01``) or quarter (``2027Q1``)."""

    label: str
    months: tuple[pd.Timestamp, ...]

    @property
    def kind(self) -> str:
        return "quarter" if len(self.months) == 3 else "month"

    @property
    def start(self) -> pd.Timestamp:
        return self.months[0]

    @property
    def end(self) -> pd.Timestamp:
        """The last day of the period (inclusive)."""
        return self.months[-1] + pd.offsets.MonthEnd(0)

    def previous(self) -> Period:
        """The period of the same kind just before this one."""
        n = len(self.months)
        return _make_period(self.start - pd.DateOffset(months=n), n)


def _make_period(start: pd.Timestamp, n: int) -> Period:
    months = tuple(pd.date_range(start, periods=n, freq="MS"))
    if n == 3:
        label = f"{start.year}Q{(start.month - 1) // 3 + 1}"
    else:
        label = f"{start.year}-{start.month:02d}"
    return Period(label, months)


def parse_period(value: Any) -> Period:
    """``2027Q1`` (or ``2027-Q1``) -> the quarter's three months; ``2027-01`` -> that month."""
    s = str(value)
    m = _QUARTER.match(s)
    if m:
        year, q = int(m.group(1)), int(m.group(2))
        return _make_period(pd.Timestamp(year=year, month=3 * q - 2, day=1), 3)
    m = _MONTH.match(s)
    if m and 1 <= int(m.group(2)) <= 12:
        return _make_period(pd.Timestamp(year=int(m.group(1)), month=int(m.group(2)), day=1), 1)
    raise InputError(
        f"cannot read period {s!r}: expected a month like 2027-01 or a quarter like 2027Q1",
        fix="write periods as YYYY-MM (a month) or YYYYQn (a quarter)",
    )


def line_uid(phase: str) -> str:
    """The hierarchy node a budget line for ``phase`` is measured on (``total`` or the phase)."""
    return TOTAL if phase == TOTAL else phase


# --- budgets file -----------------------------------------------------------------------------
def load_budgets(path: str | Path) -> pd.DataFrame:
    """Read ``period,phase,amount,currency``; every bad row is reported at once (file, row, column)."""
    path = Path(path)
    try:
        raw = pd.read_csv(path, dtype=str, keep_default_na=False)
    except FileNotFoundError as exc:
        raise InputError(
            Problem("file not found", str(path)), fix="pass an existing budgets CSV"
        ) from exc
    except pd.errors.EmptyDataError as exc:
        raise InputError(
            Problem("the file is empty", str(path)),
            fix="write a header period,phase,amount,currency",
        ) from exc
    return validate_budgets(raw, source=str(path))


def validate_budgets(raw: pd.DataFrame, source: str = "budgets") -> pd.DataFrame:
    """Check a budgets frame; return it with ``amount`` as float and ``period`` normalized."""
    raw = raw.rename(columns={c: c.strip().lower() for c in raw.columns})
    missing = [c for c in ("period", "phase", "amount") if c not in raw.columns]
    if missing:
        raise InputError(
            Problem(f"missing column(s) {missing}; found {list(raw.columns)}", source),
            fix="the budgets file needs the columns period,phase,amount,currency",
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
            problems.append(
                Problem(
                    f"unknown phase {phase!r}; expected total or one of {list(PHASES)}",
                    source,
                    i,
                    "phase",
                )
            )
        try:
            amount = float(str(row.amount).replace(",", "").strip())
            if not math.isfinite(amount) or amount < 0:
                raise ValueError
            amounts.append(amount)
        except ValueError:
            amounts.append(float("nan"))
            problems.append(
                Problem(
                    f"amount must be a non-negative number, got {row.amount!r}", source, i, "amount"
                )
            )
    if problems:
        raise InputError(
            problems,
            fix="one budget per row: period (2027-01 or 2027Q1), phase (or total), amount, currency",
        )
    out = pd.DataFrame(
        {
            "period": periods,
            "phase": raw["phase"].astype(str).str.strip().to_numpy(),
            "amount": amounts,
            "currency": raw["currency"].astype(str).str.strip().replace("", "USD").to_numpy()
            if "currency" in raw.columns
            else "USD",
        }
    )
    dup = out.duplicated(["period", "phase"], keep="first")
    if dup.any():
        raise InputError(
            [
                Problem(f"second budget for {p} / {ph}", source, int(i) + 1)
                for i, (p, ph) in zip(
                    np.flatnonzero(dup.to_numpy()),
                    out.loc[dup, ["period", "phase"]].itertuples(index=False),
                    strict=False,
                )
            ],
            fix="keep one amount per period and phase",
        )
    return out


# --- sample-path arithmetic -------------------------------------------------------------------
def monthly_actuals(monthly: pd.DataFrame) -> dict[tuple[str, pd.Timestamp], float]:
    """``(unique_id, month) -> y`` from a long monthly frame of complete months."""
    ds = pd.to_datetime(monthly[DS])
    return {
        (str(u), pd.Timestamp(d)): float(v)
        for u, d, v in zip(monthly[UID], ds, monthly[Y], strict=True)
    }


def path_index(
    path_ids: Sequence[str], path_ds: Sequence[Any]
) -> tuple[dict[str, int], dict[pd.Timestamp, int]]:
    ids = {str(u): i for i, u in enumerate(path_ids)}
    months = {pd.Timestamp(d).to_period("M").to_timestamp(): k for k, d in enumerate(path_ds)}
    return ids, months


def period_samples(
    uid: str,
    period: Period,
    actuals: dict[tuple[str, pd.Timestamp], float],
    paths: np.ndarray,
    path_ids: Sequence[str],
    path_ds: Sequence[Any],
    partial: PartialMonth | None = None,
    *,
    method: str = "enkf",
    seed: int = 0,
) -> tuple[float, float, np.ndarray]:
    """One line's period totals, one per sample path, conditioned on what is already known.

    Returns ``(actual_to_date, forecast_rest_mean, totals)``. Closed months count with their
    actual; the partial month (if inside the period) is conditioned on its month-to-date actual
    (:func:`pipeline.flags.condition_partial_month`); later months come from the paths, adjusted by
    the same conditioning when ``method="enkf"``. A node without cost in a closed month of the
    data window (a phase that started later) counts 0 for it, and a node with no history at all
    has no paths and a forecast of 0; months before the data window or after the forecast's
    horizon are an input error.
    """
    from pipeline.flags import condition_partial_month

    ids, months = path_index(path_ids, path_ds)
    closed = [m for _, m in actuals]
    first_closed, last_closed = (min(closed), max(closed)) if closed else (None, None)
    n_paths = paths.shape[1] if paths.ndim == 3 else 1
    actual = 0.0
    future_cols: list[int] = []
    missing: list[pd.Timestamp] = []
    partial_col: int | None = None
    in_period = partial is not None and partial.month in period.months
    for m in period.months:
        if partial is not None and m == partial.month:
            actual += partial.mtd
            if m not in months and uid in ids and paths.size:
                missing.append(m)  # the rest of the current month has no forecast
        elif (uid, m) in actuals:  # a closed month: its actual cost
            actual += actuals[(uid, m)]
        elif (
            first_closed is not None
            and last_closed is not None
            and first_closed <= m <= last_closed
        ):
            continue  # closed, and nothing was charged to this node
        elif m in months:
            if uid in ids:
                future_cols.append(months[m])
        else:
            missing.append(m)
    # the current month's paths condition the later months even when it is outside the period
    if partial is not None and partial.month in months and uid in ids:
        partial_col = months[partial.month]
    if missing:
        window = f"{min(months):%Y-%m}..{max(months):%Y-%m}" if months else "no months"
        raise InputError(
            f"no actuals and no forecast for {uid!r} in {', '.join(f'{m:%Y-%m}' for m in missing)} "
            f"(period {period.label}); the forecast covers {window}",
            fix="use a longer --horizon, or budget periods inside the data and forecast window",
        )
    if uid not in ids:  # no cost history at all: nothing is forecast
        return actual, 0.0, np.full(n_paths, actual)
    row = paths[ids[uid]]  # (n_paths, h)
    later = row[:, future_cols]
    rest = later.sum(axis=1) if future_cols else np.zeros(n_paths)
    if partial_col is not None and partial is not None:
        month_paths = row[:, partial_col]
        remaining, later_adj = condition_partial_month(
            month_paths, later, partial, method=method, seed=seed
        )
        rest = (remaining if in_period else 0.0) + (later_adj.sum(axis=1) if future_cols else 0.0)
    totals = actual + rest
    return actual, float(np.mean(rest)), totals


def quantiles_of_sums(
    paths: np.ndarray, cols: Sequence[int], qs: Sequence[float] = DEFAULT_QUANTILES
) -> np.ndarray:
    """Quantiles over paths of the sum over ``cols`` (months): shape (n_series, len(qs))."""
    sums = paths[:, :, list(cols)].sum(axis=2)
    return np.quantile(sums, list(qs), axis=1).T


def _baseline_total(
    uid: str,
    period: Period,
    actuals: dict[tuple[str, pd.Timestamp], float],
    forecast: pd.DataFrame | None,
    partial: dict[str, PartialMonth] | None,
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
    partial: dict[str, PartialMonth] | None = None,
    currency: str = "USD",
    method: str = "enkf",
) -> pd.DataFrame:
    """Per phase and total: P50/P80/P95 of the period's cost, baseline, budget, recommendation.

    ``baseline`` is :func:`pipeline.estimate.estimate_from_plan` output (``phase, category, ds, cost``);
    ``baseline_forecast`` the analytic baseline model's rows of the forecast (``unique_id, ds, mean``);
    ``partial`` maps a unique_id to its month-to-date actual for the current month.
    """
    period = quarter if isinstance(quarter, Period) else parse_period(quarter)
    actuals = monthly_actuals(monthly)
    # the latest closed period of the same kind before this one (the last quarter, or the one
    # before it when the last is still running)
    prev = period.previous()
    for _ in range(4):
        if all((TOTAL, m) in actuals for m in prev.months):
            break
        prev = prev.previous()
    qs = sorted({0.5, 0.8, 0.95, float(quantile)})
    base_by_phase: dict[str, float] = {}
    if baseline is not None and len(baseline):
        b = baseline[pd.to_datetime(baseline[DS]).isin(period.months)]
        base_by_phase = b.groupby("phase")["cost"].sum().to_dict()
        base_by_phase[TOTAL] = float(b["cost"].sum())
    budget_by_phase: dict[str, float] = {}
    if budgets is not None and len(budgets):
        bb = budgets[budgets["period"] == period.label]
        budget_by_phase = dict(zip(bb["phase"], bb["amount"].astype(float), strict=True))
    rows = []
    for phase in phases_in(path_ids):
        uid = line_uid(phase)
        actual, _, totals = period_samples(
            uid, period, actuals, paths, path_ids, path_ds, (partial or {}).get(uid), method=method
        )
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
                "recommended": nice_ceil(float(qv[float(quantile)])),
                "quantile": float(quantile),
                "last_quarter": prev.label,
                "last_quarter_actual": last_actual,
                "change_vs_last_quarter": (float(qv[0.5]) / last_actual - 1.0)
                if last_actual and math.isfinite(last_actual)
                else float("nan"),
                "currency": currency,
            }
        )
    return pd.DataFrame(rows)


# --- the job ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class BudgetConfig:
    """What ``phasecast budget`` was asked for."""

    quarter: str
    quantile: float = 0.8
    n_paths: int = 1000
    seed: int = 0
    levels: tuple[int, ...] = (80, 95)
    models: tuple[str, ...] | None = None
    partial_method: str = "enkf"


@dataclass
class BudgetPlan:
    """Everything the budget command produces (plain frames, ready to write or render)."""

    table: pd.DataFrame
    scenarios: pd.DataFrame
    period: Period
    data_window: dict[str, str] = field(default_factory=dict)


def months_until(last_complete: pd.Timestamp, period: Period) -> int:
    """Forecast horizon (months after ``last_complete``) needed to reach the period's end."""
    return max(
        1,
        (period.months[-1].year - last_complete.year) * 12
        + period.months[-1].month
        - last_complete.month,
    )


def plan_budget(
    monthly: pd.DataFrame,
    paths: np.ndarray,
    path_ids: Sequence[str],
    path_ds: Sequence[Any],
    config: BudgetConfig,
    *,
    plan: Plan | None = None,
    budgets: pd.DataFrame | None = None,
    partial: dict[str, PartialMonth] | None = None,
    scenario_rows: pd.DataFrame | None = None,
    baseline_forecast: pd.DataFrame | None = None,
) -> BudgetPlan:
    """The quarter table (plus scenario rows computed by :mod:`pipeline.scenarios`)."""
    from pipeline.estimate import estimate_from_plan

    period = parse_period(config.quarter)
    baseline = (
        estimate_from_plan(plan, period.start, len(period.months)) if plan is not None else None
    )
    table = quarter_table(
        period,
        monthly,
        paths,
        path_ids,
        path_ds,
        baseline=baseline,
        baseline_forecast=baseline_forecast,
        budgets=budgets,
        quantile=config.quantile,
        partial=partial,
        currency=plan.currency if plan else "USD",
        method=config.partial_method,
    )
    ds = pd.to_datetime(monthly[DS])
    window = (
        {"first_month": f"{ds.min():%Y-%m}", "last_complete_month": f"{ds.max():%Y-%m}"}
        if len(ds)
        else {}
    )
    return BudgetPlan(
        table=table,
        scenarios=scenario_rows if scenario_rows is not None else pd.DataFrame(),
        period=period,
        data_window=window,
    )


def write_budget(bp: BudgetPlan, out_dir: str | Path) -> dict[str, Path]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = {
        "budget_csv": out / f"budget-{bp.period.label}.csv",
        "budget_json": out / f"budget-{bp.period.label}.json",
    }
    bp.table.to_csv(files["budget_csv"], index=False)
    bp.table.to_json(files["budget_json"], orient="records", indent=2)
    if len(bp.scenarios):
        files["scenarios_csv"] = out / f"scenarios-{bp.period.label}.csv"
        bp.scenarios.to_csv(files["scenarios_csv"], index=False)
    return files


# --- jobs the CLI and the notebook call -------------------------------------------------------
@dataclass(frozen=True)
class ForecastInputs:
    """Where a budget or flag job gets its data, and how it forecasts (built once at the edge)."""

    warehouse: Path
    as_of: Any = None
    plan: Path | None = None
    models: tuple[str, ...] | None = None
    n_paths: int = 1000
    seed: int = 0
    n_windows: int = 3


def driver_models() -> list[str]:
    """Registered models that use drivers (``uses_exogenous``), e.g. sarimax and lightgbm."""
    from pipeline.models import REGISTRY

    return [n for n, cls in REGISTRY.items() if getattr(cls, "uses_exogenous", False)]


def usage_gpu_hours(warehouse: str | Path, before: Any) -> pd.Series:
    """Metered GPU-hours per ``(phase, month)`` from the warehouse's usage table, days before ``before``."""
    import duckdb

    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        tables = {
            r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()
        }
        if "usage_daily" not in tables:
            return pd.Series(dtype=float)
        df = con.execute(
            "SELECT phase, CAST(date_trunc('month', day) AS DATE) AS ds, sum(value_sum) AS v FROM usage_daily "
            "WHERE metric = 'gpu_hours' AND day < ? GROUP BY ALL",
            [pd.Timestamp(before).date()],
        ).df()
    finally:
        con.close()
    if not len(df):
        return pd.Series(dtype=float)
    return pd.Series(
        df["v"].to_numpy(float),
        index=pd.MultiIndex.from_arrays([df["phase"].astype(str), pd.to_datetime(df["ds"])]),
    )


def with_plan_drivers(
    monthly: pd.DataFrame, plan: Plan | None, horizon: int, history: pd.Series | None = None
) -> pd.DataFrame:
    """The series frame plus a ``gpu_hours`` driver per row, for the history and ``horizon``
    future months (future rows have an empty ``y``: :func:`pipeline.forecast.run_forecast` reads
    them as known future drivers).

    History months take the metered GPU-hours (``history``, from :func:`usage_gpu_hours`) where
    there are any, else the plan's; future months take the plan's scheduled GPU-hours (runs,
    recurring jobs, traffic after quantization). A series gets its phase's value; ``total`` the
    sum over phases. Without a plan the frame is returned without drivers.
    """
    from features.drivers import planned_gpu_hours
    from pipeline.frames import parse_hierarchy_id

    base = monthly[[UID, DS, Y]].copy()
    if plan is None:
        return base
    ds = pd.to_datetime(base[DS])
    first, last = ds.min(), ds.max()
    n = (last.year - first.year) * 12 + last.month - first.month + 1 + horizon
    gh = planned_gpu_hours(plan, first, n)
    by_phase = {(str(ph), pd.Timestamp(m)): float(v) for (ph, m), v in gh.items()}
    if history is not None and len(history):
        metered = {
            (str(ph), pd.Timestamp(m)): float(v)
            for (ph, m), v in history.items()
            if pd.Timestamp(m) <= last
        }
        by_phase = {k: v for k, v in by_phase.items() if k[1] > last} | metered
    tot: dict[pd.Timestamp, float] = {}
    for (_, m), v in by_phase.items():
        tot[m] = tot.get(m, 0.0) + v
    future = [
        {UID: u, DS: last + pd.DateOffset(months=k), Y: np.nan}
        for u in pd.unique(base[UID])
        for k in range(1, horizon + 1)
    ]
    full = pd.concat([base, pd.DataFrame(future)], ignore_index=True)
    full[DS] = pd.to_datetime(full[DS])

    def value(uid: str, m: pd.Timestamp) -> float:
        phase, _ = parse_hierarchy_id(uid)
        return float(tot.get(m, 0.0)) if phase is None else float(by_phase.get((phase, m), 0.0))

    full["gpu_hours"] = [value(str(u), m) for u, m in zip(full[UID], full[DS], strict=True)]
    return full.sort_values([UID, DS], kind="stable").reset_index(drop=True)


def load_inputs(inputs: ForecastInputs) -> tuple[Any, Plan | None]:
    """The series frames as of ``as_of`` and the plan (None when there is none)."""
    from pipeline.plan import load_plan
    from pipeline.series import build_series

    series = build_series(inputs.warehouse, as_of=inputs.as_of)
    plan = (
        load_plan(inputs.plan) if inputs.plan is not None and Path(inputs.plan).exists() else None
    )
    return series, plan


def forecast_to(
    series: Any,
    plan: Plan | None,
    inputs: ForecastInputs,
    horizon: int,
    models: tuple[str, ...] | None = None,
    progress: bool = False,
) -> Any:
    """Reconciled forecast (and sample paths) of the hierarchy, ``horizon`` months ahead."""
    from pipeline.forecast import DEFAULT_MODELS, ForecastConfig, run_forecast

    cfg = ForecastConfig(
        horizon=horizon,
        levels=(80, 95),
        models=models or inputs.models or DEFAULT_MODELS,
        n_paths=inputs.n_paths,
        seed=inputs.seed,
        reconcile=True,
        n_windows=inputs.n_windows,
    )
    history = usage_gpu_hours(inputs.warehouse, series.as_of) if plan is not None else None
    return run_forecast(
        with_plan_drivers(series.monthly, plan, horizon, history), cfg, plan=plan, progress=progress
    )


def baseline_rows(result: Any) -> pd.DataFrame:
    """The analytic baseline model's rows of a forecast result (``all_forecasts``)."""
    f = result.all_forecasts
    return f[f[MODEL_COL] == "analytic_baseline"]


def partial_for(series: Any) -> dict[str, PartialMonth]:
    from pipeline.flags import partial_months

    return partial_months(series.partial, series.daily)


def driver_model_totals(
    series: Any,
    inputs: ForecastInputs,
    horizon: int,
    period: Period,
    models: tuple[str, ...] | None,
) -> Any:
    """``plan -> {model: {phase: period mean}}`` for the registered models that use drivers
    (re-forecast with the plan's GPU-hours as the future driver; ``total`` is the sum of the
    phases, as a model's own forecast of the total is not coherent with its phases). None when no
    driver model is in use."""
    dm = [m for m in driver_models() if m in (models or dm_default())]
    if not dm:
        return None

    def model_totals(p: Plan) -> dict[str, dict[str, float]]:
        r = forecast_to(series, p, inputs, horizon, tuple(dm))
        f = r.all_forecasts
        f = f[f[MODEL_COL].isin(dm) & pd.to_datetime(f[DS]).isin(period.months)]
        out: dict[str, dict[str, float]] = {}
        for (model, uid), g in f.groupby([MODEL_COL, UID]):
            if str(uid) in PHASES:
                out.setdefault(str(model), {})[str(uid)] = float(g["mean"].sum())
        for by_phase in out.values():
            by_phase[TOTAL] = sum(by_phase.values())
        return out

    return model_totals


def budget_job(
    inputs: ForecastInputs,
    config: BudgetConfig,
    budgets: pd.DataFrame | None = None,
    scenarios: Sequence[Any] = (),
) -> tuple[BudgetPlan, Any, Any]:
    """``phasecast budget``: forecast to the quarter's end, quantiles of sums, scenarios.

    Returns ``(budget_plan, series, forecast_result)``. Scenarios are evaluated through the
    analytic baseline (plan arithmetic) and, when any is registered, the models that use drivers
    (re-forecast with the edited plan's GPU-hours as the future driver; their quarter mean per
    phase, and the total as the sum of the phases). A driver model sees what moves GPU-hours
    (runs, traffic, quantization); price and headcount changes reach it only through the baseline.
    """
    from pipeline.scenarios import scenario_deltas

    series, plan = load_inputs(inputs)
    period = parse_period(config.quarter)
    last = pd.to_datetime(series.monthly[DS]).max()
    h = months_until(last, period)
    if period.months[-1] <= last:
        h = 1
    result = forecast_to(series, plan, inputs, h, config.models)
    scen = pd.DataFrame()
    if scenarios:
        if plan is None:
            raise InputError(
                "scenarios edit the plan, but there is no plan",
                fix="pass --plan FILE (phasecast synth writes one)",
            )
        model_totals = driver_model_totals(
            series, inputs, h, period, config.models or inputs.models
        )
        scen = scenario_deltas(plan, scenarios, list(period.months), period.label, model_totals)
    bp = plan_budget(
        series.monthly,
        result.paths,
        result.path_ids,
        result.path_ds,
        config,
        plan=plan,
        budgets=budgets,
        partial=partial_for(series),
        scenario_rows=scen,
        baseline_forecast=baseline_rows(result),
    )
    bp.data_window["as_of"] = str(series.as_of)
    return bp, series, result


MODEL_COL = "model"


def dm_default() -> tuple[str, ...]:
    from pipeline.forecast import DEFAULT_MODELS

    return DEFAULT_MODELS


def format_budget(bp: BudgetPlan) -> str:
    """The quarter table (and scenario deltas) for the terminal."""
    t = bp.table
    head = [
        "phase",
        "P50",
        "P80",
        "P95",
        "baseline",
        "plan",
        "budget",
        "p_overrun",
        f"recommend@P{round(100 * t['quantile'].iloc[0]) if len(t) else 80}",
        f"vs {t['last_quarter'].iloc[0] if len(t) else ''}",
    ]

    def money(x: float) -> str:
        return "-" if x is None or not math.isfinite(x) else f"{x:,.0f}"

    rows = [
        [
            r.phase,
            money(r.p50),
            money(r.p80),
            money(r.p95),
            money(r.baseline),
            money(r.plan_estimate),
            money(r.budget),
            "-" if not math.isfinite(r.p_overrun) else f"{r.p_overrun:.2f}",
            money(r.recommended),
            "-"
            if not math.isfinite(r.change_vs_last_quarter)
            else f"{r.change_vs_last_quarter:+.1%}",
        ]
        for r in t.itertuples(index=False)
    ]
    lines = [
        f"budget for {bp.period.label} ({t['currency'].iloc[0] if len(t) else ''}): quantiles of the quarter's summed sample paths"
    ]
    lines += _table(head, rows)
    if len(bp.scenarios):
        s = bp.scenarios[bp.scenarios["delta"].abs() > 1e-9]
        lines.append("")
        lines.append("scenarios (change against the base plan):")
        lines += _table(
            ["scenario", "phase", "source", "base", "scenario", "delta"],
            [
                [
                    r.scenario,
                    r.phase,
                    r.source,
                    money(r.base),
                    money(r.scenario_value),
                    f"{r.delta:+,.0f}",
                ]
                for r in s.itertuples(index=False)
            ],
        )
    return "\n".join(lines)


def _table(head: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows, strict=False)]

    def fmt(cells: list[str]) -> str:
        return "  ".join(
            str(c).ljust(w) if j == 0 else str(c).rjust(w)
            for j, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    return [fmt(head), "  ".join("-" * w for w in widths), *[fmt(r) for r in rows]]
