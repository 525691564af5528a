"""The engine a job runs on: serial (the default), a Dask cluster by address, or a local one.

    with engine("tcp://10.0.0.5:8786"):      # a running ``dask scheduler``; or "local"; or None
        run_monthly(cfg)                       # per-series fits, LightGBM and ingest use its workers

The scheduler is configuration (``--scheduler`` or ``scheduler:`` in ``phasecast.yaml``), chosen once at
the edge; :func:`engine` connects (or starts a ``LocalCluster`` for ``local``) and makes the client the
job's *active* client for the duration of the ``with``. Three things use it:

* :func:`pipeline.parallel.map_series` sends per-series fits to the workers in batches
  (:func:`batch_count`), one task per batch;
* the LightGBM model trains with ``lightgbm.dask`` (:func:`train_lightgbm`);
* ingest stages each partition (file) of a delivery on a worker (:mod:`pipeline.ingest`), the
  costs coming back as exact ``decimal128(38, 18)`` Arrow columns.

Workers need the ``phasecast`` package importable (the same environment) and the billing files at the
same path (a shared filesystem, or the one machine).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import pandas as pd

from pipeline import parallel

SERIAL = "serial"
LOCAL = "local"

#: LightGBM rows a single worker trains alone: below this the booster is trained on one worker
#: (exactly the serial booster); above it the rows are split over the workers (data-parallel).
GBM_ROWS_PER_PARTITION = 500_000


def normalize(scheduler: str | None) -> str | None:
    """``None`` for the serial engine, else ``local`` or the scheduler address as given."""
    if scheduler is None:
        return None
    s = str(scheduler).strip()
    return None if s.lower() in ("", SERIAL, "none", "null") else s


def executor_for(scheduler: str | None, default: str = SERIAL) -> str:
    """The :mod:`pipeline.parallel` executor a job uses with this scheduler."""
    return "dask" if normalize(scheduler) else default


@contextmanager
def engine(scheduler: str | None, n_workers: int | None = None) -> Iterator[Any]:
    """Yield the active Dask client for ``scheduler`` (``None``: serial, yields ``None``).

    Re-entrant: inside an engine for the same scheduler, the same client is yielded (``run-monthly``
    opens it once; the ingest it runs finds it active). An address that cannot be reached is an
    :class:`~pipeline.errors.InputError` naming it.
    """
    sched = normalize(scheduler)
    active = parallel.active_client()
    if sched is None:
        yield None
        return
    if active is not None and parallel.active_scheduler() == sched:
        yield active
        return
    from distributed import Client, LocalCluster

    cluster = None
    if sched == LOCAL:
        cluster = LocalCluster(
            n_workers=n_workers or max(1, os.cpu_count() or 1),
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
        )
        client = Client(cluster)
    else:
        from pipeline.errors import InputError, Problem

        try:
            client = Client(sched, timeout="20s")
        except OSError as exc:
            raise InputError(
                Problem(f"cannot reach the Dask scheduler ({exc})", sched),
                fix="start one with `dask scheduler` and workers with `dask worker ADDRESS`, "
                "or pass --scheduler local",
            ) from exc
    client.run(parallel._init_worker)  # one BLAS/OpenMP thread per worker process
    token = parallel.set_active(client, sched)
    try:
        yield client
    finally:
        parallel.reset_active(token)
        client.close()
        if cluster is not None:
            cluster.close()


def worker_threads(client: Any) -> int:
    """Total worker threads of the cluster (at least 1)."""
    try:
        return max(1, sum(int(n) for n in client.nthreads().values()))
    except Exception:
        return 1


def batch_count(n_items: int, threads: int, per_thread: int = 4, min_batch: int = 8) -> int:
    """How many tasks ``n_items`` short fits become: ``per_thread`` batches per worker thread (so a
    slow batch does not leave the others idle), but never batches under ``min_batch`` items (a task
    costs a few ms of scheduling and pickling, a short fit about as much)."""
    if n_items <= 0:
        return 0
    return max(1, min(threads * per_thread, math.ceil(n_items / min_batch)))


def train_lightgbm(
    client: Any, params: dict[str, Any], X: pd.DataFrame, y: np.ndarray, num_boost_round: int
) -> Any:
    """A LightGBM booster trained with ``lightgbm.dask`` on the cluster, for local prediction.

    Up to :data:`GBM_ROWS_PER_PARTITION` rows train on one worker (the serial booster exactly: same
    data, same parameters, ``deterministic``); larger frames are split in row blocks over the
    workers, which train data-parallel (each worker builds histograms of its rows, LightGBM sums
    them; the trees match the serial ones up to the bin boundaries found on the workers' samples).
    """
    import dask.dataframe as dd
    from lightgbm.dask import DaskLGBMRegressor

    n_parts = max(1, min(worker_threads(client), math.ceil(len(X) / GBM_ROWS_PER_PARTITION)))
    Xd = dd.from_pandas(X.reset_index(drop=True), npartitions=n_parts, sort=False)
    yd = dd.from_pandas(pd.Series(np.asarray(y, dtype=float)), npartitions=n_parts, sort=False)
    kw = {k: v for k, v in params.items() if k not in ("num_threads", "verbose")}
    model = DaskLGBMRegressor(client=client, n_estimators=num_boost_round, verbose=-1, **kw)
    model.fit(Xd, yd)
    return model.to_local().booster_
