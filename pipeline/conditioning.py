"""Month-to-date conditioning and period sums on reconciled sample paths, coherent by construction.

The current month is partly observed: ``d`` of its ``D`` days with month-to-date actual ``A``.

* :func:`condition_partial_month` conditions one series' paths on its month-to-date pace
  (``method="enkf"``, the default): the pace estimate ``A * D / d`` is a noisy observation of the
  month's total, with a relative error learned from the same series' past months (how far
  ``A_d * D / d`` was from the month's total at the same day ``d``, RMS over up to 12 months). Each
  path's month total moves towards the observation by an ensemble Kalman update with perturbed
  observations (prior spread from the paths, observation spread from that pace error). Later
  months are left as forecast: a month running hot is most often a seasonal peak the model
  under-forecast (Double 11, Black Friday), not a new level. ``method="enkf-propagate"`` also moves
  the later months by their regression on this month across paths; on the demo history (known
  future in ``truth.json``) it put 2027Q1 inference 16 % above the truth where the current-month
  update is within 1 %, so it is an option, not the default. Without daily history (or
  ``method="proportional"``) the remaining cost is ``(1 - d/D) * path``.
* :func:`condition_paths` applies it to the **bottom** series of the hierarchy (phase x category)
  over the whole horizon, once per run, with a seed per bottom series, and re-adds every parent
  from its bottom series. So for every path and month, total = sum of phases = sum of
  phase x category after conditioning too, and a budget line's numbers never depend on which other
  lines are asked about.
* :func:`period_totals` sums closed months' actuals and the conditioned paths over a period, for
  every node at once (one value per path).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from pipeline.errors import InputError
from pipeline.frames import DS, UID, Y
from pipeline.periods import Period

PROPAGATE = "enkf-propagate"
METHODS = ("enkf", PROPAGATE, "proportional")


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
    if abs(partial.mtd) >= 0.005 and np.ptp(month_paths) == 0.0 and abs(month_paths[0]) < 0.005:
        # a line forecast at exactly 0 (no longer billed) that bills again this month: the forecast
        # has no spread to update, so a cost goes on at its month-to-date pace and a credit is the
        # month's whole amount (not cancelled by a cost nobody forecast)
        rest = partial.mtd * (1.0 - f) / f if partial.mtd > 0 else 0.0
        return np.full(len(month_paths), rest), later
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


def pace_errors(
    daily: pd.DataFrame,
    days_covered: Mapping[str, int],
    before: Mapping[str, pd.Timestamp],
    max_months: int = 12,
    min_months: int = 3,
) -> dict[str, float | None]:
    """:func:`pace_error` of every series of a long daily frame (``unique_id, ds, y``) at once:
    ``days_covered`` and the first month not to use (``before``) per series. Grouped sums, so the
    cost is linear in the rows, whatever the number of series."""
    out: dict[str, float | None] = dict.fromkeys(days_covered, None)
    if daily is None or not len(daily):
        return out
    d = daily[[UID, DS, Y]].copy()
    d[UID] = d[UID].astype(str)
    d = d[d[UID].isin(list(days_covered))]
    d[DS] = pd.to_datetime(d[DS])
    d = d[d[DS].to_numpy() < d[UID].map(before).to_numpy(dtype="datetime64[ns]")]
    if d.empty:
        return out
    d["_m"] = d[DS].dt.to_period("M").dt.to_timestamp()
    d["_dim"] = d[DS].dt.days_in_month
    day = d[DS].dt.day
    cover = np.minimum(d[UID].map(days_covered).to_numpy(int), d["_dim"].to_numpy(int))
    d["_early"] = np.where(day.to_numpy() <= cover, d[Y].to_numpy(float), 0.0)
    d["_cover"] = cover
    d["_day"] = day
    g = d.groupby([UID, "_m"], sort=True).agg(
        total=(Y, "sum"),
        early=("_early", "sum"),
        days=("_day", "nunique"),
        dim=("_dim", "first"),
        cover=("_cover", "first"),
    )
    g = g[(g["days"] >= g["dim"]) & (g["total"] > 0) & (g["cover"] > 0)]
    if g.empty:
        return out
    err = (g["early"] * g["dim"] / g["cover"] - g["total"]) / g["total"]
    last = err.groupby(level=0, sort=False).tail(max_months)
    by = last.pow(2).groupby(level=0, sort=False)
    rms = np.sqrt(by.mean())
    n = by.size()
    for uid, v in rms.items():
        if days_covered.get(str(uid), 0) > 0 and n[uid] >= min_months:
            out[str(uid)] = float(v)
    return out


def partial_months(
    mtd: pd.DataFrame | None, daily: pd.DataFrame | None = None
) -> dict[str, PartialMonth]:
    """``unique_id -> PartialMonth`` from a month-to-date frame (and the daily history for the pace
    error, :func:`pace_error` over the months before the partial one)."""
    if mtd is None or not len(mtd):
        return {}
    rows = []
    for row in mtd.itertuples(index=False):
        r = row._asdict()
        m = pd.Timestamp(r[DS]).to_period("M")
        dim = int(r.get("days_in_month") or r.get("days_in_period") or m.days_in_month)
        rows.append((str(r[UID]), m.to_timestamp(), float(r[Y]), int(r["days_covered"]), dim))
    errs = pace_errors(
        daily if daily is not None else pd.DataFrame(columns=[UID, DS, Y]),
        {u: days for u, _, _, days, _ in rows},
        {u: month for u, month, _, _, _ in rows},
    )
    return {u: PartialMonth(month, y, days, dim, errs.get(u)) for u, month, y, days, dim in rows}


# --- the whole hierarchy ----------------------------------------------------------------------
def _month_index(path_ds: Sequence[Any]) -> dict[pd.Timestamp, int]:
    return {pd.Timestamp(d).to_period("M").to_timestamp(): k for k, d in enumerate(path_ds)}


def condition_paths(
    paths: np.ndarray,
    path_ids: Sequence[str],
    path_ds: Sequence[Any],
    partial: Mapping[str, PartialMonth],
    *,
    nonneg: Sequence[str] = (),
    booked: Sequence[str] = (),
    method: str = "enkf",
    seed: int = 0,
) -> np.ndarray:
    """The paths with the current month replaced by its conditioned total (month-to-date actual
    plus the conditioned remainder) and later months adjusted, coherent over the hierarchy.

    Bottom series are conditioned one by one (seed ``seed + j`` for the j-th bottom series); a
    bottom series without a month-to-date row has cost nothing so far this month and is
    conditioned on 0 over the same days. Parents are the sums of their bottom series.
    ``nonneg``: bottom series whose conditioned values are clipped at 0 (no credits in history).
    ``booked``: bottom series whose month-to-date is a running booking, not a daily accrual (labor:
    the hours booked so far, which may already be the whole month's): no pace is extrapolated from
    them; the month is its forecast, and never less than what is already booked.
    """
    from pipeline.reconcile import add_up, summing_sparse

    out = np.array(paths, dtype=float, copy=True)
    ids = [str(u) for u in path_ids]
    months = _month_index(path_ds)
    current = [pm for pm in partial.values() if pm.month in months]
    if not ids or not current or out.ndim != 3:
        return out
    ref = max(current, key=lambda pm: pm.days_covered)
    col = months[ref.month]
    S, bottom = summing_sparse(ids)
    pos = {u: i for i, u in enumerate(ids)}
    clip = {str(u) for u in nonneg}
    as_booked = {str(u) for u in booked}
    b_paths = np.empty((len(bottom), out.shape[1], out.shape[2]))
    for j, uid in enumerate(bottom):
        i = pos[uid]
        pm = partial.get(uid) or PartialMonth(ref.month, 0.0, ref.days_covered, ref.days_in_month)
        row = out[i]
        if uid in as_booked:
            new = row.copy()
            new[:, col] = np.maximum(row[:, col], pm.mtd)
            b_paths[j] = new
            continue
        remaining, later = condition_partial_month(
            row[:, col], row[:, col + 1 :], pm, method=method, seed=seed + j
        )
        new = row.copy()
        new[:, col] = pm.mtd + remaining
        if method == PROPAGATE:
            new[:, col + 1 :] = later
        if uid in clip:
            new[:, col + 1 :] = np.maximum(new[:, col + 1 :], 0.0)
        b_paths[j] = new
    return add_up(S, b_paths)


@dataclass(frozen=True)
class PeriodTotals:
    """A period's cost per node: ``actual`` to date (closed months plus month-to-date) and one
    ``totals`` value per path (actuals plus the conditioned forecast of the rest)."""

    period: Period
    ids: list[str]
    actual: np.ndarray  # (n_ids,)
    totals: np.ndarray  # (n_ids, n_paths)
    months_closed: int
    days_covered: int

    def of(self, uid: str) -> tuple[float, np.ndarray]:
        """``(actual_to_date, totals)`` of one node; a node without history costs 0."""
        if uid in self.ids:
            i = self.ids.index(uid)
            return float(self.actual[i]), self.totals[i]
        return 0.0, np.zeros(self.totals.shape[1] if self.totals.ndim == 2 else 1)


def period_totals(
    period: Period,
    monthly: pd.DataFrame,
    conditioned: np.ndarray,
    path_ids: Sequence[str],
    path_ds: Sequence[Any],
    partial: Mapping[str, PartialMonth],
    *,
    rerun_hint: str = "phasecast run-monthly --horizon H",
) -> PeriodTotals:
    """Sum ``period`` for every node of the run: closed months at their actual, the current month
    and later months from the conditioned paths (:func:`condition_paths`). A month before the data
    window, or after the run's horizon, is an input error that names the command to re-run."""
    ids = [str(u) for u in path_ids]
    n_paths = conditioned.shape[1] if conditioned.ndim == 3 else 1
    months = _month_index(path_ds)
    wide = (
        monthly.assign(**{DS: pd.to_datetime(monthly[DS])})
        .pivot_table(index=UID, columns=DS, values=Y, aggfunc="sum")
        .reindex(ids)
        .fillna(0.0)
    )
    closed_months = set(wide.columns)
    first_closed = min(closed_months) if closed_months else None
    current = {pm.month for pm in partial.values()}
    actual = np.zeros(len(ids))
    totals = np.zeros((len(ids), n_paths))
    missing: list[pd.Timestamp] = []
    n_closed = 0
    days = 0
    for m in period.months:
        if m in closed_months and m not in current:
            actual += wide[m].to_numpy(float)
            totals += wide[m].to_numpy(float)[:, None]
            n_closed += 1
        elif m in months:
            k = months[m]
            totals += conditioned[:, :, k]
            if m in current:
                mtd = np.array([partial[u].mtd if u in partial else 0.0 for u in ids])
                actual += _coherent(ids, mtd)
                days = max(pm.days_covered for pm in partial.values() if pm.month == m)
        elif first_closed is not None and first_closed < m and (not months or m < min(months)):
            n_closed += 1  # inside the data window with nothing charged to any node
        else:
            missing.append(m)
    if missing:
        window = f"{min(months):%Y-%m}..{max(months):%Y-%m}" if months else "no months"
        first = f"{first_closed:%Y-%m}" if first_closed is not None else "none"
        raise InputError(
            f"period {period.label}: no actuals and no forecast for "
            f"{', '.join(f'{m:%Y-%m}' for m in missing)} (the data starts {first}; "
            f"the run forecasts {window})",
            fix=f"budget periods inside the data and forecast window, or re-run {rerun_hint}",
        )
    return PeriodTotals(period, ids, actual, totals, n_closed, days)


def _coherent(ids: list[str], values: np.ndarray) -> np.ndarray:
    """Parents re-added from their bottom series (month-to-date actuals add up like the paths)."""
    from pipeline.reconcile import add_up, summing_sparse

    S, bottom = summing_sparse(ids)
    pos = {u: i for i, u in enumerate(ids)}
    return add_up(S, values[[pos[b] for b in bottom]])
