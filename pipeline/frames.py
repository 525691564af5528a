"""The long frame every stage speaks: column names, the hierarchy's ids, and one validator.

In:  ``unique_id, ds, y`` (+ driver columns), ``ds`` the first day of a month.
Out: ``unique_id, ds, model, mean, lo_<L>, hi_<L> ...``; backtests add ``cutoff`` and the actual ``y``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd

from pipeline.errors import InputError, Problem

UID = "unique_id"
DS = "ds"
Y = "y"
MODEL = "model"
MEAN = "mean"
CUTOFF = "cutoff"
PHASE = "phase"
CATEGORY = "category"

PHASES: tuple[str, ...] = (
    "data_preprocessing",
    "pretraining",
    "fine_tuning",
    "inference",
    "optimization",
    "operations",
    "unallocated",
)
CATEGORIES: tuple[str, ...] = (
    "compute_gpu",
    "compute_cpu",
    "storage",
    "network",
    "ai_services",
    "labor",
    "other",
)
TOTAL = "total"
SEP = "/"
DEFAULT_LEVELS: tuple[int, ...] = (80, 95)


def lo_col(level: int) -> str:
    return f"lo_{int(level)}"


def hi_col(level: int) -> str:
    return f"hi_{int(level)}"


def interval_cols(levels: Iterable[int]) -> list[str]:
    """``lo_L, hi_L`` for each level, in the order the forecast table prints them."""
    cols: list[str] = []
    for lv in levels:
        cols += [lo_col(lv), hi_col(lv)]
    return cols


def forecast_cols(levels: Iterable[int]) -> list[str]:
    return [UID, DS, MODEL, MEAN, *interval_cols(levels)]


def hierarchy_id(phase: str | None = None, category: str | None = None) -> str:
    """``total``, ``<phase>`` or ``<phase>/<category>``: the unique_id of a node of the cost hierarchy."""
    if phase is None:
        return TOTAL
    if category is None:
        return phase
    return f"{phase}{SEP}{category}"


def node_parents(uid: str) -> list[str]:
    """The aggregate ids a node sums into, nearest first: ``inference/compute_gpu`` -> ``[inference, total]``."""
    if uid == TOTAL:
        return []
    parts = uid.split(SEP)
    return [SEP.join(parts[:i]) for i in range(len(parts) - 1, 0, -1)] + [TOTAL]


MAX_LABEL = 80


def safe_label(value: object) -> str:
    """A tag value as one hierarchy level, whatever it holds: ``%``, ``/``, a lone ``.``/``..`` and
    control characters are %-escaped (so no value adds a level or merges with another: the escape
    is one-to-one), and a value longer than ``MAX_LABEL`` keeps its start plus a hash of the whole."""
    import hashlib
    import unicodedata

    text = "" if value is None else str(value)
    out = []
    for ch in text:
        if ch in "%/" or unicodedata.category(ch)[0] == "C":
            out.append("".join(f"%{b:02X}" for b in ch.encode("utf-8")))
        else:
            out.append(ch)
    label = "".join(out)
    if label in (".", ".."):
        label = label.replace(".", "%2E")
    if len(label) > MAX_LABEL:
        digest = hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]
        label = f"{label[: MAX_LABEL - 13]}~{digest}"
    return label


def parse_hierarchy_id(uid: str) -> tuple[str | None, str | None]:
    """Inverse of :func:`hierarchy_id`: ``(phase, category)``, ``None`` where the level is aggregated."""
    if uid == TOTAL:
        return None, None
    if SEP in uid:
        phase, category = uid.split(SEP, 1)
        return phase, category
    return uid, None


def check_levels(levels: Sequence[int]) -> tuple[int, ...]:
    out = tuple(sorted({int(lv) for lv in levels}))
    bad = [lv for lv in out if not 50 <= lv <= 99]
    if bad:
        raise InputError(
            f"interval levels must be between 50 and 99. Got {bad} instead.",
            fix="pass levels such as --level 80 --level 95",
        )
    return out


def validate_frame(
    df: pd.DataFrame, *, source: str = "series", require_monthly: bool = True
) -> pd.DataFrame:
    """Check a long ``unique_id, ds, y`` frame; return it with ``ds`` as month-start timestamps,
    ``y`` as float and rows sorted by series and date.

    Collects every problem (missing columns, unparseable dates or values, dates that are not the
    first of a month, duplicate rows, gaps) and raises one :class:`InputError` naming rows.
    """
    missing = [c for c in (UID, DS, Y) if c not in df.columns]
    if missing:
        raise InputError(
            Problem(f"missing column(s) {missing}; found {list(df.columns)}", file=source),
            fix="the series file needs the columns unique_id, ds, y (long format, one row per series and month)",
        )
    out = df.copy()
    problems: list[Problem] = []
    out[UID] = out[UID].astype(str)
    ds = pd.to_datetime(out[DS], errors="coerce")
    for i in np.flatnonzero(ds.isna().to_numpy())[:20]:
        problems.append(Problem(f"cannot parse date {df[DS].iloc[i]!r}", source, int(i) + 1, DS))
    y = pd.to_numeric(out[Y], errors="coerce")
    bad_y = y.isna() & out[Y].notna()
    for i in np.flatnonzero(bad_y.to_numpy())[:20]:
        problems.append(Problem(f"not a number: {df[Y].iloc[i]!r}", source, int(i) + 1, Y))
    for col in [Y, *(c for c in out.columns if c not in (UID, DS, Y, PHASE, CATEGORY))]:
        v = y if col == Y else pd.to_numeric(out[col], errors="coerce")
        if col != Y and v.isna().all():
            continue  # a text column (labels), not a driver
        inf = np.isinf(v.to_numpy(float, na_value=np.nan))
        for i in np.flatnonzero(inf)[:20]:
            problems.append(Problem(f"not a finite number: {v.iloc[i]}", source, int(i) + 1, col))
    if require_monthly:
        ok = ds.notna()
        not_first = ok & (ds.dt.day != 1)
        for i in np.flatnonzero(not_first.to_numpy())[:20]:
            problems.append(
                Problem(
                    f"{df[DS].iloc[i]!r} is not the first day of a month", source, int(i) + 1, DS
                )
            )
    if problems:
        raise InputError(
            problems,
            fix="ds must be a date on the first of the month (YYYY-MM-01), y and drivers finite numbers",
        )
    out[DS] = ds.dt.normalize()
    out[Y] = y.astype(float)
    dup = out.duplicated([UID, DS], keep="first")
    if dup.any():
        problems = [
            Problem(
                f"duplicate row for series {out[UID].iloc[i]!r} and month {out[DS].iloc[i]:%Y-%m}",
                source,
                int(i) + 1,
            )
            for i in np.flatnonzero(dup.to_numpy())[:20]
        ]
        raise InputError(
            problems, fix="keep one row per unique_id and ds (sum them first if they are parts)"
        )
    out = out.sort_values([UID, DS], kind="stable").reset_index(drop=True)
    return out


def fill_gaps(df: pd.DataFrame, value: float | None = 0.0) -> pd.DataFrame:
    """Insert missing months inside each series' span; ``y`` of inserted months is ``value``
    (0: a month without any charge costs nothing). Drivers are forward-filled."""
    parts = []
    for uid, g in df.groupby(UID, sort=False):
        idx = pd.date_range(g[DS].min(), g[DS].max(), freq="MS")
        if len(idx) == len(g):
            parts.append(g)
            continue
        full = g.set_index(DS).reindex(idx)
        full.index.name = DS
        full[UID] = uid
        full[Y] = full[Y].fillna(value) if value is not None else full[Y]
        other = [c for c in full.columns if c not in (UID, Y)]
        full[other] = full[other].ffill()
        parts.append(full.reset_index()[g.columns])
    return pd.concat(parts, ignore_index=True) if parts else df
