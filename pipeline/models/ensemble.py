"""The combination model: the median (by default) or a weighted mean of member forecasts.

Choice, and why: the M4 competition's lesson is that simple combinations of ETS, Theta and
ARIMA-type forecasts beat the single methods (the median or mean of SES/Holt/damped was already
near the top), and that weights fitted from a few holdout windows mostly add noise. The members
are ETS, Theta, SARIMAX and the global LightGBM, combined by their *median* (with four, halfway
between the middle two), unweighted; the backtest only leaves out a member whose pooled MASE is
more than ``trim`` times the best local member's (a broken model). The median lets LightGBM, the one
member that is not a smoothing of the series' own past, pull a month only where a statistical
member agrees with it, and no single member's miss sets the month. Measured on the 1,000 bench
series x 48 months (h = 18, seed 0; ``python -m tests.benchmarks.forecast_bench``), the selected
forecast went from MASE 0.902, sMAPE 8.28, MSIS 7.89 (mean of ETS, Theta, SARIMAX) to 0.893, 8.25,
7.57; fitted once on 300 series (dev seeds 7 and 11), the median of four scored 0.784 and 0.863
against 0.797 and 0.865 for the mean of three. Weighting instead was worse: inverse-backtest-MASE
weights over the four (200 series x 48 months: MASE 0.975 vs 0.945 for the equal-weight trio; 300
series of 24-150 months: 0.821 vs 0.810), because the backtest favoured LightGBM, whose short
windows flatter it against the local models, and the hold-out did not. For the same reason the trim's
bar is the best *local* member: LightGBM's backtest MASE (0.92, hold-out 1.01) as the bar left SARIMAX
out of the bench's combination (backtest 1.23, hold-out 0.94). (The members' median as the bar kept
members the best-local rule trims on the cost hierarchies, and their promotion error ratio went from
1.09 to 1.24 on seeds 701-705.)
:func:`inverse_error_weights` is kept for callers that want weighting; ``how="mean"`` gives the
weighted mean (versions stored before 2026-12-02 use it).

Per-series choice between this combination and the single models happens in the forecasting
job (:mod:`pipeline.forecast`), from the same backtest.

The combined sigma is the weighted geometric mean of the members' sigmas
(:func:`combined_sigma`); intervals are recalibrated on the backtest anyway, so the sigma only
says which series and months are harder than others. The arithmetic mean let the widest member
set every series' width: on 300 generated M3-like series the calibrated combination's MSIS was
7.17 with it and 6.69 with the geometric mean, at the same coverage.

A cost cannot be negative: for a series whose history never is, a member forecasting a negative
month leaves that series' combination (:func:`kept_members`), in the backtest's windows and in the
final fit alike. A labor line that stepped down twice (45k, 31k, 15k) had ETS extrapolate the
steps to -4k within four months and take the combination's mean to -11k at 18 months.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence

import numpy as np
import pandas as pd

from pipeline.frames import DS, MEAN, UID, Y
from pipeline.models.base import Forecaster, SeriesForecast

DEFAULT_MEMBERS: tuple[str, ...] = ("ets", "theta", "sarimax", "lightgbm")
COMBINATIONS = ("median", "mean")  # how the members' means make the combination's


def middle(values: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """The median over the first axis of ``values`` of the entries ``keep`` marks: the middle
    value, or half the sum of the two middle ones (NaN where nothing is kept, or where a kept
    entry is NaN). One formula for the job's frames and a stored version's arrays, so both give
    the same digits."""
    v = np.asarray(values, dtype=float)
    k = np.asarray(keep, bool)
    nan_kept = (k & np.isnan(v)).any(axis=0)
    s = np.sort(np.where(k, v, np.inf), axis=0)  # the left-out sort last
    n = k.sum(axis=0)
    lo = np.take_along_axis(s, np.maximum((n - 1) // 2, 0)[None], axis=0)[0]
    hi = np.take_along_axis(s, (n // 2)[None], axis=0)[0]
    return np.where((n == 0) | nan_kept, np.nan, (lo + hi) / 2)


def inverse_error_weights(errors: Mapping[str, float], trim: float = 1.25) -> dict[str, float]:
    """Weights proportional to ``1 / error`` over members within ``trim`` x the best error
    (non-finite errors are dropped); they sum to 1."""
    ok = {k: float(v) for k, v in errors.items() if np.isfinite(v) and v > 0}
    if not ok:
        return {}
    best = min(ok.values())
    kept = {k: 1.0 / v for k, v in ok.items() if v <= trim * best}
    total = sum(kept.values())
    return {k: v / total for k, v in kept.items()}


def trimmed_equal_weights(
    errors: Mapping[str, float], trim: float = 1.25, reference: Collection[str] | None = None
) -> dict[str, float]:
    """Equal weights over members whose error is within ``trim`` x the best error among the
    ``reference`` members (all by default; finite errors only). The job's reference is the local
    (per-series) members: LightGBM's backtest flatters it (0.92 on the bench, 1.01 on its
    hold-out) and, as the bar, it would leave SARIMAX out (backtest 1.23, hold-out 0.94)."""
    ok = {k: float(v) for k, v in errors.items() if np.isfinite(v) and v > 0}
    ref = [v for k, v in ok.items() if reference is None or k in reference] or list(ok.values())
    if not ref:
        return {}
    best = min(ref)
    kept = [k for k, v in ok.items() if v <= trim * best]
    return {k: 1.0 / len(kept) for k in kept}


def _sigma_from_sums(
    w_log: np.ndarray, w_sig: np.ndarray, w: np.ndarray, n_nonpos: np.ndarray
) -> np.ndarray:
    """The combined sigma from weighted sums over members: of ``log sigma`` (``w_log``), of
    ``sigma`` (``w_sig``), of the weights (``w``), and the count of members whose sigma is not
    positive: the geometric mean, or the arithmetic one where such a member is present."""
    return np.where(np.asarray(n_nonpos) > 0, w_sig / w, np.exp(w_log / w))


def _log_sigma(sig: np.ndarray) -> np.ndarray:
    """``log sigma``, 0 where sigma is not positive (that row takes the arithmetic mean); a NaN
    sigma stays NaN, as it does in the arithmetic mean."""
    return np.log(np.where(sig <= 0, 1.0, sig))


def combined_sigma(sigmas: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Weighted geometric mean over the first axis of ``sigmas`` (members), weights ``w`` (one
    per member, or shaped like ``sigmas``); where a member with weight is not positive (a constant
    series), the arithmetic mean."""
    s = np.asarray(sigmas, dtype=float)
    ww = np.asarray(w, dtype=float)
    if ww.ndim == 1:
        ww = ww.reshape((-1,) + (1,) * (s.ndim - 1))
    used = ww > 0  # a member without weight adds nothing, not even a NaN or an inf
    return _sigma_from_sums(
        np.where(used, ww * _log_sigma(s), 0.0).sum(axis=0),
        np.where(used, ww * s, 0.0).sum(axis=0),
        ww.sum(axis=0),
        ((s <= 0) & used).sum(axis=0),
    )


