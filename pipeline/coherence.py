"""The published forecast made coherent: sample paths of the selected models, the plan's paths
for plan-driven series and 0 for lines no longer billed (together the *fixed* series: set outside
the models, kept out of the reconciliation and added back through the hierarchy), MinT
reconciliation of the mean and every path (steps 6 and 7 of :mod:`pipeline.forecast`), and the
output tables."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from pipeline import intervals as iv
from pipeline.backtest import FALLBACK, SCALE, SIGMA, WINDOW
from pipeline.frames import (
    CATEGORY,
    DS,
    MEAN,
    MODEL,
    PHASE,
    UID,
    Y,
    hi_col,
    interval_cols,
    lo_col,
    node_parents,
    parse_hierarchy_id,
)

if TYPE_CHECKING:
    from pipeline.forecast import ForecastConfig

BASELINE = "analytic_baseline"
UNIT_COST = "unit_cost"  # needs a driver column: left out of a run without one


def plan_paths(
    mean: np.ndarray, rel_sd: float, n_paths: int, rng: np.random.Generator
) -> np.ndarray:
    """Paths (n_paths, h) of a plan-driven forecast: ``mean x max(0, 1 + e)`` with a relative error
    of sd ``rel_sd x sqrt(h / 3)``, half common to the path's months, half month by month."""
    h = len(mean)
    sd = rel_sd * np.sqrt(np.arange(1, h + 1, dtype=float) / 3.0)
    e = np.sqrt(0.5) * rng.standard_normal((n_paths, 1)) + np.sqrt(0.5) * rng.standard_normal(
        (n_paths, h)
    )
    m = np.asarray(mean, dtype=float)
    p = m + np.abs(m) * np.maximum(sd * e, -1.0)
    pm = p.mean(axis=0)
    # the paths' mean is the plan's cost exactly (the published mean is the paths' mean)
    return p * np.divide(m, pm, out=np.ones_like(m), where=np.abs(pm) > 0)


DRIVER_MONTHLY = 0.5  # a planned driver's month-by-month error, as a share of its common error


def driver_error(h: int, rel_sd: float, n_paths: int, rng: np.random.Generator) -> np.ndarray:
    """Relative errors (n_paths, h) of a planned driver (a traffic plan), mean 1: lognormal with a
    log-sd ``rel_sd`` common to the path's months (a plan that gets the year's level wrong gets it
    wrong from its first month) and ``DRIVER_MONTHLY x rel_sd`` month by month.

    Why flat: the model that reads the driver forecasts from the plan's own months, so what a plan
    gets wrong is mostly its level, known no better next month than next year. Growing the error
    with the horizon (``6 % x sqrt(h / 3)``) left the inference band 3.5 % wide at one month and
    15 % at eighteen: on generated hierarchies whose plans are off by a common 6 % and 3 % a month,
    it held 72 % of months 1-6 and 93 % of months 7-18 at 80 %."""
    e = rel_sd * (
        rng.standard_normal((n_paths, 1)) + DRIVER_MONTHLY * rng.standard_normal((n_paths, h))
    )
    f = np.exp(e)
    return f / f.mean(axis=0, keepdims=True)


def between_runs(y: np.ndarray, months: int = 12) -> np.ndarray:
    """What a scheduled-runs series cost between its runs: the months of the last ``months`` at
    most twice the median month (bursts are far above it); a zero when nothing is left."""
    last = np.asarray(y, dtype=float)[-months:]
    last = last[np.isfinite(last)]
    if not len(last):
        return np.zeros(1)
    quiet = last[last <= 2.0 * max(float(np.median(last)), 0.0)]
    return quiet if len(quiet) else np.zeros(1)


T_CLIP = 6.0  # a predictive draw never goes further than 6 (scaled) sd from the log-mean


