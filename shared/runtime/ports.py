"""The engine's dependencies: one small Protocol per remote role, and the bundle a run receives.

Capabilities see only these roles, never an adapter class; `shared.deps` builds the adapters that fill
them. Every method raises our error tree (shared.core.errors), never a client library's.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from shared.core.errors import InvalidSettings
from shared.core.model import BackendId, DesiredBackend, GatewayApiObjects, IngressView, ObservedBackend, ServiceView
from shared.core.scope import Scope
from shared.core.settings import Settings
from shared.runtime.counters import RequestCounter
from shared.runtime.resume import ResumePoints
from shared.runtime.telemetry import NoTelemetry, Telemetry


class ClusterReader(Protocol):
    """Reads of the cluster's Services, Ingresses and ConfigMaps. A failed read raises, never looks empty."""

    def list_services(self, scope: Scope) -> list[ServiceView]: ...

    def list_ingresses(self, scope: Scope) -> list[IngressView]: ...

    def get_service(self, namespace: str, name: str) -> ServiceView | None: ...

    def get_ingress(self, namespace: str, name: str) -> IngressView | None: ...

    def get_gateway(self, namespace: str, name: str) -> dict[str, Any] | None:
        """One Gateway (gateway.networking.k8s.io/v1) as raw JSON; None when there is none."""
        ...

    def list_authorization_policies(self, namespace: str) -> list[dict[str, Any]]:
        """Istio AuthorizationPolicies (security.istio.io/v1) in one namespace, raw; none without the CRD."""
        ...

    def get_authorization_policy(self, namespace: str, name: str) -> dict[str, Any] | None: ...

    def list_gateway_api(self, scope: Scope) -> GatewayApiObjects:
        """HTTPRoutes, Gateways and ReferenceGrants (every namespace: routes, Gateways and grants of other
        namespaces decide a Service's URL too)."""
        ...

    def get_configmap_value(self, namespace: str, name: str, key: str) -> str | None: ...


class ClusterWriter(Protocol):
    def patch(self, kind: str, namespace: str, name: str, body: dict[str, Any]) -> None:
        """A JSON merge patch; a metadata.resourceVersion in the body makes a concurrent edit a ConcurrentEdit."""

    def create(self, kind: str, namespace: str, body: dict[str, Any]) -> None:
        """Create an object (the kinds this app owns outright: AuthorizationPolicy); one that appeared
        meanwhile is a ConcurrentEdit."""


class SecretStore(Protocol):
    """The Secrets and ConfigMaps the rotation writes: the CA, the trust bundle, and its copy for Gateways."""

    def get_secret(self, namespace: str, name: str) -> dict[str, Any] | None: ...

    def create_secret(self, namespace: str, body: dict[str, Any]) -> None: ...

    def get_configmap(self, namespace: str, name: str) -> dict[str, Any] | None: ...

    def create_configmap(self, namespace: str, body: dict[str, Any]) -> None: ...


class BackendStore(Protocol):
    def list_backends(self) -> dict[BackendId, ObservedBackend]: ...

    def get_backend(self, backend_id: BackendId) -> ObservedBackend | None: ...

    def put_backend(self, desired: DesiredBackend, *, base: ObservedBackend | None) -> None:
        """base None: a create, which must not overwrite a backend that appeared meanwhile."""

    def delete_backend(self, backend_id: BackendId, *, etag: str | None) -> None: ...

    def set_backend_certificates(self, backend_id: BackendId, certificate_ids: list[str], *, owner: str) -> bool: ...


class CertificateStore(Protocol):
    def list_certificates(self) -> list[dict[str, Any]]: ...

    def put_certificate(self, certificate_id: str, properties: dict[str, Any]) -> str: ...

    def delete_certificate(self, certificate_id: str) -> None: ...


class ApimServiceReader(Protocol):
    def get_service(self) -> dict[str, Any]:
        """The APIM service resource as ARM returns it (addresses, VNet type, SKU, provisioning state)."""

    def named_value_exists(self, name: str) -> bool: ...

    def effective_permissions(self) -> tuple[list[str], list[str]]:
        """(actions, notActions) this identity holds on the APIM service."""
        ...


class AccessProbe(Protocol):
    """What `doctor` asks the cluster and the storage account, changing nothing."""

    def server_version(self) -> str: ...

    def may(self, verb: str, group: str, resource: str, namespace: str) -> bool: ...


@dataclass(frozen=True)
class KnownOfApi:
    """What a run already knows of an API when it observes it, so that observing costs fewer reads."""

    tagged: bool
    products: Sequence[str] = ()
    """Products it should be in: their membership is checked."""
    listed: Mapping[str, Any] | None = None
    """Its properties from this run's listing: no GET (and so no ETag; an update reads it first)."""
    members: Mapping[str, frozenset[str]] | None = None
    """product id -> its APIs, listed: no read per product."""


