"""Overrun flags: for every budget line, P(period total > budget) given the actuals so far.

Public API (``run-monthly`` calls the first two)::

    flag_budgets(budgets, monthly, paths, path_ids, path_ds, *, as_of=None, mtd=None, daily=None,
                 backtest=None, selection=None, config=FlagConfig()) -> FlagResult
    write_flags(result, out_dir) -> dict[str, Path]      # flags.csv, flags.json, anomalies.csv
    format_flags(flags) -> str                           # the terminal table
    find_anomalies(backtest, selection=None, level=95) -> DataFrame

Inputs are plain data: ``budgets`` from :func:`pipeline.budget.load_budgets`; ``monthly`` the long
frame of closed months (``unique_id, ds, y``); ``paths`` the reconciled sample paths
``(n_series, n_paths, h)`` with their ``path_ids`` and ``path_ds`` (``ForecastResult``); ``mtd`` the
current month's month-to-date actuals (``unique_id, ds, y, days_covered, days_in_period``:
``SeriesFrames.partial``);
``daily`` the daily long frame (``unique_id, ds, y``, ``ds`` a day) used to learn how well a
month-to-date pace predicts a month; ``backtest`` the rolling-origin table (for anomalies).

``FlagResult.flags`` has one row per budget line: ``period, phase, budget, currency,
actual_to_date, forecast_rest, forecast_total, p50, p80, p95, p_overrun, expected_overrun, status,
months_closed, days_covered, anomaly_months``.

How a line's total is sampled (one value per path):

* closed months count with their actual cost (the forecast was fitted on them already);
* the current month, observed for ``d`` of its ``D`` days with month-to-date actual ``A``, is
  **conditioned on its month-to-date pace** (``method="enkf"``, the default): the pace estimate
  ``A * D / d`` is treated as a noisy observation of the month's total, with a relative error
  learned from the same series' past months (how far ``A_d * D / d`` was from the month's total at
  the same day ``d``, RMS over up to 12 months). Each path's month total is moved towards the
  observation by an ensemble Kalman update with perturbed observations (prior spread from the
  paths, observation spread from that pace error), and the later months of the period move by
  their regression on this month across paths, so a month running hot raises the rest of the
  quarter in proportion to how correlated the paths say they are. The remaining cost is the
  updated total minus ``A`` (never below 0). Without daily history (or ``method="proportional"``)
  the remaining cost is the remaining-days share of the month's path, ``(1 - d/D) * path``;
* months after it come from the paths.

``p_overrun`` is the share of paths whose total exceeds the budget; ``expected_overrun`` the mean of
``max(total - budget, 0)``. Status: ``over_budget`` when the actual to date already exceeds the
budget, else ``at_risk`` when ``p >= at_risk`` (0.5), ``watch`` when ``p >= watch`` (0.2), else
``ok``. Anomalies: closed months whose actual fell outside the 95 % interval forecast for them by
the selected model at the shortest horizon in the backtest (or a previous run's forecast).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipeline.budget import Period, line_uid, monthly_actuals, parse_period, period_samples
from pipeline.errors import InputError
from pipeline.frames import DS, MODEL, UID, Y, hi_col, lo_col

STATUSES = ("ok", "watch", "at_risk", "over_budget")
METHODS = ("enkf", "proportional")


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


@dataclass(frozen=True)
class PartialMonth:
    """The current month of one series: month-to-date actual over ``days_covered`` days.

    ``pace_error`` is the relative RMS error of the pace estimate ``mtd * D / d`` at this day,
    learned from past months (None when unknown: the proportional method is used then).
    """

    month: pd.Timestamp
    mtd: float
    days_covered: int
    days_in_month: int
    pace_error: float | None = None

    @property
    def fraction(self) -> float:
        return self.days_covered / self.days_in_month if self.days_in_month else 0.0


# --- the partial month ------------------------------------------------------------------------
def pace_error(
    daily_y: pd.Series, days_covered: int, max_months: int = 12, min_months: int = 3
) -> float | None:
    """Relative RMS error of ``A_d * D / d`` as an estimate of a month's total, over closed months.

    ``daily_y`` is one series' daily cost indexed by date (complete months only are used).
    """
    if days_covered <= 0 or daily_y.empty:
        return None
    s = daily_y.copy()
    s.index = pd.to_datetime(s.index)
    errs = []
    for m, g in s.groupby(s.index.to_period("M")):
        dim = m.days_in_month
        if g.index.day.nunique() < dim:
            continue  # not a complete month of daily data
        total = float(g.sum())
        if total <= 0:
            continue
        d = min(days_covered, dim)
        pace = float(g[g.index.day <= d].sum()) * dim / d
        errs.append((pace - total) / total)
    errs = errs[-max_months:]
    if len(errs) < min_months:
        return None
    return float(np.sqrt(np.mean(np.square(errs))))


def condition_partial_month(
    month_paths: np.ndarray,
    later: np.ndarray,
    partial: PartialMonth,
    *,
    method: str = "enkf",
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Remaining cost of the current month per path, and the later months adjusted to match.

    ``month_paths`` (n_paths,) are the month's totals; ``later`` (n_paths, k) the period's later
    months. See the module docstring for the method.
    """
    f = partial.fraction
    month_paths = np.asarray(month_paths, dtype=float)
    later = np.asarray(later, dtype=float).reshape(len(month_paths), -1)
    if f >= 1.0:
        return np.zeros_like(month_paths), later
    if f <= 0.0:
        return np.clip(month_paths, 0.0, None), later
    if method == "proportional" or partial.pace_error is None:
        return np.clip((1.0 - f) * month_paths, 0.0, None), later
    obs = partial.mtd / f
    prior_mean = float(np.mean(month_paths))
    var = float(np.var(month_paths))
    # the pace error is relative to the month's size: never let it vanish (a 2 % floor)
    r = max(partial.pace_error, 0.02) * max(abs(prior_mean), abs(obs), 1e-9)
    rng = np.random.default_rng(seed)
    innovation = obs + r * rng.standard_normal(len(month_paths)) - month_paths
    denom = var + r * r
    updated = month_paths + (var / denom) * innovation
    if later.shape[1]:
        centred = month_paths - prior_mean
        cov = (later - later.mean(axis=0)).T @ centred / len(month_paths)
        later = later + np.outer(innovation, cov / denom)
    return np.clip(updated - partial.mtd, 0.0, None), later


