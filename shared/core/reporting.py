"""The run report: what a run planned, did, refused, left pending and could not do. JSON and text.

Pure. Shaped after Terraform's JSON plan (format_version; readers ignore unknown properties) and
Kubernetes conditions (CamelCase reason, human message). Secrets never reach it: changes list the
managed projection only, and error texts come from our own error classes, which truncate remote text.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from shared.core.errors import SyncError
from shared.core.scope import Scope

FORMAT_VERSION = "1"


@dataclass(frozen=True)
class Outcome:
    """What apply did with one change."""

    status: str
    """applied | failed | refused (re-read showed the plan no longer holds) | noop (re-read showed nothing to do) |
    deferred (not started: the run's time budget was spent)."""
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


class StepReport(Protocol):
    """What the run report needs of a step's report (allow-lists, APIs)."""

    @property
    def failed(self) -> bool: ...

    @property
    def retryable(self) -> bool: ...

    @property
    def error(self) -> RunError | None: ...

    @property
    def changes(self) -> tuple[dict[str, Any], ...]: ...

    def to_json(self) -> dict[str, Any]: ...

    def to_text(self) -> str: ...


@dataclass(frozen=True)
class Report:
    scope: Scope
    dry_run: bool
    changes: tuple[dict[str, Any], ...] = ()
    refusals: tuple[dict[str, Any], ...] = ()
    pending: tuple[dict[str, Any], ...] = ()
    errors: tuple[dict[str, Any], ...] = ()
    warnings: tuple[dict[str, Any], ...] = ()
    """What a backend was made without, and why (a credential withheld by the tenancy rules)."""
    unchanged: int = 0
    run_errors: tuple[RunError, ...] = ()
    notes: tuple[str, ...] = ()
    duration_ms: int = 0
    requests: Mapping[str, int] = field(default_factory=dict)
    allowlists: StepReport | None = None
    apis: StepReport | None = None
    backends_reconciled: bool = True
    """False when only the allow-list step ran: the report then says nothing about backends."""

    @property
    def has_changes(self) -> bool:
        """Something was (or, in a dry run, would be) written by any step."""
        return bool(self.changes) or any(s is not None and s.changes for s in (self.allowlists, self.apis))

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
        shown = {
            **counts,
            "unchanged": self.unchanged,
            "refused": len(self.refusals),
            "pending": len(self.pending),
            "invalid": len(self.errors),
            "failed": failed,
        }
        deferred = sum(1 for c in self.changes if c["outcome"] == "deferred")
        return {**shown, "deferred": deferred} if deferred else shown

    @property
    def incomplete(self) -> bool:
        """The time budget ran out: some changes were deferred to the next run."""
        return any(c["outcome"] == "deferred" for c in self.changes) or any("time budget" in n for n in self.notes)

    def to_json(self) -> dict[str, Any]:
        return {
            "format_version": FORMAT_VERSION,
            "dry_run": self.dry_run,
            "scope": self.scope.to_json(),
            "changes": [{k: v for k, v in c.items() if k != "retry_after_seconds"} for c in self.changes],
            "refusals": list(self.refusals),
            "pending": list(self.pending),
            "errors": [*self.errors, *({"reason": e.reason, "message": e.message} for e in self.run_errors)],
            "warnings": list(self.warnings),
            "notes": list(self.notes),
            "counts": self.counts,
            **({"incomplete": True} if self.incomplete else {}),
            "allowlists": self.allowlists.to_json() if self.allowlists is not None else None,
            "apis": self.apis.to_json() if self.apis is not None else None,
            "duration_ms": self.duration_ms,
            "requests": dict(self.requests),
        }

    def to_text(self) -> str:
        symbol = {"create": "+", "update": "~", "delete": "-"}
        lines = [f"aks-apim-sync {'plan (dry run)' if self.dry_run else 'sync'}: {scope_text(self.scope)}"]
        for c in self.changes:
            suffix = outcome_suffix(c)
            lines.append(f"  {symbol[c['action']]} backend {c['id']}  ({c['source']}){suffix}")
            for name, (before, after) in c.get("diff", {}).items():
                lines.append(f"      {name}: {short(before)} -> {short(after)}")
        for r in self.refusals:
            lines.append(f"  ! backend {r['id']} refused ({r['reason']}): {r['message']}")
        for p in self.pending:
            lines.append(f"  … {p['object']} pending ({p['reason']}): {p['message']}")
        for e in self.errors:
            lines.append(f"  x {e['object']} {e['field']} ({e['reason']}): {e['message']}")
        for w in self.warnings:
            lines.append(f"  ! {w['object']} {w['field']} ({w['reason']}): {w['message']}")
        for run_error in self.run_errors:
            lines.append(f"  x run failed ({run_error.reason}): {run_error.message}")
        counts = self.counts
        lines += [f"  note: {note}" for note in self.notes]
        if not self.backends_reconciled:
            lines = [lines[0], *(f"  {note}" for note in self.notes)]
        elif self.dry_run:
            lines.append(
                "  {create} to create, {update} to update, {delete} to delete, {unchanged} unchanged, {refused} refused, "
                "{pending} pending, {invalid} invalid".format(**counts)
            )
        else:
            lines.append(
                "  {create} created, {update} updated, {delete} deleted, {unchanged} unchanged, {refused} refused, "
                "{pending} pending, {invalid} invalid, {failed} failed".format(**counts)
            )
        if self.backends_reconciled and not self.changes and not self.run_errors:
            lines.append("  No backend changes: APIM's backends match the cluster." if self.dry_run else "  No backend changed.")
        if self.allowlists is not None:
            lines.append(self.allowlists.to_text())
        if self.apis is not None:
            lines.append(self.apis.to_text())
        return "\n".join(lines)


def outcome_suffix(change: Mapping[str, Any]) -> str:
    """Nothing for a change planned or applied; otherwise its outcome and why."""
    if change["outcome"] in ("planned", "applied"):
        return ""
    return f"  [{change['outcome']}: {change.get('message') or ''}]"


def scope_text(scope: Scope) -> str:
    return "/".join(p for p in (scope.cluster, scope.namespace, scope.service) if p)


def short(value: object) -> str:
    text = repr(value) if not isinstance(value, str) else f'"{value}"'
    return text if len(text) <= 120 else text[:119] + "…"


class StepResult:
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
