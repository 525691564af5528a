"""How long the commands that read a stored run take: ``budget``, ``flag``, ``report``.

    python -m tests.benchmarks.run readers

Generates the demo sample (36 months) in a temporary home, ingests it, makes one stored run with
``run-monthly`` (all models, budgets, a scenario), then times each reading command end to end as a
user runs it (a fresh process: interpreter start and imports included), ``--repeat`` times, and
reports the median beside the monthly run that made the stored run (the work they no longer redo).
Writes ``bench-results/readers.json``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SCENARIO = "name: h100-cut\nchanges:\n  - price: {gpu: H100, start: 2027-01-01, change: -0.2}\n"


def _phasecast(home: Path, *args: str) -> float:
    exe = Path(sys.executable).with_name("phasecast")
    t0 = time.perf_counter()
    r = subprocess.run(
        [str(exe), "--home", str(home), *args], capture_output=True, text=True, check=False
    )
    seconds = time.perf_counter() - t0
    if r.returncode not in (0, 3):
        raise RuntimeError(f"phasecast {' '.join(args)} exited {r.returncode}:\n{r.stderr[-2000:]}")
    return seconds


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--out", type=Path, default=Path("bench-results/readers.json"))
    args = ap.parse_args()
    home = Path(tempfile.mkdtemp(prefix="phasecast-readers-"))
    try:
        sample = home / "data" / "sample"
        _phasecast(home, "synth", "--out", str(sample))
        _phasecast(
            home,
            "ingest",
            "--billing",
            str(sample / "billing"),
            "--usage",
            str(sample / "usage.csv"),
            "--labor",
            str(sample / "labor.csv"),
        )
        sc = home / "h100-cut.yaml"
        sc.write_text(SCENARIO)
        budgets = str(sample / "budgets.csv")
        monthly = _phasecast(
            home,
            "run-monthly",
            "--as-of",
            "2026-11-15",
            "--budgets",
            budgets,
            "--scenario",
            str(sc),
            "--no-progress",
        )
        commands = {
            "budget --quarter 2027Q1 --scenario": [
                "budget",
                "--quarter",
                "2027Q1",
                "--scenario",
                str(sc),
            ],
            "flag --budgets": ["flag", "--budgets", budgets],
            "report --budgets": ["report", "--budgets", budgets],
            "--help (interpreter + imports)": ["--help"],
        }
        rows = []
        for name, argv in commands.items():
            times = [_phasecast(home, *argv) for _ in range(args.repeat)]
            rows.append(
                {
                    "command": name,
                    "median_s": statistics.median(times),
                    "runs": times,
                    "vs_monthly_run": statistics.median(times) / monthly,
                }
            )
    finally:
        shutil.rmtree(home, ignore_errors=True)
    print(f"stored run made by run-monthly in {monthly:.1f} s (all models, 18 months, 1000 paths)")
    print(f"{'command':34s} {'median s':>9s} {'x monthly run':>14s}")
    for r in rows:
        print(f"{r['command']:34s} {r['median_s']:9.2f} {r['vs_monthly_run']:14.3f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"monthly_run_s": monthly, "readers": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
