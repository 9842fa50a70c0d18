"""URLs of ingress-mode Services from Gateway API HTTPRoutes (gateway.networking.k8s.io/v1), as the Gateway API
specification defines attachment and references.

Pure. Every object is untrusted input, read defensively. A rule's backendRef to a Service counts when:
- the Service is in the route's namespace, or a ReferenceGrant in the Service's namespace allows HTTPRoutes of
  the route's namespace to refer to Services (all, or that one by name);
- the route attaches through a parentRef to a Gateway listener (by sectionName, or every listener) whose
  `allowedRoutes.namespaces.from` admits the route's namespace (Same, the default; All; or Selector, matched
  against the namespace's labels), and whose hostname (if any) matches the route's;
- the route's `status.parents` entry for that Gateway, when present, is Accepted.
The URL is https for an HTTPS listener (http for HTTP), the route's first hostname that the listener admits
(else the listener's own, if not a wildcard), and the rule's first PathPrefix or Exact path. Everything that
keeps a route from counting is said, per Service, so a Service with no usable route is reported, not guessed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from shared.core.model import GatewayApiObjects, IngressRoute

ServiceKey = tuple[str, str]
GATEWAY_GROUP = "gateway.networking.k8s.io"


@dataclass(frozen=True)
class GatewayRoutes:
    routes: tuple[IngressRoute, ...] = ()
    notes: Mapping[ServiceKey, tuple[str, ...]] = field(default_factory=dict)
    """(namespace, Service) -> why a route that names it does not count."""


def _map(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _meta(obj: Mapping[str, Any]) -> tuple[str, str]:
    metadata = _map(obj.get("metadata"))
    return _text(metadata.get("namespace")), _text(metadata.get("name"))


def granted(grants: Iterable[Mapping[str, Any]], route_namespace: str, service_namespace: str, service: str) -> bool:
    """A ReferenceGrant in the Service's namespace lets HTTPRoutes of the route's namespace refer to it."""
    for grant in grants:
        if _meta(grant)[0] != service_namespace:
            continue
        spec = _map(grant.get("spec"))
        from_ok = any(
            _text(_map(f).get("group")) == GATEWAY_GROUP
            and _text(_map(f).get("kind")) == "HTTPRoute"
            and _text(_map(f).get("namespace")) == route_namespace
            for f in _list(spec.get("from"))
        )
        to_ok = any(
            _text(_map(t).get("group")) == ""
            and _text(_map(t).get("kind")) == "Service"
            and _text(_map(t).get("name")) in ("", service)
            for t in _list(spec.get("to"))
        )
        if from_ok and to_ok:
            return True
    return False


def _host_matches(listener_host: str, route_host: str) -> bool:
    if not listener_host:
        return True
    if listener_host.startswith("*."):
        return route_host.endswith(listener_host[1:]) and route_host.count(".") >= listener_host.count(".")
    return listener_host == route_host


def _accepted(route: Mapping[str, Any], gateway_namespace: str, gateway_name: str) -> bool | None:
    """The route's Accepted condition for that parent: True, False, or None when the controller has not said."""
    for parent in _list(_map(route.get("status")).get("parents")):
        ref = _map(_map(parent).get("parentRef"))
        if _text(ref.get("name")) != gateway_name or _text(ref.get("namespace")) not in ("", gateway_namespace):
            continue
        for condition in _list(_map(parent).get("conditions")):
            if _text(_map(condition).get("type")) == "Accepted":
                return _text(_map(condition).get("status")) == "True"
    return None


