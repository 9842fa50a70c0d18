"""When a run stops starting work: the end of its time budget, less a margin it measures.

A run must end before the function's timeout kills it mid-way. Work already started (a backend write that is
paced or retried, an API's several writes in order) goes on after the last check, so the margin is the longest
piece of work this run has seen take: no piece starts unless a piece as long as the longest so far would still
end within the budget. The clock is injected (tests tick it).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager


class Deadline:
    def __init__(self, ends_at: float, clock: Callable[[], float]) -> None:
        self._ends_at, self._clock = ends_at, clock
        self._lock = threading.Lock()
        self.longest_piece_seconds = 0.0
        """The measured margin: the longest piece of work timed so far."""

    @classmethod
    def never(cls) -> Deadline:
        return cls(math.inf, lambda: 0.0)

    def passed(self) -> bool:
        """True once a piece as long as the longest so far would no longer end within the budget."""
        with self._lock:
            margin = self.longest_piece_seconds
        return self._clock() + margin > self._ends_at

    @contextmanager
    def piece(self) -> Iterator[None]:
        """Time one piece of work (a write, an API's writes): its length becomes the margin when it is the longest."""
        started = self._clock()
        try:
            yield
        finally:
            took = self._clock() - started
            with self._lock:
                self.longest_piece_seconds = max(self.longest_piece_seconds, took)
