"""What this app may do, derived from what it calls: one table of ARM operations, one of Kubernetes verbs.

Pure. Every Azure SDK call the adapters make is a row of ARM_OPERATIONS with the ARM action it needs and the
features that make it; the custom role in infra/ is arm_actions(all features), and a test holds the two equal
and checks, against the emulators, that every request a run makes is covered. KUBE_RULES does the same for the
Kubernetes API (deploy/kubernetes/app-rbac.yaml). `doctor` asks Azure and Kubernetes for exactly these.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum

from shared.core.settings import CertificateSource, Settings


class Feature(StrEnum):
    BACKENDS = "backends"
    """Services to backends: always on."""
    ALLOWLISTS = "allowlists"
    APIS = "apis"
    CREATE_PRODUCTS = "create-products"
    ROTATION = "rotation"
    """mTLS: the client certificates APIM presents and the CA the entry points trust."""
    GATEWAYS = "gateways"
    """ROUTE_KINDS with HTTPRoute."""
    ISTIO = "istio"
    """GATEWAY_ALLOWLIST with istio."""
    GATEWAY_TRUST = "gateway-trust"
    """Rotation and Gateways together: the trust bundle's copy next to each managed Gateway."""
    PUBLIC_AUTH = "public-auth"
    """The Option 1 named value (checked by doctor)."""


@dataclass(frozen=True)
class ArmOperation:
    sdk_call: str
    """azure-mgmt-apimanagement operation group and method, as the adapters call it."""
    action: str
    features: frozenset[Feature]


def _arm(sdk_call: str, action: str, *features: Feature) -> ArmOperation:
    return ArmOperation(sdk_call, f"Microsoft.ApiManagement/{action}", frozenset(features))


_B, _A, _P, _R, _L, _N = (
    Feature.BACKENDS,
    Feature.APIS,
    Feature.CREATE_PRODUCTS,
    Feature.ROTATION,
    Feature.ALLOWLISTS,
    Feature.PUBLIC_AUTH,
)
ARM_OPERATIONS: tuple[ArmOperation, ...] = (
    _arm("api_management_service.get", "service/read", _B, _L),
    _arm("backend.list_by_service", "service/backends/read", _B),
    _arm("backend.get", "service/backends/read", _B),
    _arm("backend.create_or_update", "service/backends/write", _B),
    _arm("backend.delete", "service/backends/delete", _B),
    _arm("certificate.list_by_service", "service/certificates/read", _R),
    _arm("certificate.create_or_update", "service/certificates/write", _R),
    _arm("certificate.delete", "service/certificates/delete", _R),
    _arm("api.list_by_service", "service/apis/read", _A),
    _arm("api.list_by_tags", "service/apisByTags/read", _A),
    _arm("api.get", "service/apis/read", _A),
    _arm("api.begin_create_or_update", "service/apis/write", _A),
    _arm("api.begin_delete", "service/apis/delete", _A),
    # The long-running API writes are polled at the URL APIM answers with (tenant/operationResults).
    _arm("api.begin_*: polling", "service/tenant/operationResults/read", _A),
    _arm("api_operation.list_by_api", "service/apis/operations/read", _A),
    _arm("api_operation.create_or_update", "service/apis/operations/write", _A),
    _arm("api_operation.delete", "service/apis/operations/delete", _A),
    _arm("api_policy.get", "service/apis/policies/read", _A),
    _arm("api_policy.create_or_update", "service/apis/policies/write", _A),
    _arm("api_operation_policy.get", "service/apis/operations/policies/read", _A),
    _arm("api_operation_policy.create_or_update", "service/apis/operations/policies/write", _A),
    _arm("product.list_by_service", "service/products/read", _A),
    _arm("product.create_or_update", "service/products/write", _P),
    _arm("product_api.check_entity_exists", "service/products/apis/read", _A),
    _arm("product_api.list_by_product", "service/products/apis/read", _A),
    _arm("product_api.create_or_update", "service/products/apis/write", _A),
    _arm("product_api.delete", "service/products/apis/delete", _A),
    _arm("tag.create_or_update", "service/tags/write", _A),
    _arm("tag.get_by_api", "service/apis/tags/read", _A),
    _arm("tag.assign_to_api", "service/apis/tags/write", _A),
    _arm("named_value.get", "service/namedValues/read", _N),
)


