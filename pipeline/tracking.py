"""MLflow at the edge: the ONLY module that imports mlflow (models and features never do).

What a monthly run leaves in MLflow
-----------------------------------
* an experiment per job kind (``phasecast/monthly``; :func:`experiment_name`), whose artifacts go
  under ``Paths.artifact_root`` with the default SQLite store, or to the server's artifact store
  when ``MLFLOW_TRACKING_URI`` (read by the CLI only) points at a tracking server;
* a run per as-of date, named by it, with params (configuration, data window, input checksums),
  metrics (backtest per model and level, champion decisions), the output tables, report and plots
  as artifacts, and tags (git commit, package versions, fingerprint);
* every model (the analytic baseline included) logged and registered as a version of
  ``phasecast-<model>``, plus the published per-series selection as ``phasecast-forecaster``.

How a model is logged
---------------------
The registered version is a pyfunc **defined from code** (MLflow "models from code": a three-line
code file that instantiates :class:`PhasecastPyfunc`), never a pickled Python object. Its artifacts:

* ``spec.json``: role, model name, hyperparameters (as given to ``__init__``), horizon, levels,
  the forecast configuration and how the state is stored;
* ``series.parquet``: the exact training frame; ``plan.yaml`` when the baseline used a plan;
* ``state/``: the fitted state (every attribute ending in ``_``) as data: numpy arrays in
  ``arrays.npz``, the rest in ``state.json``, a LightGBM booster in LightGBM's own text format
  (:mod:`pipeline.flavor`). The state is restored into ``cls(**params)`` without re-fitting, and
  checked at log time: restored state must re-forecast the logged forecast bit for bit. A model whose
  state cannot be written as data (statsmodels results objects) is stored as ``refit``: the pyfunc
  re-fits it deterministically on ``series.parquet`` at load time;
* ``forecast.parquet``: the forecast that was published, what ``phasecast reproduce`` compares to;
* ``drivers.parquet`` when the run read future drivers (the traffic plan's requests): the models
  that read drivers forecast from it again.

Native objects are also logged with their own flavor beside the pyfunc: the LightGBM booster with
``mlflow.lightgbm`` and a statsmodels results object (of the ``total`` series) with
``mlflow.statsmodels``; the registered version's tag ``native_model_uri`` points at them.

Champion and challenger (``decide``)
------------------------------------
Scores are the cost-weighted backtest MASE of the role's rows (per series and cutoff first, then
the mean weighted by each forecast's actual cost, so a tiny series cannot decide; for
``phasecast-forecaster`` the rows of the model selected for each series). The current champion is
compared **on the new run's backtest windows**: its configuration (model, hyperparameters, or the
forecast configuration for the forecaster) is re-run on the new windows of the new data
(:func:`rescore` is given by the caller), so both numbers come from the same rows. When the champion's
configuration equals the new one, that re-run *is* the new backtest: the two tie by construction and
the newer version (same model, newer data) takes over as a refresh. Otherwise the new version becomes
``champion`` only when its MASE is strictly lower; else it gets ``challenger``. The decision and both
numbers go on the run (tags and metrics), on the version (tags) and into ``run.json``.

A version whose fingerprint (role configuration + input series + as-of + code, see
:func:`pipeline.flavor.code_identity`) is already registered is reused, not registered again: re-running a month never duplicates registry versions.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

import mlflow
import mlflow.artifacts
import mlflow.lightgbm
import mlflow.pyfunc
import mlflow.statsmodels
from mlflow import MlflowClient
from mlflow.entities import RunStatus
from mlflow.exceptions import MlflowException

log = logging.getLogger(__name__)

ENV_TRACKING_URI = "MLFLOW_TRACKING_URI"
MODEL_PREFIX = "phasecast-"
FORECASTER = "forecaster"
CHAMPION = "champion"
CHALLENGER = "challenger"
CANDIDATE = "candidate"  # version tag: "true" from registration until the aliases move
SCORE_METRIC = "MASE"
PIP_REQUIREMENTS = ["phasecast", "mlflow", "pandas", "numpy", "pyarrow", "statsmodels", "lightgbm"]

CODE_FILE = '''"""phasecast forecaster, defined from code (MLflow models-from-code)."""
import mlflow
from pipeline.tracking import PhasecastPyfunc

mlflow.models.set_model(PhasecastPyfunc())
'''


# --- configuration ----------------------------------------------------------------------------
@dataclass(frozen=True)
class TrackingConfig:
    """Where runs and models go. ``artifact_root`` is used for new experiments on a local store
    (``None`` with a tracking server: the server decides where artifacts live)."""

    tracking_uri: str
    artifact_root: Path | None = None
    prefix: str = "phasecast"
    register: bool = True

    @classmethod
    def for_paths(cls, paths: Any, env_uri: str | None = None) -> TrackingConfig:
        """The default store under ``paths.mlflow_dir``, or ``env_uri`` (``MLFLOW_TRACKING_URI``,
        read by the caller at the edge) when given."""
        if env_uri:
            local = env_uri.startswith(("sqlite:", "file:")) or "://" not in env_uri
            return cls(env_uri, paths.artifact_root if local else None)
        return cls(paths.tracking_uri, paths.artifact_root)


def experiment_name(prefix: str, kind: str) -> str:
    return f"{prefix}/{kind}"


def registered_name(role: str) -> str:
    return f"{MODEL_PREFIX}{role}"


def _prepare_local_store(cfg: TrackingConfig) -> None:
    if cfg.tracking_uri.startswith("sqlite:///"):
        Path(cfg.tracking_uri[len("sqlite:///") :]).parent.mkdir(parents=True, exist_ok=True)
    if cfg.artifact_root is not None:
        Path(cfg.artifact_root).mkdir(parents=True, exist_ok=True)


from pipeline.flavor import (  # noqa: E402  (mlflow's environment variables are set first)
    Unencodable,
    build_model,
    canonical,
    checksum_file,
    checksum_frame,
    code_identity,
    decode_params,
    encode_params,
    fingerprint,
    fitted_attrs,
    forecast_config_from,
    git_commit,
    package_versions,
    pipeline_forecast,
    read_state,
    role_forecast,
    same_frame,
    write_state,
)

__all__ = [
    "CHALLENGER",
    "CHAMPION",
    "ModelToLog",
    "PhasecastPyfunc",
    "Tracker",
    "TrackingConfig",
    "VersionRecord",
    "build_model",
    "canonical",
    "checksum_file",
    "checksum_frame",
    "code_identity",
    "decode_params",
    "encode_params",
    "fingerprint",
    "fitted_attrs",
    "forecast_config_from",
    "git_commit",
    "package_versions",
    "pipeline_forecast",
    "read_state",
    "role_forecast",
    "same_frame",
    "write_state",
]


class PhasecastPyfunc(mlflow.pyfunc.PythonModel):  # type: ignore[name-defined]
    """A registered phasecast version. ``predict(None or any frame)`` returns its forecast table:
    the role's model forecast from its restored state, or for ``phasecast-forecaster`` the published
    selection re-run end to end from the logged series and configuration."""

    def load_context(self, context: Any) -> None:
        self.artifacts = dict(context.artifacts)
        self.spec = json.loads(Path(self.artifacts["spec"]).read_text())
        self.model = (
            None if self.spec["state"] == "pipeline" else build_model(self.spec, self.artifacts)
        )

    def predict(
        self, context, model_input, params=None
    ):  # no annotations: MLflow would read them as a schema
        if self.spec["state"] == "pipeline":
            return pipeline_forecast(self.spec, self.artifacts)
        spec = dict(self.spec)
        if params and "horizon" in params:
            spec["horizon"] = int(params["horizon"])
        drivers = self.artifacts.get("drivers")
        return role_forecast(self.model, spec, pd.read_parquet(drivers) if drivers else None)


# --- the tracker --------------------------------------------------------------------------------
@dataclass
class VersionRecord:
    role: str
    name: str
    version: str
    model_uri: str
    reused: bool
    state: str
    score: float | None
    decision: str = ""
    alias: str | None = None
    champion_version: str | None = None
    champion_score: float | None = None
    method: str = ""
    native_model_uri: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return dict(vars(self))


@dataclass
class ModelToLog:
    """Everything needed to log one role: the fitted model (None for the forecaster), its spec,
    the training series, the published forecast and its backtest score."""

    role: str
    spec: dict[str, Any]
    series: pd.DataFrame
    forecast: pd.DataFrame
    score: float | None
    fitted: Any = None
    plan_path: Path | None = None
    extra_tags: dict[str, str] = field(default_factory=dict)
    drivers: pd.DataFrame | None = None  # the future driver rows the forecast read (traffic plan)


class Tracker:
    """A thin wrapper over the MLflow client for one tracking configuration."""

    def __init__(self, cfg: TrackingConfig) -> None:
        self.cfg = cfg
        _prepare_local_store(cfg)
        mlflow.set_tracking_uri(cfg.tracking_uri)
        mlflow.set_registry_uri(cfg.tracking_uri)
        self.client = MlflowClient(tracking_uri=cfg.tracking_uri, registry_uri=cfg.tracking_uri)

    # experiments and runs
    def experiment_id(self, kind: str) -> str:
        name = experiment_name(self.cfg.prefix, kind)
        exp = self.client.get_experiment_by_name(name)
        if exp is not None:
            if exp.lifecycle_stage == "deleted":
                self.client.restore_experiment(exp.experiment_id)
            return exp.experiment_id
        location = None
        if self.cfg.artifact_root is not None:
            location = (Path(self.cfg.artifact_root) / name.replace("/", "-")).resolve().as_uri()
        try:
            return self.client.create_experiment(name, artifact_location=location)
        except MlflowException:  # created meanwhile by someone else
            exp = self.client.get_experiment_by_name(name)
            assert exp is not None
            return exp.experiment_id

    def find_run(self, kind: str, as_of: str, fp: str) -> str | None:
        """The id of a FINISHED run for ``as_of`` with fingerprint ``fp``, if any."""
        runs = self.client.search_runs(
            [self.experiment_id(kind)],
            filter_string=f"tags.as_of = '{as_of}' and tags.fingerprint = '{fp}' and attributes.status = 'FINISHED'",
            max_results=1,
        )
        return runs[0].info.run_id if runs else None

    @contextmanager
    def run(self, kind: str, run_name: str, tags: dict[str, str]) -> Iterator[str]:
        """Start a run; it ends FINISHED, or FAILED (with the error as a tag) if the block raises."""
        exp = self.experiment_id(kind)
        active = mlflow.start_run(experiment_id=exp, run_name=run_name, tags=tags)
        run_id = active.info.run_id
        try:
            yield run_id
        except BaseException as exc:
            self._fail(run_id, exc)
            raise
        else:
            mlflow.end_run(RunStatus.to_string(RunStatus.FINISHED))

    def _fail(self, run_id: str, exc: BaseException) -> None:
        try:
            self.client.set_tag(run_id, "error", f"{type(exc).__name__}: {str(exc)[:4000]}")
        finally:
            if mlflow.active_run() is not None and mlflow.active_run().info.run_id == run_id:  # type: ignore[union-attr]
                mlflow.end_run(RunStatus.to_string(RunStatus.FAILED))
            else:
                self.client.set_terminated(run_id, status="FAILED")

    def record_failure(
        self,
        kind: str,
        run_name: str,
        tags: dict[str, str],
        params: dict[str, Any],
        exc: BaseException,
    ) -> str:
        """A FAILED run for a job that failed before its run started (e.g. a bad inbox file)."""
        run = self.client.create_run(self.experiment_id(kind), run_name=run_name, tags=tags)
        for k, v in _flat_params(params).items():
            self.client.log_param(run.info.run_id, k, v)
        self.client.set_tag(run.info.run_id, "error", f"{type(exc).__name__}: {str(exc)[:4000]}")
        self.client.set_terminated(run.info.run_id, status="FAILED")
        return run.info.run_id

    def log_params(self, params: dict[str, Any]) -> None:
        mlflow.log_params(_flat_params(params))

    def log_metrics(self, metrics: dict[str, float]) -> None:
        clean = {
            _metric_key(k): float(v) for k, v in metrics.items() if v is not None and np.isfinite(v)
        }
        if clean:
            mlflow.log_metrics(clean)

    def set_tags(self, tags: dict[str, Any]) -> None:
        mlflow.set_tags({k: str(v) for k, v in tags.items()})

    def log_artifacts(self, folder: Path, artifact_path: str | None = None) -> None:
        mlflow.log_artifacts(str(folder), artifact_path)

    # models
    def existing_version(self, name: str, fp: str) -> Any:
        try:
            versions = self.client.search_model_versions(f"name = '{name}'")
        except MlflowException:
            return None
        for v in versions:
            if v.tags.get("fingerprint") == fp:
                return v
        return None

    def champion(self, name: str) -> Any:
        try:
            return self.client.get_model_version_by_alias(name, CHAMPION)
        except MlflowException:
            return None

    def version_spec(self, name: str, version: str) -> dict[str, Any]:
        with tempfile.TemporaryDirectory() as tmp:
            local = mlflow.artifacts.download_artifacts(
                artifact_uri=f"models:/{name}/{version}/artifacts/spec.json", dst_path=tmp
            )
            return json.loads(Path(local).read_text())

    def log_model(self, item: ModelToLog, as_of: str) -> VersionRecord:
        """Log (or reuse) one role's model version. Returns its record, decision not yet made."""
        name = registered_name(item.role)
        fp = item.spec["fingerprint"]
        old = self.existing_version(name, fp) if self.cfg.register else None
        if old is not None:
            log.info(
                "%s: version %s already holds this model and data; not registering again",
                name,
                old.version,
            )
            return VersionRecord(
                item.role,
                name,
                str(old.version),
                f"models:/{name}/{old.version}",
                True,
                old.tags.get("state", ""),
                item.score,
                decision="unchanged: this model on this data is already version "
                + str(old.version),
            )
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            spec = dict(item.spec)
            artifacts = {
                "spec": str(root / "spec.json"),
                "series": str(root / "series.parquet"),
                "forecast": str(root / "forecast.parquet"),
            }
            item.series.to_parquet(artifacts["series"], index=False)
            canonical(item.forecast).to_parquet(artifacts["forecast"], index=False)
            if item.drivers is not None:
                artifacts["drivers"] = str(root / "drivers.parquet")
                item.drivers.to_parquet(artifacts["drivers"], index=False)
            if item.plan_path is not None:
                shutil.copyfile(item.plan_path, root / "plan.yaml")
                artifacts["plan"] = str(root / "plan.yaml")
            if item.fitted is not None:
                spec["state"] = self._write_checked_state(item, root, artifacts)
                if spec["state"] == "state":
                    artifacts["state"] = str(root / "state")
            else:
                spec["state"] = "pipeline"
            Path(artifacts["spec"]).write_text(
                json.dumps(spec, indent=1, sort_keys=True, default=str)
            )
            code = root / "phasecast_model.py"
            code.write_text(CODE_FILE)
            native_uri = self._log_natives(item)
            info = mlflow.pyfunc.log_model(
                name=item.role.replace("_", "-"),
                python_model=str(code),
                artifacts=artifacts,
                pip_requirements=PIP_REQUIREMENTS,
                registered_model_name=name if self.cfg.register else None,
                metadata={"role": item.role, "as_of": as_of, "state": spec["state"]},
            )
        version = str(info.registered_model_version)
        tags = {
            "fingerprint": fp,
            "code": str(spec.get("code", "")),
            "as_of": as_of,
            "state": spec["state"],
            "role": item.role,
            "score_" + SCORE_METRIC: "" if item.score is None else repr(item.score),
            **item.extra_tags,
        }
        if native_uri:
            tags["native_model_uri"] = native_uri
        for k, v in tags.items():
            self.client.set_model_version_tag(name, version, k, v)
        return VersionRecord(
            item.role,
            name,
            version,
            f"models:/{name}/{version}",
            False,
            spec["state"],
            item.score,
            native_model_uri=native_uri,
        )

    def _write_checked_state(self, item: ModelToLog, root: Path, artifacts: dict[str, str]) -> str:
        """``state`` when the fitted attributes round-trip to the same forecast, else ``refit``."""
        folder = root / "state"
        try:
            write_state(item.fitted, folder)
            probe = dict(item.spec, state="state")
            restored = build_model(probe, {**artifacts, "state": str(folder)})
            ok, why = same_frame(role_forecast(restored, item.spec, item.drivers), item.forecast)
            if ok:
                return "state"
            log.debug(
                "%s: restored state does not re-forecast exactly (%s); storing as refit",
                item.role,
                why,
            )
        except Unencodable as exc:
            log.debug("%s: fitted state is not plain data (%s); storing as refit", item.role, exc)
        shutil.rmtree(folder, ignore_errors=True)
        return "refit"

    def _log_natives(self, item: ModelToLog) -> str | None:
        """Log native objects (LightGBM booster, a statsmodels results object) with their flavors."""
        if item.fitted is None:
            return None
        attrs = fitted_attrs(item.fitted)
        flat: list[tuple[str, Any]] = []
        for k, v in attrs.items():
            if isinstance(v, dict):  # per-series state: the total's (or the first) stands for it
                pick = v.get("total", next(iter(v.values()), None)) if v else None
                v = getattr(pick, "result", pick)
            flat.append((k, v))
        for k, v in flat:
            mod = type(v).__module__
            try:
                if mod.startswith("lightgbm") and type(v).__name__ == "Booster":
                    info = mlflow.lightgbm.log_model(
                        v,
                        name=f"{item.role}-booster".replace("_", "-"),
                        pip_requirements=["lightgbm"],
                    )
                    return str(info.model_uri)
                if mod.startswith("statsmodels") and hasattr(v, "params") and hasattr(v, "predict"):
                    info = mlflow.statsmodels.log_model(
                        v,
                        name=f"{item.role}-statsmodels".replace("_", "-"),
                        remove_data=True,
                        pip_requirements=["statsmodels"],
                    )
                    return str(info.model_uri)
            except Exception as exc:  # a native copy is for inspection; the pyfunc is the version
                log.warning("%s: could not log native %s (%s)", item.role, k, exc)
        return None

    def decide(
        self,
        rec: VersionRecord,
        new_spec: dict[str, Any],
        rescore: Callable[[dict[str, Any]], float | None],
    ) -> VersionRecord:
        """Move ``champion`` to the new version when it wins on the new backtest, else
        ``challenger`` (see the module docstring). ``rescore(champion_spec)`` returns the champion
        configuration's MASE on the new backtest windows."""
        if rec.reused:
            cur = self.champion(rec.name)
            rec.alias = CHAMPION if cur is not None and str(cur.version) == rec.version else None
            if cur is not None and rec.alias is None:
                rec.decision += f"; the champion is version {cur.version}"
            return rec
        cur = self.champion(rec.name)
        if cur is None:
            rec.decision, rec.alias, rec.method = (
                "champion: first version of this model",
                CHAMPION,
                "first",
            )
        elif new_spec.get("as_of") and str(new_spec["as_of"]) < str(cur.tags.get("as_of") or ""):
            # a back-dated run (a re-forecast of a past month) never replaces a newer champion
            rec.champion_version = str(cur.version)
            rec.method = "as-of order"
            rec.decision, rec.alias = (
                f"challenger: as of {new_spec.get('as_of')}, older than champion version "
                f"{cur.version} (as of {cur.tags.get('as_of')})",
                CHALLENGER,
            )
        else:
            rec.champion_version = str(cur.version)
            champ_spec = self.version_spec(rec.name, rec.champion_version)
            if champ_spec.get("config_fingerprint") == new_spec.get("config_fingerprint"):
                rec.champion_score = rec.score
                rec.method = (
                    "same configuration: the champion re-run on the new windows is this backtest"
                )
                what = []
                shas = (champ_spec.get("series_sha256"), new_spec.get("series_sha256"))
                later = champ_spec.get("as_of") != new_spec.get("as_of")
                if None not in shas and shas[0] == shas[1]:  # recorded and equal: the same
                    if later:
                        what.append("the same data as of a later day")
                elif later or shas[0] != shas[1]:
                    what.append("newer data")
                if champ_spec.get("code") != new_spec.get("code"):
                    what.append(
                        f"other code ({champ_spec.get('code') or 'not recorded'} -> {new_spec.get('code')})"
                    )
                rec.decision, rec.alias = (
                    f"champion: refresh (same model and configuration, {' and '.join(what) or 'same data'}; "
                    "equal score on the same backtest)",
                    CHAMPION,
                )
            else:
                rec.champion_score = rescore(champ_spec)
                rec.method = "champion configuration re-run on the new backtest windows"
                new, old = rec.score, rec.champion_score
                if old is None or (new is not None and new < old):
                    rec.decision, rec.alias = (
                        f"champion: beats version {cur.version} on the same backtest ({SCORE_METRIC} {_fmt(new)} < {_fmt(old)})",
                        CHAMPION,
                    )
                else:
                    rec.decision, rec.alias = (
                        f"challenger: does not beat champion version {cur.version} ({SCORE_METRIC} {_fmt(new)} >= {_fmt(old)})",
                        CHALLENGER,
                    )
        for k, v in (
            ("decision", rec.decision),
            ("champion_score_" + SCORE_METRIC, _fmt(rec.champion_score)),
            ("compared_with_version", rec.champion_version or ""),
            (CANDIDATE, "true"),  # until promote(): a run that dies leaves no alias behind
        ):
            self.client.set_model_version_tag(rec.name, rec.version, k, v)
        return rec

    def promote(self, records: list[VersionRecord]) -> None:
        """Move the aliases the decisions chose, the monthly job's last step (after its outputs are
        published): a run that fails or is killed before this moves nothing."""
        for rec in records:
            if rec.reused or not rec.alias:
                continue
            self.client.set_registered_model_alias(rec.name, rec.alias, rec.version)
            self.client.set_model_version_tag(rec.name, rec.version, CANDIDATE, "false")

    def discard(self, run_id: str) -> list[str]:
        """Delete the versions a failed or killed run registered and never promoted (no alias, not
        tagged ``candidate=false``); their names."""
        gone: list[str] = []
        try:
            versions = self.client.search_model_versions(f"run_id = '{run_id}'")
        except MlflowException:
            return gone
        for v in versions:
            if v.tags.get(CANDIDATE) != "false" and not getattr(v, "aliases", None):
                self.client.delete_model_version(v.name, v.version)
                gone.append(f"{v.name} v{v.version}")
        return gone

    def recover(self, kind: str) -> dict[str, list[str]]:
        """At the start of a job that holds the run lock: runs of ``kind`` left RUNNING belong to a
        process that died (the lock says no other is alive). Mark them KILLED and delete the
        candidate versions they (or failed runs) registered but never promoted."""
        exp = self.experiment_id(kind)
        killed: list[str] = []
        for r in self.client.search_runs([exp], filter_string="attributes.status = 'RUNNING'"):
            self.client.set_tag(
                r.info.run_id, "error", "the process running it died; found at the next start"
            )
            self.client.set_terminated(r.info.run_id, status="KILLED")
            killed.append(r.info.run_id)
        dead = self.client.search_runs(
            [exp], filter_string="attributes.status != 'FINISHED'", max_results=200
        )
        versions: list[str] = []
        for r in dead:
            versions += self.discard(r.info.run_id)
        if killed or versions:
            log.warning(
                "recovered from a dead run: %d MLflow run(s) marked KILLED, %d candidate "
                "version(s) removed (%s)",
                len(killed),
                len(versions),
                ", ".join(versions) or "none",
            )
        return {"killed_runs": killed, "removed_versions": versions}

    # reproduction
    def resolve(self, name: str, alias: str | None, version: int | None) -> Any:
        if version is not None:
            return self.client.get_model_version(name, str(version))
        return self.client.get_model_version_by_alias(name, alias or CHAMPION)

    def reproduce(
        self, name: str, alias: str | None = None, version: int | None = None
    ) -> tuple[pd.DataFrame, pd.DataFrame, Any]:
        """Load a registered version, re-forecast; ``(reproduced, logged, version)``."""
        mv = self.resolve(name, alias, version)
        uri = f"models:/{name}/{mv.version}"
        model = mlflow.pyfunc.load_model(uri)
        reproduced = model.predict(pd.DataFrame())
        with tempfile.TemporaryDirectory() as tmp:
            local = mlflow.artifacts.download_artifacts(
                artifact_uri=f"{uri}/artifacts/forecast.parquet", dst_path=tmp
            )
            logged = pd.read_parquet(local)
        return reproduced, logged, mv


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.6g}"


def _metric_key(k: str) -> str:
    return "".join(c if c.isalnum() or c in "_-./ " else "_" for c in k)


def _flat_params(params: dict[str, Any], prefix: str = "") -> dict[str, str]:
    out: dict[str, str] = {}
    for k, v in params.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flat_params(v, key + "."))
        else:
            s = json.dumps(v, default=str) if isinstance(v, list | tuple) else str(v)
            out[key] = s[:6000]
    return out
