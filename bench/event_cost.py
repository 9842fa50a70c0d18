"""Requests that one Service event costs, whatever the size of the cluster and of APIM.

Run: `make bench` (or `python -m bench.event_cost 10 1000`). For each size, the cluster holds that many
exposed Services (and APIM their backends); then one Service is created, changed, re-delivered and
deleted, each followed by its event through on_event. Prints one line per step; not a test.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from typing import Any

from azure.functions import meta
from azure.functions.eventgrid import EventGridEventInConverter

from bench.noop_resync import service
from sandbox.world import CLUSTER_NAME, World, start_world
from shared import deps, sync
from shared.core import settings
from shared.core.scope import Scope
from shared.core.watcher_events import SERVICE_CHANGED, watcher_source


def event(name: str, namespace: str) -> Any:
    body = {
        "specversion": "1.0",
        "id": f"bench-{time.monotonic_ns()}",
        "source": watcher_source(CLUSTER_NAME),
        "type": SERVICE_CHANGED,
        "subject": f"clusters/{CLUSTER_NAME}/namespaces/{namespace}/services/{name}",
        "data": {},
    }
    return EventGridEventInConverter.decode(meta.Datum(json.dumps(body), "json"), trigger_metadata={})


def counts(world: World) -> str:
    arm_reads = sum(1 for r in world.apim.log if not r.is_write)
    kube_reads = sum(1 for r in world.kube.log if not r.is_write)
    return f"{arm_reads:>9} {len(world.apim.writes()):>10} {kube_reads:>9} {len(world.kube.writes()):>10}"


def measure(size: int, on_event: Callable[[Any], None]) -> None:
    world = start_world()
    try:
        for i in range(size):
            world.kube.apply(service(i))
        os.environ.update({**world.settings(), "APPLY_CONCURRENCY": "8"})
        dependencies = deps.build_dependencies(settings.load_settings(dict(os.environ)))
        sync.run(Scope(CLUSTER_NAME), dependencies)
        new = service(size + 1)
        metadata: Any = new["metadata"]
        name, namespace = metadata["name"], metadata["namespace"]
        changed = service(size + 1)
        changed["status"] = {"loadBalancer": {"ingress": [{"ip": "52.9.9.9"}]}}
        steps: list[tuple[str, Callable[[], object]]] = [
            ("create", lambda: world.kube.apply(new)),
            ("change", lambda: world.kube.apply(changed)),
            ("redelivery", lambda: None),
            ("delete", lambda: world.kube.remove("Service", namespace, name)),
        ]
        for step, act in steps:
            act()
            world.apim.clear_log()
            world.kube.clear_log()
            started = time.perf_counter()
            on_event(event(name, namespace))
            elapsed_ms = (time.perf_counter() - started) * 1000
            print(f"{size:>8} {step:>12} {counts(world)} {elapsed_ms:>6.0f}", flush=True)
    finally:
        deps.reset()
        world.stop()


def on_event_function() -> Callable[[Any], None]:
    """The app's on_event, as the Functions host finds it."""
    import function_app

    built = next(f for f in function_app.app.get_functions() if f.get_function_name() == "on_event")
    on_event: Callable[[Any], None] = built.get_user_function()  # type: ignore[no-untyped-call]
    return on_event


def main(sizes: list[int]) -> None:
    on_event = on_event_function()
    print(f"{'services':>8} {'step':>12} {'ARM reads':>9} {'ARM writes':>10} {'K8s reads':>9} {'K8s writes':>10} {'ms':>6}")
    for size in sizes:
        measure(size, on_event)


if __name__ == "__main__":
    main([int(a) for a in sys.argv[1:]] or [10, 1000])
