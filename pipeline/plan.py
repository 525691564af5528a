"""The plan (YAML): price book, scheduled runs, recurring jobs, traffic, storage and headcount.

It is the analytic baseline's input and the models' source of known future drivers; scenarios
(``phasecast budget --scenario``) are edits of it. ``phasecast synth`` writes one; the schema:

.. code-block:: yaml

    currency: USD
    start: 2026-11                  # optional: the first month the plan describes; months before it
                                    # (backtest windows) get the run-rate, not a plan of zeros
    price_book:
      gpu_hour:                     # price per GPU-hour by GPU type and pricing category
        H100: {on_demand: 4.10, committed: 2.90}
        A10:  {on_demand: 1.10, committed: 0.80}
      cpu_core_hour: 0.045
      storage_gb_month: 0.023
      egress_gb: 0.08
      tokens_million: 2.50          # managed model API, per 1M tokens
      price_changes:                # from a date on, a GPU type costs this
        - {gpu: H100, start: 2027-04-01, on_demand: 3.50, committed: 2.50}
    scheduled_runs:                 # pre-training and other one-off GPU bursts
      - {name: ranker-v6, phase: pretraining, gpu: H100, gpus: 256, start: 2027-02-03, days: 12,
         pricing: committed}
      - {name: llm-13b, phase: pretraining, gpu: H100, gpus: 128, start: 2027-06-01,
         params: 1.3e10, tokens: 2.6e11, utilization: 0.35}   # days estimated from FLOPs
    recurring:                      # per month, from start (inclusive) to end (inclusive, optional)
      - {name: ft-refresh, phase: fine_tuning, resource: gpu, gpu: A10, quantity: 8,
         hours_per_month: 120, pricing: on_demand, start: 2026-12}
      - {name: etl, phase: data_preprocessing, resource: cpu, quantity: 64, hours_per_month: 300}
    traffic:                        # inference, per month
      gpu: A10
      pricing: committed
      gpu_hours_per_1k_requests: 0.020
      tokens_per_request: 0           # managed API tokens per request (ai_services)
      months: {2026-12: 2.1e8, 2027-01: 1.7e8}     # planned requests
      quantization:                 # cut GPU-hours per request by a share from a date
        - {start: 2027-03-01, cut: 0.40}
    storage:
      phase: data_preprocessing
      gb: 180000                    # at the first planned month
      growth_per_month: 0.03
    headcount:                      # labor: people x hours x rate, per phase and team
      - {phase: operations, team: sre, people: 6, hours_per_month: 160, hourly_rate: 95,
         start: 2026-12}
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from pipeline.errors import InputError, Problem
from pipeline.frames import PHASES

# Dense BF16 peak FLOP/s per GPU (vendor datasheets); used to estimate a run's GPU-hours from FLOPs.
GPU_PEAK_FLOPS: dict[str, float] = {
    "H100": 989e12,
    "H200": 989e12,
    "A100": 312e12,
    "L40S": 362e12,
    "A10": 125e12,
    "L4": 121e12,
    "T4": 65e12,
}


def month(value: Any) -> pd.Timestamp:
    """A month-start timestamp from ``2027-01``, ``2027-01-15``, a date or a timestamp."""
    return (
        pd.Timestamp(str(value)[:7] + "-01")
        if not isinstance(value, pd.Timestamp)
        else value.to_period("M").to_timestamp()
    )


@dataclass(frozen=True)
class PriceChange:
    gpu: str
    start: dt.date
    prices: dict[str, float]


@dataclass(frozen=True)
class PriceBook:
    gpu_hour: dict[str, dict[str, float]]
    cpu_core_hour: float = 0.0
    storage_gb_month: float = 0.0
    egress_gb: float = 0.0
    tokens_million: float = 0.0
    price_changes: tuple[PriceChange, ...] = ()

    def gpu_price(self, gpu: str, pricing: str, on: dt.date) -> float:
        """Price per GPU-hour of ``gpu`` under ``pricing`` on a date, after any price change."""
        price = self.gpu_hour[gpu][pricing]
        for ch in sorted(self.price_changes, key=lambda c: c.start):
            if ch.gpu == gpu and ch.start <= on and pricing in ch.prices:
                price = ch.prices[pricing]
        return price


@dataclass(frozen=True)
class ScheduledRun:
    name: str
    phase: str
    gpu: str
    gpus: int
    start: dt.date
    days: float | None = None
    pricing: str = "on_demand"
    params: float | None = None
    tokens: float | None = None
    utilization: float = 0.35

    def gpu_hours(self) -> float:
        """Total GPU-hours: gpus x days x 24, or from FLOPs (6 N D / (peak x utilization))."""
        if self.days is not None:
            return self.gpus * self.days * 24.0
        if self.params is None or self.tokens is None:
            raise InputError(f"scheduled run {self.name!r} needs either days or params and tokens")
        return training_gpu_hours(self.params, self.tokens, self.gpu, self.utilization)

    def duration_days(self) -> float:
        return self.days if self.days is not None else self.gpu_hours() / (self.gpus * 24.0)


def training_gpu_hours(params: float, tokens: float, gpu: str, utilization: float) -> float:
    """GPU-hours to train: 6 x params x tokens FLOPs at ``utilization`` of the GPU's peak."""
    peak = GPU_PEAK_FLOPS[gpu]
    return 6.0 * params * tokens / (peak * utilization * 3600.0)


