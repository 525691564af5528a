"""The HTML report: self-contained, every billing-data string escaped, and really rendered by
headless Chromium (charts drawn, no console errors, no script run), with nothing wider than the
window at 1024 and 1400 px (element widths measured, the appendix opened); screenshots are kept
in tests/artifacts/report-1024.png and report-1400.png (the whole page) and report-first-screen.png."""

from __future__ import annotations

import re
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline.budget import quarter_table
from pipeline.flags import flag_budgets
from pipeline.report import fan_bands, write_report
from tests.test_budget import make_history, make_paths

EVIL = "<script>alert(1)</script>"
ARTIFACTS = Path(__file__).parent / "artifacts"


def _metrics() -> pd.DataFrame:
    rows = []
    for model, mase, c80, c95 in (
        ("analytic_baseline", 1.31, 0.62, 0.81),
        ("ets", 0.74, 0.79, 0.94),
        ("ensemble", 0.69, 0.82, 0.96),
        (EVIL, 0.9, 0.5, 0.7),
    ):
        rows.append(
            {
                "scope": "model",
                "model": model,
                "MASE": mase,
                "MASE_cost": mase / 2,
                "WAPE": mase / 10,
                "sMAPE": mase / 8,
                "pinball": mase / 5,
                "coverage_80": c80,
                "MSIS_80": 4.0,
                "coverage_95": c95,
                "MSIS_95": 6.0,
                "n": 60,
            }
        )
    return pd.DataFrame(rows)


def _changes() -> pd.DataFrame:
    rows = []
    for phase, prev, act, plan, model in (
        ("inference", 300_000.0, 4_000.0, -12_000.0, -81_000.0),
        ("pretraining", 60_000.0, 0.0, 15_000.0, -2_500.0),
    ):
        rows.append(
            {"period": "2027Q1", "phase": phase, "previous_as_of": "2026-12-15",
             "previous_mean": prev, "new_actuals": act, "plan_changes": plan,
             "model_changes": model, "current_mean": prev + act + plan + model}
        )  # fmt: skip
    df = pd.DataFrame(rows)
    total = df.drop(columns=["period", "phase", "previous_as_of"]).sum().to_dict()
    df = pd.concat(
        [pd.DataFrame([{"period": "2027Q1", "phase": "total", "previous_as_of": "2026-12-15",
                        **total}]), df], ignore_index=True,
    )  # fmt: skip
    df["change"] = df["current_mean"] - df["previous_mean"]
    df["change_pct"] = df["change"] / df["previous_mean"]
    return df


def _backtest(hist: pd.DataFrame) -> pd.DataFrame:
    """The selected model's backtest: 8 % off at one month ahead, 20 % at three."""
    rows = []
    for uid in ("total", "inference", "pretraining"):
        for h, miss in ((1, 0.08), (3, 0.2)):
            for k, y in enumerate(hist[hist.unique_id == uid]["y"].tail(4)):
                sign = 1 if k % 2 else -1
                rows.append({"unique_id": uid, "cutoff": pd.Timestamp("2026-01-01"),
                             "ds": pd.Timestamp("2026-06-01"), "h": h, "model": "ensemble",
                             "y": y, "mean": y * (1 + sign * miss)})  # fmt: skip
    return pd.DataFrame(rows)


