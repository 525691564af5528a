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
:func:`pipeline.scenarios.scenario_deltas`; ``model_versions`` a frame or list of dicts
(``model, version, alias, run_id`` ...: any columns, shown as they are); ``data_window`` a mapping
shown as key/value pairs. Every string is HTML-escaped by the template (autoescape is on), so tag,
team and model names from billing data cannot inject markup.
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipeline.budget import parse_period
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


def fan_chart(
    uid: str,
    history: pd.DataFrame,
    fan: pd.DataFrame | None,
    forecast: pd.DataFrame | None,
    budgets: pd.DataFrame | None,
    months_shown: int = 24,
    levels: Sequence[int] = (80, 95),
) -> str:
    """A fan chart for one node: history, the 50/80/95 % bands, the median, budget lines."""
    from matplotlib.figure import Figure

    # a Figure of its own, not pyplot: rendering a report never changes the caller's backend
    fig = Figure(figsize=(6.4, 3.0))
    ax = fig.subplots()
    hist = history[history[UID] == uid].sort_values(DS).tail(months_shown)
    hx = pd.to_datetime(hist[DS])
    ax.plot(hx, hist[Y], color=PALETTE["history"], lw=1.6, label="actual")
    last_x, last_y = (hx.iloc[-1], float(hist[Y].iloc[-1])) if len(hist) else (None, None)
    drawn = False
    if fan is not None and len(fan):
        f = fan[fan[UID] == uid].sort_values(DS)
        if len(f):
            fx = pd.to_datetime(f[DS])
            if last_x is not None:  # join the fan to the last actual
                f = pd.concat(
                    [pd.DataFrame({DS: [last_x], **{c: [last_y] for c in QUANTILES}}), f],
                    ignore_index=True,
                )
                fx = pd.to_datetime(f[DS])
            for lo, hi, alpha, lab in (
                ("q025", "q975", 0.18, "95 %"),
                ("q10", "q90", 0.28, "80 %"),
                ("q25", "q75", 0.42, "50 %"),
            ):
                ax.fill_between(
                    fx, f[lo], f[hi], color=PALETTE["band"], alpha=alpha, lw=0, label=lab
                )
            ax.plot(fx, f["q50"], color=PALETTE["line"], lw=1.6, ls="--", label="median")
            drawn = True
    if not drawn and forecast is not None and len(forecast):
        f = forecast[forecast[UID] == uid].sort_values(DS)
        fx = pd.to_datetime(f[DS])
        for lv, alpha in zip(sorted(levels, reverse=True), (0.18, 0.3, 0.42), strict=False):
            if lo_col(lv) in f.columns:
                ax.fill_between(
                    fx,
                    f[lo_col(lv)],
                    f[hi_col(lv)],
                    color=PALETTE["band"],
                    alpha=alpha,
                    lw=0,
                    label=f"{lv} %",
                )
        ax.plot(fx, f[MEAN], color=PALETTE["line"], lw=1.6, ls="--", label="mean")
    if budgets is not None and len(budgets):
        phase = TOTAL if uid == TOTAL else uid
        seen: set[str] = set()
        for b in budgets[budgets["phase"] == phase].itertuples(index=False):
            p = parse_period(b.period)
            per_month = float(b.amount) / len(p.months)
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
    if last_x is not None:
        ax.axvline(last_x, color="#9aa5b1", lw=0.8, ls=":")
    ax.set_title(uid.replace("_", " "), fontsize=11, loc="left", color="#1b2733", fontweight="bold")
    _money_axis(ax)
    ax.grid(axis="y", color="#e3e7ee", lw=0.8)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    ax.tick_params(labelsize=8)
    ax.set_ylim(bottom=min(0.0, ax.get_ylim()[0]))
    import matplotlib.dates as mdates

    loc = mdates.AutoDateLocator(minticks=4, maxticks=8, interval_multiples=True)
    # long monthly spans (history + 18 months) need yearly steps between months: without 12 here
    # matplotlib warns and falls back to 6
    loc.intervald[mdates.MONTHLY] = [1, 2, 3, 4, 6, 12]
    ax.xaxis.set_major_locator(loc)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(loc))
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.12), frameon=False, ncol=6)
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
    for r in m.sort_values("MASE").to_dict("records"):
        rows.append(
            {
                "model": str(r[MODEL]),
                "baseline": str(r[MODEL]) == BASELINE,
                "MASE": f"{r.get('MASE', float('nan')):.3f}",
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
) -> Path:
    """Render the report (see the module docstring) and return its path."""
    from jinja2 import Environment, PackageLoader, select_autoescape

    ids = set(history[UID].astype(str))
    nodes = [TOTAL] + [p for p in PHASES if p in ids]
    charts = [
        {"uid": u, "png": fan_chart(u, history, fan, forecast, budgets, levels=levels)}
        for u in nodes
        if u in ids
    ]

    flag_rows = []
    if flags is not None and len(flags):
        f = flags.assign(_o=flags["status"].map(STATUS_ORDER).fillna(9)).sort_values(
            ["_o", "period", "phase"]
        )
        for r in f.to_dict("records"):
            flag_rows.append(
                {
                    "period": r["period"],
                    "phase": r["phase"],
                    "status": r["status"],
                    "budget": _fmt_money(r["budget"]),
                    "actual": _fmt_money(r["actual_to_date"]),
                    "rest": _fmt_money(r.get("forecast_rest")),
                    "total": _fmt_money(r.get("forecast_total")),
                    "p80": _fmt_money(r.get("p80")),
                    "p": f"{float(r['p_overrun']):.2f}",
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
                    "phase": r["phase"],
                    "p50": _fmt_money(r["p50"]),
                    "p80": _fmt_money(r["p80"]),
                    "p95": _fmt_money(r["p95"]),
                    "baseline": _fmt_money(r.get("baseline")),
                    "plan": _fmt_money(r.get("plan_estimate")),
                    "budget": _fmt_money(r.get("budget")),
                    "p_overrun": "–"
                    if not math.isfinite(float(r.get("p_overrun", float("nan"))))
                    else f"{float(r['p_overrun']):.2f}",
                    "recommended": _fmt_money(r.get("recommended")),
                    "quantile": f"P{round(100 * float(r.get('quantile', 0.8)))}",
                    "last": _fmt_money(r.get("last_quarter_actual")),
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
                    "phase": r["phase"],
                    "base": _fmt_money(r["base_p50"]),
                    "value": _fmt_money(r["scenario_p50"]),
                    "p80": _fmt_money(r["scenario_p80"]),
                    "delta": f"{float(r['delta_mean']):+,.0f}",
                    "pct": _fmt_pct(r.get("delta_pct"), signed=True),
                    "recommended": _fmt_money(r["scenario_recommended"]),
                    "plan_delta": f"{float(r['plan_scenario']) - float(r['plan_base']):+,.0f}",
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
        generated=pd.Timestamp.now(tz="UTC").strftime("%Y-%m-%d %H:%M UTC"),
    )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / filename
    tmp = path.with_suffix(".html.tmp")
    tmp.write_text(html, encoding="utf-8")
    tmp.replace(path)  # never leave a half-written report behind
    return path


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