def partial_months(
    mtd: pd.DataFrame | None, daily: pd.DataFrame | None = None
) -> dict[str, PartialMonth]:
    """``unique_id -> PartialMonth`` from a month-to-date frame (and the daily history for the pace error)."""
    if mtd is None or not len(mtd):
        return {}
    by_uid: dict[str, pd.Series] = {}
    if daily is not None and len(daily):
        d = daily.assign(**{DS: pd.to_datetime(daily[DS])})
        by_uid = {str(u): g.set_index(DS)[Y] for u, g in d.groupby(UID)}
    out = {}
    for row in mtd.itertuples(index=False):
        r = row._asdict()
        m = pd.Timestamp(r[DS]).to_period("M")
        dim = int(r.get("days_in_month") or r.get("days_in_period") or m.days_in_month)
        days = int(r["days_covered"])
        uid = str(r[UID])
        hist = by_uid.get(uid)
        if hist is not None:
            hist = hist[hist.index < m.to_timestamp()]
        err = pace_error(hist, days) if hist is not None else None
        out[uid] = PartialMonth(m.to_timestamp(), float(r[Y]), days, dim, err)
    return out


# --- lines, status, anomalies -----------------------------------------------------------------
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
    bt = bt.sort_values([UID, DS, "source", "h"]).drop_duplicates([UID, DS], keep="first")
    lo, hi = bt[lo_col(level)], bt[hi_col(level)]
    out = bt[(bt[Y] < lo) | (bt[Y] > hi)].copy()
    out["direction"] = np.where(out[Y] > out[hi_col(level)], "above", "below")
    if MEAN_COL not in out.columns:
        out[MEAN_COL] = np.nan
    return out[cols].reset_index(drop=True)


