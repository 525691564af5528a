"""Forecasts scored against a known future: generated cost hierarchies and the demo world, cut at
an as-of.

:func:`cost_hierarchy` generates a phasecast hierarchy (``total`` -> ``<phase>`` ->
``<phase>/<category>``) of monthly costs with what real AI cost series do: inference traffic that
grows and peaks in the promotion months (the demo world's daily traffic shape of 618, Double 11,
Black Friday / Cyber Monday and the Spring Festival dip, :mod:`pipeline.synth.calendar`, averaged
over each month), a quantization that cuts inference GPU cost by a step, rare large pre-training
runs and small optimization jobs (GPUs x days x price, each run's actual cost off its plan by its
own factor, log-sd ``RUN_SD``) over a small cost between runs, a noisy fine-tuning cadence, storage
that compounds, labor that steps with hiring. It returns the history (``hist_months`` months), the
``horizon`` months that follow, and the plan a team would have written at the cut: the runs
scheduled after it (``plan=False``: none, the bursts come unannounced).

:func:`demo_world` is ``phasecast synth``'s world (daily FOCUS billing, usage, labor) ingested into
a scratch warehouse (a temporary folder, removed after) and cut ``hold_out`` months before its end.

:func:`evaluate` forecasts each history with the full job (:func:`pipeline.forecast.run_forecast`,
reconciled, with the plan when there is one) and scores every model's and the published forecast
against the known future, per horizon band (months 1-3, 1-6 and 7-18): cost-weighted WAPE, MASE,
80 / 95 % coverage; and the inference series' error in promotion months beside its error in
ordinary months.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import pandas as pd

from pipeline.frames import DS, MEAN, MODEL, UID, Y, hi_col, lo_col
from pipeline.metrics import scale_of
from pipeline.plan import Plan, PriceBook, ScheduledRun, TrafficPlan

BANDS: tuple[tuple[str, int, int], ...] = (("1-3", 1, 3), ("1-6", 1, 6), ("7-18", 7, 18))
PUBLISHED = "published"
PROMO_MONTHS = (6, 11)  # 618 and Double 11 / BFCM
RUN_SD = 0.10  # log-sd of a scheduled run's actual cost around its plan
TRAFFIC_SD = 0.06  # log-sd of the traffic plan's error common to its months (half that monthly)
GPU_HOURS_PER_1K = 0.05  # GPU-hours per 1,000 inference requests


def monthly_traffic_factor(months: pd.DatetimeIndex) -> np.ndarray:
    """Mean daily traffic multiplier (weekly x promotion x festival) of each month."""
    from pipeline.synth.calendar import traffic_shape

    out = []
    for m in months:
        days = [dt.date(m.year, m.month, d + 1) for d in range(int(pd.Timestamp(m).days_in_month))]
        out.append(float(traffic_shape(days).mean()))
    f = np.asarray(out)
    return f / f.mean()


@dataclass(frozen=True)
class Collection:
    hist: pd.DataFrame  # unique_id, ds, y
    future: pd.DataFrame  # unique_id, ds, y: the months after the history
    plan: Plan | None = None  # what was known in advance about the future (scheduled runs)
    drivers: pd.DataFrame | None = None  # future driver rows (requests from the traffic plan)


GPU = "H100"
GPU_PRICE = 3.0  # per GPU-hour, on demand


def _runs(
    rng: np.random.Generator,
    ds: pd.DatetimeIndex,
    cut: int,
    phase: str,
    every: tuple[int, int],
    gpus: tuple[int, ...],
    days: tuple[float, float],
) -> list[ScheduledRun]:
    """GPU bursts of ``phase`` over the whole span, one every ``every`` months; a run never
    straddles the cut (it starts after the history's last month or ends before it)."""
    out: list[ScheduledRun] = []
    k = int(rng.integers(0, every[1]))
    while k < len(ds):
        start = (ds[k] + pd.Timedelta(days=int(rng.integers(0, 20)))).date()
        d = float(rng.uniform(*days))
        end = pd.Timestamp(start) + pd.Timedelta(days=d)
        if k < cut and end >= ds[cut]:  # would run into the future: it starts there instead
            k = cut
            start = ds[cut].date()
        out.append(ScheduledRun(f"{phase}-{k}", phase, GPU, int(rng.choice(gpus)), start, days=d))
        k += int(np.ceil(d / 30)) + int(rng.integers(*every))
    return out


def cost_hierarchy(
    seed: int, hist_months: int = 36, horizon: int = 18, end: str = "2026-10", plan: bool = True
) -> Collection:
    """One generated hierarchy with a known future (see the module docstring)."""
    from pipeline.estimate import run_month_costs

    rng = np.random.default_rng(seed)
    n = hist_months + horizon
    first = pd.Timestamp(end) - pd.DateOffset(months=hist_months - 1)
    ds = pd.date_range(first, periods=n, freq="MS")
    t = np.arange(n, dtype=float)
    traffic = monthly_traffic_factor(ds)

    def noise(sd: float) -> np.ndarray:
        return np.exp(rng.normal(0.0, sd, n) - sd**2 / 2)

    g = rng.uniform(0.005, 0.035)  # monthly traffic growth
    level = rng.uniform(60e3, 160e3)
    quant = np.ones(n)
    if rng.random() < 0.6:  # a quantization step, somewhere in the history
        at = int(rng.integers(6, hist_months - 3))
        quant[at:] = rng.uniform(0.65, 0.85)
    book = PriceBook(gpu_hour={GPU: {"on_demand": GPU_PRICE}})
    # pre-training runs (1-2 months of 64-256 GPUs every 6-12 months) and optimization jobs
    # (small, around releases): scheduled, so the plan knows the future ones; a run's actual
    # cost strays from its plan by its own factor (longer or shorter than planned)
    runs = _runs(rng, ds, hist_months, "pretraining", (6, 12), (64, 128, 256), (10.0, 40.0))
    runs += _runs(rng, ds, hist_months, "optimization", (5, 14), (8, 16, 32), (4.0, 15.0))
    burst = {"pretraining": np.zeros(n), "optimization": np.zeros(n)}
    for r in runs:
        cost = run_month_costs(r.gpus, r.start, float(r.days or 0), book, GPU, "on_demand", ds)
        burst[r.phase] += cost * float(np.exp(rng.normal(0.0, RUN_SD)))
    bottom: dict[str, np.ndarray] = {}
    # requests (in thousands) and what they cost: GPU-hours per 1k requests x the GPU price, times
    # what the bill adds or takes off that the plan's arithmetic does not (discounts, retries)
    volume = level / (GPU_HOURS_PER_1K * GPU_PRICE)
    requests = volume * (1 + g) ** t * traffic * noise(0.03)
    billed = rng.uniform(0.85, 1.1)
    bottom["inference/compute_gpu"] = (
        requests * GPU_HOURS_PER_1K * GPU_PRICE * billed * quant * noise(0.02)
    )
    bottom["inference/network"] = 0.08 * requests * GPU_HOURS_PER_1K * GPU_PRICE * noise(0.04)
    bottom["pretraining/compute_gpu"] = (
        np.full(n, rng.uniform(1e3, 3e3)) * noise(0.2) + burst["pretraining"]
    )
    bottom["fine_tuning/compute_gpu"] = (
        rng.uniform(10e3, 30e3) * (1 + g / 2) ** t * noise(rng.uniform(0.1, 0.25))
    )
    storage_g = rng.uniform(0.01, 0.04)
    bottom["data_preprocessing/storage"] = (
        rng.uniform(3e3, 8e3) * (1 + storage_g) ** t * noise(0.02)
    )
    bottom["data_preprocessing/compute_cpu"] = rng.uniform(5e3, 15e3) * noise(0.15)
    heads = np.full(n, float(rng.integers(3, 6)))
    for _ in range(int(rng.integers(1, 4))):  # hiring steps
        heads[int(rng.integers(3, n - 3)) :] += rng.choice([-1.0, 1.0, 1.0])
    bottom["operations/labor"] = np.maximum(heads, 1.0) * 160 * 95 * noise(0.01)
    bottom["optimization/compute_gpu"] = np.full(n, 500.0) * noise(0.3) + burst["optimization"]

    rows = {u: np.round(v, 2) for u, v in bottom.items()}
    phases: dict[str, np.ndarray] = {}
    for u, v in rows.items():
        p = u.split("/")[0]
        phases[p] = phases.get(p, 0.0) + v
    allv = {"total": sum(rows.values()), **phases, **rows}
    long = pd.concat(
        [pd.DataFrame({UID: u, DS: ds, Y: np.asarray(v, float)}) for u, v in allv.items()],
        ignore_index=True,
    )
    cut = ds[hist_months - 1]
    hist = long[long[DS] <= cut].reset_index(drop=True)
    future = long[long[DS] > cut].reset_index(drop=True)
    if not plan:
        return Collection(hist, future)
    known = tuple(r for r in runs if pd.Timestamp(r.start) >= ds[hist_months])
    # the traffic plan: the future's requests as a team forecasts them, off by a factor common to
    # the year (log-sd TRAFFIC_SD) and a little each month; priced at the plan's own unit cost
    fut = slice(hist_months, None)
    off = rng.normal(0.0, TRAFFIC_SD) + rng.normal(0.0, TRAFFIC_SD / 2, horizon)
    planned = requests[fut] * np.exp(off) * 1000.0
    the_plan = Plan(
        price_book=book,
        scheduled_runs=known,
        start=ds[hist_months],
        traffic=TrafficPlan(
            gpu=GPU,
            gpu_hours_per_1k_requests=GPU_HOURS_PER_1K,
            months=dict(zip(ds[fut], planned, strict=True)),
            pricing="on_demand",
        ),
    )
    from features.drivers import traffic_frames

    usage = pd.Series(requests[:hist_months] * 1000.0, index=ds[:hist_months])
    hist_d, drivers = traffic_frames(hist, usage, the_plan, horizon)
    return Collection(hist_d, future, the_plan, drivers)


def demo_world(seed: int = 42, months: int = 36, hold_out: int = 12) -> Collection:
    """The demo world (``phasecast synth``: daily FOCUS billing, usage and labor), ingested into a
    scratch warehouse and cut ``hold_out`` months before its last complete month: the history is
    what a run at that earlier as-of would have seen, the future the months that followed. The
    synth's plan describes only the months after its end, so the cut history comes without one:
    its pre-training and optimization bursts are not announced."""
    import logging

    quiet = [logging.getLogger(n) for n in ("pipeline.synth", "pipeline.ingest", "pipeline.series")]
    levels = [q.level for q in quiet]
    for q in quiet:  # the scratch world's ingest is not news to the reader
        q.setLevel(logging.WARNING)
    try:
        return _demo_world(seed, months, hold_out)
    finally:
        for q, lv in zip(quiet, levels, strict=True):
            q.setLevel(lv)


def _demo_world(seed: int, months: int, hold_out: int) -> Collection:
    import tempfile
    from pathlib import Path

    from pipeline.ingest import IngestConfig, ingest
    from pipeline.series import build_series
    from pipeline.synth import SynthConfig, generate

    with tempfile.TemporaryDirectory(prefix="phasecast-eval-") as tmp:
        out = Path(tmp) / "sample"
        generate(SynthConfig(out=out, months=months, seed=seed, partial_days=0))
        wh = Path(tmp) / "warehouse.duckdb"
        ingest(
            IngestConfig(
                billing=(out / "billing",),
                warehouse=wh,
                usage=out / "usage.csv",
                labor=out / "labor.csv",
                progress=False,
            )
        )
        monthly = build_series(wh).monthly[[UID, DS, Y]]
    monthly = monthly.assign(**{DS: pd.to_datetime(monthly[DS]), Y: monthly[Y].astype(float)})
    last = monthly[DS].max()
    cut = last - pd.DateOffset(months=hold_out)
    return Collection(
        monthly[monthly[DS] <= cut].reset_index(drop=True),
        monthly[monthly[DS] > cut].reset_index(drop=True),
    )


def band_of(h: pd.Series) -> pd.Series:
    return pd.Series(np.where(h <= 6, "1-6", "7-18"), index=h.index)


def scored(fc: pd.DataFrame, future: pd.DataFrame, hist: pd.DataFrame) -> pd.DataFrame:
    """Forecast rows joined with the actual ``y``, the horizon ``h`` and the series' MASE scale."""
    t = fc.merge(future[[UID, DS, Y]], on=[UID, DS], how="inner")
    t["h"] = t.groupby([UID, MODEL], sort=False).cumcount() + 1
    scales = hist.groupby(UID)[Y].apply(lambda s: scale_of(s.to_numpy()))
    t["scale"] = t[UID].map(scales)
    return t


def band_table(t: pd.DataFrame, levels: tuple[int, ...] = (80, 95)) -> pd.DataFrame:
    """Per model and band: WAPE (cost-weighted), MASE (mean over series), coverage per level."""
    rows = []
    for name, lo, hi in BANDS:
        b = t[(t["h"] >= lo) & (t["h"] <= hi)]
        for model, g in b.groupby(MODEL, sort=False):
            ae = (g[Y] - g[MEAN]).abs()
            row: dict[str, object] = {
                MODEL: model,
                "band": name,
                "WAPE": float(ae.sum() / g[Y].abs().sum()),
                "MASE": float((ae / g["scale"]).groupby(g[UID]).mean().mean()),
                "points": len(g),
            }
            for lv in levels:
                if lo_col(lv) in g.columns and g[lo_col(lv)].notna().all():
                    inside = (g[Y] >= g[lo_col(lv)] - 1e-6) & (g[Y] <= g[hi_col(lv)] + 1e-6)
                    row[f"coverage_{lv}"] = float(inside.mean())
            rows.append(row)
    return pd.DataFrame(rows)


def promo_errors(t: pd.DataFrame, uid: str = "inference/compute_gpu") -> dict[str, float]:
    """The published forecast of ``uid`` over months 1-12: absolute percentage errors summed and
    counted in promotion months and in ordinary months, and their ratio (the run's promotion ratio:
    mean error in promotion months over mean error in ordinary months)."""
    g = t[(t[UID] == uid) & (t[MODEL] == PUBLISHED) & (t["h"] <= 12)]
    ape = (g[Y] - g[MEAN]).abs() / g[Y].abs()
    promo = g[DS].dt.month.isin(PROMO_MONTHS)
    out = {
        "promo_ape": float(ape[promo].sum()),
        "promo_months": int(promo.sum()),
        "ordinary_ape": float(ape[~promo].sum()),
        "ordinary_months": int((~promo).sum()),
    }
    out["promo_ratio"] = float(ape[promo].mean() / ape[~promo].mean())
    return out


def pooled_promo_ratio(promos: pd.DataFrame) -> tuple[float, float]:
    """The promotion ratio over all the runs' months (mean error of every promotion month over that
    of every ordinary month) and its standard error with the run as the unit (delta method).

    One run has two promotion months in twelve, so its own ratio swings from 0.2 to 3.5 whatever the
    forecast does (a model whose error does not depend on the month, the plan-driven unit cost,
    gives run ratios of 0.3-3.5 and a median of 0.9-1.2 over 15 runs); the pooled ratio is the
    quantity the aim is about, and its standard error says how far the runs pin it down."""
    a, m = promos["promo_ape"].to_numpy(float), promos["promo_months"].to_numpy(float)
    b, k = promos["ordinary_ape"].to_numpy(float), promos["ordinary_months"].to_numpy(float)
    if m.sum() == 0 or k.sum() == 0 or b.sum() == 0:
        return float("nan"), float("nan")
    pa, pb = a.sum() / m.sum(), b.sum() / k.sum()
    ratio = pa / pb
    n = len(a)
    if n < 2:
        return float(ratio), float("nan")
    z = ((a - pa * m) / m.sum() - ratio * (b - pb * k) / k.sum()) / pb
    return float(ratio), float(np.sqrt(n / (n - 1) * (z**2).sum()))


def evaluate_one(col: Collection, horizon: int = 18, n_paths: int = 500) -> pd.DataFrame:
    """Every model's and the published forecast of one collection, scored against its future."""
    from pipeline.forecast import ForecastConfig, run_forecast

    cfg = ForecastConfig(horizon=horizon, reconcile=True, n_paths=n_paths)
    res = run_forecast(col.hist, cfg, plan=col.plan, X_future=col.drivers, progress=False)
    pub = res.forecast.assign(**{MODEL: PUBLISHED})
    allf = res.all_forecasts
    cols = [UID, DS, MODEL, MEAN, lo_col(80), hi_col(80), lo_col(95), hi_col(95)]
    return scored(pd.concat([pub[cols], allf[cols]], ignore_index=True), col.future, col.hist)


PLANNED = "hierarchy"  # generated hierarchies whose plan schedules the future bursts
UNPLANNED = "hierarchy-no-plan"  # the same, no plan: bursts nobody announced
DEMO = "demo-world"  # phasecast synth's world, its last 12 months held out
COLLECTIONS = (PLANNED, UNPLANNED, DEMO)


def evaluate(
    seeds: tuple[int, ...] = (1, 2, 3),
    hist_months: tuple[int, ...] = (24, 36, 48),
    horizon: int = 18,
    collections: tuple[str, ...] = (PLANNED,),
    demo_months: int = 36,
    demo_hold_out: int = 12,
    pairs: tuple[tuple[int, int], ...] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Scores per collection, model and band, medians over seeds (x history lengths for the
    generated hierarchies); the inference series' promotion-month error ratio per run; and the
    published forecast's coverage per collection, history length and band, pooled over the seeds
    (a band calibrated on average can still be too wide after short histories and too narrow after
    long ones; the demo world's rows have ``hist_months`` 0).
    ``pairs`` (``(seed, history months)``): the generated hierarchies to run instead of every seed
    with every length."""
    parts, promos = [], []
    generated = pairs if pairs is not None else tuple((s, m) for s in seeds for m in hist_months)
    for name in collections:
        if name == DEMO:
            for s in seeds:
                col = demo_world(s, demo_months, demo_hold_out)
                t = evaluate_one(col, demo_hold_out)
                parts.append(band_table(t).assign(collection=name, seed=s, hist_months=0))
            continue
        for s, m in generated:
            col = cost_hierarchy(s, m, horizon, plan=name == PLANNED)
            t = evaluate_one(col, horizon)
            parts.append(band_table(t).assign(collection=name, seed=s, hist_months=m))
            promos.append({"collection": name, "seed": s, "hist_months": m, **promo_errors(t)})
    runs = pd.concat(parts, ignore_index=True)
    keys = ["collection", MODEL, "band"]
    med = runs.groupby(keys, sort=False).median(numeric_only=True)
    med = med.drop(columns=["seed", "hist_months", "points"])
    pub = runs[runs[MODEL] == PUBLISHED]
    by_length = pooled_coverage(pub, ["collection", "hist_months", "band"]).reset_index()
    return med.join(pooled_coverage(runs, keys)).reset_index(), pd.DataFrame(promos), by_length


def pooled_coverage(runs: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Per ``keys``: the share of all the runs' (series, month) actuals inside each band
    (``pooled_<level>``), beside the median of the runs' shares.

    A run's months and series share their shocks (a plan that was off, a step nobody announced), so
    one run's coverage is all or little: calibrated bands hold 80 % of all the months, but the
    median run holds more than 80 % and a few runs much less. The pooled share is the one a
    calibrated band matches; the median is the one the aims were written in.

    For the same reason the months are not independent draws: ``se_<level>`` is the pooled share's
    standard error with the run as the unit sampled (the ratio estimator's, from the spread of the
    runs' shares around it; NaN below two runs). Over 15 generated hierarchies it is about 3
    points at 80 %, so a 3-point aim can be told from a miss only over more runs."""
    cov = [c for c in runs.columns if c.startswith("coverage_")]
    by = [runs[k] for k in keys]
    out = {}
    for c in cov:  # a run without that band (no bounds) counts neither inside nor in the months
        lv = c.removeprefix("coverage_")
        pts = runs["points"].where(runs[c].notna())
        total = pts.groupby(by, sort=False).sum()
        pooled = (runs[c] * pts).groupby(by, sort=False).sum(min_count=1) / total
        out["pooled_" + lv] = pooled
        # each run's points off the pooled share, squared: sqrt(n / (n - 1) * sum) / points
        at = pd.MultiIndex.from_arrays(by) if len(by) > 1 else pd.Index(by[0])
        dev = (pts * (runs[c] - pooled.reindex(at).to_numpy())) ** 2
        n = pts.notna().groupby(by, sort=False).sum()
        var = dev.groupby(by, sort=False).sum(min_count=1) * n / (n - 1).where(n > 1)
        out["se_" + lv] = np.sqrt(var) / total
    return pd.DataFrame(out)


def _pooled_text(r: pd.Series) -> str:
    """``0.789 +- 0.033 / 0.933 +- 0.020``: the pooled 80 / 95 % shares, each with its standard
    error when there is one (two runs or more)."""
    return " / ".join(
        f"{r[f'pooled_{lv}']:.3f}"
        + (f" +- {r[f'se_{lv}']:.3f}" if pd.notna(r.get(f"se_{lv}")) else "")
        for lv in (80, 95)
    )


def _pooled_words(has_se: bool) -> str:
    """How the figures in brackets were made: a standard error is promised only when there is one."""
    if not has_se:
        return "median run; pooled over the runs"
    return "median run; pooled over the runs, +- one standard error"


def _has_se(r: pd.Series) -> bool:
    return any(pd.notna(r.get(f"se_{lv}")) for lv in (80, 95))


def summary(
    med: pd.DataFrame, promos: pd.DataFrame, by_length: pd.DataFrame | None = None
) -> list[str]:
    """The lines a reader checks against the aims, per collection: published coverage per band
    (and per history length, pooled, when there are several), WAPE at 1-3 months against the
    analytic baseline and seasonal naive, the promotion-month ratio."""
    out = []
    for name, part in med.groupby("collection", sort=False):
        m = part.set_index([MODEL, "band"])
        out.append(f"{name}:")
        for band in ("1-6", "7-18"):
            if (PUBLISHED, band) in m.index:
                r = m.loc[(PUBLISHED, band)]
                out.append(
                    f"  published coverage months {band}: 80 % -> {r['coverage_80']:.3f}, "
                    f"95 % -> {r['coverage_95']:.3f} ({_pooled_words(_has_se(r))}: {_pooled_text(r)})"
                )
        lengths = (
            by_length[(by_length["collection"] == name) & (by_length["hist_months"] > 0)]
            if by_length is not None
            else None
        )
        if lengths is not None and lengths["hist_months"].nunique() > 1:
            for months, g in lengths.groupby("hist_months"):
                b = g.set_index("band")
                cells = [
                    f"{band} {_pooled_text(b.loc[band])}"
                    for band in ("1-6", "7-18")
                    if band in b.index and b.loc[band, ["pooled_80", "pooled_95"]].notna().all()
                ]
                if cells:
                    out.append(
                        f"  published coverage after {months}-month histories (pooled, 80 / 95 %): "
                        + ", ".join(cells)
                    )
        if (PUBLISHED, "1-3") in m.index:
            w = float(m.loc[(PUBLISHED, "1-3"), "WAPE"])
            for ref in ("analytic_baseline", "seasonal_naive"):
                if (ref, "1-3") in m.index:
                    rw = float(m.loc[(ref, "1-3"), "WAPE"])
                    out.append(
                        f"  WAPE months 1-3: published {w:.3f} vs {ref} {rw:.3f} ({w / rw - 1:+.0%})"
                    )
        p = promos[promos["collection"] == name] if len(promos) else promos
        if len(p):
            ratio, se = pooled_promo_ratio(p)
            pooled = f"{ratio:.2f}" + (f" +- {se:.2f}" if pd.notna(se) else "")
            words = "one run" if len(p) < 2 else _pooled_words(bool(pd.notna(se)))
            out.append(
                "  inference error in promotion months / ordinary months: "
                f"{p['promo_ratio'].median():.2f} ({words}: {pooled})"
            )
    return out
