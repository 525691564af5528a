"""map_series gives the serial results, in order, on processes and on a real Dask cluster."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipeline.parallel import chunked, map_series


def _square_sum(x: tuple[int, list[float]]) -> tuple[int, float]:
    return x[0], float(np.sum(np.square(x[1])))


ITEMS = [(i, [float(i), float(i) / 2.0]) for i in range(23)]


def test_chunked_keeps_order_and_everything() -> None:
    parts = chunked(list(range(10)), 4)
    assert [x for p in parts for x in p] == list(range(10))
    assert [len(p) for p in parts] == [3, 3, 2, 2]
    assert chunked([1], 8) == [[1]]


def test_serial_and_processes_agree() -> None:
    serial = map_series(_square_sum, ITEMS, executor="serial", progress=False)
    assert serial[5] == (5, 25.0 + 6.25)
    assert map_series(_square_sum, ITEMS, executor="processes", n_jobs=2, progress=False) == serial


def test_dask_local_cluster_agrees_with_serial() -> None:
    from distributed import Client, LocalCluster

    serial = map_series(_square_sum, ITEMS, executor="serial", progress=False)
    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None
        ) as cluster,
        Client(cluster) as client,
    ):
        got = map_series(_square_sum, ITEMS, executor="dask", client=client, progress=False)
    assert got == serial


def test_statsmodels_fit_through_dask_equals_serial() -> None:
    from distributed import Client, LocalCluster

    from pipeline.models.stats import Theta

    rng = np.random.default_rng(0)
    df = pd.concat(
        [
            pd.DataFrame(
                {
                    "unique_id": f"s{i}",
                    "ds": pd.date_range("2022-01-01", periods=30, freq="MS"),
                    "y": 100 + np.cumsum(rng.normal(0, 3, 30)),
                }
            )
            for i in range(6)
        ],
        ignore_index=True,
    )
    serial = Theta(calendar=False).fit(df).predict(6)  # _safe_fit alone: no calendar step
    model = Theta(calendar=False)
    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None
        ) as cluster,
        Client(cluster) as client,
    ):
        items = [(str(u), g["y"].to_numpy(), None) for u, g in df.groupby("unique_id", sort=False)]
        states = map_series(model._safe_fit, items, executor="dask", client=client, progress=False)
    assert [s.uid for s in states] == [f"s{i}" for i in range(6)]
    # the states fitted on the cluster forecast exactly what the serial fit does
    for s in states:
        m, _ = model._forecast_one(s, 6, None)
        np.testing.assert_allclose(m, serial[serial["unique_id"] == s.uid]["mean"].to_numpy())


@pytest.mark.slow
def test_model_executor_dask_starts_its_own_cluster() -> None:
    from pipeline.models.stats import Theta

    rng = np.random.default_rng(1)
    df = pd.concat(
        [
            pd.DataFrame(
                {
                    "unique_id": f"s{i}",
                    "ds": pd.date_range("2022-01-01", periods=24, freq="MS"),
                    "y": 50 + np.cumsum(rng.normal(0, 2, 24)),
                }
            )
            for i in range(4)
        ],
        ignore_index=True,
    )
    pd.testing.assert_frame_equal(
        Theta(executor="dask").fit(df).predict(3), Theta().fit(df).predict(3)
    )


def test_unknown_executor() -> None:
    with pytest.raises(ValueError, match="executor must be one of"):
        map_series(_square_sum, ITEMS, executor="threads")


def test_lightgbm_on_dask_one_partition_is_the_serial_booster_and_many_train_data_parallel(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import lightgbm as lgb
    from distributed import Client, LocalCluster

    from pipeline import distributed as dist

    rng = np.random.default_rng(3)
    X = pd.DataFrame(rng.normal(size=(4000, 6)), columns=[f"x{i}" for i in range(6)])
    y = (2 * X["x0"] - X["x1"] + rng.normal(0, 0.1, len(X))).to_numpy()
    params = {
        "objective": "l2",
        "learning_rate": 0.1,
        "num_leaves": 15,
        "min_data_in_leaf": 20,
        "seed": 0,
        "deterministic": True,
        "force_row_wise": True,
        "max_bin": 63,
        "num_threads": 1,
        "verbose": -1,
    }
    local = lgb.train(params, lgb.Dataset(X, y), num_boost_round=30).predict(X)
    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None
        ) as cluster,
        Client(cluster) as client,
    ):
        one = dist.train_lightgbm(client, params, X, y, 30).predict(X)
        monkeypatch.setattr(dist, "GBM_ROWS_PER_PARTITION", 1000)
        two = dist.train_lightgbm(client, params, X, y, 30).predict(X)
    np.testing.assert_array_equal(one, local)
    # data-parallel: bins found on each worker's rows, so close to the serial booster, not equal
    assert np.corrcoef(two, local)[0, 1] > 0.99


def test_batches_are_few_and_not_tiny() -> None:
    from pipeline.distributed import batch_count

    assert batch_count(24, threads=2) == 3  # 8 series a task at least
    assert batch_count(10_000, threads=2) == 8  # 4 per worker thread
    assert batch_count(10_000, threads=64) == 256
    assert batch_count(0, threads=2) == 0