def build_report(out: Path) -> tuple[Path, int]:
    """A report with every section filled, and billing strings carrying markup."""
    hist = make_history(months=24, start="2025-01-01")
    paths, ids, pds = make_paths(h=6, start="2027-01-01")
    budgets = pd.DataFrame(
        {
            "period": ["2027-01", "2027Q1", "2027Q1"],
            "phase": ["total", "inference", "pretraining"],
            "amount": [125_000.0, 345_000.0, 40_000.0],
            "currency": "USD",
        }
    )
    fr = flag_budgets(budgets, hist, paths, ids, pds, as_of="2027-01-01")
    flags = pd.concat([fr.flags, fr.flags.iloc[[0]].assign(phase=EVIL)], ignore_index=True)
    anomalies = pd.DataFrame(
        {
            "unique_id": [f"inference/{EVIL}"],
            "ds": [pd.Timestamp("2026-11-01")],
            "model": ["ets"],
            "h": [1],
            "y": [150_000.0],
            "mean": [120_000.0],
            "lo_95": [100_000.0],
            "hi_95": [140_000.0],
            "direction": ["above"],
        }
    )
    scen = pd.DataFrame(
        {
            "scenario": [EVIL, "llm-run"],
            "period": "2027Q1",
            "phase": ["total", "pretraining"],
            "base_mean": [1e6, 2e5],
            "base_p50": [987_654.0, 2e5],
            "scenario_mean": [1.1e6, 3.78176e5],
            "scenario_p50": [1_087_654.0, 3.78176e5],
            "scenario_p80": [1.2e6, 4e5],
            "delta_mean": [1e5, 1.78176e5],
            "delta_pct": [0.1, 0.89],
            "scenario_recommended": [1.2e6, 4e5],
            "plan_base": [9e5, 2e5],
            "plan_scenario": [1e6, 3.78176e5],
        }
    )
    path = write_report(
        out,
        history=hist,
        fan=fan_bands(paths, ids, pds),
        budgets=budgets,
        flags=flags,
        anomalies=anomalies,
        metrics=_metrics(),
        budget_table=quarter_table("2027Q1", hist, paths, ids, pds, budgets=budgets),
        scenarios=scen,
        model_versions=[
            {"model": "ets", "version": 7, "alias": "champion"},
            {"model": EVIL, "version": 1, "alias": f"team {EVIL}"},
        ],
        selection=pd.DataFrame(
            {
                "unique_id": ["total", "inference", "pretraining"],
                "model": ["ensemble"] * 3,
                "reason": [f"tag {EVIL}", "combination kept", "combination kept"],
            }
        ),
        data_window={"first month": "2025-01", "source": EVIL, "run id": "f" * 32},
        as_of="2026-12-15",
        # every backtested miss is 8 % of its month at one month ahead: "typical error ±8 %"
        backtest=_backtest(hist).assign(scale=1.0),
        changes=_changes(),
        previous_as_of="2026-11-15",
    )
    return path, len(ids)


def test_report_escapes_billing_strings_and_is_self_contained(tmp_path) -> None:
    path, _ = build_report(tmp_path)
    html = path.read_text()
    assert EVIL not in html
    assert "<script" not in html.lower()
    assert (
        html.count("&lt;script&gt;alert(1)&lt;/script&gt;") >= 6
    )  # flags, anomalies, scenarios, metrics, versions, window
    # nothing is fetched: every src/href is inline data
    refs = re.findall(r"""(?:src|href)\s*=\s*["']([^"']*)""", html)
    assert refs and all(r.startswith("data:") for r in refs)
    assert "http://" not in html and "https://" not in html
    assert 'class="badge at_risk"' in html or 'class="badge over_budget"' in html
    assert "analytic_baseline" in html and 'class="baseline"' in html
    # the budget table's "Last quarter" says which quarter its actual is: 2027Q1's is 2026Q4
    assert "<small>(2026Q4)</small>" in html
    # both MASE figures, each named, the cost-weighted one (ets 0.370) being what decisions use
    assert "<th>MASE, cost-weighted</th>" in html and "<td>0.370</td>" in html
    assert "<th>Change (expected)</th>" in html  # the scenarios' change is the mean's
    # and the figures beside it are the means, so that scenario less base is the change
    assert "<th>Base (expected)</th><th>Scenario (expected)</th>" in html
    assert "987,654" not in html and "1,087,654" not in html
    # the budget table shows the expected cost its change against last quarter is measured on
    paths, ids, pds = make_paths(h=6, start="2027-01-01")  # build_report's own inputs
    hist = make_history(months=24, start="2025-01-01")
    qt = quarter_table("2027Q1", hist, paths, ids, pds).set_index("phase")
    assert "<th>Expected</th><th>P50</th>" in html
    row = f"<td>{qt.loc['total', 'mean']:,.0f}</td><td>{qt.loc['total', 'p50']:,.0f}</td>"
    assert row in html
    assert "<th>Months ahead</th>" in html  # an unusual month says how far ahead it was forecast


