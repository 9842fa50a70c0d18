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

from shared.core.reporting import Report

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


def sync_points(report: Report) -> list[Point]:
    """From a sync report, read in place (a first sync's report holds tens of thousands of entries: copying it
    into JSON only to count them would double the run's peak memory at its very end). A run that spent its time
    budget is `incomplete` (its deferred changes are counted by outcome): a first sync's progress, run by run."""
    outcome = "failed" if report.failed else "incomplete" if report.incomplete else "ok"
    points = _run_points("sync", outcome, report.duration_ms / 1000)
    points += _change_points("backends", report.changes)
    errors = [*report.errors, *({"reason": e.reason} for e in report.run_errors)]
    refused = Counter(str(r.get("reason") or "") for r in [*report.refusals, *errors])
    if report.allowlists is not None:
        points += _change_points("allowlists", report.allowlists.changes)
    if report.apis is not None:
        points += _change_points("apis", report.apis.changes)
        refused.update(str(p.get("reason") or "") for p in getattr(report.apis, "problems", ()))
    points += [Point(REFUSALS, "counter", n, {"reason": reason}) for reason, n in sorted(refused.items()) if reason]
    for service in ("arm", "kubernetes"):
        if report.requests.get(service):
            points.append(Point(REQUESTS, "counter", report.requests[service], {"service": service}))
        if report.requests.get(f"{service}.throttled"):
            points.append(Point(THROTTLED, "counter", report.requests[f"{service}.throttled"], {"service": service}))
    cidrs = getattr(report.allowlists, "cidrs", ())
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
