"""Hostile values change nothing: tag values never create or merge hierarchy nodes, and CSVs for
people never carry a cell a spreadsheet would run as a formula."""

from __future__ import annotations

import pandas as pd

from pipeline.frames import CATEGORY, PHASE, safe_label
from pipeline.series import _bottom_uid, node_parents
from pipeline.tables import spreadsheet_safe, write_table

HOSTILE = [
    "a/b",
    "a",
    "..",
    ".",
    "x\ny",
    "100%",
    "%2F",
    "é" * 200,
    "é" * 199 + "è",
    "",
    "../../etc",
]


def test_team_values_never_add_a_level_or_merge_two_teams() -> None:
    df = pd.DataFrame(
        {PHASE: "inference", CATEGORY: "compute_gpu", "team": HOSTILE}, index=range(len(HOSTILE))
    )
    uids = list(_bottom_uid(df, include_team=True))
    assert len(set(uids)) == len(HOSTILE)  # one node per team, none merged
    for u in uids:
        assert node_parents(u) == ["inference/compute_gpu", "inference", "total"], u
        assert "\n" not in u and len(u) < 120
    assert safe_label("a/b") == "a%2Fb" and safe_label("..") == "%2E%2E"
    assert safe_label("%2F") != safe_label("/")  # the escape is one-to-one


def test_csv_cells_are_neutralised_parquet_keeps_raw(tmp_path) -> None:
    evil = ['=HYPERLINK("http://x")', "@SUM(1)", "+cmd|' /C calc'!A0", "-2+3", "\tx", "\rx", "ok"]
    df = pd.DataFrame({"unique_id": evil, "mean": [-1.5, 2, 3, 4, 5, 6, 7]})
    safe = spreadsheet_safe(df)
    assert all(not str(v).startswith(("=", "+", "-", "@", "\t", "\r")) for v in safe.unique_id)
    assert safe.unique_id.iloc[-1] == "ok" and safe["mean"].iloc[0] == -1.5  # numbers stay numbers
    csv, pq = write_table(df, tmp_path, "t")
    back = pd.read_csv(csv)
    assert back.unique_id.iloc[0] == "'" + evil[0] and back["mean"].iloc[0] == -1.5
    assert pd.read_parquet(pq).unique_id.tolist() == evil


def test_negative_usage_and_labor_are_exit_2_and_store_nothing(tmp_path) -> None:
    from click.testing import CliRunner

    from pipeline.cli import cli

    labor = tmp_path / "labor.csv"
    labor.write_text(
        "month,phase,team,hours,hourly_rate,currency\n2026-09,operations,sre,-5,100,USD\n"
    )
    usage = tmp_path / "usage.csv"
    usage.write_text("ts,phase,metric,value\n2026-09-01,inference,requests,-3\n")
    wh = tmp_path / "wh.duckdb"
    for flag, path, col in (("--labor", labor, "hours"), ("--usage", usage, "value")):
        r = CliRunner().invoke(cli, ["ingest", flag, str(path), "--warehouse", str(wh)])
        assert r.exit_code == 2, r.output
        assert f"{path.name}, data row 1, column '{col}'" in r.output
    if wh.exists():
        import duckdb

        con = duckdb.connect(str(wh), read_only=True)
        tables = {
            t for (t,) in con.execute("SELECT table_name FROM information_schema.tables").fetchall()
        }
        for t in {"labor_monthly", "usage_daily"} & tables:
            assert con.execute(f"SELECT count(*) FROM {t}").fetchone() == (0,)
        con.close()
