"""Forecast accuracy: MASE, WAPE, sMAPE, pinball loss, interval coverage and interval score (MSIS).

Definitions follow the M4 competition (Makridakis et al., 2020):

- ``MASE = mean|y - f| / scale``, ``scale = mean|y_t - y_{t-m}|`` over the in-sample history with
  ``m = 12``; a history of ``m`` months or fewer has no seasonal difference, so ``m = 1`` (naive).
- ``sMAPE = 200 / h * sum |y - f| / (|y| + |f|)`` (a term with ``y = f = 0`` counts as 0).
- ``MSIS = mean[(U - L) + 2/a (L - y) 1{y < L} + 2/a (y - U) 1{y > U}] / scale``, ``a = 1 - L/100``.
- ``WAPE = sum|y - f| / sum|y|`` (not in M4: it is what finance reads, errors as a share of spend).
- pinball loss of quantile ``q``: ``mean max(q (y - f_q), (q - 1)(y - f_q))``; an interval at level L
  gives the quantiles ``(1 - L/100)/2`` and ``(1 + L/100)/2``, the mean stands for the median.

When the scale is zero (a constant history) the seasonal-naive MAE cannot scale anything; we fall
back to the naive (m = 1) MAE, then to the mean absolute level, then to 1, so every series gets a
finite, positive scale. :func:`scale_of` documents the chain.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from pipeline.frames import CUTOFF, MEAN, MODEL, UID, Y, hi_col, lo_col

SEASON = 12


def seasonal_mae(insample: np.ndarray, m: int = SEASON) -> float:
    """In-sample MAE of the seasonal naive forecast (``m`` falls back to 1 for short histories);
    ``nan`` when there is nothing to difference."""
    y = np.asarray(insample, dtype=float)
    y = y[np.isfinite(y)]
    if len(y) <= m:
        m = 1
    if len(y) <= m:
        return float("nan")
    return float(np.mean(np.abs(y[m:] - y[:-m])))


def scale_of(insample: np.ndarray, m: int = SEASON) -> float:
    """The MASE scale with a fallback chain so it is always finite and > 0:
    seasonal-naive MAE -> naive MAE -> mean |y| -> 1."""
    y = np.asarray(insample, dtype=float)
    y = y[np.isfinite(y)]
    for cand in (seasonal_mae(y, m), seasonal_mae(y, 1)):
        if np.isfinite(cand) and cand > 0:
            return cand
    level = float(np.mean(np.abs(y))) if len(y) else 0.0
    return level if level > 0 else 1.0


def mase(y: np.ndarray, f: np.ndarray, insample: np.ndarray, m: int = SEASON) -> float:
    return float(np.mean(np.abs(np.asarray(y) - np.asarray(f)))) / scale_of(insample, m)


def wape(y: np.ndarray, f: np.ndarray) -> float:
    y, f = np.asarray(y, dtype=float), np.asarray(f, dtype=float)
    den = np.sum(np.abs(y))
    return float(np.sum(np.abs(y - f)) / den) if den > 0 else float("nan")


def smape_terms(y: np.ndarray, f: np.ndarray) -> np.ndarray:
    """Per-point sMAPE (x 200), 0 where both are 0."""
    y, f = np.asarray(y, dtype=float), np.asarray(f, dtype=float)
    den = np.abs(y) + np.abs(f)
    num = 200.0 * np.abs(y - f)
    return np.divide(num, den, out=np.zeros_like(num), where=den > 0)


def smape(y: np.ndarray, f: np.ndarray) -> float:
    return float(np.mean(smape_terms(y, f)))


def pinball(y: np.ndarray, fq: np.ndarray, q: float) -> float:
    return float(np.mean(pinball_terms(y, fq, q)))


def pinball_terms(y: np.ndarray, fq: np.ndarray, q: float) -> np.ndarray:
    d = np.asarray(y, dtype=float) - np.asarray(fq, dtype=float)
    return np.maximum(q * d, (q - 1.0) * d)


def coverage(y: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> float:
    y = np.asarray(y, dtype=float)
    return float(np.mean((y >= np.asarray(lo)) & (y <= np.asarray(hi))))


def interval_score_terms(y: np.ndarray, lo: np.ndarray, hi: np.ndarray, level: int) -> np.ndarray:
    """Unscaled interval score per point (divide by the MASE scale for MSIS)."""
    a = 1.0 - level / 100.0
    y, lo, hi = (np.asarray(v, dtype=float) for v in (y, lo, hi))
    return (hi - lo) + (2.0 / a) * (lo - y) * (y < lo) + (2.0 / a) * (y - hi) * (y > hi)


def msis(
    y: np.ndarray,
    lo: np.ndarray,
    hi: np.ndarray,
    insample: np.ndarray,
    level: int = 95,
    m: int = SEASON,
) -> float:
    return float(np.mean(interval_score_terms(y, lo, hi, level))) / scale_of(insample, m)


def quantile_levels(levels: Sequence[int]) -> list[tuple[str, float]]:
    """``(column, quantile)`` for every interval bound plus the mean as the median."""
    out: list[tuple[str, float]] = [(MEAN, 0.5)]
    for lv in levels:
        a = 1.0 - lv / 100.0
        out += [(lo_col(lv), a / 2.0), (hi_col(lv), 1.0 - a / 2.0)]
    return out


# --- tables ----------------------------------------------------------------


def add_point_terms(bt: pd.DataFrame, levels: Sequence[int]) -> pd.DataFrame:
    """Per-row error terms of a backtest (or hold-out) table that already carries ``scale``
    (the in-sample MASE scale at that row's cutoff): the building blocks every summary averages."""
    out = bt.copy()
    y, f, s = out[Y].to_numpy(float), out[MEAN].to_numpy(float), out["scale"].to_numpy(float)
    out["_ae"] = np.abs(y - f)
    out["_absy"] = np.abs(y)
    out["_mase"] = out["_ae"] / s
    out["_smape"] = smape_terms(y, f)
    qs = quantile_levels([lv for lv in levels if lo_col(lv) in out.columns])
    out["_pinball"] = (
        np.mean([pinball_terms(y, out[c].to_numpy(float), q) for c, q in qs], axis=0) / s
    )
    for lv in levels:
        lo, hi = lo_col(lv), hi_col(lv)
        if lo in out.columns:
            out[f"_cov_{lv}"] = (
                (y >= out[lo].to_numpy(float)) & (y <= out[hi].to_numpy(float))
            ).astype(float)
            out[f"_msis_{lv}"] = interval_score_terms(y, out[lo], out[hi], lv) / s
    return out


def cost_weighted_mase(rows: pd.DataFrame) -> float:
    """MASE per forecast (series and cutoff), then averaged with each forecast's actual cost
    (``sum |y|``) as its weight: a $1.6k/month series with a MASE of 68 moves it by its share of the
    money, not by one series' share of the count (it dominated the plain mean: 3.6-4.3 where every
    costly series scored under 1.5). ``rows`` carry ``y``, ``mean``, ``scale``, ``unique_id`` (and
    ``cutoff`` when there are several windows); NaN without rows or cost."""
    if not len(rows):
        return float("nan")
    y = rows[Y].to_numpy(float)
    t = pd.DataFrame(
        {
            "_g": 0,
            "_mase": np.abs(y - rows[MEAN].to_numpy(float)) / rows["scale"].to_numpy(float),
            "_absy": np.abs(y),
        }
    )
    for k in (UID, CUTOFF):
        if k in rows.columns:
            t[k] = rows[k].to_numpy()
    return float(_cost_weighted(t, ["_g"]).iloc[0])


def _cost_weighted(t: pd.DataFrame, group: list[str]) -> pd.Series:
    """Per ``group``: the mean ``_mase`` of each forecast (series and cutoff), weighted by the
    forecast's ``sum _absy`` (NaN where a group has no cost)."""
    keys = [k for k in (UID, CUTOFF) if k in t.columns and k not in group]
    g = t.groupby(group + keys, dropna=False)
    per, cost = g["_mase"].mean(), g["_absy"].sum()
    outer = list(range(len(group)))
    num = (per * cost).groupby(level=outer, dropna=False).sum()
    den = cost.groupby(level=outer, dropna=False).sum()
    return num / den.where(den > 0)


def summarize(
    bt: pd.DataFrame, levels: Sequence[int], by: Sequence[str] = (MODEL,)
) -> pd.DataFrame:
    """Metrics per group: MASE, MASE_cost, WAPE, sMAPE, scaled pinball, coverage_L, MSIS_L, n.

    MASE, sMAPE, pinball and MSIS are first averaged per series and cutoff (one forecast), then
    over forecasts, so long windows do not outweigh short ones (the M4 convention); ``MASE_cost``
    weights each forecast's MASE by its actual cost instead (:func:`cost_weighted_mase`: what the
    champion decisions use); WAPE pools the group's absolute errors over its absolute actuals;
    coverage is the share of points inside.
    """
    t = add_point_terms(bt, levels)
    keys = [k for k in (UID, CUTOFF) if k in t.columns]
    per_cols = ["_mase", "_smape", "_pinball"] + [c for c in t.columns if c.startswith("_msis_")]
    group = list(by)
    if keys and not set(keys) <= set(group):
        per = t.groupby(group + [k for k in keys if k not in group], dropna=False)[per_cols].mean()
        agg = per.groupby(level=list(range(len(group))), dropna=False).mean()
    else:
        agg = t.groupby(group, dropna=False)[per_cols].mean()
    sums = t.groupby(group, dropna=False)[["_ae", "_absy"]].sum()
    cov = t.groupby(group, dropna=False)[[c for c in t.columns if c.startswith("_cov_")]].mean()
    out = pd.DataFrame(index=agg.index)
    out["MASE"] = agg["_mase"]
    out["MASE_cost"] = _cost_weighted(t, group)
    out["WAPE"] = sums["_ae"] / sums["_absy"].where(sums["_absy"] > 0)
    out["sMAPE"] = agg["_smape"]
    out["pinball"] = agg["_pinball"]
    for lv in levels:
        if f"_cov_{lv}" in cov.columns:
            out[f"coverage_{lv}"] = cov[f"_cov_{lv}"]
            out[f"MSIS_{lv}"] = agg[f"_msis_{lv}"]
    out["n"] = t.groupby(group, dropna=False).size()
    return out.reset_index()


# --- the reader's table ------------------------------------------------------

TYPICAL_AT = (1, 3, 12)


NOT_BACKTESTED = "it follows the plan, which describes only the months ahead: no backtest saw it"
BEYOND = "backtest of the cost beyond"  # an ancestor of such series: the rest of its cost
ALONE = "backtest of the models alone; the published figure adds the plan for"


def accuracy_table(
    bt: pd.DataFrame,
    chosen: pd.Series,
    levels: Sequence[int],
    planned: Mapping[str, str] | None = None,
) -> pd.DataFrame:
    """Backtest accuracy of the forecast each series publishes (``chosen``: model per series),
    one row per series plus one cost-weighted row over the bottom series (``unique_id`` ``all``).

    Columns: ``scope`` (``total``, ``phase``, ``series`` or ``all``), ``unique_id``, ``model``,
    ``WAPE`` (cost-weighted: sum |error| / sum |actual|), ``typical_error_1m`` / ``_3m`` /
    ``_12m`` (the same ratio at exactly 1, 3 and 12 months ahead: "typically within +-x %"; NaN
    when the backtest did not reach that far), ``MASE``, ``coverage_L`` per level, ``cost_share``
    (the series' share of the actuals among the rows summarised), ``n`` (backtest points). The
    ``all`` row's MASE weights each forecast (series and cutoff) by its cost, as ``MASE_cost`` does
    (:func:`cost_weighted_mase`), so a $1k/month series with a MASE of 60 cannot dominate it the
    way it dominates a plain mean.

    ``planned``: series whose published forecast is the plan's scheduled runs (the plan describes
    months after the history only, so no backtest saw that forecast), each with the model it would
    otherwise have had. Their rows carry no figures, and ``basis`` says why; their ancestors'
    figures are those of the rest of their cost (their backtest minus those series' actuals and
    model forecasts), which is what the models forecast in the published figure, without MASE and
    coverage (no scale or bounds of that rest). ``basis`` is ``backtest`` for every other row.
    ``measured_share``: the share of the row's backtested cost its figures are of (the rest's
    actuals over the whole row's, on the same cutoffs and months; 1 for every other row with
    figures): a phase whose rest is a small line beside planned labor reads "+-25 % on 4 % of its
    cost", not "+-25 %".
    """
    cols = ["scope", UID, MODEL, "WAPE", *[f"typical_error_{k}m" for k in TYPICAL_AT], "MASE"]
    cols += [f"coverage_{lv}" for lv in levels] + ["cost_share", "measured_share", "n", "basis"]
    if bt.empty:
        return pd.DataFrame(columns=cols)
    planned = {str(k): str(v) for k, v in (planned or {}).items()}
    mine = bt[bt[MODEL].to_numpy() == bt[UID].map(chosen).to_numpy()]
    cost = mine[Y].abs().groupby(mine[UID].astype(str)).sum()  # shares of cost count every series
    mine, basis, measured = _without_planned(mine, bt, planned)
    t = add_point_terms(mine, levels)
    rest = t[UID].astype(str).isin([u for u, b in basis.items() if b.startswith(BEYOND)])
    t.loc[rest, [c for c in t.columns if c.startswith("_cov_")]] = np.nan  # no bounds of the rest
    out = _accuracy_rows(t, chosen, levels)
    out["basis"] = out[UID].map(basis).fillna("backtest")
    out["measured_share"] = out[UID].map(measured).fillna(1.0)
    out["_cost"] = out[UID].map(cost).fillna(out["_cost"])  # a rest's share is its whole cost's
    if planned:
        gone = [*planned, *[u for u, b in basis.items() if b == NOT_BACKTESTED]]
        rows = [
            {
                "scope": _scope(u),
                UID: u,
                MODEL: str(chosen.get(u, "")),
                "basis": NOT_BACKTESTED,
                "_cost": float(cost.get(u, np.nan)),
            }  # fmt: skip
            for u in gone
        ]
        out = pd.concat([out, pd.DataFrame(rows, columns=out.columns)], ignore_index=True)
    hier = (out["scope"] != "series").any()
    bottom = out[out["scope"] == "series"] if hier else out
    b = t[t[UID].isin(bottom[UID])]  # the bottom series with a backtest
    total_cost = float(bottom["_cost"].sum())  # planned series included (not in ``b``)
    if len(b):
        row = _accuracy_row(b, "all", "all", "", levels)
        # the same cost-weighted MASE as the metrics' MASE_cost and the champion decisions
        row["MASE"] = float(_cost_weighted(b.assign(_g=0), ["_g"]).iloc[0])
        row["basis"] = "backtest"
        row["measured_share"] = 1.0
        out = pd.concat([out, pd.DataFrame([row])], ignore_index=True)
    out["cost_share"] = out["_cost"] / total_cost if total_cost > 0 else np.nan
    return out.reindex(columns=cols).reset_index(drop=True)  # no bounds: coverage NaN


def _without_planned(
    mine: pd.DataFrame, bt: pd.DataFrame, planned: Mapping[str, str]
) -> tuple[pd.DataFrame, dict[str, str], dict[str, float]]:
    """The chosen backtest rows without the ``planned`` series, and their ancestors' rows as the
    rest of their cost where that can be measured, with no scale (MASE NaN): at each cutoff and
    month, the ancestor's own actual and forecast minus each planned descendant's actual and
    model forecast; where a planned descendant's windows were cut at other months (a shorter
    history), the sum of the ancestor's children's (a planned child or one with nothing left
    counting 0, the others their own rows or rest). Returns the rows and the ``basis`` of every
    ancestor:

    * the rest, on the cutoffs and months where it could be measured (the others left out);
    * :data:`NOT_BACKTESTED` when the rest has no cost (a phase that is only planned series);
    * otherwise the models' own backtest, said to be of the models alone.

    And each rest's share of its ancestor's actual cost on the same cutoffs and months."""
    from pipeline.frames import DS, TOTAL, node_parents

    if not planned:
        return mine, {}, {}
    ids = pd.unique(mine[UID].astype(str))
    out = mine[~mine[UID].astype(str).isin(list(planned))].copy()
    holds: dict[str, list[str]] = {}
    for p in planned:
        for a in node_parents(p):
            holds.setdefault(a, []).append(p)
    children: dict[str, list[str]] = {}
    for u in ids:
        for parent in node_parents(u)[:1]:
            children.setdefault(parent, []).append(u)
    basis: dict[str, str] = {}
    measured: dict[str, float] = {}
    drop = np.zeros(len(out), dtype=bool)
    for a in sorted(holds, key=lambda u: (u == TOTAL, -u.count("/"))):  # children first
        ps = holds[a]
        rows = (out[UID].astype(str) == a).to_numpy()
        if not rows.any():
            continue
        key = pd.MultiIndex.from_frame(out.loc[rows, [CUTOFF, DS]])
        whole = out.loc[rows, Y].to_numpy(float)
        y, f = whole.copy(), out.loc[rows, MEAN].to_numpy(float)
        for p in ps:  # the ancestor's own figures minus the planned series' models
            d = bt[(bt[UID].astype(str) == p) & (bt[MODEL] == planned[p])]
            if d.empty:  # too short for any window: nothing to take out
                continue
            sub = d.set_index([CUTOFF, DS])[[Y, MEAN]].reindex(key)
            y, f = y - sub[Y].to_numpy(float), f - sub[MEAN].to_numpy(float)
        yc, fc = np.zeros(len(key)), np.zeros(len(key))  # the children's, where that fails
        for c in children.get(a, []):
            if c in planned or basis.get(c) == NOT_BACKTESTED:
                continue
            if basis.get(c, "").startswith(ALONE):  # its figures hold planned cost: no rest
                yc = fc = np.full(len(key), np.nan)
                break
            sub = out[(out[UID].astype(str) == c) & ~drop].set_index([CUTOFF, DS])
            sub = sub[[Y, MEAN]].reindex(key)
            yc, fc = yc + sub[Y].to_numpy(float), fc + sub[MEAN].to_numpy(float)
        own = np.isfinite(y) & np.isfinite(f)
        y, f = np.where(own, y, yc), np.where(own, f, fc)
        seen = np.isfinite(y) & np.isfinite(f)
        names = ", ".join(ps)
        # what is left after the planned series, beyond rounding (sums of floats leave ~1e-13)
        left = np.abs(y[seen]).sum() > 1e-9 * np.nansum(np.abs(whole[seen]))
        if not seen.any():  # no window in common: what the models alone did
            basis[a] = f"{ALONE} {names}"
        elif left:
            measured[a] = float(np.abs(y[seen]).sum() / max(np.abs(whole[seen]).sum(), 1e-300))
            out.loc[rows, Y], out.loc[rows, MEAN] = y, f
            out.loc[rows, "scale"] = np.nan  # no MASE of the rest
            drop[np.flatnonzero(rows)[~seen]] = True
            basis[a] = f"{BEYOND} {names} (the plan)"
        else:  # nothing but planned series
            drop[rows] = True
            basis[a] = NOT_BACKTESTED
    return out[~drop], basis, measured


def _ratio(ae: pd.Series, absy: pd.Series) -> pd.Series:
    return (ae / absy.where(absy > 0)).astype(float)


def _scope(uid: str) -> str:
    """``total``, ``phase`` or ``series``: where a series id sits in the hierarchy."""
    from pipeline.frames import parse_hierarchy_id

    phase, cat = parse_hierarchy_id(uid)
    return "total" if phase is None else ("phase" if cat is None else "series")


def _accuracy_rows(t: pd.DataFrame, chosen: pd.Series, levels: Sequence[int]) -> pd.DataFrame:
    """:func:`_accuracy_row` for every series at once (grouped sums, linear in the rows)."""
    g = t.groupby(UID, sort=False)
    uids = pd.Index(g.size().index)
    out = pd.DataFrame({UID: uids.astype(str)}, index=uids)
    out.insert(0, "scope", [_scope(str(u)) for u in uids])
    out[MODEL] = [str(chosen.get(u, "")) for u in uids]
    absy, ae = g["_absy"].sum(), g["_ae"].sum()
    out["WAPE"] = _ratio(ae, absy)
    for k in TYPICAL_AT:
        at = t[t["h"] == k].groupby(UID, sort=False)
        out[f"typical_error_{k}m"] = _ratio(at["_ae"].sum(), at["_absy"].sum()).reindex(uids)
    keys = [k for k in (UID, CUTOFF) if k in t.columns]
    out["MASE"] = t.groupby(keys, sort=False)["_mase"].mean().groupby(level=0, sort=False).mean()
    for lv in levels:
        if f"_cov_{lv}" in t.columns:
            out[f"coverage_{lv}"] = g[f"_cov_{lv}"].mean().astype(float)
    out["_cost"] = absy.astype(float)
    out["n"] = g.size()
    return out.reset_index(drop=True)


def _accuracy_row(
    g: pd.DataFrame, scope: str, uid: str, model: str, levels: Sequence[int]
) -> dict[str, object]:
    def ratio(rows: pd.DataFrame) -> float:
        den = float(rows["_absy"].sum())
        return float(rows["_ae"].sum()) / den if den > 0 and len(rows) else float("nan")

    keys = [k for k in (UID, CUTOFF) if k in g.columns]
    row: dict[str, object] = {"scope": scope, UID: uid, MODEL: model, "WAPE": ratio(g)}
    for k in TYPICAL_AT:
        row[f"typical_error_{k}m"] = ratio(g[g["h"] == k])
    row["MASE"] = float(g.groupby(keys)["_mase"].mean().mean()) if len(g) else float("nan")
    for lv in levels:
        if f"_cov_{lv}" in g.columns:
            row[f"coverage_{lv}"] = float(g[f"_cov_{lv}"].mean())
    row["_cost"] = float(g["_absy"].sum())
    row["n"] = len(g)
    return row
