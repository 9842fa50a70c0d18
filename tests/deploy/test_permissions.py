"""The app's permissions are exactly what it calls: the tables in shared.core.permissions, the Kubernetes roles in
deploy/kubernetes, and what a run that uses every feature asks of the emulators, which enforce those roles."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from sandbox.apim import arm_action
from sandbox.httpbase import Fault
from sandbox.kube_api import request_attributes
from sandbox.tools import Azurite
from sandbox.world import World
from shared import sync
from shared.apis import claims as apis
from shared.core.permissions import ARM_OPERATIONS, KUBE_RULES, Feature, arm_actions, kube_rules
from shared.core.scope import Scope
from tests.apis.test_apis_against_emulators import api_service
from tests.conftest import ingress, service
from tests.gateway.test_httproute_discovery import gateway, httproute
from tests.rotation.support import Clock, rotate

ROOT = Path(__file__).resolve().parents[2]
RBAC = ROOT / "deploy" / "kubernetes" / "app-rbac.yaml"
CLUSTER = Scope("aks-sandbox")
EVERY_FEATURE = set(Feature)


def manifest_roles() -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(RBAC.read_text()) if d and d["kind"] in ("ClusterRole", "Role")]


def as_triples(rules: list[dict[str, Any]]) -> set[tuple[str, str, str]]:
    return {(g, r, v) for rule in rules for g in rule["apiGroups"] for r in rule["resources"] for v in rule["verbs"]}


@pytest.mark.parametrize("feature", sorted({f for rule in KUBE_RULES for f in rule.features}))
def test_each_features_kubernetes_role_grants_exactly_what_the_table_says(feature: Feature) -> None:
    roles = [r for r in manifest_roles() if r["metadata"]["labels"]["aks-apim-sync.io/feature"] == feature.value]
    for kind, namespaced in (("ClusterRole", False), ("Role", True)):
        granted = as_triples([rule for r in roles if r["kind"] == kind for rule in r["rules"]])
        wanted = {(r.group, r.resource, v) for r in kube_rules([feature]) if r.namespaced == namespaced for v in r.verbs}
        assert granted == wanted, kind


def test_every_sdk_call_of_the_adapters_is_in_the_arm_table() -> None:
    in_code = {
        call
        for adapter in ("apim.py", "apim_apis.py")
        for call in re.findall(r"self\._client\.([a-z_]+\.[a-z_]+)\b", (ROOT / "shared" / "adapters" / adapter).read_text())
    }
    assert in_code and in_code <= {op.sdk_call for op in ARM_OPERATIONS}, in_code - {op.sdk_call for op in ARM_OPERATIONS}


def enforce_the_deployed_roles(world: World) -> None:
    """The emulators grant the app exactly the roles deploy/ and infra/ give it, for every feature."""
    rules: list[dict[str, Any]] = []
    for role in manifest_roles():
        for rule in role["rules"]:
            rules.append({**rule, "namespace": role["metadata"].get("namespace")})
    world.kube.rbac = rules
    world.apim.granted_actions = arm_actions(EVERY_FEATURE)


def observed(world: World) -> tuple[set[str], set[tuple[str, str, str]], list[str]]:
    """(ARM actions, Kubernetes (group, resource, verb)) the app's requests needed, and every 403."""
    actions = {a for r in world.apim.log if (a := arm_action(r.method, r.path.split("?")[0])) is not None}
    triples = set()
    for r in world.kube.log:
        path, _, query = r.path.partition("?")
        attributes = request_attributes(r.method, path, dict(q.split("=", 1) for q in query.split("&") if "=" in q))
        if attributes is not None:
            triples.add((attributes.group, attributes.resource, attributes.verb))
    refused = [f"{r.method} {r.path}" for r in [*world.apim.log, *world.kube.log] if r.status == 403]
    return actions, triples, refused