@dataclass(frozen=True)
class RecurringJob:
    name: str
    phase: str
    resource: str  # gpu | cpu
    quantity: float
    hours_per_month: float
    gpu: str | None = None
    pricing: str = "on_demand"
    start: pd.Timestamp | None = None
    end: pd.Timestamp | None = None


@dataclass(frozen=True)
class Quantization:
    start: dt.date
    cut: float


@dataclass(frozen=True)
class TrafficPlan:
    gpu: str
    gpu_hours_per_1k_requests: float
    months: dict[pd.Timestamp, float]
    pricing: str = "committed"
    tokens_per_request: float = 0.0
    quantization: tuple[Quantization, ...] = ()

    def gpu_hours_per_1k(self, on: dt.date) -> float:
        rate = self.gpu_hours_per_1k_requests
        for q in self.quantization:
            if q.start <= on:
                rate *= 1.0 - q.cut
        return rate


@dataclass(frozen=True)
class StoragePlan:
    gb: float
    growth_per_month: float = 0.0
    phase: str = "data_preprocessing"


@dataclass(frozen=True)
class Headcount:
    phase: str
    team: str
    people: float
    hours_per_month: float
    hourly_rate: float
    start: pd.Timestamp | None = None
    end: pd.Timestamp | None = None


@dataclass(frozen=True)
class Plan:
    price_book: PriceBook
    currency: str = "USD"
    scheduled_runs: tuple[ScheduledRun, ...] = ()
    recurring: tuple[RecurringJob, ...] = ()
    traffic: TrafficPlan | None = None
    storage: StoragePlan | None = None
    headcount: tuple[Headcount, ...] = ()
    start: pd.Timestamp | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def with_changes(self, **changes: Any) -> Plan:
        return replace(self, **changes)


def _date(v: Any) -> dt.date:
    return pd.Timestamp(str(v)).date()


def _opt_month(v: Any) -> pd.Timestamp | None:
    return None if v is None else month(v)


