"""Bad input: one clear InputError naming file, row and column, exit code 2, warehouse untouched."""

from __future__ import annotations

import gzip
import hashlib
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from pipeline.errors import EXIT_BAD_INPUT, InputError
from pipeline.ingest import IngestConfig, content_checksum, ingest
from tests.test_ingest import V12, row, tags, write_focus

N_BIG = 60_000
BAD_ROW = 50_000


def big_csv(path: Path, bad_col: str | None = None, bad_value: str = "", gz: bool = False) -> Path:
    """A 60,000-row FOCUS 1.2 export, fast to write; data row 50,000 gets ``bad_col = bad_value``."""
    template = row(cost="0.125")
    lines = [",".join(V12)]
    good = ",".join("NULL" if template[c] is None else str(template[c]) for c in V12)
    for i in range(1, N_BIG + 1):
        if i == BAD_ROW and bad_col:
            lines.append(
                ",".join(
                    bad_value
                    if c == bad_col
                    else ("NULL" if template[c] is None else str(template[c]))
                    for c in V12
                )
            )
        else:
            lines.append(good)
    data = ("\n".join(lines) + "\n").encode()
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


@pytest.fixture()
def warehouse(tmp_path: Path) -> Path:
    """A warehouse that already holds one ingested file (so 'unchanged' means something)."""
    db = tmp_path / "wh.duckdb"
    ingest(
        IngestConfig(
            billing=(write_focus(tmp_path / "ok" / "base.csv", [row("2026-08-05", "42.5")]),),
            warehouse=db,
            progress=False,
        )
    )
    return db


def file_sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def expect_rejected(
    db: Path, billing: list[Path], *, row_no: int | None, column: str | None, file: Path, words: str
) -> InputError:
    before_content, before_bytes = content_checksum(db), file_sha(db)
    with pytest.raises(InputError) as ei:
        ingest(IngestConfig(billing=tuple(billing), warehouse=db, progress=False))
    err = ei.value
    assert err.exit_code == EXIT_BAD_INPUT
    located = [p for p in err.problems if p.file == str(file)]
    assert located, str(err)
    if row_no is not None:
        assert any(p.row == row_no and p.column == column for p in located), str(err)
    elif column is not None:
        assert any(p.column == column for p in located) or column in str(err), str(err)
    assert words.lower() in str(err).lower(), str(err)
    assert "How to fix:" in str(err)
    assert content_checksum(db) == before_content
    assert file_sha(db) == before_bytes
    return err