def _chrome():  # type: ignore[no-untyped-def]
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if not (binary and driver):
        pytest.skip(
            "chromium and chromium-driver are not installed (make system-deps installs them)"
        )
    opts = webdriver.ChromeOptions()
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--no-first-run",
        f"--user-data-dir={tempfile.mkdtemp(prefix='phasecast-chrome-')}",
        "--window-size=1400,1000",
    ):
        opts.add_argument(arg)
    opts.binary_location = binary
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(options=opts, service=Service(driver))


OVERFLOW_JS = """
const w = document.documentElement.clientWidth;
const out = [];
if (document.documentElement.scrollWidth > w) out.push(['page', document.documentElement.scrollWidth]);
for (const el of document.querySelectorAll('main *')) {
  const r = el.getBoundingClientRect();
  if (r.width === 0) continue;
  if (r.right > w + 0.5 || r.left < -0.5) out.push([el.tagName + '.' + el.className, r.left, r.right]);
  if (el.tagName === 'TABLE' && el.getBoundingClientRect().width > el.parentElement.clientWidth + 0.5)
    out.push(['table wider than its box', el.parentElement.id || el.parentElement.tagName]);
}
return [w, out.slice(0, 10)];
"""


def test_report_renders_in_headless_chromium(tmp_path) -> None:
    path, n_nodes = build_report(tmp_path)
    from selenium.common.exceptions import NoAlertPresentException

    d = _chrome()
    try:
        d.get(path.resolve().as_uri())
        assert d.execute_script("return document.readyState") == "complete"
        with pytest.raises(NoAlertPresentException):
            d.switch_to.alert.text  # noqa: B018  (the injected alert never ran)
        assert d.execute_script("return document.scripts.length") == 0
        widths = d.execute_script(
            "return Array.from(document.querySelectorAll('.chart img')).map(i => [i.complete, i.naturalWidth])"
        )
        assert len(widths) == n_nodes  # total + every phase
        assert all(ok and w > 300 for ok, w in widths)
        # the first screen: the quarter and what changed, above the fold of a 1400 x 900 window
        d.set_window_size(1400, 900)
        first = d.execute_script(
            "return ['glance', 'changes'].map(i => document.getElementById(i).getBoundingClientRect().bottom)"
        )
        inner = d.execute_script("return window.innerHeight")
        assert max(first) <= inner, (first, inner)
        body = d.find_element("tag name", "body").text
        assert "2027Q1: budget and forecast" in body and "What changed since the last run" in body
        assert (
            "chance of going over" in body.lower() and "typical error ±8 % one month ahead" in body
        )
        # the technical tables are in the collapsed appendix; MASE shows only in the readers'
        # accuracy section, beside the typical error it explains
        appendix = d.find_element("id", "appendix")
        assert (
            appendix.get_attribute("open") is None
            and not appendix.find_element("id", "models").is_displayed()
        )
        readers = d.find_element("id", "forecast-accuracy").text
        assert "MASE" not in body.replace(readers, "")
        ARTIFACTS.mkdir(exist_ok=True)
        assert d.save_screenshot(str(ARTIFACTS / "report-first-screen.png"))
        d.execute_script("document.getElementById('appendix').open = true")
        body = d.find_element("tag name", "body").text
        assert EVIL in body  # shown as text, not run
        assert "Budget lines and overrun risk" in body and "Backtest accuracy" in body
        badges = d.execute_script(
            "return Array.from(document.querySelectorAll('.badge')).map(b => getComputedStyle(b).backgroundColor)"
        )
        assert badges and all(
            c not in ("rgba(0, 0, 0, 0)", "transparent") for c in badges
        )  # statuses are coloured
        errors = [e for e in d.get_log("browser") if e.get("level") == "SEVERE"]
        assert errors == []
        for width in (1024, 1400):
            d.set_window_size(width, 900)
            client, overflow = d.execute_script(OVERFLOW_JS)
            assert client > width - 40 and overflow == [], (width, overflow)
            height = d.execute_script("return document.body.scrollHeight")
            d.set_window_size(width, min(int(height) + 140, 12000))
            assert d.save_screenshot(str(ARTIFACTS / f"report-{width}.png"))
    finally:
        d.quit()
    for name in ("report-1024.png", "report-1400.png", "report-first-screen.png"):
        assert (ARTIFACTS / name).stat().st_size > 20_000