MEAN_COL = "mean"


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
    partial: dict[str, PartialMonth] | None = None,
    config: FlagConfig = FlagConfig(),
) -> pd.DataFrame:
    """One row per budget line (see the module docstring for the columns)."""
    actuals = monthly_actuals(monthly)
    rows = []
    for i, b in enumerate(budgets.itertuples(index=False)):
        period: Period = parse_period(b.period)
        uid = line_uid(str(b.phase))
        pm = (partial or {}).get(uid)
        actual, rest, totals = period_samples(
            uid,
            period,
            actuals,
            paths,
            path_ids,
            path_ds,
            pm,
            method=config.partial_method,
            seed=config.seed + i,
        )
        budget = float(b.amount)
        p = float(np.mean(totals > budget))
        closed = sum(
            1 for m in period.months if (uid, m) in actuals and (pm is None or m != pm.month)
        )
        q50, q80, q95 = np.quantile(totals, [0.5, 0.8, 0.95])
        rows.append(
            {
                "period": period.label,
                "phase": str(b.phase),
                "budget": budget,
                "currency": getattr(b, "currency", "USD"),
                "actual_to_date": actual,
                "forecast_rest": rest,
                "forecast_total": float(np.mean(totals)),
                "p50": float(q50),
                "p80": float(q80),
                "p95": float(q95),
                "p_overrun": p,
                "expected_overrun": float(np.mean(np.clip(totals - budget, 0.0, None))),
                "status": status_for(p, actual, budget, config),
                "months_closed": closed,
                "days_covered": pm.days_covered
                if pm is not None and pm.month in period.months
                else 0,
            }
        )
    return pd.DataFrame(rows)


def flag_budgets(
    budgets: pd.DataFrame,
    monthly: pd.DataFrame,
    paths: np.ndarray,
    path_ids: Sequence[str],
    path_ds: Sequence[Any],
    *,
    as_of: Any = None,
    mtd: pd.DataFrame | None = None,
    daily: pd.DataFrame | None = None,
    backtest: pd.DataFrame | None = None,
    selection: Any = None,
    previous: pd.DataFrame | None = None,
    config: FlagConfig = FlagConfig(),
) -> FlagResult:
    """Flag every budget line; mark anomalous months. Plain data in, :class:`FlagResult` out."""
    partial = partial_months(mtd, daily)
    flags = flag_lines(budgets, monthly, paths, path_ids, path_ds, partial=partial, config=config)
    anomalies = find_anomalies(backtest, selection, config.anomaly_level, previous)
    if len(flags):
        marks = []
        for row in flags.itertuples(index=False):
            period = parse_period(row.period)
            uid = line_uid(row.phase)
            a = (
                anomalies[
                    (anomalies[UID] == uid) & pd.to_datetime(anomalies[DS]).isin(period.months)
                ]
                if len(anomalies)
                else anomalies
            )
            marks.append(";".join(f"{d:%Y-%m}" for d in pd.to_datetime(a[DS])) if len(a) else "")
        flags["anomaly_months"] = marks
    label = str(pd.Timestamp(as_of).date()) if as_of is not None else ""
    return FlagResult(flags=flags, anomalies=anomalies, as_of=label, config=config)


