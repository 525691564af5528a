"""Run every benchmark: each module ``tests/benchmarks/<name>_bench.py`` with a ``main()``.

    python -m tests.benchmarks.run              # all of them (what `make bench` runs)
    python -m tests.benchmarks.run ingest       # only ingest_bench

Each ``main()`` is called with ``sys.argv`` reset to its own module name, so it runs with its defaults,
and writes its results under ``bench-results/``. A benchmark that fails is reported and the others still
run; the exit code is 1 if any failed.
"""

from __future__ import annotations

import importlib
import sys
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent


def discover() -> list[str]:
    return sorted(p.stem[: -len("_bench")] for p in HERE.glob("*_bench.py"))


def main(argv: list[str] | None = None) -> int:
    wanted = list(sys.argv[1:] if argv is None else argv)
    names = discover()
    unknown = [w for w in wanted if w not in names]
    if unknown:
        print(f"unknown benchmark(s) {unknown}; available: {names}", file=sys.stderr)
        return 2
    failed = []
    for name in wanted or names:
        module_name = f"tests.benchmarks.{name}_bench"
        print(f"\n=== {module_name} ===", flush=True)
        t0 = time.perf_counter()
        saved = sys.argv
        sys.argv = [module_name]
        try:
            module = importlib.import_module(module_name)
            entry = getattr(module, "main", None)
            if entry is None:
                print(f"{module_name} has no main(); skipped")
                continue
            rc = entry()
            if isinstance(rc, int) and rc != 0:
                failed.append(name)
        except SystemExit as exc:
            if exc.code not in (0, None):
                failed.append(name)
        except Exception:
            traceback.print_exc()
            failed.append(name)
        finally:
            sys.argv = saved
        print(f"=== {module_name}: {time.perf_counter() - t0:.1f}s ===", flush=True)
    if failed:
        print(f"failed: {failed}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
