"""Where a pass over many objects stopped when a run's time ran out, so the next run of the same work starts there.

A full pass over thousands of APIs costs two ARM reads each: at ARM's read pace that can be more than one run's
budget. Runs of one scope that each start where the last stopped cover the whole list between them; runs that
started anywhere else could read the same part again and again. Held in the worker (every run of a worker
shares it); another instance, or a worker that restarted, starts where the clock says.
"""

from __future__ import annotations

import threading


class ResumePoints:
    def __init__(self) -> None:
        self._points: dict[str, str] = {}
        self._lock = threading.Lock()

    def get(self, work: str) -> str | None:
        with self._lock:
            return self._points.get(work)

    def put(self, work: str, first_not_reached: str | None) -> None:
        """`first_not_reached`: None once a run reached everything, so the next starts where the clock says."""
        with self._lock:
            if first_not_reached is None:
                self._points.pop(work, None)
            else:
                self._points[work] = first_not_reached