def test_plain_words() -> None:
    from pipeline.metrics import accuracy_table
    from pipeline.report import chance_in_words, typical_errors

    assert chance_in_words(0.0) == "practically none (< 1 %)"
    # 14 of 2,000 paths: the terminal prints 0.01, so the page names the share, not "< 1 %"
    assert chance_in_words(0.007) == "practically none (0.7 %)"
    assert chance_in_words(0.0045) == "practically none (< 1 %)"  # the terminal's 0.00
    assert chance_in_words(0.0097) == chance_in_words(0.01) == "unlikely (1 %)"  # one reading
    assert chance_in_words(0.25) == "possible, about 1 in 4 (25 %)"
    assert chance_in_words(0.72) == "likely (72 %)"
    assert chance_in_words(float("nan")) == "no budget"
    hist = make_history(months=24, start="2025-01-01")
    bt = _backtest(hist).assign(scale=1.0)
    acc = accuracy_table(bt[bt.unique_id == "total"], pd.Series({"total": "ensemble"}), ())
    e = typical_errors(acc)
    assert set(e["unique_id"]) == {"total"}  # every miss is 8 % (20 %) of its month's cost
    assert e.set_index("h")["error"].to_dict() == pytest.approx({1: 0.08, 3: 0.2})


def test_fan_chart_is_scaled_to_the_history_and_the_80_band() -> None:
    from pipeline.report import chart_limits

    hist = np.array([140e3, 150e3, 160e3])
    lo, hi = chart_limits(hist, np.array([120e3, 110e3]), np.array([180e3, 200e3]))
    assert lo == 0.0 and 200e3 < hi < 230e3  # a 600k 95 % band does not stretch the axis


def test_fan_bands_are_path_quantiles() -> None:
    paths, ids, pds = make_paths(n_paths=501, h=2)
    f = fan_bands(paths, ids, pds)
    assert len(f) == 3 * 2
    row = f[(f.unique_id == "inference") & (f.ds == pds[1])].iloc[0]
    s = np.sort(paths[1, :, 1])
    assert row["q50"] == pytest.approx(s[250])  # the middle of 501 sorted values
    assert (
        row["q025"] < row["q10"] < row["q25"] < row["q50"] < row["q75"] < row["q90"] < row["q975"]
    )


def test_a_chance_that_rests_on_the_plan_alone_is_marked() -> None:
    """Pre-training is forecast by the plan alone (no backtest saw it): its chance of going over
    comes from the plan's assumed error, and the first screen marks it so; the others are not."""
    from pipeline.report import PLAN_ONLY_MARK, glance_rows

    t = pd.DataFrame(
        {
            "period": "2027Q1",
            "phase": ["pretraining", "inference", "unallocated", "total"],
            "budget": [497_200.0, 574_500.0, float("nan"), 2_395_000.0],
            "mean": [507_249.0, 424_976.0, 374.0, 2_026_235.0],
            "p50": [509_099.0, 424_549.0, 372.0, 2_023_703.0],
            "p80": [549_681.0, 447_567.0, 386.0, 2_091_754.0],
            "p_overrun": [0.59, 0.0, float("nan"), 0.0],
            "actual_to_date": 0.0,
        }
    )
    rows = {r["phase"]: r for r in glance_rows(t, "2027Q1", None, (0.2, 0.5), {"pretraining"})}
    assert rows["pretraining"]["chance"] == "likely (59 %)" + PLAN_ONLY_MARK
    assert rows["pretraining"]["plan_only"] and not rows["inference"]["plan_only"]
    assert not rows["inference"]["chance"].endswith(PLAN_ONLY_MARK)
    assert not rows["unallocated"]["plan_only"]  # no budget, no chance to mark
