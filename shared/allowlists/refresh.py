"""One allow-list run: read APIM's addresses and the managed objects, plan, patch, report.

Nothing is written unless APIM reports usable addresses: an empty list would admit everyone. A patch
that meets a concurrent edit (409 on the resourceVersion) re-reads that object and decides again.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from shared.allowlists import addresses
from shared.allowlists import writers as allowlist
from shared.allowlists.report import AllowListReport
from shared.backends.exposure import Exposure, of_view
from shared.core.errors import SyncError
from shared.core.model import Reason
from shared.core.reporting import RunError
from shared.core.scope import Scope
from shared.runtime.apply import NOTHING_TO_DO, NothingToDo, Writer, apply_change
from shared.runtime.cluster import read_cluster, with_retries
from shared.runtime.deadline import Deadline
from shared.runtime.ports import Dependencies
from shared.runtime.workers import start_each


def writers(deps: Dependencies, exposure: Exposure) -> list[allowlist.AllowListWriter]:
    """The writers the settings choose. The Istio writer is handed the AuthorizationPolicies of each managed
    Gateway's namespace (one list per namespace, only when there is a managed Gateway)."""
    found: list[allowlist.AllowListWriter] = [
        allowlist.IngressNginxWriter(deps.settings.allowlist.annotation),
        allowlist.LoadBalancerWriter(),
    ]
    if "HTTPRoute" not in deps.settings.kube.route_kinds:
        return found
    chosen = deps.settings.allowlist.gateway_writers
    if "infrastructure" in chosen:
        found.append(allowlist.GatewayInfrastructureWriter())
    if "generated-service" in chosen:
        found.append(allowlist.GeneratedServiceWriter())
    if "istio" in chosen:
        namespaces = sorted({str((g.get("metadata") or {}).get("namespace") or "") for g in exposure.managed_gateways()})
        policies = {ns: with_retries(deps, lambda n=ns: deps.cluster.list_authorization_policies(n)) for ns in namespaces}  # type: ignore[misc]
        found.append(allowlist.IstioAuthorizationPolicyWriter(deps.settings.sync.owner_id, policies))
    return found


def refresh(
    deps: Dependencies,
    *,
    scope: Scope | None = None,
    dry_run: bool = False,
    exposure: Exposure | None = None,
    deadline: Deadline | None = None,
) -> AllowListReport:
    """`exposure` passes what the run already read and worked out for the same scope, saving a second read.
    Once the run's deadline has passed no further object is written: the rest is deferred to the next run."""
    settings = deps.settings.allowlist
    if not settings.enabled:
        return AllowListReport(dry_run=dry_run, skipped="ALLOWLIST_ENABLED is false")
    scope = scope or Scope(deps.settings.kube.cluster_name)
    try:
        exposure = exposure if exposure is not None else of_view(read_cluster(scope, deps), deps.settings)
    except SyncError as error:
        return AllowListReport(dry_run=dry_run, error=RunError.of(error, Reason.SOURCE_READ_FAILED.value))
    targets: list[tuple[allowlist.Target, allowlist.AllowListWriter]] = []
    findings: list[allowlist.Finding] = []
    try:
        chosen = writers(deps, exposure)
    except SyncError as error:
        return AllowListReport(dry_run=dry_run, error=RunError.of(error, Reason.SOURCE_READ_FAILED.value))
    for writer in chosen:
        found_targets, found = writer.targets(exposure)
        findings.extend(found)
        targets.extend((target, writer) for target in found_targets)
    if not targets:
        # Nothing to write in this scope: APIM's addresses are not even read.
        return AllowListReport(dry_run=dry_run, findings=_shown(findings))

    try:
        service = with_retries(deps, deps.apim_service.get_service)
    except SyncError as error:
        return AllowListReport(
            dry_run=dry_run, error=RunError.of(error, Reason.SINK_READ_FAILED.value), findings=_shown(findings)
        )
    cidrs = addresses.allowed_cidrs(addresses.addresses_from_service(service), settings.policy)
    if isinstance(cidrs, addresses.NoUsableAddresses):
        unusable = RunError(cidrs.reason, cidrs.why, cidrs.retryable, retry_after_seconds=60 if cidrs.retryable else None)
        return AllowListReport(dry_run=dry_run, error=unusable, findings=_shown(findings))

    planned: list[tuple[allowlist.AllowListChange, allowlist.AllowListWriter]] = []
    unchanged = 0
    for target, writer in targets:
        change = allowlist.change_for(target, cidrs, writer)
        if change is None:
            unchanged += 1
        else:
            planned.append((change, writer))
    if settings.ingress_controller and any(t.kind == "Ingress" for t, _ in targets):
        namespace, name = settings.ingress_controller.split("/", 1)
        try:
            controller = with_retries(deps, lambda: deps.cluster.get_service(namespace, name))
            findings.extend(allowlist.controller_findings(controller, settings.ingress_controller))
        except SyncError as error:
            findings.append(
                allowlist.Finding(f"Service {settings.ingress_controller}", Reason.INGRESS_CONTROLLER_UNREADABLE, str(error))
            )

    if dry_run:
        entries = [_entry(change, "planned") for change, _ in planned]
    else:
        deadline = deadline or Deadline.never()

        def apply_in_time(change: allowlist.AllowListChange, writer: allowlist.AllowListWriter) -> dict[str, Any]:
            if deadline.passed():
                return _entry(change, "deferred", error_reason=Reason.TIME_BUDGET_SPENT)
            with deadline.piece():
                return _apply(change, writer, deps)

        # Side by side (each patch carries the resourceVersion it was planned on, so two writers of one object
        # meet as a 409, which is re-read and decided again): a first sync's thousands of patches end sooner.
        workers = deps.settings.sync.apply_concurrency
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="allowlists") as pool:
            entries = start_each(pool, lambda planned_change: apply_in_time(*planned_change), planned, workers=workers)()
        unchanged += sum(1 for e in entries if e["outcome"] == "noop")
        entries = [e for e in entries if e["outcome"] != "noop"]
    return AllowListReport(
        dry_run=dry_run,
        cidrs=cidrs,
        changes=tuple(entries),
        unchanged=unchanged,
        findings=_shown(findings),
    )


