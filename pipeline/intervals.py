"""Intervals and sample paths calibrated on rolling-origin errors (split-conformal, pooled).

Design (why, in order):

- **Scale-free errors.** A backtest error ``y - mean`` is divided by the model's own standard
  deviation for that series and horizon (``sigma``, read from its native interval), floored at 5 %
  of the series' MASE scale so a model that over-fits a short series cannot claim a tiny spread.
  It is also capped at 10 x that scale (an exploded variance would otherwise dominate). The ratio
  is comparable across series and horizons, so errors of thousands of series can be
  pooled, and the model's native interval shape (how it widens with the horizon, how noisy the
  series is) carries over.
- **Pooled per model and horizon, signed.** For each model, the ratios of every (series, window)
  form one vector over horizons ``1..H``; quantiles are taken per horizon over all vectors, signed
  (a model that under-forecasts trends gets a wider upper side). The finite-sample conformal
  correction raises an upper quantile ``p`` to ``p (1 + 1/n)`` for ``n`` backtest vectors (and
  lowers a lower one alike), in proportion to the backtest's share of the pool.
- **Few errors: shrink to the model's Gaussian.** The pool is mixed with ``prior_weight``
  pseudo-windows of standard-normal vectors (the model's own Gaussian interval in these units):
  with thousands of vectors they do not matter; with one series and three windows the result is
  mostly the model's own interval, widened by what the backtest showed.
- **Horizons the backtest did not reach** (short series, or ``H`` longer than the backtest) reuse
  the ratio of the last horizon seen: the sigma already grows with the horizon.
- **Paths resample whole vectors**: a path is ``mean + sigma_h * z`` with ``z`` one pooled
  vector (all horizons of one window of one series), so month-to-month error correlation is kept
  and sums over months (quarters, budgets) get honest intervals. The published forecast's paths
  (:mod:`pipeline.coherence`) are centred so that their mean is the forecast, drawn jointly across
  series, and its bounds are their quantiles read at the corrected probabilities.
- **Multiplicative for positive costs.** Where the forecast is positive and the model's relative
  spread ``d / mean`` at most ``LOG_MAX`` (0.5), the error is taken on the log scale,
  ``log(y / mean) / (d / mean)`` (the same number as ``(y - mean) / d`` for small errors), and
  bounds and paths are ``mean x exp(d / mean x z)``: a lower bound then shrinks in proportion and
  never collapses to 0 while the upper one widens. Bursty series (larger relative spread) and
  rows with ``y <= 0`` stay additive.
- **Nesting**: bounds are quantiles of one distribution at nested probabilities, then clamped
  around the mean, so ``lo_95 <= lo_80 <= mean <= hi_80 <= hi_95`` always holds.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from pipeline.frames import CUTOFF, MEAN, MODEL, UID, Y, hi_col, lo_col

LOG_MAX = 0.5  # relative spread above which errors stay additive (bursty series)
LOG_CAP = 2.0  # a ratio never moves a positive forecast by more than e^2 either way
TAIL = 0.01  # pooled ratios are winsorized at these weighted quantiles (the mean of a path is
# what a budget reads: one exploded window must not move it)
SIGMA_FLOOR = 0.05  # share of the MASE scale below which a model's sigma is not believed
SIGMA_CAP = 10.0  # multiple of the MASE scale above which it is not believed either


def normalizer(sigma: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """The model's sigma, kept within [0.05, 10] x the series' MASE scale: an over-fitted model
    cannot claim a tiny spread, and one whose variance exploded (an ARIMA near a unit root) cannot
    blow the interval up by orders of magnitude."""
    s = np.asarray(scale, float)
    sig = np.nan_to_num(np.asarray(sigma, float), nan=0.0, posinf=np.inf)
    return np.clip(sig, SIGMA_FLOOR * s, SIGMA_CAP * s)


def multiplicative(mean: np.ndarray, d: np.ndarray) -> np.ndarray:
    """Where errors live on the log scale: positive forecast, relative spread <= ``LOG_MAX``."""
    m = np.asarray(mean, float)
    dd = np.asarray(d, float)
    with np.errstate(divide="ignore", invalid="ignore"):
        return (m > 0) & (dd <= LOG_MAX * m)


def to_ratio(y: np.ndarray, mean: np.ndarray, d: np.ndarray) -> np.ndarray:
    """Scale-free errors: ``log(y / mean) / (d / mean)`` where multiplicative and ``y > 0``,
    ``(y - mean) / d`` elsewhere."""
    y, m, dd = (np.asarray(v, float) for v in (y, mean, d))
    mult = multiplicative(m, dd) & (y > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        z_log = np.log(np.where(mult, y, 1.0) / np.where(mult, m, 1.0)) * np.where(mult, m, 1.0)
        return np.where(mult, z_log / dd, (y - m) / dd)


def from_ratio(mean: np.ndarray, d: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Inverse of :func:`to_ratio` (broadcasting): the value a ratio ``z`` stands for."""
    m, dd = np.asarray(mean, float), np.asarray(d, float)
    mult = multiplicative(m, dd)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        rel = np.where(mult, dd / np.where(mult, m, 1.0), 0.0)
        return np.where(mult, m * np.exp(np.clip(rel * z, -LOG_CAP, LOG_CAP)), m + dd * z)


