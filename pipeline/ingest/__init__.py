"""Ingest FOCUS billing exports (and usage, labor) into the embedded DuckDB warehouse, exactly.

    from pipeline.ingest import IngestConfig, ingest, new_files
    report = ingest(IngestConfig(billing=(Path("data/sample/billing"),), warehouse=Path("data/phasecast.duckdb")))
    report.conserved          # source totals == warehouse totals, to the last decimal, per currency
    new_files(Path("data/inbox/billing"), Path("data/phasecast.duckdb"))   # what the monthly job should ingest

Guarantees:
- All files of one call are validated and applied in ONE transaction: if any file is bad (truncated gzip,
  missing column, unparseable value, empty file, unknown phase tag) an :class:`InputError` names the
  file, row and column, and the warehouse is exactly as before.
- A file for a ``(provider, billing account, billing period)`` already stored replaces it (a restated
  export); files are applied in path order. A file whose sha256 is in the manifest is skipped.
- Costs are ``DECIMAL(38,12)`` from source to warehouse; currencies are kept apart, never converted.

Tables are described in :mod:`pipeline.ingest.warehouse`.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
from tqdm import tqdm

from pipeline.errors import InputError, PhasecastError, Problem
from pipeline.ingest import billing, sidecar, warehouse
from pipeline.ingest.attribution import load_rules
from pipeline.ingest.readers import discover, open_source, sha256_of
from pipeline.ingest.warehouse import COST_COLUMNS, REPORTED_COSTS, connect, content_checksum

__all__ = [
    "COST_COLUMNS",
    "FileReport",
    "IngestConfig",
    "IngestReport",
    "PendingFile",
    "content_checksum",
    "ingest",
    "new_files",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class IngestConfig:
    """What to ingest and where. Paths are used as given (the CLI resolves them)."""

    billing: tuple[Path, ...] = ()
    warehouse: Path = Path("data/phasecast.duckdb")
    usage: Path | None = None
    labor: Path | None = None
    rules: Path | None = None  # None: the shipped pipeline/attribution_rules.yaml
    report: Path | None = None  # write the JSON report here
    memory_limit: str = "1GB"
    threads: int = 2
    progress: bool = True


Totals = dict[str, dict[str, Decimal]]  # currency -> FOCUS cost column -> sum


@dataclass
class FileReport:
    path: str
    sha256: str
    kind: str  # billing | usage | labor
    status: str  # ingested | unchanged (checksum already stored) | superseded | partly_superseded (restated later in this call)
    rows: int = 0
    billing_periods: list[str] = field(default_factory=list)
    source_totals: Totals = field(default_factory=dict)
    warehouse_totals: Totals = field(default_factory=dict)
    seconds: float = 0.0
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def conserved(self) -> bool:
        return (
            self.status != "ingested"
            or self.kind != "billing"
            or _same(self.source_totals, self.warehouse_totals)
        )


@dataclass
class IngestReport:
    warehouse: str
    files: list[FileReport]
    rows: int
    source_totals: Totals
    warehouse_totals: Totals
    seconds: float

    @property
    def conserved(self) -> bool:
        return _same(self.source_totals, self.warehouse_totals) and all(
            f.conserved for f in self.files
        )

    @property
    def ingested(self) -> list[FileReport]:
        return [f for f in self.files if f.status != "unchanged"]

    def to_dict(self) -> dict[str, Any]:
        def totals(t: Totals) -> dict[str, dict[str, str]]:
            return {
                cur: {c: _dec_str(v) for c, v in cols.items()} for cur, cols in sorted(t.items())
            }

        return {
            "warehouse": self.warehouse,
            "overall": {
                "rows": self.rows,
                "source_totals": totals(self.source_totals),
                "warehouse_totals": totals(self.warehouse_totals),
                "conserved": self.conserved,
                "seconds": round(self.seconds, 3),
            },
            "files": [
                {
                    "path": f.path,
                    "sha256": f.sha256,
                    "kind": f.kind,
                    "status": f.status,
                    "rows": f.rows,
                    "billing_periods": f.billing_periods,
                    "source_totals": totals(f.source_totals),
                    "warehouse_totals": totals(f.warehouse_totals),
                    "conserved": f.conserved,
                    "seconds": round(f.seconds, 3),
                    **f.detail,
                }
                for f in self.files
            ],
        }

    def write_json(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")


def _dec_str(d: Decimal) -> str:
    """Exact, without trailing zeros or exponent: Decimal('20.520226728990') -> '20.52022672899'."""
    s = format(d.normalize(), "f") if d == d.to_integral_value() else format(d, "f").rstrip("0")
    return s if s not in ("-0", "") else "0"


def _same(a: Totals, b: Totals) -> bool:
    keys = set(a) | set(b)
    return all(
        a.get(k, {}).get(c, Decimal(0)) == b.get(k, {}).get(c, Decimal(0))
        for k in keys
        for c in REPORTED_COSTS
    )


def _totals(rows: list[tuple]) -> Totals:
    """Rows of (currency, billed, effective, list) -> Totals."""
    out: Totals = {}
    for cur, *vals in rows:
        acc = out.setdefault(cur, {c: Decimal(0) for c in REPORTED_COSTS})
        for c, v in zip(REPORTED_COSTS, vals, strict=True):
            acc[c] += Decimal(v or 0)
    return out


_SUMS = "currency, sum(billed_cost), sum(effective_cost), sum(list_cost)"


def ingest(config: IngestConfig) -> IngestReport:
    """Validate and load every input of ``config`` in one transaction; return (and maybe write) the report."""
    t0 = time.perf_counter()
    rules = load_rules(config.rules)
    paths = discover(list(config.billing)) if config.billing else []
    if not paths and config.usage is None and config.labor is None:
        raise InputError(
            "nothing to ingest", fix="pass --billing PATH (and/or --usage FILE, --labor FILE)"
        )
    for side in (config.usage, config.labor):
        if side is not None and not Path(side).is_file():
            raise InputError(Problem("no such file", str(side)), fix="check the path")
    sources = [open_source(p) for p in paths]
    side_sources = [
        (k, open_source(Path(p)))
        for k, p in (("usage", config.usage), ("labor", config.labor))
        if p is not None
    ]

    con = connect(config.warehouse, memory_limit=config.memory_limit, threads=config.threads)
    try:
        return _ingest(con, config, rules, sources, side_sources, t0)
    finally:
        con.close()


def _ingest(
    con: duckdb.DuckDBPyConnection, config: IngestConfig, rules, sources, side_sources, t0: float
) -> IngestReport:
    reports: list[FileReport] = []
    known = warehouse.ingested_checksums(con)
    con.execute("BEGIN TRANSACTION")
    try:
        staged: list[tuple[FileReport, int]] = []
        bar = tqdm(
            sources,
            desc="ingest",
            unit="file",
            disable=not config.progress or not sources,
            leave=False,
        )
        for idx, src in enumerate(bar):
            rep = FileReport(
                path=str(src.path), sha256=src.sha256, kind="billing", status="ingested"
            )
            reports.append(rep)
            if src.sha256 in known:
                rep.status = "unchanged"
                log.info(
                    "%s: unchanged (sha256 %s already ingested), skipped", src.path, src.sha256[:12]
                )
                continue
            known.add(src.sha256)
            t = time.perf_counter()
            st = billing.stage_file(con, idx, src, rules)
            rep.rows = st.rows
            rep.seconds = time.perf_counter() - t
            staged.append((rep, idx))
            log.info("%s: %d rows read in %.2fs", src.path, st.rows, rep.seconds)

        if staged:
            _apply_billing(con, staged)
        for kind, src in side_sources:
            rep = FileReport(path=str(src.path), sha256=src.sha256, kind=kind, status="ingested")
            reports.append(rep)
            if src.sha256 in known:
                rep.status = "unchanged"
                continue
            t = time.perf_counter()
            rep.detail = (sidecar.stage_usage if kind == "usage" else sidecar.stage_labor)(con, src)
            rep.rows = int(rep.detail.pop("rows"))  # type: ignore[call-overload]
            rep.seconds = time.perf_counter() - t
            _manifest(con, src, kind, [], rep.rows, {})
            log.info("%s: %d %s rows", src.path, rep.rows, kind)
        overall_source, overall_wh = _overall(con, staged)
        con.execute("COMMIT")
    except BaseException as exc:
        con.execute("ROLLBACK")
        if isinstance(exc, PhasecastError):
            raise
        if isinstance(exc, duckdb.Error):
            raise InputError(
                f"the warehouse rejected the data: {exc}",
                fix="see the message; nothing was changed",
            ) from exc
        raise
    rows = sum(r.rows for r in reports if r.kind == "billing" and r.status == "ingested")
    report = IngestReport(
        warehouse=str(config.warehouse),
        files=reports,
        rows=rows,
        source_totals=overall_source,
        warehouse_totals=overall_wh,
        seconds=time.perf_counter() - t0,
    )
    if config.report is not None:
        report.write_json(Path(config.report))
    if not report.conserved:  # a bug, never bad input: say so loudly
        raise PhasecastError(
            f"ingest did not conserve costs: {json.dumps(report.to_dict()['overall'])}"
        )
    return report


def _apply_billing(con: duckdb.DuckDBPyConnection, staged: list[tuple[FileReport, int]]) -> None:
    """Per file, in order: replace its (provider, account, period) keys, record it in the manifest."""
    con.execute("""
        CREATE OR REPLACE TEMP TABLE stage_keys AS
        SELECT file_idx, provider, billing_account, billing_period, currency,
               sum(billed_cost) AS billed_cost, sum(effective_cost) AS effective_cost,
               sum(list_cost) AS list_cost, sum(row_count) AS row_count
        FROM stage GROUP BY ALL
    """)
    for rep, idx in staged:
        rep.source_totals = _totals(
            con.execute(
                f"SELECT {_SUMS} FROM stage_keys WHERE file_idx = {idx} GROUP BY currency"
            ).fetchall()
        )
        rep.billing_periods = [
            r[0]
            for r in con.execute(
                f"SELECT DISTINCT strftime(billing_period, '%Y-%m') FROM stage_keys WHERE file_idx = {idx} ORDER BY 1"
            ).fetchall()
        ]
        replaced = con.execute(f"""
            DELETE FROM daily_facts f USING (SELECT DISTINCT provider, billing_account, billing_period
                                             FROM stage_keys WHERE file_idx = {idx}) k
            WHERE f.provider = k.provider AND f.billing_account = k.billing_account
              AND f.billing_period = k.billing_period
        """).fetchone()
        if replaced and replaced[0]:
            log.info(
                "%s: replaced %d stored fact rows of periods %s (restatement)",
                rep.path,
                replaced[0],
                rep.billing_periods,
            )
        con.execute(f"""
            INSERT INTO daily_facts
            SELECT day, billing_period, provider, billing_account, currency, phase, category, team, model,
                   sum(billed_cost), sum(effective_cost), sum(list_cost), sum(contracted_cost), sum(row_count),
                   '{rep.sha256}'
            FROM stage WHERE file_idx = {idx} GROUP BY ALL
        """)
        _manifest(con, _Src(rep), "billing", rep.billing_periods, rep.rows, rep.source_totals)
    # Warehouse totals of each file's keys, after all files of this call are applied.
    for rep, idx in staged:
        rep.warehouse_totals = _totals(
            con.execute(f"""
            SELECT {_SUMS} FROM daily_facts f
            WHERE EXISTS (SELECT 1 FROM stage_keys k WHERE k.file_idx = {idx} AND f.provider = k.provider
                          AND f.billing_account = k.billing_account AND f.billing_period = k.billing_period)
            GROUP BY currency
        """).fetchall()
        )
    # A file whose keys were restated by a later file of this call is superseded (all of them) or
    # partly superseded (some); its own warehouse totals then differ from its source, by design.
    for rep, idx in staged:
        (n_keys, n_later) = con.execute(f"""
            SELECT count(*), count(*) FILTER (WHERE EXISTS (
                       SELECT 1 FROM stage_keys b WHERE b.file_idx > {idx} AND a.provider = b.provider
                       AND a.billing_account = b.billing_account AND a.billing_period = b.billing_period))
            FROM (SELECT DISTINCT provider, billing_account, billing_period FROM stage_keys WHERE file_idx = {idx}) a
        """).fetchone()  # type: ignore[misc]
        if n_later:
            rep.status = "superseded" if n_later == n_keys else "partly_superseded"


@dataclass(frozen=True)
class _Src:
    rep: FileReport

    @property
    def path(self) -> str:
        return self.rep.path

    @property
    def sha256(self) -> str:
        return self.rep.sha256


def _manifest(
    con: duckdb.DuckDBPyConnection,
    src: Any,
    kind: str,
    periods: list[str],
    rows: int,
    totals: Totals,
) -> None:
    p = Path(src.path)
    fmt = "parquet" if p.name.lower().endswith(".parquet") else "csv"
    tjson = json.dumps(
        {cur: {c: _dec_str(v) for c, v in cols.items()} for cur, cols in totals.items()}
    )
    con.execute(
        "INSERT INTO manifest VALUES (?, ?, ?, ?, ?, ?, ?, ?, now()::TIMESTAMP)",
        [src.sha256, str(p.resolve()), kind, fmt, p.stat().st_size, periods, rows, tjson],
    )


def _overall(
    con: duckdb.DuckDBPyConnection, staged: list[tuple[FileReport, int]]
) -> tuple[Totals, Totals]:
    """Source totals now in force (per key, the last file of this call that carried it) vs the warehouse."""
    if not staged:
        return {}, {}
    src = _totals(
        con.execute(f"""
        SELECT {_SUMS} FROM stage_keys s
        WHERE file_idx = (SELECT max(file_idx) FROM stage_keys l WHERE l.provider = s.provider
                          AND l.billing_account = s.billing_account AND l.billing_period = s.billing_period)
        GROUP BY currency
    """).fetchall()
    )
    wh = _totals(
        con.execute(f"""
        SELECT {_SUMS} FROM daily_facts f
        WHERE EXISTS (SELECT 1 FROM stage_keys k WHERE f.provider = k.provider
                      AND f.billing_account = k.billing_account AND f.billing_period = k.billing_period)
        GROUP BY currency
    """).fetchall()
    )
    return src, wh


@dataclass(frozen=True)
class PendingFile:
    path: Path
    sha256: str
    reason: str  # "new": path never ingested; "changed": path ingested before with other contents


def new_files(folder: Path, warehouse_path: Path) -> list[PendingFile]:
    """Billing files under ``folder`` whose contents are not in the manifest, in the order ingest applies them.

    For the monthly job: ``ingest(IngestConfig(billing=tuple(f.path for f in pending), ...))`` is
    idempotent anyway; this tells what will change. A missing warehouse means every file is new.
    """
    files = discover([Path(folder)])
    known_sha: set[str] = set()
    known_paths: set[str] = set()
    if Path(warehouse_path).exists():
        con = connect(Path(warehouse_path), read_only=True)
        try:
            if con.execute(
                "SELECT count(*) FROM information_schema.tables WHERE table_name = 'manifest'"
            ).fetchone()[0]:  # type: ignore[index]
                for sha, path in con.execute("SELECT sha256, path FROM manifest").fetchall():
                    known_sha.add(sha)
                    known_paths.add(path)
        finally:
            con.close()
    out = []
    for f in files:
        sha = sha256_of(f)
        if sha not in known_sha:
            out.append(PendingFile(f, sha, "changed" if str(f.resolve()) in known_paths else "new"))
    return out
