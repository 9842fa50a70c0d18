"""Execute a backend plan through a sink: ordered phases, bounded concurrency, per-change outcomes.

Every update and delete re-reads its backend first: the GET proves ownership and supplies the ETag for
If-Match in one response, and the change is decided again on what it returns (a Service edited or a
backend taken over since the plan was made). A 412 or conflict re-reads and re-decides; throttling and
5xx wait (Retry-After first) and try again; a permanent error ends that change only.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol

from shared.backends.plan import BackendChange, BackendPlan, CreateBackend, DeleteBackend, Refusal, UpdateBackend
from shared.core.errors import PermanentError, RetryableError
from shared.core.model import BackendId, DesiredBackend, ObservedBackend
from shared.core.reporting import Outcome
from shared.runtime.retry import backoff_seconds

Decider = Callable[[BackendId, ObservedBackend | None], "BackendChange | Refusal | BackendId | None"]


class BackendWriter(Protocol):
    def get_backend(self, backend_id: BackendId) -> ObservedBackend | None: ...

    def put_backend(self, desired: DesiredBackend, *, base: ObservedBackend | None) -> None: ...

    def delete_backend(self, backend_id: BackendId, *, etag: str | None) -> None: ...


def _execute(change: BackendChange, writer: BackendWriter) -> None:
    if isinstance(change, CreateBackend):
        writer.put_backend(change.desired, base=None)
    elif isinstance(change, UpdateBackend):
        writer.put_backend(change.desired, base=change.observed)
    else:
        writer.delete_backend(change.id, etag=change.observed.etag)


def apply_change(
    change: BackendChange,
    writer: BackendWriter,
    *,
    decide_again: Decider,
    attempts: int,
    max_wait_seconds: float,
    sleep: Callable[[float], None],
) -> Outcome:
    current: BackendChange = change
    for attempt in range(1, attempts + 1):
        try:
            if not (isinstance(change, CreateBackend) and attempt == 1):
                verdict = decide_again(change.id, writer.get_backend(change.id))
                if isinstance(verdict, Refusal):
                    return Outcome("refused", reason=verdict.reason.value, message=verdict.message, attempts=attempt)
                if verdict is None or isinstance(verdict, str):
                    return Outcome("noop", attempts=attempt)
                current = verdict
            _execute(current, writer)
            return Outcome("applied", attempts=attempt)
        except RetryableError as error:
            if attempt == attempts:
                return Outcome(
                    "failed",
                    reason=error.reason,
                    message=str(error),
                    retryable=True,
                    retry_after_seconds=error.retry_after_seconds,
                    attempts=attempt,
                )
            sleep(backoff_seconds(error, attempt, max_wait_seconds=max_wait_seconds))
        except PermanentError as error:
            return Outcome("failed", reason=error.reason, message=str(error), attempts=attempt)
    raise AssertionError("unreachable")


def apply_plan(
    plan: BackendPlan,
    writer: BackendWriter,
    *,
    decide_again: Decider,
    concurrency: int,
    attempts: int,
    max_wait_seconds: float,
    sleep: Callable[[float], None],
) -> dict[BackendId, Outcome]:
    """Creates, then updates, then deletes; each phase concurrent within itself."""
    outcomes: dict[BackendId, Outcome] = {}
    phases: Sequence[type] = (CreateBackend, UpdateBackend, DeleteBackend)
    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="apply") as pool:
        for kind in phases:
            batch = [c for c in plan.changes if isinstance(c, kind)]
            results = pool.map(
                lambda c: apply_change(
                    c,
                    writer,
                    decide_again=decide_again,
                    attempts=attempts,
                    max_wait_seconds=max_wait_seconds,
                    sleep=sleep,
                ),
                batch,
            )
            outcomes.update(zip((c.id for c in batch), results, strict=True))
    return outcomes
