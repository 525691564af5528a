"""What-if scenarios: pure functions ``Plan -> Plan``, and a YAML file that lists them.

A scenario file (``phasecast budget --scenario FILE``, repeatable)::

    name: promo-and-llm            # optional; the file name otherwise
    description: Double 11 traffic, a 7B pre-training run, quantized ranker
    changes:
      - add_run: {name: llm-7b, gpu: H100, gpus: 256, days: 10, start: 2027-02-01,
                  pricing: committed, phase: pretraining}
      - traffic: {change: 0.30, start: 2027-01-01, end: 2027-02-28}   # +30 % (use -0.2 for -20 %)
      - quantization: {cut: 0.40, start: 2027-03-01}   # inference GPU-hours per request -40 %
      - price: {gpu: H100, start: 2027-01-01, committed: 2.50, on_demand: 3.50}
      - price: {gpu: A10, start: 2027-02-01, change: -0.10}            # or a relative change
      - headcount: {phase: operations, team: sre, change: 2, start: 2027-01}   # +2 people

Each change maps to one function below; :func:`apply_scenario` folds them over the plan. The
analytic baseline sees a scenario through :func:`pipeline.estimate.estimate_from_plan` on the
edited plan; the models that use drivers see it through the plan's future drivers
(``run_forecast(..., plan=edited)``). :func:`scenario_deltas` lays out both against the base.

Conventions: traffic changes are day-weighted when the date range covers part of a month
(``+30 %`` over half a month raises that month's requests by 15 %); a headcount change adds a
line with ``change`` people (negative to remove) at the rate of the matching team, so the labor
difference is exactly ``change x hours x rate`` per month.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from pipeline.errors import InputError, Problem
from pipeline.frames import PHASES, TOTAL
from pipeline.plan import (
    Headcount,
    Plan,
    PriceChange,
    Quantization,
    ScheduledRun,
    month,
    safe_load_unique,
)


# --- the edits --------------------------------------------------------------------------------
def add_run(
    plan: Plan,
    *,
    gpu: str,
    gpus: int,
    days: float,
    start: Any,
    name: str = "scenario-run",
    phase: str = "pretraining",
    pricing: str = "committed",
) -> Plan:
    """A scheduled run of ``gpus`` x ``gpu`` for ``days`` from ``start``."""
    if gpu not in plan.price_book.gpu_hour:
        raise InputError(
            f"add_run: GPU type {gpu!r} has no price in the plan's price book; known: {sorted(plan.price_book.gpu_hour)}"
        )
    if pricing not in plan.price_book.gpu_hour[gpu]:
        raise InputError(
            f"add_run: {gpu} has no {pricing!r} price; known: {sorted(plan.price_book.gpu_hour[gpu])}"
        )
    if not (float(gpus) >= 1 and float(gpus) == int(gpus)):
        raise InputError(f"add_run: gpus must be a whole number of at least 1. Got {gpus} instead.")
    if not (math.isfinite(float(days)) and float(days) > 0):
        raise InputError(f"add_run: days must be a positive number. Got {days} instead.")
    run = ScheduledRun(
        name=name,
        phase=phase,
        gpu=gpu,
        gpus=int(gpus),
        start=pd.Timestamp(str(start)).date(),
        days=float(days),
        pricing=pricing,
    )
    return plan.with_changes(scheduled_runs=(*plan.scheduled_runs, run))


def scale_traffic(plan: Plan, *, change: float, start: Any, end: Any) -> Plan:
    """Planned requests times ``1 + change`` for the days in ``[start, end]`` (day-weighted per month)."""
    if plan.traffic is None:
        raise InputError(
            "traffic: the plan has no traffic section to change",
            fix="add traffic.months to the plan",
        )
    if not (math.isfinite(float(change)) and float(change) >= -1.0):
        raise InputError(
            f"traffic: change must be at least -1 (-100 %). Got {change} instead.",
            fix="e.g. change: 0.30 for +30 %, -0.2 for -20 %",
        )
    a, b = pd.Timestamp(str(start)), pd.Timestamp(str(end))
    if b < a:
        raise InputError(f"traffic: end {b.date()} is before start {a.date()}")
    months = {}
    for m, req in plan.traffic.months.items():
        last = m + pd.offsets.MonthEnd(0)
        lo, hi = max(a, m), min(b, last)
        covered = max((hi - lo).days + 1, 0)
        share = covered / m.days_in_month
        months[m] = req * (1.0 + change * share)
    return plan.with_changes(traffic=replace(plan.traffic, months=months))


def quantize(plan: Plan, *, cut: float, start: Any) -> Plan:
    """Cut inference GPU-hours per request by ``cut`` (0.4 = 40 %) from ``start``."""
    if plan.traffic is None:
        raise InputError("quantization: the plan has no traffic section")
    if not 0.0 <= cut < 1.0:
        raise InputError(f"quantization: cut must be in [0, 1). Got {cut} instead.")
    q = Quantization(start=pd.Timestamp(str(start)).date(), cut=float(cut))
    return plan.with_changes(
        traffic=replace(plan.traffic, quantization=(*plan.traffic.quantization, q))
    )


def change_price(
    plan: Plan,
    *,
    gpu: str,
    start: Any,
    prices: dict[str, float] | None = None,
    change: float | None = None,
) -> Plan:
    """From ``start`` a GPU type costs ``prices`` (per pricing category) or its price times ``1 + change``."""
    book = plan.price_book
    if gpu not in book.gpu_hour:
        raise InputError(
            f"price: GPU type {gpu!r} is not in the price book; known: {sorted(book.gpu_hour)}"
        )
    on = pd.Timestamp(str(start)).date()
    if change is not None and not (math.isfinite(float(change)) and float(change) > -1.0):
        raise InputError(f"price: change must be above -1 (-100 %). Got {change} instead.")
    bad = {k: v for k, v in (prices or {}).items() if not (math.isfinite(float(v)) and v >= 0)}
    if bad:
        raise InputError(f"price: prices must be finite and not negative. Got {bad} instead.")
    if prices is None:
        if change is None:
            raise InputError(
                "price: give new prices (on_demand/committed/...) or a relative change"
            )
        prices = {k: book.gpu_price(gpu, k, on) * (1.0 + change) for k in book.gpu_hour[gpu]}
    pc = PriceChange(gpu=gpu, start=on, prices={k: float(v) for k, v in prices.items()})
    return plan.with_changes(price_book=replace(book, price_changes=(*book.price_changes, pc)))


def change_headcount(
    plan: Plan,
    *,
    phase: str,
    change: float,
    start: Any,
    team: str = "",
    end: Any = None,
    hours_per_month: float | None = None,
    hourly_rate: float | None = None,
) -> Plan:
    """``change`` more (or fewer) people in ``phase``/``team`` from ``start``."""
    if phase not in PHASES:
        raise InputError(f"headcount: unknown phase {phase!r}; expected one of {list(PHASES)}")
    same = [h for h in plan.headcount if h.phase == phase and (not team or h.team == team)]
    # the line in force at ``start`` first (a rate that changed at the new year is the new one)
    at = month(start)
    same.sort(
        key=lambda h: (
            (h.start is None or h.start <= at) and (h.end is None or h.end >= at),
            h.start if h.start is not None else pd.Timestamp.min,
        ),
        reverse=True,
    )
    rate = hourly_rate if hourly_rate is not None else (same[0].hourly_rate if same else None)
    hours = (
        hours_per_month
        if hours_per_month is not None
        else (same[0].hours_per_month if same else 160.0)
    )
    if rate is None:
        raise InputError(
            f"headcount: no existing {phase}/{team or '*'} line to take the rate from; give hourly_rate"
        )
    line = Headcount(
        phase=phase,
        team=team or (same[0].team if same else ""),
        people=float(change),
        hours_per_month=float(hours),
        hourly_rate=float(rate),
        start=month(start),
        end=None if end is None else month(end),
    )
    return plan.with_changes(headcount=(*plan.headcount, line))


EDITS: dict[str, Callable[..., Plan]] = {
    "add_run": add_run,
    "traffic": scale_traffic,
    "quantization": quantize,
    "price": change_price,
    "headcount": change_headcount,
}


# --- scenario files ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Scenario:
    name: str
    changes: tuple[tuple[str, dict[str, Any]], ...]
    description: str = ""
    source: str = ""  # the file (or configuration key) it came from, for messages

    def apply(self, plan: Plan) -> Plan:
        return apply_scenario(plan, self)


def apply_scenario(plan: Plan, scenario: Scenario) -> Plan:
    """Fold the scenario's changes over ``plan`` in order (the input plan is not modified)."""
    for i, (kind, args) in enumerate(scenario.changes):
        args = dict(args)
        if kind == "price":  # the file lists prices inline: {gpu, start, committed: 2.5, ...}
            prices = {k: v for k, v in args.items() if k not in ("gpu", "start", "change")}
            args = {k: args[k] for k in ("gpu", "start", "change") if k in args} | {
                "prices": prices or None
            }
        src, key = scenario.source or None, f"changes[{i}].{kind}"
        try:
            plan = EDITS[kind](plan, **args)
        except InputError as exc:
            raise InputError(
                [
                    Problem(f"scenario {scenario.name!r}: {p.message}", src, key=key)
                    for p in exc.problems
                ],
                fix=exc.fix or _fix(),
            ) from exc
        except (TypeError, ValueError) as exc:
            raise InputError(
                Problem(f"scenario {scenario.name!r}: {_arguments(exc)}", src, key=key), fix=_fix()
            ) from exc
    return plan