def centred_paths(mean: np.ndarray, d: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Paths (n, n_paths, h) from ratio draws ``z`` whose mean is exactly ``mean`` (n, h): on the
    log scale ``mean x exp(r z) / mean(exp(r z))``, additively ``mean + d (z - mean(z))``. The
    forecast's mean stays the model's; the paths carry its calibrated spread and skew."""
    m, dd = mean[:, None, :], d[:, None, :]
    mult = multiplicative(m, dd)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        rel = np.where(mult, dd / np.where(mult, m, 1.0), 0.0)
        e = np.exp(np.clip(rel * z, -LOG_CAP, LOG_CAP))
        e = e / e.mean(axis=1, keepdims=True)
        z = z - z.mean(axis=1, keepdims=True)
        return np.where(mult, m * e, m + dd * z)


@dataclass(frozen=True)
class ErrorPool:
    """Scale-free error vectors of one model: ``z`` (n_vectors, H), with weights ``w``."""

    model: str
    z: np.ndarray
    w: np.ndarray
    n_backtest: int

    @property
    def horizon(self) -> int:
        return int(self.z.shape[1])

    def extend(self, h: int) -> np.ndarray:
        if h <= self.horizon:
            return self.z[:, :h]
        return np.concatenate([self.z, np.repeat(self.z[:, -1:], h - self.horizon, axis=1)], axis=1)

    def corrected(self, p: float) -> float:
        """The probability a bound at ``p`` is read at: the split-conformal finite-sample
        correction, pushed outwards from the median, in proportion to the backtest's share of
        the pool (the prior is a known distribution: only real errors get the correction)."""
        nb = self.n_backtest
        if not nb or p == 0.5:
            return p
        conf = min(1.0, p * (1 + 1 / nb)) if p > 0.5 else max(0.0, 1 - (1 - p) * (1 + 1 / nb))
        return p + nb / float(self.w.sum()) * (conf - p)

    def quantiles(self, probs: Sequence[float], h: int) -> np.ndarray:
        """Weighted conformal quantiles, shape (len(probs), h)."""
        z = self.extend(h)
        total = float(self.w.sum())
        out = np.empty((len(probs), h))
        order = np.argsort(z, axis=0, kind="stable")
        zs = np.take_along_axis(z, order, axis=0)
        cdf = np.cumsum(self.w[order], axis=0) / total
        for i, p in enumerate(probs):
            pc = self.corrected(p)
            for j in range(h):
                # upper: the smallest value with cdf >= p; lower: mirrored (the largest with cdf <= p,
                # i.e. the first with cdf > p), so bounds are symmetric order statistics
                if p >= 0.5:
                    k = int(np.searchsorted(cdf[:, j], pc - 1e-12, side="left"))
                else:
                    k = int(np.searchsorted(cdf[:, j], pc + 1e-12, side="right"))
                out[i, j] = zs[min(k, len(zs) - 1), j]
        return out

    def draw(self, n_paths: int, h: int, rng: np.random.Generator) -> np.ndarray:
        z = self.extend(h)
        idx = rng.choice(len(z), size=n_paths, p=self.w / self.w.sum())
        return z[idx]


def gaussian_vectors(n: int, h: int, seed: int = 12345) -> np.ndarray:
    """Standard-normal vectors with random-walk-like correlation across horizons (unit variance)."""
    rng = np.random.default_rng(seed)
    e = rng.standard_normal((n, h))
    return np.cumsum(e, axis=1) / np.sqrt(np.arange(1, h + 1))


def error_vectors(bt: pd.DataFrame, horizon: int) -> dict[str, np.ndarray]:
    """Per model, (n_vectors, horizon) scale-free errors, one row per series and cutoff,
    forward-filled past each window's last horizon."""
    out: dict[str, np.ndarray] = {}
    if bt.empty:
        return out
    z = to_ratio(bt[Y], bt[MEAN], normalizer(bt["sigma"], bt["scale"]))
    t = pd.DataFrame(
        {
            MODEL: bt[MODEL].to_numpy(),
            UID: bt[UID].to_numpy(),
            CUTOFF: bt[CUTOFF].to_numpy(),
            "h": bt["h"].to_numpy(),
            "z": z,
        }
    )
    t = t[t["h"] <= horizon]
    for name, g in t.groupby(MODEL, sort=False):
        wide = g.pivot_table(index=[UID, CUTOFF], columns="h", values="z", aggfunc="first")
        wide = wide.reindex(columns=range(1, horizon + 1)).ffill(axis=1)
        arr = wide.to_numpy(float)
        out[str(name)] = arr[np.isfinite(arr).all(axis=1)]
    return out


def calibrate(
    bt: pd.DataFrame,
    horizon: int,
    prior_weight: float = 20.0,
    n_prior: int = 400,
    models: Sequence[str] = (),
) -> dict[str, ErrorPool]:
    """One :class:`ErrorPool` per model (models with no backtest get the Gaussian prior only)."""
    vecs = error_vectors(bt, horizon)
    g = gaussian_vectors(n_prior, horizon)
    pools: dict[str, ErrorPool] = {}
    for name in {*vecs, *models}:
        v = vecs.get(name, np.empty((0, horizon)))
        z = np.vstack([v, g])
        w = np.concatenate([np.ones(len(v)), np.full(n_prior, prior_weight / n_prior)])
        if len(v) >= 20:
            lo, hi = np.quantile(z, [TAIL, 1 - TAIL], axis=0)
            z = np.clip(z, lo[None, :], hi[None, :])
        pools[name] = ErrorPool(name, z, w, len(v))
    return pools


def apply_intervals(
    mean: np.ndarray, d: np.ndarray, pool: ErrorPool, levels: Sequence[int]
) -> dict[str, np.ndarray]:
    """Bounds ``lo_L, hi_L`` (arrays shaped like ``mean`` (n, h)) from a pool; ``d`` the normalizer."""
    h = mean.shape[1]
    probs: list[float] = []
    for lv in levels:
        a = 1 - lv / 100
        probs += [a / 2, 1 - a / 2]
    q = pool.quantiles(probs, h)
    out: dict[str, np.ndarray] = {}
    for i, lv in enumerate(levels):
        out[lo_col(lv)] = np.minimum(from_ratio(mean, d, q[2 * i][None, :]), mean)
        out[hi_col(lv)] = np.maximum(from_ratio(mean, d, q[2 * i + 1][None, :]), mean)
    return out


def calibrated_frame(
    pred: pd.DataFrame, pool: ErrorPool, levels: Sequence[int], h_col: str = "h"
) -> pd.DataFrame:
    """Add calibrated ``lo_L, hi_L`` to a long frame with ``unique_id, mean, sigma, scale, h``."""
    out = pred.copy()
    d = normalizer(out["sigma"], out["scale"])
    hmax = int(out[h_col].max()) if len(out) else 1
    probs: list[float] = []
    for lv in levels:
        a = 1 - lv / 100
        probs += [a / 2, 1 - a / 2]
    q = pool.quantiles(probs, hmax)
    hi_idx = out[h_col].to_numpy(int) - 1
    m = out[MEAN].to_numpy(float)
    for i, lv in enumerate(levels):
        out[lo_col(lv)] = np.minimum(from_ratio(m, d, q[2 * i][hi_idx]), m)
        out[hi_col(lv)] = np.maximum(from_ratio(m, d, q[2 * i + 1][hi_idx]), m)
    return out


def sample_paths(
    mean: np.ndarray, d: np.ndarray, pool: ErrorPool, n_paths: int, rng: np.random.Generator
) -> np.ndarray:
    """Paths (n, n_paths, h): ``mean + d * z`` with ``z`` whole resampled error vectors."""
    n, h = mean.shape
    out = np.empty((n, n_paths, h))
    for i in range(n):
        out[i] = from_ratio(mean[i], d[i], pool.draw(n_paths, h, rng))
    return out


def cross_fitted(bt: pd.DataFrame, levels: Sequence[int], horizon: int) -> pd.DataFrame:
    """Backtest rows with calibrated bounds, each window calibrated on the *other* windows only
    (leave-one-window-out), so the coverage the backtest reports is out of sample."""
    parts = []
    windows = sorted(bt["window"].unique())
    for k in windows:
        rest = bt[bt["window"] != k] if len(windows) > 1 else bt
        pools = calibrate(rest, horizon, models=list(bt[MODEL].unique()))
        cur = bt[bt["window"] == k]
        for name, g in cur.groupby(MODEL, sort=False):
            parts.append(calibrated_frame(g, pools[str(name)], levels))
    return (
        pd.concat(parts).sort_index()
        if parts
        else bt.assign(**{c: np.nan for lv in levels for c in (lo_col(lv), hi_col(lv))})
    )


DRIFT_CAP = 0.05  # a drift correction never exceeds 5 % a month either way
OVERLAP = 3.0  # backtest windows share months and shocks (about half their months since they spread
# over the history, all but a few before): the windows' standard error is taken 3x in variance,
# about one independent window per three (set with the closer windows; not re-tuned since)


def _window_slopes(bt: pd.DataFrame) -> pd.Series:
    """Per (unique_id, model, window): the least-squares slope of ``log(y / mean)`` on ``h`` (rows
    with a positive actual and forecast). The intercept is left out of the correction: a level the
    forecast missed (a hiring step) is one the final fit, on the newest months, already sees."""
    y, m = bt[Y].to_numpy(float), bt[MEAN].to_numpy(float)
    ok = (y > 0) & (m > 0)
    t = pd.DataFrame(
        {
            UID: bt[UID].to_numpy()[ok],
            MODEL: bt[MODEL].to_numpy()[ok],
            "window": bt["window"].to_numpy()[ok],
            "h": bt["h"].to_numpy(float)[ok],
            "e": np.log(y[ok] / m[ok]),
        }
    )
    keys = [UID, MODEL, "window"]
    g = t.groupby(keys)
    t["dh"] = t["h"] - g["h"].transform("mean")
    t["he"], t["hh"] = t["dh"] * t["e"], t["dh"] ** 2
    per = t.groupby(keys)[["he", "hh"]].sum()
    return (per["he"] / per["hh"].where(per["hh"] > 0)).dropna()


def _shrunk(slopes: pd.Series, level: list[int]) -> pd.Series:
    """Mean slope per group, shrunk by positive-part James-Stein and capped (see missed_drift)."""
    g = slopes.groupby(level=level)
    b, sd, n = g.mean(), g.std(ddof=1), g.size()
    se2 = (OVERLAP * sd**2 / n).where(n >= 2)
    shrink = (1 - se2 / (b**2).where(b != 0)).clip(lower=0).fillna(0.0)
    return (b * shrink).clip(-DRIFT_CAP, DRIFT_CAP)


def missed_drift(bt: pd.DataFrame, chosen: pd.Series) -> pd.Series:
    """Per series, the growth rate its selected model missed in the backtest: the slope ``b`` of
    ``log(y / mean)`` on the horizon ``h``, fitted per window, averaged over windows and shrunk by positive-part James-Stein,
    ``b (1 - se^2 / b^2)+`` with ``se`` the windows' standard error (inflated by ``OVERLAP``), so
    a slope the windows do not agree on is dropped and one they agree on is kept. Capped at
    ``DRIFT_CAP``, and by the series' own recent growth (:func:`history_growth`: the model cannot
    have missed more growth than the history shows, nor growth of the other sign). Series with fewer
    than two windows get 0. The published forecast is multiplied by ``exp(b h)``
    (:func:`pipeline.coherence.published_paths`), and its error pool is calibrated on the backtest
    corrected the same way, each window by the slope of the other windows
    (:func:`drift_corrected`), so its intervals describe the corrected forecast's errors.

    Why: damped and Theta-style trends under-forecast compounding growth (traffic, storage); on
    generated cost hierarchies the published forecast 7-18 months ahead was a median 16 % under
    the inference actuals and 9 % under storage, so the 95 % bound missed them 14-26 % of the
    time, always above. The slope is the backtest's own evidence of that, per series."""
    if bt.empty:
        return pd.Series(dtype=float)
    mine = bt[bt[MODEL].to_numpy() == bt[UID].map(chosen).to_numpy()]
    if mine.empty:
        return pd.Series(dtype=float)
    b = _shrunk(_window_slopes(mine), [0, 1])
    return b.droplevel(MODEL)


def drift_corrected(bt: pd.DataFrame) -> pd.DataFrame:
    """The backtest with every (series, model, window) forecast multiplied by ``exp(b h)``, ``b``
    the missed drift estimated on that series' and model's *other* windows (out of sample; 0 with
    fewer than two other windows); ``sigma`` scaled alike."""
    if bt.empty:
        return bt
    slopes = _window_slopes(bt)
    if slopes.empty:
        return bt
    parts = []
    for w in slopes.index.get_level_values("window").unique():
        rest = slopes[slopes.index.get_level_values("window") != w]
        b = _shrunk(rest, [0, 1]).rename("b").reset_index().assign(window=w)
        parts.append(b)
    b = pd.concat(parts, ignore_index=True)
    out = bt.merge(b, on=[UID, MODEL, "window"], how="left")
    lift = np.exp(out["b"].fillna(0.0).to_numpy(float) * out["h"].to_numpy(float))
    pos = out[MEAN].to_numpy(float) > 0
    out[MEAN] = np.where(pos, out[MEAN].to_numpy(float) * lift, out[MEAN].to_numpy(float))
    out["sigma"] = np.where(pos, out["sigma"].to_numpy(float) * lift, out["sigma"].to_numpy(float))
    out.index = bt.index
    return out.drop(columns="b")


SCALE_PRIOR = 1.0  # pseudo-windows of a series' own error scale at the pool's (1)
SCALE_RANGE = (1.0, 10.0)  # widen only: a series calm in a few overlapping windows is not
# believed calmer than its model says (narrowing cost 4-5 points of coverage on M3-like series)


def _window_z2(bt: pd.DataFrame) -> pd.Series:
    """Per (unique_id, model, window): the mean squared scale-free error (:func:`to_ratio`)."""
    z = to_ratio(bt[Y], bt[MEAN], normalizer(bt["sigma"], bt["scale"]))
    t = pd.DataFrame(
        {
            UID: bt[UID].to_numpy(),
            MODEL: bt[MODEL].to_numpy(),
            "window": bt["window"].to_numpy(),
            "z2": np.square(z),
        }
    )
    t = t[np.isfinite(t["z2"])]
    return t.groupby([UID, MODEL, "window"])["z2"].mean()


def _scale_of(z2: pd.Series, level: list[int]) -> pd.Series:
    g = z2.groupby(level=level)
    s2 = (g.sum() + SCALE_PRIOR) / (g.size() + SCALE_PRIOR)
    return np.sqrt(s2).clip(*SCALE_RANGE)


def series_scale(bt: pd.DataFrame, chosen: pd.Series) -> pd.Series:
    """Per series, how much larger (or smaller) its selected model's backtest errors were than
    the model's own sigma says: the root mean square of its scale-free errors, one window counting
    once, shrunk towards 1 by ``SCALE_PRIOR`` pseudo-windows and kept within ``SCALE_RANGE`` (it
    widens a band, never narrows one).

    Why: errors are pooled across series after dividing by each model's sigma, which assumes the
    sigma is right for every series. A labor line with 1 % noise and hiring steps of 20-30 % has a
    tiny sigma and errors of many sigmas; pooled with smooth series (and winsorized) it got a band
    that held 64-76 % of its months at 95 %. Scaling each series' sigma by its own error scale
    before pooling (and back when forecasting) keeps the pool homogeneous and the band of every
    series its own width."""
    if bt.empty:
        return pd.Series(dtype=float)
    mine = bt[bt[MODEL].to_numpy() == bt[UID].map(chosen).to_numpy()]
    if mine.empty:
        return pd.Series(dtype=float)
    return _scale_of(_window_z2(mine), [0, 1]).droplevel(MODEL)


def normalizer_growth(
    bt: pd.DataFrame, chosen: pd.Series, ids: list[str], mean: np.ndarray, d: np.ndarray
) -> np.ndarray:
    """Per series (``ids``), how much wider, relative to its forecast, the final fit's normalizer
    ``d`` (n, h) is than its selected model's was in the backtest: the median over the backtest's
    horizons of ``d / mean`` over the windows' median of ``normalizer / mean``, at least 1 (1 without
    a backtest or where a forecast is not positive). Relative, so that a series that grew is not
    taken for one whose errors did.

    :func:`series_scale` measures errors against the backtest's sigma. When the history ends after
    a step the backtest windows saw (a labor line after a layoff), the final fit's sigma already
    holds that step: multiplying it by the scale as well counted the step twice (a 45k line got a
    band from 0 to 250k). The windows' median, not their mean: one window forecasting next to
    nothing would make its relative width, and so the growth's reference, huge.

    The error pools (:func:`scale_corrected`) still scale each window by the other windows' whole
    scale: a late window whose fit had seen a step counts it twice there, so such a series'
    pooled errors are somewhat smaller than its band assumes. ``phasecast evaluate``'s coverage
    includes that."""
    out = np.ones(len(ids))
    if bt.empty or not len(ids):
        return out
    mine = bt[bt[MODEL].to_numpy() == bt[UID].map(chosen).to_numpy()]
    if mine.empty:
        return out
    m_bt = mine[MEAN].to_numpy(float)
    with np.errstate(divide="ignore", invalid="ignore"):  # a window forecasting <= 0 is left out
        rel = np.where(m_bt > 0, normalizer(mine["sigma"], mine["scale"]) / m_bt, np.nan)
    nb = (
        pd.DataFrame({UID: mine[UID].to_numpy(), "h": mine["h"].to_numpy(int), "n": rel})
        .groupby([UID, "h"])["n"]
        .median()
        .unstack("h")
        .reindex(index=ids)
    )
    hs = [c for c in nb.columns if 1 <= int(c) <= d.shape[1]]
    if not hs:
        return out
    b = nb[hs].to_numpy(float)
    cols = [int(c) - 1 for c in hs]
    m = mean[:, cols]
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.where((b > 0) & (m > 0), d[:, cols] / np.where(m > 0, m, 1.0) / b, np.nan)
    ok = np.isfinite(r).any(axis=1)
    out[ok] = np.nanmedian(r[ok], axis=1)
    return np.maximum(out, 1.0)


def scale_corrected(bt: pd.DataFrame) -> pd.DataFrame:
    """The backtest with every (series, model, window) sigma multiplied by the series' error scale
    measured on its *other* windows (out of sample; 1 without another window)."""
    if bt.empty:
        return bt
    z2 = _window_z2(bt)
    parts = []
    for w in z2.index.get_level_values("window").unique():
        rest = z2[z2.index.get_level_values("window") != w]
        if rest.empty:
            continue
        parts.append(_scale_of(rest, [0, 1]).rename("s").reset_index().assign(window=w))
    if not parts:
        return bt
    s = pd.concat(parts, ignore_index=True)
    out = bt.merge(s, on=[UID, MODEL, "window"], how="left")
    out["sigma"] = out["sigma"].to_numpy(float) * out["s"].fillna(1.0).to_numpy(float)
    out.index = bt.index
    return out.drop(columns="s")


def history_growth(y: np.ndarray, months: int = 24) -> float:
    """Least-squares slope of log(y) per month over the last ``months`` (positive months only;
    0 with fewer than 6)."""
    v = np.asarray(y, dtype=float)[-months:]
    t = np.arange(len(v), dtype=float)
    ok = np.isfinite(v) & (v > 0)
    if ok.sum() < 6:
        return 0.0
    return float(np.polyfit(t[ok], np.log(v[ok]), 1)[0])


def bounded_drift(b: float, growth: float) -> float:
    """A missed drift kept only in the direction of the history's growth, and no larger."""
    if b * growth <= 0:
        return 0.0
    return float(np.sign(b) * min(abs(b), abs(growth)))
