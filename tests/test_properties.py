"""Property tests (hypothesis): money is conserved from source text to the warehouse to every level
of the hierarchy, in any delivery order, with restatements; re-ingest changes nothing; conditioned
paths stay coherent; quantiles and intervals are nested."""

from __future__ import annotations

import decimal
import shutil
import tempfile
from decimal import Decimal
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from pipeline.conditioning import PartialMonth, condition_paths, period_totals
from pipeline.frames import PHASES, TOTAL
from pipeline.ingest import IngestConfig, ingest
from pipeline.periods import parse_period
from pipeline.reconcile import summing_matrix
from pipeline.series import build_series
from tests.test_ingest import q, row, tags, write_focus

pytestmark = pytest.mark.slow

REAL = [p for p in PHASES if p != "unallocated"]


@st.composite
def amounts(draw: st.DrawFn) -> str:
    units = draw(st.integers(min_value=-(10**9), max_value=10**12))
    scale = draw(st.integers(min_value=0, max_value=18))
    frac = draw(st.integers(min_value=0, max_value=10**scale - 1)) if scale else 0
    sign = "-" if units < 0 else ""
    text = f"{sign}{abs(units)}"
    return f"{text}.{frac:0{scale}d}" if scale else text


@st.composite
def focus_rows(draw: st.DrawFn, month: str) -> list[dict]:
    n = draw(st.integers(min_value=1, max_value=8))
    last = pd.Timestamp(f"{month}-01") + pd.offsets.MonthEnd(0)
    out = [row(f"{last:%Y-%m-%d}", "0", ResourceId="r")]  # the export reaches the month's end
    for _ in range(n):
        day = f"{month}-{draw(st.integers(min_value=1, max_value=28)):02d}"
        phase = draw(st.sampled_from([*REAL, None]))
        out.append(
            row(day, draw(amounts()), Tags=tags(phase=phase) if phase else None, ResourceId="r")
        )
    return out


def exact_sum(values: list[str]) -> Decimal:
    with decimal.localcontext(decimal.Context(prec=80, traps=[decimal.Inexact])):
        return sum((Decimal(v) for v in values), Decimal(0))


def period_totals_in(db: Path) -> dict[str, Decimal]:
    rows = q(
        db,
        "SELECT strftime(day, '%Y-%m') AS m, sum(effective_cost) FROM daily_facts GROUP BY 1",
    )
    return {m: Decimal(str(v)) for m, v in rows}


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    phases=[Phase.explicit, Phase.reuse, Phase.generate],  # each example ingests 5 times: no shrink
    print_blob=True,
)
@given(
    sep=focus_rows("2026-09"),
    octo=focus_rows("2026-10"),
    restated=focus_rows("2026-09"),
    order=st.permutations([0, 1]),
    parts=st.integers(min_value=1, max_value=3),
)
def test_money_is_conserved_to_every_level(sep, octo, restated, order, parts) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="prop-"))
    try:
        db = tmp / "wh.duckdb"
        periods = {"2026-09": sep, "2026-10": octo}
        folders = []
        for month, rows in periods.items():
            folder = tmp / f"delivery-{month}"
            for j in range(parts):  # one delivery split in several files
                if rows[j::parts]:
                    write_focus(folder / f"part-{j}.csv", rows[j::parts])
            folders.append(folder)
        for i in order:  # the periods' deliveries in any order, one call each
            ingest(IngestConfig(billing=(folders[i],), warehouse=db, progress=False))
        want = {m: exact_sum([r["EffectiveCost"] for r in rows]) for m, rows in periods.items()}
        assert period_totals_in(db) == want
        before = q(db, "SELECT count(*), sum(effective_cost) FROM daily_facts")
        for f in folders:  # the same deliveries again: nothing changes
            ingest(IngestConfig(billing=(f,), warehouse=db, progress=False))
        assert q(db, "SELECT count(*), sum(effective_cost) FROM daily_facts") == before
        # a later delivery of September replaces it whole
        write_focus(tmp / "delivery-2026-09-b" / "part-0.csv", restated)
        ingest(IngestConfig(billing=(tmp / "delivery-2026-09-b",), warehouse=db, progress=False))
        want["2026-09"] = exact_sum([r["EffectiveCost"] for r in restated])
        assert period_totals_in(db) == want
        # every level of the hierarchy adds up to the warehouse, month by month
        s = build_series(db, as_of="2026-11-01").monthly
        for month, total in want.items():
            m = s[s.ds == pd.Timestamp(f"{month}-01")].set_index("unique_id").y
            assert m.get(TOTAL, 0.0) == pytest.approx(float(total), rel=1e-9, abs=1e-6)
            phases = m[[u for u in m.index if u in PHASES]].sum()
            bottoms = m[[u for u in m.index if "/" in u]].sum()
            assert phases == pytest.approx(m.get(TOTAL, 0.0), rel=1e-9, abs=1e-6)
            assert bottoms == pytest.approx(m.get(TOTAL, 0.0), rel=1e-9, abs=1e-6)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


