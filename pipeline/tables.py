"""Writing outputs: tables people open (CSV beside Parquet, each written to a temporary name and
renamed), and run folders staged aside and published by renames."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pandas as pd


def write_table(df: pd.DataFrame, folder: Path, name: str) -> list[Path]:
    """``name.csv`` and ``name.parquet`` in ``folder`` (atomic per file)."""
    folder.mkdir(parents=True, exist_ok=True)
    csv, pq = folder / f"{name}.csv", folder / f"{name}.parquet"
    tmp = folder / f".{name}.csv.tmp"
    df.to_csv(tmp, index=False)
    tmp.replace(csv)
    tmp = folder / f".{name}.parquet.tmp"
    df.reset_index(drop=True).to_parquet(tmp, index=False)
    tmp.replace(pq)
    return [csv, pq]


def write_csv(df: pd.DataFrame, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    df.to_csv(tmp, index=False)
    tmp.replace(path)
    return path


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
