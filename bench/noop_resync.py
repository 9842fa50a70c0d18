"""Requests and time of a no-op full resync (backends and allow-lists) for 100, 1,000 and 5,000 Services.

Run: `make bench` (or `python -m bench.noop_resync 100 1000`). Prints one table; not a test.
The first run of each size creates the backends through the real engine; the figures are of the second
run, which must write nothing.
"""

from __future__ import annotations

import resource
import sys
import time

from sandbox.world import start_world
from shared import deps, sync
from shared.core import settings
from shared.core.scope import Scope


def service(i: int) -> dict[str, object]:
    return {
        "kind": "Service",
        "metadata": {
            "name": f"svc-{i:05}",
            "namespace": f"team-{i % 20:02}",
            "annotations": {"apim-sync.io/expose": "true", "apim-sync.io/mode": "public"},
        },
        "spec": {"type": "LoadBalancer", "ports": [{"name": "http", "port": 80}]},
        "status": {"loadBalancer": {"ingress": [{"ip": f"20.{i // 65536 % 256}.{i // 256 % 256}.{i % 256}"}]}},
    }


def main(sizes: list[int]) -> None:
    header = ("services", 8), ("create s", 9), ("noop s", 7), ("ARM reads", 9), ("ARM writes", 10), ("K8s reads", 9)
    print(" ".join(f"{name:>{width}}" for name, width in header), f"{'K8s writes':>10} {'peak RSS MB':>11}")
    for size in sizes:
        world = start_world()
        try:
            for i in range(size):
                world.kube.apply(service(i))
            dependencies = deps.build_dependencies(settings.load_settings({**world.settings(), "APPLY_CONCURRENCY": "8"}))
            scope = Scope(dependencies.settings.kube.cluster_name)
            started = time.perf_counter()
            first = sync.run(scope, dependencies)
            create_seconds = time.perf_counter() - started
            assert first.counts["create"] == size and not first.failed, first.counts
            started = time.perf_counter()
            second = sync.run(scope, dependencies)
            noop_seconds = time.perf_counter() - started
            r = second.requests
            assert r.get("arm.write", 0) == 0 and r.get("kubernetes.write", 0) == 0 and second.counts["unchanged"] == size
            rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            print(
                f"{size:>8} {create_seconds:>9.1f} {noop_seconds:>7.2f} {r.get('arm.read', 0):>9} {r.get('arm.write', 0):>10} "
                f"{r.get('kubernetes.read', 0):>9} {r.get('kubernetes.write', 0):>10} {rss_mb:>11.0f}",
                flush=True,
            )
        finally:
            world.stop()


if __name__ == "__main__":
    main([int(a) for a in sys.argv[1:]] or [100, 1000, 5000])
