"""Thread-safe request counters, one per remote API, read before and after a run."""

from __future__ import annotations

import threading
from collections import Counter


class RequestCounter:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()

    def add(self, api: str, method: str) -> None:
        with self._lock:
            self._counts[api] += 1
            self._counts[f"{api}.{'read' if method.upper() in ('GET', 'HEAD') else 'write'}"] += 1

    def throttled(self, api: str) -> None:
        """A 429 answer (counted besides the request itself)."""
        with self._lock:
            self._counts[f"{api}.throttled"] += 1

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)

    @staticmethod
    def delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
        return {key: after[key] - before.get(key, 0) for key in sorted(after) if after[key] - before.get(key, 0)}