def _arguments(exc: BaseException) -> str:
    """``missing 'end'`` rather than a Python signature error."""
    import re

    text = str(exc)
    missing = re.findall(r"'(\w+)'", text) if "missing" in text else []
    if missing:
        return f"missing argument(s) {', '.join(missing)}"
    unexpected = re.search(r"unexpected keyword argument '(\w+)'", text)
    if unexpected:
        return f"unknown argument {unexpected.group(1)!r}"
    return text


def _fix() -> str:
    return "see the scenario schema in pipeline/scenarios.py"


def scenario_from_dict(raw: dict[str, Any], source: str = "scenario") -> Scenario:
    problems: list[Problem] = []
    changes = []
    for i, item in enumerate(raw.get("changes") or []):
        if not isinstance(item, dict) or len(item) != 1:
            problems.append(
                Problem(f"changes[{i}] must be a one-key mapping like {{add_run: {{...}}}}", source)
            )
            continue
        ((kind, args),) = item.items()
        if kind not in EDITS:
            problems.append(
                Problem(f"changes[{i}]: unknown change {kind!r}; known: {sorted(EDITS)}", source)
            )
            continue
        if not isinstance(args, dict):
            problems.append(Problem(f"changes[{i}].{kind} must be a mapping of arguments", source))
            continue
        changes.append((kind, args))
    if not changes and not problems:
        problems.append(Problem("the scenario has no changes", source))
    if problems:
        raise InputError(problems, fix=_fix())
    name = str(raw.get("name") or Path(source).stem)
    return Scenario(
        name=name,
        changes=tuple(changes),
        description=str(raw.get("description", "")),
        source=source,
    )


