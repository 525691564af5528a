"""Stage one billing file (one SQL pass, aggregated), validate it, attribute it, and apply it.

The row-level work happens once, in DuckDB: read, cast, and group by the day, the billing period, the
account, the currency, the raw Tags text and the fields attribution looks at. Everything after that
(JSON tags, rules, GPU detection, checks) runs on those groups, which are far fewer than rows. Only when
a check fails is the file read again, row by row, to name the offending rows.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import duckdb

from pipeline.errors import InputError, Problem
from pipeline.frames import PHASES
from pipeline.ingest.attribution import Rule, category_sql, fields_used, phase_sql, sql_str
from pipeline.ingest.readers import (
    COSTS,
    DECIMAL,
    NOT_NULL,
    Columns,
    SourceFile,
    day_to_date,
    describe,
    read_error,
    resolve_columns,
    source_sql,
)

log = logging.getLogger(__name__)

#: Text fields kept through the grouping for category detection.
CATEGORY_FIELDS: tuple[str, ...] = (
    "ServiceCategory",
    "ResourceType",
    "SkuId",
    "SkuMeter",
    "SkuPriceDetails",
    "ChargeDescription",
    "ResourceName",
    "PricingUnit",
    "ConsumedUnit",
)
KEY_FIELDS: tuple[str, ...] = ("ProviderName", "BillingAccountId", "BillingCurrency")
MAX_SHOWN = 5
_WH_COSTS = ("billed_cost", "effective_cost", "list_cost", "contracted_cost")

STAGE_DDL = """
CREATE TEMP TABLE IF NOT EXISTS stage (
    file_idx INTEGER, day DATE, billing_period DATE, provider VARCHAR, billing_account VARCHAR,
    currency VARCHAR, phase VARCHAR, category VARCHAR, team VARCHAR, model VARCHAR,
    billed_cost DECIMAL(38,12), effective_cost DECIMAL(38,12), list_cost DECIMAL(38,12),
    contracted_cost DECIMAL(38,12), row_count BIGINT
)
"""


@dataclass(frozen=True)
class Staged:
    file_idx: int
    src: SourceFile
    rows: int


def _group_fields(rules: list[Rule]) -> list[str]:
    fields = set(CATEGORY_FIELDS) | set(fields_used(rules))
    fields.discard("ProviderName")  # already a key
    return sorted(fields)


def stage_file(
    con: duckdb.DuckDBPyConnection, idx: int, src: SourceFile, rules: list[Rule]
) -> Staged:
    """Read, check and attribute one file into the temp table ``stage``; raise InputError on bad input."""
    cols = resolve_columns(src, describe(con, src))
    con.execute(STAGE_DDL)
    fields = _group_fields(rules)
    dec = {c: cols.decimal(c) for c in COSTS}
    day, _ = cols.day("ChargePeriodStart")
    bp, _ = cols.day("BillingPeriodStart")
    # Text is grouped on as read; NULL words become NULL after grouping (cheaper than per row).
    raw_text = {f: cols.text(f) for f in (*KEY_FIELDS, "ServiceName", *fields, "Tags")}
    bad = " OR ".join(
        [f"{dec[c][0]} IS NULL" for c in ("BilledCost", "EffectiveCost", "ListCost")]
        + [f"({dec['ContractedCost'][1]} IS NOT NULL AND {dec['ContractedCost'][0]} IS NULL)"]
        + [f"{day} IS NULL", f"{bp} IS NULL"]
    )
    g_text = ["ProviderName", "BillingAccountId", "BillingCurrency", "ServiceName", *fields, "Tags"]
    proj = ", ".join(
        ["day", "billing_period"]
        + [
            f"nullif(nullif(f_{f}, 'NULL'), '') AS f_{f}"
            if cols.types.get(f) == "VARCHAR"
            else f"f_{f}"
            for f in g_text
        ]
        + [f"CAST(s_{c} AS {DECIMAL}) AS {w}" for c, w in zip(COSTS, _WH_COSTS, strict=True)]
        + ["row_count", "n_bad"]
    )
    inner = ", ".join(
        [f"{day} AS day", f"{bp} AS billing_period"]
        + [f"{raw_text[f]} AS f_{f}" for f in g_text]
        + [f"{dec[c][0]} AS c_{c}" for c in COSTS]
        + [f"({bad}) AS bad"]
    )
    # The attribution fields of a group, and a 64-bit hash of them to join attributions back on.
    attr_keys = [f"f_{f}" for f in ("ProviderName", "ServiceName", *fields, "Tags")]
    grouped = f"""
        CREATE OR REPLACE TEMP TABLE groups AS
        SELECT *, hash({", ".join(attr_keys)}) AS k FROM (
        SELECT {proj.replace("day, billing_period", f"{day_to_date('day')} AS day, {day_to_date('billing_period')} AS billing_period", 1)}
        FROM (
            SELECT day, billing_period, {", ".join(f"f_{f}" for f in g_text)},
                   {", ".join(f"sum(c_{c}) AS s_{c}" for c in COSTS)},
                   count(*) AS row_count, count_if(bad) AS n_bad
            FROM (SELECT {inner} FROM {source_sql(src)})
            GROUP BY ALL
        ))
    """
    try:
        con.execute(grouped)
    except duckdb.Error as exc:
        raise read_error(src, exc) from None
    n_rows, n_bad = con.execute(
        "SELECT coalesce(sum(row_count), 0), coalesce(sum(n_bad), 0) + coalesce(sum(row_count) FILTER "
        "(WHERE f_BillingCurrency IS NULL AND n_bad = 0), 0) FROM groups"
    ).fetchone()  # type: ignore[misc]
    if n_rows == 0:
        raise InputError(
            Problem("the file has a header but no data rows", str(src.path)),
            fix="re-export the billing period, or remove the empty file",
        )
    if n_bad:
        raise _row_problems(con, src, cols, int(n_bad))

    # Attribution (JSON tags, rule regexes, GPU regex) depends only on the text fields, and a file has
    # few distinct combinations of them (thousands) against many day groups (hundreds of thousands):
    # attribute each combination once, then join the result back to the day groups.
    # The join on the hash ``k`` is exact unless two combinations of the file share a hash; then it
    # falls back to comparing the fields themselves.
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE combos AS SELECT DISTINCT k, {', '.join(attr_keys)} FROM groups"
    )
    (unique_k,) = con.execute("SELECT count(*) = count(DISTINCT k) FROM combos").fetchone()  # type: ignore[misc]
    _check_tags(con, src, cols)
    col = {f: f"f_{f}" for f in ("ServiceName", *fields)}
    col["ProviderName"] = "f_ProviderName"
    phase_rule = phase_sql(rules, col, "f_Tags")
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE attributed AS
        SELECT k, {", ".join(attr_keys)}, coalesce(tag_phase, {phase_rule}) AS phase,
               {category_sql(col)} AS category, tag_team AS team, tag_model AS model
        FROM (SELECT *, {_tag_phase("f_Tags")} AS tag_phase,
                     nullif(json_extract_string(f_Tags, '$.team'), '') AS tag_team,
                     nullif(json_extract_string(f_Tags, '$.model'), '') AS tag_model
              FROM combos)
    """)
    if unique_k:
        on = "g.k = a.k"
    else:  # NULL text is a value here (an untagged row has Tags NULL), hence IS NOT DISTINCT FROM
        on = " AND ".join(f"g.{k} IS NOT DISTINCT FROM a.{k}" for k in attr_keys)
    con.execute(f"""
        INSERT INTO stage
        SELECT {idx}, g.day, g.billing_period, g.f_ProviderName, g.f_BillingAccountId,
               g.f_BillingCurrency, a.phase, a.category, a.team, a.model,
               g.billed_cost, g.effective_cost, g.list_cost, g.contracted_cost, g.row_count
        FROM groups g JOIN attributed a ON {on}
    """)
    con.execute("DROP TABLE groups; DROP TABLE combos; DROP TABLE attributed")
    return Staged(idx, src, int(n_rows))