def between_runs_draws(
    quiet: np.ndarray, size: tuple[int, int], rng: np.random.Generator
) -> np.ndarray:
    """Draws of a month between runs from the quiet months ``quiet``: with at least three months,
    all positive, the predictive distribution of a new month under a lognormal, ``exp(m + s
    sqrt(1 + 1/n) t)`` with ``m, s`` the mean and sd of the logs and ``t`` Student's t with
    ``n - 1`` degrees of freedom (clipped at ``T_CLIP``); otherwise the months themselves,
    resampled.

    Why: resampling a dozen months puts the 95 % band at their smallest and largest, which a new
    month falls outside about one time in seven; on generated hierarchies the scheduled-runs series
    held 69 % of its months at 95 %, months 1-6."""
    q = np.asarray(quiet, dtype=float)
    n = len(q)
    if n < 3 or (q <= 0).any():
        return rng.choice(q, size=size)
    lg = np.log(q)
    m, s = float(lg.mean()), float(lg.std(ddof=1))
    t = np.clip(rng.standard_t(n - 1, size=size), -T_CLIP, T_CLIP)
    return np.exp(m + s * np.sqrt(1.0 + 1.0 / n) * t)


def _ancestors(uid: str, ids: list[str]) -> list[int]:
    pos = {u: i for i, u in enumerate(ids)}
    return [pos[a] for a in node_parents(uid) if a in pos]


# --- the job ---------------------------------------------------------------


@dataclass
class Published:
    """The published forecast while it is being made coherent (steps 6 and 7)."""

    table: pd.DataFrame  # one row per series and month, the selected model's
    mean: np.ndarray  # (n, h)
    d: np.ndarray  # (n, h) error normalizers
    paths: np.ndarray  # (n, n_paths, h)
    path_ds: pd.DatetimeIndex
    nn: np.ndarray  # (n,) series never negative in history
    # plan-driven series and series no longer billed (published at 0): their forecasts are set
    # outside the models, kept out of the reconciliation and added back through the hierarchy
    fixed_rows: list[int]
    model_mean: np.ndarray  # (n, h) what the models would say for the fixed series
    pools: list[iv.ErrorPool | None] | None = None  # each series' pool (None: a fixed series)
    # (line, ancestor) -> the line's forecast by the ancestor's own model, for the lines no longer
    # billed: what the ancestor's forecast holds of that line (else ``model_mean``)
    held: dict[tuple[int, int], np.ndarray] = field(default_factory=dict)

    def held_by(self, i: int, a: int) -> np.ndarray:
        """What ancestor ``a``'s own forecast holds of fixed series ``i``."""
        return self.held.get((i, a), self.model_mean[i])


