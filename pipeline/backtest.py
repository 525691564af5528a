"""Rolling-origin backtest: every model, several cutoffs, horizons up to 18 months.

Window rule (per series of ``n`` observed months, requested horizon ``H``, ``W`` windows, least
``step``):

1. ``min_train = min(24, max(3, ceil(n / 2)))``: at least half the history (at most two years is
   asked for) stays in every training set; the ``span = n - min_train`` months after it are what the
   windows can score;
2. **spread** (when ``W > 1`` and it gives at least 6 months): the backtest horizon is
   ``h = min(H, floor(2 span / (W + 1)))``, raised to ``min(H, 12, span - (W - 1) step)`` when that
   is longer (a year ahead is measured whenever ``W`` windows ``step`` apart reach it: the accuracy
   table's 12-month typical error needs it), and the cutoffs are ``step' = min(12, h, floor((span -
   h) / (W - 1)))`` months apart, so consecutive windows overlap by about half their length, or
   touch (they never leave a gap, and are at most a year apart). Windows a few months apart that
   each run the whole 18 months score almost the same stretch: their errors at a horizon share
   every shock, and the bands calibrated on them were too narrow at long horizons (48-month
   histories: 0.72 at 80 % over months 7-18). A 48-month history gets windows of 12 months cut at
   36, 30 and 24; 40-47 months: 12 months, 4-5 apart; 36 months: 12 months at 24, 21 and 18 (a
   year ahead leaves no room to spread); 24 months: 6 months at 18, 15 and 12; 60 months or more:
   18 months, 9-12 apart. A least ``step`` larger than ``step'`` is kept, and the windows are
   shortened to ``span - (W - 1) step`` (while that is at least 6) so all ``W`` still fit;
3. otherwise (histories under 24 months with the defaults, one window, or ``H < 6``):
   ``h = min(H, span)``, shortened to ``span - (W - 1) step`` when that is shorter but still at least
   6 (a short history trades backtest horizon for windows), cutoffs ``step`` apart;
4. cutoffs sit ``h``, ``h + step'``, ..., ``h + (W - 1) step'`` months before the end; a cutoff that
   would leave fewer than ``min_train`` months is dropped, so short series get fewer windows; a series
   with ``h < 1`` (fewer than 4 months) is not backtested (its intervals come from the pooled errors of
   the other series, or the model's own when there are none). Horizons past ``h`` reuse the last
   calibration seen (:mod:`pipeline.intervals`).

Cutoffs are positions from each series' own end, so series of different lengths and end dates are
backtested together: window ``k`` fits every model once, on all series cut at their own ``k``-th
cutoff (a global model such as LightGBM sees them all at once). Windows run from the earliest
cutoff forward: a per-series model's form search (ETS form, SARIMA order) done on an earlier
window is reused on the later ones and in the final fit while the data allow the same candidates
(:mod:`pipeline.models.stats`), so no window's choice sees data after its cutoff.

A model that raises in a window is replaced there by the analytic baseline (run-rate without a
plan), and series the model itself handed to a fallback are marked too: the ``fallback`` column
says which rows are not the model's own forecast, and the metrics keep them (an honest score).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.stats import norm

from pipeline.frames import CUTOFF, DS, MEAN, MODEL, UID, Y, hi_col, lo_col
from pipeline.metrics import scale_of
from pipeline.models.base import Forecaster

log = logging.getLogger(__name__)

H = "h"
SIGMA = "sigma"
SCALE = "scale"
WINDOW = "window"
FALLBACK = "fallback"

ModelFactory = Callable[[str], Forecaster]
_Z80 = float(norm.ppf(0.9))
MIN_SHORT_H = 6
YEAR = 12  # months: the longest horizon the accuracy table reports
MAX_STEP = 12  # a year between cutoffs at most: older windows say little about the next months


@dataclass(frozen=True)
class WindowSpec:
    horizon: int = 18
    n_windows: int = 3
    step: int = 3


def min_train(n: int) -> int:
    return min(24, max(3, math.ceil(n / 2)))


def window_shape(n: int, spec: WindowSpec) -> tuple[int, int]:
    """``(h, step)`` of the backtest windows of a series of ``n`` months (rules 2 and 3 above);
    ``h < 1`` means no backtest."""
    span = n - min_train(n)
    w = spec.n_windows
    h = min(spec.horizon, span)
    if w > 1:
        spread = min(spec.horizon, 2 * span // (w + 1))
        # a year ahead measured when W windows at the least step reach it (the accuracy table's
        # 12-month typical error): a 36-month history keeps 12-month windows 3 apart
        spread = max(spread, min(spec.horizon, YEAR, span - (w - 1) * spec.step))
        if spread >= MIN_SHORT_H:
            step = max(spec.step, min(MAX_STEP, spread, (span - spread) // (w - 1)))
            fit = span - (w - 1) * step  # a least step above the spread's: shorter windows, all W
            return (min(spread, fit) if fit >= MIN_SHORT_H else spread), step
        # too short to spread: trade horizon for windows at the least step while 6 months are scored
        fit = span - (w - 1) * spec.step
        if MIN_SHORT_H <= fit < h:
            h = fit
    return h, spec.step


def plan_windows(lengths: pd.Series, spec: WindowSpec) -> pd.DataFrame:
    """``unique_id, window, train_len, h`` for every backtest window of every series
    (``lengths``: observed months per series, indexed by unique_id)."""
    rows = []
    for uid, n in lengths.items():
        n = int(n)
        mt = min_train(n)
        h, step = window_shape(n, spec)
        if h < 1:
            continue
        for k in range(spec.n_windows):
            c = n - h - k * step
            if c < mt:
                break
            rows.append((uid, k, c, h))
    return pd.DataFrame(rows, columns=[UID, WINDOW, "train_len", H])


def native_sigma(pred: pd.DataFrame) -> np.ndarray:
    """The model's own per-step standard deviation, read back from its 80 % interval."""
    return ((pred[hi_col(80)] - pred[lo_col(80)]).to_numpy(float) / (2.0 * _Z80)).clip(min=0.0)


