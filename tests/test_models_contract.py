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
