"""Forecasting series from the warehouse: the cost hierarchy as long ``unique_id, ds, y`` frames.

    frames = build_series("data/phasecast.duckdb", as_of=date(2026, 11, 15))
    frames.monthly   # complete months only (before November 2026): unique_id, ds, y, phase, category
    frames.daily     # every day before as_of, same ids
    frames.partial   # November 2026 month-to-date per node: y, days_covered, days_in_month
    frames.hierarchy # {"total": [bottom ids], "inference": ["inference/compute_gpu", ...], ...}

Hierarchy (ids from :func:`pipeline.frames.hierarchy_id`): ``total`` -> ``<phase>`` ->
``<phase>/<category>`` (the bottom level; with ``include_team`` one more level
``<phase>/<category>/<team>``, ``team`` ``unassigned`` when the tags do not say). Labor (hours x
hourly_rate, from the labor table) is the category ``labor`` under its phase; in the daily frame it is
spread evenly over the days of its month (a labor row is the hours booked so far, so the current
month's row is spread over the days up to the as-of date and counts whole in month-to-date). Every node runs from its first month with cost to the last
complete month; months without cost inside that span are 0. Aggregates are sums of their bottom nodes,
so the frames are coherent. ``y`` is float (the models' type); exact decimals stay in the warehouse.
One currency per build: money in different currencies is never added.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pandas as pd

from pipeline.errors import InputError, Problem
from pipeline.frames import CATEGORY, DS, PHASE, SEP, TOTAL, UID, Y, hierarchy_id
from pipeline.ingest.warehouse import COST_COLUMNS

TEAM = "team"
UNASSIGNED_TEAM = "unassigned"
_TRUNC = {"MS": "month", "QS": "quarter"}


@dataclass(frozen=True)
class SeriesFrames:
    """The frames every forecasting, budget and flag step starts from (see the module docstring)."""

    monthly: pd.DataFrame
    daily: pd.DataFrame
    partial: pd.DataFrame
    hierarchy: dict[str, list[str]]
    as_of: dt.date
    currency: str
    cost_column: str
    freq: str = "MS"

    @property
    def bottom_ids(self) -> list[str]:
        return self.hierarchy[TOTAL]

    def summing_matrix(self) -> pd.DataFrame:
        return summing_matrix(self.bottom_ids)

    def write(self, folder: Path) -> list[Path]:
        """``monthly.csv`` (the ``forecast --series`` input), ``daily.csv``, ``partial.csv``."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        out = []
        for name, df in (
            ("monthly", self.monthly),
            ("daily", self.daily),
            ("partial", self.partial),
        ):
            p = folder / f"{name}.csv"
            df.to_csv(p, index=False, date_format="%Y-%m-%d")
            out.append(p)
        return out


def node_parents(uid: str) -> list[str]:
    """The aggregate ids a node sums into, nearest first: ``inference/compute_gpu`` -> ``[inference, total]``."""
    if uid == TOTAL:
        return []
    parts = uid.split(SEP)
    return [SEP.join(parts[:i]) for i in range(len(parts) - 1, 0, -1)] + [TOTAL]


def hierarchy(bottom_ids: list[str]) -> dict[str, list[str]]:
    """Aggregate id -> the bottom ids summing to it (``total`` holds all of them), each list sorted."""
    out: dict[str, list[str]] = {TOTAL: sorted(set(bottom_ids))}
    for b in sorted(set(bottom_ids)):
        for parent in node_parents(b)[:-1]:
            out.setdefault(parent, []).append(b)
    return out


def summing_matrix(bottom_ids: list[str]) -> pd.DataFrame:
    """The 0/1 summing matrix S (rows: every node, aggregates first; columns: bottom ids): y_all = S @ y_bottom."""
    h = hierarchy(bottom_ids)
    bottoms = h[TOTAL]
    aggregates = [TOTAL] + sorted(k for k in h if k != TOTAL)
    rows = aggregates + bottoms
    s = pd.DataFrame(0, index=pd.Index(rows, name=UID), columns=bottoms, dtype="int8")
    for a in aggregates:
        s.loc[a, h[a]] = 1
    for b in bottoms:
        s.loc[b, b] = 1
    return s


