"""Allow-lists for Gateways, past what every front shares (tests/allowlist): the infrastructure annotation
touches nothing else on the Gateway; the Istio writer owns one ALLOW AuthorizationPolicy per Gateway and puts
back any edit to it whole; the generated-Service writer says when there is no Service; preflight warnings for
routes that do not attach, load balancers that lose client addresses, and other ALLOW policies."""

from __future__ import annotations

import copy
from typing import Any

from sandbox.world import OWNER_ID, World
from shared import sync
from shared.allowlists.report import AllowListReport
from shared.allowlists.writers import NOT_AS_WRITTEN, authorization_policy_name
from shared.core.annotations import AZURE_ALLOWED_IP_RANGES, SECRET_OWNER
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


def test_only_the_infrastructure_annotation_is_written_on_the_gateway(world: World, make_deps: Any) -> None:
    world.kube.apply(service("orders", mode="ingress", lb_ip=None))
    world.kube.apply(gateway())
    world.kube.apply(httproute("orders"))
    before = world.kube.get("Gateway", "shop", "shared")
    assert before is not None

    allowlist(world, make_deps)

    after = world.kube.get("Gateway", "shop", "shared")
    assert after is not None
    assert after["spec"].pop("infrastructure") == {"annotations": {AZURE_ALLOWED_IP_RANGES: "20.0.0.1/32"}}
    assert after["spec"] == before["spec"]


def istio(world: World, make_deps: Any) -> AllowListReport:
    report = sync.run(Scope("aks-sandbox"), make_deps(ROUTE_KINDS="HTTPRoute", GATEWAY_ALLOWLIST="istio"), steps=Steps.ALLOWLIST)
    assert isinstance(report.allowlists, AllowListReport)
    return report.allowlists


POLICY = authorization_policy_name("shared")


def authorization_policy(name: str, spec: dict[str, Any], owner: str | None = None) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name, "namespace": "shop"}
    if owner:
        metadata["annotations"] = {SECRET_OWNER: owner}
    return {"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy", "metadata": metadata, "spec": spec}


def routed_through_gateway(world: World) -> None:
    world.kube.apply(service("orders", mode="ingress", lb_ip=None))
    world.kube.apply(gateway())
    world.kube.apply(httproute("orders"))


def test_istio_gets_one_owned_allow_policy_attached_to_the_gateway(world: World, make_deps: Any) -> None:
    routed_through_gateway(world)
    istio(world, make_deps)
    policy = world.kube.get("AuthorizationPolicy", "shop", POLICY)
    assert policy is not None
    assert policy["metadata"]["annotations"] == {SECRET_OWNER: OWNER_ID}
    assert policy["spec"] == {
        "targetRefs": [{"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "shared"}],
        "action": "ALLOW",
        "rules": [{"from": [{"source": {"remoteIpBlocks": ["20.0.0.1/32"]}}]}],
    }


def test_an_edit_that_widens_our_policy_is_put_back_whole(world: World, make_deps: Any) -> None:
    routed_through_gateway(world)
    istio(world, make_deps)
    created = world.kube.get("AuthorizationPolicy", "shop", POLICY)
    assert created is not None
    edited = copy.deepcopy(created)
    edited["spec"]["action"] = "AUDIT"
    edited["spec"]["selector"] = {"matchLabels": {"app": "other"}}
    del edited["spec"]["targetRefs"]
    world.kube.apply(edited)

    report = istio(world, make_deps)

    assert world.kube.get("AuthorizationPolicy", "shop", POLICY)["spec"] == created["spec"]  # type: ignore[index]
    (change,) = report.changes
    assert (change["before"], change["reason"]) == (NOT_AS_WRITTEN, "Restored")


def test_a_deleted_policy_is_made_again(world: World, make_deps: Any) -> None:
    routed_through_gateway(world)
    istio(world, make_deps)
    world.kube.remove("AuthorizationPolicy", "shop", POLICY)
    report = istio(world, make_deps)
    assert world.kube.get("AuthorizationPolicy", "shop", POLICY) is not None
    assert [(c["object"], c["outcome"]) for c in report.changes] == [(f"AuthorizationPolicy shop/{POLICY}", "applied")]


def test_a_policy_of_that_name_that_is_not_ours_is_reported_and_left_alone(world: World, make_deps: Any) -> None:
    routed_through_gateway(world)
    theirs = authorization_policy(POLICY, {"action": "DENY", "rules": [{}]}, owner="someone-else")
    world.kube.apply(theirs)

    report = istio(world, make_deps)

    assert world.kube.get("AuthorizationPolicy", "shop", POLICY)["spec"] == theirs["spec"]  # type: ignore[index]
    assert report.changes == ()
    assert (f"AuthorizationPolicy shop/{POLICY}", "OwnedByOther") in {(f["object"], f["reason"]) for f in report.findings}


def test_another_allow_policy_at_the_gateway_is_a_warning(world: World, make_deps: Any) -> None:
    routed_through_gateway(world)
    world.kube.apply(authorization_policy("namespace-wide", {"action": "ALLOW", "rules": [{}]}))
    world.kube.apply(authorization_policy("elsewhere", {"action": "ALLOW", "selector": {"matchLabels": {"app": "x"}}}))
    world.kube.apply(authorization_policy("deny", {"action": "DENY", "rules": [{}]}))

    report = istio(world, make_deps)

    widening = [f["object"] for f in report.findings if f["reason"] == "AllowPolicyWidens"]
    assert widening == ["AuthorizationPolicy shop/namespace-wide"]


def test_the_generated_service_writer_reports_a_gateway_without_one(world: World, make_deps: Any) -> None:
    routed_through_gateway(world)
    settings = make_deps(ROUTE_KINDS="HTTPRoute", GATEWAY_ALLOWLIST="generated-service")
    report = sync.run(Scope("aks-sandbox"), settings, steps=Steps.ALLOWLIST).allowlists
    assert isinstance(report, AllowListReport)
    assert report.changes == ()
    assert [(f["object"], f["reason"]) for f in report.findings] == [("Gateway shop/shared", "GatewayServiceNotFound")]


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
