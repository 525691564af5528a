"""The forecasting job: backtest every model, calibrate intervals, choose per series, forecast,
reconcile, and sample paths of the published forecast.

``run_forecast(df, config)`` is what ``phasecast forecast`` and the monthly run call. Steps:

1. validate the long frame; rows with an empty ``y`` after a series' last observation carry future
   driver values; gaps inside a series are filled per ``config.gaps`` (``zero``: a month without a
   charge costs nothing, the default for cost data; ``interpolate``: linear; ``error``: refuse);
2. rolling-origin backtest of every model (:mod:`pipeline.backtest`); the combination's backtest
   is built from its members' (:mod:`pipeline.models.ensemble`): ETS, Theta and SARIMAX with
   equal weights, a member more than 1.25x the best pooled backtest MASE trimmed;
3. intervals calibrated on the backtest errors, pooled per model and horizon
   (:mod:`pipeline.intervals`); the backtest table itself carries leave-one-window-out calibrated
   bounds so the coverage it reports is out of sample;
4. per series, the model with the lowest backtest MASE among the combination and the single
   models; the combination is kept unless a single model beats it by ``selection_margin``
   (per-series choices from a few windows are noisy: the margin asks for overwhelming evidence,
   e.g. a constant or exactly repeating series; on generated M3-like series of 48 months, per-series
   selection with a 10-30 % margin was 4-7 % worse by MASE than keeping the combination);
   a series too short for any backtest gets the model with the best pooled MASE;
5. every model re-fitted on the full history and forecast ``horizon`` months (a failed fit falls
   back to the analytic baseline: ``model`` says ``analytic_baseline(fallback)``);
6. sample paths of the published forecast by resampling whole backtest error vectors, reconciled
   over the hierarchy when ``config.reconcile`` (:mod:`pipeline.reconcile`);
7. series whose history is never negative get forecasts, bounds and paths clipped at zero.

Plan-driven series (:func:`plan_overrides`). The backtest cannot see what a plan knows: the plan
only describes months after the history, so a model chosen by backtest MASE ignores a scheduled
pre-training run (and forecasts the average of past bursts in months the plan leaves empty). When
a plan is given, a bottom series ``<phase>/<category>`` for which
:func:`pipeline.estimate.estimate_from_plan` yields cost in the series' forecast horizon is
classified by the plan items that cost comes from (:func:`pipeline.estimate.plan_sources`):

* **scheduled runs** (bursty, plan-only: pre-training, optimization jobs): the plan *is* the
  forecast. The published model is the analytic baseline (the plan's arithmetic, gpus x days x
  24 x price; run-rate for months the plan does not cover), reason ``plan-driven: scheduled runs
  in the plan``.
* **steady items** (recurring jobs, traffic, storage, headcount): the plan replaces the models
  only when it can be checked against the history and passes (``plan_tolerance``, default 10 %):
  where the plan covers closed months (its first dated item is before the series' last month),
  its WAPE over those months; otherwise, for headcount-only series (labor is billed as headcount x
  hours x rate, with no seasonality), the plan's first month against the last actual month.
  Metered usage (traffic, jobs, storage) without covered history keeps the models: the first
  planned month cannot be compared with the last actual one (promotion peaks, seasonality), and
  the models' backtest is the only evidence of accuracy there is. The reason says which.

Intervals of a plan-driven series are a relative error of the plan around its mean: relative sd
``plan_rel_sd x sqrt(h / 3)`` (10 % at 3 months, 17 % at 9, 24 % at 18), half of it common to all
months of a path (a plan that is wrong tends to be wrong throughout: price, run length) and half
month by month; paths are ``mean x max(0, 1 + e)``, so bounds nest and a month the plan leaves
empty stays empty. Reconciliation: plan-driven series are taken out of MinT (their base forecast
and paths set to zero and their residuals shrunk, so MinT leaves them at zero; each ancestor's base
forecast and paths lose what the model would have forecast for them, leaving the ancestor's own
estimate of the rest), the rest of the hierarchy is reconciled as before, and the plan paths are
added back through the summing matrix, so every level stays coherent path by path. Without
reconciliation the ancestors are shifted by (plan - model) of their plan-driven descendants.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from pipeline import intervals as iv
from pipeline.backtest import (
    FALLBACK,
    SCALE,
    SIGMA,
    WINDOW,
    WindowSpec,
    backtest,
    fit_predict,
)
from pipeline.errors import InputError, Problem
from pipeline.estimate import (
    COST,
    HEADCOUNT,
    SCHEDULED_RUNS,
    estimate_from_plan,
    plan_sources,
    plan_start,
)
from pipeline.frames import (
    CATEGORY,
    CUTOFF,
    DS,
    MEAN,
    MODEL,
    PHASE,
    UID,
    Y,
    check_levels,
    fill_gaps,
    hi_col,
    interval_cols,
    lo_col,
    parse_hierarchy_id,
    validate_frame,
)
from pipeline.metrics import scale_of, summarize
from pipeline.models.base import Forecaster
from pipeline.models.ensemble import (
    DEFAULT_MEMBERS,
    Ensemble,
    combine_backtest,
    trimmed_equal_weights,
)
from pipeline.plan import Plan

log = logging.getLogger(__name__)

ENSEMBLE = "ensemble"
BASELINE = "analytic_baseline"
DEFAULT_MODELS = (
    "analytic_baseline",
    "seasonal_naive",
    "ets",
    "theta",
    "sarimax",
    "lightgbm",
    "ensemble",
)


@dataclass(frozen=True)
class ForecastConfig:
    horizon: int = 18
    levels: tuple[int, ...] = (80, 95)
    models: tuple[str, ...] = DEFAULT_MODELS
    n_windows: int = 3  # rolling-origin backtest cutoffs
    step: int = 3  # months between cutoffs
    n_paths: int = 1000
    seed: int = 0
    reconcile: bool = False  # True when the series form the phasecast hierarchy
    executor: str = "serial"  # or "processes" / "dask", passed to pipeline.parallel
    gaps: str = "zero"  # zero | interpolate | error: what a month missing inside a series becomes
    selection_margin: float = (
        0.7  # a single model replaces the combination only if its backtest MASE is < 30 % of it
    )
    ensemble_trim: float = 1.25  # a member worse than 1.25x the best pooled MASE leaves the mix
    plan_rel_sd: float = (
        0.10  # relative sd of a plan-driven forecast at 3 months ahead (x sqrt(h / 3))
    )
    plan_tolerance: float = (
        0.10  # a steady series follows the plan when the plan is within 10 % of history
    )


@dataclass
class ForecastResult:
    forecast: pd.DataFrame
    all_forecasts: pd.DataFrame
    backtest: pd.DataFrame
    metrics: pd.DataFrame
    selection: pd.DataFrame
    paths: np.ndarray
    path_ids: list[str]
    path_ds: pd.DatetimeIndex
    fitted: dict[str, Forecaster]
    events: list[dict[str, object]] = field(default_factory=list)
    ensemble_weights: dict[str, float] = field(default_factory=dict)


# --- input -----------------------------------------------------------------


def prepare(
    df: pd.DataFrame, gaps: str = "zero", source: str = "series"
) -> tuple[pd.DataFrame, pd.DataFrame | None, list[str]]:
    """Observed history (gap-free), future driver rows (or None) and the driver column names."""
    if gaps not in ("zero", "interpolate", "error"):
        raise InputError(f"gaps must be zero, interpolate or error. Got {gaps!r} instead.")
    v = validate_frame(df, source=source)
    if v.empty:
        raise InputError(
            Problem("no rows", source), fix="the file needs at least one row per series"
        )
    drivers = [c for c in v.columns if c not in (UID, DS, Y, PHASE, CATEGORY)]
    has_y = v[Y].notna()
    last_obs = v[has_y].groupby(UID)[DS].max()
    first_obs = v[has_y].groupby(UID)[DS].min()
    empty = sorted(set(v[UID]) - set(last_obs.index))
    if empty:
        raise InputError(
            [Problem(f"series {u!r} has no observed y", source, column=Y) for u in empty],
            fix="give every series at least one month with a value",
        )
    after = v[DS] > v[UID].map(last_obs)
    before = v[DS] < v[UID].map(first_obs)
    future = v[after] if drivers and after.any() else None
    hist = v[~after & ~before]
    n_expected = (
        hist.groupby(UID)[DS].max().dt.to_period("M")
        - hist.groupby(UID)[DS].min().dt.to_period("M")
    ).apply(lambda p: p.n) + 1
    counts = hist.groupby(UID)[Y].count()
    gappy = counts.index[counts.to_numpy() < n_expected.reindex(counts.index).to_numpy()]
    if len(gappy):
        if gaps == "error":
            raise InputError(
                [
                    Problem(
                        f"series {u!r} has months missing (or y empty) inside its span",
                        source,
                        column=DS,
                    )
                    for u in gappy[:20]
                ],
                fix="fill the missing months, or run with --gaps zero / --gaps interpolate",
            )
        hist = fill_gaps(hist, value=None)
        if gaps == "zero":
            hist[Y] = hist[Y].fillna(0.0)
        else:
            hist[Y] = hist.groupby(UID, sort=False)[Y].transform(
                lambda s: s.interpolate(limit_area="inside")
            )
    return hist.reset_index(drop=True), future, drivers


def model_factory(plan: Plan | None, executor: str = "serial") -> Callable[[str], Forecaster]:
    """Models by name: the baseline gets the plan, per-series models the executor."""
    import inspect

    from pipeline.models import REGISTRY, make_model

    def make(name: str) -> Forecaster:
        params = inspect.signature(REGISTRY[name].__init__).parameters
        kw: dict[str, object] = {}
        if "plan" in params:
            kw["plan"] = plan
        if "executor" in params:
            kw["executor"] = executor
        return make_model(name, **kw)

    return make


def resolve_models(names: tuple[str, ...]) -> list[str]:
    from pipeline.models import REGISTRY

    unknown = [n for n in names if n not in REGISTRY]
    if unknown and set(unknown) - set(DEFAULT_MODELS):
        raise InputError(
            f"unknown model(s) {unknown}; known models are {sorted(REGISTRY)}",
            fix="pick registered model names, e.g. --models ets --models theta",
        )
    if unknown:
        log.warning("models not available in this installation, skipped: %s", unknown)
    out = [n for n in names if n in REGISTRY]
    if BASELINE not in out:  # the reference and the fallback always runs
        out.insert(0, BASELINE)
    return out


# --- selection -------------------------------------------------------------


def per_series_scores(bt: pd.DataFrame) -> pd.DataFrame:
    """Mean over windows of each forecast's MASE: (unique_id x model)."""
    t = bt.assign(_e=(bt[Y] - bt[MEAN]).abs() / bt[SCALE])
    return t.groupby([UID, MODEL, CUTOFF])["_e"].mean().groupby(level=[0, 1]).mean().unstack(MODEL)