def published_paths(
    ids: list[str],
    allf: pd.DataFrame,
    selection: pd.DataFrame,
    model_choice: pd.Series,
    plan_ids: list[str],
    pools: dict[str, iv.ErrorPool],
    nonneg: pd.Series,
    config: ForecastConfig,
    bt: pd.DataFrame | None = None,
    hist: pd.DataFrame | None = None,
    quiet_ids: Sequence[str] = (),
    plan_begins: pd.Timestamp | None = None,
) -> Published:
    """Step 6: the selected model's forecast per series and its sample paths (whole backtest error
    vectors resampled); plan-driven series get the plan's paths, a scheduled-runs series plus what
    it cost between runs (:func:`between_runs`, resampled month by month from ``hist``); series no
    longer billed (``quiet_ids``, :func:`pipeline.forecast.no_longer_billed`) are 0 in every path.
    A scheduled-runs series has no run in the months before the plan begins (``plan_begins``, the
    plan's ``start``): the plan says nothing of them, and the run-rate the analytic baseline puts
    there is an average of past bursts (the demo's run of 2026-10-15 forecast October's pre-training
    at 168k with 0 billed by the 14th and no run in it); only the between-runs cost is left.

    Before drawing, two things the backtest says about each series (:mod:`pipeline.intervals`):
    in a reconciled cost hierarchy, the growth its model missed (``missed_drift``, bounded by the
    history's own growth) multiplies its forecast by ``exp(b h)``; and its sigma is widened by its
    own error scale (``series_scale``), less what the final fit's sigma has already grown by since
    the backtest (``normalizer_growth``). The error pools are rebuilt from the backtest corrected
    the same ways, out of sample (``drift_corrected``, ``scale_corrected``)."""
    h = config.horizon
    sel = selection.set_index(UID)[MODEL]
    pub = allf[allf[MODEL].to_numpy() == allf[UID].map(sel).to_numpy()].copy()
    pub = (
        pub.set_index([UID, "h"])
        .reindex(pd.MultiIndex.from_product([ids, range(1, h + 1)], names=[UID, "h"]))
        .reset_index()
    )
    mean = pub[MEAN].to_numpy(float).reshape(len(ids), h)
    d = iv.normalizer(pub[SIGMA], pub[SCALE]).reshape(len(ids), h)
    drift = bool(config.reconcile and bt is not None and len(bt))
    if drift:
        # the growth the selected model missed in the backtest, per series (intervals.missed_drift);
        # cost hierarchies only: on generated hierarchies it cut WAPE 7-18 months ahead from 0.124
        # to 0.085, on generic M3-like series it cost MASE (1.060 -> 1.083) and 3 points of coverage
        b = iv.missed_drift(bt, sel).reindex(ids).fillna(0.0).to_numpy(float)
        if hist is not None:
            ys = {str(u): g.to_numpy(float) for u, g in hist.groupby(UID, sort=False)[Y]}
            b = np.array(
                [
                    iv.bounded_drift(bi, iv.history_growth(ys.get(u, np.zeros(0))))
                    for bi, u in zip(b, ids, strict=True)
                ]
            )
        nn_ = nonneg.reindex(ids).fillna(False).to_numpy(bool) & ~np.isin(ids, plan_ids)
        lift = np.exp(np.outer(np.where(nn_, b, 0.0), np.arange(1, h + 1)))
        mean = np.where(mean > 0, mean * lift, mean)
        d = np.where(mean > 0, d * lift, d)
    # a never-negative series forecast at exactly 0 (a history of zeros) stays at 0: its paths
    # would otherwise be clipped at 0 on one side only and lift its mean
    nn0 = nonneg.reindex(ids).to_numpy(bool)
    d[nn0 & (np.abs(mean) <= 0).all(axis=1)] = 0.0
    rng = np.random.default_rng(config.seed)
    if drift:
        # the pools of the drift-corrected forecast with each series' own error scale: the
        # backtest corrected alike, out of sample (intervals.drift_corrected, scale_corrected).
        # Cost hierarchies only, as the drift: on 300 generated M3-like series (one flat
        # collection) the per-series scale moved width from calm series to noisy ones and the
        # published MSIS rose from 6.55 to 6.78 while coverage fell (0.838 / 0.962 to 0.821 / 0.945)
        assert bt is not None
        fixed_bt = iv.drift_corrected(bt)
        fixed = iv.calibrate(iv.scale_corrected(fixed_bt), h, models=list(pools))
        pools = {k: fixed.get(k, v) for k, v in pools.items()}
        # the scale is relative to the backtest's sigma: the part the final fit's own sigma
        # already grew by (it has seen the same steps) is not applied twice (normalizer_growth)
        err_scale = iv.series_scale(fixed_bt, sel).reindex(ids).fillna(1.0).to_numpy(float)
        grown = iv.normalizer_growth(fixed_bt, sel, ids, mean, d)
        d = d * np.maximum(err_scale / grown, 1.0)[:, None]
    series_pools = [pools[sel[u]] for u in ids]
    z = correlated_draws(
        series_pools, error_correlation(bt, selection, ids), config.n_paths, h, rng
    )
    paths = iv.centred_paths(mean, d, z)
    # A model that reads drivers was backtested on the actual driver and forecasts from the plan's:
    # on a series with a driver, the plan's own error (plan_paths with driver_rel_sd, mean 1)
    # multiplies its paths and widens its normalizer.
    from features.drivers import driven_ids
    from pipeline.models import REGISTRY

    with_driver = set(driven_ids(hist)) if hist is not None else set()
    exo = {m for m, cls in REGISTRY.items() if cls.uses_exogenous}
    driven = [i for i, u in enumerate(ids) if u in with_driver and sel.get(u) in exo]
    for i in driven:
        p = paths[i] * driver_error(h, config.driver_rel_sd, config.n_paths, rng)
        pm = p.mean(axis=0)
        paths[i] = p * np.divide(mean[i], pm, out=np.ones(h), where=np.abs(pm) > 0)
        rel = config.driver_rel_sd * np.sqrt(1.0 + DRIVER_MONTHLY**2)
        d[i] = np.sqrt(d[i] ** 2 + (rel * mean[i]) ** 2)
    path_ds = pd.DatetimeIndex(pub[DS].to_numpy()[:h]) if len(ids) else pd.DatetimeIndex([])
    pos = {u: i for i, u in enumerate(ids)}
    plan_rows = [pos[u] for u in plan_ids]
    quiet_rows = [pos[u] for u in quiet_ids]
    model_mean = np.zeros((len(ids), h))
    if plan_ids or quiet_rows:
        alt = allf[allf[UID].isin([*plan_ids, *quiet_ids])]
        alt = alt[alt[MODEL].to_numpy() == alt[UID].map(model_choice).to_numpy()]
        for uid, g in alt.groupby(UID, sort=False):
            model_mean[pos[str(uid)], : len(g)] = g.sort_values("h")[MEAN].to_numpy(float)[:h]
        from pipeline.plan_driven import RUNS_REASON

        runs = set(selection.loc[selection["reason"].str.startswith(RUNS_REASON), UID])
        for i in plan_rows:
            if ids[i] in runs and plan_begins is not None:
                mean[i] = np.where(np.asarray(path_ds < plan_begins), 0.0, mean[i])
            paths[i] = plan_paths(mean[i], config.plan_rel_sd, config.n_paths, rng)
            if hist is not None and ids[i] in runs:
                base = between_runs(hist.loc[hist[UID] == ids[i], Y].to_numpy(float))
                paths[i] += between_runs_draws(base, (config.n_paths, h), rng)
                mean[i] = paths[i].mean(axis=0)
    held: dict[tuple[int, int], np.ndarray] = {}
    for i in quiet_rows:
        # an ancestor's forecast was made by its own model, which read the line's history its own
        # way (seasonal naive repeats a credit a year on, the run-rate forgets it): that model's
        # forecast of the line is what comes off the ancestor
        own_fc = allf[allf[UID].to_numpy() == ids[i]]
        for a in _ancestors(ids[i], ids):
            g = own_fc[own_fc[MODEL].to_numpy() == sel.get(ids[a])]
            if len(g) >= h:
                held[(i, a)] = g.sort_values("h")[MEAN].to_numpy(float)[:h]
        mean[i], d[i], paths[i] = 0.0, 0.0, 0.0
    nn = nonneg.reindex(ids).to_numpy(bool)
    fixed_rows = sorted({*plan_rows, *quiet_rows})
    own: list[iv.ErrorPool | None] = list(series_pools)
    for i in fixed_rows:
        own[i] = None
    return Published(pub, mean, d, paths, path_ds, nn, fixed_rows, model_mean, own, held)


