"""Usage metrics and labor: the two small CSV inputs that sit beside billing.

Usage ``ts,phase,metric,value[,unit][,team][,gpu][,resource_id]`` is aggregated per day (``ts`` a date or
timestamp) or kept per month (``ts`` ``YYYY-MM``); ``gpu`` is the GPU model as DCGM names it
(``NVIDIA H100 80GB HBM3``, stored as the canonical ``H100``) and ``resource_id`` the instance / node
the hours ran on, both optional: they name the pool usage-based allocation splits. A file replaces the
``(day, phase, metric)`` cells it covers. Labor ``month,phase,team,hours,hourly_rate,currency`` is kept
monthly with ``cost = hours x hourly_rate`` as an exact decimal (hours and rates with at most 9 decimals,
the currency an ISO 4217 code, upper-cased); a file replaces the months it covers.
"""

from __future__ import annotations

import difflib
import re

import duckdb

from pipeline.currency import sql_codes
from pipeline.errors import InputError, Problem
from pipeline.frames import PHASES
from pipeline.ingest.attribution import gpu_model_sql, sql_str
from pipeline.ingest.billing import MAX_SHOWN, _numbered, _ordered
from pipeline.ingest.readers import SourceFile, describe, lossy_sql, read_error
from pipeline.ingest.readers import source_sql as src_sql

USAGE_COLUMNS = ("ts", "phase", "metric", "value")
LABOR_COLUMNS = ("month", "phase", "team", "hours", "hourly_rate", "currency")
_PHASES_SQL = ", ".join(sql_str(p) for p in PHASES)


def _require(
    src: SourceFile, schema: dict[str, str], needed: tuple[str, ...], what: str
) -> dict[str, str]:
    by_lower = {c.lower(): c for c in schema}
    missing = [c for c in needed if c not in by_lower]
    if missing:
        raise InputError(
            Problem(f"missing column(s) {missing}; the file has {list(schema)}", str(src.path)),
            fix=f"a {what} file needs the header {','.join(needed)}",
        )
    return {low: '"' + actual.replace('"', '""') + '"' for low, actual in by_lower.items()}


def _validate(
    con: duckdb.DuckDBPyConnection,
    src: SourceFile,
    checks: list[tuple[str, str, str, str]],
    fix: str,
) -> None:
    """``checks``: (column, raw expr, ok expr, what it must be). One ordered pass over the file."""
    proj = ", ".join(
        f"CAST({raw} AS VARCHAR) AS r{i}, NOT coalesce({ok}, false) AS b{i}"
        for i, (_, raw, ok, _) in enumerate(checks)
    )
    where = " OR ".join(f"b{i}" for i in range(len(checks)))
    try:
        (n_bad,) = con.execute(
            f"SELECT count(*) FROM (SELECT {proj} FROM {src_sql(src)}) WHERE {where}"
        ).fetchone()  # type: ignore[misc]
        (n_rows,) = con.execute(f"SELECT count(*) FROM {src_sql(src)}").fetchone()  # type: ignore[misc]
    except duckdb.Error as exc:
        raise read_error(src, exc) from None
    if n_rows == 0:
        raise InputError(Problem("the file has a header but no data rows", str(src.path)), fix=fix)
    if not n_bad:
        return
    raw_where = " OR ".join(f"NOT coalesce({ok}, false)" for _, _, ok, _ in checks)
    rows = _ordered(con, _numbered(src, proj, raw_where) + f" LIMIT {MAX_SHOWN}")
    problems = []
    for row in rows:
        said: set[str] = set()  # one problem per cell: its first failed check
        for i, (col, _, _, must) in enumerate(checks):
            if row[2 + 2 * i] and col not in said:
                said.add(col)
                raw = row[1 + 2 * i]
                problems.append(
                    Problem(
                        f"{raw!r} is not {must}{_hint(col, raw)}", str(src.path), int(row[0]), col
                    )
                )
    if n_bad > len(rows):
        problems.append(Problem(f"{n_bad - len(rows)} more row(s) with bad values", str(src.path)))
    raise InputError(problems, fix=fix)


