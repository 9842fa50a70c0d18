"""Values shared by the pure core and the adapters: ids, references, backend projections, reasons.

Pure: frozen dataclasses and enums only. Nothing here performs I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, NewType
from urllib.parse import urlsplit, urlunsplit

BackendId = NewType("BackendId", str)
OwnerId = NewType("OwnerId", str)


class Mode(StrEnum):
    """How APIM reaches the Service (the three options of the Azure guidance)."""

    PUBLIC = "public"
    INGRESS = "ingress"
    INTERNAL = "internal"


class PublicAuthMode(StrEnum):
    """How APIM proves itself to public-mode backends (Option 1)."""

    MANAGED_IDENTITY = "managed-identity"
    """APIM's managed identity fetches a short-lived Entra token per request; no shared secret."""
    HEADER = "header"
    """A header valued from an APIM named value: one shared secret."""
    NONE = "none"


class KeyKind(StrEnum):
    """Key type of issued certificates."""

    EC_P256 = "ec-p256"
    RSA_2048 = "rsa-2048"
    RSA_3072 = "rsa-3072"
    RSA_4096 = "rsa-4096"


class ReconcilePolicy(StrEnum):
    """Per-Service policy, ASO's vocabulary."""

    MANAGE = "manage"
    SKIP = "skip"
    DETACH_ON_DELETE = "detach-on-delete"


class SyncPolicy(StrEnum):
    """Deployment-wide policy, external-dns's vocabulary."""

    SYNC = "sync"
    UPSERT_ONLY = "upsert-only"
    CREATE_ONLY = "create-only"


class Reason(StrEnum):
    """CamelCase reasons used in reports and logs."""

    CREATED = "Created"
    UPDATED = "Updated"
    DELETED = "Deleted"
    UNCHANGED = "Unchanged"
    SOURCE_GONE = "SourceGone"
    ADDRESS_PENDING = "AddressPending"
    INVALID_ANNOTATION = "InvalidAnnotation"
    DUPLICATE_BACKEND_ID = "DuplicateBackendId"
    OWNED_BY_OTHER = "OwnedByOther"
    CLAIMED_BY_OTHER_SERVICE = "ClaimedByOtherService"
    RECONCILE_SKIPPED = "ReconcileSkipped"
    DETACHED = "DetachedOnDelete"
    HELD = "HeldWhileSourceBroken"
    POLICY_UPSERT_ONLY = "PolicyUpsertOnly"
    POLICY_CREATE_ONLY = "PolicyCreateOnly"
    DELETE_CAP_REACHED = "DeleteCapReached"
    SOURCE_READ_FAILED = "SourceReadFailed"
    SINK_READ_FAILED = "SinkReadFailed"
    VNET_TRAFFIC_NOT_DENIED = "VnetTrafficNotDenied"
    PRODUCT_MISSING = "ProductMissing"
    PATH_TAKEN = "PathTaken"
    OPERATION_CONFLICT = "OperationConflict"
    OPEN_API_MISSING = "OpenApiMissing"
    NO_USABLE_APIM_ADDRESSES = "NoUsableApimAddresses"
    NO_STABLE_APIM_ADDRESS = "NoStableApimAddress"
    ROUTE_NOT_ATTACHED = "RouteNotAttached"
    GATEWAY_SERVICE_NOT_FOUND = "GatewayServiceNotFound"
    ALLOW_POLICY_WIDENS = "AllowPolicyWidens"
    KEPT_BY_SETTING = "KeptBySetting"
    INVALID_OPEN_API = "InvalidOpenApi"
    INGRESS_CONTROLLER_UNREADABLE = "IngressControllerUnreadable"
    INGRESS_CONTROLLER_NOT_FOUND = "IngressControllerNotFound"
    EXCLUSIVE_ALLOW_LIST_ANNOTATION = "ExclusiveAllowListAnnotation"
    CLIENT_ADDRESS_NOT_PRESERVED = "ClientAddressNotPreserved"
    API_HELD = "ApiHeld"
    API_CONFLICT = "ApiConflict"
    RESTORED = "Restored"
    ALLOWLIST_SET = "Set"
    NOT_GRANTED = "NotGrantedByPolicy"
    UNSAFE_URL = "UnsafeUrl"
    CREDENTIAL_WITHHELD = "CredentialWithheld"
    OUT_OF_SCOPE = "OutOfScope"
    CLAIMED_BY_OTHER_NAMESPACE = "ClaimedByOtherNamespace"
    DELETE_WAITS_FOR_ROUTING = "DeleteWaitsForRouting"
    TIME_BUDGET_SPENT = "TimeBudgetSpent"
    RUN_IN_PROGRESS_ELSEWHERE = "RunInProgressElsewhere"


@dataclass(frozen=True, order=True, slots=True)
class ServiceRef:
    cluster: str
    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def qualified(self) -> str:
        return f"{self.cluster}/{self.namespace}/{self.name}"


@dataclass(frozen=True, slots=True)
class OwnerMark:
    """Proof that this deployment created a backend, carried in the backend's description."""

    owner: OwnerId
    source: ServiceRef
    policy: ReconcilePolicy = ReconcilePolicy.MANAGE


HeaderValues = tuple[tuple[str, tuple[str, ...]], ...]


