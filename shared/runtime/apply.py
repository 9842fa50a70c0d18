"""The apply contract every step that writes keeps (backends, APIs, allow-lists), for one planned change:

    write with the precondition the change carries (If-Match / resourceVersion / If-None-Match)
    ├── done                     -> applied
    ├── ConcurrentEdit (409/412) -> re-read that one object and decide again, at once (no wait): the
    │                               decision is a new change (written next), nothing to do (noop) or a
    │                               refusal (the object is no longer ours to change)
    ├── other RetryableError     -> wait (Retry-After first, capped), re-read, decide again, write
    └── PermanentError           -> failed; only this change
Changes that carry no precondition of their own are re-read and decided again before the first write too.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from shared.core.errors import ConcurrentEdit, PermanentError, RetryableError
from shared.core.reporting import Outcome
from shared.runtime.retry import backoff_seconds

C = TypeVar("C")


@dataclass(frozen=True)
class Refused:
    """Deciding again showed the change must not be made."""

    reason: str
    message: str


class NothingToDo:
    """Deciding again showed the object already holds what is wanted."""


NOTHING_TO_DO = NothingToDo()


@dataclass(frozen=True)
class Writer(Generic[C]):
    """How one step writes a change and decides it again on a fresh read of its object."""

    write: Callable[[C], None]
    decide_again: Callable[[C], C | Refused | NothingToDo]
    read_first: Callable[[C], bool] = lambda _change: False
    """True for a change that carries no precondition: it is re-read and decided before its first write."""


def apply_change(
    change: C, writer: Writer[C], *, attempts: int, max_wait_seconds: float, sleep: Callable[[float], None]
) -> tuple[Outcome, C]:
    """The outcome, and the change as last decided (what was written, or would have been)."""
    current = change
    fresh_read_due = writer.read_first(change)
    for attempt in range(1, attempts + 1):
        try:
            if fresh_read_due:
                verdict = writer.decide_again(current)
                if isinstance(verdict, Refused):
                    return Outcome("refused", reason=verdict.reason, message=verdict.message, attempts=attempt), current
                if isinstance(verdict, NothingToDo):
                    return Outcome("noop", attempts=attempt), current
                current = verdict
            writer.write(current)
            return Outcome("applied", attempts=attempt), current
        except RetryableError as error:
            if attempt == attempts:
                failed = Outcome(
                    "failed",
                    reason=error.reason,
                    message=str(error),
                    retryable=True,
                    retry_after_seconds=error.retry_after_seconds,
                    attempts=attempt,
                )
                return failed, current
            if not isinstance(error, ConcurrentEdit):
                sleep(backoff_seconds(error, attempt, max_wait_seconds=max_wait_seconds))
            fresh_read_due = True
        except PermanentError as error:
            return Outcome("failed", reason=error.reason, message=str(error), attempts=attempt), current
    raise AssertionError("unreachable")