def never_negative(hist: pd.DataFrame) -> pd.Series:
    """Per series: whether its history is never negative (a cost, not a credit line)."""
    return hist.groupby(UID, sort=False)[Y].min() >= 0


def kept_members(
    negative: np.ndarray, nonneg: np.ndarray, present: np.ndarray | None = None
) -> np.ndarray:
    """Which members stay in a series' combination, (members, series) bools from ``negative``
    (the member forecasts a negative month of that series), ``nonneg`` (per series: its history
    is never negative) and ``present`` (the member has weight and a forecast of that series; all by
    default). A never-negative series leaves out the members forecasting a negative cost, unless
    every member present does (then they all stay: the forecast is what they say)."""
    neg = np.asarray(negative, bool)
    there = np.ones_like(neg) if present is None else np.asarray(present, bool)
    keep = there & ~(neg & np.asarray(nonneg, bool)[None, :])
    none = ~keep.any(axis=0)
    keep[:, none] = there[:, none]
    return keep


def combine(
    means: Sequence[np.ndarray],
    sigmas: Sequence[np.ndarray],
    weights: Sequence[float],
    nonneg: np.ndarray | None = None,
    how: str = "mean",
) -> tuple[np.ndarray, np.ndarray]:
    """The combination of members' (series, h) means and sigmas with one weight per member; with
    ``nonneg`` (per series), the members :func:`kept_members` leaves out of a series weigh 0 there.
    ``how="median"``: the mean is the :func:`middle` of the members with weight (the weights only
    say who is in); the sigma is the weighted geometric mean either way."""
    m = np.stack([np.asarray(x, dtype=float) for x in means])
    s = np.stack([np.asarray(x, dtype=float) for x in sigmas])
    w = np.broadcast_to(np.asarray(weights, dtype=float)[:, None, None], m.shape).copy()
    if nonneg is not None and m.ndim == 3:
        with np.errstate(invalid="ignore"):
            negative = np.nanmin(np.where(np.isnan(m), np.inf, m), axis=2) < 0
        w *= kept_members(negative, nonneg, present=w[:, :, 0] > 0)[:, :, None]
    w /= w.sum(axis=0, keepdims=True)
    if how == "median":
        return middle(m, w > 0), combined_sigma(s, w)
    return np.where(w > 0, w * m, 0.0).sum(axis=0), combined_sigma(s, w)


