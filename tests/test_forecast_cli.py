"""``phasecast forecast`` end to end (click's CliRunner) and the job on awkward series."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from pipeline.cli import cli
from pipeline.forecast import ForecastConfig, run_forecast
from tests.benchmarks.forecast_bench import make_collection

FAST = ("analytic_baseline", "seasonal_naive", "theta", "ensemble")


def awkward() -> pd.DataFrame:
    """Lengths from 3 months to 20 years; zeros, negatives (credits), a constant."""
    end = pd.Timestamp("2026-10-01")
    rng = np.random.default_rng(0)

    def s(uid, y):
        return pd.DataFrame(
            {"unique_id": uid, "ds": pd.date_range(end=end, periods=len(y), freq="MS"), "y": y}
        )

    return pd.concat(
        [
            s("three", [10.0, 12.0, 11.0]),
            s("zeros", np.zeros(30)),
            s("constant", np.full(40, 250.0)),
            s("credits", rng.normal(-50, 30, 36)),
            s(
                "decades",
                1000
                + np.arange(240) * 3
                + 100 * np.sin(np.arange(240) * np.pi / 6)
                + rng.normal(0, 20, 240),
            ),
            s("sparse", np.where(rng.random(48) < 0.6, 0.0, rng.gamma(2, 50, 48))),
        ],
        ignore_index=True,
    )


def check_table(fc: pd.DataFrame, n_series: int, h: int) -> None:
    assert list(fc.columns[:8]) == [
        "unique_id",
        "ds",
        "model",
        "mean",
        "lo_80",
        "hi_80",
        "lo_95",
        "hi_95",
    ]
    assert len(fc) == n_series * h
    assert fc.groupby("unique_id").size().eq(h).all()
    assert fc[["mean", "lo_80", "hi_80", "lo_95", "hi_95"]].notna().all().all()
    assert (
        (fc["lo_95"] <= fc["lo_80"])
        & (fc["lo_80"] <= fc["mean"])
        & (fc["mean"] <= fc["hi_80"])
        & (fc["hi_80"] <= fc["hi_95"])
    ).all()


def test_cli_end_to_end(tmp_path):
    hist, _ = make_collection(12, seed=2, min_len=24, max_len=60)
    src = tmp_path / "series.csv"
    hist.to_csv(src, index=False)
    out = tmp_path / "out" / "fc.parquet"
    args = [
        "forecast",
        "--series",
        str(src),
        "--horizon",
        "6",
        "--level",
        "80",
        "--level",
        "95",
        "--output",
        str(out),
        "--quiet",
    ]
    for m in FAST:
        args += ["--models", m]
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 0, r.output
    fc = pd.read_parquet(out)
    check_table(fc, 12, 6)
    assert (fc["ds"].min() == pd.Timestamp("2026-11-01")) and (
        fc["ds"].max() == pd.Timestamp("2027-04-01")
    )
    metrics = pd.read_csv(tmp_path / "out" / "fc.metrics.csv")
    assert {"MASE", "sMAPE", "WAPE", "pinball", "coverage_80", "MSIS_95"} <= set(metrics.columns)
    assert set(metrics.loc[metrics["scope"] == "model", "model"]) == set(FAST)
    sel = pd.read_csv(tmp_path / "out" / "fc.selection.csv")
    assert set(sel["model"]) <= set(FAST) and len(sel) == 12
    assert "backtest accuracy" in r.output


def test_cli_bad_file_exit_2_names_file_row_column(tmp_path):
    src = tmp_path / "bad.csv"
    src.write_text("unique_id,ds,y\na,2024-01-01,1\na,2024-02-01,oops\na,2024-03-15,3\n")
    r = CliRunner().invoke(
        cli,
        ["forecast", "--series", str(src), "--horizon", "3", "--output", str(tmp_path / "o.csv")],
    )
    assert r.exit_code == 2
    # "data row": the header is not counted (an editor calls data row 2 line 3)
    assert "bad.csv, data row 2, column 'y'" in r.output and "oops" in r.output
    assert "data row 3, column 'ds'" in r.output
    src.write_text("id,month,value\na,2024-01-01,1\n")
    r = CliRunner().invoke(
        cli,
        ["forecast", "--series", str(src), "--horizon", "3", "--output", str(tmp_path / "o.csv")],
    )
    assert r.exit_code == 2 and "missing column" in r.output


def test_cli_gaps_error_and_fill(tmp_path):
    df = pd.DataFrame(
        {
            "unique_id": "a",
            "ds": pd.date_range("2024-01-01", periods=20, freq="MS"),
            "y": np.arange(20.0),
        }
    )
    df = df.drop(index=[7, 8])
    src = tmp_path / "gap.csv"
    df.to_csv(src, index=False)
    base = [
        "forecast",
        "--series",
        str(src),
        "--horizon",
        "3",
        "--output",
        str(tmp_path / "o.csv"),
        "--quiet",
        "--models",
        "seasonal_naive",
    ]
    r = CliRunner().invoke(cli, [*base, "--gaps", "error"])
    assert r.exit_code == 2 and "months missing" in r.output
    r = CliRunner().invoke(cli, [*base, "--gaps", "interpolate"])
    assert r.exit_code == 0, r.output
    assert len(pd.read_csv(tmp_path / "o.csv")) == 3


def test_awkward_series():
    df = awkward()
    res = run_forecast(df, ForecastConfig(horizon=18, models=FAST, n_paths=100), progress=False)
    fc = res.forecast
    check_table(fc, 6, 18)
    by = fc.set_index("unique_id")
    assert (by.loc["zeros", ["mean", "lo_95"]] == 0).all().all()
    assert (by.loc["zeros", "hi_95"] < 1).all()  # 5 % of the fallback scale 1: a nominal band
    assert by.loc["constant", "mean"].to_numpy() == pytest.approx(250.0)
    assert (
        fc[fc["unique_id"] != "credits"]["lo_95"] >= 0
    ).all()  # never-negative histories stay >= 0
    assert (by.loc["credits", "mean"] < 0).all()  # credits may forecast below zero
    sel = res.selection.set_index("unique_id")
    assert "no backtest" in sel.loc["three", "reason"]
    assert res.paths.shape == (6, 100, 18)


def test_failed_model_is_visible(monkeypatch):
    from pipeline import models
    from pipeline.models.naive import SeasonalNaive

    class Exploding(SeasonalNaive):
        name = "exploding"

        def _fit(self, df):
            raise FloatingPointError("boom")

    monkeypatch.setitem(models.REGISTRY, "exploding", Exploding)
    hist, _ = make_collection(5, seed=4, min_len=30, max_len=40)
    res = run_forecast(
        hist, ForecastConfig(horizon=4, models=("exploding",), n_paths=10), progress=False
    )
    assert any("exploding failed" in str(e["reason"]) for e in res.events)
    bt = res.backtest
    assert bt.loc[bt["model"] == "exploding", "fallback"].all()
    picked = res.selection.set_index("unique_id")["model"]
    fc = res.forecast
    for uid, m in picked.items():
        if m == "exploding":
            assert (fc.loc[fc["unique_id"] == uid, "model"] == "analytic_baseline(fallback)").all()


def test_cli_text_in_y_is_an_error_and_an_empty_cell_a_gap_said_out_loud(tmp_path, caplog):
    """'n/a' (or NaN, null) in y is text: exit 2 naming the row, never read as a missing month
    and so as 0; an empty cell (or R's NA) inside a series is the gap --gaps says, and the log
    names it."""
    rows = [f"a,2024-{m:02d}-01,{10 + m}" for m in range(1, 13)]
    out = str(tmp_path / "o.csv")
    base = ["forecast", "--horizon", "3", "--output", out, "--quiet", "--models", "seasonal_naive"]
    for text in ("n/a", "NaN", "null"):
        src = tmp_path / "na.csv"
        src.write_text("\n".join(["unique_id,ds,y", *rows[:5], f"a,2024-06-01,{text}", *rows[6:]]))
        r = CliRunner().invoke(cli, [*base, "--series", str(src)])
        assert r.exit_code == 2, (text, r.output)
        assert "na.csv, data row 6, column 'y'" in r.output and repr(text) in r.output, r.output
    for missing in ("", "NA"):
        src = tmp_path / "empty.csv"
        src.write_text(
            "\n".join(["unique_id,ds,y", *rows[:5], f"a,2024-06-01,{missing}", *rows[6:]])
        )
        caplog.clear()
        with caplog.at_level("WARNING", logger="phasecast.forecast"):
            r = CliRunner().invoke(cli, [*base, "--series", str(src)])
        assert r.exit_code == 0, r.output
        said = " ".join(m.getMessage() for m in caplog.records)
        assert (
            "1 empty (or NA) y cell(s) inside a series, read as 0 (--gaps zero): "
            "a 2024-06 (data row 6)"
        ) in said, said
