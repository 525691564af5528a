"""The analytic baseline's forecast as a feature.

For a row of month ``t`` forecast ``gap`` months ahead, the baseline knows ``y[.. t-gap]``: its
run-rate is the mean of the last ``window`` known months, and where a plan covers the series and
month, the plan's cost replaces it (the plan is written down in advance, so using it is not
leakage). A global model learns how far reality strays from the baseline.
"""

from __future__ import annotations

import pandas as pd

from features.lags import rolling_mean


def baseline_run_rate(
    y: pd.Series, unique_id: pd.Series, gap: int = 1, window: int = 3
) -> pd.Series:
    """Run-rate known ``gap`` months before the row: mean of ``y[t-gap-window+1 .. t-gap]``."""
    return rolling_mean(y, unique_id, window, gap)


def baseline_forecast(run_rate: pd.Series, planned_cost: pd.Series | None = None) -> pd.Series:
    """The plan's cost where it has one (non-NaN), the run-rate elsewhere (aligned by index)."""
    if planned_cost is None:
        return run_rate
    return planned_cost.reindex(run_rate.index).fillna(run_rate)
