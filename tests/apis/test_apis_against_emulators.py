"""APIs from Services against the emulators: what APIM holds after each run (APIs, operations, the policy
each operation ends up with, tags, products) and what the report says."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from sandbox.httpbase import Fault
from sandbox.world import World
from shared import sync
from shared.apis import claims as apis
from shared.core import naming
from shared.core.model import ServiceRef
from shared.core.reporting import Report
from shared.core.scope import Scope
from shared.runtime.ports import Dependencies
from tests.conftest import service

CLUSTER = Scope("aks-sandbox")
TAG = "aks-apim-sync-sandbox-owner"


GENEROUS_POLICY: dict[str, object] = {
    "namespaces": {"shop": {"anonymousApis": True, "products": ["starter", "gold", "partner", "internal"]}}
}
"""What the product and subscription tests need the platform team to grant namespace shop."""


def api_service(name: str, api_id: str = "orders", *, operations: str | None = None, **extra: str) -> dict[str, Any]:
    annotations = {"apim-sync.io/api-id": api_id, "apim-sync.io/api-path": extra.pop("path", api_id), **extra}
    if operations is not None:
        annotations["apim-sync.io/operations"] = operations
    return service(name, annotations=annotations)


def backend(name: str) -> str:
    return naming.backend_id_for(ServiceRef("aks-sandbox", "shop", name))


def routed_to(world: World, api_id: str) -> dict[str, str | None]:
    """Operation 'METHOD /template' -> the backend APIM sends it to: its own policy's block if it has one (an
    older layout), else the route the API's policy gives it."""
    store = world.apim.api_side
    routing = apis.policy_routing(store.api_policies.get(api_id))
    routes = {}
    for (owner, op_id), operation in store.operations.items():
        if owner == api_id:
            properties = operation["properties"]
            route = apis.policy_routing(store.operation_policies.get((api_id, op_id))).default or routing.route_for(op_id)
            routes[f"{properties['method']} {properties['urlTemplate']}"] = route.backend_id if route else None
    return routes


def run(deps: Dependencies, **options: Any) -> Report:
    report = sync.run(CLUSTER, deps, **options)
    assert not report.failed, report.to_text()
    return report


@pytest.fixture
def deps(world: World, make_deps: Any) -> Dependencies:
    built: Dependencies = make_deps(ALLOWLIST_ENABLED="false")
    return built


def test_one_service_is_one_api_routed_to_its_backend(world: World, deps: Dependencies) -> None:
    world.kube.apply(api_service("orders", **{"apim-sync.io/api-display-name": "Orders"}))
    run(deps)
    api = world.apim.api_side.apis["orders"]["properties"]
    assert (api["path"], api["displayName"], api["subscriptionRequired"]) == ("orders", "Orders", True)
    assert ("orders", TAG) in world.apim.api_side.api_tags
    assert set(routed_to(world, "orders").values()) == {backend("orders")}
    assert "GET /*" in routed_to(world, "orders")


def test_two_services_aggregate_into_one_api_each_operation_routed_to_its_own_backend(world: World, deps: Dependencies) -> None:
    world.kube.apply(api_service("order-reader", operations="GET /orders/{id}"))
    world.kube.apply(api_service("order-writer", operations="POST /orders"))
    run(deps)
    assert routed_to(world, "orders") == {"GET /orders/{id}": backend("order-reader"), "POST /orders": backend("order-writer")}
    operation = world.apim.api_side.operations[("orders", "get-orders-id")]["properties"]
    assert operation["templateParameters"] == [{"name": "id", "type": "string", "required": True}]


def test_removing_one_service_removes_only_its_operations(world: World, deps: Dependencies) -> None:
    world.kube.apply(api_service("order-reader", operations="GET /orders/{id}"))
    world.kube.apply(api_service("order-writer", operations="POST /orders"))
    run(deps)
    world.kube.remove("Service", "shop", "order-writer")
    run(deps)
    assert routed_to(world, "orders") == {"GET /orders/{id}": backend("order-reader")}


def test_an_api_no_service_claims_is_deleted_unless_kept_by_setting(world: World, deps: Dependencies, make_deps: Any) -> None:
    world.kube.apply(api_service("orders"))
    run(deps)
    world.kube.apply(service("orders"))  # the api-id annotation is gone
    kept = run(make_deps(ALLOWLIST_ENABLED="false", KEEP_APIS="true"))
    assert "orders" in world.apim.api_side.apis
    assert [p["reason"] for p in kept.to_json()["apis"]["problems"]] == ["KeptBySetting"]
    run(deps)
    assert world.apim.api_side.apis == {}


