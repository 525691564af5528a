"""Phase and category attribution, compiled to SQL so DuckDB applies it where the rows are.

Phase: the ``phase`` key of the ``Tags`` JSON wins (method ``tag``); untagged rows go through the
tag-value maps and then the attribution rules (``pipeline/attribution_rules.yaml`` by default, first
match wins, method ``rule:<name>``), then to ``unallocated``. GPU cost still unallocated is split later by
usage (:mod:`pipeline.ingest.allocation`).
Category: from ``ServiceCategory`` plus the SKU / resource description (GPU instance families).
GPU model: from the same text (``H100``, ``A100``, ``A10`` ...), naming the pool a GPU row belongs to.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from pipeline.errors import InputError, Problem
from pipeline.frames import PHASES
from pipeline.ingest.readers import Columns

#: FOCUS columns a rule may match on (after version normalisation; ProviderName covers 1.3's
#: ServiceProviderName).
RULE_FIELDS: tuple[str, ...] = (
    "ServiceName",
    "ServiceCategory",
    "ServiceSubcategory",
    "ResourceId",
    "ResourceName",
    "ResourceType",
    "SkuId",
    "SkuPriceId",
    "SkuMeter",
    "ChargeDescription",
    "ProviderName",
    "SubAccountId",
    "SubAccountName",
    "x_ServiceCode",
    "x_UsageType",
    "x_Operation",
)
#: Rule fields that :func:`pipeline.ingest.readers.resolve_columns` does not map; read when present.
EXTRA_FIELDS: tuple[str, ...] = (
    "SubAccountId",
    "SubAccountName",
    "x_ServiceCode",
    "x_UsageType",
    "x_Operation",
)
TAG_PREFIX = "tags."

#: Accelerator instance families: AWS (p*, g*, trn, inf, dl, also as SageMaker ml.*), Azure (N-series),
#: Google (a2/a3/a4/g2 machine types and GPU SKUs), Oracle (BM.GPU / VM.GPU), and GPU model names.
GPU_REGEX = (
    r"(?i)(\b(ml\.)?(p[2-6][a-z0-9-]*|g[3-6][a-z0-9-]*|gr6|trn[12]n?|inf[12]|dl[12]q?)\.[0-9]*x?large\b"
    r"|\bstandard_n[cdgv][0-9]+|\bn[cdv][0-9]+[a-z]*[ _](v[0-9]|a100|h100|h200|t4|a10|v100|mi300)"
    r"|\b(a2|a3|a4|g2)-(high|mega|ultra|edge)?(gpu|standard)"
    r"|\b(bm|vm)\.gpu"
    r"|\bgpu\b|nvidia|\b(h100|h200|a100|a10g?|l4|l40s?|t4|v100|k80|b200|gb200|mi300x?)\b)"
)


#: GPU model names as DCGM reports them (``NVIDIA H100 80GB HBM3``), and the instance families /
#: machine types that carry them, mapped to one canonical model name. First match wins.
GPU_MODELS: tuple[tuple[str, str], ...] = (
    ("GB200", r"(?i)\bgb200\b|\ba4x-"),
    ("B200", r"(?i)\bb200\b|\bp6-b200|\ba4-highgpu|\bbm\.gpu\.b200"),
    ("H200", r"(?i)\bh200\b|\bp5e[n]?\.|\ba3-ultragpu|\bbm\.gpu\.h200"),
    (
        "H100",
        r"(?i)\bh100\b|\bp5\.|\bml\.p5\.|\ba3-(high|mega|edge)gpu|\bnd[0-9]*[a-z]*_?h100|\bbm\.gpu\.h100",
    ),
    (
        "A100",
        r"(?i)\ba100\b|\bp4de?\.|\bml\.p4de?\.|\ba2-(high|mega|ultra)gpu|\bnd[0-9]*[a-z]*_?a100|\bbm\.gpu4\.|\bbm\.gpu\.a100",
    ),
    ("L40S", r"(?i)\bl40s\b|\bg6e\.|\bml\.g6e\."),
    ("L4", r"(?i)\bl4\b|\bg6\.|\bml\.g6\.|\bg2-standard"),
    (
        "A10",
        r"(?i)\ba10g?\b|\bg5\.|\bml\.g5\.|\bnv[0-9]+ad[a-z]*s?_a10|_a10_|\bvm\.gpu\.a10|\bbm\.gpu\.a10",
    ),
    ("T4", r"(?i)\bt4\b|\bg4dn\.|\bml\.g4dn\.|\bnc[0-9]+as_t4"),
    ("V100", r"(?i)\bv100\b|\bp3(dn)?\.|\bml\.p3\.|\bnc[0-9]+s_v3|\bvm\.gpu3\.|\bbm\.gpu3\."),
    ("M60", r"(?i)\bm60\b|\bg3s?\.|\bnv[0-9]+_?(v1)?\b"),
    ("K80", r"(?i)\bk80\b|\bp2\.|\bnc[0-9]+r?\b"),
    ("MI300X", r"(?i)\bmi300x?\b"),
    ("TRAINIUM", r"(?i)\btrn[12]n?\.|trainium"),
    ("INFERENTIA", r"(?i)\binf[12]\.|inferentia"),
)


@dataclass(frozen=True)
class Condition:
    fields: tuple[str, ...]
    regex: str  # RE2 pattern, searched anywhere in the value


@dataclass(frozen=True)
class Rule:
    name: str
    phase: str
    conditions: tuple[Condition, ...]


def default_rules_path() -> Path:
    return (
        Path(__file__).resolve().parents[1] / "attribution_rules.yaml"
    )  # package data of ``pipeline``


def glob_to_regex(glob: str) -> str:
    """A case-insensitive, whole-value RE2 pattern for a shell glob (``*``, ``?``, ``[...]``)."""
    out, i = [], 0
    while i < len(glob):
        c = glob[i]
        if c == "*":
            out.append(".*")
        elif c == "?":
            out.append(".")
        elif c == "[":
            j = glob.find("]", i + 1)
            if j == -1:
                out.append(re.escape(c))
            else:
                body = glob[i + 1 : j]
                if body.startswith("!"):
                    body = "^" + body[1:]
                out.append(f"[{body}]")
                i = j
        else:
            out.append(re.escape(c))
        i += 1
    return "(?i)^" + "".join(out) + "$"


def load_rules(path: Path | None = None) -> list[Rule]:
    """Read and check a rules file; every problem is reported at once."""
    path = Path(path) if path is not None else default_rules_path()
    src = str(path)
    try:
        # libyaml's loader when built in (10x faster than the pure-Python one; same documents).
        loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
        doc = yaml.load(path.read_text(encoding="utf-8"), Loader=loader)
    except FileNotFoundError:
        raise InputError(
            Problem("rules file not found", src), fix="pass an existing YAML file to --rules"
        ) from None
    except yaml.YAMLError as exc:
        raise InputError(
            Problem(f"not valid YAML: {exc}", src), fix="fix the YAML syntax"
        ) from None
    raw = (doc or {}).get("rules") if isinstance(doc, dict) else None
    tag_maps = (doc or {}).get("tag_phases", []) if isinstance(doc, dict) else []
    if not isinstance(raw, list):
        raise InputError(
            Problem("expected a top-level 'rules:' list", src),
            fix="see pipeline/attribution_rules.yaml for the format",
        )
    problems: list[Problem] = []
    rules: list[Rule] = _tag_map_rules(tag_maps, src, problems)
    for i, item in enumerate(raw, start=1):
        where = f"rule {i}"
        if not isinstance(item, dict):
            problems.append(Problem(f"{where}: expected a mapping with name, phase, match", src))
            continue
        name = str(item.get("name") or where)
        phase = item.get("phase")
        if phase not in PHASES:
            problems.append(Problem(f"{name}: phase {phase!r} is not one of {list(PHASES)}", src))
        match = item.get("match")
        if not isinstance(match, dict) or not match:
            problems.append(
                Problem(f"{name}: 'match' must map at least one field to a pattern", src)
            )
            continue
        conds: list[Condition] = []
        for key, pattern in match.items():
            fields = tuple(f.strip() for f in str(key).split("|"))
            bad = [
                f
                for f in fields
                if f not in RULE_FIELDS and not (f.startswith(TAG_PREFIX) and len(f) > 5)
            ]
            if bad:
                problems.append(
                    Problem(
                        f"{name}: cannot match on {bad}; use {list(RULE_FIELDS)} or tags.<key>", src
                    )
                )
                continue
            if isinstance(pattern, str):
                rx = glob_to_regex(pattern)
            elif isinstance(pattern, dict) and len(pattern) == 1 and "glob" in pattern:
                rx = glob_to_regex(str(pattern["glob"]))
            elif isinstance(pattern, dict) and len(pattern) == 1 and "regex" in pattern:
                rx = str(pattern["regex"])
                try:
                    re.compile(rx)
                except re.error as exc:
                    problems.append(Problem(f"{name}: bad regex {rx!r}: {exc}", src))
                    continue
            else:
                problems.append(
                    Problem(
                        f"{name}: pattern for {key!r} must be a glob string, {{glob: ...}} or {{regex: ...}}",
                        src,
                    )
                )
                continue
            conds.append(Condition(fields, rx))
        if phase in PHASES:
            rules.append(Rule(name, str(phase), tuple(conds)))
    if problems:
        raise InputError(
            problems,
            fix="correct the rules file (format described at the top of pipeline/attribution_rules.yaml)",
        )
    return rules


def _tag_map_rules(tag_maps: object, src: str, problems: list[Problem]) -> list[Rule]:
    """``tag_phases:`` entries -> rules named ``tag:<key>=<value>``, tried before ``rules:``.

    Each entry maps the values of one tag key (or several, ``"team|project"``) to phases::

        tag_phases:
          - tag: team|project|kubernetes-namespace
            values: {ml-training: fine_tuning, "etl-*": data_preprocessing, search: inference}
    """
    if tag_maps is None:
        return []
    if not isinstance(tag_maps, list):
        problems.append(Problem("'tag_phases:' must be a list of {tag: ..., values: {...}}", src))
        return []
    out: list[Rule] = []
    for i, item in enumerate(tag_maps, start=1):
        where = f"tag_phases entry {i}"
        if not isinstance(item, dict) or not isinstance(item.get("values"), dict):
            problems.append(
                Problem(f"{where}: expected {{tag: KEY, values: {{VALUE: PHASE}}}}", src)
            )
            continue
        keys = [k.strip() for k in str(item.get("tag") or "").split("|") if k.strip()]
        if not keys:
            problems.append(Problem(f"{where}: 'tag' names no tag key", src))
            continue
        for value, phase in item["values"].items():
            if phase not in PHASES:
                problems.append(
                    Problem(f"{where}: {value!r} maps to {phase!r}, not one of {list(PHASES)}", src)
                )
                continue
            fields = tuple(TAG_PREFIX + k for k in keys)
            name = f"tag:{'|'.join(keys)}={value}"
            out.append(Rule(name, str(phase), (Condition(fields, glob_to_regex(str(value))),)))
    return out


def sql_str(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


def tag_keys(rules: list[Rule]) -> list[str]:
    return sorted(
        {
            f[len(TAG_PREFIX) :]
            for r in rules
            for c in r.conditions
            for f in c.fields
            if f.startswith(TAG_PREFIX)
        }
    )


def fields_used(rules: list[Rule]) -> list[str]:
    return sorted(
        {f for r in rules for c in r.conditions for f in c.fields if not f.startswith(TAG_PREFIX)}
    )


def tag_path(key: str) -> str:
    """A JSON path for one tag key, quoted so keys such as ``aws:eks:namespace`` work."""
    return "$." + '"' + key.replace('"', '\\"') + '"'


def _rule_whens(rules: list[Rule], col: dict[str, str], tags_col: str, then) -> list[str]:
    whens = []
    for r in rules:
        parts = []
        for c in r.conditions:
            alts = []
            for f in c.fields:
                expr = (
                    f"json_extract_string({tags_col}, {sql_str(tag_path(f[len(TAG_PREFIX) :]))})"
                    if f.startswith(TAG_PREFIX)
                    else col.get(f, "NULL")
                )
                alts.append(f"coalesce(regexp_matches({expr}, {sql_str(c.regex)}), false)")
            parts.append("(" + " OR ".join(alts) + ")")
        whens.append(f"WHEN {' AND '.join(parts)} THEN {sql_str(then(r))}")
    return whens


def phase_sql(rules: list[Rule], col: dict[str, str], tags_col: str) -> str:
    """SQL ``CASE`` giving the rule phase of a row (``unallocated`` when none matches).

    ``col`` maps a FOCUS field to the SQL expression holding it (NULL when the file lacks it);
    ``tags_col`` is the (valid JSON or NULL) tags text.
    """
    whens = _rule_whens(rules, col, tags_col, lambda r: r.phase)
    if not whens:
        return "'unallocated'"
    return "CASE " + " ".join(whens) + " ELSE 'unallocated' END"


def method_sql(rules: list[Rule], col: dict[str, str], tags_col: str) -> str:
    """SQL ``CASE`` giving ``rule:<name>`` of the first matching rule, ``unallocated`` when none."""
    whens = _rule_whens(rules, col, tags_col, lambda r: f"rule:{r.name}")
    if not whens:
        return "'unallocated'"
    return "CASE " + " ".join(whens) + " ELSE 'unallocated' END"


def method_phase_sql(rules: list[Rule], method: str) -> str:
    """SQL giving the phase of a ``method`` value from :func:`method_sql`."""
    if not rules:
        return "'unallocated'"
    by_phase: dict[str, list[str]] = {}
    for r in rules:
        by_phase.setdefault(r.phase, []).append(sql_str(f"rule:{r.name}"))
    whens = " ".join(
        f"WHEN {method} IN ({', '.join(names)}) THEN {sql_str(ph)}"
        for ph, names in by_phase.items()
    )
    return f"CASE {whens} ELSE 'unallocated' END"


def gpu_model_sql(text: str) -> str:
    """SQL giving the canonical GPU model named in ``text`` (NULL when none is recognised)."""
    whens = " ".join(
        f"WHEN regexp_matches({text}, {sql_str(rx)}) THEN {sql_str(name)}"
        for name, rx in GPU_MODELS
    )
    return f"CASE {whens} ELSE NULL END"


def canonical_gpu(name: str | None) -> str | None:
    """The canonical model of a usage row's ``gpu`` value (``NVIDIA A10G`` -> ``A10``), else upper-cased."""
    if name is None or not str(name).strip():
        return None
    for model, rx in GPU_MODELS:
        if re.search(rx.replace("(?i)", ""), str(name), flags=re.IGNORECASE):
            return model
    return str(name).strip().upper()


