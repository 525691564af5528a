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

One currency per build: money in different currencies is never added. Without ``currency`` the
currency with the most cost (absolute, billing and labor) is built and the others are logged as left
out (``SeriesFrames.other_currencies``); a second currency never blocks the main one.

What the data can say:
- A month is complete only when the data reaches its last day, per provider: every provider with
  charges in the month must have a charge starting on or after the month's last day (before
  ``as_of``). Otherwise it is the partial month (month-to-date), even when ``as_of`` is later, and the
  build logs why. ``SeriesFrames.months`` lists every month with ``complete`` and ``reason``;
  ``SeriesFrames.partial_reason`` says why the partial month is partial. (A provider that only bills
  once a month, on the 1st, looks incomplete until its next charge arrives.)
- An ``as_of`` more than one month after the last charge is an InputError naming the last charge
  date (:func:`check_as_of`): the months in between would be forecast as zero cost.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

from pipeline.errors import InputError, Problem
from pipeline.frames import (
    CATEGORY,
    DS,
    PHASE,
    SEP,
    TOTAL,
    UID,
    Y,
    hierarchy_id,
    node_parents,
    safe_label,
)
from pipeline.ingest.warehouse import COST_COLUMNS

log = logging.getLogger(__name__)

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
    #: One row per month from the first with cost to the as-of month: ``ds, complete, reason``.
    months: pd.DataFrame = field(
        default_factory=lambda: pd.DataFrame(columns=[DS, "complete", "reason"])
    )
    #: Why the month of ``partial`` is not complete ("" when there is no partial month).
    partial_reason: str = ""
    #: Currencies in the warehouse that this build left out (never added to ``currency``).
    other_currencies: tuple[str, ...] = ()

    @property
    def complete_months(self) -> list[pd.Timestamp]:
        return [
            pd.Timestamp(d)
            for d, ok in zip(self.months[DS], self.months["complete"], strict=True)
            if ok
        ]

    @property
    def partial_month(self) -> pd.Timestamp | None:
        """The first month that is not complete (the month of ``partial``), or None."""
        if self.partial.empty:
            return None
        return pd.Timestamp(self.partial[DS].iloc[0])

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


