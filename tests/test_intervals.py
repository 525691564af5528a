"""Conformal calibration: hand-checked quantiles, nesting, paths consistent with the bounds,
and empirical coverage on series whose future is known."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipeline import intervals as iv
from pipeline.forecast import ForecastConfig, run_forecast
from tests.benchmarks.forecast_bench import evaluate, make_collection


def pool_of(values: np.ndarray) -> iv.ErrorPool:
    z = np.asarray(values, float).reshape(-1, 1)
    return iv.ErrorPool("m", z, np.ones(len(z)), len(z))


def test_conformal_quantile_finite_sample_correction():
    p = pool_of(np.arange(1.0, 100.0))  # 1..99
    q = p.quantiles([0.9, 0.1, 0.5], 1)[:, 0]
    # split conformal: the ceil((n + 1) 0.9) = 90th smallest; mirrored for the lower bound
    assert q[0] == 90.0
    assert q[1] == 10.0
    assert q[2] == 50.0
    # horizons past the pool reuse the last one
    assert p.quantiles([0.9], 3)[0].tolist() == [90.0, 90.0, 90.0]


def test_prior_dominates_small_pools():
    bt = pd.DataFrame(
        {
            "unique_id": "a",
            "cutoff": pd.Timestamp("2020-01-01"),
            "h": [1, 2],
            "model": "m",
            "y": [10.0, 10.0],
            "mean": [10.0, 10.0],
            "sigma": 1.0,
            "scale": 1.0,
        }
    )
    pool = iv.calibrate(bt, 2)["m"]
    q = pool.quantiles([0.975], 2)[0]
    # one zero-error vector against 20 pseudo-windows of N(0, 1): close to 1.96, a bit wider
    assert 1.7 < q[0] < 2.4


def test_bounds_nest_and_paths_match_bounds():
    rng = np.random.default_rng(0)
    z = rng.standard_t(4, size=(3000, 6)).cumsum(axis=1) / np.sqrt(np.arange(1, 7))
    z[:, 0] += 0.8  # biased model: the lower quantiles still stay below the mean
    pool = iv.ErrorPool("m", z, np.ones(len(z)), len(z))
    mean = np.array([[100.0] * 6, [5.0] * 6])
    d = np.array([[10.0] * 6, [0.5] * 6])
    b = iv.apply_intervals(mean, d, pool, (80, 95))
    assert (b["lo_95"] <= b["lo_80"]).all() and (b["lo_80"] <= mean).all()
    assert (mean <= b["hi_80"]).all() and (b["hi_80"] <= b["hi_95"]).all()
    paths = iv.sample_paths(mean, d, pool, 4000, np.random.default_rng(1))
    for lv, a in ((80, 0.2), (95, 0.05)):
        qhi = np.quantile(paths, 1 - a / 2, axis=1)
        np.testing.assert_allclose(qhi, b[f"hi_{lv}"], rtol=0.05)
    # a sum over months keeps the correlation of the resampled vectors
    s = paths[0].sum(axis=1)
    assert s.std() > np.sqrt(6) * paths[0].std(axis=0).mean() * 0.9


@pytest.mark.slow
def test_heldout_coverage_all_models():
    """The quality bar on 80 generated series (all kinds, lengths 24-150), last 18 months held out.
    500 paths (the product draws 1,000): bounds read from 50 paths' quantiles held 4-5 points less."""
    hist, test = make_collection(80, seed=11)
    res = run_forecast(hist, ForecastConfig(executor="processes", n_paths=500), progress=False)
    ev = evaluate(res.forecast, hist, test).iloc[0]
    assert abs(ev["coverage_95"] - 0.95) <= 0.03
    assert abs(ev["coverage_80"] - 0.80) <= 0.03


