"""``phasecast synth``: a realistic, reproducible history of an e-commerce AI platform.

:func:`generate` writes, under ``config.out``:

- ``billing/YYYY-MM.csv.gz`` (or ``.parquet``): one FOCUS 1.2 export per billing month, the current
  month to date included, plus one restated re-export
  ``billing/YYYY-MM.restated-YYYY-MM-DD/YYYY-MM.restated-YYYY-MM-DD.csv.gz`` of an earlier period (the
  date is when it was re-exported), in a folder of its own because it is a delivery of its own (the
  files of one folder are one delivery); the folder sorts after the export it replaces;
- ``usage.csv``, ``labor.csv``, ``plan.yaml`` (the next ``plan_months`` months), ``budgets.csv``;
- ``truth.json`` (exact totals per billing period and phase) and a ``README.md``.

Same configuration, same bytes. :func:`synth_focus_rows` makes N rows fast for benchmarks.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from tqdm import tqdm

from pipeline.errors import InputError, Problem
from pipeline.synth.calendar import events as calendar_events
from pipeline.synth.fast import synth_focus_rows
from pipeline.synth.focus import (
    CD,
    COST_COLUMNS,
    CURRENCY,
    RowBuffer,
    dec,
    write_csv_gz,
    write_parquet,
)
from pipeline.synth.world import (
    GPU_HOURS_PER_1K,
    LLM_SHARE,
    MODEL_SHARE,
    TOKENS_IN,
    TOKENS_OUT,
    DayUsage,
    Scenario,
    World,
    add_months,
    expected_monthly_requests,
    month_start,
)

__all__ = ["SynthConfig", "SynthResult", "generate", "synth_focus_rows"]

log = logging.getLogger(__name__)

PHASES_REAL = (
    "data_preprocessing",
    "pretraining",
    "fine_tuning",
    "inference",
    "optimization",
    "operations",
)
FORMATS = ("csv", "parquet")


@dataclass(frozen=True)
class SynthConfig:
    """What to generate. ``end`` is the last complete month (a fixed default, so a seed gives the same
    bytes on any day); ``partial_days`` days of the following month are exported as the current month."""

    out: Path
    months: int = 36
    seed: int = 42
    end: str = "2026-10"
    fmt: str = "csv"
    partial_days: int = 14
    plan_months: int = 18
    progress: bool = False
    # False: billing Tags carry no "phase" key (team, model ... stay), as in most real exports;
    # truth.json keeps the intended phases, so attribution can be measured against them.
    phase_tags: bool = True

    def check(self) -> None:
        problems = []
        if self.fmt not in FORMATS:
            problems.append(
                f"--format must be one of {', '.join(FORMATS)}. Got {self.fmt!r} instead."
            )
        if not 1 <= self.months <= 120:
            problems.append(f"--months must be between 1 and 120. Got {self.months} instead.")
        if not 0 <= self.partial_days <= 27:
            problems.append(
                f"--partial-days must be between 0 and 27. Got {self.partial_days} instead."
            )
        try:
            dt.date.fromisoformat(self.end + "-01")
        except ValueError:
            problems.append(f"--end must be a month YYYY-MM. Got {self.end!r} instead.")
        if not 1 <= self.plan_months <= 60:
            problems.append(
                f"plan_months must be between 1 and 60. Got {self.plan_months} instead."
            )
        if problems:
            raise InputError([Problem(p) for p in problems], fix="see phasecast synth --help")


@dataclass(frozen=True)
class SynthResult:
    out: Path
    billing_files: tuple[Path, ...]
    restated: tuple[Path, Path] | None  # (original, restatement)
    files: tuple[Path, ...]  # every file written
    rows: int  # billing rows written (all files)
    totals: dict[str, str]  # BilledCost/EffectiveCost/ListCost over the authoritative exports
    truth: dict[str, Any] = field(repr=False, default_factory=dict)


# --- labor ------------------------------------------------------------------------------------
# (phase, team, hourly rate in --end's year, [(months from --end, people from then on), ...])
TEAMS: tuple[tuple[str, str, str, tuple[tuple[int, int], ...]], ...] = (
    ("operations", "sre", "95.00", ((-999, 4), (-24, 5), (-12, 6), (-3, 7), (4, 8))),
    ("fine_tuning", "ml-training", "120.00", ((-999, 3), (-18, 4), (-6, 5), (6, 6))),
    ("data_preprocessing", "data-eng", "105.00", ((-999, 2), (-20, 3), (-8, 4), (8, 5))),
)
HOURS_PER_PERSON = 160


def _people(steps: tuple[tuple[int, int], ...], e: dt.date, m: dt.date) -> int:
    k = (m.year - e.year) * 12 + m.month - e.month
    return [p for off, p in steps if off <= k][-1]


def _rate(base: str, e: dt.date, m: dt.date) -> Decimal:
    """Hourly rates rise 4 % every January."""
    return (Decimal(base) * Decimal("1.04") ** (m.year - e.year)).quantize(Decimal("0.01"))


# --- generation -------------------------------------------------------------------------------
def _sum(vals: list[int]) -> int:
    return int(sum(vals))


def _totals(cols: dict[str, list[Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {"rows": len(cols["BilledCost"])}
    for c in COST_COLUMNS:
        out[c] = dec(_sum(cols[c]), CD)
    by_phase: dict[str, dict[str, int]] = defaultdict(lambda: dict.fromkeys(COST_COLUMNS, 0))
    for i, ph in enumerate(cols["phase"]):
        for c in COST_COLUMNS:
            by_phase[ph][c] += cols[c][i]
    out["by_phase"] = {
        ph: {c: dec(v, CD) for c, v in d.items()} for ph, d in sorted(by_phase.items())
    }
    return out


def _restate(buf: RowBuffer, last_day: dt.date) -> list[int]:
    """Row order of the ORIGINAL export of the restated period: the managed-LLM usage of the last two
    days had not arrived yet, and day 12's on-demand inference rows were metered twice."""
    c = buf.cols
    keep, dup = [], []
    for i in range(buf.n):
        late = (
            c["ServiceName"][i] == "Amazon Bedrock"
            and c["ChargeCategory"][i] == "Usage"
            and (last_day - c["day"][i]).days < 2
        )
        if late:
            continue
        keep.append(i)
        if (
            c["day"][i].day == 12
            and c["phase"][i] == "inference"
            and c["PricingCategory"][i] == "Standard"
            and c["ServiceName"][i] == "Amazon Elastic Compute Cloud"
            and c["ChargeCategory"][i] == "Usage"
        ):
            dup.append(i)
    return keep + dup


