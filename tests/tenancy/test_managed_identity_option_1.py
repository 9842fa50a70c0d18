"""Option 1 without a shared secret: APIM's managed identity fetches a short-lived Entra token per request
(the authentication-managed-identity policy, inside the managed block), which the backend validates like any
JWT. The audience comes from PUBLIC_AUTH_AUDIENCE or, per namespace, from the tenancy policy."""

from __future__ import annotations

from typing import Any

import pytest

from sandbox.world import World
from shared import sync
from shared.apis import claims as apis
from shared.core.errors import InvalidSettings
from shared.core.scope import Scope
from shared.core.settings import load_settings
from shared.core.tenancy import InvalidTenancyPolicy, parse_policy
from shared.runtime.ports import Dependencies
from tests.conftest import service

CLUSTER = Scope("aks-sandbox")
MANAGED_IDENTITY = {
    "PUBLIC_AUTH_MODE": "managed-identity",
    "PUBLIC_AUTH_AUDIENCE": "api://aks-backends",
    "PUBLIC_AUTH_HEADER": "",
    "PUBLIC_AUTH_NAMED_VALUE": "",
    "ALLOWLIST_ENABLED": "false",
}


def https_api_service(name: str, namespace: str = "shop", **annotations: str) -> dict[str, Any]:
    return service(name, namespace, annotations=annotations, ports=[{"name": "https", "port": 443}])


@pytest.fixture
def deps(world: World, make_deps: Any) -> Dependencies:
    built: Dependencies = make_deps(**MANAGED_IDENTITY)
    return built


def test_the_api_policy_authenticates_with_apims_managed_identity_and_the_backend_holds_no_secret(
    world: World, deps: Dependencies
) -> None:
    world.kube.apply(https_api_service("orders", **{"apim-sync.io/api-id": "orders"}))
    report = sync.run(CLUSTER, deps)
    assert not report.failed, report.to_text()
    policy = world.apim.api_side.api_policies["orders"]
    assert apis.policy_audience(policy) == "api://aks-backends"
    assert '<authentication-managed-identity resource="api://aks-backends" />' in policy
    [backend] = world.apim.backends.values()
    assert "header" not in (backend["properties"].get("credentials") or {})

    world.apim.clear_log()
    sync.run(CLUSTER, deps)
    assert world.apim.writes() == [], "a second run writes nothing"


def test_each_operation_of_an_aggregated_api_authenticates_to_its_own_backend(world: World, deps: Dependencies) -> None:
    api = {"apim-sync.io/api-id": "orders", "apim-sync.io/api-path": "orders"}
    world.kube.apply(https_api_service("order-reader", **api, **{"apim-sync.io/operations": "GET /orders/{id}"}))
    world.kube.apply(https_api_service("order-writer", **api, **{"apim-sync.io/operations": "POST /orders"}))
    sync.run(CLUSTER, deps)
    routing = apis.policy_routing(world.apim.api_side.api_policies["orders"])
    routes = [routing.route_for(op) for op in ("get-orders-id", "post-orders")]
    assert {route.audience for route in routes if route} == {"api://aks-backends"} and len(routing.backends()) == 2


def test_the_tenancy_policy_sets_the_audience_per_namespace(world: World, deps: Dependencies) -> None:
    world.set_tenancy_policy({"namespaces": {"shop": {"tokenAudience": "api://shop-backends"}}})
    world.kube.apply(https_api_service("orders", **{"apim-sync.io/api-id": "orders"}))
    sync.run(CLUSTER, deps)
    assert apis.policy_audience(world.apim.api_side.api_policies["orders"]) == "api://shop-backends"


def test_no_token_over_plain_http_nor_without_an_audience(world: World, make_deps: Any) -> None:
    world.kube.apply(service("plain", annotations={"apim-sync.io/api-id": "plain"}))  # port 80
    world.kube.apply(https_api_service("nobody", "team-x", **{"apim-sync.io/api-id": "nobody"}))
    deps = make_deps(**{**MANAGED_IDENTITY, "PUBLIC_AUTH_AUDIENCE": ""})
    world.set_tenancy_policy({"namespaces": {"shop": {"tokenAudience": "api://shop-backends"}}})
    report = sync.run(CLUSTER, deps)
    assert apis.policy_audience(world.apim.api_side.api_policies["plain"]) is None
    assert apis.policy_audience(world.apim.api_side.api_policies["nobody"]) is None
    warnings = {(w["object"], w["reason"]) for w in report.to_json()["warnings"]}
    assert warnings == {("shop/plain", "CredentialWithheld"), ("team-x/nobody", "CredentialWithheld")}


@pytest.mark.parametrize("audience", ['api://x" /><set-header name="x"', "api://a b", "<x>", ""])
def test_an_audience_that_could_reach_the_policy_xml_is_refused(world: World, audience: str) -> None:
    if audience:
        with pytest.raises(InvalidSettings):
            load_settings({**world.settings(), **MANAGED_IDENTITY, "PUBLIC_AUTH_AUDIENCE": audience})
    with pytest.raises(InvalidTenancyPolicy):
        parse_policy({"default": {"tokenAudience": audience or 42}}, "test")


def test_header_mode_needs_its_header_and_other_modes_refuse_it(world: World) -> None:
    with pytest.raises(InvalidSettings) as raised:
        load_settings({**world.settings(), "PUBLIC_AUTH_MODE": "managed-identity"})
    assert [name for name, _ in raised.value.problems] == ["PUBLIC_AUTH_HEADER"]
    with pytest.raises(InvalidSettings):
        load_settings({**world.settings(), "PUBLIC_AUTH_MODE": "header", "PUBLIC_AUTH_HEADER": "", "PUBLIC_AUTH_NAMED_VALUE": ""})