def category_desc_sql(col: dict[str, str]) -> str:
    """The SKU / resource / charge text that GPU detection reads (one string)."""
    return (
        "concat_ws(' ', "
        + ", ".join(
            col.get(f, "NULL")
            for f in (
                "ResourceType",
                "SkuId",
                "SkuMeter",
                "SkuPriceDetails",
                "ChargeDescription",
                "ResourceName",
                "x_UsageType",
            )
        )
        + ")"
    )


def category_sql(col: dict[str, str]) -> str:
    """SQL ``CASE`` giving the cost category of a row from ServiceCategory, units and SKU text.

    GPU detection looks at the SKU / resource / charge descriptions of compute and AI rows only, so a
    storage volume attached to a GPU host stays ``storage``.
    """
    sc = f"lower(coalesce({col.get('ServiceCategory', 'NULL')}, ''))"
    desc = category_desc_sql(col)
    units = (
        "concat_ws(' ', "
        + ", ".join(col.get(f, "NULL") for f in ("PricingUnit", "ConsumedUnit"))
        + ")"
    )
    return (
        "CASE "
        f"WHEN {sc} IN ('compute', 'ai and machine learning') AND regexp_matches({desc}, {sql_str(GPU_REGEX)}) THEN 'compute_gpu' "
        f"WHEN {sc} = 'ai and machine learning' OR regexp_matches({units}, '(?i)token') THEN 'ai_services' "
        f"WHEN {sc} = 'compute' THEN 'compute_cpu' "
        f"WHEN {sc} = 'storage' THEN 'storage' "
        f"WHEN {sc} = 'networking' THEN 'network' "
        "ELSE 'other' END"
    )


def with_extra_columns(cols: Columns, schema: dict[str, str]) -> Columns:
    """``cols`` plus the :data:`EXTRA_FIELDS` the file has (sub-account, AWS ``x_`` columns)."""
    by_lower = {c.lower(): c for c in schema}
    raw, types = dict(cols.raw), dict(cols.types)
    for name in EXTRA_FIELDS:
        actual = by_lower.get(name.lower())
        if actual is not None and name not in raw:
            raw[name] = '"' + actual.replace('"', '""') + '"'
            types[name] = schema[actual]
    return Columns(raw=raw, types=types)
