"""The run's report: one self-contained ``report.html`` (inline CSS, charts as base64 PNG).

Public API (``run-monthly`` calls ``fan_bands`` and ``write_report``; plain data only, no MLflow)::

    fan_bands(paths, path_ids, path_ds) -> DataFrame[unique_id, ds, q025, q10, q25, q50, q75, q90, q975]
    write_report(out_dir, *, history, fan=None, forecast=None, budgets=None, flags=None,
                 anomalies=None, metrics=None, budget_table=None, scenarios=None,
                 model_versions=None, selection=None, data_window=None, as_of="", title=...,
                 currency="USD", levels=(80, 95)) -> Path

``history`` is the monthly long frame (``unique_id, ds, y``); ``fan`` the path quantiles (50/80/95
bands; without it the forecast table's ``lo_L/hi_L`` are used and the 50 % band is left out);
``flags``/``anomalies`` from :mod:`pipeline.flags`; ``metrics`` the backtest summary
(``scope, model, MASE, WAPE, sMAPE, pinball, coverage_L, MSIS_L``; rows with ``scope == "model"``);
``budget_table`` from :func:`pipeline.budget.quarter_table`; ``scenarios`` from
:func:`pipeline.whatif.evaluate` (its summary); ``model_versions`` a frame or list of dicts
(``model, version, alias, run_id`` ...: any columns, shown as they are); ``data_window`` a mapping
shown as key/value pairs. Every string is HTML-escaped by the template (autoescape is on), so tag,
team and model names from billing data cannot inject markup.
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipeline.budget import parse_period
from pipeline.formatting import fixed, signed
from pipeline.frames import DS, MEAN, MODEL, PHASES, TOTAL, UID, Y, hi_col, lo_col

QUANTILES = {
    "q025": 0.025,
    "q10": 0.10,
    "q25": 0.25,
    "q50": 0.50,
    "q75": 0.75,
    "q90": 0.90,
    "q975": 0.975,
}
BASELINE = "analytic_baseline"
STATUS_ORDER = {"over_budget": 0, "at_risk": 1, "watch": 2, "ok": 3}
PALETTE = {"line": "#1f3b73", "band": "#3b6fd6", "budget": "#c0392b", "history": "#222222"}


def fan_bands(paths: np.ndarray, path_ids: Sequence[str], path_ds: Sequence[Any]) -> pd.DataFrame:
    """Per series and month, the sample paths' quantiles that draw the 50/80/95 % bands."""
    qs = np.quantile(paths, list(QUANTILES.values()), axis=1)  # (q, n_series, h)
    n, h = paths.shape[0], paths.shape[2]
    out = pd.DataFrame(
        {UID: np.repeat([str(u) for u in path_ids], h), DS: np.tile(pd.DatetimeIndex(path_ds), n)}
    )
    for k, name in enumerate(QUANTILES):
        out[name] = qs[k].ravel()
    return out


# --- charts -----------------------------------------------------------------------------------
def _png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _money_axis(ax: Any) -> None:
    from matplotlib.ticker import FuncFormatter

    def fmt(x: float, _: Any) -> str:
        a = abs(x)
        if a >= 1e6:
            return f"{x / 1e6:.1f}M"
        if a >= 1e3:
            return f"{x / 1e3:.0f}k"
        return f"{x:.0f}"

    ax.yaxis.set_major_formatter(FuncFormatter(fmt))


def chart_limits(
    history: np.ndarray, band_lo: np.ndarray, band_hi: np.ndarray, budgets: Sequence[float] = ()
) -> tuple[float, float]:
    """The y range of a fan chart: the history shown, the 80 % band and the budget lines, with a
    margin; never the 95 % band (a burst series' 95 % band would flatten everything else)."""
    vals = [np.asarray(v, float) for v in (history, band_lo, band_hi, list(budgets)) if len(v)]
    allv = np.concatenate(vals) if vals else np.array([0.0])
    allv = allv[np.isfinite(allv)]
    if not len(allv):
        return 0.0, 1.0
    lo, hi = float(min(allv.min(), 0.0)), float(allv.max())
    span = hi - lo if hi > lo else max(abs(hi), 1.0)
    return (lo - 0.04 * span if lo < 0 else 0.0), hi + 0.12 * span