def generate(config: SynthConfig) -> SynthResult:
    """Write the synthetic history described in the module docstring; return what was written."""
    config.check()
    out = Path(config.out)
    bill_dir = out / "billing"
    bill_dir.mkdir(parents=True, exist_ok=True)
    for old in bill_dir.rglob(
        "*"
    ):  # a re-run with other settings must not leave stale exports behind
        if old.is_file() and (old.name.endswith(".csv.gz") or old.name.endswith(".parquet")):
            old.unlink()
    end_month = dt.date.fromisoformat(config.end + "-01")
    sc = Scenario.build(end_month, config.months, config.partial_days, config.plan_months)
    world = World(sc, config.seed)
    ext = ".csv.gz" if config.fmt == "csv" else ".parquet"
    writer = write_csv_gz if config.fmt == "csv" else write_parquet

    billing_files: list[Path] = []
    periods: dict[str, Any] = {}
    usage: list[tuple[dt.date, DayUsage]] = []
    future_eff: dict[dt.date, dict[str, int]] = defaultdict(
        lambda: dict.fromkeys(PHASES_REAL + ("unallocated",), 0)
    )
    mtd_eff: dict[str, int] = dict.fromkeys(PHASES_REAL + ("unallocated",), 0)
    restated_pair: tuple[Path, Path] | None = None
    rows_written = 0
    current = add_months(end_month, 1)

    months: list[dt.date] = []
    m = sc.start
    while m < sc.horizon:
        months.append(m)
        m = add_months(m, 1)
    day_index = {d: i for i, d in enumerate(world.days)}
    for m in tqdm(
        months, desc="synth months", unit="month", disable=None if config.progress else True
    ):
        buf = RowBuffer()
        nxt = add_months(m, 1)
        d = m
        while d < nxt:
            u = world.simulate_day(day_index[d], buf)
            if d < sc.cutoff:
                usage.append((d, u))
            d += dt.timedelta(days=1)
        if m >= current:  # the plan horizon (and the full current month): kept for budgets only
            for i in range(buf.n):
                future_eff[m][buf.cols["phase"][i]] += buf.cols["EffectiveCost"][i]
        if m > current or (m == current and config.partial_days == 0):
            continue
        if not config.phase_tags:
            _strip_phase_tags(buf.cols)
        if m == current:
            keep = [i for i in range(buf.n) if buf.cols["day"][i] < sc.cutoff]
            cols = buf.take(keep)
            for i in range(len(keep)):
                mtd_eff[cols["phase"][i]] += cols["EffectiveCost"][i]
        else:
            cols = buf.cols
        label = f"{m:%Y-%m}"
        path = bill_dir / f"{label}{ext}"
        if m == sc.restated_period:
            orig_cols = buf.take(_restate(buf, nxt - dt.timedelta(days=1)))
            writer(orig_cols, path)
            re_date = add_months(m, 1) + dt.timedelta(days=4)
            # A re-delivery sits in a folder of its own: the files of one folder are one delivery.
            re_name = f"{label}.restated-{re_date:%Y-%m-%d}"
            re_path = bill_dir / re_name / f"{re_name}{ext}"
            re_path.parent.mkdir(parents=True, exist_ok=True)
            writer(cols, re_path)
            restated_pair = (path, re_path)
            billing_files += [path, re_path]
            periods[label] = {
                **_totals(cols),
                "file": str(re_path.relative_to(out)),
                "restated": {
                    "original_file": str(path.relative_to(out)),
                    "original": _totals(orig_cols),
                },
            }
            rows_written += len(orig_cols["BilledCost"]) + len(cols["BilledCost"])
        else:
            writer(cols, path)
            billing_files.append(path)
            periods[label] = {**_totals(cols), "file": str(path.relative_to(out))}
            rows_written += len(cols["BilledCost"])
        periods[label]["complete"] = m != current
        periods[label]["untagged_rows"] = sum(1 for t in cols["tagged"] if not t)
        log.debug("wrote %s (%d rows)", path, len(cols["BilledCost"]))

    files = list(billing_files)
    files.append(_write_usage(out / "usage.csv", usage))
    labor_rows = _labor(sc, config)
    files.append(_write_labor(out / "labor.csv", labor_rows))
    plan = _plan(sc, config)
    plan_path = out / "plan.yaml"
    plan_path.write_text(
        "# Generated by phasecast synth: the plan for the months after --end (schema: pipeline/plan.py).\n"
        + yaml.safe_dump(plan, sort_keys=False, width=110)
    )
    files.append(plan_path)
    if config.end == SynthConfig.end:  # its dates are the default world's 2027Q1
        scenario_path = out / "promo-and-llm.yaml"
        scenario_path.write_text(SCENARIO)
        files.append(scenario_path)
    budgets, budget_notes = _budgets(sc, future_eff, mtd_eff, labor_rows, periods)
    files.append(_write_budgets(out / "budgets.csv", budgets))

    grand = {c: sum((Decimal(p[c]) for p in periods.values()), Decimal(0)) for c in COST_COLUMNS}
    labor_cost: dict[str, dict[str, str]] = defaultdict(dict)
    for r in labor_rows:
        prev = Decimal(labor_cost[r["month"]].get(r["phase"], "0"))
        labor_cost[r["month"]][r["phase"]] = str(
            prev + Decimal(r["hours"]) * Decimal(r["hourly_rate"])
        )
    truth: dict[str, Any] = {
        "generator": {
            "seed": config.seed,
            "months": config.months,
            "end": config.end,
            "format": config.fmt,
            "partial_days": config.partial_days,
            "plan_months": config.plan_months,
            "phase_tags": config.phase_tags,
        },
        "currency": CURRENCY,
        "note": "Exact decimal totals of the authoritative export of each billing period (the restatement "
        "where there is one), per phase as intended by the generator (tags, or the default "
        "attribution rules for untagged rows). Labor is separate (labor.csv).",
        "billing_periods": periods,
        "totals": {c: dec(int(v.scaleb(CD)), CD) for c, v in grand.items()},
        "restated_period": f"{sc.restated_period:%Y-%m}",
        "current_month": {
            "period": f"{current:%Y-%m}",
            "through": f"{sc.cutoff - dt.timedelta(days=1)}",
        },
        "labor_cost": dict(labor_cost),
        "events": {
            "h100_price_change": str(sc.price_change),
            "quantization": {"start": str(sc.quantization), "cut": 0.40},
            "sla_credit_day": str(sc.sla_credit_day),
            "pretraining_runs": [
                {"name": r.name, "start": str(r.start), "gpus": r.gpus, "hours": r.hours}
                for r in sc.runs
                if r.phase == "pretraining" and r.start < sc.cutoff
            ],
        },
        "future_simulated_effective_cost": {
            f"{m:%Y-%m}": {ph: dec(v, CD) for ph, v in d.items()}
            for m, d in sorted(future_eff.items())
        },
        "budgets": budget_notes,
    }
    truth_path = out / "truth.json"
    truth_path.write_text(json.dumps(truth, indent=1, sort_keys=False) + "\n")
    files.append(truth_path)
    readme = out / "README.md"
    readme.write_text(_readme(sc, config, periods, restated_pair, out))
    files.append(readme)
    totals = {c: truth["totals"][c] for c in ("BilledCost", "EffectiveCost", "ListCost")}
    log.info(
        "synth: wrote %d billing files (%d rows), usage, labor, plan, budgets, truth under %s",
        len(billing_files),
        rows_written,
        out,
    )
    return SynthResult(
        out=out,
        billing_files=tuple(billing_files),
        restated=restated_pair,
        files=tuple(files),
        rows=rows_written,
        totals=totals,
        truth=truth,
    )