def selector_matches(selector: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    """A metav1.LabelSelector: matchLabels and matchExpressions (In, NotIn, Exists, DoesNotExist), ANDed."""
    for key, value in _map(selector.get("matchLabels")).items():
        if labels.get(str(key)) != value:
            return False
    for expression in _list(selector.get("matchExpressions")):
        expression = _map(expression)
        key, operator = _text(expression.get("key")), _text(expression.get("operator"))
        values = {v for v in _list(expression.get("values")) if isinstance(v, str)}
        present = key in labels
        if operator == "In" and not (present and labels[key] in values):
            return False
        if operator == "NotIn" and present and labels[key] in values:
            return False
        if operator == "Exists" and not present:
            return False
        if operator == "DoesNotExist" and present:
            return False
        if operator not in ("In", "NotIn", "Exists", "DoesNotExist"):
            return False
    return True


def uses_selector(gateways: Iterable[Mapping[str, Any]]) -> bool:
    """Whether any listener admits routes by a namespace Selector (then namespace labels must be read)."""
    return any(
        _text(_map(_map(_map(listener).get("allowedRoutes")).get("namespaces")).get("from")) == "Selector"
        for gateway in gateways
        for listener in _list(_map(gateway.get("spec")).get("listeners"))
    )


def _listeners(
    route: Mapping[str, Any],
    gateways: Mapping[tuple[str, str], Mapping[str, Any]],
    notes: list[str],
    namespace_labels: Mapping[str, Mapping[str, str]],
) -> list[tuple[Mapping[str, Any], str]]:
    """(listener, gateway name) pairs the route attaches to, with a note for each parent that does not admit it."""
    route_namespace, route_name = _meta(route)
    found: list[tuple[Mapping[str, Any], str]] = []
    for parent in _list(_map(route.get("spec")).get("parentRefs")):
        parent = _map(parent)
        if _text(parent.get("kind")) not in ("", "Gateway") or _text(parent.get("group")) not in ("", GATEWAY_GROUP):
            continue
        namespace, name = _text(parent.get("namespace")) or route_namespace, _text(parent.get("name"))
        gateway = gateways.get((namespace, name))
        where = f"HTTPRoute {route_namespace}/{route_name}"
        if gateway is None:
            notes.append(f"{where}: its parent Gateway {namespace}/{name} does not exist")
            continue
        if _accepted(route, namespace, name) is False:
            notes.append(f"{where}: not Accepted by Gateway {namespace}/{name}")
            continue
        section = _text(parent.get("sectionName"))
        for listener in _list(_map(gateway.get("spec")).get("listeners")):
            listener = _map(listener)
            if section and _text(listener.get("name")) != section:
                continue
            namespaces = _map(_map(listener.get("allowedRoutes")).get("namespaces"))
            admitted = _text(namespaces.get("from")) or "Same"
            by_selector = admitted == "Selector" and selector_matches(
                _map(namespaces.get("selector")), namespace_labels.get(route_namespace, {})
            )
            if admitted == "All" or (admitted == "Same" and namespace == route_namespace) or by_selector:
                found.append((listener, f"{namespace}/{name}"))
            else:
                notes.append(
                    f"{where}: listener {_text(listener.get('name'))} of Gateway {namespace}/{name} admits routes from {admitted}"
                )
    return found


def _path(rule: Mapping[str, Any]) -> str:
    for match in _list(rule.get("matches")):
        path = _map(_map(match).get("path"))
        if _text(path.get("type")) in ("", "PathPrefix", "Exact"):
            return _text(path.get("value")) or "/"
    return "/"


def routes_from_gateway_api(objects: GatewayApiObjects) -> GatewayRoutes:
    gateways = {_meta(g): g for g in objects.gateways}
    routes: list[IngressRoute] = []
    notes: dict[ServiceKey, list[str]] = {}
    for route in sorted(objects.httproutes, key=_meta):
        route_namespace, route_name = _meta(route)
        spec = _map(route.get("spec"))
        parent_notes: list[str] = []
        listeners = _listeners(route, gateways, parent_notes, objects.namespace_labels)
        hostnames = [h for h in (_text(h) for h in _list(spec.get("hostnames"))) if h]
        for rule in _list(spec.get("rules")):
            rule = _map(rule)
            for ref in _list(rule.get("backendRefs")):
                ref = _map(ref)
                if _text(ref.get("kind")) not in ("", "Service") or _text(ref.get("group")) != "":
                    continue
                service_namespace, service = _text(ref.get("namespace")) or route_namespace, _text(ref.get("name"))
                key = (service_namespace, service)
                if service_namespace != route_namespace and not granted(
                    objects.reference_grants, route_namespace, service_namespace, service
                ):
                    why = (
                        f"HTTPRoute {route_namespace}/{route_name} is in another namespace and no ReferenceGrant "
                        f"in {service_namespace} allows it"
                    )
                    notes.setdefault(key, []).append(why)
                    continue
                if not listeners:
                    notes.setdefault(key, []).extend(
                        parent_notes or [f"HTTPRoute {route_namespace}/{route_name} attaches to no Gateway"]
                    )
                    continue
                for listener, gateway_key in listeners:
                    listener_host = _text(listener.get("hostname"))
                    host = next((h for h in hostnames if _host_matches(listener_host, h)), "")
                    if not host and not hostnames and listener_host and not listener_host.startswith("*"):
                        host = listener_host
                    if not host:
                        continue
                    protocol = _text(listener.get("protocol"))
                    tls = protocol == "HTTPS"
                    port = listener.get("port") if isinstance(listener.get("port"), int) else None
                    routes.append(
                        IngressRoute(
                            namespace=service_namespace,
                            ingress_name=f"{route_namespace}/{route_name}",
                            host=host,
                            path=_path(rule),
                            service_name=service,
                            service_port=str(ref.get("port") or ""),
                            tls=tls,
                            kind="HTTPRoute",
                            port=None if port in (None, 443 if tls else 80) else port,
                            gateway=gateway_key,
                        )
                    )
    return GatewayRoutes(routes=tuple(routes), notes={k: tuple(v) for k, v in notes.items()})
