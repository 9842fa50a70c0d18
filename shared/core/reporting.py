"""The report: what a run planned, did, refused, left pending and could not do. JSON and text.

Pure. Shaped after Terraform's JSON plan (format_version; readers ignore unknown properties) and
Kubernetes conditions (CamelCase reason, human message). Secrets never reach it: changes list the
managed projection only, and error texts come from our own error classes, which truncate remote text.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from shared.backends.discovery import Invalid, Pending, Skipped
from shared.backends.plan import BackendChange, BackendPlan, CreateBackend, DesiredSet, UpdateBackend
from shared.core.errors import SyncError
from shared.core.model import BackendId, Reason
from shared.core.scope import Scope

FORMAT_VERSION = "1"


@dataclass(frozen=True)
class Outcome:
    """What apply did with one change."""

    status: str
    """applied | failed | refused (re-read showed the plan no longer holds) | noop (re-read showed nothing to do)."""
    reason: str | None = None
    message: str | None = None
    retryable: bool = False
    retry_after_seconds: float | None = None
    attempts: int = 1


@dataclass(frozen=True)
class RunError:
    reason: str
    message: str
    retryable: bool
    retry_after_seconds: float | None = None

    @classmethod
    def of(cls, error: SyncError, reason: str | None = None) -> RunError:
        """From one of our errors (whose text never holds a secret); `reason` defaults to the error's own."""
        return cls(reason or error.reason, str(error), error.retryable, getattr(error, "retry_after_seconds", None))


@dataclass(frozen=True)
class Report:
    scope: Scope
    dry_run: bool
    changes: tuple[dict[str, Any], ...] = ()
    refusals: tuple[dict[str, Any], ...] = ()
    pending: tuple[dict[str, Any], ...] = ()
    errors: tuple[dict[str, Any], ...] = ()
    unchanged: int = 0
    run_errors: tuple[RunError, ...] = ()
    notes: tuple[str, ...] = ()
    duration_ms: int = 0
    requests: Mapping[str, int] = field(default_factory=dict)
    allowlists: AllowListReport | None = None
    apis: ApisReport | None = None

    @property
    def failed(self) -> bool:
        backends_failed = bool(self.run_errors) or any(c["outcome"] == "failed" for c in self.changes)
        steps_failed = any(s is not None and s.failed for s in (self.allowlists, self.apis))
        return backends_failed or steps_failed

    @property
    def retryable(self) -> bool:
        """True when every failure is transient, so a later attempt of the whole run can succeed."""
        failed_changes = [c for c in self.changes if c["outcome"] == "failed"]
        failed_steps = [s for s in (self.allowlists, self.apis) if s is not None and s.failed]
        if not self.run_errors and not failed_changes and not failed_steps:
            return False
        return (
            all(e.retryable for e in self.run_errors)
            and all(c["retryable"] for c in failed_changes)
            and all(s.retryable for s in failed_steps)
        )

    @property
    def retry_after_seconds(self) -> float | None:
        waits = [e.retry_after_seconds for e in self.run_errors if e.retry_after_seconds]
        waits += [c["retry_after_seconds"] for c in self.changes if c.get("retry_after_seconds")]
        if self.allowlists is not None and self.allowlists.error and self.allowlists.error.retry_after_seconds:
            waits.append(self.allowlists.error.retry_after_seconds)
        return max(waits) if waits else None

    @property
    def counts(self) -> dict[str, int]:
        counts = {"create": 0, "update": 0, "delete": 0}
        for change in self.changes:
            counts[change["action"]] += 1
        failed = sum(1 for c in self.changes if c["outcome"] == "failed")
        return {
            **counts,
            "unchanged": self.unchanged,
            "refused": len(self.refusals),
            "pending": len(self.pending),
            "invalid": len(self.errors),
            "failed": failed,
        }

    def to_json(self) -> dict[str, Any]:
        return {
            "format_version": FORMAT_VERSION,
            "dry_run": self.dry_run,
            "scope": self.scope.to_json(),
            "changes": [{k: v for k, v in c.items() if k != "retry_after_seconds"} for c in self.changes],
            "refusals": list(self.refusals),
            "pending": list(self.pending),
            "errors": [*self.errors, *({"reason": e.reason, "message": e.message} for e in self.run_errors)],
            "notes": list(self.notes),
            "counts": self.counts,
            "allowlists": self.allowlists.to_json() if self.allowlists is not None else None,
            "apis": self.apis.to_json() if self.apis is not None else None,
            "duration_ms": self.duration_ms,
            "requests": dict(self.requests),
        }

    def to_text(self) -> str:
        symbol = {"create": "+", "update": "~", "delete": "-"}
        lines = [f"aks-apim-sync {'plan (dry run)' if self.dry_run else 'sync'}: {_scope_text(self.scope)}"]
        for c in self.changes:
            suffix = _outcome_suffix(c)
            lines.append(f"  {symbol[c['action']]} backend {c['id']}  ({c['source']}){suffix}")
            for name, (before, after) in c.get("diff", {}).items():
                lines.append(f"      {name}: {_short(before)} -> {_short(after)}")
        for r in self.refusals:
            lines.append(f"  ! backend {r['id']} refused ({r['reason']}): {r['message']}")
        for p in self.pending:
            lines.append(f"  … {p['object']} pending ({p['reason']}): {p['message']}")
        for e in self.errors:
            lines.append(f"  x {e['object']} {e['field']} ({e['reason']}): {e['message']}")
        for run_error in self.run_errors:
            lines.append(f"  x run failed ({run_error.reason}): {run_error.message}")
        counts = self.counts
        lines.append(
            "  {create} to create, {update} to update, {delete} to delete, {unchanged} unchanged, {refused} refused, "
            "{pending} pending, {invalid} invalid, {failed} failed".format(**counts)
        )
        if not self.changes and not self.run_errors:
            lines.append("  No changes. APIM matches the cluster.")
        if self.allowlists is not None:
            lines.append(self.allowlists.to_text())
        if self.apis is not None:
            lines.append(self.apis.to_text())
        return "\n".join(lines)