def _strip_phase_tags(cols: dict[str, list[Any]]) -> None:
    """Drop the ``phase`` key from every row's Tags (a tag left empty becomes NULL)."""
    tags = cols["Tags"]
    for i, t in enumerate(tags):
        if t is None:
            continue
        d = json.loads(t)
        if "phase" in d:
            del d["phase"]
            tags[i] = json.dumps(d, sort_keys=True, separators=(",", ":")) if d else None
            cols["tagged"][i] = False


# --- side files -------------------------------------------------------------------------------
def _write_usage(path: Path, usage: list[tuple[dt.date, DayUsage]]) -> Path:
    lines = ["ts,phase,metric,value,unit,team,gpu,resource_id"]
    for d, u in usage:
        day = d.isoformat()
        for (phase, team, gpu, rid), v in sorted(u.gpu_hours.items()):
            lines.append(f"{day},{phase},gpu_hours,{dec(v, 6)},hours,{team},{gpu},{rid}")
        for phase, util in sorted(u.util.items()):
            lines.append(f"{day},{phase},gpu_util,{util:.4f},ratio,,,")
        for team, v in sorted(u.requests.items()):
            lines.append(f"{day},inference,requests,{v},requests,{team},,")
        lines.append(f"{day},inference,tokens_in,{u.tokens_in},tokens,search,,")
        lines.append(f"{day},inference,tokens_out,{u.tokens_out},tokens,search,,")
        lines.append(f"{day},data_preprocessing,storage_gb,{u.storage_gb:.1f},GB,data-eng,,")
    path.write_text("\n".join(lines) + "\n")
    return path


