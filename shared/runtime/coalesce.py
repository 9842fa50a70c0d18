"""Runs for the same request coalesce in a worker, as a controller's work queue does: while a run is in
progress, every identical request that arrives shares one follow-up run, which starts after the current one
ends (so it reads what the requests were about). N concurrent identical requests cost at most two runs.

A run already in progress is never joined: it may have read the cluster before the change that a new request
announces. Requests with different keys (scope, steps, options, hints) do not wait for each other.

Across instances (the Functions host scales event- and HTTP-triggered functions out), `across_instances` keeps
the same promise through a RunLedger (a leased blob per key in the Functions storage account): runs of a key are
numbered, one instance runs at a time, and a request is served by the first run that starts after it asked. A
request that finds such a run already finished on another instance is covered and runs nothing.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from shared.core.errors import LeaseHeld
from shared.runtime.ports import RunLedger

T = TypeVar("T")


@dataclass
class _Slot(Generic[T]):
    work: Callable[[], T]
    rank: int = 0
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

    def run(self, key: Hashable, work: Callable[[], T], *, rank: int = 0) -> T:
        """`rank`: of the works that join one follow-up, the highest-ranked is the one run (the request that
        asked last, in shared.sync: it knows the latest run that had started elsewhere)."""
        with self._lock:
            state = self._keys.setdefault(key, _Key())
            if state.running is None:
                slot = state.running = _Slot(work, rank)
                mine = True
            else:
                if state.follow_up is None:
                    state.follow_up = _Slot(work, rank)
                elif rank >= state.follow_up.rank:
                    state.follow_up.work, state.follow_up.rank = work, rank
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
        return self._execute(key, slot, slot.work)

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


@dataclass(frozen=True)
class Covered:
    """The request was served by run `number` of its key, made by another instance after the request asked."""

    number: int


def across_instances(
    ledger: RunLedger,
    key: str,
    work: Callable[[], T],
    *,
    asked_after: int,
    give_up_at: float,
    monotonic: Callable[[], float],
    sleep: Callable[[float], None],
    poll_seconds: float = 1.0,
) -> T | Covered:
    """Run `work` as a run of `key` later than `asked_after` (the last run that had started when the request was
    made: ledger.last_started, read then), or return Covered when another instance finished such a run meanwhile.
    Waits (polling) while another instance runs the key; past `give_up_at` raises LeaseHeld (retryable: the event
    is delivered again, HTTP answers 503)."""
    while True:
        turn = ledger.try_turn(key)
        if turn is not None:
            with turn:
                if turn.completed > asked_after:
                    return Covered(turn.completed)
                number = turn.begin()
                result = work()
                turn.end(number)
                return result
        completed = ledger.last_completed(key)
        if completed > asked_after:
            return Covered(completed)
        if monotonic() + poll_seconds > give_up_at:
            raise LeaseHeld("another instance is still running this request; it is left to a later delivery")
        sleep(poll_seconds)
