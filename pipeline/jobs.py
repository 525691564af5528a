"""The jobs that read a stored run: budgets, flags, scenarios and the report.

``run-monthly`` (:mod:`pipeline.monthly`) computes and stores one :class:`ForecastRun` per as-of and
then calls :func:`derive` and :func:`write_derived` on the run **as loaded back from its folder**;
``phasecast budget``, ``flag`` and ``report`` call the same functions on the same stored run. So a
budget line's ``p_overrun``, a quarter's P50/P80/P95 and a scenario's delta are the same number
whichever command shows them. These jobs never fit, backtest or touch the warehouse, and never
write into a run folder: their files go to folders of their own.

    run = open_run(root, as_of=None, run=None)                 # the newest, or the as-of's
    out = derive(run, budgets, quarters, scenarios, flag_config, quantile)
    write_derived(out, folder)       # flags, budget-<q>, scenarios-<q>, changes (+ .xlsx)
    report(run, out, folder, versions)                         # report.html

``derive`` also compares the run with the previous stored run (the newest with an earlier as-of
under the same outputs root, :func:`previous_run`): ``changes.csv`` (:mod:`pipeline.changes`).
CSVs meant for people are rounded to cents; the Parquet beside them keeps full precision.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from pipeline.budget import budget_table
from pipeline.flags import FlagConfig, FlagResult, flag_run
from pipeline.frames import DS, SEP, UID
from pipeline.periods import Period, default_quarters, parse_period
from pipeline.runstore import ForecastRun, load_run, locate_run, stored_runs
from pipeline.tables import write_csv, write_people_table

log = logging.getLogger(__name__)


@dataclass
class Derived:
    """Everything computed from a stored run for a set of budgets, quarters and scenarios."""

    flags: FlagResult | None
    quarters: list[Period]
    budgets: dict[str, pd.DataFrame] = field(default_factory=dict)  # quarter label -> table
    scenarios: dict[str, pd.DataFrame] = field(default_factory=dict)  # quarter -> summary
    scenario_models: dict[str, pd.DataFrame] = field(default_factory=dict)
    changes: pd.DataFrame | None = None  # against the previous run (None: there is none)
    previous_as_of: str | None = None
    thresholds: tuple[float, float] = (0.2, 0.5)  # watch, at_risk

    def budget_frame(self) -> pd.DataFrame:
        frames = [t for t in self.budgets.values() if len(t)]
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()

    def scenario_frame(self) -> pd.DataFrame:
        frames = [t for t in self.scenarios.values() if len(t)]
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def open_run(root: Path, as_of: str | None = None, run: Path | None = None) -> ForecastRun:
    folder = locate_run(root, as_of, run)
    log.info("reading the stored run %s", folder)
    return load_run(folder)


def previous_run(run: ForecastRun) -> ForecastRun | None:
    """The newest stored run with an earlier as-of in the same outputs root as ``run``."""
    if run.folder is None:
        return None
    earlier = [p for p in stored_runs(Path(run.folder).parent) if p.name < run.as_of]
    if not earlier:
        return None
    try:
        return load_run(earlier[-1])
    except Exception as exc:  # an unreadable old run must not stop this one
        log.warning("previous run %s not readable (%s): no 'what changed'", earlier[-1], exc)
        return None


def planned_quarters(run: ForecastRun, quarters: Sequence[str] = ()) -> list[Period]:
    """The quarters to plan: those asked for, else the as-of's quarter and the next."""
    if quarters:
        return [parse_period(q) for q in quarters]
    return list(default_quarters(run.as_of))


