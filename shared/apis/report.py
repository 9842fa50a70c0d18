"""The API step's report."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from shared.core.reporting import RunError, StepResult, outcome_suffix, short


@dataclass(frozen=True)
class ApisReport(StepResult):
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
            suffix = outcome_suffix(c)
            lines.append(f"  {symbol[c['action']]} {c['kind']} {c['api']}{target}{suffix}")
            for name, (before, after) in (c.get("diff") or {}).items():
                lines.append(f"      {name}: {short(before)} -> {short(after)}")
        for p in self.problems:
            lines.append(f"  ! {p['object']} {p['field']} ({p['reason']}): {p['message']}")
        if self.error is not None:
            lines.append(f"  x apis not reconciled ({self.error.reason}): {self.error.message}")
        lines.append(f"  {len(self.changes)} API change(s), {self.unchanged} API(s) unchanged")
        return "\n".join(lines)