def warehouse_cost(warehouse_path: Path | str, cost_column: str) -> tuple[Path, str]:
    """The warehouse file (which must exist) and the fact column of a FOCUS cost column."""
    if cost_column not in COST_COLUMNS or cost_column == "ContractedCost":
        raise InputError(
            f"cost_column must be EffectiveCost, BilledCost or ListCost. Got {cost_column!r} instead.",
            fix="pick one of EffectiveCost, BilledCost, ListCost",
        )
    path = Path(warehouse_path)
    if not path.exists():
        raise InputError(
            Problem("no warehouse here", str(path)),
            fix="run `phasecast ingest --billing PATH` first",
        )
    return path, COST_COLUMNS[cost_column]


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
    if freq not in _TRUNC:
        raise InputError(
            f"freq must be one of {list(_TRUNC)}. Got {freq!r} instead.", fix="use freq='MS'"
        )
    path, col = warehouse_cost(warehouse_path, cost_column)
    con = duckdb.connect(str(path), read_only=True)
    try:
        con.execute("SET TimeZone='UTC'")
        currency, others = _pick_currency(con, currency, str(path), col)
        (last,) = con.execute(
            "SELECT max(day) FROM daily_facts WHERE currency = ?", [currency]
        ).fetchone()  # type: ignore[misc]
        if last is None:
            (last,) = con.execute(
                "SELECT last_day(max(month)) FROM labor_monthly WHERE currency = ?", [currency]
            ).fetchone()  # type: ignore[misc]
        if as_of is None:
            as_of_d = last + dt.timedelta(days=1)
        else:
            as_of_d = pd.Timestamp(as_of).date()
            check_as_of(as_of_d, last, str(path))
        provider_last = dict(
            con.execute(
                "SELECT provider, max(day) FROM daily_facts WHERE currency = $cur AND day < $as_of GROUP BY 1",
                {"cur": currency, "as_of": as_of_d},
            ).fetchall()
        )
        unit = _TRUNC[freq]
        provider_periods = con.execute(
            f"SELECT DISTINCT provider, CAST(date_trunc('{unit}', day) AS DATE) FROM daily_facts "
            "WHERE currency = $cur AND day < $as_of",
            {"cur": currency, "as_of": as_of_d},
        ).fetchall()
        team_sel = f", coalesce(team, '{UNASSIGNED_TEAM}') AS team" if include_team else ""
        facts = facts_relation(con)  # after usage-based allocation
        # Monthly (per period) sums, exact in SQL, float at the end.
        periodic = con.execute(
            f"""
            SELECT period, phase, category{", team" if include_team else ""}, CAST(sum(y) AS DOUBLE) AS y FROM (
                SELECT CAST(date_trunc('{unit}', day) AS DATE) AS period, phase, category{team_sel}, {col} AS y
                FROM {facts} WHERE currency = $cur AND day < $as_of
                UNION ALL
                SELECT CAST(date_trunc('{unit}', month) AS DATE), phase, 'labor'{team_sel}, cost
                FROM labor_monthly WHERE currency = $cur AND month < $as_of
            ) GROUP BY ALL ORDER BY ALL  -- a fixed row order: pandas sums them in this order
        """,
            {"cur": currency, "as_of": as_of_d},
        ).df()
        daily = con.execute(
            f"""
            SELECT day, phase, category{", team" if include_team else ""}, sum(y ORDER BY y) AS y FROM (
                -- a float sum in a fixed order: its last bits would otherwise depend on the order
                -- DuckDB's threads add rows in, and a re-run must give the same bits
                SELECT day, phase, category{team_sel}, CAST({col} AS DOUBLE) AS y
                FROM {facts} WHERE currency = $cur AND day < $as_of
                UNION ALL
                -- A month's labor row is the hours booked so far: spread over the month's days
                -- up to the as-of date, so the current month's booking is month-to-date, not 1/30th.
                SELECT CAST(d AS DATE), phase, 'labor'{team_sel},
                       CAST(cost AS DOUBLE) / (date_diff('day', month, least(last_day(month), CAST($as_of AS DATE) - 1)) + 1)
                FROM labor_monthly,
                     generate_series(month, least(last_day(month), CAST($as_of AS DATE) - 1), INTERVAL 1 DAY) AS g(d)
                WHERE currency = $cur AND month < $as_of
            ) GROUP BY ALL ORDER BY ALL  -- a fixed row order: pandas sums them in this order
        """,
            {"cur": currency, "as_of": as_of_d},
        ).df()
    finally:
        con.close()

    offset = pd.tseries.frequencies.to_offset(freq)
    as_of_start = pd.Timestamp(as_of_d).to_period("M" if freq == "MS" else "Q").start_time
    period_start, partial_reason, data_end = _first_incomplete(
        as_of_start, offset, provider_last, provider_periods
    )
    if partial_reason and period_start < as_of_start:
        log.warning(
            "%s is not complete (%s): it is the partial month; complete months end with %s (%s)",
            f"{period_start:%Y-%m}",
            partial_reason,
            f"{period_start - offset:%Y-%m}",
            currency,
        )
    if others:
        log.warning(
            "the warehouse also holds costs in %s, left out of this %s build (pick one with --currency)",
            ", ".join(others),
            currency,
        )
    key = [PHASE, CATEGORY] + ([TEAM] if include_team else [])
    periodic[UID] = _bottom_uid(periodic, include_team)
    daily[UID] = _bottom_uid(daily, include_team)
    periodic = periodic.rename(columns={"period": DS})
    periodic[DS] = pd.to_datetime(periodic[DS])
    daily = daily.rename(columns={"day": DS})
    daily[DS] = pd.to_datetime(daily[DS])

    complete = periodic[periodic[DS] < period_start]
    # Month-to-date from the daily frame, so labor is pro-rated exactly as in ``daily``.
    period_end = period_start + offset
    current = (
        daily[(daily[DS] >= period_start) & (daily[DS] < period_end)]
        .groupby(UID, as_index=False)[Y]
        .sum()
    )
    last_complete = period_start - offset
    bottom_ids = sorted(set(periodic[UID]) | set(daily[UID]))
    labels = _labels(
        pd.concat([periodic[[UID, *key]], daily[[UID, *key]]]).drop_duplicates(UID), include_team
    )

    monthly = _with_aggregates(_fill(complete, freq, last_complete), labels)
    daily_all = _with_aggregates(
        _fill(daily, "D", pd.Timestamp(as_of_d) - pd.Timedelta(days=1)), labels
    )

    days_in = (period_end - period_start).days
    covered = (min(pd.Timestamp(as_of_d), period_end) - period_start).days
    if period_start < as_of_start and data_end is not None:  # a month the data stops inside
        covered = (pd.Timestamp(data_end) + pd.Timedelta(days=1) - period_start).days
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
        months=_month_table(monthly, period_start, as_of_start, offset, partial_reason),
        partial_reason=partial_reason if covered > 0 else "",
        other_currencies=tuple(others),
    )


