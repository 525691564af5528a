"""Tables for the terminal: budget lines, quarter plans and scenarios, in fixed-width text.

Formatting only: the numbers come from :mod:`pipeline.flags`, :mod:`pipeline.budget` and
:mod:`pipeline.whatif` unchanged (rounded to whole currency units for reading).
"""

from __future__ import annotations

import math
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

import pandas as pd


def fixed(v: float, places: int, shift: int = 0) -> str:
    """``v x 10^shift`` to ``places`` decimals, half away from zero on the decimal the number
    prints as: 0.015 (30 of 2,000 paths) is ``0.02`` and, shifted to a percentage, ``2``, in every
    table and page. Python's own formatting rounds the binary value (0.01499...) to ``0.01``
    while ``100 x 0.015`` is exactly 1.5 and rounds to ``2``: the terminal and the report named two
    chances for one line."""
    x = float(v)
    if not math.isfinite(x):
        return "-"
    q = Decimal(1).scaleb(-places)
    try:
        return str(Decimal(repr(x)).scaleb(shift).quantize(q, rounding=ROUND_HALF_UP))
    except InvalidOperation:  # beyond the decimal context's precision: no halves to round
        return f"{x * 10**shift:.{places}f}"


def signed(x: float) -> str:
    """A change in whole currency units with its sign; ``0`` under half a unit (never ``-0``)."""
    if not math.isfinite(float(x)):
        return "-"
    v = round(float(x))
    return "0" if v == 0 else f"{v:+,}"


def _money(x: float) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "-"
    return f"{x:,.0f}"


def format_flags(flags: pd.DataFrame, color: bool = False) -> str:
    """A fixed-width table for the terminal (statuses coloured when ``color``)."""
    head = [
        "period",
        "phase",
        "budget",
        "actual",
        "expected total",
        "P80",
        "p_overrun",
        "E[overrun]",
        "status",
        "anomaly",
    ]
    rows = [
        [
            r.period,
            r.phase,
            _money(r.budget),
            _money(r.actual_to_date),
            _money(r.forecast_total),
            _money(r.p80),
            fixed(r.p_overrun, 2),
            _money(r.expected_overrun),
            r.status,
            getattr(r, "anomaly_months", "") or "",
        ]
        for r in flags.itertuples(index=False)
    ]
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows, strict=False)]
    right = {2, 3, 4, 5, 6, 7}

    def fmt(cells: list[str], style: bool) -> str:
        parts = []
        for j, (c, w) in enumerate(zip(cells, widths, strict=True)):
            s = str(c).rjust(w) if j in right else str(c).ljust(w)
            if style and color and j == 8:
                import click

                s = click.style(
                    s,
                    fg={
                        "ok": "green",
                        "watch": "yellow",
                        "at_risk": "red",
                        "over_budget": "magenta",
                    }.get(c),
                    bold=c != "ok",
                )
            parts.append(s)
        return "  ".join(parts).rstrip()

    lines = [fmt(head, False), "  ".join("-" * w for w in widths)]
    lines += [fmt(r, True) for r in rows]
    unbudgeted = outside_budget_lines(flags)
    if unbudgeted:
        lines.append(
            "the total holds phases without a budget line too (not flagged; the phases above add "
            "up to the total less these): "
            + ", ".join(f"{p} {_money(v)}" for p, v in unbudgeted.items())
        )
    return "\n".join(lines)


def outside_budget_lines(flags: pd.DataFrame) -> dict[str, float]:
    """Per period with a ``total`` line and phase lines, the total's forecast less its phase
    lines' (the cost of phases without a budget line, e.g. unallocated), where that is at least
    half a unit."""
    out: dict[str, float] = {}
    if not len(flags) or "total" not in set(flags["phase"]):
        return out
    for period, g in flags.groupby("period", sort=False):
        tot = g.loc[g["phase"] == "total", "forecast_total"]
        if tot.empty or (g["phase"] != "total").sum() == 0:  # no phase line to fall short
            continue
        rest = float(tot.iloc[0]) - float(g.loc[g["phase"] != "total", "forecast_total"].sum())
        if abs(rest) >= 0.5:
            out[str(period)] = rest
    return out


