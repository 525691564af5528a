"""The synthetic platform: what happens on each day, and the FOCUS rows it costs.

Every event is placed relative to the last complete month ``E`` (``--end``), so the current level of
the business is the same whatever ``--months`` is; promotions and holidays sit on their calendar dates.
One :class:`World` simulates history and the plan horizon in one pass from one random stream; only
history is written, the horizon feeds the budgets and ``truth.json``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math
from dataclasses import dataclass, field
from typing import NotRequired, TypedDict, Unpack

import numpy as np

from pipeline.synth.calendar import traffic_shape
from pipeline.synth.focus import CATALOG, PRICE, C, P, Q, RowBuffer

GPU_PRICE_P = {  # per GPU-hour, units of 1/P: for the plan's price book
    ("H100", "before"): 122900,
    ("H100", "after"): 68800,
    ("H100", "future"): 58400,
    ("A10", "on_demand"): 14180,
    ("A10", "committed"): 8935,
}

REQUESTS_PER_DAY_AT_END = 125e6  # mean daily requests in the month --end, before calendar effects
TRAFFIC_GROWTH = 0.025  # per month
GPU_HOURS_PER_1K = 0.048  # A10 GPU-hours per 1,000 requests before any quantization
MODEL_SHARE = {"search-ranker": 0.56, "reco-twotower": 0.44}
MODEL_TEAM = {"search-ranker": "search", "reco-twotower": "reco"}
LLM_SHARE = 0.04  # share of search requests that call the managed LLM (query rewriting)
TOKENS_IN, TOKENS_OUT = 350, 60
EGRESS_KB_PER_REQUEST = 18
LOG_GB_PER_1K_REQUESTS = 0.002
RI_COVERAGE = 0.85  # reserved instances bought for this share of the expected fleet at term start


def add_months(d: dt.date, k: int) -> dt.date:
    y, m = divmod(d.year * 12 + d.month - 1 + k, 12)
    return dt.date(y, m + 1, 1)


def month_start(d: dt.date) -> dt.date:
    return dt.date(d.year, d.month, 1)


def _hid(*parts: object, n: int = 17) -> str:
    return hashlib.sha1("|".join(map(str, parts)).encode()).hexdigest()[:n]


def _dt(d: dt.date, hour_c: int = 0) -> dt.datetime:
    """A datetime ``hour_c`` hundredths of an hour after midnight of ``d``."""
    return dt.datetime(d.year, d.month, d.day) + dt.timedelta(seconds=hour_c * 36)


@dataclass(frozen=True)
class Run:
    """A GPU burst: pre-training, or an optimization job (distillation, pruning, quantization)."""

    name: str
    phase: str
    team: str
    gpus: int
    start: dt.date
    hours: float  # wall-clock hours
    params: float | None = None
    tokens: float | None = None

    @property
    def nodes(self) -> int:
        return self.gpus // 8

    @property
    def end(self) -> dt.datetime:
        return _dt(self.start) + dt.timedelta(hours=self.hours)


@dataclass
class Scenario:
    """The dated facts of the world (all derived from ``end`` deterministically)."""

    start: dt.date  # first history day
    end_month: dt.date  # E: last complete month
    cutoff: dt.date  # first day not exported (history = [start, cutoff))
    horizon: dt.date  # first day after the plan horizon
    price_change: dt.date
    future_price_change: dt.date
    quantization: dt.date
    future_quantization: dt.date
    restated_period: dt.date
    sla_credit_day: dt.date
    runs: list[Run] = field(default_factory=list)

    @classmethod
    def build(
        cls, end_month: dt.date, months: int, partial_days: int, plan_months: int
    ) -> Scenario:
        E = end_month
        start = add_months(E, -(months - 1))
        cutoff = add_months(E, 1) + dt.timedelta(days=partial_days)
        horizon = add_months(E, 1 + plan_months)
        restated = add_months(E, -19)
        if restated < start:
            restated = add_months(start, months // 2)
        sc = cls(
            start,
            E,
            cutoff,
            horizon,
            add_months(E, -16),
            add_months(E, 7),
            add_months(E, -6),
            add_months(E, 9),
            restated,
            add_months(E, -10) + dt.timedelta(days=8),
        )
        sc.runs = sc._runs()
        return sc

    def _runs(self) -> list[Run]:
        E = self.end_month
        runs: list[Run] = []
        # History: a pre-training run every 3-5 months, going back from E-3.
        gaps = (5, 4, 3, 5, 5, 4, 4, 5)
        sizes = (256, 128, 256, 256, 128, 256, 128, 256)
        days = (12, 14, 10, 16, 18, 10, 14, 12)
        families = ("ranker", "embed", "reco-lm")
        off, k = -3, 0
        while add_months(E, off) >= add_months(self.start, -6):
            fam = families[k % 3]
            ver = 9 - k // 3
            runs.append(
                Run(
                    f"{fam}-v{ver}",
                    "pretraining",
                    "ml-platform",
                    sizes[k % 8],
                    add_months(E, off) + dt.timedelta(days=2 + (k * 5) % 12),
                    24.0 * days[k % 8],
                )
            )
            off -= gaps[k % 8]
            k += 1
        # Plan horizon: known in advance; one sized from FLOPs (6 N D at 35 % of H100 peak).
        runs.append(
            Run(
                "embed-v10",
                "pretraining",
                "ml-platform",
                256,
                add_months(E, 3) + dt.timedelta(days=4),
                24.0 * 12,
            )
        )
        flops_hours = (
            6 * 1.3e10 * 1.0e12 / (989e12 * 0.35 * 3600) / 256
        )  # wall-clock hours on 256 GPUs
        runs.append(
            Run(
                "reco-lm-13b",
                "pretraining",
                "ml-platform",
                256,
                add_months(E, 6) + dt.timedelta(days=9),
                round(flops_hours, 2),
                params=1.3e10,
                tokens=1.0e12,
            )
        )
        runs.append(
            Run(
                "ranker-v10",
                "pretraining",
                "ml-platform",
                256,
                add_months(E, 11) + dt.timedelta(days=6),
                24.0 * 12,
            )
        )
        runs.append(
            Run(
                "embed-v11",
                "pretraining",
                "ml-platform",
                128,
                add_months(E, 15) + dt.timedelta(days=3),
                24.0 * 14,
            )
        )
        pre = [r for r in runs if r.phase == "pretraining"]
        # Optimization after each release (a week after the run ends) and before each quantization.
        for r in pre:
            s = (r.end + dt.timedelta(days=7)).date()
            runs.append(Run(f"opt-{r.name}", "optimization", "ml-platform", 16, s, 24.0 * 4))
        for q, name in (
            (self.quantization, "int8-quantization"),
            (self.future_quantization, "distillation"),
        ):
            runs.append(
                Run(
                    f"opt-{name}",
                    "optimization",
                    "ml-platform",
                    16,
                    q - dt.timedelta(days=25),
                    24.0 * 10,
                )
            )
        return sorted(runs, key=lambda r: (r.start, r.name))

    # --- smooth drivers (no noise): also what the plan writes ------------------------------------
    def months_from_end(self, d: dt.date) -> float:
        return (d - self.end_month).days / 30.4375

    def gpu_hours_per_1k(self, d: dt.date) -> float:
        rate = GPU_HOURS_PER_1K
        if d >= self.quantization:
            rate *= 0.6
        if d >= self.future_quantization:
            rate *= 0.75
        return rate

    def h100_price(self, d: dt.date) -> int:
        """p5.48xlarge on-demand price per instance-hour (1/P units) on a day."""
        if d >= self.future_price_change:
            return PRICE["p5_od_future"]
        if d >= self.price_change:
            return PRICE["p5_od_after"]
        return PRICE["p5_od_before"]

    def etl_instances(self, d: dt.date) -> int:
        return max(2, round(16 * 1.03 ** self.months_from_end(d)))

    def storage_gb(self, d: dt.date) -> tuple[float, float]:
        t = self.months_from_end(d)
        return 900_000 * 1.03**t, 150_000 * 1.02**t

    def ops_instances(self, d: dt.date) -> int:
        return 4 if d < add_months(self.end_month, -12) else 6

    def glue_dpu_hours(self, d: dt.date) -> float:
        return 240 * 1.03 ** self.months_from_end(d)

    def ri_terms(self) -> list[dt.date]:
        out, d = [], self.start
        while d < self.horizon:
            out.append(d)
            d = add_months(d, 12)
        return out

    def expected_requests(self, days: list[dt.date]) -> np.ndarray:
        t = np.array([self.months_from_end(d) for d in days])
        return REQUESTS_PER_DAY_AT_END * (1 + TRAFFIC_GROWTH) ** t * traffic_shape(days)


@dataclass
class DayUsage:
    """Usage metrics of one day, per (phase, team) where it applies (for usage.csv)."""

    # (phase, team, GPU model, resource id) -> 1/Q GPU-hours; the serving fleet is reported per GPU
    # model (resource ""), training and optimization jobs per node, as a job scheduler's DCGM metrics do.
    gpu_hours: dict[tuple[str, str, str, str], int] = field(default_factory=dict)
    util: dict[str, float] = field(default_factory=dict)
    requests: dict[str, int] = field(default_factory=dict)
    tokens_in: int = 0
    tokens_out: int = 0
    storage_gb: float = 0.0


class _Resource(TypedDict):
    """Keyword arguments of :meth:`RowBuffer.add` naming the resource a row is charged to."""

    resource_id: str | None
    resource_name: str | None
    resource_type: NotRequired[str | None]
    az: str | None
    tags: dict[str, str] | None
    team: str | None


class _InstanceRow(TypedDict):
    """Keyword arguments of :meth:`RowBuffer.add` shared by the rows of one serving instance."""

    phase: str
    category: str
    sub: str
    start: dt.datetime
    end: dt.datetime
    tags: dict[str, str] | None
    resource_id: str | None
    resource_name: str | None
    az: str | None
    gpu_hours: int
    team: str | None


class _UsageRow(TypedDict):
    """Keyword arguments of :meth:`RowBuffer.add` that :func:`_usage_row` passes through."""

    phase: str
    category: str
    sub: str
    start: dt.datetime
    end: dt.datetime
    tags: dict[str, str] | None
    description: NotRequired[str | None]
    resource_id: NotRequired[str | None]
    resource_name: NotRequired[str | None]
    resource_type: NotRequired[str | None]
    az: NotRequired[str | None]
    capacity: NotRequired[tuple[str, str] | None]
    gpu_hours: NotRequired[int]
    team: NotRequired[str | None]


def _usage_row(
    buf: RowBuffer, sku_key: str, day: dt.date, qty: int, price: int, **kw: Unpack[_UsageRow]
) -> None:
    """A plain on-demand (Standard) usage row: every cost = quantity x price."""
    sku = CATALOG[sku_key]
    cost = qty * price
    buf.add(
        day=day,
        sku=sku,
        billed=cost,
        effective=cost,
        list_cost=cost,
        contracted=cost,
        qty=qty,
        consumed=qty,
        list_price=price,
        contracted_price=price,
        pricing="Standard",
        **kw,
    )


class World:
    """Simulates the platform day by day and emits FOCUS rows into a :class:`RowBuffer`."""

    def __init__(self, sc: Scenario, seed: int) -> None:
        self.sc = sc
        self.rng = np.random.default_rng(seed)
        days = []
        d = sc.start
        while d < sc.horizon:
            days.append(d)
            d += dt.timedelta(days=1)
        self.days = days
        noise = np.exp(self.rng.normal(0.0, 0.03, len(days)))
        self.requests = sc.expected_requests(days) * noise
        self._ri = self._size_reservations()

    # --- reserved instances ----------------------------------------------------------------------
    def _size_reservations(self) -> dict[tuple[str, dt.date], int]:
        out = {}
        for term in self.sc.ri_terms():
            mean_req = REQUESTS_PER_DAY_AT_END * (1 + TRAFFIC_GROWTH) ** self.sc.months_from_end(
                term
            )
            for model, share in MODEL_SHARE.items():
                inst_h = mean_req * share / 1000 * self.sc.gpu_hours_per_1k(term) / 4
                out[(model, term)] = int(RI_COVERAGE * inst_h / 24)
        return out

    def reservation(self, model: str, d: dt.date) -> tuple[str, str, int, dt.date]:
        term = max(t for t in self.sc.ri_terms() if t <= d)
        count = self._ri[(model, term)]
        rid = f"arn:aws:ec2:us-east-1:acct-ecomai-7f3k2:reserved-instances/{_hid('ri', model, term, n=8)}-{_hid(model, n=4)}"
        name = f"g5.12xlarge x{count} {model} {term:%Y-%m}"
        return rid, name, count, term

    # --- one day ---------------------------------------------------------------------------------
    def simulate_day(self, i: int, buf: RowBuffer) -> DayUsage:
        sc, rng, day = self.sc, self.rng, self.days[i]
        nxt = day + dt.timedelta(days=1)
        d0, d1 = _dt(day), _dt(nxt)
        u = DayUsage()
        total_req = self.requests[i]
        expected = sc.expected_requests([day])[0]

        # Inference fleet: g5.12xlarge (4 x A10G) per model; reserved instances first, then on-demand.
        for model, share in MODEL_SHARE.items():
            team = MODEL_TEAM[model]
            sub = "search" if team == "search" else "reco"
            req = int(total_req * share)
            u.requests[team] = req
            gpu_h = req / 1000 * sc.gpu_hours_per_1k(day) * float(np.exp(rng.normal(0, 0.02)))
            inst_c = max(1, round(gpu_h / 4 * 100))  # instance-hours in hundredths
            hours = [2400] * (inst_c // 2400) + ([inst_c % 2400] if inst_c % 2400 else [])
            rid, rname, count, _term = self.reservation(model, day)
            tags = {"phase": "inference", "team": team, "model": model, "env": "prod"}
            ri_c = {
                "id": rid,
                "name": rname,
                "category": "Usage",
                "type": "Reserved Instance",
                "unit": "Hours",
            }
            covered = 0
            for k, hc in enumerate(hours):
                qty = hc * (Q // 100)
                gq = qty * 4
                common = _InstanceRow(
                    phase="inference",
                    category="compute_gpu",
                    sub=sub,
                    start=d0,
                    end=d0 + dt.timedelta(seconds=hc * 36),
                    tags=tags,
                    resource_id=f"i-0{_hid(model, k, n=16)}",
                    resource_name=f"{model}-serving-{k:03d}",
                    az=f"us-east-1{'abc'[k % 3]}",
                    gpu_hours=gq,
                    team=team,
                )
                lp = PRICE["g5_od"]
                if k < count:
                    covered += hc
                    buf.add(
                        day=day,
                        sku=CATALOG["g5"],
                        billed=0,
                        effective=qty * PRICE["g5_ri"],
                        list_cost=qty * lp,
                        contracted=qty * lp,
                        qty=qty,
                        consumed=qty,
                        list_price=lp,
                        contracted_price=lp,
                        pricing="Committed",
                        term="Reserved",
                        commitment={**ri_c, "status": "Used", "quantity": qty},
                        description=f"USD {lp / P:.3f} per g5.12xlarge hour, covered by reserved instance",
                        **common,
                    )
                else:
                    _usage_row(
                        buf,
                        "g5",
                        day,
                        qty,
                        lp,
                        description=f"USD {lp / P:.3f} per On Demand Linux g5.12xlarge Instance Hour",
                        **common,
                    )
            u.gpu_hours[("inference", team, "A10", "")] = (
                u.gpu_hours.get(("inference", team, "A10", ""), 0) + inst_c * (Q // 100) * 4
            )
            if count:
                ri_tags = {"phase": "inference", "team": team, "model": model, "env": "prod"}
                unused_c = count * 2400 - covered
                ri_res = _Resource(
                    resource_id=rid,
                    resource_name=rname,
                    resource_type="Reserved Instance",
                    az=None,
                    tags=ri_tags,
                    team=team,
                )
                if unused_c > 0:
                    uq = unused_c * (Q // 100)
                    cost = uq * PRICE["g5_ri"]
                    buf.add(
                        day=day,
                        sku=CATALOG["g5"],
                        phase="inference",
                        category="compute_gpu",
                        sub=sub,
                        start=d0,
                        end=d1,
                        billed=0,
                        effective=cost,
                        list_cost=cost,
                        contracted=cost,
                        qty=uq,
                        consumed=None,
                        list_price=PRICE["g5_ri"],
                        contracted_price=PRICE["g5_ri"],
                        pricing="Committed",
                        term="Reserved",
                        commitment={**ri_c, "status": "Unused", "quantity": uq},
                        description="Unused reserved instance hours, g5.12xlarge",
                        **ri_res,
                    )
                pq_ = count * 24 * Q
                fee = pq_ * PRICE["g5_ri"]
                buf.add(
                    day=day,
                    sku=CATALOG["g5"],
                    phase="inference",
                    category="compute_gpu",
                    sub=sub,
                    start=d0,
                    end=d1,
                    billed=fee,
                    effective=0,
                    list_cost=fee,
                    contracted=fee,
                    qty=pq_,
                    consumed=None,
                    list_price=PRICE["g5_ri"],
                    contracted_price=PRICE["g5_ri"],
                    pricing="Standard",
                    term="Reserved",
                    charge_category="Purchase",
                    frequency="Recurring",
                    commitment={**ri_c, "quantity": pq_},
                    description=f"Reserved instance fee, {count} x g5.12xlarge, 1 year, no upfront",
                    **ri_res,
                )
        load = total_req / max(expected, 1.0)
        u.util["inference"] = float(np.clip(0.52 * load**0.5 + rng.normal(0, 0.02), 0.2, 0.95))

        # Egress and managed LLM tokens (query rewriting; the gateway does not tag Bedrock calls).
        for model, share in MODEL_SHARE.items():
            team = MODEL_TEAM[model]
            gb = int(total_req * share * EGRESS_KB_PER_REQUEST / 1e6 * Q)
            _usage_row(
                buf,
                "egress",
                day,
                gb,
                PRICE["egress"],
                phase="inference",
                category="network",
                sub="search" if team == "search" else "reco",
                start=d0,
                end=d1,
                tags={"phase": "inference", "team": team, "model": model, "env": "prod"},
                description="USD 0.05 per GB data transfer out of US East (N. Virginia) to internet",
                team=team,
            )
        calls = total_req * MODEL_SHARE["search-ranker"] * LLM_SHARE
        t_in = int(calls * TOKENS_IN * float(np.exp(rng.normal(0, 0.05))))
        t_out = int(calls * TOKENS_OUT * float(np.exp(rng.normal(0, 0.05))))
        u.tokens_in, u.tokens_out = t_in, t_out
        model_arn = "arn:aws:bedrock:us-east-1::foundation-model/amazon.nova-pro-v1:0"
        for key, tok in (("nova_in", t_in), ("nova_out", t_out)):
            _usage_row(
                buf,
                key,
                day,
                tok,
                PRICE[key],
                phase="inference",
                category="ai_services",
                sub="search",
                start=d0,
                end=d1,
                tags=None,
                resource_id=model_arn,
                resource_name="amazon.nova-pro-v1:0",
                resource_type="Foundation Model",
                team="search",
            )
        # Quarterly promotional credit on the managed LLM (untagged, like the usage it offsets).
        if day.day == 1 and day.month in (1, 4, 7, 10):
            amt = -2500 * C
            buf.add(
                day=day,
                sku=None,
                phase="inference",
                category="ai_services",
                sub="search",
                start=d0,
                end=d1,
                billed=amt,
                effective=amt,
                list_cost=amt,
                contracted=amt,
                qty=None,
                list_price=None,
                contracted_price=None,
                pricing=None,
                tags=None,
                charge_category="Credit",
                frequency="One-Time",
                description="Amazon Bedrock promotional credit",
                service=("AI and Machine Learning", "Amazon Bedrock", "Generative AI"),
            )
        if day == sc.sla_credit_day:
            amt = -12345_6700000000
            buf.add(
                day=day,
                sku=None,
                phase="inference",
                category="compute_gpu",
                sub="search",
                start=d0,
                end=d1,
                billed=amt,
                effective=amt,
                list_cost=amt,
                contracted=amt,
                qty=None,
                list_price=None,
                contracted_price=None,
                pricing=None,
                tags={
                    "phase": "inference",
                    "team": "search",
                    "model": "search-ranker",
                    "env": "prod",
                },
                charge_category="Credit",
                frequency="One-Time",
                description="EC2 service level agreement credit (g5 capacity outage)",
                service=("Compute", "Amazon Elastic Compute Cloud", "Virtual Machines"),
            )

        # GPU bursts: pre-training on a capacity block, optimization jobs on demand.
        for r in sc.runs:
            s, e = _dt(r.start), r.end
            lo, hi = max(s, d0), min(e, d1)
            if lo >= hi:
                continue
            hc = round((hi - lo).total_seconds() / 36)
            price = sc.h100_price(day)
            cap = (f"cr-0{_hid('cr', r.name, n=16)}", "Used") if r.phase == "pretraining" else None
            for node in range(r.nodes):
                qty = hc * (Q // 100)
                _usage_row(
                    buf,
                    "p5",
                    day,
                    qty,
                    price,
                    phase=r.phase,
                    category="compute_gpu",
                    sub="training",
                    start=lo,
                    end=hi,
                    tags={"phase": r.phase, "team": r.team, "model": r.name, "env": "prod"},
                    resource_id=f"i-0{_hid(r.name, node, n=16)}",
                    resource_name=f"{r.name}-node-{node:03d}",
                    az="us-east-1b",
                    capacity=cap,
                    gpu_hours=qty * 8,
                    team=r.team,
                    description=f"USD {price / P:.2f} per {'Capacity Block' if cap else 'On Demand'} p5.48xlarge Instance Hour",
                )
            for node in range(r.nodes):
                rk = (r.phase, r.team, "H100", f"i-0{_hid(r.name, node, n=16)}")
                u.gpu_hours[rk] = u.gpu_hours.get(rk, 0) + hc * (Q // 100) * 8
            u.util[r.phase] = float(
                np.clip(
                    (0.38 if r.phase == "pretraining" else 0.5) + rng.normal(0, 0.02), 0.1, 0.95
                )
            )

        # Fine-tuning cadence: weekly A10 refreshes (search on Tuesday, reco on Thursday) and a monthly
        # H100 job on the first Wednesday (from 20 months before --end).
        ft: list[
            tuple[str, str, str, int, int, str]
        ] = []  # (job, team, sku, nodes, hours_c, model)
        if day.weekday() == 1:
            ft.append(
                (
                    "ft-search-weekly",
                    "search",
                    "g5",
                    2,
                    int(round((18 + rng.normal(0, 1.5)) * 4)) * 25,
                    "search-ranker",
                )
            )
        if day.weekday() == 3:
            ft.append(
                (
                    "ft-reco-weekly",
                    "reco",
                    "g5",
                    2,
                    int(round((14 + rng.normal(0, 1.5)) * 4)) * 25,
                    "reco-twotower",
                )
            )
        first_wed = day.weekday() == 2 and day.day <= 7
        prev = day - dt.timedelta(days=1)
        if day >= add_months(sc.end_month, -20):
            if first_wed:
                ft.append(("ft-h100-monthly", "ml-training", "p5", 1, 2400, "reco-lm"))
            elif prev.weekday() == 2 and prev.day <= 7 and prev >= add_months(sc.end_month, -20):
                ft.append(("ft-h100-monthly", "ml-training", "p5", 1, 1200, "reco-lm"))
        for job, team, key, nodes, hc, model in ft:
            sku = CATALOG[key]
            price = PRICE["g5_od"] if key == "g5" else sc.h100_price(day)
            tags = {"phase": "fine_tuning", "team": team, "model": model, "env": "prod", "job": job}
            for node in range(nodes):
                qty = hc * (Q // 100)
                _usage_row(
                    buf,
                    key,
                    day,
                    qty,
                    price,
                    phase="fine_tuning",
                    category="compute_gpu",
                    sub="training",
                    start=d0,
                    end=d0 + dt.timedelta(seconds=hc * 36),
                    tags=tags,
                    resource_id=f"i-0{_hid(job, day, node, n=16)}",
                    resource_name=f"{job}-{node}",
                    az="us-east-1b",
                    gpu_hours=qty * sku.gpus,
                    team=team,
                )
            for node in range(nodes):
                gk = ("fine_tuning", team, sku.gpu or "", f"i-0{_hid(job, day, node, n=16)}")
                u.gpu_hours[gk] = u.gpu_hours.get(gk, 0) + hc * (Q // 100) * sku.gpus
        if ft:
            u.util["fine_tuning"] = float(np.clip(0.55 + rng.normal(0, 0.03), 0.1, 0.95))

        # Data preprocessing: nightly ETL on c6i, tokenization before each pre-training run, Glue (untagged),
        # the data lake (tagged) and a raw-log bucket (untagged).
        n_etl = sc.etl_instances(day)
        if any(r.phase == "pretraining" and 0 < (r.start - day).days <= 5 for r in sc.runs):
            n_etl += 12
        for k in range(n_etl):
            hc = int(round((20 + rng.normal(0, 1.0)) * 4)) * 25
            qty = hc * (Q // 100)
            _usage_row(
                buf,
                "c6i",
                day,
                qty,
                PRICE["c6i"],
                phase="data_preprocessing",
                category="compute_cpu",
                sub="data",
                start=d0,
                end=d0 + dt.timedelta(seconds=hc * 36),
                tags={
                    "phase": "data_preprocessing",
                    "team": "data-eng",
                    "model": "shared",
                    "env": "prod",
                },
                resource_id=f"i-0{_hid('etl', k, n=16)}",
                resource_name=f"etl-worker-{k:02d}",
                az="us-east-1a",
                team="data-eng",
            )
        dpu = int(sc.glue_dpu_hours(day) * float(np.exp(rng.normal(0, 0.05))) * 100) * (Q // 100)
        _usage_row(
            buf,
            "glue",
            day,
            dpu,
            PRICE["glue"],
            phase="data_preprocessing",
            category="compute_cpu",
            sub="data",
            start=d0,
            end=d1,
            tags=None,
            resource_id="arn:aws:glue:us-east-1:acct-ecomai-7f3k2:job/clickstream-sessionize",
            resource_name="clickstream-sessionize",
            resource_type="Glue Job",
            team="data-eng",
        )
        dim = (add_months(day, 1) - month_start(day)).days
        lake, raw = sc.storage_gb(day)
        for bucket_gb, name, bucket_tags in (
            (
                lake,
                "ecomai-datalake",
                {
                    "phase": "data_preprocessing",
                    "team": "data-eng",
                    "model": "shared",
                    "env": "prod",
                },
            ),
            (raw, "ecomai-raw-logs", None),
        ):
            qty = int(round(bucket_gb * Q / dim))
            _usage_row(
                buf,
                "s3",
                day,
                qty,
                PRICE["s3"],
                phase="data_preprocessing",
                category="storage",
                sub="data",
                start=d0,
                end=d1,
                tags=bucket_tags,
                resource_id=f"arn:aws:s3:::{name}",
                resource_name=name,
                description="USD 0.023 per GB-Month of storage used in S3 Standard",
                team="data-eng",
            )
        u.storage_gb = lake + raw

        # Operations: the monitoring stack (tagged) and CloudWatch logs (untagged).
        for k in range(sc.ops_instances(day)):
            qty = 24 * Q
            _usage_row(
                buf,
                "m6i2",
                day,
                qty,
                PRICE["m6i2"],
                phase="operations",
                category="compute_cpu",
                sub="shared",
                start=d0,
                end=d1,
                tags={"phase": "operations", "team": "sre", "model": "shared", "env": "prod"},
                resource_id=f"i-0{_hid('mon', k, n=16)}",
                resource_name=f"prometheus-{k}",
                az="us-east-1a",
                team="sre",
            )
        logs = int(total_req / 1000 * LOG_GB_PER_1K_REQUESTS * Q)
        _usage_row(
            buf,
            "cwlogs",
            day,
            logs,
            PRICE["cwlogs"],
            phase="operations",
            category="other",
            sub="shared",
            start=d0,
            end=d1,
            tags=None,
            team="sre",
        )

        # Developer boxes nobody tagged: no rule places them (unallocated).
        if day.weekday() < 5:
            for k in range(3):
                hc = int(round((10 + rng.normal(0, 1.5)) * 4)) * 25
                qty = max(hc, 25) * (Q // 100)
                _usage_row(
                    buf,
                    "m6i1",
                    day,
                    qty,
                    PRICE["m6i1"],
                    phase="unallocated",
                    category="compute_cpu",
                    sub="shared",
                    start=d0,
                    end=d0 + dt.timedelta(seconds=max(hc, 25) * 36),
                    tags={"owner": f"dev{k + 1}", "env": "dev"},
                    resource_id=f"i-0{_hid('dev', k, n=16)}",
                    resource_name=f"devbox-{k + 1}",
                    az="us-east-1c",
                    team=None,
                )
        return u


def expected_monthly_requests(sc: Scenario, first: dt.date, n: int) -> dict[dt.date, float]:
    """Planned requests per month (the smooth driver, no noise)."""
    out = {}
    for k in range(n):
        m = add_months(first, k)
        days = [m + dt.timedelta(days=j) for j in range((add_months(m, 1) - m).days)]
        out[m] = float(sc.expected_requests(days).sum())
    return out


def ceil_hours(x: float) -> float:
    return math.ceil(x * 100) / 100