def test_conflicts_are_reported_and_nothing_is_guessed(world: World, deps: Dependencies) -> None:
    world.kube.apply(api_service("a", operations="GET /x, POST /x"))
    world.kube.apply(api_service("b", operations="GET /x"))
    world.kube.apply(api_service("c", "sales", path="sales"))
    world.kube.apply(api_service("d", "sales", operations="GET /y", path="revenue"))
    report = run(deps)
    problems = {(p["object"], p["reason"]) for p in report.to_json()["apis"]["problems"]}
    assert problems == {("API orders", "OperationConflict"), ("API sales", "ApiConflict")}
    assert routed_to(world, "orders") == {"POST /x": backend("a")}
    assert "sales" not in world.apim.api_side.apis


def test_a_path_used_by_a_foreign_api_is_refused(world: World, deps: Dependencies) -> None:
    world.apim.api_side.apis["legacy"] = world.apim.api_side._entity(
        "apis", "apis/legacy", "legacy", {"path": "orders", "displayName": "Legacy", "subscriptionRequired": True}
    )
    world.kube.apply(api_service("orders"))
    report = run(deps)
    (problem,) = report.to_json()["apis"]["problems"]
    assert problem["reason"] == "PathTaken" and "legacy" in problem["message"]
    assert sorted(world.apim.api_side.apis) == ["legacy"]


def test_subscription_required_and_products(world: World, deps: Dependencies, make_deps: Any) -> None:
    world.set_tenancy_policy(GENEROUS_POLICY)
    world.apim.api_side.products["starter"] = world.apim.api_side._entity(
        "products", "products/starter", "starter", {"displayName": "Starter"}
    )
    world.kube.apply(
        api_service("orders", **{"apim-sync.io/subscription-required": "false", "apim-sync.io/products": "starter, gold"})
    )
    report = run(deps)
    assert world.apim.api_side.apis["orders"]["properties"]["subscriptionRequired"] is False
    assert ("starter", "orders") in world.apim.api_side.product_apis
    assert [p["reason"] for p in report.to_json()["apis"]["problems"]] == ["ProductMissing"]
    run(make_deps(ALLOWLIST_ENABLED="false", CREATE_PRODUCTS="true"))
    assert ("gold", "orders") in world.apim.api_side.product_apis


def test_second_run_writes_nothing(world: World, deps: Dependencies) -> None:
    world.kube.apply(api_service("order-reader", operations="GET /orders/{id}", **{"apim-sync.io/products": "starter"}))
    world.kube.apply(api_service("order-writer", operations="POST /orders"))
    world.apim.api_side.products["starter"] = world.apim.api_side._entity(
        "products", "products/starter", "starter", {"displayName": "Starter"}
    )
    run(deps)
    world.apim.clear_log()
    second = run(deps)
    assert world.apim.writes() == [] and second.to_json()["apis"]["changes"] == []


def test_the_operators_own_policy_lines_are_kept(world: World, deps: Dependencies) -> None:
    world.kube.apply(api_service("orders"))
    run(deps)
    store = world.apim.api_side
    store.api_policies["orders"] = store.api_policies["orders"].replace(
        "</inbound>", '<rate-limit calls="10" renewal-period="60" /></inbound>'
    )
    world.kube.apply(api_service("orders", **{"apim-sync.io/backend-id": "orders-v2"}))
    run(deps)
    assert apis.policy_backend(store.api_policies["orders"]) == "orders-v2"
    assert '<rate-limit calls="10" renewal-period="60" />' in store.api_policies["orders"]


def test_dry_run_shows_api_operation_policy_and_product_changes_and_writes_nothing(
    world: World, deps: Dependencies, make_deps: Any
) -> None:
    world.set_tenancy_policy(GENEROUS_POLICY)
    world.kube.apply(api_service("orders", operations="GET /orders", **{"apim-sync.io/products": "gold"}))
    report = sync.run(CLUSTER, make_deps(ALLOWLIST_ENABLED="false", CREATE_PRODUCTS="true"), dry_run=True)
    kinds = [(c["action"], c["kind"]) for c in report.to_json()["apis"]["changes"]]
    assert kinds == [
        ("create", "api"),
        ("add", "tag"),
        ("create", "operation"),
        ("update", "policy"),
        ("create", "product"),
        ("add", "product"),
    ]
    assert report.to_json()["apis"]["changes"][0]["diff"]["path"] == [None, "orders"]
    assert world.apim.writes() == []


