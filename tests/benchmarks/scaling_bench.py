"""Scaling benchmark: the forecasting job and ingest, serial and on a 2-worker Dask cluster.

* monthly: the full ``phasecast run-monthly --as-of 2026-11-15`` (series from the warehouse,
  backtest, every model, reconciliation, month-to-date conditioning, the stored run, budgets and
  flags, the report, MLflow runs and model versions in a new SQLite store) on a warehouse holding N
  bottom series (``<phase>/<category>`` of the six phases; monthly costs from
  :func:`forecast_bench.make_collection`, 48 closed months plus 14 days of the current month) and
  their phase and total aggregates, with a budget line per phase and quarter;
* forecast: N monthly series (:func:`forecast_bench.make_collection`, 48 months, h=18, 3 backtest
  windows, every model) through :func:`pipeline.forecast.run_forecast` (no hierarchy, no outputs);
* ingest: N FOCUS rows (:func:`ingest_bench.synth_chunk`) as a folder of Parquet partitions of 1 M rows
  (one delivery of several files, as AWS and Azure deliver a large period) through
  :func:`pipeline.ingest.ingest` into a new warehouse.

Each measurement runs in a fresh child process. ``serial`` is the default engine; ``cluster`` starts
``dask scheduler`` and two ``dask worker`` processes (1 thread each) before the child, passes
``--scheduler tcp://...`` to it, and stops them by PID after it. Time is measured around the job inside
the child (cluster start-up excluded); peak memory is the child's peak RSS plus, on the cluster, each
worker's own peak RSS (``getrusage`` on the worker). Medians of ``--runs``.

    .venv/bin/python -m tests.benchmarks.scaling_bench [--monthly 100,1000] [--series 100,1000] [--rows 1000000,10000000]
    .venv/bin/python -m tests.benchmarks.scaling_bench --monthly 100,1000,10000 --rows 1000000,10000000,50000000
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.benchmarks import machine_info

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "bench-results" / "scaling.json"
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
PARTITION_ROWS = 1_000_000


# --- a localhost cluster, as a user starts one ----------------------------------------------
class Cluster:
    """``dask scheduler`` + ``n`` ``dask worker`` processes on localhost, stopped by PID."""

    def __init__(self, n_workers: int = 2) -> None:
        self.n_workers = n_workers
        self.procs: list[subprocess.Popen] = []
        self.address = ""

    def __enter__(self) -> Cluster:
        from distributed import Client

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        self.address = f"tcp://127.0.0.1:{port}"
        dask = str(Path(sys.executable).with_name("dask"))
        devnull = subprocess.DEVNULL
        self.procs.append(
            subprocess.Popen(
                [dask, "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"],
                stdout=devnull,
                stderr=devnull,
                env=ENV,
            )
        )
        for _ in range(self.n_workers):
            self.procs.append(
                subprocess.Popen(
                    [dask, "worker", self.address, "--nthreads", "1", "--no-dashboard"],
                    stdout=devnull,
                    stderr=devnull,
                    env=ENV,
                    cwd=ROOT,
                )
            )
        deadline = time.monotonic() + 90
        while True:
            try:
                with Client(self.address, timeout="5s") as c:
                    c.wait_for_workers(self.n_workers, timeout=90)
                return self
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)

    def worker_peaks_mb(self) -> list[float]:
        from distributed import Client

        def peak() -> float:
            return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

        with Client(self.address, timeout="10s") as c:
            return [float(v) for v in c.run(peak).values()]

    def __exit__(self, *exc: object) -> None:
        for p in reversed(self.procs):
            if p.poll() is None:
                os.kill(p.pid, signal.SIGTERM)
        for p in reversed(self.procs):
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.kill(p.pid, signal.SIGKILL)
                p.wait()


# --- the jobs, each in a child process ----------------------------------------------------------
def child_forecast(n_series: int, scheduler: str) -> dict:
    from pipeline.distributed import engine, executor_for
    from pipeline.forecast import ForecastConfig, run_forecast
    from tests.benchmarks.forecast_bench import make_collection

    hist, _ = make_collection(n_series, seed=0, fixed_len=48)
    cfg = ForecastConfig(horizon=18, n_windows=3, executor=executor_for(scheduler or None))
    with engine(scheduler or None):
        t0 = time.perf_counter()
        res = run_forecast(hist, cfg, progress=False)
        secs = time.perf_counter() - t0
    return {"seconds": secs, "items": n_series, "rows_out": len(res.forecast)}


from pipeline.frames import PHASES as ALL_PHASES  # noqa: E402

PHASES = tuple(p for p in ALL_PHASES if p != "unallocated")  # the six lifecycle phases
AS_OF = "2026-11-15"


def make_home(n_series: int, home: Path) -> Path:
    """A phasecast home whose warehouse holds ``n_series`` bottom series (written straight into
    ``daily_facts``, exact decimals, then the allocation rebuilt as ingest leaves it) and a
    budgets file with one line per phase and quarter."""
    from decimal import Decimal

    import pandas as pd

    from pipeline.ingest.allocation import rebuild
    from pipeline.ingest.warehouse import connect
    from tests.benchmarks.forecast_bench import make_collection

    hist, test = make_collection(n_series, seed=0, fixed_len=48)
    uids = sorted(hist["unique_id"].unique())
    cat = {u: (PHASES[i % len(PHASES)], f"c{i:05d}") for i, u in enumerate(uids)}
    nov = test[test["ds"] == test["ds"].min()].set_index("unique_id")["y"]
    days = pd.date_range("2026-11-01", periods=14, freq="D")
    monthly = hist.assign(day=hist["ds"], y=hist["y"].round(2))
    daily = pd.DataFrame(
        {
            "unique_id": [u for u in uids for _ in days],
            "day": list(days) * len(uids),
            "y": [round(float(nov[u]) / 30, 2) for u in uids for _ in days],
        }
    )
    rows = pd.concat([monthly[["unique_id", "day", "y"]], daily], ignore_index=True)
    rows["phase"] = rows["unique_id"].map(lambda u: cat[u][0])
    rows["category"] = rows["unique_id"].map(lambda u: cat[u][1])
    rows["cost"] = rows["y"].map(lambda v: str(Decimal(f"{v:.2f}")))
    (home / "data").mkdir(parents=True, exist_ok=True)
    con = connect(home / "data" / "phasecast.duckdb")
    con.register("bench_rows", rows[["day", "phase", "category", "cost"]])
    con.execute("""
        INSERT INTO daily_facts (day, billing_period, provider, billing_account, currency, phase,
            category, billed_cost, effective_cost, list_cost, row_count, file_sha256, method)
        SELECT CAST(day AS DATE), CAST(date_trunc('month', day) AS DATE), 'bench', 'bench', 'USD',
            phase, category, CAST(cost AS DECIMAL(38,18)), CAST(cost AS DECIMAL(38,18)),
            CAST(cost AS DECIMAL(38,18)), 1, 'bench', 'tag'
        FROM bench_rows
    """)
    rebuild(con)
    con.close()
    q = monthly.assign(phase=monthly["unique_id"].map(lambda u: cat[u][0]))
    per_q = q[q["ds"] >= "2025-10-01"].groupby("phase")["y"].sum() / 4  # last year's quarter
    lines = ["period,phase,amount,currency"]
    for period in ("2026Q4", "2027Q1"):
        lines += [f"{period},{ph},{per_q[ph] * 1.05:.2f},USD" for ph in PHASES]
    (home / "budgets.csv").write_text("\n".join(lines) + "\n")
    return home


def child_monthly(home: str, scheduler: str) -> dict:
    """The monthly job as a user runs it (``phasecast --home HOME run-monthly``), in this process."""
    from pipeline.cli import cli

    args = ["--home", home, "-q", "run-monthly", "--as-of", AS_OF, "--no-progress"]
    args += ["--budgets", str(Path(home) / "budgets.csv")]
    if scheduler:
        args += ["--scheduler", scheduler]
    t0 = time.perf_counter()
    try:
        cli.main(args=args, standalone_mode=False)
    except SystemExit as exc:
        if exc.code:
            raise RuntimeError(f"run-monthly exited {exc.code}") from exc
    secs = time.perf_counter() - t0
    run = json.loads((Path(home) / "outputs" / AS_OF / "run.json").read_text())
    n = int(run.get("data_window", {}).get("n_series", 0))
    return {"seconds": secs, "items": n, "series_nodes": n}


def child_ingest(folder: str, warehouse: str, scheduler: str) -> dict:
    from pipeline.distributed import engine
    from pipeline.ingest import IngestConfig, ingest

    with engine(scheduler or None):
        t0 = time.perf_counter()
        rep = ingest(
            IngestConfig(
                billing=(Path(folder),),
                warehouse=Path(warehouse),
                progress=False,
                scheduler=scheduler or None,
            )
        )
        secs = time.perf_counter() - t0
    assert rep.conserved
    return {"seconds": secs, "items": rep.rows, "conserved": rep.conserved}


def make_partitions(n_rows: int, seed: int, folder: Path) -> Path:
    """``n_rows`` of the ingest benchmark's export as Parquet files of 1 M rows (cached)."""
    import pyarrow.parquet as pq

    from tests.benchmarks.ingest_bench import synth_chunk

    done = folder / ".done"
    if done.exists():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    for k, start in enumerate(range(0, n_rows, PARTITION_ROWS)):
        t = synth_chunk(start, min(PARTITION_ROWS, n_rows - start), seed)
        pq.write_table(
            t, folder / f"part-{k:05d}.parquet", compression="snappy", row_group_size=256 * 1024
        )
    done.write_text(f"{n_rows}\n")
    return folder


