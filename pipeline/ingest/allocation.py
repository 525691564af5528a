"""Usage-based allocation: GPU cost still unallocated after tags and rules, split by GPU-hours.

``allocated_facts`` is derived: a view of the ``daily_facts`` rows no allocation touches, as stored, and of
``allocation_parts``, the rest split. The parts are rebuilt from ``daily_facts`` and ``usage_daily`` at
the end of every ingest transaction (billing, usage or labor), so the order in which billing and usage
arrive does not matter, and the ingested facts are never changed (``--no-allocate`` rebuilds them
without the split). Series building reads it through the view ``cost_facts``. (A warehouse written
before stored it as a table, a whole second copy of the facts: the first writable open replaces it.)

A ``daily_facts`` row is split when its category is ``compute_gpu`` and no tag or rule placed it
(``method = 'unallocated'``). Its pool is the first of these with GPU-hours (``gpu_hours`` usage rows,
value > 0):

1. ``resource=<id>``: usage of the row's day naming the row's ``resource_id`` (instance, node);
2. ``gpu=<model>``: usage of the row's day naming the row's GPU model (``H100``, ``A10`` ...), so cheap and
   dear GPUs are not averaged;
3. ``day``: all usage of the row's day, only when the row's GPU model is unknown or that day's usage
   names no GPU model.

Usage rows naming a resource that some billing row of the day carries belong to that resource's pool
only; pools 2 and 3 are made of the other usage rows, so no GPU-hour is counted twice.

then the same three over usage given per month (``YYYY-MM``), pool names ending ``@month``. The row is
split across the pool's phases in proportion to their GPU-hours; each part records
``method = 'usage:gpu_hours:<pool>'`` and ``share`` (its phase's hours / the pool's hours). A row with no
pool stays ``unallocated``.

Money stays exact: each cost column is split at its stored scale by largest remainder, so the parts add
up to the row to the last digit; totals per day and currency are checked after every rebuild.
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb

from pipeline.errors import PhasecastError

COSTS = ("billed_cost", "effective_cost", "list_cost", "contracted_cost")
_KEYS = (
    "day, billing_period, provider, billing_account, currency, phase, category, team, model, "
    "service, method, gpu, resource_id"
)
#: Weights are GPU-hours in integer thousandths (exact integer arithmetic on the split; units x weight
#: stays far inside HUGEINT even for DECIMAL(38,18) money).
_WEIGHT_SCALE = 10**3
USAGE_METHOD = "usage:gpu_hours:"
#: The ``daily_facts`` rows usage may split: GPU cost no tag or rule placed.
CANDIDATE = (
    "coalesce(category = 'compute_gpu' AND method = 'unallocated' AND phase = 'unallocated', false)"
)
#: The usage rows pools are made of.
_GPU_HOURS = "lower(trim(metric)) = 'gpu_hours' AND value_sum > 0"
#: ``allocated_facts``: the facts no allocation touches, as stored, and the parts of the rest.
VIEW = f"""
CREATE OR REPLACE VIEW allocated_facts AS
SELECT {_KEYS}, CAST(1.0 AS DOUBLE) AS share, {", ".join(COSTS)}, file_sha256
FROM daily_facts WHERE NOT {CANDIDATE}
UNION ALL
SELECT * FROM allocation_parts
"""
LEGACY_METHOD = "tag_or_rule"  # facts ingested before methods were recorded


@dataclass(frozen=True)
class AllocationSummary:
    enabled: bool
    rows_split: int  # daily_facts rows split by usage
    rows_unmatched: int  # unallocated GPU rows with no usage pool


def _units(expr: str, scale: int) -> str:
    """A DECIMAL(38, scale) value as its exact integer count of 10^-scale units (HUGEINT).

    Integer and fractional parts separately: ``x * 10^scale`` as one DECIMAL would overflow 38 digits."""
    return (
        f"(CAST(trunc({expr}) AS HUGEINT) * CAST({10**scale} AS HUGEINT) + "
        f"CAST(({expr} - trunc({expr})) * {10**scale} AS HUGEINT))"
    )


def _scale(con: duckdb.DuckDBPyConnection) -> int:
    (scale,) = con.execute(
        "SELECT numeric_scale FROM information_schema.columns "
        "WHERE table_name = 'daily_facts' AND column_name = 'billed_cost'"
    ).fetchone()  # type: ignore[misc]
    return int(scale)


def _table_type(con: duckdb.DuckDBPyConnection, name: str) -> str | None:
    """``'BASE TABLE'``, ``'VIEW'`` or None (no such name)."""
    row = con.execute(
        "SELECT table_type FROM information_schema.tables WHERE table_schema = 'main' AND table_name = ?",
        [name],
    ).fetchone()
    return None if row is None else str(row[0])


#: Attribution columns, added to tables of warehouses written before them (no-ops afterwards).
ATTRIBUTION_COLUMNS = """
ALTER TABLE daily_facts ADD COLUMN IF NOT EXISTS service VARCHAR;
ALTER TABLE daily_facts ADD COLUMN IF NOT EXISTS method VARCHAR;
ALTER TABLE daily_facts ADD COLUMN IF NOT EXISTS gpu VARCHAR;
ALTER TABLE daily_facts ADD COLUMN IF NOT EXISTS resource_id VARCHAR;
ALTER TABLE usage_daily ADD COLUMN IF NOT EXISTS gpu VARCHAR;
ALTER TABLE usage_daily ADD COLUMN IF NOT EXISTS resource_id VARCHAR;
ALTER TABLE usage_daily ADD COLUMN IF NOT EXISTS grain VARCHAR;
"""


def ensure_schema(con: duckdb.DuckDBPyConnection) -> None:
    """Add the attribution columns, the view ``allocated_facts`` over ``daily_facts`` and its table of
    parts, and the view ``cost_facts`` (a warehouse from before: built once, in one transaction).
    Called by :func:`pipeline.ingest.warehouse.connect` after its schema."""
    con.execute(ATTRIBUTION_COLUMNS)
    kind = _table_type(con, "allocated_facts")
    if kind == "VIEW" and _table_type(con, "cost_facts") is not None:
        return  # an open must not rewrite the file
    con.execute("BEGIN TRANSACTION")
    try:
        if kind is None:
            # Facts stored before attribution methods were recorded: their phase came from a tag or
            # a rule. The split is made afresh.
            con.execute(
                "UPDATE daily_facts SET method = CASE WHEN phase = 'unallocated' THEN 'unallocated' "
                f"ELSE '{LEGACY_METHOD}' END WHERE method IS NULL"
            )
            rebuild(con, enabled=True)
            con.execute(VIEW)
        elif kind != "VIEW":
            # The whole copy of the facts an earlier release stored: its parts are kept as they are
            # (split or, after --no-allocate, whole), the rest is the facts themselves.
            con.execute(
                "CREATE OR REPLACE TABLE allocation_parts AS SELECT * FROM allocated_facts "
                f"WHERE method LIKE '{USAGE_METHOD}%' OR {CANDIDATE}"
            )
            con.execute("DROP TABLE allocated_facts")
            con.execute(VIEW)
            _check_conserved(con, f"(SELECT * FROM daily_facts WHERE {CANDIDATE})")
        if _table_type(con, "cost_facts") is None:
            con.execute("CREATE VIEW cost_facts AS SELECT * FROM allocated_facts")
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise


def rebuild(con: duckdb.DuckDBPyConnection, *, enabled: bool = True) -> AllocationSummary:
    """Recompute ``allocated_facts`` from ``daily_facts`` and ``usage_daily`` (inside the caller's
    transaction); raise :class:`PhasecastError` if the result does not add up to the facts."""
    if not _has_gpu_hours(con, enabled):
        # Nothing to split by: every candidate is a part as it is stored (a copy, nothing to check).
        con.execute(f"""
            CREATE OR REPLACE TABLE allocation_parts AS
            SELECT {_KEYS}, CAST(1.0 AS DOUBLE) AS share, {", ".join(COSTS)}, file_sha256
            FROM daily_facts WHERE {CANDIDATE}
        """)
        (cands,) = con.execute("SELECT count(*) FROM allocation_parts").fetchone()  # type: ignore[misc]
        return AllocationSummary(enabled, 0, int(cands) if enabled else 0)
    scale = _scale(con)
    one = f"CAST('{10**-scale:.{scale}f}' AS DECIMAL(38,{scale}))" if scale else "1"
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE alloc_cand AS SELECT row_number() OVER () AS cid, * "
        f"FROM daily_facts WHERE {CANDIDATE}"
    )
    # Usage naming a resource that a candidate row of its day (month) carries forms that resource's
    # pool only (``own``): it is not counted again in the GPU-model and whole-day pools.
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE alloc_usage AS
        SELECT *, rid IS NOT NULL AND EXISTS (
                   SELECT 1 FROM alloc_cand c WHERE lower(c.resource_id) = u.rid
                   AND (CASE WHEN u.grain = 'day' THEN c.day ELSE CAST(date_trunc('month', c.day) AS DATE) END) = u.day
               ) AS own
        FROM (SELECT day, coalesce(grain, 'day') AS grain, phase, gpu, lower(resource_id) AS rid,
                     sum(value_sum) AS h
              FROM usage_daily WHERE {_GPU_HOURS}
              GROUP BY ALL) u
    """)
    options = []
    for grain, off, suffix, key in (
        ("day", 0, "", "c.day"),
        ("month", 3, "@month", "CAST(date_trunc('month', c.day) AS DATE)"),
    ):
        on = f"u.grain = '{grain}' AND u.day = {key}"
        options += [
            f"SELECT c.cid, {off + 1} AS pri, 'resource=' || c.resource_id || '{suffix}' AS pool, u.phase, u.h "
            f"FROM alloc_cand c JOIN alloc_usage u ON {on} AND u.rid = lower(c.resource_id)",
            f"SELECT c.cid, {off + 2}, 'gpu=' || c.gpu || '{suffix}', u.phase, u.h "
            f"FROM alloc_cand c JOIN alloc_usage u ON {on} AND u.gpu = c.gpu AND NOT u.own",
            f"SELECT c.cid, {off + 3}, '{grain}', u.phase, u.h "
            f"FROM alloc_cand c JOIN alloc_usage u ON {on} AND NOT u.own "
            f"WHERE c.gpu IS NULL OR NOT EXISTS (SELECT 1 FROM alloc_usage n WHERE n.grain = '{grain}' "
            f"AND n.day = {key} AND n.gpu IS NOT NULL)",
        ]
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE alloc_w AS
        SELECT cid, pool, phase, h, h / sum(h) OVER (PARTITION BY cid) AS share,
               CAST(round(h * {_WEIGHT_SCALE}) AS HUGEINT) AS w
        FROM (
            SELECT * FROM (SELECT cid, pri, pool, phase, sum(h) AS h
                           FROM ({" UNION ALL ".join(options)}) GROUP BY ALL)
            QUALIFY pri = min(pri) OVER (PARTITION BY cid)
        )
    """)
    # Largest remainder per cost column, on integers at the stored scale.
    parts = []
    for c in COSTS:
        parts.append(f"""
            {c}_u AS (
                SELECT cid, phase, sgn, base + CASE WHEN rnk <= a - sum(base) OVER (PARTITION BY cid)
                                                    THEN 1 ELSE 0 END AS u
                FROM (SELECT cid, phase, sgn, a, base,
                             row_number() OVER (PARTITION BY cid ORDER BY rem DESC, phase) AS rnk
                      FROM (SELECT k.cid, k.phase, sign(k.x) AS sgn, abs(k.x) AS a,
                                   abs(k.x) * k.w // k.wt AS base, abs(k.x) * k.w % k.wt AS rem
                            FROM (SELECT w.cid, w.phase, w.w, sum(w.w) OVER (PARTITION BY w.cid) AS wt,
                                         {_units(f"f.{c}", scale)} AS x
                                  FROM alloc_w w JOIN alloc_cand f USING (cid)) k))
            )""")
    money = ", ".join(
        f"CASE WHEN f.{c} IS NULL THEN NULL ELSE CAST(CAST({c}_u.sgn * {c}_u.u AS DECIMAL(38,0)) * "
        f"{one} AS DECIMAL(38,{scale})) END AS {c}"
        for c in COSTS
    )
    joins = " ".join(f"JOIN {c}_u ON {c}_u.cid = w.cid AND {c}_u.phase = w.phase" for c in COSTS)
    con.execute(f"""
        CREATE OR REPLACE TABLE allocation_parts AS
        SELECT {_KEYS}, CAST(1.0 AS DOUBLE) AS share, {", ".join(COSTS)}, file_sha256
        FROM alloc_cand WHERE cid NOT IN (SELECT cid FROM alloc_w)
        UNION ALL
        SELECT * FROM (
            WITH {", ".join(parts)}
            SELECT f.day, f.billing_period, f.provider, f.billing_account, f.currency, w.phase,
                   f.category, f.team, f.model, f.service, '{USAGE_METHOD}' || w.pool AS method,
                   f.gpu, f.resource_id, w.share, {money}, f.file_sha256
            FROM alloc_w w JOIN alloc_cand f ON f.cid = w.cid {joins}
        )
    """)
    (split,) = con.execute("SELECT count(DISTINCT cid) FROM alloc_w").fetchone()  # type: ignore[misc]
    (cands,) = con.execute("SELECT count(*) FROM alloc_cand").fetchone()  # type: ignore[misc]
    _check_conserved(con, "alloc_cand")
    con.execute("DROP TABLE alloc_cand; DROP TABLE alloc_usage; DROP TABLE alloc_w")
    return AllocationSummary(enabled, int(split), int(cands) - int(split) if enabled else 0)


def _has_gpu_hours(con: duckdb.DuckDBPyConnection, enabled: bool) -> bool:
    if not enabled:
        return False
    row = con.execute(f"SELECT 1 FROM usage_daily WHERE {_GPU_HOURS} LIMIT 1").fetchone()
    return row is not None


def _check_conserved(con: duckdb.DuckDBPyConnection, rows: str) -> None:
    """Per day and currency, every cost column of the parts equals the ``rows`` they were made from
    exactly (the rest of ``allocated_facts`` is ``daily_facts`` itself)."""
    sums = ", ".join(f"sum({c}) AS {c}" for c in COSTS)
    (bad,) = con.execute(f"""
        SELECT count(*) FROM (
            (SELECT day, currency, {sums} FROM {rows} GROUP BY ALL
             EXCEPT SELECT day, currency, {sums} FROM allocation_parts GROUP BY ALL)
            UNION ALL
            (SELECT day, currency, {sums} FROM allocation_parts GROUP BY ALL
             EXCEPT SELECT day, currency, {sums} FROM {rows} GROUP BY ALL))
    """).fetchone()  # type: ignore[misc]
    if bad:
        raise PhasecastError(
            f"usage allocation did not conserve costs on {bad} day/currency cell(s); "
            "this is a bug: rerun the ingest with --no-allocate and report it"
        )
