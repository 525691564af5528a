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
import logging
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from pipeline.errors import InputError, Problem
from pipeline.frames import PHASES

log = logging.getLogger(__name__)
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


def plan_from_dict(raw: dict[str, Any], source: str = "plan", strict: bool = True) -> Plan:
    """Build a :class:`Plan` from parsed YAML; every problem is reported with its key path.
    ``strict=False`` for plans already stored (a run folder's, a model version's): a key inside a
    section that this version does not read is logged, not refused (they were accepted when
    stored, before the keys inside sections were checked)."""
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
            Problem(_malformed(raw, exc), source, key=_bad_key(raw)),
            fix="compare the file with the schema in pipeline/plan.py (phasecast synth writes a complete example)",
        ) from exc
    problems += check_plan(book, runs, recurring, traffic, storage, heads, raw, source)
    problems += _unknown_keys(raw, source)
    unread = _unknown_section_keys(raw, source)
    if strict:
        problems += unread
    for p in unread:
        if not strict:
            log.warning("%s (a stored plan: not read, kept as it is)", p)
    if problems:
        raise InputError(
            problems,
            fix=f"phases are {', '.join(PHASES)}; quantities, prices and hours are finite and "
            "not negative, GPUs and pricing categories are those of price_book.gpu_hour, a "
            "quantization cut is in [0, 1) (schema: pipeline/plan.py)",
        )
    known = set(TOP_KEYS)
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


TOP_KEYS = (
    "price_book",
    "currency",
    "start",
    "scheduled_runs",
    "recurring",
    "traffic",
    "storage",
    "headcount",
)


INFO_KEYS = ("calendar", "notes", "description", "name")  # kept for people and tools, not costed


def _unknown_keys(raw: dict[str, Any], source: str) -> list[Problem]:
    """A misspelt section is an error, never silently ignored (it would drop planned work)."""
    import difflib

    out = []
    for k in raw:
        if k not in TOP_KEYS and k not in INFO_KEYS and not str(k).startswith("x_"):
            near = difflib.get_close_matches(str(k), TOP_KEYS, n=1)
            hint = (
                f"; did you mean {near[0]!r}?"
                if near
                else f"; known: {', '.join(TOP_KEYS + INFO_KEYS)} (or x_<anything> for your own)"
            )
            out.append(Problem(f"unknown key {k!r}{hint}", source, key=str(k)))
    return out


# the keys each section reads (plan_from_dict); a key of another name is never read, so a typo
# (storage_gb_mnth) would price that resource at 0 without a word
SECTION_KEYS: dict[str, tuple[str, ...]] = {
    "price_book": (
        "gpu_hour",
        "cpu_core_hour",
        "storage_gb_month",
        "egress_gb",
        "tokens_million",
        "price_changes",
    ),
    "scheduled_runs": (
        "name",
        "phase",
        "gpu",
        "gpus",
        "start",
        "days",
        "pricing",
        "params",
        "tokens",
        "utilization",
    ),
    "recurring": (
        "name",
        "phase",
        "resource",
        "quantity",
        "hours_per_month",
        "gpu",
        "pricing",
        "start",
        "end",
    ),
    "traffic": (
        "gpu",
        "gpu_hours_per_1k_requests",
        "months",
        "pricing",
        "tokens_per_request",
        "quantization",
    ),
    "traffic.quantization": ("start", "cut"),
    "storage": ("gb", "growth_per_month", "phase"),
    "headcount": ("phase", "team", "people", "hours_per_month", "hourly_rate", "start", "end"),
}


def _unknown_section_keys(raw: dict[str, Any], source: str) -> list[Problem]:
    """A misspelt key inside a section is an error too (``x_<anything>`` and the info keys are
    kept for people and tools)."""
    import difflib

    def items(section: str, value: Any) -> list[tuple[str, dict[str, Any]]]:
        if isinstance(value, dict):
            return [(section, value)]
        if isinstance(value, list):
            return [(f"{section}[{i}]", v) for i, v in enumerate(value) if isinstance(v, dict)]
        return []

    found: list[tuple[str, str, dict[str, Any]]] = []
    for section in ("price_book", "scheduled_runs", "recurring", "traffic", "storage", "headcount"):
        found += [(section, where, d) for where, d in items(section, raw.get(section))]
    t = raw.get("traffic")
    if isinstance(t, dict):
        found += [
            ("traffic.quantization", where, d)
            for where, d in items("traffic.quantization", t.get("quantization"))
        ]
    out = []
    for section, where, d in found:
        known = SECTION_KEYS[section]
        for k in d:
            if k in known or k in INFO_KEYS or str(k).startswith("x_"):
                continue
            near = difflib.get_close_matches(str(k), known, n=1)
            hint = f"; did you mean {near[0]!r}?" if near else f"; known: {', '.join(known)}"
            out.append(Problem(f"unknown key {k!r} in {where}{hint}", source, key=f"{where}.{k}"))
    return out