def test_heldout_coverage_quick():
    """Same check with the fast models (seasonal naive, baseline, Theta), 120 series, 500 paths."""
    hist, test = make_collection(120, seed=5)
    cfg = ForecastConfig(models=("analytic_baseline", "seasonal_naive", "theta"), n_paths=500)
    res = run_forecast(hist, cfg, progress=False)
    ev = evaluate(res.forecast, hist, test).iloc[0]
    assert abs(ev["coverage_80"] - 0.80) <= 0.05
    assert abs(ev["coverage_95"] - 0.95) <= 0.04


def test_log_scale_ratios_invert_and_keep_lower_bounds_positive() -> None:
    y = np.array([80.0, 120.0, 0.0, 150.0])
    m = np.array([100.0, 100.0, 100.0, 2.0])
    d = np.array([10.0, 10.0, 10.0, 30.0])  # last: relative spread 15 -> additive
    z = iv.to_ratio(y, m, d)
    np.testing.assert_allclose(z[:2], np.log(y[:2] / 100.0) / 0.1)
    assert z[2] == -10.0 and z[3] == (150.0 - 2.0) / 30.0  # y = 0 and bursty rows stay additive
    np.testing.assert_allclose(iv.from_ratio(m[:2], d[:2], z[:2]), y[:2])
    # a wide pool never takes a positive forecast below 0 on the log scale
    lo = iv.from_ratio(np.full(3, 100.0), np.full(3, 30.0), np.array([-3.0, -6.0, -50.0]))
    assert (lo > 0).all() and lo[0] > lo[1] >= lo[2]


def test_centred_paths_have_the_forecast_as_mean() -> None:
    rng = np.random.default_rng(0)
    mean = np.array([[100.0, 110.0], [5.0, 5.0]])
    d = np.array([[10.0, 12.0], [20.0, 20.0]])
    z = rng.standard_t(3, size=(2, 500, 2)) + 0.5  # skewed-by-shift, heavy-tailed draws
    p = iv.centred_paths(mean, d, z)
    np.testing.assert_allclose(p.mean(axis=1), mean)
    assert (p[0] > 0).all()


def test_correlated_draws_follow_the_backtest_correlation() -> None:
    from pipeline.coherence import correlated_draws

    rng = np.random.default_rng(1)
    pool = iv.ErrorPool("m", rng.standard_normal((400, 3)), np.ones(400), 400)
    corr = np.array([[1.0, 0.9], [0.9, 1.0]])
    z = correlated_draws([pool, pool], corr, 2000, 3, rng)
    c = np.corrcoef(z[0].mean(axis=1), z[1].mean(axis=1))[0, 1]
    assert c > 0.7
    zi = correlated_draws([pool, pool], None, 2000, 3, rng)
    assert abs(np.corrcoef(zi[0].mean(axis=1), zi[1].mean(axis=1))[0, 1]) < 0.1


def _drift_backtest(slopes: dict[str, list[float]], h: int = 6) -> pd.DataFrame:
    """A backtest whose forecast misses ``y`` by ``exp(slope x h)`` in each window."""
    rows = []
    for uid, per_window in slopes.items():
        for w, b in enumerate(per_window):
            for k in range(1, h + 1):
                mean = 100.0 + k
                rows.append(
                    {"unique_id": uid, "window": w, "h": k, "model": "m", "mean": mean,
                     "y": mean * np.exp(b * k), "sigma": 2.0, "scale": 5.0,
                     "cutoff": pd.Timestamp("2024-01-01") + pd.DateOffset(months=3 * w)}
                )  # fmt: skip
    return pd.DataFrame(rows)


def test_missed_drift_keeps_what_the_windows_agree_on() -> None:
    bt = _drift_backtest(
        {"grows": [0.02, 0.02, 0.02], "noisy": [0.03, -0.03, 0.001], "one": [0.02]}
    )
    b = iv.missed_drift(bt, pd.Series({"grows": "m", "noisy": "m", "one": "m"}))
    assert b["grows"] == pytest.approx(0.02)  # every window saw 2 % a month: all of it
    # slopes 0.03, -0.03, 0.001: mean 0.000333, se^2 = var / 3 far above mean^2: shrunk to 0
    assert b["noisy"] == 0.0
    assert b["one"] == 0.0  # one window is no evidence
    big = iv.missed_drift(_drift_backtest({"x": [0.2, 0.2]}), pd.Series({"x": "m"}))
    assert big["x"] == iv.DRIFT_CAP


