"""The deterministic analytic baseline: usage x unit price from the plan, run-rate elsewhere.

* With a :class:`~pipeline.plan.Plan` and hierarchy ids (``<phase>/<category>``, ``<phase>``,
  ``total``): a bottom series the plan covers takes the plan's cost for every month the plan
  estimates (:func:`pipeline.estimate.estimate_from_plan`) and the run-rate for any other month.
  ``<phase>`` and ``total`` are the sums of their bottom series when those are in the frame
  (coherent by construction), else their own run-rate.
* Without a plan (any generic series): the run-rate, the mean of the last ``window`` months (all
  months when the history is shorter).

Sigma is the RMS of the run-rate's one-step errors over the history, widened by sqrt(step); a
series too short for any error gets 10 % of its level. Other models use :func:`run_rate` as their
fallback, so a failed fit still gets a deterministic, explainable number.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipeline.estimate import COST, estimate_from_plan
from pipeline.frames import CATEGORY, DS, PHASE, TOTAL, parse_hierarchy_id
from pipeline.models.base import Forecaster, SeriesForecast, run_rate, run_rate_sigma, series_arrays
from pipeline.plan import Plan


class AnalyticBaseline(Forecaster):
    name = "analytic_baseline"
    deterministic = True
    # storage grown from the window's first month until 2026-12-02 (estimate_from_plan)
    params_before = {"storage_from": "window"}

    def __init__(
        self, plan: Plan | None = None, window: int = 3, storage_from: str = "plan"
    ) -> None:
        self.plan = plan
        self.window = window
        self.storage_from = storage_from

    def _fit(self, df: pd.DataFrame) -> None:
        self.y_ = series_arrays(df)

    def _planned(self, h: int) -> dict[tuple[str, str], pd.Series]:
        """Plan cost per (phase, category), indexed by month, over every month any series needs."""
        if self.plan is None or not len(self.ids_):
            return {}
        starts = pd.DatetimeIndex(self.last_ds_)
        first = starts.min() + pd.DateOffset(months=1)
        n_months = (starts.max().year - first.year) * 12 + starts.max().month - first.month + 1 + h
        est = estimate_from_plan(
            self.plan, first, n_months, getattr(self, "storage_from", "window")
        )
        return {
            (str(ph), str(cat)): g.set_index(DS)[COST]
            for (ph, cat), g in est.groupby([PHASE, CATEGORY], sort=False)
        }

    def _predict(self, h: int, X_future: pd.DataFrame | None) -> SeriesForecast:
        planned = self._planned(h)
        start = self.plan.start if self.plan is not None else None
        self._plan_start = start if start is not None else pd.Timestamp.min
        n = len(self.ids_)
        mean = np.zeros((n, h))
        sigma = np.zeros((n, h))
        months = [
            pd.date_range(pd.Timestamp(d) + pd.DateOffset(months=1), periods=h, freq="MS")
            for d in self.last_ds_
        ]
        self.plan_driven_ids_: set[str] = set()
        for i, uid in enumerate(self.ids_):
            y = self.y_[str(uid)]
            mean[i] = run_rate(y, self.window)
            sigma[i] = run_rate_sigma(y, h, self.window)
            if planned:
                phase, cat = parse_hierarchy_id(str(uid))
                plan_row = (
                    planned.get((phase, cat)) if phase is not None and cat is not None else None
                )
                if plan_row is not None:
                    hit = plan_row.reindex(months[i])
                    # months before the plan's first month are history it says nothing about (a
                    # backtest window): the run-rate stands there, not a plan of zeros
                    covered = hit.notna().to_numpy() & np.asarray(months[i] >= self._plan_start)
                    mean[i, covered] = hit.to_numpy()[covered]
                    if covered.any():
                        self.plan_driven_ids_.add(str(uid))
        if planned:
            self._aggregate_parents(mean, sigma)
        return SeriesForecast(mean, sigma)

    def _aggregate_parents(self, mean: np.ndarray, sigma: np.ndarray) -> None:
        """``<phase>`` = sum of its ``<phase>/<category>`` rows, ``total`` = sum of the bottom level,
        when those rows are present with the same last month (so the months line up)."""
        pos = {str(u): i for i, u in enumerate(self.ids_)}
        bottom = {u: parse_hierarchy_id(u) for u in pos if parse_hierarchy_id(u)[1] is not None}
        for uid, i in pos.items():
            phase, cat = parse_hierarchy_id(uid)
            if cat is not None:
                continue
            kids = [pos[b] for b, (ph, _) in bottom.items() if uid == TOTAL or ph == phase]
            kids = [k for k in kids if self.last_ds_[k] == self.last_ds_[i]]
            if kids:
                mean[i] = mean[kids].sum(axis=0)
                sigma[i] = np.sqrt((sigma[kids] ** 2).sum(axis=0))  # children taken as independent
                if any(str(self.ids_[k]) in self.plan_driven_ids_ for k in kids):
                    self.plan_driven_ids_.add(uid)