def _bad_key(raw: dict[str, Any]) -> str | None:
    """The first item whose fields do not parse (a key path), found by parsing item by item."""
    checks: list[tuple[str, Any]] = []
    pb = raw.get("price_book") or {}
    for g, prices in (pb.get("gpu_hour") or {}).items() if isinstance(pb, dict) else []:
        for cat, v in (prices or {}).items() if isinstance(prices, dict) else []:
            checks.append((f"price_book.gpu_hour.{g}.{cat}", lambda v=v: float(v)))
    for k in ("cpu_core_hour", "storage_gb_month", "egress_gb", "tokens_million"):
        if isinstance(pb, dict) and k in pb:
            checks.append((f"price_book.{k}", lambda v=pb[k]: float(v)))
    for i, c in enumerate(pb.get("price_changes") or [] if isinstance(pb, dict) else []):
        checks.append((f"price_book.price_changes[{i}].start", lambda c=c: _date(c["start"])))
    for i, r in enumerate(raw.get("scheduled_runs") or []):
        checks.append((f"scheduled_runs[{i}].gpus", lambda r=r: int(r["gpus"])))
        checks.append((f"scheduled_runs[{i}].start", lambda r=r: _date(r["start"])))
        if isinstance(r, dict) and r.get("days") is not None:
            checks.append((f"scheduled_runs[{i}].days", lambda r=r: float(r["days"])))
    for i, j in enumerate(raw.get("recurring") or []):
        for f in ("quantity", "hours_per_month"):
            checks.append((f"recurring[{i}].{f}", lambda j=j, f=f: float(j[f])))
    for i, h in enumerate(raw.get("headcount") or []):
        for f in ("people", "hourly_rate"):
            checks.append((f"headcount[{i}].{f}", lambda h=h, f=f: float(h[f])))
    t = raw.get("traffic") or {}
    if isinstance(t, dict):
        for m, v in (t.get("months") or {}).items():
            checks.append((f"traffic.months.{m}", lambda m=m, v=v: (month(m), float(v))))
        for f in ("gpu_hours_per_1k_requests",):
            checks.append((f"traffic.{f}", lambda f=f: float(t[f])))
    for key, parse in checks:
        try:
            parse()
        except (KeyError, TypeError, ValueError, AttributeError, OverflowError):
            return key
        except Exception:  # a date the parser refuses (pandas' own error types)
            return key
    return None


def _malformed(raw: dict[str, Any], exc: BaseException) -> str:
    if isinstance(exc, KeyError):
        return f"a required field is missing: {exc}"
    return f"a value does not parse ({str(exc).splitlines()[0][:200]})"


