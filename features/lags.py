"""Lags and rolling statistics that are leakage-safe at any cutoff.

Every feature of the row for month ``t`` of a series is computed from ``y`` shifted by ``gap``
months within that series (``gap >= 1``), i.e. from ``y[.. t - gap]`` only: a value known at the
cutoff ``t - gap``. A direct forecast ``k`` months ahead must use ``gap >= k`` (the lag is at least
the horizon step). Rows must be sorted by ``unique_id, ds`` with no gaps (see
:func:`pipeline.frames.validate_frame` and :func:`pipeline.frames.fill_gaps`).

Rolling windows that are not yet full use what is there (``min_periods=1``; 2 for the std); a row
with nothing before it gets NaN, which LightGBM treats as missing.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd


def _check_gap(gap: int) -> None:
    if gap < 1:
        raise ValueError(
            f"gap must be >= 1 so a feature never sees its own month. Got {gap} instead."
        )


def lag(y: pd.Series, unique_id: pd.Series, k: int) -> pd.Series:
    """``y`` of ``k`` months before, within each series (``k >= 1``)."""
    _check_gap(k)
    return y.groupby(unique_id.to_numpy(), sort=False).shift(k)


def _rolling(y: pd.Series, unique_id: pd.Series, window: int, gap: int, how: str) -> pd.Series:
    _check_gap(gap)
    shifted = lag(y, unique_id, gap)
    min_periods = 2 if how == "std" else 1
    roll = shifted.groupby(unique_id.to_numpy(), sort=False).rolling(
        window, min_periods=min_periods
    )
    out = getattr(roll, how)()
    if not len(y):
        return pd.Series(np.zeros(0), index=y.index)
    return out.reset_index(level=0, drop=True).reindex(y.index)


def rolling_mean(y: pd.Series, unique_id: pd.Series, window: int, gap: int = 1) -> pd.Series:
    """Mean of ``y[t-gap-window+1 .. t-gap]`` within the series."""
    return _rolling(y, unique_id, window, gap, "mean")


def rolling_std(y: pd.Series, unique_id: pd.Series, window: int, gap: int = 1) -> pd.Series:
    """Sample standard deviation (ddof=1) over the same window as :func:`rolling_mean`."""
    return _rolling(y, unique_id, window, gap, "std")


def rolling_min(y: pd.Series, unique_id: pd.Series, window: int, gap: int = 1) -> pd.Series:
    return _rolling(y, unique_id, window, gap, "min")


def rolling_max(y: pd.Series, unique_id: pd.Series, window: int, gap: int = 1) -> pd.Series:
    return _rolling(y, unique_id, window, gap, "max")


def history_length(unique_id: pd.Series, gap: int = 1) -> pd.Series:
    """How many months of the series are known ``gap`` months before the row's month."""
    _check_gap(gap)
    pos = unique_id.groupby(unique_id.to_numpy(), sort=False).cumcount()
    return (pos - gap + 1).clip(lower=0)


def lag_features(
    y: pd.Series,
    unique_id: pd.Series,
    lags: Sequence[int] = (1, 2, 3, 6, 12),
    windows: Sequence[int] = (3, 6, 12),
    gap: int = 1,
) -> pd.DataFrame:
    """Lags ``gap .. gap+max`` and rolling mean/std/min/max, all seeing ``y[.. t-gap]`` only.

    Columns: ``lag_<k>`` (the value ``gap + k - 1`` months back), ``rolling_<stat>_<w>``.
    With ``gap=1`` this is the usual ``lag_1 = y[t-1]``.
    """
    cols: dict[str, pd.Series] = {}
    for k in lags:
        cols[f"lag_{k}"] = lag(y, unique_id, gap + k - 1)
    for w in windows:
        cols[f"rolling_mean_{w}"] = rolling_mean(y, unique_id, w, gap)
        cols[f"rolling_std_{w}"] = rolling_std(y, unique_id, w, gap)
        cols[f"rolling_min_{w}"] = rolling_min(y, unique_id, w, gap)
        cols[f"rolling_max_{w}"] = rolling_max(y, unique_id, w, gap)
    cols["history_length"] = history_length(unique_id, gap)
    return pd.DataFrame({k: np.asarray(v, dtype=float) for k, v in cols.items()}, index=y.index)
