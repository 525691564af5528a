"""Alerts: a JSON message POSTed to a webhook for the budget lines that became ``at_risk`` or
``over_budget`` in this run.

    lines = alert_lines(flags, previous_flags)         # pure: which lines, and what they were
    msg = alert_message(lines, as_of, currency, report)  # pure: {"text": ..., "lines": [...]}
    ok = post_json(url, msg, Delivery())               # I/O: timeout, retries; never raises

The message is Slack-compatible (a ``text`` field, read by Slack, Mattermost, Teams workflows
and most chat webhooks) and carries the structured lines beside it for anything else. A line
"becomes" at risk when it is ``at_risk`` or ``over_budget`` now and was not (or was not yet as
bad) in the previous run; with no previous run every such line is new. A failed delivery is logged
and reported to the caller; it never changes the run's result or exit code.
"""

from __future__ import annotations

import json
import logging
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from pipeline.formatting import fixed

log = logging.getLogger(__name__)

ALERT = ("at_risk", "over_budget")
SEVERITY = {"ok": 0, "watch": 1, "at_risk": 2, "over_budget": 3}


@dataclass(frozen=True)
class Delivery:
    """How hard to try: seconds per attempt, attempts, seconds before the first retry (doubling)."""

    timeout: float = 10.0
    attempts: int = 3
    backoff: float = 1.0


def alert_lines(flags: pd.DataFrame, previous: pd.DataFrame | None = None) -> pd.DataFrame:
    """The lines of ``flags`` that are at_risk / over_budget now and were less severe (or absent)
    in ``previous``; a ``previous_status`` column says what they were."""
    if flags is None or not len(flags):
        return pd.DataFrame()
    now = flags[flags["status"].isin(ALERT)].copy()
    before: dict[tuple[str, str], str] = {}
    if previous is not None and len(previous):
        before = {
            (str(p), str(ph)): str(s)
            for p, ph, s in zip(
                previous["period"], previous["phase"], previous["status"], strict=True
            )
        }
    now["previous_status"] = [
        before.get((str(p), str(ph)), "") for p, ph in zip(now["period"], now["phase"], strict=True)
    ]
    worse = [
        SEVERITY.get(s, 0) > SEVERITY.get(b, -1) if b else True
        for s, b in zip(now["status"], now["previous_status"], strict=True)
    ]
    return now[worse].reset_index(drop=True)


def alert_message(
    lines: pd.DataFrame, as_of: str, currency: str = "USD", report: str | None = None
) -> dict[str, Any]:
    """The JSON body: ``text`` for chat webhooks and ``lines`` for programs."""
    n = len(lines)
    head = f"phasecast {as_of}: {n} budget line{'s' if n != 1 else ''} newly at risk or over budget"
    rows = []
    text = [head]
    for r in lines.to_dict("records"):
        p = float(r["p_overrun"])
        text.append(
            f"• {r['period']} {r['phase']}: {str(r['status']).replace('_', ' ')}, "
            f"{fixed(p, 0, 2)}% chance of overrun; forecast {float(r['forecast_total']):,.0f} "
            f"vs budget {float(r['budget']):,.0f} {currency}"
            + (f" (was {r['previous_status']})" if r.get("previous_status") else "")
        )
        rows.append(
            {
                "period": str(r["period"]),
                "phase": str(r["phase"]),
                "status": str(r["status"]),
                "previous_status": r.get("previous_status") or None,
                "p_overrun": p,
                "budget": round(float(r["budget"]), 2),
                "actual_to_date": round(float(r["actual_to_date"]), 2),
                "forecast_total": round(float(r["forecast_total"]), 2),
                "p80": round(float(r["p80"]), 2),
                "expected_overrun": round(float(r["expected_overrun"]), 2),
                "currency": currency,
            }
        )
    if report:
        text.append(f"report: {report}")
    return {"text": "\n".join(text), "as_of": as_of, "lines": rows}


def post_json(url: str, body: dict[str, Any], delivery: Delivery = Delivery()) -> bool:
    """POST ``body`` as JSON; retry on network errors, 429 and 5xx; never raises. True when a
    2xx answer came back."""
    data = json.dumps(body).encode("utf-8")
    wait = delivery.backoff
    for attempt in range(1, max(1, delivery.attempts) + 1):
        req = urllib.request.Request(
            url,
            data=data,
            method="POST",
            headers={"Content-Type": "application/json", "User-Agent": "phasecast"},
        )
        try:
            with urllib.request.urlopen(req, timeout=delivery.timeout) as resp:
                if 200 <= resp.status < 300:
                    log.info("alert delivered to %s (HTTP %d)", _safe(url), resp.status)
                    return True
                why = f"HTTP {resp.status}"
        except urllib.error.HTTPError as exc:
            why = f"HTTP {exc.code}"
            if exc.code < 500 and exc.code != 429:
                log.warning("alert to %s refused (%s): not retried", _safe(url), why)
                return False
        except (urllib.error.URLError, OSError, ValueError) as exc:
            why = f"{type(exc).__name__}: {getattr(exc, 'reason', exc)}"
        if attempt < delivery.attempts:
            log.info("alert to %s failed (%s), retry %d in %.1f s", _safe(url), why, attempt, wait)
            time.sleep(wait)
            wait *= 2
    log.warning(
        "alert to %s not delivered after %d attempt(s) (%s); the run's result is unchanged",
        _safe(url),
        delivery.attempts,
        why,
    )
    return False


