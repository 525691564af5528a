"""Promotion and festival effects of one series, estimated from its own history.

Why: the per-series statistical models see a promotion month only as a season, and a season
needs two or three years of history before a seasonal form is chosen; most phase series are
shorter, and the promotion calendar is known in advance anyway. So each series' multiplicative
uplift per event is estimated, the history is divided by it before the model is fitted, and the
model's forecast is multiplied by it again in the months the calendar says hold the event.

Estimate (positive series, at least 13 months): the log of each month minus the mean log of its
nearest neighbours within two months that hold no event (a local level, robust to trend and to
level shifts away from the month), regressed without intercept on the event regressors of
:func:`features.calendar.promotion_intensity`. An event's coefficient is kept only when the month
was seen at least twice, its t-statistic is above ``T_MIN`` and the implied uplift above 3 %: a
series without promotions (a training burst, a labor step) is left as it is.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.calendar import promotion_intensity

T_MIN = 3.0
MIN_LENGTH = 13
MIN_EFFECT = 0.03
MIN_SEEN = 2  # occurrences of an event in the history before its effect is estimated


_CACHE: dict[int, np.ndarray] = {}


def regressors(ds: pd.DatetimeIndex | pd.Series) -> np.ndarray:
    """(n, 3) event regressors of the months ``ds`` (memoized per month: every fit of every
    series asks for the same few dozen months)."""
    idx = pd.DatetimeIndex(ds).to_period("M")
    keys = (idx.year * 12 + idx.month - 1).to_numpy()
    missing = sorted({int(k) for k in keys} - set(_CACHE))
    if missing:
        months = pd.Series(
            [pd.Timestamp(year=k // 12, month=k % 12 + 1, day=1) for k in missing], dtype="M8[ns]"
        )
        vals = promotion_intensity(months).to_numpy(float)
        for k, v in zip(missing, vals, strict=True):
            _CACHE[k] = v
    return np.array([_CACHE[int(k)] for k in keys], dtype=float).reshape(len(keys), 3)


def local_log_ratio(y: np.ndarray, busy: np.ndarray) -> np.ndarray:
    """log y_t minus the mean log of the event-free months among t-2..t+2 (NaN where none)."""
    ly = np.log(y)
    n = len(y)
    out = np.full(n, np.nan)
    for t in range(n):
        nb = [s for s in (t - 1, t + 1, t - 2, t + 2) if 0 <= s < n and not busy[s]]
        left = [s for s in nb if s < t][:1]
        right = [s for s in nb if s > t][:1]
        use = left + right if left and right else nb[:2]
        if use:
            out[t] = ly[t] - float(np.mean(ly[use]))
    return out


def estimate(y: np.ndarray, ds: pd.DatetimeIndex) -> np.ndarray | None:
    """Log-uplift coefficients per event (zeros where not kept), or None when nothing is kept."""
    y = np.asarray(y, dtype=float)
    if len(y) < MIN_LENGTH or not (np.isfinite(y).all() and (y > 0).all()):
        return None
    X = regressors(ds)
    busy = np.asarray((X > 0.05).any(axis=1), dtype=bool)
    z = local_log_ratio(y, busy)
    ok = np.isfinite(z)
    seen = (X[ok] > 0.5).sum(axis=0) >= MIN_SEEN
    if not seen.any() or ok.sum() < 8:
        return None
    Xs = X[ok][:, seen]
    zs = z[ok]
    beta, *_ = np.linalg.lstsq(Xs, zs, rcond=None)
    resid = zs - Xs @ beta
    dof = max(1, len(zs) - Xs.shape[1])
    s2 = float(resid @ resid) / dof
    try:
        cov = s2 * np.linalg.inv(Xs.T @ Xs)
    except np.linalg.LinAlgError:
        return None
    se = np.sqrt(np.maximum(np.diag(cov), 1e-18))
    keep = (np.abs(beta) / se > T_MIN) & (np.abs(beta) > MIN_EFFECT)
    if not keep.any():
        return None
    out = np.zeros(X.shape[1])
    out[np.flatnonzero(seen)[keep]] = beta[keep]
    return out


def factors(beta: np.ndarray | None, ds: pd.DatetimeIndex) -> np.ndarray:
    """Multiplicative effect per month (1 where no event or no kept coefficient)."""
    if beta is None:
        return np.ones(len(ds))
    return np.exp(regressors(ds) @ beta)