def select_models(
    ids: list[str], scores: pd.DataFrame, pooled: pd.Series, margin: float
) -> pd.DataFrame:
    """``unique_id, model, reason`` per series (see the module docstring for the rule)."""
    default = str(pooled.idxmin()) if len(pooled) else BASELINE
    rows = []
    for uid in ids:
        if uid not in scores.index or scores.loc[uid].dropna().empty:
            rows.append(
                (uid, default, f"no backtest (history too short): best pooled MASE ({default})")
            )
            continue
        s = scores.loc[uid].dropna()
        best = str(s.idxmin())
        if ENSEMBLE in s.index and best != ENSEMBLE and s[best] > (1 - margin) * s[ENSEMBLE]:
            rows.append(
                (uid, ENSEMBLE, f"combination kept: best single ({best}) not {margin:.0%} better")
            )
        else:
            rows.append((uid, best, f"lowest backtest MASE ({s[best]:.3f})"))
    return pd.DataFrame(rows, columns=[UID, MODEL, "reason"])


def _next_month(ts: pd.Timestamp) -> pd.Timestamp:
    return pd.Timestamp(ts) + pd.DateOffset(months=1)


def plan_overrides(
    hist: pd.DataFrame, plan: Plan | None, horizon: int, tolerance: float = 0.10
) -> dict[str, tuple[bool, str]]:
    """``unique_id -> (plan_driven, note)`` for the bottom series the plan covers in their horizon
    (the rule is in the module docstring). Series the plan does not cover are absent."""
    if plan is None or hist.empty:
        return {}
    last = hist.groupby(UID, sort=False)[DS].max()
    p0 = plan_start(plan)
    by_last: dict[pd.Timestamp, dict[tuple[str, str], set[str]]] = {}
    out: dict[str, tuple[bool, str]] = {}
    for uid, last_ds in last.items():
        phase, cat = parse_hierarchy_id(str(uid))
        if phase is None or cat is None:
            continue
        if last_ds not in by_last:
            by_last[last_ds] = plan_sources(plan, _next_month(last_ds), horizon)
        srcs = by_last[last_ds].get((phase, cat))
        if not srcs:
            continue
        names = ", ".join(sorted(s.replace("_", " ") for s in srcs))
        if SCHEDULED_RUNS in srcs:
            out[str(uid)] = (
                True,
                "plan-driven: scheduled runs in the plan (bursts no backtest can see)",
            )
            continue
        y = hist.loc[hist[UID] == uid].set_index(DS)[Y].sort_index()
        if p0 is not None and p0 <= last_ds:
            n = (last_ds.year - p0.year) * 12 + last_ds.month - p0.month + 1
            est = estimate_from_plan(plan, p0, n)
            est = est[(est[PHASE] == phase) & (est[CATEGORY] == cat)].set_index(DS)[COST]
            both = pd.concat([est, y], axis=1, join="inner").dropna()
            if len(both):
                den = float(both[Y].abs().sum())
                wape = float((both[COST] - both[Y]).abs().sum()) / den if den > 0 else np.inf
                ok = wape <= tolerance
                out[str(uid)] = (
                    ok,
                    (f"plan-driven: {names} in the plan, " if ok else f"plan ({names}) ")
                    + f"{'matched' if ok else 'missed'} the {len(both)} closed month(s) it covers "
                    + f"(WAPE {wape:.1%}, tolerance {tolerance:.0%})"
                    + ("" if ok else ": models kept"),
                )
                continue
        if srcs == {HEADCOUNT} and len(y):
            first = estimate_from_plan(plan, _next_month(last_ds), 1)
            first = first[(first[PHASE] == phase) & (first[CATEGORY] == cat)][COST]
            ref = float(y.iloc[-1])
            if len(first) and ref != 0:
                rel = abs(float(first.iloc[0]) - ref) / abs(ref)
                ok = rel <= tolerance
                out[str(uid)] = (
                    ok,
                    (
                        f"plan-driven: headcount in the plan (first month within {rel:.1%} "
                        f"of the last actual)"
                    )
                    if ok
                    else (
                        f"plan (headcount) is {rel:.1%} off the last actual month "
                        f"(tolerance {tolerance:.0%}): models kept"
                    ),
                )
                continue
        out[str(uid)] = (
            False,
            f"plan ({names}) covers no closed month to check it against: models kept",
        )
    return out