def reconcile_step(
    p: Published,
    ids: list[str],
    bt: pd.DataFrame,
    selection: pd.DataFrame,
    plan_ids: list[str],
    levels: tuple[int, ...],
    config: ForecastConfig,
    events: list[dict[str, object]],
) -> None:
    """Step 7 (hierarchies): MinT on the mean and every path, the fixed series (plan-driven, no
    longer billed) taken out and added back through the summing matrix (module docstring); bounds
    from the reconciled paths."""
    h = config.horizon
    mean, paths, fixed = p.mean, p.paths, p.fixed_rows
    resid = _aligned_residuals(bt, selection, ids)
    var1 = (p.d[:, 0] ** 2) if h else None
    fixed_mean = mean[fixed].copy()
    fixed_p = paths[fixed].copy()
    if fixed:
        for i in fixed:
            for a in _ancestors(ids[i], ids):
                mean[a] -= p.held_by(i, a)
                paths[a] -= p.held_by(i, a)
        mean[fixed] = 0.0
        paths[fixed] = 0.0
        if resid is not None:
            resid = resid.copy()
            resid[:, fixed] *= 1e-3
        if var1 is not None:
            var1 = var1.copy()
            var1[fixed] = np.maximum(var1[fixed], 1e-12) * 1e-6
    mean, paths, info = _reconcile(ids, mean, paths, resid, var1, p.nn)
    if fixed:
        from pipeline.reconcile import add_up, summing_sparse

        S, bottom = summing_sparse(ids)
        pos = {u: i for i, u in enumerate(ids)}
        bpos = {u: j for j, u in enumerate(bottom)}
        brow = [pos[b] for b in bottom]
        b_mean, b_paths = mean[brow].copy(), paths[brow].copy()
        for k, i in enumerate(fixed):
            j = bpos[ids[i]]
            b_mean[j], b_paths[j] = fixed_mean[k], fixed_p[k]
        mean = add_up(S, b_mean)
        paths = add_up(S, b_paths)
        if plan_ids:
            info["method"] = (
                f"{info['method']}; plan-driven series added back: {', '.join(plan_ids)}"
            )
        quiet = [ids[i] for i in fixed if ids[i] not in plan_ids]
        if quiet:
            info["method"] = f"{info['method']}; no longer billed, kept at 0: {', '.join(quiet)}"
    events.append(
        {MODEL: "reconcile", WINDOW: "final", "reason": f"reconciled by {info['method']}"}
    )
    p.mean, p.paths = mean, paths
    bounds_from_paths(p.table, paths, levels, p.pools)