def test_operations_can_come_from_an_openapi_document_in_a_configmap(world: World, deps: Dependencies) -> None:
    world.kube.apply(
        {
            "kind": "ConfigMap",
            "apiVersion": "v1",
            "metadata": {"name": "orders-api", "namespace": "shop"},
            "data": {"openapi.yaml": "openapi: 3.0.1\npaths:\n  /orders:\n    get: {}\n    post: {}\n"},
        }
    )
    world.kube.apply(api_service("orders", **{"apim-sync.io/openapi": "orders-api/openapi.yaml"}))
    run(deps)
    assert routed_to(world, "orders") == {"GET /orders": backend("orders"), "POST /orders": backend("orders")}


def test_a_long_running_api_put_is_polled_to_the_end(world: World, deps: Dependencies) -> None:
    world.apim.api_side.async_api_puts = True  # as Microsoft's published example shows it
    world.kube.apply(api_service("orders"))
    run(deps)
    assert any("/operationResults/" in r.path for r in world.apim.log)
    assert "orders" in world.apim.api_side.apis


def test_too_many_api_deletes_at_once_delete_nothing(world: World, deps: Dependencies, make_deps: Any) -> None:
    for i in range(12):
        world.kube.apply(api_service(f"svc-{i}", f"api-{i}"))
    run(deps)
    for i in range(12):
        world.kube.apply(service(f"svc-{i}"))
    report = run(deps)
    assert len(world.apim.api_side.apis) == 12
    assert {p["reason"] for p in report.to_json()["apis"]["problems"]} == {"DeleteCapReached"}
    sync.run(CLUSTER, deps, allow_mass_delete=True)
    assert world.apim.api_side.apis == {}


def test_a_412_on_an_api_update_is_retryable_and_the_next_run_completes(world: World, deps: Dependencies) -> None:
    from sandbox.httpbase import Fault

    world.kube.apply(api_service("orders"))
    run(deps)
    world.kube.apply(api_service("orders", **{"apim-sync.io/api-display-name": "Orders v2"}))
    world.apim.inject(Fault(412, method="PUT", path_contains="/apis/orders", times=99))
    report = sync.run(CLUSTER, deps)
    (change,) = [c for c in report.to_json()["apis"]["changes"] if c["kind"] == "api"]
    assert change["outcome"] == "failed" and change["retryable"] is True
    world.apim.faults.clear()
    run(deps)
    assert world.apim.api_side.apis["orders"]["properties"]["displayName"] == "Orders v2"


def test_a_product_dropped_from_the_annotation_loses_the_api_but_foreign_links_stay(world: World, deps: Dependencies) -> None:
    world.set_tenancy_policy(GENEROUS_POLICY)
    store = world.apim.api_side
    for product in ("starter", "gold", "partner"):
        store.products[product] = store._entity("products", f"products/{product}", product, {"displayName": product})
    world.kube.apply(api_service("orders", **{"apim-sync.io/products": "starter, gold"}))
    run(deps)
    store.product_apis.add(("partner", "orders"))  # linked by hand in the portal
    world.kube.apply(api_service("orders", **{"apim-sync.io/products": "starter"}))
    run(deps)
    assert {p for p, a in store.product_apis if a == "orders"} == {"starter", "partner"}


class EditsPolicyJustBeforeOurWrite:
    """Another actor (an operator in the portal) edits the API's policy between our read and our write."""

    def __init__(self, real: Any, world: World, api_id: str) -> None:
        self._real, self._world, self._api_id, self.edits = real, world, api_id, 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)

    def put_api_policy(self, api_id: str, xml: str, *, if_match: str | None = None) -> None:
        if self.edits == 0:
            self.edits += 1
            policies = self._world.apim.api_side.api_policies
            policies[self._api_id] = policies[self._api_id].replace("<outbound>", '<outbound><cache-store duration="60" />')
        self._real.put_api_policy(api_id, xml, if_match=if_match)


def test_a_policy_edited_between_read_and_write_is_read_again_and_the_edit_kept(
    world: World, deps: Dependencies, sleeps: Any
) -> None:
    world.kube.apply(api_service("orders"))
    run(deps)
    world.kube.apply(api_service("orders", **{"apim-sync.io/backend-id": "orders-v2"}))
    racing = EditsPolicyJustBeforeOurWrite(deps.apis, world, "orders")

    report = run(dataclasses.replace(deps, apis=racing))

    policy = world.apim.api_side.api_policies["orders"]
    assert 'backend-id="orders-v2"' in policy, "our block was written"
    assert '<cache-store duration="60" />' in policy, "the operator's edit made meanwhile is kept"
    entry = next(c for c in report.to_json()["apis"]["changes"] if c["kind"] == "policy")
    assert entry["attempts"] == 2 and sleeps == [], "a 412 is read again at once, not waited for"


