"""Ingest: exact totals, FOCUS versions and formats, attribution, restatement, idempotency, CLI."""

from __future__ import annotations

import csv
import gzip
import json
from decimal import Decimal
from pathlib import Path

import duckdb
import pytest
from click.testing import CliRunner

from pipeline.frames import PHASES
from pipeline.ingest import IngestConfig, content_checksum, ingest, new_files

SAMPLE = (
    Path(__file__).resolve().parents[2]
    / "shared"
    / "data"
    / "focus-1.0-sample"
    / "focus_sample.csv"
)

V10 = [
    "BilledCost",
    "BillingAccountId",
    "BillingCurrency",
    "BillingPeriodEnd",
    "BillingPeriodStart",
    "ChargeCategory",
    "ChargeDescription",
    "ChargePeriodEnd",
    "ChargePeriodStart",
    "ContractedCost",
    "EffectiveCost",
    "ListCost",
    "PricingUnit",
    "ProviderName",
    "ResourceId",
    "ResourceType",
    "ServiceCategory",
    "ServiceName",
    "SkuId",
    "Tags",
]
V12 = V10 + ["ServiceSubcategory", "SkuMeter", "ConsumedUnit"]
V13 = [("ServiceProviderName" if c == "ProviderName" else c) for c in V12]
VERSIONS = {"1.0": V10, "1.2": V12, "1.3": V13}


def row(day: str = "2026-09-03", cost: str = "1.00", **kw: str | None) -> dict[str, str | None]:
    """One FOCUS row; ``day`` sets the charge and billing period, ``cost`` all cost columns."""
    month = day[:7]
    y, m = int(month[:4]), int(month[5:])
    nxt = f"{y + (m == 12)}-{(m % 12) + 1:02d}"
    base: dict[str, str | None] = {
        "BilledCost": cost,
        "EffectiveCost": cost,
        "ListCost": cost,
        "ContractedCost": cost,
        "BillingAccountId": "acct-A",
        "BillingCurrency": "USD",
        "BillingPeriodStart": f"{month}-01T00:00:00Z",
        "BillingPeriodEnd": f"{nxt}-01T00:00:00Z",
        "ChargePeriodStart": f"{day}T05:00:00Z",
        "ChargePeriodEnd": f"{day}T06:00:00Z",
        "ChargeCategory": "Usage",
        "ChargeDescription": "usage",
        "PricingUnit": "Hours",
        "ProviderName": "AWS",
        "ServiceProviderName": "AWS",
        "ResourceId": "r-1",
        "ResourceType": "instance",
        "ServiceCategory": "Compute",
        "ServiceName": "Amazon Elastic Compute Cloud",
        "SkuId": "SKU1",
        "Tags": None,
        "ServiceSubcategory": "Virtual Machines",
        "SkuMeter": None,
        "ConsumedUnit": "Hours",
    }
    base.update(kw)
    return base


def tags(**kw: str) -> str:
    return json.dumps(kw)


def write_focus(
    path: Path,
    rows: list[dict],
    version: str = "1.2",
    null: str = "NULL",
    extra: dict[str, str] | None = None,
) -> Path:
    """Write rows as a FOCUS export (.csv, .csv.gz or .parquet by the name); None written as ``null``."""
    cols = list(VERSIONS[version]) + list(extra or {})
    path.parent.mkdir(parents=True, exist_ok=True)
    records = [{c: ({**r, **(extra or {})}).get(c) for c in cols} for r in rows]
    if path.name.endswith(".parquet"):
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(
            pa.table({c: pa.array([r[c] for r in records], pa.string()) for c in cols}), path
        )
        return path
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "wt", newline="") as fh:  # type: ignore[operator]
        w = csv.writer(fh)
        w.writerow(cols)
        for r in records:
            w.writerow([null if r[c] is None else r[c] for c in cols])
    return path


def q(db: Path, sql: str) -> list[tuple]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def run(tmp: Path, *billing: Path, **kw) -> tuple:
    db = tmp / "wh.duckdb"
    rep = ingest(IngestConfig(billing=tuple(billing), warehouse=db, progress=False, **kw))
    return db, rep


# --- the real FOCUS 1.0 sample ------------------------------------------------


