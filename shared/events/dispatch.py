"""Carry out what one event asks for (see shared.events.routing for the routing table), and say how it went.

The shell around the pure router: it reads the truth for the scope the event names and reconciles it.
An event never carries desired state here; at most it widens what is read (backend hints).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from shared import sync
from shared.backends.report import failed_report
from shared.core.errors import SyncError
from shared.core.model import ServiceRef
from shared.core.reporting import Report
from shared.core.scope import Scope
from shared.core.settings import CertificateSource, Settings
from shared.events import routing as events
from shared.rotation.report import RotationReport
from shared.runtime import ports
from shared.runtime.cluster import with_retries


@dataclass(frozen=True)
class EventResult:
    event_id: str
    action: str
    why: str
    report: Report | None = None
    notable: bool = False
    malformed: bool = False
    rotation: RotationReport | None = None
    """A Key Vault event's rotation check."""
    expired: bool = False
    """The event says a certificate the app uses has expired."""

    @property
    def failed(self) -> bool:
        ran = self.report or self.rotation
        return ran is not None and ran.failed

    @property
    def retryable(self) -> bool:
        """True when redelivery can help: every failure of the run was transient."""
        ran = self.report or self.rotation
        return ran is not None and ran.failed and ran.retryable


def event_context(deps: ports.Dependencies) -> events.EventContext:
    settings = deps.settings
    return events.EventContext(
        cluster=settings.kube.cluster_name,
        apim_service_id=settings.apim.service_id,
        aks_resource_id=settings.events.aks_resource_id,
        trusted_sources=frozenset(settings.events.trusted_sources),
        key_vault_objects=_key_vault_objects(settings),
    )


def _key_vault_objects(settings: Settings) -> frozenset[events.KeyVaultObject]:
    mtls, found = settings.mtls, set()
    if mtls.source is CertificateSource.KEYVAULT and mtls.keyvault_secret_id:
        origin, _, rest = mtls.keyvault_secret_id.rstrip("/").partition("/secrets/")
        found.add(events.KeyVaultObject(origin, rest.split("/")[0]))
    if mtls.ca_keyvault_url:
        found.add(events.KeyVaultObject(mtls.ca_keyvault_url.rstrip("/"), mtls.ca_keyvault_name))
    return frozenset(found)


def handle_event(raw: Mapping[str, Any], deps: ports.Dependencies) -> EventResult:
    event_id = str(raw.get("id") or "?") if isinstance(raw, Mapping) else "?"
    action = events.route(raw, event_context(deps))
    name = type(action).__name__
    if isinstance(action, events.Malformed):
        return EventResult(event_id, name, action.why, malformed=True)
    if isinstance(action, events.Acknowledge):
        return EventResult(event_id, name, action.why, notable=action.notable)
    if isinstance(action, events.ReconcileScope):
        return _reconcile(event_id, name, action.why, action.scope, deps, action.backend_hints, action.api_hints)
    if isinstance(action, events.RefreshAllowLists):
        cluster = Scope(deps.settings.kube.cluster_name)
        return EventResult(event_id, name, action.why, report=sync.run(cluster, deps, steps=sync.Steps.ALLOWLIST, coalesce=True))
    if isinstance(action, events.RecheckBackend):
        return _recheck_backend(event_id, name, action, deps)
    if isinstance(action, events.Rotate):
        from shared.rotation import rotate

        return EventResult(event_id, name, action.why, rotation=rotate.rotate(deps), expired=action.expired)
    return _recheck_api(event_id, name, action, deps)


def _recheck_api(event_id: str, name: str, action: events.RecheckApi, deps: ports.Dependencies) -> EventResult:
    """An API changed in APIM (portal, another tool): ours -> reconcile its namespace; gone -> a cluster-wide run."""
    from shared.apis import claims as apis

    cluster = deps.settings.kube.cluster_name
    if not deps.settings.apis.enabled:
        return EventResult(event_id, "Acknowledge", f"{action.why}; APIS_ENABLED is false")
    try:
        description = with_retries(deps, lambda: deps.apis.description(action.api_id))
    except SyncError as error:
        return EventResult(event_id, name, action.why, report=failed_report(Scope(cluster), error))
    if description is None:
        return _reconcile(event_id, name, f"{action.why}: gone, so a cluster-wide run decides", Scope(cluster), deps)
    mark = apis.parse_api_mark(description)
    if mark is None or mark[0] != deps.settings.sync.owner_id:
        return EventResult(event_id, "Acknowledge", f"{action.why}: not owned by this deployment, left alone")
    return _reconcile(
        event_id, name, f"{action.why}: owned, namespace {mark[1]} decides", Scope(cluster, namespace=mark[1]), deps
    )


def _reconcile(
    event_id: str,
    name: str,
    why: str,
    scope: Scope,
    deps: ports.Dependencies,
    hints: frozenset[Any] = frozenset(),
    api_hints: frozenset[str] = frozenset(),
) -> EventResult:
    return EventResult(event_id, name, why, report=sync.run(scope, deps, backend_hints=hints, api_hints=api_hints, coalesce=True))


def _recheck_backend(event_id: str, name: str, action: events.RecheckBackend, deps: ports.Dependencies) -> EventResult:
    """A backend was written or deleted through ARM: put back what its Service wants.

    Ours: reconcile the Service its mark names. Gone: the mark went with it, so only a cluster-wide run
    can tell whether a Service still wants it. Foreign: not ours to touch.
    """
    cluster = deps.settings.kube.cluster_name
    try:
        observed = with_retries(deps, lambda: deps.backends.get_backend(action.backend_id))
    except SyncError as error:
        report = failed_report(Scope(cluster), error)
        return EventResult(event_id, name, action.why, report=report)
    if observed is None:
        return _reconcile(event_id, name, f"{action.why}: gone, so a cluster-wide run decides", Scope(cluster), deps)
    mark = observed.mark
    if mark is None or mark.owner != deps.settings.sync.owner_id:
        return EventResult(event_id, "Acknowledge", f"{action.why}: not owned by this deployment, left alone")
    source: ServiceRef = mark.source
    if source.cluster != cluster:
        return EventResult(event_id, "Acknowledge", f"{action.why}: its Service is in cluster '{source.cluster}'")
    scope = Scope(cluster, namespace=source.namespace, service=source.name)
    return _reconcile(event_id, name, f"{action.why}: owned, its Service {source} decides", scope, deps)
