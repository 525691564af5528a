"""Deliveries, not files: which billing files arrived together, and in which order they apply.

A cloud delivers one billing period as one or more files (a *delivery*); a newer delivery of the period
replaces the older one whole. Ingest groups the files it is given into deliveries:

AWS Data Exports (CUR 2.0 / FOCUS)
    data files under ``<prefix>/<export>/data/BILLING_PERIOD=YYYY-MM/[<execution>/]...`` and a manifest
    ``<prefix>/<export>/metadata/BILLING_PERIOD=YYYY-MM/[<execution>/]<export>-Manifest.json`` (AWS writes
    it after the data). One manifest is one delivery: exactly the files its ``dataFiles`` list names
    (``s3://bucket/.../<export>/data/BILLING_PERIOD=.../file``, found locally at the same path under the
    export folder, else by file name in the period's data folder). A listed file that is missing is an
    error; a data file no manifest lists (left over from an earlier delivery) is skipped and logged; a
    period folder with data but no manifest is an error (the delivery is not finished).
Azure Cost Management partitioned exports
    a ``manifest.json`` in the run's blob folder (``.../<export>/<YYYYMMDD-YYYYMMDD>/<run id>/``). Accepted
    format (Azure's manifest, fields phasecast reads): ``{"blobs": [{"blobName": ".../part_0_0001.csv.gz",
    ...}, ...], "runInfo": {"submittedTime": "2026-10-02T07:12:31Z", "runId": "...", ...}, ...}``. One
    manifest is one delivery: the listed blobs, found by file name in the manifest's folder (or at the
    blob path relative to it). A listed blob that is missing is an error; unlisted data files in that
    folder are skipped and logged.
Plain folders
    every other file: the files of one folder given in one call are one delivery (a split export ingests
    whole). Put a re-delivery in a folder of its own, e.g. ``billing/2026-09.restated-2026-10-05/``.

Which delivery is newer (deterministic): within one call, deliveries are applied in the order of
``(delivery time, delivery id)``. The delivery time is Azure's ``runInfo.submittedTime`` (ISO 8601,
UTC); for an AWS manifest, which names no time, the manifest file's modification time (UTC; the AWS CLI
keeps S3's LastModified when it downloads); a plain folder named ``<anything>restated-YYYY-MM-DD`` carries
that date (:func:`restated_on`), wherever it lives; other plain folders carry none, so they sort
first, then by their id (the folder's path: a subfolder sorts after its parent; name re-delivery
folders ``<period>.restated-<date>``). Each delivery replaces every ``(provider, billing
account, billing period)`` it carries, so the last one applied wins. Across calls, the later call wins.
A delivery all of whose files (and its manifest) were ingested before is skipped as unchanged; if any
file is new, the whole delivery is read again and replaces its periods whole.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path

from pipeline.errors import InputError, Problem
from pipeline.ingest.readers import BILLING_SUFFIXES, file_format, unique_paths

log = logging.getLogger(__name__)

_PERIOD_DIR = re.compile(r"^BILLING_PERIOD=(\d{4}-\d{2})$")
AWS_MANIFEST_SUFFIX = "-Manifest.json"
AZURE_MANIFEST = "manifest.json"


@dataclass(frozen=True)
class Delivery:
    """Files that arrived together; ``id`` is the manifest's or the folder's path."""

    id: str
    kind: str  # "aws" | "azure" | "folder"
    files: tuple[Path, ...]
    time: str = ""  # the manifest's delivery time (ISO 8601) where it has one
    manifest: Path | None = None

    @property
    def order(self) -> tuple[str, str]:
        return (self.time, self.id)


def _is_aws_manifest(p: Path) -> bool:
    return p.name.endswith(AWS_MANIFEST_SUFFIX) and _aws_root(p, "metadata") is not None


def _aws_root(p: Path, kind: str) -> tuple[Path, str, int] | None:
    """(export folder, period, index of the BILLING_PERIOD part) when ``p`` lies under
    ``<export>/<kind>/BILLING_PERIOD=YYYY-MM/``."""
    parts = p.parts
    for k in range(len(parts) - 2, 0, -1):
        m = _PERIOD_DIR.match(parts[k])
        if m and parts[k - 1] == kind:
            return Path(*parts[: k - 1]), m.group(1), k
    return None


def plan(paths: list[Path] | tuple[Path, ...]) -> list[Delivery]:
    """Group the billing files under ``paths`` (files or folders) into deliveries, in apply order.

    Raises one InputError for every problem found (missing paths, non-billing files, manifests that
    cannot be read or name missing files, AWS periods without a manifest).
    """
    problems: list[Problem] = []
    data: list[Path] = []
    manifests: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(
                (f for f in p.rglob("*") if f.is_file() and file_format(f)),
                key=lambda f: f.as_posix(),
            )
            mans = sorted(
                f
                for f in p.rglob("*.json")
                if f.is_file() and (f.name == AZURE_MANIFEST or _is_aws_manifest(f))
            )
            if not found:
                problems.append(
                    Problem(
                        f"folder holds no billing files ({', '.join(BILLING_SUFFIXES)})", str(p)
                    )
                )
            data += found
            manifests += mans
        elif p.is_file():
            if p.name == AZURE_MANIFEST or _is_aws_manifest(p):
                manifests.append(p)
            elif file_format(p) is None:
                problems.append(
                    Problem(
                        f"not a billing file: expected a name ending in {', '.join(BILLING_SUFFIXES)}"
                        f" (or an AWS *{AWS_MANIFEST_SUFFIX} / Azure {AZURE_MANIFEST})",
                        str(p),
                    )
                )
            else:
                data.append(p)
        else:
            problems.append(Problem("no such file or folder", str(p)))
    if problems:
        raise InputError(
            problems,
            fix="pass FOCUS billing exports (CSV, CSV.gz or Parquet) or folders holding them",
        )
    data = unique_paths(data)

    # AWS: every data file under <export>/data/BILLING_PERIOD=P/ belongs to a manifest of that period.
    aws_periods: dict[tuple[Path, str], list[Path]] = {}
    for f in data:
        r = _aws_root(f, "data")
        if r is not None:
            aws_periods.setdefault((r[0], r[1]), []).append(f)
    for root, period in aws_periods:
        meta = root / "metadata" / f"BILLING_PERIOD={period}"
        if meta.is_dir():
            manifests += [m for m in meta.rglob(f"*{AWS_MANIFEST_SUFFIX}") if m.is_file()]
    manifests = unique_paths(manifests)

    deliveries: list[Delivery] = []
    claimed: set[Path] = set()
    covered: set[tuple[Path, str]] = set()
    for m in sorted(manifests, key=lambda f: f.as_posix()):
        d = _aws(m, problems) if m.name != AZURE_MANIFEST else _azure(m, problems)
        if d is None:
            continue
        deliveries.append(d)
        claimed |= {f.resolve() for f in d.files}
        if d.kind == "aws":
            r = _aws_root(m, "metadata")
            assert r is not None
            covered.add((r[0], r[1]))
    for (root, period), files in sorted(aws_periods.items()):
        if (root, period) not in covered:
            problems.append(
                Problem(
                    f"AWS export data for BILLING_PERIOD={period} has no manifest under "
                    f"{root / 'metadata' / f'BILLING_PERIOD={period}'} (AWS writes it last: the delivery "
                    "is unfinished or was copied without its metadata folder)",
                    str(files[0].parent),
                )
            )
    if problems:
        raise InputError(
            problems,
            fix="copy the whole delivery (every file the manifest lists, and the manifest), or wait "
            "until the export has finished writing it",
        )

    folders: dict[Path, list[Path]] = {}
    for f in data:
        if f.resolve() in claimed:
            continue
        if _aws_root(f, "data") is not None or _in_azure_run(f, manifests):
            log.info("%s: not listed in its delivery's manifest (an earlier delivery?): skipped", f)
            continue
        folders.setdefault(f.parent, []).append(f)
    for folder, files in folders.items():
        deliveries.append(
            Delivery(
                id=folder.as_posix(),
                kind="folder",
                files=tuple(sorted(files, key=str)),
                time=restated_on(folder),
            )
        )
    return sorted(deliveries, key=lambda d: d.order)


_RESTATED = re.compile(r"restated-(\d{4}-\d{2}-\d{2})")


def restated_on(folder: Path) -> str:
    """The date the nearest folder (this one or a parent) named ``<anything>restated-YYYY-MM-DD``
    gives a plain folder's delivery, as the end of that day (``2026-11-20T23:59:59Z``: a manifest
    of the same day sorts before it), or "" (undated: applied first). A dated re-delivery is
    applied after every undated folder of the call, wherever the two live: by path alone,
    ``/tmp/fixes/2026-10.restated-...`` sorted before ``/srv/billing`` and the original replaced
    the restatement (exit 0, 40,920.59 USD lost). A name whose date is not a day is undated."""
    for p in (folder, *folder.parents):
        m = _RESTATED.search(p.name)
        if m:
            try:
                return dt.date.fromisoformat(m.group(1)).isoformat() + "T23:59:59Z"
            except ValueError:
                return ""
    return ""


def _in_azure_run(f: Path, manifests: list[Path]) -> bool:
    return any(m.name == AZURE_MANIFEST and f.parent == m.parent for m in manifests)


def _load(m: Path, problems: list[Problem]) -> dict | None:
    try:
        doc = json.loads(m.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        problems.append(Problem(f"cannot read the manifest as JSON: {exc}", str(m)))
        return None
    if not isinstance(doc, dict):
        problems.append(Problem("the manifest is not a JSON object", str(m)))
        return None
    return doc


def _aws(m: Path, problems: list[Problem]) -> Delivery | None:
    doc = _load(m, problems)
    if doc is None:
        return None
    listed = doc.get("dataFiles")
    if not isinstance(listed, list) or not all(isinstance(u, str) for u in listed) or not listed:
        problems.append(
            Problem("an AWS Data Exports manifest needs a non-empty 'dataFiles' list", str(m))
        )
        return None
    r = _aws_root(m, "metadata")
    assert r is not None
    root, period, _ = r
    files = []
    for uri in listed:
        marker = f"/{root.name}/data/"
        if marker in uri:
            local = root / "data" / uri.split(marker, 1)[1]
        else:
            local = root / "data" / f"BILLING_PERIOD={period}" / uri.rsplit("/", 1)[-1]
        if not local.is_file():
            alt = next(
                (root / "data" / f"BILLING_PERIOD={period}").rglob(uri.rsplit("/", 1)[-1]), None
            )
            if alt is None:
                problems.append(Problem(f"lists {uri} but {local} is missing", str(m)))
                continue
            local = alt
        if file_format(local) is None:
            problems.append(Problem(f"lists {uri}, which is not CSV, CSV.gz or Parquet", str(m)))
            continue
        files.append(local)
    # The manifest names no delivery time; its modification time is when it was written (the AWS CLI
    # keeps S3's LastModified when it downloads), which orders "create new" refreshes of a period.
    mtime = dt.datetime.fromtimestamp(m.stat().st_mtime, dt.UTC)
    time = mtime.strftime("%Y-%m-%dT%H:%M:%SZ")
    return Delivery(id=m.as_posix(), kind="aws", files=tuple(files), time=time, manifest=m)


def _azure(m: Path, problems: list[Problem]) -> Delivery | None:
    doc = _load(m, problems)
    if doc is None:
        return None
    blobs = doc.get("blobs")
    raw = (
        [b.get("blobName") for b in blobs if isinstance(b, dict)] if isinstance(blobs, list) else []
    )
    names = [n for n in raw if isinstance(n, str) and n]
    if not names or len(names) != len(raw):
        problems.append(
            Problem(
                "an Azure export manifest needs a non-empty 'blobs' list of {\"blobName\": ...}",
                str(m),
            )
        )
        return None
    files = []
    for name in names:
        local = m.parent / name.rsplit("/", 1)[-1]
        if not local.is_file():
            problems.append(Problem(f"lists the blob {name} but {local} is missing", str(m)))
            continue
        files.append(local)
    run = doc.get("runInfo") if isinstance(doc.get("runInfo"), dict) else {}
    time = str(run.get("submittedTime") or "")  # type: ignore[union-attr]
    return Delivery(id=m.as_posix(), kind="azure", files=tuple(files), time=time, manifest=m)
