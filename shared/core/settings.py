"""Read and validate the app settings (environment variables) into one typed configuration.

Takes a mapping, returns frozen dataclasses or raises InvalidSettings naming every bad setting at once; its
only look outside is whether the files the settings name exist. Values of settings are never put into an
error message (some are secrets).
"""

from __future__ import annotations

import ipaddress
import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, TypeVar
from urllib.parse import urlsplit

from shared.core.annotations import DEFAULT_PREFIX, AnnotationChoice
from shared.core.cidrs import AddressSource, AllowListPolicy, canonical, network
from shared.core.errors import InvalidSettings
from shared.core.model import KeyKind, Mode, OwnerId, PublicAuthMode, SyncPolicy
from shared.core.tenancy import AUDIENCE as TOKEN_AUDIENCE
from shared.core.tenancy import DEFAULT_LOCATION as DEFAULT_TENANCY_LOCATION

T = TypeVar("T")

AKS_SERVER_SCOPE = "6dae42f8-4368-4678-94ff-3960e28e3630/.default"
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
_OWNER_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
_CLUSTER_NAME = _OWNER_ID
_HEADER_NAME = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$")
_NAMED_VALUE = re.compile(r"^[A-Za-z0-9._-]{1,256}$")
_AKS_RESOURCE_ID = re.compile(
    r"^/subscriptions/[^/]+/resourceGroups/[^/]+/providers/Microsoft\.ContainerService/managedClusters/[^/]+$", re.IGNORECASE
)


@dataclass(frozen=True)
class ApimSettings:
    subscription_id: str
    """Azure subscription that holds the APIM instance."""
    resource_group: str
    """Resource group of the APIM instance."""
    service_name: str
    """Name of the APIM instance."""
    arm_endpoint: str
    """Azure Resource Manager endpoint, e.g. https://management.azure.com (sovereign clouds differ)."""
    arm_scope: str
    """Token scope for ARM; defaults to <ARM_ENDPOINT>/.default."""
    budget_share: float = 0.5
    """ARM_BUDGET_SHARE: the share of ARM's request buckets this app may spend (others in the subscription
    keep the rest)."""
    pacing_time_scale: float = 1.0
    """ARM_PACING_TIME_SCALE: how much faster than real time the buckets refill; only against a loopback
    endpoint (the sandbox's throttling emulator runs its clock as fast)."""

    @property
    def service_id(self) -> str:
        """The ARM resource id of the APIM instance, as Event Grid names it in topic and subject."""
        return (
            f"/subscriptions/{self.subscription_id}/resourceGroups/{self.resource_group}"
            f"/providers/Microsoft.ApiManagement/service/{self.service_name}"
        )


ROUTE_KINDS = ("Ingress", "HTTPRoute")
GATEWAY_ALLOWLISTS = ("infrastructure", "generated-service", "istio")
"""infrastructure: the Gateway's spec.infrastructure.annotations (azure-allowed-ip-ranges, for implementations
that propagate them to their load-balancer Service); generated-service: loadBalancerSourceRanges on that Service
(implementations that do not propagate); istio: an owned AuthorizationPolicy per Gateway (remoteIpBlocks)."""


@dataclass(frozen=True)
class KubeSettings:
    cluster_name: str
    """Name of the AKS cluster; part of every default backend id and owner mark."""
    namespaces: tuple[str, ...]
    """Namespaces to watch; empty means all."""
    kubeconfig: str | None
    """Path of a kubeconfig file (local runs, sandbox)."""
    api_server: str | None
    """AKS API server URL, used with an Entra token when no kubeconfig is given."""
    ca_cert: str | None
    """PEM of the cluster CA (or a path to it) for api_server."""
    route_kinds: tuple[str, ...] = ("Ingress",)
    """ROUTE_KINDS: what gives ingress-mode Services their URL: Ingress, HTTPRoute (Gateway API), or both."""


