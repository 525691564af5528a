"""How a phasecast model version is stored and turned back into a forecast, without MLflow.

The registered pyfunc (:class:`pipeline.tracking.PhasecastPyfunc`) and the monthly job use these
plain functions: checksums and fingerprints of inputs, a fitted model's state written as data
(``arrays.npz`` + ``state.json``) and restored without re-fitting, hyperparameters encoded for
``spec.json``, and how a version's spec becomes a forecast again. Nothing here imports mlflow
(mlforecast keeps the same split in ``flavor.py``).
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

PACKAGES = (
    "phasecast",
    "mlflow",
    "numpy",
    "pandas",
    "statsmodels",
    "lightgbm",
    "duckdb",
    "scikit-learn",
)


@functools.cache
def code_identity() -> str:
    """What a forecast depends on besides its data and configuration: the source of phasecast's
    packages (``pipeline``, ``features``: every ``.py`` and ``.yaml``) and the versions of the
    libraries it fits with (:data:`PACKAGES`), as 16 hex digits.

    Part of every run's and model version's fingerprint: a run of other code (an upgrade, a fix)
    never reuses a run or a version that code did not make, so the numbers stored under one
    fingerprint are always the numbers that code gives."""
    root = Path(__file__).resolve().parents[1]
    h = hashlib.sha256()
    for pkg in ("pipeline", "features"):
        for f in sorted((root / pkg).rglob("*")):
            if f.suffix in (".py", ".yaml") and f.is_file() and "__pycache__" not in f.parts:
                text = f.read_bytes().replace(b"\r\n", b"\n")  # a CRLF checkout is the same code
                h.update(f.relative_to(root).as_posix().encode() + b"\0" + text + b"\0")
    h.update(json.dumps(package_versions(), sort_keys=True).encode())
    return h.hexdigest()[:16]


def checksum_frame(df: pd.DataFrame) -> str:
    """sha256 of a frame's canonical CSV (sorted rows, full float precision)."""
    cols = list(df.columns)
    d = df.sort_values(cols[:2], kind="stable") if len(cols) >= 2 else df
    buf = d.to_csv(index=False, float_format="%.17g", date_format="%Y-%m-%d").encode()
    return hashlib.sha256(buf).hexdigest()


def checksum_file(path: Path | None) -> str | None:
    if path is None or not Path(path).exists():
        return None
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def fingerprint(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:32]


def git_commit(cwd: Path) -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=5
        )
        sha = out.stdout.strip()
        if not sha:
            return "unknown"
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout.strip()
        return sha + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def package_versions() -> dict[str, str]:
    from importlib import metadata

    out = {}
    for p in PACKAGES:
        try:
            out[p] = metadata.version(p)
        except metadata.PackageNotFoundError:
            out[p] = "absent"
    return out


# --- the fitted state, as data ----------------------------------------------------------------
class Unencodable(Exception):
    pass


