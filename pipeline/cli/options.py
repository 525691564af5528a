"""Options several commands share."""

from __future__ import annotations

import click

scheduler_option = click.option(
    "--scheduler",
    default=None,
    metavar="ADDRESS",
    help="Run on a Dask cluster: a running scheduler's address (tcp://HOST:8786) or 'local' "
    "(a cluster of this machine's cores) [default: the config file's scheduler:, else serial].",
)


class Day(click.ParamType):
    """A calendar day ``YYYY-MM-DD`` (a ``datetime``, as ``click.DateTime`` gives), whose error
    says what is wrong: the form, or a day the month does not have (2026-11-31)."""

    name = "YYYY-MM-DD"

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> object:
        import calendar
        import datetime as dt
        import re

        if isinstance(value, dt.datetime):
            return value
        text = str(value).strip()
        m = re.fullmatch(r"(\d{4})-(\d{2})-(\d{2})", text)
        if m is None:
            self.fail(f"{text!r} is not a day in the form YYYY-MM-DD (e.g. 2026-11-15)", param, ctx)
        y, mo, d = (int(g) for g in m.groups())
        if not 1 <= mo <= 12:
            self.fail(f"{text!r} has no month {mo:02d}: months run 01 to 12", param, ctx)
        last = calendar.monthrange(y, mo)[1]
        if not 1 <= d <= last:
            month = dt.date(y, mo, 1).strftime("%B %Y")
            self.fail(f"{text!r} is not a day: {month} has {last} days", param, ctx)
        return dt.datetime(y, mo, d)


DAY = Day()
