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

from pipeline.errors import InputError
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


def test_a_dated_restatement_applies_after_the_original_wherever_it_lives(tmp_path: Path) -> None:
    """One call with the exports folder and a corrections folder elsewhere: the folder named
    ``<period>.restated-<date>`` is applied after the undated original, although its path sorts
    first (by path alone the original replaced the restatement, exit 0)."""
    from pipeline.ingest.deliveries import restated_on

    original = tmp_path / "z-exports"
    fixes = tmp_path / "a-fixes" / "2026-09.restated-2026-10-05"
    write_focus(original / "2026-09.csv", [row("2026-09-10", "7")])
    write_focus(fixes / "2026-09.csv", [row("2026-09-10", "9.5")])
    db, rep = run(tmp_path, original, fixes.parent)
    assert _totals(db) == {("AWS", "2026-09", "acct-A"): Decimal("9.5")}
    assert [f.status for f in rep.files] == ["superseded", "ingested"]
    assert restated_on(fixes) == "2026-10-05T23:59:59Z"  # a manifest of that day sorts first
    assert restated_on(fixes / "aws" / "part0") == "2026-10-05T23:59:59Z"  # the nearest parent
    assert restated_on(tmp_path / "2026-09.restated-2026-13-40") == ""  # not a day: undated
    assert restated_on(original) == ""


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
    assert {(r["format"], r["way"]) for r in doc["results"]} >= {
        ("parquet", "phasecast"),
        ("parquet", "pandas"),
        ("csv.gz", "phasecast"),
        ("csv.gz", "pandas"),
    }
    assert all(r["rows"] == 20000 for r in doc["results"])


# --- exact money, any scale (issue 9) ---------------------------------------------------

#: Costs as real exports write them: float leftovers (13-15 decimals), 18 decimals, 4e-13 in both
#: spellings, a credit, and a 38-digit value (20 before the point, 18 after).
EXACT_TEXT = [
    "227.28753400000005",
    "0.123456789012345678",
    "1234.5678901234567",
    "0.0000000000004",
    "0.0000000000004",
    "0.0000000000004",
    "4e-13",
    "-0.000000000000000001",
    "12345678901234567890.123456789012345678",
]
#: Values a double carries exactly as its shortest text (repr), for float Parquet columns.
FLOAT_TEXT = ["227.28753400000005", "0.30000000000000004", "4e-13", "1e-05", "-12.5", "0.1"]


def _parquet_typed(src: Path, dst: Path, arrow_type) -> Path:
    """The string-typed FOCUS Parquet ``src`` with its cost columns cast to ``arrow_type``."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    t = pq.read_table(src)
    for c in ("BilledCost", "EffectiveCost", "ListCost", "ContractedCost"):
        i = t.schema.get_field_index(c)
        col = t.column(c)
        if pa.types.is_floating(arrow_type):
            col = pa.array([None if v is None else float(v) for v in col.to_pylist()], arrow_type)
        else:
            col = pc.cast(col, arrow_type)
        t = t.set_column(i, c, col)
    pq.write_table(t, dst)
    return dst


def run_in(folder: Path, *billing: Path) -> tuple:
    """``run`` with a warehouse of its own in the new folder ``folder``."""
    folder.mkdir(parents=True)
    return run(folder, *billing)


def _text_sum(values: list[str]) -> Decimal:
    """Python's exact sum of the text (a local context: the default keeps only 28 digits)."""
    import decimal

    with decimal.localcontext(decimal.Context(prec=80, traps=[decimal.Inexact])):
        return sum((Decimal(v) for v in values), Decimal(0))


def _wh_sums(db: Path) -> tuple:
    return q(db, "SELECT sum(billed_cost), sum(effective_cost), sum(list_cost) FROM daily_facts")[0]