def fan_chart(
    uid: str,
    history: pd.DataFrame,
    fan: pd.DataFrame | None,
    forecast: pd.DataFrame | None,
    budgets: pd.DataFrame | None,
    months_shown: int = 24,
    levels: Sequence[int] = (80, 95),
) -> str:
    """A fan chart for one node: history, the 80 % band (the 50 % inside it), the 95 % band
    lighter and clipped where it leaves the frame (a marker on the edge says so), the median,
    budget lines. The y axis is scaled to the history and the 80 % band (:func:`chart_limits`)."""
    from matplotlib.figure import Figure

    # a Figure of its own, not pyplot: rendering a report never changes the caller's backend
    fig = Figure(figsize=(6.4, 3.0))
    ax = fig.subplots()
    hist = history[history[UID] == uid].sort_values(DS).tail(months_shown)
    hx = pd.to_datetime(hist[DS])
    ax.plot(hx, hist[Y], color=PALETTE["history"], lw=1.6, label="actual")
    last_x, last_y = (hx.iloc[-1], float(hist[Y].iloc[-1])) if len(hist) else (None, None)
    band_lo: np.ndarray = np.array([])
    band_hi: np.ndarray = np.array([])
    outer: tuple[Any, np.ndarray, np.ndarray] | None = None
    if fan is not None and len(fan):
        f = fan[fan[UID] == uid].sort_values(DS)
        if len(f):
            if last_x is not None:  # join the fan to the last actual
                f = pd.concat(
                    [pd.DataFrame({DS: [last_x], **{c: [last_y] for c in QUANTILES}}), f],
                    ignore_index=True,
                )
            fx = pd.to_datetime(f[DS])
            outer = (fx, f["q025"].to_numpy(float), f["q975"].to_numpy(float))
            ax.fill_between(
                fx, f["q025"], f["q975"], color=PALETTE["band"], alpha=0.10, lw=0, label="95 %"
            )
            ax.fill_between(
                fx, f["q10"], f["q90"], color=PALETTE["band"], alpha=0.30, lw=0, label="80 %"
            )
            ax.fill_between(
                fx, f["q25"], f["q75"], color=PALETTE["band"], alpha=0.30, lw=0, label="50 %"
            )
            ax.plot(fx, f["q50"], color=PALETTE["line"], lw=1.6, ls="--", label="median")
            band_lo, band_hi = f["q10"].to_numpy(float), f["q90"].to_numpy(float)
    if not len(band_hi) and forecast is not None and len(forecast):
        f = forecast[forecast[UID] == uid].sort_values(DS)
        fx = pd.to_datetime(f[DS])
        inner, wide = min(levels), max(levels)
        if lo_col(wide) in f.columns and wide != inner:
            outer = (fx, f[lo_col(wide)].to_numpy(float), f[hi_col(wide)].to_numpy(float))
            ax.fill_between(
                fx, f[lo_col(wide)], f[hi_col(wide)], color=PALETTE["band"], alpha=0.10, lw=0,
                label=f"{wide} %",
            )  # fmt: skip
        if lo_col(inner) in f.columns:
            ax.fill_between(
                fx, f[lo_col(inner)], f[hi_col(inner)], color=PALETTE["band"], alpha=0.30, lw=0,
                label=f"{inner} %",
            )  # fmt: skip
            band_lo, band_hi = f[lo_col(inner)].to_numpy(float), f[hi_col(inner)].to_numpy(float)
        ax.plot(fx, f[MEAN], color=PALETTE["line"], lw=1.6, ls="--", label="mean")
    budget_levels: list[float] = []
    if budgets is not None and len(budgets):
        phase = TOTAL if uid == TOTAL else uid
        seen: set[str] = set()
        for b in budgets[budgets["phase"] == phase].itertuples(index=False):
            p = parse_period(b.period)
            per_month = float(b.amount) / len(p.months)
            budget_levels.append(per_month)
            x0, x1 = p.start - pd.Timedelta(days=14), p.months[-1] + pd.Timedelta(days=14)
            label = "monthly budget" if p.kind == "month" else "quarter budget ÷ 3"
            ax.hlines(
                per_month,
                x0,
                x1,
                colors=PALETTE["budget"],
                lw=1.8,
                ls="-" if p.kind == "month" else ":",
                label="_nolegend_" if label in seen else label,
            )
            seen.add(label)
    lo, hi = chart_limits(hist[Y].to_numpy(float), band_lo, band_hi, budget_levels)
    ax.set_ylim(lo, hi)
    if outer is not None:  # where the 95 % band leaves the frame: a marker on the edge
        ox, olo, ohi = outer
        up = ohi > hi
        if up.any():
            ax.plot(
                np.asarray(ox)[up], np.full(int(up.sum()), hi), ls="none", marker="^", ms=5,
                color=PALETTE["band"], alpha=0.6, clip_on=False, label="95 % beyond the frame",
            )  # fmt: skip
        down = olo < lo
        if down.any():
            ax.plot(
                np.asarray(ox)[down], np.full(int(down.sum()), lo), ls="none", marker="v", ms=5,
                color=PALETTE["band"], alpha=0.6, clip_on=False, label="_nolegend_",
            )  # fmt: skip
    if last_x is not None:
        ax.axvline(last_x, color="#9aa5b1", lw=0.8, ls=":")
    ax.set_title(uid.replace("_", " "), fontsize=11, loc="left", color="#1b2733", fontweight="bold")
    _money_axis(ax)
    ax.grid(axis="y", color="#e3e7ee", lw=0.8)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    ax.tick_params(labelsize=8)
    import matplotlib.dates as mdates

    loc = mdates.AutoDateLocator(minticks=4, maxticks=8, interval_multiples=True)
    # long monthly spans (history + 18 months) need yearly steps between months: without 12 here
    # matplotlib warns and falls back to 6
    loc.intervald[mdates.MONTHLY] = [1, 2, 3, 4, 6, 12]
    ax.xaxis.set_major_locator(loc)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(loc))
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.12), frameon=False, ncol=4)
    return _png(fig)