class Ensemble(Forecaster):
    """The median (or weighted mean) of member models (fitted on the same frame)."""

    name = "ensemble"
    uses_exogenous = True  # passes drivers on to the members that use them
    params_before = {"how": "mean"}  # versions stored before 2026-12-02 averaged their members

    def __init__(
        self,
        members: tuple[str, ...] = DEFAULT_MEMBERS,
        weights: dict[str, float] | None = None,
        how: str = "median",
    ) -> None:
        if how not in COMBINATIONS:
            raise ValueError(f"how must be one of {', '.join(COMBINATIONS)}. Got {how!r} instead.")
        self.members = members
        self.weights = weights
        self.how = how

    @classmethod
    def from_fitted(
        cls,
        members: Mapping[str, Forecaster],
        weights: Mapping[str, float],
        nonneg: Mapping[str, bool] | None = None,
        months: int | None = None,
        how: str = "median",
    ) -> Ensemble:
        """An ensemble over already-fitted members (the job fits each model once); ``nonneg``:
        per series, whether its history is never negative (:func:`kept_members`); ``months``: how
        many months decide who stays (the job's horizon), so a shorter ``predict`` gives the
        same first months as the job published; ``how``: see :func:`combine`."""
        names = tuple(n for n in weights if n in members)
        ens = cls(members=names, weights={n: float(weights[n]) for n in names}, how=how)
        first = members[names[0]]
        ens.ids_ = first.ids_
        ens.last_ds_ = first.last_ds_
        ens.nonneg_ = {str(u): bool((nonneg or {}).get(u, False)) for u in first.ids_}
        ens.decide_months_ = months
        ens.fallback_ids_ = set()
        ens.members_ = {n: members[n] for n in names}
        ens.failed_members_ = {}
        ens.is_fitted_ = True
        return ens

    def _fit(self, df: pd.DataFrame) -> None:
        from pipeline.models import make_model

        self.members_: dict[str, Forecaster] = {}
        self.failed_members_: dict[str, str] = {}
        given = getattr(self, "given_forms_", None) or {}
        for name in self.members:
            try:
                member = make_model(name)
                if name in given:
                    member.given_forms_ = given[name]
                self.members_[name] = member.fit(df)
            except Exception as exc:  # a member that cannot fit leaves the combination, recorded
                self.failed_members_[name] = f"{type(exc).__name__}: {exc}"
        if not self.members_:
            raise RuntimeError(f"no ensemble member could be fitted: {self.failed_members_}")
        self.nonneg_ = {str(u): bool(v) for u, v in never_negative(df).items()}
        self.decide_months_: int | None = None

    @property
    def forms_(self) -> dict[str, dict[str, object]]:
        """Per member, the forms its series were fitted with (see ``PerSeriesForecaster``)."""
        return {n: m.forms_ for n, m in self.members_.items() if hasattr(m, "forms_")}

    def _predict(self, h_out: int, X_future: pd.DataFrame | None) -> SeriesForecast:
        from pipeline.backtest import native_sigma

        # who stays is decided on the job's horizon (decide_months_), whatever is asked for
        h = max(h_out, getattr(self, "decide_months_", None) or h_out)
        if h > h_out and X_future is not None and X_future[DS].nunique() < h:
            h = h_out  # drivers for fewer months than the job's: decide on what there is
        key = pd.MultiIndex.from_arrays(
            [np.repeat(self.ids_, h), np.tile(np.arange(h), len(self.ids_))]
        )
        means, sigmas, ws = [], [], []
        for name, model in self.members_.items():
            xf = X_future if model.uses_exogenous else None
            pred = model.predict(h, level=(80,), X_future=xf)
            step = pred.groupby(UID, sort=False).cumcount().to_numpy()
            idx = pd.MultiIndex.from_arrays([pred[UID].to_numpy(), step])
            m = pd.Series(pred[MEAN].to_numpy(float), index=idx).reindex(key).to_numpy()
            s = pd.Series(native_sigma(pred), index=idx).reindex(key).to_numpy()
            means.append(m.reshape(len(self.ids_), h))
            sigmas.append(s.reshape(len(self.ids_), h))
            ws.append(1.0 if self.weights is None else float(self.weights.get(name, 0.0)))
            self.fallback_ids_ |= set(getattr(model, "fallback_ids_", set()) or set())
        if sum(ws) <= 0:
            ws = [1.0] * len(ws)
        nn = getattr(self, "nonneg_", {})  # versions stored before the rule: no member left out
        nonneg = np.array([nn.get(str(u), False) for u in self.ids_], dtype=bool)
        # an Ensemble pickled before the median (a run folder's fitted.pkl) has no ``how``
        mean, sigma = combine(means, sigmas, ws, nonneg, how=getattr(self, "how", "mean"))
        return SeriesForecast(mean[:, :h_out], sigma[:, :h_out])


