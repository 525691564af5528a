"""Ingest benchmark: phasecast's DuckDB ingest against the plain pandas way, same files, same run.

N synthetic FOCUS 1.2 rows (10 million by default; hourly charges of a few thousand resources over
about 100 days: GPU and CPU instances, storage, egress, a managed model API per 1M tokens, monitoring,
data services; three quarters tagged with phase/team/model) are written once as Parquet and as CSV.gz
(cached under the system temp folder). Then, each in a fresh subprocess whose peak RSS is read with
``os.wait4``:

- ``phasecast``: ``pipeline.ingest.ingest`` into a new DuckDB warehouse (full job: read, exact decimal
  casts, validation, Tags JSON, attribution rules, GPU category, replace-by-period, manifest, report).
- ``pandas``: ``read_parquet`` / ``read_csv`` of the needed columns, ``json.loads`` of every Tags
  value, group by day, phase and category, sum EffectiveCost.
- ``duckdb``: the practical limit the issue names, one ``read_parquet`` / ``read_csv`` GROUP BY day
  (``CAST(ChargePeriodStart AS DATE)``), phase (``json_extract_string`` of Tags) and category.
- ``duckdb-floor``: the same scan and GROUP BY with an integer day and the raw Tags text (no time-zone
  cast, no JSON per row): what a scan and a grouping cost, nothing more.
- ``zcat`` (CSV.gz only): ``zcat FILE > /dev/null``, single-threaded gzip.

Rows/s is measured around the work inside the child (imports and interpreter start excluded; the
wall time of the whole child is reported as well). Medians over ``--runs`` runs.

    .venv/bin/python -m tests.benchmarks.ingest_bench [--rows 10000000] [--runs 3] [--pandas-runs 3]
    PHASECAST_BENCH_ROWS=100000 PHASECAST_BENCH_RUNS=1 make bench     # a quick smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from tests.benchmarks import machine_info

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "bench-results" / "ingest.json"
PHASES = (
    "data_preprocessing",
    "pretraining",
    "fine_tuning",
    "inference",
    "optimization",
    "operations",
)
TEAMS = ("search", "recs", "platform", "ml-infra")
MODELS = ("rec-7b", "search-13b", "embed-1b")

# (ServiceName, ServiceCategory, ResourceType, ChargeDescription, PricingUnit, list price per unit)
SERVICES = (
    (
        "Amazon Elastic Compute Cloud",
        "Compute",
        "instance",
        "$98.32 per On Demand Linux p5.48xlarge Instance Hour",
        "Hours",
        "98.32",
    ),
    (
        "Amazon Elastic Compute Cloud",
        "Compute",
        "instance",
        "$5.672 per On Demand Linux g5.12xlarge Instance Hour",
        "Hours",
        "5.672",
    ),
    (
        "Amazon Elastic Compute Cloud",
        "Compute",
        "instance",
        "$0.768 per On Demand Linux m6i.4xlarge Instance Hour",
        "Hours",
        "0.768",
    ),
    (
        "Amazon Elastic Compute Cloud",
        "Compute",
        "instance",
        "$1.36 per On Demand Linux c6i.8xlarge Instance Hour",
        "Hours",
        "1.36",
    ),
    (
        "Amazon Simple Storage Service",
        "Storage",
        "bucket",
        "$0.023 per GB-Month of storage used",
        "GB-Months",
        "0.0000315068",
    ),
    (
        "Amazon Elastic Compute Cloud",
        "Storage",
        "volume",
        "$0.08 per GB-month of General Purpose (gp3) storage",
        "GB-Months",
        "0.0001095890",
    ),
    (
        "Amazon Virtual Private Cloud",
        "Networking",
        None,
        "$0.09 per GB - data transfer out",
        "GB",
        "0.09",
    ),
    (
        "Amazon SageMaker",
        "AI and Machine Learning",
        "endpoint",
        "$1.515 per Hour for ml.g5.2xlarge hosting",
        "Hours",
        "1.515",
    ),
    (
        "Amazon Bedrock",
        "AI and Machine Learning",
        None,
        "$3.00 per 1M input tokens",
        "1000000 Tokens",
        "3.00",
    ),
    (
        "AmazonCloudWatch",
        "Management and Governance",
        None,
        "$0.30 per metric-month",
        "Metrics",
        "0.000410959",
    ),
    ("AWS Glue", "Analytics", "job", "$0.44 per DPU-Hour for ETL job", "Hours", "0.44"),
)


# --- data --------------------------------------------------------------------


def _dict(idx: np.ndarray, vocab: list[str | None]):
    import pyarrow as pa

    idx = idx.astype(np.int32)
    # One dictionary entry per distinct value: pyarrow writes a dictionary with repeated values as
    # PLAIN-encoded Parquet, which no real exporter produces for an 11-value column (it made 5 text
    # columns of the bench file decode row by row). Repeated vocabulary words map to their first index.
    first: dict[str, int] = {}
    remap = np.full(len(vocab), -1, dtype=np.int32)
    for k, v in enumerate(vocab):
        if v is not None:
            remap[k] = first.setdefault(v, len(first))
    new = remap[idx]
    values = pa.array(list(first) or [""], pa.string())
    indices = pa.array(
        np.maximum(new, 0), mask=new < 0
    )  # nulls as null indices, not in the dictionary
    return pa.DictionaryArray.from_arrays(indices, values)


def _decimal(units: np.ndarray, scale: int):
    """A decimal128(20, scale) array from integer units of 10**-scale (exact, no float)."""
    import pyarrow as pa

    buf = np.empty((len(units), 2), dtype=np.int64)
    buf[:, 0] = units
    buf[:, 1] = units >> 63
    return pa.Array.from_buffers(pa.decimal128(20, scale), len(units), [None, pa.py_buffer(buf)])


def synth_chunk(start: int, n: int, seed: int, n_resources: int = 4000):
    """Rows ``start .. start+n`` of the synthetic export as a pyarrow Table (deterministic per seed)."""
    import pyarrow as pa

    rng = np.random.default_rng(seed)
    svc = rng.integers(0, len(SERVICES), n_resources)
    tagged = rng.random(n_resources) < 0.75
    phase = rng.integers(0, len(PHASES), n_resources)
    team = rng.integers(0, len(TEAMS), n_resources)
    model = rng.integers(0, len(MODELS), n_resources)
    tag_vocab = [None] + [
        json.dumps({"phase": p, "team": t, "model": m})
        for p in PHASES
        for t in TEAMS
        for m in MODELS
    ]
    tag_idx_res = np.where(tagged, 1 + (phase * len(TEAMS) + team) * len(MODELS) + model, 0)
    qty_res = rng.integers(1, 2000, n_resources)  # GB, tokens (M), hours ...
    discount = np.where(
        rng.random(n_resources) < 0.4, 6000, 10000
    )  # reserved: 60 % of list, in 1e-4

    i = np.arange(start, start + n, dtype=np.int64)
    r = i % n_resources
    hour = i // n_resources
    base = np.datetime64("2026-01-01T00:00:00", "us").astype(np.int64)
    cps = base + hour * 3_600_000_000
    s = svc[r]
    price_units = np.array(
        [int(round(float(x[5]) * 10**6)) for x in SERVICES], dtype=np.int64
    )  # 1e-6
    qty = np.where(s < 4, 1, qty_res[r]).astype(np.int64)
    list_units = price_units[s] * qty * 10_000  # in 1e-10
    eff_units = list_units // 10_000 * discount[r]
    credit = (i % 997) == 0
    list_units = np.where(credit, -list_units, list_units)
    eff_units = np.where(credit, -eff_units, eff_units)
    day = (cps // 86_400_000_000).astype("datetime64[D]")
    month = day.astype("datetime64[M]")
    bps = month.astype("datetime64[us]").astype(np.int64)
    bpe = (month + 1).astype("datetime64[us]").astype(np.int64)
    ts = pa.timestamp("us", tz="UTC")
    cols = {
        "BillingAccountId": _dict(np.zeros(n), ["acct-ecom-001"]),
        "BillingAccountName": _dict(np.zeros(n), ["E-commerce AI"]),
        "BillingCurrency": _dict(np.zeros(n), ["USD"]),
        "BillingPeriodStart": pa.array(bps, ts),
        "BillingPeriodEnd": pa.array(bpe, ts),
        "ChargePeriodStart": pa.array(cps, ts),
        "ChargePeriodEnd": pa.array(cps + 3_600_000_000, ts),
        "ChargeCategory": _dict(credit.astype(int), ["Usage", "Credit"]),
        "ChargeClass": _dict(np.zeros(n), [None]),
        "ChargeDescription": _dict(s, [x[3] for x in SERVICES]),
        "ChargeFrequency": _dict(np.zeros(n), ["Usage-Based"]),
        "ProviderName": _dict(np.zeros(n), ["AWS"]),
        "PublisherName": _dict(np.zeros(n), ["AWS"]),
        "InvoiceIssuerName": _dict(np.zeros(n), ["AWS"]),
        "RegionId": _dict(r % 3, ["us-east-1", "us-west-2", "eu-west-1"]),
        "ServiceCategory": _dict(s, [x[1] for x in SERVICES]),
        "ServiceSubcategory": _dict(
            s,
            ["Virtual Machines"] * 4
            + [
                "Object Storage",
                "Block Storage",
                "Network Connectivity",
                "Generative AI",
                "Generative AI",
                "Observability",
                "Data Processing",
            ],
        ),
        "ServiceName": _dict(s, [x[0] for x in SERVICES]),
        "ResourceId": _dict(
            r,
            [f"arn:aws:svc:us-east-1:123456789012:resource/r-{k:06d}" for k in range(n_resources)],
        ),
        "ResourceName": _dict(r, [f"r-{k:06d}" for k in range(n_resources)]),
        "ResourceType": _dict(s, [x[2] for x in SERVICES]),
        "SkuId": _dict(s, [f"SKU{k:04d}" for k in range(len(SERVICES))]),
        "SkuPriceId": _dict(s, [f"SKU{k:04d}.PRICE" for k in range(len(SERVICES))]),
        "PricingCategory": _dict((discount[r] < 10000).astype(int), ["Standard", "Committed"]),
        "PricingUnit": _dict(s, [x[4] for x in SERVICES]),
        "PricingQuantity": _decimal(qty * 10**6, 6),
        "ConsumedUnit": _dict(s, [x[4] for x in SERVICES]),
        "ConsumedQuantity": _decimal(qty * 10**6, 6),
        "ListUnitPrice": _decimal(price_units[s] * 10_000, 10),
        "ContractedUnitPrice": _decimal(price_units[s] * 10_000, 10),
        "ListCost": _decimal(list_units, 10),
        "ContractedCost": _decimal(list_units, 10),
        "BilledCost": _decimal(list_units, 10),
        "EffectiveCost": _decimal(eff_units, 10),
        "Tags": _dict(tag_idx_res[r], tag_vocab),
        "x_Vendor": _dict(np.zeros(n), ["bench"]),
    }
    return pa.table(cols)


def make_files(n_rows: int, seed: int, folder: Path, chunk: int = 1_000_000) -> dict[str, Path]:
    """Write (once; cached) the export as Parquet and CSV.gz; return {format: path}."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq

    folder.mkdir(parents=True, exist_ok=True)
    pq_path, csv_path = folder / "billing.parquet", folder / "billing.csv.gz"
    done = folder / ".done"
    if done.exists():
        return {"parquet": pq_path, "csv.gz": csv_path}
    t0 = time.perf_counter()
    pw = cw = sink = None
    try:
        for start in range(0, n_rows, chunk):
            t = synth_chunk(start, min(chunk, n_rows - start), seed)
            if pw is None:
                pw = pq.ParquetWriter(pq_path, t.schema, compression="snappy")
            pw.write_table(t, row_group_size=256 * 1024)
            plain = pa.table(
                {
                    name: (
                        pc.cast(col, pa.string())
                        if pa.types.is_dictionary(col.type)
                        else pc.strftime(col, "%Y-%m-%dT%H:%M:%SZ")
                        if pa.types.is_timestamp(col.type)
                        else col
                    )
                    for name, col in zip(t.column_names, t.columns, strict=True)
                }
            )
            if cw is None:
                sink = pa.CompressedOutputStream(str(csv_path), "gzip")
                cw = pcsv.CSVWriter(sink, plain.schema)
            cw.write_table(plain)
    finally:
        if pw is not None:
            pw.close()
        if cw is not None:
            cw.close()
        if sink is not None:
            sink.close()
    done.write_text(f"{n_rows} rows in {time.perf_counter() - t0:.1f}s\n")
    return {"parquet": pq_path, "csv.gz": csv_path}


