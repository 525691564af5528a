"""Forecasts scored against a known future: generated cost hierarchies, cut at an as-of.

:func:`cost_hierarchy` generates a phasecast hierarchy (``total`` -> ``<phase>`` ->
``<phase>/<category>``) of monthly costs with what real AI cost series do: inference traffic that
grows and peaks in the promotion months (the demo world's daily traffic shape of 618, Double 11,
Black Friday / Cyber Monday and the Spring Festival dip, :mod:`pipeline.synth.calendar`, averaged
over each month), a quantization that cuts inference GPU cost by a step, rare large pre-training
bursts, a noisy fine-tuning cadence, storage that compounds, labor that steps with hiring. It
returns the history (``hist_months`` months) and the ``horizon`` months that follow.

:func:`evaluate` forecasts the history with the full job (:func:`pipeline.forecast.run_forecast`,
reconciled) and scores every model's and the published forecast against the known future, per
horizon band (months 1-6 and 7-18): cost-weighted WAPE, MASE, 80 / 95 % coverage; and the
inference series' error in promotion months beside its error in ordinary months. Pure: no I/O.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import pandas as pd

from pipeline.frames import DS, MEAN, MODEL, UID, Y, hi_col, lo_col
from pipeline.metrics import scale_of

BANDS: tuple[tuple[str, int, int], ...] = (("1-3", 1, 3), ("1-6", 1, 6), ("7-18", 7, 18))
PUBLISHED = "published"
PROMO_MONTHS = (6, 11)  # 618 and Double 11 / BFCM


def monthly_traffic_factor(months: pd.DatetimeIndex) -> np.ndarray:
    """Mean daily traffic multiplier (weekly x promotion x festival) of each month."""
    from pipeline.synth.calendar import traffic_shape

    out = []
    for m in months:
        days = [dt.date(m.year, m.month, d + 1) for d in range(int(pd.Timestamp(m).days_in_month))]
        out.append(float(traffic_shape(days).mean()))
    f = np.asarray(out)
    return f / f.mean()


@dataclass(frozen=True)
class Collection:
    hist: pd.DataFrame  # unique_id, ds, y
    future: pd.DataFrame  # unique_id, ds, y: the months after the history


def cost_hierarchy(
    seed: int, hist_months: int = 36, horizon: int = 18, end: str = "2026-10"
) -> Collection:
    """One generated hierarchy with a known future (see the module docstring)."""
    rng = np.random.default_rng(seed)
    n = hist_months + horizon
    first = pd.Timestamp(end) - pd.DateOffset(months=hist_months - 1)
    ds = pd.date_range(first, periods=n, freq="MS")
    t = np.arange(n, dtype=float)
    traffic = monthly_traffic_factor(ds)

    def noise(sd: float) -> np.ndarray:
        return np.exp(rng.normal(0.0, sd, n) - sd**2 / 2)

    g = rng.uniform(0.005, 0.035)  # monthly traffic growth
    level = rng.uniform(60e3, 160e3)
    quant = np.ones(n)
    if rng.random() < 0.6:  # a quantization step, somewhere in the history
        at = int(rng.integers(6, hist_months - 3))
        quant[at:] = rng.uniform(0.65, 0.85)
    bottom: dict[str, np.ndarray] = {}
    bottom["inference/compute_gpu"] = level * (1 + g) ** t * traffic * quant * noise(0.04)
    bottom["inference/network"] = 0.08 * level * (1 + g) ** t * traffic * noise(0.06)
    pre = np.full(n, rng.uniform(1e3, 3e3)) * noise(0.2)
    k = int(rng.integers(0, 8))
    while k < n:  # a pre-training run of 1-2 months every 6-12 months
        dur = int(rng.integers(1, 3))
        pre[k : k + dur] += rng.uniform(100e3, 300e3)
        k += dur + int(rng.integers(6, 12))
    bottom["pretraining/compute_gpu"] = pre
    bottom["fine_tuning/compute_gpu"] = (
        rng.uniform(10e3, 30e3) * (1 + g / 2) ** t * noise(rng.uniform(0.1, 0.25))
    )
    storage_g = rng.uniform(0.01, 0.04)
    bottom["data_preprocessing/storage"] = (
        rng.uniform(3e3, 8e3) * (1 + storage_g) ** t * noise(0.02)
    )
    bottom["data_preprocessing/compute_cpu"] = rng.uniform(5e3, 15e3) * noise(0.15)
    heads = np.full(n, float(rng.integers(3, 6)))
    for _ in range(int(rng.integers(1, 4))):  # hiring steps
        heads[int(rng.integers(3, n - 3)) :] += rng.choice([-1.0, 1.0, 1.0])
    bottom["operations/labor"] = np.maximum(heads, 1.0) * 160 * 95 * noise(0.01)
    opt = np.full(n, 500.0) * noise(0.3)
    for j in rng.choice(n, size=max(1, n // 12), replace=False):
        opt[j] += rng.uniform(5e3, 20e3)
    bottom["optimization/compute_gpu"] = opt

    rows = {u: np.round(v, 2) for u, v in bottom.items()}
    phases: dict[str, np.ndarray] = {}
    for u, v in rows.items():
        p = u.split("/")[0]
        phases[p] = phases.get(p, 0.0) + v
    allv = {"total": sum(rows.values()), **phases, **rows}
    long = pd.concat(
        [pd.DataFrame({UID: u, DS: ds, Y: np.asarray(v, float)}) for u, v in allv.items()],
        ignore_index=True,
    )
    cut = ds[hist_months - 1]
    return Collection(
        long[long[DS] <= cut].reset_index(drop=True), long[long[DS] > cut].reset_index(drop=True)
    )


def band_of(h: pd.Series) -> pd.Series:
    return pd.Series(np.where(h <= 6, "1-6", "7-18"), index=h.index)


def scored(fc: pd.DataFrame, future: pd.DataFrame, hist: pd.DataFrame) -> pd.DataFrame:
    """Forecast rows joined with the actual ``y``, the horizon ``h`` and the series' MASE scale."""
    t = fc.merge(future[[UID, DS, Y]], on=[UID, DS], how="inner")
    t["h"] = t.groupby([UID, MODEL], sort=False).cumcount() + 1
    scales = hist.groupby(UID)[Y].apply(lambda s: scale_of(s.to_numpy()))
    t["scale"] = t[UID].map(scales)
    return t


