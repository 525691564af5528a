"""``phasecast.yaml``: what a scheduled run needs, in one optional file; command-line flags override it.

    # phasecast.yaml (all keys optional; relative paths are relative to this file)
    budgets: data/budgets.csv          # flags and the budget column of the quarter tables
    plan: data/plan.yaml               # the analytic baseline's plan and the scenarios' base
    quarters: [2026Q4, 2027Q1]         # quarters to plan; default: the as-of's quarter and the next
    scenarios:                         # scenario files, or scenarios written inline
      - scenarios/promo.yaml
      - name: h100-cut
        changes: [{price: {gpu: H100, start: 2027-01-01, change: -0.2}}]
    quantile: 0.8                      # the recommended budget's quantile
    thresholds: {watch: 0.2, at_risk: 0.5}
    currency: USD                      # the currency forecast when the data holds several
    horizon: 18                        # months; longer when a budget or quarter needs it
    output: outputs                    # the root of the run folders
    notify: https://hooks.example/...  # where alerts for lines at risk are posted
    rules: attribution_rules.yaml      # attribution rules for the billing inbox (default: shipped)
    scheduler: null                    # a Dask scheduler address, or local

Read at the edge (the CLI) by :func:`load_settings`; everything below gets a frozen :class:`Settings`.
The default file is ``<home>/phasecast.yaml`` when it exists (``--config FILE`` names another).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from pipeline.errors import InputError, Problem
from pipeline.periods import parse_period

KEYS = (
    "budgets",
    "plan",
    "quarters",
    "scenarios",
    "quantile",
    "thresholds",
    "currency",
    "horizon",
    "output",
    "notify",
    "scheduler",
    "rules",
)


@dataclass(frozen=True)
class Settings:
    """The run's settings after the file and the flags (flags win)."""

    budgets: Path | None = None
    plan: Path | None = None
    quarters: tuple[str, ...] = ()  # empty: the as-of's quarter and the next
    scenarios: tuple[Any, ...] = ()  # pipeline.scenarios.Scenario
    quantile: float = 0.8
    watch: float = 0.2
    at_risk: float = 0.5
    currency: str | None = None
    horizon: int = 18
    output: Path | None = None
    notify: str | None = None
    scheduler: str | None = None
    rules: Path | None = None  # attribution rules for the inbox ingest
    source: str | None = None  # the file read, for messages
    extra: dict[str, Any] = field(default_factory=dict)

    def override(self, **flags: Any) -> Settings:
        """These settings with every flag that was given (not None, not empty) replacing the file's."""
        given = {k: v for k, v in flags.items() if v is not None and v != ()}
        return replace(self, **given)

    def describe(self) -> dict[str, Any]:
        """What the run records in run.json (and the fingerprint covers), JSON-safe."""
        return json.loads(json.dumps(self._describe(), default=str))

    def _describe(self) -> dict[str, Any]:
        return {
            "budgets": str(self.budgets) if self.budgets else None,
            "plan": str(self.plan) if self.plan else None,
            "quarters": list(self.quarters),
            "scenarios": [
                {"name": s.name, "changes": [[k, dict(a)] for k, a in s.changes]}
                for s in self.scenarios
            ],
            "quantile": self.quantile,
            "thresholds": {"watch": self.watch, "at_risk": self.at_risk},
            "currency": self.currency,
            "horizon": self.horizon,
        }


def load_settings(path: Path) -> Settings:
    """Read and check ``phasecast.yaml``; every problem is reported at once with its key."""
    from pipeline.scenarios import load_scenario, scenario_from_dict

    src = str(path)
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError as exc:
        raise InputError(Problem("file not found", src), fix="pass an existing --config") from exc
    except yaml.YAMLError as exc:
        raise InputError(Problem(f"not valid YAML: {exc}", src), fix=_fix()) from exc
    if not isinstance(raw, dict):
        raise InputError(Problem("the configuration must be a YAML mapping", src), fix=_fix())
    base = path.parent
    problems: list[Problem] = []
    unknown = sorted(set(raw) - set(KEYS))
    if unknown:
        problems.append(Problem(f"unknown key(s) {unknown}; known: {list(KEYS)}", src))

    def file(key: str) -> Path | None:
        v = raw.get(key)
        if v is None:
            return None
        p = Path(str(v))
        p = p if p.is_absolute() else base / p
        if key != "output" and not p.exists():
            problems.append(Problem(f"{key}: {p} does not exist", src, column=key))
        return p

    quarters: list[str] = []
    for q in raw.get("quarters") or []:
        try:
            period = parse_period(q)
            if period.kind != "quarter":
                raise InputError("not a quarter")
            quarters.append(period.label)
        except InputError:
            problems.append(Problem(f"quarters: {q!r} is not a quarter like 2027Q1", src))
    scenarios = []
    for i, s in enumerate(raw.get("scenarios") or []):
        try:
            if isinstance(s, dict):
                scenarios.append(scenario_from_dict(s, f"{src}: scenarios[{i}]"))
            else:
                p = Path(str(s))
                scenarios.append(load_scenario(p if p.is_absolute() else base / p))
        except InputError as exc:
            problems.append(Problem(f"scenarios[{i}]: {exc}", src))
    th = raw.get("thresholds") or {}
    num: dict[str, float] = {}
    for key, value, lo, hi in (
        ("quantile", raw.get("quantile", 0.8), 0.5, 0.99),
        ("watch", th.get("watch", 0.2), 0.0, 1.0),
        ("at_risk", th.get("at_risk", 0.5), 0.0, 1.0),
        ("horizon", raw.get("horizon", 18), 1, 60),
    ):
        try:
            v = float(value)
            if not lo <= v <= hi:
                raise ValueError
            num[key] = v
        except (TypeError, ValueError):
            problems.append(Problem(f"{key} must be a number in [{lo}, {hi}], got {value!r}", src))
    # both in the file: one alone is checked against the other's flag where it is used
    if {"watch", "at_risk"} <= set(num) & set(th) and num["watch"] > num["at_risk"]:
        problems.append(
            Problem(
                f"thresholds: watch ({num['watch']:g}) must not be above at_risk "
                f"({num['at_risk']:g})",
                src,
                key="thresholds",
            )
        )
    budgets, plan, output = file("budgets"), file("plan"), file("output")
    rules = file("rules")
    if problems:
        raise InputError(problems, fix=_fix())
    currency = raw.get("currency")
    return Settings(
        budgets=budgets,
        plan=plan,
        quarters=tuple(quarters),
        scenarios=tuple(scenarios),
        quantile=num["quantile"],
        watch=num["watch"],
        at_risk=num["at_risk"],
        currency=str(currency).strip().upper() if currency else None,
        horizon=int(num["horizon"]),
        output=output,
        notify=str(raw["notify"]) if raw.get("notify") else None,
        scheduler=str(raw["scheduler"]) if raw.get("scheduler") else None,
        rules=rules,
        source=src,
    )


def _fix() -> str:
    return "see the phasecast.yaml reference in the README (or pipeline/settings.py)"