IDS = ["total", "inference", "inference/compute_gpu", "inference/storage", "pretraining"]


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(min_value=0, max_value=2**31),
    days=st.integers(min_value=1, max_value=29),
    pace=st.floats(min_value=0.0, max_value=3.0),
    err=st.one_of(st.none(), st.floats(min_value=0.001, max_value=2.0)),
)
def test_conditioned_paths_are_coherent_and_quantiles_nested(seed, days, pace, err) -> None:
    rng = np.random.default_rng(seed)
    S, bottom = summing_matrix(IDS)
    b = rng.lognormal(np.log(100), 0.3, size=(len(bottom), 300, 5))
    paths = np.einsum("ib,bph->iph", S, b)
    ds = pd.date_range("2026-11-01", periods=5, freq="MS")
    partial = {u: PartialMonth(ds[0], pace * 100 * days / 30, days, 30, err) for u in bottom}
    cond = condition_paths(paths, IDS, ds, partial, nonneg=bottom)
    pos = {u: i for i, u in enumerate(IDS)}
    np.testing.assert_allclose(cond[0], cond[[pos[u] for u in bottom]].sum(axis=0), rtol=1e-9)
    assert (cond[[pos[u] for u in bottom]] >= 0).all()
    monthly = pd.DataFrame({"unique_id": IDS, "ds": pd.Timestamp("2026-10-01"), "y": 1.0})
    for label in ("2026-11", "2026Q4", "2027Q1"):
        pt = period_totals(parse_period(label), monthly, cond, IDS, ds, partial)
        for u in IDS:
            actual, totals = pt.of(u)
            q50, q80, q95 = np.quantile(totals, [0.5, 0.8, 0.95])
            assert q50 <= q80 <= q95
            assert (totals >= actual - 1e-9).all()  # what is spent is spent
            lo, hi = np.quantile(totals, 0.8), np.quantile(totals, 0.95)
            assert np.mean(totals > lo) >= np.mean(totals > hi)  # p_overrun falls with the budget


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(min_value=0, max_value=2**31),
    n=st.integers(min_value=6, max_value=30),
    level=st.floats(min_value=10.0, max_value=1e7),
)
def test_published_intervals_are_nested(seed, n, level) -> None:
    from pipeline.forecast import ForecastConfig, run_forecast

    rng = np.random.default_rng(seed)
    ds = pd.date_range("2024-01-01", periods=n, freq="MS")
    df = pd.concat(
        [
            pd.DataFrame({"unique_id": u, "ds": ds, "y": level * rng.lognormal(0, 0.3, n)})
            for u in ("a", "b")
        ]
    )
    cfg = ForecastConfig(
        horizon=6, models=("analytic_baseline", "seasonal_naive"), n_windows=2, n_paths=200
    )
    f = run_forecast(df, cfg, progress=False).forecast
    assert len(f) == 2 * 6
    assert (f.lo_95 <= f.lo_80 + 1e-9).all() and (f.lo_80 <= f["mean"] + 1e-9).all()
    assert (f["mean"] <= f.hi_80 + 1e-9).all() and (f.hi_80 <= f.hi_95 + 1e-9).all()
