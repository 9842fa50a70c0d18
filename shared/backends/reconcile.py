"""One reconcile run: read Kubernetes and APIM -> plan -> (apply) -> report. Nothing else.

Level-based: whatever asked for the run (timer, HTTP, event) only chooses the scope. A failed read of
either side ends the run before planning, so it can never turn into "desired: nothing" and delete.
Dry-run is this one branch, not a mode of every adapter.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from shared.backends import discovery, plan
from shared.backends.apply import BackendWriter, apply_plan
from shared.core import naming
from shared.core.errors import SyncError
from shared.core.model import BackendId, IngressView, ObservedBackend, Reason, ServiceRef, ServiceView
from shared.core.reporting import Report, RunError, build_report
from shared.core.scope import Scope
from shared.core.settings import Settings
from shared.runtime.counters import RequestCounter
from shared.runtime.retry import call_with_retries

if TYPE_CHECKING:
    from shared.adapters.apim_apis import ApimApis

T = TypeVar("T")


class Source(Protocol):
    def list_services(self, scope: Scope) -> list[ServiceView]: ...

    def list_ingresses(self, scope: Scope) -> list[IngressView]: ...

    def get_service(self, namespace: str, name: str) -> ServiceView | None: ...

    def get_ingress(self, namespace: str, name: str) -> IngressView | None: ...

    def patch(self, kind: str, namespace: str, name: str, body: dict[str, Any]) -> None: ...

    def get_secret(self, namespace: str, name: str) -> dict[str, Any] | None: ...

    def create_secret(self, namespace: str, body: dict[str, Any]) -> None: ...

    def get_configmap_value(self, namespace: str, name: str, key: str) -> str | None: ...


class Sink(BackendWriter, Protocol):
    def list_backends(self) -> dict[BackendId, ObservedBackend]: ...

    def get_service(self) -> dict[str, Any]: ...

    def list_certificates(self) -> list[dict[str, Any]]: ...

    def put_certificate(self, certificate_id: str, properties: dict[str, Any]) -> str: ...

    def delete_certificate(self, certificate_id: str) -> None: ...

    def set_backend_certificates(self, backend_id: BackendId, certificate_ids: list[str], *, owner: str) -> bool: ...

    def api_store(self) -> ApimApis: ...


ClusterView = tuple[list[ServiceView], list[IngressView]]


@dataclass(frozen=True)
class Dependencies:
    settings: Settings
    source: Source
    sink: Sink
    counter: RequestCounter = field(default_factory=RequestCounter)
    sleep: Callable[[float], None] = time.sleep
    monotonic: Callable[[], float] = time.monotonic
    wall_clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    """Certificate lifetimes are decided against it."""
    credential: Any = None
    """The Azure credential the adapters were built with (Key Vault uses it too)."""


def annotation_context(settings: Settings) -> discovery.AnnotationContext:
    return discovery.AnnotationContext(
        cluster=settings.kube.cluster_name,
        owner=settings.sync.owner_id,
        prefix=settings.sync.annotation_prefix,
        default_mode=settings.sync.default_mode,
        public_auth_header=settings.public_auth.header_name,
        public_auth_named_value=settings.public_auth.named_value,
    )


def reconcile(
    scope: Scope,
    deps: Dependencies,
    *,
    dry_run: bool = False,
    allow_mass_delete: bool = False,
    backend_hints: frozenset[BackendId] = frozenset(),
    cluster: ClusterView | None = None,
) -> Report:
    """Reconcile what the scope covers. `backend_hints` are further backend ids worth a look (an event's
    record of the ids a Service used before it changed); they only widen what is read, never what is owned.
    """
    started, requests_before = deps.monotonic(), deps.counter.snapshot()
    sync = deps.settings.sync

    def finish(**parts: object) -> Report:
        duration_ms = int((deps.monotonic() - started) * 1000)
        requests = RequestCounter.delta(requests_before, deps.counter.snapshot())
        return build_report(scope=scope, dry_run=dry_run, duration_ms=duration_ms, requests=requests, **parts)  # type: ignore[arg-type]

    context = annotation_context(deps.settings)
    try:
        services, ingresses = cluster if cluster is not None else read_cluster(scope, deps)
    except SyncError as error:
        return finish(plan=None, desired=None, run_errors=[_run_error(Reason.SOURCE_READ_FAILED, error)])
    routes = [route for ingress in ingresses for route in ingress.routes]
    outcomes = [discovery.backend_for(service, routes, context) for service in services]
    desired = plan.collect_desired(o for o in outcomes if o is not None)
    try:
        observed = _observe(scope, desired, backend_hints, deps)
    except SyncError as error:
        return finish(plan=None, desired=None, run_errors=[_run_error(Reason.SINK_READ_FAILED, error)])

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


def read_cluster(scope: Scope, deps: Dependencies) -> ClusterView:
    """Services in scope, and the Ingresses of the same scope when any Service is exposed (else none are needed)."""
    prefix = deps.settings.sync.annotation_prefix
    services = with_retries(deps, lambda: deps.source.list_services(scope))
    exposed = any(discovery.is_exposed(s.annotations, prefix) for s in services)
    ingresses = with_retries(deps, lambda: deps.source.list_ingresses(scope)) if exposed else []
    return services, ingresses


def failed_report(scope: Scope, error: SyncError, *, reason: Reason = Reason.SINK_READ_FAILED, dry_run: bool = False) -> Report:
    return build_report(scope=scope, dry_run=dry_run, plan=None, desired=None, run_errors=[_run_error(reason, error)])


def with_retries(deps: Dependencies, call: Callable[[], T]) -> T:
    sync = deps.settings.sync
    return call_with_retries(call, attempts=sync.max_attempts, max_wait_seconds=sync.max_retry_wait_seconds, sleep=deps.sleep)


def _observe(
    scope: Scope,
    desired: plan.DesiredSet,
    hints: frozenset[BackendId],
    deps: Dependencies,
) -> dict[BackendId, ObservedBackend]:
    """The backends the plan must see. One Service costs a GET per candidate id, never a list of all
    backends: its default id, the id it asks for now, and the ids the event says it used before.
    A backend renamed without a hint is found by the next cluster-wide run.
    """
    if scope.kind != "service":
        return with_retries(deps, deps.sink.list_backends)
    assert scope.namespace is not None and scope.service is not None
    candidates = {naming.backend_id_for(ServiceRef(scope.cluster, scope.namespace, scope.service)), *desired.backends, *hints}
    found: dict[BackendId, ObservedBackend] = {}
    for backend_id in sorted(candidates):
        observed = with_retries(deps, partial(deps.sink.get_backend, backend_id))
        if observed is not None:
            found[backend_id] = observed
    return found


def _run_error(reason: Reason, error: SyncError) -> RunError:
    return RunError.of(error, reason.value)
