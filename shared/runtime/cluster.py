"""What every step of a run shares: one read of the cluster, the annotation context and the retry wrapper."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from shared.core.annotations import AnnotationContext, is_exposed
from shared.core.model import IngressView, ServiceView
from shared.core.scope import Scope
from shared.core.settings import Settings
from shared.runtime.ports import Dependencies
from shared.runtime.retry import call_with_retries

T = TypeVar("T")

ClusterView = tuple[list[ServiceView], list[IngressView]]


def annotation_context(settings: Settings) -> AnnotationContext:
    return AnnotationContext(
        cluster=settings.kube.cluster_name,
        owner=settings.sync.owner_id,
        prefix=settings.sync.annotation_prefix,
        default_mode=settings.sync.default_mode,
        public_auth_header=settings.public_auth.header_name,
        public_auth_named_value=settings.public_auth.named_value,
    )


def with_retries(deps: Dependencies, call: Callable[[], T]) -> T:
    sync = deps.settings.sync
    return call_with_retries(call, attempts=sync.max_attempts, max_wait_seconds=sync.max_retry_wait_seconds, sleep=deps.sleep)


def read_cluster(scope: Scope, deps: Dependencies) -> ClusterView:
    """Services in scope, and the Ingresses of the same scope when any Service is exposed (else none are needed)."""
    prefix = deps.settings.sync.annotation_prefix
    services = with_retries(deps, lambda: deps.cluster.list_services(scope))
    exposed = any(is_exposed(s.annotations, prefix) for s in services)
    ingresses = with_retries(deps, lambda: deps.cluster.list_ingresses(scope)) if exposed else []
    return services, ingresses