def _outcome_suffix(change: Mapping[str, Any]) -> str:
    """Nothing for a change planned or applied; otherwise its outcome and why."""
    if change["outcome"] in ("planned", "applied"):
        return ""
    return f"  [{change['outcome']}: {change.get('message') or ''}]"


def _scope_text(scope: Scope) -> str:
    return "/".join(p for p in (scope.cluster, scope.namespace, scope.service) if p)


def _short(value: object) -> str:
    text = repr(value) if not isinstance(value, str) else f'"{value}"'
    return text if len(text) <= 120 else text[:119] + "…"


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
        "diff": diff,
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
    return Report(
        scope=scope,
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


class _StepResult:
    """failed / retryable for a step report with `changes` (each with an outcome) and one `error`."""

    changes: tuple[dict[str, Any], ...]
    error: RunError | None

    @property
    def failed(self) -> bool:
        return self.error is not None or any(c["outcome"] == "failed" for c in self.changes)

    @property
    def retryable(self) -> bool:
        failed = [c for c in self.changes if c["outcome"] == "failed"]
        if self.error is None and not failed:
            return False
        return (self.error is None or self.error.retryable) and all(c.get("retryable") for c in failed)

    skipped: str | None

    def _status_json(self) -> dict[str, Any]:
        """The error and the reason the step was skipped, when there is one."""
        shown: dict[str, Any] = {}
        if self.error is not None:
            shown["error"] = {"reason": self.error.reason, "message": self.error.message, "retryable": self.error.retryable}
        if self.skipped:
            shown["skipped"] = self.skipped
        return shown


@dataclass(frozen=True)
class AllowListReport(_StepResult):
    """What the allow-list step found, planned and did. `cidrs` is what every managed list should hold."""

    dry_run: bool
    cidrs: tuple[str, ...] = ()
    changes: tuple[dict[str, Any], ...] = ()
    unchanged: int = 0
    findings: tuple[dict[str, str], ...] = ()
    error: RunError | None = None
    skipped: str | None = None

    def to_json(self) -> dict[str, Any]:
        shown: dict[str, Any] = {
            "cidrs": list(self.cidrs),
            "changes": [dict(c) for c in self.changes],
            "unchanged": self.unchanged,
            "warnings": [dict(f) for f in self.findings],
        }
        return {**shown, **self._status_json()}

    def to_text(self) -> str:
        if self.skipped:
            return f"  allow-lists: skipped ({self.skipped})"
        lines = [f"  allow-lists: {', '.join(self.cidrs) or '-'}"]
        for c in self.changes:
            suffix = _outcome_suffix(c)
            lines.append(f"  ~ {c['object']} {', '.join(c['fields'])}: {_short(c['before'])} -> {_short(c['after'])}{suffix}")
        for f in self.findings:
            lines.append(f"  ! {f['object']} ({f['reason']}): {f['message']}")
        if self.error is not None:
            lines.append(f"  x allow-lists not written ({self.error.reason}): {self.error.message}")
        lines.append(f"  {len(self.changes)} allow-list(s) to change, {self.unchanged} unchanged")
        return "\n".join(lines)


@dataclass(frozen=True)
class RotationReport:
    """What a rotation run did (or would do), what expires when, and what comes next and when."""

    dry_run: bool
    steps: tuple[dict[str, Any], ...] = ()
    next_step: Mapping[str, Any] | None = None
    expiries: tuple[dict[str, str], ...] = ()
    skipped: str | None = None
    error: RunError | None = None

    @property
    def failed(self) -> bool:
        return self.error is not None

    @property
    def retryable(self) -> bool:
        return self.error is not None and self.error.retryable

    def to_json(self) -> dict[str, Any]:
        shown: dict[str, Any] = {
            "format_version": FORMAT_VERSION,
            "dry_run": self.dry_run,
            "steps": [dict(s) for s in self.steps],
            "next": dict(self.next_step) if self.next_step else None,
            "expiries": [dict(e) for e in self.expiries],
        }
        if self.skipped:
            shown["skipped"] = self.skipped
        if self.error is not None:
            shown["error"] = {"reason": self.error.reason, "message": self.error.message, "retryable": self.error.retryable}
        return shown

    def to_text(self) -> str:
        lines = [f"aks-apim-sync rotation{' (dry run)' if self.dry_run else ''}"]
        if self.skipped:
            lines.append(f"  skipped: {self.skipped}")
        for step in self.steps:
            lines.append(f"  {'·' if step['outcome'] == 'planned' else '✓'} {step['step']}: {step['why']}")
        for expiry in self.expiries:
            lines.append(f"  {expiry['object']} expires {expiry['expires']}")
        if self.next_step:
            when = f" at {self.next_step['at']}" if self.next_step.get("at") else ""
            lines.append(f"  next: {self.next_step['why']}{when}")
        if self.error is not None:
            lines.append(f"  x failed ({self.error.reason}): {self.error.message}")
        return "\n".join(lines)


@dataclass(frozen=True)
class ApisReport(_StepResult):
    """The API step: API, operation, policy and product changes, conflicts and refusals."""

    dry_run: bool
    changes: tuple[dict[str, Any], ...] = ()
    problems: tuple[dict[str, str], ...] = ()
    unchanged: int = 0
    error: RunError | None = None
    skipped: str | None = None

    def to_json(self) -> dict[str, Any]:
        shown: dict[str, Any] = {"changes": [dict(c) for c in self.changes], "problems": [dict(p) for p in self.problems]}
        shown["unchanged"] = self.unchanged
        return {**shown, **self._status_json()}

    def to_text(self) -> str:
        if self.skipped:
            return f"  apis: skipped ({self.skipped})"
        symbol = {"create": "+", "update": "~", "delete": "-", "add": "+"}
        lines = []
        for c in self.changes:
            target = f" {c['target']}" if c.get("target") else ""
            suffix = _outcome_suffix(c)
            lines.append(f"  {symbol[c['action']]} {c['kind']} {c['api']}{target}{suffix}")
            for name, (before, after) in (c.get("diff") or {}).items():
                lines.append(f"      {name}: {_short(before)} -> {_short(after)}")
        for p in self.problems:
            lines.append(f"  ! {p['object']} {p['field']} ({p['reason']}): {p['message']}")
        if self.error is not None:
            lines.append(f"  x apis not reconciled ({self.error.reason}): {self.error.message}")
        lines.append(f"  {len(self.changes)} API change(s), {self.unchanged} API(s) unchanged")
        return "\n".join(lines)
