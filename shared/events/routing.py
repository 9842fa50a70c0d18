"""Turn one delivered event into what to look at: a scope to reconcile, or why nothing is done.

Pure. Events are hints (level-triggered): an action names where to look, never what the truth is, so a
duplicated, reordered or lost event cannot leave APIM wrong. Event Grid does not sign events; the
source check below is defence in depth behind the function key, never authentication.

    event                                                   -> action
    ------------------------------------------------------  -----------------------------------------
    io.apim-sync.service.changed, subject .../services/x    ReconcileScope(one Service, backend hints)
    io.apim-sync.cluster.resync                             ReconcileScope(whole cluster)
    Microsoft.ContainerService.NodePoolRolling{Succeeded,   ReconcileScope(whole cluster)
      Failed}
    Microsoft.ApiManagement.{API,APIRelease}*               RecheckApi(api id)
    Microsoft.Resources.Resource{Write,Action}*, subject    RefreshAllowLists (the service's addresses
      = the APIM service                                      may have changed; the event has no properties)
    Microsoft.Resources.Resource*, subject = an APIM        RecheckBackend(backend id) (a hand edit or
      backend                                                 delete of a backend through ARM)
    any other type, or from a source not trusted            Acknowledge(reason) -- never acted on
    missing fields, unparsable subject                      Malformed(reason) -- acknowledged; redelivery
                                                              cannot help
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from shared.core.model import BackendId
from shared.core.naming import id_problem
from shared.core.scope import Scope
from shared.core.watcher_events import (
    CLUSTER_RESYNC,
    CLUSTER_SUBJECT,
    DATA_API_IDS,
    DATA_BACKEND_IDS,
    MAX_HINTS,
    SERVICE_CHANGED,
    SERVICE_SUBJECT,
    TRUST_CHANGED,
    watcher_source,
)

_APIM_CHILD = re.compile(r"^/(?P<collection>[A-Za-z]+)/(?P<id>[^/;]+)")
_AKS_RESYNC_TYPES = frozenset({"NodePoolRollingSucceeded", "NodePoolRollingFailed"})
_APIM_API_KINDS = ("APIRelease", "API")
_ARM_PREFIX = "Microsoft.Resources."
_KEYVAULT_PREFIX = "Microsoft.KeyVault."
_KEYVAULT_TYPES = frozenset(
    {
        "CertificateNewVersionCreated",
        "CertificateNearExpiry",
        "CertificateExpired",
        "SecretNewVersionCreated",
        "SecretNearExpiry",
        "SecretExpired",
    }
)
_KEYVAULT_FIELDS = {
    "id": ("Id", "id"),
    "vault": ("VaultName", "vaultName", "vault_name"),
    "name": ("ObjectName", "objectName", "object_name"),
}
"""Key Vault sends the data keys capitalised; the SDK models name them in camel (and snake) case."""


@dataclass(frozen=True)
class EventContext:
    """What the deployment is responsible for; everything else is acknowledged and left alone."""

    cluster: str
    apim_service_id: str
    aks_resource_id: str | None = None
    trusted_sources: frozenset[str] = frozenset()
    key_vault_objects: frozenset[KeyVaultObject] = frozenset()
    """The Key Vault certificate (keyvault mode) and the CA secret (CA_KEYVAULT_URL), if any."""

    def trusts(self, source: str, *also: str | None) -> bool:
        wanted = {s.lower() for s in (*self.trusted_sources, *also) if s}
        return source.lower().rstrip("/") in wanted


@dataclass(frozen=True)
class KeyVaultObject:
    """A Key Vault object the app uses: its vault's origin (https://<vault>.vault.azure.net) and its name."""

    origin: str
    name: str


@dataclass(frozen=True)
class Envelope:
    """The fields of one event that routing needs, whichever schema carried it."""

    id: str
    type: str
    source: str
    subject: str
    data: Any
    schema: str


@dataclass(frozen=True)
class ReconcileScope:
    scope: Scope
    why: str
    backend_hints: frozenset[BackendId] = field(default=frozenset())
    api_hints: frozenset[str] = field(default=frozenset())


@dataclass(frozen=True)
class RefreshAllowLists:
    why: str


@dataclass(frozen=True)
class RecheckApi:
    api_id: str
    why: str


@dataclass(frozen=True)
class RecheckBackend:
    backend_id: BackendId
    why: str


@dataclass(frozen=True)
class Rotate:
    """Run the rotation check: a Key Vault object the app uses changed or nears (or passed) its expiry."""

    why: str
    expired: bool = False


@dataclass(frozen=True)
class Acknowledge:
    """Not ours to act on; `notable` ones (circuit breaker, AKS support ending) are logged at warning."""

    why: str
    notable: bool = False


@dataclass(frozen=True)
class Malformed:
    why: str


Action = ReconcileScope | RefreshAllowLists | RecheckApi | RecheckBackend | Rotate | Acknowledge | Malformed


