"""How the warehouse's cost was attributed to phases, and what is left: ``phasecast attribution``.

    rep = attribution_report("data/phasecast.duckdb", cost_column="EffectiveCost")
    rep.by_kind        # tag / rule / allocation / unallocated: cost and share of the total
    rep.services       # per provider and service: cost, unallocated cost and share, main method
    rep.rules          # each rule that matched: phase, cost, share
    rep.suggestions    # YAML rules to start from, for the largest unallocated services
    print(format_report(rep))

Read-only. Shares are of the signed total in one currency (credits are negative, so a share can fall
outside 0-100 %).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb

from pipeline.errors import InputError, Problem
from pipeline.ingest.allocation import LEGACY_METHOD, USAGE_METHOD

KINDS = ("tag", "rule", "allocation", "unallocated")
#: Facts ingested before attribution methods were recorded: shown only when present.
LEGACY_KIND = "tag_or_rule"

#: Guesses for suggested rules: (service name pattern, phase, why). First match wins.
_GUESSES: tuple[tuple[str, str, str], ...] = (
    (
        r"kubernetes|container|openshift|\beks\b|\baks\b|\bgke\b|\becs\b",
        "",
        "a shared cluster: map its namespace / team tag with tag_phases instead of one phase",
    ),
    (
        r"database|\brds\b|sql|dynamo|cosmos|spanner|postgres|redis|cache|elasticsearch|opensearch",
        "data_preprocessing",
        "data and feature stores",
    ),
    (
        r"load balanc|cloudfront|cdn|front door|api gateway|route 53|\bdns\b|data transfer|egress",
        "inference",
        "serving traffic",
    ),
    (
        r"key management|\bkms\b|security|waf|guard|secret|identity|config|systems manager|backup|"
        r"step functions|notification|queue|\bsns\b|\bsqs\b|lambda|functions|registry|ecr",
        "operations",
        "platform plumbing",
    ),
    (r"storage|file system|\befs\b|volume|disk", "data_preprocessing", "data at rest"),
    (r"virtual private cloud|\bvpc\b|network|nat", "operations", "shared networking"),
)


@dataclass(frozen=True)
class Suggestion:
    provider: str
    service: str
    cost: Decimal
    share: float  # of the service's cost left unallocated
    yaml: str


@dataclass(frozen=True)
class AttributionReport:
    warehouse: str
    currency: str
    cost_column: str
    total: Decimal
    by_kind: list[dict[str, Any]]  # kind, cost, share
    services: list[
        dict[str, Any]
    ]  # provider, service, cost, unallocated, unallocated_share, methods
    rules: list[dict[str, Any]]  # rule, phase, cost, share
    allocations: list[dict[str, Any]]  # pool, phase, cost, share
    suggestions: list[Suggestion] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        def clean(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
            return [
                {k: (str(v) if isinstance(v, Decimal) else v) for k, v in r.items()} for r in rows
            ]

        return {
            "warehouse": self.warehouse,
            "currency": self.currency,
            "cost_column": self.cost_column,
            "total": str(self.total),
            "by_kind": clean(self.by_kind),
            "services": clean(self.services),
            "rules": clean(self.rules),
            "allocations": clean(self.allocations),
            "suggestions": [
                {
                    "provider": s.provider,
                    "service": s.service,
                    "unallocated": str(s.cost),
                    "yaml": s.yaml,
                }
                for s in self.suggestions
            ],
        }


def _kind(method: str | None) -> str:
    if method == "tag":
        return "tag"
    if method and method.startswith("rule:"):
        return "rule"
    if method and method.startswith(USAGE_METHOD):
        return "allocation"
    if method == LEGACY_METHOD:
        return LEGACY_KIND
    return "unallocated"


def _share(part: Decimal, total: Decimal) -> float:
    return float(part / total) if total else 0.0


def attribution_report(
    warehouse_path: Path | str,
    cost_column: str = "EffectiveCost",
    currency: str | None = None,
    top: int = 10,
) -> AttributionReport:
    """Summarise the attribution of every cost row of ``warehouse_path`` (see the module docstring)."""
    from pipeline.series import facts_relation, warehouse_cost

    path, col = warehouse_cost(warehouse_path, cost_column)
    con = duckdb.connect(str(path), read_only=True)
    try:
        facts = facts_relation(con)
        found = [
            r[0]
            for r in con.execute(f"SELECT DISTINCT currency FROM {facts} ORDER BY 1").fetchall()
        ]
        if not found:
            raise InputError(
                Problem("the warehouse holds no billing costs", str(path)),
                fix="run `phasecast ingest --billing PATH` first",
            )
        if currency is None:
            if len(found) > 1:
                raise InputError(
                    Problem(f"the warehouse holds costs in several currencies {found}", str(path)),
                    fix="choose one with --currency; amounts are never converted",
                )
            currency = found[0]
        elif currency not in found:
            raise InputError(
                Problem(f"no costs in {currency!r}; the warehouse holds {found}", str(path)),
                fix="pick one of the currencies present",
            )
        has_detail = facts == "cost_facts"
        service = "coalesce(service, '(unknown)')" if has_detail else "'(unknown)'"
        method = (
            "method"
            if has_detail
            else "CASE WHEN phase = 'unallocated' THEN 'unallocated' ELSE 'tag' END"
        )
        rows = con.execute(
            f"""SELECT provider, {service} AS service, category, {method} AS method, phase,
                       sum({col}) AS cost, team
                FROM {facts} WHERE currency = ? GROUP BY ALL""",
            [currency],
        ).fetchall()
    finally:
        con.close()

    total = sum((Decimal(r[5]) for r in rows), Decimal(0))
    teams: dict[tuple[str, str], dict[str, Decimal]] = {}
    kinds = dict.fromkeys((*KINDS, LEGACY_KIND), Decimal(0))
    svc: dict[tuple[str, str], dict[str, Any]] = {}
    rules: dict[str, dict[str, Any]] = {}
    allocs: dict[tuple[str, str], Decimal] = {}
    for provider, service_name, category, meth, phase, cost, team in rows:
        cost = Decimal(cost)
        kind = _kind(meth)
        kinds[kind] += cost
        s = svc.setdefault(
            (provider, service_name),
            {
                "cost": Decimal(0),
                "unallocated": Decimal(0),
                "gpu_unallocated": Decimal(0),
                "kinds": dict.fromkeys((*KINDS, LEGACY_KIND), Decimal(0)),
                "methods": {},
            },
        )
        s["cost"] += cost
        s["kinds"][kind] += cost
        s["methods"][meth] = s["methods"].get(meth, Decimal(0)) + cost
        if kind == "unallocated":
            s["unallocated"] += cost
            if team:
                t = teams.setdefault((provider, service_name), {})
                t[team] = t.get(team, Decimal(0)) + cost
            if category == "compute_gpu":
                s["gpu_unallocated"] += cost
        if kind == "rule":
            r = rules.setdefault(meth[len("rule:") :], {"phase": phase, "cost": Decimal(0)})
            r["cost"] += cost
        if kind == "allocation":
            pool = re.sub(r"^resource=.*?(@month)?$", r"resource=*\1", meth[len(USAGE_METHOD) :])
            allocs[(pool, phase)] = allocs.get((pool, phase), Decimal(0)) + cost

    services = []
    for (provider, name), s in sorted(svc.items(), key=lambda kv: -abs(kv[1]["unallocated"])):
        main = max(s["methods"].items(), key=lambda kv: abs(kv[1]))[0]
        services.append(
            {
                "provider": provider,
                "service": name,
                "cost": s["cost"],
                "unallocated": s["unallocated"],
                "unallocated_share": _share(s["unallocated"], s["cost"]),
                "share_of_total": _share(s["cost"], total),
                "main_method": main,
                **{f"by_{k}": v for k, v in s["kinds"].items()},
            }
        )
    suggestions = [
        _suggest(
            r["provider"],
            r["service"],
            r["unallocated"],
            r["unallocated_share"],
            svc[(r["provider"], r["service"])]["gpu_unallocated"],
            teams.get((r["provider"], r["service"]), {}),
        )
        for r in services[: max(top, 0)]
        if r["unallocated"] != 0
    ]
    return AttributionReport(
        warehouse=str(path),
        currency=currency,
        cost_column=cost_column,
        total=total,
        by_kind=[
            {"kind": k, "cost": v, "share": _share(v, total)}
            for k, v in kinds.items()
            if k in KINDS or v
        ],
        services=services,
        rules=[
            {
                "rule": name,
                "phase": r["phase"],
                "cost": r["cost"],
                "share": _share(r["cost"], total),
            }
            for name, r in sorted(rules.items(), key=lambda kv: -abs(kv[1]["cost"]))
        ],
        allocations=[
            {"pool": pool, "phase": ph, "cost": v, "share": _share(v, total)}
            for (pool, ph), v in sorted(allocs.items(), key=lambda kv: -abs(kv[1]))
        ],
        suggestions=suggestions,
    )


def _slug(s: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", s.lower()).strip("-") or "service"


#: Guesses for a team tag value's phase: (pattern, phase).
_TEAM_GUESSES: tuple[tuple[str, str], ...] = (
    (r"data|etl|ingest|analytics|lake", "data_preprocessing"),
    (r"pre-?train|foundation|platform", "pretraining"),
    (r"train|fine|tun|research", "fine_tuning"),
    (r"optim|compress|quant|distil", "optimization"),
    (r"sre|ops|infra|monitor|devops|on-?call", "operations"),
    (r"search|reco|serv|api|prod|infer|rank", "inference"),
)


def _team_map(teams: dict[str, Decimal]) -> list[str]:
    """A ``tag_phases`` snippet for the team tag values carrying unallocated cost, largest first."""
    lines = [
        "# or map its team tag (values carrying unallocated cost, largest first) under tag_phases:",
        "#   - tag: team",
        "#     values:",
    ]
    for team, cost in sorted(teams.items(), key=lambda kv: -abs(kv[1]))[:8]:
        guess = next(
            (ph for rx, ph in _TEAM_GUESSES if re.search(rx, team, flags=re.IGNORECASE)),
            "unallocated",
        )
        lines.append(f"#       {json.dumps(team)}: {guess}   # {cost:,.2f}")
    return lines


def _suggest(
    provider: str,
    service: str,
    cost: Decimal,
    share: float,
    gpu: Decimal,
    teams: dict[str, Decimal] | None = None,
) -> Suggestion:
    """A starting rule for one service, with the guessed phase and why, as YAML to paste."""
    phase, why = "", ""
    for rx, ph, reason in _GUESSES:
        if re.search(rx, service, flags=re.IGNORECASE):
            phase, why = ph, reason
            break
    notes = [f"# {provider} {service}: {cost:.2f} unallocated ({share:.0%} of the service)"]
    if gpu:
        notes.append(
            f"# {gpu:.2f} of it is GPU compute: ingest usage metrics with gpu_hours per phase (and the "
            "gpu / resource_id columns) so it is split by usage"
        )
    if not phase:
        notes.append(
            "# no single phase fits every row: narrow the match (SubAccountName, ResourceName, "
            "tags.<key>) or map a team/project/namespace tag with tag_phases"
            + (f"; {why}" if why else "")
        )
        phase_line = "    phase: unallocated   # choose the phase"
    else:
        phase_line = f"    phase: {phase}   # a guess: {why}"
    if teams:
        notes += _team_map(teams)
    body = "\n".join(
        [
            *notes,
            f"  - name: {_slug(service)}",
            phase_line,
            "    match:",
            f"      ServiceName: {json.dumps(service)}",
        ]
    )
    return Suggestion(provider, service, cost, share, body)


def pct(x: float, width: int = 9) -> str:
    """A share for the terminal: one decimal, two under 1 % (0.039 % is not 0.0 %), ``-`` for
    none (a service that cost nothing has no unallocated share)."""
    if x is None or not math.isfinite(float(x)):
        return f"{'-':>{width}}"
    v = float(x)
    return f"{v:>{width}.2%}" if 0 < abs(v) < 0.0095 else f"{v:>{width}.1%}"


def format_report(rep: AttributionReport, top: int = 10) -> str:
    """The report as text for a terminal."""
    cur = rep.currency
    out = [
        f"Attribution of {rep.cost_column} in {rep.warehouse}: {rep.total:,.2f} {cur}",
        "",
        f"{'attributed by':<16}{'cost':>18}{'share':>9}",
    ]
    for k in rep.by_kind:
        out.append(f"{k['kind']:<16}{k['cost']:>18,.2f}{pct(k['share'])}")
    out += ["", f"Per provider and service (largest unallocated first, top {top}):"]
    out.append(
        f"{'provider':<12}{'service':<44}{'cost':>14}{'unallocated':>14}{'unalloc %':>10}  main method"
    )
    for s in rep.services[:top]:
        out.append(
            f"{s['provider'][:11]:<12}{s['service'][:43]:<44}{s['cost']:>14,.2f}"
            f"{s['unallocated']:>14,.2f}"
            f"{pct(s['unallocated_share'] if s['cost'] else float('nan'), 10)}  {s['main_method']}"
        )
    if len(rep.services) > top:
        out.append(f"... {len(rep.services) - top} more services")
    out += ["", "Rules that matched:"]
    if rep.rules:
        for r in rep.rules:
            out.append(f"  {r['rule']:<40}{r['phase']:<20}{r['cost']:>16,.2f}{pct(r['share'])}")
    else:
        out.append("  (none)")
    out += ["", "Usage-based allocation (GPU cost split by gpu_hours):"]
    if rep.allocations:
        for a in rep.allocations:
            out.append(f"  {a['pool']:<40}{a['phase']:<20}{a['cost']:>16,.2f}{pct(a['share'])}")
    else:
        out.append("  (none: no unallocated GPU cost had usage metrics for its day)")
    if rep.suggestions:
        out += [
            "",
            "Suggested rules for the largest unallocated services (edit, add under `rules:` in a copy of "
            "pipeline/attribution_rules.yaml, and ingest the billing again with --rules FILE into a new --warehouse: files already ingested are skipped):",
        ]
        for sg in rep.suggestions:
            out.append(sg.yaml)
    return "\n".join(out) + "\n"