def test_real_sample_conserves_every_cost_exactly(tmp_path: Path) -> None:
    report_path = tmp_path / "report.json"
    db, rep = run(tmp_path, SAMPLE, report=report_path)
    expected = {
        "BilledCost": "20.52022672899",
        "EffectiveCost": "14.97651418586",
        "ListCost": "20.39090575119",
    }
    doc = json.loads(report_path.read_text())
    assert doc["overall"]["rows"] == 1000
    assert doc["overall"]["source_totals"] == {"USD": expected}
    assert doc["overall"]["warehouse_totals"] == {"USD": expected}
    assert doc["files"][0]["source_totals"] == {"USD": expected}
    assert doc["files"][0]["warehouse_totals"] == {"USD": expected}
    assert doc["overall"]["conserved"] is True
    (b, e, lc, n) = q(
        db,
        "SELECT sum(billed_cost), sum(effective_cost), sum(list_cost), sum(row_count) FROM daily_facts",
    )[0]
    assert (b, e, lc, n) == (
        Decimal(expected["BilledCost"]),
        Decimal(expected["EffectiveCost"]),
        Decimal(expected["ListCost"]),
        1000,
    )
    assert q(db, "SELECT DISTINCT typeof(billed_cost) FROM daily_facts") == [("DECIMAL(38,18)",)]
    phases = {p for (p,) in q(db, "SELECT DISTINCT phase FROM daily_facts")}
    assert phases <= set(PHASES)
    # No Tags in the sample: phases come from rules (CloudWatch -> operations, S3 -> data_preprocessing,
    # Azure ML -> inference) or unallocated, nothing dropped.
    assert {"operations", "data_preprocessing", "inference", "unallocated"} <= phases
    by_phase = dict(q(db, "SELECT phase, sum(row_count) FROM daily_facts GROUP BY 1"))
    assert by_phase["operations"] >= 63  # the AmazonCloudWatch rows at least
    assert sum(by_phase.values()) == 1000
    # GPU instance families (g3.4xlarge, g5.4xlarge in ChargeDescription) are compute_gpu.
    (gpu_rows,) = q(db, "SELECT sum(row_count) FROM daily_facts WHERE category = 'compute_gpu'")[0]
    assert gpu_rows == 10
    # The credit is kept as a negative cost.
    assert q(db, "SELECT min(billed_cost) < 0 FROM daily_facts")[0][0]
    m = q(db, "SELECT path, sha256, billing_periods, row_count, kind FROM manifest")
    assert (
        len(m) == 1
        and m[0][3] == 1000
        and m[0][2] == ["2024-09", "2024-10"]
        and m[0][4] == "billing"
    )


# --- versions, formats, nulls, extra columns, currencies ------------------------


@pytest.mark.parametrize("version", ["1.0", "1.2", "1.3"])
@pytest.mark.parametrize("suffix", [".csv", ".csv.gz", ".parquet"])
def test_versions_and_formats(tmp_path: Path, version: str, suffix: str) -> None:
    rows = [
        row(cost="1.10", Tags=tags(phase="inference", team="search", model="rec-7b")),
        row(cost="2.25", day="2026-09-04", ContractedCost=None),
        row(cost="-0.35", ChargeCategory="Credit", ResourceId=None),
    ]
    f = write_focus(
        tmp_path / f"export{suffix}", rows, version=version, extra={"x_Vendor": "v", "Id": "7"}
    )
    db, rep = run(tmp_path, f)
    assert rep.rows == 3 and rep.conserved
    assert rep.source_totals == {
        "USD": {
            "BilledCost": Decimal("3.00"),
            "EffectiveCost": Decimal("3.00"),
            "ListCost": Decimal("3.00"),
        }
    }
    got = q(
        db,
        "SELECT phase, team, model, provider, sum(billed_cost), sum(contracted_cost) FROM daily_facts GROUP BY ALL ORDER BY 1",
    )
    assert got == [
        ("inference", "search", "rec-7b", "AWS", Decimal("1.10"), Decimal("1.10")),
        ("unallocated", None, None, "AWS", Decimal("1.90"), Decimal("-0.35")),
    ]


def test_nulls_as_empty_fields_and_two_currencies(tmp_path: Path) -> None:
    rows = [
        row(cost="10.000000000001"),
        row(cost="5.5", BillingCurrency="EUR", BillingAccountId="acct-E"),
        row(cost="0.000000000001", Tags=None),
    ]
    f = write_focus(tmp_path / "e.csv", rows, null="")
    db, rep = run(tmp_path, f)
    assert rep.source_totals["USD"]["BilledCost"] == Decimal("10.000000000002")
    assert rep.source_totals["EUR"]["BilledCost"] == Decimal("5.5")
    assert rep.to_dict()["overall"]["warehouse_totals"]["USD"]["BilledCost"] == "10.000000000002"
    assert dict(q(db, "SELECT currency, sum(billed_cost) FROM daily_facts GROUP BY 1")) == {
        "USD": Decimal("10.000000000002"),
        "EUR": Decimal("5.5"),
    }


