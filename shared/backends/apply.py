"""Execute a backend plan: ordered phases, bounded concurrency, each change under the apply contract
(shared.runtime.apply).

Updates and deletes are planned from a list, which carries no ETags: each is re-read first, and the GET
proves ownership and supplies the ETag for If-Match in one response; the change is decided again on what it
returns (a Service edited or a backend taken over since the plan was made). Creates carry If-None-Match.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol

from shared.backends.plan import BackendChange, BackendPlan, CreateBackend, DeleteBackend, Refusal, UpdateBackend
from shared.core.model import BackendId, DesiredBackend, ObservedBackend, Reason
from shared.core.reporting import Outcome
from shared.runtime.apply import NOTHING_TO_DO, NothingToDo, Refused, Writer, apply_change
from shared.runtime.deadline import Deadline
from shared.runtime.workers import start_each

DELETE_WAITS = "an API policy could not be moved off this backend yet; it is deleted by a later run, once nothing routes to it"

DEFERRED = Outcome(
    "deferred",
    reason=Reason.TIME_BUDGET_SPENT.value,
    message="not started: the run's time budget (RUN_TIME_BUDGET_SECONDS) was spent; the next run continues",
    retryable=True,
)

Decider = Callable[[BackendId, ObservedBackend | None], "BackendChange | Refusal | BackendId | None"]


class BackendWriter(Protocol):
    def get_backend(self, backend_id: BackendId) -> ObservedBackend | None: ...

    def put_backend(self, desired: DesiredBackend, *, base: ObservedBackend | None) -> None: ...

    def delete_backend(self, backend_id: BackendId, *, etag: str | None) -> None: ...


def _write(change: BackendChange, store: BackendWriter) -> None:
    if isinstance(change, CreateBackend):
        store.put_backend(change.desired, base=None)
    elif isinstance(change, UpdateBackend):
        store.put_backend(change.desired, base=change.observed)
    else:
        store.delete_backend(change.id, etag=change.observed.etag)


def backend_writer(store: BackendWriter, decide: Decider) -> Writer[BackendChange]:
    def decide_again(change: BackendChange) -> BackendChange | Refused | NothingToDo:
        verdict = decide(change.id, store.get_backend(change.id))
        if isinstance(verdict, Refusal):
            return Refused(verdict.reason.value, verdict.message)
        if verdict is None or isinstance(verdict, str):
            return NOTHING_TO_DO
        return verdict

    return Writer(
        write=lambda change: _write(change, store),
        decide_again=decide_again,
        read_first=lambda change: not isinstance(change, CreateBackend),
    )


def apply_plan(
    plan: BackendPlan,
    store: BackendWriter,
    *,
    decide_again: Decider,
    concurrency: int,
    attempts: int,
    max_wait_seconds: float,
    sleep: Callable[[float], None],
    before_deletes: Callable[[], bool] = lambda: True,
    deadline: Deadline | None = None,
) -> dict[BackendId, Outcome]:
    """Creates, then updates, then `before_deletes` (what must move off the old backends first), then deletes;
    each phase concurrent within itself. Deletes wait for a later run when `before_deletes` answers False.
    Once the deadline has passed no further write starts: the rest is `deferred` to the next run, which plans
    it again from what APIM then holds (nothing written is written twice)."""
    deadline = deadline or Deadline.never()
    writer = backend_writer(store, decide_again)
    outcomes: dict[BackendId, Outcome] = {}
    phases: Sequence[type] = (CreateBackend, UpdateBackend, DeleteBackend)
    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="apply") as pool:
        for kind in phases:
            batch = [c for c in plan.changes if isinstance(c, kind)]
            if kind is DeleteBackend and not before_deletes():
                waiting = Outcome("refused", reason=Reason.DELETE_WAITS_FOR_ROUTING.value, message=DELETE_WAITS)
                outcomes.update((c.id, waiting) for c in batch)
                continue

            def one(change: BackendChange) -> Outcome:
                if deadline.passed():
                    return DEFERRED
                with deadline.piece():
                    return apply_change(change, writer, attempts=attempts, max_wait_seconds=max_wait_seconds, sleep=sleep)[0]

            results = start_each(pool, one, batch, workers=concurrency)()
            outcomes.update(zip((c.id for c in batch), results, strict=True))
    return outcomes
