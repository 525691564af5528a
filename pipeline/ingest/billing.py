"""Stage billing files (one SQL pass each, aggregated), validate them, attribute them, and apply them.

The row-level work happens once per file, in DuckDB: read, cast, check, and group by the day, the
billing period and the text fields attribution looks at (for Parquet, by a hash of them, proved to
stand for one combination: :func:`_scan_by_hash`). Everything after that (JSON tags, rules, GPU
detection, checks) runs on those groups and on the distinct text combinations, far fewer than rows;
attribution runs once for all the files of a call (:func:`attribute`). Only when a check fails is the
file read again, row by row, to name the offending rows.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import Any

import duckdb

from pipeline.currency import sql_codes
from pipeline.errors import InputError, Problem
from pipeline.frames import PHASES
from pipeline.ingest.attribution import (
    EXTRA_FIELDS,
    Rule,
    category_desc_sql,
    category_sql,
    fields_used,
    gpu_model_sql,
    method_phase_sql,
    method_sql,
    sql_str,
    with_extra_columns,
)
from pipeline.ingest.readers import (
    COSTS,
    DECIMAL,
    NOT_NULL,
    Columns,
    SourceFile,
    _fits_exactly,
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

#: Attribution text of the staged rows, one row per distinct combination (``aid``).
ATTRS = (
    "provider",
    "billing_account",
    "currency",
    "phase",
    "category",
    "team",
    "model",
    "service",
    "method",
    "gpu",
    "resource_id",
)
#: ``stage``: the staged facts of every file read in this call. The day groups (``stage_rows``) carry
#: the number of their attribution (``stage_attrs``), not its text: far fewer rows of text to write.
STAGE_DDL = f"""
CREATE TEMP TABLE IF NOT EXISTS stage_rows (
    file_idx INTEGER, day DATE, billing_period DATE, aid BIGINT,
    billed_cost DECIMAL(38,18), effective_cost DECIMAL(38,18), list_cost DECIMAL(38,18),
    contracted_cost DECIMAL(38,18), row_count BIGINT
);
CREATE TEMP TABLE IF NOT EXISTS stage_attrs (aid BIGINT, {", ".join(f"{a} VARCHAR" for a in ATTRS)});
CREATE TEMP VIEW IF NOT EXISTS stage AS
SELECT r.file_idx, r.day, r.billing_period, a.provider, a.billing_account, a.currency, a.phase,
       a.category, a.team, a.model, r.billed_cost, r.effective_cost, r.list_cost,
       r.contracted_cost, r.row_count, a.service, a.method, a.gpu, a.resource_id