def test_decimal_not_float(tmp_path: Path) -> None:
    # 0.1 + 0.2 is 0.30000000000000004 in binary floats; the warehouse must say 0.3.
    f = write_focus(tmp_path / "f.csv", [row(cost="0.1"), row(cost="0.2")])
    db, _ = run(tmp_path, f)
    assert q(db, "SELECT sum(billed_cost) FROM daily_facts")[0][0] == Decimal("0.3")


# --- attribution ---------------------------------------------------------------


def test_tags_rules_and_categories(tmp_path: Path) -> None:
    rows = [
        row(cost="1", Tags=tags(phase="Fine-Tuning", team="recs")),  # tag wins, normalised
        row(
            cost="2",
            ServiceName="Amazon SageMaker",
            ServiceCategory="AI and Machine Learning",
            ResourceId="arn:aws:sagemaker:training-job/rec-train-42",
            ChargeDescription="ml.p4d.24xlarge training",
        ),
        row(
            cost="4",
            ServiceName="Amazon SageMaker",
            ServiceCategory="AI and Machine Learning",
            ResourceId="arn:aws:sagemaker:endpoint/rec-serving",
            ChargeDescription="ml.g5.2xlarge hosting",
        ),
        row(
            cost="8",
            ServiceName="Amazon Bedrock",
            ServiceCategory="AI and Machine Learning",
            ResourceType=None,
            ChargeDescription="input tokens",
            PricingUnit="1000000 Tokens",
        ),
        row(cost="16", ServiceName="AmazonCloudWatch", ServiceCategory="Management and Governance"),
        row(cost="32", ServiceName="AWS Glue", ServiceCategory="Analytics"),
        row(
            cost="64",
            ServiceName="Amazon Elastic Compute Cloud",
            ChargeDescription="$32.77 per On Demand Linux p4d.24xlarge Instance Hour",
        ),
        row(cost="128", ChargeDescription="$0.192 per On Demand Linux m5.xlarge Instance Hour"),
        row(
            cost="256",
            ServiceName="Amazon Simple Storage Service",
            ServiceCategory="Storage",
            ResourceType="bucket",
        ),
        row(cost="512", ServiceName="Amazon Virtual Private Cloud", ServiceCategory="Networking"),
        row(
            cost="1024",
            ServiceName="Virtual Machines",
            ProviderName="Microsoft",
            SkuMeter="NC24ads A100 v4",
            ChargeDescription=None,
            ResourceType="Virtual machine",
        ),
        row(
            cost="2048",
            ServiceName="COMPUTE",
            ProviderName="Oracle",
            SkuId="BM.GPU.H100.8",
            ChargeDescription=None,
        ),
        row(cost="4096", ServiceName="Amazon DynamoDB", ServiceCategory="Databases"),
    ]
    db, _ = run(tmp_path, write_focus(tmp_path / "a.csv", rows))
    phase_cat = dict(
        ((p, k), int(c))
        for p, k, c in q(
            db, "SELECT phase, category, sum(billed_cost) FROM daily_facts GROUP BY 1, 2"
        )
    )
    assert phase_cat[("fine_tuning", "compute_cpu")] == 1
    assert phase_cat[("fine_tuning", "compute_gpu")] == 2
    assert phase_cat[("inference", "compute_gpu")] == 4
    assert phase_cat[("inference", "ai_services")] == 8
    assert phase_cat[("operations", "other")] == 16
    assert phase_cat[("data_preprocessing", "other")] == 32
    assert phase_cat[("unallocated", "compute_gpu")] == 64 + 1024 + 2048
    assert phase_cat[("unallocated", "compute_cpu")] == 128
    assert phase_cat[("data_preprocessing", "storage")] == 256
    assert phase_cat[("unallocated", "network")] == 512
    assert phase_cat[("unallocated", "other")] == 4096
    assert sum(phase_cat.values()) == 8191


