"""The allow-list step's report."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from shared.core.reporting import RunError, StepResult, outcome_suffix, short


@dataclass(frozen=True)
class AllowListReport(StepResult):
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
            suffix = outcome_suffix(c)
            lines.append(f"  ~ {c['object']} {', '.join(c['fields'])}: {short(c['before'])} -> {short(c['after'])}{suffix}")
        for f in self.findings:
            lines.append(f"  ! {f['object']} ({f['reason']}): {f['message']}")
        if self.error is not None:
            lines.append(f"  x allow-lists not written ({self.error.reason}): {self.error.message}")
        lines.append(f"  {len(self.changes)} allow-list(s) to change, {self.unchanged} unchanged")
        return "\n".join(lines)
