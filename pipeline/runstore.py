"""The stored forecast run: one per as-of, the single source of every budget, flag, scenario and
report computed for that as-of.

``phasecast run-monthly`` computes a :class:`ForecastRun` once and :func:`save_run` writes it into
the run folder (``outputs/<as-of>/``); ``budget``, ``flag``, ``report`` and scenario evaluation call
:func:`locate_run` and :func:`load_run` and never re-fit or re-backtest. The folder holds:

* ``paths.parquet``: the reconciled sample paths, long (``unique_id, path, ds, value,
  conditioned``): ``value`` is the reconciled forecast, ``conditioned`` the same path after
  month-to-date conditioning (:func:`pipeline.conditioning.condition_paths`), what period sums use;
* ``forecast`` (the published table read off the conditioned paths: ``mean`` their mean,
  ``lo_L``/``hi_L`` their quantiles), ``model_forecast`` (the selected models' forecast before the
  month-to-date, what the registered ``phasecast-forecaster`` version reproduces), ``all_forecasts``,
  ``backtest``, ``metrics``, ``accuracy`` (what a reader checks: per total, phase and series the
  published forecast's cost-weighted WAPE, typical error at 1, 3 and 12 months, MASE and coverage,
  :func:`pipeline.metrics.accuracy_table`), ``selection``, ``series`` (the closed months the run
  was fitted on),
  ``anomalies`` (CSV and Parquet) and ``partial.parquet`` (the month-to-date actuals with their
  pace errors);
* ``plan.yaml`` (a copy of the plan the run used, for scenarios), ``fitted.pkl`` (the fitted
  models' state) and ``run.json`` (configuration, data window, fingerprint, MLflow run, versions).

Float64 survives Parquet exactly, so a number computed from a loaded run equals the one the monthly
job computed from the same arrays.
"""

from __future__ import annotations

import json
import logging
import pickle
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.conditioning import PartialMonth
from pipeline.errors import InputError, Problem
from pipeline.frames import DS, UID

log = logging.getLogger(__name__)

RUN_FILE = "run.json"
PATHS_FILE = "paths.parquet"
PARTIAL_FILE = "partial.parquet"
PLAN_FILE = "plan.yaml"
FITTED_FILE = "fitted.pkl"
BUDGETS_FILE = "budgets.parquet"
TABLES = (
    "forecast",
    "model_forecast",
    "all_forecasts",
    "backtest",
    "metrics",
    "accuracy",
    "selection",
    "series",
    "anomalies",
)
_AS_OF = re.compile(r"^\d{4}-\d{2}-\d{2}$")


@dataclass
class ForecastRun:
    """Everything later commands need from one monthly run (see the module docstring)."""

    as_of: str
    currency: str
    monthly: pd.DataFrame
    partial: dict[str, PartialMonth]
    forecast: pd.DataFrame
    all_forecasts: pd.DataFrame
    backtest: pd.DataFrame
    metrics: pd.DataFrame
    selection: pd.DataFrame
    anomalies: pd.DataFrame
    paths: np.ndarray
    conditioned: np.ndarray
    path_ids: list[str]
    path_ds: pd.DatetimeIndex
    settings: dict[str, Any] = field(default_factory=dict)  # horizon, levels, quarters, ...
    plan_text: str | None = None
    budgets: pd.DataFrame | None = None  # the budgets the run was given (validated)
    model_forecast: pd.DataFrame = field(default_factory=pd.DataFrame)  # before month-to-date
    accuracy: pd.DataFrame = field(default_factory=pd.DataFrame)  # the published forecast's
    folder: Path | None = None

    @property
    def horizon(self) -> int:
        return len(self.path_ds)

    @property
    def last_complete(self) -> pd.Timestamp:
        return pd.Timestamp(pd.to_datetime(self.monthly[DS]).max())

    def plan(self) -> Any:
        """The plan the run used (None without one)."""
        if not self.plan_text:
            return None
        import yaml

        from pipeline.plan import plan_from_dict

        return plan_from_dict(
            yaml.safe_load(self.plan_text), source=str(self.folder or "run"), strict=False
        )

    def scenarios(self) -> tuple[Any, ...]:
        """The scenarios the run was configured with."""
        from pipeline.scenarios import scenario_from_dict

        return tuple(
            scenario_from_dict(
                {"name": s["name"], "changes": [{k: a} for k, a in s["changes"]]}, "run.json"
            )
            for s in self.settings.get("scenarios") or []
        )

    def rerun_hint(self) -> str:
        return (
            f"phasecast run-monthly --as-of {self.as_of} --horizon H (the run has {self.horizon})"
        )


