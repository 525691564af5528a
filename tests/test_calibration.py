"""Does ``p_overrun`` mean what it says? Generated histories with known futures, budgets at random
quantiles, flags re-computed at several points of the period, compared with what happened.

``phasecast calibrate --series 60`` prints the same table for a larger sample.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipeline.calibration import (
    CalibrationConfig,
    calibration_summary,
    precision_recall,
    reliability_table,
    simulate_calibration,
    simulate_series,
)


def test_reliability_table_by_hand() -> None:
    p = np.array([0.05, 0.05, 0.15, 0.55, 0.6, 0.95, 1.0, 1.0])
    y = np.array([0, 1, 0, 1, 0, 1, 1, 1], dtype=bool)
    t = reliability_table(p, y, bins=(0, 0.1, 0.5, 0.9, 1.0)).set_index("bin")
    assert t["count"].tolist() == [2, 1, 2, 3]
    assert t["observed_rate"].tolist() == [0.5, 0.0, 0.5, 1.0]
    assert t.loc["[0.90, 1.00]", "mean_p"] == pytest.approx((0.95 + 1 + 1) / 3)
    prec, rec = precision_recall(p >= 0.5, y)
    assert prec == pytest.approx(4 / 5) and rec == pytest.approx(4 / 5)


def test_generated_series_are_whole_months_of_positive_days() -> None:
    s = simulate_series(np.random.default_rng(0), 5, start="2024-01-01")
    assert s.index[0] == pd.Timestamp("2024-01-01") and s.index[-1] == pd.Timestamp("2024-05-31")
    assert (s > 0).all() and len(s) == 31 + 29 + 31 + 30 + 31


def test_calibration_small_sample() -> None:
    lines = simulate_calibration(
        CalibrationConfig(n_series=6, n_paths=200, checkpoints=((0, 0), (1, 15)))
    )
    assert set(lines.columns) >= {"p_overrun", "status", "overran", "checkpoint", "budget_quantile"}
    # at the start of the quarter nothing new is known: p_overrun is about 1 - the budget's quantile
    start = lines[lines.checkpoint == "m1d0"]
    assert len(start) == 6 * 4
    assert np.corrcoef(start["p_overrun"], 1 - start["budget_quantile"])[0, 1] > 0.8
    s = calibration_summary(lines)
    assert s["reliability"]["count"].sum() == len(lines) - s["already_over_budget"]


@pytest.mark.slow
def test_p_overrun_is_calibrated_and_at_risk_is_precise() -> None:
    """60 generated histories x 4 budget lines x 6 checkpoints (1,140 line checks, about a minute)."""
    lines = simulate_calibration(CalibrationConfig(n_series=60, n_paths=400))
    s = calibration_summary(lines)
    rel = s["reliability"]
    print("\n" + rel.to_string(index=False))
    print(f"precision {s['precision']:.3f} recall {s['recall']:.3f} brier {s['brier']:.4f}")
    print(s["by_checkpoint"].to_string(index=False))
    filled = rel[rel["count"] >= 40]
    # every well-filled bin: the observed overrun rate is within 0.15 of the predicted probability
    assert (abs(filled["observed_rate"] - filled["mean_p"]) < 0.15).all()
    assert s["brier"] < 0.16
    # at_risk over all checkpoints: the aim is 0.8; before any of the period is known the budget-time
    # forecast is all there is, and a calibrated p cannot do much better than 0.75 there
    assert s["precision"] >= 0.75 and s["recall"] >= 0.75
    later = s["by_checkpoint"].set_index("checkpoint").loc[["m2d10", "m3d10", "m3d20"]]
    assert (later["precision"] >= 0.8).all() and (later["recall"] >= 0.8).all()


def test_calibrate_cli_names_what_it_measured_and_refuses_no_series(tmp_path) -> None:
    """`--series 0` was an IndexError traceback (exit 1); the table now says which paths it
    measured (the default is ETS's own, not what run-monthly publishes) and what m1d0 means."""
    from click.testing import CliRunner

    from pipeline.cli import cli

    r = CliRunner().invoke(cli, ["--home", str(tmp_path), "calibrate", "--series", "0"])
    assert r.exit_code == 2 and "--series" in r.output, r.output
    r = CliRunner().invoke(cli, ["--home", str(tmp_path), "calibrate", "--model", "nosuch"])
    assert r.exit_code == 2 and "pass --model pipeline (what run-monthly publishes)" in r.output
    r = CliRunner().invoke(cli, ["--home", str(tmp_path), "calibrate", "--series", "2"])
    assert r.exit_code == 0, r.output
    assert r.output.startswith("p_overrun from the ets model's own paths (run-monthly publishes")
    assert "m1d0: the quarter's first day" in r.output