def plan_from_dict(raw: dict[str, Any], source: str = "plan") -> Plan:
    """Build a :class:`Plan` from parsed YAML; every problem is reported with its key path."""
    problems: list[Problem] = []

    def phase_ok(p: str, where: str) -> str:
        if p not in PHASES:
            problems.append(
                Problem(f"{where}: unknown phase {p!r}; expected one of {list(PHASES)}", source)
            )
        return p

    try:
        pb = raw.get("price_book") or {}
        book = PriceBook(
            gpu_hour={
                str(k): {str(a): float(b) for a, b in v.items()}
                for k, v in (pb.get("gpu_hour") or {}).items()
            },
            cpu_core_hour=float(pb.get("cpu_core_hour", 0.0)),
            storage_gb_month=float(pb.get("storage_gb_month", 0.0)),
            egress_gb=float(pb.get("egress_gb", 0.0)),
            tokens_million=float(pb.get("tokens_million", 0.0)),
            price_changes=tuple(
                PriceChange(
                    gpu=str(c["gpu"]),
                    start=_date(c["start"]),
                    prices={k: float(v) for k, v in c.items() if k not in ("gpu", "start")},
                )
                for c in pb.get("price_changes") or []
            ),
        )
        runs = tuple(
            ScheduledRun(
                name=str(r["name"]),
                phase=phase_ok(str(r.get("phase", "pretraining")), f"scheduled_runs[{i}]"),
                gpu=str(r["gpu"]),
                gpus=int(r["gpus"]),
                start=_date(r["start"]),
                days=None if r.get("days") is None else float(r["days"]),
                pricing=str(r.get("pricing", "on_demand")),
                params=None if r.get("params") is None else float(r["params"]),
                tokens=None if r.get("tokens") is None else float(r["tokens"]),
                utilization=float(r.get("utilization", 0.35)),
            )
            for i, r in enumerate(raw.get("scheduled_runs") or [])
        )
        recurring = tuple(
            RecurringJob(
                name=str(j["name"]),
                phase=phase_ok(str(j["phase"]), f"recurring[{i}]"),
                resource=str(j.get("resource", "gpu")),
                quantity=float(j["quantity"]),
                hours_per_month=float(j["hours_per_month"]),
                gpu=None if j.get("gpu") is None else str(j["gpu"]),
                pricing=str(j.get("pricing", "on_demand")),
                start=_opt_month(j.get("start")),
                end=_opt_month(j.get("end")),
            )
            for i, j in enumerate(raw.get("recurring") or [])
        )
        t = raw.get("traffic")
        traffic = None
        if t:
            traffic = TrafficPlan(
                gpu=str(t["gpu"]),
                gpu_hours_per_1k_requests=float(t["gpu_hours_per_1k_requests"]),
                months={month(k): float(v) for k, v in (t.get("months") or {}).items()},
                pricing=str(t.get("pricing", "committed")),
                tokens_per_request=float(t.get("tokens_per_request", 0.0)),
                quantization=tuple(
                    Quantization(start=_date(q["start"]), cut=float(q["cut"]))
                    for q in t.get("quantization") or []
                ),
            )
        s = raw.get("storage")
        storage = (
            StoragePlan(
                gb=float(s["gb"]),
                growth_per_month=float(s.get("growth_per_month", 0.0)),
                phase=phase_ok(str(s.get("phase", "data_preprocessing")), "storage"),
            )
            if s
            else None
        )
        heads = tuple(
            Headcount(
                phase=phase_ok(str(hc["phase"]), f"headcount[{i}]"),
                team=str(hc.get("team", "")),
                people=float(hc["people"]),
                hours_per_month=float(hc.get("hours_per_month", 160)),
                hourly_rate=float(hc["hourly_rate"]),
                start=_opt_month(hc.get("start")),
                end=_opt_month(hc.get("end")),
            )
            for i, hc in enumerate(raw.get("headcount") or [])
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise InputError(
            Problem(f"malformed plan: {type(exc).__name__}: {exc}", source),
            fix="compare the file with the schema in pipeline/plan.py (phasecast synth writes a complete example)",
        ) from exc
    if problems:
        raise InputError(problems, fix=f"phases are {', '.join(PHASES)}")
    known = {
        "price_book",
        "currency",
        "start",
        "scheduled_runs",
        "recurring",
        "traffic",
        "storage",
        "headcount",
    }
    return Plan(
        price_book=book,
        currency=str(raw.get("currency", "USD")),
        scheduled_runs=runs,
        recurring=recurring,
        traffic=traffic,
        storage=storage,
        headcount=heads,
        start=_opt_month(raw.get("start")),
        extra={k: v for k, v in raw.items() if k not in known},
    )


def load_plan(path: str | Path) -> Plan:
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError as exc:
        raise InputError(
            Problem("file not found", str(path)),
            fix="pass an existing plan YAML (phasecast synth writes one)",
        ) from exc
    except yaml.YAMLError as exc:
        raise InputError(Problem(f"not valid YAML: {exc}", str(path))) from exc
    if not isinstance(raw, dict):
        raise InputError(Problem("the plan must be a YAML mapping", str(path)))
    return plan_from_dict(raw, str(path))
