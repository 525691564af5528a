"""phasecast synth: determinism, the plan, the dynamics, and exact totals recomputed from the files."""

from __future__ import annotations

import csv
import datetime as dt
import gzip
import hashlib
import io
import json
from collections import defaultdict
from decimal import Decimal
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from pipeline.errors import InputError
from pipeline.plan import load_plan
from pipeline.synth import SynthConfig, generate, synth_focus_rows
from pipeline.synth.calendar import black_friday, cyber_monday, promotion_factor

COSTS = ("BilledCost", "EffectiveCost", "ListCost", "ContractedCost")


def read_rows(path: Path) -> list[dict[str, str | None]]:
    """Billing rows as strings (NULL -> None), read with the standard library / pyarrow only."""
    if path.name.endswith(".parquet"):
        t = pq.read_table(path)
        out = []
        for r in t.to_pylist():
            out.append({k: (None if v is None else str(v)) for k, v in r.items()})
        return out
    with gzip.open(path, "rt", newline="") as fh:
        return [{k: (None if v == "NULL" else v) for k, v in r.items()} for r in csv.DictReader(fh)]


def digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def full(tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("synth36")
    res = generate(SynthConfig(out=out))
    truth = json.loads((out / "truth.json").read_text())
    rows: dict[str, list[dict[str, str | None]]] = {}
    for label, p in truth["billing_periods"].items():
        rows[label] = read_rows(out / p["file"])
    return res, truth, rows


def month_phase_sum(
    rows: dict[str, list[dict]], phase: str, col: str = "EffectiveCost"
) -> dict[str, Decimal]:
    out: dict[str, Decimal] = {}
    for label, rs in rows.items():
        s = Decimal(0)
        for r in rs:
            tags = json.loads(r["Tags"]) if r["Tags"] else {}
            if tags.get("phase") == phase:
                s += Decimal(r[col])
        out[label] = s
    return out


# --- determinism ------------------------------------------------------------------------------
def test_same_seed_same_bytes_other_seed_differs(tmp_path: Path) -> None:
    a = generate(SynthConfig(out=tmp_path / "a", months=3, seed=5, partial_days=5, plan_months=6))
    b = generate(SynthConfig(out=tmp_path / "b", months=3, seed=5, partial_days=5, plan_months=6))
    c = generate(SynthConfig(out=tmp_path / "c", months=3, seed=6, partial_days=5, plan_months=6))
    da, db, dc = digest(a.out), digest(b.out), digest(c.out)
    assert da == db
    assert len(da) >= 10
    assert da["billing/2026-10.csv.gz"] != dc["billing/2026-10.csv.gz"]
    assert da["usage.csv"] != dc["usage.csv"]
    # gzip header: mtime 0 and no file name (FLG byte without FNAME)
    raw = (a.out / "billing" / "2026-10.csv.gz").read_bytes()
    assert raw[4:8] == b"\0\0\0\0" and raw[3] & 0x08 == 0


def test_parquet_deterministic_and_same_totals_as_csv(tmp_path: Path) -> None:
    p1 = generate(
        SynthConfig(
            out=tmp_path / "p1", months=2, seed=3, fmt="parquet", partial_days=3, plan_months=3
        )
    )
    p2 = generate(
        SynthConfig(
            out=tmp_path / "p2", months=2, seed=3, fmt="parquet", partial_days=3, plan_months=3
        )
    )
    c = generate(
        SynthConfig(out=tmp_path / "c", months=2, seed=3, fmt="csv", partial_days=3, plan_months=3)
    )
    assert digest(p1.out / "billing") == digest(p2.out / "billing")
    assert p1.totals == c.totals
    t = pq.read_table(p1.out / "billing" / "2026-10.parquet")
    assert str(t.schema.field("BilledCost").type) == "decimal128(38, 10)"
    assert str(t.schema.field("ChargePeriodStart").type).endswith(
        "tz=UTC]"
    )  # Parquet stores s as ms


def test_bad_config_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(InputError) as err:
        generate(SynthConfig(out=tmp_path, fmt="xls", months=0, end="2026-13"))
    msg = str(err.value)
    assert "3 problems" in msg and "--format" in msg and "--months" in msg and "--end" in msg


def test_cli_synth(tmp_path: Path) -> None:
    from pipeline.cli import cli

    r = CliRunner().invoke(
        cli,
        [
            "synth",
            "--out",
            str(tmp_path / "s"),
            "--months",
            "2",
            "--seed",
            "9",
            "--partial-days",
            "3",
            "--format",
            "parquet",
        ],
    )
    assert r.exit_code == 0, r.output
    assert (tmp_path / "s" / "billing" / "2026-11.parquet").exists()
    assert (tmp_path / "s" / "plan.yaml").exists()
    # no progress bar redrawn into output that is not a terminal (a scheduled job's log)
    assert "synth months" not in r.output
    # the printed totals are the truth file's exact decimals to the cent, grouped in thousands
    truth = json.loads((tmp_path / "s" / "truth.json").read_text())
    billed = Decimal(truth["totals"]["BilledCost"])
    line = next(ln for ln in r.output.splitlines() if ln.startswith("totals (USD;"))
    shown = line.split("BilledCost ")[1].split(", ")[0]
    assert "," in shown and Decimal(shown.replace(",", "")) == billed.quantize(Decimal("0.01"))


# --- files and the plan -----------------------------------------------------------------------
def test_layout_and_restatement_naming(full) -> None:
    res, truth, _ = full
    names = sorted(p.name for p in (res.out / "billing").rglob("*") if p.is_file())
    assert len(names) == 36 + 1 + 1  # 36 months + current partial month + one restatement
    orig, restated = res.restated
    assert orig.name == "2025-03.csv.gz" and restated.name == "2025-03.restated-2025-04-05.csv.gz"
    # A delivery of its own: in its own folder, beside the original's.
    assert restated.parent.name == "2025-03.restated-2025-04-05"
    assert restated.parent.parent == orig.parent
    for f in ("usage.csv", "labor.csv", "plan.yaml", "budgets.csv", "truth.json", "README.md"):
        assert (res.out / f).stat().st_size > 0
    from pipeline.scenarios import load_scenario

    scenario = load_scenario(res.out / "promo-and-llm.yaml")  # the README's, shipped and valid
    assert scenario.name == "promo-and-llm" and len(scenario.changes) == 5
    per = truth["billing_periods"]["2025-03"]
    assert per["file"] == "billing/2025-03.restated-2025-04-05/2025-03.restated-2025-04-05.csv.gz"
    assert per["restated"]["original"]["BilledCost"] != per["BilledCost"]
    assert truth["billing_periods"]["2026-11"]["complete"] is False


def test_plan_loads_and_is_consistent(full) -> None:
    res, _, _ = full
    plan = load_plan(res.out / "plan.yaml")
    # The run sized from FLOPs: 6 N D / (989 TFLOP/s x 0.35 x 3600 s) GPU-hours, computed here by hand.
    flops_run = [r for r in plan.scheduled_runs if r.days is None]
    assert len(flops_run) == 1
    assert flops_run[0].gpu_hours() == pytest.approx(
        6 * 1.3e10 * 1.0e12 / (989e12 * 0.35 * 3600), rel=1e-9
    )
    assert 62_000 < flops_run[0].gpu_hours() < 63_000
    assert {r.phase for r in plan.scheduled_runs} == {"pretraining", "optimization"}
    # Price book: the historical H100 cut and the announced one.
    pb = plan.price_book
    assert pb.gpu_price("H100", "on_demand", dt.date(2025, 5, 31)) == 12.29
    assert pb.gpu_price("H100", "on_demand", dt.date(2026, 11, 1)) == 6.88
    assert pb.gpu_price("H100", "on_demand", dt.date(2027, 6, 1)) == 5.84
    # Traffic: 18 planned months after --end; quantization in history (-40 %) and in the plan (-25 %).
    t = plan.traffic
    assert t is not None and len(t.months) == 18
    assert min(t.months) == __import__("pandas").Timestamp("2026-11-01")
    assert t.gpu_hours_per_1k(dt.date(2026, 11, 1)) == pytest.approx(0.048 * 0.6)
    assert t.gpu_hours_per_1k(dt.date(2027, 8, 1)) == pytest.approx(0.048 * 0.6 * 0.75)
    nov, dec = t.months[min(t.months)], t.months[sorted(t.months)[1]]
    assert nov / 30 > dec / 31  # Double 11 and Black Friday in the plan too
    assert plan.storage is not None and plan.storage.gb > 1e6
    assert {h.phase for h in plan.headcount} == {"operations", "fine_tuning", "data_preprocessing"}


# --- exact totals -----------------------------------------------------------------------------
def test_truth_equals_independent_recomputation(full) -> None:
    res, truth, rows = full
    grand = dict.fromkeys(COSTS, Decimal(0))
    for label, rs in rows.items():
        per = truth["billing_periods"][label]
        assert per["rows"] == len(rs)
        by_phase: dict[str, dict[str, Decimal]] = defaultdict(
            lambda: dict.fromkeys(COSTS, Decimal(0))
        )
        for c in COSTS:
            s = sum((Decimal(r[c]) for r in rs), Decimal(0))
            assert s == Decimal(per[c]), (label, c)
            grand[c] += s
        for r in rs:
            tags = json.loads(r["Tags"]) if r["Tags"] else {}
            phase = tags.get("phase")
            if phase is None:  # the default attribution rules, applied by hand
                svc = r["ServiceName"]
                phase = {
                    "Amazon Bedrock": "inference",
                    "AWS Glue": "data_preprocessing",
                    "Amazon Simple Storage Service": "data_preprocessing",
                    "Amazon CloudWatch": "operations",
                }.get(svc, "unallocated")
            for c in COSTS:
                by_phase[phase][c] += Decimal(r[c])
        for phase, d in by_phase.items():
            for c in COSTS:
                assert d[c] == Decimal(per["by_phase"][phase][c]), (label, phase, c)
    for c in COSTS:
        assert grand[c] == Decimal(truth["totals"][c])
    assert res.totals["BilledCost"] == truth["totals"]["BilledCost"]
    # the original export of the restated period, independently
    orig = read_rows(res.restated[0])
    assert sum((Decimal(r["BilledCost"]) for r in orig), Decimal(0)) == Decimal(
        truth["billing_periods"]["2025-03"]["restated"]["original"]["BilledCost"]
    )
    # at most 10 decimals everywhere
    assert all(
        len((r["BilledCost"] or "").partition(".")[2]) <= 10 for rs in rows.values() for r in rs
    )


def test_cost_identities_on_every_row(full) -> None:
    _, _, rows = full
    for rs in list(rows.values())[::6]:
        for r in rs:
            if r["PricingQuantity"] is not None:
                q = Decimal(r["PricingQuantity"])
                assert Decimal(r["ListUnitPrice"]) * q == Decimal(r["ListCost"])
                assert Decimal(r["ContractedUnitPrice"]) * q == Decimal(r["ContractedCost"])
            assert r["BillingAccountId"] and not r["BillingAccountId"].isdigit()
            assert r["ChargePeriodStart"].endswith("Z") and "T" in r["ChargePeriodStart"]


# --- dynamics ---------------------------------------------------------------------------------
def test_commitments_credits_and_tags(full) -> None:
    _, _, rows = full
    used = unused = purchase = credits = untagged = total = 0
    for rs in rows.values():
        for r in rs:
            total += 1
            tags = json.loads(r["Tags"]) if r["Tags"] else {}
            untagged += "phase" not in tags
            if r["CommitmentDiscountStatus"] == "Used":
                used += 1
                assert r["PricingCategory"] == "Committed" and r["CommitmentDiscountId"]
                assert (
                    r["CommitmentDiscountCategory"] == "Usage"
                    and r["CommitmentDiscountType"] == "Reserved Instance"
                )
                assert Decimal(r["BilledCost"]) == 0
                assert Decimal(r["EffectiveCost"]) < Decimal(r["ListCost"])
            elif r["CommitmentDiscountStatus"] == "Unused":
                unused += 1
                assert r["ConsumedQuantity"] is None and Decimal(r["EffectiveCost"]) > 0
            if r["ChargeCategory"] == "Purchase":
                purchase += 1
                assert Decimal(r["EffectiveCost"]) == 0 and Decimal(r["BilledCost"]) > 0
            if r["ChargeCategory"] == "Credit":
                credits += 1
                assert Decimal(r["BilledCost"]) < 0 and Decimal(r["EffectiveCost"]) < 0
            if r["ServiceName"] == "Amazon Bedrock" and r["ChargeCategory"] == "Usage":
                assert r["PricingUnit"] == "1000000 Tokens"
                assert (
                    r["ServiceCategory"] == "AI and Machine Learning"
                    and r["ServiceSubcategory"] == "Generative AI"
                )
            if r["ServiceName"] == "Amazon Simple Storage Service":
                assert r["PricingUnit"] == "GB-Months"
    assert used > 1000 and unused > 50 and purchase > 1000
    assert credits >= 12  # quarterly promotional credits + the SLA credit
    assert 0.05 < untagged / total < 0.2


def test_double_11_raises_november_inference(full) -> None:
    _, _, rows = full
    inf = month_phase_sum(rows, "inference", "ListCost")
    for y in (2024, 2025):
        assert inf[f"{y}-11"] > inf[f"{y}-10"] * Decimal("1.08")


def test_pretraining_cost_sits_in_burst_months(full) -> None:
    _, truth, rows = full
    pre = month_phase_sum(rows, "pretraining")
    run_months = set()
    for r in truth["events"]["pretraining_runs"]:
        start = dt.datetime.fromisoformat(r["start"])
        end = start + dt.timedelta(hours=r["hours"])
        run_months |= {f"{start:%Y-%m}", f"{end - dt.timedelta(seconds=1):%Y-%m}"}
    burst = {m for m, v in pre.items() if v > 0}
    assert burst == run_months & set(pre)
    assert len(burst) <= len(pre) // 2
    assert max(pre.values()) > Decimal(300_000)
    # a 256-GPU, 12-day run at the post-cut price: 256 x 12 x 24 x 6.88, computed by hand
    assert Decimal(256 * 12 * 24) * Decimal("6.88") == Decimal("507248.64")
    assert pre["2026-07"] == Decimal("507248.64")


def _usage(path: Path) -> list[dict[str, str]]:
    with path.open() as fh:
        return list(csv.DictReader(fh))


def test_quantization_cuts_gpu_hours_per_1k_requests(full) -> None:
    res, _, _ = full
    gh: dict[str, float] = defaultdict(float)
    req: dict[str, float] = defaultdict(float)
    for r in _usage(res.out / "usage.csv"):
        if r["phase"] == "inference":
            if r["metric"] == "gpu_hours":
                gh[r["ts"][:7]] += float(r["value"])
            elif r["metric"] == "requests":
                req[r["ts"][:7]] += float(r["value"])
    before = gh["2026-03"] / req["2026-03"] * 1000
    after = gh["2026-04"] / req["2026-04"] * 1000
    assert before == pytest.approx(0.048, rel=0.03)
    assert after / before == pytest.approx(0.60, abs=0.03)


def test_usage_gpu_hours_times_price_is_list_cost(full) -> None:
    """Inference runs on A10 only: its usage GPU-hours x 1.418 equal the ListCost of its instance rows."""
    res, _, rows = full
    gh = Decimal(0)
    for r in _usage(res.out / "usage.csv"):
        if (
            r["phase"] == "inference"
            and r["metric"] == "gpu_hours"
            and r["ts"].startswith("2026-06")
        ):
            gh += Decimal(r["value"])
    lc = sum(
        (
            Decimal(r["ListCost"])
            for r in rows["2026-06"]
            if r["SkuMeter"] == "g5.12xlarge Linux instance hours"
            and r["ConsumedQuantity"] is not None
            and r["ChargeCategory"] == "Usage"
            and "inference" in (r["Tags"] or "")
        ),
        Decimal(0),
    )
    assert gh * Decimal("1.418") == lc


def test_weekly_and_calendar_shape(full) -> None:
    res, _, _ = full
    req: dict[str, float] = defaultdict(float)
    for r in _usage(res.out / "usage.csv"):
        if r["metric"] == "requests":
            req[r["ts"]] += float(r["value"])
    assert req["2025-11-11"] > 2.2 * req["2025-11-04"]
    assert req["2025-06-18"] > 1.7 * req["2025-06-04"]
    assert req["2025-01-29"] < 0.75 * req["2025-01-15"]  # Spring Festival 2025
    assert req["2026-02-17"] < 0.75 * req["2026-02-03"]  # Spring Festival 2026
    assert black_friday(2025) == dt.date(2025, 11, 28) and cyber_monday(2025) == dt.date(
        2025, 12, 1
    )
    assert black_friday(2024) == dt.date(2024, 11, 29)
    assert promotion_factor(dt.date(2025, 12, 1)) > 1.5
    sat = [
        v
        for k, v in req.items()
        if k.startswith("2025-09") and dt.date.fromisoformat(k).weekday() == 5
    ]
    tue = [
        v
        for k, v in req.items()
        if k.startswith("2025-09") and dt.date.fromisoformat(k).weekday() == 1
    ]
    assert sum(sat) / len(sat) > 1.05 * sum(tue) / len(tue)


def test_labor_steps_and_budgets(full) -> None:
    res, truth, rows = full
    labor = list(csv.DictReader((res.out / "labor.csv").open()))
    sre = {r["month"]: float(r["hours"]) for r in labor if r["team"] == "sre"}
    assert sre["2023-11"] < 700 < sre["2026-10"]  # 4 people then 7
    assert {r["phase"] for r in labor} == {"operations", "fine_tuning", "data_preprocessing"}
    budgets = list(csv.DictReader((res.out / "budgets.csv").open()))
    periods = {b["period"] for b in budgets}
    assert periods == {"2026-11", "2026-12", "2027-01", "2026Q4", "2027Q1"}
    assert all(b["currency"] == "USD" and Decimal(b["amount"]) > 0 for b in budgets)
    # fine_tuning in 2026-11 is already over budget by month to date (computed here from the files)
    ft_mtd = month_phase_sum({"2026-11": rows["2026-11"]}, "fine_tuning")["2026-11"]
    ft_mtd += sum(
        (
            Decimal(r["hours"]) * Decimal(r["hourly_rate"])
            for r in labor
            if r["month"] == "2026-11" and r["phase"] == "fine_tuning"
        ),
        Decimal(0),
    )
    line = next(b for b in budgets if b["period"] == "2026-11" and b["phase"] == "fine_tuning")
    assert Decimal(line["amount"]) < ft_mtd
    intents = [v["intent"] for v in truth["budgets"].values()]
    assert intents.count("tight") == 2 and sum(i.startswith("over") for i in intents) == 1


# --- the benchmark generator ------------------------------------------------------------------
def test_synth_focus_rows_fast_exact_and_varied() -> None:
    t = synth_focus_rows(200_000, seed=1)
    assert t.num_rows == 200_000
    t2 = synth_focus_rows(200_000, seed=1)
    assert t.equals(t2)
    assert str(t.schema.field("EffectiveCost").type) == "decimal128(38, 10)"
    rows = t.slice(0, 2000).to_pylist()
    phases = set()
    for r in rows:
        if r["Tags"]:
            phases.add(json.loads(r["Tags"]).get("phase"))
        if r["ChargeCategory"] == "Credit":
            assert r["BilledCost"] < 0
        else:
            assert r["ListUnitPrice"] * r["PricingQuantity"] == r["ListCost"]
    assert {"inference", "pretraining", "data_preprocessing", "operations"} <= phases
    assert sum(r["Tags"] is None for r in rows) > 50
    days = {r["ChargePeriodStart"].date() for r in rows}
    assert (max(days) - min(days)).days > 900
    # decimal sums are exact: the table's total equals the sum of Python Decimals
    assert sum((r["BilledCost"] for r in rows), Decimal(0)) == sum(
        (Decimal(str(r["BilledCost"])) for r in rows), Decimal(0)
    )
    buf = io.BytesIO()
    pq.write_table(t.slice(0, 1000), buf)
    assert buf.tell() > 0
