"""ingress-mode Services get their URL from Gateway API HTTPRoutes (ROUTE_KINDS), against the Kubernetes
emulator serving the Gateway API CRDs (v1.6.1, standard channel): attachment through a Gateway listener,
ReferenceGrants across namespaces, the Accepted condition, ambiguity, and the migration from an Ingress."""

from __future__ import annotations

from typing import Any

import pytest

from sandbox.world import World
from shared import sync
from shared.core import naming
from shared.core.errors import InvalidSettings
from shared.core.model import ServiceRef
from shared.core.reporting import Report
from shared.core.scope import Scope
from shared.core.settings import load_settings
from tests.conftest import ingress, service

CLUSTER = Scope("aks-sandbox")


def gateway(
    name: str = "shared", namespace: str = "shop", *, allowed: str = "Same", hostname: str = "*.contoso.example"
) -> dict[str, Any]:
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "Gateway",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "gatewayClassName": "approuting-istio",
            "listeners": [
                {
                    "name": "https",
                    "protocol": "HTTPS",
                    "port": 443,
                    "hostname": hostname,
                    "tls": {"mode": "Terminate", "certificateRefs": [{"name": "wildcard"}]},
                    "allowedRoutes": {"namespaces": {"from": allowed}},
                }
            ],
        },
    }


def httproute(
    name: str,
    namespace: str = "shop",
    *,
    service_name: str = "orders",
    service_namespace: str | None = None,
    host: str = "orders.contoso.example",
    path: str = "/api",
    parent: tuple[str, str] = ("shop", "shared"),
    accepted: bool | None = None,
) -> dict[str, Any]:
    backend: dict[str, Any] = {"name": service_name, "port": 80}
    if service_namespace:
        backend["namespace"] = service_namespace
    route: dict[str, Any] = {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "parentRefs": [{"name": parent[1], "namespace": parent[0]}],
            "hostnames": [host],
            "rules": [{"matches": [{"path": {"type": "PathPrefix", "value": path}}], "backendRefs": [backend]}],
        },
    }
    if accepted is not None:
        condition = {
            "type": "Accepted",
            "status": "True" if accepted else "False",
            "reason": "Accepted" if accepted else "NotAllowedByListeners",
            "message": "",
            "lastTransitionTime": "2026-12-02T08:00:00Z",
            "observedGeneration": 1,
        }
        route["status"] = {
            "parents": [
                {
                    "parentRef": {"name": parent[1], "namespace": parent[0]},
                    "controllerName": "istio.io/gateway-controller",
                    "conditions": [condition],
                }
            ]
        }
    return route


def reference_grant(namespace: str, from_namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": "gateway.networking.k8s.io/v1beta1",
        "kind": "ReferenceGrant",
        "metadata": {"name": f"from-{from_namespace}", "namespace": namespace},
        "spec": {
            "from": [{"group": "gateway.networking.k8s.io", "kind": "HTTPRoute", "namespace": from_namespace}],
            "to": [{"group": "", "kind": "Service"}],
        },
    }


def url_of(world: World, name: str, namespace: str = "shop") -> str | None:
    found = world.apim.backends.get(naming.backend_id_for(ServiceRef("aks-sandbox", namespace, name)))
    return str(found["properties"]["url"]) if found else None


def run(make_deps: Any, route_kinds: str = "HTTPRoute") -> Report:
    return sync.run(CLUSTER, make_deps(ROUTE_KINDS=route_kinds, ALLOWLIST_ENABLED="false"))


def pending_message(report: Report, who: str) -> str:
    return next(str(p["message"]) for p in report.to_json()["pending"] if p["object"] == who)


def why_orders_gets_no_url(world: World, make_deps: Any, *objects: dict[str, Any]) -> str:
    """shop/orders (ingress mode) with these Gateway API objects: it gets no URL; what the report says why."""
    world.kube.apply(service("orders", mode="ingress", lb_ip=None))
    for obj in objects:
        world.kube.apply(obj)
    report = run(make_deps)
    assert url_of(world, "orders") is None
    return pending_message(report, "shop/orders")


def test_an_httproute_through_an_https_listener_gives_the_service_its_url(world: World, make_deps: Any) -> None:
    world.kube.apply(service("orders", mode="ingress", lb_ip=None))
    world.kube.apply(gateway())
    world.kube.apply(httproute("orders"))
    run(make_deps)
    assert url_of(world, "orders") == "https://orders.contoso.example/api"


