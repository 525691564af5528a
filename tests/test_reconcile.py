"""Hierarchy: summing matrix, shrinkage covariance, MinT, and coherence to the cent."""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipeline.forecast import ForecastConfig, run_forecast
from pipeline.reconcile import mint_projection, reconcile, shrunk_covariance, summing_matrix

IDS = ["total", "inference", "inference/compute_gpu", "inference/network", "operations"]
SMALL_JOB = ForecastConfig(
    horizon=6,
    models=("analytic_baseline", "seasonal_naive", "theta", "ensemble"),
    n_paths=300,
    reconcile=True,
)


def test_summing_matrix():
    S, bottom = summing_matrix(IDS)
    assert bottom == ["inference/compute_gpu", "inference/network", "operations"]
    np.testing.assert_array_equal(S, [[1, 1, 1], [1, 1, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]])


def test_shrinkage_intensity_matches_independent_formula():
    rng = np.random.default_rng(0)
    r = rng.standard_normal((30, 3)) @ np.array([[1, 0.5, 0], [0, 1, 0.3], [0, 0, 2.0]])
    W = shrunk_covariance(r, ridge=0.0)
    # Schäfer & Strimmer (2005), target D: lambda = sum_{i!=j} Var(r_ij) / sum_{i!=j} r_ij^2, computed
    # here with explicit loops over the standardized data
    n = len(r)
    x = (r - r.mean(0)) / r.std(0, ddof=1)
    num = den = 0.0
    for i in range(3):
        for j in range(3):
            if i == j:
                continue
            w = x[:, i] * x[:, j]
            num += n / (n - 1) ** 3 * ((w - w.mean()) ** 2).sum()
            den += (w.mean() * n / (n - 1)) ** 2
    lam = min(max(num / den, 0), 1)
    cov = np.cov(r, rowvar=False)
    expect = (1 - lam) * cov + lam * np.diag(np.diag(cov))
    np.testing.assert_allclose(W, expect, rtol=1e-10)


def test_mint_identity_is_ols_and_projection_keeps_coherent_forecasts():
    S, _ = summing_matrix(IDS)
    P = mint_projection(S, np.eye(len(IDS)))
    np.testing.assert_allclose(P, np.linalg.inv(S.T @ S) @ S.T)
    b = np.array([3.0, 1.0, 2.0])
    np.testing.assert_allclose(S @ P @ (S @ b), S @ b)  # coherent input unchanged


def test_reconcile_paths_and_clipping():
    rng = np.random.default_rng(1)
    mean = np.array([[10.0], [7.0], [6.0], [0.5], [2.0]])
    paths = mean[:, None, :] + rng.normal(0, 1, (5, 200, 1))
    resid = rng.normal(0, 1, (40, 5))
    m, p, _ = reconcile(IDS, mean, paths, resid, nonneg=np.array([True] * 5))
    assert p is not None
    np.testing.assert_allclose(m[0], m[2] + m[3] + m[4], atol=1e-9)
    np.testing.assert_allclose(p[0], p[2] + p[3] + p[4], atol=1e-9)
    np.testing.assert_allclose(p[1], p[2] + p[3], atol=1e-9)
    assert (p[[2, 3, 4]] >= 0).all()  # non-negative bottoms stay so; parents are their sums


