"""The embedded DuckDB warehouse: schema, connection settings and the manifest.

Tables (money is ``DECIMAL(38,18)`` everywhere, never a float; currencies are never mixed or converted):

``daily_facts``
    one row per ``day, billing_period, provider, billing_account, currency, phase, category, team,
    model`` with ``billed_cost, effective_cost, list_cost, contracted_cost`` sums, ``row_count`` (source
    rows) and ``file_sha256`` (the file the numbers came from). ``day`` is the UTC date of
    ``ChargePeriodStart``; ``team`` / ``model`` are NULL when the Tags do not say. Attribution detail
    (also in the key): ``service`` (ServiceName), ``method`` (``tag``, ``rule:<name>``,
    ``unallocated``), ``gpu`` (GPU model of GPU rows) and ``resource_id`` (kept only on GPU rows left
    unallocated: the pools usage-based allocation splits).
``allocated_facts`` (view; its split rows, ``allocation_parts``, are rebuilt at the end of every ingest,
see :mod:`pipeline.ingest.allocation`)
    ``daily_facts`` with the unallocated GPU cost split across phases by usage GPU-hours: the same
    columns (no ``row_count``) plus ``share`` (the part of the source row, 1 when not split). Per day,
    currency and cost column it sums exactly to ``daily_facts``.
``cost_facts`` (view)
    what series building reads: ``allocated_facts``.
``manifest``
    one row per ingested file: ``sha256, path, kind (billing|usage|labor|delivery-manifest), format,
    size_bytes, billing_periods (YYYY-MM list), row_count, totals (JSON: currency -> column -> decimal
    string), ingested_at, delivery`` (the delivery the file came in: its manifest or folder) and
    ``keys`` (JSON list of the ``[provider, billing account, YYYY-MM]`` it carried).

A warehouse written with the earlier ``DECIMAL(38,12)`` columns is widened in place on the first
writable connection (exact: every stored value fits).
``usage_daily``
    ``day, phase, team, metric, unit, value_sum, value_mean, value_min, value_max, n`` (metrics are
    quantities, DOUBLE), then ``gpu`` (canonical GPU model), ``resource_id`` and ``grain`` (``day``, or
    ``month`` for rows given per month, stored on the month's first day).
``labor_monthly``
    ``month, phase, team, hours, hourly_rate, currency, cost`` (cost = hours x hourly_rate, DECIMAL).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import duckdb

from pipeline.errors import LockHeldError

#: Warehouse column of each FOCUS cost column.
COST_COLUMNS: dict[str, str] = {
    "BilledCost": "billed_cost",
    "EffectiveCost": "effective_cost",
    "ListCost": "list_cost",
    "ContractedCost": "contracted_cost",
}
REPORTED_COSTS: tuple[str, ...] = ("BilledCost", "EffectiveCost", "ListCost")

SCHEMA = """
CREATE TABLE IF NOT EXISTS daily_facts (
    day DATE NOT NULL,
    billing_period DATE NOT NULL,
    provider VARCHAR NOT NULL,
    billing_account VARCHAR NOT NULL,
    currency VARCHAR NOT NULL,
    phase VARCHAR NOT NULL,
    category VARCHAR NOT NULL,
    team VARCHAR,
    model VARCHAR,
    billed_cost DECIMAL(38,18) NOT NULL,
    effective_cost DECIMAL(38,18) NOT NULL,
    list_cost DECIMAL(38,18) NOT NULL,
    contracted_cost DECIMAL(38,18),
    row_count BIGINT NOT NULL,
    file_sha256 VARCHAR NOT NULL
);
CREATE TABLE IF NOT EXISTS manifest (
    sha256 VARCHAR NOT NULL,
    path VARCHAR NOT NULL,
    kind VARCHAR NOT NULL,
    format VARCHAR,
    size_bytes BIGINT,
    billing_periods VARCHAR[],
    row_count BIGINT,
    totals VARCHAR,
    ingested_at TIMESTAMP NOT NULL,
    delivery VARCHAR,
    keys VARCHAR
);
CREATE TABLE IF NOT EXISTS usage_daily (
    day DATE NOT NULL,
    phase VARCHAR NOT NULL,
    team VARCHAR,
    metric VARCHAR NOT NULL,
    unit VARCHAR,
    value_sum DOUBLE,
    value_mean DOUBLE,
    value_min DOUBLE,
    value_max DOUBLE,
    n BIGINT NOT NULL,
    file_sha256 VARCHAR NOT NULL
);
CREATE TABLE IF NOT EXISTS labor_monthly (
    month DATE NOT NULL,
    phase VARCHAR NOT NULL,
    team VARCHAR,
    hours DECIMAL(38,18) NOT NULL,
    hourly_rate DECIMAL(38,18) NOT NULL,
    currency VARCHAR NOT NULL,
    cost DECIMAL(38,18) NOT NULL,
    file_sha256 VARCHAR NOT NULL
);
"""


def connect(
    path: Path, *, memory_limit: str = "1GB", threads: int = 2, read_only: bool = False
) -> duckdb.DuckDBPyConnection:
    """Open (creating if needed) the warehouse with bounded memory and threads, in UTC."""
    path = Path(path)
    if not read_only:
        path.parent.mkdir(parents=True, exist_ok=True)
    try:
        con = duckdb.connect(str(path), read_only=read_only)
    except duckdb.IOException as exc:
        if "lock" in str(exc).lower():
            raise LockHeldError(
                f"the warehouse {path} is in use by another process; try again when it finishes"
            ) from None
        raise
    con.execute(f"SET memory_limit='{memory_limit}'")
    con.execute(f"SET threads={int(threads)}")
    con.execute("SET TimeZone='UTC'")
    # Aggregations need no row order; the row-locating error path turns it back on (billing._ordered).
    con.execute("SET preserve_insertion_order=false")
    if not read_only:
        from pipeline.ingest.allocation import ensure_schema

        try:
            con.execute(SCHEMA)
            _migrate(con)
            ensure_schema(con)
        except BaseException:
            con.close()
            raise
    return con


def _migrate(con: duckdb.DuckDBPyConnection) -> None:
    """Widen DECIMAL(38,12) money to DECIMAL(38,18); add the manifest's delivery columns."""
    narrow = con.execute("""
        SELECT table_name, column_name FROM information_schema.columns
        WHERE table_schema = 'main' AND table_name IN ('daily_facts', 'labor_monthly')
          AND data_type = 'DECIMAL(38,12)'
    """).fetchall()
    for table, column in narrow:
        con.execute(f'ALTER TABLE {table} ALTER COLUMN "{column}" SET DATA TYPE DECIMAL(38,18)')
    con.execute("ALTER TABLE manifest ADD COLUMN IF NOT EXISTS delivery VARCHAR")
    con.execute("ALTER TABLE manifest ADD COLUMN IF NOT EXISTS keys VARCHAR")


