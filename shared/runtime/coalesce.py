"""Runs for the same request coalesce in a worker, as a controller's work queue does: while a run is in
progress, every identical request that arrives shares one follow-up run, which starts after the current one
ends (so it reads what the requests were about). N concurrent identical requests cost at most two runs.

A run already in progress is never joined: it may have read the cluster before the change that a new request
announces. Requests with different keys (scope, steps, options, hints) do not wait for each other.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass
class _Slot(Generic[T]):
    done: threading.Event = field(default_factory=threading.Event)
    result: T | None = None
    error: BaseException | None = None


@dataclass
class _Key(Generic[T]):
    running: _Slot[T] | None = None
    follow_up: _Slot[T] | None = None


class Coalescer(Generic[T]):
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._keys: dict[Hashable, _Key[T]] = {}
        self.runs = 0
        """How many runs were actually made (for tests and benchmarks)."""

    def run(self, key: Hashable, work: Callable[[], T]) -> T:
        with self._lock:
            state = self._keys.setdefault(key, _Key())
            if state.running is None:
                slot = state.running = _Slot()
                mine = True
            else:
                if state.follow_up is None:
                    state.follow_up = _Slot()
                slot, mine = state.follow_up, False
                waiting_for = state.running
        if not mine:
            waiting_for.done.wait()
            with self._lock:
                current = self._keys.get(key)  # gone: the follow-up ran and ended already
                if current is not None and current.follow_up is slot and current.running is None:
                    current.running, current.follow_up = slot, None
                    mine = True
            if not mine:
                slot.done.wait()
                if slot.error is not None:
                    raise slot.error
                return slot.result  # type: ignore[return-value]
        return self._execute(key, slot, work)

    def _execute(self, key: Hashable, slot: _Slot[T], work: Callable[[], T]) -> T:
        try:
            with self._lock:
                self.runs += 1
            slot.result = work()
            return slot.result
        except BaseException as error:
            slot.error = error
            raise
        finally:
            with self._lock:
                state = self._keys[key]
                if state.running is slot:
                    state.running = None
                    if state.follow_up is None:
                        del self._keys[key]
            slot.done.set()


RUNS: Coalescer[object] = Coalescer()
"""One per worker process: the timer, events and HTTP resyncs share it."""