def test_a_run_of_every_feature_needs_exactly_the_deployed_permissions(world: World, make_deps: Any, azurite: Azurite) -> None:
    enforce_the_deployed_roles(world)
    world.set_tenancy_policy({"namespaces": {"shop": {"products": ["gold", "silver"]}}})
    world.apim.api_side.async_api_puts = True  # polled at Azure-AsyncOperation, as the published example answers
    world.kube.apply(
        api_service("orders-api", "orders", operations="GET /orders, DELETE /orders/{id}", **{"apim-sync.io/products": "gold"})
    )
    world.kube.apply(service("payments", mode="ingress", lb_ip=None))
    world.kube.apply(ingress("payments", "shop", "payments.example.com", "payments"))
    world.kube.apply(service("orders", mode="ingress", lb_ip=None))
    world.kube.apply(gateway(allowed="Selector"))
    world.kube.apply(httproute("orders"))
    settings = {
        "ROUTE_KINDS": "Ingress,HTTPRoute",
        "GATEWAY_ALLOWLIST": "infrastructure,istio",
        "CREATE_PRODUCTS": "true",
        "AzureWebJobsStorage": azurite.connection_string,
        "TRUST_PROPAGATION_SECONDS": "60",
        "CERT_GRACE_SECONDS": "3600",
    }
    deps = make_deps(**settings)
    clock = Clock()

    assert not sync.run(CLUSTER, deps).failed
    for _ in range(2):  # trust, then present after the propagation
        rotate(deps, clock)
        clock.advance(minutes=2)
    rotate(deps, clock, force="certificate")
    clock.advance(hours=2)
    rotate(deps, clock)  # prunes the superseded certificate
    rotate(deps, clock, force="ca")  # a second CA joins the bundle and its copies

    older_layout(world)  # operations that still carry their own policy: read and rewritten once
    world.apim.service["properties"]["publicIPAddresses"] = ["20.0.0.9"]
    world.kube.inject(Fault(409, method="PATCH", path_contains="/gateways/shared", times=1))
    world.kube.inject(Fault(409, method="PATCH", path_contains="/authorizationpolicies/", times=1))
    world.kube.inject(Fault(409, method="PATCH", path_contains="/ingresses/payments", times=1))
    world.kube.apply(api_service("orders-api", "orders", operations="GET /orders", **{"apim-sync.io/products": "silver"}))
    assert not sync.run(CLUSTER, deps).failed
    assert not sync.run(CLUSTER, deps).failed
    assert not sync.run(Scope("aks-sandbox", "shop", "payments"), deps).failed
    assert not sync.run(Scope("aks-sandbox", "shop"), deps).failed
    world.kube.remove("Service", "shop", "orders-api")
    assert not sync.run(CLUSTER, deps).failed

    actions, triples, refused = observed(world)
    assert refused == []
    doctor_only = {op.action for op in ARM_OPERATIONS if op.features == {Feature.PUBLIC_AUTH}}
    assert actions == set(arm_actions(EVERY_FEATURE)) - doctor_only
    assert triples == {(r.group, r.resource, v) for r in KUBE_RULES for v in r.verbs}


def older_layout(world: World) -> None:
    side = world.apim.api_side
    for (api_id, op_id), operation in side.operations.items():
        properties = operation["properties"]
        properties["description"] = properties["description"].replace(apis.ROUTED_BY_API_POLICY, "")
        side.operation_policies[(api_id, op_id)] = apis.with_managed_block(
            "<policies><inbound><base /></inbound></policies>", "x"
        )


def test_an_arm_action_the_role_does_not_grant_fails_that_change_with_arms_words(world: World, make_deps: Any) -> None:
    world.kube.apply(service("payments"))
    world.apim.not_actions = ["Microsoft.ApiManagement/service/backends/write"]

    report = sync.run(CLUSTER, make_deps(ALLOWLIST_ENABLED="false", APIS_ENABLED="false"))

    (change,) = report.to_json()["changes"]
    assert change["outcome"] == "failed" and "does not have authorization to perform action" in change["message"]
    assert "'Microsoft.ApiManagement/service/backends/write'" in change["message"]


def test_a_kubernetes_verb_the_roles_do_not_grant_is_forbidden_and_nothing_is_written(world: World, make_deps: Any) -> None:
    world.kube.apply(service("payments"))
    world.kube.rbac = [{"apiGroups": [""], "resources": ["services", "configmaps"], "verbs": ["list", "get"]}]

    report = sync.run(CLUSTER, make_deps(ALLOWLIST_ENABLED="false", APIS_ENABLED="false"))

    assert report.failed and world.apim.writes() == []
    assert 'cannot list resource \\"ingresses\\" in API group \\"networking.k8s.io\\"' in json.dumps(report.to_json())