def _tag_phase(tags: str) -> str:
    """The normalised ``phase`` tag ('Fine-Tuning' -> 'fine_tuning'), NULL when absent or empty."""
    return f"nullif(replace(replace(lower(trim(json_extract_string({tags}, '$.phase'))), '-', '_'), ' ', '_'), '')"


def _numbered(src: SourceFile, proj: str, where: str) -> str:
    """Rows where ``where`` (over the raw columns) holds, with their 1-based data row number first."""
    return (
        f"SELECT * FROM (SELECT row_number() OVER () AS rn, {proj}, ({where}) AS _hit FROM {source_sql(src)}) "
        f"WHERE _hit ORDER BY rn"
    )


def _row_problems(
    con: duckdb.DuckDBPyConnection, src: SourceFile, cols: Columns, n_bad: int
) -> InputError:
    """Name the first offending rows and columns (second, ordered read; only on failure)."""
    checks: list[tuple[str, str, str]] = []  # (column, raw expr, typed expr)
    for c in COSTS:
        typed, raw = cols.decimal(c)
        if c in cols.raw:
            checks.append((c, raw, typed))
    for c in ("ChargePeriodStart", "BillingPeriodStart"):
        typed, raw = cols.day(c)
        checks.append((c, raw, typed))
    cur = cols.text_nullword("BillingCurrency")
    checks.append(("BillingCurrency", cur, cur))
    proj = ", ".join(
        f"CAST({raw} AS VARCHAR) AS r{i}, ({typed}) IS NULL AS b{i}"
        for i, (_, raw, typed) in enumerate(checks)
    )
    where = " OR ".join(f"({typed}) IS NULL" for _, _, typed in checks)
    problems: list[Problem] = []
    rows = _ordered(con, _numbered(src, proj, where) + f" LIMIT {MAX_SHOWN}")
    for row in rows:
        rn = int(row[0])
        for i, (name, _, _) in enumerate(checks):
            raw_val, is_bad = row[1 + 2 * i], row[2 + 2 * i]
            if not is_bad:
                continue
            if raw_val is None:
                if name in NOT_NULL:
                    problems.append(
                        Problem("empty (NULL) but a value is required", str(src.path), rn, name)
                    )
            else:
                kind = "a date/time" if "Period" in name else "a decimal number"
                problems.append(
                    Problem(f"cannot read {raw_val!r} as {kind}", str(src.path), rn, name)
                )
    head = f"{n_bad} row(s) of {src.path} have unreadable or missing values; the first ones:"
    return InputError(
        [Problem(head), *problems],
        fix="costs must be plain decimal numbers (e.g. 12.3400, -0.5), dates ISO 8601 "
        "(2026-09-01T00:00:00Z), and BilledCost, EffectiveCost, ListCost, BillingCurrency, "
        "BillingPeriodStart and ChargePeriodStart filled on every row; correct or re-export the file",
    )