def test_costs_keep_every_digit_in_every_format(tmp_path: Path) -> None:
    import pyarrow as pa

    expected = _text_sum(EXACT_TEXT)
    # Hand-checked: 227.28753400000005 + 0.123456789012345678 + 1234.5678901234567
    # + 4 x 0.0000000000004 - 0.000000000000000001 + 12345678901234567890.123456789012345678
    assert expected == Decimal("12345678901234569352.102337701483041355")
    rows = [row(f"2026-09-{i + 1:02d}", v) for i, v in enumerate(EXACT_TEXT)]
    base = write_focus(tmp_path / "s" / "x.parquet", rows)
    files = {
        "csv": write_focus(tmp_path / "c" / "x.csv", rows),
        "csv.gz": write_focus(tmp_path / "g" / "x.csv.gz", rows),
        "parquet-string": base,
        "parquet-decimal": _parquet_typed(base, tmp_path / "d.parquet", pa.decimal128(38, 18)),
    }
    for name, f in files.items():
        db, rep = run_in(tmp_path / name, f)
        assert _wh_sums(db) == (expected, expected, expected), name
        assert rep.source_totals["USD"]["BilledCost"] == expected, name
        assert rep.to_dict()["overall"]["warehouse_totals"]["USD"]["BilledCost"] == (
            "12345678901234569352.102337701483041355"
        ), name
        assert rep.conserved


def test_float_parquet_reads_the_shortest_text_of_each_double(tmp_path: Path) -> None:
    import pyarrow as pa

    rows = [row(f"2026-09-{i + 1:02d}", v) for i, v in enumerate(FLOAT_TEXT)]
    assert [repr(float(v)) for v in FLOAT_TEXT] == FLOAT_TEXT  # the text a float column means
    expected = _text_sum(FLOAT_TEXT)
    # by hand: 227.28753400000005 + 0.30000000000000004 + 0.0000000000004 + 0.00001 - 12.5 + 0.1
    assert expected == Decimal("215.18754400000045004")
    base = write_focus(tmp_path / "s" / "x.parquet", rows)
    f64 = _parquet_typed(base, tmp_path / "f.parquet", pa.float64())
    csv = write_focus(tmp_path / "c" / "x.csv", rows)
    db1, _ = run_in(tmp_path / "a", f64)
    db2, _ = run_in(tmp_path / "b", csv)
    assert _wh_sums(db1) == _wh_sums(db2) == (expected, expected, expected)


def test_three_tiny_costs_are_not_rounded_away(tmp_path: Path) -> None:
    f = write_focus(tmp_path / "t.csv", [row(cost="0.0000000000004")] * 3)
    db, rep = run(tmp_path, f)
    assert _wh_sums(db) == (Decimal("1.2E-12"),) * 3
    assert rep.to_dict()["overall"]["source_totals"]["USD"]["BilledCost"] == "0.0000000000012"


# --- deliveries, not files (issue 9) -------------------------------------------------------

SAMPLE_TOTALS = {
    "BilledCost": Decimal("20.52022672899"),
    "EffectiveCost": Decimal("14.97651418586"),
    "ListCost": Decimal("20.39090575119"),
}


