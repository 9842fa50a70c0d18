"""The same backend scenario through either front (parametrised, not copied): an ingress-nginx Ingress or a
Gateway API HTTPRoute gives an ingress-mode Service its URL; the backend follows a host change; when the route
goes, the Service is pending and its backend is left as it is; a second run writes nothing."""

from __future__ import annotations

from typing import Any

import pytest

from sandbox.world import World
from shared import sync
from shared.core import naming
from shared.core.model import ServiceRef
from shared.core.scope import Scope
from tests.conftest import ingress, service
from tests.gateway.test_httproute_discovery import gateway, httproute

BACKEND = naming.backend_id_for(ServiceRef("aks-sandbox", "shop", "orders"))


class Front:
    def __init__(self, world: World, kind: str) -> None:
        self.world, self.kind = world, kind
        if kind == "HTTPRoute":
            world.kube.apply(gateway())

    def route(self, host: str) -> None:
        if self.kind == "Ingress":
            self.world.kube.apply(ingress("orders", "shop", host, "orders", path="/api"))
        else:
            self.world.kube.apply(httproute("orders", host=host, path="/api"))

    def remove(self) -> None:
        self.world.kube.remove("Ingress" if self.kind == "Ingress" else "HTTPRoute", "shop", "orders")


@pytest.mark.parametrize("kind", ["Ingress", "HTTPRoute"])
def test_the_backend_follows_its_route_through_either_front(world: World, make_deps: Any, kind: str) -> None:
    deps = make_deps(ROUTE_KINDS=kind, ALLOWLIST_ENABLED="false")
    world.kube.apply(service("orders", mode="ingress", lb_ip=None))
    front = Front(world, kind)
    front.route("orders.contoso.example")
    sync.run(Scope("aks-sandbox"), deps)
    assert world.apim.backends[BACKEND]["properties"]["url"] == "https://orders.contoso.example/api"

    front.route("shop.contoso.example")
    report = sync.run(Scope("aks-sandbox"), deps)
    assert world.apim.backends[BACKEND]["properties"]["url"] == "https://shop.contoso.example/api"
    assert [c["action"] for c in report.to_json()["changes"]] == ["update"]

    world.apim.clear_log()
    sync.run(Scope("aks-sandbox"), deps)
    assert world.apim.writes() == []

    front.remove()
    gone = sync.run(Scope("aks-sandbox"), deps)
    assert [p["object"] for p in gone.to_json()["pending"]] == ["shop/orders"]
    assert world.apim.backends[BACKEND]["properties"]["url"] == "https://shop.contoso.example/api", "left as it is"