def test_drift_correction_of_the_backtest_is_out_of_sample() -> None:
    bt = _drift_backtest({"a": [0.01, 0.02, 0.03]})
    out = iv.drift_corrected(bt)
    # window 0 is corrected by windows 1 and 2: mean 0.025, sd 0.00707, se^2 = 3 x 5e-5 / 2
    # (overlapping windows), shrink 1 - 7.5e-5 / 6.25e-4 = 0.88 -> 0.022
    w0 = out[out["window"] == 0]
    np.testing.assert_allclose(w0["mean"], bt.loc[w0.index, "mean"] * np.exp(0.022 * w0["h"]))
    np.testing.assert_allclose(w0["sigma"], 2.0 * np.exp(0.022 * w0["h"]))
    # the published forecast keeps a missed drift only as far as the history grew, same sign
    assert iv.bounded_drift(0.02, 0.01) == 0.01 and iv.bounded_drift(0.02, -0.01) == 0.0
    y = 100 * 1.03 ** np.arange(30)
    assert iv.history_growth(y) == pytest.approx(np.log(1.03))
    assert len(out) == len(bt) and (out.index == bt.index).all()


def test_series_scale_is_the_shrunk_rms_of_its_errors() -> None:
    # mean 100, sigma 2 (inside the normalizer's [0.05, 10] x scale 5): y = 100 exp(3 x 2 / 100) is
    # a log-scale error of exactly 3 sigmas in every month of both windows
    bt = _drift_backtest({"jumpy": [0.0, 0.0], "calm": [0.0, 0.0]})
    jumpy = bt["unique_id"] == "jumpy"
    bt.loc[jumpy, "mean"] = 100.0
    bt.loc[jumpy, "y"] = 100.0 * np.exp(3 * 2 / 100)
    s = iv.series_scale(bt, pd.Series({"jumpy": "m", "calm": "m"}))
    assert s["jumpy"] == pytest.approx(np.sqrt((9 + 9 + 1) / 3))  # two windows + one prior at 1
    assert s["calm"] == 1.0  # no error at all: sqrt(1 / 3), but a band is never narrowed
    out = iv.scale_corrected(bt)  # each window scaled by the other one only: sqrt((9 + 1) / 2)
    np.testing.assert_allclose(out.loc[jumpy, "sigma"], 2.0 * np.sqrt(5.0))


def test_normalizer_growth_is_the_relative_widening_since_the_backtest() -> None:
    """A series whose final fit is relatively three times as wide as in its backtest (a labor line
    after a step the windows saw: the final sigma already holds it) has its error scale divided by
    3; one that only grew (sigma in proportion to its level) keeps it whole."""
    bt = _drift_backtest({"stepped": [0.0, 0.0], "grew": [0.0, 0.0], "none": [0.0]})
    chosen = pd.Series({"stepped": "m", "grew": "m", "none": "x"})  # "none": no backtest of x
    h = 8
    mean = np.vstack([np.full(h, 50.0), np.full(h, 300.0), np.full(h, 10.0)])
    # backtest: normalizer 2 on a mean of 100 + k (relative 2 / (100 + k)); final fits below
    rel_bt = 2.0 / (100.0 + np.arange(1, 7))
    d = np.vstack(
        [
            np.r_[3 * rel_bt * 50.0, [9.0, 9.0]],  # 3x as wide relative to its forecast
            np.r_[rel_bt * 300.0, [6.0, 6.0]],  # as wide relative to a level 3x as high
            np.full(h, 5.0),
        ]
    )
    g = iv.normalizer_growth(bt, chosen, ["stepped", "grew", "none"], mean, d)
    np.testing.assert_allclose(g, [3.0, 1.0, 1.0])
    # never below 1: a final fit narrower than its backtest is not a reason to widen it
    assert iv.normalizer_growth(bt, chosen, ["grew"], mean[1:2], d[1:2] / 4)[0] == 1.0
    # the median over the horizons (ratios 2, 2, 2, 2, 3, 9: 2, where the mean is 3.3) and over
    # the windows (one window forecasting next to nothing does not set the reference)
    uneven = d[0:1] / 3 * np.r_[[2, 2, 2, 2, 3, 9], [1, 1]]
    assert iv.normalizer_growth(bt, chosen, ["stepped"], mean[0:1], uneven)[0] == pytest.approx(2)
    tiny = bt.copy()
    tiny.loc[(tiny["unique_id"] == "stepped") & (tiny["window"] == 0), "mean"] = 1e-9
    tiny = pd.concat([tiny, bt[bt["unique_id"] == "stepped"].assign(window=2)])
    g = iv.normalizer_growth(tiny, chosen, ["stepped"], mean[0:1], d[0:1])
    assert g[0] == pytest.approx(3.0)


