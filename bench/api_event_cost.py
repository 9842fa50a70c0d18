"""What a one-Service API event costs with 1, 100 and 1,000 APIs in APIM, and what a no-op full run costs with
a 1,000-operation API.

Run: `make bench` (or `python -m bench.api_event_cost 1 100 1000`). Prints two tables; not a test.

For each size, the app publishes the Service shop/orders as API `orders`, and one Service of namespace
`big` as a 1,000-operation API; the other APIs are copies of an API the app made, each in its own
namespace (owned by this deployment, tagged), added straight into the emulator so the bench runs in
seconds. Then shop/orders changes (a new display name) and its event goes through on_event; then the same
event is delivered again (nothing to do).
"""

from __future__ import annotations

import copy
import json
import os
import sys
import time
from collections.abc import Callable
from typing import Any

from bench.event_cost import counts, event, on_event_function
from sandbox.world import CLUSTER_NAME, World, start_world
from shared import deps, sync
from shared.core import settings
from shared.core.scope import Scope

BIG_API_OPERATIONS = 1000


def api_service(name: str, namespace: str, api_id: str, **annotations: str) -> dict[str, Any]:
    return {
        "kind": "Service",
        "apiVersion": "v1",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "annotations": {
                "apim-sync.io/expose": "true",
                "apim-sync.io/mode": "public",
                "apim-sync.io/api-id": api_id,
                "apim-sync.io/api-path": api_id,
                **annotations,
            },
        },
        "spec": {"type": "LoadBalancer", "ports": [{"name": "http", "port": 80}]},
        "status": {"loadBalancer": {"ingress": [{"ip": "52.0.0.10"}]}},
    }


def big_api_service() -> dict[str, Any]:
    operations = ", ".join(f"GET /items/{i}" for i in range(BIG_API_OPERATIONS))
    return api_service("catalogue", "big", "catalogue", **{"apim-sync.io/operations": operations})


def copy_api(world: World, source: str, api_id: str, namespace: str) -> None:
    """A copy of an API the app made, as if the app had made it from a Service of `namespace`."""
    side = world.apim.api_side
    entity = copy.deepcopy(side.apis[source])
    properties = entity["properties"]
    properties["path"] = api_id
    properties["description"] = properties["description"].replace("namespace=shop", f"namespace={namespace}")
    entity["id"] = entity["id"].rsplit("/", 1)[0] + "/" + api_id
    entity["name"] = api_id
    side.apis[api_id] = entity
    side.api_policies[api_id] = side.api_policies[source]
    side.api_tags |= {(api_id, tag) for a, tag in side.api_tags if a == source}
    for (owner, op_id), operation in list(side.operations.items()):
        if owner == source:
            side.operations[(api_id, op_id)] = copy.deepcopy(operation)


def measure(size: int, on_event: Callable[[Any], None]) -> None:
    world = start_world()
    try:
        world.set_tenancy_policy({"namespaces": {"big": {"maxOperationsPerApi": BIG_API_OPERATIONS}}})
        world.kube.apply(api_service("orders", "shop", "orders"))
        world.kube.apply(big_api_service())
        os.environ.update(world.settings())
        dependencies = deps.build_dependencies(settings.load_settings(dict(os.environ)))
        sync.run(Scope(CLUSTER_NAME), dependencies)
        for i in range(size - 2):
            copy_api(world, "orders", f"copy-{i:04}", f"team-{i:04}")
        steps: list[tuple[str, Callable[[], object]]] = [
            (
                "change",
                lambda: world.kube.apply(
                    api_service("orders", "shop", "orders", **{"apim-sync.io/api-display-name": "Orders v2"})
                ),
            ),
            ("redelivery", lambda: None),
        ]
        for step, act in steps:
            act()
            world.apim.clear_log()
            world.kube.clear_log()
            started = time.perf_counter()
            on_event(event("orders", "shop"))
            elapsed_ms = (time.perf_counter() - started) * 1000
            print(f"{max(size, 2):>6} {step:>12} {counts(world)} {elapsed_ms:>6.0f}", flush=True)
    finally:
        deps.reset()
        world.stop()


def measure_full_runs() -> None:
    world = start_world()
    try:
        world.set_tenancy_policy({"namespaces": {"big": {"maxOperationsPerApi": BIG_API_OPERATIONS}}})
        world.kube.apply(big_api_service())
        os.environ.update(world.settings())
        dependencies = deps.build_dependencies(settings.load_settings(dict(os.environ)))
        for name in ("first", "no-op"):
            world.apim.clear_log()
            world.kube.clear_log()
            started = time.perf_counter()
            report = sync.run(Scope(CLUSTER_NAME), dependencies)
            elapsed = time.perf_counter() - started
            assert not report.failed, json.dumps(report.to_json())[:2000]
            print(f"{BIG_API_OPERATIONS:>10} {name:>6} {counts(world)} {elapsed * 1000:>7.0f}", flush=True)
    finally:
        deps.reset()
        world.stop()


def main(sizes: list[int]) -> None:
    on_event = on_event_function()
    print(f"One-Service API event, with a {BIG_API_OPERATIONS}-operation API of another namespace among the APIs")
    print(f"{'APIs':>6} {'step':>12} {'ARM reads':>9} {'ARM writes':>10} {'K8s reads':>9} {'K8s writes':>10} {'ms':>6}")
    for size in sizes:
        measure(size, on_event)
    print(f"\nFull run with one {BIG_API_OPERATIONS}-operation API")
    print(f"{'operations':>10} {'run':>6} {'ARM reads':>9} {'ARM writes':>10} {'K8s reads':>9} {'K8s writes':>10} {'ms':>7}")
    measure_full_runs()


if __name__ == "__main__":
    main([int(a) for a in sys.argv[1:]] or [1, 100, 1000])
