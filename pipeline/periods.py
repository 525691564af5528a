"""Period algebra: budget periods (a month ``2027-01`` or a quarter ``2027Q1``), the quarters a run
plans by default, and how far a forecast must reach to cover a period.

Pure functions on dates; no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import pandas as pd

from pipeline.errors import InputError
from pipeline.frames import TOTAL

_QUARTER = re.compile(r"^\s*(\d{4})\s*-?\s*[Qq]([1-4])\s*$")
_MONTH = re.compile(r"^\s*(\d{4})-(\d{1,2})\s*$")


@dataclass(frozen=True)
class Period:
    """A budget period: a calendar month (``2027-01``) or quarter (``2027Q1``)."""

    label: str
    months: tuple[pd.Timestamp, ...]

    @property
    def kind(self) -> str:
        return "quarter" if len(self.months) == 3 else "month"

    @property
    def start(self) -> pd.Timestamp:
        return self.months[0]

    @property
    def end(self) -> pd.Timestamp:
        """The last day of the period (inclusive)."""
        return self.months[-1] + pd.offsets.MonthEnd(0)

    def previous(self) -> Period:
        """The period of the same kind just before this one."""
        n = len(self.months)
        return _make_period(self.start - pd.DateOffset(months=n), n)

    def next(self) -> Period:
        """The period of the same kind just after this one."""
        n = len(self.months)
        return _make_period(self.start + pd.DateOffset(months=n), n)


def _make_period(start: pd.Timestamp, n: int) -> Period:
    months = tuple(pd.date_range(start, periods=n, freq="MS"))
    if n == 3:
        label = f"{start.year}Q{(start.month - 1) // 3 + 1}"
    else:
        label = f"{start.year}-{start.month:02d}"
    return Period(label, months)


def parse_period(value: Any) -> Period:
    """``2027Q1`` (or ``2027-Q1``) -> the quarter's three months; ``2027-01`` -> that month."""
    if isinstance(value, Period):
        return value
    s = str(value)
    m = _QUARTER.match(s)
    if m:
        year, q = int(m.group(1)), int(m.group(2))
        return _make_period(pd.Timestamp(year=year, month=3 * q - 2, day=1), 3)
    m = _MONTH.match(s)
    if m and 1 <= int(m.group(2)) <= 12:
        return _make_period(pd.Timestamp(year=int(m.group(1)), month=int(m.group(2)), day=1), 1)
    raise InputError(
        f"cannot read period {s!r}: expected a month like 2027-01 or a quarter like 2027Q1",
        fix="write periods as YYYY-MM (a month) or YYYYQn (a quarter)",
    )


def quarter_of(day: Any) -> Period:
    """The calendar quarter that contains ``day``."""
    d = pd.Timestamp(day)
    return _make_period(pd.Timestamp(year=d.year, month=3 * ((d.month - 1) // 3) + 1, day=1), 3)


def default_quarters(as_of: Any) -> tuple[Period, Period]:
    """The quarters a monthly run plans when none are configured: the current and the next."""
    q = quarter_of(as_of)
    return q, q.next()


def line_uid(phase: str) -> str:
    """The hierarchy node a budget line for ``phase`` is measured on (``total`` or the phase)."""
    return TOTAL if phase == TOTAL else phase


def months_until(last_complete: pd.Timestamp, period: Period) -> int:
    """Forecast horizon (months after ``last_complete``) needed to reach the period's end."""
    return max(
        1,
        (period.months[-1].year - last_complete.year) * 12
        + period.months[-1].month
        - last_complete.month,
    )


def horizon_for(base: int, last_complete: pd.Timestamp, periods: Iterable[Period]) -> int:
    """The run's one horizon: ``base`` months (18 by default), or as far as the furthest period
    that must be answered from the run needs, whichever is longer."""
    need = [months_until(last_complete, p) for p in periods if p.months[-1] > last_complete]
    return max([int(base), *need])