def require_a_month(monthly: pd.DataFrame, as_of: object, warehouse: Path | str) -> None:
    """An as-of before the first billed month leaves no complete month: an argument to fix (exit
    2), the same for every command that builds the series."""
    if monthly.empty:
        raise InputError(
            Problem(f"no complete month of cost before {as_of} in the warehouse", str(warehouse)),
            fix="pass an --as-of at least a month after the first billed month, or ingest "
            "the billing exports of the months before it",
        )


def check_as_of(as_of: dt.date, last_charge: dt.date | None, source: str = "") -> None:
    """Raise InputError when ``as_of`` is more than one month after ``last_charge``.

    The months in between have no data, so they would be built as zero cost and every model would look
    as good as its zeros. ``last_charge``: the warehouse's last charge date (None: nothing to check).
    """
    if last_charge is None:
        return
    limit = (pd.Timestamp(last_charge) + pd.DateOffset(months=1)).date()
    if as_of > limit:
        raise InputError(
            Problem(
                f"as-of {as_of} is more than one month after the last charge in the warehouse "
                f"({last_charge}); the months in between would count as zero cost",
                source or None,
            ),
            fix=f"ingest the missing billing exports, or pass --as-of {limit} or earlier",
        )


def _first_incomplete(
    as_of_start: pd.Timestamp,
    offset: pd.DateOffset,
    provider_last: dict[str, dt.date],
    provider_periods: list[tuple[str, dt.date]],
) -> tuple[pd.Timestamp, str, dt.date | None]:
    """(start of the partial period, why it is partial, the day its data ends).

    The period before ``as_of``'s is complete only when every provider with charges in it has a charge
    on or after its last day; otherwise the data stops inside it and it becomes the partial period.
    """
    prev = as_of_start - offset
    last_day = (as_of_start - pd.Timedelta(days=1)).date()
    in_prev = sorted(p for p, m in provider_periods if pd.Timestamp(m) == prev)
    short = {p: provider_last[p] for p in in_prev if provider_last[p] < last_day}
    if short:
        why = "; ".join(f"{p}'s charges end {d}" for p, d in sorted(short.items()))
        return prev, f"the data does not reach its last day {last_day}: {why}", min(short.values())
    return as_of_start, "the as-of date is inside it", None


def _month_table(
    monthly: pd.DataFrame,
    period_start: pd.Timestamp,
    as_of_start: pd.Timestamp,
    offset: pd.DateOffset,
    partial_reason: str,
) -> pd.DataFrame:
    """``ds, complete, reason`` for every period from the first built one to the as-of period."""
    first = monthly[DS].min() if not monthly.empty else period_start
    rows = []
    d = pd.Timestamp(min(first, period_start))
    while d <= as_of_start:
        if d < period_start:
            rows.append((d, True, "the data reaches its last day for every provider"))
        elif d == period_start:
            rows.append((d, False, partial_reason))
        else:
            rows.append((d, False, "after the data's end"))
        d = d + offset
    return pd.DataFrame(rows, columns=[DS, "complete", "reason"])


