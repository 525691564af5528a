"""Series: complete months, zero-filled spans, coherent aggregates, labor, the partial month apart."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pandas as pd
import pytest

from pipeline.errors import InputError
from pipeline.frames import validate_frame
from pipeline.ingest import IngestConfig, ingest
from pipeline.series import build_series, hierarchy, summing_matrix
from tests.test_ingest import row, tags, write_focus

AS_OF = dt.date(2026, 4, 11)


@pytest.fixture(scope="module")
def wh(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("series")
    gpu = {
        "Tags": tags(phase="inference", team="search"),
        "ChargeDescription": "p5.48xlarge Instance Hour",
    }
    rows = [
        row("2026-01-05", "4", **gpu),
        row("2026-01-20", "6", EffectiveCost="3", **gpu),
        row("2026-03-31", "5", **gpu),
        row("2026-04-03", "2", **gpu),
        row("2026-04-11", "1000", **gpu),  # on as_of: not known yet at AS_OF
        row("2026-02-14", "3", Tags=tags(phase="data_preprocessing"), ServiceCategory="Storage"),
    ]
    labor = tmp / "labor.csv"
    labor.write_text(
        "month,phase,team,hours,hourly_rate,currency\n"
        "2026-02,operations,sre,10,20,USD\n2026-04,operations,sre,15,20,USD\n"
    )
    db = tmp / "wh.duckdb"
    ingest(
        IngestConfig(
            billing=(write_focus(tmp / "b.csv", rows),), labor=labor, warehouse=db, progress=False
        )
    )
    return db


def ys(df: pd.DataFrame, uid: str) -> dict[str, float]:
    g = df[df["unique_id"] == uid]
    return {d.strftime("%Y-%m-%d"): y for d, y in zip(g["ds"], g["y"], strict=True)}


def test_monthly_complete_months_zero_fill_and_aggregates(wh: Path) -> None:
    f = build_series(wh, as_of=AS_OF, cost_column="BilledCost")
    m = f.monthly
    assert list(m.columns[:5]) == ["unique_id", "ds", "y", "phase", "category"]
    assert m["ds"].max() == pd.Timestamp("2026-03-01")  # April is not complete
    assert ys(m, "inference/compute_gpu") == {
        "2026-01-01": 10.0,
        "2026-02-01": 0.0,
        "2026-03-01": 5.0,
    }
    assert ys(m, "inference") == {"2026-01-01": 10.0, "2026-02-01": 0.0, "2026-03-01": 5.0}
    assert ys(m, "data_preprocessing/storage") == {"2026-02-01": 3.0, "2026-03-01": 0.0}
    assert ys(m, "operations/labor") == {"2026-02-01": 200.0, "2026-03-01": 0.0}  # 10 h x 20
    assert ys(m, "total") == {"2026-01-01": 10.0, "2026-02-01": 203.0, "2026-03-01": 5.0}
    lab = m[m["unique_id"] == "operations/labor"].iloc[0]
    assert (lab["phase"], lab["category"]) == ("operations", "labor")
    tot = m[m["unique_id"] == "total"].iloc[0]
    assert tot["phase"] is None and tot["category"] is None
    assert m[m["unique_id"] == "inference"].iloc[0]["category"] is None
    validate_frame(m)  # the shared contract: month starts, no duplicates, numbers
    assert m["y"].dtype == float


def test_effective_cost_is_the_default(wh: Path) -> None:
    f = build_series(wh, as_of=AS_OF)
    assert f.cost_column == "EffectiveCost"
    assert ys(f.monthly, "inference/compute_gpu")["2026-01-01"] == 7.0  # 4 + 3


def test_partial_month_and_daily(wh: Path) -> None:
    f = build_series(wh, as_of=AS_OF, cost_column="BilledCost")
    p = f.partial.set_index("unique_id")
    assert set(p["days_covered"]) == {10} and set(p["days_in_period"]) == {30}
    assert (p["ds"] == pd.Timestamp("2026-04-01")).all()
    assert (
        p.loc["inference/compute_gpu", "y"] == 2.0
    )  # the 1000 on 2026-04-11 is not known at as_of
    # the current month's labor row is what was booked so far: all of it is month-to-date
    assert p.loc["operations/labor", "y"] == pytest.approx(300.0)
    assert p.loc["data_preprocessing/storage", "y"] == 0.0
    assert p.loc["total", "y"] == pytest.approx(302.0)
    d = f.daily
    assert d["ds"].max() == pd.Timestamp("2026-04-10")
    assert ys(d, "inference/compute_gpu")["2026-01-05"] == 4.0
    assert ys(d, "inference/compute_gpu")["2026-01-06"] == 0.0
    assert ys(d, "operations/labor")["2026-02-14"] == pytest.approx(200 / 28)
    # Daily sums to monthly for complete months.
    dm = d[d["ds"] < "2026-04-01"].assign(ds=lambda x: x["ds"].dt.to_period("M").dt.start_time)
    dm = dm.groupby(["unique_id", "ds"], as_index=False)["y"].sum()
    merged = f.monthly.merge(dm, on=["unique_id", "ds"], suffixes=("", "_d"))
    assert len(merged) == len(f.monthly)
    assert (merged["y"] - merged["y_d"]).abs().max() < 1e-9


def test_default_as_of_is_the_day_after_the_last_charge(wh: Path) -> None:
    f = build_series(wh, cost_column="BilledCost")
    assert f.as_of == dt.date(2026, 4, 12)
    assert f.partial.set_index("unique_id").loc["inference/compute_gpu", "y"] == 1002.0


def test_past_as_of_first_of_month_has_no_partial(wh: Path) -> None:
    f = build_series(wh, as_of="2026-04-01", cost_column="BilledCost")
    assert f.partial.empty and f.partial_month is None
    assert f.monthly["ds"].max() == pd.Timestamp("2026-03-01")
    assert ys(f.monthly, "total") == {"2026-01-01": 10.0, "2026-02-01": 203.0, "2026-03-01": 5.0}
    assert f.complete_months == [pd.Timestamp(f"2026-0{m}-01") for m in (1, 2, 3)]


def test_month_the_data_stops_inside_is_partial(wh: Path, caplog: pytest.LogCaptureFixture) -> None:
    # Known on 2026-03-01: AWS's last charge is 2026-02-14, so February is not complete although the
    # as-of date is past it; it is the partial month (14 of 28 days), and the log says why.
    with caplog.at_level("WARNING", logger="pipeline.series"):
        f = build_series(wh, as_of="2026-03-01", cost_column="BilledCost")
    assert f.monthly["ds"].max() == pd.Timestamp("2026-01-01")
    assert f.partial_month == pd.Timestamp("2026-02-01")
    p = f.partial.set_index("unique_id")
    assert p.loc["total", "y"] == 203.0  # 3 storage + 200 labor
    assert (p["days_covered"].iloc[0], p["days_in_period"].iloc[0]) == (14, 28)
    assert "AWS's charges end 2026-02-14" in f.partial_reason
    months = f.months.set_index("ds")
    assert bool(months.loc["2026-01-01", "complete"]) is True
    assert bool(months.loc["2026-02-01", "complete"]) is False
    assert "2026-02" in caplog.text and "AWS's charges end 2026-02-14" in caplog.text


def test_as_of_far_past_the_data_is_bad_input(wh: Path) -> None:
    # The last charge is 2026-04-11: one month later is the limit, a day more would zero-fill a month.
    assert build_series(wh, as_of="2026-05-11").as_of == dt.date(2026, 5, 11)
    with pytest.raises(InputError, match=r"last charge in the warehouse \(2026-04-11\)") as err:
        build_series(wh, as_of="2026-05-12")
    assert "--as-of 2026-05-11" in str(err.value)
    with pytest.raises(InputError, match="2026-04-11"):
        build_series(wh, as_of="2029-01-01")


def test_hierarchy_and_summing_matrix(wh: Path) -> None:
    f = build_series(wh, as_of=AS_OF)
    assert f.hierarchy == {
        "total": ["data_preprocessing/storage", "inference/compute_gpu", "operations/labor"],
        "data_preprocessing": ["data_preprocessing/storage"],
        "inference": ["inference/compute_gpu"],
        "operations": ["operations/labor"],
    }
    s = summing_matrix(f.bottom_ids)
    assert s.loc["total"].tolist() == [1, 1, 1]
    assert s.loc["inference"].tolist() == [0, 1, 0]
    assert set(s.index) == set(f.monthly["unique_id"])
    # y_all = S @ y_bottom for every month.
    wide = f.monthly.pivot(index="unique_id", columns="ds", values="y").fillna(0.0)
    assert ((s @ wide.loc[s.columns]) - wide.loc[s.index]).abs().to_numpy().max() < 1e-9
    assert hierarchy(["a/x/t1", "a/x/t2"]) == {
        "total": ["a/x/t1", "a/x/t2"],
        "a/x": ["a/x/t1", "a/x/t2"],
        "a": ["a/x/t1", "a/x/t2"],
    }


def test_team_level(wh: Path) -> None:
    f = build_series(wh, as_of=AS_OF, include_team=True, cost_column="BilledCost")
    ids = set(f.monthly["unique_id"])
    assert {
        "inference/compute_gpu/search",
        "data_preprocessing/storage/unassigned",
        "operations/labor/sre",
        "inference/compute_gpu",
        "inference",
        "total",
    } <= ids
    assert ys(f.monthly, "inference/compute_gpu") == ys(f.monthly, "inference/compute_gpu/search")


def test_currencies_are_never_mixed(tmp_path: Path) -> None:
    db = tmp_path / "w.duckdb"
    ingest(
        IngestConfig(
            billing=(
                write_focus(
                    tmp_path / "c.csv",
                    [
                        row("2026-01-03", "1"),
                        row("2026-01-03", "2", BillingCurrency="EUR", BillingAccountId="eu"),
                    ],
                ),
            ),
            warehouse=db,
            progress=False,
        )
    )
    # EUR has the most cost: it is built, USD is left out (logged), never added to it nor blocking it.
    f = build_series(db, as_of="2026-02-01")
    assert (f.currency, f.other_currencies) == ("EUR", ("USD",))
    # January's data stops on the 3rd: the partial month, month-to-date.
    assert f.partial.set_index("unique_id").loc["total", "y"] == 2.0
    g = build_series(db, as_of="2026-02-01", currency="usd")
    assert (g.currency, g.other_currencies) == ("USD", ("EUR",))
    assert g.partial.set_index("unique_id").loc["total", "y"] == 1.0
    with pytest.raises(InputError, match="--currency"):
        build_series(db, currency="GBP")


def test_labor_in_another_currency_does_not_block(tmp_path: Path) -> None:
    db = tmp_path / "w.duckdb"
    labor = tmp_path / "labor.csv"
    labor.write_text(
        "month,phase,team,hours,hourly_rate,currency\n2026-01,operations,sre,1,5,eur\n"
    )
    ingest(
        IngestConfig(
            billing=(write_focus(tmp_path / "c.csv", [row("2026-01-03", "100")]),),
            labor=labor,
            warehouse=db,
            progress=False,
        )
    )
    f = build_series(db, as_of="2026-01-04")
    assert (f.currency, f.other_currencies) == ("USD", ("EUR",))
    assert f.partial.set_index("unique_id").loc["total", "y"] == 100.0


def test_missing_warehouse_is_bad_input(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="phasecast ingest"):
        build_series(tmp_path / "none.duckdb")


def test_cli_series(wh: Path, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from pipeline.cli import cli

    res = CliRunner().invoke(
        cli,
        [
            "--home",
            str(tmp_path),
            "series",
            "--warehouse",
            str(wh),
            "--as-of",
            "2026-04-11",
            "--output",
            str(tmp_path / "out"),
            "--cost",
            "BilledCost",
        ],
    )
    assert res.exit_code == 0, res.output
    m = pd.read_csv(tmp_path / "out" / "monthly.csv")
    assert list(m.columns[:3]) == ["unique_id", "ds", "y"]
    assert m[m["unique_id"] == "total"]["y"].tolist() == [10.0, 203.0, 5.0]
    assert (tmp_path / "out" / "partial.csv").exists() and (tmp_path / "out" / "daily.csv").exists()
