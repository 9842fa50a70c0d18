"""What a run tells operators: metric points worked out from its report, and the port that records them.

Pure, but for the port. The names here are what infra/modules/alerts.bicep queries (tests hold the two equal);
attributes are low-cardinality on purpose (a step, an outcome, a reason; never a Service or an id), so a large
cluster does not become a large bill. shared.adapters.telemetry records them with OpenTelemetry when
APPLICATIONINSIGHTS_CONNECTION_STRING is set; otherwise NoTelemetry drops them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, Protocol

RUNS = "aks_apim_sync.runs"
RUN_DURATION = "aks_apim_sync.run.duration"
CHANGES = "aks_apim_sync.changes"
RESTORED = "aks_apim_sync.drift.restored"
REFUSALS = "aks_apim_sync.refusals"
REQUESTS = "aks_apim_sync.requests"
THROTTLED = "aks_apim_sync.throttled"
DAYS_LEFT = "aks_apim_sync.certificate.days_left"
ALLOWLIST_SIZE = "aks_apim_sync.allowlist.size"
METRIC_NAMES = (RUNS, RUN_DURATION, CHANGES, RESTORED, REFUSALS, REQUESTS, THROTTLED, DAYS_LEFT, ALLOWLIST_SIZE)

Kind = Literal["counter", "histogram", "gauge"]
UNITS = {RUN_DURATION: "s", DAYS_LEFT: "d"}


@dataclass(frozen=True)
class Point:
    name: str
    kind: Kind
    value: float
    attributes: Mapping[str, str] = field(default_factory=dict)


class Telemetry(Protocol):
    def span(self, name: str, attributes: Mapping[str, str] | None = None) -> Any:
        """A context manager: one span (the run's trace when none is open)."""

    def emit(self, points: Sequence[Point]) -> None: ...


class NoTelemetry:
    @contextmanager
    def span(self, name: str, attributes: Mapping[str, str] | None = None) -> Iterator[None]:
        yield

    def emit(self, points: Sequence[Point]) -> None:
        return None


def _run_points(kind: str, outcome: str, duration_seconds: float | None) -> list[Point]:
    attributes = {"run.kind": kind, "run.outcome": outcome}
    points = [Point(RUNS, "counter", 1, attributes)]
    if duration_seconds is not None:
        points.append(Point(RUN_DURATION, "histogram", duration_seconds, attributes))
    return points


def _change_points(step: str, changes: Sequence[Mapping[str, Any]]) -> list[Point]:
    points: list[Point] = []
    outcomes = Counter(str(c.get("outcome") or "applied") for c in changes)
    points += [Point(CHANGES, "counter", n, {"step": step, "outcome": outcome}) for outcome, n in sorted(outcomes.items())]
    restored = sum(1 for c in changes if c.get("reason") == "Restored" and c.get("outcome") in ("applied", None))
    if restored:
        points.append(Point(RESTORED, "counter", restored, {"step": step}))
    return points


def sync_points(report: Mapping[str, Any], *, failed: bool) -> list[Point]:
    """From a sync report's JSON (shared.core.reporting.Report.to_json). A run that spent its time budget is
    `incomplete` (its deferred changes are counted by outcome): a first sync's progress, run by run."""
    outcome = "failed" if failed else "incomplete" if report.get("incomplete") else "ok"
    points = _run_points("sync", outcome, report.get("duration_ms", 0) / 1000)
    points += _change_points("backends", report.get("changes") or [])
    refused = Counter(str(r.get("reason") or "") for r in [*(report.get("refusals") or []), *(report.get("errors") or [])])
    for step in ("apis", "allowlists"):
        part = report.get(step) or {}
        points += _change_points(step, part.get("changes") or [])
        refused.update(str(p.get("reason") or "") for p in part.get("problems") or [])
    points += [Point(REFUSALS, "counter", n, {"reason": reason}) for reason, n in sorted(refused.items()) if reason]
    requests = report.get("requests") or {}
    for service in ("arm", "kubernetes"):
        if requests.get(service):
            points.append(Point(REQUESTS, "counter", requests[service], {"service": service}))
        if requests.get(f"{service}.throttled"):
            points.append(Point(THROTTLED, "counter", requests[f"{service}.throttled"], {"service": service}))
    cidrs = (report.get("allowlists") or {}).get("cidrs")
    if cidrs:
        points.append(Point(ALLOWLIST_SIZE, "gauge", len(cidrs)))
    return points


def rotation_points(report: Mapping[str, Any], *, failed: bool, now: datetime) -> list[Point]:
    """From a rotation report's JSON: the run, its steps, and the days left of the newest certificate and CA
    (the ones presented and trusted once the rotation has switched)."""
    points = _run_points("rotation", "failed" if failed else "ok", None)
    points += _change_points(
        "rotation", [{"outcome": s.get("outcome"), "reason": s.get("reason")} for s in report.get("steps") or []]
    )
    newest: dict[str, datetime] = {}
    for expiry in report.get("expiries") or []:
        what = "ca" if str(expiry.get("object", "")).startswith("CA ") else "client-certificate"
        expires = datetime.fromisoformat(str(expiry["expires"]))
        newest[what] = max(newest.get(what, expires), expires)
    for what, expires in sorted(newest.items()):
        points.append(Point(DAYS_LEFT, "gauge", round((expires - now).total_seconds() / 86400, 2), {"certificate": what}))
    return points