def plan_paths(
    mean: np.ndarray, rel_sd: float, n_paths: int, rng: np.random.Generator
) -> np.ndarray:
    """Paths (n_paths, h) of a plan-driven forecast: ``mean x max(0, 1 + e)`` with a relative error
    of sd ``rel_sd x sqrt(h / 3)``, half common to the path's months, half month by month."""
    h = len(mean)
    sd = rel_sd * np.sqrt(np.arange(1, h + 1, dtype=float) / 3.0)
    e = np.sqrt(0.5) * rng.standard_normal((n_paths, 1)) + np.sqrt(0.5) * rng.standard_normal(
        (n_paths, h)
    )
    m = np.asarray(mean, dtype=float)
    return m + np.abs(m) * np.maximum(sd * e, -1.0)


def _ancestors(uid: str, ids: list[str]) -> list[int]:
    phase, _ = parse_hierarchy_id(uid)
    pos = {u: i for i, u in enumerate(ids)}
    return [pos[a] for a in (phase, "total") if a is not None and a in pos and a != uid]


# --- the job ---------------------------------------------------------------


def _future_frame(pred: pd.DataFrame) -> pd.DataFrame:
    pred = pred.copy()
    pred["h"] = pred.groupby(UID, sort=False).cumcount() + 1
    return pred