def test_a_route_of_another_namespace_counts_only_with_a_reference_grant(world: World, make_deps: Any) -> None:
    world.kube.apply(service("orders", mode="ingress", lb_ip=None))
    world.kube.apply(gateway(namespace="edge", allowed="All"))
    world.kube.apply(httproute("steal-orders", "attacker", service_namespace="shop", parent=("edge", "shared")))

    report = run(make_deps)
    assert url_of(world, "orders") is None
    assert "no ReferenceGrant in shop allows it" in pending_message(report, "shop/orders")

    world.kube.apply(reference_grant("shop", "attacker"))
    run(make_deps)
    assert url_of(world, "orders") == "https://orders.contoso.example/api"


def test_a_listener_that_admits_only_its_own_namespace_does_not_take_a_route_of_another(world: World, make_deps: Any) -> None:
    why = why_orders_gets_no_url(
        world, make_deps, gateway(namespace="edge", allowed="Same"), httproute("orders", parent=("edge", "shared"))
    )
    assert "admits routes from Same" in why


def test_a_route_its_gateway_has_not_accepted_gives_no_url(world: World, make_deps: Any) -> None:
    why = why_orders_gets_no_url(world, make_deps, gateway(), httproute("orders", accepted=False))
    assert "not Accepted by Gateway shop/shared" in why


def test_two_httproutes_to_one_service_are_reported_not_guessed(world: World, make_deps: Any) -> None:
    world.kube.apply(service("orders", mode="ingress", lb_ip=None))
    world.kube.apply(gateway())
    world.kube.apply(httproute("orders"))
    world.kube.apply(httproute("orders-v2", host="orders2.contoso.example"))
    report = run(make_deps)
    assert url_of(world, "orders") is None
    [error] = [e for e in report.to_json()["errors"] if e["object"] == "shop/orders"]
    assert "several HTTPRoutes" in error["message"] and "shop/orders-v2" in error["message"]


def test_moving_from_an_ingress_to_an_httproute_moves_the_url_without_a_failed_step(world: World, make_deps: Any) -> None:
    world.kube.apply(service("orders", mode="ingress", lb_ip=None))
    world.kube.apply(ingress("orders", "shop", "orders.example.com", "orders"))
    world.kube.apply(gateway())
    world.kube.apply(httproute("orders"))
    first = run(make_deps, "Ingress,HTTPRoute")
    assert not first.failed and url_of(world, "orders") == "https://orders.example.com", "the Ingress wins while it exists"

    world.kube.remove("Ingress", "shop", "orders")
    second = run(make_deps, "Ingress,HTTPRoute")

    assert not second.failed and url_of(world, "orders") == "https://orders.contoso.example/api"
    [change] = second.to_json()["changes"]
    assert change["action"] == "update" and change["outcome"] == "applied", "one update in place: no delete, no gap"


def test_with_route_kinds_ingress_only_httproutes_are_not_read(world: World, make_deps: Any) -> None:
    world.kube.apply(service("orders", mode="ingress", lb_ip=None))
    world.kube.apply(gateway())
    world.kube.apply(httproute("orders"))
    world.kube.clear_log()
    run(make_deps, "Ingress")
    assert url_of(world, "orders") is None
    assert not [r for r in world.kube.log if "gateway.networking.k8s.io" in r.path]


@pytest.mark.parametrize("value", ["Gateway", "Ingress,Ingress", "", "httproute"])
def test_route_kinds_are_checked(world: World, value: str) -> None:
    if value == "":
        assert load_settings({**world.settings(), "ROUTE_KINDS": value}).kube.route_kinds == ("Ingress",)
        return
    with pytest.raises(InvalidSettings) as raised:
        load_settings({**world.settings(), "ROUTE_KINDS": value})
    assert [name for name, _ in raised.value.problems] == ["ROUTE_KINDS"]


def test_a_listener_that_admits_routes_by_namespace_selector_takes_a_route_from_a_matching_namespace(
    world: World, make_deps: Any
) -> None:
    world.kube.apply(service("orders", mode="ingress", lb_ip=None))
    edge = gateway(namespace="edge", allowed="Selector")
    edge["spec"]["listeners"][0]["allowedRoutes"]["namespaces"]["selector"] = {
        "matchExpressions": [{"key": "kubernetes.io/metadata.name", "operator": "In", "values": ["shop"]}]
    }
    world.kube.apply(edge)
    world.kube.apply(httproute("orders", parent=("edge", "shared")))
    run(make_deps)
    assert url_of(world, "orders") == "https://orders.contoso.example/api"

    edge["spec"]["listeners"][0]["allowedRoutes"]["namespaces"]["selector"] = {"matchLabels": {"team": "platform"}}
    world.kube.apply(edge)
    report = run(make_deps)
    assert "admits routes from Selector" in pending_message(report, "shop/orders")
