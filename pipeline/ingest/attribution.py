"""Phase and category attribution, compiled to SQL so DuckDB applies it where the rows are.

Phase: the ``phase`` key of the ``Tags`` JSON wins; untagged rows go through the attribution rules
(``pipeline/attribution_rules.yaml`` by default, first match wins), then to ``unallocated``.
Category: from ``ServiceCategory`` plus the SKU / resource description (GPU instance families).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from pipeline.errors import InputError, Problem
from pipeline.frames import PHASES

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
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(
            Problem("rules file not found", src), fix="pass an existing YAML file to --rules"
        ) from None
    except yaml.YAMLError as exc:
        raise InputError(
            Problem(f"not valid YAML: {exc}", src), fix="fix the YAML syntax"
        ) from None
    raw = (doc or {}).get("rules") if isinstance(doc, dict) else None
    if not isinstance(raw, list):
        raise InputError(
            Problem("expected a top-level 'rules:' list", src),
            fix="see pipeline/attribution_rules.yaml for the format",
        )
    rules: list[Rule] = []
    problems: list[Problem] = []
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


def phase_sql(rules: list[Rule], col: dict[str, str], tags_col: str) -> str:
    """SQL ``CASE`` giving the rule phase of a row (``unallocated`` when none matches).

    ``col`` maps a FOCUS field to the SQL expression holding it (NULL when the file lacks it);
    ``tags_col`` is the (valid JSON or NULL) tags text.
    """
    whens = []
    for r in rules:
        parts = []
        for c in r.conditions:
            alts = []
            for f in c.fields:
                expr = (
                    f"json_extract_string({tags_col}, {sql_str('$.' + f[len(TAG_PREFIX) :])})"
                    if f.startswith(TAG_PREFIX)
                    else col.get(f, "NULL")
                )
                alts.append(f"coalesce(regexp_matches({expr}, {sql_str(c.regex)}), false)")
            parts.append("(" + " OR ".join(alts) + ")")
        whens.append(f"WHEN {' AND '.join(parts)} THEN {sql_str(r.phase)}")
    if not whens:
        return "'unallocated'"
    return "CASE " + " ".join(whens) + " ELSE 'unallocated' END"


def category_sql(col: dict[str, str]) -> str:
    """SQL ``CASE`` giving the cost category of a row from ServiceCategory, units and SKU text.

    GPU detection looks at the SKU / resource / charge descriptions of compute and AI rows only, so a
    storage volume attached to a GPU host stays ``storage``.
    """
    sc = f"lower(coalesce({col.get('ServiceCategory', 'NULL')}, ''))"
    desc = (
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
            )
        )
        + ")"
    )
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