def ingested_checksums(con: duckdb.DuckDBPyConnection) -> set[str]:
    return {r[0] for r in con.execute("SELECT DISTINCT sha256 FROM manifest").fetchall()}


def stored_files(con: duckdb.DuckDBPyConnection) -> dict[str, dict[str, Any]]:
    """sha256 -> what the latest manifest row of that content says: periods, rows, totals, keys."""
    out: dict[str, dict[str, Any]] = {}
    for sha, periods, rows, totals, keys in con.execute(
        "SELECT sha256, billing_periods, row_count, totals, keys FROM manifest ORDER BY ingested_at"
    ).fetchall():
        out[sha] = {
            "periods": list(periods or []),
            "rows": rows,
            "totals": json.loads(totals) if totals else {},
            "keys": json.loads(keys) if keys else None,
        }
    return out


def content_checksum(path: Path) -> str:
    """A checksum of every table's contents (order-independent), to prove a failed ingest changed nothing."""
    import hashlib

    con = duckdb.connect(str(path), read_only=True)
    try:
        h = hashlib.sha256()
        tables = [
            r[0]
            for r in con.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema='main' ORDER BY 1"
            ).fetchall()
        ]
        for t in tables:
            n, s = con.execute(
                f'SELECT count(*), coalesce(sum(hash(x)), 0) FROM "{t}" AS x'
            ).fetchone()  # type: ignore[misc]
            h.update(f"{t}:{n}:{s};".encode())
        return h.hexdigest()
    finally:
        con.close()
