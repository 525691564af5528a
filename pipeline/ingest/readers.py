"""Finding billing files and reading them with DuckDB into one normalised column set.

FOCUS 1.0 to 1.3: the provider is ``ProviderName`` (1.0-1.2) or ``ServiceProviderName`` (1.3);
columns a version lacks (``ServiceSubcategory`` before 1.1, ``SkuMeter`` before 1.1 ...) read as NULL;
vendor columns (``x_*``, ``Id`` ...) are ignored. CSV is read with every column as text and cast with
``TRY_CAST`` to ``DECIMAL(38,18)`` / ``TIMESTAMPTZ``, so money is never a binary float and a value that
does not parse is found and reported, not guessed.

Exactness: a cost keeps every digit its file carries. ``DECIMAL(38,18)`` holds 18 digits after the point
and 20 before; a value with more (``0.0000000000000000001``, ``1e-20``, 21 integer digits) is an error
naming the row, never a rounding (:func:`lossy_sql`). Float Parquet columns are read through the
shortest text of the double (what Python's ``repr`` prints: ``227.28753400000005``), so CSV, gzipped CSV
and Parquet (decimal, float or string columns) of the same data give the same warehouse totals.
"""

from __future__ import annotations

import gzip
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import duckdb

from pipeline.errors import InputError, Problem

DECIMAL = "DECIMAL(38,18)"
#: Digits ``DECIMAL`` keeps after the point and before it.
SCALE, INT_DIGITS = 18, 20
COSTS: tuple[str, ...] = ("BilledCost", "EffectiveCost", "ListCost", "ContractedCost")
#: Columns a billing file must have (the provider may be under either name).
MANDATORY: tuple[str, ...] = (
    "BilledCost",
    "EffectiveCost",
    "ListCost",
    "BillingCurrency",
    "BillingPeriodStart",
    "ChargePeriodStart",
    "BillingAccountId",
    "ServiceCategory",
    "ServiceName",
)
PROVIDER_NAMES: tuple[str, ...] = ("ServiceProviderName", "ProviderName")
#: Columns that must hold a value on every row.
NOT_NULL: tuple[str, ...] = (
    "BilledCost",
    "EffectiveCost",
    "ListCost",
    "BillingCurrency",
    "BillingPeriodStart",
    "ChargePeriodStart",
)
#: Text columns used by attribution when present.
OPTIONAL_TEXT: tuple[str, ...] = (
    "ServiceSubcategory",
    "ResourceId",
    "ResourceName",
    "ResourceType",
    "SkuId",
    "SkuPriceId",
    "SkuMeter",
    "SkuPriceDetails",
    "ChargeDescription",
    "PricingUnit",
    "ConsumedUnit",
    "Tags",
)
NULL_WORDS = ("NULL", "")
BILLING_SUFFIXES = (".csv", ".csv.gz", ".parquet")


@dataclass(frozen=True)
class SourceFile:
    path: Path
    fmt: str  # "csv" | "parquet"
    sha256: str
    size: int


def file_format(path: Path) -> str | None:
    name = path.name.lower()
    if name.endswith(".parquet"):
        return "parquet"
    if name.endswith(".csv") or name.endswith(".csv.gz"):
        return "csv"
    return None


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def discover(paths: list[Path] | tuple[Path, ...]) -> list[Path]:
    """Billing files under ``paths`` (files, or folders searched recursively).

    Within a folder files are sorted by their path, so a restated re-export named after the original
    (``2026-09.csv.gz`` then ``2026-09-restated.csv.gz``) is applied after it. Explicit files keep the
    order given.
    """
    out: list[Path] = []
    problems: list[Problem] = []
    for p in paths:
        p = Path(p)
        if p.is_dir():
            found = sorted(
                (f for f in p.rglob("*") if f.is_file() and file_format(f)),
                key=lambda f: f.as_posix(),
            )
            if not found:
                problems.append(
                    Problem(
                        f"folder holds no billing files ({', '.join(BILLING_SUFFIXES)})", str(p)
                    )
                )
            out += found
        elif p.is_file():
            if file_format(p) is None:
                problems.append(
                    Problem(
                        f"not a billing file: expected a name ending in {', '.join(BILLING_SUFFIXES)}",
                        str(p),
                    )
                )
            out.append(p)
        else:
            problems.append(Problem("no such file or folder", str(p)))
    if problems:
        raise InputError(
            problems,
            fix="pass FOCUS billing exports (CSV, CSV.gz or Parquet) or folders holding them",
        )
    return unique_paths(out)


