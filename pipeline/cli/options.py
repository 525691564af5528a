"""Options several commands share."""

from __future__ import annotations

import click


def outside_run_folders(ctx: click.Context, param: click.Parameter, value: object) -> object:
    """A click callback for an output path: never in a stored run's folder, which only the run
    that made it writes (a file dropped there would ride along with the run's own)."""
    from pathlib import Path

    from pipeline.runstore import holding_run

    if value is None:
        return value
    inside = holding_run(Path(str(value)))
    if inside is not None:
        raise click.BadParameter(
            f"{value} is in the stored run {inside}; only the run writes there: pass a path "
            "outside it",
            ctx,
            param,
        )
    return value


TABLE_SUFFIXES = (".csv", ".parquet", ".pq")
COMPRESSED = (".gz", ".bz2", ".xz")


def table_file(ctx: click.Context, param: click.Parameter, value: object) -> object:
    """A click callback for a table to write: CSV (``.csv.gz`` too) or Parquet by its extension
    (an .xlsx got CSV text), outside the stored runs' folders (:func:`outside_run_folders`)."""
    from pathlib import Path

    value = outside_run_folders(ctx, param, value)
    if value is None:
        return value
    suffixes = [x.lower() for x in Path(str(value)).suffixes]
    if suffixes[-1:] and suffixes[-1] in COMPRESSED:
        suffixes = suffixes[:-1]  # x.csv.gz: pandas compresses by the name
    if not suffixes or suffixes[-1] not in TABLE_SUFFIXES:
        suffix = Path(str(value)).suffix or "no extension"
        raise click.BadParameter(f"{value}: a .csv or .parquet file, not {suffix}", ctx, param)
    return value


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