@dataclass(frozen=True)
class SyncSettings:
    owner_id: OwnerId
    """Owner id written into every object this deployment creates; unique per deployment."""
    annotation_prefix: str
    """Annotation prefix, e.g. apim-sync.io (apim-sync.io/expose)."""
    default_mode: Mode
    """Mode of a Service without the mode annotation."""
    policy: SyncPolicy
    """sync | upsert-only | create-only; required, as in external-dns v0.22, because sync deletes."""
    max_deletes_per_run: int
    """Deletes above this count AND above max_delete_fraction of owned backends are refused."""
    max_delete_fraction: float
    """See max_deletes_per_run."""
    allow_mass_delete: bool
    """Switch the delete cap off."""
    apply_concurrency: int
    """Changes applied at once."""
    max_attempts: int
    """Attempts per remote call for transient faults (429, 5xx, timeouts, 409/412)."""
    max_retry_wait_seconds: float
    """Longest single wait between attempts, whatever Retry-After says."""
    run_budget_seconds: float = 540.0
    """RUN_TIME_BUDGET_SECONDS: a run's work ends within this (host.json's functionTimeout of 10 minutes less a
    minute for the report): no piece of work starts that, as long as the longest one timed so far, would end
    past it (shared.runtime.deadline); the rest goes to the next run."""


@dataclass(frozen=True)
class PublicAuthSettings:
    header_name: str | None
    """Header APIM adds to calls to public-mode backends (Option 1)."""
    named_value: str | None
    """APIM named value whose {{reference}} is the header's value; the secret stays in APIM."""
    mode: PublicAuthMode = PublicAuthMode.NONE
    """managed-identity (recommended: no shared secret), header, or none."""
    audience: str | None = None
    """managed-identity: the default audience of APIM's token (the tenancy policy may set one per namespace)."""


@dataclass(frozen=True)
class CredentialSettings:
    sandbox_token: str | None
    """Static bearer token for the sandbox emulators; refused unless ARM_ENDPOINT is loopback."""
    arm_ca_bundle: str | None
    """Extra CA bundle file for ARM TLS (the sandbox's self-signed CA)."""


@dataclass(frozen=True)
class EventSettings:
    aks_resource_id: str | None
    """ARM id of the AKS cluster: AKS events from any other cluster are acknowledged and ignored."""
    trusted_sources: tuple[str, ...]
    """Further accepted event topics/sources, e.g. the watcher's custom topic or CloudEvents source."""


@dataclass(frozen=True)
class AllowListSettings:
    enabled: bool
    """Keep ingress allow-lists in step with APIM's addresses."""
    policy: AllowListPolicy
    """Which APIM addresses (auto follows virtualNetworkType), a private subnet prefix, and extra CIDRs."""
    annotation: AnnotationChoice
    """ingress-nginx annotation to write: allowlist-source-range, the older whitelist-source-range, or both."""
    ingress_controller: str | None
    """<namespace>/<name> of the ingress controller's Service, checked for externalTrafficPolicy."""
    gateway_writers: tuple[str, ...] = ("infrastructure",)
    """GATEWAY_ALLOWLIST: how a managed Gateway admits only APIM (see GATEWAY_ALLOWLISTS)."""


class CertificateSource(StrEnum):
    MANAGED = "managed"
    KEYVAULT = "keyvault"
    NONE = "none"


@dataclass(frozen=True)
class MtlsSettings:
    source: CertificateSource
    """managed: our own CA issues APIM's client certificate; keyvault: Key Vault holds it; none: no mTLS."""
    namespace: str
    """Namespace of the CA Secret and the trust bundle Secret."""
    ca_store: str
    trust_bundle: str
    """Secret with ca.crt that the ingress controller checks client certificates against (auth-tls-secret)."""
    key_kind: KeyKind
    certificate_days: int
    ca_days: int
    renew_fraction: float
    propagation_seconds: float
    """How long a new CA must sit in the bundle before a certificate it signed is presented."""
    grace_seconds: float
    """How long a superseded certificate is kept after the switch."""
    storage_connection: str | None
    """AzureWebJobsStorage (a connection string): the lock blob."""
    keyvault_secret_id: str | None
    keyvault_identity_client_id: str | None
    keyvault_issuer_ca: str | None
    """PEM (or a path to it) of the CA that issues the Key Vault certificate, for a secret that carries no chain;
    otherwise the issuer is read from the chain in each version."""
    storage_blob_uri: str | None = None
    """AzureWebJobsStorage__blobServiceUri (or __accountName): the lock blob through the app's managed identity,
    the way the Functions host reaches its storage without shared keys."""
    storage_client_id: str | None = None
    """AzureWebJobsStorage__clientId: the user-assigned identity to use for it (else the app's credential)."""
    ca_keyvault_url: str | None = None
    """Keep the managed CA in this Key Vault (secret ca_keyvault_name) instead of a Kubernetes Secret."""
    ca_keyvault_name: str = "aks-apim-sync-ca"


