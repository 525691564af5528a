"""Load: many monthly runs back to back, and overlapping attempts against the lock.

    python -m tests.benchmarks.run load            # 50 runs (what `make bench` runs)
    python -m tests.benchmarks.load_bench --runs 10

On a generated 20-month history in a temporary home: ``--runs`` monthly runs back to back (each a
new run: as-of dates and horizons vary, so nothing is reused), each as a fresh process, with an
overlapping second attempt started while the first holds the lock (it must exit 4 at once). Per
run: wall time, peak RSS of the process tree and the growth of the MLflow store (SQLite file +
artifact folder). At the end the stores are checked: SQLite ``integrity_check``, the warehouse
opens, every run folder loads. Writes ``bench-results/load.json``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil


def _exe() -> str:
    return str(Path(sys.executable).with_name("phasecast"))


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.exists() else 0


class _Watch:
    """Peak RSS (bytes) of a process and its children, sampled from a thread while it runs."""

    def __init__(self, proc: subprocess.Popen) -> None:
        import threading

        self.proc, self.peak = proc, 0
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            ps = psutil.Process(self.proc.pid)
        except psutil.Error:
            return
        while self.proc.poll() is None:
            try:
                rss = ps.memory_info().rss + sum(c.memory_info().rss for c in ps.children(True))
                self.peak = max(self.peak, rss)
            except psutil.Error:
                pass
            time.sleep(0.05)

    def result(self) -> int:
        self.proc.wait()
        self.thread.join()
        return self.peak


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--out", type=Path, default=Path("bench-results/load.json"))
    args = ap.parse_args()
    home = Path(tempfile.mkdtemp(prefix="phasecast-load-"))
    rows = []
    try:
        sample = home / "data" / "sample"
        base = ["--home", str(home)]
        subprocess.run([_exe(), *base, "synth", "--out", str(sample), "--months", "20"],
                       check=True, capture_output=True)  # fmt: skip
        subprocess.run([_exe(), *base, "ingest", "--billing", str(sample / "billing"),
                        "--usage", str(sample / "usage.csv"), "--labor", str(sample / "labor.csv")],
                       check=True, capture_output=True)  # fmt: skip
        months = [f"2026-{m:02d}-15" for m in range(2, 12)]
        store = home / "mlflow"
        for i in range(args.runs):
            as_of, horizon = months[i % len(months)], 6 + i // len(months)
            before = _size(store / "mlflow.db") + _size(store / "artifacts")
            cmd = [_exe(), *base, "run-monthly", "--as-of", as_of, "--horizon", str(horizon),
                   "--models", "seasonal_naive", "--windows", "1",
                   "--budgets", str(sample / "budgets.csv"), "--no-progress"]  # fmt: skip
            t0 = time.perf_counter()
            log = open(home / f"run-{i}.log", "w+")  # the run's stderr, read back on failure
            run = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log)
            watch = _Watch(run)
            pid_file = home / "data" / ".run-monthly.lock.pid"
            deadline = time.monotonic() + 120
            while run.poll() is None and time.monotonic() < deadline:  # until it holds the lock
                if pid_file.exists() and pid_file.read_text().strip() == str(run.pid):
                    break
                time.sleep(0.05)
            other = subprocess.run(cmd, capture_output=True, text=True)  # overlaps the first
            peak = watch.result()
            seconds = time.perf_counter() - t0
            log.seek(0)
            err = log.read()
            log.close()
            if run.returncode != 0:
                print(err[-2000:], file=sys.stderr)
                return 1
            after = _size(store / "mlflow.db") + _size(store / "artifacts")
            rows.append(
                {
                    "as_of": as_of,
                    "horizon": horizon,
                    "seconds": seconds,
                    "peak_rss_mb": peak / 1e6,
                    "store_growth_mb": (after - before) / 1e6,
                    "overlapping_exit": other.returncode,
                }
            )
            print(f"run {i + 1:2d}/{args.runs} {as_of} h={horizon}: {seconds:5.1f} s, "
                  f"{peak / 1e6:6.0f} MB peak, store +{(after - before) / 1e6:5.2f} MB, "
                  f"overlapping attempt exit {other.returncode}", flush=True)  # fmt: skip
        con = sqlite3.connect(store / "mlflow.db")
        integrity = con.execute("PRAGMA integrity_check").fetchone()[0]
        con.close()
        import duckdb

        from pipeline.runstore import load_run, stored_runs

        duckdb.connect(str(home / "data" / "phasecast.duckdb"), read_only=True).close()
        loaded = [load_run(p).as_of for p in stored_runs(home / "outputs")]
    finally:
        shutil.rmtree(home, ignore_errors=True)
    overlapping = {r["overlapping_exit"] for r in rows}
    summary = {
        "runs": len(rows),
        "median_seconds": statistics.median(r["seconds"] for r in rows),
        "median_peak_rss_mb": statistics.median(r["peak_rss_mb"] for r in rows),
        "max_peak_rss_mb": max(r["peak_rss_mb"] for r in rows),
        "median_store_growth_mb": statistics.median(r["store_growth_mb"] for r in rows),
        "overlapping_exit_codes": sorted(overlapping),
        "sqlite_integrity": integrity,
        "run_folders_loaded": len(loaded),
    }
    print(json.dumps(summary, indent=2))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"summary": summary, "runs": rows}, indent=2))
    return 0 if integrity == "ok" and overlapping <= {4} else 1


if __name__ == "__main__":
    sys.exit(main())
