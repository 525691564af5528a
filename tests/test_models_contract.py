"""One contract, every model in the registry (a newly registered model is picked up automatically)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipeline.models import REGISTRY, make_model
from pipeline.models.base import NotFittedError

H = 5


def _frame() -> pd.DataFrame:
    rng = np.random.default_rng(42)
    t = np.arange(40)
    series = {
        "seasonal": 1000 * (1 + 0.01 * t) * (1 + 0.2 * np.sin(2 * np.pi * t / 12))
        + rng.normal(0, 20, 40),
        "noisy": rng.normal(50, 5, 40),
        "negative": -np.arange(30.0) + rng.normal(0, 1, 30),
        "zeros": np.zeros(26),
        "constant": np.full(15, 7.5),
        "short": np.array([3.0, 4.0, 5.0]),
    }
    parts = [
        pd.DataFrame(
            {
                "unique_id": k,
                "ds": pd.date_range(end="2026-12-01", periods=len(v), freq="MS"),
                "y": v,
            }
        )
        for k, v in series.items()
    ]
    return pd.concat(parts, ignore_index=True)


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return _frame()


@pytest.fixture(scope="module", params=sorted(REGISTRY))
def fitted(request: pytest.FixtureRequest, frame: pd.DataFrame):  # type: ignore[no-untyped-def]
    model = make_model(request.param)
    assert model.fit(frame) is model
    return model


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_predict_before_fit_raises(name: str) -> None:
    with pytest.raises(NotFittedError):
        make_model(name).predict(3)


def test_intervals_rows_and_months(fitted, frame: pd.DataFrame) -> None:  # type: ignore[no-untyped-def]
    fc = fitted.predict(H, level=[80, 95])
    n = frame["unique_id"].nunique()
    assert len(fc) == n * H
    assert list(fc.columns) == [
        "unique_id",
        "ds",
        "model",
        "mean",
        "lo_80",
        "hi_80",
        "lo_95",
        "hi_95",
    ]
    num = fc[["mean", "lo_80", "hi_80", "lo_95", "hi_95"]].to_numpy()
    assert np.isfinite(num).all()
    assert (fc["lo_95"] <= fc["lo_80"] + 1e-9).all()
    assert (fc["lo_80"] <= fc["mean"] + 1e-9).all()
    assert (fc["mean"] <= fc["hi_80"] + 1e-9).all()
    assert (fc["hi_80"] <= fc["hi_95"] + 1e-9).all()
    expected = pd.date_range("2027-01-01", periods=H, freq="MS")
    for _, g in fc.groupby("unique_id"):
        assert list(g["ds"]) == list(expected)
    assert (fc["model"] == fitted.name).all()


def test_edge_series_are_sane(fitted) -> None:  # type: ignore[no-untyped-def]
    fc = fitted.predict(H).set_index("unique_id")
    # a constant stays (close to) constant; a global model may borrow a little shape from others
    assert np.allclose(fc.loc["constant", "mean"], 7.5, rtol=0.15)
    assert np.isfinite(fc.loc["short", "mean"]).all()
    assert (fc.loc["negative", "mean"] < 0).all()


def test_same_seed_same_result(fitted, frame: pd.DataFrame) -> None:  # type: ignore[no-untyped-def]
    again = make_model(fitted.name, **fitted.get_params()).fit(frame)
    pd.testing.assert_frame_equal(fitted.predict(H), again.predict(H))
    np.testing.assert_array_equal(
        fitted.sample_paths(H, 50, seed=3), again.sample_paths(H, 50, seed=3)
    )


def test_sample_paths_shape(fitted, frame: pd.DataFrame) -> None:  # type: ignore[no-untyped-def]
    paths = fitted.sample_paths(H, n_paths=64, seed=1)
    assert paths.shape == (frame["unique_id"].nunique(), 64, H)
    assert np.isfinite(paths).all()


def test_get_params_round_trip(fitted) -> None:  # type: ignore[no-untyped-def]
    params = fitted.get_params()
    assert type(fitted)(**params).get_params() == params


# --- SARIMAX's drift ---------------------------------------------------------------------------
def _trending(n: int = 48, seed: int = 3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return 1000.0 + 25.0 * np.arange(n) + np.cumsum(rng.normal(0, 10, n))


def test_sarimax_takes_a_drift_where_the_aic_wants_one() -> None:
    """A line growing 25 a month: the search keeps the drift, and the forecast keeps growing
    (a driftless ARIMA(p,1,q) is flat); a level without a trend keeps none."""
    from pipeline.models.stats import Sarimax

    y = _trending()
    st = Sarimax(season_length=12)._fit_one(y, None)
    assert st.spec.endswith("with drift") and st.form[1][1] == "c"
    m, _ = Sarimax()._forecast_one(st, 12, None)
    assert 12 * 20 < m[-1] - y[-1] < 12 * 30  # by hand: about 25 a month
    flat = 1000.0 + np.random.default_rng(4).normal(0, 10, 48)
    st = Sarimax(season_length=12)._fit_one(flat, None)
    assert st.form[1][1] == "n" and "drift" not in st.spec


def test_sarimax_forms_stored_before_the_drift_and_without_it() -> None:
    """A bare order (a version stored before the drift was searched) refits without a drift; a
    form found under the seasonal difference (drift not tried: None) tries both on a history
    that no longer needs the difference, and records what it chose."""
    from pipeline.models.stats import Sarimax, _order_and_trend

    assert _order_and_trend((0, 1, 1)) == ((0, 1, 1), "n")
    assert _order_and_trend(((1, 1, 0), "c")) == ((1, 1, 0), "c")
    assert _order_and_trend(((1, 1, 0), None)) == ((1, 1, 0), None)
    y = _trending()
    old = Sarimax(season_length=12)._fit_one(y, None, hint=(None, (0, 1, 1)))
    assert "drift" not in old.spec and not old.selected and old.form[1] == ((0, 1, 1), "n")
    untried = Sarimax(season_length=12)._fit_one(y, None, hint=(None, ((0, 1, 1), None)))
    assert untried.spec.endswith("with drift") and untried.form[1] == ((0, 1, 1), "c")
    assert not untried.selected  # the order was reused, only the drift was tried


# --- ETS and the series' units -----------------------------------------------------------------
def test_ets_chooses_the_same_form_and_forecast_in_any_units() -> None:
    """The same costs in cents, dollars or millions: the same ETS form and the same forecast in
    those units (the least-squares fit stops after a fixed number of iterations, which once made
    the form depend on the units on 8 of these 12 series at 48 months, least squares, and on 3 of
    them at 24 months, maximum likelihood). The same up to rounding: a capped optimiser's stop
    moves with the last digit of its input."""
    from pipeline.models.stats import AutoETS
    from tests.benchmarks.forecast_bench import make_collection

    long, _ = make_collection(12, seed=5, fixed_len=48, holdout=12)
    short, _ = make_collection(12, seed=5, fixed_len=24, holdout=12)
    for uid, g in [*long.groupby("unique_id"), *short.groupby("unique_id")]:
        y = g["y"].to_numpy(dtype=float)
        fits = []
        for unit in (1e-3, 1.0, 1e6):
            st = AutoETS()._fit_one(y * unit, None)
            mean, sd = AutoETS()._forecast_one(st, 12, None)
            fits.append((st.spec, mean / unit, sd / unit))
        assert len({f[0] for f in fits}) == 1, (uid, [f[0] for f in fits])
        for _, mean, sd in fits[::2]:
            np.testing.assert_allclose(mean, fits[1][1], rtol=1e-3, err_msg=str(uid))
            np.testing.assert_allclose(sd, fits[1][2], rtol=1e-3, err_msg=str(uid))


# --- LightGBM's season features ----------------------------------------------------------------
def test_lightgbm_season_features_by_hand_and_without_the_future() -> None:
    """y = 100 + month index over 2023-01..2026-12, origin 2025-06: a step of 1 targets 2025-07,
    whose value a year before (2024-07, index 18) is 118; a step of 13 targets 2026-07, two years
    before is 2024-07 again. Its 12-month window (2023-08..2024-07) has mean 112.5; the 12 months
    to the origin (2024-07..2025-06) have mean 123.5 and the 12 before 111.5. Changing every month
    after the origin changes none of it."""
    from pipeline.models.gbm import LightGBMForecaster

    ds = pd.date_range("2023-01-01", periods=48, freq="MS")
    df = pd.DataFrame({"unique_id": "a", "ds": ds, "y": 100.0 + np.arange(48)})
    m = LightGBMForecaster(n_estimators=5, max_horizon=18, min_data_in_leaf=2).fit(df)
    state = pd.DataFrame(
        {"unique_id": ["a", "a"], "origin": pd.to_datetime(["2025-06-01"] * 2), "_scale": 2.0}
    )
    f = m._season_features(state, np.array([1, 13]))
    np.testing.assert_allclose(f["same_month_before"], [118 / 2.0, 118 / 2.0])
    np.testing.assert_allclose(f["season_index"], [118 / 112.5, 118 / 112.5])
    np.testing.assert_allclose(f["year_on_year"], [123.5 / 111.5] * 2)
    # two years' shares: a year earlier (2023-07) has no full 12 months before it, so one share
    np.testing.assert_allclose(f["season_index_2y"], f["season_index"])
    # origin 2026-06, step 1: 2025-07 is 130 over its year's 124.5, 2024-07 is 118 over 112.5
    late = state.iloc[:1].assign(origin=pd.Timestamp("2026-06-01"))
    got = m._season_features(late, np.array([1]))["season_index_2y"]
    np.testing.assert_allclose(got, [(130 / 124.5 + 118 / 112.5) / 2])
    after = df.assign(y=np.where(df["ds"] > "2026-06-01", -5.0, df["y"]))  # its future scrambled
    m3 = LightGBMForecaster(n_estimators=5, max_horizon=18, min_data_in_leaf=2).fit(after)
    late2 = state.assign(origin=pd.Timestamp("2026-06-01"))
    for k, v in m._season_features(late2, np.array([1, 6])).items():
        np.testing.assert_array_equal(v, m3._season_features(late2, np.array([1, 6]))[k])
    later = df.assign(y=np.where(df["ds"] > "2025-06-01", -5.0, df["y"]))
    m2 = LightGBMForecaster(n_estimators=5, max_horizon=18, min_data_in_leaf=2).fit(later)
    f2 = m2._season_features(state, np.array([1, 13]))
    for k in f:
        np.testing.assert_array_equal(f[k], f2[k])
    early = pd.DataFrame(
        {"unique_id": ["a"], "origin": pd.to_datetime(["2023-06-01"]), "_scale": 1.0}
    )
    assert np.isnan(m._season_features(early, np.array([1]))["year_on_year"]).all()  # < 24 months
