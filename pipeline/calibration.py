"""The calibration study: does ``p_overrun`` mean what it says?

Generated histories with known futures are flagged at several points of a budget quarter, and the
predicted probabilities are compared with what happened (reliability table, precision and recall
of ``at_risk``, Brier score). ``phasecast calibrate`` prints it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from pipeline.conditioning import PartialMonth, pace_error
from pipeline.flags import FlagConfig, flag_lines
from pipeline.frames import DS, UID, Y
from pipeline.periods import Period, parse_period


def reliability_table(
    p: np.ndarray,
    overran: np.ndarray,
    bins: Sequence[float] = (0, 0.1, 0.2, 0.35, 0.5, 0.65, 0.8, 0.9, 1.0),
) -> pd.DataFrame:
    """Bins of predicted ``p_overrun``: count, mean predicted p, observed overrun rate."""
    p = np.asarray(p, dtype=float)
    y = np.asarray(overran, dtype=bool)
    edges = np.asarray(bins, dtype=float)
    idx = np.clip(np.searchsorted(edges, p, side="right") - 1, 0, len(edges) - 2)
    rows = []
    for k in range(len(edges) - 1):
        sel = idx == k
        n = int(sel.sum())
        rows.append(
            {
                "bin": f"[{edges[k]:.2f}, {edges[k + 1]:.2f}{']' if k == len(edges) - 2 else ')'}",
                "count": n,
                "mean_p": float(p[sel].mean()) if n else float("nan"),
                "observed_rate": float(y[sel].mean()) if n else float("nan"),
            }
        )
    return pd.DataFrame(rows)


def precision_recall(flagged: np.ndarray, overran: np.ndarray) -> tuple[float, float]:
    """Precision and recall of a flag against what happened."""
    f = np.asarray(flagged, dtype=bool)
    y = np.asarray(overran, dtype=bool)
    tp = float((f & y).sum())
    precision = tp / f.sum() if f.sum() else float("nan")
    recall = tp / y.sum() if y.sum() else float("nan")
    return precision, recall


@dataclass(frozen=True)
class CalibrationConfig:
    """Generated histories with known futures, flagged at several points of the budget period.

    Each series is a monthly cost ``L * exp(g t + a sin(2 pi (t + phi) / 12) + u_t)`` (``u`` an
    AR(1) with coefficient 0.6 and a random scale), spread over days with a weekday pattern and
    day-to-day noise. Budgets for the first quarter after the history and for each of its months
    are set at random quantiles (``U(0.05, 0.95)``) of the budget-time forecast's period totals;
    then each line is flagged, with a forecast re-fitted on the months closed by then plus the
    month-to-date actuals, at each of ``checkpoints`` (``(month offset, day)``: ``(0, 0)`` is the
    first day of the quarter with nothing of it known, ``(1, 10)`` is day 10 of its second month).
    """

    n_series: int = 60
    history: int = 36
    model: str = "ets"  # a registered model's own paths, or "pipeline" (run_forecast)
    n_paths: int = 400
    seed: int = 0
    method: str = "enkf"
    checkpoints: tuple[tuple[int, int], ...] = ((0, 0), (0, 10), (0, 20), (1, 10), (2, 10), (2, 20))


def simulate_series(rng: np.random.Generator, months: int, start: str = "2023-01-01") -> pd.Series:
    """One generated daily cost series covering ``months`` whole months (index: days)."""
    level = float(np.exp(rng.uniform(np.log(2e4), np.log(2e6))))
    g = rng.uniform(-0.01, 0.03)
    amp = rng.uniform(0.0, 0.15)
    phi = rng.uniform(0, 12)
    sigma = rng.uniform(0.03, 0.12)
    u = np.zeros(months)
    for t in range(months):
        u[t] = (0.6 * u[t - 1] if t else 0.0) + sigma * rng.standard_normal()
    tt = np.arange(months)
    monthly = level * np.exp(g * tt + amp * np.sin(2 * np.pi * (tt + phi) / 12) + u)
    days = pd.date_range(start, periods=months, freq="MS")
    parts = []
    day_noise = rng.uniform(0.1, 0.35)
    for m, total in zip(days, monthly, strict=True):
        idx = pd.date_range(m, m + pd.offsets.MonthEnd(0), freq="D")
        w = np.exp(day_noise * rng.standard_normal(len(idx))) * np.where(
            idx.dayofweek >= 5, 0.8, 1.0
        )
        parts.append(pd.Series(total * w / w.sum(), index=idx))
    return pd.concat(parts)


PIPELINE_MODELS = ("analytic_baseline", "seasonal_naive", "ets", "theta", "ensemble")


def calibration_paths(
    model: str, monthly: pd.DataFrame, h: int, n_paths: int, seed: int
) -> tuple[np.ndarray, list[str], list[pd.Timestamp]]:
    """Sample paths for every series of ``monthly`` (long frame), ``h`` months ahead.

    ``model`` is a registered model name (its own simulated paths, e.g. ETS simulated from the
    fitted state space) or ``pipeline``: :func:`pipeline.forecast.run_forecast` with the
    statistical models, rolling-origin calibrated error pools and per-series selection.
    """
    if model == "pipeline":
        from pipeline.forecast import ForecastConfig, run_forecast

        cfg = ForecastConfig(
            horizon=h,
            models=PIPELINE_MODELS,
            n_paths=n_paths,
            seed=seed,
            reconcile=False,
            n_windows=3,
            step=2,
        )
        r = run_forecast(monthly, cfg, progress=False)
        return r.paths, [str(u) for u in r.path_ids], list(pd.DatetimeIndex(r.path_ds))
    from pipeline.models import make_model

    m = make_model(model).fit(monthly)
    paths = m.sample_paths(h, n_paths=n_paths, seed=seed)
    last = pd.Timestamp(monthly[DS].max())
    return (
        paths,
        [str(u) for u in m.ids_],
        list(pd.date_range(last + pd.DateOffset(months=1), periods=h, freq="MS")),
    )


def simulate_calibration(config: CalibrationConfig = CalibrationConfig()) -> pd.DataFrame:
    """One row per (series, budget line, checkpoint): ``p_overrun``, status and whether it overran."""
    rng = np.random.default_rng(config.seed)
    fc = FlagConfig(partial_method=config.method)
    dailies, monthlies = [], []
    for _ in range(config.n_series):
        daily = simulate_series(rng, config.history + 3)
        monthly_all = daily.groupby(daily.index.to_period("M")).sum()
        monthly_all.index = monthly_all.index.to_timestamp()
        dailies.append(daily)
        monthlies.append(monthly_all)
    q_months = list(monthlies[0].index[config.history : config.history + 3])
    quarter = Period(f"{q_months[0].year}Q{(q_months[0].month - 1) // 3 + 1}", tuple(q_months))
    periods = [quarter] + [Period(f"{m:%Y-%m}", (m,)) for m in q_months]

    def long(n_months: int) -> pd.DataFrame:
        return pd.concat(
            [
                pd.DataFrame({UID: f"s{s:04d}", DS: m.index[:n_months], Y: m.to_numpy()[:n_months]})
                for s, m in enumerate(monthlies)
            ],
            ignore_index=True,
        )

    # budgets: random quantiles of the budget-time forecast (nothing of the quarter known yet)
    paths, ids, pds = calibration_paths(
        config.model, long(config.history), 3, config.n_paths, config.seed
    )
    budgets: dict[str, pd.DataFrame] = {}
    for s in range(config.n_series):
        row = paths[ids.index(f"s{s:04d}")]
        rows = []
        for p in periods:
            q = rng.uniform(0.05, 0.95)
            total = row[:, [pds.index(m) for m in p.months]].sum(axis=1)
            rows.append(
                {
                    "period": p.label,
                    "phase": "total",
                    "amount": float(np.quantile(total, q)),
                    "currency": "USD",
                    "q": q,
                }
            )
        budgets[f"s{s:04d}"] = pd.DataFrame(rows)
    out = []
    for k, day in config.checkpoints:
        closed = long(config.history + k)
        paths, ids, pds = calibration_paths(
            config.model, closed, 3 - k, config.n_paths, config.seed + 1000 * (k + 1)
        )
        for s in range(config.n_series):
            uid = f"s{s:04d}"
            daily, monthly_all = dailies[s], monthlies[s]
            partial = None
            if day > 0:
                m = q_months[k]
                mtd = float(
                    daily[(daily.index >= m) & (daily.index < m + pd.Timedelta(days=day))].sum()
                )
                err = pace_error(daily[daily.index < m], day) if config.method == "enkf" else None
                partial = {"total": PartialMonth(m, mtd, day, m.days_in_month, err)}
            bdf = budgets[uid]
            live = bdf[
                [not all(mm < q_months[k] for mm in parse_period(p).months) for p in bdf["period"]]
            ]
            hist = closed[closed[UID] == uid].assign(**{UID: "total"})
            flags = flag_lines(
                live, hist, paths[[ids.index(uid)]], ["total"], pds, partial=partial, config=fc
            )
            for f, q in zip(flags.itertuples(index=False), live["q"], strict=True):
                p = parse_period(f.period)
                out.append(
                    {
                        "series": s,
                        "period": f.period,
                        "kind": p.kind,
                        "checkpoint": f"m{k + 1}d{day}",
                        "budget_quantile": q,
                        "p_overrun": f.p_overrun,
                        "status": f.status,
                        "overran": float(monthly_all[list(p.months)].sum()) > f.budget,
                    }
                )
    return pd.DataFrame(out)


def calibration_summary(lines: pd.DataFrame, config: FlagConfig | None = None) -> dict[str, Any]:
    """Reliability table and at_risk precision/recall over lines not yet over budget."""
    config = config or FlagConfig()
    live = lines[lines["status"] != "over_budget"]
    flagged = live["p_overrun"].to_numpy() >= config.at_risk
    precision, recall = precision_recall(flagged, live["overran"].to_numpy())
    by_cp = []
    for cp, g in live.groupby("checkpoint", sort=False):
        pr, rc = precision_recall(
            g["p_overrun"].to_numpy() >= config.at_risk, g["overran"].to_numpy()
        )
        brier = float(np.mean((g["p_overrun"] - g["overran"].astype(float)) ** 2))
        by_cp.append(
            {
                "checkpoint": cp,
                "lines": len(g),
                "overrun_rate": float(g["overran"].mean()),
                "precision": pr,
                "recall": rc,
                "brier": brier,
            }
        )
    return {
        "lines": int(len(lines)),
        "already_over_budget": int((lines["status"] == "over_budget").sum()),
        "reliability": reliability_table(live["p_overrun"].to_numpy(), live["overran"].to_numpy()),
        "precision": precision,
        "recall": recall,
        "brier": float(np.mean((live["p_overrun"] - live["overran"].astype(float)) ** 2)),
        "by_checkpoint": pd.DataFrame(by_cp),
    }