def derive(
    run: ForecastRun,
    *,
    budgets: pd.DataFrame | None = None,
    quarters: Sequence[str] = (),
    scenarios: Sequence[Any] = (),
    flag_config: FlagConfig | None = None,
    quantile: float = 0.8,
    progress: Any = None,
    compare: bool = True,
) -> Derived:
    """Flags, a budget table per quarter and the scenarios per quarter, all from ``run``; with
    ``compare``, what changed since the previous stored run."""
    from pipeline.changes import run_changes
    from pipeline.whatif import evaluate

    qs = planned_quarters(run, quarters)
    flags = flag_run(run, budgets, flag_config or FlagConfig()) if budgets is not None else None
    tick = progress or (lambda _msg: None)
    tick("flags")
    fc = flag_config or FlagConfig()
    out = Derived(flags=flags, quarters=qs, thresholds=(fc.watch, fc.at_risk))
    for q in qs:
        out.budgets[q.label] = budget_table(run, q, budgets, quantile)
        tick(f"budget {q.label}")
        if scenarios:
            summary, models = evaluate(run, scenarios, q, quantile=quantile)
            if len(summary):  # none for a closed quarter (whatif.evaluate says why)
                out.scenarios[q.label], out.scenario_models[q.label] = summary, models
            tick(f"scenarios {q.label}")
    prev = previous_run(run) if compare else None
    if prev is not None:
        try:
            out.changes, out.previous_as_of = run_changes(run, prev, qs), prev.as_of
        except Exception as exc:  # a comparison never stops a run or a report
            log.warning(
                "what changed since %s not computed (%s: %s)", prev.as_of, type(exc).__name__, exc
            )
        tick("changes")
    return out


def write_derived(d: Derived, folder: Path) -> list[str]:
    """``flags.csv/.json/.parquet/.xlsx``, ``budget-<q>.csv/.json/.parquet/.xlsx``,
    ``scenarios-<q>.csv/.parquet``, ``scenario-models-<q>.csv`` and ``changes.csv/.parquet`` in
    ``folder`` (CSVs rounded to cents, Parquet and JSON at full precision); an earlier call's
    scenario or changes files of the same quarters that this one does not write are removed
    (:func:`_drop_stale`). Returns the names."""
    from pipeline.spreadsheets import write_workbook

    folder.mkdir(parents=True, exist_ok=True)
    names: list[str] = []
    if d.flags is not None:
        names += [p.name for p in write_people_table(d.flags.flags, folder, "flags")]
        sheets = {"flags": d.flags.flags}
        if len(d.flags.anomalies):
            sheets["anomalies"] = d.flags.anomalies
        names.append(write_workbook(sheets, folder / "flags.xlsx").name)
        doc = {
            "as_of": d.flags.as_of,
            "thresholds": {"watch": d.flags.config.watch, "at_risk": d.flags.config.at_risk},
            "partial_month_method": d.flags.config.partial_method,
            "lines": json.loads(d.flags.flags.to_json(orient="records")),
        }
        (folder / "flags.json").write_text(json.dumps(doc, indent=2))
        names.append("flags.json")
    changes = d.changes if d.changes is not None else pd.DataFrame()
    for label, t in d.budgets.items():
        names += [p.name for p in write_people_table(t, folder, f"budget-{label}")]
        (folder / f"budget-{label}.json").write_text(t.to_json(orient="records", indent=2))
        names.append(f"budget-{label}.json")
        sheets = {"budget": t}
        if label in d.scenarios:
            sheets["scenarios"] = d.scenarios[label]
        if len(changes) and (changes["period"] == label).any():
            sheets["what changed"] = changes[changes["period"] == label]
        names.append(write_workbook(sheets, folder / f"budget-{label}.xlsx").name)
    for label, t in d.scenarios.items():
        names += [p.name for p in write_people_table(t, folder, f"scenarios-{label}")]
        names.append(
            write_csv(d.scenario_models[label], folder / f"scenario-models-{label}.csv").name
        )
    if d.changes is not None:
        names += [p.name for p in write_people_table(d.changes, folder, "changes")]
    _drop_stale(folder, names, d)
    return names


WRITTEN = ".phasecast-written.json"  # the names the last call wrote into a derived folder


