"""Coherent forecasts for the cost hierarchy: total -> phase -> phase x category.

MinT (Wickramasuriya, Athanasopoulos & Hyndman, 2019) with the Schäfer-Strimmer shrinkage
covariance of the base forecasts' errors: ``P = (S' W^-1 S)^-1 S' W^-1``, bottom = ``P y_hat``,
every node = ``S bottom``. ``W`` is estimated from the rolling-origin backtest errors of the model
published for each series (one observation per window and horizon, aligned across series), which
are the errors of the forecasts being reconciled, not in-sample fits. With fewer than three aligned
error rows the diagonal of the models' own variances is used (WLS).

Sample paths are reconciled path by path (the same linear map), so every path is coherent and the
intervals (quantiles of the reconciled paths) belong to one joint distribution.

Negative values: costs can be negative (credits, refunds), so nothing is clipped in general. A
bottom series whose history never goes below zero gets its reconciled mean and paths clipped at 0
(a cost centre without credits cannot cost less than nothing); parents are then re-added from their
bottom series, so coherence is exact after clipping too. Parents are always sums, never clipped on
their own.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from pipeline.frames import TOTAL, parse_hierarchy_id


def summing_matrix(ids: Sequence[str]) -> tuple[np.ndarray, list[str]]:
    """``S`` (len(ids), n_bottom) and the bottom ids: the leaves of total / phase / phase x category
    among ``ids`` (a phase without category series is a leaf itself)."""
    ids = [str(u) for u in ids]
    parsed = {u: parse_hierarchy_id(u) for u in ids}
    phases_with_kids = {p for u, (p, c) in parsed.items() if c is not None}
    has_total = TOTAL in ids
    bottom = [
        u
        for u, (p, c) in parsed.items()
        if u != TOTAL and (c is not None or p not in phases_with_kids)
    ]
    if not bottom and has_total:
        bottom = [TOTAL]
    S = np.zeros((len(ids), len(bottom)))
    for i, u in enumerate(ids):
        p, c = parsed[u]
        for j, b in enumerate(bottom):
            bp, bc = parsed[b]
            if u == TOTAL or u == b or (c is None and bp == p):
                S[i, j] = 1.0
    return S, bottom


def shrunk_covariance(resid: np.ndarray, ridge: float = 1e-8) -> np.ndarray:
    """Schäfer-Strimmer shrinkage of the covariance of ``resid`` (n_obs, n_series) towards its
    diagonal; the intensity is estimated from the standardized residuals."""
    r = np.asarray(resid, dtype=float)
    n, k = r.shape
    x = r - r.mean(axis=0)
    cov = x.T @ x / max(n - 1, 1)
    var = np.diag(cov).copy()
    std = np.sqrt(np.where(var > 0, var, 1.0))
    xs = x / std
    w = np.einsum("ti,tj->tij", xs, xs)  # (n, k, k) products
    wbar = w.mean(axis=0)
    corr = wbar * n / max(n - 1, 1)
    var_corr = n / max(n - 1, 1) ** 3 * ((w - wbar) ** 2).sum(axis=0)
    off = ~np.eye(k, dtype=bool)
    den = float((corr[off] ** 2).sum())
    lam = float(np.clip(var_corr[off].sum() / den, 0.0, 1.0)) if den > 0 else 1.0
    shrunk = (1 - lam) * cov + lam * np.diag(var)
    scale = float(np.mean(var)) if np.mean(var) > 0 else 1.0
    return shrunk + ridge * scale * np.eye(k)


def mint_projection(S: np.ndarray, W: np.ndarray) -> np.ndarray:
    """``P = (S' W^-1 S)^-1 S' W^-1`` of shape (n_bottom, n_all)."""
    WiS = np.linalg.solve(W, S)
    A = S.T @ WiS
    return np.linalg.solve(A, WiS.T)


def reconcile(
    ids: Sequence[str],
    mean: np.ndarray,
    paths: np.ndarray | None,
    resid: np.ndarray | None,
    variances: np.ndarray | None = None,
    nonneg: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray | None, dict[str, object]]:
    """Reconciled ``mean`` (n, h) and ``paths`` (n, n_paths, h) for series ``ids`` (rows in order).

    ``resid`` (n_obs, n) aligned base-forecast errors; ``variances`` (n,) used when too few;
    ``nonneg`` (n,) marks series whose history has no negative value.
    """
    S, bottom = summing_matrix(ids)
    n = len(ids)
    info: dict[str, object] = {"bottom": bottom, "method": "mint_shrink"}
    if resid is not None:
        resid = resid[np.isfinite(resid).all(axis=1)]
    if resid is not None and len(resid) >= 3:
        W = shrunk_covariance(resid)
    else:
        v = np.asarray(variances if variances is not None else np.ones(n), dtype=float)
        v = np.where(np.isfinite(v) & (v > 0), v, np.nanmean(v[v > 0]) if (v > 0).any() else 1.0)
        W = np.diag(v)
        info["method"] = "wls_var"
    P = mint_projection(S, W)
    col = [list(ids).index(b) for b in bottom]
    clip = np.zeros(len(bottom), dtype=bool) if nonneg is None else np.asarray(nonneg, bool)[col]
    b_mean = P @ mean
    b_mean[clip] = np.maximum(b_mean[clip], 0.0)
    out_mean = S @ b_mean
    out_paths = None
    if paths is not None:
        b_paths = np.einsum("bi,iph->bph", P, paths)
        b_paths[clip] = np.maximum(b_paths[clip], 0.0)
        out_paths = np.einsum("ib,bph->iph", S, b_paths)
    return out_mean, out_paths, info
