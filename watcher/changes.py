"""Which object changes are worth an event, and which Services an event is about.

Pure. A change is reported when a fingerprint of the fields aks-apim-sync reads differs, and only for
Services that are exposed now or were exposed before (an object that just lost the annotation must still
be reported, so its backend can go). An Ingress change is reported as a change of each exposed Service it
routes to, before and after.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from shared.core.annotations import (
    AZURE_ALLOWED_IP_RANGES,
    DENY_ALL_EXCEPT_SOURCE_RANGES,
    INTERNAL_LB,
    NGINX_ALLOWLIST,
    NGINX_WHITELIST,
    Keys,
    is_exposed,
)

ObjectKey = tuple[str, str]
"""(namespace, name)"""

_WATCHED_ANNOTATIONS = (
    INTERNAL_LB,
    DENY_ALL_EXCEPT_SOURCE_RANGES,
    AZURE_ALLOWED_IP_RANGES,
    NGINX_ALLOWLIST,
    NGINX_WHITELIST,
)


@dataclass(frozen=True)
class ServiceState:
    exposed: bool
    fingerprint: str
    backend_id: str | None = None
    api_id: str | None = None


@dataclass(frozen=True)
class IngressState:
    services: frozenset[str]
    fingerprint: str


@dataclass(frozen=True)
class ServiceChange:
    """One Service to look at, with the backend ids it named before (hints for the removal of old ones)."""

    namespace: str
    name: str
    backend_ids: frozenset[str] = field(default=frozenset())
    api_ids: frozenset[str] = field(default=frozenset())


def key_of(obj: Mapping[str, Any]) -> ObjectKey:
    metadata = obj.get("metadata") or {}
    return str(metadata.get("namespace") or ""), str(metadata.get("name") or "")


def fingerprint(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:16]


def service_state(obj: Mapping[str, Any], prefix: str) -> ServiceState:
    metadata, spec = obj.get("metadata") or {}, obj.get("spec") or {}
    annotations: Mapping[str, str] = metadata.get("annotations") or {}
    ours = {k: v for k, v in annotations.items() if k.startswith(prefix + "/") or k in _WATCHED_ANNOTATIONS}
    watched = {
        "annotations": ours,
        "type": spec.get("type"),
        "ports": spec.get("ports"),
        "sourceRanges": spec.get("loadBalancerSourceRanges"),
        "loadBalancer": (obj.get("status") or {}).get("loadBalancer"),
    }
    return ServiceState(
        exposed=is_exposed(annotations, prefix),
        fingerprint=fingerprint(watched),
        backend_id=annotations.get(Keys(prefix).backend_id),
        api_id=annotations.get(Keys(prefix).api_id),
    )


def ingress_state(obj: Mapping[str, Any]) -> IngressState:
    metadata, spec = obj.get("metadata") or {}, obj.get("spec") or {}
    annotations: Mapping[str, str] = metadata.get("annotations") or {}
    names = {
        str(((path.get("backend") or {}).get("service") or {}).get("name"))
        for rule in spec.get("rules") or []
        for path in (rule.get("http") or {}).get("paths") or []
        if ((path.get("backend") or {}).get("service") or {}).get("name")
    }
    allow_lists = {k: annotations.get(k) for k in _WATCHED_ANNOTATIONS}
    watched = {"rules": spec.get("rules"), "tls": spec.get("tls"), "annotations": allow_lists}
    return IngressState(services=frozenset(names), fingerprint=fingerprint(watched))


def service_event(key: ObjectKey, before: ServiceState | None, after: ServiceState | None) -> ServiceChange | None:
    """A change worth reporting, or None (unchanged, or never exposed)."""
    if before == after:
        return None
    if not (before and before.exposed) and not (after and after.exposed):
        return None
    renamed = before is not None and before.backend_id and (after is None or after.backend_id != before.backend_id)
    hints = frozenset({before.backend_id}) if renamed and before is not None and before.backend_id else frozenset()
    left_api = before is not None and before.api_id and (after is None or after.api_id != before.api_id)
    api_hints = frozenset({before.api_id}) if left_api and before is not None and before.api_id else frozenset()
    return ServiceChange(key[0], key[1], backend_ids=hints, api_ids=api_hints)


def ingress_events(
    namespace: str, before: IngressState | None, after: IngressState | None, exposed: Iterable[ObjectKey]
) -> list[ServiceChange]:
    if before is not None and after is not None and before.fingerprint == after.fingerprint:
        return []
    named = (before.services if before else frozenset()) | (after.services if after else frozenset())
    exposed_here = {name for ns, name in exposed if ns == namespace}
    return [ServiceChange(namespace, name) for name in sorted(named & exposed_here)]


@dataclass(frozen=True)
class RouteState:
    """An HTTPRoute as far as URLs go: the Services its rules name, and a fingerprint of what decides their URL."""

    services: frozenset[ObjectKey]
    fingerprint: str


def route_state(obj: Mapping[str, Any]) -> RouteState:
    namespace = str((obj.get("metadata") or {}).get("namespace") or "")
    raw_spec = obj.get("spec")
    spec: Mapping[str, Any] = raw_spec if isinstance(raw_spec, Mapping) else {}
    named = {
        (str(ref.get("namespace") or namespace), str(ref.get("name") or ""))
        for rule in (spec.get("rules") or [])
        if isinstance(rule, Mapping)
        for ref in (rule.get("backendRefs") or [])
        if isinstance(ref, Mapping) and ref.get("name")
    }
    parents = (obj.get("status") or {}).get("parents") if isinstance(obj.get("status"), Mapping) else None
    return RouteState(frozenset(named), fingerprint({"spec": spec, "parents": parents}))


def route_events(before: RouteState | None, after: RouteState | None, exposed: Iterable[ObjectKey]) -> list[ServiceChange]:
    """An HTTPRoute that changed is a change of every exposed Service it named before or names now."""
    if before is not None and after is not None and before.fingerprint == after.fingerprint:
        return []
    named = (before.services if before else frozenset()) | (after.services if after else frozenset())
    return [ServiceChange(ns, name) for ns, name in sorted(named & set(exposed))]


def relist_diff(known: Mapping[ObjectKey, Any], listed: Mapping[ObjectKey, Any]) -> list[tuple[ObjectKey, Any, Any]]:
    """(key, before, after) for every object that changed while nobody watched, deletions included."""
    keys = sorted(set(known) | set(listed))
    return [(key, known.get(key), listed.get(key)) for key in keys if known.get(key) != listed.get(key)]
