"""Allow-lists for Gateways exposed through an Azure load balancer: APIM's addresses in the Gateway's
spec.infrastructure.annotations (azure-allowed-ip-ranges), which the implementation propagates to the Service
it generates; the same guards as every allow-list (preconditions, hand edits put back), and preflight warnings
for routes that do not attach."""

from __future__ import annotations

from typing import Any

from sandbox.world import World
from shared import sync
from shared.allowlists.report import AllowListReport
from shared.core.annotations import AZURE_ALLOWED_IP_RANGES
from shared.core.scope import Scope, Steps
from tests.conftest import service
from tests.gateway.test_httproute_discovery import gateway, httproute


def allowlist(world: World, make_deps: Any) -> AllowListReport:
    report = sync.run(Scope("aks-sandbox"), make_deps(ROUTE_KINDS="HTTPRoute"), steps=Steps.ALLOWLIST)
    assert isinstance(report.allowlists, AllowListReport)
    return report.allowlists


def infrastructure_annotation(world: World) -> str | None:
    found = world.kube.get("Gateway", "shop", "shared")
    assert found is not None
    return ((found["spec"].get("infrastructure") or {}).get("annotations") or {}).get(AZURE_ALLOWED_IP_RANGES)


def test_the_gateway_admits_only_apim_and_a_hand_edit_is_put_back(world: World, make_deps: Any) -> None:
    world.kube.apply(service("orders", mode="ingress", lb_ip=None))
    world.kube.apply(gateway())
    world.kube.apply(httproute("orders"))

    first = allowlist(world, make_deps)
    assert infrastructure_annotation(world) == "20.0.0.1/32"
    assert [c["object"] for c in first.changes] == ["Gateway shop/shared"]
    listeners = world.kube.get("Gateway", "shop", "shared")["spec"]["listeners"]  # type: ignore[index]

    world.kube.clear_log()
    assert allowlist(world, make_deps).changes == () and world.kube.writes() == []

    edited = world.kube.get("Gateway", "shop", "shared")
    assert edited is not None
    edited["spec"]["infrastructure"]["annotations"][AZURE_ALLOWED_IP_RANGES] = "0.0.0.0/0"
    world.kube.apply(edited)
    restored = allowlist(world, make_deps)
    assert infrastructure_annotation(world) == "20.0.0.1/32"
    assert [c["reason"] for c in restored.changes] == ["Restored"]
    assert world.kube.get("Gateway", "shop", "shared")["spec"]["listeners"] == listeners  # type: ignore[index]


def test_a_route_that_does_not_attach_is_a_preflight_warning(world: World, make_deps: Any) -> None:
    world.kube.apply(service("orders", mode="ingress", lb_ip=None))
    world.kube.apply(gateway(namespace="edge", allowed="Same"))
    world.kube.apply(httproute("orders", parent=("edge", "shared")))
    report = allowlist(world, make_deps)
    assert [(f["object"], f["reason"]) for f in report.findings] == [("Service shop/orders", "RouteNotAttached")]


def test_the_gateways_generated_load_balancer_is_checked_before_trusting_the_list(world: World, make_deps: Any) -> None:
    world.kube.apply(service("orders", mode="ingress", lb_ip=None))
    world.kube.apply(gateway())
    world.kube.apply(httproute("orders"))
    generated = service("shared-approuting-istio", mode=None, expose=False)
    generated["metadata"]["labels"] = {"gateway.networking.k8s.io/gateway-name": "shared"}
    generated["spec"]["externalTrafficPolicy"] = "Cluster"
    world.kube.apply(generated)
    report = allowlist(world, make_deps)
    reasons = {f["reason"] for f in report.findings if "of Gateway shop/shared" in f["object"]}
    assert reasons == {"ClientAddressNotPreserved", "VnetTrafficNotDenied"}
