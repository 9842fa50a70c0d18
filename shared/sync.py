"""A whole run for one scope: new and changed backends, APIs (policies re-pointed), old backends deleted, and
beside the APIs the allow-lists, on one read of the cluster and one answer to which Services are exposed and how
(shared.backends.exposure). That order means no policy ever names a backend that is gone; the allow-lists
spend Kubernetes' budget, not ARM's, so they go alongside the ARM-paced APIs rather than after them.

The entry point of every trigger (HTTP, timer, event). Each step is level-based and independent: a
failing backend change does not stop the allow-lists, and the report shows both.
"""

from __future__ import annotations

import contextvars
import json
import logging
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace

from shared.allowlists import refresh
from shared.allowlists.report import AllowListReport
from shared.apis import reconcile as apis_step
from shared.apis.report import ApisReport
from shared.backends import reconcile as backends_step
from shared.backends.exposure import Exposure, of_view
from shared.backends.report import failed_report
from shared.core.errors import LeaseHeld, SyncError
from shared.core.model import BackendId, Reason
from shared.core.reporting import Report
from shared.core.scope import Scope, Steps
from shared.core.settings import CertificateSource
from shared.runtime import telemetry
from shared.runtime.cluster import read_cluster, with_retries
from shared.runtime.coalesce import RUNS, Covered, across_instances
from shared.runtime.deadline import Deadline
from shared.runtime.ports import Dependencies, RunLedger

log = logging.getLogger(__name__)
TIME_SPENT = (
    "the run's time budget (RUN_TIME_BUDGET_SECONDS) was spent; what is left is deferred to the next run (the timer, "
    "or the next event), which plans it again from what APIM then holds"
)

__all__ = ["RunRequest", "Steps", "run"]


@dataclass(frozen=True)
class RunRequest:
    """What one run is asked to do; identical requests are equal, so they can share a run."""

    scope: Scope
    steps: Steps
    dry_run: bool
    allow_mass_delete: bool
    backend_hints: frozenset[BackendId]
    api_hints: frozenset[str]


def run(
    scope: Scope,
    deps: Dependencies,
    *,
    steps: Steps = Steps.ALL,
    dry_run: bool = False,
    allow_mass_delete: bool = False,
    backend_hints: frozenset[BackendId] = frozenset(),
    api_hints: frozenset[str] = frozenset(),
    coalesce: bool = False,
) -> Report:
    """One run for one scope. `coalesce`: shared with identical requests of this worker and, when the Functions
    storage account is configured, of every instance (shared.runtime.coalesce): 20 events for one scope arriving
    together cost at most two runs, and each caller is served by a run that started after it asked (events, the
    timer and HTTP resyncs ask for that). The run's time budget counts from the call, waiting included."""
    asked = deps.monotonic()
    request = RunRequest(scope, steps, dry_run, allow_mass_delete, backend_hints, api_hints)
    if not coalesce:
        return _run(request, deps, asked)
    ledger = None if dry_run else deps.run_ledger  # dry runs write nothing, so they need no turn
    if ledger is None:
        report = RUNS.run((request, id(deps)), lambda: _run(request, deps, asked))
    else:
        key = _ledger_key(request)
        try:
            asked_after = with_retries(deps, lambda: ledger.last_started(key))
        except SyncError as error:
            log.warning("runs not coordinated across instances: %s", error)
            return _uncoordinated(request, deps, asked, error)
        work = lambda: _across_instances(request, deps, ledger, key, asked, asked_after)  # noqa: E731
        report = RUNS.run((request, id(deps)), work, rank=asked_after)
    assert isinstance(report, Report)
    return report


def _across_instances(
    request: RunRequest, deps: Dependencies, ledger: RunLedger, key: str, asked: float, asked_after: int
) -> Report:
    budget = deps.settings.sync.run_budget_seconds
    ran: list[Report] = []

    def work() -> Report:
        ran.append(_run(request, deps, asked))
        return ran[0]

    try:
        outcome = across_instances(
            ledger,
            key,
            work,
            asked_after=asked_after,
            # Half the budget at most is spent waiting, so a run that gets its turn still has time for its work.
            give_up_at=asked + budget / 2,
            monotonic=deps.monotonic,
            sleep=deps.sleep,
        )
    except LeaseHeld as waited_too_long:
        return failed_report(request.scope, waited_too_long, reason=Reason.RUN_IN_PROGRESS_ELSEWHERE, dry_run=False)
    except SyncError as error:
        # The ledger failed (storage unreachable): the run's own report comes first, and a run that did not
        # happen happens uncoordinated, which is safe (every write is conditional) and costs only budget.
        log.warning("runs not coordinated across instances: %s", error)
        return ran[0] if ran else _uncoordinated(request, deps, asked, error)
    if isinstance(outcome, Covered):
        return _covered(request, outcome)
    return outcome


def _uncoordinated(request: RunRequest, deps: Dependencies, asked: float, error: SyncError) -> Report:
    report = _run(request, deps, asked)
    return replace(report, notes=(*report.notes, f"not coordinated with other instances: {error}"))


def _ledger_key(request: RunRequest) -> str:
    """The same text for the same request in every instance (a frozenset's order is not)."""
    return json.dumps(
        {
            "scope": request.scope.to_json(),
            "steps": request.steps.value,
            "allow_mass_delete": request.allow_mass_delete,
            "backend_hints": sorted(request.backend_hints),
            "api_hints": sorted(request.api_hints),
        },
        sort_keys=True,
    )