def test_backtest_windows_leave_out_negative_members_by_what_they_knew() -> None:
    """The backtest's combination applies the rule per series and window: a member forecasting a
    negative month of a never-negative series leaves that window; whether the series is never
    negative is read from the months up to the window's cutoff (a credit after it is unknown)."""
    from pipeline.forecast import never_negative_at
    from pipeline.models.ensemble import combine_backtest

    rows = []
    for cutoff, a_mean in (("2025-01-01", [5.0, -1.0]), ("2025-02-01", [6.0, -2.0])):
        for model, mean in (("a", a_mean), ("b", [10.0, 10.0])):
            for k, m in enumerate(mean, start=1):
                ds = pd.Timestamp(cutoff) + pd.DateOffset(months=k)
                rows.append({"unique_id": "s", "cutoff": pd.Timestamp(cutoff), "ds": ds, "h": k,
                             "model": model, "y": 9.0, "mean": m, "sigma": 1.0, "scale": 1.0,
                             "window": 0, "fallback": False})  # fmt: skip
    bt = pd.DataFrame(rows)
    months = pd.date_range("2024-01-01", "2025-02-01", freq="MS")
    y = np.full(len(months), 10.0)
    y[-1] = -3.0  # a credit in February 2025: after the first window's cutoff, not the second's
    hist = pd.DataFrame({"unique_id": "s", "ds": months, "y": y})
    nn = never_negative_at(hist, bt)
    assert nn[("s", pd.Timestamp("2025-01-01"))] and not nn[("s", pd.Timestamp("2025-02-01"))]
    ens = combine_backtest(bt, {"a": 0.5, "b": 0.5}, nonneg=nn).set_index("cutoff")["mean"]
    np.testing.assert_allclose(ens.loc["2025-01-01"], [10.0, 10.0])  # "a" left out
    np.testing.assert_allclose(ens.loc["2025-02-01"], [8.0, 4.0])  # a credit line: both stay


def test_theta_sigma_is_the_ima11_forecast_sd() -> None:
    """Theta's h-step sd against the psi-weights of the ARIMA(0,1,1) it is equivalent to (MA
    coefficient alpha - 1), computed independently by statsmodels' ``arma2ma``: calm series
    (small alpha) get a sd that hardly grows, not the 5.6x at 18 months of statsmodels' formula."""
    from statsmodels.tsa.arima_process import arma2ma
    from statsmodels.tsa.forecasting.theta import ThetaModel

    from pipeline.models.stats import theta_sigma

    rng = np.random.default_rng(3)
    y = 1000 + np.cumsum(rng.normal(0, 2, 60)) + rng.normal(0, 20, 60)  # calm: small alpha
    res = ThetaModel(
        pd.Series(y, index=pd.period_range("2020-01", periods=60, freq="M")), period=1
    ).fit()
    alpha = float(np.asarray(res.params)[1])
    sd = theta_sigma(res, 18)
    # ARIMA(0,1,1): (1 - L) y = (1 + (alpha - 1) L) e  ->  psi weights of the integrated process
    psi = arma2ma(np.array([1.0, -1.0]), np.array([1.0, alpha - 1.0]), lags=18)
    expected = sd[0] * np.sqrt(np.cumsum(psi**2))
    np.testing.assert_allclose(sd, expected, rtol=1e-9)
    assert alpha < 0.5 and sd[-1] / sd[0] < 1.5


