"""Throttling as Azure Resource Manager and the Kubernetes API server do it, for the emulators.

ARM (the "Understand how Azure Resource Manager throttles requests" page, token bucket algorithm): each
principal has, per subscription and region, a bucket per operation class: reads 250 with 25 refilled per
second, writes 200 with 10 per second, deletes 200 with 10 per second. A request takes one token; an empty
bucket answers 429 with Retry-After, and every answer carries x-ms-ratelimit-remaining-subscription-global-
{reads,writes,deletes} with what is left. The Kubernetes API server's priority and fairness answers 429 with
Retry-After when a flow's seats are taken; here that is a bucket of its own.

`time_scale` runs the clock faster so tests and benchmarks converge in seconds: a bucket refills time_scale
times faster, and Retry-After is then given in fractions of a second (real ARM answers whole seconds; the
fraction is the one liberty taken, and only with time_scale > 1).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

ARM_BUCKETS = {"reads": (250.0, 25.0), "writes": (200.0, 10.0), "deletes": (200.0, 10.0)}
"""Operation class -> (bucket size, tokens refilled per second), ARM's documented defaults."""
REMAINING_HEADER = "x-ms-ratelimit-remaining-subscription-global-{kind}"


def arm_operation_class(method: str) -> str:
    return "reads" if method in ("GET", "HEAD") else "deletes" if method == "DELETE" else "writes"


@dataclass
class _Bucket:
    size: float
    refill_per_second: float
    tokens: float
    updated: float


class TokenBuckets:
    """Thread-safe buckets by class. `enforce` off: they only count (the headers still tell what is left)."""

    def __init__(
        self,
        sizes: dict[str, tuple[float, float]] | None = None,
        *,
        time_scale: float = 1.0,
        enforce: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.time_scale, self.enforce, self._clock = time_scale, enforce, clock
        self._lock = threading.Lock()
        now = clock()
        self._buckets = {
            kind: _Bucket(size, refill * time_scale, size, now) for kind, (size, refill) in (sizes or ARM_BUCKETS).items()
        }
        self.answered_429 = 0

    def _refill(self, bucket: _Bucket) -> None:
        now = self._clock()
        bucket.tokens = min(bucket.size, bucket.tokens + (now - bucket.updated) * bucket.refill_per_second)
        bucket.updated = now

    def take(self, kind: str) -> float | None:
        """None: admitted (a token taken); else the seconds until a token is back (the request is refused)."""
        with self._lock:
            bucket = self._buckets[kind]
            self._refill(bucket)
            if bucket.tokens >= 1 - 1e-9 or not self.enforce:
                bucket.tokens = max(0.0, bucket.tokens - 1)
                return None
            self.answered_429 += 1
            return (1 - bucket.tokens) / bucket.refill_per_second

    def remaining(self, kind: str) -> int:
        with self._lock:
            bucket = self._buckets[kind]
            self._refill(bucket)
            return int(bucket.tokens)

    def retry_after_header(self, seconds: float) -> str:
        if self.time_scale == 1.0:
            return str(max(1, math.ceil(seconds)))
        return f"{max(seconds, 0.001):.3f}"
