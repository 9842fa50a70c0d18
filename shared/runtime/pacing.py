"""Spend ARM's request budget at ARM's pace: a client-side model of its token buckets, for this app's share.

ARM meters each principal per subscription and region with a bucket per operation class (reads 250 refilled
at 25 per second, writes 200 at 10, deletes 200 at 10) and answers 429 once one is empty. Every run in a
worker (timer, events, HTTP) takes its tokens from one Pacer, so they never burst together; the app keeps to
`share` of each bucket so the other tools of the subscription keep theirs. Two corrections keep the model true:
the remaining-quota headers of every answer (the shared truth between instances, since every instance of the
app, and every other tool, spends the same bucket), and Retry-After of a 429, which pauses that class.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

ARM_LIMITS = {"reads": (250.0, 25.0), "writes": (200.0, 10.0), "deletes": (200.0, 10.0)}
"""Operation class -> (bucket size, refill per second): the documented defaults."""


_EPSILON = 1e-9
SAFETY_MARGIN = 0.05


def operation_class(method: str) -> str:
    method = method.upper()
    return "reads" if method in ("GET", "HEAD") else "deletes" if method == "DELETE" else "writes"


@dataclass
class _Budget:
    size: float
    """The whole bucket (every client's)."""
    share: float
    refill_per_second: float
    """Our share of the refill."""
    tokens: float
    updated: float
    paused_until: float = 0.0

    @property
    def reserve(self) -> float:
        """What is left for other clients: we never spend the bucket below it. At least a twentieth of it even at
        share 1, for the requests in flight between ARM counting the bucket down and our reading of the header."""
        return max(self.size * (1 - self.share), self.size * SAFETY_MARGIN)


class Pacer:
    def __init__(
        self,
        *,
        share: float = 0.5,
        time_scale: float = 1.0,
        limits: dict[str, tuple[float, float]] | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        assert 0 < share <= 1 and time_scale > 0
        self._clock, self._sleep = clock, sleep
        self._lock = threading.Lock()
        now = clock()
        self._budgets = {
            # At most (1 - SAFETY_MARGIN) of the refill even at share 1: a bucket that others drained rebuilds its
            # reserve instead of being spent at exactly the rate it refills, one 429 away from empty.
            kind: _Budget(size, share, refill * min(share, 1 - SAFETY_MARGIN) * time_scale, size * share, now)
            for kind, (size, refill) in (limits or ARM_LIMITS).items()
        }
        self.waited_seconds = 0.0

    def _refill(self, budget: _Budget, now: float) -> None:
        budget.tokens = min(budget.size * budget.share, budget.tokens + (now - budget.updated) * budget.refill_per_second)
        budget.updated = now

    def acquire(self, kind: str) -> None:
        """Take one token of `kind`, waiting for it when there is none (or while a Retry-After lasts)."""
        while True:
            with self._lock:
                budget = self._budgets[kind]
                now = self._clock()
                self._refill(budget, now)
                if now < budget.paused_until:
                    wait = budget.paused_until - now
                elif budget.tokens >= 1 - _EPSILON:  # a refill computed in floats may land a hair below 1
                    budget.tokens = max(0.0, budget.tokens - 1)
                    return
                else:
                    wait = (1 - budget.tokens) / budget.refill_per_second
                self.waited_seconds += wait
            self._sleep(wait)

    def observe(self, kind: str, remaining: float) -> None:
        """ARM says `remaining` tokens are left in the whole bucket: never more for us than that above the reserve.
        Below the reserve the model goes into debt, so nothing is spent until the bucket has rebuilt it (spending
        each token as it refills would keep the bucket one request away from a 429)."""
        with self._lock:
            budget = self._budgets[kind]
            self._refill(budget, self._clock())
            budget.tokens = min(budget.tokens, remaining - budget.reserve)

    def throttled(self, kind: str, retry_after_seconds: float | None) -> None:
        """A 429: nothing of that class until Retry-After has passed (or one token's refill time without it)."""
        with self._lock:
            budget = self._budgets[kind]
            now = self._clock()
            wait = retry_after_seconds if retry_after_seconds is not None else 1 / budget.refill_per_second
            self._refill(budget, now)
            budget.paused_until = max(budget.paused_until, now + wait)
            budget.tokens = min(budget.tokens, 0.0)  # a debt the header told of stays owed


_pacers: dict[tuple[str, str, float, float], Pacer] = {}
_pacers_lock = threading.Lock()


def pacer_for(endpoint: str, subscription_id: str, *, share: float, time_scale: float) -> Pacer:
    """One Pacer per ARM endpoint and subscription in the worker: every run and every client built shares it."""
    key = (endpoint, subscription_id, share, time_scale)
    with _pacers_lock:
        if key not in _pacers:
            _pacers[key] = Pacer(share=share, time_scale=time_scale)
        return _pacers[key]