FROM stage_rows r JOIN stage_attrs a USING (aid);
"""


@dataclass(frozen=True)
class Staged:
    file_idx: int
    src: SourceFile
    rows: int
    #: Billing periods (YYYY-MM) the file carries.
    periods: list[str]


def _group_fields(rules: list[Rule], cols: Columns | None = None) -> list[str]:
    # ResourceId names the GPU pool usage allocation splits; x_UsageType helps GPU detection.
    present = [f for f in EXTRA_FIELDS if cols is not None and f in cols.raw]
    fields = set(CATEGORY_FIELDS) | set(fields_used(rules)) | {"ResourceId"} | set(present)
    fields.discard("ProviderName")  # already a key
    return sorted(fields)


def stage_file(
    con: duckdb.DuckDBPyConnection, idx: int, src: SourceFile, rules: list[Rule]
) -> Staged:
    """Read, check and attribute one file into the temp table ``stage``; raise InputError on bad input."""
    st = scan_file(con, idx, src, rules)
    attribute(con, rules)
    return st


def scan_file(
    con: duckdb.DuckDBPyConnection, idx: int, src: SourceFile, rules: list[Rule]
) -> Staged:
    """Read and check one file; its day groups and text combinations wait in ``pend_groups`` and
    ``pend_combos`` for :func:`attribute`; raise InputError on bad input.

    One scan groups the rows on the day, the billing period and the text fields (:func:`_scan`,
    :func:`_scan_by_hash`). Everything after it works on ``grouped`` (day, period, a number ``k`` per
    text combination, the sums: no text) and ``combos`` (``k`` and its text: a few thousand rows), so
    checks and text totals cost little whatever the number of day groups.
    """
    schema = describe(con, src)
    cols = with_extra_columns(resolve_columns(src, schema), schema)
    con.execute(STAGE_DDL)
    con.execute(_pend_ddl(rules))
    fields = _group_fields(rules, cols)
    day, _ = cols.day("ChargePeriodStart")
    raw_text = {f: cols.text(f) for f in (*KEY_FIELDS, "ServiceName", *fields, "Tags")}
    bad = " OR ".join(_row_checks(cols))
    g_text = ["ProviderName", "BillingAccountId", "BillingCurrency", "ServiceName", *fields, "Tags"]
    # Columns the file lacks are NULL constants: left out of the scan and the hash, added back after.
    keys = ("ProviderName", "BillingAccountId", "BillingCurrency")
    absent = {f for f in g_text if raw_text[f] == "NULL" and f not in keys}
    present = [f for f in dict.fromkeys(g_text) if f not in absent]
    inner = ", ".join(
        [f"{day} AS day", f"{cols.raw['BillingPeriodStart']} AS billing_period"]
        + [f"{raw_text[f]} AS f_{f}" for f in present]
        + [f"{_summand(cols, c, cols.decimal(c)[0])} AS c_{c}" for c in COSTS]
        + [f"({bad}) AS bad"]
    )
    try:
        if not (
            src.fmt == "parquet"
            and "file_row_number" not in schema
            and _scan_by_hash(con, src, inner, {f: raw_text[f] for f in present})
        ):
            _scan(con, src, inner, present)
    except duckdb.Error as exc:
        raise read_error(src, exc) from None
    # The rows were grouped on the raw BillingPeriodStart (a file has a few values; parsing text per
    # row costs as much as a cost column's checks): ``bp`` is its day number (NULL when unreadable),
    # computed on the groups where they are read.
    bp = replace(cols, raw={**cols.raw, "BillingPeriodStart": "billing_period"}).billing_period()[0]
    # Text as attribution reads it: the words NULL and '' are NULL; absent columns NULL.
    nullword = {
        f: f"nullif(nullif(f_{f}, 'NULL'), '') AS f_{f}"
        if cols.types.get(f) == "VARCHAR"
        else f"f_{f}"
        for f in present
    }
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE combos AS
        SELECT k, {", ".join([*(nullword[f] for f in present), *(f"CAST(NULL AS VARCHAR) AS f_{f}" for f in sorted(absent))])}
        FROM combos_raw
    """)
    con.execute("DROP TABLE combos_raw")
    # The day groups by the text the report and the checks read (provider, account, raw period and
    # currency): one pass over the groups, a few rows.
    con.execute("""
        CREATE OR REPLACE TEMP TABLE key_groups AS
        SELECT c.f_ProviderName AS provider, c.f_BillingAccountId AS billing_account, g.billing_period,
               c.f_BillingCurrency AS currency, sum(g.s_BilledCost) AS billed, sum(g.s_EffectiveCost) AS effective,
               sum(g.s_ListCost) AS list, sum(g.row_count) AS row_count, sum(g.n_bad) AS n_bad
        FROM grouped g JOIN combos c USING (k) GROUP BY ALL
    """)
    # The exact text totals per (provider, account, period, currency) the report checks the warehouse
    # against: sums of the file's own numbers by its own key text, before attribution and allocation.
    con.execute(f"""
        INSERT INTO text_keys
        SELECT {idx}, NULL, provider, billing_account, {day_to_date(bp)}, upper(trim(currency)),
               sum(billed), sum(effective), sum(list)
        FROM key_groups GROUP BY ALL
    """)
    # Per-group checks: currency ISO 4217 (any case), billing period readable and on a first of
    # month; every row of a group failing one is bad, else the group's bad rows are.
    bad_currency = f"upper(trim(coalesce(currency, ''))) NOT IN ({sql_codes()})"
    group_bad = f"{bad_currency} OR {bp} IS NULL OR dayofmonth({day_to_date(bp)}) <> 1"
    n_rows, n_bad = con.execute(f"""
        SELECT coalesce(sum(row_count), 0),
               coalesce(sum(CASE WHEN {group_bad} THEN row_count ELSE n_bad END), 0)
        FROM key_groups
    """).fetchone()  # type: ignore[misc]
    con.execute("DROP TABLE key_groups")
    if n_rows == 0:
        raise InputError(
            Problem("the file has a header but no data rows", str(src.path)),
            fix="re-export the billing period, or remove the empty file",
        )
    if n_bad:
        raise _row_problems(con, src, cols, int(n_bad))

    _check_tags(con, src, cols)
    every = _text_fields(rules)
    con.execute(f"""
        INSERT INTO pend_groups
        SELECT {idx}, day, {bp}, k, {", ".join(f"s_{c}" for c in COSTS)}, row_count FROM grouped
    """)
    con.execute(f"""
        INSERT INTO pend_combos (file_idx, k, {", ".join(f"f_{f}" for f in every)})
        SELECT {idx}, k, {", ".join(f"f_{f}" if f in present or f in absent else "NULL" for f in every)}
        FROM combos
    """)
    con.execute("DROP TABLE grouped; DROP TABLE combos")
    periods = [
        r[0]
        for r in con.execute(
            f"SELECT DISTINCT strftime(billing_period, '%Y-%m') FROM text_keys WHERE file_idx = {idx} ORDER BY 1"
        ).fetchall()
    ]
    return Staged(idx, src, int(n_rows), periods)