def test_an_api_update_that_meets_a_412_is_read_again_without_waiting(world: World, deps: Dependencies, sleeps: Any) -> None:
    world.kube.apply(api_service("orders"))
    run(deps)
    world.kube.apply(api_service("orders", **{"apim-sync.io/api-display-name": "Orders v2"}))
    world.apim.inject(Fault(412, method="PUT", path_contains="/apis/orders", body={"error": {"code": "PreconditionFailed"}}))
    report = run(deps)
    assert world.apim.api_side.apis["orders"]["properties"]["displayName"] == "Orders v2"
    entry = next(c for c in report.to_json()["apis"]["changes"] if c["kind"] == "api")
    assert entry["attempts"] == 2 and sleeps == []


def policies_naming_a_missing_backend(world: World) -> list[str]:
    side = world.apim.api_side
    routed = [
        b for p in [*side.api_policies.values(), *side.operation_policies.values()] for b in apis.policy_routing(p).backends()
    ]
    return [b for b in routed if b not in world.apim.backends]


def test_a_failed_policy_write_leaves_every_policy_naming_a_backend_that_exists(world: World, deps: Dependencies) -> None:
    world.kube.apply(api_service("orders"))
    run(deps)
    broken: list[str] = []
    world.apim.after_write.append(lambda: broken.extend(policies_naming_a_missing_backend(world)))
    world.kube.apply(api_service("orders", **{"apim-sync.io/backend-id": "orders-v2"}))
    world.apim.inject(Fault(503, method="PUT", path_contains="/policies/policy", times=99))

    report = sync.run(CLUSTER, deps)

    assert report.failed and report.retryable, "the policy write failed; Event Grid or the timer tries again"
    assert backend("orders") in world.apim.backends and "orders-v2" in world.apim.backends
    waiting = [r for r in report.to_json()["refusals"] if r["reason"] == "DeleteWaitsForRouting"]
    assert [r["id"] for r in waiting] == [backend("orders")]

    world.apim.faults.clear()
    run(deps)
    assert apis.policy_backend(world.apim.api_side.api_policies["orders"]) == "orders-v2"
    assert backend("orders") not in world.apim.backends, "deleted once nothing routes to it"
    assert broken == [], "after every write APIM accepted, every policy named a backend that existed"


OPERATOR_POLICY = (
    "<policies><inbound><base />"
    '<set-variable name="tenant" value="@(context.Variables.GetValueOrDefault<string>("tenant"))" />'
    '<choose><when condition="@(context.Request.Headers.GetValueOrDefault("x-debug", "") == "1")">'
    '<set-header name="x-trace" exists-action="override"><value>@{ return "on"; }</value></set-header>'
    "</when></choose></inbound><backend><base /></backend><outbound><base /></outbound></policies>"
)
"""An operator's policy as real APIM keeps it in rawxml: expressions unescaped, so not well-formed XML."""


def test_an_operators_policy_with_expressions_is_kept_byte_for_byte_and_apims_reformatting_is_no_change(
    world: World, deps: Dependencies
) -> None:
    world.kube.apply(api_service("orders"))
    run(deps)
    deps.apis.put_api_policy("orders", OPERATOR_POLICY)  # APIM takes rawxml with unescaped expressions
    held = world.apim.api_side.api_policies["orders"]
    assert "\r\n\t" in held, "APIM hands it back re-serialised"

    world.kube.apply(api_service("orders", **{"apim-sync.io/backend-id": "orders-v2"}))
    run(deps)
    spliced = world.apim.api_side.api_policies["orders"]
    assert apis.policy_backend(spliced) == "orders-v2"
    for line in held.splitlines():
        if "aks-apim-sync" not in line and "set-backend-service" not in line:
            assert line.strip() in spliced, f"the operator's line {line.strip()!r} is kept"

    world.apim.clear_log()
    run(deps)
    assert [r for r in world.apim.writes() if "/policies/" in r.path] == [], "re-serialisation is never a change"


