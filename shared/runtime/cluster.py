"""What every step of a run shares: one read of the cluster, the annotation context and the retry wrapper."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import yaml

from shared.core.annotations import AnnotationContext, is_exposed
from shared.core.model import GatewayApiObjects, IngressView, ServiceView
from shared.core.scope import Scope
from shared.core.settings import Settings
from shared.core.tenancy import MAX_POLICY_BYTES, POLICY_KEY, InvalidTenancyPolicy, TenancyPolicy, parse_policy
from shared.runtime.ports import Dependencies
from shared.runtime.retry import call_with_retries

T = TypeVar("T")


@dataclass(frozen=True)
class ClusterView:
    """What one run read of the cluster: the Services and Ingresses in scope, and the tenancy policy."""

    services: list[ServiceView]
    ingresses: list[IngressView]
    policy: TenancyPolicy = field(default_factory=TenancyPolicy)
    gateway_api: GatewayApiObjects = field(default_factory=GatewayApiObjects)
    """Read when ROUTE_KINDS includes HTTPRoute and a Service in scope is exposed."""


def annotation_context(settings: Settings, policy: TenancyPolicy) -> AnnotationContext:
    return AnnotationContext(
        cluster=settings.kube.cluster_name,
        owner=settings.sync.owner_id,
        prefix=settings.sync.annotation_prefix,
        default_mode=settings.sync.default_mode,
        public_auth_header=settings.public_auth.header_name,
        public_auth_named_value=settings.public_auth.named_value,
        public_auth=settings.public_auth.mode,
        token_audience=settings.public_auth.audience,
        policy=policy,
    )


def with_retries(deps: Dependencies, call: Callable[[], T]) -> T:
    sync = deps.settings.sync
    return call_with_retries(call, attempts=sync.max_attempts, max_wait_seconds=sync.max_retry_wait_seconds, sleep=deps.sleep)


def read_cluster(scope: Scope, deps: Dependencies, *, policy: TenancyPolicy | None = None) -> ClusterView:
    """Services in scope, the Ingresses of the same scope when any Service is exposed (else none are needed),
    and the tenancy policy (read again unless given). Raises when any of them cannot be read: a run never
    writes on a guess."""
    prefix = deps.settings.sync.annotation_prefix
    services = with_retries(deps, lambda: deps.cluster.list_services(scope))
    exposed = any(is_exposed(s.annotations, prefix) for s in services)
    ingresses = with_retries(deps, lambda: deps.cluster.list_ingresses(scope)) if exposed else []
    wants_routes = exposed and "HTTPRoute" in deps.settings.kube.route_kinds
    gateway_api = with_retries(deps, lambda: deps.cluster.list_gateway_api(scope)) if wants_routes else GatewayApiObjects()
    return ClusterView(services, ingresses, policy if policy is not None else read_policy(deps), gateway_api)


def read_policy(deps: Dependencies) -> TenancyPolicy:
    """The platform team's policy from its ConfigMap; the built-in default when there is none. A policy that
    cannot be parsed raises InvalidTenancyPolicy: nothing is written on a policy nobody meant."""
    namespace, name = deps.settings.tenancy_policy.split("/", 1)
    where = f"ConfigMap {namespace}/{name} key {POLICY_KEY}"
    text = with_retries(deps, lambda: deps.cluster.get_configmap_value(namespace, name, POLICY_KEY))
    if text is None:
        return TenancyPolicy()
    if len(text.encode()) > MAX_POLICY_BYTES:
        raise InvalidTenancyPolicy(where, POLICY_KEY, f"larger than {MAX_POLICY_BYTES} bytes")
    document: Any
    try:
        document = json.loads(text) if text.lstrip().startswith("{") else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError, RecursionError):
        raise InvalidTenancyPolicy(where, POLICY_KEY, "is neither JSON nor YAML") from None
    return parse_policy(document, where)