def _check_tags(con: duckdb.DuckDBPyConnection, src: SourceFile, cols: Columns) -> None:
    """Tags must be JSON objects and a ``phase`` tag one of the known phases."""
    if "Tags" not in cols.raw:
        return
    known = ", ".join(sql_str(p) for p in PHASES)
    bad_json = con.execute(
        "SELECT f_Tags FROM combos WHERE f_Tags IS NOT NULL AND NOT json_valid(f_Tags) LIMIT 1"
    ).fetchall()
    tags = cols.text_nullword("Tags")
    if bad_json:
        where = f"{tags} IS NOT NULL AND NOT json_valid({tags})"
        rows = _ordered(con, _numbered(src, f"{tags} AS t", where) + f" LIMIT {MAX_SHOWN}")
        raise InputError(
            [
                Problem(f"Tags is not valid JSON: {r[1][:80]!r}", str(src.path), int(r[0]), "Tags")
                for r in rows
            ],
            fix='Tags must be a JSON object such as {"phase": "inference", "team": "search"}, or empty / NULL',
        )
    bad_phase = con.execute(
        f"SELECT DISTINCT f_Tags FROM combos WHERE {_tag_phase('f_Tags')} NOT IN ({known}) LIMIT 1"
    ).fetchall()
    if bad_phase:
        where = f"{_tag_phase(tags)} NOT IN ({known})"
        rows = _ordered(
            con,
            _numbered(src, f"json_extract_string({tags}, '$.phase') AS p", where)
            + f" LIMIT {MAX_SHOWN}",
        )
        raise InputError(
            [
                Problem(f"unknown phase tag {r[1]!r}", str(src.path), int(r[0]), "Tags")
                for r in rows
            ],
            fix=f"the Tags key 'phase' must be one of {', '.join(PHASES)} (or absent, so the attribution rules decide)",
        )


def _ordered(con: duckdb.DuckDBPyConnection, sql: str) -> list[tuple]:
    """Run with one thread so ``row_number() OVER ()`` follows the file's row order."""
    (threads,) = con.execute("SELECT current_setting('threads')").fetchone()  # type: ignore[misc]
    con.execute("SET threads=1")
    con.execute("SET preserve_insertion_order=true")
    try:
        rows = con.execute(sql).fetchall()
    except duckdb.Error:
        con.execute(
            "ROLLBACK"
        )  # the transaction is aborted anyway; let the caller's ROLLBACK be a no-op
        con.execute("BEGIN TRANSACTION")
        raise
    con.execute(f"SET threads={int(threads)}")
    con.execute("SET preserve_insertion_order=false")
    return rows