def enabled_features(settings: Settings) -> frozenset[Feature]:
    features = {Feature.BACKENDS}
    if settings.allowlist.enabled:
        features.add(Feature.ALLOWLISTS)
    if settings.apis.enabled:
        features.add(Feature.APIS)
        if settings.apis.create_products:
            features.add(Feature.CREATE_PRODUCTS)
    if settings.mtls.source is not CertificateSource.NONE:
        features.add(Feature.ROTATION)
    if "HTTPRoute" in settings.kube.route_kinds:
        features.add(Feature.GATEWAYS)
        if "istio" in settings.allowlist.gateway_writers:
            features.add(Feature.ISTIO)
        if Feature.ROTATION in features:
            features.add(Feature.GATEWAY_TRUST)
    if settings.public_auth.named_value:
        features.add(Feature.PUBLIC_AUTH)
    return frozenset(features)


def arm_actions(features: Iterable[Feature]) -> list[str]:
    """The ARM actions these features need, sorted, each once."""
    wanted = set(features)
    return sorted({op.action for op in ARM_OPERATIONS if op.features & wanted})


def allows(granted: Sequence[str], denied: Sequence[str], action: str) -> bool:
    """ARM's rule: an action is allowed when some action pattern grants it and no notActions pattern takes it
    back (patterns with *, case-insensitive)."""

    def matches(patterns: Sequence[str]) -> bool:
        return any(fnmatch.fnmatchcase(action.lower(), p.lower()) for p in patterns)

    return matches(granted) and not matches(denied)


@dataclass(frozen=True)
class KubeRule:
    group: str
    resource: str
    verbs: tuple[str, ...]
    features: frozenset[Feature]
    namespaced: bool = False
    """True: only in the app's own namespace (CERT_NAMESPACE), through a Role; else cluster-wide."""
    why: str = ""


def _kube(group: str, resource: str, verbs: str, *features: Feature, namespaced: bool = False, why: str = "") -> KubeRule:
    return KubeRule(group, resource, tuple(verbs.split()), frozenset(features), namespaced, why)


_G, _I, _T = Feature.GATEWAYS, Feature.ISTIO, Feature.GATEWAY_TRUST
KUBE_RULES: tuple[KubeRule, ...] = (
    _kube("", "services", "get list", _B, why="Services and their addresses"),
    _kube("", "services", "patch", _L, why="loadBalancerSourceRanges"),
    _kube("networking.k8s.io", "ingresses", "get list", _B, why="ingress-mode URLs"),
    _kube("networking.k8s.io", "ingresses", "patch", _L, _R, why="allow-list and auth-tls annotations"),
    _kube("", "configmaps", "get", _B, why="OpenAPI documents and the tenancy policy"),
    _kube("gateway.networking.k8s.io", "httproutes", "list", _G, why="HTTPRoute URLs"),
    _kube("gateway.networking.k8s.io", "referencegrants", "list", _G, why="routes of other namespaces"),
    _kube("gateway.networking.k8s.io", "gateways", "get list", _G, why="listeners"),
    _kube("gateway.networking.k8s.io", "gateways", "patch", _G, why="infrastructure annotations, caCertificateRefs"),
    _kube("", "namespaces", "list", _G, why="listeners that admit routes by Selector"),
    _kube("", "configmaps", "create patch", _T, why="the trust bundle's copy next to each Gateway"),
    _kube("security.istio.io", "authorizationpolicies", "get list create patch", _I, why="the ALLOW policy per Gateway"),
    _kube("", "secrets", "get create patch", _R, namespaced=True, why="the CA and the trust bundle"),
)


def kube_rules(features: Iterable[Feature]) -> list[KubeRule]:
    wanted = set(features)
    return [rule for rule in KUBE_RULES if rule.features & wanted]


def kube_allows(rules: Iterable[KubeRule], group: str, resource: str, verb: str, *, in_app_namespace: bool) -> bool:
    return any(
        r.group == group and r.resource == resource and verb in r.verbs and (in_app_namespace or not r.namespaced) for r in rules
    )