def _covered(request: RunRequest, covered: Covered) -> Report:
    note = (
        f"served by run {covered.number} of this request on another instance of the app, which started after this "
        "request was made; its report is in that instance's log"
    )
    return Report(scope=request.scope, dry_run=request.dry_run, notes=(note,), backends_reconciled=False)


def _run(request: RunRequest, deps: Dependencies, asked: float) -> Report:
    """One trace per run, a span per step, and the run's metrics from its report (shared.runtime.telemetry)."""
    attributes = {"scope": request.scope.kind, "steps": request.steps.value, "dry_run": str(request.dry_run).lower()}
    with deps.telemetry.span("aks_apim_sync.sync", attributes):
        report = _steps(request, deps, asked)
        # Inside the span, so the line carries the run's trace id in Application Insights.
        log.info("sync finished", extra={"counts": report.counts, "failed": report.failed, "scope": request.scope.kind})
    deps.telemetry.emit(telemetry.sync_points(report))
    return report


def _steps(request: RunRequest, deps: Dependencies, asked: float) -> Report:
    scope, steps, dry_run = request.scope, request.steps, request.dry_run
    span = deps.telemetry.span
    deadline = Deadline(asked + deps.settings.sync.run_budget_seconds, deps.monotonic)
    out_of_time = deadline.passed

    allow_mass_delete, backend_hints, api_hints = request.allow_mass_delete, request.backend_hints, request.api_hints
    started, requests_before = deps.monotonic(), deps.counter.snapshot()
    try:
        with span("aks_apim_sync.step.read_cluster"):
            exposure = of_view(read_cluster(scope, deps), deps.settings)
    except SyncError as error:
        return failed_report(scope, error, reason=Reason.SOURCE_READ_FAILED, dry_run=dry_run)
    apis: ApisReport | None = None
    allowlists_running: Future[AllowListReport] | None = None
    beside = ThreadPoolExecutor(max_workers=1, thread_name_prefix="allowlists-step")

    def allowlist_step() -> AllowListReport:
        if out_of_time():
            return AllowListReport(dry_run=dry_run, skipped=TIME_SPENT)
        with span("aks_apim_sync.step.allowlists"):
            return refresh.refresh(deps, scope=scope, dry_run=dry_run, exposure=exposure, deadline=deadline)

    def start_allowlists() -> None:
        """The allow-lists go beside the APIs: they spend Kubernetes' budget, not ARM's, so a large first sync
        need not keep thousands of patches for after its last API (in the run's trace: the context goes along)."""
        nonlocal allowlists_running
        if steps is not Steps.BACKENDS and allowlists_running is None:
            allowlists_running = beside.submit(contextvars.copy_context().run, allowlist_step)

    def api_step() -> bool:
        """Publish APIs and re-point their policies; backends are deleted only once this has succeeded."""
        nonlocal apis
        start_allowlists()
        if steps is Steps.ALL and apis is None and out_of_time():
            apis = ApisReport(dry_run=dry_run, skipped=TIME_SPENT)
        if steps is Steps.ALL and apis is None:
            with span("aks_apim_sync.step.apis"):
                apis = apis_step.reconcile_apis(
                    scope,
                    deps,
                    exposure,
                    dry_run=dry_run,
                    api_hints=api_hints,
                    allow_mass_delete=allow_mass_delete,
                    deadline=deadline,
                )
        return apis is None or not apis.failed

    try:
        if steps is Steps.ALLOWLIST:
            report = Report(
                scope=scope,
                dry_run=dry_run,
                notes=("backends not reconciled: only the allow-list step was asked for",),
                backends_reconciled=False,
            )
        else:
            with span("aks_apim_sync.step.backends"):
                report = backends_step.reconcile(
                    scope,
                    deps,
                    dry_run=dry_run,
                    allow_mass_delete=allow_mass_delete,
                    backend_hints=backend_hints,
                    exposure=exposure,
                    before_deletes=api_step,
                    deadline=deadline,
                )
        if not dry_run and deps.settings.mtls.source is not CertificateSource.NONE:
            report = _present_certificate(report, deps, exposure)
        api_step()  # when the backend step had no delete to wait for, the APIs come now
        if apis is not None:
            report = replace(report, apis=apis)
        if allowlists_running is not None:
            report = replace(report, allowlists=allowlists_running.result())
    finally:
        beside.shutdown(wait=True)
    if out_of_time():
        report = replace(report, notes=(*report.notes, f"incomplete: {TIME_SPENT}"))
    if scope.service is not None and not exposure.services:
        gone = (
            f"Service {scope.namespace}/{scope.service} does not exist (or is outside NAMESPACES): only what was made "
            "from it is cleaned up"
        )
        report = replace(report, notes=(*report.notes, gone))
    requests = deps.counter.delta(requests_before, deps.counter.snapshot())
    return replace(report, duration_ms=int((deps.monotonic() - started) * 1000), requests=requests)


def _present_certificate(report: Report, deps: Dependencies, exposure: Exposure) -> Report:
    """New ingress backends present the client certificate in use at once, not at the next rotation run."""
    created = [c["id"] for c in report.changes if c["action"] == "create" and c["outcome"] == "applied"]
    if not created:
        return report
    from shared.rotation import rotate  # cryptography: loaded only when there is something to present

    try:
        ingress = rotate.ingress_backends_among(exposure, created)
        pointed = rotate.present_active_certificate(deps, ingress)
    except SyncError as error:
        note = f"new ingress backends got no client certificate yet ({error}); the next rotation run gives it"
        return replace(report, notes=(*report.notes, note))
    if not pointed:
        return report
    return replace(report, notes=(*report.notes, f"{pointed} new ingress backend(s) present the client certificate in use"))