def test_a_one_service_run_reads_no_api_of_another_namespace(world: World, deps: Dependencies) -> None:
    world.kube.apply(api_service("orders", operations="GET /orders/{id}, POST /orders"))
    run(deps)

    def cost_of_one_service_run() -> int:
        world.apim.clear_log()
        sync.run(Scope("aks-sandbox", "shop", "orders"), deps)
        return len([r for r in world.apim.log if r.method == "GET"])

    alone = cost_of_one_service_run()
    for i in range(15):
        world.kube.apply(service(f"other-{i}", "finance", annotations={"apim-sync.io/api-id": f"finance-{i}"}))
    run(deps)
    assert len(world.apim.api_side.apis) == 16
    assert cost_of_one_service_run() == alone, "15 APIs of namespace finance cost shop's event nothing"


def test_a_one_service_event_costs_the_same_with_a_hundred_apis_and_a_big_one_elsewhere(world: World, make_deps: Any) -> None:
    deps = make_deps()  # every step on, as an event's run
    world.kube.apply(api_service("orders", operations="GET /orders/{id}, POST /orders"))
    sync.run(CLUSTER, deps)

    def arm_reads_of_the_event() -> int:
        world.apim.clear_log()
        assert not sync.run(Scope("aks-sandbox", "shop", "orders"), deps).failed
        return len([r for r in world.apim.log if r.method == "GET"])

    alone = arm_reads_of_the_event()
    side = world.apim.api_side
    mark = "managed-by=aks-apim-sync; owner=sandbox-owner; namespace=finance"
    for i in range(120):
        side.apis[f"finance-{i}"] = side._entity(
            "apis", f"apis/finance-{i}", f"finance-{i}", {"path": f"f{i}", "description": mark}
        )
    for j in range(300):
        side.operations[("finance-0", f"op-{j}")] = side._entity(
            "operations", f"apis/finance-0/operations/op-{j}", f"op-{j}", {"method": "GET", "urlTemplate": f"/x{j}"}
        )
    assert arm_reads_of_the_event() == alone <= 10


def test_a_full_run_reads_each_api_twice_not_once_per_property_and_product(world: World, make_deps: Any) -> None:
    """The listing gives every API's properties and one listing per product its members: what is left per API
    is its policy and its operations, so a no-op full run with 150 APIs in a product stays near 300 reads."""
    world.set_tenancy_policy(GENEROUS_POLICY)
    side = world.apim.api_side
    side.products["starter"] = side._entity("products", "products/starter", "starter", {"displayName": "Starter"})
    for i in range(150):
        world.kube.apply(api_service(f"svc-{i}", f"api-{i}", **{"apim-sync.io/products": "starter"}))
    deps = make_deps(ALLOWLIST_ENABLED="false")
    run(deps)
    assert sum(1 for p, _ in side.product_apis if p == "starter") == 150
    world.apim.clear_log()
    second = run(deps)
    api_reads = [r for r in world.apim.log if r.method in ("GET", "HEAD") and "/apis" in r.path]
    assert world.apim.writes() == [] and second.to_json()["apis"]["changes"] == []
    assert len(api_reads) <= 2 * 150 + 10, f"{len(api_reads)} reads"


def test_an_api_that_cannot_be_read_holds_back_only_itself(world: World, deps: Dependencies) -> None:
    world.kube.apply(api_service("orders", operations="GET /orders"))
    world.kube.apply(api_service("billing", "billing", operations="GET /invoices"))
    run(deps)
    world.kube.apply(api_service("orders", operations="GET /orders, POST /orders"))
    world.kube.apply(api_service("billing", "billing", operations="GET /invoices, POST /invoices"))
    world.apim.inject(Fault(403, method="GET", path_contains="/apis/orders/policies", times=99))
    report = sync.run(CLUSTER, deps)
    apis_report = report.to_json()["apis"]
    assert report.failed and "orders" in apis_report["error"]["message"]
    assert {"POST /invoices", "GET /invoices"} <= set(routed_to(world, "billing")), "the other API went ahead"
    assert "POST /orders" not in routed_to(world, "orders"), "the unreadable API was left as it was"


def test_creating_an_api_reads_nothing_back(world: World, deps: Dependencies) -> None:
    """APIM answers a PUT without an import at once (201, no provisioningState): nothing to poll, nothing to
    read back, however the SDK would poll by default."""
    world.kube.apply(api_service("orders", operations="GET /orders"))
    run(deps)
    assert "orders" in world.apim.api_side.apis
    assert [r.path for r in world.apim.log if r.method == "GET" and "/apis/orders" in r.path] == []