# --- tables -----------------------------------------------------------------------------------
def _fmt_money(x: Any) -> str:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return str(x)
    return "–" if not math.isfinite(v) else f"{v:,.0f}"


def _fmt_pct(x: Any, signed: bool = False) -> str:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return str(x)
    return "–" if not math.isfinite(v) else (f"{v:+.1%}" if signed else f"{v:.0%}")


def _records(obj: Any) -> list[dict[str, Any]]:
    if obj is None:
        return []
    if isinstance(obj, pd.DataFrame):
        return obj.to_dict("records")
    return [dict(r) for r in obj]


def _model_rows(metrics: pd.DataFrame | None, levels: Sequence[int]) -> list[dict[str, Any]]:
    if metrics is None or not len(metrics):
        return []
    m = metrics[metrics["scope"] == "model"] if "scope" in metrics.columns else metrics
    rows = []
    order = "MASE_cost" if "MASE_cost" in m.columns else "MASE"
    for r in m.sort_values(order).to_dict("records"):
        rows.append(
            {
                "model": str(r[MODEL]),
                "baseline": str(r[MODEL]) == BASELINE,
                "MASE": f"{r.get('MASE', float('nan')):.3f}",
                "MASE_cost": f"{r.get('MASE_cost', float('nan')):.3f}",
                "WAPE": _fmt_pct(r.get("WAPE")),
                "sMAPE": f"{r.get('sMAPE', float('nan')):.3f}",
                "pinball": f"{r.get('pinball', float('nan')):.3f}",
                "coverage": [
                    (
                        lv,
                        _fmt_pct(r.get(f"coverage_{lv}")),
                        _coverage_ok(r.get(f"coverage_{lv}"), lv),
                    )
                    for lv in levels
                ],
                "n": int(r.get("n", 0) or 0),
            }
        )
    return rows


def _coverage_ok(v: Any, level: int) -> str:
    try:
        x = float(v)
    except (TypeError, ValueError):
        return ""
    if not math.isfinite(x):
        return ""
    gap = abs(x - level / 100)
    return "good" if gap <= 0.05 else ("fair" if gap <= 0.12 else "poor")


# --- plain words -------------------------------------------------------------------------------
MODEL_WORDS = {
    "ensemble": "a blend of models",
    "analytic_baseline": "the plan's arithmetic (usage × price)",
    "seasonal_naive": "the same month last year",
    "ets": "exponential smoothing",
    "theta": "the Theta method",
    "sarimax": "seasonal ARIMA",
    "lightgbm": "gradient-boosted trees",
}
HORIZON_WORDS = {1: "one month ahead", 3: "three months ahead", 12: "a year ahead"}


