"""The backend step's part of the run report: changes, refusals, pending and invalid Services.

Pure. Secrets never reach it: changes list the managed projection only, and error texts come from our own
error classes, which truncate remote text.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from shared.backends.discovery import Invalid, Pending, Skipped
from shared.backends.plan import BackendChange, BackendPlan, CreateBackend, DesiredSet, UpdateBackend
from shared.core.errors import SyncError
from shared.core.model import BackendId, Reason
from shared.core.reporting import Outcome, Report, RunError
from shared.core.scope import Scope


def _change_entry(change: BackendChange, outcome: Outcome | None, dry_run: bool) -> dict[str, Any]:
    if isinstance(change, CreateBackend):
        action, source, reason = "create", change.desired.source, Reason.CREATED
        diff = {name: [None, value] for name, value in change.desired.spec.as_fields().items() if value}
    elif isinstance(change, UpdateBackend):
        action, source, reason = "update", change.desired.source, Reason.UPDATED
        diff = {d.field: [d.before, d.after] for d in change.diff}
    else:
        action, source, reason = "delete", change.source, Reason.SOURCE_GONE
        diff = {}
    entry: dict[str, Any] = {
        "action": action,
        "kind": "backend",
        "id": change.id,
        "source": str(source),
        "reason": reason.value,
        # A deferred change is planned again, from what APIM then holds, by the run that makes it; its diff
        # would say nothing that run will not, and at a large first sync it was most of what a report held.
        "diff": {} if outcome is not None and outcome.status == "deferred" else diff,
        "outcome": "planned" if dry_run or outcome is None else outcome.status,
    }
    if outcome is not None and outcome.status != "applied":
        entry.update(error_reason=outcome.reason, message=outcome.message, retryable=outcome.retryable)
        entry["retry_after_seconds"] = outcome.retry_after_seconds
    if outcome is not None and outcome.attempts > 1:
        entry["attempts"] = outcome.attempts
    return entry


def _refusal_entry(backend_id: BackendId, reason: str, message: str, source: object) -> dict[str, Any]:
    return {"kind": "backend", "id": backend_id, "reason": reason, "message": message, "source": str(source or "")}


def build_report(
    *,
    scope: Scope,
    dry_run: bool,
    plan: BackendPlan | None,
    desired: DesiredSet | None,
    outcomes: Mapping[BackendId, Outcome] | None = None,
    run_errors: Sequence[RunError] = (),
    duration_ms: int = 0,
    requests: Mapping[str, int] | None = None,
) -> Report:
    outcomes = outcomes or {}
    changes: list[dict[str, Any]] = []
    refusals: list[dict[str, Any]] = []
    for change in plan.changes if plan else ():
        outcome = outcomes.get(change.id)
        if outcome is not None and outcome.status == "refused":
            refusals.append(_refusal_entry(change.id, outcome.reason or "", outcome.message or "", ""))
        elif outcome is None or outcome.status != "noop":
            changes.append(_change_entry(change, outcome, dry_run))
    for refusal in plan.refusals if plan else ():
        refusals.append(_refusal_entry(refusal.id, refusal.reason.value, refusal.message, refusal.source))
    pending: list[dict[str, Any]] = []
    errors: list[dict[str, Any]] = []
    for problem in desired.problems if desired else ():
        if isinstance(problem, Pending):
            pending.append({"object": str(problem.source), "reason": problem.reason.value, "message": problem.message})
        elif isinstance(problem, Invalid):
            errors.append(
                {
                    "object": str(problem.source),
                    "field": problem.field,
                    "reason": problem.reason.value,
                    "message": problem.message,
                }
            )
        elif isinstance(problem, Skipped):
            pending.append({"object": str(problem.source), "reason": problem.reason.value, "message": "reconcile-policy is skip"})
    warnings = [
        {"object": str(d.source), "field": field, "reason": Reason.CREDENTIAL_WITHHELD.value, "message": message}
        for d in (desired.backends.values() if desired else ())
        for field, message in d.warnings
    ]
    return Report(
        scope=scope,
        warnings=tuple(sorted(warnings, key=lambda w: (w["object"], w["field"]))),
        dry_run=dry_run,
        changes=tuple(changes),
        refusals=tuple(refusals),
        pending=tuple(pending),
        errors=tuple(errors),
        unchanged=len(plan.unchanged) if plan else 0,
        run_errors=tuple(run_errors),
        notes=plan.notes if plan else (),
        duration_ms=duration_ms,
        requests=dict(requests or {}),
    )


def failed_report(scope: Scope, error: SyncError, *, reason: Reason = Reason.SINK_READ_FAILED, dry_run: bool = False) -> Report:
    return build_report(scope=scope, dry_run=dry_run, plan=None, desired=None, run_errors=[RunError.of(error, reason.value)])