def _labor(sc: Scenario, config: SynthConfig) -> list[dict[str, str]]:
    rng = np.random.default_rng([config.seed, 7])
    rows = []
    current = add_months(sc.end_month, 1)
    m = sc.start
    while m <= current:
        if m == current and config.partial_days == 0:
            break
        dim = (add_months(m, 1) - m).days
        for phase, team, base, steps in TEAMS:
            people = _people(steps, sc.end_month, m)
            hours = people * HOURS_PER_PERSON * (1 + float(rng.normal(0, 0.02)))
            if m == current:  # month to date
                hours *= config.partial_days / dim
            hours = round(hours * 2) / 2
            rows.append(
                {
                    "month": f"{m:%Y-%m}",
                    "phase": phase,
                    "team": team,
                    "hours": f"{hours:.1f}",
                    "hourly_rate": str(_rate(base, sc.end_month, m)),
                    "currency": CURRENCY,
                }
            )
        m = add_months(m, 1)
    return rows


def _write_labor(path: Path, rows: list[dict[str, str]]) -> Path:
    cols = ("month", "phase", "team", "hours", "hourly_rate", "currency")
    path.write_text(
        "\n".join([",".join(cols)] + [",".join(r[c] for c in cols) for r in rows]) + "\n"
    )
    return path


#: The README's what-if for the default world (cut 2026-11): a 7B pre-training run, a traffic push,
#: quantization, an H100 price change and two more SREs in 2027Q1 (schema: pipeline/scenarios.py).
SCENARIO = """\
# Generated by phasecast synth: the README's scenario (phasecast budget --scenario FILE).
name: promo-and-llm
changes:
  - add_run: {name: llm-7b, gpu: H100, gpus: 256, days: 10, start: 2027-02-01, pricing: committed, phase: pretraining}
  - traffic: {change: 0.30, start: 2027-01-01, end: 2027-02-28}       # +30 % requests
  - quantization: {cut: 0.40, start: 2027-03-01}                       # -40 % GPU-hours per request
  - price: {gpu: H100, start: 2027-01-01, committed: 2.50, on_demand: 3.50}
  - headcount: {phase: operations, team: sre, change: 2, start: 2027-01}   # +2 people
"""