def run_forecast(
    df: pd.DataFrame,
    config: ForecastConfig,
    plan: Plan | None = None,
    X_future: pd.DataFrame | None = None,
    progress: bool = True,
) -> ForecastResult:
    levels = check_levels(config.levels)
    if config.horizon < 1:
        raise InputError(f"horizon must be at least 1. Got {config.horizon} instead.")
    hist, future, drivers = prepare(df, config.gaps)
    if X_future is None:
        X_future = future
    names = resolve_models(config.models)
    base = [n for n in names if n != ENSEMBLE]
    make = model_factory(plan, config.executor)
    ids = [str(u) for u in pd.unique(hist[UID])]

    from tqdm.auto import tqdm

    n_steps = len(base) * (config.n_windows + 1) + 2
    bar = tqdm(total=n_steps, disable=not progress, desc="forecast", unit="step")

    def tick(msg: str) -> None:
        bar.set_postfix_str(msg, refresh=False)
        bar.update(1)

    # 2. backtest
    spec = WindowSpec(config.horizon, config.n_windows, config.step)
    bt, events = backtest(hist, base, make, spec, drivers, progress=tick)
    pooled = (
        bt.assign(_e=(bt[Y] - bt[MEAN]).abs() / bt[SCALE]).groupby(MODEL)["_e"].mean()
        if len(bt)
        else pd.Series(dtype=float)
    )
    weights: dict[str, float] = {}
    if ENSEMBLE in names:
        member_err = {m: float(v) for m, v in pooled.items() if m in DEFAULT_MEMBERS}
        weights = trimmed_equal_weights(member_err, trim=config.ensemble_trim)
        if not weights:  # no statistical member available: combine what there is
            weights = {m: 1.0 / len(base) for m in base}
        if len(bt):
            bt = pd.concat([bt, combine_backtest(bt, weights)], ignore_index=True)
            pooled = bt.assign(_e=(bt[Y] - bt[MEAN]).abs() / bt[SCALE]).groupby(MODEL)["_e"].mean()

    # 3. calibration
    pools = iv.calibrate(bt, config.horizon, models=names)
    bt_out = iv.cross_fitted(bt, levels, config.horizon) if len(bt) else bt
    tick("calibrated")

    # 4. selection
    scores = per_series_scores(bt) if len(bt) else pd.DataFrame()
    selection = select_models(ids, scores, pooled, config.selection_margin)
    model_choice = selection.set_index(UID)[MODEL].copy()  # what the models alone would publish
    plan_notes = plan_overrides(hist, plan, config.horizon, config.plan_tolerance)
    plan_ids = [u for u in ids if plan_notes.get(u, (False, ""))[0]]
    for uid, (driven, note) in plan_notes.items():
        row = selection[UID] == uid
        if driven:
            selection.loc[row, MODEL] = BASELINE
            selection.loc[row, "reason"] = note
        else:
            selection.loc[row, "reason"] += "; " + note
    for uid in plan_ids:
        for a in _ancestors(uid, ids):
            selection.loc[selection[UID] == ids[a], "reason"] += f"; includes plan-driven {uid}"

    # 5. final fits
    scales = hist.groupby(UID, sort=False)[Y].apply(lambda s: scale_of(s.to_numpy()))
    fitted: dict[str, Forecaster] = {}
    frames: dict[str, pd.DataFrame] = {}
    for name in base:
        bar.set_postfix_str(f"final fit: {name}", refresh=False)
        pred, model, reason = fit_predict(name, hist, config.horizon, make, X_future)
        if reason:
            events.append({MODEL: name, WINDOW: "final", "reason": reason})
        fitted[name] = model
        frames[name] = _future_frame(pred)
        bar.update(1)
    if ENSEMBLE in names:
        members = {m: fitted[m] for m in weights if m in fitted}
        fitted[ENSEMBLE] = Ensemble.from_fitted(members, weights)
        parts = []
        for m, w in weights.items():
            f = frames[m].assign(_w=w)
            parts.append(f)
        allm = pd.concat(parts)
        allm["_wm"] = allm["_w"] * allm[MEAN]
        allm["_ws"] = allm["_w"] * allm[SIGMA]
        g = allm.groupby([UID, DS], sort=False)
        ens = g[["_wm", "_ws", "_w"]].sum()
        ens[MEAN] = ens["_wm"] / ens["_w"]
        ens[SIGMA] = ens["_ws"] / ens["_w"]
        ens[FALLBACK] = g[FALLBACK].any()
        ens = ens[[MEAN, SIGMA, FALLBACK]].reset_index()
        frames[ENSEMBLE] = _future_frame(ens)

    all_parts = []
    for name, f in frames.items():
        f = f.copy()
        f[SCALE] = f[UID].map(scales).to_numpy()
        f = iv.calibrated_frame(f, pools[name], levels)
        f[MODEL] = name
        all_parts.append(f)
    allf = pd.concat(all_parts, ignore_index=True)
    nonneg = hist.groupby(UID, sort=False)[Y].min() >= 0

    # 6. published forecast and its paths
    sel = selection.set_index(UID)[MODEL]
    pub = allf[allf[MODEL].to_numpy() == allf[UID].map(sel).to_numpy()].copy()
    pub = (
        pub.set_index([UID, "h"])
        .reindex(pd.MultiIndex.from_product([ids, range(1, config.horizon + 1)], names=[UID, "h"]))
        .reset_index()
    )
    h = config.horizon
    mean = pub[MEAN].to_numpy(float).reshape(len(ids), h)
    d = iv.normalizer(pub[SIGMA], pub[SCALE]).reshape(len(ids), h)
    rng = np.random.default_rng(config.seed)
    paths = np.empty((len(ids), config.n_paths, h))
    for i, uid in enumerate(ids):
        paths[i] = mean[i] + d[i] * pools[sel[uid]].draw(config.n_paths, h, rng)
    path_ds = pd.DatetimeIndex(pub[DS].to_numpy()[:h]) if len(ids) else pd.DatetimeIndex([])
    nn = nonneg.reindex(ids).to_numpy(bool)

    # plan-driven series: the plan's paths; what the models would have said, for the ancestors
    pos = {u: i for i, u in enumerate(ids)}
    plan_rows = [pos[u] for u in plan_ids]
    model_mean = np.zeros((len(ids), h))
    if plan_ids:
        alt = allf[allf[UID].isin(plan_ids)]
        alt = alt[alt[MODEL].to_numpy() == alt[UID].map(model_choice).to_numpy()]
        for uid, g in alt.groupby(UID, sort=False):
            model_mean[pos[str(uid)], : len(g)] = g.sort_values("h")[MEAN].to_numpy(float)[:h]
        for i in plan_rows:
            paths[i] = plan_paths(mean[i], config.plan_rel_sd, config.n_paths, rng)

    if config.reconcile:
        resid = _aligned_residuals(bt, selection, ids)
        var1 = (d[:, 0] ** 2) if h else None
        plan_mean = mean[plan_rows].copy()
        plan_p = paths[plan_rows].copy()
        if plan_rows:  # take the plan-driven series out of MinT (module docstring)
            for i in plan_rows:
                for a in _ancestors(ids[i], ids):
                    mean[a] -= model_mean[i]
                    paths[a] -= model_mean[i]
            mean[plan_rows] = 0.0
            paths[plan_rows] = 0.0
            if resid is not None:
                resid = resid.copy()
                resid[:, plan_rows] *= 1e-3
            if var1 is not None:
                var1 = var1.copy()
                var1[plan_rows] = np.maximum(var1[plan_rows], 1e-12) * 1e-6
        mean, paths, info = _reconcile(ids, mean, paths, resid, var1, nn)
        if plan_rows:
            from pipeline.reconcile import summing_matrix

            S, bottom = summing_matrix(ids)
            brow = [pos[b] for b in bottom]
            b_mean, b_paths = mean[brow].copy(), paths[brow].copy()
            for k, i in enumerate(plan_rows):
                j = bottom.index(ids[i])
                b_mean[j], b_paths[j] = plan_mean[k], plan_p[k]
            mean = S @ b_mean
            paths = np.einsum("ib,bph->iph", S, b_paths)
            info["method"] = (
                f"{info['method']}; plan-driven series added back: {', '.join(plan_ids)}"
            )
        events.append(
            {MODEL: "reconcile", WINDOW: "final", "reason": f"reconciled by {info['method']}"}
        )
        qs = {}
        for lv in levels:
            alpha = 1 - lv / 100
            qs[lo_col(lv)] = np.quantile(paths, alpha / 2, axis=1)
            qs[hi_col(lv)] = np.quantile(paths, 1 - alpha / 2, axis=1)
        pub[MEAN] = mean.ravel()
        for lv in levels:
            pub[lo_col(lv)] = np.minimum(qs[lo_col(lv)], mean).ravel()
            pub[hi_col(lv)] = np.maximum(qs[hi_col(lv)], mean).ravel()
    else:
        for i in plan_rows:  # ancestors follow their plan-driven descendants
            delta = mean[i] - model_mean[i]
            for a in _ancestors(ids[i], ids):
                paths[a] += delta
                rows = (pub[UID] == ids[a]).to_numpy()
                for c in [MEAN, *interval_cols(levels)]:
                    pub.loc[rows, c] = pub.loc[rows, c].to_numpy(float) + delta
        for i in plan_rows:
            rows = (pub[UID] == ids[i]).to_numpy()
            for lv in levels:
                alpha = 1 - lv / 100
                pub.loc[rows, lo_col(lv)] = np.minimum(
                    np.quantile(paths[i], alpha / 2, axis=0), mean[i]
                )
                pub.loc[rows, hi_col(lv)] = np.maximum(
                    np.quantile(paths[i], 1 - alpha / 2, axis=0), mean[i]
                )
        paths[nn] = np.maximum(paths[nn], 0.0)
        clip_rows = pub[UID].map(nonneg).to_numpy(bool)
        for c in [MEAN, *interval_cols(levels)]:
            pub.loc[clip_rows, c] = pub.loc[clip_rows, c].clip(lower=0.0)
        cr = allf[UID].map(nonneg).to_numpy(bool)
        for c in [MEAN, *interval_cols(levels)]:
            allf.loc[cr, c] = allf.loc[cr, c].clip(lower=0.0)

    fb = pub[FALLBACK].fillna(False).to_numpy(bool)
    pub[MODEL] = np.where(fb, BASELINE + "(fallback)", pub[MODEL].to_numpy())
    fb_series = set(pub.loc[fb, UID])
    if fb_series:
        selection.loc[selection[UID].isin(fb_series), "reason"] += (
            "; fallback: fit failed, analytic baseline used"
        )
    out_cols = [UID, DS, MODEL, MEAN, *interval_cols(levels)]
    if config.reconcile or _hierarchical(ids):
        for c, v in ((PHASE, 0), (CATEGORY, 1)):
            pub[c] = [parse_hierarchy_id(u)[v] for u in pub[UID]]
            allf[c] = [parse_hierarchy_id(u)[v] for u in allf[UID]]
        out_cols += [PHASE, CATEGORY]
    forecast = pub[out_cols].reset_index(drop=True)
    all_cols = [*out_cols, SIGMA, FALLBACK]
    all_forecasts = (
        allf[[c for c in all_cols if c in allf.columns]]
        .sort_values([MODEL, UID, DS])
        .reset_index(drop=True)
    )

    metrics = metrics_table(bt_out, levels) if len(bt_out) else pd.DataFrame()
    tick("done")
    bar.close()
    return ForecastResult(
        forecast=forecast,
        all_forecasts=all_forecasts,
        backtest=bt_out.reset_index(drop=True) if len(bt_out) else bt_out,
        metrics=metrics,
        selection=selection,
        paths=paths,
        path_ids=ids,
        path_ds=path_ds,
        fitted=fitted,
        events=events,
        ensemble_weights=weights,
    )