# --- the two ways, each run in a child process -----------------------------------


def child_phasecast(path: str, warehouse: str) -> dict:
    sys.path.insert(0, str(ROOT))
    from pipeline.ingest import IngestConfig, ingest

    t0 = time.perf_counter()
    rep = ingest(IngestConfig(billing=(Path(path),), warehouse=Path(warehouse), progress=False))
    secs = time.perf_counter() - t0
    assert rep.conserved
    return {"seconds": secs, "rows": rep.rows, "conserved": rep.conserved}


def child_pandas(path: str) -> dict:
    import pandas as pd

    cat_map = {
        "Compute": "compute_cpu",
        "Storage": "storage",
        "Networking": "network",
        "AI and Machine Learning": "ai_services",
    }
    cols = ["ChargePeriodStart", "ServiceCategory", "Tags", "EffectiveCost"]
    t0 = time.perf_counter()
    if path.endswith(".parquet"):
        df = pd.read_parquet(path, columns=cols)
    else:
        df = pd.read_csv(path, usecols=cols, na_values=["NULL"], keep_default_na=True)
    phase = df["Tags"].map(
        lambda s: json.loads(s).get("phase", "unallocated") if isinstance(s, str) else "unallocated"
    )
    out = (
        pd.DataFrame(
            {
                "day": pd.to_datetime(df["ChargePeriodStart"], utc=True).dt.floor("D"),
                "phase": phase,
                "category": df["ServiceCategory"].astype(str).map(cat_map).fillna("other"),
                "cost": df["EffectiveCost"].astype(float),
            }
        )
        .groupby(["day", "phase", "category"], observed=True)["cost"]
        .sum()
    )
    return {"seconds": time.perf_counter() - t0, "rows": len(df), "groups": len(out)}


