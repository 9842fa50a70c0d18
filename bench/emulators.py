"""The emulators in a process of their own, for benchmarks that measure the app alone (its RSS, its time).

`python -m bench.emulators <services> <time scale>` seeds <services> public Services (every second one with an
API of three operations), turns ARM's throttling on at the time scale, prints the settings file's path on one
line, then answers each line read on stdin with one JSON line of what the ARM emulator saw; EOF stops it.
"""

from __future__ import annotations

import json
import re
import sys
from collections import Counter

from sandbox.throttling import arm_operation_class
from sandbox.world import start_world


def service(i: int) -> dict[str, object]:
    annotations = {"apim-sync.io/expose": "true", "apim-sync.io/mode": "public"}
    if i % 2 == 0:
        annotations |= {
            "apim-sync.io/api-id": f"api-{i:05}",
            "apim-sync.io/api-path": f"api-{i:05}",
            "apim-sync.io/operations": "GET /items, POST /items, GET /items/{id}",
            "apim-sync.io/protocol": "https",
        }
    return {
        "kind": "Service",
        "apiVersion": "v1",
        "metadata": {"name": f"svc-{i:05}", "namespace": f"team-{i % 20:02}", "annotations": annotations},
        "spec": {"type": "LoadBalancer", "ports": [{"name": "https", "port": 443}]},
        "status": {"loadBalancer": {"ingress": [{"ip": f"20.{i // 65536 % 256}.{i // 256 % 256}.{i % 256}"}]}},
    }


def _shape(path: str) -> str:
    """A request path with its ids left out, so reads can be counted by kind."""
    path = path.split("/providers/Microsoft.ApiManagement/service/", 1)[-1].split("?", 1)[0]
    collections = "apis|backends|products|operations|tags|policies|operationResults"
    return re.sub(rf"/({collections})/[^/]+", r"/\1/{}", "/" + path.split("/", 1)[-1])


def main(count: int, time_scale: float) -> None:
    world = start_world()
    try:
        for i in range(count):
            world.kube.apply(service(i))
        world.apim.throttle(time_scale=time_scale)
        print(world.write_env_file(), flush=True)
        for _ in sys.stdin:
            with world.apim.lock:
                seen = Counter(arm_operation_class(r.method) for r in world.apim.log if r.status != 429)
                answered_429 = world.apim.buckets.answered_429
                failed = sum(1 for r in world.apim.log if r.status >= 400 and r.status not in (404, 429))
                reads = Counter(_shape(r.path) for r in world.apim.log if r.method == "GET" and r.status != 429)
            shown = {"requests": dict(seen), "answered_429": answered_429, "failed": failed, "reads": dict(reads)}
            print(json.dumps(shown), flush=True)
    finally:
        world.stop()


if __name__ == "__main__":
    main(int(sys.argv[1]), float(sys.argv[2]))
