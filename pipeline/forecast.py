"""The forecasting job: backtest every model, calibrate intervals, choose per series, forecast,
reconcile, and sample paths of the published forecast.

``run_forecast(df, config)`` is what ``phasecast forecast`` and the monthly run call. Steps:

1. validate the long frame; rows with an empty ``y`` after a series' last observation carry future
   driver values; gaps inside a series are filled per ``config.gaps`` (``zero``: a month without a
   charge costs nothing, the default for cost data; ``interpolate``: linear; ``error``: refuse);
2. rolling-origin backtest of every model (:mod:`pipeline.backtest`); the combination's backtest
   is built from its members' (:mod:`pipeline.models.ensemble`): ETS, Theta, SARIMAX and, from
   100 series on, LightGBM; a member more than 1.25x the best local member's pooled backtest MASE
   left out; the median of four members, the mean of fewer (:func:`combination_of`);
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
6. sample paths of the published forecast by resampling whole backtest error vectors (on the log
   scale for positive forecasts, drawn jointly across series with the backtest's error
   correlation, :mod:`pipeline.coherence`), reconciled over the hierarchy when ``config.reconcile``
   (:mod:`pipeline.reconcile`);
7. series whose history is never negative get paths clipped at zero; the published ``mean`` is the
   mean of the paths and the bounds their quantiles, so ``lo <= mean <= hi`` always holds and every
   period sum has the mean of its months. For a bursty never-negative series (pre-training bursts
   the plan does not schedule) that mean is the expectation, bursts included, above its typical
   month: measured on generated hierarchies, pulling it back to the model's point forecast cut
   WAPE at 1-3 months from 0.155 to 0.117 but dropped 80 % coverage at 7-18 months from 0.75 to
   0.62, so the expectation is kept.

Plan-driven series (the plan *is* the forecast for scheduled runs) are described in
:mod:`pipeline.plan_driven`; lines no longer billed (a one-off credit, a retired service) are
forecast at 0 with no band (:func:`no_longer_billed`); steps 6 and 7 (published paths,
reconciliation) are in :mod:`pipeline.coherence`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from features.drivers import driven_ids
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
from pipeline.coherence import (
    BASELINE,
    UNIT_COST,
    Published,
    _ancestors,
    output_tables,
    published_paths,
    reconcile_step,
    unreconciled_step,
)
from pipeline.errors import InputError, Problem
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
    node_parents,
    validate_frame,
)
from pipeline.metrics import accuracy_table, scale_of, summarize
from pipeline.models import REGISTRY
from pipeline.models.base import Forecaster
from pipeline.models.ensemble import (
    COMBINATIONS,
    DEFAULT_MEMBERS,
    Ensemble,
    combine_backtest,
    grouped_combination,
    never_negative,
    trimmed_equal_weights,
)
from pipeline.plan import Plan
from pipeline.plan_driven import HEADCOUNT_REASON, RUNS_REASON, plan_overrides

__all__ = ["ForecastConfig", "ForecastResult", "Published", "plan_overrides", "run_forecast"]

log = logging.getLogger(__name__)

ENSEMBLE = "ensemble"
DEFAULT_MODELS = (
    "analytic_baseline",
    "seasonal_naive",
    "ets",
    "theta",
    "sarimax",
    "lightgbm",
    "unit_cost",
    "ensemble",
)


@dataclass(frozen=True)
class ForecastConfig:
    horizon: int = 18
    levels: tuple[int, ...] = (80, 95)
    models: tuple[str, ...] = DEFAULT_MODELS
    n_windows: int = 3  # rolling-origin backtest cutoffs
    step: int = 3  # least months between cutoffs (they spread over the history: pipeline.backtest)
    n_paths: int = 1000
    seed: int = 0
    reconcile: bool = False  # True when the series form the phasecast hierarchy
    executor: str = "serial"  # or "processes" / "dask", passed to pipeline.parallel
    gaps: str = "zero"  # zero | interpolate | error: what a month missing inside a series becomes
    selection_margin: float = (
        0.7  # a single model replaces the combination only if its backtest MASE is < 30 % of it
    )
    ensemble_trim: float = 1.25  # a member over 1.25x the best local member's pooled MASE leaves
    ensemble_members: tuple[str, ...] = DEFAULT_MEMBERS
    # a global member (LightGBM) joins the combination from this many series: on 15-series cost
    # hierarchies it learns from too few (module docstring, step 2)
    global_member_min_series: int = 100
    # "auto": the median of four or more members, the mean of fewer (combination_of); or "median"
    # / "mean" (pipeline.models.ensemble.COMBINATIONS)
    ensemble_combination: str = "auto"
    # lines nothing has been billed on lately are forecast at 0 with no band (no_longer_billed)
    quiet_lines_at_zero: bool = True
    # the plan says nothing of the months before its start: a scheduled-runs series has no run
    # there (published_paths), and headcount is checked at its first planned month (plan_driven)
    plan_from_its_start: bool = True
    plan_rel_sd: float = (
        0.10  # relative sd of a plan-driven forecast at 3 months ahead (x sqrt(h / 3))
    )
    driver_rel_sd: float = (
        0.06  # relative sd at 3 months ahead (x sqrt(h / 3)) of a planned driver (traffic plan)
    )
    plan_tolerance: float = (
        0.10  # a steady series follows the plan when the plan is within 10 % of history
    )

    def __post_init__(self) -> None:
        unknown = [m for m in self.ensemble_members if m not in REGISTRY or m == ENSEMBLE]
        if unknown:
            raise ValueError(
                f"ensemble_members: {', '.join(unknown)} is not a member model; "
                f"use some of {', '.join(sorted(set(REGISTRY) - {ENSEMBLE}))}."
            )
        if self.ensemble_combination not in ("auto", *COMBINATIONS):
            raise ValueError(
                f"ensemble_combination must be one of auto, {', '.join(COMBINATIONS)}. "
                f"Got {self.ensemble_combination!r} instead."
            )


#: fields added to ForecastConfig after versions were stored, with the values those versions ran
#: with (a stored configuration without the name re-runs as it ran: ``flavor.forecast_config_from``)
CONFIG_BEFORE: dict[str, object] = {
    "ensemble_members": ("ets", "theta", "sarimax"),
    "ensemble_combination": "mean",
    "quiet_lines_at_zero": False,
    "plan_from_its_start": False,
}


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
    # per total / phase / series: the published model's backtest WAPE, typical error at 1, 3 and
    # 12 months, MASE, coverage (:func:`pipeline.metrics.accuracy_table`)
    accuracy: pd.DataFrame = field(default_factory=pd.DataFrame)
    # the future driver rows the forecast read (None without drivers)
    drivers_future: pd.DataFrame | None = None


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
    """The steps of the module docstring, in order; each is a function below."""
    levels = check_levels(config.levels)
    if config.horizon < 1:
        raise InputError(f"horizon must be at least 1. Got {config.horizon} instead.")
    hist, future, drivers = prepare(df, config.gaps)
    if X_future is None:
        X_future = future
    names = resolve_models(config.models)
    if UNIT_COST in names and not drivers:  # it needs a driver column
        names = [n for n in names if n != UNIT_COST]
    base = [n for n in names if n != ENSEMBLE]
    make = model_factory(plan, config.executor)
    ids = [str(u) for u in pd.unique(hist[UID])]

    from tqdm.auto import tqdm

    bar = tqdm(
        total=len(base) * (config.n_windows + 1) + 2,
        disable=None if progress else True,  # None: on a terminal only
        desc="forecast",
        unit="step",
    )

    def tick(msg: str) -> None:
        bar.set_postfix_str(msg, refresh=False)
        bar.update(1)

    bt, events, pooled, weights = backtest_step(hist, names, base, make, drivers, config, tick)
    pools = iv.calibrate(bt, config.horizon, models=names)
    bt_out = iv.cross_fitted(bt, levels, config.horizon) if len(bt) else bt
    tick("calibrated")
    selection, model_choice, plan_ids, quiet_ids = selection_step(
        ids, hist, bt, pooled, plan, config
    )
    fitted, frames = final_fits(hist, names, base, make, X_future, weights, config, tick, events)
    allf = calibrated_forecasts(frames, hist, pools, levels)
    nonneg = never_negative(hist)
    pub = published_paths(
        ids,
        allf,
        selection,
        model_choice,
        plan_ids,
        pools,
        nonneg,
        config,
        bt,
        hist,
        quiet_ids,
        plan_begins=plan.start if plan is not None and config.plan_from_its_start else None,
    )
    if config.reconcile:
        reconcile_step(pub, ids, bt, selection, plan_ids, levels, config, events)
    else:
        unreconciled_step(pub, ids, allf, nonneg, levels)
    forecast, all_forecasts = output_tables(pub.table, allf, selection, ids, levels, config)
    metrics = metrics_table(bt_out, levels) if len(bt_out) else pd.DataFrame()
    reasons = selection.set_index(UID)["reason"].astype(str)
    # plan-driven series whose published forecast no backtest saw (the plan describes the months
    # ahead only): their accuracy rows say so, their ancestors' are of the rest
    unseen = (RUNS_REASON, HEADCOUNT_REASON)
    planned = {u: str(model_choice[u]) for u in plan_ids if reasons[u].startswith(unseen)}
    accuracy = accuracy_table(bt_out, selection.set_index(UID)[MODEL], levels, planned)
    if config.reconcile:
        fixed_parents(selection, ids, plan_ids, quiet_ids)
    tick("done")
    bar.total = bar.n  # short histories run fewer windows than configured: end at 100 %
    bar.refresh()
    bar.close()
    return ForecastResult(
        forecast=forecast,
        all_forecasts=all_forecasts,
        backtest=bt_out.reset_index(drop=True) if len(bt_out) else bt_out,
        metrics=metrics,
        selection=selection,
        paths=pub.paths,
        path_ids=ids,
        path_ds=pub.path_ds,
        fitted=fitted,
        events=events,
        ensemble_weights=weights,
        accuracy=accuracy,
        drivers_future=X_future if drivers else None,
    )


def _pooled_mase(bt: pd.DataFrame) -> pd.Series:
    if not len(bt):
        return pd.Series(dtype=float)
    return bt.assign(_e=(bt[Y] - bt[MEAN]).abs() / bt[SCALE]).groupby(MODEL)["_e"].mean()


def backtest_step(
    hist: pd.DataFrame,
    names: list[str],
    base: list[str],
    make: Callable[[str], Forecaster],
    drivers: list[str],
    config: ForecastConfig,
    tick: Callable[[str], None],
) -> tuple[pd.DataFrame, list[dict[str, object]], pd.Series, dict[str, float]]:
    """Step 2: the rolling-origin backtest of every model, the combination's built from its members'."""
    spec = WindowSpec(config.horizon, config.n_windows, config.step)
    bt, events = backtest(hist, base, make, spec, drivers, progress=tick)
    pooled = _pooled_mase(bt)
    weights: dict[str, float] = {}
    if ENSEMBLE in names:
        local = [m for m in config.ensemble_members if not _is_global(m)]
        many = hist[UID].nunique() >= config.global_member_min_series
        member_err = {
            m: float(v)
            for m, v in pooled.items()
            if m in config.ensemble_members and (m in local or many)
        }
        weights = trimmed_equal_weights(member_err, config.ensemble_trim, reference=local)
        if not weights:  # no statistical member available: combine what there is
            weights = {m: 1.0 / len(base) for m in base}
        if len(bt):
            bt = pd.concat(
                [
                    bt,
                    combine_backtest(
                        bt,
                        weights,
                        nonneg=never_negative_at(hist, bt),
                        how=combination_of(weights, config),
                    ),
                ],
                ignore_index=True,
            )
            pooled = _pooled_mase(bt)
    return bt, events, pooled, weights


def _is_global(name: str) -> bool:
    return bool(getattr(REGISTRY.get(name), "is_global", False))


def combination_of(weights: dict[str, float], config: ForecastConfig) -> str:
    """How the members make the combination: ``config.ensemble_combination``, where ``auto`` is
    the median of four or more members and the mean of fewer. The median of four is the mean of
    the middle two, and no member's miss sets a month (the bench: MASE 0.902 -> 0.893 with
    LightGBM in); the median of three is one member's forecast in each month, and on the cost
    hierarchies (15 series: LightGBM stays out) it lost the averaging the promotion months need
    (seeds 701-705: the promotion error ratio went from 1.09 to 1.29, WAPE months 1-6 from 0.057
    to 0.059)."""
    how = config.ensemble_combination
    if how != "auto":
        return how
    return "median" if sum(w > 0 for w in weights.values()) >= 4 else "mean"


def selection_step(
    ids: list[str],
    hist: pd.DataFrame,
    bt: pd.DataFrame,
    pooled: pd.Series,
    plan: Plan | None,
    config: ForecastConfig,
) -> tuple[pd.DataFrame, pd.Series, list[str], list[str]]:
    """Step 4: a model per series, then the plan-driven overrides and the series no longer billed
    (:func:`no_longer_billed`). Returns the selection, what the models alone would publish, the
    plan-driven series and the series no longer billed."""
    scores = per_series_scores(bt) if len(bt) else pd.DataFrame()
    if (
        UNIT_COST in scores.columns
    ):  # a series without a driver gets the run-rate there: not a choice
        scores.loc[~scores.index.isin(driven_ids(hist)), UNIT_COST] = np.nan
    selection = select_models(ids, scores, pooled, config.selection_margin)
    model_choice = selection.set_index(UID)[MODEL].copy()
    plan_notes = plan_overrides(
        hist, plan, config.horizon, config.plan_tolerance, config.plan_from_its_start
    )
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
    # lines only (a parent with every line quiet adds up to 0 through them); a line the plan
    # prices may be about to start: never taken as quiet
    known = set(ids)
    parents = {a for u in ids for a in node_parents(u) if a in known}
    quiet = (
        no_longer_billed(hist, exclude={*parents, *plan_notes})
        if config.quiet_lines_at_zero
        else {}
    )
    for uid, note in quiet.items():
        row = selection[UID] == uid
        selection.loc[row, MODEL] = BASELINE
        selection.loc[row, "reason"] = note
    return selection, model_choice, plan_ids, [u for u in ids if u in quiet]


def fixed_parents(
    selection: pd.DataFrame, ids: list[str], plan_ids: Collection[str], quiet_ids: Collection[str]
) -> list[str]:
    """Say what the parents whose every line is plan-driven or no longer billed are: reconciled,
    such a parent is the sum of those lines and nothing of its own model's forecast remains in it
    (the demo's pre-training phase is its one plan-driven GPU line, yet read "combination kept:
    best single (lightgbm) not 70% better"). Their ``reason`` says so, in place; their ``model``
    stays the one the backtest chose, which is what the published score and the anomalies read
    (:func:`pipeline.registry.backtest_mase`). Returns those parents."""
    known = set(ids)
    parents = {a for u in ids for a in node_parents(u) if a in known}
    lines: dict[str, list[str]] = {}
    for u in ids:
        if u not in parents:
            for a in node_parents(u):
                if a in known:
                    lines.setdefault(a, []).append(u)
    fixed = {*plan_ids, *quiet_ids}
    named = []
    for parent, its in lines.items():
        if not its or not set(its) <= fixed:
            continue
        planned = [u for u in its if u in plan_ids]
        quiet = [u for u in its if u not in plan_ids]
        parts = []
        if planned:
            parts.append("plan-driven " + ", ".join(planned))
        if quiet:
            parts.append("no longer billed " + ", ".join(quiet))
        row = selection[UID] == parent
        model = selection.loc[row, MODEL].iloc[0] if row.any() else ""
        selection.loc[row, "reason"] = (
            f"the sum of its lines, every one {' or '.join(parts)}: its own {model} forecast "
            "is not used"
        )
        named.append(parent)
    return named


QUIET_MONTHS = 15  # nothing billed for a year and a quarter: a yearly charge posted late would show
QUIET_CREDIT_MONTHS = 6  # a line that only ever carried one credit: half a year without another
ONE_EVENT = 3  # credits within 3 consecutive months are one event (a credit and its correction)
QUIET_GAP_SLACK = 3  # and always 3 months more than the longest gap between its billed months
QUIET_REASON = "no longer billed"


def no_longer_billed(hist: pd.DataFrame, exclude: Collection[str] = ()) -> dict[str, str]:
    """``unique_id -> reason`` for the series nothing has been billed on lately: not a cent either
    way in their last :data:`QUIET_MONTHS` months, or in their last :data:`QUIET_CREDIT_MONTHS`
    when one credit was all that was ever billed on them (a one-off SLA credit, or its months
    within :data:`ONE_EVENT` consecutive months: a credit and its correction), and in any
    case for :data:`QUIET_GAP_SLACK` months more than the longest gap between two billed months (a
    yearly charge or rebate, even posted a quarter late, is never taken for a line that stopped).
    Their published forecast is 0 with no band (:func:`pipeline.coherence.published_paths`).

    A model fitted on such a history forecasts what the history no longer has: the demo's SLA
    credit line (-12,345.67 once, then ten months of nothing) got a monthly 80 % band of -9k to
    +12k from the run-rate's one-step errors, a seasonal naive repeats the credit a year on, and
    conditioning on a month to date of 0 clipped the band's lower half and lifted its mean to 885.
    Series without any billed month (a category that exists in another phase) are left to the
    models, which forecast them at 0 already; so are the series in ``exclude`` (priced by the plan)."""
    out: dict[str, str] = {}
    for uid, g in hist.groupby(UID, sort=False):
        if str(uid) in exclude:
            continue
        g = g.sort_values(DS)
        y = g[Y].to_numpy(float)
        billed = np.flatnonzero(np.abs(y) >= 0.005)  # a cent, either way
        if not len(billed):
            continue
        quiet = len(y) - 1 - int(billed[-1])
        credits_only = bool((y[billed] < 0).all())
        gap = int(np.diff(billed).max()) if len(billed) > 1 else 0
        once = credits_only and int(billed[-1] - billed[0]) < ONE_EVENT
        if quiet >= max(QUIET_CREDIT_MONTHS if once else QUIET_MONTHS, gap + QUIET_GAP_SLACK):
            last = pd.Timestamp(g[DS].to_numpy()[billed[-1]]).strftime("%Y-%m")
            what = "one credit, the last" if once else "credits only, the last"
            what = what if credits_only else "last billed"
            out[str(uid)] = (
                f"{QUIET_REASON}: {what} in {last}, then nothing for {quiet} months; forecast 0"
            )
    return out


def never_negative_at(hist: pd.DataFrame, bt: pd.DataFrame) -> pd.Series:
    """:func:`never_negative` per (series, backtest cutoff), from the months up to the cutoff
    only: a window does not know of a credit that came after it."""
    parts = {c: never_negative(hist[hist[DS] <= c]) for c in pd.unique(bt[CUTOFF]) if pd.notna(c)}
    if not parts:
        return pd.Series(dtype=bool)
    out = pd.concat(parts, names=[CUTOFF, UID]).swaplevel()
    return out.rename_axis([UID, CUTOFF])


def final_fits(
    hist: pd.DataFrame,
    names: list[str],
    base: list[str],
    make: Callable[[str], Forecaster],
    X_future: pd.DataFrame | None,
    weights: dict[str, float],
    config: ForecastConfig,
    tick: Callable[[str], None],
    events: list[dict[str, object]],
) -> tuple[dict[str, Forecaster], dict[str, pd.DataFrame]]:
    """Step 5: every model re-fitted on the full history (a failed fit falls back to the baseline,
    recorded in ``events``), and the combination of the fitted members."""
    fitted: dict[str, Forecaster] = {}
    frames: dict[str, pd.DataFrame] = {}
    for name in base:
        pred, model, reason = fit_predict(name, hist, config.horizon, make, X_future)
        if reason:
            events.append({MODEL: name, WINDOW: "final", "reason": reason})
        fitted[name] = model
        frames[name] = _future_frame(pred)
        tick(f"final fit: {name}")
    if ENSEMBLE in names:
        members = {m: fitted[m] for m in weights if m in fitted}
        nonneg = never_negative(hist)
        how = combination_of(weights, config)
        fitted[ENSEMBLE] = Ensemble.from_fitted(
            members, weights, nonneg.to_dict(), months=config.horizon, how=how
        )
        allm = pd.concat([frames[m].assign(**{MODEL: m}) for m in weights if m in frames])
        ens = grouped_combination(allm, weights, [UID, DS], nonneg, how)
        frames[ENSEMBLE] = _future_frame(ens[[UID, DS, MEAN, SIGMA, FALLBACK]])
    return fitted, frames


def calibrated_forecasts(
    frames: dict[str, pd.DataFrame],
    hist: pd.DataFrame,
    pools: dict[str, iv.ErrorPool],
    levels: tuple[int, ...],
) -> pd.DataFrame:
    """Every model's forecast with its conformal intervals (step 3 applied to step 5)."""
    scales = hist.groupby(UID, sort=False)[Y].apply(lambda s: scale_of(s.to_numpy()))
    parts = []
    for name, f in frames.items():
        f = f.copy()
        f[SCALE] = f[UID].map(scales).to_numpy()
        f = iv.calibrated_frame(f, pools[name], levels)
        f[MODEL] = name
        parts.append(f)
    return pd.concat(parts, ignore_index=True)


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
