"""Ingest FOCUS billing exports (and usage, labor) into the embedded DuckDB warehouse, exactly.

    from pipeline.ingest import IngestConfig, ingest, new_files
    report = ingest(IngestConfig(billing=(Path("data/sample/billing"),), warehouse=Path("data/phasecast.duckdb")))
    report.conserved          # source totals == warehouse totals, to the last decimal, per currency
    new_files(Path("data/inbox/billing"), Path("data/phasecast.duckdb"))   # what the monthly job should ingest

Guarantees:
- All files of one call are validated and applied in ONE transaction: if any file is bad (truncated gzip,
  missing column, unparseable or digit-losing value, empty file, unknown phase tag, a billing period
  not starting on the 1st, a charge ending before it starts, a currency that is not ISO 4217, a
  manifest naming a missing file) an :class:`InputError` names the file, row and column, and the
  warehouse is exactly as before.
- Deliveries, not files (:mod:`pipeline.ingest.deliveries`): the files of one AWS or Azure manifest, or
  of one plain folder, are one delivery; a delivery replaces every ``(provider, billing account,
  billing period)`` it carries, whole; deliveries are applied oldest first, so the newest wins. A
  delivery whose files (and manifest) are all in the manifest table already is skipped.
- Costs keep every digit: ``DECIMAL(38,18)`` from source to warehouse; a value that would lose a digit
  is an error, never a rounding. Currencies are upper-cased, kept apart, never converted.
- The report's source totals are exact sums of each file's own text (a plain scan, apart from the
  grouping, attribution and warehouse path), compared key by key with the warehouse.

Tables are described in :mod:`pipeline.ingest.warehouse`.
"""

from __future__ import annotations

import dataclasses
import decimal
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
from pipeline.ingest import allocation, billing, deliveries, sidecar, warehouse
from pipeline.ingest.attribution import load_rules, sql_str
from pipeline.ingest.readers import SourceFile, open_source, sha256_of
from pipeline.ingest.warehouse import COST_COLUMNS, REPORTED_COSTS, connect, content_checksum

