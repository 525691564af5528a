"""The e-commerce calendar behind the synthetic traffic: promotions on their real dates, the Spring
Festival dip and the weekly shape. Plain functions of a day; multipliers around 1.0."""

from __future__ import annotations

import datetime as dt

import numpy as np

# The Spring Festival table and Black Friday rule are the features' own: one calendar for both.
from features.calendar import SPRING_FESTIVAL, black_friday

__all__ = ["SPRING_FESTIVAL", "WEEKLY", "black_friday", "cyber_monday", "promotion_factor"]

# Monday .. Sunday: shoppers browse more at the weekend.
WEEKLY: tuple[float, ...] = (0.96, 0.95, 0.96, 0.97, 1.00, 1.07, 1.09)


def cyber_monday(year: int) -> dt.date:
    return black_friday(year) + dt.timedelta(days=3)


def promotion_factor(day: dt.date) -> float:
    """Traffic multiplier of the promotions: 618 (June 18, ramp from June 1), Double 11 (Nov 11, ramp
    from Nov 1), Black Friday to Cyber Monday."""
    f = 1.0
    y, m, d = day.year, day.month, day.day
    if m == 6:
        if d < 18:
            f *= 1.0 + 0.30 * (d - 1) / 17.0
        elif d == 18:
            f *= 2.0
        elif d == 19:
            f *= 1.25
    if m == 11:
        if d < 11:
            f *= 1.0 + 0.40 * (d - 1) / 10.0
        elif d == 11:
            f *= 2.6
        elif d == 12:
            f *= 1.3
        bf, cm = black_friday(y), cyber_monday(y)
        if day == bf:
            f *= 1.8
        elif bf < day < cm:
            f *= 1.35
        elif day == cm:
            f *= 1.7
    if m == 12 and day == cyber_monday(y):  # Cyber Monday can fall on Dec 1
        f *= 1.7
    return f


def festival_factor(day: dt.date) -> float:
    """The Spring Festival dip: a week of low traffic around Lunar New Year (logistics stop)."""
    sf = SPRING_FESTIVAL.get(day.year)
    if sf is None:
        return 1.0
    k = (day - sf).days
    if -7 <= k <= -4:
        return 0.85
    if -3 <= k <= 6:
        return 0.62
    if 7 <= k <= 10:
        return 0.82
    return 1.0


def traffic_shape(days: list[dt.date]) -> np.ndarray:
    """Weekly x promotion x festival multiplier per day."""
    return np.array(
        [WEEKLY[d.weekday()] * promotion_factor(d) * festival_factor(d) for d in days], dtype=float
    )


def events(start: dt.date, end: dt.date) -> list[dict[str, object]]:
    """Known calendar events between two dates (for the plan's drivers)."""
    out: list[dict[str, object]] = []
    for y in range(start.year, end.year + 1):
        cand = [
            {
                "name": "618",
                "start": dt.date(y, 6, 1),
                "peak": dt.date(y, 6, 18),
                "peak_factor": 2.0,
            },
            {
                "name": "double-11",
                "start": dt.date(y, 11, 1),
                "peak": dt.date(y, 11, 11),
                "peak_factor": 2.6,
            },
            {
                "name": "black-friday",
                "start": black_friday(y),
                "peak": black_friday(y),
                "peak_factor": 1.8,
            },
            {
                "name": "cyber-monday",
                "start": cyber_monday(y),
                "peak": cyber_monday(y),
                "peak_factor": 1.7,
            },
        ]
        if y in SPRING_FESTIVAL:
            sf = SPRING_FESTIVAL[y]
            cand.append(
                {
                    "name": "spring-festival",
                    "start": sf - dt.timedelta(days=7),
                    "peak": sf,
                    "peak_factor": 0.62,
                }
            )
        out += [e for e in cand if start <= e["peak"] <= end]  # type: ignore[operator]
    return sorted(out, key=lambda e: e["peak"])  # type: ignore[arg-type,return-value]