def load_scenario(path: str | Path) -> Scenario:
    path = Path(path)
    try:
        raw = safe_load_unique(path.read_text())
    except FileNotFoundError as exc:
        raise InputError(
            Problem("file not found", str(path)), fix="pass an existing scenario YAML"
        ) from exc
    except yaml.YAMLError as exc:
        raise InputError(Problem(f"not valid YAML: {exc}", str(path)), fix=_fix()) from exc
    if not isinstance(raw, dict):
        raise InputError(Problem("a scenario must be a YAML mapping", str(path)), fix=_fix())
    return scenario_from_dict(raw, str(path))


# --- deltas against the base ------------------------------------------------------------------
def baseline_by_phase(plan: Plan, months: Sequence[pd.Timestamp]) -> dict[str, float]:
    """The analytic baseline's cost per phase (and ``total``) over ``months``."""
    from pipeline.estimate import estimate_from_plan

    est = estimate_from_plan(plan, months[0], len(months))
    by = est.groupby("phase")["cost"].sum().to_dict()
    by[TOTAL] = float(est["cost"].sum())
    return {str(k): float(v) for k, v in by.items()}


def scenario_deltas(
    base: Plan,
    scenarios: Sequence[Scenario],
    months: Sequence[pd.Timestamp],
    period: str,
    model_totals: Callable[[Plan], dict[str, dict[str, float]]] | None = None,
) -> pd.DataFrame:
    """Per scenario and phase: baseline (plan arithmetic) base vs scenario, and the same for each
    driver model when ``model_totals(plan) -> {model: {phase: period total}}`` is given.

    Columns: ``scenario, period, phase, source, base, scenario_value, delta, delta_pct``; ``source``
    is ``analytic_baseline`` or a model name.
    """
    base_b = baseline_by_phase(base, months)
    base_m = model_totals(base) if model_totals else {}
    rows = []
    for sc in scenarios:
        edited = apply_scenario(base, sc)
        sc_b = baseline_by_phase(edited, months)
        sources = [("analytic_baseline", base_b, sc_b)]
        if model_totals:
            sc_m = model_totals(edited)
            sources += [(m, base_m.get(m, {}), sc_m.get(m, {})) for m in sorted(sc_m)]
        for src, b, s in sources:
            for phase in [TOTAL, *[p for p in PHASES if p in b or p in s]]:
                bv, sv = float(b.get(phase, 0.0)), float(s.get(phase, 0.0))
                rows.append(
                    {
                        "scenario": sc.name,
                        "period": period,
                        "phase": phase,
                        "source": src,
                        "base": bv,
                        "scenario_value": sv,
                        "delta": sv - bv,
                        "delta_pct": (sv - bv) / bv if bv else float("nan"),
                    }
                )
    return pd.DataFrame(
        rows,
        columns=[
            "scenario",
            "period",
            "phase",
            "source",
            "base",
            "scenario_value",
            "delta",
            "delta_pct",
        ],
    )