def _pc(v: float) -> str:
    """A share as a percentage, house style: ``8 %`` (``0.4 %`` under one per cent)."""
    return f"{fixed(v, 1, 2)} %" if 0 < abs(v) < 0.0095 else f"{fixed(v, 0, 2)} %"


def chance_in_words(p: Any) -> str:
    """``p_overrun`` for a reader: ``unlikely (4 %)``, ``likely (72 %)`` ..."""
    try:
        v = float(p)
    except (TypeError, ValueError):
        return "no budget"
    if not math.isfinite(v):
        return "no budget"
    if v < 0.0095:  # the terminal's two decimals read 0.01 from 0.005: the page says 0.5 % then
        return "practically none (< 1 %)" if v < 0.005 else f"practically none ({_pc(v)})"
    if v < 0.10:
        return f"unlikely ({_pc(v)})"
    if v < 0.35:
        return f"possible, about 1 in {round(1 / v)} ({_pc(v)})"
    if v < 0.45:
        return f"quite possible ({_pc(v)})"
    if v < 0.55:
        return f"as likely as not ({_pc(v)})"
    if v < 0.90:
        return f"likely ({_pc(v)})"
    return f"almost certain ({_pc(v)})" if v < 0.995 else "certain (> 99 %)"


def typical_errors(
    accuracy: pd.DataFrame | None, horizons: Sequence[int] = (1, 3, 12)
) -> pd.DataFrame:
    """Per series and horizon, the typical error of the forecast in use, read off the run's
    accuracy frame (:func:`pipeline.metrics.accuracy_table`: the cost-weighted absolute error of
    the backtest at exactly that many months ahead, sum |y - f| / sum |y|): ``unique_id, h,
    error, n``."""
    cols = [UID, "h", "error", "n"]
    if accuracy is None or not len(accuracy):
        return pd.DataFrame(columns=cols)
    rows = []
    for r in accuracy.to_dict("records"):
        for h in horizons:
            v = r.get(f"typical_error_{h}m")
            if v is not None and np.isfinite(float(v)):
                rows.append((str(r[UID]), int(h), float(v), int(r.get("n", 0) or 0)))
    return pd.DataFrame(rows, columns=cols)


def error_words(
    errors: pd.DataFrame, uid: str, basis: str = "backtest", share: float | None = None
) -> str:
    """``typical error ±8 % one month ahead, ±15 % three months ahead`` (or why there is none);
    ``basis``: the accuracy row's (:func:`pipeline.metrics.accuracy_table`), which says when the
    figures are of the cost beyond a plan's scheduled runs or of the models alone, or when there
    are none; ``share``: its ``measured_share``, the part of the cost a rest's figures are of."""
    from pipeline.metrics import NOT_BACKTESTED

    if basis == NOT_BACKTESTED:
        return f"typical error: not measurable ({NOT_BACKTESTED})"
    e = errors[errors[UID] == uid] if len(errors) else errors
    parts = [
        f"±{_pc(float(r['error']))} {HORIZON_WORDS.get(int(r['h']), str(int(r['h'])) + ' months ahead')}"
        for r in e.sort_values("h").to_dict("records")
    ]
    if not parts:
        return "typical error: not measurable (no backtested month with cost)"
    kind, planned = _plan_part(basis)
    if kind == "beyond":
        part = _models_part(share)
        where = f" on {part} (the plan covers {planned})" if part else (
            f" on the cost beyond the plan for {planned}"
        )  # fmt: skip
        return "typical error " + ", ".join(parts) + where
    if kind == "alone":
        return (
            "typical error of the models alone " + ", ".join(parts)
            + f" (the figure takes {planned} from the plan, which no backtest saw)"
        )  # fmt: skip
    return "typical error " + ", ".join(parts)


def _plan_part(basis: Any) -> tuple[str, str]:
    """From an accuracy row's basis: ``("beyond" | "alone" | "", "pretraining/compute gpu and
    fine tuning/labor")``, the series that follow the plan."""
    from pipeline.metrics import ALONE, BEYOND

    text = str(basis or "")
    if text.startswith(BEYOND) and text.endswith(" (the plan)"):
        kind, ids = "beyond", text[len(BEYOND) : -len(" (the plan)")]
    elif text.startswith(ALONE):
        kind, ids = "alone", text[len(ALONE) :]
    else:
        return "", ""
    names = [_words(u) for u in ids.strip().split(", ")]
    if len(names) > 2:  # the total of a plan with many lines: say how many, the table names them
        return kind, f"{len(names)} series"
    return kind, " and ".join(names)