def _hierarchical(ids: list[str]) -> bool:
    return "total" in ids


def _aligned_residuals(
    bt: pd.DataFrame, selection: pd.DataFrame, ids: list[str]
) -> np.ndarray | None:
    if bt.empty:
        return None
    sel = selection.set_index(UID)[MODEL]
    mine = bt[bt[MODEL].to_numpy() == bt[UID].map(sel).to_numpy()]
    wide = (
        mine.assign(_e=mine[Y] - mine[MEAN])
        .pivot_table(index=[WINDOW, "h"], columns=UID, values="_e", aggfunc="first")
        .reindex(columns=ids)
    )
    return wide.to_numpy(float)


def _reconcile(
    ids: list[str],
    mean: np.ndarray,
    paths: np.ndarray,
    resid: np.ndarray | None,
    var1: np.ndarray | None,
    nonneg: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, dict[str, object]]:
    from pipeline.reconcile import reconcile

    m, p, info = reconcile(ids, mean, paths, resid, var1, nonneg)
    assert p is not None
    return m, p, info


def metrics_table(bt: pd.DataFrame, levels: tuple[int, ...]) -> pd.DataFrame:
    """Metrics per model, per model x horizon and per model x series (column ``scope``)."""
    parts = [
        summarize(bt, levels, by=[MODEL]).assign(scope="model"),
        summarize(bt, levels, by=[MODEL, "h"]).assign(scope="model_h"),
        summarize(bt, levels, by=[MODEL, UID]).assign(scope="model_series"),
    ]
    out = pd.concat(parts, ignore_index=True)
    first = ["scope", MODEL, "h", UID]
    return out[[c for c in first if c in out.columns] + [c for c in out.columns if c not in first]]