def write_flags(result: FlagResult, out_dir: str | Path) -> dict[str, Path]:
    """``flags.csv``, ``flags.json`` (with the thresholds) and ``anomalies.csv`` in ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = {
        "flags_csv": out / "flags.csv",
        "flags_json": out / "flags.json",
        "anomalies_csv": out / "anomalies.csv",
    }
    result.flags.to_csv(files["flags_csv"], index=False)
    doc = {
        "as_of": result.as_of,
        "thresholds": {"watch": result.config.watch, "at_risk": result.config.at_risk},
        "partial_month_method": result.config.partial_method,
        "lines": json.loads(result.flags.to_json(orient="records")),
        "anomalies": json.loads(result.anomalies.to_json(orient="records", date_format="iso")),
    }
    files["flags_json"].write_text(json.dumps(doc, indent=2))
    result.anomalies.to_csv(files["anomalies_csv"], index=False)
    return files


def _money(x: float) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "-"
    return f"{x:,.0f}"


def format_flags(flags: pd.DataFrame, color: bool = False) -> str:
    """A fixed-width table for the terminal (statuses coloured when ``color``)."""
    head = [
        "period",
        "phase",
        "budget",
        "actual",
        "forecast",
        "P80",
        "p_overrun",
        "E[overrun]",
        "status",
        "anomaly",
    ]
    rows = [
        [
            r.period,
            r.phase,
            _money(r.budget),
            _money(r.actual_to_date),
            _money(r.forecast_total),
            _money(r.p80),
            f"{r.p_overrun:.2f}",
            _money(r.expected_overrun),
            r.status,
            getattr(r, "anomaly_months", "") or "",
        ]
        for r in flags.itertuples(index=False)
    ]
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows, strict=False)]
    right = {2, 3, 4, 5, 6, 7}

    def fmt(cells: list[str], style: bool) -> str:
        parts = []
        for j, (c, w) in enumerate(zip(cells, widths, strict=True)):
            s = str(c).rjust(w) if j in right else str(c).ljust(w)
            if style and color and j == 8:
                import click

                s = click.style(
                    s,
                    fg={
                        "ok": "green",
                        "watch": "yellow",
                        "at_risk": "red",
                        "over_budget": "magenta",
                    }.get(c),
                    bold=c != "ok",
                )
            parts.append(s)
        return "  ".join(parts).rstrip()

    lines = [fmt(head, False), "  ".join("-" * w for w in widths)]
    lines += [fmt(r, True) for r in rows]
    return "\n".join(lines)


# --- calibration ------------------------------------------------------------------------------
def reliability_table(
    p: np.ndarray,
    overran: np.ndarray,
    bins: Sequence[float] = (0, 0.1, 0.2, 0.35, 0.5, 0.65, 0.8, 0.9, 1.0),
) -> pd.DataFrame:
    """Bins of predicted ``p_overrun``: count, mean predicted p, observed overrun rate."""
    p = np.asarray(p, dtype=float)
    y = np.asarray(overran, dtype=bool)
    edges = np.asarray(bins, dtype=float)
    idx = np.clip(np.searchsorted(edges, p, side="right") - 1, 0, len(edges) - 2)
    rows = []
    for k in range(len(edges) - 1):
        sel = idx == k
        n = int(sel.sum())
        rows.append(
            {
                "bin": f"[{edges[k]:.2f}, {edges[k + 1]:.2f}{']' if k == len(edges) - 2 else ')'}",
                "count": n,
                "mean_p": float(p[sel].mean()) if n else float("nan"),
                "observed_rate": float(y[sel].mean()) if n else float("nan"),
            }
        )
    return pd.DataFrame(rows)


def precision_recall(flagged: np.ndarray, overran: np.ndarray) -> tuple[float, float]:
    """Precision and recall of a flag against what happened."""
    f = np.asarray(flagged, dtype=bool)
    y = np.asarray(overran, dtype=bool)
    tp = float((f & y).sum())
    precision = tp / f.sum() if f.sum() else float("nan")
    recall = tp / y.sum() if y.sum() else float("nan")
    return precision, recall


@dataclass(frozen=True)
class CalibrationConfig:
    """Generated histories with known futures, flagged at several points of the budget period.

    Each series is a monthly cost ``L * exp(g t + a sin(2 pi (t + phi) / 12) + u_t)`` (``u`` an
    AR(1) with coefficient 0.6 and a random scale), spread over days with a weekday pattern and
    day-to-day noise. Budgets for the first quarter after the history and for each of its months
    are set at random quantiles (``U(0.05, 0.95)``) of the budget-time forecast's period totals;
    then each line is flagged, with a forecast re-fitted on the months closed by then plus the
    month-to-date actuals, at each of ``checkpoints`` (``(month offset, day)``: ``(0, 0)`` is the
    first day of the quarter with nothing of it known, ``(1, 10)`` is day 10 of its second month).
    """

    n_series: int = 60
    history: int = 36
    model: str = "ets"  # a registered model's own paths, or "pipeline" (run_forecast)
    n_paths: int = 400
    seed: int = 0
    method: str = "enkf"
    checkpoints: tuple[tuple[int, int], ...] = ((0, 0), (0, 10), (0, 20), (1, 10), (2, 10), (2, 20))


def simulate_series(rng: np.random.Generator, months: int, start: str = "2023-01-01") -> pd.Series:
    """One generated daily cost series covering ``months`` whole months (index: days)."""
    level = float(np.exp(rng.uniform(np.log(2e4), np.log(2e6))))
    g = rng.uniform(-0.01, 0.03)
    amp = rng.uniform(0.0, 0.15)
    phi = rng.uniform(0, 12)
    sigma = rng.uniform(0.03, 0.12)
    u = np.zeros(months)
    for t in range(months):
        u[t] = (0.6 * u[t - 1] if t else 0.0) + sigma * rng.standard_normal()
    tt = np.arange(months)
    monthly = level * np.exp(g * tt + amp * np.sin(2 * np.pi * (tt + phi) / 12) + u)
    days = pd.date_range(start, periods=months, freq="MS")
    parts = []
    day_noise = rng.uniform(0.1, 0.35)
    for m, total in zip(days, monthly, strict=True):
        idx = pd.date_range(m, m + pd.offsets.MonthEnd(0), freq="D")
        w = np.exp(day_noise * rng.standard_normal(len(idx))) * np.where(
            idx.dayofweek >= 5, 0.8, 1.0
        )
        parts.append(pd.Series(total * w / w.sum(), index=idx))
    return pd.concat(parts)


PIPELINE_MODELS = ("analytic_baseline", "seasonal_naive", "ets", "theta", "ensemble")


def calibration_paths(
    model: str, monthly: pd.DataFrame, h: int, n_paths: int, seed: int
) -> tuple[np.ndarray, list[str], list[pd.Timestamp]]:
    """Sample paths for every series of ``monthly`` (long frame), ``h`` months ahead.

    ``model`` is a registered model name (its own simulated paths, e.g. ETS simulated from the
    fitted state space) or ``pipeline``: :func:`pipeline.forecast.run_forecast` with the
    statistical models, rolling-origin calibrated error pools and per-series selection.
    """
    if model == "pipeline":
        from pipeline.forecast import ForecastConfig, run_forecast

        cfg = ForecastConfig(
            horizon=h,
            models=PIPELINE_MODELS,
            n_paths=n_paths,
            seed=seed,
            reconcile=False,
            n_windows=3,
            step=2,
        )
        r = run_forecast(monthly, cfg, progress=False)
        return r.paths, [str(u) for u in r.path_ids], list(pd.DatetimeIndex(r.path_ds))
    from pipeline.models import make_model

    m = make_model(model).fit(monthly)
    paths = m.sample_paths(h, n_paths=n_paths, seed=seed)
    last = pd.Timestamp(monthly[DS].max())
    return (
        paths,
        [str(u) for u in m.ids_],
        list(pd.date_range(last + pd.DateOffset(months=1), periods=h, freq="MS")),
    )


def simulate_calibration(config: CalibrationConfig = CalibrationConfig()) -> pd.DataFrame:
    """One row per (series, budget line, checkpoint): ``p_overrun``, status and whether it overran."""
    rng = np.random.default_rng(config.seed)
    fc = FlagConfig(partial_method=config.method)
    dailies, monthlies = [], []
    for _ in range(config.n_series):
        daily = simulate_series(rng, config.history + 3)
        monthly_all = daily.groupby(daily.index.to_period("M")).sum()
        monthly_all.index = monthly_all.index.to_timestamp()
        dailies.append(daily)
        monthlies.append(monthly_all)
    q_months = list(monthlies[0].index[config.history : config.history + 3])
    quarter = Period(f"{q_months[0].year}Q{(q_months[0].month - 1) // 3 + 1}", tuple(q_months))
    periods = [quarter] + [Period(f"{m:%Y-%m}", (m,)) for m in q_months]

    def long(n_months: int) -> pd.DataFrame:
        return pd.concat(
            [
                pd.DataFrame({UID: f"s{s:04d}", DS: m.index[:n_months], Y: m.to_numpy()[:n_months]})
                for s, m in enumerate(monthlies)
            ],
            ignore_index=True,
        )

    # budgets: random quantiles of the budget-time forecast (nothing of the quarter known yet)
    paths, ids, pds = calibration_paths(
        config.model, long(config.history), 3, config.n_paths, config.seed
    )
    budgets: dict[str, pd.DataFrame] = {}
    for s in range(config.n_series):
        row = paths[ids.index(f"s{s:04d}")]
        rows = []
        for p in periods:
            q = rng.uniform(0.05, 0.95)
            total = row[:, [pds.index(m) for m in p.months]].sum(axis=1)
            rows.append(
                {
                    "period": p.label,
                    "phase": "total",
                    "amount": float(np.quantile(total, q)),
                    "currency": "USD",
                    "q": q,
                }
            )
        budgets[f"s{s:04d}"] = pd.DataFrame(rows)
    out = []
    for k, day in config.checkpoints:
        closed = long(config.history + k)
        paths, ids, pds = calibration_paths(
            config.model, closed, 3 - k, config.n_paths, config.seed + 1000 * (k + 1)
        )
        for s in range(config.n_series):
            uid = f"s{s:04d}"
            daily, monthly_all = dailies[s], monthlies[s]
            partial = None
            if day > 0:
                m = q_months[k]
                mtd = float(
                    daily[(daily.index >= m) & (daily.index < m + pd.Timedelta(days=day))].sum()
                )
                err = pace_error(daily[daily.index < m], day) if config.method == "enkf" else None
                partial = {"total": PartialMonth(m, mtd, day, m.days_in_month, err)}
            bdf = budgets[uid]
            live = bdf[
                [not all(mm < q_months[k] for mm in parse_period(p).months) for p in bdf["period"]]
            ]
            hist = closed[closed[UID] == uid].assign(**{UID: "total"})
            flags = flag_lines(
                live, hist, paths[[ids.index(uid)]], ["total"], pds, partial=partial, config=fc
            )
            for f, q in zip(flags.itertuples(index=False), live["q"], strict=True):
                p = parse_period(f.period)
                out.append(
                    {
                        "series": s,
                        "period": f.period,
                        "kind": p.kind,
                        "checkpoint": f"m{k + 1}d{day}",
                        "budget_quantile": q,
                        "p_overrun": f.p_overrun,
                        "status": f.status,
                        "overran": float(monthly_all[list(p.months)].sum()) > f.budget,
                    }
                )
    return pd.DataFrame(out)


def calibration_summary(lines: pd.DataFrame, config: FlagConfig = FlagConfig()) -> dict[str, Any]:
    """Reliability table and at_risk precision/recall over lines not yet over budget."""
    live = lines[lines["status"] != "over_budget"]
    flagged = live["p_overrun"].to_numpy() >= config.at_risk
    precision, recall = precision_recall(flagged, live["overran"].to_numpy())
    by_cp = []
    for cp, g in live.groupby("checkpoint", sort=False):
        pr, rc = precision_recall(
            g["p_overrun"].to_numpy() >= config.at_risk, g["overran"].to_numpy()
        )
        brier = float(np.mean((g["p_overrun"] - g["overran"].astype(float)) ** 2))
        by_cp.append(
            {
                "checkpoint": cp,
                "lines": len(g),
                "overrun_rate": float(g["overran"].mean()),
                "precision": pr,
                "recall": rc,
                "brier": brier,
            }
        )
    return {
        "lines": int(len(lines)),
        "already_over_budget": int((lines["status"] == "over_budget").sum()),
        "reliability": reliability_table(live["p_overrun"].to_numpy(), live["overran"].to_numpy()),
        "precision": precision,
        "recall": recall,
        "brier": float(np.mean((live["p_overrun"] - live["overran"].astype(float)) ** 2)),
        "by_checkpoint": pd.DataFrame(by_cp),
    }


def flag_job(
    inputs: Any, budgets_file: str | Path | pd.DataFrame, config: FlagConfig = FlagConfig()
) -> tuple[FlagResult, Any, Any]:
    """``phasecast flag``: series as of ``inputs.as_of``, a forecast reaching the last budget
    period, and the flags. Returns ``(flag_result, series, forecast_result)``."""
    from pipeline.budget import forecast_to, load_budgets, load_inputs, months_until

    budgets = budgets_file if isinstance(budgets_file, pd.DataFrame) else load_budgets(budgets_file)
    series, plan = load_inputs(inputs)
    last = pd.to_datetime(series.monthly[DS]).max()
    h = max(months_until(last, parse_period(p)) for p in budgets["period"]) if len(budgets) else 1
    result = forecast_to(series, plan, inputs, max(h, 1))
    res = flag_budgets(
        budgets,
        series.monthly,
        result.paths,
        result.path_ids,
        result.path_ds,
        as_of=series.as_of,
        mtd=series.partial,
        daily=series.daily,
        backtest=result.backtest,
        selection=result.selection,
        config=config,
    )
    return res, series, result