def build_series(
    warehouse_path: Path | str,
    as_of: dt.date | str | None = None,
    cost_column: str = "EffectiveCost",
    include_team: bool = False,
    freq: str = "MS",
    *,
    currency: str | None = None,
) -> SeriesFrames:
    """Build the monthly, daily and month-to-date frames of the cost hierarchy (see module docstring).

    ``as_of``: months strictly before its month are complete; data on or after ``as_of`` is ignored
    (so a past ``as_of`` reproduces what was known then, for backtests). Default: the day after the
    last charge date. ``currency``: required only when the warehouse holds several.
    """
    if cost_column not in COST_COLUMNS or cost_column == "ContractedCost":
        raise InputError(
            f"cost_column must be EffectiveCost, BilledCost or ListCost. Got {cost_column!r} instead.",
            fix="pick one of EffectiveCost, BilledCost, ListCost",
        )
    if freq not in _TRUNC:
        raise InputError(
            f"freq must be one of {list(_TRUNC)}. Got {freq!r} instead.", fix="use freq='MS'"
        )
    path = Path(warehouse_path)
    if not path.exists():
        raise InputError(
            Problem("no warehouse here", str(path)),
            fix="run `phasecast ingest --billing PATH` first",
        )
    col = COST_COLUMNS[cost_column]
    con = duckdb.connect(str(path), read_only=True)
    try:
        con.execute("SET TimeZone='UTC'")
        currency = _pick_currency(con, currency, str(path))
        if as_of is None:
            (last,) = con.execute(
                "SELECT max(day) FROM daily_facts WHERE currency = ?", [currency]
            ).fetchone()  # type: ignore[misc]
            if last is None:
                (last,) = con.execute(
                    "SELECT last_day(max(month)) FROM labor_monthly WHERE currency = ?", [currency]
                ).fetchone()  # type: ignore[misc]
            as_of_d = last + dt.timedelta(days=1)
        else:
            as_of_d = pd.Timestamp(as_of).date()
        unit = _TRUNC[freq]
        team_sel = f", coalesce(team, '{UNASSIGNED_TEAM}') AS team" if include_team else ""
        # Monthly (per period) sums, exact in SQL, float at the end.
        periodic = con.execute(
            f"""
            SELECT period, phase, category{", team" if include_team else ""}, CAST(sum(y) AS DOUBLE) AS y FROM (
                SELECT CAST(date_trunc('{unit}', day) AS DATE) AS period, phase, category{team_sel}, {col} AS y
                FROM daily_facts WHERE currency = $cur AND day < $as_of
                UNION ALL
                SELECT CAST(date_trunc('{unit}', month) AS DATE), phase, 'labor'{team_sel}, cost
                FROM labor_monthly WHERE currency = $cur AND month < $as_of
            ) GROUP BY ALL
        """,
            {"cur": currency, "as_of": as_of_d},
        ).df()
        daily = con.execute(
            f"""
            SELECT day, phase, category{", team" if include_team else ""}, sum(y) AS y FROM (
                SELECT day, phase, category{team_sel}, CAST({col} AS DOUBLE) AS y
                FROM daily_facts WHERE currency = $cur AND day < $as_of
                UNION ALL
                -- A month's labor row is the hours booked so far: spread over the month's days
                -- up to the as-of date, so the current month's booking is month-to-date, not 1/30th.
                SELECT CAST(d AS DATE), phase, 'labor'{team_sel},
                       CAST(cost AS DOUBLE) / (date_diff('day', month, least(last_day(month), CAST($as_of AS DATE) - 1)) + 1)
                FROM labor_monthly,
                     generate_series(month, least(last_day(month), CAST($as_of AS DATE) - 1), INTERVAL 1 DAY) AS g(d)
                WHERE currency = $cur AND month < $as_of
            ) GROUP BY ALL
        """,
            {"cur": currency, "as_of": as_of_d},
        ).df()
    finally:
        con.close()

    period_start = pd.Timestamp(as_of_d).to_period("M" if freq == "MS" else "Q").start_time
    key = [PHASE, CATEGORY] + ([TEAM] if include_team else [])
    periodic[UID] = _bottom_uid(periodic, include_team)
    daily[UID] = _bottom_uid(daily, include_team)
    periodic = periodic.rename(columns={"period": DS})
    periodic[DS] = pd.to_datetime(periodic[DS])
    daily = daily.rename(columns={"day": DS})
    daily[DS] = pd.to_datetime(daily[DS])

    complete = periodic[periodic[DS] < period_start]
    # Month-to-date from the daily frame, so labor is pro-rated exactly as in ``daily``.
    current = daily[daily[DS] >= period_start].groupby(UID, as_index=False)[Y].sum()
    last_complete = period_start - pd.tseries.frequencies.to_offset(freq)
    bottom_ids = sorted(set(periodic[UID]) | set(daily[UID]))
    labels = _labels(
        pd.concat([periodic[[UID, *key]], daily[[UID, *key]]]).drop_duplicates(UID), include_team
    )

    monthly = _with_aggregates(_fill(complete, freq, last_complete), labels)
    daily_all = _with_aggregates(
        _fill(daily, "D", pd.Timestamp(as_of_d) - pd.Timedelta(days=1)), labels
    )

    days_in = (period_start + pd.tseries.frequencies.to_offset(freq) - period_start).days
    covered = (pd.Timestamp(as_of_d) - period_start).days
    if covered > 0:
        cur = (
            current[[UID, Y]]
            .set_index(UID)[Y]
            .reindex(bottom_ids, fill_value=0.0)
            .rename_axis(UID)
            .reset_index()
        )
        cur[DS] = period_start
        partial = _with_aggregates(cur, labels)
        partial["days_covered"] = covered
        partial["days_in_period"] = days_in
    else:
        partial = pd.DataFrame(
            columns=[UID, DS, Y, PHASE, CATEGORY, "days_covered", "days_in_period"]
        )
    return SeriesFrames(
        monthly=monthly,
        daily=daily_all,
        partial=partial.reset_index(drop=True),
        hierarchy=hierarchy(bottom_ids),
        as_of=as_of_d,
        currency=currency,
        cost_column=cost_column,
        freq=freq,
    )