def test_the_median_combination_by_hand() -> None:
    """The middle member, or halfway between the two middle ones, of the members with weight; the
    job's frames (one row per member) and a stored version's arrays give the same digits."""
    from pipeline.models.ensemble import combine, grouped_combination, middle

    means = np.array([[[1.0, 5.0]], [[4.0, 2.0]], [[10.0, 3.0]], [[2.0, 100.0]]])  # 4 x 1 x 2
    sig = np.ones_like(means)
    # all four: halfway between the middle two; without the last: the middle one
    np.testing.assert_array_equal(combine(means, sig, [1, 1, 1, 1], how="median")[0], [[3.0, 4.0]])
    np.testing.assert_array_equal(combine(means, sig, [1, 1, 1, 0], how="median")[0], [[4.0, 3.0]])
    np.testing.assert_allclose(combine(means, sig, [1, 1, 1, 1])[0], [[4.25, 27.5]])  # the mean
    # a never-negative series leaves out a member forecasting below 0 (here the first)
    neg = means.copy()
    neg[0, 0, 1] = -1.0
    got = combine(neg, sig, [1, 1, 1, 1], np.array([True]), how="median")[0]
    np.testing.assert_array_equal(got, [[4.0, 3.0]])
    keep = np.array([[True, False], [True, True], [False, False]])
    np.testing.assert_array_equal(
        middle(np.array([[1.0, np.nan], [3.0, 7.0], [9.0, 8.0]]), keep), [2.0, 7.0]
    )
    assert np.isnan(middle(np.array([[np.nan], [1.0]]), np.array([[True], [True]]))).all()
    assert np.isnan(middle(np.array([[1.0]]), np.array([[False]]))).all()
    rows = pd.DataFrame(
        {"unique_id": "s", "ds": np.tile(pd.date_range("2027-01-01", periods=2, freq="MS"), 4),
         "model": np.repeat(["a", "b", "c", "d"], 2), "mean": means.reshape(4, 2).ravel(),
         "sigma": 1.0, "fallback": False}
    )  # fmt: skip
    w = {"a": 0.25, "b": 0.25, "c": 0.25, "d": 0.25}
    res = grouped_combination(rows, w, ["unique_id", "ds"], how="median")
    np.testing.assert_array_equal(res["mean"], [3.0, 4.0])
    res = grouped_combination(rows, {**w, "d": 0.0}, ["unique_id", "ds"], how="median")
    np.testing.assert_array_equal(res["mean"], [4.0, 3.0])