def grouped_combination(
    frame: pd.DataFrame,
    weights: Mapping[str, float],
    keys: list[str],
    nonneg: pd.Series | None = None,
    how: str = "mean",
) -> pd.DataFrame:
    """Per ``keys`` group of member rows (column ``model``): the weighted mean of ``mean`` (with
    ``how="median"``, the :func:`middle` of the members with weight), the
    :func:`combined_sigma` of ``sigma``, whether any member fell back, and the first value of every
    other column. With ``nonneg`` (history never negative, indexed by ``keys`` but the month: the
    series id, or the id and the backtest cutoff), a member forecasting a negative month of such a
    forecast weighs 0 in it (:func:`kept_members`)."""
    from pipeline.backtest import FALLBACK, SIGMA
    from pipeline.frames import MODEL

    sub = frame[frame[MODEL].isin([m for m in weights if weights[m] > 0])].copy()
    if sub.empty:
        return sub
    sig = sub[SIGMA].to_numpy(float)
    sub["_w"] = sub[MODEL].map(weights).astype(float)
    if nonneg is not None:
        run = [k for k in keys if k != DS]  # one forecast: a series (and a backtest cutoff)
        neg = (sub.groupby([*run, MODEL], sort=False)[MEAN].transform("min") < 0).to_numpy()
        forecast = sub.groupby(run, sort=False).ngroup().to_numpy()
        member = pd.factorize(sub[MODEL])[0]
        negative = np.zeros((member.max() + 1, forecast.max() + 1), dtype=bool)
        negative[member, forecast] = neg
        present = np.zeros_like(negative)
        present[member, forecast] = True
        at = sub[run[0]] if len(run) == 1 else pd.MultiIndex.from_frame(sub[run])
        nn = np.zeros(forecast.max() + 1, dtype=bool)
        nn[forecast] = nonneg.reindex(at).fillna(False).to_numpy(bool)
        sub["_w"] *= kept_members(negative, nn, present)[member, forecast]
    used = sub["_w"].to_numpy() > 0  # a member without weight adds nothing, not even a NaN
    sub["_wm"] = np.where(used, sub["_w"] * sub[MEAN], 0.0)
    sub["_wl"] = np.where(used, sub["_w"] * _log_sigma(sig), 0.0)
    sub["_wa"] = np.where(used, sub["_w"] * sig, 0.0)
    sub["_np"] = (sig <= 0) & used
    g = sub.groupby(keys, sort=False)
    sums = g[["_wm", "_wl", "_wa", "_w", "_np"]].sum()
    rest = [
        c for c in sub.columns if c not in (*keys, MODEL, MEAN, SIGMA, FALLBACK) and c[0] != "_"
    ]
    res = (g[rest].first().join(sums) if rest else sums).reset_index()
    res[MEAN] = (
        _group_middle(sub[MEAN].to_numpy(float), used, g.ngroup().to_numpy(), len(res))
        if how == "median"
        else res["_wm"] / res["_w"]
    )
    res[SIGMA] = _sigma_from_sums(res["_wl"], res["_wa"], res["_w"], res["_np"])
    res[FALLBACK] = g[FALLBACK].any().to_numpy()
    return res.drop(columns=["_wm", "_wl", "_wa", "_w", "_np"])


def _group_middle(values: np.ndarray, used: np.ndarray, group: np.ndarray, n: int) -> np.ndarray:
    """:func:`middle` per group (``group``: each row's group number, 0 to ``n`` - 1) over the rows
    ``used`` marks, through a (members, groups) array padded with left-out entries."""
    rank = pd.Series(group).groupby(group).cumcount().to_numpy()
    vals = np.full((rank.max() + 1, n), np.nan)
    keep = np.zeros_like(vals, dtype=bool)
    vals[rank, group] = values
    keep[rank, group] = used
    return middle(vals, keep)


def combine_backtest(
    bt: pd.DataFrame,
    weights: Mapping[str, float],
    name: str = "ensemble",
    nonneg: pd.Series | None = None,
    how: str = "mean",
) -> pd.DataFrame:
    """The combination's backtest rows from its members' rows (same series, cutoff and month)."""
    from pipeline.frames import CUTOFF, MODEL

    res = grouped_combination(bt, weights, [UID, CUTOFF, DS], nonneg, how)
    if res.empty:
        return res
    res[MODEL] = name
    return res[bt.columns]
