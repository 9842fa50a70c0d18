"""`python -m sandbox serve | demo`.

serve: start both emulators on loopback, write a dotenv file of the app settings and print its path; runs
until stopped. Use it with `python -m shared plan --env-file <path>`.
demo: seed a small cluster, resync through the real `resync` HTTP handler, print the report and APIM's
backends, then resync again to show that the second run plans and writes nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

from sandbox.world import World, start_world


def _service(name: str, namespace: str, annotations: dict[str, str], *, ip: str | None, port: int = 80) -> dict[str, Any]:
    return {
        "kind": "Service",
        "metadata": {"name": name, "namespace": namespace, "annotations": {"apim-sync.io/expose": "true", **annotations}},
        "spec": {"type": "LoadBalancer", "ports": [{"name": "http", "port": port}]},
        "status": {"loadBalancer": {"ingress": [{"ip": ip}]} if ip else {}},
    }


def seed(world: World) -> None:
    kube = world.kube
    kube.apply(_service("orders", "shop", {"apim-sync.io/mode": "public"}, ip="20.50.1.10"))
    kube.apply(
        _service(
            "ledger",
            "finance",
            {"apim-sync.io/mode": "internal", "service.beta.kubernetes.io/azure-load-balancer-internal": "true"},
            ip="10.240.0.7",
            port=8080,
        )
    )
    catalog = _service("catalog", "shop", {"apim-sync.io/mode": "ingress", "apim-sync.io/title": "Catalog"}, ip=None)
    catalog["spec"]["type"] = "ClusterIP"
    kube.apply(catalog)
    kube.apply(
        {
            "kind": "Ingress",
            "metadata": {"name": "shop", "namespace": "shop"},
            "spec": {
                "tls": [{"hosts": ["api.contoso.example"], "secretName": "shop-tls"}],
                "rules": [
                    {
                        "host": "api.contoso.example",
                        "http": {
                            "paths": [
                                {
                                    "path": "/catalog",
                                    "pathType": "Prefix",
                                    "backend": {"service": {"name": "catalog", "port": {"number": 80}}},
                                }
                            ]
                        },
                    }
                ],
            },
        }
    )
    kube.apply(_service("search", "shop", {"apim-sync.io/mode": "public"}, ip=None))
    kube.apply(_service("broken", "shop", {"apim-sync.io/mode": "public", "apim-sync.io/port": "grpc"}, ip="20.50.1.11"))
    kube.apply(
        _service("payments", "shop", {"apim-sync.io/mode": "public", "apim-sync.io/backend-id": "payments"}, ip="20.50.1.12")
    )
    world.apim.put_backend_directly(
        "payments", {"url": "https://payments.legacy.example", "protocol": "http", "description": "Created by hand in the portal"}
    )


def _resync_via_handler() -> dict[str, Any]:
    import azure.functions as func

    from functions.resync import resync

    request = func.HttpRequest("POST", "http://localhost:7071/api/resync", params={}, body=b"")
    response = resync.build().get_user_function()(request)
    report: dict[str, Any] = json.loads(response.get_body())
    report["http_status"] = response.status_code
    return report


def _print_report(title: str, report: dict[str, Any]) -> None:
    symbol = {"create": "+", "update": "~", "delete": "-"}
    print(f"\n== {title}: HTTP {report['http_status']}")
    for change in report["changes"]:
        print(f"  {symbol[change['action']]} backend {change['id']} ({change['source']}) -> {change['outcome']}")
        for field, (before, after) in change["diff"].items():
            print(f"      {field}: {before!r} -> {after!r}")
    for refusal in report["refusals"]:
        print(f"  ! backend {refusal['id']} refused ({refusal['reason']}): {refusal['message']}")
    for pending in report["pending"]:
        print(f"  … {pending['object']} pending ({pending['reason']}): {pending['message']}")
    for error in report["errors"]:
        print(f"  x {error.get('object', '')} {error.get('field', '')} ({error['reason']}): {error['message']}")
    print(f"  counts: {json.dumps(report['counts'])}")
    print(f"  requests: {json.dumps(report['requests'])}, {report['duration_ms']} ms")


def demo() -> int:
    world = start_world()
    try:
        os.environ.update(world.settings())
        seed(world)
        first = _resync_via_handler()
        _print_report("first resync (through the resync HTTP handler)", first)
        print("\n== APIM backends now")
        for backend_id, backend in sorted(world.apim.backends.items()):
            print(f"  {backend_id:40} {backend['properties']['url']}")
        world.apim.clear_log()
        world.kube.clear_log()
        second = _resync_via_handler()
        _print_report("second resync", second)
        writes = len(world.apim.writes()) + len(world.kube.writes())
        print(f"\nsecond run: {writes} writes to APIM or Kubernetes")
        return 0 if writes == 0 and first["http_status"] == 200 else 1
    finally:
        world.stop()


def serve() -> int:
    world = start_world()
    env_file = world.write_env_file()
    print(f"ARM emulator: {world.apim.url}\nKubernetes emulator: {world.kube.url}\nsettings: {env_file}", flush=True)
    print(f"try: python -m shared plan --env-file {env_file}", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        return 0
    finally:
        world.stop()


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m sandbox")
    parser.add_argument("command", choices=["demo", "serve"])
    args = parser.parse_args()
    return demo() if args.command == "demo" else serve()


if __name__ == "__main__":
    sys.exit(main())
