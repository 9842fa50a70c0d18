"""The backend step: read Kubernetes and APIM -> plan -> (apply) -> report. Nothing else.

Level-based: whatever asked for the run (timer, HTTP, event) only chooses the scope. A failed read of
either side ends the run before planning, so it can never turn into "desired: nothing" and delete.
Dry-run is this one branch, not a mode of every adapter.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from shared.backends import plan
from shared.backends.apply import apply_plan
from shared.backends.exposure import Exposure, of_view
from shared.backends.report import build_report
from shared.core import naming
from shared.core.errors import SyncError
from shared.core.model import BackendId, ObservedBackend, Reason, ServiceRef
from shared.core.reporting import Report, RunError
from shared.core.scope import Scope
from shared.runtime.cluster import read_cluster, with_retries
from shared.runtime.counters import RequestCounter
from shared.runtime.deadline import Deadline
from shared.runtime.ports import Dependencies


def reconcile(
    scope: Scope,
    deps: Dependencies,
    *,
    dry_run: bool = False,
    allow_mass_delete: bool = False,
    backend_hints: frozenset[BackendId] = frozenset(),
    exposure: Exposure | None = None,
    before_deletes: Callable[[], bool] = lambda: True,
    deadline: Deadline | None = None,
) -> Report:
    """Reconcile what the scope covers. `backend_hints` are further backend ids worth a look (an event's
    record of the ids a Service used before it changed); they only widen what is read, never what is owned.

    `before_deletes` runs after the creates and updates and before any delete: the API step, which re-points
    policies away from the backends about to go. When it answers False (a policy could not be moved), no backend
    is deleted this run, so no policy is left naming a backend that does not exist.
    """
    started, requests_before = deps.monotonic(), deps.counter.snapshot()
    sync = deps.settings.sync

    def finish(**parts: object) -> Report:
        duration_ms = int((deps.monotonic() - started) * 1000)
        requests = RequestCounter.delta(requests_before, deps.counter.snapshot())
        return build_report(scope=scope, dry_run=dry_run, duration_ms=duration_ms, requests=requests, **parts)  # type: ignore[arg-type]

    try:
        exposure = exposure if exposure is not None else of_view(read_cluster(scope, deps), deps.settings)
    except SyncError as error:
        return finish(plan=None, desired=None, run_errors=[RunError.of(error, Reason.SOURCE_READ_FAILED.value)])
    wanted = list(exposure.outcomes.values())
    desired = plan.collect_desired(wanted)
    try:
        observed = _observe(scope, desired, backend_hints, deps)
    except SyncError as error:
        return finish(plan=None, desired=None, run_errors=[RunError.of(error, Reason.SINK_READ_FAILED.value)])
    # Decided again with the owner marks: of several Services naming one id, the one the backend's mark names keeps it.
    owners = {b: o.mark.source for b, o in observed.items() if o.mark is not None and o.mark.owner == sync.owner_id}
    desired = plan.collect_desired(wanted, owners)
    watched = frozenset(deps.settings.kube.namespaces)
    backend_plan = plan.plan_backends(desired, observed, owner=sync.owner_id, scope=scope, watched=watched)
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
            backend_id,
            desired.backends.get(backend_id),
            fresh,
            owner=sync.owner_id,
            scope=scope,
            held=desired.held,
            present=desired.present,
            watched=watched,
        )
        if isinstance(verdict, plan.CreateBackend | plan.UpdateBackend | plan.DeleteBackend):
            filtered = plan.apply_sync_policy(plan.BackendPlan(changes=(verdict,)), sync.policy)
            return filtered.changes[0] if filtered.changes else filtered.refusals[0]
        return verdict

    applied = apply_plan(
        backend_plan,
        deps.backends,
        decide_again=decide_again,
        before_deletes=before_deletes,
        deadline=deadline,
        concurrency=sync.apply_concurrency,
        attempts=sync.max_attempts,
        max_wait_seconds=sync.max_retry_wait_seconds,
        sleep=deps.sleep,
    )
    return finish(plan=backend_plan, desired=desired, outcomes=applied)


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
        return with_retries(deps, deps.backends.list_backends)
    assert scope.namespace is not None and scope.service is not None
    candidates = {naming.backend_id_for(ServiceRef(scope.cluster, scope.namespace, scope.service)), *desired.backends, *hints}
    found: dict[BackendId, ObservedBackend] = {}
    for backend_id in sorted(candidates):
        observed = with_retries(deps, partial(deps.backends.get_backend, backend_id))
        if observed is not None:
            found[backend_id] = observed
    return found