def hierarchy_frame(n: int = 40, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    ds = pd.date_range("2023-01-01", periods=n, freq="MS")
    t = np.arange(n)
    bottoms = {
        "inference/compute_gpu": 5000
        + 80 * t
        + 600 * np.sin(2 * np.pi * t / 12)
        + rng.normal(0, 150, n),
        "inference/network": 800 + 5 * t + rng.normal(0, 40, n),
        "operations/labor": np.full(n, 12000.0) + np.where(t > 20, 1500, 0) + rng.normal(0, 100, n),
        "fine_tuning/compute_gpu": 2000 + rng.normal(0, 300, n),
    }
    rows = {k: v.round(2) for k, v in bottoms.items()}
    rows["inference"] = rows["inference/compute_gpu"] + rows["inference/network"]
    rows["operations"] = rows["operations/labor"]
    rows["fine_tuning"] = rows["fine_tuning/compute_gpu"]
    rows["total"] = rows["inference"] + rows["operations"] + rows["fine_tuning"]
    return pd.concat(
        [pd.DataFrame({"unique_id": k, "ds": ds, "y": v}) for k, v in rows.items()],
        ignore_index=True,
    )


def test_job_is_coherent_to_the_cent():
    df = hierarchy_frame()
    cfg = SMALL_JOB
    res = run_forecast(df, cfg, progress=False)
    fc = res.forecast.set_index(["unique_id", "ds"])
    assert {"phase", "category"} <= set(res.forecast.columns)
    for ds in res.path_ds:
        m = fc.xs(ds, level="ds")["mean"]
        phases = m["inference"] + m["operations"] + m["fine_tuning"]
        bottoms = m[[u for u in m.index if "/" in u]].sum()
        assert abs(m["total"] - phases) < 0.005 and abs(m["total"] - bottoms) < 0.005
        assert abs(m["inference"] - m["inference/compute_gpu"] - m["inference/network"]) < 0.005
    ids = res.path_ids
    P = res.paths
    total = P[ids.index("total")]
    phases = sum(P[ids.index(p)] for p in ("inference", "operations", "fine_tuning"))
    bottoms = sum(P[i] for i, u in enumerate(ids) if "/" in u)
    assert np.abs(total - phases).max() < 0.005 and np.abs(total - bottoms).max() < 0.005
    # bounds are quantiles of the reconciled paths, nested
    f = res.forecast
    assert (
        (f["lo_95"] <= f["lo_80"])
        & (f["lo_80"] <= f["mean"])
        & (f["mean"] <= f["hi_80"])
        & (f["hi_80"] <= f["hi_95"])
    ).all()
    i = ids.index("total")
    # read at the conformal-corrected probability: between the paths' 90 % and 95 % quantiles
    hi80 = fc.loc["total", "hi_80"].to_numpy()
    assert (hi80 >= np.quantile(P[i], 0.9, axis=0) - 1e-9).all()
    assert (hi80 <= np.quantile(P[i], 0.95, axis=0) + 1e-9).all()
    # the published mean is the mean of the paths
    np.testing.assert_allclose(fc.loc["total", "mean"].to_numpy(), P[i].mean(axis=0), rtol=1e-9)
    assert res.paths.shape == (len(ids), 300, 6)
    assert res.forecast["mean"].min() >= 0


# --- many series: the structured path ----------------------------------------------------------

DEEP = [
    "total",
    "inference",
    "inference/compute_gpu",
    "inference/compute_gpu/search",
    "inference/compute_gpu/recs",
    "inference/network",
    "operations",
]


def test_summing_matrix_follows_every_level():
    S, bottom = summing_matrix(DEEP)
    # a team level under phase x category: phase x category is an aggregate, teams are leaves
    assert bottom == ["inference/compute_gpu/search", "inference/compute_gpu/recs",
                      "inference/network", "operations"]  # fmt: skip
    np.testing.assert_array_equal(
        S,
        [[1, 1, 1, 1], [1, 1, 1, 0], [1, 1, 0, 0], [1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0],
         [0, 0, 0, 1]],
    )  # fmt: skip


def test_structured_wls_equals_dense_projection():
    from pipeline.reconcile import summing_sparse, wls_bottom

    rng = np.random.default_rng(3)
    w = rng.uniform(0.2, 5.0, len(DEEP))
    y = rng.normal(size=(len(DEEP), 50, 4))
    S, bottom = summing_matrix(DEEP)
    P = mint_projection(S, np.diag(w))  # the textbook formula, dense
    Ss, _ = summing_sparse(DEEP)
    got = wls_bottom(Ss, w, [DEEP.index(b) for b in bottom], y)
    np.testing.assert_allclose(got, np.einsum("bi,iph->bph", P, y), atol=1e-10)


def test_reconcile_many_series_is_coherent_and_equals_dense_wls():
    rng = np.random.default_rng(4)
    ids = ["total"] + [f"p{i}" for i in range(6)]
    ids += [f"p{i}/c{j}" for i in range(6) for j in range(150)]  # 907 series > DENSE_LIMIT
    n = len(ids)
    mean = rng.uniform(10, 100, (n, 5))
    paths = mean[:, None, :] + rng.normal(0, 3, (n, 40, 5))
    resid = rng.normal(0, 1, (12, n)) * rng.uniform(0.5, 4, n)
    resid[:, 7] = np.nan  # a series without backtest errors falls back to the given variance
    var = rng.uniform(0.5, 4, n)
    m, p, info = reconcile(ids, mean, paths, resid, var, nonneg=np.ones(n, bool))
    assert "structured" in str(info["method"])
    assert p is not None
    S, bottom = summing_matrix(ids)
    brow = [ids.index(b) for b in bottom]
    np.testing.assert_allclose(m, S @ m[brow], rtol=1e-12)
    np.testing.assert_allclose(p[0], p[brow].sum(axis=0), rtol=1e-12)
    assert (p[brow] >= 0).all()
    # the same numbers as the dense formula with W = diag(each series' error variance)
    v = resid.var(axis=0, ddof=1)  # NaN for the series without errors
    v[7] = var[7]
    P = mint_projection(S, np.diag(v))
    expect = np.maximum(P @ mean, 0.0)
    np.testing.assert_allclose(m[brow], expect, rtol=1e-9, atol=1e-9)


def test_factor_correlation_draws_have_the_shrunk_sample_correlation():
    from pipeline.coherence import FactorCorrelation

    rng = np.random.default_rng(5)
    common = rng.normal(size=(60, 1))
    r = common * np.array([1.0, 0.8, 0.0, -1.0]) + rng.normal(size=(60, 4)) * 0.6
    z = (r - r.mean(0)) / r.std(0, ddof=1) / np.sqrt(len(r) - 1)
    g = FactorCorrelation(z.T, shrink=0.3).normals(200_000, rng)
    expect = 0.7 * np.corrcoef(r, rowvar=False) + 0.3 * np.eye(4)
    np.testing.assert_allclose(np.corrcoef(g, rowvar=False), expect, atol=0.01)
    np.testing.assert_allclose(g.std(axis=0), 1.0, atol=0.01)


def test_a_line_no_longer_billed_is_forecast_at_zero_without_a_band() -> None:
    """A bottom line whose only cost was a one-off credit, then nothing for 10 months (the demo's
    SLA credit on inference/compute_cpu): its forecast is 0 with no band, so it adds no spread to
    its phase or the total. Its run-rate sigma came from the credit alone; the band it gave was
    -9k to +12k a month, and conditioning on a month to date of 0 lifted its mean to 885."""
    base = hierarchy_frame(n=24)
    ds = pd.date_range("2023-01-01", periods=24, freq="MS")
    credit = np.zeros(24)
    credit[13] = -12345.67
    line = pd.DataFrame({"unique_id": "inference/compute_cpu", "ds": ds, "y": credit})
    parents = base["unique_id"].isin(["inference", "total"])
    base.loc[parents, "y"] = base.loc[parents, "y"].to_numpy() + np.tile(credit, 2)
    df = pd.concat([base, line], ignore_index=True)
    cfg = SMALL_JOB
    res = run_forecast(df, cfg, progress=False)
    f = res.forecast.set_index("unique_id").loc["inference/compute_cpu"]
    for col in ("mean", "lo_80", "hi_80", "lo_95", "hi_95"):
        np.testing.assert_array_equal(f[col].to_numpy(), 0.0)
    assert np.abs(res.paths[res.path_ids.index("inference/compute_cpu")]).max() == 0.0
    # its phase still adds up from its lines, paths and means
    fc = res.forecast.set_index(["unique_id", "ds"])["mean"].unstack("unique_id")
    lines = fc[["inference/compute_gpu", "inference/network", "inference/compute_cpu"]].sum(axis=1)
    np.testing.assert_allclose(fc["inference"], lines, atol=0.005)
    # a version stored before the rule re-runs as it ran: the line's models and its band
    import dataclasses

    before = run_forecast(df, dataclasses.replace(cfg, quiet_lines_at_zero=False), progress=False)
    f0 = before.forecast.set_index("unique_id").loc["inference/compute_cpu"]
    assert (f0["hi_95"] - f0["lo_95"]).min() > 1000.0

    # the line's spread was most of its phase's: the phase's band is a fraction of what it was
    def width(r: object, uid: str) -> np.ndarray:
        g = r.forecast.set_index("unique_id").loc[uid]  # type: ignore[attr-defined]
        return (g["hi_95"] - g["lo_95"]).to_numpy()

    assert (width(res, "inference") < 0.3 * width(before, "inference")).all()
    # every path adds up: total = phases = lines
    P, ids = res.paths, res.path_ids
    phases = sum(P[ids.index(p)] for p in ("inference", "operations", "fine_tuning"))
    lines = sum(P[i] for i, u in enumerate(ids) if "/" in u)
    assert np.abs(P[ids.index("total")] - phases).max() < 1e-6
    assert np.abs(P[ids.index("total")] - lines).max() < 1e-6
    # without reconciliation the phase loses what its own model forecast of the line
    flat = run_forecast(df, dataclasses.replace(cfg, reconcile=False), progress=False)
    fl = flat.forecast.set_index(["unique_id", "ds"])["mean"]
    assert (fl.loc["inference/compute_cpu"] == 0.0).all()
    own = flat.selection.set_index("unique_id")["model"]["inference"]
    a = flat.all_forecasts[flat.all_forecasts["model"] == own].set_index(["unique_id", "ds"])
    held = a.loc["inference", "mean"] - a.loc["inference/compute_cpu", "mean"]
    np.testing.assert_allclose(fl.loc["inference"].to_numpy(), held.to_numpy(), rtol=1e-6)
    # a line billed within the last six months keeps its band
    recent = credit.copy()
    recent[20] = -5000.0
    df2 = df.copy()
    df2.loc[df2["unique_id"] == "inference/compute_cpu", "y"] = recent
    for p in ("inference", "total"):
        df2.loc[df2["unique_id"] == p, "y"] += recent - credit
    f2 = run_forecast(df2, cfg, progress=False).forecast.set_index("unique_id")
    assert (
        f2.loc["inference/compute_cpu", "hi_95"] > f2.loc["inference/compute_cpu", "lo_95"]
    ).all()


def test_no_longer_billed_is_a_year_of_nothing_or_half_a_year_after_credits_only() -> None:
    from pipeline.forecast import no_longer_billed

    ds = pd.date_range("2025-01-01", periods=24, freq="MS")

    def line(uid: str, values: dict[int, float]) -> pd.DataFrame:
        y = np.zeros(24)
        for k, v in values.items():
            y[k] = v
        return pd.DataFrame({"unique_id": uid, "ds": ds, "y": y})

    hist = pd.concat(
        [
            line("a/credit_6", {17: -100.0}),  # months 18-23 quiet: 6
            line("a/credit_5", {18: -100.0}),
            line("a/credit_corrected", {15: -100.0, 17: 20.0}),  # a credit and its correction...
            line("a/credit_corrected_6", {15: -100.0, 17: -20.0}),  # ...and one taken further
            line("a/retired_15", {2: 50.0, 8: 70.0}),  # months 9-23 quiet: 15
            line("a/retired_14", {3: 50.0, 9: 70.0}),
            line("a/yearly_11", {0: 900.0, 12: 900.0}),  # billed each January: 11 quiet months
            line("a/yearly_late", {11: 900.0}),  # next January's charge not posted yet: 12
            line("a/yearly_rebate", {5: -3000.0, 17: -3000.0}),  # a rebate each June: 6
            line("a/every_17", {0: 40.0, 17: 40.0}),  # gap 17: quiet only from 20 months
            line("a/credit_and_cost", {3: 500.0, 17: -100.0}),
            line("a/never", {}),
            line("a/half_cent", {17: -100.0, 23: 0.004}),
            line("a/priced", {17: -100.0}),
        ],
        ignore_index=True,
    )
    quiet = no_longer_billed(hist, exclude={"a/priced"})
    assert sorted(quiet) == ["a/credit_6", "a/credit_corrected_6", "a/half_cent", "a/retired_15"]
    assert quiet["a/credit_6"] == (
        "no longer billed: one credit, the last in 2026-06, then nothing for 6 months; forecast 0"
    )
    assert quiet["a/retired_15"] == (
        "no longer billed: last billed in 2025-09, then nothing for 15 months; forecast 0"
    )
