"""Writing outputs: tables people open (CSV beside Parquet, each written to a temporary name and
renamed), and run folders staged aside and published by renames."""

from __future__ import annotations

import math
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pandas as pd

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(df: pd.DataFrame) -> pd.DataFrame:
    """Text cells a spreadsheet would run as a formula (starting with ``= + - @``, tab or CR) get a
    leading apostrophe; numbers stay numbers (OWASP "CSV injection"). For CSVs only: Parquet keeps
    the raw values."""
    out = df
    for col in df.columns:
        s = df[col]
        if s.dtype != object and not isinstance(s.dtype, pd.StringDtype):
            continue
        text = s.astype("string")
        risky = text.str.startswith(FORMULA_START).fillna(False).to_numpy(bool)
        if risky.any():
            if out is df:
                out = df.copy()
            out[col] = s.where(~risky, "'" + text)
    return out


def write_csv_text(df: pd.DataFrame, path: Path, **kw: object) -> Path:
    """A CSV for people: spreadsheet-safe, written to a temporary name and renamed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    spreadsheet_safe(df).to_csv(tmp, index=False, **kw)
    tmp.replace(path)
    return path


def write_table(df: pd.DataFrame, folder: Path, name: str) -> list[Path]:
    """``name.csv`` (spreadsheet-safe) and ``name.parquet`` (raw) in ``folder``, atomic per file."""
    folder.mkdir(parents=True, exist_ok=True)
    csv, pq = folder / f"{name}.csv", folder / f"{name}.parquet"
    tmp = folder / f".{name}.csv.tmp"
    spreadsheet_safe(df).to_csv(tmp, index=False)
    tmp.replace(csv)
    tmp = folder / f".{name}.parquet.tmp"
    df.reset_index(drop=True).to_parquet(tmp, index=False)
    tmp.replace(pq)
    return [csv, pq]


def write_csv(df: pd.DataFrame, path: Path) -> Path:
    """A spreadsheet-safe CSV, atomic."""
    return write_csv_text(df, path)


# columns of the people's tables that are not money: probabilities, quantile levels, ratios, counts
NOT_MONEY = ("p_overrun", "quantile", "change_vs_last_quarter", "change_pct", "delta_pct")


RATIOS = ("change_vs_last_quarter", "change_pct", "delta_pct")  # shown to 0.01 %
HALF_CENT = 0.005  # a difference below it is no difference


def relative_change(change: float, base: float) -> float:
    """``change / base``: 0 for less than half a cent of change (not -0.0 or 2e-16 of float
    noise), NaN without a base."""
    if not base or not math.isfinite(base) or abs(base) <= 1e-9:
        return float("nan")
    return 0.0 if abs(change) < HALF_CENT else change / base


def is_money(df: pd.DataFrame, col: str) -> bool:
    """A float column that holds an amount (every float column but probabilities and ratios)."""
    return pd.api.types.is_float_dtype(df[col]) and col not in NOT_MONEY


def round_money(df: pd.DataFrame, decimals: int = 2) -> pd.DataFrame:
    """Amounts rounded to cents and ratios to 0.01 % for the CSVs people open (probabilities are
    multiples of 1 / paths and stay as they are). Parquet (and JSON) keep full precision."""
    # + 0.0: a rounded -0.004 is 0.00, not -0.00 (IEEE: -0.0 + 0.0 is 0.0)
    money = {c: df[c].round(decimals) + 0.0 for c in df.columns if is_money(df, c)}
    ratios = {c: df[c].round(4) + 0.0 for c in RATIOS if c in df.columns}
    return df.assign(**money, **ratios) if money or ratios else df


def write_people_table(df: pd.DataFrame, folder: Path, name: str) -> list[Path]:
    """``name.csv`` rounded to cents and spreadsheet-safe, beside ``name.parquet`` at full
    precision, each atomic."""
    folder.mkdir(parents=True, exist_ok=True)
    csv = write_csv_text(round_money(df), folder / f"{name}.csv")
    pq = folder / f"{name}.parquet"
    tmp = folder / f".{name}.parquet.tmp"
    df.reset_index(drop=True).to_parquet(tmp, index=False)
    tmp.replace(pq)
    return [csv, pq]


def publish(tmp: Path, final: Path) -> None:
    """Replace ``final`` by ``tmp`` with renames (same filesystem): the old folder is moved aside
    first and removed only after the new one is in place."""
    old = final.with_name(f".{final.name}.old-{os.getpid()}")
    if final.exists():
        os.replace(final, old)
    try:
        os.replace(tmp, final)
    except BaseException:
        if old.exists() and not final.exists():
            os.replace(old, final)
        raise
    shutil.rmtree(old, ignore_errors=True)


@contextmanager
def staging_dir(root: Path, as_of: str) -> Iterator[Path]:
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / f".{as_of}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # gone after publish; removed on failure


def remove_stale_staging(root: Path) -> list[str]:
    """Delete ``.<as-of>.tmp-<pid>`` and ``.<as-of>.old-<pid>`` folders under ``root``: left by a
    run that died (call it while holding the run lock, so no live run owns one)."""
    if not root.exists():
        return []
    gone = []
    for p in root.iterdir():
        if p.is_dir() and p.name.startswith(".") and (".tmp-" in p.name or ".old-" in p.name):
            shutil.rmtree(p, ignore_errors=True)
            gone.append(p.name)
    return sorted(gone)