def predict_frame(model: Forecaster, h: int, X_future: pd.DataFrame | None) -> pd.DataFrame:
    """``unique_id, ds, mean, sigma`` from a fitted model (drivers passed only when it uses them)."""
    xf = X_future if (model.uses_exogenous and X_future is not None) else None
    pred = model.predict(h, level=(80,), X_future=xf)
    out = pred[[UID, DS, MEAN]].copy()
    out[SIGMA] = native_sigma(pred)
    fb = set(getattr(model, "fallback_ids_", set()) or set())
    out[FALLBACK] = out[UID].isin(fb)
    return out


def fit_predict(
    name: str,
    train: pd.DataFrame,
    h: int,
    make: ModelFactory,
    X_future: pd.DataFrame | None = None,
    fallback: str = "analytic_baseline",
    keep_state: bool = True,
) -> tuple[pd.DataFrame, Forecaster, str | None]:
    """Fit ``name`` and predict ``h``; on any exception use ``fallback`` and say why.

    Per-series models forecast ``h`` months in their workers right after fitting; with
    ``keep_state=False`` (backtest windows) they then drop their statsmodels results."""
    try:
        model = make(name)
        if hasattr(model, "horizon_hint"):  # per-series statsmodels forecasters
            setattr(model, "horizon_hint", h)  # noqa: B010  (not on the Forecaster protocol)
            setattr(model, "keep_state", keep_state)  # noqa: B010
        model.fit(train)
        return predict_frame(model, h, X_future), model, None
    except Exception as exc:  # a model failing must not sink the run: record and fall back
        reason = f"fallback: {name} failed ({type(exc).__name__}: {str(exc)[:120]})"
        log.warning("%s", reason)
        if name == fallback:
            raise
        model = make(fallback).fit(train)
        out = predict_frame(model, h, None)
        out[FALLBACK] = True
        return out, model, reason


def truncate(df: pd.DataFrame, train_len: pd.Series) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split each series at its own position: first ``train_len[uid]`` rows train, the rest test."""
    pos = df.groupby(UID, sort=False).cumcount()
    keep_len = df[UID].map(train_len)
    inside = keep_len.notna()
    train = df[inside & (pos < keep_len)]
    test = df[inside & (pos >= keep_len)]
    return train, test


def backtest(
    df: pd.DataFrame,
    models: Sequence[str],
    make: ModelFactory,
    spec: WindowSpec,
    drivers: Sequence[str] = (),
    progress: Callable[[str], None] | None = None,
) -> tuple[pd.DataFrame, list[dict[str, object]]]:
    """Rolling-origin forecasts of every model.

    ``df`` is validated, gap-free and sorted, with only observed rows (``y`` not null).
    Returns the backtest table (``unique_id, cutoff, ds, h, model, y, mean, sigma, scale, window,
    fallback``; intervals are added by :mod:`pipeline.intervals`) and a list of fallback events.
    """
    lengths = df.groupby(UID, sort=False).size()
    windows = plan_windows(lengths, spec)
    parts: list[pd.DataFrame] = []
    events: list[dict[str, object]] = []
    from pipeline.models.stats import reset_form_cache

    reset_form_cache()
    for k, wdf in sorted(windows.groupby(WINDOW, sort=True), key=lambda kv: -int(kv[0])):
        train_len = wdf.set_index(UID)["train_len"]
        h_of = wdf.set_index(UID)[H]
        train, test = truncate(df, train_len)
        cut = train.groupby(UID, sort=False)[DS].max()
        scales = train.groupby(UID, sort=False)[Y].apply(lambda s: scale_of(s.to_numpy()))
        hmax = int(h_of.max())
        X_future = test[[UID, DS, *drivers]] if drivers else None
        for name in models:
            if progress:
                progress(f"backtest window {k + 1}: {name}")
            pred, _, reason = fit_predict(name, train, hmax, make, X_future, keep_state=False)
            if reason:
                events.append({MODEL: name, WINDOW: int(k), "reason": reason})
            pred[H] = pred.groupby(UID, sort=False).cumcount() + 1
            pred = pred[pred[H] <= pred[UID].map(h_of)]
            pred = pred.merge(test[[UID, DS, Y]], on=[UID, DS], how="inner")
            pred[MODEL] = name
            pred[CUTOFF] = pred[UID].map(cut)
            pred[SCALE] = pred[UID].map(scales)
            pred[WINDOW] = int(k)
            parts.append(pred)
    cols = [UID, CUTOFF, DS, H, MODEL, Y, MEAN, SIGMA, SCALE, WINDOW, FALLBACK]
    if not parts:
        return pd.DataFrame(columns=cols), events
    bt = pd.concat(parts, ignore_index=True)[cols]
    bt = bt.sort_values([WINDOW], kind="stable", ignore_index=True)  # window 0 first, as before
    return bt, events