def _safe(url: str) -> str:
    """The URL without its path (webhook paths are secrets)."""
    from urllib.parse import urlsplit

    u = urlsplit(url)
    return f"{u.scheme}://{u.netloc}/…" if u.netloc else "the webhook"


@dataclass
class NotifyResult:
    lines: int
    delivered: bool | None  # None: nothing sent (nothing to send, or sent already)
    already: str | None = None  # when the same alert was delivered before: when


def outcome(sent: NotifyResult) -> str | None:
    """What the terminal says about an alert (None: there was none to send)."""
    if sent.already:
        return f"alert for {sent.lines} budget line(s): delivered at {sent.already} already, not sent again"
    if sent.delivered is None:
        return None
    how = "delivered" if sent.delivered else "NOT delivered (see the log)"
    return f"alert for {sent.lines} budget line(s): {how}"


SENT = ".alerts"  # beside the run folders: one record per as-of and webhook of what was delivered


def sent_record(root: Path, as_of: str, url: str) -> Path:
    """Where the delivery of ``as_of``'s alert to ``url`` is recorded (the URL hashed: webhook
    paths are secrets)."""
    import hashlib

    return root / SENT / f"{as_of}-{hashlib.sha256(url.encode()).hexdigest()[:12]}.json"


def _keys(lines: pd.DataFrame) -> list[list[str]]:
    return sorted(
        [str(p), str(ph), str(st)]
        for p, ph, st in zip(lines["period"], lines["phase"], lines["status"], strict=True)
    )


def notify_run(
    folder: Path,
    url: str,
    delivery: Delivery = Delivery(),
    *,
    as_of: str | None = None,
    previous: Path | None = None,
    runs_root: Path | None = None,
) -> NotifyResult:
    """Post the alert of the run (or flag output) in ``folder`` (its ``flags.parquet``) against
    the previous run's flags (``previous`` folder, else the newest earlier run beside it). Never
    raises: an unreadable table or a failed delivery is logged."""
    from pipeline.runstore import stored_runs

    try:
        flags = pd.read_parquet(folder / "flags.parquet")
        manifest = folder / "run.json"
        if as_of is None:
            as_of = json.loads(manifest.read_text()).get("as_of") if manifest.exists() else None
            as_of = str(as_of or folder.name)
        if previous is None:
            earlier = [p for p in stored_runs(folder.parent) if p.name < as_of]
            previous = earlier[-1] if earlier else None
        prev = (
            pd.read_parquet(previous / "flags.parquet")
            if previous is not None and (previous / "flags.parquet").exists()
            else None
        )
        lines = alert_lines(flags, prev)
        if not len(lines):
            log.info("no budget line newly at risk: no alert sent")
            return NotifyResult(0, None)
        currency = str(flags["currency"].iloc[0]) if "currency" in flags.columns else "USD"
        report = folder / "report.html"
        body = alert_message(lines, as_of, currency, str(report) if report.exists() else None)
        # one record beside the run folders, whichever command (and --output) sends the alert
        record = sent_record(runs_root or folder.parent, as_of, url)
        prior = json.loads(record.read_text()) if record.exists() else {}
        if prior.get("lines") == _keys(lines):
            # a re-run of the same as-of (a retried schedule, a restatement that changed no
            # status): the people it went to have it already
            log.info(
                "the alert for %s (%d line(s)) was delivered at %s; the same lines are not sent "
                "again (delete %s to send it again)",
                as_of,
                len(lines),
                prior.get("sent_at"),
                record,
            )
            return NotifyResult(len(lines), None, already=str(prior.get("sent_at")))
    except Exception as exc:  # an alert never fails the run
        log.warning(
            "alert not prepared (%s: %s); the run's result is unchanged", type(exc).__name__, exc
        )
        return NotifyResult(0, False)
    delivered = post_json(url, body, delivery)
    if delivered:
        try:
            record.parent.mkdir(parents=True, exist_ok=True)
            tmp = record.with_name(record.name + ".tmp")
            sent_at = pd.Timestamp.now(tz="UTC").strftime("%Y-%m-%d %H:%M UTC")
            tmp.write_text(json.dumps({"as_of": as_of, "sent_at": sent_at, "lines": _keys(lines)}))
            tmp.replace(record)
        except OSError as exc:  # the alert went out; only its record is missing
            log.warning("alert delivered, but its record %s not written (%s)", record, exc)
    return NotifyResult(len(lines), delivered)