def bounds_from_paths(
    pub: pd.DataFrame,
    paths: np.ndarray,
    levels: tuple[int, ...],
    pools: list[iv.ErrorPool | None] | None = None,
) -> None:
    """The published mean and bounds of every series from its paths: the mean is the paths' mean,
    bounds their quantiles (nested by construction, clamped around the mean), read at the
    conformal-corrected probabilities of the series' error pool."""
    mean = paths.mean(axis=1)
    pub[MEAN] = mean.ravel()
    n = paths.shape[0]
    for lv in levels:
        alpha = 1 - lv / 100
        lo = np.empty_like(mean)
        hi = np.empty_like(mean)
        probs = {}
        for i in range(n):
            pool = pools[i] if pools is not None else None
            key = id(pool)
            if key not in probs:
                probs[key] = (
                    (pool.corrected(alpha / 2), pool.corrected(1 - alpha / 2))
                    if pool is not None
                    else (alpha / 2, 1 - alpha / 2)
                )
            lo[i], hi[i] = np.quantile(paths[i], probs[key], axis=0)
        pub[lo_col(lv)] = np.minimum(lo, mean).ravel()
        pub[hi_col(lv)] = np.maximum(hi, mean).ravel()


@dataclass(frozen=True)
class FactorCorrelation:
    """The error correlation of many series without an (n x n) matrix: ``(1 - shrink) F F'`` off
    the diagonal and 1 on it, ``F`` (n, T) each series' aligned backtest errors standardized over
    its own months (``F F'`` is their sample correlation; months a series lacks count 0)."""

    F: np.ndarray
    shrink: float

    def normals(self, n_paths: int, rng: np.random.Generator) -> np.ndarray:
        """(n_paths, n) standard normals with this correlation: a common part through ``F`` and
        each series' own part for the rest of its unit variance."""
        a = np.sqrt(1.0 - self.shrink)
        common = (rng.standard_normal((n_paths, self.F.shape[1])) @ self.F.T) * a
        own = np.sqrt(np.clip(1.0 - a * a * (self.F**2).sum(axis=1), 0.0, None))
        return common + rng.standard_normal((n_paths, self.F.shape[0])) * own


