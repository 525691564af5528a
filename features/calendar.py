"""Calendar features of a month: plain functions of ``ds`` (month-start timestamps), no I/O.

Each function's name is the column it makes. Promotion features count the days of each
e-commerce event's window that fall in the month (0 when the event misses the month), so a
window that straddles two months (Spring Festival often does) is split between them:

* ``promo_618_days``: JD.com's 618 festival, 1-18 June (the sales run from 1 June to the 18th);
* ``promo_double11_days``: Singles' Day, 11 November, with the Tmall pre-sale from 1 November;
  counted as the 11 days 1-11 November;
* ``promo_bfcm_days``: Black Friday (the day after the fourth Thursday of November) to Cyber
  Monday, 4 days (it can spill into December: 2025-11-28 .. 2025-12-01);
* ``spring_festival_days``: the Spring Festival holiday, Lunar New Year's Eve to the 6th day of
  the first lunar month (8 days: the official Chinese holiday), from the lunar dates in
  :data:`SPRING_FESTIVAL` (2015-2035). Traffic dips over it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import numpy as np
import pandas as pd

# Lunar New Year's Day (the first day of the first lunar month), Gregorian date, 2015-2035.
SPRING_FESTIVAL: dict[int, dt.date] = {
    2015: dt.date(2015, 2, 19),
    2016: dt.date(2016, 2, 8),
    2017: dt.date(2017, 1, 28),
    2018: dt.date(2018, 2, 16),
    2019: dt.date(2019, 2, 5),
    2020: dt.date(2020, 1, 25),
    2021: dt.date(2021, 2, 12),
    2022: dt.date(2022, 2, 1),
    2023: dt.date(2023, 1, 22),
    2024: dt.date(2024, 2, 10),
    2025: dt.date(2025, 1, 29),
    2026: dt.date(2026, 2, 17),
    2027: dt.date(2027, 2, 6),
    2028: dt.date(2028, 1, 26),
    2029: dt.date(2029, 2, 13),
    2030: dt.date(2030, 2, 3),
    2031: dt.date(2031, 1, 23),
    2032: dt.date(2032, 2, 11),
    2033: dt.date(2033, 1, 31),
    2034: dt.date(2034, 2, 19),
    2035: dt.date(2035, 2, 8),
}
SPRING_FESTIVAL_WINDOW = (-1, 7)  # from New Year's Eve (day -1) for 8 days
BFCM_DAYS = 4


def _ds(ds: pd.Series | pd.DatetimeIndex) -> pd.DatetimeIndex:
    return pd.DatetimeIndex(pd.to_datetime(ds)).to_period("M").to_timestamp()


def _as_series(values: np.ndarray, ds: pd.Series | pd.DatetimeIndex) -> pd.Series:
    index = ds.index if isinstance(ds, pd.Series) else None
    return pd.Series(values, index=index)


def month(ds: pd.Series) -> pd.Series:
    """Month of the year, 1-12."""
    return _as_series(_ds(ds).month.to_numpy(), ds)


def quarter(ds: pd.Series) -> pd.Series:
    """Quarter of the year, 1-4."""
    return _as_series(_ds(ds).quarter.to_numpy(), ds)


def days_in_month(ds: pd.Series) -> pd.Series:
    return _as_series(_ds(ds).days_in_month.to_numpy(), ds)


def business_days_in_month(ds: pd.Series) -> pd.Series:
    """Monday-Friday days in the month (no public holidays: they differ by country)."""
    start = _ds(ds)
    end = start + pd.offsets.MonthBegin(1)
    return _as_series(
        np.busday_count(start.values.astype("datetime64[D]"), end.values.astype("datetime64[D]")),
        ds,
    )


def black_friday(year: int) -> dt.date:
    """The day after the fourth Thursday of November."""
    first = dt.date(year, 11, 1)
    first_thursday = 1 + (3 - first.weekday()) % 7
    return dt.date(year, 11, first_thursday + 21 + 1)


def spring_festival(year: int) -> dt.date:
    try:
        return SPRING_FESTIVAL[year]
    except KeyError:
        raise ValueError(
            f"Spring Festival dates are tabulated for {min(SPRING_FESTIVAL)}-{max(SPRING_FESTIVAL)}. Got {year} instead."
        ) from None


def _window_days_in_month(m: pd.Timestamp, start: dt.date, days: int) -> int:
    """How many of the ``days`` days from ``start`` fall in month ``m``."""
    a = max(pd.Timestamp(start), m)
    b = min(pd.Timestamp(start) + pd.Timedelta(days=days), m + pd.offsets.MonthBegin(1))
    return max(0, (b - a).days)


def _event_days(ds: pd.Series, make: Callable[[int], tuple[dt.date | None, int]]) -> pd.Series:
    months = _ds(ds)
    uniq, inverse = np.unique(months.values, return_inverse=True)
    counts = np.zeros(len(uniq), dtype=int)
    for i, m in enumerate(pd.DatetimeIndex(uniq)):
        # an event of a neighbouring year can reach into this month (Spring Festival, BFCM)
        for year in (m.year - 1, m.year, m.year + 1):
            start, days = make(year)
            if start is not None:
                counts[i] += _window_days_in_month(m, start, days)
    return _as_series(counts[inverse.ravel()], ds)


def promo_618_days(ds: pd.Series) -> pd.Series:
    return _event_days(ds, lambda y: (dt.date(y, 6, 1), 18))


def promo_double11_days(ds: pd.Series) -> pd.Series:
    return _event_days(ds, lambda y: (dt.date(y, 11, 1), 11))


def promo_bfcm_days(ds: pd.Series) -> pd.Series:
    return _event_days(ds, lambda y: (black_friday(y), BFCM_DAYS))


def spring_festival_days(ds: pd.Series) -> pd.Series:
    def make(year: int) -> tuple[dt.date | None, int]:
        if year not in SPRING_FESTIVAL:
            return None, 0
        lo, hi = SPRING_FESTIVAL_WINDOW
        return SPRING_FESTIVAL[year] + dt.timedelta(days=lo), hi - lo

    return _event_days(ds, make)


def calendar_features(ds: pd.Series) -> pd.DataFrame:
    """Every calendar feature of ``ds``, one column each (named after its function)."""
    funcs = (
        month,
        quarter,
        days_in_month,
        business_days_in_month,
        promo_618_days,
        promo_double11_days,
        promo_bfcm_days,
        spring_festival_days,
    )
    return pd.DataFrame(
        {f.__name__: f(ds).to_numpy() for f in funcs},
        index=ds.index if isinstance(ds, pd.Series) else None,
    )


def promotion_intensity(ds: pd.Series) -> pd.DataFrame:
    """Three calendar regressors per month, each 1 in a month holding its whole event window:
    ``p618`` (618 days / 18), ``pnov`` (Double 11 plus Black Friday / Cyber Monday days / 15: the
    two November events are too close to tell apart in monthly data) and ``pfestival`` (Spring
    Festival days / 8). What :mod:`pipeline.models.promo` estimates each series' uplift on."""
    index = ds.index if isinstance(ds, pd.Series) else None
    return pd.DataFrame(
        {
            "p618": promo_618_days(ds).to_numpy() / 18.0,
            "pnov": (promo_double11_days(ds).to_numpy() + promo_bfcm_days(ds).to_numpy()) / 15.0,
            "pfestival": spring_festival_days(ds).to_numpy() / 8.0,
        },
        index=index,
    )