def test_who_joins_the_combination_and_how_it_combines() -> None:
    """A member leaves only when its pooled backtest MASE is over 1.25x the best local member's
    (the bench's case: LightGBM's flattering 0.92 must not push SARIMAX's 1.23 out; ETS's 1.047 x
    1.25 = 1.309, so 1.6 is broken);
    four members combine by their median, fewer by their mean; LightGBM (a global model) joins
    from ``global_member_min_series`` series."""
    from pipeline.forecast import combination_of
    from pipeline.models.ensemble import trimmed_equal_weights

    bench = {"ets": 1.047, "lightgbm": 0.923, "sarimax": 1.227, "theta": 1.085}
    local = ("ets", "theta", "sarimax")
    assert trimmed_equal_weights(bench, reference=local) == {m: 0.25 for m in bench}
    assert "sarimax" not in trimmed_equal_weights(bench)  # LightGBM as the bar: 0.923 x 1.25
    broken = {**bench, "sarimax": 1.6}
    assert set(trimmed_equal_weights(broken, reference=local)) == {"ets", "lightgbm", "theta"}
    cfg = ForecastConfig()
    assert combination_of(trimmed_equal_weights(bench, reference=local), cfg) == "median"
    assert combination_of(trimmed_equal_weights(broken, reference=local), cfg) == "mean"
    assert (
        combination_of({"a": 0.5, "b": 0.5}, ForecastConfig(ensemble_combination="median"))
        == "median"
    )
    with pytest.raises(ValueError, match="ensemble_combination must be one of"):
        ForecastConfig(ensemble_combination="trimmed")
    # 12 short series: LightGBM stays out of the combination; from 10 series on it is in
    rng = np.random.default_rng(2)
    ds = pd.date_range("2022-01-01", periods=30, freq="MS")
    hist = pd.concat(
        [pd.DataFrame({"unique_id": f"s{i}", "ds": ds, "y": 100 + rng.normal(0, 5, 30).cumsum()})
         for i in range(12)]
    )  # fmt: skip
    models = ("ets", "theta", "sarimax", "lightgbm", "ensemble")
    res = run_forecast(hist, ForecastConfig(horizon=6, models=models, n_paths=50), progress=False)
    assert "lightgbm" not in res.ensemble_weights and len(res.ensemble_weights) == 3
    cfg = ForecastConfig(horizon=6, models=models, n_paths=50, global_member_min_series=10)
    res = run_forecast(hist, cfg, progress=False)
    assert "lightgbm" in res.ensemble_weights
    # four members: the published combination is their median, and the stored version (the
    # fitted Ensemble the registry keeps) predicts the same digits
    members = [m for m, w in res.ensemble_weights.items() if w > 0]
    assert len(members) == 4 and res.fitted["ensemble"].how == "median"
    allf = res.all_forecasts.set_index(["model", "unique_id"])
    ens = allf.loc[("ensemble", "s3"), "mean"].to_numpy()
    by_hand = np.median([allf.loc[(m, "s3"), "mean"].to_numpy() for m in members], axis=0)
    np.testing.assert_allclose(ens, by_hand, rtol=1e-12)
    pred = res.fitted["ensemble"].predict(6, level=(80,))
    np.testing.assert_array_equal(pred.loc[pred["unique_id"] == "s3", "mean"].to_numpy(), ens)


def test_versions_stored_before_the_median_run_as_they_ran() -> None:
    """A stored job configuration or Ensemble spec without the new names re-runs with what it ran
    with (the mean of ETS, Theta and SARIMAX), not today's defaults; a spec that has them keeps
    them; a misspelled member is refused."""
    import dataclasses

    from pipeline.flavor import forecast_config_from, spec_params

    old = dataclasses.asdict(ForecastConfig())
    for k in (
        "ensemble_members",
        "ensemble_combination",
        "global_member_min_series",
        "quiet_lines_at_zero",
        "plan_from_its_start",
    ):
        old.pop(k)
    cfg = forecast_config_from(old)
    assert not cfg.quiet_lines_at_zero  # stored before lines no longer billed were kept at 0
    assert not cfg.plan_from_its_start
    assert cfg.ensemble_combination == "mean" and cfg.ensemble_members == (
        "ets",
        "theta",
        "sarimax",
    )
    assert forecast_config_from(dataclasses.asdict(ForecastConfig())) == ForecastConfig()
    spec = {
        "model": "ensemble",
        "params": {"members": {"__tuple__": ["ets", "theta"]}, "weights": None},
    }
    assert spec_params(spec, {})["how"] == "mean"
    spec["params"]["how"] = "median"
    assert spec_params(spec, {})["how"] == "median"
    # the plan's storage grown from each window's start, as the baseline and LightGBM ran then
    for model in ("analytic_baseline", "lightgbm"):
        assert spec_params({"model": model, "params": {}}, {})["storage_from"] == "window"
        assert (
            spec_params({"model": model, "params": {"storage_from": "plan"}}, {})["storage_from"]
            == "plan"
        )
    with pytest.raises(ValueError, match="thetta is not a member model"):
        ForecastConfig(ensemble_members=("ets", "thetta"))


