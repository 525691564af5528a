"""Shared fixtures: a small seeded synthetic sample, ingested once per session.

* ``small_sample``: ``phasecast synth`` output (billing/, usage.csv, labor.csv, plan.yaml,
  budgets.csv) for 20 months ending 2026-10 (+ 14 days of November), seed 7;
* ``small_home``: a :class:`~pipeline.config.Paths` home whose warehouse holds that sample; treat it
  as read-only (copy it with ``home_copy`` before running jobs that write to it);
* ``home_copy``: a fresh copy of ``small_home`` under the test's ``tmp_path`` (warehouse and sample;
  its own empty ``mlflow/`` store and ``outputs/``).

MLflow never reaches the network in tests: telemetry is off and every test that tracks points
the tracking URI at its own temporary SQLite store.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.pop("MLFLOW_TRACKING_URI", None)  # tests choose their own store

SMALL_MONTHS = 20
SMALL_SEED = 7


@pytest.fixture(scope="session")
def small_sample(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from pipeline.synth import SynthConfig, generate

    out = tmp_path_factory.mktemp("small") / "sample"
    generate(SynthConfig(out=out, months=SMALL_MONTHS, seed=SMALL_SEED, end="2026-10"))
    return out


@pytest.fixture(scope="session")
def small_home(tmp_path_factory: pytest.TempPathFactory, small_sample: Path):
    from pipeline.config import Paths
    from pipeline.ingest import IngestConfig, ingest

    home = tmp_path_factory.mktemp("small_home")
    paths = Paths(home=home)
    shutil.copytree(small_sample, paths.sample)
    ingest(
        IngestConfig(
            billing=(paths.sample / "billing",),
            warehouse=paths.warehouse,
            usage=paths.sample / "usage.csv",
            labor=paths.sample / "labor.csv",
            progress=False,
        )
    )
    return paths


@pytest.fixture()
def home_copy(tmp_path: Path, small_home):
    from pipeline.config import Paths

    home = tmp_path / "home"
    shutil.copytree(small_home.data, home / "data")
    return Paths(home=home)


@pytest.fixture(autouse=True)
def _no_inherited_tracking_uri(monkeypatch: pytest.MonkeyPatch) -> None:
    """``mlflow.set_tracking_uri`` (called by in-process runs) also sets MLFLOW_TRACKING_URI in this
    process's environment; without this, a later test's ``phasecast`` subprocess would inherit it
    and track into an earlier test's store instead of its own home's."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)


# Seconds each of the longest test files took in a full run (`make test`, 2026-12-02, durations
# summed per file). Two workers each take whole files in the order collected (`make test` passes
# --no-loadscope-reorder: xdist would otherwise order files by their number of tests), so the
# longest go first: a long file collected last would leave one worker alone with it at the end.
LONGEST_FILES = {
    "test_evaluate.py": 330,
    "test_crash.py": 300,
    "test_mlflow_server.py": 160,
    "test_intervals.py": 135,
    "test_cluster.py": 130,
    "test_monthly.py": 100,
    "test_drivers.py": 70,
    "test_focus_validator.py": 70,
    "test_terminal.py": 62,
    "test_notebook.py": 62,
    "test_synth.py": 62,
    "test_ui.py": 55,
}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Longest files first (stable: the rest keep their order, as do the tests inside a file)."""
    items.sort(key=lambda item: -LONGEST_FILES.get(item.path.name, 0))
