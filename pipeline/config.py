"""Run configuration: built once at the edge (CLI, notebook, test) and passed down, frozen.

Nothing below the CLI reads environment variables or guesses paths; it gets a :class:`Paths`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Paths:
    """Where phasecast keeps its state, relative to a home folder (the project root by default)."""

    home: Path = field(default_factory=Path.cwd)
    config: Path | None = None  # phasecast.yaml; default: <home>/phasecast.yaml when it exists

    @property
    def config_file(self) -> Path | None:
        if self.config is not None:
            return self.config
        default = self.home / "phasecast.yaml"
        return default if default.exists() else None

    def settings(self) -> Any:
        """The :class:`~pipeline.settings.Settings` of the configuration file (defaults without one)."""
        from pipeline.settings import Settings, load_settings

        f = self.config_file
        return load_settings(f) if f is not None else Settings()

    @property
    def data(self) -> Path:
        return self.home / "data"

    @property
    def warehouse(self) -> Path:
        return self.data / "phasecast.duckdb"

    @property
    def inbox(self) -> Path:
        """Billing inbox that ``run-monthly`` ingests from (new files are picked up idempotently)."""
        return self.data / "inbox" / "billing"

    @property
    def sample(self) -> Path:
        """Where ``make demo`` writes the generated sample (billing, usage, labor, plan, budgets)."""
        return self.data / "sample"

    @property
    def plan(self) -> Path:
        return self.sample / "plan.yaml"

    @property
    def mlflow_dir(self) -> Path:
        return self.home / "mlflow"

    @property
    def tracking_uri(self) -> str:
        return f"sqlite:///{(self.mlflow_dir / 'mlflow.db').resolve()}"

    @property
    def artifact_root(self) -> Path:
        return self.mlflow_dir / "artifacts"

    @property
    def outputs(self) -> Path:
        return self.home / "outputs"

    @property
    def lock(self) -> Path:
        return self.data / ".run-monthly.lock"
