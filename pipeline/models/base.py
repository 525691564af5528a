"""The protocol every forecaster speaks, the analytic baseline included.

``__init__`` stores explicit keyword hyperparameters only; ``fit(df) -> self``;
``predict(h, level=...) -> DataFrame`` in the forecast-table format; ``sample_paths(h, n_paths)``
for sums over months. Fitted state lives in attributes ending in ``_``. Subclasses implement
``_fit`` and ``_predict`` (point forecasts plus a per-step standard deviation); the base class does
the checks, builds intervals and paths, and records fallbacks.

One fallback everywhere: a series whose fit or forecast fails gets the analytic baseline's
run-rate (:func:`run_rate`, the mean of its last three months), recorded in ``fallback_ids_`` and
shown as ``analytic_baseline(fallback)`` in the published forecast; a whole model that fails is
replaced by the analytic baseline (:func:`pipeline.backtest.fit_predict`).

Intervals here are the model's own (Gaussian on its residual scale). The backtest replaces them
with intervals calibrated on rolling-origin errors (see ``pipeline.intervals``); a model that has
better native paths overrides :meth:`_sample_errors`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Self

import numpy as np
import pandas as pd
from scipy.stats import norm

from pipeline.errors import PhasecastError
from pipeline.frames import DS, MEAN, MODEL, UID, Y, check_levels, hi_col, lo_col


def run_rate(y: np.ndarray, window: int = 3) -> float:
    """Mean of the last ``window`` values (of all of them when shorter); 0 for an empty series."""
    y = np.asarray(y, dtype=float)
    y = y[np.isfinite(y)]
    return float(np.mean(y[-window:])) if len(y) else 0.0


def run_rate_sigma(y: np.ndarray, h: int, window: int = 3) -> np.ndarray:
    """Per-step sd of the run-rate: RMS of its one-step errors, times sqrt(step)."""
    y = np.asarray(y, dtype=float)
    errs = [y[t] - np.mean(y[max(0, t - window) : t]) for t in range(1, len(y))]
    if errs:
        s = float(np.sqrt(np.mean(np.square(errs))))
    else:
        s = 0.1 * abs(float(y[-1])) if len(y) else 0.0
    return s * np.sqrt(np.arange(1, h + 1, dtype=float))


class NotFittedError(PhasecastError):
    pass


@dataclass(frozen=True)
class SeriesForecast:
    """What ``_predict`` returns: arrays of shape (n_series, h), rows in ``ids_`` order."""

    mean: np.ndarray
    sigma: np.ndarray


class Forecaster:
    """Base class: checks, intervals, sample paths and fallback bookkeeping."""

    name: ClassVar[str] = "base"
    supports_intervals: ClassVar[bool] = True
    uses_exogenous: ClassVar[bool] = False
    #: per series (per member for a combination), the model form to fit instead of searching
    #: one: set by ``flavor.build_model`` to refit a stored version as the run fitted it
    given_forms_: dict[str, Any] | None = None
    #: hyperparameters added after versions were stored, with the value those versions had
    #: (a stored spec without the name is rebuilt with it: ``flavor.build_model``)
    params_before: ClassVar[dict[str, Any]] = {}
    deterministic: ClassVar[bool] = True
    #: one model learnt across all the frame's series (it needs many series to learn from)
    is_global: ClassVar[bool] = False

    # --- public protocol -------------------------------------------------
    def fit(self, df: pd.DataFrame) -> Self:
        """Fit on a validated long frame ``unique_id, ds, y`` (+ drivers when ``uses_exogenous``)."""
        df = df.sort_values([UID, DS], kind="stable")
        self.ids_ = np.asarray(pd.unique(df[UID]))
        self.last_ds_ = df.groupby(UID, sort=False)[DS].max().reindex(self.ids_).to_numpy()
        self.fallback_ids_: set[str] = set()
        # the one fallback: the analytic baseline's run-rate, for a series whose forecast fails
        self.run_rate_ = np.array(
            [run_rate(g.to_numpy(float)) for _, g in df.groupby(UID, sort=False)[Y]], dtype=float
        )
        self._fit(df)
        self.is_fitted_ = True
        return self

    def predict(
        self,
        h: int,
        level: Sequence[int] = (80, 95),
        X_future: pd.DataFrame | None = None,
    ) -> pd.DataFrame:
        """One row per series and future month: ``unique_id, ds, model, mean, lo_L, hi_L``."""
        self._check_fitted()
        levels = check_levels(level)
        fc = self._predict_checked(h, X_future)
        out = self._frame(fc.mean, h)
        for lv in levels:
            z = norm.ppf(0.5 + lv / 200.0)
            out[lo_col(lv)] = (fc.mean - z * fc.sigma).ravel()
            out[hi_col(lv)] = (fc.mean + z * fc.sigma).ravel()
        return out

    def sample_paths(
        self, h: int, n_paths: int = 1000, seed: int = 0, X_future: pd.DataFrame | None = None
    ) -> np.ndarray:
        """Future paths, shape (n_series, n_paths, h), rows in ``ids_`` order.

        Errors are correlated across horizons (a random-walk-like accumulation scaled to match
        ``sigma`` at each step), so sums over months are not too narrow.
        """
        self._check_fitted()
        fc = self._predict_checked(h, X_future)
        rng = np.random.default_rng(seed)
        return fc.mean[:, None, :] + self._sample_errors(fc, n_paths, rng)

    # --- for subclasses --------------------------------------------------
    def _fit(self, df: pd.DataFrame) -> None:
        raise NotImplementedError

    def _predict(self, h: int, X_future: pd.DataFrame | None) -> SeriesForecast:
        raise NotImplementedError

    def _sample_errors(
        self, fc: SeriesForecast, n_paths: int, rng: np.random.Generator
    ) -> np.ndarray:
        n, h = fc.mean.shape
        z = rng.standard_normal((n, n_paths, h))
        # accumulate shocks so month-to-month errors are correlated, then rescale each step to sigma
        walk = np.cumsum(z, axis=2) / np.sqrt(np.arange(1, h + 1))
        return walk * fc.sigma[:, None, :]

    # --- helpers ---------------------------------------------------------
    @property
    def model_name(self) -> str:
        return self.name

    def get_params(self) -> dict[str, object]:
        """Hyperparameters as given to ``__init__`` (logged to MLflow as they are)."""
        import inspect

        sig = inspect.signature(type(self).__init__)
        return {p: getattr(self, p) for p in sig.parameters if p != "self"}

    def _check_fitted(self) -> None:
        if not getattr(self, "is_fitted_", False):
            raise NotFittedError(f"{type(self).__name__} is not fitted yet: call fit(df) first")

    def _predict_checked(self, h: int, X_future: pd.DataFrame | None) -> SeriesForecast:
        if h < 1:
            raise ValueError(f"horizon must be >= 1. Got {h} instead.")
        fc = self._predict(h, X_future)
        mean = np.asarray(fc.mean, dtype=float)
        sigma = np.nan_to_num(np.asarray(fc.sigma, dtype=float), nan=0.0).clip(min=0.0)
        bad = ~np.isfinite(mean).all(axis=1)
        if bad.any():  # never publish NaN: the baseline's run-rate, recorded as a fallback
            mean[bad] = self.run_rate_[bad][:, None]
            self.fallback_ids_ |= set(self.ids_[bad].tolist())
        return SeriesForecast(mean, sigma)

    def _frame(self, mean: np.ndarray, h: int) -> pd.DataFrame:
        n = len(self.ids_)
        starts = pd.DatetimeIndex(self.last_ds_)
        ds = np.stack(
            [(starts + pd.DateOffset(months=k)).to_numpy() for k in range(1, h + 1)], axis=1
        )
        return pd.DataFrame(
            {
                UID: np.repeat(self.ids_, h),
                DS: ds.ravel() if n else np.array([], dtype="datetime64[ns]"),
                MODEL: self.model_name,
                MEAN: mean.ravel(),
            }
        )


def future_months(last_ds: pd.Timestamp, h: int) -> pd.DatetimeIndex:
    return pd.date_range(last_ds + pd.DateOffset(months=1), periods=h, freq="MS")


def series_arrays(df: pd.DataFrame) -> dict[str, np.ndarray]:
    """``unique_id -> y`` in date order (frames are validated and sorted upstream)."""
    return {str(uid): g[Y].to_numpy(dtype=float) for uid, g in df.groupby(UID, sort=False)}


def residual_sigma(y: np.ndarray, fitted: np.ndarray, h: int, growth: str = "sqrt") -> np.ndarray:
    """Per-step sd from one-step residuals, widened with the horizon (sqrt(k) by default)."""
    r = (y - fitted)[np.isfinite(y - fitted)]
    s = float(np.sqrt(np.mean(r**2))) if len(r) else 0.0
    k = np.arange(1, h + 1, dtype=float)
    return s * (np.sqrt(k) if growth == "sqrt" else np.ones_like(k))
