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