def test_custom_rules_glob_regex_and_tags(tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(
        "rules:\n"
        "  - name: by-tag\n    phase: optimization\n    match:\n      tags.project: 'quant*'\n"
        "  - name: by-glob\n    phase: pretraining\n    match:\n      ResourceId: '*pretrain-cluster*'\n"
        "  - name: by-regex\n    phase: data_preprocessing\n    match:\n      SkuId|ServiceName: {regex: '^ETL-'}\n"
    )
    rows = [
        row(cost="1", Tags=tags(project="Quantize-7b")),
        row(cost="2", ResourceId="arn:x:PRETRAIN-CLUSTER-a"),
        row(cost="4", SkuId="ETL-small"),
        row(cost="8", SkuId="etl-small"),
    ]
    db, _ = run(tmp_path, write_focus(tmp_path / "c.csv", rows), rules=rules)
    assert dict(
        (p, int(c)) for p, c in q(db, "SELECT phase, sum(billed_cost) FROM daily_facts GROUP BY 1")
    ) == {"optimization": 1, "pretraining": 2, "data_preprocessing": 4, "unallocated": 8}


# --- restatement, idempotency, manifest -------------------------------------------


def _totals(db: Path) -> dict:
    return {
        (p, str(bp)[:7], a): c
        for p, bp, a, c in q(
            db,
            "SELECT provider, billing_period, billing_account, sum(billed_cost) FROM daily_facts GROUP BY ALL",
        )
    }


def test_restatement_replaces_period_and_reingest_changes_nothing(tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    write_focus(inbox / "2026-08.csv", [row("2026-08-10", "100"), row("2026-08-11", "50")])
    write_focus(
        inbox / "2026-09.csv",
        [row("2026-09-10", "7"), row("2026-09-10", "3", BillingAccountId="acct-B")],
    )
    db, rep = run(tmp_path, inbox)
    assert _totals(db) == {
        ("AWS", "2026-08", "acct-A"): Decimal(150),
        ("AWS", "2026-09", "acct-A"): Decimal(7),
        ("AWS", "2026-09", "acct-B"): Decimal(3),
    }
    before = content_checksum(db)
    assert new_files(inbox, db) == []
    # Same files again: nothing changes, the files are reported unchanged.
    _, rep2 = run(tmp_path, inbox)
    assert [f.status for f in rep2.files] == ["unchanged", "unchanged"]
    assert content_checksum(db) == before
    # A restated re-export of September for acct-A: a delivery of its own, in its own folder (which
    # sorts after its parent, so it is applied after the original).
    write_focus(
        inbox / "2026-09.restated-2026-10-05" / "2026-09.csv",
        [row("2026-09-10", "9.5"), row("2026-09-12", "0.25")],
    )
    pending = new_files(inbox, db)
    assert [(p.path.parent.name, p.reason) for p in pending] == [
        ("2026-09.restated-2026-10-05", "new")
    ]
    _, rep3 = run(tmp_path, inbox)
    assert [f.status for f in rep3.files] == ["unchanged", "unchanged", "ingested"]
    assert rep3.files[2].warehouse_totals["USD"]["BilledCost"] == Decimal("9.75")
    # An unchanged file's report still shows its stored text totals and its keys' warehouse totals.
    assert rep3.files[0].source_totals["USD"]["BilledCost"] == Decimal(150)
    assert rep3.files[0].warehouse_totals["USD"]["BilledCost"] == Decimal(150)
    assert rep3.files[1].warehouse_totals["USD"]["BilledCost"] == Decimal("12.75")
    assert _totals(db) == {
        ("AWS", "2026-08", "acct-A"): Decimal(150),
        ("AWS", "2026-09", "acct-A"): Decimal("9.75"),
        ("AWS", "2026-09", "acct-B"): Decimal(3),
    }  # acct-B's September is untouched
    assert q(db, "SELECT count(*) FROM manifest")[0][0] == 3


def test_restatement_inside_one_call(tmp_path: Path) -> None:
    a = write_focus(
        tmp_path / "in" / "m09-a.csv.gz", [row("2026-09-01", "1"), row("2026-10-01", "2")]
    )
    # b is a re-delivery of September: a folder of its own, applied after its parent's files.
    b = write_focus(tmp_path / "in" / "redelivered" / "m09-b.parquet", [row("2026-09-02", "5")])
    db, rep = run(tmp_path, tmp_path / "in")
    assert [Path(f.path).name for f in rep.files] == [a.name, b.name]
    assert [f.status for f in rep.files] == [
        "partly_superseded",
        "ingested",
    ]  # a's October stays in force
    assert _totals(db) == {
        ("AWS", "2026-09", "acct-A"): Decimal(5),
        ("AWS", "2026-10", "acct-A"): Decimal(2),
    }
    assert (
        rep.source_totals["USD"]["BilledCost"]
        == Decimal(7)
        == rep.warehouse_totals["USD"]["BilledCost"]
    )


def test_changed_file_is_reported_changed(tmp_path: Path) -> None:
    f = write_focus(tmp_path / "in" / "x.csv", [row(cost="1")])
    db, _ = run(tmp_path, f)
    write_focus(f, [row(cost="2")])
    assert [(p.path, p.reason) for p in new_files(tmp_path / "in", db)] == [(f, "changed")]


# --- usage and labor --------------------------------------------------------------


def test_usage_and_labor(tmp_path: Path) -> None:
    usage = tmp_path / "usage.csv"
    usage.write_text(
        "ts,phase,metric,value,unit,team\n"
        "2026-09-01T00:00:00Z,inference,requests,100,count,search\n"
        "2026-09-01T12:00:00Z,inference,requests,50,count,search\n"
        "2026-09-01,inference,gpu_util,0.5,ratio,search\n"
        "2026-09-01,inference,gpu_util,0.7,ratio,search\n"
    )
    labor = tmp_path / "labor.csv"
    labor.write_text(
        "month,phase,team,hours,hourly_rate,currency\n2026-09,operations,sre,320,95.50,USD\n"
        "2026-09,fine_tuning,ml,10.5,120.25,USD\n"
    )
    db, rep = run(tmp_path, usage=usage, labor=labor)
    assert q(db, "SELECT metric, value_sum, value_mean, n FROM usage_daily ORDER BY 1") == [
        ("gpu_util", pytest.approx(1.2), pytest.approx(0.6), 2),
        ("requests", 150.0, 75.0, 2),
    ]
    assert dict(q(db, "SELECT phase, cost FROM labor_monthly")) == {
        "operations": Decimal("30560"),
        "fine_tuning": Decimal("1262.625"),
    }  # 320 x 95.50, 10.5 x 120.25
    # Ingesting them again changes nothing.
    before = content_checksum(db)
    run(tmp_path, usage=usage, labor=labor)
    assert content_checksum(db) == before


# --- command line -------------------------------------------------------------------


def test_cli_ingest_and_report(tmp_path: Path) -> None:
    from pipeline.cli import cli

    a = write_focus(tmp_path / "a.csv", [row(cost="1.5")])
    b = write_focus(tmp_path / "b.csv", [row("2026-10-02", cost="2.5")])
    res = CliRunner().invoke(
        cli,
        [
            "--home",
            str(tmp_path),
            "ingest",
            "--no-progress",
            "--billing",
            str(a),
            str(b),
            "--report",
            str(tmp_path / "r.json"),
        ],
    )
    assert res.exit_code == 0, res.output
    doc = json.loads((tmp_path / "r.json").read_text())
    assert doc["overall"]["warehouse_totals"]["USD"]["BilledCost"] == "4"
    assert (tmp_path / "data" / "phasecast.duckdb").exists()


# --- restatement on the synthetic history (pipeline.synth, written by another engineer) ----


def test_synth_history_restatement(tmp_path: Path) -> None:
    synth = pytest.importorskip("pipeline.synth")
    synth.generate(synth.SynthConfig(out=tmp_path / "s", months=4, seed=3))
    billing = tmp_path / "s" / "billing"
    files = sorted(p for p in billing.rglob("*") if p.is_file())
    assert len(files) >= 2
    db, rep = run(tmp_path, billing)
    assert rep.conserved
    # Some file restates an earlier one: it was superseded, and only the later numbers are in force.
    assert any(f.status.endswith("superseded") for f in rep.files) or any(
        set(f.billing_periods) & set(g.billing_periods)
        for i, f in enumerate(rep.files)
        for g in rep.files[i + 1 :]
    )
    before = content_checksum(db)
    _, rep2 = run(tmp_path, billing)
    assert all(f.status == "unchanged" for f in rep2.files)
    assert content_checksum(db) == before


@pytest.mark.slow
def test_ingest_benchmark_smoke(tmp_path: Path) -> None:
    from tests.benchmarks import ingest_bench

    out = tmp_path / "ingest.json"
    assert (
        ingest_bench.main(
            [
                "--rows",
                "20000",
                "--runs",
                "1",
                "--pandas-runs",
                "1",
                "--data",
                str(tmp_path / "d"),
                "--output",
                str(out),
            ]
        )
        == 0
    )
    doc = json.loads(out.read_text())
    assert {(r["format"], r["way"]) for r in doc["results"]} == {
        ("parquet", "phasecast"),
        ("parquet", "pandas"),
        ("csv.gz", "phasecast"),
        ("csv.gz", "pandas"),
    }
    assert all(r["rows"] == 20000 for r in doc["results"])