def _unbudgeted(flags: pd.DataFrame | None) -> str:
    """``2026-11 123, 2027Q1 374``: what the total's forecast holds beyond its phase lines."""
    from pipeline.formatting import outside_budget_lines

    if flags is None or not len(flags):
        return ""
    return ", ".join(f"{p} {_fmt_money(v)}" for p, v in outside_budget_lines(flags).items())


def _models_part(share: float | None) -> str:
    """``the 4 % of its cost the models forecast`` for a rest that is part of its row's cost (its
    ``measured_share``), else empty."""
    if share is None or not np.isfinite(share) or share >= 0.995:
        return ""
    return f"the {_pc(share)} of its cost the models forecast"


def _by_series(accuracy: pd.DataFrame | None, column: str, fill: Any) -> dict[str, Any]:
    """One accuracy column per series (empty for runs stored before the column existed)."""
    if accuracy is None or not len(accuracy) or column not in accuracy.columns:
        return {}
    return dict(zip(accuracy[UID].astype(str), accuracy[column].fillna(fill), strict=True))


def _bases(accuracy: pd.DataFrame | None) -> dict[str, str]:
    return {u: str(b) for u, b in _by_series(accuracy, "basis", "backtest").items()}


def _status(row: Mapping[str, Any], flags: pd.DataFrame | None, thresholds: Sequence[float]) -> str:
    from pipeline.flags import FlagConfig, status_for

    if flags is not None and len(flags):
        f = flags[(flags["period"] == row["period"]) & (flags["phase"] == row["phase"])]
        if len(f):
            return str(f["status"].iloc[0])
    budget = float(row.get("budget", float("nan")))
    if not math.isfinite(budget):
        return ""
    cfg = FlagConfig(watch=float(thresholds[0]), at_risk=float(thresholds[1]))
    return status_for(float(row["p_overrun"]), float(row["actual_to_date"]), budget, cfg)


def focus_quarter(budget_table: pd.DataFrame | None, as_of: str) -> str | None:
    """The quarter the first screen is about: the first planned quarter that starts after the
    as-of (the one being budgeted), else the last planned one."""
    if budget_table is None or not len(budget_table):
        return None
    labels = list(dict.fromkeys(budget_table["period"].astype(str)))
    day = pd.Timestamp(as_of) if as_of else None
    later = [q for q in labels if day is not None and parse_period(q).start > day]
    return later[0] if later else labels[-1]


PLAN_ONLY_MARK = " *"  # a chance that rests on the plan's assumed error, not on a backtest


def glance_rows(
    budget_table: pd.DataFrame,
    quarter: str,
    flags: pd.DataFrame | None,
    thresholds: Sequence[float],
    plan_only: Collection[str] = (),
) -> list[dict[str, Any]]:
    """The first screen's rows; ``plan_only``: phases forecast by the plan alone (no backtest saw
    their forecast), whose chance of going over is marked: it rests on the plan's assumed error."""
    t = budget_table[budget_table["period"] == quarter]
    rows = []
    for r in t.to_dict("records"):
        status = _status(r, flags, thresholds)
        chance = chance_in_words(r.get("p_overrun"))
        if r["phase"] in plan_only and math.isfinite(float(r.get("p_overrun", float("nan")))):
            chance += PLAN_ONLY_MARK
        rows.append(
            {
                "phase": _words(r["phase"]),
                "total": r["phase"] == TOTAL,
                "budget": _fmt_money(r.get("budget")),
                "mean": _fmt_money(r.get("mean")),
                "p50": _fmt_money(r["p50"]),
                "p80": _fmt_money(r["p80"]),
                "chance": chance,
                "status": status,
                "plan_only": chance.endswith(PLAN_ONLY_MARK),
            }
        )
    return rows