def _text_fields(rules: list[Rule]) -> list[str]:
    """Every text field a file's combinations may carry (NULL when the file lacks it)."""
    return list(dict.fromkeys([*KEY_FIELDS, "ServiceName", *_group_fields_all(rules), "Tags"]))


def _group_fields_all(rules: list[Rule]) -> list[str]:
    fields = set(CATEGORY_FIELDS) | set(fields_used(rules)) | {"ResourceId"} | set(EXTRA_FIELDS)
    fields.discard("ProviderName")
    return sorted(fields)


def _pend_ddl(rules: list[Rule]) -> str:
    return f"""
        CREATE TEMP TABLE IF NOT EXISTS pend_groups (
            file_idx INTEGER, day BIGINT, billing_period BIGINT, k UBIGINT,
            {", ".join(f"s_{c} {DECIMAL}" for c in COSTS)}, row_count BIGINT);
        CREATE TEMP TABLE IF NOT EXISTS pend_combos (
            file_idx INTEGER, k UBIGINT, {", ".join(f"f_{f} VARCHAR" for f in _text_fields(rules))});
    """


def attribute(con: duckdb.DuckDBPyConnection, rules: list[Rule]) -> None:
    """Attribute the files :func:`scan_file` left pending, all at once, into ``stage``.

    Attribution (JSON tags, rule regexes, GPU regex) depends only on the text fields: once per distinct
    combination of all pending files (one query however many files: binding the rules costs more than
    applying them), joined back to the day groups, which are then summed per attribution (integers)."""
    con.execute(STAGE_DDL)
    con.execute(_pend_ddl(rules))
    every = _text_fields(rules)
    f = [f"f_{x}" for x in every]
    col = {x: f"f_{x}" for x in every if x not in KEY_FIELDS}
    col["ProviderName"] = "f_ProviderName"
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE attr_in AS
        SELECT row_number() OVER () AS u, * FROM (SELECT DISTINCT {", ".join(f)} FROM pend_combos)
    """)
    # method: 'tag', 'rule:<name>' or 'unallocated'; the GPU model and resource of GPU rows left
    # unallocated name the pool usage-based allocation may split (pipeline.ingest.allocation).
    rule_method = method_sql(rules, col, "f_Tags")
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE attributed AS
        SELECT *, dense_rank() OVER (ORDER BY provider, billing_account, currency, phase, category,
                                     team, model, service, method, gpu, resource_id) AS aid
        FROM (
        SELECT u, f_ProviderName AS provider, f_BillingAccountId AS billing_account,
               upper(trim(f_BillingCurrency)) AS currency, phase, category, team, model,
               f_ServiceName AS service, method,
               CASE WHEN category = 'compute_gpu' THEN {gpu_model_sql(category_desc_sql(col))} END AS gpu,
               CASE WHEN category = 'compute_gpu' AND method = 'unallocated' THEN f_ResourceId END AS resource_id
        FROM (
        SELECT *, coalesce(tag_phase, {method_phase_sql(rules, "rule_method")}) AS phase,
               CASE WHEN tag_phase IS NOT NULL THEN 'tag' ELSE rule_method END AS method,
               {category_sql(col)} AS category, tag_team AS team, tag_model AS model
        FROM (SELECT *, {_tag_phase("f_Tags")} AS tag_phase, {rule_method} AS rule_method,
                     nullif(json_extract_string(f_Tags, '$.team'), '') AS tag_team,
                     nullif(json_extract_string(f_Tags, '$.model'), '') AS tag_model
              FROM attr_in)))
    """)
    # NULL text is a value here (an untagged row has Tags NULL), hence IS NOT DISTINCT FROM.
    on = " AND ".join(f"p.{x} IS NOT DISTINCT FROM i.{x}" for x in f)
    first = _next_aid(con)
    con.execute(f"""
        INSERT INTO stage_attrs
        SELECT aid + {first}, {", ".join(ATTRS)} FROM (SELECT DISTINCT ON (aid) * FROM attributed)
    """)
    con.execute(f"""
        INSERT INTO stage_rows
        SELECT g.file_idx, {day_to_date("g.day")}, {day_to_date("g.billing_period")}, m.aid + {first},
               {", ".join(f"sum(g.s_{c})" for c in COSTS)}, sum(g.row_count)
        FROM pend_groups g
        JOIN (SELECT p.file_idx, p.k, a.aid FROM pend_combos p JOIN attr_in i ON {on}
              JOIN attributed a USING (u)) m USING (file_idx, k)
        GROUP BY g.file_idx, g.day, g.billing_period, m.aid
    """)
    con.execute(
        "DROP TABLE attr_in; DROP TABLE attributed; DELETE FROM pend_groups; DELETE FROM pend_combos"
    )