def _plan(sc: Scenario, config: SynthConfig) -> dict[str, Any]:
    first = add_months(sc.end_month, 1)
    last = add_months(first, config.plan_months - 1)
    ym = "%Y-%m"
    runs = []
    for r in sc.runs:
        if not (first <= r.start < sc.horizon):
            continue
        item: dict[str, Any] = {
            "name": r.name,
            "phase": r.phase,
            "gpu": "H100",
            "gpus": r.gpus,
            "start": r.start.isoformat(),
        }
        if r.params is not None:
            item.update(params=r.params, tokens=r.tokens, utilization=0.35)
        else:
            item["days"] = round(r.hours / 24, 4)
        item["pricing"] = "on_demand"
        runs.append(item)
    wk = 365.25 / 7 / 12
    recurring: list[dict[str, Any]] = [
        {
            "name": "ft-search-weekly",
            "phase": "fine_tuning",
            "resource": "gpu",
            "gpu": "A10",
            "quantity": 8,
            "hours_per_month": round(18 * wk, 2),
            "pricing": "on_demand",
            "start": f"{first:{ym}}",
        },
        {
            "name": "ft-reco-weekly",
            "phase": "fine_tuning",
            "resource": "gpu",
            "gpu": "A10",
            "quantity": 8,
            "hours_per_month": round(14 * wk, 2),
            "pricing": "on_demand",
            "start": f"{first:{ym}}",
        },
        {
            "name": "ft-h100-monthly",
            "phase": "fine_tuning",
            "resource": "gpu",
            "gpu": "H100",
            "quantity": 8,
            "hours_per_month": 36,
            "pricing": "on_demand",
            "start": f"{first:{ym}}",
        },
    ]
    for k in range(0, config.plan_months, 6):
        s = add_months(first, k)
        e = min(add_months(s, 5), last)
        mid = s + (add_months(e, 1) - s) / 2
        recurring.append(
            {
                "name": f"etl-nightly-{s:{ym}}",
                "phase": "data_preprocessing",
                "resource": "cpu",
                "quantity": 64 * sc.etl_instances(mid),
                "hours_per_month": round(20 * 30.4375, 2),
                "start": f"{s:{ym}}",
                "end": f"{e:{ym}}",
            }
        )
        # Glue DPU-hours at 0.44 written as vCPU-hour equivalents at the book's 0.0425.
        recurring.append(
            {
                "name": f"glue-sessionize-{s:{ym}}",
                "phase": "data_preprocessing",
                "resource": "cpu",
                "quantity": 1,
                "hours_per_month": round(sc.glue_dpu_hours(mid) * 30.4375 * 0.44 / 0.0425, 1),
                "start": f"{s:{ym}}",
                "end": f"{e:{ym}}",
            }
        )
    for r in sc.runs:
        if r.phase == "pretraining" and first <= r.start < sc.horizon:
            mm = month_start(r.start - dt.timedelta(days=3))
            recurring.append(
                {
                    "name": f"tokenize-{r.name}",
                    "phase": "data_preprocessing",
                    "resource": "cpu",
                    "quantity": 12 * 64,
                    "hours_per_month": 100,
                    "start": f"{mm:{ym}}",
                    "end": f"{mm:{ym}}",
                }
            )
    recurring += [
        {
            "name": "monitoring-stack",
            "phase": "operations",
            "resource": "cpu",
            "quantity": 8 * sc.ops_instances(first),
            "hours_per_month": round(24 * 30.4375, 2),
            "start": f"{first:{ym}}",
        },
        {
            "name": "devboxes",
            "phase": "unallocated",
            "resource": "cpu",
            "quantity": 12,
            "hours_per_month": round(10 * 261 / 12, 2),
            "start": f"{first:{ym}}",
        },
    ]
    req = expected_monthly_requests(sc, first, config.plan_months)
    lake, raw = sc.storage_gb(first)
    growth = (lake * 1.03 + raw * 1.02) / (lake + raw) - 1
    heads = []
    for phase, team, base, steps in TEAMS:
        seg: dict[str, Any] | None = None
        for k in range(config.plan_months):
            m = add_months(first, k)
            people, rate = _people(steps, sc.end_month, m), float(_rate(base, sc.end_month, m))
            if seg and seg["people"] == people and seg["hourly_rate"] == rate:
                seg["end"] = f"{m:{ym}}"
                continue
            seg = {
                "phase": phase,
                "team": team,
                "people": people,
                "hours_per_month": HOURS_PER_PERSON,
                "hourly_rate": rate,
                "start": f"{m:{ym}}",
                "end": f"{m:{ym}}",
            }
            heads.append(seg)
    tokens_per_request = MODEL_SHARE["search-ranker"] * LLM_SHARE * (TOKENS_IN + TOKENS_OUT)
    blended = (TOKENS_IN * 0.80 + TOKENS_OUT * 3.20) / (TOKENS_IN + TOKENS_OUT)
    return {
        "currency": CURRENCY,
        "start": f"{first:{ym}}",
        "price_book": {
            "gpu_hour": {
                "H100": {"on_demand": 12.29, "committed": 8.603},
                "A10": {"on_demand": 1.418, "committed": 0.8935},
            },
            "cpu_core_hour": 0.0425,
            "storage_gb_month": 0.023,
            "egress_gb": 0.05,
            "tokens_million": round(blended, 4),
            "price_changes": [
                {
                    "gpu": "H100",
                    "start": sc.price_change.isoformat(),
                    "on_demand": 6.88,
                    "committed": 4.816,
                },
                {
                    "gpu": "H100",
                    "start": sc.future_price_change.isoformat(),
                    "on_demand": 5.84,
                    "committed": 4.088,
                },
            ],
        },
        "scheduled_runs": runs,
        "recurring": recurring,
        "traffic": {
            "gpu": "A10",
            "pricing": "committed",
            "gpu_hours_per_1k_requests": GPU_HOURS_PER_1K,
            "tokens_per_request": round(tokens_per_request, 4),
            "months": {f"{m:{ym}}": float(f"{v:.4g}") for m, v in req.items()},
            "quantization": [
                {"start": sc.quantization.isoformat(), "cut": 0.40},
                {"start": sc.future_quantization.isoformat(), "cut": 0.25},
            ],
        },
        "storage": {
            "phase": "data_preprocessing",
            "gb": round(lake + raw),
            "growth_per_month": round(growth, 4),
        },
        "headcount": heads,
        "calendar": [
            {k: (v.isoformat() if isinstance(v, dt.date) else v) for k, v in e.items()}
            for e in calendar_events(first, add_months(last, 1) - dt.timedelta(days=1))
        ],
        "notes": {
            "inference_pricing": "reserved instances cover about 85 % of the fleet at each yearly renewal; "
            "the rest runs on demand at 1.418 per A10-hour",
            "egress_gb_per_1k_requests": 18.0 * 1000 / 1e6,
            "cloudwatch_log_gb_per_1k_requests": 0.002,
        },
    }