def _drop_stale(folder: Path, names: list[str], d: Derived) -> None:
    """Remove what an earlier call wrote into ``folder`` for the same quarters and this call does
    not: the scenario files of a quarter asked for without ``--scenario`` this time, a
    ``changes`` table when there is no previous run now. Only a file of those names that the
    earlier call recorded as its own (``WRITTEN``) goes: the folder may be one the user chose and
    fills with other things. The workbooks are rewritten whole anyway."""
    record = folder / WRITTEN
    try:
        before = set(json.loads(record.read_text())) if record.exists() else set()
    except (OSError, ValueError):
        before = set()
    family = {f"changes.{ext}" for ext in ("csv", "parquet")} if d.budgets else set()
    for label in d.budgets:
        family |= {f"scenarios-{label}.csv", f"scenarios-{label}.parquet"}
        family.add(f"scenario-models-{label}.csv")
    for name in sorted((family & before) - set(names)):
        path = folder / name
        if path.exists():
            path.unlink()
            log.info("removed %s: an earlier call's, not part of this one", path)
    record.write_text(json.dumps(sorted(set(names) | (before - family))))


def report(
    run: ForecastRun,
    d: Derived,
    folder: Path,
    *,
    budgets: pd.DataFrame | None = None,
    versions: Any = None,
    levels: Sequence[int] = (80, 95),
) -> Path:
    """``report.html`` of the run and what was derived from it, in ``folder``."""
    from pipeline.report import fan_bands, write_report

    # the report charts the total and the phases: only their bands are computed
    charted = [i for i, u in enumerate(run.path_ids) if SEP not in str(u)]
    ds = pd.to_datetime(run.monthly[DS])
    window = {
        "first month": f"{ds.min():%Y-%m}",
        "last complete month": f"{ds.max():%Y-%m}",
        "as of": run.as_of,
        "currency": run.currency,
        "series": str(run.monthly[UID].nunique()),
        "run folder": str(published_folder(run)),
    }
    return write_report(
        folder,
        history=run.monthly,
        fan=fan_bands(run.conditioned[charted], [run.path_ids[i] for i in charted], run.path_ds),
        forecast=run.forecast,
        budgets=budgets,
        flags=d.flags.flags if d.flags is not None else None,
        anomalies=run.anomalies,
        metrics=run.metrics,
        budget_table=d.budget_frame(),
        scenarios=d.scenario_frame(),
        model_versions=versions,
        selection=run.selection,
        data_window=window,
        as_of=run.as_of,
        currency=run.currency,
        levels=levels,
        backtest=run.backtest,
        changes=d.changes,
        previous_as_of=d.previous_as_of,
        thresholds=d.thresholds,
        # the stored accuracy frame; a run stored before it existed gets it from its backtest
        accuracy=run.accuracy if len(run.accuracy) else None,
    )


def published_folder(run: ForecastRun) -> Path | str:
    """Where the run lives once published (the monthly job renders from its staging folder)."""
    if run.folder is None:
        return ""
    folder = Path(run.folder)
    if folder.name.startswith(".") and ".tmp-" in folder.name:
        return folder.parent / run.as_of
    return folder


def run_versions(run: ForecastRun) -> list[dict[str, Any]]:
    """The model versions the run registered (from its run.json)."""
    if run.folder is None or not (run.folder / "run.json").exists():
        return []
    manifest = json.loads((run.folder / "run.json").read_text())
    return list(manifest.get("versions", []))


def output_folder(root: Path, given: Path | None, kind: str, run: ForecastRun) -> Path:
    """Where a reading job writes: ``--output`` or ``<root>/<kind>-<as-of>``; never a run folder."""
    folder = given if given is not None else root / f"{kind}-{run.as_of}"
    if run.folder is not None and folder.resolve() == Path(run.folder).resolve():
        from pipeline.errors import InputError

        raise InputError(
            f"{folder} is the run folder of {run.as_of}; a {kind} never writes into a run folder",
            fix="pass another --output",
        )
    from pipeline.runstore import holding_run

    inside = holding_run(folder)
    if inside is not None:  # the folder of a stored run, or a folder inside one
        from pipeline.errors import InputError

        raise InputError(
            f"{folder} is in the stored run {inside}; a {kind} never writes into a run folder",
            fix="pass another --output",
        )
    return folder