def envelope_from(raw: Mapping[str, Any]) -> Envelope | Malformed:
    """Read either schema (Event Grid or CloudEvents 1.0) into an Envelope, naming the first missing field."""
    if not isinstance(raw, Mapping):
        return Malformed("an event must be a JSON object")
    if "specversion" in raw:
        schema, names = "cloudevents", {"type": "type", "source": "source"}
        if str(raw.get("specversion")) != "1.0":
            return Malformed(f"specversion '{_shown(raw.get('specversion'))}' is not 1.0")
    elif "eventType" in raw or "topic" in raw:
        schema, names = "eventgrid", {"type": "eventType", "source": "topic"}
    else:
        casing = sorted(
            k for k in raw if k.lower() in ("specversion", "type", "eventtype") and k not in ("specversion", "eventType")
        )
        if casing:
            return Malformed(f"attribute names must be lowercase CloudEvents or Event Grid names; got {', '.join(casing)}")
        return Malformed(
            "neither a CloudEvent (specversion) nor an Event Grid event (eventType); the Functions host delivers a "
            "CloudEvent with capitalised attribute names (specVersion, Type) like this, without any field"
        )
    values: dict[str, str] = {}
    for key, wire in (("id", "id"), ("type", names["type"]), ("source", names["source"])):
        value = raw.get(wire)
        if not isinstance(value, str) or not value.strip():
            return Malformed(f"field '{wire}' is missing or empty")
        values[key] = value.strip()
    subject = raw.get("subject")
    if subject is not None and not isinstance(subject, str):
        return Malformed("field 'subject' must be a string")
    return Envelope(values["id"], values["type"], values["source"], subject or "", raw.get("data"), schema)


def route(raw: Mapping[str, Any], ctx: EventContext) -> Action:
    envelope = envelope_from(raw)
    if isinstance(envelope, Malformed):
        return envelope
    return route_envelope(envelope, ctx)


def route_envelope(event: Envelope, ctx: EventContext) -> Action:
    if event.type in (SERVICE_CHANGED, CLUSTER_RESYNC, TRUST_CHANGED):
        return _watcher_event(event, ctx)
    if event.type.startswith("Microsoft.ApiManagement."):
        return _apim_event(event, ctx)
    if event.type.startswith(_ARM_PREFIX):
        return _arm_event(event, ctx)
    if event.type.startswith("Microsoft.ContainerService."):
        return _aks_event(event, ctx)
    if event.type.startswith(_KEYVAULT_PREFIX):
        return _keyvault_event(event, ctx)
    return Acknowledge(f"event type '{_shown(event.type)}' is not one aks-apim-sync acts on")


def _untrusted(event: Envelope) -> Acknowledge:
    return Acknowledge(f"source '{_shown(event.source)}' is not a configured event source; {event.type} ignored")


def _watcher_event(event: Envelope, ctx: EventContext) -> Action:
    if not ctx.trusts(event.source, watcher_source(ctx.cluster)):
        return _untrusted(event)
    if event.type == TRUST_CHANGED:
        matched = CLUSTER_SUBJECT.match(event.subject)
        if matched is None or matched["cluster"] != ctx.cluster:
            return Acknowledge(f"subject '{_shown(event.subject)}' is not this deployment's cluster '{ctx.cluster}'")
        return Rotate(why="the trust bundle or CA Secret changed in the cluster")
    if event.type == CLUSTER_RESYNC:
        matched = CLUSTER_SUBJECT.match(event.subject)
        if matched is None:
            return Malformed(f"subject '{_shown(event.subject)}' is not clusters/<cluster>")
        if matched["cluster"] != ctx.cluster:
            return Acknowledge(f"cluster '{_shown(matched['cluster'])}' is not this deployment's cluster '{ctx.cluster}'")
        return ReconcileScope(Scope(ctx.cluster), why="the watcher asked for a cluster resync")
    matched = SERVICE_SUBJECT.match(event.subject)
    if matched is None:
        return Malformed(f"subject '{_shown(event.subject)}' is not clusters/<cluster>/namespaces/<namespace>/services/<name>")
    if matched["cluster"] != ctx.cluster:
        return Acknowledge(f"cluster '{_shown(matched['cluster'])}' is not this deployment's cluster '{ctx.cluster}'")
    scope = Scope(ctx.cluster, namespace=matched["namespace"], service=matched["name"])
    why = f"Service {matched['namespace']}/{matched['name']} changed"
    return ReconcileScope(scope, why=why, backend_hints=_hints(event.data), api_hints=_api_hints(event.data))


def _hints(data: Any) -> frozenset[BackendId]:
    """Backend ids the Service named before it changed: its old backend may need removing.

    Only a hint: a backend is deleted only when it is ours and its own mark names this Service.
    """
    listed = data.get(DATA_BACKEND_IDS) if isinstance(data, Mapping) else None
    if not isinstance(listed, list):
        return frozenset()
    return frozenset(BackendId(item) for item in listed[:MAX_HINTS] if isinstance(item, str) and id_problem(item) is None)


def _api_hints(data: Any) -> frozenset[str]:
    """API ids the Service claimed before it changed: its part of them may need removing. Only a hint."""
    listed = data.get(DATA_API_IDS) if isinstance(data, Mapping) else None
    if not isinstance(listed, list):
        return frozenset()
    return frozenset(item for item in listed[:MAX_HINTS] if isinstance(item, str) and id_problem(item) is None)