class _StateWriter:
    """Encode a tree of fitted attributes: arrays to npz, natives to their flavor, the rest JSON."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.arrays: dict[str, np.ndarray] = {}
        self.n_native = 0

    def enc(self, v: Any, key: str) -> Any:
        if v is None or isinstance(v, bool | int | str):
            return v
        if isinstance(v, float):
            return {"__float__": repr(v)}
        if isinstance(v, np.generic):
            return self.enc(v.item(), key)
        if isinstance(v, pd.Timestamp):
            return {"__ts__": v.isoformat()}
        if isinstance(v, np.ndarray):
            if v.dtype == object:
                if all(isinstance(x, str) for x in v.ravel()):
                    return {"__strarray__": v.tolist(), "shape": list(v.shape)}
                raise Unencodable(f"{key}: object array")
            name = f"a{len(self.arrays)}"
            self.arrays[name] = v
            return {"__array__": name}
        if isinstance(v, pd.DataFrame | pd.Series):
            self.n_native += 1
            rel = f"frame_{self.n_native}.parquet"
            frame = v.to_frame("__series__") if isinstance(v, pd.Series) else v
            frame.to_parquet(self.folder / rel)
            return {"__frame__": rel, "series": isinstance(v, pd.Series)}
        if isinstance(v, pd.DatetimeIndex):
            return {"__dtindex__": self.enc(v.to_numpy(), key), "freq": v.freqstr}
        if isinstance(v, dict):
            if not all(isinstance(k, str) for k in v):
                raise Unencodable(f"{key}: dict with non-str keys")
            return {"__dict__": {k: self.enc(x, f"{key}.{k}") for k, x in v.items()}}
        if isinstance(v, list | tuple | set | frozenset):
            kind = type(v).__name__
            items = sorted(v, key=repr) if isinstance(v, set | frozenset) else v
            return {"__seq__": kind, "items": [self.enc(x, f"{key}[]") for x in items]}
        if type(v).__module__.startswith("lightgbm") and type(v).__name__ == "Booster":
            self.n_native += 1
            rel = f"booster_{self.n_native}.txt"  # LightGBM's own text format, full precision
            v.save_model(str(self.folder / rel))
            return {"__lightgbm__": rel}
        raise Unencodable(f"{key}: {type(v).__name__}")

    def close(self, tree: dict[str, Any]) -> None:
        np.savez(self.folder / "arrays.npz", **self.arrays)  # type: ignore[arg-type]
        (self.folder / "state.json").write_text(json.dumps(tree, indent=1, sort_keys=True))


def _dec(v: Any, folder: Path, arrays: Any) -> Any:
    if not isinstance(v, dict):
        return v
    if "__float__" in v:
        return float(v["__float__"])
    if "__ts__" in v:
        return pd.Timestamp(v["__ts__"])
    if "__array__" in v:
        return arrays[v["__array__"]]
    if "__strarray__" in v:
        return np.array(v["__strarray__"], dtype=object).reshape(v["shape"])
    if "__dtindex__" in v:
        return pd.DatetimeIndex(_dec(v["__dtindex__"], folder, arrays), freq=v["freq"])
    if "__dict__" in v:
        return {k: _dec(x, folder, arrays) for k, x in v["__dict__"].items()}
    if "__seq__" in v:
        items = [_dec(x, folder, arrays) for x in v["items"]]
        return {"list": list, "tuple": tuple, "set": set, "frozenset": frozenset}[v["__seq__"]](
            items
        )
    if "__frame__" in v:
        frame = pd.read_parquet(folder / v["__frame__"])
        return frame["__series__"].rename(None) if v["series"] else frame
    if "__lightgbm__" in v:
        import lightgbm

        return lightgbm.Booster(model_file=str(folder / v["__lightgbm__"]))
    raise ValueError(f"unknown state entry {sorted(v)}")


def fitted_attrs(model: Any) -> dict[str, Any]:
    return {k: v for k, v in vars(model).items() if k.endswith("_") and not k.startswith("_")}


def write_state(model: Any, folder: Path) -> None:
    """The fitted attributes of ``model`` as data in ``folder`` (raises ``Unencodable``)."""
    folder.mkdir(parents=True, exist_ok=True)
    w = _StateWriter(folder)
    tree = {k: w.enc(v, k) for k, v in fitted_attrs(model).items()}
    w.close(tree)


def read_state(model: Any, folder: Path) -> Any:
    tree = json.loads((folder / "state.json").read_text())
    with np.load(folder / "arrays.npz", allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    for k, v in tree.items():
        setattr(model, k, _dec(v, folder, arrays))
    return model


def encode_params(params: dict[str, Any]) -> dict[str, Any]:
    """Hyperparameters as JSON; a plan becomes a reference to the ``plan.yaml`` artifact."""
    out: dict[str, Any] = {}
    for k, v in params.items():
        if type(v).__name__ == "Plan":
            out[k] = {"__plan__": "plan.yaml"}
        elif isinstance(v, tuple):
            out[k] = {"__tuple__": list(v)}
        else:
            out[k] = v
    return out


def decode_params(params: dict[str, Any], artifacts: dict[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in params.items():
        if isinstance(v, dict) and "__plan__" in v:
            from pipeline.plan import load_plan

            out[k] = load_plan(artifacts["plan"], strict=False)
        elif isinstance(v, dict) and "__tuple__" in v:
            out[k] = tuple(v["__tuple__"])
        else:
            out[k] = v
    return out


def canonical(df: pd.DataFrame) -> pd.DataFrame:
    """A frame as it reads back from Parquet (how forecasts are stored and compared)."""
    buf = io.BytesIO()
    df.reset_index(drop=True).to_parquet(buf, index=False)
    buf.seek(0)
    return pd.read_parquet(buf)


def same_frame(a: pd.DataFrame, b: pd.DataFrame) -> tuple[bool, str]:
    """Exact equality (values, dtypes, order); ``(ok, first difference)``."""
    a, b = canonical(a), canonical(b)
    try:
        pd.testing.assert_frame_equal(a, b, check_exact=True)
        return True, ""
    except AssertionError as exc:
        return False, str(exc).splitlines()[0] + " " + " ".join(str(exc).splitlines()[1:4])


# --- how a spec turns into a forecast (used at log time and at load time alike) ----------------
def role_forecast(
    model: Any, spec: dict[str, Any], drivers: pd.DataFrame | None = None
) -> pd.DataFrame:
    """The role's forecast; a model that reads drivers gets the run's future drivers."""
    xf = drivers if getattr(model, "uses_exogenous", False) else None
    return model.predict(int(spec["horizon"]), level=tuple(spec["levels"]), X_future=xf)


def encode_forms(forms: Any) -> Any:
    """Model forms (nested tuples of str, bool, int, None) as JSON that keeps the tuples."""
    if isinstance(forms, dict):
        return {str(k): encode_forms(v) for k, v in forms.items()}
    if isinstance(forms, tuple | list):
        return {"__tuple__": [encode_forms(v) for v in forms]}
    if isinstance(forms, np.generic):
        return forms.item()
    return forms


def decode_forms(obj: Any) -> Any:
    if isinstance(obj, dict):
        if set(obj) == {"__tuple__"}:
            return tuple(decode_forms(v) for v in obj["__tuple__"])
        return {k: decode_forms(v) for k, v in obj.items()}
    return obj


def spec_params(spec: dict[str, Any], artifacts: dict[str, str]) -> dict[str, Any]:
    """A stored version's hyperparameters; one added after the version was stored takes the value
    the version had (the model class's ``params_before``), not today's default."""
    from pipeline.models import REGISTRY

    before = getattr(REGISTRY.get(spec["model"]), "params_before", {})
    return {**before, **decode_params(spec["params"], artifacts)}


def build_model(spec: dict[str, Any], artifacts: dict[str, str]) -> Any:
    """A version's model: restored from its state, or re-fitted on its logged series with the
    model forms (ETS form, SARIMA order) the run fitted it with (``forms`` in the spec). The run
    chose a series' form on its earliest backtest window and kept it; a fresh search on the whole
    history could pick another (a SARIMA order whose forecast ran to -1M on the demo's labor)."""
    from pipeline.models import make_model

    model = make_model(spec["model"], **spec_params(spec, artifacts))
    if spec["state"] == "state":
        return read_state(model, Path(artifacts["state"]))
    if spec.get("forms"):
        model.given_forms_ = decode_forms(spec["forms"])
    series = pd.read_parquet(artifacts["series"])
    return model.fit(series)


def pipeline_forecast(spec: dict[str, Any], artifacts: dict[str, str]) -> pd.DataFrame:
    from pipeline.forecast import ForecastConfig, run_forecast
    from pipeline.plan import load_plan

    cfg = forecast_config_from(spec["forecast_config"])
    plan = load_plan(artifacts["plan"], strict=False) if "plan" in artifacts else None
    series = pd.read_parquet(artifacts["series"])
    drivers = pd.read_parquet(artifacts["drivers"]) if "drivers" in artifacts else None
    assert isinstance(cfg, ForecastConfig)
    return run_forecast(series, cfg, plan, X_future=drivers, progress=False).forecast


def forecast_config_from(d: dict[str, Any]) -> Any:
    """A stored job configuration; a field added after it was stored takes the value it ran with
    (``pipeline.forecast.CONFIG_BEFORE``), not today's default."""
    from pipeline.forecast import CONFIG_BEFORE, ForecastConfig

    kw: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}
    kw = {**CONFIG_BEFORE, **kw}
    return ForecastConfig(**kw)
