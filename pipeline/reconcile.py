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
from scipy import sparse

from pipeline.frames import node_parents


def structure(ids: Sequence[str]) -> tuple[list[str], list[list[int]]]:
    """The bottom ids (leaves: no other id sums into them) and, per bottom, the rows of ``ids``
    it adds into (itself and every ancestor present), in O(len(ids) x depth).

    A node's ancestors are its ``/``-prefixes and ``total`` (:func:`pipeline.frames.node_parents`),
    so total -> phase -> phase x category [-> team] needs no level list; a phase without category
    series is a leaf itself, and a lone ``total`` is its own leaf.
    """
    ids = [str(u) for u in ids]
    pos = {u: i for i, u in enumerate(ids)}
    parents = {u: [a for a in node_parents(u) if a in pos] for u in ids}
    inner = {a for ps in parents.values() for a in ps}
    bottom = [u for u in ids if u not in inner]
    return bottom, [[pos[b], *(pos[a] for a in parents[b])] for b in bottom]


def summing_sparse(ids: Sequence[str]) -> tuple[sparse.csr_array, list[str]]:
    """``S`` (len(ids), n_bottom) as a sparse matrix, and the bottom ids."""
    bottom, rows = structure(ids)
    r = [i for rs in rows for i in rs]
    c = [j for j, rs in enumerate(rows) for _ in rs]
    S = sparse.csr_array((np.ones(len(r)), (r, c)), shape=(len(ids), len(bottom)))
    return S, bottom


def summing_matrix(ids: Sequence[str]) -> tuple[np.ndarray, list[str]]:
    """``S`` (len(ids), n_bottom) and the bottom ids: the leaves of total / phase / phase x category
    among ``ids`` (a phase without category series is a leaf itself)."""
    S, bottom = summing_sparse(ids)
    return S.toarray(), bottom


def add_up(S: np.ndarray | sparse.csr_array, bottom_values: np.ndarray) -> np.ndarray:
    """Every node from its bottom series: ``S @ b`` over the first axis of ``bottom_values`` of any
    shape (means ``(m, h)``, paths ``(m, n_paths, h)``), sparse or dense ``S``."""
    b = np.asarray(bottom_values, dtype=float)
    flat = b.reshape(b.shape[0], -1)
    return np.asarray(S @ flat).reshape((S.shape[0], *b.shape[1:]))


def shrunk_covariance(resid: np.ndarray, ridge: float = 1e-8) -> np.ndarray:
    """Schäfer-Strimmer shrinkage of the covariance of ``resid`` (n_obs, n_series) towards its
    diagonal; the intensity is estimated from the standardized residuals. Memory is a few
    (n_series, n_series) matrices, never one per observation."""
    r = np.asarray(resid, dtype=float)
    n, k = r.shape
    x = r - r.mean(axis=0)
    cov = x.T @ x / max(n - 1, 1)
    var = np.diag(cov).copy()
    std = np.sqrt(np.where(var > 0, var, 1.0))
    xs = x / std
    wbar = xs.T @ xs / n  # mean over observations of xs_ti * xs_tj
    corr = wbar * n / max(n - 1, 1)
    sq = xs * xs
    # sum_t (w_tij - wbar_ij)^2 = sum_t w_tij^2 - n wbar_ij^2
    ss = np.maximum(sq.T @ sq - n * wbar * wbar, 0.0)
    var_corr = n / max(n - 1, 1) ** 3 * ss
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


def wls_bottom(
    S: sparse.csr_array, w: np.ndarray, bottom_rows: list[int], y: np.ndarray
) -> np.ndarray:
    """Bottom series of the WLS reconciliation ``(S' W^-1 S)^-1 S' W^-1 y`` with ``W = diag(w)``,
    for any number of series: ``S' W^-1 S`` is the bottom rows' diagonal plus one rank-one term
    per aggregate, so Woodbury's identity leaves one (n_aggregates x n_aggregates) solve.
    ``y`` (n, ...) any trailing shape; returns (n_bottom, ...)."""
    n, m = S.shape
    shape = y.shape[1:]
    flat = np.asarray(y, dtype=float).reshape(n, -1)
    wi = 1.0 / w
    r = S.T @ (wi[:, None] * flat)  # (m, cols)
    agg = np.setdiff1d(np.arange(n), bottom_rows)
    d = wi[bottom_rows]  # A = diag(d) + U' diag(wi[agg]) U
    b = r / d[:, None]
    if len(agg):
        U = S[agg]  # (k, m) sparse
        K = np.diag(w[agg]) + (U @ sparse.diags_array(1.0 / d) @ U.T).toarray()
        b = b - (U.T @ np.linalg.solve(K, U @ b)) / d[:, None]
    return np.asarray(b).reshape((m, *shape))


#: Above this many series MinT's dense (n x n) covariance and solves cost O(n^3) time and O(n^2)
#: memory for little gain: WLS with each series' own error variance, through the structure.
DENSE_LIMIT = 600


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
    n = len(ids)
    if n > DENSE_LIMIT:
        return _reconcile_large(ids, mean, paths, resid, variances, nonneg)
    S, bottom = summing_matrix(ids)
    info: dict[str, object] = {"bottom": bottom, "method": "mint_shrink"}
    if resid is not None:
        resid = resid[np.isfinite(resid).all(axis=1)]
    if resid is not None and len(resid) >= 3:
        W = shrunk_covariance(resid)
    else:
        W = np.diag(_positive(variances, n))
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


def _positive(v: np.ndarray | None, n: int) -> np.ndarray:
    """Variances with every missing, zero or negative entry replaced by the mean of the others."""
    v = np.asarray(v if v is not None else np.ones(n), dtype=float)
    ok = np.isfinite(v) & (v > 0)
    return np.where(ok, v, float(np.mean(v[ok])) if ok.any() else 1.0)


def _reconcile_large(
    ids: Sequence[str],
    mean: np.ndarray,
    paths: np.ndarray | None,
    resid: np.ndarray | None,
    variances: np.ndarray | None,
    nonneg: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray | None, dict[str, object]]:
    """:func:`reconcile` above :data:`DENSE_LIMIT` series: WLS with each series' backtest error
    variance (its own months; the models' variance where fewer than 3), sparse ``S``, memory and
    time linear in the series (times the aggregates)."""
    S, bottom = summing_sparse(ids)
    n = len(ids)
    v = _positive(variances, n)
    if resid is not None and len(resid):
        r = np.asarray(resid, dtype=float)
        enough = np.isfinite(r).sum(axis=0) >= 3
        with np.errstate(invalid="ignore"):
            rv = np.nanvar(np.where(enough, r, 0.0), axis=0, ddof=1)
        v = np.where(enough & np.isfinite(rv) & (rv > 0), rv, v)
    pos = {u: i for i, u in enumerate(ids)}
    brow = [pos[b] for b in bottom]
    clip = np.zeros(len(bottom), dtype=bool) if nonneg is None else np.asarray(nonneg, bool)[brow]
    info: dict[str, object] = {"bottom": bottom, "method": f"wls_var (structured, {n} series)"}
    b_mean = wls_bottom(S, v, brow, np.asarray(mean, dtype=float))
    b_mean[clip] = np.maximum(b_mean[clip], 0.0)
    out_paths = None
    if paths is not None:
        b_paths = wls_bottom(S, v, brow, np.asarray(paths, dtype=float))
        b_paths[clip] = np.maximum(b_paths[clip], 0.0)
        out_paths = add_up(S, b_paths)
    return add_up(S, b_mean), out_paths, info