def _apim_event(event: Envelope, ctx: EventContext) -> Action:
    if not ctx.trusts(event.source, ctx.apim_service_id):
        return _untrusted(event)
    kind = event.type.removeprefix("Microsoft.ApiManagement.")
    if kind.startswith("CircuitBreaker."):
        backend = event.data.get("backendName") if isinstance(event.data, Mapping) else None
        return Acknowledge(f"circuit breaker {kind.split('.')[-1].lower()} for backend '{_shown(backend)}'", notable=True)
    for prefix in _APIM_API_KINDS:
        if kind.startswith(prefix) and kind.removeprefix(prefix) in ("Created", "Updated", "Deleted"):
            matched = _APIM_CHILD.match(event.subject)
            if matched is None or matched["collection"] != "apis":
                return Malformed(f"subject '{_shown(event.subject)}' does not name an API (/apis/<id>)")
            return RecheckApi(matched["id"], why=f"{kind} for API '{matched['id']}'")
    return Acknowledge(f"{kind} is reported only; aks-apim-sync manages no such APIM object")


def _arm_event(event: Envelope, ctx: EventContext) -> Action:
    service_id = ctx.apim_service_id.lower()
    subscription = "/".join(service_id.split("/")[:3])
    resource_group = "/".join(service_id.split("/")[:5])
    if not ctx.trusts(event.source, service_id, subscription, resource_group):
        return _untrusted(event)
    subject = event.subject.rstrip("/")
    if subject.lower() == service_id:
        if event.type.removeprefix(_ARM_PREFIX).startswith(("ResourceWrite", "ResourceAction")):
            return RefreshAllowLists(why=f"{event.type.removeprefix(_ARM_PREFIX)} on the APIM service")
        return Acknowledge(f"{event.type} on the APIM service is reported only")
    if subject.lower().startswith(service_id + "/"):
        child = _APIM_CHILD.match(subject[len(service_id) :])
        if child is not None and child["collection"].lower() == "backends" and id_problem(child["id"]) is None:
            return RecheckBackend(
                BackendId(child["id"]), why=f"{event.type.removeprefix(_ARM_PREFIX)} on backend '{child['id']}'"
            )
        return Acknowledge("an ARM write below the APIM service that is not a backend; the APIM topic covers APIs")
    return Acknowledge(f"subject '{_shown(subject)}' is not the configured APIM service")


def _aks_event(event: Envelope, ctx: EventContext) -> Action:
    if not ctx.trusts(event.source, ctx.aks_resource_id):
        return _untrusted(event)
    kind = event.type.removeprefix("Microsoft.ContainerService.")
    if kind in _AKS_RESYNC_TYPES:
        pool = event.data.get("nodePoolName") if isinstance(event.data, Mapping) else None
        return ReconcileScope(Scope(ctx.cluster), why=f"{kind} (node pool '{_shown(pool)}'): resync after the upgrade")
    return Acknowledge(f"{kind} is reported only", notable=kind.startswith("ClusterSupport"))


def _keyvault_field(data: Mapping[str, Any], field: str) -> str | None:
    value = next((data[k] for k in _KEYVAULT_FIELDS[field] if k in data), None)
    return value if isinstance(value, str) and value.strip() else None


def _origin(url: str) -> str:
    matched = re.match(r"^(https://[^/]+)/", url)
    return matched[1].lower() if matched else ""


def _keyvault_event(event: Envelope, ctx: EventContext) -> Action:
    kind = event.type.removeprefix(_KEYVAULT_PREFIX)
    if kind not in _KEYVAULT_TYPES:
        return Acknowledge(f"{kind} is not a Key Vault event aks-apim-sync acts on")
    if not ctx.key_vault_objects:
        return Acknowledge(f"{kind}: no Key Vault object is configured (CLIENT_CERTIFICATE_SOURCE keyvault, CA_KEYVAULT_URL)")
    if not isinstance(event.data, Mapping):
        return Malformed(f"{kind}: data must be an object")
    fields = {f: _keyvault_field(event.data, f) for f in _KEYVAULT_FIELDS}
    missing = [_KEYVAULT_FIELDS[f][0] for f, v in fields.items() if v is None]
    if missing:
        return Malformed(f"{kind}: data has no {', '.join(missing)}")
    vault, name, object_id = str(fields["vault"]), str(fields["name"]), str(fields["id"])
    from_vault = event.source.lower().rstrip("/").endswith(f"/providers/microsoft.keyvault/vaults/{vault.lower()}")
    if not (from_vault or ctx.trusts(event.source)):
        return _untrusted(event)
    wanted = KeyVaultObject(_origin(object_id), name.lower())
    if wanted not in {KeyVaultObject(o.origin.lower(), o.name.lower()) for o in ctx.key_vault_objects}:
        return Acknowledge(f"{kind} for '{_shown(name)}' in vault '{_shown(vault)}': not an object aks-apim-sync uses")
    return Rotate(why=f"{kind} for '{name}' in vault '{vault}'", expired=kind.endswith("Expired"))


def _shown(value: object, limit: int = 120) -> str:
    text = str(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"
