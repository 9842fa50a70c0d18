"""One reconcile run: read Kubernetes and APIM -> plan -> (apply) -> report. Nothing else.

Level-based: whatever asked for the run (timer, HTTP, event) only chooses the scope. A failed read of
either side ends the run before planning, so it can never turn into "desired: nothing" and delete.
Dry-run is this one branch, not a mode of every adapter.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

from shared import discovery, plan
from shared.apply import BackendWriter, apply_plan
from shared.counters import RequestCounter
from shared.errors import SyncError
from shared.model import BackendId, IngressRoute, ObservedBackend, Reason, ServiceView
from shared.report import Report, RunError, build_report
from shared.retry import call_with_retries
from shared.scope import Scope
from shared.settings import Settings

T = TypeVar("T")


class Source(Protocol):
    def list_services(self, scope: Scope) -> list[ServiceView]: ...

    def list_ingress_routes(self, scope: Scope) -> list[IngressRoute]: ...


class Sink(BackendWriter, Protocol):
    def list_backends(self) -> dict[BackendId, ObservedBackend]: ...


@dataclass(frozen=True)
class Dependencies:
    settings: Settings
    source: Source
    sink: Sink
    counter: RequestCounter = field(default_factory=RequestCounter)
    sleep: Callable[[float], None] = time.sleep
    monotonic: Callable[[], float] = time.monotonic


def annotation_context(settings: Settings) -> discovery.AnnotationContext:
    return discovery.AnnotationContext(
        cluster=settings.kube.cluster_name,
        owner=settings.sync.owner_id,
        prefix=settings.sync.annotation_prefix,
        default_mode=settings.sync.default_mode,
        public_auth_header=settings.public_auth.header_name,
        public_auth_named_value=settings.public_auth.named_value,
    )


def reconcile(scope: Scope, deps: Dependencies, *, dry_run: bool = False, allow_mass_delete: bool = False) -> Report:
    started, requests_before = deps.monotonic(), deps.counter.snapshot()
    sync = deps.settings.sync

    def finish(**parts: object) -> Report:
        duration_ms = int((deps.monotonic() - started) * 1000)
        requests = RequestCounter.delta(requests_before, deps.counter.snapshot())
        return build_report(scope=scope, dry_run=dry_run, duration_ms=duration_ms, requests=requests, **parts)  # type: ignore[arg-type]

    def read(call: Callable[[], T]) -> T:
        return call_with_retries(call, attempts=sync.max_attempts, max_wait_seconds=sync.max_retry_wait_seconds, sleep=deps.sleep)

    try:
        services = read(lambda: deps.source.list_services(scope))
        routes = read(lambda: deps.source.list_ingress_routes(scope)) if services else []
    except SyncError as error:
        return finish(plan=None, desired=None, run_errors=[_run_error(Reason.SOURCE_READ_FAILED, error)])
    try:
        observed = read(deps.sink.list_backends)
    except SyncError as error:
        return finish(plan=None, desired=None, run_errors=[_run_error(Reason.SINK_READ_FAILED, error)])

    context = annotation_context(deps.settings)
    outcomes = [discovery.backend_for(service, routes, context) for service in services]
    desired = plan.collect_desired(o for o in outcomes if o is not None)
    backend_plan = plan.plan_backends(desired, observed, owner=sync.owner_id, scope=scope)
    backend_plan = plan.apply_sync_policy(backend_plan, sync.policy)
    backend_plan = plan.cap_deletes(
        backend_plan,
        max_deletes=sync.max_deletes_per_run,
        max_fraction=sync.max_delete_fraction,
        allow_mass_delete=allow_mass_delete or sync.allow_mass_delete,
    )
    if dry_run or not backend_plan.changes:
        return finish(plan=backend_plan, desired=desired)

    def decide_again(
        backend_id: BackendId, fresh: ObservedBackend | None
    ) -> plan.BackendChange | plan.Refusal | BackendId | None:
        verdict = plan.decide(
            backend_id, desired.backends.get(backend_id), fresh, owner=sync.owner_id, scope=scope, held=desired.held
        )
        if isinstance(verdict, plan.CreateBackend | plan.UpdateBackend | plan.DeleteBackend):
            filtered = plan.apply_sync_policy(plan.BackendPlan(changes=(verdict,)), sync.policy)
            return filtered.changes[0] if filtered.changes else filtered.refusals[0]
        return verdict

    applied = apply_plan(
        backend_plan,
        deps.sink,
        decide_again=decide_again,
        concurrency=sync.apply_concurrency,
        attempts=sync.max_attempts,
        max_wait_seconds=sync.max_retry_wait_seconds,
        sleep=deps.sleep,
    )
    return finish(plan=backend_plan, desired=desired, outcomes=applied)


def _run_error(reason: Reason, error: SyncError) -> RunError:
    return RunError(
        reason=reason.value,
        message=str(error),
        retryable=error.retryable,
        retry_after_seconds=getattr(error, "retry_after_seconds", None),
    )