def change_rows(changes: pd.DataFrame | None, quarter: str | None) -> list[dict[str, Any]]:
    from pipeline.changes import largest_reason

    if changes is None or not len(changes) or quarter is None:
        return []
    c = changes[changes["period"] == quarter]
    out = []
    for r in c.to_dict("records"):
        out.append(
            {
                "phase": _words(r["phase"]),
                "total": r["phase"] == TOTAL,
                "before": _fmt_money(r["previous_mean"]),
                "now": _fmt_money(r["current_mean"]),
                "change": signed(r["change"]),
                "pct": _fmt_pct(r.get("change_pct"), signed=True),
                "actuals": signed(r["new_actuals"]),
                "plan": signed(r["plan_changes"]),
                "models": signed(r["model_changes"]),
                "why": largest_reason(r),
                "up": float(r["change"]) > 0,
            }
        )
    return out


def write_report(
    out_dir: str | Path,
    *,
    history: pd.DataFrame,
    fan: pd.DataFrame | None = None,
    forecast: pd.DataFrame | None = None,
    budgets: pd.DataFrame | None = None,
    flags: pd.DataFrame | None = None,
    anomalies: pd.DataFrame | None = None,
    metrics: pd.DataFrame | None = None,
    budget_table: pd.DataFrame | None = None,
    scenarios: pd.DataFrame | None = None,
    model_versions: Any = None,
    selection: pd.DataFrame | None = None,
    data_window: Mapping[str, Any] | None = None,
    as_of: str = "",
    title: str = "phasecast: AI model cost forecast",
    currency: str = "USD",
    levels: Sequence[int] = (80, 95),
    filename: str = "report.html",
    backtest: pd.DataFrame | None = None,
    changes: pd.DataFrame | None = None,
    previous_as_of: str | None = None,
    thresholds: Sequence[float] = (0.2, 0.5),
    accuracy: pd.DataFrame | None = None,
) -> Path:
    """Render the report (see the module docstring) and return its path."""
    from jinja2 import Environment, PackageLoader, select_autoescape

    ids = set(history[UID].astype(str))
    nodes = [TOTAL] + [p for p in PHASES if p in ids]
    if (
        accuracy is None
        and backtest is not None
        and "scale" in backtest.columns
        and chosen_of(selection)
    ):
        from pipeline.metrics import accuracy_table

        accuracy = accuracy_table(backtest, pd.Series(chosen_of(selection)), levels)
    errors = typical_errors(accuracy, (1, 3, 12))
    chosen = chosen_of(selection)
    bases = _bases(accuracy)
    shares = {u: float(s) for u, s in _by_series(accuracy, "measured_share", np.nan).items()}
    charts = [
        {
            "uid": u,
            "png": fan_chart(u, history, fan, forecast, budgets, levels=levels),
            "error": error_words(errors, u, bases.get(u, "backtest"), shares.get(u)),
            "model": _model_words(chosen.get(u, ""), bases.get(u, "")),
        }
        for u in nodes
        if u in ids
    ]
    quarter = focus_quarter(budget_table, as_of)
    from pipeline.metrics import NOT_BACKTESTED

    plan_only = {u for u, b in bases.items() if b == NOT_BACKTESTED}
    glance = (
        glance_rows(budget_table, quarter, flags, thresholds, plan_only)
        if quarter is not None and budget_table is not None
        else []
    )

    flag_rows = []
    if flags is not None and len(flags):
        f = flags.assign(_o=flags["status"].map(STATUS_ORDER).fillna(9)).sort_values(
            ["_o", "period", "phase"]
        )
        for r in f.to_dict("records"):
            flag_rows.append(
                {
                    "period": r["period"],
                    "phase": _words(r["phase"]),
                    "status": r["status"],
                    "budget": _fmt_money(r["budget"]),
                    "actual": _fmt_money(r["actual_to_date"]),
                    "rest": _fmt_money(r.get("forecast_rest")),
                    "total": _fmt_money(r.get("forecast_total")),
                    "p80": _fmt_money(r.get("p80")),
                    "p": fixed(float(r["p_overrun"]), 2),
                    "p_width": f"{100 * float(r['p_overrun']):.0f}",
                    "exp": _fmt_money(r.get("expected_overrun")),
                    "anomaly": r.get("anomaly_months", "") or "",
                }
            )
    counts = {
        s: int((flags["status"] == s).sum()) if flags is not None and len(flags) else 0
        for s in STATUS_ORDER
    }

    budget_rows = []
    if budget_table is not None and len(budget_table):
        for r in budget_table.to_dict("records"):
            budget_rows.append(
                {
                    "period": r["period"],
                    "phase": _words(r["phase"]),
                    "mean": _fmt_money(r["mean"]),
                    "p50": _fmt_money(r["p50"]),
                    "p80": _fmt_money(r["p80"]),
                    "p95": _fmt_money(r["p95"]),
                    "baseline": _fmt_money(r.get("baseline")),
                    "plan": _fmt_money(r.get("plan_estimate")),
                    "budget": _fmt_money(r.get("budget")),
                    "chance": chance_in_words(r.get("p_overrun")),
                    "p_overrun": "–"
                    if not math.isfinite(float(r.get("p_overrun", float("nan"))))
                    else fixed(float(r["p_overrun"]), 2),
                    "recommended": _fmt_money(r.get("recommended")),
                    "quantile": f"P{round(100 * float(r.get('quantile', 0.8)))}",
                    "last": _fmt_money(r.get("last_quarter_actual")),
                    "last_label": str(r.get("last_quarter") or ""),
                    "change": _fmt_pct(r.get("change_vs_last_quarter"), signed=True),
                }
            )
    scen_rows = []
    if scenarios is not None and len(scenarios):
        s = scenarios[(scenarios["delta_mean"].abs() > 1e-9) | (scenarios["phase"] == TOTAL)]
        for r in s.to_dict("records"):
            scen_rows.append(
                {
                    "scenario": r["scenario"],
                    "period": r["period"],
                    "phase": _words(r["phase"]),
                    # expected costs: the change beside them is their difference
                    "base": _fmt_money(r["base_mean"]),
                    "value": _fmt_money(r["scenario_mean"]),
                    "p80": _fmt_money(r["scenario_p80"]),
                    "delta": signed(r["delta_mean"]),
                    "pct": _fmt_pct(r.get("delta_pct"), signed=True),
                    "recommended": _fmt_money(r["scenario_recommended"]),
                    "plan_delta": signed(float(r["plan_scenario"]) - float(r["plan_base"])),
                    "up": float(r["delta_mean"]) > 0,
                }
            )
    anomaly_rows = []
    if anomalies is not None and len(anomalies):
        for r in anomalies.sort_values(DS, ascending=False).head(40).to_dict("records"):
            anomaly_rows.append(
                {
                    "uid": r[UID],
                    "ds": f"{pd.Timestamp(r[DS]):%Y-%m}",
                    "y": _fmt_money(r[Y]),
                    "model": r.get(MODEL, ""),
                    "lo": _fmt_money(r.get(lo_col(95))),
                    "hi": _fmt_money(r.get(hi_col(95))),
                    "h": _months_ahead(r.get("h")),
                    "direction": r.get("direction", ""),
                }
            )
    versions = _records(model_versions)
    version_cols = list(dict.fromkeys(k for v in versions for k in v))
    sel_rows = _records(selection)

    env = Environment(
        loader=PackageLoader("pipeline", "templates"),
        autoescape=select_autoescape(["html", "j2"], default=True),
    )
    html = env.get_template("report.html.j2").render(
        title=title,
        as_of=as_of,
        currency=currency,
        charts=charts,
        flags=flag_rows,
        unbudgeted=_unbudgeted(flags),
        counts=counts,
        budget_rows=budget_rows,
        scenario_rows=scen_rows,
        model_rows=_model_rows(metrics, levels),
        levels=list(levels),
        anomalies=anomaly_rows,
        versions=versions,
        version_cols=version_cols,
        selection=sel_rows,
        data_window=dict(data_window or {}),
        quarter=quarter,
        glance=glance,
        changes=change_rows(changes, quarter),
        previous_as_of=previous_as_of,
        accuracy_rows=accuracy_rows(accuracy, nodes, levels),
        thresholds=[f"{float(t):g}" for t in thresholds],
        generated=pd.Timestamp.now(tz="UTC").strftime("%Y-%m-%d %H:%M UTC"),
    )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / filename
    tmp = path.with_suffix(".html.tmp")
    tmp.write_text(html, encoding="utf-8")
    tmp.replace(path)  # never leave a half-written report behind
    return path