def _duckdb_group_by(path: str, day: str, phase: str) -> dict:
    """One DuckDB scan of ``path`` grouped by ``day``, ``phase`` (SQL over the file's columns) and
    ServiceCategory, summing EffectiveCost, on 2 threads: time, rows and groups."""
    import duckdb

    con = duckdb.connect()
    con.execute("SET threads=2")
    src = (
        f"read_parquet('{path}')"
        if path.endswith(".parquet")
        else f"read_csv('{path}', nullstr='NULL', all_varchar=false)"
    )
    t0 = time.perf_counter()
    n, groups = con.execute(f"""
        SELECT sum(n), count(*) FROM (
            SELECT {day} AS day, {phase} AS phase,
                   ServiceCategory AS category, sum(EffectiveCost) AS cost, count(*) AS n
            FROM {src} GROUP BY ALL)
    """).fetchone()  # type: ignore[misc]
    return {"seconds": time.perf_counter() - t0, "rows": int(n), "groups": int(groups)}


def child_duckdb(path: str) -> dict:
    """The practical limit of this job: one DuckDB scan grouping by day, phase and category, with
    no exactness checks, no attribution rules and no warehouse."""
    return _duckdb_group_by(
        path,
        "CAST(ChargePeriodStart AS DATE)",
        "coalesce(json_extract_string(nullif(Tags, ''), '$.phase'), 'unallocated')",
    )


