"""Traffic reaches the inference forecast: the unit-cost model, the driver frames, the job."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from features.drivers import driven_ids, extend_driver, plan_unit_change, traffic_frames
from pipeline.forecast import ForecastConfig, run_forecast
from pipeline.models.unit_cost import UnitCost
from pipeline.plan import Plan, PriceBook, Quantization, TrafficPlan

MONTHS = pd.date_range("2024-01-01", periods=24, freq="MS")


def _frame() -> tuple[pd.DataFrame, pd.DataFrame]:
    """``a``: cost = 2.5 x requests exactly; ``b``: no driver (zeros)."""
    d = 1000.0 + 40.0 * np.arange(24) + 300.0 * (MONTHS.month == 11)
    a = pd.DataFrame({"unique_id": "a", "ds": MONTHS, "y": 2.5 * d, "requests": d})
    b = pd.DataFrame({"unique_id": "b", "ds": MONTHS, "y": 100.0 + np.arange(24), "requests": 0.0})
    future = pd.DataFrame(
        {
            "unique_id": "a",
            "ds": pd.date_range("2026-01-01", periods=3, freq="MS"),
            "requests": [2000.0, 3000.0, 2500.0],
        }
    )
    return pd.concat([a, b], ignore_index=True), future


def test_unit_cost_prices_the_planned_driver_at_the_billed_unit_cost() -> None:
    hist, future = _frame()
    m = UnitCost().fit(hist)
    fc = m.predict(5, X_future=future).set_index(["unique_id", "ds"])["mean"]
    # a: 2.5 per request times the plan's requests; months 4-5 have no plan: the driver a year
    # before (2025-04: 1000 + 40 x 15 = 1600) grown by the last year over the one before
    d = 1000.0 + 40.0 * np.arange(24) + 300.0 * (MONTHS.month == 11)
    known = np.concatenate([d, [2000.0, 3000.0, 2500.0]])
    growth = known[-12:].sum() / known[-24:-12].sum()
    want = [2000.0, 3000.0, 2500.0, (1000 + 40 * 15) * growth, (1000 + 40 * 16) * growth]
    np.testing.assert_allclose(fc.loc["a"].to_numpy(), 2.5 * np.array(want), rtol=1e-12)
    # b has no driver: the run-rate (mean of its last three months), and it says so
    np.testing.assert_allclose(fc.loc["b"].to_numpy(), np.mean([121.0, 122.0, 123.0]))
    assert m.undriven_ == {"b"}


def test_extend_driver_fills_a_year_back_then_the_last_value() -> None:
    known = pd.Series([10.0, 20.0], index=pd.DatetimeIndex(["2025-01-01", "2025-02-01"]))
    months = pd.date_range("2025-03-01", periods=12, freq="MS")
    out = extend_driver(known, months)
    assert out[:10].tolist() == [20.0] * 10  # nothing a year before: the last value
    assert out[10:].tolist() == [10.0, 20.0]  # 2026-01 and 2026-02: a year before, no growth known


def _plan(quant_start: dt.date | None = None) -> Plan:
    book = PriceBook(gpu_hour={"A10": {"on_demand": 2.0}})
    months = {pd.Timestamp("2026-01-01"): 3.0e6, pd.Timestamp("2026-02-01"): 2.0e6}
    q = (Quantization(quant_start, 0.5),) if quant_start else ()
    return Plan(
        price_book=book,
        traffic=TrafficPlan(
            gpu="A10",
            gpu_hours_per_1k_requests=0.1,
            months=months,
            pricing="on_demand",
            quantization=q,
        ),
    )


def test_plan_unit_change_is_day_weighted() -> None:
    # half the GPU-hours per request from 2026-02-15: February pays 14 days full, 14 days half
    f = plan_unit_change(
        _plan(dt.date(2026, 2, 15)), pd.date_range("2026-01-01", periods=3, freq="MS"), MONTHS[-1]
    )
    np.testing.assert_allclose(f, [1.0, (14 + 14 * 0.5) / 28, 0.5])


def test_traffic_frames_by_hand() -> None:
    ids = ["inference", "inference/compute_gpu", "inference/network", "pretraining/compute_gpu"]
    gpu = 300.0 + np.arange(24)
    net = 100.0 + 0.0 * np.arange(24)
    ys = {"inference/compute_gpu": gpu, "inference/network": net}
    ys["inference"] = gpu + net
    ys["pretraining/compute_gpu"] = np.full(24, 50.0)
    monthly = pd.concat(
        [pd.DataFrame({"unique_id": u, "ds": MONTHS, "y": ys[u]}) for u in ids], ignore_index=True
    )
    usage = pd.Series(1.0e6 + 1e4 * np.arange(24), index=MONTHS)
    hist, fut = traffic_frames(monthly, usage, _plan(dt.date(2026, 2, 15)), horizon=3)
    assert fut is not None
    by = hist.set_index(["unique_id", "ds"])["requests"]
    # history: the month's requests on the inference series, no driver elsewhere
    assert by.loc["inference/network"].tolist() == usage.tolist()
    assert by.loc["inference/compute_gpu"].tolist() == usage.tolist()
    assert (by.loc["pretraining/compute_gpu"] == 0).all()
    f = fut.set_index(["unique_id", "ds"])["requests"]
    feb = (14 + 14 * 0.5) / 28
    # the plan's requests; GPU categories times the change in GPU cost per request
    assert f.loc["inference/network"].tolist()[:2] == [3.0e6, 2.0e6]
    np.testing.assert_allclose(f.loc["inference/compute_gpu"].to_numpy()[:2], [3.0e6, 2.0e6 * feb])
    # the phase: weighted by the GPU share of its last three months
    share = gpu[-3:].sum() / (gpu[-3:].sum() + net[-3:].sum())
    np.testing.assert_allclose(f.loc["inference"].to_numpy()[1], 2.0e6 * (1 + share * (feb - 1)))
    # March has no plan: the driver a year before, grown by the last year's change
    assert "pretraining/compute_gpu" not in f.index.get_level_values(0)
    assert driven_ids(hist) == ["inference", "inference/compute_gpu", "inference/network"]
    # no traffic plan, or no requests in the usage: nothing changes
    assert traffic_frames(monthly, usage, None, 3)[1] is None
    assert traffic_frames(monthly, usage.iloc[:0], _plan(), 3)[1] is None


@pytest.fixture(scope="module")
def hierarchy() -> tuple[pd.DataFrame, pd.DataFrame]:
    """Inference cost = 0.2 per request with promotions in the traffic; fine-tuning without any."""
    rng = np.random.default_rng(3)
    months = pd.date_range("2023-01-01", periods=36, freq="MS")
    req = 1e6 * 1.02 ** np.arange(36) * np.where(months.month == 11, 1.6, 1.0)
    gpu = 0.2 * req * np.exp(rng.normal(0, 0.01, 36))
    ft = 5e4 + rng.normal(0, 2e3, 36)
    ys = {"inference/compute_gpu": gpu, "fine_tuning/compute_gpu": ft}
    ys["inference"] = gpu
    ys["fine_tuning"] = ft
    ys["total"] = gpu + ft
    drv = {u: (req if u.startswith("inference") else np.zeros(36)) for u in ys}
    hist = pd.concat(
        [
            pd.DataFrame({"unique_id": u, "ds": months, "y": v, "requests": drv[u]})
            for u, v in ys.items()
        ],
        ignore_index=True,
    )
    fut_m = pd.date_range("2026-01-01", periods=12, freq="MS")
    plan_req = 1e6 * 1.02 ** np.arange(36, 48) * np.where(fut_m.month == 11, 1.6, 1.0)
    future = pd.concat(
        [
            pd.DataFrame({"unique_id": u, "ds": fut_m, "requests": plan_req})
            for u in ("inference", "inference/compute_gpu")
        ],
        ignore_index=True,
    )
    return hist, future


def test_planned_promotion_reaches_the_published_forecast(hierarchy) -> None:
    hist, future = hierarchy
    cfg = ForecastConfig(horizon=12, reconcile=True, n_paths=300)
    res = run_forecast(hist, cfg, X_future=future, progress=False)
    sel = res.selection.set_index("unique_id")["model"]
    # the unit-cost model never stands for a series without a driver
    assert sel["fine_tuning/compute_gpu"] != "unit_cost"
    assert sel["total"] != "unit_cost"
    fc = res.forecast.set_index(["unique_id", "ds"])
    inf = fc.loc["inference/compute_gpu"]
    want = 0.2 * future[future.unique_id == "inference"].set_index("ds")["requests"]
    # Double 11 at its planned traffic, within 5 %, and every month within 5 % of cost x traffic
    np.testing.assert_allclose(inf["mean"].to_numpy(), want.to_numpy(), rtol=0.05)
    assert inf.loc["2026-11-01", "mean"] > 1.4 * inf.loc["2026-10-01", "mean"]
    # the plan's own error widens the band (the cost is within 1 % of 0.2 x traffic, so the
    # backtest alone would give a band of a few %): log-sd 6 % common to the months and 3 % month
    # by month, 6.7 % in all at every horizon: an 80 % band about 2 x 1.28 x 6.7 % = 17 % wide from
    # month 1, less what reconciliation takes off, and about as wide at month 12
    rel = (inf["hi_80"] - inf["lo_80"]) / inf["mean"]
    assert 0.10 < rel.iloc[0] < 0.30
    assert 0.10 < rel.iloc[-1] < 0.30
    assert rel.iloc[-1] < 1.5 * rel.iloc[0]
    # without the future drivers the same job has no traffic to read: no unit_cost in the run
    res0 = run_forecast(hist.drop(columns=["requests"]), cfg, progress=False)
    assert "unit_cost" not in set(res0.all_forecasts["model"])


def test_monthly_run_reads_the_traffic_plan_and_reproduces_it(home_copy) -> None:
    """The monthly job on the synth sample (usage with requests, a plan with traffic): the inference
    series carry the requests, the unit-cost version in the registry keeps the plan's requests and
    re-forecasts exactly; the same plan without its traffic section leaves `unit_cost` out."""
    import yaml

    from pipeline.monthly import MonthlyConfig, run_monthly
    from pipeline.series import monthly_usage
    from pipeline.tracking import Tracker, TrackingConfig, same_frame

    paths = home_copy
    fc = ForecastConfig(
        horizon=6,
        models=("seasonal_naive", "unit_cost", "sarimax"),
        n_windows=2,
        n_paths=200,
        reconcile=True,
    )

    def run(plan):
        return run_monthly(
            MonthlyConfig(
                as_of=dt.date(2026, 11, 15),
                paths=paths,
                tracking=TrackingConfig.for_paths(paths),
                forecast=fc,
                progress=False,
                plan=plan,
                report=False,
            )
        )

    res = run(paths.sample / "plan.yaml")
    out = res.output_dir
    allf = pd.read_parquet(out / "all_forecasts.parquet")
    uc = allf[(allf["model"] == "unit_cost") & (allf["unique_id"] == "inference/compute_gpu")]
    # an independent computation: the last three months' cost per request x the plan's requests,
    # times the plan's change in GPU cost per request
    series = pd.read_parquet(out / "series.parquet")
    y = series[series["unique_id"] == "inference/compute_gpu"].sort_values("ds")
    req = monthly_usage(paths.warehouse, "requests", "inference", "2026-11-01")
    unit = y["y"].iloc[-3:].sum() / req.reindex(pd.DatetimeIndex(y["ds"].iloc[-3:])).sum()
    from pipeline.plan import load_plan

    plan = load_plan(paths.sample / "plan.yaml")
    months = pd.date_range("2026-11-01", periods=6, freq="MS")
    planned = np.array([plan.traffic.months[m] for m in months])
    f = plan_unit_change(plan, months, pd.Timestamp("2026-10-01"))
    np.testing.assert_allclose(uc["mean"].to_numpy(), unit * planned * f, rtol=1e-9)
    # the registered version re-forecasts from the plan's requests it was logged with
    reproduced, logged, _ = Tracker(TrackingConfig.for_paths(paths)).reproduce(
        "phasecast-unit_cost", version=1
    )
    ok, why = same_frame(reproduced, logged)
    assert ok, why
    # SARIMAX (with the requests as its driver) is stored as a re-fit: it re-fits with the orders
    # the run fitted it with, and re-forecasts exactly
    reproduced, logged, mv = Tracker(TrackingConfig.for_paths(paths)).reproduce(
        "phasecast-sarimax", version=1
    )
    assert mv.tags.get("state") == "refit"
    ok, why = same_frame(reproduced, logged)
    assert ok, why
    # no traffic section: no driver, no unit_cost, the job runs as before
    raw = yaml.safe_load((paths.sample / "plan.yaml").read_text())
    raw.pop("traffic")
    no_traffic = paths.home / "plan-no-traffic.yaml"
    no_traffic.write_text(yaml.safe_dump(raw))
    res2 = run(no_traffic)  # the same as-of again: its folder is replaced
    allf2 = pd.read_parquet(res2.output_dir / "all_forecasts.parquet")
    assert "unit_cost" not in set(allf2["model"])


def test_series_and_forecast_commands_carry_the_traffic(home_copy, tmp_path) -> None:
    """`phasecast series` writes the month's requests on the inference series; `forecast --series
    --plan` turns them into the monthly run's driver (unit_cost runs); without `--plan` it drops
    them, as a run without a plan has none."""
    from click.testing import CliRunner

    from pipeline.cli import cli as phasecast
    from pipeline.series import monthly_usage

    paths = home_copy

    def cli(*args: str):
        r = CliRunner().invoke(phasecast, ["--home", str(paths.home), *args])
        assert r.exit_code == 0, r.output
        return r

    cli("series", "--as-of", "2026-11-15", "--output", str(tmp_path / "s"))
    df = pd.read_csv(tmp_path / "s" / "monthly.csv", parse_dates=["ds"])
    req = monthly_usage(paths.warehouse, "requests", "inference", "2026-11-01")
    inf = df[df["unique_id"] == "inference/compute_gpu"].set_index("ds")["requests"]
    np.testing.assert_allclose(inf.to_numpy(), req.reindex(inf.index).to_numpy())
    assert (df.loc[~df["unique_id"].str.startswith("inference"), "requests"] == 0).all()
    common = ["--series", str(tmp_path / "s" / "monthly.csv"), "--horizon", "3"]
    common += ["--models", "seasonal_naive", "--models", "unit_cost", "--quiet"]
    cli(
        "forecast",
        *common,
        "--plan",
        str(paths.sample / "plan.yaml"),
        "--output",
        str(tmp_path / "a.csv"),
    )
    m = pd.read_csv(tmp_path / "a.metrics.csv")
    assert "unit_cost" in set(m["model"])
    cli("forecast", *common, "--output", str(tmp_path / "b.csv"))
    assert "unit_cost" not in set(pd.read_csv(tmp_path / "b.metrics.csv")["model"])


def test_a_month_given_twice_in_the_traffic_plan_is_refused(tmp_path) -> None:
    """YAML keeps the later of two equal keys silently; a plan (or scenario) file may not."""
    from pipeline.errors import InputError
    from pipeline.plan import load_plan

    p = tmp_path / "plan.yaml"
    p.write_text(
        "price_book:\n  gpu_hour: {A10: {committed: 1.0}}\n"
        "traffic:\n  gpu: A10\n  gpu_hours_per_1k_requests: 0.05\n  months:\n"
        "    2027-01: 1000\n    2027-02: 2000\n    2027-02: 3000\n"
    )
    with pytest.raises(InputError) as e:
        load_plan(p)
    msg = str(e.value)
    assert str(p) in msg and "'2027-02' twice" in msg and "line 8" in msg and "line 9" in msg
    p.write_text(p.read_text().replace("    2027-02: 3000\n", "    2027-03: 3000\n"))
    assert len(load_plan(p).traffic.months) == 3


def test_driver_error_is_a_level_common_to_the_months() -> None:
    """A planned driver's relative error: mean 1 in every month, the same spread at month 1 and
    month 18 (a plan's level is no better known next month than next year), and mostly common to a
    path's months (correlation 1 / (1 + 0.5^2) = 0.8 between any two months)."""
    from pipeline.coherence import DRIVER_MONTHLY, driver_error

    f = driver_error(18, 0.06, 20000, np.random.default_rng(0))
    np.testing.assert_allclose(f.mean(axis=0), 1.0, atol=1e-12)
    sd = np.log(f).std(axis=0)
    np.testing.assert_allclose(sd, 0.06 * np.sqrt(1 + DRIVER_MONTHLY**2), rtol=0.03)
    r = np.corrcoef(np.log(f[:, 0]), np.log(f[:, 17]))[0, 1]
    assert abs(r - 1 / (1 + DRIVER_MONTHLY**2)) < 0.02
