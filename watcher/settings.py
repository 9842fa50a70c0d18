"""The watcher's settings, from environment variables (listed in the README). Values never reach a message."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from shared.core.annotations import DEFAULT_PREFIX
from shared.core.tenancy import DEFAULT_LOCATION as DEFAULT_TENANCY_LOCATION
from shared.core.watcher_events import watcher_source

_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")


class InvalidWatcherSettings(ValueError):
    def __init__(self, problems: list[tuple[str, str]]) -> None:
        self.problems = problems
        super().__init__("; ".join(f"{name}: {why}" for name, why in problems))


@dataclass(frozen=True)
class WatcherSettings:
    cluster_name: str
    topic_endpoint: str
    topic_key: str | None
    source: str
    annotation_prefix: str = DEFAULT_PREFIX
    namespaces: tuple[str, ...] = ()
    kubeconfig: str | None = None
    coalesce_seconds: float = 2.0
    give_up_after_seconds: float = 300.0
    watch_timeout_seconds: int = 300
    ca_bundle: str | None = None
    tenancy_policy: str = DEFAULT_TENANCY_LOCATION
    """<namespace>/<name> of the tenancy policy ConfigMap: a change of it asks for a cluster resync."""
    watch_routes: bool = False
    """ROUTE_KINDS includes HTTPRoute: watch HTTPRoutes (a change is a change of the Services they name), and
    Gateways and ReferenceGrants (a change asks for a cluster resync)."""
    watch_istio_policies: bool = False
    """GATEWAY_ALLOWLIST includes istio: watch the app's own AuthorizationPolicies (a change asks for a resync)."""
    trust_secrets: tuple[str, ...] = ("aks-apim-sync/aks-apim-sync-client-ca", "aks-apim-sync/aks-apim-sync-ca")
    """<namespace>/<name> of the trust bundle and CA Secrets (the app's own namespace): a change asks for a
    rotation check, which puts a hand-edited bundle back."""


def _number(environ: Mapping[str, str], name: str, default: float, problems: list[tuple[str, str]]) -> float:
    text = (environ.get(name) or "").strip()
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        value = -1
    if value <= 0:
        problems.append((name, "expected a positive number of seconds"))
        return default
    return value


def _trust_secrets(environ: Mapping[str, str]) -> tuple[str, ...]:
    """The app's settings name them: CERT_NAMESPACE, TRUST_BUNDLE_SECRET_NAME, CA_SECRET_NAME."""
    namespace = (environ.get("CERT_NAMESPACE") or "").strip() or "aks-apim-sync"
    bundle = (environ.get("TRUST_BUNDLE_SECRET_NAME") or "").strip() or "aks-apim-sync-client-ca"
    ca = (environ.get("CA_SECRET_NAME") or "").strip() or "aks-apim-sync-ca"
    return (f"{namespace}/{bundle}", f"{namespace}/{ca}")


def load_watcher_settings(environ: Mapping[str, str]) -> WatcherSettings:
    problems: list[tuple[str, str]] = []
    cluster = (environ.get("CLUSTER_NAME") or "").strip()
    if not cluster:
        problems.append(("CLUSTER_NAME", "missing"))
    endpoint = (environ.get("EVENTGRID_TOPIC_ENDPOINT") or "").strip()
    if urlsplit(endpoint).scheme != "https":
        problems.append(("EVENTGRID_TOPIC_ENDPOINT", "missing, or not an https URL"))
    namespaces = tuple(ns.strip() for ns in (environ.get("NAMESPACES") or "").split(",") if ns.strip())
    if any(not _NAME.match(ns) for ns in namespaces):
        problems.append(("NAMESPACES", "each entry must be a namespace name"))
    settings = WatcherSettings(
        cluster_name=cluster,
        topic_endpoint=endpoint,
        topic_key=(environ.get("EVENTGRID_TOPIC_KEY") or "").strip() or None,
        source=(environ.get("EVENT_SOURCE") or "").strip() or watcher_source(cluster),
        annotation_prefix=(environ.get("ANNOTATION_PREFIX") or "").strip() or DEFAULT_PREFIX,
        namespaces=namespaces,
        kubeconfig=(environ.get("KUBECONFIG") or "").strip() or None,
        coalesce_seconds=_number(environ, "COALESCE_SECONDS", 2.0, problems),
        give_up_after_seconds=_number(environ, "PUBLISH_GIVE_UP_SECONDS", 300.0, problems),
        watch_timeout_seconds=int(_number(environ, "WATCH_TIMEOUT_SECONDS", 300, problems)),
        ca_bundle=(environ.get("EVENTGRID_CA_BUNDLE") or "").strip() or None,
        tenancy_policy=(environ.get("TENANCY_POLICY_CONFIGMAP") or "").strip() or DEFAULT_TENANCY_LOCATION,
        trust_secrets=_trust_secrets(environ),
        watch_routes="HTTPRoute" in (environ.get("ROUTE_KINDS") or ""),
        watch_istio_policies="istio" in (environ.get("GATEWAY_ALLOWLIST") or ""),
    )
    if settings.tenancy_policy.count("/") != 1:
        problems.append(("TENANCY_POLICY_CONFIGMAP", "expected <namespace>/<configmap name>"))
    if problems:
        raise InvalidWatcherSettings(problems)
    return settings