# The documented defaults of the mTLS settings: load_settings reads its defaults from here, nowhere else.
DEFAULT_MTLS = MtlsSettings(
    source=CertificateSource.MANAGED,
    namespace="aks-apim-sync",
    ca_store="aks-apim-sync-ca",
    trust_bundle="aks-apim-sync-client-ca",
    key_kind=KeyKind.EC_P256,
    certificate_days=90,
    ca_days=730,
    renew_fraction=1 / 3,
    propagation_seconds=120,
    grace_seconds=86400,
    storage_connection=None,
    keyvault_secret_id=None,
    keyvault_identity_client_id=None,
    keyvault_issuer_ca=None,
)


@dataclass(frozen=True)
class ApiSettings:
    enabled: bool
    """Publish APIs from the api-* annotations."""
    keep_apis: bool
    """Never delete an owned API that no Service claims any more (some teams never delete published APIs)."""
    create_products: bool
    """Create products named in annotations that do not exist (otherwise reported)."""


@dataclass(frozen=True)
class TelemetrySettings:
    connection_string: str | None = None
    """APPLICATIONINSIGHTS_CONNECTION_STRING: telemetry is off without it. Never shown (it holds the key)."""
    client_id: str | None = None
    """ClientId in APPLICATIONINSIGHTS_AUTHENTICATION_STRING (Authorization=AAD): export with that identity."""


@dataclass(frozen=True)
class Settings:
    apim: ApimSettings
    kube: KubeSettings
    sync: SyncSettings
    public_auth: PublicAuthSettings
    credentials: CredentialSettings
    events: EventSettings
    allowlist: AllowListSettings
    mtls: MtlsSettings
    apis: ApiSettings
    telemetry: TelemetrySettings = TelemetrySettings()
    tenancy_policy: str = DEFAULT_TENANCY_LOCATION
    """<namespace>/<name> of the ConfigMap that holds the tenancy policy (key policy.yaml); only the platform
    team may write there."""