def chosen_of(selection: pd.DataFrame | None) -> dict[str, str]:
    if selection is None or not len(selection):
        return {}
    return dict(zip(selection[UID].astype(str), selection[MODEL].astype(str), strict=True))


def accuracy_rows(
    accuracy: pd.DataFrame | None, nodes: Sequence[str], levels: Sequence[int]
) -> list[dict[str, Any]]:
    """The reader's accuracy table: the total, each phase and the cost-weighted row over every
    bottom series (``all``): typical error at 1, 3 and 12 months, WAPE, MASE, coverage."""
    if accuracy is None or not len(accuracy):
        return []
    acc = accuracy.assign(**{UID: accuracy[UID].astype(str)}).set_index(UID)
    from pipeline.metrics import NOT_BACKTESTED

    basis = acc["basis"] if "basis" in acc.columns else pd.Series(dtype=str)
    every = "all backtested series" if (basis == NOT_BACKTESTED).any() else "all series"
    rows = []
    for u in [*nodes, "all"]:
        if u not in acc.index:
            continue
        r = acc.loc[u]
        rows.append(
            {
                "uid": f"{every} (cost-weighted)" if u == "all" else u.replace("_", " "),
                "total": u == TOTAL,
                "model": _model_words(str(r.get(MODEL, "")), r.get("basis", "")) + _figures_of(r),
                "cells": [_pm(r.get(f"typical_error_{h}m")) for h in (1, 3, 12)],
                "WAPE": _fmt_pct(r.get("WAPE")),
                "MASE": f"{float(r['MASE']):.2f}" if np.isfinite(float(r["MASE"])) else "–",
                "coverage": [
                    (
                        lv,
                        _fmt_pct(r.get(f"coverage_{lv}")),
                        _coverage_ok(r.get(f"coverage_{lv}"), lv),
                    )
                    for lv in levels
                ],
                "share": _fmt_pct(r.get("cost_share")),
            }
        )
    return rows