def band_table(t: pd.DataFrame, levels: tuple[int, ...] = (80, 95)) -> pd.DataFrame:
    """Per model and band: WAPE (cost-weighted), MASE (mean over series), coverage per level."""
    rows = []
    for name, lo, hi in BANDS:
        b = t[(t["h"] >= lo) & (t["h"] <= hi)]
        for model, g in b.groupby(MODEL, sort=False):
            ae = (g[Y] - g[MEAN]).abs()
            row: dict[str, object] = {
                MODEL: model,
                "band": name,
                "WAPE": float(ae.sum() / g[Y].abs().sum()),
                "MASE": float((ae / g["scale"]).groupby(g[UID]).mean().mean()),
            }
            for lv in levels:
                if lo_col(lv) in g.columns and g[lo_col(lv)].notna().all():
                    inside = (g[Y] >= g[lo_col(lv)] - 1e-6) & (g[Y] <= g[hi_col(lv)] + 1e-6)
                    row[f"coverage_{lv}"] = float(inside.mean())
            rows.append(row)
    return pd.DataFrame(rows)


def promo_ratio(t: pd.DataFrame, uid: str = "inference/compute_gpu") -> float:
    """Mean absolute percentage error in promotion months over that in ordinary months (published
    forecast of ``uid``, months 1-12)."""
    g = t[(t[UID] == uid) & (t[MODEL] == PUBLISHED) & (t["h"] <= 12)]
    ape = (g[Y] - g[MEAN]).abs() / g[Y].abs()
    promo = g[DS].dt.month.isin(PROMO_MONTHS)
    return float(ape[promo].mean() / ape[~promo].mean())


def evaluate_one(col: Collection, horizon: int = 18, n_paths: int = 500) -> pd.DataFrame:
    """Every model's and the published forecast of one collection, scored against its future."""
    from pipeline.forecast import ForecastConfig, run_forecast

    cfg = ForecastConfig(horizon=horizon, reconcile=True, n_paths=n_paths)
    res = run_forecast(col.hist, cfg, progress=False)
    pub = res.forecast.assign(**{MODEL: PUBLISHED})
    allf = res.all_forecasts
    cols = [UID, DS, MODEL, MEAN, lo_col(80), hi_col(80), lo_col(95), hi_col(95)]
    return scored(pd.concat([pub[cols], allf[cols]], ignore_index=True), col.future, col.hist)


def evaluate(
    seeds: tuple[int, ...] = (1, 2, 3),
    hist_months: tuple[int, ...] = (24, 36, 48),
    horizon: int = 18,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Scores over seeds x history lengths: (per-band table, medians over runs), plus the
    promotion-month error ratio as model ``promo_ratio``."""
    parts, promos = [], []
    for s in seeds:
        for m in hist_months:
            t = evaluate_one(cost_hierarchy(s, m, horizon), horizon)
            bt = band_table(t).assign(seed=s, hist_months=m)
            parts.append(bt)
            promos.append({"seed": s, "hist_months": m, "promo_ratio": promo_ratio(t)})
    runs = pd.concat(parts, ignore_index=True)
    med = runs.groupby([MODEL, "band"], sort=False).median(numeric_only=True)
    med = med.drop(columns=["seed", "hist_months"]).reset_index()
    return med, pd.DataFrame(promos)


def summary(med: pd.DataFrame, promos: pd.DataFrame) -> list[str]:
    """The lines a reader checks against the aims: published coverage per band, WAPE at 1-3
    months against the analytic baseline and seasonal naive, the promotion-month ratio."""
    m = med.set_index([MODEL, "band"])
    out = []
    for band in ("1-6", "7-18"):
        if (PUBLISHED, band) in m.index:
            r = m.loc[(PUBLISHED, band)]
            out.append(
                f"published coverage months {band}: 80 % -> {r['coverage_80']:.3f}, "
                f"95 % -> {r['coverage_95']:.3f}"
            )
    if (PUBLISHED, "1-3") in m.index:
        w = float(m.loc[(PUBLISHED, "1-3"), "WAPE"])
        for ref in ("analytic_baseline", "seasonal_naive"):
            if (ref, "1-3") in m.index:
                rw = float(m.loc[(ref, "1-3"), "WAPE"])
                out.append(
                    f"WAPE months 1-3: published {w:.3f} vs {ref} {rw:.3f} ({w / rw - 1:+.0%})"
                )
    if len(promos):
        out.append(
            "inference error in promotion months / ordinary months (median): "
            f"{promos['promo_ratio'].median():.2f}"
        )
    return out