__all__ = [
    "COST_COLUMNS",
    "DeliveryReport",
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
    allocate: bool = True  # split unallocated GPU cost by usage GPU-hours (allocated_facts)
    report: Path | None = None  # write the JSON report here
    # DuckDB's own limit (it keeps freed blocks up to it): with Python, Arrow and the Parquet reader's
    # buffers the process stays under 1 GB at any size (50 M rows: 1.1 GB peak with 1GB here).
    memory_limit: str = "700MB"
    threads: int = 2
    progress: bool = True
    scheduler: str | None = None  # a Dask scheduler address or "local": files staged on its workers


Totals = dict[str, dict[str, Decimal]]  # currency -> FOCUS cost column -> sum


@dataclass
class FileReport:
    """One input file. For an unchanged file, the stored text totals and today's warehouse totals of
    its keys; ``warehouse_totals`` are always of the file's ``(provider, account, period)`` keys, so a
    file that shares its delivery with others is checked at the delivery level (``shared``)."""

    path: str
    sha256: str
    kind: str  # billing | usage | labor
    status: str  # ingested | unchanged (checksum already stored) | superseded | partly_superseded (a later delivery of this call replaced its periods)
    rows: int = 0
    billing_periods: list[str] = field(default_factory=list)
    source_totals: Totals = field(default_factory=dict)
    warehouse_totals: Totals = field(default_factory=dict)
    seconds: float = 0.0
    detail: dict[str, Any] = field(default_factory=dict)
    delivery: str | None = None
    shared: bool = False

    @property
    def conserved(self) -> bool:
        return (
            self.status != "ingested"
            or self.kind != "billing"
            or self.shared
            or _same(self.source_totals, self.warehouse_totals)
        )


@dataclass
class DeliveryReport:
    """One delivery: the exact text totals of its keys still in force against the warehouse's."""

    id: str
    kind: str  # aws | azure | folder
    time: str
    files: list[str]
    status: str  # ingested | unchanged | superseded | partly_superseded
    billing_periods: list[str] = field(default_factory=list)
    source_totals: Totals = field(default_factory=dict)
    warehouse_totals: Totals = field(default_factory=dict)

    @property
    def conserved(self) -> bool:
        return _same(self.source_totals, self.warehouse_totals)


def _totals_dict(t: Totals) -> dict[str, dict[str, str]]:
    return {cur: {c: _dec_str(v) for c, v in cols.items()} for cur, cols in sorted(t.items())}


@dataclass
class IngestReport:
    warehouse: str
    files: list[FileReport]
    rows: int
    source_totals: Totals
    warehouse_totals: Totals
    seconds: float
    deliveries: list[DeliveryReport] = field(default_factory=list)
    allocation: dict[str, Any] = field(default_factory=dict)  # usage-based GPU allocation summary

    @property
    def conserved(self) -> bool:
        return (
            _same(self.source_totals, self.warehouse_totals)
            and all(f.conserved for f in self.files)
            and all(d.conserved for d in self.deliveries)
        )

    @property
    def ingested(self) -> list[FileReport]:
        return [f for f in self.files if f.status != "unchanged"]

    @property
    def currencies(self) -> list[str]:
        """Currencies of the periods touched, most cost (absolute EffectiveCost) first."""
        return sorted(
            self.warehouse_totals,
            key=lambda c: (-abs(self.warehouse_totals[c].get("EffectiveCost", Decimal(0))), c),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "warehouse": self.warehouse,
            "overall": {
                "rows": self.rows,
                "source_totals": _totals_dict(self.source_totals),
                "warehouse_totals": _totals_dict(self.warehouse_totals),
                "conserved": self.conserved,
                "seconds": round(self.seconds, 3),
            },
            "deliveries": [
                {
                    "id": d.id,
                    "kind": d.kind,
                    "time": d.time,
                    "files": d.files,
                    "status": d.status,
                    "billing_periods": d.billing_periods,
                    "source_totals": _totals_dict(d.source_totals),
                    "warehouse_totals": _totals_dict(d.warehouse_totals),
                    "conserved": d.conserved,
                }
                for d in self.deliveries
            ],
            "allocation": self.allocation,
            "files": [
                {
                    "path": f.path,
                    "sha256": f.sha256,
                    "kind": f.kind,
                    "status": f.status,
                    "delivery": f.delivery,
                    "rows": f.rows,
                    "billing_periods": f.billing_periods,
                    "source_totals": _totals_dict(f.source_totals),
                    "warehouse_totals": _totals_dict(f.warehouse_totals),
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


#: Decimal arithmetic for totals: wide enough for any DECIMAL(38,18) sum, and a rounding raises
#: (Python's default context keeps 28 digits and would round a 38-digit total silently).
EXACT = decimal.Context(prec=80, traps=[decimal.Inexact, decimal.InvalidOperation])


def _dec_str(d: Decimal) -> str:
    """Exact, without trailing zeros or exponent: Decimal('20.520226728990') -> '20.52022672899'."""
    if d == d.to_integral_value(context=EXACT):
        s = format(d.normalize(EXACT), "f")
    else:
        s = format(d, "f").rstrip("0")
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
            acc[c] = EXACT.add(acc[c], Decimal(v or 0))
    return out


_SUMS = "currency, sum(billed_cost), sum(effective_cost), sum(list_cost)"


def ingest(config: IngestConfig) -> IngestReport:
    """Validate and load every input of ``config`` in one transaction; return (and maybe write) the report."""
    t0 = time.perf_counter()
    rules = load_rules(config.rules)
    planned = deliveries.plan(list(config.billing)) if config.billing else []
    if not planned and config.usage is None and config.labor is None:
        raise InputError(
            "nothing to ingest", fix="pass --billing PATH (and/or --usage FILE, --labor FILE)"
        )
    for side in (config.usage, config.labor):
        if side is not None and not Path(side).is_file():
            raise InputError(Problem("no such file", str(side)), fix="check the path")
    sources = [[open_source(p) for p in d.files] for d in planned]
    side_sources = [
        (k, open_source(Path(p)))
        for k, p in (("usage", config.usage), ("labor", config.labor))
        if p is not None
    ]

    from pipeline.distributed import engine

    with engine(config.scheduler) as client:
        con = connect(config.warehouse, memory_limit=config.memory_limit, threads=config.threads)
        try:
            return _ingest(con, config, rules, planned, sources, side_sources, t0, client)
        finally:
            con.close()


def _prestage(
    client: Any,
    sources: list[list[SourceFile]],
    stored: dict[str, Any],
    rules,
) -> dict[tuple[int, int], Any]:
    """Stage every new file on the cluster's workers, one task per file (a partition of a delivery);
    keyed by (delivery, file). Files already ingested are staged here if their delivery needs them."""
    if client is None:
        return {}
    todo = [
        (d, i, src)
        for d, srcs in enumerate(sources)
        for i, src in enumerate(srcs)
        if src.sha256 not in stored
    ]
    futs = client.map(
        billing.stage_partition,
        [src for _, _, src in todo],
        rules=rules,
        pure=False,
        key=[f"stage-{src.sha256[:16]}-{d}-{i}" for d, i, src in todo],
    )
    return {(d, i): f for (d, i, _), f in zip(todo, futs, strict=True)}


@dataclass
class _Planned:
    """One delivery of this call: its files' reports and, once staged, their stage indexes."""

    order: int
    delivery: deliveries.Delivery
    reports: list[FileReport]
    staged: list[tuple[int, FileReport]] = field(default_factory=list)  # (stage index, its file)
    manifest_sha: str | None = None
    source_in_force: Totals = field(default_factory=dict)
    warehouse_in_force: Totals = field(default_factory=dict)
    periods: list[str] = field(default_factory=list)


def _ingest(
    con: duckdb.DuckDBPyConnection,
    config: IngestConfig,
    rules,
    planned: list[deliveries.Delivery],
    sources: list[list[SourceFile]],
    side_sources,
    t0: float,
    client: Any = None,
) -> IngestReport:
    reports: list[FileReport] = []
    stored = warehouse.stored_files(con)
    remote = _prestage(client, sources, stored, rules)
    con.execute("BEGIN TRANSACTION")
    try:
        con.execute(TEXT_KEYS_DDL)
        work: list[_Planned] = []
        for order, (d, srcs) in enumerate(zip(planned, sources, strict=True)):
            reps = [
                FileReport(
                    path=str(s.path),
                    sha256=s.sha256,
                    kind="billing",
                    status="unchanged",
                    delivery=d.id,
                )
                for s in srcs
            ]
            reports += reps
            work.append(
                _Planned(
                    order,
                    d,
                    reps,
                    manifest_sha=sha256_of(d.manifest) if d.manifest is not None else None,
                )
            )
        todo = [(w, src) for w, srcs in zip(work, sources, strict=True) for src in srcs]
        bar = tqdm(
            total=len(todo),
            desc="ingest",
            unit="file",
            # None: shown on a terminal only (a log file gets the per-file lines instead)
            disable=None if config.progress and todo else True,
            leave=False,
        )
        idx = 0
        for d_i, (w, srcs) in enumerate(zip(work, sources, strict=True)):
            known = [s.sha256 in stored for s in srcs]
            if all(known) and (w.manifest_sha is None or w.manifest_sha in stored):
                for rep in w.reports:
                    log.info(
                        "%s: unchanged (sha256 %s already ingested), skipped",
                        rep.path,
                        rep.sha256[:12],
                    )
                bar.update(len(srcs))
                continue
            # New files first; in a plain folder, a known file joins the delivery when it shares a
            # billing period with a new one (the folder's files of a period are one delivery).
            new_periods: set[str] = set()
            order_ = [i for i, k in enumerate(known) if not k] + [
                i for i, k in enumerate(known) if k
            ]
            for i in order_:
                src, rep = srcs[i], w.reports[i]
                if (
                    known[i]
                    and w.delivery.kind == "folder"
                    and not (set(stored[src.sha256]["periods"]) & new_periods)
                ):
                    log.info(
                        "%s: unchanged, and no new file of its folder shares its periods", src.path
                    )
                    bar.update(1)
                    continue
                t = time.perf_counter()
                fut = remote.pop((d_i, i), None)
                st = (
                    billing.insert_partition(con, idx, src, fut.result())
                    if fut is not None
                    else billing.scan_file(con, idx, src, rules)
                )
                con.execute(f"UPDATE text_keys SET dlv = {w.order} WHERE file_idx = {idx}")
                rep.status = "ingested"
                rep.rows = st.rows
                rep.seconds = time.perf_counter() - t
                rep.billing_periods = st.periods
                new_periods |= set(st.periods)
                w.staged.append((idx, rep))
                log.info("%s: %d rows read in %.2fs", src.path, st.rows, rep.seconds)
                idx += 1
                if fut is None and idx % ATTRIBUTE_EVERY == 0:
                    billing.attribute(con, rules)  # bounds the day groups waiting in memory
                bar.update(1)
            for _, rep in w.staged:  # checked file by file only when alone in its delivery
                rep.shared = len(w.staged) > 1
        bar.close()
        staged = [w for w in work if w.staged]
        if staged:
            billing.attribute(con, rules)  # every file read here, in one pass
            _apply_billing(con, staged)
        for w in work:
            for rep in w.reports:
                if rep.status == "unchanged":
                    _stored_report(con, rep, stored[rep.sha256])
        for kind, src in side_sources:
            rep = FileReport(path=str(src.path), sha256=src.sha256, kind=kind, status="ingested")
            reports.append(rep)
            if src.sha256 in stored:
                rep.status = "unchanged"
                continue
            t = time.perf_counter()
            rep.detail = (sidecar.stage_usage if kind == "usage" else sidecar.stage_labor)(con, src)
            rep.rows = int(rep.detail.pop("rows"))  # type: ignore[call-overload]
            rep.seconds = time.perf_counter() - t
            _manifest(con, src.path, src.sha256, kind, [], rep.rows, {})
            log.info("%s: %d %s rows", src.path, rep.rows, kind)
        overall_source, overall_wh = _overall(con, bool(staged))
        delivery_reports = [_delivery_report(w) for w in work]
        alloc = allocation.rebuild(con, enabled=config.allocate)
        con.execute("COMMIT")
    except BaseException as exc:
        for fut in remote.values():
            fut.cancel()
        con.execute("ROLLBACK")
        if isinstance(exc, PhasecastError):
            raise
        if isinstance(exc, duckdb.Error):
            raise InputError(
                f"the warehouse rejected the data: {exc}",
                fix="see the message; nothing was changed",
            ) from exc
        raise
    rows = sum(r.rows for r in reports if r.kind == "billing" and r.status != "unchanged")
    report = IngestReport(
        warehouse=str(config.warehouse),
        files=reports,
        rows=rows,
        source_totals=overall_source,
        warehouse_totals=overall_wh,
        seconds=time.perf_counter() - t0,
        deliveries=delivery_reports,
        allocation=dataclasses.asdict(alloc),
    )
    if config.report is not None:
        report.write_json(Path(config.report))
    if not report.conserved:  # a bug, never bad input: say so loudly
        raise PhasecastError(
            f"ingest did not conserve costs: {json.dumps(report.to_dict()['overall'])}"
        )
    return report


#: Files read between two attribution passes (:func:`billing.attribute`): one pass per file costs
#: binding the rules each time; one per call keeps every file's day groups in memory until the end.
ATTRIBUTE_EVERY = 8

TEXT_KEYS_DDL = """
CREATE OR REPLACE TEMP TABLE text_keys (
    file_idx INTEGER, dlv INTEGER, provider VARCHAR, billing_account VARCHAR, billing_period DATE,
    currency VARCHAR, billed_cost DECIMAL(38,18), effective_cost DECIMAL(38,18),
    list_cost DECIMAL(38,18)
)
"""
_KEY = "provider, billing_account, billing_period"
_ON = "{a}.provider = {b}.provider AND {a}.billing_account = {b}.billing_account AND {a}.billing_period = {b}.billing_period"


def _on(a: str, b: str) -> str:
    return _ON.format(a=a, b=b)


def _apply_billing(con: duckdb.DuckDBPyConnection, work: list[_Planned]) -> None:
    """Per delivery, in order: replace every (provider, account, period) key it carries, whole.

    Then the report: per delivery and file, the exact sums of the files' own text (``text_keys``,
    filled by :func:`billing.scan_file` from its scan, before attribution) against the warehouse, key by key.
    """
    for w in work:
        ids = ", ".join(str(i) for i, _ in w.staged)
        replaced = con.execute(f"""
            DELETE FROM daily_facts f USING (SELECT DISTINCT {_KEY} FROM stage WHERE file_idx IN ({ids})) k
            WHERE {_on("f", "k")}
        """).fetchone()
        if replaced and replaced[0]:
            log.info(
                "%s: replaced %d stored fact rows of its billing periods (a newer delivery)",
                w.delivery.id,
                replaced[0],
            )
        # A file's stage rows are already one per fact key (attribute): only a delivery of several
        # files sums them again.
        fact_keys = (
            "day, billing_period, provider, billing_account, currency, phase, category, team, model"
        )
        attrs = "service, method, gpu, resource_id"
        sums = ("billed_cost", "effective_cost", "list_cost", "contracted_cost", "row_count")
        one = len(w.staged) == 1
        values = (
            f"{', '.join(sums)}, sha"
            if one
            else f"{', '.join(f'sum({c})' for c in sums)}, arg_max(sha, file_idx)"
        )
        con.execute(f"""
            INSERT INTO daily_facts
            SELECT {fact_keys}, {values}, {attrs}
            FROM (SELECT s.*, m.sha FROM stage s JOIN (VALUES {", ".join(f"({i}, '{r.sha256}')" for i, r in _staged_reports(w))}) m(idx, sha)
                  ON s.file_idx = m.idx)
            {"" if one else f"GROUP BY {fact_keys}, {attrs}"}
        """)
    # Which keys a later delivery of this call replaced.
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE key_last AS
        SELECT {_KEY}, max(dlv) AS last_dlv FROM text_keys GROUP BY ALL
    """)
    # The warehouse totals of every key this call carried, read once (:func:`_wh_totals`).
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE wh_keys AS
        SELECT {_KEY}, currency, sum(billed_cost) AS billed_cost,
               sum(effective_cost) AS effective_cost, sum(list_cost) AS list_cost
        FROM daily_facts f WHERE EXISTS (SELECT 1 FROM key_last k WHERE {_on("f", "k")})
        GROUP BY ALL
    """)
    for w in work:
        for i, rep in _staged_reports(w):
            rep.source_totals = _totals(
                con.execute(
                    f"SELECT {_SUMS} FROM text_keys WHERE file_idx = {i} GROUP BY currency"
                ).fetchall()
            )
            rep.warehouse_totals = _wh_totals(con, f"file_idx = {i}")
            keys = con.execute(
                f"SELECT DISTINCT provider, billing_account, strftime(billing_period, '%Y-%m') FROM text_keys WHERE file_idx = {i} ORDER BY ALL"
            ).fetchall()
            _manifest(
                con,
                Path(rep.path),
                rep.sha256,
                "billing",
                rep.billing_periods,
                rep.rows,
                rep.source_totals,
                delivery=w.delivery.id,
                keys=[list(k) for k in keys],
            )
        if w.delivery.manifest is not None and w.manifest_sha is not None:
            _manifest(
                con,
                w.delivery.manifest,
                w.manifest_sha,
                "delivery-manifest",
                [],
                0,
                {},
                delivery=w.delivery.id,
            )
        in_force = f"dlv = {w.order} AND EXISTS (SELECT 1 FROM key_last l WHERE {_on('text_keys', 'l')} AND l.last_dlv = {w.order})"
        w.source_in_force = _totals(
            con.execute(
                f"SELECT {_SUMS} FROM text_keys WHERE {in_force} GROUP BY currency"
            ).fetchall()
        )
        w.warehouse_in_force = _wh_totals(con, in_force.replace("text_keys", "k"))
        w.periods = [
            r[0]
            for r in con.execute(
                f"SELECT DISTINCT strftime(billing_period, '%Y-%m') FROM text_keys WHERE dlv = {w.order} ORDER BY 1"
            ).fetchall()
        ]
        (n_keys, n_later) = con.execute(f"""
            SELECT count(*), count(*) FILTER (WHERE l.last_dlv > {w.order})
            FROM (SELECT DISTINCT {_KEY} FROM text_keys WHERE dlv = {w.order}) a JOIN key_last l ON {_on("a", "l")}
        """).fetchone()  # type: ignore[misc]
        if n_later:
            status = "superseded" if n_later == n_keys else "partly_superseded"
            for _, rep in _staged_reports(w):
                rep.status = status


def _staged_reports(w: _Planned) -> list[tuple[int, FileReport]]:
    return sorted(w.staged, key=lambda s: s[0])


def _wh_totals(con: duckdb.DuckDBPyConnection, where: str) -> Totals:
    """Warehouse totals of the keys of the ``text_keys`` rows matching ``where`` (from ``wh_keys``,
    the per-key sums :func:`_apply_billing` read after its inserts)."""
    return _totals(
        con.execute(f"""
        SELECT {_SUMS} FROM wh_keys f
        WHERE EXISTS (SELECT 1 FROM text_keys k WHERE ({where}) AND {_on("f", "k")})
        GROUP BY currency
    """).fetchall()
    )


def _delivery_report(w: _Planned) -> DeliveryReport:
    staged = [r for r in w.reports if r.status != "unchanged"]
    status = staged[0].status if staged else "unchanged"
    return DeliveryReport(
        id=w.delivery.id,
        kind=w.delivery.kind,
        time=w.delivery.time,
        files=[r.path for r in w.reports],
        status=status,
        billing_periods=w.periods or sorted({p for r in w.reports for p in r.billing_periods}),
        source_totals=w.source_in_force,
        warehouse_totals=w.warehouse_in_force,
    )


def _stored_report(con: duckdb.DuckDBPyConnection, rep: FileReport, stored: dict[str, Any]) -> None:
    """An unchanged file's report: its stored periods and text totals, and today's warehouse totals."""
    rep.rows = int(stored["rows"] or 0)
    rep.billing_periods = list(stored["periods"] or [])
    rep.source_totals = {
        cur: {c: Decimal(v) for c, v in cols.items()}
        for cur, cols in (stored["totals"] or {}).items()
    }
    keys = stored["keys"]
    if keys:
        cond = " OR ".join(
            f"(provider = {sql_str(p)} AND billing_account = {sql_str(a)} AND billing_period = DATE '{m}-01')"
            for p, a, m in keys
        )
    elif rep.billing_periods:
        cond = (
            "strftime(billing_period, '%Y-%m') IN ("
            + ", ".join(sql_str(m) for m in rep.billing_periods)
            + ")"
        )
    else:
        return
    rep.warehouse_totals = _totals(
        con.execute(f"SELECT {_SUMS} FROM daily_facts WHERE {cond} GROUP BY currency").fetchall()
    )


def _manifest(
    con: duckdb.DuckDBPyConnection,
    path: Path,
    sha256: str,
    kind: str,
    periods: list[str],
    rows: int,
    totals: Totals,
    *,
    delivery: str | None = None,
    keys: list[list[str]] | None = None,
) -> None:
    p = Path(path)
    name = p.name.lower()
    fmt = "parquet" if name.endswith(".parquet") else "json" if name.endswith(".json") else "csv"
    tjson = json.dumps(
        {cur: {c: _dec_str(v) for c, v in cols.items()} for cur, cols in totals.items()}
    )
    con.execute(
        "INSERT INTO manifest (sha256, path, kind, format, size_bytes, billing_periods, row_count, "
        "totals, ingested_at, delivery, keys) VALUES (?, ?, ?, ?, ?, ?, ?, ?, now()::TIMESTAMP, ?, ?)",
        [
            sha256,
            str(p.resolve()),
            kind,
            fmt,
            p.stat().st_size,
            periods,
            rows,
            tjson,
            delivery,
            json.dumps(keys) if keys is not None else None,
        ],
    )


def _overall(con: duckdb.DuckDBPyConnection, any_staged: bool) -> tuple[Totals, Totals]:
    """Source totals now in force (per key, the last delivery of this call that carried it) vs the warehouse."""
    if not any_staged:
        return {}, {}
    src = _totals(
        con.execute(f"""
        SELECT {_SUMS} FROM text_keys t JOIN key_last l ON {_on("t", "l")} AND t.dlv = l.last_dlv
        GROUP BY currency
    """).fetchall()
    )
    return src, _wh_totals(con, "true")


@dataclass(frozen=True)
class PendingFile:
    path: Path
    sha256: str
    reason: str  # "new": path never ingested; "changed": path ingested before with other contents


def new_files(folder: Path, warehouse_path: Path) -> list[PendingFile]:
    """Billing files under ``folder`` whose contents are not in the manifest, in the order ingest applies them.

    For the monthly job: ingest the folder itself (``ingest(IngestConfig(billing=(folder,), ...))``:
    deliveries already ingested are skipped, and a new file of a folder is read with its delivery) is
    idempotent anyway; this tells what will change. A missing warehouse means every file is new.
    """
    files = [f for d in deliveries.plan([Path(folder)]) for f in d.files]
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