def _budgets(
    sc: Scenario,
    future: dict[dt.date, dict[str, int]],
    mtd: dict[str, int],
    labor_rows: list[dict[str, str]],
    periods_written: dict[str, Any],
) -> tuple[list[tuple[str, str, Decimal]], dict[str, Any]]:
    """Budget lines for the current month, the next two months, the current and the next quarter.

    The expected cost of a line is the simulated future (EffectiveCost + labor at plan headcount); most
    lines get a comfortable margin, a couple are tight, and fine-tuning in the current month is set
    below what it has already spent (over budget by month to date)."""
    current = add_months(sc.end_month, 1)

    def labor(m: dt.date, phase: str) -> float:
        return sum(
            _people(st, sc.end_month, m) * HOURS_PER_PERSON * float(_rate(b, sc.end_month, m))
            for ph, _t, b, st in TEAMS
            if ph == phase
        )

    def expected(m: dt.date, phase: str) -> float:
        if m <= sc.end_month:  # a closed month of the quarter: its actual
            label = f"{m:%Y-%m}"
            eff = (
                periods_written.get(label, {})
                .get("by_phase", {})
                .get(phase, {})
                .get("EffectiveCost", "0")
            )
            lab = sum(
                float(r["hours"]) * float(r["hourly_rate"])
                for r in labor_rows
                if r["month"] == label and r["phase"] == phase
            )
            return float(eff) + lab
        return future[m][phase] / 10**CD + labor(m, phase)

    def unallocated(m: dt.date) -> float:
        if m <= sc.end_month:
            ph = periods_written.get(f"{m:%Y-%m}", {}).get("by_phase", {}).get("unallocated", {})
            return float(ph.get("EffectiveCost", "0"))
        return future[m]["unallocated"] / 10**CD

    q_start = add_months(current, -((current.month - 1) % 3))
    periods = {
        f"{current:%Y-%m}": [current],
        f"{add_months(current, 1):%Y-%m}": [add_months(current, 1)],
        f"{add_months(current, 2):%Y-%m}": [add_months(current, 2)],
        f"{q_start.year}Q{(q_start.month - 1) // 3 + 1}": [
            add_months(q_start, k) for k in range(3)
        ],
        f"{add_months(q_start, 3).year}Q{(add_months(q_start, 3).month - 1) // 3 + 1}": [
            add_months(q_start, 3 + k) for k in range(3)
        ],
    }
    tight = {
        (f"{add_months(current, 1):%Y-%m}", "inference"): 0.97,
        (list(periods)[4], "pretraining"): 0.98,
    }
    lines: list[tuple[str, str, Decimal]] = []
    notes: dict[str, Any] = {}
    mtd_labor = {
        ph: sum(
            float(r["hours"]) * float(r["hourly_rate"])
            for r in labor_rows
            if r["month"] == f"{current:%Y-%m}" and r["phase"] == ph
        )
        for ph in PHASES_REAL
    }
    for label, ms in periods.items():
        exp_total = 0.0
        for phase in PHASES_REAL:
            exp = sum(expected(m, phase) for m in ms)
            exp_total += exp
            factor = tight.get((label, phase), 1.25 if len(ms) == 1 else 1.2)
            amount = max(1000.0, exp * factor)
            status = "tight" if (label, phase) in tight else "comfortable"
            if label == f"{current:%Y-%m}" and phase == "fine_tuning":
                spent = mtd[phase] / 10**CD + mtd_labor[phase]
                amount = spent * 0.9
                status = f"over budget by month to date ({spent:.2f} spent)"
            amount = (
                math.floor(amount / 100) * 100
                if status.startswith("over")
                else math.ceil(amount / 100) * 100
            )
            lines.append((label, phase, Decimal(amount)))
            notes[f"{label}/{phase}"] = {
                "expected": round(exp, 2),
                "budget": amount,
                "intent": status,
            }
        exp_total += sum(unallocated(m) for m in ms)
        tot = math.ceil(exp_total * 1.15 / 100) * 100
        lines.append((label, "total", Decimal(tot)))
        notes[f"{label}/total"] = {
            "expected": round(exp_total, 2),
            "budget": tot,
            "intent": "comfortable",
        }
    # a month's budget never above its quarter's (a team would not plan January at 634k and the
    # whole quarter at 497k: the month would read ok and the quarter at risk for the same run)
    quarter_of = {m: label for label, ms in periods.items() if len(ms) == 3 for m in ms}
    given = {(label, phase): value for label, phase, value in lines}
    for i, (label, phase, value) in enumerate(lines):
        ms = periods[label]
        cap = given.get((quarter_of.get(ms[0], ""), phase)) if len(ms) == 1 else None
        if cap is not None and value > cap:
            lines[i] = (label, phase, cap)
            notes[f"{label}/{phase}"].update(budget=int(cap), intent="capped at its quarter's")
    # nor a total below its phases' budgets (every phase ok and the total at risk on the same
    # forecast: the budgets reader warns of it)
    for i, (label, phase, value) in enumerate(lines):
        if phase != "total":
            continue
        parts = sum((v for lb, ph, v in lines if lb == label and ph != "total"), Decimal(0))
        if value < parts:
            lines[i] = (label, phase, parts)
            notes[f"{label}/total"].update(budget=int(parts), intent="raised to its phases' sum")
    return lines, notes