def normalise_url(url: str) -> str:
    """Case of scheme and host, default ports and a bare trailing slash never cause a write."""
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if ":" in host:
        host = f"[{host}]"
    port = parts.port
    default_port = {"http": 80, "https": 443}.get(scheme)
    netloc = host if port in (None, default_port) else f"{host}:{port}"
    path = parts.path.rstrip("/")
    return urlunsplit((scheme, netloc, path, parts.query, ""))


def normalise_headers(headers: Mapping[str, object] | None) -> HeaderValues:
    """Header names are case-insensitive and value order has no meaning to APIM."""
    pairs: dict[str, set[str]] = {}
    for name, values in (headers or {}).items():
        listed = values if isinstance(values, list | tuple) else [values]
        pairs.setdefault(name.lower(), set()).update(str(v) for v in listed)
    return tuple(sorted((name, tuple(sorted(values))) for name, values in pairs.items() if values))


@dataclass(frozen=True, slots=True)
class BackendSpec:
    """The curated projection of an APIM backend that aks-apim-sync manages and compares.

    Everything else on the backend (tls, proxy, circuit breaker, certificate ids set by rotation...) is
    preserved on update and never compared.
    """

    url: str
    description: str
    title: str = ""
    protocol: str = "http"
    headers: HeaderValues = ()

    def normalised(self) -> BackendSpec:
        return BackendSpec(
            url=normalise_url(self.url),
            description=self.description.strip(),
            title=(self.title or "").strip(),
            protocol=self.protocol.lower(),
            headers=normalise_headers(dict(self.headers)),
        )

    def as_fields(self) -> dict[str, object]:
        return {
            "url": self.url,
            "protocol": self.protocol,
            "title": self.title,
            "description": self.description,
            "credentials.header": {name: list(values) for name, values in self.headers},
        }


@dataclass(frozen=True, slots=True)
class DesiredBackend:
    id: BackendId
    source: ServiceRef
    spec: BackendSpec
    policy: ReconcilePolicy = ReconcilePolicy.MANAGE
    client_certificate: bool = False
    """APIM presents the mTLS client certificate to it (ingress mode, at an address the app may trust)."""
    warnings: tuple[tuple[str, str], ...] = ()
    """(annotation, message): what was left out of the backend and why (a credential not sent, say)."""
    token_audience: str | None = None
    """Option 1 with APIM's managed identity: the audience of the token APIM sends (in the API policies)."""


@dataclass(frozen=True, slots=True)
class ObservedBackend:
    id: BackendId
    spec: BackendSpec
    mark: OwnerMark | None = None
    etag: str | None = None
    raw_properties: Mapping[str, object] = field(default_factory=dict, compare=False, hash=False)
    """Every property APIM returned, so that an update preserves what we do not manage. Only a backend read on
    its own carries them (every update re-reads first); a listed one carries none, since thousands of copies
    would be the largest thing a run holds."""
    certificate_ids: tuple[str, ...] = field(default=(), compare=False, hash=False)
    """The certificate entities APIM presents to it (credentials.certificateIds), by name, lower case."""


@dataclass(frozen=True, slots=True)
class ServicePort:
    port: int
    name: str = ""
    protocol: str = "TCP"


@dataclass(frozen=True, slots=True)
class ServiceView:
    """What the Kubernetes source reports of one Service, already reduced to the fields we use."""

    namespace: str
    name: str
    annotations: Mapping[str, str] = field(default_factory=dict)
    type: str = "ClusterIP"
    ports: tuple[ServicePort, ...] = ()
    load_balancer_addresses: tuple[str, ...] = ()
    resource_version: str = ""
    load_balancer_source_ranges: tuple[str, ...] = ()
    external_traffic_policy: str = ""
    gateway_name: str = ""
    """The gateway.networking.k8s.io/gateway-name label: the Gateway an implementation made this Service for."""


@dataclass(frozen=True, slots=True)
class IngressRoute:
    """One networking.k8s.io/v1 Ingress rule path (or Gateway API HTTPRoute rule) that routes to a Service."""

    namespace: str
    """The namespace of the Service routed to (an HTTPRoute's may differ from its own, where a ReferenceGrant
    allows it)."""
    ingress_name: str
    """The Ingress's name; for an HTTPRoute, '<namespace>/<name>'."""
    host: str
    path: str
    service_name: str
    service_port: str
    tls: bool
    kind: str = "Ingress"
    """Ingress or HTTPRoute."""
    port: int | None = None
    """The listener's port when it is not the scheme's default (HTTPRoute)."""
    gateway: str = ""
    """HTTPRoute: '<namespace>/<name>' of the Gateway whose listener carries the route."""


@dataclass(frozen=True, slots=True)
class GatewayApiObjects:
    """What one read found of the Gateway API (HTTPRoutes, Gateways, ReferenceGrants): raw objects as the API
    server returned them, untrusted; shared.backends.gateway_routes reads them."""

    httproutes: tuple[Mapping[str, Any], ...] = ()
    gateways: tuple[Mapping[str, Any], ...] = ()
    reference_grants: tuple[Mapping[str, Any], ...] = ()
    namespace_labels: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    """Namespace -> labels; read only when a listener admits routes by a namespace Selector."""


@dataclass(frozen=True, slots=True)
class IngressView:
    """One Ingress: its annotations (for the allow-list) and the rules that route to Services."""

    namespace: str
    name: str
    annotations: Mapping[str, str] = field(default_factory=dict)
    resource_version: str = ""
    routes: tuple[IngressRoute, ...] = ()

    @property
    def service_names(self) -> frozenset[str]:
        return frozenset(route.service_name for route in self.routes)