def _next_aid(con: duckdb.DuckDBPyConnection) -> int:
    """The offset that makes the attribution numbers of a new batch differ from those staged before."""
    (last,) = con.execute("SELECT coalesce(max(aid), 0) FROM stage_attrs").fetchone()  # type: ignore[misc]
    return int(last)


def _scan_by_hash(
    con: duckdb.DuckDBPyConnection, src: SourceFile, inner: str, text: dict[str, str]
) -> bool:
    """:func:`_scan` of a Parquet file without grouping on the text: the rows are grouped on the day,
    the period and ``k``, a 64-bit hash of the text fields (``text``: name -> SQL over the raw
    columns); each combination's text is then read from one of its rows (by Parquet row number).
    False (nothing made) if a hash may cover two combinations.

    Grouping on one integer instead of ~15 text columns halves the scan. Every group also carries
    ``g``, a second hash of the same fields combined in reverse order: two combinations that share
    ``k`` (a collision of the 64-bit combination) differ in ``g`` (but for another 64-bit chance), a ``k`` whose rows have two values
    of ``g`` covers two combinations, and the caller then groups on the text itself. The text read
    back must hash to its ``k`` and ``g`` too. What this does not see is two values of one field
    whose own 64-bit hashes are equal and that appear with every other field the same: for a file
    with a million distinct values of a field, a chance of about 1 in 4 x 10^7. The file's totals
    stay exact even then (the sums are over the rows), but that group's cost would be attributed
    with the text (team, service, tags) of one of the two combinations. Prefixing each
    field before ``g`` (a different hash per value) closed that too, for about a fifth of the scan's time."""
    f = [f"f_{x}" for x in text]

    def hashes(t: str) -> tuple[str, str]:
        fwd = ", ".join(t + x for x in f)
        rev = ", ".join(t + x for x in reversed(f))
        return f"hash({fwd})", f"hash({rev})"

    h, g = hashes("")
    p = str(src.path).replace("'", "''")
    rows = f"read_parquet('{p}', file_row_number=true)"
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE grouped AS
        SELECT day, billing_period, k, {", ".join(f"sum(c_{c}) AS s_{c}" for c in COSTS)},
               count(*) AS row_count, count_if(bad) AS n_bad,
               min(g) AS g, max(g) AS g_max, min(rn) AS rep
        FROM (SELECT *, {h} AS k, {g} AS g FROM (SELECT {inner}, file_row_number AS rn FROM {rows}))
        GROUP BY day, billing_period, k
    """)
    con.execute("""
        CREATE OR REPLACE TEMP TABLE reps AS
        SELECT k, min(rep) AS rep, min(g) AS g, min(g) = max(g_max) AS one FROM grouped GROUP BY k
    """)
    (one,) = con.execute("SELECT coalesce(bool_and(one), true) FROM reps").fetchone()  # type: ignore[misc]
    if one:
        con.execute(f"""
            CREATE OR REPLACE TEMP TABLE combos_raw AS
            SELECT r.k, {", ".join(f"t.{x}" for x in f)}, r.g
            FROM (SELECT file_row_number AS rn, {", ".join(f"{e} AS f_{n}" for n, e in text.items())}
                  FROM {rows} WHERE file_row_number IN (SELECT rep FROM reps)) t
            JOIN reps r ON r.rep = t.rn
        """)
        hc, gc = hashes("c.")
        (one,) = con.execute(f"""
            SELECT count(*) = (SELECT count(*) FROM reps) AND coalesce(bool_and({hc} = k AND {gc} = g), true)
            FROM combos_raw c
        """).fetchone()  # type: ignore[misc]
    con.execute("DROP TABLE reps")
    if not one:
        log.info("%s: a hash covers two text combinations; grouping on the text", src.path)
        con.execute("DROP TABLE IF EXISTS grouped; DROP TABLE IF EXISTS combos_raw")
    return bool(one)


def _scan(con: duckdb.DuckDBPyConnection, src: SourceFile, inner: str, present: list[str]) -> None:
    """The one scan of the file: ``grouped`` (day, period, ``k``, exact sums, rows, bad rows) and
    ``combos_raw`` (each text combination as read, and its number ``k``).

    The rows are grouped on the text itself (exact); ``k`` is a 64-bit hash of it, computed on the
    groups, and used only when no two combinations of the file share one (else a row number)."""
    f = [f"f_{x}" for x in present]
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE grouped_text AS
        SELECT day, billing_period, {", ".join(f)}, {", ".join(f"sum(c_{c}) AS s_{c}" for c in COSTS)},
               count(*) AS row_count, count_if(bad) AS n_bad
        FROM (SELECT {inner} FROM {source_sql(src)})
        GROUP BY day, billing_period, {", ".join(f)}
    """)
    h = f"hash({', '.join(f)})"
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE combos_raw AS
        SELECT {h} AS k, * FROM (SELECT DISTINCT {", ".join(f)} FROM grouped_text)
    """)
    (unique_k,) = con.execute("SELECT count(*) = count(DISTINCT k) FROM combos_raw").fetchone()  # type: ignore[misc]
    sums = ", ".join(f"s_{c}" for c in COSTS)
    if unique_k:
        con.execute(f"""
            CREATE OR REPLACE TEMP TABLE grouped AS
            SELECT day, billing_period, {h} AS k, {sums}, row_count, n_bad FROM grouped_text
        """)
    else:  # NULL text is a value here (an untagged row has Tags NULL), hence IS NOT DISTINCT FROM
        log.info("%s: two text combinations share a hash; joining on the text", src.path)
        con.execute(
            "CREATE OR REPLACE TEMP TABLE combos_raw AS "
            "SELECT row_number() OVER () AS k, * EXCLUDE (k) FROM combos_raw"
        )
        on = " AND ".join(f"g.{x} IS NOT DISTINCT FROM c.{x}" for x in f)
        con.execute(f"""
            CREATE OR REPLACE TEMP TABLE grouped AS
            SELECT g.day, g.billing_period, c.k, {", ".join(f"g.s_{c}" for c in COSTS)}, g.row_count, g.n_bad
            FROM grouped_text g JOIN combos_raw c ON {on}
        """)
    con.execute("DROP TABLE grouped_text")


def _exact_decimal(cols: Columns, c: str) -> bool:
    """A DECIMAL column whose every value fits ``DECIMAL(38,18)``: summed at its own scale (the sum is
    exact, DuckDB raises on overflow) and cast once per group instead of once per row."""
    t = cols.types.get(c, "")
    return c in cols.raw and t.startswith("DECIMAL") and _fits_exactly(t)


def _summand(cols: Columns, c: str, typed: str) -> str:
    return cols.raw[c] if _exact_decimal(cols, c) else typed


def _row_checks(cols: Columns) -> list[str]:
    """SQL conditions, each true on a bad row: unreadable or lossy costs, a missing or unreadable
    ChargePeriodStart, a charge period ending before it starts. (BillingPeriodStart, the currency
    and the text are checked on the groups, by :func:`scan_file`.)"""
    dec = {c: cols.decimal(c) for c in COSTS}
    # an exact decimal is never lost by the cast: only a NULL is bad
    typed = {c: cols.raw[c] if _exact_decimal(cols, c) else dec[c][0] for c in COSTS}
    out = [f"{typed[c]} IS NULL" for c in ("BilledCost", "EffectiveCost", "ListCost")]
    out.append(f"({dec['ContractedCost'][1]} IS NOT NULL AND {typed['ContractedCost']} IS NULL)")
    out += [cols.lossy(c) for c in COSTS if c in cols.raw]
    out += [
        f"{cols.day('ChargePeriodStart')[0]} IS NULL",
    ]
    if "ChargePeriodEnd" in cols.raw:
        end_raw = cols.day("ChargePeriodEnd")[1]
        end, start = cols.micros("ChargePeriodEnd"), cols.micros("ChargePeriodStart")
        out.append(f"({end_raw} IS NOT NULL AND ({end} IS NULL OR {end} < {start}))")
    return out


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
    # (column, raw text expr, SQL true when bad, message given the raw text)
    checks: list[tuple[str, str, str, str]] = []
    for c in COSTS:
        if c not in cols.raw:
            continue
        typed, raw = cols.decimal(c)
        unread = (
            f"({typed}) IS NULL" if c in NOT_NULL else f"{raw} IS NOT NULL AND ({typed}) IS NULL"
        )
        # Digit loss first: a value too wide for DECIMAL(38,18) is also unreadable by the cast.
        checks.append((c, raw, cols.lossy(c), "lossy"))
        checks.append((c, raw, unread, "read"))
    for c in ("ChargePeriodStart", "BillingPeriodStart"):
        typed, raw = cols.day(c) if c == "ChargePeriodStart" else cols.billing_period()
        checks.append((c, raw, f"({typed}) IS NULL", "read"))
    bp = day_to_date(cols.billing_period()[0])
    checks.append(
        ("BillingPeriodStart", cols.day("BillingPeriodStart")[1], f"dayofmonth({bp}) <> 1", "first")
    )
    if "ChargePeriodEnd" in cols.raw:
        end_raw = cols.day("ChargePeriodEnd")[1]
        end, start = cols.micros("ChargePeriodEnd"), cols.micros("ChargePeriodStart")
        checks.append(
            ("ChargePeriodEnd", end_raw, f"{end_raw} IS NOT NULL AND {end} IS NULL", "read")
        )
        checks.append(("ChargePeriodEnd", end_raw, f"{end} < {start}", "before"))
    cur = cols.text_nullword("BillingCurrency")
    checks.append(("BillingCurrency", cur, f"{cur} IS NULL", "read"))
    checks.append(
        ("BillingCurrency", cur, f"upper(trim({cur})) NOT IN ({sql_codes()})", "currency")
    )
    proj = ", ".join(
        f"CAST({raw} AS VARCHAR) AS r{i}, coalesce({bad}, false) AS b{i}"
        for i, (_, raw, bad, _) in enumerate(checks)
    )
    where = " OR ".join(f"coalesce({bad}, false)" for _, _, bad, _ in checks)
    problems: list[Problem] = []
    kinds: set[str] = set()
    rows = _ordered(con, _numbered(src, proj, where) + f" LIMIT {MAX_SHOWN}")
    for row in rows:
        rn = int(row[0])
        seen: set[str] = set()
        for i, (name, _, _, kind) in enumerate(checks):
            raw_val, is_bad = row[1 + 2 * i], row[2 + 2 * i]
            if not is_bad or name in seen:
                continue
            seen.add(name)
            kinds.add(kind)
            problems.append(Problem(_message(kind, name, raw_val), str(src.path), rn, name))
    head = f"{n_bad} row(s) of {src.path} have unreadable, missing or impossible values; the first ones:"
    fixes = {
        "read": "costs must be plain decimal numbers (e.g. 12.3400, -0.5), dates ISO 8601 "
        "(2026-09-01T00:00:00Z), and BilledCost, EffectiveCost, ListCost, BillingCurrency, "
        "BillingPeriodStart and ChargePeriodStart filled on every row",
        "lossy": "costs are kept exactly with at most 18 digits after the point and 20 before: "
        "export them with fewer decimals (the provider's own rounding), never let phasecast guess",
        "first": "BillingPeriodStart must be the first day of a month (00:00 UTC); re-export the "
        "period with the provider's billing period, not the export date",
        "before": "ChargePeriodEnd must not be before ChargePeriodStart; re-export the file",
        "currency": "BillingCurrency must be an ISO 4217 code such as USD or EUR",
    }
    return InputError(
        [Problem(head), *problems],
        fix="; ".join(fixes[k] for k in fixes if k in kinds or not kinds)
        + "; correct or re-export the file",
    )


def _message(kind: str, column: str, raw: object) -> str:
    if kind == "read":
        if raw is None:
            return "empty (NULL) but a value is required"
        what = "a date/time" if "Period" in column else "a decimal number"
        return f"cannot read {raw!r} as {what}"
    if kind == "lossy":
        return (
            f"{raw!r} has more digits than phasecast keeps exactly (18 after the point, 20 before)"
        )
    if kind == "first":
        return f"{raw!r} is not the first day of a month; a billing period starts on the 1st"
    if kind == "before":
        return f"{raw!r} is before the row's ChargePeriodStart"
    return f"{raw!r} is not an ISO 4217 currency code"


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


def stage_partition(
    src: SourceFile, rules: list[Rule], memory_limit: str = "1GB", threads: int = 1
) -> tuple[Any, Any, int, list[str]] | tuple[list[Any], str]:
    """:func:`stage_file` of one partition in a private in-memory DuckDB, where the file is (a Dask
    worker): the staged day groups and the text totals as Arrow tables (costs ``decimal128(38, 18)``,
    exact), the row count and the billing periods. Bad input comes back as ``(problems, fix)``, not
    raised, so the driver re-raises the same :class:`InputError` it would have raised itself."""
    from pipeline.ingest import TEXT_KEYS_DDL

    con = duckdb.connect()
    try:
        con.execute(f"SET memory_limit='{memory_limit}'")
        con.execute(f"SET threads={int(threads)}")
        con.execute("SET TimeZone='UTC'")
        con.execute("SET preserve_insertion_order=false")
        con.execute(TEXT_KEYS_DDL)
        try:
            st = stage_file(con, 0, src, rules)
        except InputError as exc:
            return exc.problems, exc.fix
        stage = con.sql("SELECT * EXCLUDE (file_idx) FROM stage").to_arrow_table()
        keys = con.sql("SELECT * EXCLUDE (file_idx, dlv) FROM text_keys").to_arrow_table()
        return stage, keys, st.rows, st.periods
    finally:
        con.close()


def insert_partition(
    con: duckdb.DuckDBPyConnection,
    idx: int,
    src: SourceFile,
    staged: Any,
) -> Staged:
    """Put what :func:`stage_partition` returned into ``stage`` and ``text_keys`` as file ``idx``."""
    if len(staged) == 2:
        problems, fix = staged
        raise InputError(problems, fix=fix)
    stage, keys, rows, periods = staged
    con.execute(STAGE_DDL)
    con.register("_part_stage", stage)
    con.register("_part_keys", keys)
    try:
        first = _next_aid(con)
        con.execute(f"""
            INSERT INTO stage_attrs
            SELECT {first} + row_number() OVER (), * FROM (SELECT DISTINCT {", ".join(ATTRS)} FROM _part_stage)
        """)
        on = " AND ".join(f"p.{a} IS NOT DISTINCT FROM a.{a}" for a in ATTRS)
        con.execute(f"""
            INSERT INTO stage_rows
            SELECT {idx}, p.day, p.billing_period, a.aid, p.billed_cost, p.effective_cost, p.list_cost,
                   p.contracted_cost, p.row_count
            FROM _part_stage p JOIN stage_attrs a ON a.aid > {first} AND {on}
        """)
        con.execute(f"INSERT INTO text_keys SELECT {idx}, NULL, * FROM _part_keys")
    finally:
        con.unregister("_part_stage")
        con.unregister("_part_keys")
    return Staged(idx, src, int(rows), list(periods))