def _pick_currency(con: duckdb.DuckDBPyConnection, currency: str | None, src: str) -> str:
    found = [
        r[0]
        for r in con.execute(
            "SELECT DISTINCT currency FROM (SELECT currency FROM daily_facts UNION SELECT currency FROM labor_monthly) ORDER BY 1"
        ).fetchall()
    ]
    if currency is not None:
        if currency not in found:
            raise InputError(
                Problem(f"no costs in {currency!r}; the warehouse holds {found}", src),
                fix="pick one of the currencies present",
            )
        return currency
    if not found:
        raise InputError(
            Problem("the warehouse holds no costs", src),
            fix="run `phasecast ingest --billing PATH` first",
        )
    if len(found) > 1:
        raise InputError(
            Problem(f"the warehouse holds costs in several currencies {found}", src),
            fix="choose one with currency=... (--currency); amounts are never converted",
        )
    return found[0]


def _bottom_uid(df: pd.DataFrame, include_team: bool) -> pd.Series:
    if df.empty:
        return pd.Series([], dtype=object, index=df.index)
    uid = [hierarchy_id(p, c) for p, c in zip(df[PHASE], df[CATEGORY], strict=True)]
    if include_team:
        uid = [f"{u}{SEP}{t}" for u, t in zip(uid, df[TEAM], strict=True)]
    return pd.Series(uid, index=df.index, dtype=object)


def _labels(df: pd.DataFrame, include_team: bool) -> pd.DataFrame:
    """uid -> phase, category (, team) for every node, aggregates included (None where aggregated)."""
    rows = []
    seen: set[str] = set()
    for r in df.itertuples(index=False):
        d = r._asdict()
        chain = [(d[UID], d[PHASE], d[CATEGORY], d.get(TEAM))]
        if include_team:
            chain.append((hierarchy_id(d[PHASE], d[CATEGORY]), d[PHASE], d[CATEGORY], None))
        chain += [(hierarchy_id(d[PHASE]), d[PHASE], None, None), (TOTAL, None, None, None)]
        for uid, p, c, t in chain:
            if uid not in seen:
                seen.add(uid)
                rows.append(
                    {UID: uid, PHASE: p, CATEGORY: c, **({TEAM: t} if include_team else {})}
                )
    cols = [UID, PHASE, CATEGORY] + ([TEAM] if include_team else [])
    return pd.DataFrame(rows, columns=cols)


def _fill(df: pd.DataFrame, freq: str, end: pd.Timestamp) -> pd.DataFrame:
    """Bottom nodes from their first period to ``end``, missing periods 0."""
    parts = []
    for uid, g in df.groupby(UID, sort=True):
        start = g[DS].min()
        if start > end:
            continue
        idx = pd.date_range(start, end, freq=freq, name=DS)
        s = g.groupby(DS)[Y].sum().reindex(idx, fill_value=0.0)
        parts.append(pd.DataFrame({UID: uid, DS: idx, Y: s.to_numpy(dtype=float)}))
    if not parts:
        return pd.DataFrame(
            {
                UID: pd.Series(dtype=object),
                DS: pd.Series(dtype="datetime64[ns]"),
                Y: pd.Series(dtype=float),
            }
        )
    return pd.concat(parts, ignore_index=True)


def _with_aggregates(bottom: pd.DataFrame, labels: pd.DataFrame) -> pd.DataFrame:
    """Add every aggregate node (sum of its bottom nodes per ds), then the label columns."""
    frames = [bottom[[UID, DS, Y]]]
    if not bottom.empty:
        parents = {u: node_parents(u) for u in bottom[UID].unique()}
        depth = max(len(p) for p in parents.values())
        for level in range(depth):
            b = bottom[[UID, DS, Y]].copy()
            b[UID] = b[UID].map(
                lambda u, lv=level: parents[u][lv] if lv < len(parents[u]) else None
            )
            b = b.dropna(subset=[UID])
            frames.append(b.groupby([UID, DS], as_index=False)[Y].sum())
    out = pd.concat(frames, ignore_index=True)
    out = out.groupby([UID, DS], as_index=False, sort=True)[Y].sum()
    out[Y] = out[Y].astype(float)
    out = out.merge(labels, on=UID, how="left")
    for c in labels.columns:
        if c != UID:
            out[c] = out[c].astype(object).where(out[c].notna(), None)
    return out.sort_values([UID, DS], kind="stable").reset_index(drop=True)
