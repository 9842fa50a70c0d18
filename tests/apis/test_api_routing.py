"""One policy routes a whole API: each operation a Service names to that Service's backend, every other to the
default backend. What APIM holds after each run, what a run costs, and the migration from the older layout
(one managed block in each operation's own policy)."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from sandbox.apim_apis import _as_apim_stores_it
from sandbox.world import World
from shared import sync
from shared.apis import claims as apis
from shared.runtime.ports import Dependencies
from tests.apis.test_apis_against_emulators import CLUSTER, OPERATOR_POLICY, api_service, backend, deps, routed_to, run

__all__ = ["deps"]  # the fixture

ids = st.from_regex(r"[a-z0-9][a-z0-9-]{0,30}", fullmatch=True)
routes = st.builds(apis.Route, st.from_regex(r"[a-z][a-z0-9-]{0,20}", fullmatch=True), st.none() | st.just("api://b"))
routings = st.builds(apis.Routing.of, st.none() | routes, st.dictionaries(ids, routes, max_size=40))


@given(routing=routings, operator=st.sampled_from([None, "", OPERATOR_POLICY]))
def test_the_routing_read_back_from_a_policy_is_the_routing_written_whatever_apims_reformatting(
    routing: apis.Routing, operator: str | None
) -> None:
    written = apis.with_routing(operator, routing)
    assert apis.policy_routing(written) == routing
    assert apis.policy_routing(_as_apim_stores_it(written)) == routing
    assert apis.policy_routing(written.replace('"|', "&quot;|").replace('|"', "|&quot;")) == routing


@given(routing=routings)
def test_the_operators_lines_are_kept_byte_for_byte_around_the_block(routing: apis.Routing) -> None:
    written = apis.with_routing(OPERATOR_POLICY, routing)
    assert apis.with_routing(written, apis.Routing()) == OPERATOR_POLICY


def test_an_aggregated_api_is_routed_by_its_own_policy_and_no_operation_carries_one(world: World, deps: Dependencies) -> None:
    world.kube.apply(api_service("order-reader", operations="GET /orders/{id}, GET /orders"))
    world.kube.apply(api_service("order-writer", operations="POST /orders"))
    world.kube.apply(api_service("orders-rest"))
    run(deps)
    assert routed_to(world, "orders") == {
        "GET /orders/{id}": backend("order-reader"),
        "GET /orders": backend("order-reader"),
        "POST /orders": backend("order-writer"),
        **{f"{m} /*": backend("orders-rest") for m in ("GET", "POST", "PUT", "PATCH", "DELETE")},
    }
    assert world.apim.api_side.operation_policies == {}


def arm_reads_of_a_no_op_run(world: World, deps: Dependencies, operations: int) -> int:
    world.reset()
    listed = ", ".join(f"GET /items{i}" for i in range(operations))
    world.kube.apply(api_service("items", api_id="items", operations=listed))
    run(deps)
    world.apim.clear_log()
    run(deps)
    assert world.apim.writes() == []
    return sum(1 for r in world.apim.log if not r.is_write)


def test_a_no_op_runs_cost_grows_in_pages_of_operations_not_per_operation(world: World, deps: Dependencies) -> None:
    few, many = arm_reads_of_a_no_op_run(world, deps, 3), arm_reads_of_a_no_op_run(world, deps, 180)
    assert many <= few + 1, f"{few} ARM reads with 3 operations, {many} with 180: one more page at most"


def test_operations_made_with_their_own_block_are_moved_to_the_apis_policy_once(world: World, deps: Dependencies) -> None:
    world.kube.apply(api_service("order-reader", operations="GET /orders"))
    world.kube.apply(api_service("order-writer", operations="POST /orders"))
    run(deps)
    side = world.apim.api_side
    for (api_id, op_id), operation in side.operations.items():  # the layout an older version left behind
        properties = operation["properties"]
        properties["description"] = properties["description"].replace(apis.ROUTED_BY_API_POLICY, "")
        source = properties["description"].rsplit("/", 1)[-1]
        side.operation_policies[(api_id, op_id)] = apis.with_managed_block(OPERATOR_POLICY, backend(source))
    side.api_policies["orders"] = apis.with_routing(side.api_policies["orders"], apis.Routing())

    report = run(deps)

    kinds = sorted((c["kind"], c.get("target", "")) for c in report.to_json()["apis"]["changes"])
    assert kinds == [
        ("operation", "get-orders"),
        ("operation", "post-orders"),
        ("operation-policy", "get-orders"),
        ("operation-policy", "post-orders"),
        ("policy", ""),
    ]
    assert set(side.operation_policies.values()) == {_as_apim_stores_it(OPERATOR_POLICY)}, "only the block is gone"
    assert routed_to(world, "orders") == {"GET /orders": backend("order-reader"), "POST /orders": backend("order-writer")}
    world.apim.clear_log()
    run(deps)
    assert world.apim.writes() == []
    assert not [r for r in world.apim.log if "/operations/" in r.path and "/policies/" in r.path], "read once, not again"


def test_an_api_whose_services_together_name_more_operations_than_granted_is_held_and_reported(
    world: World, deps: Dependencies
) -> None:
    world.set_tenancy_policy({"namespaces": {"shop": {"maxOperationsPerApi": 3}}})
    world.kube.apply(api_service("order-reader", operations="GET /orders, GET /orders/{id}"))
    world.kube.apply(api_service("order-writer", operations="POST /orders, PUT /orders/{id}"))
    report = sync.run(CLUSTER, deps)
    problems = [p for p in report.to_json()["apis"]["problems"] if p["reason"] == "NotGrantedByPolicy"]
    assert [(p["object"], p["field"]) for p in problems] == [("API orders", "operations")]
    assert "4 operations" in problems[0]["message"]
    assert "orders" not in world.apim.api_side.apis


def test_an_annotation_longer_than_its_limit_is_invalid_and_names_the_field(world: World, deps: Dependencies) -> None:
    world.kube.apply(api_service("orders", **{"apim-sync.io/api-display-name": "x" * 5000}))
    world.kube.apply(api_service("payments", api_id="payments"))
    report: Any = sync.run(CLUSTER, deps).to_json()
    [error] = [e for e in report["errors"] if e["object"] == "shop/orders"]
    assert error["field"] == "apim-sync.io/api-display-name" and "longer than 2048" in error["message"]
    assert "payments" in world.apim.api_side.apis, "the other Service's API is as if the long one did not exist"


def test_a_one_service_api_event_costs_the_same_with_a_thousand_apis_and_a_thousand_operation_api_elsewhere(
    world: World, deps: Dependencies, monkeypatch: Any
) -> None:
    from bench.api_event_cost import api_service as bench_service
    from bench.api_event_cost import big_api_service, copy_api
    from tests.events.test_on_event import deliver, service_changed

    world.set_tenancy_policy({"namespaces": {"big": {"maxOperationsPerApi": 1000}}})
    world.kube.apply(bench_service("orders", "shop", "orders"))
    world.kube.apply(big_api_service())
    run(deps)
    for i in range(998):
        copy_api(world, "orders", f"copy-{i:04}", f"team-{i:04}")
    for name, value in world.settings().items():
        monkeypatch.setenv(name, value)
    world.kube.apply(bench_service("orders", "shop", "orders", **{"apim-sync.io/api-display-name": "Orders v2"}))
    world.apim.clear_log()
    world.kube.clear_log()

    deliver(service_changed("orders"))

    assert world.apim.api_side.apis["orders"]["properties"]["displayName"] == "Orders v2"
    arm_reads = [r for r in world.apim.log if not r.is_write]
    kube_reads = [r for r in world.kube.log if not r.is_write]
    assert len(arm_reads) <= 10 and len(kube_reads) <= 5, (len(arm_reads), len(kube_reads))


def test_apis_converge_whether_apim_answers_an_api_put_at_once_or_as_long_running(world: World, deps: Dependencies) -> None:
    world.apim.api_side.async_api_puts = True  # as Microsoft's published example shows it
    world.kube.apply(api_service("orders"))
    run(deps)
    assert "orders" in world.apim.api_side.apis
    world.kube.remove("Service", "shop", "orders")
    run(deps)
    assert "orders" not in world.apim.api_side.apis, "the delete (202, polled to its end) took effect"
    world.apim.clear_log()
    run(deps)
    assert world.apim.writes() == []
