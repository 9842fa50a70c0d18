"""Call a remote operation again after transient faults, with backoff that honours Retry-After.

The SDKs' own retry loops are switched off in the adapters so that this is the only one: it knows our
error classes, caps every wait (a Functions invocation and Event Grid's 30 s window are short), and takes
`sleep` as a parameter so tests can see the waits without waiting.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import TypeVar

from shared.core.errors import RetryableError

T = TypeVar("T")


def backoff_seconds(error: RetryableError, attempt: int, *, max_wait_seconds: float) -> float:
    if error.retry_after_seconds is not None:
        return min(error.retry_after_seconds, max_wait_seconds)
    exponential: float = 0.5 * 2 ** (attempt - 1)
    return min(max_wait_seconds, exponential) * random.uniform(0.5, 1.0)


def call_with_retries(call: Callable[[], T], *, attempts: int, max_wait_seconds: float, sleep: Callable[[float], None]) -> T:
    for attempt in range(1, attempts + 1):
        try:
            return call()
        except RetryableError as error:
            if attempt == attempts:
                raise
            sleep(backoff_seconds(error, attempt, max_wait_seconds=max_wait_seconds))
    raise AssertionError("unreachable")