def error_correlation(
    bt: pd.DataFrame | None, selection: pd.DataFrame, ids: list[str], shrink: float = 0.3
) -> np.ndarray | FactorCorrelation | None:
    """Correlation of the selected models' backtest errors across series (pairwise over the
    months both were backtested, at least 6), shrunk towards the identity and made positive
    definite; None without a backtest. Above :data:`pipeline.reconcile.DENSE_LIMIT` series, the
    same shrunk correlation as a :class:`FactorCorrelation` (memory and time linear in the series)."""
    from pipeline.reconcile import DENSE_LIMIT

    if bt is None or bt.empty or len(ids) < 2:
        return None
    resid = _aligned_residuals(bt, selection, ids)
    if resid is None:
        return None
    if len(ids) > DENSE_LIMIT:
        ok = np.isfinite(resid)
        cnt = ok.sum(axis=0)
        x = np.where(ok, resid, np.nan)
        with np.errstate(invalid="ignore", divide="ignore"):
            z = (x - np.nanmean(x, axis=0)) / np.nanstd(x, axis=0, ddof=1)
            z = np.where(ok & np.isfinite(z), z, 0.0) / np.sqrt(np.maximum(cnt - 1, 1))
        z[:, cnt < 6] = 0.0
        return FactorCorrelation(np.ascontiguousarray(z.T), shrink)
    c = pd.DataFrame(resid).corr(min_periods=6).to_numpy(float)
    c = np.nan_to_num(c, nan=0.0)
    np.fill_diagonal(c, 1.0)
    c = (1 - shrink) * c + shrink * np.eye(len(ids))
    w, v = np.linalg.eigh(c)
    c = (v * np.maximum(w, 1e-6)) @ v.T
    dd = np.sqrt(np.diag(c))
    return c / np.outer(dd, dd)