def _shown(findings: Sequence[allowlist.Finding]) -> tuple[dict[str, str], ...]:
    return tuple({"object": f.object, "reason": f.reason, "message": f.message} for f in findings)


def _entry(change: allowlist.AllowListChange, outcome: str, **extra: Any) -> dict[str, Any]:
    before = sorted({value for _, value in change.target.held if value is not None})
    return {
        "object": change.target.object,
        "fields": [name for name, _ in change.target.held],
        "before": before[0] if len(before) == 1 else (before or None),
        "after": ",".join(change.cidrs),
        "reason": Reason.RESTORED if change.restored else Reason.ALLOWLIST_SET,
        "outcome": outcome,
        **extra,
    }


def _writer(deps: Dependencies) -> Writer[tuple[allowlist.AllowListChange, allowlist.AllowListWriter]]:
    Planned = tuple[allowlist.AllowListChange, allowlist.AllowListWriter]

    def write(planned: Planned) -> None:
        target, body = planned[0].target, dict(planned[0].patch)
        if not target.resource_version:  # nothing there yet: an object this deployment owns outright
            deps.cluster_writer.create(target.kind, target.namespace, body)
        else:
            deps.cluster_writer.patch(target.kind, target.namespace, target.name, body)

    def decide_again(planned: Planned) -> Planned | NothingToDo:
        change, writer = planned
        target = change.target
        read: dict[str, Any] = {
            "Ingress": deps.cluster.get_ingress,
            "Gateway": deps.cluster.get_gateway,
            "AuthorizationPolicy": deps.cluster.get_authorization_policy,
            "Service": deps.cluster.get_service,
        }
        refreshed = writer.target_of(read[target.kind](target.namespace, target.name), target)
        again = allowlist.change_for(refreshed, change.cidrs, writer) if refreshed is not None else None
        return (again, writer) if again is not None else NOTHING_TO_DO

    return Writer(write=write, decide_again=decide_again)


def _apply(change: allowlist.AllowListChange, writer: allowlist.AllowListWriter, deps: Dependencies) -> dict[str, Any]:
    """Each patch carries the resourceVersion it was planned on; see shared.runtime.apply for the rest."""
    sync = deps.settings.sync
    outcome, (last, _) = apply_change(
        (change, writer),
        _writer(deps),
        attempts=sync.max_attempts,
        max_wait_seconds=sync.max_retry_wait_seconds,
        sleep=deps.sleep,
    )
    extra: dict[str, Any] = {"attempts": outcome.attempts} if outcome.attempts > 1 and outcome.status == "applied" else {}
    if outcome.status == "failed":
        extra = {"message": outcome.message, "retryable": outcome.retryable}
    return _entry(last, outcome.status, **extra)