def measure(args: list[str], cluster: Cluster | None) -> dict:
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.benchmarks.scaling_bench", "--child", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        env=ENV,
        text=True,
    )
    assert proc.stdout is not None
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"child {args} failed")
    res = json.loads(out.strip().splitlines()[-1])
    res["wall_seconds"] = time.perf_counter() - t0
    res["driver_peak_mb"] = usage.ru_maxrss / 1024
    res["workers_peak_mb"] = cluster.worker_peaks_mb() if cluster is not None else []
    res["peak_mb"] = res["driver_peak_mb"] + sum(res["workers_peak_mb"])
    return res


def _sizes(text: str) -> list[int]:
    return [int(float(x)) for x in text.split(",") if x.strip()]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    env = os.environ.get
    ap.add_argument("--monthly", default=env("PHASECAST_BENCH_MONTHLY", "100,1000"))
    ap.add_argument("--series", default=env("PHASECAST_BENCH_SERIES", ""))
    ap.add_argument("--rows", default=env("PHASECAST_BENCH_SCALE_ROWS", "1000000,10000000"))
    ap.add_argument("--runs", type=int, default=int(env("PHASECAST_BENCH_RUNS", "3")))
    ap.add_argument("--engines", default="serial,cluster")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--output", type=Path, default=OUT)
    ap.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.child:
        kind, *rest = a.child
        if kind == "forecast":
            res = child_forecast(int(rest[0]), rest[1] if len(rest) > 1 else "")
        elif kind == "monthly":
            res = child_monthly(rest[0], rest[1] if len(rest) > 1 else "")
        else:
            res = child_ingest(rest[0], rest[1], rest[2] if len(rest) > 2 else "")
        print(json.dumps(res))
        return 0

    engines = [e for e in a.engines.split(",") if e]
    jobs: list[tuple[str, int]] = [("monthly", n) for n in _sizes(a.monthly)]
    jobs += [("forecast", n) for n in _sizes(a.series)]
    jobs += [("ingest", n) for n in _sizes(a.rows)]
    results = []
    for job, n in jobs:
        folder = None
        if job == "ingest":
            folder = make_partitions(
                n, a.seed, Path(tempfile.gettempdir()) / f"phasecast-scaling-{n}-{a.seed}"
            )
        for eng in engines:
            samples = []
            for k in range(a.runs):
                with tempfile.TemporaryDirectory() as tmp:
                    cluster = Cluster(2) if eng == "cluster" else None
                    if cluster is not None:
                        cluster.__enter__()
                    try:
                        sched = cluster.address if cluster is not None else ""
                        if job == "monthly":
                            home = make_home(n, Path(tmp) / "home")
                            args = ["monthly", str(home), sched]
                        elif job == "forecast":
                            args = ["forecast", str(n), sched]
                        else:
                            args = ["ingest", str(folder), str(Path(tmp) / "w.duckdb"), sched]
                        r = measure(args, cluster)
                    finally:
                        if cluster is not None:
                            cluster.__exit__(None, None, None)
                samples.append(r)
                print(
                    f"  {job:8} {n:>11,} {eng:8} run {k + 1}: {r['seconds']:7.2f}s, "
                    f"peak {r['peak_mb']:.0f} MB",
                    flush=True,
                )
            secs = statistics.median(s["seconds"] for s in samples)
            results.append(
                {
                    "job": job,
                    "size": n,
                    "engine": eng,
                    "runs": len(samples),
                    "seconds_median": secs,
                    "per_item_us": secs / n * 1e6,
                    "peak_mb_median": statistics.median(s["peak_mb"] for s in samples),
                    # the largest single process (driver or one worker) of any run
                    "peak_process_mb_max": max(
                        max([s["driver_peak_mb"], *s["workers_peak_mb"]]) for s in samples
                    ),
                    "seconds_all": [round(s["seconds"], 3) for s in samples],
                }
            )
    doc = {
        "benchmark": "scaling",
        "machine": machine_info(),
        "results": results,
    }
    a.output.parent.mkdir(parents=True, exist_ok=True)
    a.output.write_text(json.dumps(doc, indent=2) + "\n")
    print(
        f"\n{'job':8} {'size':>11} {'engine':8} {'seconds':>8} {'per item':>10} {'peak MB':>8} "
        f"{'max/process':>11}"
    )
    for r in results:
        unit = "us/row" if r["job"] == "ingest" else "ms/series"
        per = r["per_item_us"] / (1 if r["job"] == "ingest" else 1000)
        print(
            f"{r['job']:8} {r['size']:>11,} {r['engine']:8} {r['seconds_median']:8.2f} "
            f"{per:6.2f} {unit:9} {r['peak_mb_median']:8.0f} {r['peak_process_mb_max']:11.0f}"
        )
    print(f"-> {a.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