_FIGURES_OF = {"alone": " (figures: the models alone)", "beyond": " (figures: the rest)"}


def _figures_of(r: Mapping[str, Any]) -> str:
    """`` (figures: the 4 % of its cost the models forecast)``: what a row's figures are of."""
    kind = _plan_part(r.get("basis", ""))[0]
    part = _models_part(float(r.get("measured_share", np.nan)))
    if kind == "beyond" and part:
        return f" (figures: {part})"
    return _FIGURES_OF.get(kind, "")


def _model_words(model: str, basis: Any) -> str:
    """What forecasts a series, in words; ``the plan for pretraining/compute gpu's planned runs,
    a blend of models for the rest`` where the figure adds a plan's scheduled runs."""
    from pipeline.metrics import NOT_BACKTESTED

    words = MODEL_WORDS.get(model, model)
    kind, planned = _plan_part(basis)
    if kind:
        return f"the plan for {planned}, {words} for the rest"
    if basis == NOT_BACKTESTED:
        return "the plan"
    return words


def _words(name: Any) -> str:
    """A phase or series id as the report writes it: ``fine_tuning`` -> ``fine tuning``."""
    return str(name).replace("_", " ")


def _months_ahead(h: Any) -> str:
    """An anomaly's horizon: how many months before the month its range was forecast ("–" for
    the previous run's forecast, which carries none)."""
    try:
        k = int(h)
    except (TypeError, ValueError):
        return "–"
    return str(k) if k > 0 else "–"


def _pm(v: Any) -> str:
    try:
        x = float(v)
    except (TypeError, ValueError):
        return "–"
    return f"±{_pc(x)}" if math.isfinite(x) else "–"


def plot_metrics(metrics: pd.DataFrame, path: Path) -> Path | None:
    """Bar chart of backtest MASE and 80 / 95 % coverage per model."""
    if metrics is None or not len(metrics):
        return None
    from matplotlib.figure import Figure

    m = metrics[metrics["scope"] == "model"].sort_values("MASE")
    fig = Figure(figsize=(10, 3.6))
    axes = fig.subplots(1, 2)
    axes[0].barh(m[MODEL], m["MASE"], color="#3b6fd6")
    axes[0].set_title("backtest MASE (lower is better)")
    covs = [c for c in m.columns if c.startswith("coverage_")]
    for i, c in enumerate(covs):
        axes[1].barh(np.arange(len(m)) + i * 0.4, m[c], height=0.4, label=c)
        axes[1].axvline(int(c.split("_")[1]) / 100, color="grey", lw=0.8, ls="--")
    axes[1].set_yticks(np.arange(len(m)) + 0.2, m[MODEL])
    axes[1].set_title("interval coverage (dashed: nominal)")
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    return path


# --- the job ----------------------------------------------------------------------------------