def format_budget(table: pd.DataFrame, scenarios: pd.DataFrame | None = None) -> str:
    """The quarter table (and scenario deltas) for the terminal."""
    t = table
    head = [
        "phase",
        "expected",
        "P50",
        "P80",
        "P95",
        "baseline",
        "plan",
        "budget",
        "p_overrun",
        f"recommend@P{round(100 * t['quantile'].iloc[0]) if len(t) else 80}",
        f"expected vs {t['last_quarter'].iloc[0] if len(t) else ''}",
    ]

    def money(x: float) -> str:
        return "-" if x is None or not math.isfinite(x) else f"{x:,.0f}"

    rows = [
        [
            r.phase,
            money(r.mean),
            money(r.p50),
            money(r.p80),
            money(r.p95),
            money(r.baseline),
            money(r.plan_estimate),
            money(r.budget),
            "-" if not math.isfinite(r.p_overrun) else fixed(r.p_overrun, 2),
            money(r.recommended),
            "-"
            if not math.isfinite(r.change_vs_last_quarter)
            else f"{r.change_vs_last_quarter:+.1%}",
        ]
        for r in t.itertuples(index=False)
    ]
    period = t["period"].iloc[0] if len(t) else ""
    cur = t["currency"].iloc[0] if len(t) else ""
    # every month billed (budget.quarter_closed): no recommendation, every quantile the actual
    if len(t) and t["recommended"].isna().all() and (t["p95"] == t["actual_to_date"]).all():
        lines = [
            f"budget for {period} ({cur}): the quarter is closed, every month billed; the figures "
            "are its actuals, and there is no budget left to recommend"
        ]
    else:
        lines = [
            f"budget for {period} ({cur}): the mean (expected: what the flags and "
            "phases add up) and quantiles of the quarter's summed sample paths"
        ]
    lines += _table(head, rows)
    if len(t) > 1 and t["recommended"].notna().any():
        lines.append(
            "expected adds up from the phases to the total (before rounding); P50, P80, P95 and the "
            "recommendations are each line's own quantile and do not add up"
        )
    if scenarios is not None and len(scenarios):
        lines.append("")
        lines.append("scenarios (same run, re-priced by the plan's arithmetic):")
        lines += _table(
            [
                "scenario",
                "phase",
                "base expected",
                "scenario expected",
                "P80",
                "change",
                "recommend",
            ],
            [
                [
                    r.scenario,
                    r.phase,
                    money(r.base_mean),
                    money(r.scenario_mean),
                    money(r.scenario_p80),
                    signed(r.delta_mean),
                    money(r.scenario_recommended),
                ]
                for r in scenarios.itertuples(index=False)
                if abs(r.delta_mean) > 1e-9 or r.phase == "total"
            ],
        )
    return "\n".join(lines)


def _table(head: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows, strict=False)]

    def fmt(cells: list[str]) -> str:
        return "  ".join(
            str(c).ljust(w) if j == 0 else str(c).rjust(w)
            for j, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    return [fmt(head), "  ".join("-" * w for w in widths), *[fmt(r) for r in rows]]


def format_changes(changes: pd.DataFrame, period: str) -> str:
    """What changed in ``period`` since the previous run, per phase, for the terminal."""
    c = changes[changes["period"] == period] if len(changes) else changes
    if not len(c):
        return ""

    rows = [
        [
            r.phase,
            _money(r.previous_mean),
            _money(r.current_mean),
            signed(r.change),
            "-" if not math.isfinite(r.change_pct) else f"{r.change_pct:+.1%}",
            signed(r.new_actuals),
            signed(r.plan_changes),
            signed(r.model_changes),
        ]
        for r in c.itertuples(index=False)
    ]
    head = ["phase", "last run", "now", "change", "%", "new actuals", "price & plan", "models"]
    lines = [f"what changed in {period} since the run of {c['previous_as_of'].iloc[0]} (mean):"]
    return "\n".join(lines + _table(head, rows))