def unique_paths(files: list[Path]) -> list[Path]:
    """``files`` without repeats (the same file named twice, by any path), in order."""
    seen: set[Path] = set()
    out = []
    for f in files:
        r = f.resolve()
        if r not in seen:
            seen.add(r)
            out.append(f)
    return out


def open_source(path: Path) -> SourceFile:
    fmt = file_format(path)
    assert fmt is not None
    size = path.stat().st_size
    if size == 0:
        raise InputError(
            Problem("the file is empty (0 bytes)", str(path)),
            fix="re-export the billing data, or remove the empty file from the folder",
        )
    return SourceFile(path=path, fmt=fmt, sha256=sha256_of(path), size=size)


def _source_sql(src: SourceFile) -> str:
    p = str(src.path).replace("'", "''")
    if src.fmt == "parquet":
        return f"read_parquet('{p}')"
    return (
        f"read_csv('{p}', all_varchar=true, header=true, nullstr=['NULL', ''], "
        "delim=',', quote='\"', escape='\"', skip=0, auto_detect=true, sample_size=20480)"
    )


def describe(con: duckdb.DuckDBPyConnection, src: SourceFile) -> dict[str, str]:
    """Column name -> DuckDB type of a file (reads only the header / schema)."""
    try:
        rows = con.execute(f"DESCRIBE SELECT * FROM {_source_sql(src)}").fetchall()
    except duckdb.Error as exc:
        raise read_error(src, exc) from None
    return {r[0]: r[1] for r in rows}


def read_error(src: SourceFile, exc: BaseException) -> InputError:
    """An InputError for a file DuckDB could not read (truncated gzip, broken Parquet, ragged CSV)."""
    msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    low = str(exc).lower()
    line = re.search(r"CSV Error on Line: (\d+)", str(exc))
    if src.fmt == "csv" and not line and "sniffing" in low:
        found = _first_ragged_row(src.path)
        if found is not None:
            n, got, want = found
            return InputError(
                Problem(
                    f"malformed CSV line: {got} fields where the header has {want}",
                    str(src.path),
                    n,
                ),
                fix="every line must have the header's number of comma-separated fields; quote values containing commas",
            )
    if line and src.fmt == "csv":  # file line N is data row N-1 (one header line)
        detail = [ln.strip() for ln in str(exc).splitlines()[1:] if ln.strip()][:2]
        return InputError(
            Problem(
                f"malformed CSV line ({'; '.join(detail) or msg})",
                str(src.path),
                int(line.group(1)) - 1,
            ),
            fix="every line must have the header's number of comma-separated fields; quote values containing commas",
        )
    if "gzip" in low or "inflate" in low or "compress" in low:
        fix = "the compressed file is damaged or truncated: download or copy it again (check it with `gzip -t`)"
    elif src.fmt == "parquet":
        fix = "the Parquet file is damaged or not Parquet: export it again"
    else:
        fix = "check the file is a complete comma-separated FOCUS export with one header line"
    if src.fmt == "csv" and src.path.name.lower().endswith(".gz") and not _gzip_ok_prefix(src.path):
        fix = "the file is not valid gzip: download or copy it again"
    return InputError(Problem(f"cannot read the file: {msg}", str(src.path)), fix=fix)


def _first_ragged_row(path: Path) -> tuple[int, int, int] | None:
    """(1-based data row, fields, header fields) of the first line whose field count differs."""
    import csv

    opener = gzip.open if path.name.lower().endswith(".gz") else open
    try:
        with opener(path, "rt", newline="", encoding="utf-8", errors="replace") as fh:
            reader = csv.reader(fh)
            header = next(reader, None)
            if header is None:
                return None
            for i, rec in enumerate(reader, start=1):
                if len(rec) != len(header):
                    return i, len(rec), len(header)
    except (OSError, EOFError, csv.Error):
        return None
    return None


