"""Map a function over series, serially, on local processes, or on a Dask cluster.

The per-series statsmodels fits go through :func:`map_series`, so the same pipeline runs on one
core, on every core of a machine, or on a ``dask.distributed`` cluster when the data outgrows one
machine. Items are sent in chunks (one task per chunk, not per series) to keep scheduling overhead
small with thousands of short fits; results come back in input order, whichever executor ran them.
"""

from __future__ import annotations

import atexit
import contextvars
import os
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

T = TypeVar("T")
R = TypeVar("R")

EXECUTORS = ("serial", "processes", "dask")


def _apply_chunk(fn: Callable[[T], R], chunk: Sequence[T]) -> list[R]:
    return [fn(x) for x in chunk]


_THREAD_VARS = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
)


def _init_worker() -> None:
    """One BLAS/OpenMP thread per worker: the per-series fits are tiny, and threads on busy cores
    spin (the pool already uses every core)."""
    for var in _THREAD_VARS:
        os.environ[var] = "1"
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(limits=1)
    except Exception:  # threadpoolctl missing or a library it cannot drive: env vars still hold
        pass


_POOL: Any = None
_POOL_JOBS = 0

# The job's Dask client, set by pipeline.distributed.engine for the duration of a job (a context
# variable, so a job in a thread or a notebook cell sees only its own).
_ACTIVE: contextvars.ContextVar[tuple[Any, str] | None] = contextvars.ContextVar(
    "phasecast_dask_client", default=None
)


def active_client() -> Any:
    """The Dask client of the running job's engine, or ``None`` (serial engine)."""
    cur = _ACTIVE.get()
    return cur[0] if cur else None


def active_scheduler() -> str | None:
    cur = _ACTIVE.get()
    return cur[1] if cur else None


def set_active(client: Any, scheduler: str) -> Any:
    return _ACTIVE.set((client, scheduler))


def reset_active(token: Any) -> None:
    _ACTIVE.reset(token)


def _shutdown_pool() -> None:
    global _POOL, _POOL_JOBS
    if _POOL is not None:
        _POOL.shutdown(wait=True, cancel_futures=True)
    _POOL, _POOL_JOBS = None, 0


atexit.register(_shutdown_pool)


def process_pool(n_jobs: int) -> Any:
    """A process pool of ``n_jobs`` workers, started once and reused by every later call (a
    forecasting job maps over the series a dozen times: model x backtest window); shut down at
    exit or when a different size is asked for."""
    global _POOL, _POOL_JOBS
    from concurrent.futures import ProcessPoolExecutor

    if _POOL is not None and (_POOL_JOBS != n_jobs or getattr(_POOL, "_broken", False)):
        _shutdown_pool()
    if _POOL is None:
        _POOL = ProcessPoolExecutor(max_workers=n_jobs, initializer=_init_worker)
        _POOL_JOBS = n_jobs
    return _POOL


def chunked(items: Sequence[T], n_chunks: int) -> list[list[T]]:
    """Split into at most ``n_chunks`` contiguous chunks of near-equal size, order kept."""
    n = len(items)
    n_chunks = max(1, min(n_chunks, n))
    size, extra = divmod(n, n_chunks)
    out, start = [], 0
    for i in range(n_chunks):
        stop = start + size + (1 if i < extra else 0)
        out.append(list(items[start:stop]))
        start = stop
    return [c for c in out if c]


def map_series(
    fn: Callable[[T], R],
    items: Sequence[T],
    executor: str = "serial",
    n_jobs: int = 2,
    progress: bool = True,
    client: Any = None,
    chunks_per_job: int = 4,
) -> list[R]:
    """``[fn(x) for x in items]`` on the chosen executor, in input order, with a progress bar.

    ``executor``: ``serial``; ``processes`` (a local process pool of ``n_jobs``; ``fn`` must be
    picklable); ``dask`` (the ``client`` given, else the job's engine client
    (:func:`pipeline.distributed.engine`), else a ``LocalCluster`` of ``n_jobs`` workers started and
    closed here). On a client, batches are sized by :func:`pipeline.distributed.batch_count`.
    """
    from tqdm.auto import tqdm

    items = list(items)
    if executor not in EXECUTORS:
        raise ValueError(f"executor must be one of {EXECUTORS}. Got {executor!r} instead.")
    if not items:
        return []
    if executor == "dask" and client is None:
        client = active_client()
    if executor == "serial" or (n_jobs <= 1 and client is None):
        return [
            fn(x)
            for x in tqdm(items, disable=None if progress else True, desc="series", unit="series")
        ]

    if executor == "dask" and client is not None:
        from pipeline.distributed import batch_count, worker_threads

        chunks = chunked(items, batch_count(len(items), worker_threads(client), chunks_per_job))
    else:
        chunks = chunked(items, max(1, n_jobs) * chunks_per_job)
    results: list[list[R] | None] = [None] * len(chunks)
    bar = tqdm(total=len(items), disable=None if progress else True, desc="series", unit="series")
    try:
        if executor == "processes":
            from concurrent.futures import as_completed
            from concurrent.futures.process import BrokenProcessPool

            pool = process_pool(n_jobs)
            pending: dict[Any, int] = {}
            try:
                pending = {pool.submit(_apply_chunk, fn, c): i for i, c in enumerate(chunks)}
                for fut in as_completed(pending):
                    i = pending[fut]
                    results[i] = fut.result()
                    bar.update(len(chunks[i]))
            except BrokenProcessPool:
                _shutdown_pool()
                raise
            except BaseException:
                for f in pending:
                    f.cancel()
                raise
        else:
            from distributed import Client, LocalCluster
            from distributed import as_completed as dask_completed

            own = client is None
            cluster = (
                LocalCluster(
                    n_workers=n_jobs, threads_per_worker=1, processes=True, dashboard_address=None
                )
                if own
                else None
            )
            cl = Client(cluster) if own else client
            try:
                futs = cl.map(_apply_chunk, [fn] * len(chunks), chunks, pure=False)
                index = {f.key: i for i, f in enumerate(futs)}
                for fut in dask_completed(futs):
                    i = index[fut.key]
                    results[i] = fut.result()
                    bar.update(len(chunks[i]))
            finally:
                if own:
                    cl.close()
                    if cluster is not None:
                        cluster.close()
    finally:
        bar.close()
    return [r for chunk in results for r in (chunk or [])]
