"""Seasonal naive: next year's month is this year's month (last value when history is short)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipeline.models.base import Forecaster, SeriesForecast, series_arrays


class SeasonalNaive(Forecaster):
    name = "seasonal_naive"

    def __init__(self, season_length: int = 12) -> None:
        self.season_length = season_length

    def _fit(self, df: pd.DataFrame) -> None:
        self.y_ = series_arrays(df)

    def _predict(self, h: int, X_future: pd.DataFrame | None) -> SeriesForecast:
        m = self.season_length
        means, sigmas = [], []
        for uid in self.ids_:
            y = self.y_[str(uid)]
            if len(y) >= m:
                season = y[-m:]
                mean = np.array([season[k % m] for k in range(h)])
                resid = y[m:] - y[:-m]
                steps = np.floor(np.arange(h) / m) + 1
            else:  # too short for a season: naive
                mean = np.full(h, y[-1])
                resid = np.diff(y)
                steps = np.arange(1, h + 1, dtype=float)
            s = float(np.sqrt(np.mean(resid**2))) if len(resid) else abs(float(y[-1])) * 0.1
            means.append(mean)
            sigmas.append(s * np.sqrt(steps))
        return SeriesForecast(np.vstack(means), np.vstack(sigmas))