def facts_relation(con: duckdb.DuckDBPyConnection) -> str:
    """The cost rows series are built from: the view ``cost_facts`` (facts after usage-based
    allocation, :mod:`pipeline.ingest.allocation`), or ``daily_facts`` in a warehouse from before it."""
    (n,) = con.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_name = 'cost_facts'"
    ).fetchone()  # type: ignore[misc]
    return "cost_facts" if n else "daily_facts"


def _pick_currency(
    con: duckdb.DuckDBPyConnection, currency: str | None, src: str, col: str
) -> tuple[str, list[str]]:
    """(the currency to build, the others left out). Without ``currency``: the one with most cost."""
    found = {
        r[0]: r[1]
        for r in con.execute(f"""
            SELECT currency, sum(abs(y)) FROM (
                SELECT currency, {col} AS y FROM daily_facts UNION ALL SELECT currency, cost FROM labor_monthly
            ) GROUP BY 1 ORDER BY 1
        """).fetchall()
    }
    if currency is not None:
        want = currency.strip().upper()
        if want not in found:
            raise InputError(
                Problem(f"no costs in {currency!r}; the warehouse holds {sorted(found)}", src),
                fix="pick one of the currencies present with --currency",
            )
        return want, sorted(c for c in found if c != want)
    if not found:
        raise InputError(
            Problem("the warehouse holds no costs", src),
            fix="run `phasecast ingest --billing PATH` first",
        )
    main = sorted(found, key=lambda c: (-(found[c] or 0), c))[0]
    return main, sorted(c for c in found if c != main)


def _bottom_uid(df: pd.DataFrame, include_team: bool) -> pd.Series:
    if df.empty:
        return pd.Series([], dtype=object, index=df.index)
    uid = [hierarchy_id(p, c) for p, c in zip(df[PHASE], df[CATEGORY], strict=True)]
    if include_team:
        uid = [f"{u}{SEP}{safe_label(t)}" for u, t in zip(uid, df[TEAM], strict=True)]
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
    sums = df.groupby([UID, DS], sort=True)[Y].sum()
    starts = sums.reset_index().groupby(UID, sort=True)[DS].min()
    starts = starts[starts <= end]
    spans = [pd.date_range(start, end, freq=freq) for start in starts]
    if spans:
        full = pd.MultiIndex.from_arrays(
            [
                np.repeat(starts.index.to_numpy(dtype=object), [len(s) for s in spans]),
                np.concatenate([s.to_numpy() for s in spans]),
            ],
            names=[UID, DS],
        )
        filled = sums.reindex(full, fill_value=0.0)
        return pd.DataFrame(
            {
                UID: full.get_level_values(UID).to_numpy(dtype=object),
                DS: full.get_level_values(DS),
                Y: filled.to_numpy(dtype=float),
            }
        )
    return pd.DataFrame(
        {
            UID: pd.Series(dtype=object),
            DS: pd.Series(dtype="datetime64[ns]"),
            Y: pd.Series(dtype=float),
        }
    )


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


def monthly_usage(
    warehouse_path: Path | str, metric: str, phase: str, before: dt.date | str
) -> pd.Series:
    """A usage metric's monthly sum for one phase over the months that end before ``before`` (the
    first day of the partial month), indexed by ``ds``; empty when the warehouse has none."""
    path = Path(warehouse_path)
    con = duckdb.connect(str(path), read_only=True)
    try:
        rows = con.execute(
            "SELECT CAST(date_trunc('month', day) AS DATE) AS ds, sum(value_sum) FROM usage_daily "
            "WHERE metric = $m AND phase = $p AND day < $b GROUP BY 1 ORDER BY 1",
            {"m": metric, "p": phase, "b": pd.Timestamp(before).date()},
        ).fetchall()
    except duckdb.CatalogException:
        rows = []
    finally:
        con.close()
    return pd.Series(
        [float(v or 0.0) for _, v in rows],
        index=pd.DatetimeIndex([pd.Timestamp(d) for d, _ in rows], name=DS),
        dtype=float,
    )