# 1.234,50 or 12,5 (not 1,234: a thousands comma, which a spreadsheet reads as another number)
_DECIMAL_COMMA = re.compile(r"-?([0-9]{1,3}(\.[0-9]{3})+,[0-9]+|[0-9]+,[0-9]{1,2})")


def _hint(column: str, raw: object) -> str:
    """What a bad cell most likely meant: a decimal comma (``1.234,50``), a misspelled phase."""
    text = str(raw).strip() if raw is not None else ""
    if _DECIMAL_COMMA.fullmatch(text):
        return f": a decimal comma is not read, write it as {_plain(text)}"
    if column == "phase" and text:
        near = difflib.get_close_matches(text.lower(), PHASES, n=1)
        if near:
            return f"; did you mean {near[0]}?"
    return ""


def _plain(text: str) -> str:
    """``1.234,50`` -> ``1234.50``: the same number with a decimal point and no grouping."""
    return text.replace(".", "").replace(" ", "").replace(",", ".")


def stage_usage(con: duckdb.DuckDBPyConnection, src: SourceFile) -> dict[str, object]:
    c = _require(src, describe(con, src), USAGE_COLUMNS, "usage")
    unit = c.get("unit", "NULL")
    team = c.get("team", "NULL")
    raw_gpu = f"nullif(trim(CAST({c['gpu']} AS VARCHAR)), '')" if "gpu" in c else "NULL"
    gpu = f"coalesce({gpu_model_sql(raw_gpu)}, upper({raw_gpu}))"
    rid = f"nullif(trim(CAST({c['resource_id']} AS VARCHAR)), '')" if "resource_id" in c else "NULL"
    monthly = f"coalesce(regexp_matches(trim(CAST({c['ts']} AS VARCHAR)), '^[0-9]{{4}}-[0-9]{{2}}$'), false)"
    ts = (
        f"CASE WHEN {monthly} THEN TRY_CAST(trim(CAST({c['ts']} AS VARCHAR)) || '-01' AS DATE) "
        f"ELSE CAST(TRY_CAST({c['ts']} AS TIMESTAMPTZ) AS DATE) END"
    )
    grain = f"CASE WHEN {monthly} THEN 'month' ELSE 'day' END"
    value = f"TRY_CAST({c['value']} AS DOUBLE)"
    phase = f"lower(trim({c['phase']}))"
    _validate(
        con,
        src,
        [
            ("ts", c["ts"], f"{ts} IS NOT NULL", "a date or ISO 8601 timestamp"),
            ("phase", c["phase"], f"{phase} IN ({_PHASES_SQL})", f"one of {', '.join(PHASES)}"),
            ("metric", c["metric"], f"{c['metric']} IS NOT NULL", "a metric name"),
            ("value", c["value"], f"{value} IS NOT NULL AND isfinite({value})", "a number"),
            (
                "value",
                c["value"],
                f"NOT ({value} < 0)",
                "a usage quantity >= 0 (GPU-hours, requests, tokens, GB are never negative)",
            ),
        ],
        fix="usage rows are ts,phase,metric,value[,unit][,team][,gpu][,resource_id] with an ISO date "
        "(or YYYY-MM for a month), a known phase and a number (usage is never negative)",
    )
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE usage_stage AS
        SELECT {ts} AS day, {phase} AS phase, {team} AS team, {c["metric"]} AS metric, any_value({unit}) AS unit,
               sum({value}) AS value_sum, avg({value}) AS value_mean, min({value}) AS value_min,
               max({value}) AS value_max, count(*) AS n, {gpu} AS gpu, {rid} AS resource_id,
               {grain} AS grain
        FROM {src_sql(src)} GROUP BY ALL
    """)
    con.execute("""
        DELETE FROM usage_daily u WHERE EXISTS (
            SELECT 1 FROM usage_stage s WHERE s.day = u.day AND s.phase = u.phase AND s.metric = u.metric
            AND s.grain = coalesce(u.grain, 'day'))
    """)
    con.execute(f"""
        INSERT INTO usage_daily (day, phase, team, metric, unit, value_sum, value_mean, value_min,
               value_max, n, file_sha256, gpu, resource_id, grain)
        SELECT day, phase, team, metric, unit, value_sum, value_mean, value_min,
               value_max, n, {sql_str(src.sha256)}, gpu, resource_id, grain FROM usage_stage
    """)
    (rows, d0, d1) = con.execute("SELECT sum(n), min(day), max(day) FROM usage_stage").fetchone()  # type: ignore[misc]
    return {"rows": int(rows), "first_day": str(d0), "last_day": str(d1)}


def _exact9(typed: str, raw: str) -> str:
    """SQL true when a labor quantity is a number with at most 9 decimals (so hours x rate is exact)."""
    return (
        f"({typed} IS NOT NULL AND NOT {lossy_sql(f'CAST({raw} AS VARCHAR)')} "
        f"AND CAST({typed} AS DECIMAL(38,9)) = {typed})"
    )


def stage_labor(con: duckdb.DuckDBPyConnection, src: SourceFile) -> dict[str, object]:
    c = _require(src, describe(con, src), LABOR_COLUMNS, "labor")
    m = c["month"]
    month = f"date_trunc('month', TRY_CAST(CASE WHEN length(trim({m})) = 7 THEN trim({m}) || '-01' ELSE trim({m}) END AS DATE))"
    hours = f"TRY_CAST({c['hours']} AS DECIMAL(38,18))"
    rate = f"TRY_CAST({c['hourly_rate']} AS DECIMAL(38,18))"
    cur = f"upper(trim({c['currency']}))"
    phase = f"lower(trim({c['phase']}))"
    _validate(
        con,
        src,
        [
            ("month", m, f"{month} IS NOT NULL", "a month (YYYY-MM or YYYY-MM-DD)"),
            ("phase", c["phase"], f"{phase} IN ({_PHASES_SQL})", f"one of {', '.join(PHASES)}"),
            (
                "hours",
                c["hours"],
                _exact9(hours, c["hours"]),
                "a decimal number (at most 9 decimals)",
            ),
            (
                "hours",
                c["hours"],
                f"NOT ({hours} < 0)",
                "hours >= 0 (booked hours are not negative)",
            ),
            (
                "hourly_rate",
                c["hourly_rate"],
                _exact9(rate, c["hourly_rate"]),
                "a decimal number (at most 9 decimals)",
            ),
            ("hourly_rate", c["hourly_rate"], f"NOT ({rate} < 0)", "a rate >= 0"),
            ("currency", c["currency"], f"{cur} IN ({sql_codes()})", "an ISO 4217 currency code"),
        ],
        fix="labor rows are month,phase,team,hours,hourly_rate,currency, e.g. 2026-09,operations,sre,320,95.50,USD",
    )
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE labor_stage AS
        SELECT CAST({month} AS DATE) AS month, {phase} AS phase, {c["team"]} AS team,
               {hours} AS hours, {rate} AS hourly_rate, {cur} AS currency,
               CAST(CAST({hours} AS DECIMAL(38,9)) * CAST({rate} AS DECIMAL(38,9)) AS DECIMAL(38,18)) AS cost
        FROM {src_sql(src)}
    """)
    con.execute("DELETE FROM labor_monthly WHERE month IN (SELECT DISTINCT month FROM labor_stage)")
    con.execute(f"INSERT INTO labor_monthly SELECT *, {sql_str(src.sha256)} FROM labor_stage")
    (rows, m0, m1) = con.execute(
        "SELECT count(*), min(month), max(month) FROM labor_stage"
    ).fetchone()  # type: ignore[misc]
    return {"rows": int(rows), "first_month": str(m0)[:7], "last_month": str(m1)[:7]}
