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
  and sums over months (quarters, budgets) get honest intervals; per-month quantiles of the paths
  match the published bounds up to Monte Carlo noise and the finite-sample correction.
- **Nesting**: bounds are quantiles of one distribution at nested probabilities, then clamped
  around the mean, so ``lo_95 <= lo_80 <= mean <= hi_80 <= hi_95`` always holds.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from pipeline.frames import CUTOFF, MEAN, MODEL, UID, Y, hi_col, lo_col

SIGMA_FLOOR = 0.05  # share of the MASE scale below which a model's sigma is not believed
SIGMA_CAP = 10.0  # multiple of the MASE scale above which it is not believed either


def normalizer(sigma: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """The model's sigma, kept within [0.05, 10] x the series' MASE scale: an over-fitted model
    cannot claim a tiny spread, and one whose variance exploded (an ARIMA near a unit root) cannot
    blow the interval up by orders of magnitude."""
    s = np.asarray(scale, float)
    sig = np.nan_to_num(np.asarray(sigma, float), nan=0.0, posinf=np.inf)
    return np.clip(sig, SIGMA_FLOOR * s, SIGMA_CAP * s)


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

    def quantiles(self, probs: Sequence[float], h: int) -> np.ndarray:
        """Weighted conformal quantiles, shape (len(probs), h)."""
        z = self.extend(h)
        total = float(self.w.sum())
        out = np.empty((len(probs), h))
        order = np.argsort(z, axis=0, kind="stable")
        zs = np.take_along_axis(z, order, axis=0)
        cdf = np.cumsum(self.w[order], axis=0) / total
        nb = self.n_backtest
        share = nb / total  # the prior is a known distribution: only real errors get the correction
        for i, p in enumerate(probs):
            pc = p
            if nb:  # split-conformal finite-sample correction, pushed outwards from the median
                conf = (
                    p
                    if p == 0.5
                    else min(1.0, p * (1 + 1 / nb))
                    if p > 0.5
                    else max(0.0, 1 - (1 - p) * (1 + 1 / nb))
                )
                pc = p + share * (conf - p)
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
    z = (bt[Y].to_numpy(float) - bt[MEAN].to_numpy(float)) / normalizer(bt["sigma"], bt["scale"])
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
        arr = arr[np.isfinite(arr).all(axis=1)]
        out[str(name)] = arr
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
        out[lo_col(lv)] = np.minimum(mean + d * q[2 * i][None, :], mean)
        out[hi_col(lv)] = np.maximum(mean + d * q[2 * i + 1][None, :], mean)
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
        out[lo_col(lv)] = np.minimum(m + d * q[2 * i][hi_idx], m)
        out[hi_col(lv)] = np.maximum(m + d * q[2 * i + 1][hi_idx], m)
    return out


def sample_paths(
    mean: np.ndarray, d: np.ndarray, pool: ErrorPool, n_paths: int, rng: np.random.Generator
) -> np.ndarray:
    """Paths (n, n_paths, h): ``mean + d * z`` with ``z`` whole resampled error vectors."""
    n, h = mean.shape
    out = np.empty((n, n_paths, h))
    for i in range(n):
        out[i] = mean[i] + d[i] * pool.draw(n_paths, h, rng)
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