def _gzip_ok_prefix(path: Path) -> bool:
    try:
        with gzip.open(path, "rb") as fh:
            fh.read(1024)
        return True
    except (OSError, EOFError):
        return False


@dataclass(frozen=True)
class Columns:
    """How to get each normalised field out of one file: a SQL expression over the raw columns."""

    raw: dict[str, str]  # canonical FOCUS name -> quoted raw column (only those present)
    types: dict[str, str]  # canonical name -> DuckDB type in the file

    def text(self, name: str) -> str:
        """A text expression for ``name`` (NULL if absent; the word NULL / empty already null)."""
        if name not in self.raw:
            return "NULL"
        q, t = self.raw[name], self.types[name]
        if t == "VARCHAR":
            return q if name not in ("Tags",) else q
        if name == "Tags":
            return f"CAST(to_json({q}) AS VARCHAR)"
        return f"CAST({q} AS VARCHAR)"

    def text_nullword(self, name: str) -> str:
        """Text with the words NULL / '' as NULL (Parquet files written from CSV keep them)."""
        e = self.text(name)
        if name in self.raw and self.types[name] == "VARCHAR":
            return f"nullif(nullif({e}, 'NULL'), '')"
        return e

    def decimal(self, name: str) -> tuple[str, str]:
        """(typed expression, raw expression) for a cost column, typed per row.

        Text is cast with TRY_CAST (NULL when it does not parse, found later); floats go through their
        shortest text form so 0.1 stays 0.1. Decimal and integer columns that fit ``DECIMAL(38,18)``
        are cast directly (exact); wider ones go through their text like strings.
        """
        if name not in self.raw:
            return "NULL", "NULL"
        q, t = self.raw[name], self.types[name]
        if t == "VARCHAR":
            raw = self.text_nullword(name)
            return f"TRY_CAST({raw} AS {DECIMAL})", raw
        if _fits_exactly(t):
            return f"CAST({q} AS {DECIMAL})", q
        raw = f"CAST({q} AS VARCHAR)"
        return f"TRY_CAST({raw} AS {DECIMAL})", raw

    def lossy(self, name: str) -> str:
        """SQL true where the cost column's value has more digits than ``DECIMAL(38,18)`` keeps."""
        if name not in self.raw or _fits_exactly(self.types[name]):
            return "false"
        return lossy_sql(self.decimal(name)[1])

    def micros(self, name: str) -> str:
        """Microseconds since 1970-01-01 UTC of a timestamp column (NULL when absent or unreadable)."""
        if name not in self.raw:
            return "NULL"
        q, t = self.raw[name], self.types[name]
        if t == "VARCHAR":
            return f"epoch_us(TRY_CAST({self.text_nullword(name)} AS TIMESTAMPTZ))"
        if t == "DATE":
            return f"epoch_us(CAST({q} AS TIMESTAMP))"
        return f"epoch_us({q})"

    def billing_period(self) -> tuple[str, str]:
        """(day number of the billing period, raw expression) from ``BillingPeriodStart``.

        A period starts at local midnight on the 1st; written with an offset (``+08:00``) that is
        16:00 UTC the day before, so the instant is shifted by 14 hours before taking its UTC date:
        any start within [-14 h, +10 h) of a UTC first of the month lands on that first. Anything else
        is not the 1st and is rejected by the stage.
        """
        micros = self.micros("BillingPeriodStart")
        return f"(({micros} + 50400000000) // 86400000000)", self.day("BillingPeriodStart")[1]

    def day(self, name: str) -> tuple[str, str]:
        """(UTC day number since 1970-01-01 as BIGINT, raw expression) for a timestamp column.

        Integer days group much faster than DATE casts of TIMESTAMPTZ; :func:`day_to_date` turns them
        back into dates after grouping. Offsets (+08:00) are honoured; naive times are taken as UTC.
        """
        if name not in self.raw:
            return "NULL", "NULL"
        q, t = self.raw[name], self.types[name]
        if t == "VARCHAR":
            raw = self.text_nullword(name)
            return f"(epoch_us(TRY_CAST({raw} AS TIMESTAMPTZ)) // 86400000000)", raw
        if t == "DATE":
            return f"CAST({q} - DATE '1970-01-01' AS BIGINT)", q
        return f"(epoch_us({q}) // 86400000000)", q