def test_truncated_gzip(tmp_path: Path, warehouse: Path) -> None:
    full = big_csv(tmp_path / "full.csv.gz", gz=True)
    bad = tmp_path / "cut.csv.gz"
    data = full.read_bytes()
    bad.write_bytes(data[: len(data) // 2])
    err = expect_rejected(warehouse, [bad], row_no=None, column=None, file=bad, words="gzip")
    assert "download or copy it again" in str(err)


def test_missing_mandatory_column(tmp_path: Path, warehouse: Path) -> None:
    f = tmp_path / "nocost.csv"
    f.write_text("ChargePeriodStart,BillingCurrency\n2026-09-01,USD\n")
    err = expect_rejected(
        warehouse, [f], row_no=None, column=None, file=f, words="missing mandatory"
    )
    assert "BilledCost" in str(err) and "EffectiveCost" in str(err)


@pytest.mark.parametrize(
    ("column", "value", "words"),
    [
        ("ChargePeriodStart", "2026-13-45T00:00:00Z", "as a date"),
        ("BilledCost", "12,50", "as a decimal"),
        ("EffectiveCost", "abc", "as a decimal"),
        ("ListCost", "NULL", "value is required"),
    ],
)
def test_bad_value_at_row_50000(
    tmp_path: Path, warehouse: Path, column: str, value: str, words: str
) -> None:
    f = big_csv(
        tmp_path / "big.csv", bad_col=column, bad_value=f'"{value}"' if "," in value else value
    )
    err = expect_rejected(warehouse, [f], row_no=BAD_ROW, column=column, file=f, words=words)
    assert "1 row(s)" in str(err)


def test_bad_value_in_parquet(tmp_path: Path, warehouse: Path) -> None:
    rows = [row(cost="1")] * 3 + [row(cost="1", ChargePeriodStart="yesterday")]
    f = write_focus(tmp_path / "p.parquet", rows)
    expect_rejected(warehouse, [f], row_no=4, column="ChargePeriodStart", file=f, words="yesterday")


def test_empty_file(tmp_path: Path, warehouse: Path) -> None:
    f = tmp_path / "empty.csv"
    f.write_bytes(b"")
    expect_rejected(warehouse, [f], row_no=None, column=None, file=f, words="empty")


def test_header_only_file(tmp_path: Path, warehouse: Path) -> None:
    f = write_focus(tmp_path / "h.csv", [])
    expect_rejected(warehouse, [f], row_no=None, column=None, file=f, words="no data rows")


def test_unknown_phase_tag(tmp_path: Path, warehouse: Path) -> None:
    rows = [row(Tags=tags(phase="inference"))] * 2 + [row(Tags=tags(phase="serving"))]
    f = write_focus(tmp_path / "t.csv", rows)
    err = expect_rejected(
        warehouse, [f], row_no=3, column="Tags", file=f, words="unknown phase tag 'serving'"
    )
    assert "inference" in str(err)  # the fix lists the known phases


def test_invalid_tags_json(tmp_path: Path, warehouse: Path) -> None:
    f = write_focus(tmp_path / "j.csv", [row(), row(Tags="{phase: inference")])
    expect_rejected(warehouse, [f], row_no=2, column="Tags", file=f, words="not valid JSON")


def test_third_file_bad_changes_nothing(tmp_path: Path, warehouse: Path) -> None:
    files = [write_focus(tmp_path / "in" / f"{i}.csv", [row(f"2026-0{i}-03", "1")]) for i in (1, 2)]
    bad = write_focus(tmp_path / "in" / "3.csv", [row("2026-03-03", "1"), row("2026-03-04", "x1")])
    expect_rejected(
        warehouse, [tmp_path / "in"], row_no=2, column="BilledCost", file=bad, words="'x1'"
    )
    # and files 1 and 2 were not recorded as ingested: after fixing file 3 all three go in.
    write_focus(bad, [row("2026-03-03", "1")])
    rep = ingest(IngestConfig(billing=(tmp_path / "in",), warehouse=warehouse, progress=False))
    assert [f.status for f in rep.files] == ["ingested"] * 3 and files


def test_bad_labor_row(tmp_path: Path, warehouse: Path) -> None:
    labor = tmp_path / "labor.csv"
    labor.write_text(
        "month,phase,team,hours,hourly_rate,currency\n2026-09,operations,sre,10,90,USD\n"
        "2026-09,on_call,sre,ten,90,USD\n"
    )
    before = content_checksum(warehouse)
    with pytest.raises(InputError) as ei:
        ingest(IngestConfig(labor=labor, warehouse=warehouse, progress=False))
    cols = {(p.row, p.column) for p in ei.value.problems}
    assert {(2, "phase"), (2, "hours")} <= cols
    assert content_checksum(warehouse) == before


def test_cli_exit_code_2_and_one_message(tmp_path: Path, warehouse: Path) -> None:
    from pipeline.cli import cli

    f = write_focus(tmp_path / "t.csv", [row(Tags=tags(phase="serving"))])
    res = CliRunner().invoke(
        cli,
        [
            "--home",
            str(tmp_path),
            "ingest",
            "--no-progress",
            "--billing",
            str(f),
            "--warehouse",
            str(warehouse),
        ],
    )
    assert res.exit_code == EXIT_BAD_INPUT
    out = res.output
    assert (
        out.count("phasecast: error:") == 1 and str(f) in out and "row 1" in out and "'Tags'" in out
    )
    assert "Traceback" not in out
    json.dumps(out)  # printable


def test_ragged_csv_line(tmp_path: Path, warehouse: Path) -> None:
    f = write_focus(tmp_path / "r.csv", [row(), row()])
    lines = f.read_text().splitlines()
    lines[2] += ",surplus"
    f.write_text("\n".join(lines) + "\n")
    err = expect_rejected(
        warehouse, [f], row_no=None, column=None, file=f, words="malformed CSV line"
    )
    assert [p.row for p in err.problems] == [2]


def test_ragged_line_at_row_50000(tmp_path: Path, warehouse: Path) -> None:
    f = big_csv(tmp_path / "rag.csv", bad_col="SkuId", bad_value="SKU1,extra")
    err = expect_rejected(
        warehouse, [f], row_no=None, column=None, file=f, words="Expected Number of Columns"
    )
    assert [p.row for p in err.problems] == [BAD_ROW]


# --- what the data can say (issue 9) --------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    ["0.0000000000000000001", "1e-19", "123456789012345678901", "0.1234567890123456789"],
)
def test_cost_that_would_lose_a_digit(tmp_path: Path, warehouse: Path, value: str) -> None:
    f = write_focus(tmp_path / "x.csv", [row(cost="1"), row(cost="2", BilledCost=value)])
    err = expect_rejected(
        warehouse, [f], row_no=2, column="BilledCost", file=f, words="more digits than"
    )
    assert value in str(err) and "18 after the point" in str(err)


def test_float_parquet_too_small_to_keep(tmp_path: Path, warehouse: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    f = write_focus(tmp_path / "x.parquet", [row(cost="1"), row(cost="2")])
    t = pq.read_table(f)
    i = t.schema.get_field_index("EffectiveCost")
    t = t.set_column(i, "EffectiveCost", pa.array([1.0, 5e-324], pa.float64()))
    pq.write_table(t, f)
    expect_rejected(
        warehouse, [f], row_no=2, column="EffectiveCost", file=f, words="more digits than"
    )


def test_billing_period_not_on_the_first(tmp_path: Path, warehouse: Path) -> None:
    # A re-export whose BillingPeriodStart is the export date would be a second September.
    f = write_focus(
        tmp_path / "x.csv",
        [row("2026-09-03"), row("2026-09-16", BillingPeriodStart="2026-09-15T00:00:00Z")],
    )
    expect_rejected(
        warehouse, [f], row_no=2, column="BillingPeriodStart", file=f, words="first day of a month"
    )


def test_charge_ending_before_it_starts(tmp_path: Path, warehouse: Path) -> None:
    f = write_focus(
        tmp_path / "x.csv",
        [row(), row(), row(ChargePeriodEnd="2026-09-03T04:00:00Z")],  # starts 05:00
    )
    expect_rejected(
        warehouse, [f], row_no=3, column="ChargePeriodEnd", file=f, words="before the row's"
    )


def test_currency_not_iso_4217(tmp_path: Path, warehouse: Path) -> None:
    f = write_focus(tmp_path / "x.csv", [row(), row(BillingCurrency="US$")])
    expect_rejected(warehouse, [f], row_no=2, column="BillingCurrency", file=f, words="ISO 4217")


def test_currency_case_is_one_currency(tmp_path: Path) -> None:
    db = tmp_path / "w.duckdb"
    f = write_focus(
        tmp_path / "x.csv", [row(cost="1"), row(cost="2", BillingCurrency=" usd"), row(cost="4")]
    )
    rep = ingest(IngestConfig(billing=(f,), warehouse=db, progress=False))
    assert set(rep.warehouse_totals) == {"USD"} == set(rep.source_totals)
    assert rep.warehouse_totals["USD"]["BilledCost"] == 7


def test_labor_currency_iso_and_upper_cased(tmp_path: Path, warehouse: Path) -> None:
    good = tmp_path / "labor.csv"
    good.write_text(
        "month,phase,team,hours,hourly_rate,currency\n2026-09,operations,sre,2,10,eur\n"
    )
    ingest(IngestConfig(labor=good, warehouse=warehouse, progress=False))
    import duckdb

    con = duckdb.connect(str(warehouse), read_only=True)
    assert con.execute("SELECT currency, cost FROM labor_monthly").fetchall() == [("EUR", 20)]
    con.close()
    bad = tmp_path / "labor2.csv"
    bad.write_text(
        "month,phase,team,hours,hourly_rate,currency\n2026-10,operations,sre,2,10,EUR\n"
        "2026-10,operations,sre,1,10,EURO\n"
    )
    before = content_checksum(warehouse)
    with pytest.raises(InputError) as ei:
        ingest(IngestConfig(labor=bad, warehouse=warehouse, progress=False))
    assert any(p.row == 2 and p.column == "currency" for p in ei.value.problems), str(ei.value)
    assert "ISO 4217" in str(ei.value) and content_checksum(warehouse) == before


def test_budget_in_another_currency_is_an_error() -> None:
    from pipeline.currency import check_budget_currency

    check_budget_currency(["USD", " usd", "Usd"], "USD", source="budgets.csv")
    with pytest.raises(InputError) as ei:
        check_budget_currency(["USD", "EUR", "dollars"], "USD", source="budgets.csv")
    err = ei.value
    assert err.exit_code == EXIT_BAD_INPUT
    assert [(p.row, p.column) for p in err.problems] == [(2, "currency"), (3, "currency")]
    assert "budget in EUR but the forecast is in USD" in str(err)
    assert "'dollars' is not an ISO 4217" in str(err) and "--currency" in str(err)


def test_cli_lossy_cost_exit_2_names_file_row_column(tmp_path: Path, warehouse: Path) -> None:
    from pipeline.cli import cli

    f = write_focus(tmp_path / "t.csv", [row(), row(ListCost="0.00000000000000000001")])
    before = content_checksum(warehouse)
    res = CliRunner().invoke(
        cli,
        [
            "--home",
            str(tmp_path),
            "ingest",
            "--no-progress",
            "--billing",
            str(f),
            "--warehouse",
            str(warehouse),
        ],
    )
    assert res.exit_code == EXIT_BAD_INPUT
    assert str(f) in res.output and "row 2" in res.output and "'ListCost'" in res.output
    assert "How to fix" in res.output and "Traceback" not in res.output
    assert content_checksum(warehouse) == before


def test_billing_period_at_local_midnight_is_the_first(tmp_path: Path) -> None:
    # Local midnight of the 1st with an offset is the same billing period (16:00 UTC the day before).
    db = tmp_path / "w.duckdb"
    f = write_focus(
        tmp_path / "x.csv",
        [
            row("2026-09-03", "1", BillingPeriodStart="2026-09-01T00:00:00+08:00"),
            row("2026-09-04", "2", BillingPeriodStart="2026-09-01T07:00:00Z"),
            row("2026-09-05", "4"),
        ],
    )
    rep = ingest(IngestConfig(billing=(f,), warehouse=db, progress=False))
    assert rep.files[0].billing_periods == ["2026-09"]
    assert rep.warehouse_totals["USD"]["BilledCost"] == 7


def test_labor_and_usage_cells_say_what_they_probably_meant(
    tmp_path: Path, warehouse: Path
) -> None:
    """One problem per bad cell (its first failed check, not also 'not hours >= 0' for a value that
    is no number at all), counted as such, with the likely intent: a decimal comma, a misspelt
    phase; a thousands comma (1,234) gets no decimal-comma hint. Nothing is stored."""
    labor = tmp_path / "labor.csv"
    labor.write_text(
        "month,phase,team,hours,hourly_rate,currency\n"
        "2026-10,operations,sre,2,10,USD\n"
        '2026-10,operations,sre,"1.234,50",10,USD\n'
        '2026-10,operations,sre,"1,234",10,USD\n'
    )
    before = content_checksum(warehouse)
    with pytest.raises(InputError) as ei:
        ingest(IngestConfig(labor=labor, warehouse=warehouse, progress=False))
    err = ei.value
    assert [(p.row, p.column) for p in err.problems] == [(2, "hours"), (3, "hours")]
    assert str(err).startswith("2 problems in the input:")
    assert "'1.234,50' is not a decimal number" in str(err)
    assert "a decimal comma is not read, write it as 1234.50" in str(err)
    assert str(err).count("decimal comma") == 1  # not for 1,234
    assert content_checksum(warehouse) == before
    usage = tmp_path / "usage.csv"
    usage.write_text("ts,phase,metric,value\n2026-10-01,fine_tunning,gpu_hours,3\n")
    with pytest.raises(InputError) as ei:
        ingest(IngestConfig(usage=usage, warehouse=warehouse, progress=False))
    assert [(p.row, p.column) for p in ei.value.problems] == [(1, "phase")]
    assert "'fine_tunning' is not one of" in str(ei.value)
    assert str(ei.value).count("; did you mean fine_tuning?") == 1
    assert content_checksum(warehouse) == before


@pytest.mark.parametrize(
    ("as_of", "words"),
    [
        ("2026-11-31", "'2026-11-31' is not a day: November 2026 has 30 days"),
        ("2026-13-01", "'2026-13-01' has no month 13: months run 01 to 12"),
        ("15/11/2026", "'15/11/2026' is not a day in the form YYYY-MM-DD (e.g. 2026-11-15)"),
    ],
)
def test_an_impossible_as_of_says_what_is_wrong(tmp_path: Path, as_of: str, words: str) -> None:
    from pipeline.cli import cli

    budgets = tmp_path / "b.csv"
    budgets.write_text("period,phase,amount\n2026Q4,total,100\n")
    for cmd in (["flag", "--budgets", str(budgets)], ["budget"], ["run-monthly"]):
        res = CliRunner().invoke(cli, ["--home", str(tmp_path), *cmd, "--as-of", as_of])
        assert res.exit_code == 2 and words in res.output, (cmd, res.output)
