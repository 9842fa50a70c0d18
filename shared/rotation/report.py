"""The rotation run's report."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from shared.core.reporting import FORMAT_VERSION, RunError


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
