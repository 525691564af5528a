"""pipeline.tracking on tiny frames and a real temporary SQLite store (no mocks)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from pipeline.config import Paths
from pipeline.errors import EXIT_RUN_FAILED
from pipeline.models import make_model
from pipeline.tracking import (
    ModelToLog,
    Tracker,
    TrackingConfig,
    fingerprint,
    read_state,
    same_frame,
    write_state,
)


def tiny(n_months: int = 30, seed: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    ds = pd.date_range("2024-01-01", periods=n_months, freq="MS")
    parts = []
    for uid, level in (("a", 100.0), ("b", 40.0)):
        season = 1 + 0.2 * np.sin(2 * np.pi * np.arange(n_months) / 12)
        y = level * season * (1 + 0.01 * np.arange(n_months)) + rng.normal(0, 2, n_months)
        parts.append(pd.DataFrame({"unique_id": uid, "ds": ds, "y": y}))
    return pd.concat(parts, ignore_index=True)


def test_tracking_config_default_and_env(tmp_path: Path) -> None:
    paths = Paths(home=tmp_path)
    local = TrackingConfig.for_paths(paths)
    assert local.tracking_uri == f"sqlite:///{(tmp_path / 'mlflow' / 'mlflow.db').resolve()}"
    assert local.artifact_root == paths.artifact_root
    server = TrackingConfig.for_paths(paths, "http://127.0.0.1:5999")
    assert server.tracking_uri == "http://127.0.0.1:5999" and server.artifact_root is None
    other = TrackingConfig.for_paths(paths, "sqlite:////tmp/x.db")
    assert other.artifact_root == paths.artifact_root


@pytest.mark.parametrize(
    ("name", "params"),
    [
        ("analytic_baseline", {}),
        ("seasonal_naive", {}),
        ("lightgbm", {"n_estimators": 20, "max_horizon": 6, "min_data_in_leaf": 5}),
    ],
)
def test_fitted_state_round_trips_to_the_same_forecast(
    tmp_path: Path, name: str, params: dict
) -> None:
    df = tiny()
    model = make_model(name, **params).fit(df)
    expected = model.predict(6, level=(80, 95))
    write_state(model, tmp_path / "state")
    assert not list((tmp_path / "state").glob("*.pkl"))
    restored = read_state(make_model(name, **params), tmp_path / "state")
    ok, why = same_frame(restored.predict(6, level=(80, 95)), expected)
    assert ok, why
    if name == "lightgbm":  # the booster is stored in LightGBM's own text format
        boosters = list((tmp_path / "state").glob("booster_*.txt"))
        assert len(boosters) == 1 and boosters[0].read_text().startswith("tree")


def test_same_frame_sees_the_smallest_difference() -> None:
    a = pd.DataFrame({"x": [1.0, 2.0], "u": ["p", "q"]})
    b = a.copy()
    b.loc[1, "x"] = np.nextafter(2.0, 3.0)
    assert same_frame(a, a.copy())[0]
    assert not same_frame(a, b)[0]


def _item(
    role: str,
    df: pd.DataFrame,
    score: float,
    params: dict,
    as_of: str = "2026-07-15",
    tamper: bool = False,
) -> ModelToLog:
    model = make_model("seasonal_naive", **params).fit(df)
    fc = model.predict(6, level=(80, 95))
    if tamper:  # a forecast that this model does not produce
        fc = fc.assign(mean=fc["mean"] + 1.0)
    conf = {"model": "seasonal_naive", "params": params}
    spec = {
        "role": role,
        "model": "seasonal_naive",
        "params": params,
        "horizon": 6,
        "levels": [80, 95],
        "config_fingerprint": fingerprint(conf),
        "fingerprint": fingerprint({"conf": conf, "as_of": as_of, "t": tamper}),
    }
    return ModelToLog(role=role, spec=spec, series=df, forecast=fc, score=score, fitted=model)


def test_register_decide_both_ways_and_no_duplicates(tmp_path: Path) -> None:
    paths = Paths(home=tmp_path)
    tr = Tracker(TrackingConfig.for_paths(paths))
    df = tiny()
    with tr.run("test", "2026-07-15", {"as_of": "2026-07-15"}):
        champion_scores: dict[int, float] = {}

        def rescore(spec: dict) -> float:  # the champion's configuration on the new windows
            return champion_scores[spec["params"]["season_length"]]

        r1 = tr.decide(
            tr.log_model(_item("snaive", df, 1.0, {"season_length": 12}), "2026-07-15"), {}, rescore
        )
        assert (r1.version, r1.alias) == ("1", "champion") and r1.state == "state"
        assert tr.champion("phasecast-snaive") is None  # decided, not moved: promote() moves it
        tr.promote([r1])
        champion_scores[12] = 1.0
        it2 = _item("snaive", df, 0.8, {"season_length": 6})
        r2 = tr.decide(tr.log_model(it2, "2026-07-15"), it2.spec, rescore)
        assert (r2.version, r2.alias, r2.champion_version, r2.champion_score) == (
            "2",
            "champion",
            "1",
            1.0,
        )
        tr.promote([r2])
        champion_scores[6] = 0.8
        it3 = _item("snaive", df, 0.9, {"season_length": 3})
        r3 = tr.decide(tr.log_model(it3, "2026-07-15"), it3.spec, rescore)
        assert (r3.version, r3.alias, r3.champion_score) == ("3", "challenger", 0.8)
        tr.promote([r3])
        # the same model and data again: the existing version, nothing registered
        again = tr.log_model(_item("snaive", df, 0.9, {"season_length": 3}), "2026-07-15")
        assert again.reused and again.version == "3"
    c = tr.client
    assert len(c.search_model_versions("name = 'phasecast-snaive'")) == 3
    assert str(c.get_model_version_by_alias("phasecast-snaive", "champion").version) == "2"
    assert "challenger" in c.get_model_version("phasecast-snaive", "3").tags["decision"]

    # reproduce: exact for a true version, exit 5 when the logged forecast is not what the model makes
    reproduced, logged, _ = tr.reproduce("phasecast-snaive", version=3)
    assert same_frame(reproduced, logged)[0]
    with tr.run("test", "2026-07-16", {}):
        bad = tr.log_model(
            _item("snaive-bad", df, 1.0, {"season_length": 12}, tamper=True), "2026-07-16"
        )
    # the state check refused to call the tampered forecast reproducible
    assert bad.state == "refit"
    from pipeline.cli import cli

    r = CliRunner().invoke(
        cli, ["--home", str(tmp_path), "reproduce", "--model", "snaive-bad", "--version", "1"]
    )
    assert r.exit_code == EXIT_RUN_FAILED, r.output
    assert "differs" in r.output
    r = CliRunner().invoke(
        cli, ["--home", str(tmp_path), "reproduce", "--model", "snaive", "--alias", "champion"]
    )
    assert r.exit_code == 0, r.output


def test_failed_block_marks_run_failed(tmp_path: Path) -> None:
    tr = Tracker(TrackingConfig.for_paths(Paths(home=tmp_path)))
    with (
        pytest.raises(ZeroDivisionError),
        tr.run("test", "2026-07-15", {"as_of": "2026-07-15"}) as rid,
    ):
        1 / 0  # noqa: B018
    run = tr.client.get_run(rid)
    assert run.info.status == "FAILED" and "ZeroDivisionError" in run.data.tags["error"]
    rid2 = tr.record_failure(
        "test", "2026-07-15", {"as_of": "2026-07-15"}, {"a": {"b": 1}}, ValueError("bad file")
    )
    run2 = tr.client.get_run(rid2)
    assert run2.info.status == "FAILED" and run2.data.params["a.b"] == "1"


def test_a_refit_uses_the_forms_the_run_fitted_with() -> None:
    """The run picks a series' SARIMA order and ETS form on its earliest backtest window and keeps
    them on the longer histories; a stored version re-fitted from scratch searched again and could
    pick another. With the forms written in its spec (tuples kept through JSON) the re-fit makes
    the same fit, without a search, and the same forecast to the last digit."""
    import json

    from pipeline.flavor import decode_forms, encode_forms
    from pipeline.models.stats import reset_form_cache

    rng = np.random.default_rng(11)
    ds = pd.date_range("2022-01-01", periods=40, freq="MS")
    y = 1000 + np.cumsum(rng.normal(5, 30, 40)) + 80 * np.sin(np.arange(40) / 12 * 2 * np.pi)
    df = pd.DataFrame({"unique_id": "s", "ds": ds, "y": y})
    for name in ("sarimax", "ets", "ensemble"):
        reset_form_cache()
        make_model(name).fit(df.iloc[:26])  # the earliest window: the search
        run = make_model(name).fit(df)  # the final fit: the form reused
        forms = decode_forms(json.loads(json.dumps(encode_forms(run.forms_))))
        assert forms == run.forms_, name
        reset_form_cache()
        refit = make_model(name)
        refit.given_forms_ = forms
        refit.fit(df)
        assert refit.forms_ == run.forms_, name
        if name != "ensemble":  # fitted with the given form, no search
            assert not any(st.selected for st in refit.states_.values()), name
        a, b = run.predict(18, level=(80,)), refit.predict(18, level=(80,))
        pd.testing.assert_frame_equal(a, b, check_exact=True)
    reset_form_cache()


def test_a_lightgbm_version_stored_before_the_season_features_still_forecasts(
    tmp_path: Path, monkeypatch
) -> None:
    """A version written by the code before the season features (its booster trained without
    them, no ``y_by_month_`` in its state) restores and forecasts as it did."""
    from pipeline.models.gbm import LightGBMForecaster

    params = {"n_estimators": 20, "max_horizon": 6, "min_data_in_leaf": 5, "objective": "l2"}
    with monkeypatch.context() as m:
        m.setattr(LightGBMForecaster, "_season_features", lambda self, state, steps: {})
        old = make_model("lightgbm", **params).fit(tiny())
        del old.y_by_month_, old.year_mean_  # what the old code never set
        expected = old.predict(6, level=(80, 95))
        write_state(old, tmp_path / "state")
    restored = read_state(make_model("lightgbm", **params), tmp_path / "state")
    ok, why = same_frame(restored.predict(6, level=(80, 95)), expected)
    assert ok, why


def test_a_stored_spec_without_a_later_parameter_gets_the_value_it_had() -> None:
    """LightGBM's objective became a parameter (default l1) after versions were stored with l2:
    their specs, without the name, rebuild with l2; a spec that names it keeps its own."""
    from pipeline.flavor import encode_params, spec_params

    old = {"model": "lightgbm", "params": encode_params({"n_estimators": 20})}
    assert spec_params(old, {})["objective"] == "l2"
    assert spec_params(old, {})["n_estimators"] == 20
    new = {"model": "lightgbm", "params": encode_params({"objective": "l1"})}
    assert spec_params(new, {})["objective"] == "l1"
    assert "objective" not in spec_params({"model": "ets", "params": {}}, {})


def test_a_refresh_says_whether_the_data_is_newer(tmp_path: Path) -> None:
    """Same configuration: the later version takes over as a refresh, and its decision says
    "newer data" only when the series differ (a later as-of on the same data says so)."""
    tr = Tracker(TrackingConfig.for_paths(Paths(home=tmp_path)))
    df = tiny()

    def logged(as_of: str, sha: str | None):  # type: ignore[no-untyped-def]
        it = _item("snaive", df, 1.0, {"season_length": 12}, as_of=as_of)
        it.spec.update(as_of=as_of, series_sha256=sha)
        return it, tr.log_model(it, as_of)

    with tr.run("test", "2026-07-15", {}):
        it, rec = logged("2026-07-15", "aaa")
        tr.promote([tr.decide(rec, it.spec, lambda spec: None)])
        it, rec = logged("2026-08-15", "aaa")
        same = tr.decide(rec, it.spec, lambda spec: None)
        assert same.alias == "champion"
        assert "the same data as of a later day" in same.decision
        assert "newer data" not in same.decision
        tr.promote([same])
        it, rec = logged("2026-09-15", "bbb")
        newer = tr.decide(rec, it.spec, lambda spec: None)
        assert "refresh (same model and configuration, newer data;" in newer.decision
        tr.promote([newer])
        it, rec = logged("2026-10-15", None)  # no checksum recorded: never claimed the same
        unknown = tr.decide(rec, it.spec, lambda spec: None)
        assert "newer data" in unknown.decision and "same data" not in unknown.decision
