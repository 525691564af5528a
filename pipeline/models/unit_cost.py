"""Unit cost x driver: the cost a driver (traffic, GPU-hours) brings, at the unit cost the bill shows.

Why: an inference bill is requests x cost per request. The statistical models see only the cost, so
they learn last year's promotion peaks from the calendar at best and never hear of next quarter's
traffic plan; the analytic baseline knows the plan but prices it at the plan's price book, not at
what a request really cost (committed discounts, batching, retries). This model takes the unit cost
from the bill and the volume from the driver:

* **unit cost**: ``sum(y) / sum(d)`` over the last ``window`` months of the history (a ratio of
  sums: a month with little traffic does not swing it), per series, for the driver column whose
  monthly unit cost was the steadiest over the last year (lowest coefficient of variation; a
  frame usually has one driver, ``requests``);
* **forecast**: unit cost x the driver's future value (``X_future``: in the backtest the actual
  driver of the test months, in a forecast the plan's); a month the future frame leaves empty is
  filled by :func:`features.drivers.extend_driver` (the driver a year before, grown like the last
  year), so an 18-month forecast of a 12-month plan still has a driver every month;
* **sigma**: the RMS of the one-step errors of the same rule over the history, times sqrt(step).

A series without a usable driver (no driver column, or zero in the fit window) gets the run-rate
and is listed in ``undriven_`` so selection can leave this model out for it. Because the backtest
feeds the actual driver, its errors do not include the plan's own error: the forecasting job
widens the published paths of a series that selects this model by the plan's relative error
(:func:`pipeline.coherence.plan_paths`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.drivers import driver_columns, extend_driver
from pipeline.frames import DS, UID, Y
from pipeline.models.base import Forecaster, SeriesForecast, run_rate, run_rate_sigma


def _ratio_rule(y: np.ndarray, d: np.ndarray, window: int) -> tuple[float, float, float]:
    """``(unit cost, one-step RMS error, CV of the monthly unit cost over the last year)`` of the
    rule on one series and driver (NaN unit cost when the driver is zero in the window)."""
    d = np.nan_to_num(d, nan=0.0)
    sd = float(d[-window:].sum())
    if sd <= 0:
        return np.nan, np.nan, np.inf
    unit = float(y[-window:].sum()) / sd
    errs = []
    for t in range(window, len(y)):
        den = d[t - window : t].sum()
        if den > 0 and d[t] > 0:
            errs.append(y[t] - y[t - window : t].sum() / den * d[t])
    rms = float(np.sqrt(np.mean(np.square(errs)))) if errs else 0.1 * abs(unit * d[-1])
    last = slice(-12, None)
    ok = d[last] > 0
    r = y[last][ok] / d[last][ok]
    cv = float(np.std(r) / abs(np.mean(r))) if len(r) > 1 and np.mean(r) != 0 else np.inf
    return unit, rms, cv


class UnitCost(Forecaster):
    name = "unit_cost"
    uses_exogenous = True
    deterministic = True

    def __init__(self, window: int = 3) -> None:
        self.window = window

    def _fit(self, df: pd.DataFrame) -> None:
        cols = [c for c in driver_columns(df) if c not in ("phase", "category")]
        self.driver_cols_ = cols
        n = len(self.ids_)
        self.unit_ = np.full(n, np.nan)
        self.rms_ = np.zeros(n)
        self.col_: list[str | None] = [None] * n
        self.driver_hist_: list[pd.Series | None] = [None] * n
        self.y_: list[np.ndarray] = []
        for i, (_, g) in enumerate(df.groupby(UID, sort=False)):
            y = g[Y].to_numpy(float)
            self.y_.append(y)
            best: tuple[float, float, float, str | None] = (np.nan, np.nan, np.inf, None)
            for c in cols:
                unit, rms, cv = _ratio_rule(y, g[c].to_numpy(float), self.window)
                if np.isfinite(unit) and (best[3] is None or cv < best[2]):
                    best = (unit, rms, cv, c)
            if best[3] is not None:
                self.unit_[i], self.rms_[i], self.col_[i] = best[0], best[1], best[3]
                self.driver_hist_[i] = g.set_index(DS)[best[3]].astype(float)
        self.undriven_ = {str(u) for u, c in zip(self.ids_, self.col_, strict=True) if c is None}

    def _predict(self, h: int, X_future: pd.DataFrame | None) -> SeriesForecast:
        n = len(self.ids_)
        mean = np.zeros((n, h))
        sigma = np.zeros((n, h))
        steps = np.sqrt(np.arange(1, h + 1, dtype=float))
        fut = X_future.set_index([UID, DS]) if X_future is not None and len(X_future) else None
        for i, uid in enumerate(self.ids_):
            months = pd.date_range(
                pd.Timestamp(self.last_ds_[i]) + pd.DateOffset(months=1), periods=h, freq="MS"
            )
            col, known = self.col_[i], self.driver_hist_[i]
            if col is None or known is None:
                mean[i] = run_rate(self.y_[i], self.window)
                sigma[i] = run_rate_sigma(self.y_[i], h, self.window)
                continue
            planned = pd.Series(np.nan, index=months)
            if fut is not None and col in fut.columns and uid in fut.index.get_level_values(0):
                got = fut.loc[uid, col]
                got.index = pd.DatetimeIndex(got.index)
                planned = got.reindex(months).astype(float)
            d = extend_driver(pd.concat([known, planned]), months)
            mean[i] = self.unit_[i] * d
            sigma[i] = self.rms_[i] * steps
        return SeriesForecast(mean, sigma)
