"""Writing tables people open: CSV beside Parquet, each written to a temporary name and renamed."""

from __future__ import annotations

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
