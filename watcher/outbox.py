"""Coalesce changes per object and publish them, retrying with backoff; never forget that something changed.

One event per object per window: a burst of edits to one Service becomes one event. When publishing has
failed for longer than `give_up_after` seconds (or too many objects are waiting), the waiting changes are
replaced by a single cluster-resync event, which covers all of them: memory stays bounded, and the
Functions app still learns that it must look.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from watcher.changes import ServiceChange

MAX_BATCH = 100


@dataclass(frozen=True)
class ClusterResync:
    why: str


@dataclass(frozen=True)
class TrustChanged:
    why: str


Message = ServiceChange | ClusterResync | TrustChanged


class Outbox:
    def __init__(
        self,
        publish: Callable[[Sequence[Message]], None],
        *,
        clock: Callable[[], float],
        window_seconds: float,
        give_up_after_seconds: float,
        max_pending: int = 10_000,
        max_backoff_seconds: float = 30.0,
    ) -> None:
        self._publish = publish
        self._clock = clock
        self._window = window_seconds
        self._give_up_after = give_up_after_seconds
        self._max_pending = max_pending
        self._max_backoff = max_backoff_seconds
        self._lock = threading.Lock()
        self._pending: dict[tuple[str, str], tuple[float, ServiceChange]] = {}
        self._resync: ClusterResync | None = None
        self._trust: TrustChanged | None = None
        self._failing_since: float | None = None
        self._next_attempt = 0.0
        self._failures = 0
        self.published = 0
        self.collapsed = 0

    def add(self, change: ServiceChange) -> None:
        with self._lock:
            key = (change.namespace, change.name)
            first_seen, earlier = self._pending.get(key, (self._clock(), None))
            hints = change.backend_ids | (earlier.backend_ids if earlier else frozenset())
            api_hints = change.api_ids | (earlier.api_ids if earlier else frozenset())
            self._pending[key] = (first_seen, ServiceChange(change.namespace, change.name, hints, api_hints))
            if len(self._pending) > self._max_pending:
                self._collapse(f"more than {self._max_pending} Services changed before they could be reported")

    def request_trust_check(self, why: str) -> None:
        """One pending check at most: the app reads the Secrets again whatever changed in between."""
        with self._lock:
            self._trust = self._trust or TrustChanged(why)

    def request_resync(self, why: str) -> None:
        with self._lock:
            self._collapse(why)

    @property
    def pending(self) -> int:
        with self._lock:
            return len(self._pending) + (1 if self._resync else 0) + (1 if self._trust else 0)

    def _collapse(self, why: str) -> None:
        self.collapsed += len(self._pending)
        self._pending.clear()
        self._resync = self._resync or ClusterResync(why)

    def flush(self, *, force: bool = False) -> bool:
        """Publish what is due (everything when forced). False when publishing failed; the messages stay."""
        now = self._clock()
        with self._lock:
            if now < self._next_attempt and not force:
                return True
            if self._resync is not None:
                due: list[Message] = [self._resync]
            else:
                due = [change for first_seen, change in self._pending.values() if force or now - first_seen >= self._window]
            due = ([self._trust] if self._trust else []) + due[: MAX_BATCH - 1]
        if not due:
            return True
        try:
            self._publish(due)
        except Exception:  # noqa: BLE001 - whatever the topic answered, the changes wait for the next attempt
            self._failed(now)
            return False
        with self._lock:
            self._failing_since, self._failures = None, 0
            self.published += len(due)
            for message in due:
                if isinstance(message, ClusterResync):
                    self._resync = None
                elif isinstance(message, TrustChanged):
                    self._trust = None
                else:
                    self._pending.pop((message.namespace, message.name), None)
        return True

    def _failed(self, now: float) -> None:
        with self._lock:
            self._failures += 1
            self._failing_since = self._failing_since if self._failing_since is not None else now
            self._next_attempt = now + min(self._max_backoff, 0.5 * 2 ** (self._failures - 1))
            if now - self._failing_since >= self._give_up_after and self._pending:
                self._collapse(f"the topic could not be reached for {int(now - self._failing_since)} s")