def child_duckdb_floor(path: str) -> dict:
    """The same scan and GROUP BY with the per-row work DuckDB 2.0 does slowly left out: the day as an
    integer (no time-zone cast) and the raw Tags text (no JSON). A floor, not this job: it does not
    find the phase."""
    return _duckdb_group_by(path, "epoch_us(ChargePeriodStart) // 86400000000", "Tags")


def child_zcat(path: str) -> dict:
    """Single-threaded gzip: ``zcat FILE > /dev/null``, the floor for a gzipped CSV."""
    t0 = time.perf_counter()
    subprocess.run(["zcat", path], stdout=subprocess.DEVNULL, check=True)
    return {"seconds": time.perf_counter() - t0, "rows": -1}


def measure(args: list[str]) -> dict:
    """Run ``python -m tests.benchmarks.ingest_bench --child ...`` and return its result and peak RSS."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.benchmarks.ingest_bench", "--child", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"child {args} failed with exit code {proc.returncode}")
    res = json.loads(out.strip().splitlines()[-1])
    res["wall_seconds"] = time.perf_counter() - t0
    res["peak_rss_mb"] = usage.ru_maxrss / 1024  # kB on Linux
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    env = os.environ.get
    ap.add_argument("--rows", type=int, default=int(env("PHASECAST_BENCH_ROWS", "10000000")))
    ap.add_argument("--runs", type=int, default=int(env("PHASECAST_BENCH_RUNS", "3")))
    ap.add_argument("--pandas-runs", type=int, default=int(env("PHASECAST_BENCH_RUNS", "3")))
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--data", type=Path, default=None, help="cache folder for the generated files")
    ap.add_argument("--output", type=Path, default=OUT)
    ap.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.child:
        kind, *rest = a.child
        if kind == "make":
            res = {
                k: str(v) for k, v in make_files(int(rest[0]), int(rest[1]), Path(rest[2])).items()
            }
        else:
            res = {
                "phasecast": child_phasecast,
                "pandas": child_pandas,
                "duckdb": child_duckdb,
                "duckdb-floor": child_duckdb_floor,
                "zcat": child_zcat,
            }[kind](*rest)
        print(json.dumps(res))
        return 0

    data = a.data or Path(tempfile.gettempdir()) / f"phasecast-ingest-bench-v2-{a.rows}-{a.seed}"
    t0 = time.perf_counter()
    # In a child: the parent stays small, and children forked from it do not inherit its peak RSS.
    made = subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.benchmarks.ingest_bench",
            "--child",
            "make",
            str(a.rows),
            str(a.seed),
            str(data),
        ],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    )
    files = {k: Path(v) for k, v in json.loads(made.stdout.strip().splitlines()[-1]).items()}
    print(
        f"data: {data} ({time.perf_counter() - t0:.1f}s; parquet {files['parquet'].stat().st_size / 2**20:.0f} MB, "
        f"csv.gz {files['csv.gz'].stat().st_size / 2**20:.0f} MB)",
        flush=True,
    )
    results = []
    for fmt, path in files.items():
        ways = [
            ("phasecast", a.runs),
            ("pandas", a.pandas_runs),
            ("duckdb", a.runs),
            ("duckdb-floor", a.runs),
        ]
        if fmt == "csv.gz":
            ways.append(("zcat", a.runs))
        for way, runs in ways:
            samples = []
            for k in range(runs):
                with tempfile.TemporaryDirectory() as tmp:
                    args = [way, str(path)] + (
                        [str(Path(tmp) / "w.duckdb")] if way == "phasecast" else []
                    )
                    r = measure(args)
                if r["rows"] < 0:  # zcat: the file's rows
                    r["rows"] = a.rows
                samples.append(r)
                print(
                    f"  {fmt:8} {way:12} run {k + 1}: {r['rows'] / r['seconds'] / 1e6:6.2f} M rows/s, "
                    f"{r['seconds']:.2f}s, peak {r['peak_rss_mb']:.0f} MB",
                    flush=True,
                )
            if not samples:
                continue
            secs = statistics.median(s["seconds"] for s in samples)
            results.append(
                {
                    "format": fmt,
                    "way": way,
                    "rows": samples[0]["rows"],
                    "runs": len(samples),
                    "seconds_median": secs,
                    "rows_per_s_median": samples[0]["rows"] / secs,
                    "wall_seconds_median": statistics.median(s["wall_seconds"] for s in samples),
                    "peak_rss_mb_median": statistics.median(s["peak_rss_mb"] for s in samples),
                    "peak_rss_mb_max": max(s["peak_rss_mb"] for s in samples),
                    "seconds_all": [round(s["seconds"], 3) for s in samples],
                }
            )
    by = {(r["format"], r["way"]): r for r in results}
    for fmt in files:
        if (fmt, "phasecast") in by and (fmt, "pandas") in by:
            by[(fmt, "phasecast")]["speedup_vs_pandas"] = (
                by[(fmt, "pandas")]["seconds_median"] / by[(fmt, "phasecast")]["seconds_median"]
            )
        if (fmt, "phasecast") in by and (fmt, "duckdb") in by:
            by[(fmt, "phasecast")]["x_plain_duckdb_time"] = (
                by[(fmt, "phasecast")]["seconds_median"] / by[(fmt, "duckdb")]["seconds_median"]
            )
        for peer, key in (("duckdb-floor", "x_duckdb_floor_time"), ("zcat", "x_zcat_time")):
            if (fmt, "phasecast") in by and (fmt, peer) in by:
                by[(fmt, "phasecast")][key] = (
                    by[(fmt, "phasecast")]["seconds_median"] / by[(fmt, peer)]["seconds_median"]
                )
    doc = {
        "benchmark": "ingest",
        "rows": a.rows,
        "seed": a.seed,
        "machine": machine_info(),
        "results": results,
    }
    a.output.parent.mkdir(parents=True, exist_ok=True)
    a.output.write_text(json.dumps(doc, indent=2) + "\n")
    print(
        f"\n{'format':8} {'way':12} {'M rows/s':>9} {'seconds':>8} {'wall s':>7} {'peak MB':>8} "
        f"{'x pandas':>8} {'/duckdb':>8} {'/floor':>7} {'/zcat':>6}"
    )

    def ratio(r: dict, key: str, width: int) -> str:
        v = r.get(key)
        return f"{(f'{v:.2f}' if v else ''):>{width}}"

    for r in results:
        sp = r.get("speedup_vs_pandas")
        print(
            f"{r['format']:8} {r['way']:12} {r['rows_per_s_median'] / 1e6:9.2f} {r['seconds_median']:8.2f} "
            f"{r['wall_seconds_median']:7.2f} {r['peak_rss_mb_median']:8.0f} {(f'{sp:.1f}' if sp else ''):>8} "
            f"{ratio(r, 'x_plain_duckdb_time', 8)} {ratio(r, 'x_duckdb_floor_time', 7)} {ratio(r, 'x_zcat_time', 6)}"
        )
    print(f"-> {a.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