def _split_sample(folder: Path, parts: int) -> list[Path]:
    """The real FOCUS sample split into ``parts`` files (rows dealt round-robin: every part covers
    both billing periods), as a partitioned export delivers it."""
    with SAMPLE.open(newline="") as fh:
        lines = list(csv.reader(fh))
    header, body = lines[0], lines[1:]
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for k in range(parts):
        p = folder / f"part_{k:04d}.csv"
        with p.open("w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(header)
            w.writerows(body[k::parts])
        out.append(p)
    return out


def test_split_delivery_ingests_every_cent(tmp_path: Path) -> None:
    _split_sample(tmp_path / "export", 2)
    db, rep = run(tmp_path, tmp_path / "export")
    assert rep.rows == 1000 and rep.conserved
    assert rep.warehouse_totals == {"USD": SAMPLE_TOTALS} == rep.source_totals
    assert [d.kind for d in rep.deliveries] == ["folder"] and len(rep.deliveries[0].files) == 2
    assert q(db, "SELECT sum(row_count) FROM daily_facts")[0][0] == 1000


def test_split_delivery_arriving_over_two_calls(tmp_path: Path) -> None:
    a, b = _split_sample(tmp_path / "export", 2)
    b.rename(tmp_path / "later.csv")
    db, rep1 = run(tmp_path, tmp_path / "export")
    assert rep1.rows == 500
    (tmp_path / "later.csv").rename(b)
    # The folder again: its new file is read with the known one (one delivery), every cent in.
    _, rep2 = run(tmp_path, tmp_path / "export")
    assert [f.status for f in rep2.files] == ["ingested", "ingested"] and rep2.rows == 1000
    assert rep2.warehouse_totals == {"USD": SAMPLE_TOTALS}
    # Each file's report is its own (the known file is read after the new one, reported in place).
    assert rep2.files[0].source_totals == rep1.files[0].source_totals
    assert [f.sha256 for f in rep2.files] == [
        q(
            db,
            f"SELECT sha256 FROM manifest WHERE path = '{p.resolve()}' ORDER BY ingested_at DESC LIMIT 1",
        )[0][0]
        for p in (a, b)
    ]
    assert {r[0] for r in q(db, "SELECT DISTINCT file_sha256 FROM daily_facts")} <= {
        f.sha256 for f in rep2.files
    }
    # And once more: nothing new, nothing read, the report still shows the periods' totals.
    before = content_checksum(db)
    _, rep3 = run(tmp_path, tmp_path / "export")
    assert [f.status for f in rep3.files] == ["unchanged", "unchanged"]
    for f2, f3 in zip(rep2.files, rep3.files, strict=True):
        assert f3.warehouse_totals == f2.warehouse_totals and f3.warehouse_totals
        assert f3.source_totals == f2.source_totals and f3.billing_periods == f2.billing_periods
    assert content_checksum(db) == before


def test_redelivery_replaces_the_period_whole(tmp_path: Path) -> None:
    first = tmp_path / "inbox" / "2026-09.delivery-2026-10-02"
    write_focus(first / "part-1.csv", [row("2026-09-01", "10"), row("2026-09-02", "20")])
    write_focus(first / "part-2.csv", [row("2026-09-03", "30")])
    db, rep = run(tmp_path, tmp_path / "inbox")
    assert _totals(db) == {("AWS", "2026-09", "acct-A"): Decimal(60)}
    # A newer delivery of September (one file this time) in a later call replaces both files.
    write_focus(
        tmp_path / "inbox" / "2026-09.delivery-2026-10-05" / "part-1.csv",
        [row("2026-09-01", "11"), row("2026-09-03", "0.5")],
    )
    _, rep2 = run(tmp_path, tmp_path / "inbox")
    assert [f.status for f in rep2.files] == ["unchanged", "unchanged", "ingested"]
    assert _totals(db) == {("AWS", "2026-09", "acct-A"): Decimal("11.5")}
    # Both deliveries in one call, fresh warehouse: folder order decides, the newer one wins.
    db2, rep3 = run_in(tmp_path / "fresh", tmp_path / "inbox")
    assert _totals(db2) == {("AWS", "2026-09", "acct-A"): Decimal("11.5")}
    assert [d.status for d in rep3.deliveries] == ["superseded", "ingested"]
    assert rep3.conserved and rep3.source_totals["USD"]["BilledCost"] == Decimal("11.5")


def _aws_export(root: Path, period: str, parts: dict[str, list[dict]], listed: list[str]) -> Path:
    """An AWS Data Exports FOCUS layout under ``root``: data files and the period's manifest."""
    export = root / "focus-daily"
    data = export / "data" / f"BILLING_PERIOD={period}"
    for name, rows in parts.items():
        write_focus(data / name, rows)
    meta = export / "metadata" / f"BILLING_PERIOD={period}"
    meta.mkdir(parents=True, exist_ok=True)
    manifest = meta / "focus-daily-Manifest.json"
    manifest.write_text(
        json.dumps(
            {
                "executionId": f"exec-{len(listed)}-{period}",
                "exportArn": "arn:aws:bcm-data-exports:us-east-1:123456789012:export/focus-daily",
                "billingPeriod": {"start": f"{period}-01T00:00:00.000Z"},
                "dataFiles": [
                    f"s3://bucket/cur/focus-daily/data/BILLING_PERIOD={period}/{n}" for n in listed
                ],
            }
        )
    )
    return manifest


def test_aws_data_exports_layout(tmp_path: Path) -> None:
    parts = {
        "focus-daily-00001.csv.gz": [row("2026-09-01", "1.25"), row("2026-09-02", "2.5")],
        "focus-daily-00002.csv.gz": [row("2026-09-03", "4")],
        # left over from an earlier delivery: not in the manifest, so not ingested
        "focus-daily-00009.csv.gz": [row("2026-09-04", "1000")],
    }
    _aws_export(
        tmp_path / "s3", "2026-09", parts, ["focus-daily-00001.csv.gz", "focus-daily-00002.csv.gz"]
    )
    db, rep = run(tmp_path, tmp_path / "s3")
    assert _totals(db) == {("AWS", "2026-09", "acct-A"): Decimal("7.75")}
    assert [d.kind for d in rep.deliveries] == ["aws"] and len(rep.files) == 2
    assert rep.conserved
    # Same delivery again: unchanged. A refresh (new manifest, new files) replaces the period whole.
    _, rep2 = run(tmp_path, tmp_path / "s3")
    assert {f.status for f in rep2.files} == {"unchanged"}
    _aws_export(
        tmp_path / "s3",
        "2026-09",
        {"focus-daily-00001.csv.gz": [row("2026-09-01", "3")]},
        ["focus-daily-00001.csv.gz"],
    )
    _, rep3 = run(tmp_path, tmp_path / "s3")
    assert _totals(db) == {("AWS", "2026-09", "acct-A"): Decimal(3)}
    assert rep3.files[0].status == "ingested"


def test_aws_manifest_naming_a_missing_file_changes_nothing(tmp_path: Path) -> None:
    db, _ = run(tmp_path, write_focus(tmp_path / "ok" / "a.csv", [row("2026-08-01", "5")]))
    before = content_checksum(db)
    m = _aws_export(
        tmp_path / "s3",
        "2026-09",
        {"focus-daily-00001.csv.gz": [row("2026-09-01", "1")]},
        ["focus-daily-00001.csv.gz", "focus-daily-00002.csv.gz"],
    )
    with pytest.raises(InputError) as err:
        run(tmp_path, tmp_path / "s3")
    assert str(m) in str(err.value) and "focus-daily-00002.csv.gz" in str(err.value)
    assert "missing" in str(err.value) and "How to fix" in str(err.value)
    m.unlink()  # data without a manifest: an unfinished delivery
    with pytest.raises(InputError, match="no manifest"):
        run(tmp_path, tmp_path / "s3")
    assert content_checksum(db) == before


def test_azure_partitioned_export_with_manifest(tmp_path: Path) -> None:
    def azure_run(folder: Path, submitted: str, parts: dict[str, list[dict]]) -> None:
        for name, rows in parts.items():
            write_focus(folder / name, rows)
        (folder / "manifest.json").write_text(
            json.dumps(
                {
                    "manifestVersion": "2024-04-01",
                    "runInfo": {"runId": folder.name, "submittedTime": submitted},
                    "blobs": [
                        {"blobName": f"exports/focus/20260901-20260930/{folder.name}/{n}"}
                        for n in parts
                    ],
                }
            )
        )

    runs = tmp_path / "focus" / "20260901-20260930"
    # Run ids sort against time: the run submitted later must win, whatever its folder name.
    azure_run(
        runs / "b-run",
        "2026-10-01T06:00:00Z",
        {
            "part_0_0001.csv": [row("2026-09-01", "1", ProviderName="Microsoft")],
            "part_1_0001.csv": [row("2026-09-02", "2", ProviderName="Microsoft")],
        },
    )
    azure_run(
        runs / "a-run",
        "2026-10-03T06:00:00Z",
        {
            "part_0_0001.csv": [row("2026-09-01", "1.5", ProviderName="Microsoft")],
            "part_1_0001.csv": [row("2026-09-02", "2.5", ProviderName="Microsoft")],
        },
    )
    write_focus(runs / "a-run" / "stray.csv", [row("2026-09-09", "99", ProviderName="Microsoft")])
    db, rep = run(tmp_path, tmp_path / "focus")
    assert _totals(db) == {("Microsoft", "2026-09", "acct-A"): Decimal(4)}
    assert [(Path(d.id).parent.name, d.status) for d in rep.deliveries] == [
        ("b-run", "superseded"),
        ("a-run", "ingested"),
    ]
    assert rep.conserved


def test_old_warehouse_is_widened_exactly(tmp_path: Path) -> None:
    from pipeline.ingest.warehouse import SCHEMA, connect

    db = tmp_path / "old.duckdb"
    con = duckdb.connect(str(db))
    old = SCHEMA.replace("DECIMAL(38,18)", "DECIMAL(38,12)").replace(
        "ingested_at TIMESTAMP NOT NULL,\n    delivery VARCHAR,\n    keys VARCHAR",
        "ingested_at TIMESTAMP NOT NULL",
    )
    con.execute(old)
    con.execute(
        "INSERT INTO daily_facts VALUES ('2026-09-01', '2026-09-01', 'AWS', 'a', 'USD', 'inference', "
        "'compute_gpu', NULL, NULL, 12345678901234567890.123456789012, 1, 1, NULL, 1, 'x')"
    )
    con.close()
    connect(db).close()
    assert q(db, "SELECT typeof(billed_cost), billed_cost FROM daily_facts") == [
        ("DECIMAL(38,18)", Decimal("12345678901234567890.123456789012"))
    ]
    assert {"delivery", "keys"} <= {
        r[0]
        for r in q(
            db, "SELECT column_name FROM information_schema.columns WHERE table_name = 'manifest'"
        )
    }


def test_cli_ingest_names_the_currency_option(tmp_path: Path) -> None:
    from pipeline.cli import cli

    f = write_focus(
        tmp_path / "a.csv",
        [row(cost="1"), row(cost="5", BillingCurrency="eur", BillingAccountId="eu")],
    )
    res = CliRunner().invoke(
        cli, ["--home", str(tmp_path), "ingest", "--no-progress", "--billing", str(f)]
    )
    assert res.exit_code == 0, res.output
    assert "several currencies (EUR, USD)" in res.output and "--currency USD" in res.output
    res = CliRunner().invoke(
        cli, ["--home", str(tmp_path), "series", "--output", str(tmp_path / "s")]
    )
    assert res.exit_code == 0, res.output
    assert "EUR" in res.output and "left out" in res.output and "--currency USD" in res.output
    assert "partial month 2026-09" in res.output


def test_aws_create_new_refreshes_apply_in_manifest_time_order(tmp_path: Path) -> None:
    import os

    export = tmp_path / "s3" / "focus-daily"
    # "create new" mode: each refresh in its execution's folder; ids sort against time.
    for execution, cost, mtime in (("ffff-1", "1", 1_790_000_000), ("0000-2", "2", 1_790_086_400)):
        data = export / "data" / "BILLING_PERIOD=2026-09" / execution
        write_focus(data / "focus-daily-00001.csv.gz", [row("2026-09-01", cost)])
        meta = export / "metadata" / "BILLING_PERIOD=2026-09" / execution
        meta.mkdir(parents=True)
        m = meta / "focus-daily-Manifest.json"
        uri = (
            f"s3://b/p/focus-daily/data/BILLING_PERIOD=2026-09/{execution}/focus-daily-00001.csv.gz"
        )
        m.write_text(json.dumps({"executionId": execution, "dataFiles": [uri]}))
        os.utime(m, (mtime, mtime))
    db, rep = run(tmp_path, tmp_path / "s3")
    assert _totals(db) == {("AWS", "2026-09", "acct-A"): Decimal(2)}  # the later manifest wins
    assert [(Path(d.id).parent.name, d.status) for d in rep.deliveries] == [
        ("ffff-1", "superseded"),
        ("0000-2", "ingested"),
    ]


# --- a generated multi-file export against an independent computation ---------------------------


def _bench_export(folder: Path, fmt: str, n_files: int = 3, rows: int = 12_000) -> list:
    """``n_files`` consecutive parts of the ingest benchmark's synthetic export (Parquet with typed
    decimal, timestamp and dictionary columns, or CSV.gz text); returns the Arrow tables written."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq

    from tests.benchmarks.ingest_bench import synth_chunk

    folder.mkdir(parents=True)
    tables = []
    for k in range(n_files):
        t = synth_chunk(k * rows, rows, seed=3, n_resources=240)
        tables.append(t)
        if fmt == "parquet":
            pq.write_table(t, folder / f"part-{k}.parquet", row_group_size=5_000)
            continue
        plain = pa.table(
            {
                name: pc.strftime(col, "%Y-%m-%dT%H:%M:%SZ")
                if pa.types.is_timestamp(col.type)
                else pc.cast(col, pa.string())
                for name, col in zip(t.column_names, t.columns, strict=True)
            }
        )
        with pa.CompressedOutputStream(str(folder / f"part-{k}.csv.gz"), "gzip") as sink:
            pcsv.write_csv(plain, sink)
    return tables


def _facts(db: Path) -> list[tuple]:
    return sorted(
        q(db, "SELECT * EXCLUDE (file_sha256) FROM daily_facts"),
        key=lambda r: tuple("" if v is None else str(v) for v in r),
    )


def test_generated_export_matches_an_independent_computation(tmp_path: Path, monkeypatch) -> None:
    """Three Parquet parts (one delivery) ingested; the warehouse holds, per day, service, team and
    model (from the Tags JSON), and per day and tagged phase, exactly the sums a plain Python Decimal
    pass over the same rows gives. The CSV.gz of the same rows (grouped on the text itself) and the
    Parquet with the hash grouping turned off give the same facts, row for row."""
    from pipeline.ingest import billing

    tables = _bench_export(tmp_path / "pq", "parquet")
    _bench_export(tmp_path / "csv", "csv")
    costs = ("BilledCost", "EffectiveCost", "ListCost", "ContractedCost")
    by_service: dict[tuple, list] = {}
    by_phase: dict[tuple, list] = {}
    for t in tables:
        cols = {
            c: t.column(c).to_pylist() for c in ("ChargePeriodStart", "ServiceName", "Tags", *costs)
        }
        for i in range(t.num_rows):
            tag = json.loads(cols["Tags"][i]) if cols["Tags"][i] else {}
            day = cols["ChargePeriodStart"][i].date()
            vals = [cols[c][i] for c in costs] + [1]
            for acc, key in (
                (by_service, (day, cols["ServiceName"][i], tag.get("team"), tag.get("model"))),
                (by_phase, (day, tag["phase"]) if tag else None),
            ):
                if key is not None:
                    old = acc.setdefault(key, [Decimal(0)] * 4 + [0])
                    acc[key] = [a + b for a, b in zip(old, vals, strict=True)]

    db, rep = run(tmp_path, tmp_path / "pq")
    assert rep.conserved and rep.rows == sum(t.num_rows for t in tables)
    got = q(
        db,
        "SELECT day, service, team, model, sum(billed_cost), sum(effective_cost), sum(list_cost), "
        "sum(contracted_cost), sum(row_count) FROM daily_facts GROUP BY ALL",
    )
    assert {r[:4]: list(r[4:]) for r in got} == by_service
    got = q(
        db,
        "SELECT day, phase, sum(billed_cost), sum(effective_cost), sum(list_cost), "
        "sum(contracted_cost), sum(row_count) FROM daily_facts WHERE method = 'tag' GROUP BY ALL",
    )
    assert {r[:2]: list(r[2:]) for r in got} == by_phase
    assert len(by_phase) > 30 and len(by_service) > 300  # many groups, not a degenerate file

    db_csv, _ = run(tmp_path / "c", tmp_path / "csv")
    monkeypatch.setattr(billing, "_scan_by_hash", lambda *a, **k: False)
    db_exact, _ = run(tmp_path / "e", tmp_path / "pq")
    facts = _facts(db)
    assert facts == _facts(db_csv) == _facts(db_exact)


def test_attribution_in_batches_gives_the_same_facts(tmp_path: Path, monkeypatch) -> None:
    """Attribution runs every ``ATTRIBUTE_EVERY`` files to bound memory; each batch numbers its
    attributions after the last one stored. Attributing after every file must give the very same
    facts (every column, every digit) as the default batches, and both conserve every cost."""
    import pipeline.ingest as ing

    synth = pytest.importorskip("pipeline.synth")
    synth.generate(synth.SynthConfig(out=tmp_path / "s", months=10, seed=5))
    billing = tmp_path / "s" / "billing"
    assert len([p for p in billing.rglob("*") if p.is_file()]) > ing.ATTRIBUTE_EVERY
    facts = "SELECT * EXCLUDE (file_sha256) FROM daily_facts ORDER BY ALL"
    (tmp_path / "one").mkdir()
    db1, rep1 = run(tmp_path / "one", billing)
    monkeypatch.setattr(ing, "ATTRIBUTE_EVERY", 1)
    (tmp_path / "every").mkdir()
    db2, rep2 = run(tmp_path / "every", billing)
    assert rep1.conserved and rep2.conserved
    rows1, rows2 = q(db1, facts), q(db2, facts)
    assert len(rows1) > 1000 and rows1 == rows2
    assert q(db1, "SELECT sum(billed_cost) FROM daily_facts") == q(
        db2, "SELECT sum(billed_cost) FROM daily_facts"
    )