def check_plan(
    book: PriceBook,
    runs: tuple[ScheduledRun, ...],
    recurring: tuple[RecurringJob, ...],
    traffic: TrafficPlan | None,
    storage: StoragePlan | None,
    heads: tuple[Headcount, ...],
    raw: dict[str, Any],
    source: str,
) -> list[Problem]:
    """Every impossible value of a plan, each with its key path (collected, never the first only)."""
    import math

    from pipeline.currency import normalize

    problems: list[Problem] = []

    def bad(key: str, message: str) -> None:
        problems.append(Problem(message, source, key=key))

    def number(key: str, v: float | None, lo: float = 0.0, hi: float = math.inf) -> None:
        if v is None:
            return
        if not math.isfinite(v) or not lo <= v <= hi:
            rng = f"at least {lo:g}" if hi == math.inf else f"in [{lo:g}, {hi:g}]"
            bad(key, f"must be a finite number {rng}, got {v!r}")

    known = sorted(book.gpu_hour)

    def gpu(key: str, name: str | None, pricing: str) -> None:
        if name is None:
            bad(key, "names no GPU type")
        elif name not in book.gpu_hour:
            bad(key, f"GPU type {name!r} has no price in price_book.gpu_hour (known: {known})")
        elif pricing not in book.gpu_hour[name]:
            bad(
                f"{key}.pricing",
                f"{name} has no {pricing!r} price (known: {sorted(book.gpu_hour[name])})",
            )

    if normalize(raw.get("currency", "USD")) is None:
        bad("currency", f"{raw.get('currency')!r} is not an ISO 4217 currency code")
    for g, prices in book.gpu_hour.items():
        for cat, price in prices.items():
            number(f"price_book.gpu_hour.{g}.{cat}", price)
    for k in ("cpu_core_hour", "storage_gb_month", "egress_gb", "tokens_million"):
        number(f"price_book.{k}", getattr(book, k))
    for i, c in enumerate(book.price_changes):
        if c.gpu not in book.gpu_hour:
            bad(
                f"price_book.price_changes[{i}].gpu", f"unknown GPU type {c.gpu!r} (known: {known})"
            )
        for cat, price in c.prices.items():
            number(f"price_book.price_changes[{i}].{cat}", price)
    for i, r in enumerate(runs):
        key = f"scheduled_runs[{i}]"
        gpu(f"{key}.gpu", r.gpu, r.pricing)
        number(f"{key}.gpus", float(r.gpus), lo=1)
        number(f"{key}.days", r.days, lo=1e-9)
        number(f"{key}.utilization", r.utilization, lo=1e-9, hi=1.0)
        number(f"{key}.params", r.params, lo=1e-9)
        number(f"{key}.tokens", r.tokens, lo=1e-9)
        if r.days is None and (r.params is None or r.tokens is None):
            bad(key, "give days, or params and tokens (GPU-hours from 6 x params x tokens FLOPs)")
    for i, j in enumerate(recurring):
        key = f"recurring[{i}]"
        if j.resource not in ("gpu", "cpu"):
            bad(f"{key}.resource", f"must be gpu or cpu, got {j.resource!r}")
        elif j.resource == "gpu":
            gpu(f"{key}.gpu", j.gpu, j.pricing)
        number(f"{key}.quantity", j.quantity)
        number(f"{key}.hours_per_month", j.hours_per_month)
    if traffic is not None:
        gpu("traffic.gpu", traffic.gpu, traffic.pricing)
        number("traffic.gpu_hours_per_1k_requests", traffic.gpu_hours_per_1k_requests)
        number("traffic.tokens_per_request", traffic.tokens_per_request)
        for m, v in traffic.months.items():
            number(f"traffic.months.{m:%Y-%m}", v)
        for i, q in enumerate(traffic.quantization):
            number(f"traffic.quantization[{i}].cut", q.cut, hi=0.999999)
    if storage is not None:
        number("storage.gb", storage.gb)
        number("storage.growth_per_month", storage.growth_per_month, lo=-1.0)
    for i, h in enumerate(heads):
        key = f"headcount[{i}]"
        number(f"{key}.people", h.people)
        number(f"{key}.hours_per_month", h.hours_per_month, hi=744.0)
        number(f"{key}.hourly_rate", h.hourly_rate)
    return problems


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, except that a key given twice in one mapping is an error: PyYAML keeps
    the later value silently (a ``traffic.months`` month typed twice lost the next month)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: dict[object, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            try:
                hash(key)
            except TypeError:
                continue  # the base loader reports an unhashable key itself
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    "while reading a mapping",
                    node.start_mark,
                    f"found the key {key!r} twice (first on line {seen[key] + 1}): keep one",
                    key_node.start_mark,
                )
            seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep=deep)


def safe_load_unique(text: str) -> object:
    """``yaml.safe_load`` that rejects a key given twice in one mapping (:class:`_UniqueKeyLoader`)."""
    return yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader subclass: safe


def load_plan(path: str | Path, strict: bool = True) -> Plan:
    """A plan file; ``strict=False`` for stored plans (see :func:`plan_from_dict`)."""
    path = Path(path)
    try:
        raw = safe_load_unique(path.read_text())
    except FileNotFoundError as exc:
        raise InputError(
            Problem("file not found", str(path)),
            fix="pass an existing plan YAML (phasecast synth writes one)",
        ) from exc
    except yaml.YAMLError as exc:
        raise InputError(Problem(f"not valid YAML: {exc}", str(path))) from exc
    if not isinstance(raw, dict):
        raise InputError(Problem("the plan must be a YAML mapping", str(path)))
    return plan_from_dict(raw, str(path), strict=strict)