def _fits_exactly(duck_type: str) -> bool:
    """Whether every value of a (non-text) column type casts to ``DECIMAL(38,18)`` without loss."""
    if duck_type in (
        "TINYINT",
        "SMALLINT",
        "INTEGER",
        "BIGINT",
        "UTINYINT",
        "USMALLINT",
        "UINTEGER",
    ):
        return True
    m = re.fullmatch(r"DECIMAL\((\d+),\s*(\d+)\)", duck_type)
    if m is None:
        return False
    return int(m.group(2)) <= SCALE and int(m.group(1)) - int(m.group(2)) <= INT_DIGITS


#: sign, integer digits, fraction digits, exponent of a number written as text.
_NUMBER_RE = r"^\s*[+-]?(\d*)(?:\.(\d*))?(?:[eE]([+-]?\d+))?\s*$"


def lossy_sql(text: str) -> str:
    """SQL true where the number written in ``text`` needs more than 18 decimals or 20 integer digits.

    Text of at most 19 bytes without an exponent always fits (the point takes one), so only long or
    exponent-form values pay for the regular expressions. That test runs on every row of a text file:
    it uses the byte length and two substring searches, several times cheaper per row than
    ``length`` (which counts UTF-8 characters) and a regular expression; a text with multi-byte
    characters only takes the exact path. The digits ``D = int || frac`` with the
    point ``p = len(int) + exp`` digits from the left need ``len(rtrim(D, '0')) - p`` decimals and
    ``p - (leading zeros of D)`` integer digits.
    """
    i, f, e = (f"regexp_extract({text}, '{_NUMBER_RE}', {g})" for g in (1, 2, 3))
    d = f"({i} || {f})"
    p = f"(length({i}) + coalesce(TRY_CAST(nullif({e}, '') AS INTEGER), 0))"
    precise = (
        f"(length(rtrim({d}, '0')) - {p} > {SCALE} "
        f"OR {p} - (length({d}) - length(ltrim({d}, '0'))) > {INT_DIGITS})"
    )
    return (
        f"(CASE WHEN {text} IS NULL OR (strlen({text}) <= 19 AND NOT contains({text}, 'e') "
        f"AND NOT contains({text}, 'E')) "
        f"THEN false ELSE coalesce({precise}, false) END)"
    )


def day_to_date(expr: str) -> str:
    return f"(DATE '1970-01-01' + CAST({expr} AS INTEGER))"


def resolve_columns(src: SourceFile, schema: dict[str, str]) -> Columns:
    """Map a file's columns to canonical FOCUS names; raise one InputError if mandatory ones are missing."""
    by_lower = {c.lower(): c for c in schema}
    raw: dict[str, str] = {}
    types: dict[str, str] = {}

    def take(canonical: str, actual: str) -> None:
        raw[canonical] = '"' + actual.replace('"', '""') + '"'
        types[canonical] = schema[actual]

    for name in (*MANDATORY, *OPTIONAL_TEXT, "ContractedCost", "ChargePeriodEnd"):
        if name.lower() in by_lower:
            take(name, by_lower[name.lower()])
    for name in PROVIDER_NAMES:
        if name.lower() in by_lower:
            take("ProviderName", by_lower[name.lower()])
            break
    missing = [c for c in MANDATORY if c not in raw]
    if "ProviderName" not in raw:
        missing.append("ProviderName (FOCUS 1.0-1.2) or ServiceProviderName (1.3)")
    if missing:
        shown = ", ".join(list(schema)[:12]) + (" ..." if len(schema) > 12 else "")
        raise InputError(
            Problem(
                f"missing mandatory FOCUS column(s): {', '.join(missing)}; the file has: {shown}",
                str(src.path),
            ),
            fix="export the billing data in FOCUS 1.0-1.3 format with all mandatory columns (and one header line)",
        )
    return Columns(raw=raw, types=types)


def source_sql(src: SourceFile) -> str:
    return _source_sql(src)