def test_combined_sigma_is_the_weighted_geometric_mean() -> None:
    from pipeline.models.ensemble import combined_sigma

    s = np.array([[1.0, 2.0, 0.0], [4.0, 8.0, 6.0]])  # two members, three months
    out = combined_sigma(s, np.array([0.5, 0.5]))
    np.testing.assert_allclose(out, [2.0, 4.0, 3.0])  # a zero sigma: the arithmetic mean
    assert np.isnan(combined_sigma(np.array([[np.nan], [4.0]]), np.array([0.5, 0.5]))).all()
    np.testing.assert_allclose(
        combined_sigma(s[:, :2], np.array([0.25, 0.75])), 4**0.75 * np.array([1.0, 2.0])
    )


def test_a_member_forecasting_a_negative_cost_leaves_the_combination() -> None:
    """A labor line that stepped down twice at the end (45.6k for three years, 30.4k, 15.2k; 1 %
    noise): ETS reads the steps as a trend and forecasts below 0 within months. The combination
    leaves it out for that series (and only there), so its forecast is the mean of the members
    that stay (three members: the mean, ``combination_of``), never negative; the fitted ensemble (what the registry stores and ``reproduce``
    runs) gives the same numbers, for a shorter horizon too."""
    from pipeline.models.ensemble import kept_members

    rng = np.random.default_rng(5)
    ds = pd.date_range("2023-01-01", periods=40, freq="MS")
    heads = np.r_[np.full(36, 3.0), np.full(2, 2.0), np.full(2, 1.0)]
    hist = pd.concat(
        [
            pd.DataFrame({"unique_id": "labor", "ds": ds, "y": heads * 15200 * rng.normal(1, 0.01, 40)}),
            pd.DataFrame({"unique_id": "steady", "ds": ds, "y": 1000 + 5 * np.arange(40) + rng.normal(0, 20, 40)}),
        ]
    )  # fmt: skip
    cfg = ForecastConfig(horizon=18, models=("ets", "theta", "sarimax", "ensemble"), n_paths=100)
    res = run_forecast(hist, cfg, progress=False)
    allf = res.all_forecasts.set_index(["model", "unique_id"])
    members = [m for m in res.ensemble_weights if res.ensemble_weights[m] > 0]
    assert set(members) == {"ets", "theta", "sarimax"}
    # a member's published forecast is clipped at 0: 0 in a month is a negative forecast there
    out = {m for m in members if (allf.loc[(m, "labor"), "mean"] <= 0).any()}
    assert "ets" in out and "theta" not in out  # the case this is about

    def combination(uid: str, kept: list[str]) -> np.ndarray:
        w = np.array([res.ensemble_weights[m] for m in kept])
        return sum(
            wi * allf.loc[(m, uid), "mean"].to_numpy()
            for wi, m in zip(w / w.sum(), kept, strict=True)
        )

    ens = allf.loc[("ensemble", "labor"), "mean"].to_numpy()
    np.testing.assert_allclose(ens, combination("labor", [m for m in members if m not in out]))
    assert (ens > 0).all() and abs(ens[0] / 15200 - 1) < 0.05
    # the steady series keeps every member: its combination is the plain weighted mean
    steady = allf.loc[("ensemble", "steady"), "mean"].to_numpy()
    np.testing.assert_allclose(steady, combination("steady", members))
    # the fitted ensemble predicts the same, and its first 6 months alike when asked for 6
    for h in (18, 6):
        pred = res.fitted["ensemble"].predict(h, level=(80,))
        got = pred.loc[pred["unique_id"] == "labor", "mean"].to_numpy()
        np.testing.assert_allclose(got, ens[:h], rtol=1e-9)
    # (members x series) series 0: every member below 0, all stay; series 1: the first member
    # leaves; series 2 is a credit line (history below 0): nothing is filtered
    np.testing.assert_array_equal(
        kept_members(
            np.array([[True, True, True], [True, False, True]]), np.array([True, True, False])
        ),
        [[True, False, True], [True, True, True]],
    )