def _write_budgets(path: Path, lines: list[tuple[str, str, Decimal]]) -> Path:
    out = ["period,phase,amount,currency"] + [f"{p},{ph},{a:.2f},{CURRENCY}" for p, ph, a in lines]
    path.write_text("\n".join(out) + "\n")
    return path


def _readme(
    sc: Scenario,
    config: SynthConfig,
    periods: dict[str, Any],
    restated: tuple[Path, Path] | None,
    out: Path,
) -> str:
    ext = ".csv.gz" if config.fmt == "csv" else ".parquet"
    first, last = min(periods), max(periods)
    pre = [r for r in sc.runs if r.phase == "pretraining" and sc.start <= r.start < sc.cutoff]
    lines = [
        "# Synthetic FOCUS history: an e-commerce search & recommendation AI platform",
        "",
        f"Generated by `phasecast synth --out DIR --months {config.months} --seed {config.seed} "
        f"--end {config.end} --format {config.fmt} --partial-days {config.partial_days}`. Same options, same bytes.",
        "",
        "## Files",
        f"- `billing/YYYY-MM{ext}`: one FOCUS 1.2 Cost and Usage export per billing month, {first} to {last}; "
        f"the last one is the current month to date (charges through {sc.cutoff - dt.timedelta(days=1)}). "
        "Daily charge periods; costs are exact decimals (at most 10 decimals); nulls are written `NULL`.",
    ]
    if restated:
        lines.append(
            f"- `{restated[1].relative_to(out)}`: a restated re-export of billing period {sc.restated_period:%Y-%m}, "
            f"made on the date in its name. It replaces `{restated[0].relative_to(out)}` (the original export, in "
            "which the managed-LLM usage of the last two days was missing and day 12's on-demand inference was "
            "metered twice). It is a delivery of its own, so it sits in a folder of its own "
            "(`<period>.restated-<export date>/`): ingest applies deliveries in folder order, and the files of "
            "one folder are one delivery."
        )
    lines += [
        "- `usage.csv`: daily `ts,phase,metric,value,unit,team,gpu,resource_id`: gpu_hours per phase, team and "
        "GPU model (`H100`, `A10`), per node (`resource_id`, the instance) for training and optimization jobs "
        "and per GPU model for the serving fleet (GPU-hours = "
        "instance-hours x GPUs per instance; x the on-demand price per GPU-hour = ListCost of those rows), "
        "gpu_util, requests, tokens_in/tokens_out (managed LLM), storage_gb.",
        "- `labor.csv`: monthly `month,phase,team,hours,hourly_rate,currency` for the sre (operations), "
        "ml-training (fine_tuning) and data-eng (data_preprocessing) teams; headcount steps with hiring, rates "
        "+4 % each January; the current month holds hours to date. Labor is not in the billing files.",
        f"- `plan.yaml`: the {config.plan_months} months after {config.end}: price book (with the H100 price cut "
        "and an announced further cut), scheduled pre-training runs (one sized from FLOPs), optimization jobs, "
        "recurring fine-tuning/ETL/monitoring jobs, planned requests per month with GPU-hours per 1k requests "
        "and quantization, storage and headcount. Loads with `pipeline.plan.load_plan`.",
        "- `promo-and-llm.yaml` (the default `--end` only: its dates are 2027Q1's): the README's what-if "
        "scenario (`phasecast budget --scenario`).",
        "- `budgets.csv`: `period,phase,amount,currency` for the current month, the next two months, the "
        "current and next quarter, per phase and `total`, in EffectiveCost + labor. Most lines are "
        "comfortable, two are tight, and fine_tuning in the current month is already over budget by "
        "month to date; no month is budgeted above its quarter (such a month is capped at the "
        "quarter's amount; see `truth.json` -> `budgets`).",
        "- `truth.json`: exact totals per billing period (BilledCost, EffectiveCost, ListCost, ContractedCost; "
        "per phase), the restated period's original totals, labor cost per month and phase, the dated events "
        "and the simulated (unwritten) future EffectiveCost per month and phase.",
        "",
        "## What is in the data",
        f"- Inference on g5.12xlarge (4 x A10G): requests grow {2.5:.1f} %/month with a weekly shape (weekend "
        "peak), 618 (June 18, ramp from June 1), Double 11 (Nov 11, ramp from Nov 1), Black Friday to Cyber "
        "Monday, and the Spring Festival dip. Reserved instances (1 year, no upfront; `CommitmentDiscount*` "
        "filled, BilledCost 0 and EffectiveCost < ListCost on covered rows, daily Purchase rows, Unused rows "
        "when the fleet is below the reservation) cover ~85 % of the fleet at each yearly renewal.",
        f"- Quantization on {sc.quantization} cuts GPU-hours per 1k requests by 40 %.",
        f"- H100 (p5.48xlarge, 8 GPUs) on-demand price drops from 12.29 to 6.88 per GPU-hour on {sc.price_change}.",
        "- Pre-training bursts on capacity blocks: "
        + ", ".join(f"{r.name} ({r.gpus} GPUs from {r.start})" for r in pre)
        + ".",
        "- Optimization jobs a week after each pre-training run and before the quantization; weekly A10 "
        "fine-tuning (Tuesday search, Thursday reco) and a monthly H100 job; nightly ETL on c6i growing with "
        "the data, tokenization spikes before pre-training; S3 data lake growing ~3 %/month.",
        "- Credits (negative rows, ChargeCategory Credit): a quarterly Bedrock promotional credit and an EC2 SLA "
        f"credit on {sc.sla_credit_day}.",
        "- About one row in ten has no `phase` tag: Amazon Bedrock (-> inference by rule), AWS Glue and the raw-"
        "log bucket (-> data_preprocessing), CloudWatch (-> operations) and developer boxes tagged only with an "
        "owner (no rule: unallocated).",
        *(
            []
            if config.phase_tags
            else [
                "- Written with `--no-phase-tags`: no row's Tags carry `phase` (team, model, env stay), as in "
                "most real exports; `truth.json` keeps the intended phases. GPU cost is then attributed by "
                "the usage metrics (`gpu_hours` per phase, day, GPU model and, for jobs, node).",
            ]
        ),
        "",
    ]
    return "\n".join(lines)