# --- writing ----------------------------------------------------------------------------------
def write_paths(folder: Path, run: ForecastRun, rows_per_group: int = 2_000_000) -> Path:
    """``paths.parquet``: one row per series, path and month (``value``, ``conditioned``), written
    a block of series at a time so memory stays at the arrays themselves."""
    n, p, h = run.paths.shape
    dictionary = pa.array([str(u) for u in run.path_ids])
    schema = pa.schema(
        [
            (UID, pa.dictionary(pa.int32(), pa.string())),
            ("path", pa.int32()),
            (DS, pa.timestamp("ms")),
            ("value", pa.float64()),
            ("conditioned", pa.float64()),
        ]
    )
    months = run.path_ds.to_numpy(dtype="datetime64[ms]")
    step = max(1, rows_per_group // max(p * h, 1))
    out = folder / PATHS_FILE
    with pq.ParquetWriter(out, schema) as writer:
        for a in range(0, max(n, 1), step):
            b = min(n, a + step)
            k = b - a
            uid = pa.DictionaryArray.from_arrays(
                pa.array(np.repeat(np.arange(a, b, dtype=np.int32), p * h)), dictionary
            )
            block = pa.table(
                {
                    UID: uid,
                    "path": pa.array(np.tile(np.repeat(np.arange(p, dtype=np.int32), h), k)),
                    DS: pa.array(np.tile(months, k * p)),
                    "value": pa.array(run.paths[a:b].reshape(-1)),
                    "conditioned": pa.array(run.conditioned[a:b].reshape(-1)),
                },
                schema=schema,
            )
            writer.write_table(block)
    return out


def write_partial(folder: Path, partial: dict[str, PartialMonth]) -> Path:
    rows = [
        {
            UID: u,
            "month": pm.month,
            "mtd": pm.mtd,
            "days_covered": pm.days_covered,
            "days_in_month": pm.days_in_month,
            "pace_error": pm.pace_error,
        }
        for u, pm in partial.items()
    ]
    df = pd.DataFrame(
        rows, columns=[UID, "month", "mtd", "days_covered", "days_in_month", "pace_error"]
    )
    out = folder / PARTIAL_FILE
    df.to_parquet(out, index=False)
    return out


def save_run(run: ForecastRun, folder: Path, fitted: dict[str, Any] | None = None) -> list[str]:
    """Write the run's stored form into ``folder`` (tables as CSV and Parquet). Returns the names."""
    from pipeline.tables import write_table

    folder.mkdir(parents=True, exist_ok=True)
    names: list[str] = []
    for name in TABLES:
        names += [p.name for p in write_table(getattr(run, _attr(name)), folder, name)]
    names.append(write_paths(folder, run).name)
    names.append(write_partial(folder, run.partial).name)
    if run.plan_text is not None:
        (folder / PLAN_FILE).write_text(run.plan_text)
        names.append(PLAN_FILE)
    if run.budgets is not None:
        run.budgets.to_parquet(folder / BUDGETS_FILE, index=False)
        names.append(BUDGETS_FILE)
    if fitted:
        try:
            (folder / FITTED_FILE).write_bytes(pickle.dumps(fitted))
            names.append(FITTED_FILE)
        except Exception as exc:  # a model that cannot be pickled is logged in MLflow instead
            log.warning("fitted models not stored (%s: %s)", type(exc).__name__, exc)
    return names


def _attr(name: str) -> str:
    return "monthly" if name == "series" else name


def store_manifest(run: ForecastRun) -> dict[str, Any]:
    """The part of ``run.json`` a reader needs to rebuild the run."""
    return {
        "as_of": run.as_of,
        "currency": run.currency,
        "settings": run.settings,
        "path_ids": run.path_ids,
    }


# --- reading ----------------------------------------------------------------------------------
def _read(folder: Path, name: str) -> pd.DataFrame:
    p = folder / f"{name}.parquet"
    return pd.read_parquet(p) if p.exists() else pd.DataFrame()


def load_run(folder: Path) -> ForecastRun:
    """The stored run in ``folder`` (as written by :func:`save_run` and the monthly job)."""
    folder = Path(folder)
    manifest_path = folder / RUN_FILE
    if not manifest_path.exists() or not (folder / PATHS_FILE).exists():
        raise InputError(
            Problem("not a stored forecast run (no run.json / paths.parquet)", str(folder)),
            fix="name a folder written by phasecast run-monthly (outputs/<as-of>)",
        )
    manifest = json.loads(manifest_path.read_text())
    store = manifest.get("store") or {}
    ids = [str(u) for u in store.get("path_ids", [])]
    ds, paths, conditioned = read_paths(folder / PATHS_FILE, ids)
    partial = {}
    pt = _read(folder, "partial")
    for r in pt.itertuples(index=False):
        err = None if pd.isna(r.pace_error) else float(r.pace_error)
        partial[str(getattr(r, UID))] = PartialMonth(
            pd.Timestamp(r.month), float(r.mtd), int(r.days_covered), int(r.days_in_month), err
        )
    plan_path = folder / PLAN_FILE
    return ForecastRun(
        as_of=str(store.get("as_of", manifest.get("as_of"))),
        currency=str(store.get("currency", "USD")),
        monthly=_read(folder, "series"),
        partial=partial,
        forecast=_read(folder, "forecast"),
        model_forecast=_read(folder, "model_forecast"),
        all_forecasts=_read(folder, "all_forecasts"),
        backtest=_read(folder, "backtest"),
        metrics=_read(folder, "metrics"),
        accuracy=_read(folder, "accuracy"),
        selection=_read(folder, "selection"),
        anomalies=_read(folder, "anomalies"),
        paths=paths,
        conditioned=conditioned,
        path_ids=ids,
        path_ds=ds,
        settings=dict(store.get("settings", {})),
        plan_text=plan_path.read_text() if plan_path.exists() else None,
        budgets=pd.read_parquet(folder / BUDGETS_FILE)
        if (folder / BUDGETS_FILE).exists()
        else None,
        folder=folder,
    )


def read_paths(path: Path, ids: list[str]) -> tuple[pd.DatetimeIndex, np.ndarray, np.ndarray]:
    """``(path_ds, paths, conditioned)`` of a paths file, each value put at its (series, path,
    month) position from the row's own keys (whatever order the rows come in), a batch of rows at
    a time: memory is the two arrays, never the whole table or per-row Python objects."""
    f = pq.ParquetFile(path)
    rows = f.metadata.num_rows
    months = np.unique(
        np.concatenate(
            [
                np.unique(b.column(0).to_numpy().astype("datetime64[ns]"))
                for b in f.iter_batches(columns=[DS])
            ]
            or [np.empty(0, dtype="datetime64[ns]")]
        )
    )
    rank = {u: i for i, u in enumerate(ids)}
    n, h = len(ids), len(months)
    p = rows // max(n * h, 1)
    if n * p * h != rows:
        raise _altered(
            path, f"not one value per series, path and month ({rows} rows for {n} x {p} x {h})"
        )
    paths, conditioned = np.empty(n * p * h), np.empty(n * p * h)
    for b in f.iter_batches(columns=[UID, "path", DS, "value", "conditioned"]):
        uid = b.column(0)
        if not pa.types.is_dictionary(uid.type):
            uid = uid.dictionary_encode()
        names = [str(x) for x in uid.dictionary.to_pylist()]
        unknown = [u for u in names if u not in rank]
        if unknown:
            raise _altered(path, f"paths of series the run does not list ({unknown[:3]})")
        codes = uid.indices.to_numpy(zero_copy_only=False)
        row = np.array([rank[u] for u in names], dtype=np.int64)[codes]
        at = (row * p + b.column(1).to_numpy().astype(np.int64)) * h
        at += np.searchsorted(months, b.column(2).to_numpy().astype("datetime64[ns]"))
        paths[at] = b.column(3).to_numpy()
        conditioned[at] = b.column(4).to_numpy()
    return pd.DatetimeIndex(months), paths.reshape(n, p, h), conditioned.reshape(n, p, h)


def _altered(path: Path, what: str) -> InputError:
    return InputError(
        Problem(what, str(path)),
        fix="re-run phasecast run-monthly for this as-of (the run folder was altered)",
    )


def is_run_folder(p: Path) -> bool:
    """A stored run's folder: named by its as-of date, with its ``run.json``."""
    return bool(_AS_OF.match(p.name)) and (p / RUN_FILE).is_file()


def holding_run(path: Path) -> Path | None:
    """The stored run folder ``path`` is, or lies in (a file or folder), else None."""
    p = Path(path).resolve()
    return next((q for q in (p, *p.parents) if is_run_folder(q)), None)


def stored_runs(root: Path) -> list[Path]:
    """Run folders under ``root`` (named by their as-of date), oldest first."""
    if not root.exists():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and is_run_folder(p))


def locate_run(root: Path, as_of: str | None = None, run: Path | None = None) -> Path:
    """The run folder to read: ``run`` when given, else ``root/<as_of>``, else the newest run."""
    if run is not None:
        return Path(run)
    if as_of is not None:
        folder = root / str(as_of)
        if not (folder / RUN_FILE).exists():
            have = ", ".join(p.name for p in stored_runs(root)[-5:]) or "none"
            raise InputError(
                f"no stored forecast run for as-of {as_of} in {root} (stored runs: {have})",
                fix=f"make it first: phasecast run-monthly --as-of {as_of} [--budgets FILE]",
            )
        return folder
    runs = stored_runs(root)
    if not runs:
        raise InputError(
            f"no stored forecast run in {root}",
            fix="make one first: phasecast run-monthly --as-of YYYY-MM-DD [--budgets FILE]",
        )
    return runs[-1]
