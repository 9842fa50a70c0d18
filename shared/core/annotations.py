"""Every annotation key aks-apim-sync reads or writes, and the context in which Service annotations are read.

Pure. Keys under the configurable prefix (default apim-sync.io) are what namespaces write on their Services;
the others belong to ingress-nginx, the Azure cloud provider and our own Secrets, and are named here once so
that the writers, the watcher and the readers agree.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from shared.core.model import Mode, OwnerId, PublicAuthMode
from shared.core.tenancy import TenancyPolicy

DEFAULT_PREFIX = "apim-sync.io"

INTERNAL_LB = "service.beta.kubernetes.io/azure-load-balancer-internal"
AZURE_ALLOWED_IP_RANGES = "service.beta.kubernetes.io/azure-allowed-ip-ranges"
DENY_ALL_EXCEPT_SOURCE_RANGES = "service.beta.kubernetes.io/azure-deny-all-except-load-balancer-source-ranges"
NGINX_ALLOWLIST = "nginx.ingress.kubernetes.io/allowlist-source-range"
NGINX_WHITELIST = "nginx.ingress.kubernetes.io/whitelist-source-range"
NGINX_AUTH_TLS_SECRET = "nginx.ingress.kubernetes.io/auth-tls-secret"  # noqa: S105 - an annotation name
NGINX_AUTH_TLS_VERIFY_CLIENT = "nginx.ingress.kubernetes.io/auth-tls-verify-client"
GATEWAY_NAME_LABEL = "gateway.networking.k8s.io/gateway-name"
"""Gateway API: the label an implementation puts on what it generates for a Gateway (its Service)."""
SECRET_OWNER = "apim-sync.io/owner"  # noqa: S105 - an annotation name
"""On the Secrets this deployment writes (CA, trust bundle): the owner id."""
TRUSTED_SINCE_PREFIX = "apim-sync.io/trusted-"
"""On the trust bundle Secret: when each CA entered the bundle."""


class Keys:
    """The Service annotations under one prefix."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.expose = f"{prefix}/expose"
        self.mode = f"{prefix}/mode"
        self.policy = f"{prefix}/reconcile-policy"
        self.backend_id = f"{prefix}/backend-id"
        self.port = f"{prefix}/port"
        self.protocol = f"{prefix}/protocol"
        self.path = f"{prefix}/path"
        self.url = f"{prefix}/url"
        self.title = f"{prefix}/title"
        self.api_id = f"{prefix}/api-id"
        self.api_path = f"{prefix}/api-path"
        self.api_display_name = f"{prefix}/api-display-name"
        self.subscription_required = f"{prefix}/subscription-required"
        self.products = f"{prefix}/products"
        self.operations = f"{prefix}/operations"
        self.openapi = f"{prefix}/openapi"


MAX_VALUE_LENGTH = 2048
"""The longest value of one of our annotations: every one is an id, a path, a url or a short list."""
MAX_OPERATIONS_LENGTH = 64 * 1024
"""The operations annotation lists operations (a count the tenancy policy bounds too)."""


def oversized(annotations: Mapping[str, str], keys: Keys) -> tuple[str, int] | None:
    """The first of our annotations (by key) whose value is longer than its limit, with that limit."""
    for key in sorted(k for k in annotations if k.startswith(keys.prefix + "/")):
        limit = MAX_OPERATIONS_LENGTH if key == keys.operations else MAX_VALUE_LENGTH
        if len(annotations[key]) > limit:
            return key, limit
    return None


class AnnotationChoice(StrEnum):
    """Which ingress-nginx source-range annotation the allow-list writer sets."""

    ALLOWLIST = "allowlist"
    WHITELIST = "whitelist"
    BOTH = "both"

    @property
    def keys(self) -> tuple[str, ...]:
        return {
            AnnotationChoice.ALLOWLIST: (NGINX_ALLOWLIST,),
            AnnotationChoice.WHITELIST: (NGINX_WHITELIST,),
            AnnotationChoice.BOTH: (NGINX_ALLOWLIST, NGINX_WHITELIST),
        }[self]


@dataclass(frozen=True)
class AnnotationContext:
    cluster: str
    owner: OwnerId
    prefix: str
    default_mode: Mode
    public_auth_header: str | None = None
    public_auth_named_value: str | None = None
    policy: TenancyPolicy = field(default_factory=TenancyPolicy)
    public_auth: PublicAuthMode = PublicAuthMode.NONE
    token_audience: str | None = None
    """The default audience of APIM's managed-identity token (PUBLIC_AUTH_AUDIENCE)."""

    @property
    def keys(self) -> Keys:
        return Keys(self.prefix)


def is_exposed(annotations: Mapping[str, str], prefix: str) -> bool:
    return annotations.get(f"{prefix}/expose", "").strip().lower() == "true"
