"""Which Services this deployment exposes, how, and the Ingresses that front them: worked out once per run.

Pure. `expose` turns what one run read into every step's view of it: the backend each Service wants (or
why not), the mode of each managed Service, and the managed Ingresses. The backends, APIs, allow-lists and
rotation steps all read this one answer instead of reading the annotations again.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from shared.backends.discovery import ServiceOutcome, backend_for, managed_mode
from shared.backends.gateway_routes import routes_from_gateway_api
from shared.core.annotations import AnnotationContext
from shared.core.model import DesiredBackend, GatewayApiObjects, IngressRoute, IngressView, Mode, ServiceView
from shared.core.settings import Settings
from shared.runtime.cluster import ClusterView, annotation_context

ServiceKey = tuple[str, str]
"""(namespace, name)"""


@dataclass(frozen=True)
class Exposure:
    context: AnnotationContext
    services: Sequence[ServiceView]
    ingresses: Sequence[IngressView]
    outcomes: Mapping[ServiceKey, ServiceOutcome]
    """Every Service that asks to be exposed: the backend it wants, or why not."""
    modes: Mapping[ServiceKey, Mode]
    """The mode of every Service this deployment manages (exposed, not skipped, mode valid and granted)."""
    gateway_routes: Sequence[IngressRoute] = ()
    """The HTTPRoute rules that count (attached, admitted, granted)."""
    gateways: Mapping[ServiceKey, Mapping[str, Any]] = field(default_factory=dict)
    """(namespace, name) -> the Gateway as read."""
    route_notes: Mapping[ServiceKey, tuple[str, ...]] = field(default_factory=dict)
    """Why HTTPRoutes that name a Service do not count (preflight warnings)."""

    def outcome(self, service: ServiceView) -> ServiceOutcome | None:
        return self.outcomes.get((service.namespace, service.name))

    def managed_ingresses(self) -> list[IngressView]:
        """The Ingresses this deployment manages: those routing to an ingress-mode Service it exposes."""
        return [
            ingress
            for ingress in self.ingresses
            if any(self.modes.get((ingress.namespace, name)) is Mode.INGRESS for name in ingress.service_names)
        ]

    def managed_gateways(self) -> list[Mapping[str, Any]]:
        """The Gateways this deployment manages: those carrying an HTTPRoute to an ingress-mode Service it exposes."""
        keys = {
            tuple(route.gateway.split("/", 1))
            for route in self.gateway_routes
            if route.gateway and self.modes.get((route.namespace, route.service_name)) is Mode.INGRESS
        }
        return [self.gateways[k] for k in sorted(keys) if k in self.gateways]  # type: ignore[index]

    def client_certificate_backends(self) -> set[str]:
        """The backends that present APIM's client certificate: ingress mode, at an address the tenancy rules trust."""
        return {o.id for o in self.outcomes.values() if isinstance(o, DesiredBackend) and o.client_certificate}


def expose(
    services: Sequence[ServiceView],
    ingresses: Sequence[IngressView],
    context: AnnotationContext,
    gateway_api: GatewayApiObjects | None = None,
    route_kinds: Sequence[str] = ("Ingress",),
) -> Exposure:
    routes: list[IngressRoute] = []
    if "Ingress" in route_kinds:
        routes += [route for ingress in ingresses for route in ingress.routes]
    from_gateways = routes_from_gateway_api(gateway_api) if gateway_api is not None and "HTTPRoute" in route_kinds else None
    if from_gateways is not None:
        routes += from_gateways.routes
    outcomes: dict[ServiceKey, ServiceOutcome] = {}
    modes: dict[ServiceKey, Mode] = {}
    for service in services:
        key = (service.namespace, service.name)
        notes = from_gateways.notes.get(key, ()) if from_gateways is not None else ()
        outcome = backend_for(service, routes, context, route_notes=notes)
        if outcome is not None:
            outcomes[key] = outcome
        mode = managed_mode(service, context)
        if mode is not None:
            modes[key] = mode
    gateways = {_key_of(g): g for g in gateway_api.gateways} if gateway_api is not None else {}
    gateway_routes = from_gateways.routes if from_gateways is not None else ()
    route_notes = from_gateways.notes if from_gateways is not None else {}
    return Exposure(context, services, ingresses, outcomes, modes, gateway_routes, gateways, route_notes)


def _key_of(obj: Mapping[str, Any]) -> ServiceKey:
    metadata = obj.get("metadata") if isinstance(obj.get("metadata"), Mapping) else {}
    return (str(metadata.get("namespace") or ""), str(metadata.get("name") or ""))  # type: ignore[union-attr]


def of_view(view: ClusterView, settings: Settings) -> Exposure:
    """The exposure of what one read of the cluster found, under its tenancy policy."""
    context = annotation_context(settings, view.policy)
    return expose(view.services, view.ingresses, context, view.gateway_api, settings.kube.route_kinds)