class ApiStore(Protocol):
    """APIs, operations, policies, tags and product links."""

    def all_apis(self, odata_filter: str | None = None) -> dict[str, tuple[str, str]]:
        """api id -> (path, description) of every API (or of those the OData $filter keeps)."""

    def is_tagged(self, api_id: str, tag_id: str) -> bool: ...

    def tagged_api_ids(self, tag_name: str) -> set[str]: ...

    def description(self, api_id: str) -> str | None: ...

    def api(self, api_id: str) -> tuple[dict[str, Any], str] | None:
        """The API's properties and ETag; None when there is no such API."""

    def policy(self, api_id: str, operation_id: str | None = None) -> tuple[str, str] | None:
        """A policy as rawxml and its ETag; None when there is none."""

    def all_api_properties(self, odata_filter: str | None = None) -> dict[str, dict[str, Any]]:
        """api id -> the API's properties, listed (no ETags)."""

    def api_ids_in(self, product_id: str) -> frozenset[str]: ...

    def observe(self, api_id: str, known: KnownOfApi) -> Any: ...

    def product_ids(self) -> frozenset[str]: ...

    def put_api(self, api_id: str, properties: dict[str, Any], *, if_match: str | None = None) -> None: ...

    def delete_api(self, api_id: str) -> None: ...

    def tag_api(self, api_id: str, tag_id: str) -> None: ...

    def put_operation(self, api_id: str, operation_id: str, properties: dict[str, Any]) -> None: ...

    def delete_operation(self, api_id: str, operation_id: str) -> None: ...

    def put_api_policy(self, api_id: str, xml: str, *, if_match: str | None = None) -> None: ...

    def put_operation_policy(self, api_id: str, operation_id: str, xml: str, *, if_match: str | None = None) -> None: ...

    def create_product(self, product_id: str) -> None: ...

    def add_to_product(self, product_id: str, api_id: str) -> None: ...

    def remove_from_product(self, product_id: str, api_id: str) -> None: ...


class CaStore(Protocol):
    """Where the managed CA lives: a Kubernetes Secret (default) or a Key Vault secret (CA_KEYVAULT_URL)."""

    def read(self) -> dict[str, tuple[bytes, bytes]]: ...

    def write(self, current: Mapping[str, tuple[bytes, bytes]], changes: Mapping[str, tuple[bytes, bytes] | None]) -> None: ...


@dataclass(frozen=True)
class SecretVersion:
    """One version of a Key Vault secret as read; `value` may hold a private key: never logged or kept."""

    version: str
    value: str = field(repr=False)
    content_type: str | None = None


class KeyVaultCertificate(Protocol):
    """The Key Vault certificate APIM presents in `keyvault` mode, read through its secret."""

    secret_id: str
    """The versionless secret URL (KEYVAULT_CERT_SECRET_ID)."""

    def version(self, version: str | None = None) -> SecretVersion:
        """The latest version (None) or the one named; NotFound when there is none."""
        ...


class Lease(Protocol):
    def renew(self) -> None: ...


class RunTurn(Protocol):
    """This instance's turn to run one key (the key's lease is held until the block ends)."""

    completed: int
    """The number of the last run of the key that ended, as of taking the turn."""

    def begin(self) -> int:
        """Number this run (one more than the last started) and record it as started."""
        ...

    def end(self, number: int) -> None:
        """Record run `number` as ended."""
        ...

    def __enter__(self) -> RunTurn: ...

    def __exit__(self, *exc: object) -> None: ...


class RunLedger(Protocol):
    """Runs of a key across every instance of the app: their numbers, and one turn at a time."""

    def last_started(self, key: str) -> int: ...

    def last_completed(self, key: str) -> int: ...

    def try_turn(self, key: str) -> RunTurn | None:
        """The key's turn, or None at once while another instance has it."""
        ...


LeaseFactory = Callable[[str], AbstractContextManager[Lease]]
"""Hold the named lease for a block; raises LeaseHeld at once when another instance holds it."""


def no_lease(name: str) -> AbstractContextManager[Lease]:
    """The lease factory when no storage account is configured: every lock is refused, naming the setting."""
    raise InvalidSettings([("AzureWebJobsStorage", f"missing: the {name} lock needs it")])


@dataclass(frozen=True)
class Dependencies:
    settings: Settings
    cluster: ClusterReader
    cluster_writer: ClusterWriter
    secrets: SecretStore
    backends: BackendStore
    certificates: CertificateStore
    apim_service: ApimServiceReader
    apis: ApiStore
    ca_store: CaStore | None = None
    """A CA store other than the Secret in CERT_NAMESPACE (Key Vault); None: the Secret."""
    keyvault_certificate: KeyVaultCertificate | None = None
    """`keyvault` mode: the certificate's versions in Key Vault."""
    lease: LeaseFactory = no_lease
    run_ledger: RunLedger | None = None
    """Where runs of a key are coordinated across instances (the Functions storage account); None: not configured,
    runs coalesce only within this worker."""
    lock_probe: Callable[[], None] | None = None
    """Reach the lock's container without changing anything (doctor); None when no storage is configured."""
    access: AccessProbe | None = None
    """The cluster side of doctor's checks."""
    telemetry: Telemetry = field(default_factory=NoTelemetry)
    counter: RequestCounter = field(default_factory=RequestCounter)
    resume: ResumePoints = field(default_factory=ResumePoints)
    """Where the last run of a scope stopped reading existing APIs for time: the next one starts there."""
    sleep: Callable[[float], None] = time.sleep
    monotonic: Callable[[], float] = time.monotonic
    wall_clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    """Certificate lifetimes are decided against it."""