def correlated_draws(
    pools: list[iv.ErrorPool],
    corr: np.ndarray | FactorCorrelation | None,
    n_paths: int,
    h: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """Ratio vectors (n, n_paths, h), one pool per series, drawn jointly: a Gaussian copula with
    the backtest's error correlation picks, per path, each series' vector by its rank (vectors
    ordered by their mean over the horizon), so series whose errors moved together in the
    backtest move together in the paths and sums over series get the spread they showed."""
    n = len(pools)
    out = np.empty((n, n_paths, h))
    if corr is None:
        for i, pool in enumerate(pools):
            out[i] = pool.draw(n_paths, h, rng)
        return out
    from scipy.stats import norm

    if isinstance(corr, FactorCorrelation):
        g = corr.normals(n_paths, rng)
    else:
        g = rng.standard_normal((n_paths, n)) @ np.linalg.cholesky(corr).T
    u = norm.cdf(g)
    ranked: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    for i, pool in enumerate(pools):
        key = id(pool)
        if key not in ranked:
            z = pool.extend(h)
            order = np.argsort(z.mean(axis=1), kind="stable")
            cdf = np.cumsum(pool.w[order]) / pool.w.sum()
            ranked[key] = (z[order], cdf)
        zs, cdf = ranked[key]
        idx = np.minimum(np.searchsorted(cdf, u[:, i], side="left"), len(zs) - 1)
        out[i] = zs[idx]
    return out


def unreconciled_step(
    p: Published,
    ids: list[str],
    allf: pd.DataFrame,
    nonneg: pd.Series,
    levels: tuple[int, ...],
) -> None:
    """Step 7 (flat series): ancestors follow their fixed descendants (plan-driven, no longer
    billed); series whose history is never negative get forecasts, bounds and paths clipped at
    zero."""
    pub, paths, mean = p.table, p.paths, p.mean
    for i in p.fixed_rows:
        for a in _ancestors(ids[i], ids):
            delta = mean[i] - p.held_by(i, a)
            paths[a] += delta
            rows = (pub[UID] == ids[a]).to_numpy()
            for c in [MEAN, *interval_cols(levels)]:
                pub.loc[rows, c] = pub.loc[rows, c].to_numpy(float) + delta
    for i in p.fixed_rows:
        rows = (pub[UID] == ids[i]).to_numpy()
        for lv in levels:
            alpha = 1 - lv / 100
            pub.loc[rows, lo_col(lv)] = np.minimum(
                np.quantile(paths[i], alpha / 2, axis=0), mean[i]
            )
            pub.loc[rows, hi_col(lv)] = np.maximum(
                np.quantile(paths[i], 1 - alpha / 2, axis=0), mean[i]
            )
    paths[p.nn] = np.maximum(paths[p.nn], 0.0)
    bounds_from_paths(pub, paths, levels, p.pools)
    cr = allf[UID].map(nonneg).to_numpy(bool)
    for c in [MEAN, *interval_cols(levels)]:
        allf.loc[cr, c] = allf.loc[cr, c].clip(lower=0.0)


def output_tables(
    pub: pd.DataFrame,
    allf: pd.DataFrame,
    selection: pd.DataFrame,
    ids: list[str],
    levels: tuple[int, ...],
    config: ForecastConfig,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The forecast table (fallbacks named as such) and every model's forecasts."""
    fb = pub[FALLBACK].fillna(False).to_numpy(bool)
    pub[MODEL] = np.where(fb, BASELINE + "(fallback)", pub[MODEL].to_numpy())
    fb_series = set(pub.loc[fb, UID])
    if fb_series:
        selection.loc[selection[UID].isin(fb_series), "reason"] += (
            "; fallback: fit failed, analytic baseline used"
        )
    out_cols = [UID, DS, MODEL, MEAN, *interval_cols(levels)]
    if config.reconcile or _hierarchical(ids):
        for c, v in ((PHASE, 0), (CATEGORY, 1)):
            pub[c] = [parse_hierarchy_id(u)[v] for u in pub[UID]]
            allf[c] = [parse_hierarchy_id(u)[v] for u in allf[UID]]
        out_cols += [PHASE, CATEGORY]
    forecast = pub[out_cols].reset_index(drop=True)
    all_cols = [*out_cols, SIGMA, FALLBACK]
    all_forecasts = (
        allf[[c for c in all_cols if c in allf.columns]]
        .sort_values([MODEL, UID, DS])
        .reset_index(drop=True)
    )
    return forecast, all_forecasts


def _hierarchical(ids: list[str]) -> bool:
    return "total" in ids


def _aligned_residuals(
    bt: pd.DataFrame, selection: pd.DataFrame, ids: list[str]
) -> np.ndarray | None:
    if bt.empty:
        return None
    sel = selection.set_index(UID)[MODEL]
    mine = bt[bt[MODEL].to_numpy() == bt[UID].map(sel).to_numpy()]
    wide = (
        mine.assign(_e=mine[Y] - mine[MEAN])
        .pivot_table(index=[WINDOW, "h"], columns=UID, values="_e", aggfunc="first")
        .reindex(columns=ids)
    )
    return wide.to_numpy(float)


def _reconcile(
    ids: list[str],
    mean: np.ndarray,
    paths: np.ndarray,
    resid: np.ndarray | None,
    var1: np.ndarray | None,
    nonneg: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, dict[str, object]]:
    from pipeline.reconcile import reconcile

    m, p, info = reconcile(ids, mean, paths, resid, var1, nonneg)
    assert p is not None
    return m, p, info