def is_loopback_url(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class _Reader:
    """Collects every problem instead of stopping at the first."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self.environ = environ
        self.problems: list[tuple[str, str]] = []

    def raw(self, name: str) -> str | None:
        value = self.environ.get(name)
        return value.strip() if value is not None and value.strip() else None

    def required(self, name: str) -> str:
        value = self.raw(name)
        if value is None:
            self.problems.append((name, "missing"))
            return ""
        return value

    def existing_file(self, name: str, path: str | None) -> None:
        """The setting names a file: it must be there and readable (a typo otherwise surfaces much later)."""
        if path is not None and not os.access(path, os.R_OK):
            self.problems.append((name, "names a file that does not exist or cannot be read"))

    def parsed(self, name: str, default: T, parse: Callable[[str], T], expected: str) -> T:
        value = self.raw(name)
        if value is None:
            return default
        try:
            return parse(value)
        except ValueError:
            self.problems.append((name, f"expected {expected}"))
            return default


def _choices(r: _Reader, name: str, allowed: tuple[str, ...], default: str) -> tuple[str, ...]:
    """A comma-separated set of allowed values, each at most once; the default when unset or wrong."""
    chosen = tuple(k.strip() for k in (r.raw(name) or default).split(",") if k.strip())
    if not chosen or any(k not in allowed for k in chosen) or len(set(chosen)) != len(chosen):
        r.problems.append((name, f"one or more of {', '.join(allowed)}, comma-separated"))
        return (default,)
    return chosen


def _storage_blob_uri(r: _Reader) -> str | None:
    """The Functions host's identity-based storage settings, read as the host reads them."""
    uri = r.raw("AzureWebJobsStorage__blobServiceUri")
    account = r.raw("AzureWebJobsStorage__accountName")
    credential = r.raw("AzureWebJobsStorage__credential")
    if credential is not None and credential.lower() != "managedidentity":
        r.problems.append(("AzureWebJobsStorage__credential", "expected managedidentity"))
    if uri is None and account is not None:
        if not re.match(r"^[a-z0-9]{3,24}$", account):
            r.problems.append(
                ("AzureWebJobsStorage__accountName", "expected a storage account name (3-24 lowercase letters and digits)")
            )
            return None
        uri = f"https://{account}.blob.core.windows.net"
    if uri is not None and urlsplit(uri).scheme != "https":
        r.problems.append(("AzureWebJobsStorage__blobServiceUri", "must be an https URL"))
        return None
    return uri.rstrip("/") if uri else None


def _scale(text: str) -> float:
    value = float(text)
    if not 1 <= value < float("inf"):
        raise ValueError(text)
    return value


def _bool(text: str) -> bool:
    lowered = text.lower()
    if lowered in ("true", "1", "yes"):
        return True
    if lowered in ("false", "0", "no"):
        return False
    raise ValueError(text)


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise ValueError(text)
    return value


def _fraction(text: str) -> float:
    value = float(text)
    if not 0 < value <= 1:
        raise ValueError(text)
    return value


def _seconds(text: str) -> float:
    """A finite, non-negative number of seconds ('nan', 'inf' and '-1' are all floats to Python)."""
    value = float(text)
    if not math.isfinite(value) or value < 0:
        raise ValueError(text)
    return value


BROADEST_EXTRA_PREFIX = {4: 8, 6: 32}
"""Allow-list CIDR settings: no entry broader than a /8 (IPv4) or a /32 (IPv6), together less than half of an
address family."""
CIDRS_EXPECTED = "comma-separated CIDRs, none broader than /8 (IPv4) or /32 (IPv6), together less than half the addresses"


def _cidrs(text: str) -> tuple[str, ...]:
    """CIDRs with no host bits set, none broader than BROADEST_EXTRA_PREFIX, together never a whole address family
    (0.0.0.0/1 and 128.0.0.0/1 open the list to the world as surely as 0.0.0.0/0)."""
    networks = [network(item) for item in text.split(",") if item.strip()]
    if any(n.prefixlen < BROADEST_EXTRA_PREFIX[n.version] for n in networks):
        raise ValueError(text)
    for version, size in ((4, 2**32), (6, 2**128)):
        family: list[Any] = [n for n in networks if n.version == version]
        covered = sum(n.num_addresses for n in ipaddress.collapse_addresses(family))
        if covered >= size // 2:  # half an address family is no allow-list
            raise ValueError(text)
    return canonical(networks)


def load_settings(environ: Mapping[str, str]) -> Settings:
    r = _Reader(environ)
    arm_endpoint = (r.raw("ARM_ENDPOINT") or "https://management.azure.com").rstrip("/")
    if urlsplit(arm_endpoint).scheme != "https":
        r.problems.append(("ARM_ENDPOINT", "must be an https URL"))
    apim = ApimSettings(
        subscription_id=r.required("APIM_SUBSCRIPTION_ID"),
        resource_group=r.required("APIM_RESOURCE_GROUP"),
        service_name=r.required("APIM_SERVICE_NAME"),
        arm_endpoint=arm_endpoint,
        arm_scope=r.raw("ARM_SCOPE") or f"{arm_endpoint}/.default",
        budget_share=r.parsed("ARM_BUDGET_SHARE", 0.5, _fraction, "a fraction above 0 and at most 1, e.g. 0.5"),
        pacing_time_scale=r.parsed("ARM_PACING_TIME_SCALE", 1.0, _scale, "a number of 1 or more"),
    )
    if apim.pacing_time_scale != 1.0 and not is_loopback_url(arm_endpoint):
        r.problems.append(("ARM_PACING_TIME_SCALE", "only with a loopback ARM_ENDPOINT (the sandbox)"))

    namespaces = tuple(ns.strip() for ns in (r.raw("NAMESPACES") or "").split(",") if ns.strip() not in ("", "*"))
    for ns in namespaces:
        if not _DNS_SUBDOMAIN.match(ns):
            r.problems.append(("NAMESPACES", "each entry must be a namespace name"))
            break
    kubeconfig, api_server, ca_cert = r.raw("KUBECONFIG"), r.raw("AKS_API_SERVER"), r.raw("AKS_CA_CERT")
    if kubeconfig is None and (api_server is None or ca_cert is None):
        r.problems.append(("KUBECONFIG", "missing, and AKS_API_SERVER + AKS_CA_CERT are not both set"))
    r.existing_file("KUBECONFIG", kubeconfig)
    if ca_cert is not None and not ca_cert.lstrip().startswith("-----BEGIN"):
        r.existing_file("AKS_CA_CERT", ca_cert)
    if api_server is not None and urlsplit(api_server).scheme != "https":
        r.problems.append(("AKS_API_SERVER", "must be an https URL: the Entra token for the cluster goes with every request"))
    cluster_name = r.required("CLUSTER_NAME")
    if cluster_name and not _CLUSTER_NAME.match(cluster_name):
        # It goes into every owner mark (source=<cluster>/<namespace>/<service>): a '/', ';' or '=' would
        # make the mark unreadable, and the app would no longer recognise what it made.
        r.problems.append(("CLUSTER_NAME", "1-63 letters, digits, '.', '_' or '-', starting with a letter or digit"))
    route_kinds = _choices(r, "ROUTE_KINDS", ROUTE_KINDS, "Ingress")
    kube = KubeSettings(
        cluster_name=cluster_name,
        namespaces=namespaces,
        kubeconfig=kubeconfig,
        api_server=api_server,
        ca_cert=ca_cert,
        route_kinds=route_kinds,
    )

    owner = r.required("OWNER_ID")
    if owner and not _OWNER_ID.match(owner):
        r.problems.append(("OWNER_ID", "1-63 characters: letters, digits, '.', '_', '-'"))
    prefix = r.raw("ANNOTATION_PREFIX") or DEFAULT_PREFIX
    if not _DNS_SUBDOMAIN.match(prefix):
        r.problems.append(("ANNOTATION_PREFIX", "must be a DNS subdomain such as apim-sync.io"))
    policy_text = r.required("SYNC_POLICY")
    policy = SyncPolicy.UPSERT_ONLY
    if policy_text:
        policy = r.parsed("SYNC_POLICY", SyncPolicy.UPSERT_ONLY, SyncPolicy, "sync, upsert-only or create-only")
    sync = SyncSettings(
        owner_id=OwnerId(owner),
        annotation_prefix=prefix,
        default_mode=r.parsed("DEFAULT_MODE", Mode.INGRESS, Mode, "public, ingress or internal"),
        policy=policy,
        max_deletes_per_run=r.parsed("MAX_DELETES_PER_RUN", 10, _positive_int, "a positive whole number"),
        max_delete_fraction=r.parsed("MAX_DELETE_FRACTION", 0.5, _fraction, "a number in (0, 1]"),
        allow_mass_delete=r.parsed("ALLOW_MASS_DELETE", False, _bool, "true or false"),
        apply_concurrency=r.parsed("APPLY_CONCURRENCY", 4, _positive_int, "a positive whole number"),
        max_attempts=r.parsed("MAX_ATTEMPTS", 5, _positive_int, "a positive whole number"),
        max_retry_wait_seconds=r.parsed("MAX_RETRY_WAIT_SECONDS", 20.0, _seconds, "a finite, non-negative number of seconds"),
        run_budget_seconds=r.parsed("RUN_TIME_BUDGET_SECONDS", 540.0, _seconds, "a finite, non-negative number of seconds"),
    )

    header, named_value = r.raw("PUBLIC_AUTH_HEADER"), r.raw("PUBLIC_AUTH_NAMED_VALUE")
    if (header is None) != (named_value is None):
        r.problems.append(("PUBLIC_AUTH_NAMED_VALUE", "set PUBLIC_AUTH_HEADER and PUBLIC_AUTH_NAMED_VALUE together"))
    if header is not None and not _HEADER_NAME.match(header):
        r.problems.append(("PUBLIC_AUTH_HEADER", "not a valid HTTP header name"))
    if named_value is not None and not _NAMED_VALUE.match(named_value):
        r.problems.append(("PUBLIC_AUTH_NAMED_VALUE", "not a valid APIM named value id"))
    default_auth = PublicAuthMode.HEADER if header is not None else PublicAuthMode.NONE
    auth_mode = r.parsed("PUBLIC_AUTH_MODE", default_auth, PublicAuthMode, "managed-identity, header or none")
    if auth_mode is PublicAuthMode.HEADER and header is None:
        r.problems.append(("PUBLIC_AUTH_HEADER", "missing: PUBLIC_AUTH_MODE header needs it and PUBLIC_AUTH_NAMED_VALUE"))
    if auth_mode is not PublicAuthMode.HEADER and header is not None:
        r.problems.append(("PUBLIC_AUTH_HEADER", f"set only with PUBLIC_AUTH_MODE header, not {auth_mode.value}"))
    audience = r.raw("PUBLIC_AUTH_AUDIENCE")
    if audience is not None and not TOKEN_AUDIENCE.match(audience):
        r.problems.append(("PUBLIC_AUTH_AUDIENCE", "an app id URI (api://...), an https URI or a client id"))
    public_auth = PublicAuthSettings(header_name=header, named_value=named_value, mode=auth_mode, audience=audience)

    sandbox_token = r.raw("SANDBOX_TOKEN")
    if sandbox_token is not None and not is_loopback_url(arm_endpoint):
        r.problems.append(("SANDBOX_TOKEN", "only allowed with a loopback ARM_ENDPOINT"))
    credentials = CredentialSettings(sandbox_token=sandbox_token, arm_ca_bundle=r.raw("ARM_CA_BUNDLE"))
    r.existing_file("ARM_CA_BUNDLE", credentials.arm_ca_bundle)

    aks_resource_id = r.raw("AKS_RESOURCE_ID")
    if aks_resource_id is not None and not _AKS_RESOURCE_ID.match(aks_resource_id):
        r.problems.append(
            (
                "AKS_RESOURCE_ID",
                "expected /subscriptions/<id>/resourceGroups/<rg>/providers/Microsoft.ContainerService/managedClusters/<name>",
            )
        )
    trusted = tuple(s.strip().rstrip("/") for s in (r.raw("EVENT_SOURCES") or "").split(",") if s.strip())
    events = EventSettings(aks_resource_id=aks_resource_id, trusted_sources=trusted)

    allowlist = AllowListSettings(
        enabled=r.parsed("ALLOWLIST_ENABLED", True, _bool, "true or false"),
        policy=AllowListPolicy(
            source=r.parsed("ALLOWLIST_ADDRESSES", AddressSource.AUTO, AddressSource, "auto, public, private or both"),
            private_prefixes=r.parsed("ALLOWLIST_PRIVATE_PREFIXES", (), _cidrs, CIDRS_EXPECTED),
            extra_cidrs=r.parsed("ALLOWLIST_EXTRA_CIDRS", (), _cidrs, CIDRS_EXPECTED),
        ),
        annotation=r.parsed("ALLOWLIST_ANNOTATION", AnnotationChoice.ALLOWLIST, AnnotationChoice, "allowlist, whitelist or both"),
        ingress_controller=r.raw("INGRESS_CONTROLLER_SERVICE"),
        gateway_writers=_choices(r, "GATEWAY_ALLOWLIST", GATEWAY_ALLOWLISTS, "infrastructure"),
    )
    controller = allowlist.ingress_controller
    if controller is not None and not re.match(r"^[a-z0-9-]+/[a-z0-9.-]+$", controller):
        r.problems.append(("INGRESS_CONTROLLER_SERVICE", "expected <namespace>/<name>"))

    mtls = _mtls_settings(r)
    if sandbox_token is not None and mtls.storage_blob_uri and not is_loopback_url(mtls.storage_blob_uri):
        r.problems.append(("SANDBOX_TOKEN", "only allowed with a loopback AzureWebJobsStorage__blobServiceUri"))
    if sandbox_token is not None and mtls.ca_keyvault_url and not is_loopback_url(mtls.ca_keyvault_url):
        r.problems.append(("SANDBOX_TOKEN", "only allowed with a loopback CA_KEYVAULT_URL"))
    api_settings = ApiSettings(
        enabled=r.parsed("APIS_ENABLED", True, _bool, "true or false"),
        keep_apis=r.parsed("KEEP_APIS", False, _bool, "true or false"),
        create_products=r.parsed("CREATE_PRODUCTS", False, _bool, "true or false"),
    )

    tenancy_policy = r.raw("TENANCY_POLICY_CONFIGMAP") or DEFAULT_TENANCY_LOCATION
    if not re.match(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?/[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$", tenancy_policy):
        r.problems.append(("TENANCY_POLICY_CONFIGMAP", "expected <namespace>/<configmap name>"))

    if r.problems:
        raise InvalidSettings(r.problems)
    return Settings(
        apim=apim,
        kube=kube,
        sync=sync,
        public_auth=public_auth,
        credentials=credentials,
        events=events,
        allowlist=allowlist,
        mtls=mtls,
        apis=api_settings,
        telemetry=_telemetry_settings(r),
        tenancy_policy=tenancy_policy,
    )


def _telemetry_settings(r: _Reader) -> TelemetrySettings:
    authentication = dict(
        part.split("=", 1) for part in (r.raw("APPLICATIONINSIGHTS_AUTHENTICATION_STRING") or "").split(";") if "=" in part
    )
    client_id = authentication.get("ClientId") if authentication.get("Authorization", "").upper() == "AAD" else None
    return TelemetrySettings(connection_string=r.raw("APPLICATIONINSIGHTS_CONNECTION_STRING"), client_id=client_id)


_KEYVAULT_SECRET = re.compile(
    r"^https://([a-z0-9-]+\.vault\.(azure\.net|azure\.cn|usgovcloudapi\.net)|127\.0\.0\.1:\d+)/secrets/[A-Za-z0-9-]+/?$"
)
"""A vault of a national cloud, or the sandbox's Key Vault emulator on loopback."""


def _mtls_settings(r: _Reader) -> MtlsSettings:
    d = DEFAULT_MTLS
    source = r.parsed("CLIENT_CERTIFICATE_SOURCE", d.source, CertificateSource, "managed, keyvault or none")
    namespace = r.raw("CERT_NAMESPACE") or d.namespace
    for name, value in (("CERT_NAMESPACE", namespace),):
        if not _DNS_SUBDOMAIN.match(value):
            r.problems.append((name, "must be a namespace name"))
    fraction = r.parsed("CERT_RENEW_FRACTION", d.renew_fraction, _fraction, "a number in (0, 1]")
    settings = MtlsSettings(
        source=source,
        namespace=namespace,
        ca_store=r.raw("CA_SECRET_NAME") or d.ca_store,
        trust_bundle=r.raw("TRUST_BUNDLE_SECRET_NAME") or d.trust_bundle,
        key_kind=r.parsed("CERT_KEY_TYPE", d.key_kind, KeyKind, "ec-p256, rsa-2048, rsa-3072 or rsa-4096"),
        certificate_days=r.parsed("CERT_VALIDITY_DAYS", d.certificate_days, _positive_int, "a positive whole number of days"),
        ca_days=r.parsed("CA_VALIDITY_DAYS", d.ca_days, _positive_int, "a positive whole number of days"),
        renew_fraction=fraction,
        propagation_seconds=r.parsed(
            "TRUST_PROPAGATION_SECONDS", d.propagation_seconds, _seconds, "a finite, non-negative number of seconds"
        ),
        grace_seconds=r.parsed("CERT_GRACE_SECONDS", d.grace_seconds, _seconds, "a finite, non-negative number of seconds"),
        storage_connection=r.raw("AzureWebJobsStorage"),
        storage_blob_uri=_storage_blob_uri(r),
        storage_client_id=r.raw("AzureWebJobsStorage__clientId"),
        keyvault_secret_id=r.raw("KEYVAULT_CERT_SECRET_ID"),
        keyvault_identity_client_id=r.raw("KEYVAULT_IDENTITY_CLIENT_ID"),
        keyvault_issuer_ca=r.raw("KEYVAULT_ISSUER_CA"),
        ca_keyvault_url=r.raw("CA_KEYVAULT_URL"),
        ca_keyvault_name=r.raw("CA_KEYVAULT_SECRET_NAME") or d.ca_keyvault_name,
    )
    if settings.certificate_days >= settings.ca_days:
        r.problems.append(("CERT_VALIDITY_DAYS", "must be shorter than CA_VALIDITY_DAYS: a certificate cannot outlive its CA"))
    if settings.ca_keyvault_url is not None and urlsplit(settings.ca_keyvault_url).scheme != "https":
        r.problems.append(("CA_KEYVAULT_URL", "must be an https URL (https://<vault>.vault.azure.net)"))
    if not re.match(r"^[A-Za-z0-9-]{1,127}$", settings.ca_keyvault_name):
        r.problems.append(("CA_KEYVAULT_SECRET_NAME", "1-127 letters, digits and '-'"))
    versionless = bool(settings.keyvault_secret_id and _KEYVAULT_SECRET.match(settings.keyvault_secret_id))
    if source is CertificateSource.KEYVAULT and not versionless:
        r.problems.append(
            ("KEYVAULT_CERT_SECRET_ID", "a versionless Key Vault secret URL (https://<vault>.vault.azure.net/secrets/<name>)")
        )
    return settings
